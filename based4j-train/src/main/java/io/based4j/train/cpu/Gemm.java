package io.based4j.train.cpu;

import io.based4j.backend.cpu.Parallel;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * The one matrix product every dense training kernel is built on: {@code C += A @ B} in float64.
 *
 * <p>{@code A} is addressed through strides ({@code A[r, q] = a[aOff + r * ars + q * acs]}), so a transposed operand
 * costs nothing: {@code dout^T} is {@code dout} with the two strides swapped. {@code B} and {@code C} are row-major
 * ({@code B[q, j] = b[bOff + q * ldb + j]}, {@code C[r, j] = c[cOff + r * ldc + j]}).
 *
 * <p>The inner loop is the broadcast form: one element of A times a vector of consecutive columns of a row of B,
 * added to a vector of consecutive columns of C. A register block is 4 rows of C by 4 vectors of columns (16
 * accumulators), so each vector of B loaded is used 4 times and each broadcast element of A 4 times. There is no
 * horizontal (cross-lane) sum anywhere.
 *
 * <p>Exactness: every element of C is computed the same way whichever kernel, panel, thread or vector width handles
 * it: the depth is cut into fixed tiles of {@value #DEPTH_TILE}; within a tile {@code acc = fma(A[r,q], B[q,j], acc)}
 * for q in order starting from 0 (a vector lane and {@link Math#fma} round identically), and {@code C += acc} after
 * each tile, tiles in order. So the result is bit-identical for any thread count and any SIMD width; it differs from
 * a naive {@code sum += a * b} loop only by rounding (the fused multiply-add rounds once instead of twice).
 */
final class Gemm {
    static final VectorSpecies<Double> S = DoubleVector.SPECIES_PREFERRED;
    static final int L = S.length();
    /** Columns of C per register block and per parallel panel. */
    static final int W = 4 * L;
    /** Depth tile: a panel of B of {@code DEPTH_TILE x W} doubles (16-32 KiB) stays in L1 while a group of rows uses it. */
    static final int DEPTH_TILE = 128;
    /** At most this many 4-row blocks per parallel task. */
    private static final int MAX_GROUP_BLOCKS = 16;

    private Gemm() {
    }

    /**
     * {@code C[r, j] += sum_q A[r, q] * B[q, j]} for {@code r < rows}, {@code j < cols}, {@code q < depth}, in
     * parallel over tiles of C.
     */
    static void multiplyAdd(int rows, int cols, int depth,
                            double[] a, int aOff, int ars, int acs,
                            double[] b, int bOff, int ldb,
                            double[] c, int cOff, int ldc) {
        if (rows <= 0 || cols <= 0 || depth <= 0) {
            return;
        }
        int panels = (cols + W - 1) / W;
        int rowBlocks = (rows + 3) / 4;
        long units = (long) rowBlocks * panels;
        long target = Parallel.threads() * 4L;
        int groupBlocks = (int) Math.max(1, Math.min(MAX_GROUP_BLOCKS, (units + target - 1) / target));
        int groups = (rowBlocks + groupBlocks - 1) / groupBlocks;
        Parallel.forEach(groups * panels, t -> {
            int g = t / panels;
            int p = t % panels;
            int r0 = g * groupBlocks * 4;
            int r1 = Math.min(rows, r0 + groupBlocks * 4);
            int c0 = p * W;
            int c1 = Math.min(cols, c0 + W);
            for (int q0 = 0; q0 < depth; q0 += DEPTH_TILE) {
                int q1 = Math.min(depth, q0 + DEPTH_TILE);
                for (int r = r0; r < r1; r += 4) {
                    if (r + 4 <= r1) {
                        rows4(r, c0, c1, q0, q1, a, aOff, ars, acs, b, bOff, ldb, c, cOff, ldc);
                    } else {
                        for (int rr = r; rr < r1; rr++) {
                            row1(rr, c0, c1, q0, q1, a, aOff, ars, acs, b, bOff, ldb, c, cOff, ldc);
                        }
                    }
                }
            }
        });
    }

    /** Four rows of C, columns {@code [c0, c1)} (at most W), depth {@code [q0, q1)}. */
    private static void rows4(int r, int c0, int c1, int q0, int q1, double[] a, int aOff, int ars, int acs,
                              double[] b, int bOff, int ldb, double[] c, int cOff, int ldc) {
        int pa = aOff + r * ars + q0 * acs;
        int pc = cOff + r * ldc;
        if (c1 - c0 == W) {
            kernel4x4(a, pa, ars, acs, b, bOff + q0 * ldb + c0, ldb, q1 - q0, c, pc + c0, ldc);
            return;
        }
        int j = c0;
        for (; j + L <= c1; j += L) {
            kernel4x1(a, pa, ars, acs, b, bOff + q0 * ldb + j, ldb, q1 - q0, c, pc + j, ldc);
        }
        for (; j < c1; j++) {
            for (int i = 0; i < 4; i++) {
                scalar(a, pa + i * ars, acs, b, bOff + q0 * ldb + j, ldb, q1 - q0, c, pc + i * ldc + j);
            }
        }
    }

    /** One row of C, columns {@code [c0, c1)}, depth {@code [q0, q1)}. */
    private static void row1(int r, int c0, int c1, int q0, int q1, double[] a, int aOff, int ars, int acs,
                             double[] b, int bOff, int ldb, double[] c, int cOff, int ldc) {
        int pa = aOff + r * ars + q0 * acs;
        int pc = cOff + r * ldc;
        if (c1 - c0 == W) {
            kernel1x4(a, pa, acs, b, bOff + q0 * ldb + c0, ldb, q1 - q0, c, pc + c0);
            return;
        }
        int j = c0;
        for (; j + L <= c1; j += L) {
            kernel1x1(a, pa, acs, b, bOff + q0 * ldb + j, ldb, q1 - q0, c, pc + j);
        }
        for (; j < c1; j++) {
            scalar(a, pa, acs, b, bOff + q0 * ldb + j, ldb, q1 - q0, c, pc + j);
        }
    }

    private static void kernel4x4(double[] a, int pa, int ars, int acs, double[] b, int pb, int ldb, int len,
                                  double[] c, int pc, int ldc) {
        DoubleVector z = DoubleVector.zero(S);
        DoubleVector c00 = z, c01 = z, c02 = z, c03 = z;
        DoubleVector c10 = z, c11 = z, c12 = z, c13 = z;
        DoubleVector c20 = z, c21 = z, c22 = z, c23 = z;
        DoubleVector c30 = z, c31 = z, c32 = z, c33 = z;
        for (int q = 0; q < len; q++, pa += acs, pb += ldb) {
            DoubleVector b0 = DoubleVector.fromArray(S, b, pb);
            DoubleVector b1 = DoubleVector.fromArray(S, b, pb + L);
            DoubleVector b2 = DoubleVector.fromArray(S, b, pb + 2 * L);
            DoubleVector b3 = DoubleVector.fromArray(S, b, pb + 3 * L);
            DoubleVector x = DoubleVector.broadcast(S, a[pa]);
            c00 = b0.fma(x, c00);
            c01 = b1.fma(x, c01);
            c02 = b2.fma(x, c02);
            c03 = b3.fma(x, c03);
            x = DoubleVector.broadcast(S, a[pa + ars]);
            c10 = b0.fma(x, c10);
            c11 = b1.fma(x, c11);
            c12 = b2.fma(x, c12);
            c13 = b3.fma(x, c13);
            x = DoubleVector.broadcast(S, a[pa + 2 * ars]);
            c20 = b0.fma(x, c20);
            c21 = b1.fma(x, c21);
            c22 = b2.fma(x, c22);
            c23 = b3.fma(x, c23);
            x = DoubleVector.broadcast(S, a[pa + 3 * ars]);
            c30 = b0.fma(x, c30);
            c31 = b1.fma(x, c31);
            c32 = b2.fma(x, c32);
            c33 = b3.fma(x, c33);
        }
        addTo(c, pc, c00, c01, c02, c03);
        addTo(c, pc + ldc, c10, c11, c12, c13);
        addTo(c, pc + 2 * ldc, c20, c21, c22, c23);
        addTo(c, pc + 3 * ldc, c30, c31, c32, c33);
    }

    private static void addTo(double[] c, int pc, DoubleVector v0, DoubleVector v1, DoubleVector v2, DoubleVector v3) {
        DoubleVector.fromArray(S, c, pc).add(v0).intoArray(c, pc);
        DoubleVector.fromArray(S, c, pc + L).add(v1).intoArray(c, pc + L);
        DoubleVector.fromArray(S, c, pc + 2 * L).add(v2).intoArray(c, pc + 2 * L);
        DoubleVector.fromArray(S, c, pc + 3 * L).add(v3).intoArray(c, pc + 3 * L);
    }

    private static void kernel4x1(double[] a, int pa, int ars, int acs, double[] b, int pb, int ldb, int len,
                                  double[] c, int pc, int ldc) {
        DoubleVector c0 = DoubleVector.zero(S), c1 = c0, c2 = c0, c3 = c0;
        for (int q = 0; q < len; q++, pa += acs, pb += ldb) {
            DoubleVector bv = DoubleVector.fromArray(S, b, pb);
            c0 = bv.fma(DoubleVector.broadcast(S, a[pa]), c0);
            c1 = bv.fma(DoubleVector.broadcast(S, a[pa + ars]), c1);
            c2 = bv.fma(DoubleVector.broadcast(S, a[pa + 2 * ars]), c2);
            c3 = bv.fma(DoubleVector.broadcast(S, a[pa + 3 * ars]), c3);
        }
        DoubleVector.fromArray(S, c, pc).add(c0).intoArray(c, pc);
        DoubleVector.fromArray(S, c, pc + ldc).add(c1).intoArray(c, pc + ldc);
        DoubleVector.fromArray(S, c, pc + 2 * ldc).add(c2).intoArray(c, pc + 2 * ldc);
        DoubleVector.fromArray(S, c, pc + 3 * ldc).add(c3).intoArray(c, pc + 3 * ldc);
    }

    private static void kernel1x4(double[] a, int pa, int acs, double[] b, int pb, int ldb, int len,
                                  double[] c, int pc) {
        DoubleVector c0 = DoubleVector.zero(S), c1 = c0, c2 = c0, c3 = c0;
        for (int q = 0; q < len; q++, pa += acs, pb += ldb) {
            DoubleVector x = DoubleVector.broadcast(S, a[pa]);
            c0 = DoubleVector.fromArray(S, b, pb).fma(x, c0);
            c1 = DoubleVector.fromArray(S, b, pb + L).fma(x, c1);
            c2 = DoubleVector.fromArray(S, b, pb + 2 * L).fma(x, c2);
            c3 = DoubleVector.fromArray(S, b, pb + 3 * L).fma(x, c3);
        }
        addTo(c, pc, c0, c1, c2, c3);
    }

    private static void kernel1x1(double[] a, int pa, int acs, double[] b, int pb, int ldb, int len,
                                  double[] c, int pc) {
        DoubleVector c0 = DoubleVector.zero(S);
        for (int q = 0; q < len; q++, pa += acs, pb += ldb) {
            c0 = DoubleVector.fromArray(S, b, pb).fma(DoubleVector.broadcast(S, a[pa]), c0);
        }
        DoubleVector.fromArray(S, c, pc).add(c0).intoArray(c, pc);
    }

    /** One element: the same fused chain as a vector lane. */
    private static void scalar(double[] a, int pa, int acs, double[] b, int pb, int ldb, int len, double[] c, int pc) {
        double acc = 0;
        for (int q = 0; q < len; q++, pa += acs, pb += ldb) {
            acc = Math.fma(a[pa], b[pb], acc);
        }
        c[pc] += acc;
    }

    /** {@code out[j * rows + i] = in[i * cols + j]}: the transpose of a row-major {@code rows x cols} matrix. */
    static double[] transpose(double[] in, int rows, int cols) {
        double[] out = new double[Math.multiplyExact(rows, cols)];
        int tile = 32;
        Parallel.forRanges((cols + tile - 1) / tile, 1, (from, to) -> {
            for (int jt = from * tile; jt < Math.min(cols, to * tile); jt += tile) {
                int jEnd = Math.min(cols, jt + tile);
                for (int it = 0; it < rows; it += tile) {
                    int iEnd = Math.min(rows, it + tile);
                    for (int j = jt; j < jEnd; j++) {
                        for (int i = it; i < iEnd; i++) {
                            out[j * rows + i] = in[i * cols + j];
                        }
                    }
                }
            }
        });
        return out;
    }
}
