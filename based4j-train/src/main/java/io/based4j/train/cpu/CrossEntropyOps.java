package io.based4j.train.cpu;

import io.based4j.backend.cpu.Parallel;
import io.based4j.memory.Sizes;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Softmax cross-entropy fused with the tied output head, forward and backward in one pass, float64.
 *
 * <p>The logits {@code x @ head^T} are never stored for the whole batch: counted rows (those whose target is not
 * {@link #IGNORE_INDEX}) are processed {@value #BLOCK_ROWS} at a time. For one block:
 * <ol>
 *   <li>{@code z = xb @ head[0..vocab)^T} ({@code [rows, vocab]}, the only logits in memory);</li>
 *   <li>per row: max, argmax, {@code e = exp(z - max)} and its sum, {@code loss = max + log(sum) - z[target]};
 *       then, in place, the gradient of {@code scale * loss} w.r.t. the logits, {@code g = scale * (e / sum -
 *       onehot(target))};</li>
 *   <li>{@code dx[row] += g @ head} and {@code dhead[v] += sum_i g[i, v] x_i} (rows v split between tasks, the
 *       block's rows summed in order, blocks in order).</li>
 * </ol>
 * Nothing is saved between forward and backward: the softmax of a block is consumed as soon as it is made. Rows
 * whose target is ignored get no logits at all (MQAR has 4 targets in 64 positions). Padded head rows
 * ({@code vocab} and beyond) are neither read nor written. Results are bit-identical whatever the thread count and
 * the vector width: the products are exact in that sense (see {@link Gemm}), the per-row sum of exponentials runs in
 * a fixed order, and the exponential's vector and scalar forms agree bit for bit.
 *
 * <p>The exponential is a vectorised polynomial ({@link #expShifted}), accurate to about one ulp, and its scalar twin
 * {@link #exp(double)} performs the same operations, so a logit gives the same value whichever path handles it;
 * {@code Math.exp} (about 4 ns) would cost more than the three products together at d 64.
 */
public final class CrossEntropyOps {
    public static final int IGNORE_INDEX = -100;
    /** Counted rows per block: {@code BLOCK_ROWS x vocab} logits are alive at a time. */
    static final int BLOCK_ROWS = 64;

    private static final VectorSpecies<Double> S = Gemm.S;
    private static final int L = S.length();

    private CrossEntropyOps() {
    }

    /** Number of non-ignored targets. */
    public static int counted(int[] targets) {
        int c = 0;
        for (int t : targets) {
            if (t != IGNORE_INDEX) {
                c++;
            }
        }
        return c;
    }

    /**
     * x [n, d] (final-normed hidden states), head [rowsPadded, d] (the tied embedding); logits_i = x_i @
     * head[0..vocab)^T (only the first {@code vocab} rows are real tokens; padded rows get no logits and no
     * gradient). For each row i with {@code targets[i] != IGNORE_INDEX}: {@code loss_i = logsumexp(logits_i) -
     * logits_i[targets[i]]}. Rows whose target is ignored are skipped entirely (no logits computed).
     *
     * <p>Adds {@code scale * d(sum_i loss_i)} to {@code dx} and {@code dhead} (either may be null to skip it; when
     * both are null only the loss is computed). If {@code argmax != null}, {@code argmax[i]} = index of the largest
     * logit (lowest index on ties) for counted rows, -1 for ignored rows.
     *
     * @return {@code sum_i loss_i} over counted rows (not scaled)
     * @throws IllegalArgumentException for a target outside {@code [0, vocab)} that is not {@link #IGNORE_INDEX}
     *                                  (naming the row and value), or inconsistent sizes
     */
    public static double forwardBackward(double[] x, int n, int d, double[] head, int vocab, int[] targets,
                                         double scale, double[] dx, double[] dhead, int[] argmax) {
        if (n < 0 || d <= 0 || vocab <= 0) {
            throw new IllegalArgumentException("n " + n + ", d " + d + ", vocab " + vocab
                    + ": need n >= 0 and positive d and vocab");
        }
        DenseOps.requireLength("x", x, (long) n * d);
        DenseOps.requireLength("head", head, (long) vocab * d);
        if (targets.length < n) {
            throw new IllegalArgumentException("targets has " + targets.length + " elements, needs " + n);
        }
        if (dx != null) {
            DenseOps.requireLength("dx", dx, (long) n * d);
        }
        if (dhead != null) {
            DenseOps.requireLength("dhead", dhead, (long) vocab * d);
        }
        if (argmax != null && argmax.length < n) {
            throw new IllegalArgumentException("argmax has " + argmax.length + " elements, needs " + n);
        }
        int count = 0;
        for (int i = 0; i < n; i++) {
            int t = targets[i];
            if (t != IGNORE_INDEX && (t < 0 || t >= vocab)) {
                throw new IllegalArgumentException("targets[" + i + "] = " + t + " is outside [0, " + vocab
                        + ") and is not IGNORE_INDEX (" + IGNORE_INDEX + ")");
            }
            if (t != IGNORE_INDEX) {
                count++;
            } else if (argmax != null) {
                argmax[i] = -1;
            }
        }
        if (count == 0) {
            return 0.0;
        }
        int[] rows = new int[count];
        for (int i = 0, c = 0; i < n; i++) {
            if (targets[i] != IGNORE_INDEX) {
                rows[c++] = i;
            }
        }
        boolean grad = dx != null || dhead != null;
        double[] headT = Gemm.transpose(head, vocab, d); // [d, vocab]: the forward product runs along vocab
        int blockRows = Math.min(BLOCK_ROWS, count);
        double[] xb = new double[Sizes.arrayLength(blockRows, d, "cross-entropy inputs")];
        double[] z = new double[Sizes.arrayLength(blockRows, vocab, "cross-entropy logits")];
        double[] dxb = dx == null ? null : new double[xb.length];
        double[] losses = new double[count];
        for (int start = 0; start < count; start += blockRows) {
            int rb = Math.min(blockRows, count - start);
            int first = start;
            for (int r = 0; r < rb; r++) {
                System.arraycopy(x, rows[first + r] * d, xb, r * d, d);
            }
            Gemm.multiply(rb, vocab, d, xb, 0, d, 1, headT, 0, vocab, z, 0, vocab, null);
            Parallel.forEach(rb, r -> {
                int row = rows[first + r];
                losses[first + r] = softmaxRow(z, r * vocab, vocab, targets[row], scale, grad, argmax, row);
            });
            if (dx != null) {
                Gemm.multiply(rb, d, vocab, z, 0, vocab, 1, head, 0, d, dxb, 0, d, null);
                Parallel.forEach(rb, r -> {
                    int o = rows[first + r] * d;
                    for (int j = 0; j < d; j++) {
                        dx[o + j] += dxb[r * d + j];
                    }
                });
            }
            if (dhead != null) {
                // dhead[v, :] += sum_r g[r, v] * xb[r, :]: A = g^T (strides swapped), rows v split between tasks
                Gemm.multiplyAdd(vocab, d, rb, z, 0, 1, vocab, xb, 0, d, dhead, 0, d);
            }
        }
        double sum = 0;
        for (double l : losses) {
            sum += l;
        }
        return sum;
    }

    /**
     * One row of logits {@code z[o .. o + vocab)}: returns its loss, records its argmax, and (when {@code grad})
     * replaces the logits by {@code scale * (softmax - onehot(target))}.
     */
    private static double softmaxRow(double[] z, int o, int vocab, int target, double scale, boolean grad,
                                     int[] argmax, int row) {
        int end = o + vocab;
        int vecEnd = o + S.loopBound(vocab);
        // max: exact whatever the order
        double max = Double.NEGATIVE_INFINITY;
        int j = o;
        if (vecEnd > o) {
            DoubleVector vm = DoubleVector.fromArray(S, z, j);
            for (j += L; j < vecEnd; j += L) {
                vm = vm.max(DoubleVector.fromArray(S, z, j));
            }
            max = vm.reduceLanes(VectorOperators.MAX);
        }
        for (; j < end; j++) {
            max = Math.max(max, z[j]);
        }
        if (argmax != null) {
            int arg = -1;
            DoubleVector vmax = DoubleVector.broadcast(S, max);
            for (j = o; j < vecEnd && arg < 0; j += L) {
                VectorMask<Double> hit = DoubleVector.fromArray(S, z, j).compare(VectorOperators.EQ, vmax);
                if (hit.anyTrue()) {
                    arg = j - o + hit.firstTrue();
                }
            }
            for (j = vecEnd; j < end && arg < 0; j++) {
                if (z[j] == max) {
                    arg = j - o;
                }
            }
            argmax[row] = arg;
        }
        double zt = z[o + target];
        // e = exp(z - max) in place, then summed in a fixed order that does not depend on the vector width: eight
        // running sums over the elements by index mod 8, combined pairwise, then the remainder in order
        expShifted(z, o, end, max);
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        for (j = o; j + 8 <= end; j += 8) {
            s0 += z[j];
            s1 += z[j + 1];
            s2 += z[j + 2];
            s3 += z[j + 3];
            s4 += z[j + 4];
            s5 += z[j + 5];
            s6 += z[j + 6];
            s7 += z[j + 7];
        }
        double sum = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
        for (; j < end; j++) {
            sum += z[j];
        }
        double loss = max + Math.log(sum) - zt;
        if (grad) {
            double f = scale / sum;
            DoubleVector vf = DoubleVector.broadcast(S, f);
            for (j = o; j < vecEnd; j += L) {
                DoubleVector.fromArray(S, z, j).mul(vf).intoArray(z, j);
            }
            for (j = vecEnd; j < end; j++) {
                z[j] *= f;
            }
            z[o + target] -= scale;
        }
        return loss;
    }

    // ------------------------------------------------------------------ exp

    private static final double EXP_LO = -700.0;
    private static final double EXP_HI = 700.0;
    private static final double INV_LN2 = 1.4426950408889634;
    /** Upper bits of ln 2 with trailing zeros (fdlibm), so {@code n * LN2_HI} is exact for |n| < 2^11. */
    private static final double LN2_HI = 6.93147180369123816490e-01;
    private static final double LN2_LO = 1.90821492927058770002e-10;
    /** 1.5 * 2^52: adding it rounds to an integer and leaves that integer in the low mantissa bits. */
    private static final double SHIFTER = 0x1.8p52;
    // 1 / k! for k = 0 .. 13: the Taylor series on |r| <= ln2 / 2, truncation error below 5e-18
    private static final double C0 = 1.0;
    private static final double C1 = 1.0;
    private static final double C2 = 1.0 / 2L;
    private static final double C3 = 1.0 / 6L;
    private static final double C4 = 1.0 / 24L;
    private static final double C5 = 1.0 / 120L;
    private static final double C6 = 1.0 / 720L;
    private static final double C7 = 1.0 / 5040L;
    private static final double C8 = 1.0 / 40320L;
    private static final double C9 = 1.0 / 362880L;
    private static final double C10 = 1.0 / 3628800L;
    private static final double C11 = 1.0 / 39916800L;
    private static final double C12 = 1.0 / 479001600L;
    private static final double C13 = 1.0 / 6227020800L;

    /**
     * {@code z[j] = e^(z[j] - shift)} for {@code j} in {@code [from, to)}: whole vectors, then the rest with the
     * scalar twin {@link #exp(double)}, which gives the same bits. Works on arrays rather than taking and returning
     * vectors, because a vector crossing a call that the JIT does not inline is boxed on the heap (and this body is
     * too large to be inlined reliably).
     *
     * <p>{@code e^x} for {@code x} in {@code [-700, 700]} (clamped outside: {@code exp(-700) ~ 1e-304} stands for 0
     * in a softmax, where the largest term is 1), to about one ulp: {@code x = n ln2 + r} with {@code |r| <= ln2 / 2},
     * {@code e^r} by its Taylor polynomial of degree 13 (Horner, fused), times {@code 2^n} built in the exponent
     * bits. Only lanewise IEEE operations (fused multiply-add included), so the result depends neither on the vector
     * width nor on whether the code is interpreted or compiled.
     */
    static void expShifted(double[] z, int from, int to, double shift) {
        DoubleVector vShift = DoubleVector.broadcast(S, shift);
        int j = from;
        for (int end = from + S.loopBound(to - from); j < end; j += L) {
            DoubleVector x = DoubleVector.fromArray(S, z, j).sub(vShift).max(EXP_LO).min(EXP_HI);
            DoubleVector t = x.mul(INV_LN2).add(SHIFTER);
            DoubleVector n = t.sub(SHIFTER);
            DoubleVector r = n.fma(DoubleVector.broadcast(S, -LN2_HI), x);
            r = n.fma(DoubleVector.broadcast(S, -LN2_LO), r);
            DoubleVector p = r.fma(DoubleVector.broadcast(S, C13), DoubleVector.broadcast(S, C12));
            p = p.fma(r, DoubleVector.broadcast(S, C11));
            p = p.fma(r, DoubleVector.broadcast(S, C10));
            p = p.fma(r, DoubleVector.broadcast(S, C9));
            p = p.fma(r, DoubleVector.broadcast(S, C8));
            p = p.fma(r, DoubleVector.broadcast(S, C7));
            p = p.fma(r, DoubleVector.broadcast(S, C6));
            p = p.fma(r, DoubleVector.broadcast(S, C5));
            p = p.fma(r, DoubleVector.broadcast(S, C4));
            p = p.fma(r, DoubleVector.broadcast(S, C3));
            p = p.fma(r, DoubleVector.broadcast(S, C2));
            p = p.fma(r, DoubleVector.broadcast(S, C1));
            p = p.fma(r, DoubleVector.broadcast(S, C0));
            DoubleVector scale = t.reinterpretAsLongs()
                    .add(1023L).lanewise(VectorOperators.LSHL, 52).reinterpretAsDoubles();
            p.mul(scale).intoArray(z, j);
        }
        for (; j < to; j++) {
            z[j] = exp(z[j] - shift);
        }
    }

    /** The scalar twin of the vector loop in {@link #expShifted}: the same operations on one value, the same bits. */
    static double exp(double x) {
        x = Math.min(Math.max(x, EXP_LO), EXP_HI);
        double t = x * INV_LN2 + SHIFTER;
        double n = t - SHIFTER;
        double r = Math.fma(n, -LN2_HI, x);
        r = Math.fma(n, -LN2_LO, r);
        double p = Math.fma(r, C13, C12);
        p = Math.fma(p, r, C11);
        p = Math.fma(p, r, C10);
        p = Math.fma(p, r, C9);
        p = Math.fma(p, r, C8);
        p = Math.fma(p, r, C7);
        p = Math.fma(p, r, C6);
        p = Math.fma(p, r, C5);
        p = Math.fma(p, r, C4);
        p = Math.fma(p, r, C3);
        p = Math.fma(p, r, C2);
        p = Math.fma(p, r, C1);
        p = Math.fma(p, r, C0);
        double scale = Double.longBitsToDouble((Double.doubleToRawLongBits(t) + 1023L) << 52);
        return p * scale;
    }
}
