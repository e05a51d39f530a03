package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.U;
import static io.based4j.cuda.Near.U_BF16;
import static io.based4j.cuda.Near.abs;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static io.based4j.cuda.Near.toDouble;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.based4j.train.cpu.DenseOps;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The dense training kernels (embedding backward, RMSNorm forward with rstd and backward, SwiGLU backward) against
 * the float64 reference ops of {@link DenseOps}, in both precisions, on sizes that are multiples of nothing: rows
 * 77, 301, 9001 (more than 8 rows per block of the RMSNorm weight gradient) and widths 64, 112 and 781 (more than
 * one pass of a 256-thread block over a row).
 *
 * <p>Every gradient starts from random values, so the tests also check that the kernels add into it. The inputs are
 * floats (bf16 values in bf16), and the reference runs on exactly those values, so every difference is rounding in
 * the GPU's float32 arithmetic. The allowances are the classic a-priori bounds: a float32 sum of K terms done one
 * after the other errs by at most about {@code K u * sum|terms|} ({@link Near#U u} = 2^-24), whatever the order; each
 * test names K. The reference gives the sum of |terms| when it is run on absolute values.
 */
@GpuTest
class DenseBackwardKernelsTest {
    private static final int[][] SIZES = {{77, 64}, {301, 112}, {9001, 112}, {130, 781}};

    /** Float32 additions in a chain when a 256-thread block sums a row of d: d / 256 a thread, 5 a warp, 8 warps. */
    private static int blockChain(int d) {
        return (d + 255) / 256 + 5 + 8;
    }

    // ------------------------------------------------------------------ embedding

    /** Float32 in both precisions: dout and dtable are gradients. */
    @Test
    void embeddingBackwardAddsEachPositionIntoItsRow() {
        SplittableRandom r = new SplittableRandom(SEED);
        int[][] cases = {{301, 112, 37}, {2049, 64, 1000}};
        try (KernelRig rig = new KernelRig()) {
            for (int[] c : cases) {
                int n = c[0];
                int d = c[1];
                int rows = c[2];
                int[] ids = new int[n];
                for (int i = 0; i < n; i++) {
                    // half the positions on a few ids, so rows repeat many times
                    ids[i] = r.nextBoolean() ? r.nextInt(Math.min(rows, 5)) : r.nextInt(rows);
                }
                float[] dout = gaussian(r, n * d, 1);
                float[] table0 = gaussian(r, rows * d, 1);
                double[] want = toDouble(table0);
                DenseOps.embeddingBackward(ids, d, toDouble(dout), want);
                double[] mag = abs(toDouble(table0));
                DenseOps.embeddingBackward(ids, d, abs(toDouble(dout)), mag);
                int[] uses = new int[rows];
                int most = 0;
                for (int id : ids) {
                    most = Math.max(most, ++uses[id]);
                }
                // K = the most positions of one id, plus the addition into the row
                double[] bound = new double[mag.length];
                for (int i = 0; i < bound.length; i++) {
                    bound[i] = (most + 1) * U * mag[i];
                }
                String what = String.format("embedding backward n %d, d %d, %d rows", n, d, rows);

                long idsDev = rig.ints(ids);
                long doutDev = rig.floats(dout);
                long atomic = rig.floats(table0);
                rig.train.embeddingBackwardAtomic(idsDev, doutDev, atomic, n, d);
                float[] gotAtomic = rig.floats(atomic, rows * d);
                Near.within(what + ", atomic", want, gotAtomic, bound);

                TrainKernels.EmbeddingGroups groups = TrainKernels.embeddingGroups(ids, rows);
                long groupsDev = rig.ints(groups.layout());
                long grouped = rig.floats(table0);
                rig.train.embeddingBackwardGrouped(idsDev, groupsDev, groups.groups(), doutDev, grouped, d);
                float[] gotGrouped = rig.floats(grouped, rows * d);
                Near.within(what + ", grouped", want, gotGrouped, bound);

                long again = rig.floats(table0);
                rig.train.embeddingBackwardGrouped(idsDev, groupsDev, groups.groups(), doutDev, again, d);
                assertArrayEquals(gotGrouped, rig.floats(again, rows * d), what + ": the grouped form is deterministic"
                        + " [-Dbased4j.seed=" + SEED + "]");
                for (int row = 0; row < rows; row++) {
                    if (uses[row] == 0) {
                        for (int j = 0; j < d; j++) {
                            int i = row * d + j;
                            assertEquals(table0[i], gotAtomic[i], 0f, what + ": unused row " + row + " changed"
                                    + " (atomic)");
                            assertEquals(table0[i], gotGrouped[i], 0f, what + ": unused row " + row + " changed");
                        }
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ RMSNorm

    @ParameterizedTest
    @EnumSource(Precision.class)
    void rmsNormWritesRstdAndMatchesTheReference(Precision p) {
        SplittableRandom r = new SplittableRandom(SEED);
        float eps = 1e-5f;
        try (KernelRig rig = new KernelRig()) {
            for (int[] size : SIZES) {
                int n = size[0];
                int d = size[1];
                float[] x = gaussian(r, n * d, 3);
                float[] w = stored(p, plusOne(gaussian(r, d, 0.1)));
                double[] out = new double[n * d];
                double[] rstd = new double[n];
                DenseOps.rmsNorm(toDouble(x), n, d, toDouble(w), eps, out, rstd);

                long outDev = rig.zeros((long) n * d * p.bytes());
                long rstdDev = rig.zeros(4L * n);
                rig.train.rmsNormRstd(p, rig.floats(x), rig.values(p, w), outDev, rstdDev, n, d, eps);
                String what = String.format("rmsNorm %s n %d, d %d", p.suffix(), n, d);
                // sum of squares: K = blockChain(d) positive terms, then / d, + eps, 1 / sqrt rounded once: rstd's
                // relative error is at most (K / 2 + 3) u; the output adds two products (and the bf16 rounding)
                double rstdTol = (blockChain(d) / 2.0 + 3) * U;
                Near.relative(what + ": rstd", rstd, rig.floats(rstdDev, n), rstdTol);
                double outTol = rstdTol + 2 * U + (p == Precision.F32 ? 0 : U_BF16);
                Near.relative(what + ": output", out, rig.values(p, outDev, n * d), outTol);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void rmsNormBackwardAddsDxAndDw(Precision p) {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig()) {
            for (int[] size : SIZES) {
                int n = size[0];
                int d = size[1];
                float[] x = gaussian(r, n * d, 2);
                float[] w = stored(p, plusOne(gaussian(r, d, 0.1)));
                double[] xd = toDouble(x);
                double[] wd = toDouble(w);
                // the saved rstd as the GPU holds it (float); both sides read the same values
                double[] rstd64 = new double[n];
                DenseOps.rmsNorm(xd, n, d, wd, 1e-5, new double[n * d], rstd64);
                float[] rstd = new float[n];
                for (int i = 0; i < n; i++) {
                    rstd[i] = (float) rstd64[i];
                }
                double[] rs = toDouble(rstd);
                float[] dout = gaussian(r, n * d, 1);
                float[] dx0 = gaussian(r, n * d, 1);
                float[] dw0 = gaussian(r, d, 10);
                double[] wantDx = toDouble(dx0);
                double[] wantDw = toDouble(dw0);
                DenseOps.rmsNormBackward(xd, n, d, wd, rs, toDouble(dout), wantDx, wantDw);

                long xDev = rig.floats(x);
                long wDev = rig.values(p, w);
                long rstdDev = rig.floats(rstd);
                long doutDev = rig.floats(dout);
                long dxDev = rig.floats(dx0);
                long dwDev = rig.floats(dw0);
                long partial = rig.zeros(TrainKernels.rmsNormBackwardScratchBytes(n, d));
                rig.train.rmsNormBackward(p, xDev, wDev, rstdDev, doutDev, dxDev, dwDev, partial, n, d);
                String what = String.format("rmsNorm backward %s n %d, d %d", p.suffix(), n, d);

                // dx_j = r (g_j w_j - x_j c), c = r^2 dot / d: the dot is a blockChain(d)-term sum, so c errs by
                // K u r^2 sum|g w x| / d... times r |x_j| in dx_j; the rest is a handful (8) of roundings of the
                // terms and of the addition into dx
                double[] dxBound = new double[n * d];
                int k = blockChain(d);
                for (int i = 0; i < n; i++) {
                    double ri = rs[i];
                    double sum = 0;
                    for (int j = 0; j < d; j++) {
                        sum += Math.abs(dout[i * d + j] * wd[j] * x[i * d + j]);
                    }
                    for (int j = 0; j < d; j++) {
                        int e = i * d + j;
                        double mag = ri * (Math.abs(dout[e] * wd[j]) + Math.abs(x[e]) * ri * ri * sum / d)
                                + Math.abs(wantDx[e]);
                        dxBound[e] = (k + 8) * U * mag;
                    }
                }
                Near.within(what + ": dx", wantDx, rig.floats(dxDev, n * d), dxBound);

                // dw: R rows summed in a block's partial (two products each), then the partials in order, then the
                // addition into dw: K = R + blocks + 3 over sum_i |g x| r + |dw0|
                int rows = TrainKernels.rmsNormRowsPerBlock(n);
                int blocks = (n + rows - 1) / rows;
                double[] mag = abs(toDouble(dw0));
                DenseOps.rmsNormBackward(abs(xd), n, d, wd, rs, abs(toDouble(dout)), null, mag);
                double[] dwBound = new double[d];
                for (int j = 0; j < d; j++) {
                    dwBound[j] = (rows + blocks + 3) * U * mag[j];
                }
                float[] dw = rig.floats(dwDev, d);
                Near.within(what + ": dw (" + blocks + " blocks of " + rows + " rows)", wantDw, dw, dwBound);

                // without dx: the same dw, bit for bit (fixed summation order), and no dx touched
                long dwAgain = rig.floats(dw0);
                rig.train.rmsNormBackward(p, xDev, wDev, rstdDev, doutDev, 0, dwAgain, partial, n, d);
                assertArrayEquals(dw, rig.floats(dwAgain, d), what + ": dw is deterministic and independent of dx"
                        + " [-Dbased4j.seed=" + SEED + "]");
            }
        }
    }

    // ------------------------------------------------------------------ SwiGLU

    @ParameterizedTest
    @EnumSource(Precision.class)
    void swigluBackwardAddsIntoValueAndGate(Precision p) {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig()) {
            for (int[] size : SIZES) {
                int n = size[0];
                int h = size[1];
                float[] a = stored(p, gaussian(r, 2 * n * h, 2));
                float[] dout = gaussian(r, n * h, 1);
                float[] da0 = gaussian(r, 2 * n * h, 1);
                double[] want = toDouble(da0);
                DenseOps.swigluBackward(toDouble(a), n, h, toDouble(dout), want);

                long da = rig.floats(da0);
                rig.train.swigluBackward(p, rig.values(p, a), rig.floats(dout), da, n, h);
                // s = 1 / (1 + expf(-g)) errs by at most 4 u (expf: 2 ulp, then two roundings). Value: go g s, two
                // products more: 8 u of |go g s|. Gate: go y s (1 + g (1 - s)): 1 - s loses s's relative accuracy
                // (an absolute 5 u), so 16 u of |go y s| (1 + |g|). Both: one more rounding adding into da.
                double[] bound = new double[want.length];
                for (int i = 0; i < n; i++) {
                    for (int j = 0; j < h; j++) {
                        int v = i * 2 * h + j;
                        double y = a[v];
                        double g = a[v + h];
                        double s = 1 / (1 + Math.exp(-g));
                        double go = dout[i * h + j];
                        bound[v] = 8 * U * Math.abs(go * g * s) + 2 * U * Math.abs(want[v]);
                        bound[v + h] = 16 * U * Math.abs(go * y * s) * (1 + Math.abs(g))
                                + 2 * U * Math.abs(want[v + h]);
                    }
                }
                Near.within(String.format("swiglu backward %s n %d, h %d", p.suffix(), n, h), want,
                        rig.floats(da, 2 * n * h), bound);
            }
        }
    }

    private static float[] plusOne(float[] v) {
        for (int i = 0; i < v.length; i++) {
            v[i] += 1f;
        }
        return v;
    }
}
