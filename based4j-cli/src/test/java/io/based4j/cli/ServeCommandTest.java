package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.cli.CliTest.Result;
import java.net.InetAddress;
import java.net.ServerSocket;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

/** {@code based4j serve}: bad options are usage errors; an address it cannot bind is one line and exit code 1. */
class ServeCommandTest {
    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "serve --port 70000                      | --port must be in 0..65535",
        "serve --port -1                         | --port must be in 0..65535",
        "serve --slots 0                         | --slots must be >= 1",
        "serve --max-tokens-per-sequence 0       | --max-tokens-per-sequence must be >= 1",
        "serve --queue 0                         | --queue must be >= 1",
        "serve --prefix-cache-mib -1             | --prefix-cache-mib must be in 0..1073741824, got -1",
        "serve --request-timeout -5              | --request-timeout must be in 0..8640000, got -5",
        "serve --body-timeout 8640001            | --body-timeout must be in 0..8640000, got 8640001",
        "serve --device tpu                      | --device tpu",
    })
    void isAUsageError(String command, String named) {
        Result r = CliTest.run(command.trim().split(" +"));
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().startsWith("based4j: error: ") && r.err().contains(named.trim()), r.err());
        assertEquals("", r.out(), "no work done");
    }

    @Test
    void aPortInUseIsOneLine() throws Exception {
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            Result r = CliTest.run("serve", "--port", String.valueOf(taken.getLocalPort()));
            assertEquals(1, r.code(), r.err());
            String[] lines = r.err().strip().split("\n");
            assertTrue(lines[lines.length - 1].startsWith("based4j: error: cannot listen on 127.0.0.1:"
                    + taken.getLocalPort()), r.err());
            assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
        }
    }

    @Test
    void aPrefixCacheOverTheMemoryIsOneLine() {
        Result r = CliTest.run("serve", "--port", "0", "--prefix-cache-mib", "1073741824");
        assertEquals(1, r.code(), r.err());
        String[] lines = r.err().strip().split("\n");
        assertTrue(lines[lines.length - 1].startsWith("based4j: error: the prefix cache needs 1.0 PiB but only "),
                r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
        assertEquals("", r.out());
    }
}
