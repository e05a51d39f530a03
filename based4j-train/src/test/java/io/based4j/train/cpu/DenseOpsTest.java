package io.based4j.train.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.cpu.ReferenceBackend;
import io.based4j.config.MixerConfig;
import io.based4j.tensor.Tensor;
import io.based4j.train.GradCheck;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The dense training kernels: forward against plain scalar loops, backward against finite differences (loss
 * {@code sum(out * R)} for a fixed random R, analytic gradient from the backward with {@code dout = R}), backward
 * accumulation, and the forward against the float32 inference reference. Sizes are deliberately not multiples of
 * the vector width or of the 4-row matmul block.
 */
class DenseOpsTest {
    private final SplittableRandom rnd = new SplittableRandom(20240229);

    private double[] random(int n) {
        return GradCheck.random(rnd, n, 1.0);
    }

    /** |got - want| <= tol * max(1, |want|) element-wise. */
    private static void assertClose(String what, double[] want, double[] got, double tol) {
        assertEquals(want.length, got.length, what + ": length");
        for (int i = 0; i < want.length; i++) {
            double err = Math.abs(got[i] - want[i]);
            if (!(err <= tol * Math.max(1, Math.abs(want[i])))) {
                fail(what + ": element " + i + " want " + want[i] + " got " + got[i] + " (|diff| " + err + ")");
            }
        }
    }

    /** Calling a backward twice into the same gradients must give twice the gradient of one call. */
    private static void assertDoubled(String what, double[] once, double[] twice) {
        double[] want = new double[once.length];
        for (int i = 0; i < once.length; i++) {
            want[i] = 2 * once[i];
        }
        assertClose(what + " accumulates", want, twice, 1e-13);
    }

    // ------------------------------------------------------------------ matmul

