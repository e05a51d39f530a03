package io.based4j.backend;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.backend.cpu.CpuBackend;
import io.based4j.backend.cpu.ReferenceBackend;
import io.based4j.config.MixerConfig;
import io.based4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * Every operation of the fast {@link CpuBackend} against the scalar {@link ReferenceBackend} on random inputs of
 * awkward sizes (not multiples of the vector width, of the 4x4 matmul tile or of the 64-token linear-attention
 * chunk). Inputs are drawn fresh each run; the seed is printed in every failure message and can be fixed with
 * {@code -Dbased4j.seed=...} to reproduce a failure.
 *
 * <p>Tolerances: the reference accumulates dot products in double and rounds once, the fast backend accumulates
 * in float32 (unit roundoff u = 2^-24 ~ 6e-8) over vector lanes. A sum of k float32 terms then differs from the
 * exact sum by at most about k * u * sum|terms| and typically by sqrt(k) * u * sum|terms|; the bounds below are
 * written as {@code atol + rtol * |reference|} with the absolute part proportional to the magnitude of the terms
 * that were summed, so that they hold for any input while an indexing or state mistake (errors of O(1)) fails.
 * Recurrent states are compared indirectly: a sequence is continued and the outputs of the continuation compared.
 */
class CpuBackendCrossCheckTest {
    private final long seed = Long.getLong("based4j.seed", System.nanoTime());
    private final SplittableRandom rnd = new SplittableRandom(seed);
    private final Backend cpu = new CpuBackend();
    private final Backend ref = new ReferenceBackend();

    /** Largest observed |diff| / bound of this test, printed with -Dbased4j.verbose=true to see the margins. */
    private double worstRatio;
    private String worstWhat = "";

    @AfterEach
    void close() {
        cpu.close();
        ref.close();
        if (Boolean.getBoolean("based4j.verbose")) {
            System.out.println("closest to its bound: " + worstWhat + " at " + worstRatio + " of the bound");
        }
    }

    // ------------------------------------------------------------------ helpers

