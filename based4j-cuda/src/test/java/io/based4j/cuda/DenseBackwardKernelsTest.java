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
 * The dense training kernels (embedding backward, RMSNorm forward with rstd and backward, SwiGLU backward, column
 * sums) against the float64 reference ops of {@link DenseOps}, in both precisions, on sizes that are multiples of
 * nothing: rows 3 (fewer than a block has warps), 77, 301, 9001 (more than 8 rows per block of the RMSNorm weight
 * gradient) and widths 64, 112 and 781 (more than one pass of a 256-thread block over a row), 1028 and 1792 (the
 * bf16 row kernels' wider form, 1028 with a ragged last lane; 1792 is based-1b's d). In bf16 the widths that are
 * multiples of 4 run the row kernels, 781 the scalar ones.
 *
 * <p>Every gradient starts from random values, so the tests also check that the kernels add into it. The inputs are
 * floats (bf16 values in bf16), and the reference runs on exactly those values, so every difference is rounding in
 * the GPU's float32 arithmetic. The allowances are the classic a-priori bounds: a float32 sum of K terms done one
 * after the other errs by at most about {@code K u * sum|terms|} ({@link Near#U u} = 2^-24), whatever the order; each
 * test names K. The reference gives the sum of |terms| when it is run on absolute values.
 */
@GpuTest
class DenseBackwardKernelsTest {
    private static final int[][] SIZES = {{77, 64}, {301, 112}, {9001, 112}, {130, 781}, {3, 1028}, {33, 1792}};
    /** Sizes of the bf16 row kernels only, with based-360m's width 1024 over more rows than 396 blocks of 8. */
    private static final int[][] ROW_SIZES = {{77, 64}, {9001, 112}, {3, 1028}, {33, 1792}, {3500, 1024}};

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
                rig.train.embeddingBackwardGrouped(idsDev, groupsDev, n, rows, doutDev, grouped, d);
                float[] gotGrouped = rig.floats(grouped, rows * d);
                Near.within(what + ", grouped", want, gotGrouped, bound);

                long again = rig.floats(table0);
                rig.train.embeddingBackwardGrouped(idsDev, groupsDev, n, rows, doutDev, again, d);
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
                new RmsNormBackwardCase(rig, r, p, size[0], size[1], gaussian(r, size[0] * size[1], 1)).check();
            }
        }
    }

    /**
     * The bf16 row kernel reading dout in bf16 and writing the new dx rounded to bf16 beside it (what the next
     * product reads): the same dx and dw as from the same dout values in float32, bit for bit (only the loads
     * differ), both within the reference's bounds, and the copy is dx rounded to nearest even.
     */
    @Test
    void rmsNormBackwardReadsBf16DoutAndCopiesDx() {
        SplittableRandom r = new SplittableRandom(SEED);
        Precision p = Precision.BF16;
        try (KernelRig rig = new KernelRig()) {
            for (int[] size : ROW_SIZES) {
                int n = size[0];
                int d = size[1];
                RmsNormBackwardCase c = new RmsNormBackwardCase(rig, r, p, n, d,
                        stored(p, gaussian(r, n * d, 1)));
                float[][] viaFloat = c.check();
                long dx = rig.floats(c.dx0);
                long dw = rig.floats(c.dw0);
                long copy = rig.zeros(2L * n * d);
                rig.train.rmsNormBackward(p, c.xDev, c.wDev, c.rstdDev, rig.values(p, c.dout), Precision.BF16, dx,
                        copy, dw, c.partial, n, d);
                String what = String.format("rmsNorm backward, bf16 dout, n %d, d %d", n, d);
                float[] gotDx = rig.floats(dx, n * d);
                assertArrayEquals(viaFloat[0], gotDx, what + ": dx as from float32 dout [-Dbased4j.seed=" + SEED
                        + "]");
                assertArrayEquals(viaFloat[1], rig.floats(dw, d), what + ": dw as from float32 dout [-Dbased4j.seed="
                        + SEED + "]");
                assertArrayEquals(stored(p, gotDx), rig.values(p, copy, n * d), what + ": the bf16 copy of dx");
            }
        }
    }

    /** One rmsNormBackward check: inputs, the float64 reference and its bounds. */
    private static final class RmsNormBackwardCase {
        final KernelRig rig;
        final Precision p;
        final int n;
        final int d;
        final float[] x;
        final double[] wd;
        final double[] rs;
        final float[] dout;
        final float[] dx0;
        final float[] dw0;
        final long xDev;
        final long wDev;
        final long rstdDev;
        final long partial;

        RmsNormBackwardCase(KernelRig rig, SplittableRandom r, Precision p, int n, int d, float[] dout) {
            this.rig = rig;
            this.p = p;
            this.n = n;
            this.d = d;
            this.dout = dout;
            x = gaussian(r, n * d, 2);
            float[] w = stored(p, plusOne(gaussian(r, d, 0.1)));
            wd = toDouble(w);
            // the saved rstd as the GPU holds it (float); both sides read the same values
            double[] rstd64 = new double[n];
            DenseOps.rmsNorm(toDouble(x), n, d, wd, 1e-5, new double[n * d], rstd64);
            float[] rstd = new float[n];
            for (int i = 0; i < n; i++) {
                rstd[i] = (float) rstd64[i];
            }
            rs = toDouble(rstd);
            dx0 = gaussian(r, n * d, 1);
            dw0 = gaussian(r, d, 10);
            xDev = rig.floats(x);
            wDev = rig.values(p, w);
            rstdDev = rig.floats(rstd);
            partial = rig.zeros(TrainKernels.rmsNormBackwardScratchBytes(n, d));
        }

        /** Runs the kernels on dout in float32 and checks them; returns {dx, dw}. */
        float[][] check() {
            double[] xd = toDouble(x);
            double[] wantDx = toDouble(dx0);
            double[] wantDw = toDouble(dw0);
            DenseOps.rmsNormBackward(xd, n, d, wd, rs, toDouble(dout), wantDx, wantDw);

            long doutDev = rig.floats(dout);
            long dxDev = rig.floats(dx0);
            long dwDev = rig.floats(dw0);
            rig.train.rmsNormBackward(p, xDev, wDev, rstdDev, doutDev, dxDev, dwDev, partial, n, d);
            String what = String.format("rmsNorm backward %s n %d, d %d", p.suffix(), n, d);

            // dx_j = r (g_j w_j - x_j c), c = r^2 dot / d: the dot is a blockChain(d)-term sum (the row kernels'
            // tree, 2 + 1 + log2 16 + 5 = 12, is shorter), so c errs by K u r^2 sum|g w x| / d... times r |x_j| in
            // dx_j; the rest is a handful (8) of roundings of the terms and of the addition into dx
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
            float[] dx = rig.floats(dxDev, n * d);
            Near.within(what + ": dx", wantDx, dx, dxBound);

            // dw: a chain of dwChain additions over sum_i |g x| r + |dw0|
            double[] mag = abs(toDouble(dw0));
            DenseOps.rmsNormBackward(abs(xd), n, d, wd, rs, abs(toDouble(dout)), null, mag);
            double[] dwBound = new double[d];
            int chain = dwChain(p, n, d);
            for (int j = 0; j < d; j++) {
                dwBound[j] = chain * U * mag[j];
            }
            float[] dw = rig.floats(dwDev, d);
            Near.within(what + ": dw (" + chain + " additions in a chain)", wantDw, dw, dwBound);

            // without dx: the same dw, bit for bit (fixed summation order), and no dx touched
            long dwAgain = rig.floats(dw0);
            rig.train.rmsNormBackward(p, xDev, wDev, rstdDev, doutDev, 0, dwAgain, partial, n, d);
            assertArrayEquals(dw, rig.floats(dwAgain, d), what + ": dw is deterministic and independent of dx"
                    + " [-Dbased4j.seed=" + SEED + "]");
            return new float[][] {dx, dw};
        }
    }

    /**
     * Additions in a chain of the RMSNorm weight gradient, plus 3 (two products and the addition into dw): the
     * scalar kernels sum R rows a block, then the blocks in order; the bf16 row kernel sums the rows of a warp, the
     * block's (at most 8) warps, then the parts in (at most 32) groups and the groups. Zero terms add no error.
     */
    private static int dwChain(Precision p, int n, int d) {
        if (TrainKernels.rmsNormByRows(p, d)) {
            int perBlock = TrainKernels.rmsNormRowsPerRowBlock(n);
            int parts = (n + perBlock - 1) / perBlock;
            return (perBlock + 7) / 8 + Math.min(8, perBlock) + (parts + 31) / 32 + Math.min(32, parts) + 3;
        }
        int rows = TrainKernels.rmsNormRowsPerBlock(n);
        return rows + (n + rows - 1) / rows + 3;
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

    /**
     * The bf16 form with dout and da in bf16 gives exactly what the float32 path gave it before (dout and da
     * converted to float32, the scalar kernel, da rounded back): the same float32 operations on the same values. Also
     * from unaligned pointers (one element off), where the launcher falls back to one element a thread.
     */
    @Test
    void swigluBackwardInBf16MatchesTheFloat32PathRoundedBack() {
        SplittableRandom r = new SplittableRandom(SEED);
        Precision p = Precision.BF16;
        try (KernelRig rig = new KernelRig()) {
            for (int[] size : SIZES) {
                int n = size[0];
                int h = size[1];
                float[] a = stored(p, gaussian(r, 2 * n * h, 2));
                float[] dout = stored(p, gaussian(r, n * h, 1));
                float[] da0 = stored(p, gaussian(r, 2 * n * h, 1));
                long aDev = rig.values(p, a);
                long viaFloat = rig.floats(da0);
                rig.train.swigluBackward(p, aDev, rig.floats(dout), viaFloat, n, h);
                float[] want = stored(p, rig.floats(viaFloat, 2 * n * h));
                String what = String.format("swiglu backward in bf16, n %d, h %d", n, h);

                long da = rig.values(p, da0);
                rig.train.swigluBackwardInA(p, aDev, rig.values(p, dout), da, n, h, false);
                assertArrayEquals(want, rig.values(p, da, 2 * n * h), what + " [-Dbased4j.seed=" + SEED + "]");

                // overwriting: what adding into zeros gives, whatever da held
                long zeros = rig.values(p, new float[2 * n * h]);
                rig.train.swigluBackwardInA(p, aDev, rig.values(p, dout), zeros, n, h, false);
                long over = rig.values(p, da0);
                rig.train.swigluBackwardInA(p, aDev, rig.values(p, dout), over, n, h, true);
                assertArrayEquals(rig.values(p, zeros, 2 * n * h), rig.values(p, over, 2 * n * h),
                        what + ", overwriting [-Dbased4j.seed=" + SEED + "]");

                // one bf16 element past 16-byte alignment: the same values
                long aOff = shifted(rig, p, a);
                long doutOff = shifted(rig, p, dout);
                long daOff = shifted(rig, p, da0);
                rig.train.swigluBackwardInA(p, aOff, doutOff, daOff, n, h, false);
                assertArrayEquals(want, rig.values(p, daOff, 2 * n * h), what + ", unaligned [-Dbased4j.seed=" + SEED
                        + "]");
            }
        }
    }

    /** {@code v} stored as {@code p} one element after a 16-byte boundary. */
    private static long shifted(KernelRig rig, Precision p, float[] v) {
        float[] padded = new float[v.length + 1];
        System.arraycopy(v, 0, padded, 1, v.length);
        return rig.values(p, padded) + p.bytes();
    }

    /**
     * Bias gradients: columnSum in both precisions (in bf16, widths that are multiples of 8 run the vector kernel and
     * the 32-group second level), against float64 sums. Any order of summing K terms errs by at most (K - 1) u
     * sum|terms|: K = n rows plus the value added into. Twice the same call gives the same bits.
     */
    @ParameterizedTest
    @EnumSource(Precision.class)
    void columnSumAddsColumnTotals(Precision p) {
        SplittableRandom r = new SplittableRandom(SEED);
        int[][] sizes = {{3, 8}, {77, 264}, {9001, 64}, {700, 4096}, {130, 781}};
        try (KernelRig rig = new KernelRig()) {
            for (int[] size : sizes) {
                int n = size[0];
                int m = size[1];
                float[] x = stored(p, gaussian(r, n * m, 1));
                float[] out0 = gaussian(r, m, 1);
                double[] want = toDouble(out0);
                double[] bound = abs(toDouble(out0));
                for (int i = 0; i < n; i++) {
                    for (int j = 0; j < m; j++) {
                        want[j] += x[i * m + j];
                        bound[j] += Math.abs(x[i * m + j]);
                    }
                }
                for (int j = 0; j < m; j++) {
                    bound[j] *= n * U;
                }
                long xDev = rig.values(p, x);
                long partial = rig.zeros(TrainKernels.columnSumScratchBytes(n, m));
                long out = rig.floats(out0);
                rig.train.columnSum(p, xDev, out, partial, n, m);
                String what = String.format("columnSum %s n %d, m %d", p.suffix(), n, m);
                float[] got = rig.floats(out, m);
                Near.within(what, want, got, bound);
                long again = rig.floats(out0);
                rig.train.columnSum(p, xDev, again, partial, n, m);
                assertArrayEquals(got, rig.floats(again, m), what + ": deterministic");
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
