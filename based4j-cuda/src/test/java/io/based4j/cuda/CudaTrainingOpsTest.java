package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.Backend.Weight;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.TrainingBackend;
import io.based4j.config.MixerConfig;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import io.based4j.train.cpu.CpuTrainBackend;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Every {@link TrainingBackend} op of the CUDA backend in float32 against the float64 {@link CpuTrainBackend}, on
 * the same inputs, at awkward sizes (nothing a multiple of a warp or a tile; repeated token ids; ignored targets; a
 * vocabulary that is no multiple of anything). Backward ops are given nonzero gradients to add into, so that "adds"
 * is checked as well as the values.
 *
 * <p>Tolerances: float32 sums of at most a few hundred terms err by at most n 2^-24 ~ 2e-5 of the largest term's
 * size in the worst case (far less in practice); {@link #TOL} = 3e-5 of the largest element of each result allows
 * that. The mixers' recurrences and the loss's logsumexp add a few roundings more per element: {@link #MIXER_TOL}.
 */
@GpuTest
class CudaTrainingOpsTest {
    static final double TOL = 3e-5;
    static final double MIXER_TOL = 1e-4;

    static CudaBackend gpu;
    static CpuTrainBackend cpu;
    final SplittableRandom random = new SplittableRandom(Near.SEED);

    @BeforeAll
    static void open() {
        gpu = CudaBackend.open("cuda", Precision.F32);
        cpu = new CpuTrainBackend();
    }

    @AfterAll
    static void close() {
        if (gpu != null) {
            gpu.close();
        }
    }

    /** The same values as a buffer of each backend. */
    record Pair(Buffer c, Buffer g) {
        void same(String what, double tol) {
            Near.normwise(what, Near.toDouble(cpu.download(c)), gpu.download(g), tol);
        }
    }

    /** The same values as a parameter of each backend. */
    record Param(TrainingBackend.Parameter c, TrainingBackend.Parameter g) {
        Pair asPair() {
            return new Pair(c, g);
        }
    }

    Pair buffers(int rows, int cols, double sigma) {
        float[] v = Near.gaussian(random, rows * cols, sigma);
        return new Pair(cpu.upload(v, rows, cols), gpu.upload(v, rows, cols));
    }

    Param param(double mean, double sigma, long... shape) {
        float[] v = Near.gaussian(random, Math.toIntExact(Tensor.numel(shape)), sigma);
        for (int i = 0; i < v.length; i++) {
            v[i] += (float) mean;
        }
        Tensor t = Tensor.ofFloats(v, shape);
        return new Param(cpu.parameter(t), gpu.parameter(t));
    }

    @Test
    void parametersSaveExactlyAndZero() {
        float[] v = Near.gaussian(random, 3 * 41, 1);
        TrainingBackend.Parameter p = gpu.parameter(Tensor.ofFloats(v, 3, 41));
        Tensor saved = gpu.save(p, 3, 41);
        assertEquals(DType.F32, saved.dtype());
        assertArrayEquals(v, saved.toFloatArray(), "float32 master values come back bit for bit");
        TrainingBackend.Parameter again = gpu.parameter(saved);
        assertArrayEquals(v, gpu.download(again));
        gpu.zero(p);
        assertArrayEquals(new float[v.length], gpu.download(p));
        assertThrows(IllegalArgumentException.class, () -> gpu.save(p, 4, 41));
    }

    @Test
    void rmsNormKeepsRstdAndItsBackwardAdds() {
        int n = 37;
        int d = 70;
        Pair x = buffers(n, d, 1.3);
        Param w = param(1, 0.3, d);
        Pair out = buffers(n, d, 0);
        Pair rstd = buffers(n, 1, 0);
        cpu.rmsNorm(x.c, w.c, 1e-5, out.c, rstd.c);
        gpu.rmsNorm(x.g, w.g, 1e-5, out.g, rstd.g);
        out.same("rmsNorm out", TOL);
        rstd.same("rmsNorm rstd", TOL);
        Pair dout = buffers(n, d, 1);
        Pair dx = buffers(n, d, 0.5);
        Pair dw = buffers(1, d, 0.5);
        cpu.rmsNormBackward(x.c, w.c, rstd.c, dout.c, dx.c, dw.c);
        gpu.rmsNormBackward(x.g, w.g, rstd.g, dout.g, dx.g, dw.g);
        dx.same("rmsNorm dx", TOL);
        dw.same("rmsNorm dw", TOL);
    }

    @Test
    void matmulBackwardAddsAllThreeGradients() {
        int n = 33;
        int k = 45;
        int m = 29;
        Pair x = buffers(n, k, 1);
        Param w = param(0, 0.2, m, k);
        Param b = param(0, 0.2, m);
        Pair out = buffers(n, m, 0);
        cpu.matmul(x.c, w.c, b.c, out.c);
        gpu.matmul(x.g, w.g, b.g, out.g);
        out.same("matmul out", TOL);
        Pair dout = buffers(n, m, 1);
        Pair dx = buffers(n, k, 0.5);
        Pair dw = buffers(m, k, 0.5);
        Pair db = buffers(1, m, 0.5);
        cpu.matmulBackward(x.c, w.c, dout.c, dx.c, dw.c, db.c);
        gpu.matmulBackward(x.g, w.g, dout.g, dx.g, dw.g, db.g);
        dx.same("matmul dx", TOL);
        dw.same("matmul dw", TOL);
        db.same("matmul db", TOL);
        // dx and db may be skipped
        cpu.matmulBackward(x.c, w.c, dout.c, null, dw.c, null);
        gpu.matmulBackward(x.g, w.g, dout.g, null, dw.g, null);
        dw.same("matmul dw, twice", TOL);
    }

    /**
     * Token log-likelihoods computed where the logits are: the host's values (the same float logits, the sums in
     * double in another order: differences of a few units of the double's last place of log(sum), about 1e-15
     * relatively; allowed 1e-12 of the value); bad rows and targets are refused by name.
     */
    @Test
    void negativeLogLikelihoodsOnTheDeviceAreTheHostsValues() {
        int n = 37;
        int cols = 1003;
        int vocab = 1000;  // padded columns are not read
        float[] v = Near.gaussian(random, n * cols, 3);
        Buffer logits = gpu.upload(v, n, cols);
        int[] rows = {0, 5, 36, 5, 17};
        int[] targets = {0, 999, 3, 4, 500};
        double[] got = gpu.negativeLogLikelihoods(logits, rows, targets, vocab);
        double[] want = cpu.negativeLogLikelihoods(cpu.upload(v, n, cols), rows, targets, vocab);
        for (int i = 0; i < rows.length; i++) {
            assertEquals(want[i], got[i], 1e-12 * Math.abs(want[i]), "entry " + i);
            assertTrue(want[i] > 0, "a negative log-likelihood is positive: " + want[i]);
        }
        assertThrows(IllegalArgumentException.class,
                () -> gpu.negativeLogLikelihoods(logits, new int[] {n}, new int[] {0}, vocab));
        assertThrows(IllegalArgumentException.class,
                () -> gpu.negativeLogLikelihoods(logits, new int[] {0}, new int[] {vocab}, vocab));
    }

    /** A projection that adds the residual stream as it writes (one product on the GPU), with and without a bias. */
    @Test
    void matmulAddAddsTheResidual() {
        int n = 35;
        int k = 48;
        int m = 40;
        Pair x = buffers(n, k, 1);
        Param w = param(0, 0.2, m, k);
        Param b = param(0, 0.2, m);
        Pair residual = buffers(n, m, 1);
        long before = gpu.gemmRoutes().ltResidual;
        for (Param bias : new Param[] {null, b}) {
            Pair out = buffers(n, m, 3);
            gpu.zero(out.g);  // a pending zero of the output is dropped, not done after the product
            cpu.matmulAdd(x.c, w.c, bias == null ? null : bias.c, residual.c, out.c);
            gpu.matmulAdd(x.g, w.g, bias == null ? null : bias.g, residual.g, out.g);
            out.same("matmulAdd out" + (bias == null ? "" : " with a bias"), TOL);
        }
        assertEquals(before + 2, gpu.gemmRoutes().ltResidual, "both took the fused product");
    }

    /**
     * Zeros are queued and done by the next op that touches the memory, or dropped where a product writes the whole
     * buffer: every way of reading a zeroed buffer sees zeros, and products into zeroed gradients give what adding
     * into zeros gives (the CPU's), also through a view and after a second zero of the same buffer.
     */
    @Test
    void zerosAreDoneBeforeAnythingReadsThem() {
        int n = 21;
        int k = 40;
        int m = 24;
        Pair x = buffers(n, k, 1);
        Param w = param(0, 0.2, m, k);
        Pair dout = buffers(n, m, 1);
        Pair dx = buffers(n, k, 0.5);
        Pair dw = buffers(m, k, 0.5);
        cpu.zero(dx.c);
        gpu.zero(dx.g);
        assertArrayEquals(new float[n * k], gpu.download(dx.g), "a zeroed buffer downloads as zeros");
        for (Pair p : new Pair[] {dx, dw}) {
            cpu.zero(p.c);
            gpu.zero(p.g);
            gpu.zero(p.g);
        }
        cpu.matmulBackward(x.c, w.c, dout.c, dx.c, dw.c, null);
        gpu.matmulBackward(x.g, w.g, dout.g, dx.g, dw.g, null);
        dx.same("dx written into a zeroed buffer", TOL);
        dw.same("dw written into a zeroed buffer", TOL);
        // a view of a zeroed buffer reads zeros; an op through the view leaves the rest zero too
        gpu.zero(dx.g);
        Buffer head = gpu.view(dx.g, 5);
        assertArrayEquals(new float[5 * k], gpu.download(head), "a view of a zeroed buffer");
        assertArrayEquals(new float[n * k], gpu.download(dx.g), "the whole zeroed buffer");
        // a second product adds into the first one's result (the zero is used once)
        cpu.matmulBackward(x.c, w.c, dout.c, null, dw.c, null);
        gpu.matmulBackward(x.g, w.g, dout.g, null, dw.g, null);
        dw.same("dw added into", TOL);
        // a zeroed buffer that is released is not zeroed after its memory is handed out again
        Pair other = buffers(n, k, 1);
        gpu.zero(other.g);
        gpu.release(other.g);
        Pair next = buffers(n, k, 1);
        next.same("a buffer allocated after a release", 0);
    }

    @Test
    void embeddingBackwardSumsRepeatedIds() {
        int vocab = 50;
        int d = 19;
        int n = 77;
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) {
            ids[i] = i % 5 == 0 ? 7 : random.nextInt(vocab); // id 7 many times
        }
        Param table = param(0, 1, vocab, d);
        Pair out = buffers(n, d, 0);
        cpu.embedding(table.c, ids, out.c);
        gpu.embedding(table.g, ids, out.g);
        out.same("embedding", 0);
        Pair dout = buffers(n, d, 1);
        Pair dtable = buffers(vocab, d, 0.5);
        cpu.embeddingBackward(ids, dout.c, dtable.c);
        gpu.embeddingBackward(ids, dout.g, dtable.g);
        dtable.same("embedding dtable", TOL);
    }

    @Test
    void swigluBackwardAdds() {
        int n = 13;
        int h = 41;
        Pair a = buffers(n, 2 * h, 1.5);
        Pair out = buffers(n, h, 0);
        cpu.swiglu(a.c, out.c);
        gpu.swiglu(a.g, out.g);
        out.same("swiglu", TOL);
        Pair dout = buffers(n, h, 1);
        Pair da = buffers(n, 2 * h, 0.5);
        cpu.swigluBackward(a.c, dout.c, da.c);
        gpu.swigluBackward(a.g, dout.g, da.g);
        da.same("swiglu da", TOL);
    }

    @Test
    void addInPlaceAdds() {
        Pair acc = buffers(9, 23, 1);
        Pair x = buffers(9, 23, 1);
        cpu.addInPlace(acc.c, x.c);
        gpu.addInPlace(acc.g, x.g);
        acc.same("add", TOL);
    }

    @ParameterizedTest(name = "vocab {0} of {1} head rows")
    @CsvSource({"1000, 1003", "37, 37"})
    void crossEntropyMatchesAndAdds(int vocab, int headRows) {
        int n = 31;
        int d = 24;
        Pair x = buffers(n, d, 1);
        Param head = param(0, 0.3, headRows, d);
        int[] targets = new int[n];
        for (int i = 0; i < n; i++) {
            targets[i] = i % 6 == 2 ? TrainingBackend.IGNORE_INDEX : i == 0 ? vocab - 1 : random.nextInt(vocab);
        }
        Pair dx = buffers(n, d, 0.1);
        Pair dhead = buffers(headRows, d, 0.1);
        int[] argC = new int[n];
        int[] argG = new int[n];
        double scale = 1.0 / 26;
        double lossC = cpu.crossEntropy(x.c, head.c, vocab, targets, scale, dx.c, dhead.c, argC);
        double lossG = gpu.crossEntropy(x.g, head.g, vocab, targets, scale, dx.g, dhead.g, argG);
        // a sum of 26 logsumexps of about log(vocab) each, every one within a few float32 roundings
        assertEquals(lossC, lossG, 1e-5 * Math.abs(lossC), "summed loss");
        // random Gaussian logits: two within float32 error of each other is far less likely than one in 10^4
        assertArrayEquals(argC, argG, "argmax");
        dx.same("crossEntropy dx", MIXER_TOL);
        dhead.same("crossEntropy dhead", MIXER_TOL);
        double lossOnly = gpu.crossEntropy(x.g, head.g, vocab, targets, 1, null, null, null);
        assertEquals(lossG, lossOnly, 1e-6 * Math.abs(lossG), "the loss alone");
        int[] bad = targets.clone();
        bad[3] = vocab;
        assertThrows(IllegalArgumentException.class,
                () -> gpu.crossEntropy(x.g, head.g, vocab, bad, 1, null, null, null));
    }

    @ParameterizedTest(name = "{0} of 64 rows scored")
    @CsvSource({"1", "5", "32"})
    void aLossOverFewScoredRowsTakesOnlyThoseRows(int scored) {
        // at most half the rows scored: the backend gathers them and runs the head over those rows only
        int n = 64;
        int d = 24;
        int vocab = 1000;
        Pair x = buffers(n, d, 1);
        Param head = param(0, 0.3, 1003, d);
        int[] targets = new int[n];
        java.util.Arrays.fill(targets, TrainingBackend.IGNORE_INDEX);
        for (int j = 0; j < scored; j++) {
            targets[(j * 37 + 11) % n] = random.nextInt(vocab);
        }
        Pair dx = buffers(n, d, 0.1);
        Pair dhead = buffers(1003, d, 0.1);
        double scale = 1.0 / scored;
        double lossC = cpu.crossEntropy(x.c, head.c, vocab, targets, scale, dx.c, dhead.c, null);
        double lossG = gpu.crossEntropyLater(x.g, head.g, vocab, targets, scale, dx.g, dhead.g).value();
        // a sum of logsumexps of about log(vocab) each, every one within a few float32 roundings
        assertEquals(lossC, lossG, 1e-5 * Math.abs(lossC), "summed loss");
        // unscored rows of dx keep what they held; scored ones add the gradient
        dx.same("crossEntropy dx", MIXER_TOL);
        dhead.same("crossEntropy dhead", MIXER_TOL);
        // scoring (the argmax read back) takes the gathered rows too: -1 where there is no target, as over all rows
        int[] argmaxC = new int[n];
        int[] argmaxG = new int[n];
        java.util.Arrays.fill(argmaxG, 7);
        double scoredC = cpu.crossEntropy(x.c, head.c, vocab, targets, scale, null, null, argmaxC);
        double scoredG = gpu.crossEntropy(x.g, head.g, vocab, targets, scale, null, null, argmaxG);
        assertEquals(scoredC, scoredG, 1e-5 * Math.abs(scoredC), "summed loss with the argmax");
        for (int i = 0; i < n; i++) {
            if (targets[i] == TrainingBackend.IGNORE_INDEX) {
                assertEquals(-1, argmaxG[i], "argmax of row " + i + ", which has no target");
            } else {
                assertEquals(argmaxC[i], argmaxG[i], "argmax of row " + i);
            }
        }
    }

    @Test
    void optimizerOpsMatch() {
        int rows = 7;
        int cols = 429; // 3003 values: more than one block of partial sums, not a multiple of one
        Pair g = buffers(rows, cols, 0.01);
        double sc = cpu.sumOfSquares(g.c);
        double sg = gpu.sumOfSquares(g.g);
        assertEquals(sc, sg, 1e-6 * sc, "sum of squares (float32 squares summed in double)");
        cpu.scale(g.c, 0.37);
        gpu.scale(g.g, 0.37);
        // two roundings of at most 2^-24 relative each (the factor to float32, then the product): 2^-23 = 1.19e-7
        // of each value, so of the largest
        g.same("scale", 1.2e-7);
        Param p = param(0, 0.5, rows, cols);
        Pair m = buffers(rows, cols, 0.001);
        Pair v = buffers(rows, cols, 0);
        for (int step = 1; step <= 3; step++) {
            cpu.adamw(p.c, g.c, m.c, v.c, 1e-3, 0.9, 0.95, 1e-8, 0.1, step);
            gpu.adamw(p.g, g.g, m.g, v.g, 1e-3, 0.9, 0.95, 1e-8, 0.1, step);
        }
        p.asPair().same("adamw parameters", 1e-6);
        m.same("adamw first moment", 1e-6);
        v.same("adamw second moment", 1e-6);
    }

    // ---------------------------------------------------------------- mixers

    @ParameterizedTest(name = "d {0}, kernel {1}, {2} x {3}")
    @CsvSource({"12, 3, 2, 37", "5, 4, 3, 1", "8, 1, 1, 66"})
    void baseConvForwardAndBackward(int dModel, int kernel, int batch, int seqLen) {
        MixerConfig.BaseConv cfg = new MixerConfig.BaseConv(dModel, kernel, true);
        int inner = cfg.innerWidth();
        int t = batch * seqLen;
        TokenBatch layout = TokenBatch.uniform(batch, seqLen);
        Pair u = buffers(t, 2 * inner, 1);
        Param taps = param(0, 0.5, inner, 1, kernel);
        Pair out = buffers(t, inner, 0);
        Pair conv = buffers(t, inner, 0);
        cpu.baseConv(cfg, u.c, taps.c, layout, null, out.c, conv.c);
        gpu.baseConv(cfg, u.g, taps.g, layout, null, out.g, conv.g);
        out.same("baseConv out", TOL);
        conv.same("baseConv conv output", TOL);
        Pair dout = buffers(t, inner, 1);
        Pair du = buffers(t, 2 * inner, 0.5);
        Pair dtaps = buffers(inner, kernel, 0.5);
        cpu.baseConvBackward(cfg, layout, u.c, taps.c, conv.c, dout.c, du.c, dtaps.c);
        gpu.baseConvBackward(cfg, layout, u.g, taps.g, conv.g, dout.g, du.g, dtaps.g);
        du.same("baseConv du", TOL);
        dtaps.same("baseConv dtaps", MIXER_TOL);
    }

    @ParameterizedTest(name = "{0} heads, f {1}, dh {2}, {3} x {4}")
    @CsvSource({"2, 16, 64, 2, 70", "1, 32, 112, 1, 129", "3, 16, 24, 2, 5"})
    void linearAttentionForwardAndBackward(int heads, int f, int dh, int batch, int seqLen) {
        MixerConfig.LinearAttention cfg = new MixerConfig.LinearAttention(heads * dh, heads, f, dh, 1e-12);
        int t = batch * seqLen;
        TokenBatch layout = TokenBatch.uniform(batch, seqLen);
        // feature maps of q and k scaled as the model's projections leave them (sums of order 1)
        Pair q = buffers(t, heads * f, 0.5);
        Pair k = buffers(t, heads * f, 0.5);
        Pair v = buffers(t, heads * dh, 1);
        Pair out = buffers(t, heads * dh, 0);
        cpu.linearAttention(cfg, q.c, k.c, v.c, layout, null, out.c);
        gpu.linearAttention(cfg, q.g, k.g, v.g, layout, null, out.g);
        out.same("linearAttention out", MIXER_TOL);
        Pair dout = buffers(t, heads * dh, 1);
        Pair dq = buffers(t, heads * f, 0.5);
        Pair dk = buffers(t, heads * f, 0.5);
        Pair dv = buffers(t, heads * dh, 0.5);
        cpu.linearAttentionBackward(cfg, layout, q.c, k.c, v.c, dout.c, dq.c, dk.c, dv.c);
        gpu.linearAttentionBackward(cfg, layout, q.g, k.g, v.g, dout.g, dq.g, dk.g, dv.g);
        dq.same("linearAttention dq", MIXER_TOL);
        dk.same("linearAttention dk", MIXER_TOL);
        dv.same("linearAttention dv", MIXER_TOL);
    }

    @ParameterizedTest(name = "{0} heads of {1}, window {2}, rotary {3}, {4} x {5}")
    @CsvSource({"2, 64, 0, 32, 2, 37", "2, 64, 3, 64, 1, 70", "1, 112, 2147483647, 112, 2, 65",
            "3, 16, 5, 0, 1, 129"})
    void attentionForwardAndBackward(int heads, int dh, int window, int rotaryDim, int batch, int seqLen) {
        MixerConfig.Attention cfg = new MixerConfig.Attention(heads * dh, heads, dh, window, rotaryDim, 10000, false,
                1 / Math.sqrt(dh), null, null);
        int t = batch * seqLen;
        int d = heads * dh;
        TokenBatch layout = TokenBatch.uniform(batch, seqLen);
        Pair qkv = buffers(t, 3 * d, 1);
        Pair out = buffers(t, d, 0);
        Pair lse = buffers(t, heads, 0);
        cpu.attention(cfg, qkv.c, layout, null, out.c, lse.c);
        gpu.attention(cfg, qkv.g, layout, null, out.g, lse.g);
        out.same("attention out", MIXER_TOL);
        lse.same("attention lse", MIXER_TOL);
        Pair dout = buffers(t, d, 1);
        Pair dqkv = buffers(t, 3 * d, 0.5);
        cpu.attentionBackward(cfg, layout, qkv.c, out.c, lse.c, dout.c, dqkv.c);
        gpu.attentionBackward(cfg, layout, qkv.g, out.g, lse.g, dout.g, dqkv.g);
        dqkv.same("attention dqkv", MIXER_TOL);
    }

    @Test
    void opsRefuseMismatchedShapes() {
        Pair x = buffers(4, 6, 1);
        Param w = param(0, 1, 5, 7);
        Pair dout = buffers(4, 5, 1);
        Weight wg = w.g;
        assertThrows(IllegalArgumentException.class, () -> gpu.matmulBackward(x.g, wg, dout.g, null, null, null));
    }
}
