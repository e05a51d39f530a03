package io.based4j.train.cpu;

import io.based4j.backend.cpu.Parallel;

/**
 * Dense training kernels in float64: each forward next to its backward.
 *
 * <p>Conventions: arrays are row-major; a batch of {@code B} sequences of length {@code L} is packed as
 * {@code N = B * L} rows, sequence {@code b} owning rows {@code [b * L, (b + 1) * L)}. Arrays may be longer than
 * the sizes passed (only the leading part is used) but never shorter. A forward OVERWRITES its outputs; a backward
 * ADDS ({@code +=}) into every gradient it is given, so gradients of several branches and micro-batches accumulate
 * (callers zero them first). Results are bit-identical whatever the thread count: tasks own disjoint outputs, and every
 * sum over rows (weight gradients) runs over the rows in a fixed order.
 *
 * <p>What a backward needs: {@link #matmulBackward} re-reads {@code x} and {@code w}; {@link #rmsNormBackward}
 * takes the per-row {@code rstd} saved by the forward (so the row's mean square is not recomputed);
 * {@link #swigluBackward} recomputes the sigmoid from {@code a} (cheaper than storing it); {@link #baseConvBackward}
 * takes the conv output {@code c} saved by the forward (recomputing it would re-run the convolution).
 */
public final class DenseOps {
    private DenseOps() {
    }

    // ------------------------------------------------------------------ matmul

    /**
     * {@code out[n, m] = x[n, k] @ w[m, k]^T (+ bias[m])}; {@code bias} may be null. Computed as {@code Gemm} over
     * {@code w^T} (a transposed copy of {@code w}, {@code m * k} doubles, made per call), so the inner loop runs
     * along the rows of {@code out}.
     */
    public static void matmul(double[] x, int n, int k, double[] w, int m, double[] bias, double[] out) {
        requireLength("x", x, (long) n * k);
        requireLength("w", w, (long) m * k);
        requireLength("out", out, (long) n * m);
        if (bias != null) {
            requireLength("bias", bias, m);
        }
        Gemm.multiply(n, m, k, x, 0, k, 1, Gemm.transpose(w, m, k), 0, m, out, 0, m, bias);
    }

    /**
     * Backward of {@link #matmul}: {@code dx[n, k] += dout @ w}, {@code dw[m, k] += dout^T @ x},
     * {@code db[m] += sum over rows of dout}. {@code dx} and {@code db} may be null when not needed. Nothing is
     * saved by the forward: the product's inputs are its own saved activations.
     */
    public static void matmulBackward(double[] x, int n, int k, double[] w, int m, double[] dout,
                                      double[] dx, double[] dw, double[] db) {
        requireLength("x", x, (long) n * k);
        requireLength("w", w, (long) m * k);
        requireLength("dout", dout, (long) n * m);
        requireLength("dw", dw, (long) m * k);
        if (dx != null) {
            requireLength("dx", dx, (long) n * k);
            Gemm.multiplyAdd(n, k, m, dout, 0, m, 1, w, 0, k, dx, 0, k);
        }
        // dw[j, l] += sum_i dout[i, j] x[i, l]: A = dout^T (strides swapped), rows of dw split between tasks
        Gemm.multiplyAdd(m, k, n, dout, 0, 1, m, x, 0, k, dw, 0, k);
        if (db != null) {
            requireLength("db", db, m);
            Parallel.forRanges(m, 64, (from, to) -> {
                double[] s = new double[to - from];
                for (int i = 0; i < n; i++) {
                    int row = i * m;
                    for (int j = from; j < to; j++) {
                        s[j - from] += dout[row + j];
                    }
                }
                for (int j = from; j < to; j++) {
                    db[j] += s[j - from];
                }
            });
        }
    }

    // ------------------------------------------------------------------ RMSNorm

