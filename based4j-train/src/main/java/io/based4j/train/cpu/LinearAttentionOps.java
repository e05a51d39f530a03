package io.based4j.train.cpu;

import io.based4j.backend.cpu.Parallel;
import io.based4j.config.MixerConfig;
import java.util.Arrays;

/**
 * Causal Taylor linear attention (BASED-SPEC section 2, LinearAttention) for training: forward and backward in
 * float64 over packed batches.
 *
 * <p><b>Definition.</b> Per sequence and head, with {@code s = q_t . k_s / sqrt(f)} and
 * {@code a_ts = 1 + s + s^2/2 = phi(q_t) . phi(k_s)}:
 * {@code y_t = sum_{s<=t} a_ts v_s / (sum_{s<=t} a_ts + eps)}. Arrays: {@code q, k [N, H*f]} (head h in columns
 * {@code h*f .. h*f+f-1}), {@code v, out [N, H*dh]}, {@code N = batch * seqLen}, sequence b in rows
 * {@code [b*L, (b+1)*L)}.
 *
 * <p><b>Chunked form.</b> Tokens are processed in chunks of {@code chunk}. Inside a chunk the scores {@code a_ts} are
 * evaluated directly ({@code C*C*f} work, no feature expansion). Earlier chunks reach a query through the running
 * state {@code S = sum phi(k_s) v_s^T} ({@code [F, dh]}) and {@code z = sum phi(k_s)} ({@code [F]}) with the merged
 * feature map {@code phi(x) = [1, x_i / f^(1/4), x_i x_j c_ij (i <= j)]}, {@code c_ii = 1/sqrt(2f)},
 * {@code c_ij = 1/sqrt(f)} for {@code i < j}, so {@code F = 1 + f + f(f+1)/2} and {@code phi(q).phi(k)} equals
 * {@code 1 + s + s^2/2} exactly. No {@code L x L} matrix exists anywhere; results depend on {@code chunk} only through
 * float rounding.
 *
 * <p><b>What is saved and what is recomputed.</b> The forward saves nothing besides its output. The backward takes
 * {@code q, k, v, dout} and recomputes everything, per (sequence, head), in two scans over the chunks:
 * <ol>
 *   <li>a forward scan that rebuilds the state chunk by chunk exactly as the forward does, recomputes each
 *   {@code y_t} and denominator {@code D_t = den_t + eps}, and from them the per-token upstream quantities
 *   {@code g_t = dout_t / D_t} (gradient of the numerator) and {@code r_t = -dout_t . y_t / D_t} (gradient of the
 *   denominator). With the state of the earlier chunks at hand it finishes {@code dq} completely
 *   ({@code dphi(q_t) = S g_t + z r_t}, chained through the feature map, plus the in-chunk scores) and adds the
 *   in-chunk parts of {@code dk} and {@code dv};</li>
 *   <li>a reverse scan carrying {@code dS = sum phi(q_t) g_t^T} and {@code dz = sum phi(q_t) r_t} over the later
 *   chunks, which gives every key and value its gradient through the state: {@code dphi(k_s) = dS v_s + dz},
 *   {@code dv_s += dS^T phi(k_s)}.</li>
 * </ol>
 * Only {@code g} and {@code r} are kept between the scans ({@code L*(dh+1)} doubles per task) plus one state and one
 * state gradient ({@code 2*F*(dh+1)}) and a few chunk-sized rows: memory is linear in {@code L} and independent of the
 * chunk size. The per-chunk states are not stored because that would cost {@code (L/C)*F*dh}, which grows without
 * bound as the chunk shrinks; the second scan needs only the state gradients, which it builds itself.
 *
 * <p>Work is split into one task per (sequence, head); each task owns its rows and columns of every output, so results
 * do not depend on the number of threads. The backward adds into {@code dq, dk, dv}. The inner loops (dot products
 * and axpys over {@code dh}, the state rows) use {@code jdk.incubator.vector}, about twice as fast as plain loops.
 */
public final class LinearAttentionOps {
    /** Chunk length used when the caller has no reason to choose another. */
    public static final int DEFAULT_CHUNK = 64;

    private LinearAttentionOps() {
    }

    /** {@code out = y} as defined above (overwritten). */
    public static void forward(int batch, int seqLen, int heads, int featureDim, int headDim, double eps, int chunk,
                               double[] q, double[] k, double[] v, double[] out) {
        Shape sh = new Shape(batch, seqLen, heads, featureDim, headDim, eps, chunk);
        sh.check("q", q, sh.qkCols);
        sh.check("k", k, sh.qkCols);
        sh.check("v", v, sh.vCols);
        sh.check("out", out, sh.vCols);
        Parallel.forEach(batch * heads, task -> forwardTask(sh, task / heads, task % heads, q, k, v, out));
    }

