package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** {@code bench kernels}: bad options are usage errors that name what is wrong, before any work (no GPU needed). */
class BenchKernelsCommandTest {
    @TempDir
    Path dir;

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "--kernel nope          | --kernel nope is not on the workbench (choose from gemv, crossEntropy, attentionDecode,"
            + " linearAttentionDecode, linearAttentionPrefill, addRmsNorm, baseConvStep)",
        "--kernel gemv,softmax  | --kernel softmax is not on the workbench",
        "--reps 0               | --reps must be between 1 and 100000, got 0",
        "--reps 1000000000      | --reps must be between 1 and 100000, got 1000000000",
        "--device cpu           | --device cpu: the workbench runs CUDA kernels (cuda or cuda:N)",
        "--device cuda:x        | --device cuda:x is not of the form cuda or cuda:N",
    })
    void badOptionsAreUsageErrors(String options, String named) {
        Path json = dir.resolve("never.json");
        CliTest.Result r = CliTest.run(("bench kernels --json " + json + " " + options.trim()).split(" +"));
        assertEquals(2, r.code(), r.err());
        List<String> err = r.err().strip().lines().toList();
        assertEquals(List.of("Try 'based4j bench kernels --help' for usage."), err.subList(1, err.size()), r.err());
        assertTrue(r.err().startsWith("based4j: error: ") && r.err().contains(named.trim()), r.err());
        assertEquals("", r.out(), "no work done");
        assertFalse(Files.exists(json));
    }
}
