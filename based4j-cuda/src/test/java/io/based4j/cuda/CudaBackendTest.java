package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.sampling.Sampler;
import io.based4j.sampling.SamplingParams;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The GPU sampler against the CPU sampler, buffers round-tripping, memory errors that say what is short, and the
 * profiler's range.
 */
@GpuTest
class CudaBackendTest {
    static final long SEED = Long.getLong("based4j.seed", System.nanoTime());

    /**
     * The GPU sampler draws exactly the CPU sampler's tokens: CudaBackend.sample against the CPU backend's sample
     * (the host Sampler) on the same float32 logits, with twin samplers of the same settings and seeds, over many
     * steps (so their generators must advance alike), greedy and sampled rows mixed in each call.
     */
    @Test
    void samplerDrawsTheCpuSamplersTokens() {
        SplittableRandom r = new SplittableRandom(SEED);
        int vocab = 50_257;
        int padded = 50_304;
        List<SamplingParams> settings = new ArrayList<>();
        for (float t : new float[] {0.7f, 1f, 1.3f}) {
            for (int k : new int[] {0, 1, 40}) {
                for (float p : new float[] {0.9f, 1f}) {
                    settings.add(new SamplingParams(t, k, p, 0));
                }
            }
        }
        settings.addAll(List.of(SamplingParams.greedy(), new SamplingParams(0.9f, 5, 1f, 0),
                new SamplingParams(1f, 0, 0.05f, 0), new SamplingParams(0.8f, 50, 0.8f, 0),
                new SamplingParams(2f, 1000, 0.99f, 0), new SamplingParams(1f, 100_000, 1f, 0)));
        int rows = 2 * settings.size();
        float[] logits = new float[rows * padded];
        for (int i = 0; i < rows; i++) {
            double spread = 1 + 4 * r.nextDouble();
            for (int v = 0; v < padded; v++) {
                // a few ties, some -inf, and a padded tail that must never be chosen
                float x = (float) Math.round(r.nextGaussian() * spread * 64) / 64f;
                logits[i * padded + v] = v >= vocab ? 1e9f : r.nextInt(500) == 0 ? Float.NEGATIVE_INFINITY : x;
            }
        }
        logits[3 * padded + 10] = logits[3 * padded + 20_000] = Float.POSITIVE_INFINITY; // two tokens share the draw
        Sampler[] onGpu = new Sampler[rows];
        Sampler[] onCpu = new Sampler[rows];
        for (int i = 0; i < rows; i++) {
            SamplingParams p = settings.get(i % settings.size());
            SamplingParams seeded = new SamplingParams(p.temperature(), p.topK(), p.topP(), r.nextLong());
            onGpu[i] = new Sampler(seeded);
            onCpu[i] = new Sampler(seeded);
        }
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.F32); CpuBackend cpu = new CpuBackend()) {
            Backend.Buffer gpuLogits = gpu.upload(logits, rows, padded); // float32: the backend's precision
            Backend.Buffer cpuLogits = cpu.upload(logits, rows, padded);
            for (int step = 0; step < 30; step += 3) {
                // a call that waits, then three queued at once (two areas of settings and ids: the third's takes
                // the first's back, whose ids are read first), each drawing in call order as the CPU's do
                int[][] rowIdx = new int[3][rows];
                Backend.Sampled[] queued = new Backend.Sampled[3];
                for (int k = 0; k < 3; k++) {
                    for (int i = 0; i < rows; i++) {
                        rowIdx[k][i] = (i * 7 + step + k) % rows;
                    }
                    if (k > 0) {
                        queued[k] = gpu.sampleAhead(gpuLogits, rowIdx[k], vocab, onGpu);
                    }
                }
                int[] first = gpu.sample(gpuLogits, rowIdx[0], vocab, onGpu);
                queued[0] = () -> first;
                // the queued ones drew before the one that waited: the CPU draws in that order too
                int[][] want = new int[3][];
                want[1] = cpu.sample(cpuLogits, rowIdx[1], vocab, onCpu);
                want[2] = cpu.sample(cpuLogits, rowIdx[2], vocab, onCpu);
                want[0] = cpu.sample(cpuLogits, rowIdx[0], vocab, onCpu);
                for (int k = 0; k < 3; k++) {
                    int[] got = queued[k].ids();
                    for (int i = 0; i < rows; i++) {
                        assertEquals(want[k][i], got[i], "step " + (step + k) + ", row " + rowIdx[k][i] + " with "
                                + onCpu[i].params() + " [-Dbased4j.seed=" + SEED + "]");
                        assertTrue(got[i] >= 0 && got[i] < vocab);
                    }
                }
            }
            float[] nan = logits.clone();
            nan[5 * padded + 17] = Float.NaN;
            Backend.Buffer bad = gpu.upload(nan, rows, padded);
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> gpu.sample(bad, new int[] {5},
                    vocab, new Sampler[] {new Sampler(SamplingParams.greedy())}));
            assertTrue(e.getMessage().contains("NaN"), e.getMessage());
            Backend.Sampled queuedBad = gpu.sampleAhead(bad, new int[] {4, 5}, vocab,
                    new Sampler[] {new Sampler(SamplingParams.greedy()), new Sampler(SamplingParams.greedy())});
            e = assertThrows(IllegalStateException.class, queuedBad::ids, "a queued sampling's error, when read");
            assertTrue(e.getMessage().contains("NaN") && e.getMessage().contains("row 5"), e.getMessage());
            float[] none = logits.clone();
            Arrays.fill(none, 6 * padded, 6 * padded + vocab, Float.NEGATIVE_INFINITY);
            Backend.Buffer empty = gpu.upload(none, rows, padded);
            e = assertThrows(IllegalStateException.class, () -> gpu.sample(empty, new int[] {6}, vocab,
                    new Sampler[] {new Sampler(SamplingParams.greedy())}));
            assertTrue(e.getMessage().contains("-Infinity"), e.getMessage());
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
            assertArrayEquals(Arrays.copyOf(v, 5 * 91), head);
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

    /**
     * The profiler's range (cuProfilerStart, cuProfilerStop) is accepted by the driver with no profiler attached, and
     * work queued inside it and after it runs as without it.
     */
    @Test
    void aProfilerRangeWithoutAProfilerChangesNothing() {
        float[] v = {1, -2, 3.5f, 4, 0.25f, -6};
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.F32)) {
            gpu.profilerRange(true);
            assertArrayEquals(v, gpu.download(gpu.upload(v, 2, 3)));
            gpu.profilerRange(false);
            assertArrayEquals(v, gpu.download(gpu.upload(v, 3, 2)));
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
