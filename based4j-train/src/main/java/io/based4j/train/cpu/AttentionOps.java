package io.based4j.train.cpu;

import io.based4j.backend.cpu.Parallel;
import io.based4j.backend.cpu.RotaryAngles;
import java.util.Arrays;

/**
 * Causal softmax attention with rotary positions (BASED-SPEC section 2, SlidingAttention and Attention) for training:
 * forward and backward in float64 over packed batches.
 *
 * <p><b>Definition.</b> {@code qkv [N, 3d]} holds per row q (columns {@code 0 .. d-1}), then k, then v, each split
 * into {@code heads} heads of {@code dh} ({@code d = heads * dh}); {@code N = batch * seqLen}, sequence b in rows
 * {@code [b*L, (b+1)*L)} at positions {@code 0 .. L-1}. q and k are rotated on the first {@code rotaryDim} dims of
 * each head ("rotate half": pair {@code (p, p + rd/2)} turned by {@code pos * base^(-2p/rd)}, angles in double). Query
 * i attends keys {@code max(0, i - window) <= j <= i} ({@code window = Integer.MAX_VALUE}: full causal) with
 * probabilities {@code softmax_j(scale * q_i . k_j)}; {@code out_i = sum_j p_ij v_j}.
 *
 * <p><b>What is saved and what is recomputed</b> (the flash-attention scheme). The forward writes {@code out} and the
 * log-sum-exp {@code lse [N * heads]} of each query's scores (index {@code row * heads + head}); no probabilities are
 * kept. The backward rebuilds the rotated q and k of one (sequence, head) from {@code qkv}, recomputes
 * {@code p_ij = exp(scale q_i.k_j - lse_i)} key by key, and uses {@code D_i = dout_i . out_i} for the softmax
 * Jacobian: {@code ds_ij = p_ij (dout_i . v_j - D_i)}. Memory is {@code O(N d)} for the arrays the caller owns plus
 * {@code O(L * dh)} scratch per task (the rotated copies and the key gradient), never {@code O(L^2)}; each query costs
 * {@code O(min(i, window) * dh)}.
 *
 * <p>Rotary is applied to copies; {@code qkv} is never modified. The backward computes the gradient with respect to the
 * rotated q and k and turns it back with the transposed rotation before adding it into {@code dqkv}. Work is split
 * into one task per (sequence, head); each owns its rows and columns of every output, so results do not depend on the
 * number of threads. The backward adds into {@code dqkv}. Dot products and axpys over {@code dh} use
 * {@code jdk.incubator.vector}.
 */
public final class AttentionOps {
    private AttentionOps() {
    }

    /** {@code out} and {@code lse} as defined above (both overwritten). */
    public static void forward(int batch, int seqLen, int heads, int headDim, int window, int rotaryDim,
                               double rotaryBase, double scale, double[] qkv, double[] out, double[] lse) {
        Shape sh = new Shape(batch, seqLen, heads, headDim, window, rotaryDim, rotaryBase, scale);
        sh.check("qkv", qkv, 3 * sh.d);
        sh.check("out", out, sh.d);
        sh.check("lse", lse, heads);
        Rotary rot = new Rotary(seqLen, rotaryDim, rotaryBase);
        Parallel.forEach(batch * heads, task -> forwardTask(sh, rot, task / heads, task % heads, qkv, out, lse));
    }

    /** Adds the gradient of {@code sum(out * dout)} with respect to {@code qkv} into {@code dqkv}. */
    public static void backward(int batch, int seqLen, int heads, int headDim, int window, int rotaryDim,
                                double rotaryBase, double scale, double[] qkv, double[] out, double[] lse,
                                double[] dout, double[] dqkv) {
        Shape sh = new Shape(batch, seqLen, heads, headDim, window, rotaryDim, rotaryBase, scale);
        sh.check("qkv", qkv, 3 * sh.d);
        sh.check("out", out, sh.d);
        sh.check("lse", lse, heads);
        sh.check("dout", dout, sh.d);
        sh.check("dqkv", dqkv, 3 * sh.d);
        Rotary rot = new Rotary(seqLen, rotaryDim, rotaryBase);
        Parallel.forEach(batch * heads,
                task -> backwardTask(sh, rot, task / heads, task % heads, qkv, out, lse, dout, dqkv));
    }

