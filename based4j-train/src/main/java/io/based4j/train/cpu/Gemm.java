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
 * added to a vector of consecutive columns of C. A register block is 3 rows of C by 4 vectors of columns (12
 * accumulators), so each vector of B loaded is used 3 times and each broadcast element of A 4 times. There is no
 * horizontal (cross-lane) sum anywhere. Why 3 x 4: with 16 accumulators (4 x 4) C2 keeps some of them as heap
 * objects (vector boxing) and the kernel runs 5x slower; 3 x 4 needs 17 registers and measured fastest among the
 * 12-accumulator shapes with both AVX-512 (about 41 GFLOP/s per core) and AVX2 (about 23), where 4 x 3 drops to 13.
 *
 * <p>Exactness: every element of C is computed the same way whichever kernel, panel, thread or vector width handles
 * it: the depth is cut into fixed tiles of {@value #DEPTH_TILE}; within a tile {@code acc = fma(A[r,q], B[q,j], acc)}
 * for q in order starting from 0 (a vector lane and {@link Math#fma} round identically), and {@code C += acc} after
 * each tile, tiles in order ({@link #multiply} starts from {@code C = bias + acc} or {@code C = acc} instead). So the
 * result is bit-identical for any thread count and any SIMD width; it differs from a naive {@code sum += a * b} loop
 * only by rounding (the fused multiply-add rounds once instead of twice).
 *
 * <p>Work split: tasks own rectangles of C (a range of rows by a range of column panels). Splitting the rows makes
 * every task read all of B, splitting the columns makes every task read all of A, so the split is chosen to read
 * the least ({@code rowSplit * |B| + colSplit * |A|}): rows for {@code x @ w^T} with many tokens, the vocabulary
 * for the logits of a few rows. Within a task, rows go in chunks of {@value #CHUNK_BLOCKS} register blocks; for each
 * chunk and depth tile every column panel is swept, so the chunk's tile of A (at most 96 x 128 doubles) stays in
 * L2 while a panel's tile of B stays in L1.
 */
final class Gemm {
    static final VectorSpecies<Double> S = DoubleVector.SPECIES_PREFERRED;
    static final int L = S.length();
    /** Rows of C per register block. */
    static final int ROWS = 3;
    /** Columns of C per register block and per column panel. */
    static final int W = 4 * L;
    /** Depth tile: a panel's tile of B, {@code DEPTH_TILE x W} doubles (16-32 KiB), stays in L1. */
    static final int DEPTH_TILE = 128;
    /** Register blocks of rows per chunk within a task. */
    private static final int CHUNK_BLOCKS = 32;

    private Gemm() {
    }

    /** {@code C[r, j] += sum_q A[r, q] * B[q, j]} for {@code r < rows}, {@code j < cols}, {@code q < depth}. */
    static void multiplyAdd(int rows, int cols, int depth,
                            double[] a, int aOff, int ars, int acs,
                            double[] b, int bOff, int ldb,
                            double[] c, int cOff, int ldc) {
        run(rows, cols, depth, a, aOff, ars, acs, b, bOff, ldb, c, cOff, ldc, false, null);
    }

    /**
     * {@code C[r, j] = bias[j] + sum_q A[r, q] * B[q, j]} ({@code bias} may be null: then no bias), overwriting C
     * without reading it first.
     */
    static void multiply(int rows, int cols, int depth,
                         double[] a, int aOff, int ars, int acs,
                         double[] b, int bOff, int ldb,
                         double[] c, int cOff, int ldc, double[] bias) {
        if (depth <= 0) {
            for (int r = 0; r < rows; r++) {
                for (int j = 0; j < cols; j++) {
                    c[cOff + r * ldc + j] = bias == null ? 0.0 : bias[j];
                }
            }
            return;
        }
        run(rows, cols, depth, a, aOff, ars, acs, b, bOff, ldb, c, cOff, ldc, true, bias);
    }

    private static void run(int rows, int cols, int depth,
                            double[] a, int aOff, int ars, int acs,
                            double[] b, int bOff, int ldb,
                            double[] c, int cOff, int ldc, boolean overwrite, double[] bias) {
        if (rows <= 0 || cols <= 0 || depth <= 0) {
            return;
        }
        int rowBlocks = (rows + ROWS - 1) / ROWS;
        int panels = (cols + W - 1) / W;
        int target = Parallel.threads() == 1 ? 1 : Parallel.threads() * 2;
        // choose the split reading the least: each row part reads all of B, each column part all of A
        int rowSplit = 1;
        int colSplit = 1;
        double best = Double.MAX_VALUE;
        for (int rs = 1; rs <= Math.min(target, rowBlocks); rs++) {
            int cs = Math.min(panels, (target + rs - 1) / rs);
            double cost = (double) rs * depth * cols + (double) cs * depth * rows;
            if (rs * cs >= Math.min(target, rowBlocks * panels) && cost < best) {
                best = cost;
                rowSplit = rs;
                colSplit = cs;
            }
        }
        int rs = rowSplit;
        int cs = colSplit;
        Parallel.forEach(rs * cs, t -> {
            int blk0 = (int) ((long) (t / cs) * rowBlocks / rs);
            int blk1 = (int) ((long) (t / cs + 1) * rowBlocks / rs);
            int p0 = (int) ((long) (t % cs) * panels / cs);
            int p1 = (int) ((long) (t % cs + 1) * panels / cs);
            for (int chunk = blk0; chunk < blk1; chunk += CHUNK_BLOCKS) {
                int r0 = chunk * ROWS;
                int r1 = Math.min(rows, Math.min(blk1, chunk + CHUNK_BLOCKS) * ROWS);
                for (int q0 = 0; q0 < depth; q0 += DEPTH_TILE) {
                    int q1 = Math.min(depth, q0 + DEPTH_TILE);
                    boolean store = overwrite && q0 == 0;
                    for (int p = p0; p < p1; p++) {
                        int c0 = p * W;
                        int c1 = Math.min(cols, c0 + W);
                        for (int r = r0; r < r1; r += ROWS) {
                            if (r + ROWS <= r1) {
                                rows3(r, c0, c1, q0, q1, a, aOff, ars, acs, b, bOff, ldb, c, cOff, ldc, store, bias);
                            } else {
                                for (int rr = r; rr < r1; rr++) {
                                    row1(rr, c0, c1, q0, q1, a, aOff, ars, acs, b, bOff, ldb, c, cOff, ldc, store,
                                            bias);
                                }
                            }
                        }
                    }
                }
            }
        });
    }

    /** Zeros standing for the initial C of {@link #multiply} without bias. */
    private static final double[] ZEROS = new double[W];

    /*
     * The kernels below end with C = base + acc, where base is C itself (accumulate), the bias row or zeros (the
     * first depth tile of multiply): base is chosen as an array, offset and row stride before the kernel, so the
     * kernels hold no branch and pass no vector to a method that might not be inlined (a vector passed to a call
     * that is not inlined gets boxed on the heap, which costs several times the arithmetic).
     */

    /** Three rows of C, columns {@code [c0, c1)} (at most W), depth {@code [q0, q1)}. */
    private static void rows3(int r, int c0, int c1, int q0, int q1, double[] a, int aOff, int ars, int acs,
                              double[] b, int bOff, int ldb, double[] c, int cOff, int ldc, boolean store,
                              double[] bias) {
        int pa = aOff + r * ars + q0 * acs;
        int pc = cOff + r * ldc;
        int pb = bOff + q0 * ldb;
        double[] base = !store ? c : bias != null ? bias : ZEROS;
        int baseStride = store ? 0 : ldc;
        if (c1 - c0 == W) {
            int po = !store ? pc + c0 : bias != null ? c0 : 0;
            kernel3x4(a, pa, ars, acs, b, pb + c0, ldb, q1 - q0, c, pc + c0, ldc, base, po, baseStride);
            return;
        }
        int j = c0;
        for (; j + L <= c1; j += L) {
            int po = !store ? pc + j : bias != null ? j : 0;
            kernel3x1(a, pa, ars, acs, b, pb + j, ldb, q1 - q0, c, pc + j, ldc, base, po, baseStride);
        }
        for (; j < c1; j++) {
            for (int i = 0; i < ROWS; i++) {
                int po = !store ? pc + i * ldc + j : bias != null ? j : 0;
                scalar(a, pa + i * ars, acs, b, pb + j, ldb, q1 - q0, c, pc + i * ldc + j, base, po);
            }
        }
    }

    /** One row of C, columns {@code [c0, c1)}, depth {@code [q0, q1)}. */
    private static void row1(int r, int c0, int c1, int q0, int q1, double[] a, int aOff, int ars, int acs,
                             double[] b, int bOff, int ldb, double[] c, int cOff, int ldc, boolean store,
                             double[] bias) {
        int pa = aOff + r * ars + q0 * acs;
        int pc = cOff + r * ldc;
        int pb = bOff + q0 * ldb;
        double[] base = !store ? c : bias != null ? bias : ZEROS;
        if (c1 - c0 == W) {
            int po = !store ? pc + c0 : bias != null ? c0 : 0;
            kernel1x4(a, pa, acs, b, pb + c0, ldb, q1 - q0, c, pc + c0, base, po);
            return;
        }
        int j = c0;
        for (; j + L <= c1; j += L) {
            int po = !store ? pc + j : bias != null ? j : 0;
            kernel1x1(a, pa, acs, b, pb + j, ldb, q1 - q0, c, pc + j, base, po);
        }
        for (; j < c1; j++) {
            int po = !store ? pc + j : bias != null ? j : 0;
            scalar(a, pa, acs, b, pb + j, ldb, q1 - q0, c, pc + j, base, po);
        }
    }

    private static void kernel3x4(double[] a, int pa, int ars, int acs, double[] b, int pb, int ldb, int len,
                                  double[] c, int pc, int ldc, double[] base, int po, int bs) {
        DoubleVector z = DoubleVector.zero(S);
        DoubleVector c00 = z, c01 = z, c02 = z, c03 = z;
        DoubleVector c10 = z, c11 = z, c12 = z, c13 = z;
        DoubleVector c20 = z, c21 = z, c22 = z, c23 = z;
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
        }
        DoubleVector.fromArray(S, base, po).add(c00).intoArray(c, pc);
        DoubleVector.fromArray(S, base, po + L).add(c01).intoArray(c, pc + L);
        DoubleVector.fromArray(S, base, po + 2 * L).add(c02).intoArray(c, pc + 2 * L);
        DoubleVector.fromArray(S, base, po + 3 * L).add(c03).intoArray(c, pc + 3 * L);
        po += bs;
        pc += ldc;
        DoubleVector.fromArray(S, base, po).add(c10).intoArray(c, pc);
        DoubleVector.fromArray(S, base, po + L).add(c11).intoArray(c, pc + L);
        DoubleVector.fromArray(S, base, po + 2 * L).add(c12).intoArray(c, pc + 2 * L);
        DoubleVector.fromArray(S, base, po + 3 * L).add(c13).intoArray(c, pc + 3 * L);
        po += bs;
        pc += ldc;
        DoubleVector.fromArray(S, base, po).add(c20).intoArray(c, pc);
        DoubleVector.fromArray(S, base, po + L).add(c21).intoArray(c, pc + L);
        DoubleVector.fromArray(S, base, po + 2 * L).add(c22).intoArray(c, pc + 2 * L);
        DoubleVector.fromArray(S, base, po + 3 * L).add(c23).intoArray(c, pc + 3 * L);
    }

    private static void kernel3x1(double[] a, int pa, int ars, int acs, double[] b, int pb, int ldb, int len,
                                  double[] c, int pc, int ldc, double[] base, int po, int bs) {
        DoubleVector c0 = DoubleVector.zero(S), c1 = c0, c2 = c0;
        for (int q = 0; q < len; q++, pa += acs, pb += ldb) {
            DoubleVector bv = DoubleVector.fromArray(S, b, pb);
            c0 = bv.fma(DoubleVector.broadcast(S, a[pa]), c0);
            c1 = bv.fma(DoubleVector.broadcast(S, a[pa + ars]), c1);
            c2 = bv.fma(DoubleVector.broadcast(S, a[pa + 2 * ars]), c2);
        }
        DoubleVector.fromArray(S, base, po).add(c0).intoArray(c, pc);
        DoubleVector.fromArray(S, base, po + bs).add(c1).intoArray(c, pc + ldc);
        DoubleVector.fromArray(S, base, po + 2 * bs).add(c2).intoArray(c, pc + 2 * ldc);
    }

    private static void kernel1x4(double[] a, int pa, int acs, double[] b, int pb, int ldb, int len,
                                  double[] c, int pc, double[] base, int po) {
        DoubleVector c0 = DoubleVector.zero(S), c1 = c0, c2 = c0, c3 = c0;
        for (int q = 0; q < len; q++, pa += acs, pb += ldb) {
            DoubleVector x = DoubleVector.broadcast(S, a[pa]);
            c0 = DoubleVector.fromArray(S, b, pb).fma(x, c0);
            c1 = DoubleVector.fromArray(S, b, pb + L).fma(x, c1);
            c2 = DoubleVector.fromArray(S, b, pb + 2 * L).fma(x, c2);
            c3 = DoubleVector.fromArray(S, b, pb + 3 * L).fma(x, c3);
        }
        DoubleVector.fromArray(S, base, po).add(c0).intoArray(c, pc);
        DoubleVector.fromArray(S, base, po + L).add(c1).intoArray(c, pc + L);
        DoubleVector.fromArray(S, base, po + 2 * L).add(c2).intoArray(c, pc + 2 * L);
        DoubleVector.fromArray(S, base, po + 3 * L).add(c3).intoArray(c, pc + 3 * L);
    }

    private static void kernel1x1(double[] a, int pa, int acs, double[] b, int pb, int ldb, int len,
                                  double[] c, int pc, double[] base, int po) {
        DoubleVector c0 = DoubleVector.zero(S);
        for (int q = 0; q < len; q++, pa += acs, pb += ldb) {
            c0 = DoubleVector.fromArray(S, b, pb).fma(DoubleVector.broadcast(S, a[pa]), c0);
        }
        DoubleVector.fromArray(S, base, po).add(c0).intoArray(c, pc);
    }

    /** One element: the same fused chain as a vector lane. */
    private static void scalar(double[] a, int pa, int acs, double[] b, int pb, int ldb, int len, double[] c, int pc,
                               double[] base, int po) {
        double acc = 0;
        for (int q = 0; q < len; q++, pa += acs, pb += ldb) {
            acc = Math.fma(a[pa], b[pb], acc);
        }
        c[pc] = base[po] + acc;
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
