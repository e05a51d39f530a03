package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.config.MixerConfig;
import java.util.Locale;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * A full attention key/value cache on the GPU whose memory is mapped in pieces as its sequences grow
 * ({@link CudaStates.GrowingRegion}, turned on for the test): the attention op, fed the same queries, keys and values
 * as the CPU's, gives the CPU's outputs through prompts, decode steps that cross into new pieces, a reset slot and a
 * restored snapshot; and it holds exactly the pieces its sequences reached.
 *
 * <p>Width 1024 in float32 is 4 KiB a token a region, so a piece of 2 MiB holds 512 tokens: a slot of 4,096 tokens
 * spans 8 pieces and a sequence of 1,100 tokens reaches 3 of them. Tolerance: both sides sum float32 dot products of
 * 64 terms and a softmax over at most 1,101 keys in different orders, and round their rotary angles apart; the
 * differences are a few float32 units of the outputs (under 1e-6 of the largest), so 1e-4 of the largest output is
 * loose for them, while a piece that is missing, mapped twice or zeroed at the wrong time moves outputs by O(0.1) or
 * more.
 */
@GpuTest
class GrowingKeyValueTest {
    private static final int D = 1024;
    private static final int HEADS = 16;
    private static final int MAX_LENGTH = 4096;
    private static final int SLOTS = 2;
    private static final double TOL = 1e-4;

    private final MixerConfig.Attention cfg = new MixerConfig.Attention(D, HEADS, D / HEADS, Integer.MAX_VALUE, 32,
            10000.0, false, 1 / Math.sqrt(D / HEADS), false, false);
    private final SplittableRandom random = new SplittableRandom(41);