    /** Adds the gradients of {@code sum(out * dout)} with respect to q, k and v into {@code dq, dk, dv}. */
    public static void backward(int batch, int seqLen, int heads, int featureDim, int headDim, double eps, int chunk,
                                double[] q, double[] k, double[] v, double[] dout,
                                double[] dq, double[] dk, double[] dv) {
        Shape sh = new Shape(batch, seqLen, heads, featureDim, headDim, eps, chunk);
        sh.check("q", q, sh.qkCols);
        sh.check("k", k, sh.qkCols);
        sh.check("v", v, sh.vCols);
        sh.check("dout", dout, sh.vCols);
        sh.check("dq", dq, sh.qkCols);
        sh.check("dk", dk, sh.qkCols);
        sh.check("dv", dv, sh.vCols);
        Parallel.forEach(batch * heads,
                task -> backwardTask(sh, task / heads, task % heads, q, k, v, dout, dq, dk, dv));
    }

    // ------------------------------------------------------------------ forward

    private static void forwardTask(Shape sh, int b, int h, double[] q, double[] k, double[] v, double[] out) {
        int dh = sh.dh;
        int nf = sh.features;
        double[] state = new double[nf * dh];   // S = sum phi(k_s) v_s^T over the chunks done
        double[] z = new double[nf];            // z = sum phi(k_s)
        double[] phi = new double[nf];
        double[] num = new double[dh];
        double[] scores = new double[sh.chunk];
        int row0 = b * sh.seqLen;
        for (int c0 = 0; c0 < sh.seqLen; c0 += sh.chunk) {
            int c1 = Math.min(sh.seqLen, c0 + sh.chunk);
            boolean first = c0 == 0;
            for (int t = c0; t < c1; t++) {
                double den = attend(sh, row0, h, c0, t, q, k, v, first ? null : state, z, phi, num, scores, null);
                int oOff = (row0 + t) * sh.vCols + h * dh;
                double inv = 1.0 / (den + sh.eps);
                for (int e = 0; e < dh; e++) {
                    out[oOff + e] = num[e] * inv;
                }
            }
            if (c1 < sh.seqLen) {
                absorbChunk(sh, row0, h, c0, c1, k, v, state, z, phi);
            }
        }
    }

    /**
     * Numerator ({@code num}, overwritten) and denominator (returned, without eps) of query {@code t} over the keys
     * of earlier chunks (through {@code state, z}; null state for the first chunk) and keys {@code c0 .. t} of its
     * own chunk (directly). Leaves the in-chunk scores {@code a_ts} in {@code scores[s - c0]} and, when
     * {@code xs != null}, {@code s = q.k / sqrt(f)} in {@code xs[s - c0]}.
     */
    private static double attend(Shape sh, int row0, int h, int c0, int t, double[] q, double[] k, double[] v,
                                 double[] state, double[] z, double[] phi, double[] num, double[] scores,
                                 double[] xs) {
        int f = sh.f;
        int dh = sh.dh;
        int qOff = (row0 + t) * sh.qkCols + h * f;
        Arrays.fill(num, 0.0);
        double den = 0;
        if (state != null) {
            sh.featurize(q, qOff, phi);
            for (int a = 0; a < sh.features; a++) {
                double p = phi[a];
                den += p * z[a];
                Vec.axpy(p, state, a * dh, num, 0, dh);
            }
        }
        for (int s = c0; s <= t; s++) {
            int kOff = (row0 + s) * sh.qkCols + h * f;
            double x = Vec.dot(q, qOff, k, kOff, f) * sh.invSqrtF;
            double a = 1 + x + 0.5 * x * x;
            scores[s - c0] = a;
            if (xs != null) {
                xs[s - c0] = x;
            }
            den += a;
            Vec.axpy(a, v, (row0 + s) * sh.vCols + h * dh, num, 0, dh);
        }
        return den;
    }

    /** {@code S += phi(k_s) v_s^T, z += phi(k_s)} for the keys {@code c0 .. c1-1}. */
    private static void absorbChunk(Shape sh, int row0, int h, int c0, int c1, double[] k, double[] v,
                                    double[] state, double[] z, double[] phi) {
        int dh = sh.dh;
        for (int s = c0; s < c1; s++) {
            sh.featurize(k, (row0 + s) * sh.qkCols + h * sh.f, phi);
            int vOff = (row0 + s) * sh.vCols + h * dh;
            for (int a = 0; a < sh.features; a++) {
                z[a] += phi[a];
                Vec.axpy(phi[a], v, vOff, state, a * dh, dh);
            }
        }
    }