    /**
     * {@code out = x * rstd * w} per row of width {@code d}, with {@code rstd[i] = 1 / sqrt(mean(x_i^2) + eps)}
     * written to {@code rstd} for the backward.
     */
    public static void rmsNorm(double[] x, int n, int d, double[] w, double eps, double[] out, double[] rstd) {
        requireLength("x", x, (long) n * d);
        requireLength("w", w, d);
        requireLength("out", out, (long) n * d);
        requireLength("rstd", rstd, n);
        Parallel.forRanges(n, 16, (from, to) -> {
            for (int i = from; i < to; i++) {
                int o = i * d;
                double ss = 0;
                for (int j = 0; j < d; j++) {
                    ss += x[o + j] * x[o + j];
                }
                double r = 1.0 / Math.sqrt(ss / d + eps);
                rstd[i] = r;
                for (int j = 0; j < d; j++) {
                    out[o + j] = x[o + j] * r * w[j];
                }
            }
        });
    }

    /**
     * Backward of {@link #rmsNorm}, from the saved {@code rstd} (r): with {@code g = dout},
     * {@code dx_j += r * (g_j w_j - x_j * r^2 * mean_l(g_l w_l x_l))} and {@code dw_j += sum_i g_ij x_ij r_i}.
     * {@code dx} may be null.
     */
    public static void rmsNormBackward(double[] x, int n, int d, double[] w, double[] rstd, double[] dout,
                                       double[] dx, double[] dw) {
        requireLength("x", x, (long) n * d);
        requireLength("w", w, d);
        requireLength("rstd", rstd, n);
        requireLength("dout", dout, (long) n * d);
        requireLength("dw", dw, d);
        if (dx != null) {
            requireLength("dx", dx, (long) n * d);
            Parallel.forRanges(n, 16, (from, to) -> {
                for (int i = from; i < to; i++) {
                    int o = i * d;
                    double r = rstd[i];
                    double dot = 0;
                    for (int j = 0; j < d; j++) {
                        dot += dout[o + j] * w[j] * x[o + j];
                    }
                    double c = r * r * dot / d;
                    for (int j = 0; j < d; j++) {
                        dx[o + j] += r * (dout[o + j] * w[j] - x[o + j] * c);
                    }
                }
            });
        }
        // weight gradient: columns split between tasks, each summing over all rows in order
        Parallel.forRanges(d, 16, (from, to) -> {
            double[] s = new double[to - from];
            for (int i = 0; i < n; i++) {
                int o = i * d;
                double r = rstd[i];
                for (int j = from; j < to; j++) {
                    s[j - from] += dout[o + j] * x[o + j] * r;
                }
            }
            for (int j = from; j < to; j++) {
                dw[j] += s[j - from];
            }
        });
    }

    // ------------------------------------------------------------------ SwiGLU

    /** {@code out[n, h] = a[:, :h] * silu(a[:, h:])} for {@code a [n, 2h]} (value first, gate second). */
    public static void swiglu(double[] a, int n, int h, double[] out) {
        requireLength("a", a, 2L * n * h);
        requireLength("out", out, (long) n * h);
        Parallel.forRanges(n, 16, (from, to) -> {
            for (int i = from; i < to; i++) {
                int ai = i * 2 * h;
                int oi = i * h;
                for (int j = 0; j < h; j++) {
                    double g = a[ai + h + j];
                    out[oi + j] = a[ai + j] * (g / (1.0 + Math.exp(-g)));
                }
            }
        });
    }

    /**
     * Backward of {@link #swiglu}, recomputing the sigmoid {@code s} of the gate from {@code a}:
     * {@code dvalue += dout * g * s}, {@code dgate += dout * value * s * (1 + g * (1 - s))}.
     */
    public static void swigluBackward(double[] a, int n, int h, double[] dout, double[] da) {
        requireLength("a", a, 2L * n * h);
        requireLength("dout", dout, (long) n * h);
        requireLength("da", da, 2L * n * h);
        Parallel.forRanges(n, 16, (from, to) -> {
            for (int i = from; i < to; i++) {
                int ai = i * 2 * h;
                int oi = i * h;
                for (int j = 0; j < h; j++) {
                    double y = a[ai + j];
                    double g = a[ai + h + j];
                    double s = 1.0 / (1.0 + Math.exp(-g));
                    double go = dout[oi + j];
                    da[ai + j] += go * g * s;
                    da[ai + h + j] += go * y * s * (1.0 + g * (1.0 - s));
                }
            }
        });
    }

    // ------------------------------------------------------------------ embedding

