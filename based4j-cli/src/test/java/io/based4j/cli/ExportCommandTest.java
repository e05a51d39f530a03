package io.based4j.cli;

import static io.based4j.cli.CliTest.GOLDEN;
import static io.based4j.cli.CliTest.run;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.checkpoint.Safetensors;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ExportCommandTest {
    @TempDir
    Path tmp;

    @Test
    void bf16ExportHoldsTheWeightsRoundedAndGenerates() throws IOException {
        Path out = tmp.resolve("small");
        CliTest.Result r = run("export", "--model", GOLDEN.toString(), "--out", out.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("bf16"), r.out());
        assertEquals(Files.readString(GOLDEN.resolve("config.json")), Files.readString(out.resolve("config.json")));
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> src = Safetensors.read(GOLDEN.resolve("model.safetensors"), arena);
            Map<String, Tensor> got = Safetensors.read(out.resolve("model.safetensors"), arena);
            assertEquals(src.keySet(), got.keySet());
            for (Map.Entry<String, Tensor> e : src.entrySet()) {
                Tensor g = got.get(e.getKey());
                assertEquals(DType.BF16, g.dtype(), e.getKey());
                assertArrayEquals(e.getValue().shape(), g.shape(), e.getKey());
                float[] want = Tensor.ofBf16(e.getValue().toFloatArray(), e.getValue().shape()).toFloatArray();
                assertArrayEquals(want, g.toFloatArray(), e.getKey() + " is the source rounded to bf16");
            }
        }
        CliTest.Result gen = run("generate", "--model", out.toString(), "--prompt-ids", "5,6,7", "-n", "4", "-t", "0",
                "--print-ids");
        assertEquals(0, gen.code(), gen.err());
        try (Stream<Path> left = Files.list(tmp)) {
            assertEquals(1, left.count(), "nothing but the model folder is left beside it");
        }
    }

    @Test
    void anExistingFolderIsKeptWithoutOverwrite() throws IOException {
        Path out = Files.createDirectory(tmp.resolve("taken"));
        Files.writeString(out.resolve("mine.txt"), "keep");
        CliTest.Result r = run("export", "--model", GOLDEN.toString(), "--out", out.toString());
        assertEquals(1, r.code());
        assertTrue(r.err().contains("--overwrite"), r.err());
        assertEquals("keep", Files.readString(out.resolve("mine.txt")));
        CliTest.Result again = run("export", "--model", GOLDEN.toString(), "--out", out.toString(), "--overwrite",
                "--dtype", "f32");
        assertEquals(0, again.code(), again.err());
        assertTrue(Files.exists(out.resolve("model.safetensors")));
        try (Stream<Path> left = Files.list(tmp)) {
            assertEquals(1, left.count(), "the old folder is gone once the new one is in");
        }
    }

    @Test
    void badArgumentsAreRefusedBeforeAnyWrite() throws IOException {
        assertEquals(2, run("export", "--model", GOLDEN.toString(), "--out", tmp.resolve("a").toString(), "--dtype",
                "int8").code());
        CliTest.Result missing = run("export", "--model", tmp.resolve("none").toString(), "--out",
                tmp.resolve("b").toString());
        assertEquals(1, missing.code());
        assertTrue(missing.err().contains("not a folder"), missing.err());
        try (Stream<Path> left = Files.list(tmp)) {
            assertEquals(0, left.count(), "nothing written");
        }
    }
}
