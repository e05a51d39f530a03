package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.cli.CliTest.Result;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** An option value out of range is bad usage: one line naming it, a --help hint, exit code 2, and no work done. */
class BadOptionValuesTest {
    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "bench cpu --preset nope                        | unknown preset 'nope'",
        "bench cpu --preset based-360m --model m        | either --model or --preset",
        "bench cpu --batch 0                            | --batch",
        "bench cpu --threads 0                          | --threads",
        "bench cpu --device tpu                         | --device tpu",
        "bench gpu --preset nope                        | unknown preset 'nope'",
        "bench gpu --device tpu                         | not --device tpu",
        "bench gpu --device cuda:x                      | --device cuda:x",
        "bench gpu --precision f8                       | --precision f8",
        "bench gpu --tokens-per-call 0                  | --tokens-per-call",
        "info --preset nope                             | unknown preset 'nope'",
        "info --preset based-360m --model m             | either --model or --preset",
        "info --context 0                               | --context",
        "tokenize                                       | exactly one of --text",
        "tokenize --text a --decode 1                   | exactly one of --text",
        "tokenize --decode x                            | --decode: invalid token id \"x\"",
        "tokenize --decode 99999999                     | --decode: token id 99999999 is outside",
        "generate --prompt x --device cuda:x            | --device cuda:x",
        "generate --prompt x --max-new-tokens -1        | -1",
        "mqar train --mixer mamba                       | unknown MQAR mixer 'mamba'",
        "mqar train --d-model 0                         | --d-model must be >= 1",
        "mqar train --lr 0                              | --lr must be > 0",
        "mqar train --max-minutes NaN                   | --max-minutes",
        "mqar train --train 64:4                        | --train: '64:4' is not L:KV:COUNT",
        "mqar train --test 63:4:10                      | --test:",
    })
    void isAUsageError(String command, String named) {
        Result r = CliTest.run(command.trim().split(" +"));
        assertEquals(2, r.code(), r.err());
        String[] lines = r.err().strip().split("\n");
        assertEquals(2, lines.length, "the error and the --help hint: " + r.err());
        assertTrue(lines[0].startsWith("based4j: error: ") && lines[0].contains(named.trim()), r.err());
        assertTrue(lines[1].startsWith("Try 'based4j ") && lines[1].endsWith(" --help' for usage."), r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
        assertEquals("", r.out(), "no work done");
    }
}