    // ------------------------------------------------------------------ forward

    private static void forwardTask(Shape sh, Rotary rot, int b, int h, double[] qkv, double[] out, double[] lse) {
        int dh = sh.dh;
        int len = sh.seqLen;
        int row0 = b * len;
        int qkvCols = 3 * sh.d;
        double[] qr = rot.rotatedCopy(qkv, row0, len, qkvCols, h * dh, dh);
        double[] kr = rot.rotatedCopy(qkv, row0, len, qkvCols, sh.d + h * dh, dh);
        int vCol = 2 * sh.d + h * dh;
        double[] scores = new double[Math.min(len, sh.keysPerQuery())];
        double[] acc = new double[dh];
        for (int i = 0; i < len; i++) {
            int first = sh.firstKey(i);
            double max = Double.NEGATIVE_INFINITY;
            for (int j = first; j <= i; j++) {
                double s = sh.scale * Vec.dot(qr, i * dh, kr, j * dh, dh);
                scores[j - first] = s;
                max = Math.max(max, s);
            }
            double sum = 0;
            Arrays.fill(acc, 0.0);
            for (int j = first; j <= i; j++) {
                double p = Math.exp(scores[j - first] - max);
                sum += p;
                Vec.axpy(p, qkv, (row0 + j) * qkvCols + vCol, acc, 0, dh);
            }
            int oOff = (row0 + i) * sh.d + h * dh;
            double inv = 1.0 / sum;
            for (int e = 0; e < dh; e++) {
                out[oOff + e] = acc[e] * inv;
            }
            lse[(row0 + i) * sh.heads + h] = max + Math.log(sum);
        }
    }

    // ------------------------------------------------------------------ backward

    private static void backwardTask(Shape sh, Rotary rot, int b, int h, double[] qkv, double[] out, double[] lse,
                                     double[] dout, double[] dqkv) {
        int dh = sh.dh;
        int len = sh.seqLen;
        int row0 = b * len;
        int qkvCols = 3 * sh.d;
        int qCol = h * dh;
        int kCol = sh.d + h * dh;
        int vCol = 2 * sh.d + h * dh;
        double[] qr = rot.rotatedCopy(qkv, row0, len, qkvCols, qCol, dh);
        double[] kr = rot.rotatedCopy(qkv, row0, len, qkvCols, kCol, dh);
        double[] dkr = new double[len * dh];   // gradient w.r.t. the rotated keys, summed over the queries
        double[] dqr = new double[dh];         // gradient w.r.t. the rotated query of the current row
        for (int i = 0; i < len; i++) {
            int oOff = (row0 + i) * sh.d + h * dh;
            double lseI = lse[(row0 + i) * sh.heads + h];
            double di = Vec.dot(dout, oOff, out, oOff, dh);
            Arrays.fill(dqr, 0.0);
            for (int j = sh.firstKey(i); j <= i; j++) {
                int vOff = (row0 + j) * qkvCols + vCol;
                double p = Math.exp(sh.scale * Vec.dot(qr, i * dh, kr, j * dh, dh) - lseI);
                Vec.axpy(p, dout, oOff, dqkv, vOff, dh);                        // dv_j += p_ij dout_i
                double ds = p * (Vec.dot(dout, oOff, qkv, vOff, dh) - di) * sh.scale;
                Vec.axpy(ds, kr, j * dh, dqr, 0, dh);
                Vec.axpy(ds, qr, i * dh, dkr, j * dh, dh);
            }
            rot.rotateBack(dqr, 0, i);
            Vec.axpy(1.0, dqr, 0, dqkv, (row0 + i) * qkvCols + qCol, dh);
        }
        for (int j = 0; j < len; j++) {
            rot.rotateBack(dkr, j * dh, j);
            Vec.axpy(1.0, dkr, j * dh, dqkv, (row0 + j) * qkvCols + kCol, dh);
        }
    }