    /** {@code out[i] = table[ids[i]]}, rows of width {@code d}. */
    public static void embedding(double[] table, int d, int[] ids, double[] out) {
        if (d <= 0) {
            throw new IllegalArgumentException("d must be positive, got " + d);
        }
        int rows = table.length / d;
        requireLength("out", out, (long) ids.length * d);
        checkIds(ids, rows);
        Parallel.forRanges(ids.length, 64, (from, to) -> {
            for (int i = from; i < to; i++) {
                System.arraycopy(table, ids[i] * d, out, i * d, d);
            }
        });
    }

    /**
     * Backward of {@link #embedding}: {@code dtable[ids[i]] += dout[i]}. Sparse (only the rows of used ids are
     * touched) and deterministic: positions are grouped by id (a sort), each id's row is owned by one task and
     * sums its positions in increasing order before being added to {@code dtable}.
     */
    public static void embeddingBackward(int[] ids, int d, double[] dout, double[] dtable) {
        if (d <= 0) {
            throw new IllegalArgumentException("d must be positive, got " + d);
        }
        requireLength("dout", dout, (long) ids.length * d);
        int rows = dtable.length / d;
        checkIds(ids, rows);
        long[] keys = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            keys[i] = ((long) ids[i] << 32) | i;
        }
        java.util.Arrays.sort(keys);
        // group starts: positions in keys where the id changes
        int[] starts = new int[ids.length + 1];
        int groups = 0;
        for (int i = 0; i < keys.length; i++) {
            if (i == 0 || (keys[i] >>> 32) != (keys[i - 1] >>> 32)) {
                starts[groups++] = i;
            }
        }
        starts[groups] = keys.length;
        int groupCount = groups;
        Parallel.forRanges(groupCount, 16, (from, to) -> {
            double[] s = new double[d];
            for (int g = from; g < to; g++) {
                java.util.Arrays.fill(s, 0.0);
                for (int p = starts[g]; p < starts[g + 1]; p++) {
                    int o = (int) keys[p] * d;
                    for (int j = 0; j < d; j++) {
                        s[j] += dout[o + j];
                    }
                }
                int t = (int) (keys[starts[g]] >>> 32) * d;
                for (int j = 0; j < d; j++) {
                    dtable[t + j] += s[j];
                }
            }
        });
    }

    private static void checkIds(int[] ids, int rows) {
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] < 0 || ids[i] >= rows) {
                throw new IllegalArgumentException("ids[" + i + "] = " + ids[i] + " is outside the table [0, " + rows
                        + ")");
            }
        }
    }

    // ------------------------------------------------------------------ BaseConv

    /**
     * BaseConv core (gated depthwise causal conv). {@code u [N, 2 * inner] = [u1 | u2]}; per channel
     * {@code c_t = sum_j convW[ch, j] * u1_{t - (kernel - 1) + j}} with zeros before the start of each sequence of
     * {@code seqLen} rows (taps {@code convW [inner, kernel]}); {@code out [N, inner] = silu(c) * u2}. {@code c} is
     * written for the backward.
     */
    public static void baseConv(double[] u, int batch, int seqLen, int inner, double[] convW, int kernel,
                                double[] c, double[] out) {
        checkConv(u, batch, seqLen, inner, convW, kernel);
        long rows = (long) batch * seqLen;
        requireLength("c", c, rows * inner);
        requireLength("out", out, rows * inner);
        int width = 2 * inner;
        Parallel.forRanges((int) rows, 16, (from, to) -> {
            for (int r = from; r < to; r++) {
                int t = r % seqLen;
                int j0 = Math.max(0, kernel - 1 - t); // taps reaching before the sequence start see zeros
                for (int ch = 0; ch < inner; ch++) {
                    double acc = 0;
                    for (int j = j0; j < kernel; j++) {
                        acc += convW[ch * kernel + j] * u[(r - (kernel - 1) + j) * width + ch];
                    }
                    c[r * inner + ch] = acc;
                    out[r * inner + ch] = acc / (1.0 + Math.exp(-acc)) * u[r * width + inner + ch];
                }
            }
        });
    }

    /**
     * Backward of {@link #baseConv} from the saved {@code c}: with {@code s = sigmoid(c)},
     * {@code du2 += dout * silu(c)}, {@code dc = dout * u2 * s * (1 + c * (1 - s))},
     * {@code du1_t += sum_j convW[ch, j] * dc_{t + (kernel - 1) - j}} (within the sequence) and
     * {@code dconvW[ch, j] += sum over sequences and t of dc_t * u1_{t - (kernel - 1) + j}}. Channels are split
     * between tasks, so each task owns its columns of {@code du} and its rows of {@code dconvW}; {@code dc} of one
     * sequence is held for the task's channels only. {@code du} may be null (then only {@code dconvW}).
     */
    public static void baseConvBackward(double[] u, int batch, int seqLen, int inner, double[] convW, int kernel,
                                        double[] c, double[] dout, double[] du, double[] dconvW) {
        checkConv(u, batch, seqLen, inner, convW, kernel);
        long rows = (long) batch * seqLen;
        requireLength("c", c, rows * inner);
        requireLength("dout", dout, rows * inner);
        requireLength("dconvW", dconvW, (long) inner * kernel);
        if (du != null) {
            requireLength("du", du, rows * 2 * inner);
        }
        int width = 2 * inner;
        Parallel.forRanges(inner, 8, (from, to) -> {
            int cw = to - from;
            double[] dc = new double[seqLen * cw];
            double[] dw = new double[cw * kernel];
            for (int b = 0; b < batch; b++) {
                int base = b * seqLen;
                for (int t = 0; t < seqLen; t++) {
                    int r = base + t;
                    for (int ch = from; ch < to; ch++) {
                        double cv = c[r * inner + ch];
                        double s = 1.0 / (1.0 + Math.exp(-cv));
                        double go = dout[r * inner + ch];
                        double u2 = u[r * width + inner + ch];
                        dc[t * cw + ch - from] = go * u2 * s * (1.0 + cv * (1.0 - s));
                        if (du != null) {
                            du[r * width + inner + ch] += go * cv * s;
                        }
                    }
                }
                for (int t = 0; t < seqLen; t++) {
                    int r = base + t;
                    // dconvW: tap j of output t read u1 at t - (kernel - 1) + j
                    for (int j = Math.max(0, kernel - 1 - t); j < kernel; j++) {
                        int src = (r - (kernel - 1) + j) * width;
                        for (int ch = from; ch < to; ch++) {
                            dw[(ch - from) * kernel + j] += dc[t * cw + ch - from] * u[src + ch];
                        }
                    }
                    if (du != null) {
                        // u1 at t fed output t + (kernel - 1) - j through tap j
                        for (int ch = from; ch < to; ch++) {
                            double s = 0;
                            for (int j = kernel - 1; j >= 0; j--) {
                                int to2 = t + (kernel - 1) - j;
                                if (to2 < seqLen) {
                                    s += convW[ch * kernel + j] * dc[to2 * cw + ch - from];
                                }
                            }
                            du[r * width + ch] += s;
                        }
                    }
                }
            }
            for (int ch = from; ch < to; ch++) {
                for (int j = 0; j < kernel; j++) {
                    dconvW[ch * kernel + j] += dw[(ch - from) * kernel + j];
                }
            }
        });
    }

    private static void checkConv(double[] u, int batch, int seqLen, int inner, double[] convW, int kernel) {
        if (batch < 0 || seqLen <= 0 || inner <= 0) {
            throw new IllegalArgumentException("batch " + batch + ", seqLen " + seqLen + ", inner " + inner
                    + ": need batch >= 0 and positive seqLen and inner");
        }
        if (kernel < 1) {
            throw new IllegalArgumentException("kernel must be >= 1, got " + kernel);
        }
        requireLength("u", u, (long) batch * seqLen * 2 * inner);
        requireLength("convW", convW, (long) inner * kernel);
    }

    // ------------------------------------------------------------------ add

    /** {@code acc += x} over {@code x.length} elements. */
    public static void add(double[] acc, double[] x) {
        requireLength("acc", acc, x.length);
        Parallel.forRanges(x.length, 1 << 14, (from, to) -> {
            for (int i = from; i < to; i++) {
                acc[i] += x[i];
            }
        });
    }

    static void requireLength(String name, double[] a, long needed) {
        if (a == null) {
            throw new IllegalArgumentException(name + " is null");
        }
        if (a.length < needed) {
            throw new IllegalArgumentException(name + " has " + a.length + " elements, needs " + needed);
        }
    }
}