    private static double[] matmulRef(double[] x, int n, int k, double[] w, int m, double[] bias) {
        double[] out = new double[n * m];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < m; j++) {
                double s = bias == null ? 0 : bias[j];
                for (int l = 0; l < k; l++) {
                    s += x[i * k + l] * w[j * k + l];
                }
                out[i * m + j] = s;
            }
        }
        return out;
    }

    @Test
    void matmulForwardMatchesScalarLoop() {
        int[][] shapes = {{7, 13, 5}, {1, 1, 1}, {37, 150, 70}, {9, 64, 33}};
        for (int[] s : shapes) {
            int n = s[0], k = s[1], m = s[2];
            double[] x = random(n * k);
            double[] w = random(m * k);
            double[] b = random(m);
            double[] out = new double[n * m];
            java.util.Arrays.fill(out, 42); // must be overwritten
            DenseOps.matmul(x, n, k, w, m, b, out);
            assertClose("matmul " + n + "x" + k + "x" + m, matmulRef(x, n, k, w, m, b), out, 1e-12);
            DenseOps.matmul(x, n, k, w, m, null, out);
            assertClose("matmul no bias " + n + "x" + k + "x" + m, matmulRef(x, n, k, w, m, null), out, 1e-12);
        }
    }

    @Test
    void matmulGradients() {
        int n = 7, k = 13, m = 5;
        double[] x = random(n * k);
        double[] w = random(m * k);
        double[] b = random(m);
        double[] r = random(n * m);
        double[] out = new double[n * m];
        java.util.function.DoubleSupplier loss = () -> {
            DenseOps.matmul(x, n, k, w, m, b, out);
            return GradCheck.dot(out, r);
        };
        double[] dx = new double[n * k];
        double[] dw = new double[m * k];
        double[] db = new double[m];
        DenseOps.matmulBackward(x, n, k, w, m, r, dx, dw, db);
        GradCheck.check("matmul dx", loss, x, dx);
        GradCheck.check("matmul dw", loss, w, dw);
        GradCheck.check("matmul db", loss, b, db);

        double[] dx2 = dx.clone(), dw2 = dw.clone(), db2 = db.clone();
        DenseOps.matmulBackward(x, n, k, w, m, r, dx2, dw2, db2);
        assertDoubled("matmul dx", dx, dx2);
        assertDoubled("matmul dw", dw, dw2);
        assertDoubled("matmul db", db, db2);

        // dx and db are optional
        double[] dwOnly = new double[m * k];
        DenseOps.matmulBackward(x, n, k, w, m, r, null, dwOnly, null);
        assertArrayEquals(dw, dwOnly);
    }

    /** Larger sizes, several depth tiles (n = 300 rows summed into dw), against scalar loops. */
    @Test
    void matmulBackwardMatchesScalarLoops() {
        int n = 300, k = 150, m = 70;
        double[] x = random(n * k);
        double[] w = random(m * k);
        double[] g = random(n * m);
        double[] dx = new double[n * k], dw = new double[m * k], db = new double[m];
        DenseOps.matmulBackward(x, n, k, w, m, g, dx, dw, db);
        double[] wantDx = new double[n * k], wantDw = new double[m * k], wantDb = new double[m];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < m; j++) {
                double go = g[i * m + j];
                wantDb[j] += go;
                for (int l = 0; l < k; l++) {
                    wantDx[i * k + l] += go * w[j * k + l];
                    wantDw[j * k + l] += go * x[i * k + l];
                }
            }
        }
        assertClose("matmul dx (large)", wantDx, dx, 1e-12);
        assertClose("matmul dw (large)", wantDw, dw, 1e-12);
        assertClose("matmul db (large)", wantDb, db, 1e-12);
    }

    /**
     * Exactness contract: every output element is the same fused multiply-add chain over fixed depth tiles, added
     * tile by tile, whichever block, panel, thread or vector width computed it. So the kernel must agree bit for bit
     * with that chain written out per element (which also shows the result cannot depend on the thread count).
     */
    @Test
    void matmulIsBitIdenticalToTheFixedOrderChain() {
        int n = 300, k = 150, m = 70;
        int tile = Gemm.DEPTH_TILE;
        double[] x = random(n * k);
        double[] w = random(m * k);
        double[] b = random(m);
        double[] out = new double[n * m];
        DenseOps.matmul(x, n, k, w, m, b, out);
        double[] want = new double[n * m];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < m; j++) {
                double c = b[j];
                for (int q0 = 0; q0 < k; q0 += tile) {
                    double acc = 0;
                    for (int q = q0; q < Math.min(k, q0 + tile); q++) {
                        acc = Math.fma(x[i * k + q], w[j * k + q], acc);
                    }
                    c += acc;
                }
                want[i * m + j] = c;
            }
        }
        assertArrayEquals(want, out, "matmul forward bits");

        double[] g = random(n * m);
        double[] dw = new double[m * k];
        DenseOps.matmulBackward(x, n, k, w, m, g, null, dw, null);
        double[] wantDw = new double[m * k];
        for (int j = 0; j < m; j++) {
            for (int l = 0; l < k; l++) {
                double c = 0;
                for (int q0 = 0; q0 < n; q0 += tile) {
                    double acc = 0;
                    for (int q = q0; q < Math.min(n, q0 + tile); q++) {
                        acc = Math.fma(g[q * m + j], x[q * k + l], acc);
                    }
                    c += acc;
                }
                wantDw[j * k + l] = c;
            }
        }
        assertArrayEquals(wantDw, dw, "matmul dw bits");
        double[] again = new double[m * k];
        DenseOps.matmulBackward(x, n, k, w, m, g, null, again, null);
        assertArrayEquals(dw, again, "a second call gives the same bits");
    }

    @Test
    void matmulRejectsInconsistentSizes() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DenseOps.matmul(new double[10], 2, 5, new double[14], 3, null, new double[6]));
        assertTrue(e.getMessage().startsWith("w "), e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> DenseOps.matmul(new double[10], 2, 5, new double[15], 3, new double[2], new double[6]));
        assertTrue(e.getMessage().startsWith("bias "), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> DenseOps.matmulBackward(new double[10], 2, 5,
                new double[15], 3, new double[5], null, new double[15], null));
        assertTrue(e.getMessage().startsWith("dout "), e.getMessage());
    }

    // ------------------------------------------------------------------ RMSNorm

    @Test
    void rmsNormForwardAndGradients() {
        int n = 7, d = 13;
        double eps = 1e-5;
        double[] x = random(n * d);
        double[] w = random(d);
        double[] out = new double[n * d];
        double[] rstd = new double[n];
        DenseOps.rmsNorm(x, n, d, w, eps, out, rstd);
        double[] want = new double[n * d];
        double[] wantR = new double[n];
        for (int i = 0; i < n; i++) {
            double ss = 0;
            for (int j = 0; j < d; j++) {
                ss += x[i * d + j] * x[i * d + j];
            }
            wantR[i] = 1 / Math.sqrt(ss / d + eps);
            for (int j = 0; j < d; j++) {
                want[i * d + j] = x[i * d + j] * wantR[i] * w[j];
            }
        }
        assertClose("rmsNorm out", want, out, 1e-12);
        assertClose("rmsNorm rstd", wantR, rstd, 1e-12);

        double[] r = random(n * d);
        java.util.function.DoubleSupplier loss = () -> {
            DenseOps.rmsNorm(x, n, d, w, eps, out, rstd);
            return GradCheck.dot(out, r);
        };
        loss.getAsDouble();
        double[] dx = new double[n * d];
        double[] dw = new double[d];
        DenseOps.rmsNormBackward(x, n, d, w, rstd, r, dx, dw);
        GradCheck.check("rmsNorm dx", loss, x, dx);
        GradCheck.check("rmsNorm dw", loss, w, dw);
        loss.getAsDouble(); // restores rstd of the unperturbed x
        double[] dx2 = dx.clone(), dw2 = dw.clone();
        DenseOps.rmsNormBackward(x, n, d, w, rstd, r, dx2, dw2);
        assertDoubled("rmsNorm dx", dx, dx2);
        assertDoubled("rmsNorm dw", dw, dw2);
    }

    // ------------------------------------------------------------------ SwiGLU

    @Test
    void swigluForwardAndGradients() {
        int n = 7, h = 13;
        double[] a = GradCheck.random(rnd, n * 2 * h, 4.0); // gates well into both tails of the sigmoid
        double[] out = new double[n * h];
        DenseOps.swiglu(a, n, h, out);
        double[] want = new double[n * h];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < h; j++) {
                double g = a[i * 2 * h + h + j];
                want[i * h + j] = a[i * 2 * h + j] * g / (1 + Math.exp(-g));
            }
        }
        assertClose("swiglu", want, out, 1e-12);

        double[] r = random(n * h);
        java.util.function.DoubleSupplier loss = () -> {
            DenseOps.swiglu(a, n, h, out);
            return GradCheck.dot(out, r);
        };
        double[] da = new double[a.length];
        DenseOps.swigluBackward(a, n, h, r, da);
        GradCheck.check("swiglu da", loss, a, da);
        double[] da2 = da.clone();
        DenseOps.swigluBackward(a, n, h, r, da2);
        assertDoubled("swiglu da", da, da2);
    }

    // ------------------------------------------------------------------ embedding

    @Test
    void embeddingForwardAndSparseGradient() {
        int rows = 11, d = 13;
        int[] ids = {3, 0, 3, 10, 7, 3, 0, 9, 10};
        double[] table = random(rows * d);
        double[] out = new double[ids.length * d];
        DenseOps.embedding(table, d, ids, out);
        for (int i = 0; i < ids.length; i++) {
            for (int j = 0; j < d; j++) {
                assertEquals(table[ids[i] * d + j], out[i * d + j]);
            }
        }
        double[] r = random(ids.length * d);
        java.util.function.DoubleSupplier loss = () -> {
            DenseOps.embedding(table, d, ids, out);
            return GradCheck.dot(out, r);
        };
        double[] dt = new double[rows * d];
        DenseOps.embeddingBackward(ids, d, r, dt);
        GradCheck.check("embedding dtable", loss, table, dt);
        for (int row : new int[] {1, 2, 4, 5, 6, 8}) { // unused ids: untouched
            for (int j = 0; j < d; j++) {
                assertEquals(0.0, dt[row * d + j], "row " + row + " is not used");
            }
        }
        double[] dt2 = dt.clone();
        DenseOps.embeddingBackward(ids, d, r, dt2);
        assertDoubled("embedding dtable", dt, dt2);
        assertThrows(IllegalArgumentException.class,
                () -> DenseOps.embedding(table, d, new int[] {0, rows}, new double[2 * d]));
        assertThrows(IllegalArgumentException.class,
                () -> DenseOps.embeddingBackward(new int[] {-1}, d, new double[d], new double[rows * d]));
    }

    // ------------------------------------------------------------------ BaseConv

    /** Per sequence, per channel, with explicit zeros before each sequence's start. */
    private static double[][] baseConvRef(double[] u, int batch, int seqLen, int inner, double[] w, int kernel) {
        int n = batch * seqLen;
        double[] c = new double[n * inner];
        double[] out = new double[n * inner];
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t < seqLen; t++) {
                int row = b * seqLen + t;
                for (int ch = 0; ch < inner; ch++) {
                    double s = 0;
                    for (int j = 0; j < kernel; j++) {
                        int src = t - (kernel - 1) + j;
                        double v = src < 0 ? 0 : u[(b * seqLen + src) * 2 * inner + ch];
                        s += w[ch * kernel + j] * v;
                    }
                    c[row * inner + ch] = s;
                    out[row * inner + ch] = s / (1 + Math.exp(-s)) * u[row * 2 * inner + inner + ch];
                }
            }
        }
        return new double[][] {c, out};
    }

    @Test
    void baseConvForwardAndGradients() {
        int[][] shapes = {{2, 6, 5, 3}, {3, 2, 4, 4}, {1, 9, 7, 1}}; // batch, seqLen, inner, kernel (incl. kernel > seqLen)
        for (int[] s : shapes) {
            int batch = s[0], seqLen = s[1], inner = s[2], kernel = s[3];
            int n = batch * seqLen;
            String name = "baseConv " + java.util.Arrays.toString(s);
            double[] u = GradCheck.random(rnd, n * 2 * inner, 1.0);
            double[] w = GradCheck.random(rnd, inner * kernel, 1.0);
            double[] c = new double[n * inner];
            double[] out = new double[n * inner];
            DenseOps.baseConv(u, batch, seqLen, inner, w, kernel, c, out);
            double[][] want = baseConvRef(u, batch, seqLen, inner, w, kernel);
            assertClose(name + " c", want[0], c, 1e-12);
            assertClose(name + " out", want[1], out, 1e-12);

            double[] r = random(n * inner);
            java.util.function.DoubleSupplier loss = () -> {
                DenseOps.baseConv(u, batch, seqLen, inner, w, kernel, c, out);
                return GradCheck.dot(out, r);
            };
            loss.getAsDouble();
            double[] du = new double[u.length];
            double[] dw = new double[w.length];
            DenseOps.baseConvBackward(u, batch, seqLen, inner, w, kernel, c, r, du, dw);
            GradCheck.check(name + " du", loss, u, du);
            GradCheck.check(name + " dconvW", loss, w, dw);
            loss.getAsDouble();
            double[] du2 = du.clone(), dw2 = dw.clone();
            DenseOps.baseConvBackward(u, batch, seqLen, inner, w, kernel, c, r, du2, dw2);
            assertDoubled(name + " du", du, du2);
            assertDoubled(name + " dconvW", dw, dw2);
        }
    }

    @Test
    void addAccumulates() {
        double[] acc = random(37);
        double[] x = random(37);
        double[] want = new double[37];
        for (int i = 0; i < 37; i++) {
            want[i] = acc[i] + x[i];
        }
        DenseOps.add(acc, x);
        assertArrayEquals(want, acc);
        assertThrows(IllegalArgumentException.class, () -> DenseOps.add(new double[3], new double[4]));
    }

    // ------------------------------------------------------------------ against the inference reference

    private static float[] floats(double[] v) {
        float[] f = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            f[i] = (float) v[i];
        }
        return f;
    }

    /** Rounds to float32 and back, so both sides start from the very same inputs. */
    private static double[] asFloat32(double[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = (float) v[i];
        }
        return out;
    }

    /** |ref - ours| <= rtol * |ours| + atol, element-wise. */
    private static void assertFloat32Close(String what, double[] ours, float[] ref, double rtol, double atol) {
        assertEquals(ours.length, ref.length, what + ": length");
        for (int i = 0; i < ours.length; i++) {
            double err = Math.abs(ref[i] - ours[i]);
            if (!(err <= rtol * Math.abs(ours[i]) + atol)) {
                fail(what + ": element " + i + " float64 " + ours[i] + " reference " + ref[i] + " |diff| " + err);
            }
        }
    }

    /**
     * The float64 training forward against the float32 inference reference on the same (float32-representable)
     * inputs of size O(1). The float64 side is exact to ~1e-15, so the differences are the reference's float32
     * roundings (unit roundoff u = 2^-24), bounded per op relative to the output:
     * <ul>
     *   <li>matmul: the reference sums in double and rounds once: at most u |y|; allowed 2u |y|.</li>
     *   <li>rmsNorm: rstd rounded to float32, then two float32 products: at most 3u |y|; allowed 4u |y|.</li>
     *   <li>swiglu: float32 exp, 1 + e, division, product: at most 4u |y| (the sigmoid's relative error never
     *       exceeds exp's); allowed 8u |y|.</li>
     *   <li>baseConv: c summed in double and rounded (u), then silu in float32 (4u) whose relative condition number
     *       |1 + c (1 - s)| is at most 4 for |c| <= 3 (three taps and inputs in [-1, 1]), then the gate product (u):
     *       at most 9u |y|; allowed 16u |y|.</li>
     * </ul>
     * An absolute 1e-30 only covers exact zeros. An indexing mistake is off by O(1) and fails all of these.
     */
    @Test
    void forwardAgreesWithFloat32InferenceReference() {
        double u32 = Math.pow(2, -24);
        double atol = 1e-30;
        try (Backend ref = new ReferenceBackend()) {
            // matmul with bias
            int n = 7, k = 13, m = 5;
            double[] x = asFloat32(random(n * k));
            double[] w = asFloat32(random(m * k));
            double[] b = asFloat32(random(m));
            double[] out = new double[n * m];
            DenseOps.matmul(x, n, k, w, m, b, out);
            Backend.Buffer refOut = ref.allocate(n, m);
            ref.matmul(ref.upload(floats(x), n, k), ref.weight(Tensor.ofFloats(floats(w), m, k)),
                    ref.weight(Tensor.ofFloats(floats(b), m)), refOut);
            assertFloat32Close("matmul", out, ref.download(refOut), 2 * u32, atol);

            // rmsNorm with the float32 eps the reference uses
            int d = 13;
            float eps = 1e-5f;
            double[] xn = asFloat32(random(n * d));
            double[] wn = asFloat32(random(d));
            double[] outN = new double[n * d];
            DenseOps.rmsNorm(xn, n, d, wn, eps, outN, new double[n]);
            Backend.Buffer refN = ref.allocate(n, d);
            ref.rmsNorm(ref.upload(floats(xn), n, d), ref.weight(Tensor.ofFloats(floats(wn), d)), eps, refN, null);
            assertFloat32Close("rmsNorm", outN, ref.download(refN), 4 * u32, atol);

            // swiglu
            int h = 13;
            double[] a = asFloat32(GradCheck.random(rnd, n * 2 * h, 4.0));
            double[] outS = new double[n * h];
            DenseOps.swiglu(a, n, h, outS);
            Backend.Buffer refS = ref.allocate(n, h);
            ref.swiglu(ref.upload(floats(a), n, 2 * h), refS);
            assertFloat32Close("swiglu", outS, ref.download(refS), 8 * u32, atol);

            // baseConv: two sequences of 6 from fresh (zero) states; inner = 2 * dModel
            int batch = 2, seqLen = 6, kernel = 3;
            MixerConfig.BaseConv cfg = new MixerConfig.BaseConv(3, kernel, true);
            int inner = cfg.innerWidth();
            double[] u = asFloat32(random(batch * seqLen * 2 * inner));
            double[] taps = asFloat32(random(inner * kernel));
            double[] c = new double[batch * seqLen * inner];
            double[] outC = new double[batch * seqLen * inner];
            DenseOps.baseConv(u, batch, seqLen, inner, taps, kernel, c, outC);
            Backend.MixerState state = ref.allocateState(cfg, batch, seqLen);
            TokenBatch tb = new TokenBatch(new int[] {0, 1}, new int[] {0, 0}, new int[] {seqLen, seqLen});
            Backend.Buffer refC = ref.allocate(batch * seqLen, inner);
            ref.baseConv(cfg, ref.upload(floats(u), batch * seqLen, 2 * inner),
                    ref.weight(Tensor.ofFloats(floats(taps), inner, 1, kernel)), tb, state, refC, null);
            assertFloat32Close("baseConv", outC, ref.download(refC), 16 * u32, atol);
        }
    }
}