    private float[] uniform(int n, double lo, double hi) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (lo + (hi - lo) * rnd.nextDouble());
        }
        return v;
    }

    private float[] uniform(int n) {
        return uniform(n, -1, 1);
    }

    private float[] gaussian(int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) rnd.nextGaussian();
        }
        return v;
    }

    /** The values a tensor really holds (bf16 rounding applied). */
    static float[] values(Tensor t) {
        return t.toFloatArray();
    }

    private String ctx(String what) {
        return what + " [seed=" + seed + " -Dbased4j.seed=" + seed + "]";
    }

    /**
     * Fails unless {@code |got[i] - want[i]| <= atol[i] + rtol * |want[i]|} for every i (atol per element; pass
     * null for the scalar {@code atol0}). The message names the worst element.
     */
    private void assertClose(String what, float[] want, float[] got, float[] atol, double atol0, double rtol) {
        assertEquals(want.length, got.length, ctx(what + ": output length"));
        int worst = -1;
        double worstExcess = 0;
        double maxErr = 0;
        for (int i = 0; i < want.length; i++) {
            double err = Math.abs((double) got[i] - want[i]);
            if (Double.isNaN(got[i]) != Double.isNaN(want[i])) {
                fail(ctx(what + ": NaN mismatch at " + i + ": reference " + want[i] + ", cpu " + got[i]));
            }
            double bound = (atol == null ? atol0 : atol[i]) + rtol * Math.abs(want[i]);
            maxErr = Math.max(maxErr, err);
            if (bound > 0 && err / bound > worstRatio) {
                worstRatio = err / bound;
                worstWhat = what;
            }
            if (err > bound && err - bound > worstExcess) {
                worstExcess = err - bound;
                worst = i;
            }
        }
        if (worst >= 0) {
            double bound = (atol == null ? atol0 : atol[worst]) + rtol * Math.abs(want[worst]);
            fail(ctx(what + ": element " + worst + " of " + want.length + ": reference " + want[worst] + ", cpu "
                    + got[worst] + ", |diff| " + Math.abs(got[worst] - want[worst]) + " > bound " + bound
                    + " (max |diff| " + maxErr + ")"));
        }
    }

    // ------------------------------------------------------------------ dense ops

    /**
     * matmul: per output element the bound is {@code 1e-6 * sqrt(k) * sum_l |x_l w_l|} plus {@code 2^-23 |y|} for the
     * reference's final rounding. 1e-6 is ~17 u, so the bound covers the lane-split float32 accumulation with a wide
     * margin (worst case (k/L + L) u for L lanes, at most k u ~ 4e-6 * mag for k = 67, versus 8e-6 * mag allowed).
     */
    private void checkMatmul(int n, int k, int m, boolean withBias, boolean useBf16, int[] rows) {
        float[] x = uniform(n * k);
        float[] wv = uniform(m * k);
        Tensor wt = useBf16 ? Tensor.ofBf16(wv, m, k) : Tensor.ofFloats(wv, m, k);
        float[] w = values(wt);
        Tensor bt = null;
        float[] b = null;
        if (withBias) {
            bt = useBf16 ? Tensor.ofBf16(uniform(m), m) : Tensor.ofFloats(uniform(m), m);
            b = values(bt);
        }
        int outRows = rows == null ? n : rows.length;
        float[] atol = new float[outRows * m];
        for (int i = 0; i < outRows; i++) {
            int src = rows == null ? i : rows[i];
            for (int j = 0; j < m; j++) {
                double mag = b == null ? 0 : Math.abs(b[j]);
                for (int l = 0; l < k; l++) {
                    mag += Math.abs((double) x[src * k + l] * w[j * k + l]);
                }
                atol[i * m + j] = (float) (1e-6 * Math.sqrt(k) * mag + 1e-30);
            }
        }
        float[][] got = new float[2][];
        Backend[] bs = {ref, cpu};
        for (int t = 0; t < 2; t++) {
            Backend be = bs[t];
            Backend.Buffer xb = be.upload(x, n, k);
            Backend.Buffer out = be.allocate(outRows, m);
            if (rows == null) {
                be.matmul(xb, be.weight(wt), bt == null ? null : be.weight(bt), out);
            } else {
                be.matmulRows(xb, rows, be.weight(wt), out);
            }
            got[t] = be.download(out);
        }
        String what = (rows == null ? "matmul" : "matmulRows " + java.util.Arrays.toString(rows)) + " n=" + n
                + " k=" + k + " m=" + m + " bias=" + withBias + " " + (useBf16 ? "bf16" : "f32");
        assertClose(what, got[0], got[1], atol, 0, 0x1p-23);
    }

    @Test
    void matmulMatchesReference() {
        for (boolean useBf16 : new boolean[] {false, true}) {
            for (int n : new int[] {1, 3, 4, 5, 7, 17}) {
                for (int k : new int[] {1, 15, 17, 33, 67}) {
                    for (int m : new int[] {1, 3, 5, 19}) {
                        checkMatmul(n, k, m, false, useBf16, null);
                        checkMatmul(n, k, m, true, useBf16, null);
                    }
                }
            }
            // large enough that the fast backend splits the output features over several threads
            checkMatmul(37, 515, 131, true, useBf16, null);
        }
    }

    @Test
    void matmulRowsMatchesReference() {
        for (boolean useBf16 : new boolean[] {false, true}) {
            for (int n : new int[] {1, 3, 7, 17}) {
                for (int k : new int[] {1, 15, 33, 67}) {
                    for (int m : new int[] {1, 5, 19}) {
                        for (int count : new int[] {1, 3, 4, 6, 9}) {
                            int[] rows = new int[count];
                            for (int i = 0; i < count; i++) {
                                rows[i] = rnd.nextInt(n);
                            }
                            if (count > 2) {
                                rows[count - 1] = rows[0]; // a repeated row
                            }
                            checkMatmul(n, k, m, false, useBf16, rows);
                        }
                    }
                }
            }
        }
    }

    /**
     * rmsNorm: the fast backend sums the n squares in float32 (all positive, so relative error at most ~n u and
     * typically sqrt(n) u), then two float32 products: relative bound 1e-6 * sqrt(n) + 1e-6.
     */
    @Test
    void rmsNormMatchesReference() {
        for (int rows : new int[] {1, 3, 5, 7, 17, 37}) {
            for (int cols : new int[] {1, 5, 15, 17, 67, 300}) {
                float[] x = uniform(rows * cols);
                Tensor w = Tensor.ofFloats(uniform(cols, 0.5, 1.5), cols);
                float eps = 1e-5f;
                float[][] got = new float[2][];
                Backend[] bs = {ref, cpu};
                for (int t = 0; t < 2; t++) {
                    Backend.Buffer out = bs[t].allocate(rows, cols);
                    bs[t].rmsNorm(bs[t].upload(x, rows, cols), bs[t].weight(w), eps, out, null);
                    got[t] = bs[t].download(out);
                }
                assertClose("rmsNorm " + rows + "x" + cols, got[0], got[1], null, 1e-30,
                        1e-6 * Math.sqrt(cols) + 1e-6);
            }
        }
    }

    /** swiglu is elementwise, y * silu(g): a few roundings of float32 exp and divide, relative 1e-6. */
    @Test
    void swigluMatchesReference() {
        for (int rows : new int[] {1, 3, 7, 17}) {
            for (int h : new int[] {1, 5, 16, 33}) {
                float[] a = uniform(rows * 2 * h, -4, 4);
                float[][] got = new float[2][];
                Backend[] bs = {ref, cpu};
                for (int t = 0; t < 2; t++) {
                    Backend.Buffer out = bs[t].allocate(rows, h);
                    bs[t].swiglu(bs[t].upload(a, rows, 2 * h), out);
                    got[t] = bs[t].download(out);
                }
                assertClose("swiglu " + rows + "x" + h, got[0], got[1], null, 1e-30, 1e-6);
            }
        }
    }

    /** embedding copies rows: exact, for float32 and bfloat16 tables, with repeated ids. */
    @Test
    void embeddingMatchesReference() {
        for (boolean useBf16 : new boolean[] {false, true}) {
            for (int d : new int[] {1, 5, 17, 67}) {
                int vocab = 13;
                float[] table = uniform(vocab * d);
                Tensor t = useBf16 ? Tensor.ofBf16(table, vocab, d) : Tensor.ofFloats(table, vocab, d);
                int[] ids = new int[19];
                for (int i = 0; i < ids.length; i++) {
                    ids[i] = rnd.nextInt(vocab);
                }
                ids[5] = ids[0];
                ids[7] = vocab - 1;
                float[] want = new float[ids.length * d];
                float[] tv = values(t);
                for (int i = 0; i < ids.length; i++) {
                    System.arraycopy(tv, ids[i] * d, want, i * d, d);
                }
                for (Backend be : new Backend[] {ref, cpu}) {
                    Backend.Buffer out = be.allocate(ids.length, d);
                    be.embedding(be.weight(t), ids, out);
                    assertArrayEquals(want, be.download(out), ctx(be.name() + " embedding d=" + d + " bf16=" + useBf16));
                }
            }
        }
    }

    // ------------------------------------------------------------------ sequence mixers

    /** One sequence mixer call on one backend: inputs are host arrays, one per input buffer, rows = batch tokens. */
    @FunctionalInterface
    private interface MixerCall {
        Backend.Buffer run(Backend b, Backend.MixerState state, TokenBatch batch, List<Backend.Buffer> inputs);
    }

    /**
     * A step of a scenario: {@code {slot, length}} pairs run together in one call; a length of 0 resets the slot
     * instead (and is not part of the call).
     */
    private static int[][] step(int... slotLength) {
        int[][] s = new int[slotLength.length / 2][];
        for (int i = 0; i < s.length; i++) {
            s[i] = new int[] {slotLength[2 * i], slotLength[2 * i + 1]};
        }
        return s;
    }

    /**
     * Runs the same scenario (ragged prefills of several sequences in one batch, continuations of several tokens,
     * batched one-token steps, slot resets) on both backends from fresh states and compares every call's output.
     * Each input is drawn with {@code widths[i]} columns, gaussian when {@code gaussianInputs} else uniform(-1, 1).
     */
    private void runScenario(String what, MixerConfig cfg, int slots, List<int[][]> steps, int[] widths,
                             boolean gaussianInputs, int outCols, MixerCall call, double atol, double rtol) {
        int[] positions = new int[slots];
        int maxLength = 0;
        int[] simulated = new int[slots];
        for (int[][] s : steps) {
            for (int[] p : s) {
                simulated[p[0]] = p[1] == 0 ? 0 : simulated[p[0]] + p[1];
                maxLength = Math.max(maxLength, simulated[p[0]]);
            }
        }
        Backend.MixerState refState = ref.allocateState(cfg, slots, maxLength);
        Backend.MixerState cpuState = cpu.allocateState(cfg, slots, maxLength);
        int stepNo = 0;
        for (int[][] s : steps) {
            List<int[]> runs = new ArrayList<>();
            for (int[] p : s) {
                if (p[1] == 0) {
                    refState.reset(p[0]);
                    cpuState.reset(p[0]);
                    positions[p[0]] = 0;
                } else {
                    runs.add(p);
                }
            }
            if (runs.isEmpty()) {
                continue;
            }
            int[] bSlots = runs.stream().mapToInt(p -> p[0]).toArray();
            int[] bLengths = runs.stream().mapToInt(p -> p[1]).toArray();
            int[] bStarts = new int[bSlots.length];
            for (int i = 0; i < bSlots.length; i++) {
                bStarts[i] = positions[bSlots[i]];
            }
            TokenBatch batch = new TokenBatch(bSlots, bStarts, bLengths);
            int tokens = batch.totalTokens();
            List<float[]> inputs = new ArrayList<>();
            for (int w : widths) {
                inputs.add(gaussianInputs ? gaussian(tokens * w) : uniform(tokens * w));
            }
            float[][] got = new float[2][];
            Backend[] bs = {ref, cpu};
            Backend.MixerState[] states = {refState, cpuState};
            for (int t = 0; t < 2; t++) {
                List<Backend.Buffer> bufs = new ArrayList<>();
                for (int i = 0; i < widths.length; i++) {
                    bufs.add(bs[t].upload(inputs.get(i), tokens, widths[i]));
                }
                Backend.Buffer out = call.run(bs[t], states[t], batch, bufs);
                assertEquals(tokens, out.rows());
                assertEquals(outCols, out.cols());
                got[t] = bs[t].download(out);
            }
            assertClose(what + ", step " + stepNo + " slots " + java.util.Arrays.toString(bSlots) + " starts "
                    + java.util.Arrays.toString(bStarts) + " lengths " + java.util.Arrays.toString(bLengths),
                    got[0], got[1], null, atol, rtol);
            for (int i = 0; i < bSlots.length; i++) {
                positions[bSlots[i]] += bLengths[i];
            }
            stepNo++;
        }
    }

    /**
     * BaseConv: three float32 products summed (error ~3 u against the double sum of terms of O(1)), then float32
     * silu and the gate product in both: bound 1e-5 absolute plus 1e-5 relative for outputs of O(1).
     */
    @Test
    void baseConvMatchesReference() {
        for (int d : new int[] {1, 5, 17, 40, 131}) { // 131: 262 channels, more than one block of channels
            MixerConfig.BaseConv cfg = new MixerConfig.BaseConv(d, 3, true);
            int inner = cfg.innerWidth();
            Tensor taps = Tensor.ofFloats(uniform(inner * 3), inner, 1, 3);
            List<int[][]> steps = List.of(
                    step(2, 1, 0, 2, 3, 7),            // ragged prefill, shorter and longer than the kernel
                    step(3, 1, 2, 1, 0, 5, 1, 4),      // continue each, start slot 1
                    step(0, 1, 1, 1, 2, 1, 3, 1),      // batched one-token steps
                    step(2, 1, 0, 1),
                    step(1, 0, 1, 2, 3, 3),            // reset slot 1 and start it again
                    step(1, 1, 3, 1, 0, 9, 2, 2));
            runScenario("baseConv d=" + d, cfg, 4, steps, new int[] {2 * inner}, false, inner,
                    (b, st, batch, in) -> {
                        Backend.Buffer out = b.allocate(batch.totalTokens(), inner);
                        b.baseConv(cfg, in.get(0), b.weight(taps), batch, st, out, null);
                        return out;
                    }, 1e-5, 1e-5);
        }
    }

    /**
     * Linear attention with q, k ~ N(0, 1), so s = q.k / sqrt(f) is O(1) and every term of 1 + s + s^2/2 matters.
     * The output is a weighted mean of v (|v| <= 1) with weights >= 1/2 each. Both backends keep the state in float32;
     * the fast one sums the in-chunk part directly and the rest through merged features, the reference through the
     * full feature map. Numerator and denominator are sums of up to T ~ 220 terms (plus F <= 1057 state features),
     * each rounded relative to sums of |terms| comparable to the denominator, so the output error is about
     * sqrt(T + F) * u * max|v| ~ 2e-6 (observed: ~1e-6): bound 2e-5 absolute plus 2e-5 relative, ten times the
     * typical error (a wrong feature, chunk boundary or state gives errors of 1e-2 and more).
     */
    @Test
    void linearAttentionMatchesReference() {
        int[][] headShapes = {{3, 5}, {2, 16}, {1, 64}}; // {heads, head dim}
        for (int f : new int[] {1, 3, 8, 16, 24, 32}) {
            for (int[] hs : headShapes) {
                int heads = hs[0];
                int dh = hs[1];
                int d = heads * dh;
                MixerConfig.LinearAttention cfg = new MixerConfig.LinearAttention(d, heads, f, dh, 1e-12);
                List<int[][]> steps = List.of(
                        step(1, 150, 0, 1, 2, 64),          // longer than a chunk, a single token, exactly a chunk
                        step(2, 65, 1, 3, 0, 1),            // continue across chunk boundaries
                        step(0, 1, 1, 1, 2, 1),             // batched one-token steps
                        step(2, 1, 0, 1),
                        step(1, 0, 1, 70, 0, 2));           // reset slot 1 and prefill it again
                int qk = heads * f;
                runScenario("linearAttention f=" + f + " heads=" + heads + " dh=" + dh, cfg, 3, steps,
                        new int[] {qk, qk, d}, true, d,
                        (b, st, batch, in) -> {
                            Backend.Buffer out = b.allocate(batch.totalTokens(), d);
                            b.linearAttention(cfg, in.get(0), in.get(1), in.get(2), batch, st, out);
                            return out;
                        }, 2e-5, 2e-5);
            }
        }
    }

    /**
     * Softmax attention with q, k, v uniform(-1, 1): scores are float32 dot products of dh <= 16 terms (error
     * ~dh u |q||k| scale < 1e-6), the softmax and weighted sum of v in float32 over at most ~40 keys: the output,
     * a convex combination of v, differs by a few 1e-6 at most: bound 2e-5 absolute plus 2e-5 relative.
     */
    @Test
    void attentionMatchesReference() {
        int full = Integer.MAX_VALUE;
        int[][] shapes = {{3, 5}, {2, 16}, {1, 6}}; // {heads, head dim}
        for (int[] hs : shapes) {
            int heads = hs[0];
            int dh = hs[1];
            int d = heads * dh;
            List<Integer> rotaryDims = new ArrayList<>(List.of(0, 2 * (dh / 4)));
            if (dh % 2 == 0) {
                rotaryDims.add(dh);
            }
            for (int rd : rotaryDims.stream().distinct().toList()) {
                for (boolean interleaved : rd == 0 ? new boolean[] {false} : new boolean[] {false, true}) {
                    for (int window : new int[] {0, 1, 3, 8, full}) {
                        for (double scale : new double[] {1 / Math.sqrt(dh), 0.7}) {
                            double base = rnd.nextBoolean() ? 10000.0 : 500.0;
                            MixerConfig.Attention cfg = new MixerConfig.Attention(d, heads, dh, window, rd, base,
                                    interleaved, scale, false, false);
                            List<int[][]> steps = List.of(
                                    step(0, 13, 2, 1, 1, 20),      // ragged prefill, longer than the window
                                    step(1, 5, 0, 1, 2, 9),        // continue in pieces shorter and longer than it
                                    step(0, 1, 1, 1, 2, 1),        // batched one-token steps
                                    step(2, 1, 1, 1),
                                    step(0, 1, 1, 1, 2, 1),
                                    step(2, 0, 2, 4, 0, 2));       // reset slot 2 and prefill it again
                            runScenario("attention heads=" + heads + " dh=" + dh + " rotary=" + rd + " interleaved="
                                    + interleaved + " base=" + base + " window=" + (window == full ? "full" : window)
                                    + " scale=" + scale, cfg, 3, steps, new int[] {3 * d}, false, d,
                                    (b, st, batch, in) -> {
                                        Backend.Buffer out = b.allocate(batch.totalTokens(), d);
                                        b.attention(cfg, in.get(0), batch, st, out, null);
                                        return out;
                                    }, 2e-5, 2e-5);
                        }
                    }
                }
            }
        }
    }
}