    // ------------------------------------------------------------------ helpers

    /**
     * cos and sin of the rotary angles of positions {@code 0 .. L-1}: the float32 numbers every backend rotates by
     * ({@link RotaryAngles}), held as doubles.
     */
    private static final class Rotary {
        final int half;
        final double[] cos;
        final double[] sin;

        Rotary(int seqLen, int rotaryDim, double base) {
            half = rotaryDim / 2;
            cos = new double[seqLen * half];
            sin = new double[seqLen * half];
            float[] c = new float[half];
            float[] s = new float[half];
            for (int pos = 0; pos < seqLen; pos++) {
                RotaryAngles.at(pos, rotaryDim, base, c, s);
                for (int p = 0; p < half; p++) {
                    cos[pos * half + p] = c[p];
                    sin[pos * half + p] = s[p];
                }
            }
        }

        /** Columns {@code col ..} of rows {@code row0 .. row0+len-1}, rotated by position, as {@code [len, dh]}. */
        double[] rotatedCopy(double[] x, int row0, int len, int cols, int col, int dh) {
            double[] y = new double[len * dh];
            for (int t = 0; t < len; t++) {
                int src = (row0 + t) * cols + col;
                System.arraycopy(x, src, y, t * dh, dh);
                int c = t * half;
                for (int p = 0; p < half; p++) {
                    double x1 = y[t * dh + p];
                    double x2 = y[t * dh + p + half];
                    y[t * dh + p] = x1 * cos[c + p] - x2 * sin[c + p];
                    y[t * dh + p + half] = x2 * cos[c + p] + x1 * sin[c + p];
                }
            }
            return y;
        }

        /** Applies the transposed (inverse) rotation of position {@code pos} to {@code g[off ..]} in place. */
        void rotateBack(double[] g, int off, int pos) {
            int c = pos * half;
            for (int p = 0; p < half; p++) {
                double g1 = g[off + p];
                double g2 = g[off + p + half];
                g[off + p] = g1 * cos[c + p] + g2 * sin[c + p];
                g[off + p + half] = g2 * cos[c + p] - g1 * sin[c + p];
            }
        }
    }

    /** Sizes of one call, validated. */
    private static final class Shape {
        final int batch;
        final int seqLen;
        final int heads;
        final int dh;
        final int d;
        final int window;
        final double scale;

        Shape(int batch, int seqLen, int heads, int headDim, int window, int rotaryDim, double rotaryBase,
              double scale) {
            if (batch < 0) throw new IllegalArgumentException("batch must be >= 0, got " + batch);
            if (seqLen < 0) throw new IllegalArgumentException("seqLen must be >= 0, got " + seqLen);
            if (heads < 1) throw new IllegalArgumentException("heads must be >= 1, got " + heads);
            if (headDim < 1) throw new IllegalArgumentException("headDim must be >= 1, got " + headDim);
            if (window < 0) throw new IllegalArgumentException("window must be >= 0, got " + window);
            if (rotaryDim < 0 || rotaryDim > headDim || rotaryDim % 2 != 0) {
                throw new IllegalArgumentException("rotaryDim must be even and in [0, headDim " + headDim + "], got "
                        + rotaryDim);
            }
            if (rotaryDim > 0 && !(rotaryBase > 0 && Double.isFinite(rotaryBase))) {
                throw new IllegalArgumentException("rotaryBase must be finite and > 0, got " + rotaryBase);
            }
            if (!Double.isFinite(scale)) throw new IllegalArgumentException("scale must be finite, got " + scale);
            this.batch = batch;
            this.seqLen = seqLen;
            this.heads = heads;
            this.dh = headDim;
            this.d = Math.multiplyExact(heads, headDim);
            this.window = window;
            this.scale = scale;
        }

        int firstKey(int i) {
            return Math.max(0, i - window);
        }

        /** The most keys one query attends. */
        int keysPerQuery() {
            return window == Integer.MAX_VALUE ? Integer.MAX_VALUE : window + 1;
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
    }
}