    @Test
    void aCacheGrowsPieceByPieceAndComputesWhatTheCpuDoes() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.F32); CpuBackend cpu = new CpuBackend()) {
            gpu.growCaches(true);
            assertTrue(gpu.growsMemory(), "this GPU does not map memory behind reserved addresses");
            CudaStates.KeyValue st = (CudaStates.KeyValue) gpu.allocateState(cfg, SLOTS, MAX_LENGTH);
            Backend.MixerState ref = cpu.allocateState(cfg, SLOTS, MAX_LENGTH);
            assertNotNull(st.growing, "a full cache grows");
            long piece = gpu.growingPiece();
            long slotBytes = 4L * MAX_LENGTH * D;
            assertEquals(2 * SLOTS * slotBytes, st.growableBytes(), "nothing is mapped at the start");

            int[] reached = new int[SLOTS];
            // prompts of 700 and 100 tokens in one call
            step(gpu, cpu, st, ref, reached, new int[] {0, 1}, new int[] {700, 100}, "prompts");
            assertEquals(expectedGrowable(reached, piece, slotBytes), st.growableBytes(), "after the prompts");
            // 400 decode steps: slot 0 crosses from its second piece into its third at 1,024 tokens
            for (int t = 0; t < 400; t++) {
                step(gpu, cpu, st, ref, reached, new int[] {0, 1}, new int[] {1, 1}, "decode step " + t);
            }
            assertEquals(1100, reached[0]);
            assertEquals(expectedGrowable(reached, piece, slotBytes), st.growableBytes(), "after the decode steps");

            // slot 0 starts again: its pieces stay mapped, zeroed; a new prompt and steps
            st.reset(0);
            ref.reset(0);
            reached[0] = 0;
            step(gpu, cpu, st, ref, reached, new int[] {0}, new int[] {50}, "a new prompt in a reset slot");
            for (int t = 0; t < 5; t++) {
                step(gpu, cpu, st, ref, reached, new int[] {0}, new int[] {1}, "reset slot, decode step " + t);
            }

            // slot 0's 55 tokens copied into slot 1, which goes on from them
            try (Backend.Snapshot snap = st.snapshot(0, 55); Backend.Snapshot refSnap = ref.snapshot(0, 55)) {
                st.restore(1, snap);
                ref.restore(1, refSnap);
            }
            reached[1] = 55;
            for (int t = 0; t < 5; t++) {
                step(gpu, cpu, st, ref, reached, new int[] {1}, new int[] {1}, "restored slot, decode step " + t);
            }
            long mappedBytes = 2 * SLOTS * slotBytes - st.growableBytes();
            long held = gpu.allocatedBytes();
            st.release();
            assertEquals(0, st.growableBytes(), "a released state holds nothing and grows no more");
            assertTrue(held - gpu.allocatedBytes() >= mappedBytes, "releasing gives back the " + mappedBytes
                    + " bytes mapped (and the state's tables): " + (held - gpu.allocatedBytes()) + " given back");

            // a state left for the backend's close to release
            CudaStates.KeyValue left = (CudaStates.KeyValue) gpu.allocateState(cfg, SLOTS, MAX_LENGTH);
            left.reserve(new TokenBatch(new int[] {1}, new int[] {0}, new int[] {600}));
            assertEquals(2 * SLOTS * slotBytes - 2 * 2 * piece, left.growableBytes(), "600 tokens of slot 1: 2 pieces");
        }
    }

    /**
     * One attention call on both backends with the same random q, k, v rows; the outputs compared row by row. Updates
     * what each slot has reached.
     */
    private void step(CudaBackend gpu, CpuBackend cpu, CudaStates.KeyValue st, Backend.MixerState ref, int[] reached,
                      int[] slots, int[] lengths, String what) {
        int[] starts = new int[slots.length];
        int total = 0;
        for (int i = 0; i < slots.length; i++) {
            starts[i] = reached[slots[i]];
            total += lengths[i];
        }
        TokenBatch batch = new TokenBatch(slots, starts, lengths);
        float[] qkv = new float[total * 3 * D];
        for (int i = 0; i < qkv.length; i++) {
            qkv[i] = (float) random.nextGaussian();
        }
        Backend.Buffer gIn = gpu.upload(qkv, total, 3 * D);
        Backend.Buffer gOut = gpu.allocate(total, D);
        gpu.attention(cfg, gIn, batch, st, gOut, null);
        float[] got = gpu.download(gOut);
        Backend.Buffer cIn = cpu.upload(qkv, total, 3 * D);
        Backend.Buffer cOut = cpu.allocate(total, D);
        cpu.attention(cfg, cIn, batch, ref, cOut, null);
        float[] want = cpu.download(cOut);
        double largest = 0;
        for (float v : want) {
            largest = Math.max(largest, Math.abs(v));
        }
        double bound = TOL * largest;
        for (int i = 0; i < want.length; i++) {
            double diff = Math.abs(got[i] - want[i]);
            int row = i / D;
            assertTrue(diff <= bound, String.format(Locale.ROOT, "%s: output %d of row %d is %s on the GPU, %s on the "
                    + "CPU (|diff| %.3g > %.3g)", what, i % D, row, got[i], want[i], diff, bound));
        }
        for (int i = 0; i < slots.length; i++) {
            reached[slots[i]] += lengths[i];
        }
    }

    /** Bytes of the two regions that no reached position lies in a piece of. */
    private static long expectedGrowable(int[] reached, long piece, long slotBytes) {
        long regionBytes = SLOTS * slotBytes;
        int pieces = (int) ((regionBytes + piece - 1) / piece);
        boolean[] mapped = new boolean[pieces];
        for (int s = 0; s < reached.length; s++) {
            if (reached[s] == 0) {
                continue;
            }
            long from = s * slotBytes;
            long to = from + 4L * reached[s] * D;
            for (long p = from / piece; p <= (to - 1) / piece; p++) {
                mapped[(int) p] = true;
            }
        }
        long count = 0;
        for (boolean m : mapped) {
            count += m ? 1 : 0;
        }
        return 2 * Math.max(0, regionBytes - count * piece);
    }

    @Test
    void theExpectationCountsPiecesAsTheRegionDoes() {
        // 2 slots of 16 MiB in pieces of 2 MiB: 700 tokens (2.8 MB) of slot 0 lie in 2 pieces, 100 of slot 1 in 1
        long slot = 4L * MAX_LENGTH * D;
        long piece = 2L << 20;
        assertEquals(2 * (2 * slot - 3 * piece), expectedGrowable(new int[] {700, 100}, piece, slot));
        assertEquals(2 * 2 * slot, expectedGrowable(new int[] {0, 0}, piece, slot));
        // 1,100 tokens of slot 0 reach into its third piece; 512 tokens fill exactly one
        assertEquals(2 * (2 * slot - 4 * piece), expectedGrowable(new int[] {1100, 500}, piece, slot));
        assertEquals(2 * (2 * slot - piece), expectedGrowable(new int[] {512, 0}, piece, slot));
    }

    /**
     * Through a model: a session whose full cache grows and one whose cache is made whole, fed the same prompt of 500
     * tokens and then 40 recorded and replayed decode steps, the sequence crossing into a new piece at 512 tokens
     * (width 1024 in float32: 512 tokens a piece) while the steps replay. The two give the same logits: the same
     * kernels on the same values, the cache at other addresses (only cuBLAS could pick another algorithm when
     * recording, as GpuModelTest allows graphs against ops: 1e-6 of the rms).
     */
    @Test
    void recordedStepsGoOnAcrossANewPiece() {
        // attn-360m's layer (width 1024, 16 heads, full attention), one of it, over a small vocabulary
        java.util.Map<String, Object> m = io.based4j.model.Presets.configMap("attn-360m");
        m.put("n_layer", 1L);
        m.put("vocab_size", 512L);
        io.based4j.config.ModelConfig config = io.based4j.config.ConfigParser.fromMap("growing cache test", m);
        assertEquals(D, config.dModel(), "the width the pieces are counted for");
        SplittableRandom r = new SplittableRandom(43);
        int[] prompt = r.ints(500, 0, 512).toArray();
        int[] next = r.ints(40, 0, 512).toArray();
        try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofShared();
             CudaBackend gpu = CudaBackend.open("cuda", Precision.F32);
             io.based4j.model.BasedModel model = io.based4j.model.BasedModel.of(
                     io.based4j.model.Initializer.weights(config, 7, arena), gpu)) {
            gpu.growCaches(true);
            assertTrue(gpu.growsMemory(), "this GPU does not map memory behind reserved addresses");
            io.based4j.model.Session grown = model.newSession(1, MAX_LENGTH);
            gpu.growCaches(false);
            io.based4j.model.Session whole = model.newSession(1, MAX_LENGTH);
            assertEquals(0, whole.growableBytes(), "a cache made whole does not grow");
            long before = grown.growableBytes();
            float[] a = gpu.download(model.forward(grown, grown.batch(new int[] {0}, new int[] {500}), prompt, false,
                    null));
            float[] b = gpu.download(model.forward(whole, whole.batch(new int[] {0}, new int[] {500}), prompt, false,
                    null));
            compare("the prompt's last logits", a, b);
            long afterPrompt = grown.growableBytes();
            assertTrue(afterPrompt < before, "the prompt mapped memory");
            for (int t = 0; t < next.length; t++) {
                int[] id = {next[t]};
                a = gpu.download(model.forward(grown, grown.batch(new int[] {0}, new int[] {1}), id, false, null));
                b = gpu.download(model.forward(whole, whole.batch(new int[] {0}, new int[] {1}), id, false, null));
                compare("decode step " + t + " (position " + (500 + t) + ")", a, b);
            }
            assertTrue(grown.growableBytes() < afterPrompt, "crossing 512 tokens mapped another piece");
            grown.close();
            whole.close();
        }
    }

    private static void compare(String what, float[] got, float[] want) {
        double s = 0;
        for (float v : want) {
            s += (double) v * v;
        }
        double bound = 1e-6 * Math.sqrt(s / want.length);
        for (int i = 0; i < want.length; i++) {
            assertTrue(Math.abs(got[i] - want[i]) <= bound, String.format(Locale.ROOT,
                    "%s: logit %d is %s with a growing cache, %s with a whole one", what, i, got[i], want[i]));
        }
    }
}
