package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.junit.jupiter.api.Test;

/** The settings a benchmark's JSON records: based4j's system properties alone, by name, the launcher's own left out. */
class BenchRunTest {
    @Test
    void settingsAreTheBased4jPropertiesButTheHome() {
        Properties p = new Properties();
        p.setProperty("based4j.cuda.linearDeferVersion", "7");
        p.setProperty("based4j.cuda.linearDeferMinBlocks", "1");
        p.setProperty("based4j.home", "/opt/based4j");
        p.setProperty("based4j.stderr.fd", "11");
        p.setProperty("java.version", "25");
        p.setProperty("based4jx.other", "no");
        Map<String, String> settings = BenchRun.settings(p);
        assertEquals(List.of("based4j.cuda.linearDeferMinBlocks", "based4j.cuda.linearDeferVersion"),
                List.copyOf(settings.keySet()), "sorted by name");
        assertEquals("7", settings.get("based4j.cuda.linearDeferVersion"));
        assertEquals(Map.of(), BenchRun.settings(new Properties()));
    }
}
