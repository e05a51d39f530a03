package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend;
import io.based4j.sampling.Sampler;
import io.based4j.sampling.SamplingParams;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The GPU sampler against its plain-Java statement, buffers round-tripping, and memory errors that say what is short. */
@GpuTest
class CudaBackendTest {
    static final long SEED = Long.getLong("based4j.seed", System.nanoTime());

    @Test
    void samplerMatchesItsJavaStatement() {
        SplittableRandom r = new SplittableRandom(SEED);
        int vocab = 50_257;
        int padded = 50_304;
        SamplingParams[] settings = {
            SamplingParams.greedy(),
            new SamplingParams(1f, 0, 1f, 1),
            new SamplingParams(0.7f, 0, 1f, 2),
            new SamplingParams(1f, 1, 1f, 3),
            new SamplingParams(0.9f, 5, 1f, 4),
            new SamplingParams(1.2f, 0, 0.9f, 5),
            new SamplingParams(0.8f, 50, 0.8f, 6),
            new SamplingParams(1f, 0, 0.05f, 7),
            new SamplingParams(2f, 1000, 0.99f, 8),
        };
        int rows = 3 * settings.length;
        float[] logits = new float[rows * padded];
        for (int i = 0; i < rows; i++) {
            double spread = 1 + 4 * r.nextDouble();
            for (int v = 0; v < padded; v++) {
                // a few ties and a padded tail that must never be chosen
                logits[i * padded + v] = v >= vocab ? 1e9f : (float) Math.round(r.nextGaussian() * spread * 64) / 64f;
            }
        }
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.F32)) {
            Backend.Buffer buf = gpu.upload(logits, rows, padded); // float32: the backend's precision
            for (int round = 0; round < 20; round++) {
                int[] rowIdx = new int[rows];
                Sampler[] gpuSamplers = new Sampler[rows];
                Sampler[] draws = new Sampler[rows];
                for (int i = 0; i < rows; i++) {
                    rowIdx[i] = (i * 7 + round) % rows;
                    SamplingParams p = settings[i % settings.length];
                    SamplingParams seeded = new SamplingParams(p.temperature(), p.topK(), p.topP(), 1000L * round + i);
                    gpuSamplers[i] = new Sampler(seeded);
                    draws[i] = new Sampler(seeded);
                }
                int[] got = gpu.sample(buf, rowIdx, vocab, gpuSamplers);
                for (int i = 0; i < rows; i++) {
                    SamplingParams p = gpuSamplers[i].params();
                    boolean greedy = p.isGreedy() || p.topK() == 1;
                    float u = greedy ? 0f : draws[i].nextUniform();
                    int want = Kernels.sampleReference(logits, rowIdx[i] * padded, vocab, greedy ? 0f : p.temperature(),
                            p.topK(), p.topP(), u);
                    assertEquals(want, got[i], "row " + rowIdx[i] + " with " + p + ", u=" + u + " [-Dbased4j.seed="
                            + SEED + "]");
                    assertTrue(got[i] >= 0 && got[i] < vocab);
                }
            }
            float[] nan = logits.clone();
            nan[5 * padded + 17] = Float.NaN;
            Backend.Buffer bad = gpu.upload(nan, rows, padded);
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> gpu.sample(bad, new int[] {5},
                    vocab, new Sampler[] {new Sampler(SamplingParams.greedy())}));
            assertTrue(e.getMessage().contains("NaN"), e.getMessage());
        }
    }

    @Test
    void buffersRoundTripInBothPrecisions() {
        SplittableRandom r = new SplittableRandom(SEED);
        float[] v = new float[37 * 91];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextGaussian();
        }
        try (CudaBackend f32 = CudaBackend.open("cuda", Precision.F32)) {
            assertArrayEquals(v, f32.download(f32.upload(v, 37, 91)));
            Backend.Buffer whole = f32.upload(v, 37, 91);
            float[] head = f32.download(f32.view(whole, 5));
            assertArrayEquals(java.util.Arrays.copyOf(v, 5 * 91), head);
        }
        try (CudaBackend bf16 = CudaBackend.open("cuda", Precision.BF16)) {
            float[] back = bf16.download(bf16.upload(v, 37, 91));
            for (int i = 0; i < v.length; i++) {
                float want = io.based4j.tensor.Tensor.bf16ToFloat(io.based4j.tensor.Tensor.floatToBf16(v[i]));
                assertEquals(want, back[i], 0f, "bf16 value " + i);
            }
        }
    }

    @Test
    void memoryThatDoesNotFitIsReportedWithNeedAndFree() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> gpu.checkFits(1L << 50, "a test's state"));
            assertTrue(e.getMessage().contains("a test's state") && e.getMessage().contains("needed")
                    && e.getMessage().contains("free"), e.getMessage());
            IllegalStateException oom = assertThrows(IllegalStateException.class,
                    () -> gpu.allocate(1 << 20, 1 << 30));
            assertTrue(oom.getMessage().contains("out of memory") && oom.getMessage().contains("free"),
                    oom.getMessage());
            // still usable after the failure
            float[] v = {1, 2, 3, 4};
            assertArrayEquals(new float[] {1, 2, 3, 4}, gpu.download(gpu.upload(v, 2, 2)), 0.01f);
        }
    }

    @Test
    void badDeviceNamesAreRefused() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CudaBackend.open("cuda:x", Precision.BF16));
        assertTrue(e.getMessage().contains("cuda:x"), e.getMessage());
        CudaUnavailableException none = assertThrows(CudaUnavailableException.class,
                () -> CudaBackend.open("cuda:4096", Precision.BF16));
        assertTrue(none.getMessage().contains("cuda:4096"), none.getMessage());
    }
}