    // ------------------------------------------------------------------ backward

    private static void backwardTask(Shape sh, int b, int h, double[] q, double[] k, double[] v, double[] dout,
                                     double[] dq, double[] dk, double[] dv) {
        int f = sh.f;
        int dh = sh.dh;
        int nf = sh.features;
        int len = sh.seqLen;
        int row0 = b * len;
        double[] state = new double[nf * dh];
        double[] z = new double[nf];
        double[] phi = new double[nf];
        double[] dphi = new double[nf];
        double[] num = new double[dh];
        double[] scores = new double[sh.chunk];
        double[] xs = new double[sh.chunk];
        double[] g = new double[len * dh];  // g_t = dout_t / D_t, the gradient of the numerator of y_t
        double[] r = new double[len];       // r_t = -dout_t . y_t / D_t, the gradient of its denominator
        double[] dx = new double[f];

        // Forward scan: recompute y_t and D_t, derive g_t and r_t, finish dq, add the in-chunk parts of dk and dv.
        for (int c0 = 0; c0 < len; c0 += sh.chunk) {
            int c1 = Math.min(len, c0 + sh.chunk);
            boolean first = c0 == 0;
            for (int t = c0; t < c1; t++) {
                int qOff = (row0 + t) * sh.qkCols + h * f;
                int oOff = (row0 + t) * sh.vCols + h * dh;
                double den = attend(sh, row0, h, c0, t, q, k, v, first ? null : state, z, phi, num, scores, xs);
                double inv = 1.0 / (den + sh.eps);
                double dyDotY = 0;
                for (int e = 0; e < dh; e++) {
                    double gt = dout[oOff + e] * inv;
                    g[t * dh + e] = gt;
                    dyDotY += gt * num[e];             // (dout/D) . num = dout . y
                }
                double rt = -dyDotY * inv;
                r[t] = rt;
                Arrays.fill(dx, 0.0);
                // earlier chunks, through the state: dphi(q_t) = S g_t + z r_t (phi still holds phi(q_t))
                if (!first) {
                    for (int a = 0; a < nf; a++) {
                        dphi[a] = Vec.dot(state, a * dh, g, t * dh, dh) + z[a] * rt;
                    }
                    sh.featurizeBackward(q, qOff, dphi, dx);
                }
                // own chunk, directly: da_ts = g_t . v_s + r_t, and da/ds = 1 + s
                for (int s = c0; s <= t; s++) {
                    int kOff = (row0 + s) * sh.qkCols + h * f;
                    int vOff = (row0 + s) * sh.vCols + h * dh;
                    double da = Vec.dot(g, t * dh, v, vOff, dh) + rt;
                    Vec.axpy(scores[s - c0], g, t * dh, dv, vOff, dh);
                    double coef = da * (1 + xs[s - c0]) * sh.invSqrtF;
                    Vec.axpy(coef, k, kOff, dx, 0, f);
                    Vec.axpy(coef, q, qOff, dk, kOff, f);
                }
                for (int i = 0; i < f; i++) {
                    dq[qOff + i] += dx[i];
                }
            }
            if (c1 < len) {
                absorbChunk(sh, row0, h, c0, c1, k, v, state, z, phi);
            }
        }

        // Reverse scan: the keys and values of each chunk reach the later chunks' queries through the state.
        double[] dState = state;    // reused: dS = sum phi(q_t) g_t^T over the later chunks
        double[] dz = z;            // dz = sum phi(q_t) r_t
        Arrays.fill(dState, 0.0);
        Arrays.fill(dz, 0.0);
        int lastStart = (len - 1) / sh.chunk * sh.chunk;
        for (int c0 = lastStart; c0 >= 0; c0 -= sh.chunk) {
            int c1 = Math.min(len, c0 + sh.chunk);
            if (c0 != lastStart) {
                for (int s = c0; s < c1; s++) {
                    int kOff = (row0 + s) * sh.qkCols + h * f;
                    int vOff = (row0 + s) * sh.vCols + h * dh;
                    sh.featurize(k, kOff, phi);
                    for (int a = 0; a < nf; a++) {
                        dphi[a] = Vec.dot(dState, a * dh, v, vOff, dh) + dz[a];
                        Vec.axpy(phi[a], dState, a * dh, dv, vOff, dh);
                    }
                    Arrays.fill(dx, 0.0);
                    sh.featurizeBackward(k, kOff, dphi, dx);
                    for (int i = 0; i < f; i++) {
                        dk[kOff + i] += dx[i];
                    }
                }
            }
            if (c0 > 0) {
                for (int t = c0; t < c1; t++) {
                    sh.featurize(q, (row0 + t) * sh.qkCols + h * f, phi);
                    for (int a = 0; a < nf; a++) {
                        dz[a] += phi[a] * r[t];
                        Vec.axpy(phi[a], g, t * dh, dState, a * dh, dh);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ helpers

    /** Sizes of one call, validated, and the merged Taylor feature map with its transpose Jacobian. */
    private static final class Shape {
        final int batch;
        final int seqLen;
        final int heads;
        final int f;
        final int dh;
        final double eps;
        final int chunk;
        final int qkCols;
        final int vCols;
        final int features;
        final double invSqrtF;
        final double linear;   // f^(-1/4)
        final double diag;     // 1 / sqrt(2f), the x_i^2 terms
        final double cross;    // 1 / sqrt(f), the merged x_i x_j + x_j x_i terms (i < j)

        Shape(int batch, int seqLen, int heads, int featureDim, int headDim, double eps, int chunk) {
            if (batch < 0) throw new IllegalArgumentException("batch must be >= 0, got " + batch);
            if (seqLen < 0) throw new IllegalArgumentException("seqLen must be >= 0, got " + seqLen);
            if (heads < 1) throw new IllegalArgumentException("heads must be >= 1, got " + heads);
            if (featureDim < 1) throw new IllegalArgumentException("featureDim must be >= 1, got " + featureDim);
            if (headDim < 1) throw new IllegalArgumentException("headDim must be >= 1, got " + headDim);
            if (chunk < 1) throw new IllegalArgumentException("chunk must be >= 1, got " + chunk);
            if (!(eps >= 0) || Double.isInfinite(eps)) {
                throw new IllegalArgumentException("eps must be finite and >= 0, got " + eps);
            }
            this.batch = batch;
            this.seqLen = seqLen;
            this.heads = heads;
            this.f = featureDim;
            this.dh = headDim;
            this.eps = eps;
            this.chunk = chunk;
            this.qkCols = Math.multiplyExact(heads, featureDim);
            this.vCols = Math.multiplyExact(heads, headDim);
            this.features = MixerConfig.LinearAttention.expandedDim(f);
            this.invSqrtF = 1.0 / Math.sqrt(f);
            this.linear = Math.pow(f, -0.25);
            this.diag = 1.0 / Math.sqrt(2.0 * f);
            this.cross = 1.0 / Math.sqrt(f);
        }

        void check(String name, double[] array, int cols) {
            if (array == null) {
                throw new IllegalArgumentException(name + " is null");
            }
            long want = (long) batch * seqLen * cols;
            if (array.length != want) {
                throw new IllegalArgumentException(name + " has " + array.length + " elements, expected " + want
                        + " (batch " + batch + " x seqLen " + seqLen + " x " + cols + ")");
            }
        }

        /** {@code phi = [1, x / f^(1/4), x_i x_j c_ij (i <= j)]} of {@code x[off .. off+f-1]}. */
        void featurize(double[] x, int off, double[] phi) {
            phi[0] = 1;
            for (int i = 0; i < f; i++) {
                phi[1 + i] = x[off + i] * linear;
            }
            int p = 1 + f;
            for (int i = 0; i < f; i++) {
                double xi = x[off + i];
                phi[p++] = xi * xi * diag;
                for (int j = i + 1; j < f; j++) {
                    phi[p++] = xi * x[off + j] * cross;
                }
            }
        }

        /** {@code dx += J^T dphi}, J the Jacobian of {@link #featurize} at {@code x[off ..]}. */
        void featurizeBackward(double[] x, int off, double[] dphi, double[] dx) {
            for (int i = 0; i < f; i++) {
                dx[i] += dphi[1 + i] * linear;
            }
            int p = 1 + f;
            for (int i = 0; i < f; i++) {
                double xi = x[off + i];
                dx[i] += 2 * xi * diag * dphi[p++];
                for (int j = i + 1; j < f; j++) {
                    double gp = dphi[p++] * cross;
                    dx[i] += gp * x[off + j];
                    dx[j] += gp * xi;
                }
            }
        }
    }
}
