package io.based4j.backend.cpu;

import io.based4j.config.MixerConfig;

/**
 * Chunked Taylor linear attention for one sequence and one head, continuing from the recurrent state.
 *
 * <p>Within a chunk of {@link CpuBackend#LINEAR_CHUNK} tokens the kernel {@code phi(q).phi(k) = 1 + s + s^2/2}
 * (with {@code s = q.k / sqrt(f)}) is evaluated directly (quadratic in the chunk, no feature expansion); earlier
 * chunks reach the query through the state {@code S = sum phi(k) v^T}, {@code z = sum phi(k)}. The state keeps the
 * symmetric features merged: {@code [1, x / f^(1/4), x_i x_j c_ij (i <= j)]} with {@code c_ii = 1/sqrt(2f)} and
 * {@code c_ij = 1/sqrt(f)}, whose dot products equal the full map's.
 */
final class LinearAttentionKernel {
    private LinearAttentionKernel() {
    }

    static void featurize(float[] x, int off, int f, float[] phi) {
        float lin = (float) Math.pow(f, -0.25);
        float diag = (float) (1.0 / Math.sqrt(2.0 * f));
        float cross = (float) (1.0 / Math.sqrt(f));
        phi[0] = 1f;
        for (int i = 0; i < f; i++) {
            phi[1 + i] = x[off + i] * lin;
        }
        int p = 1 + f;
        for (int i = 0; i < f; i++) {
            float xi = x[off + i];
            phi[p++] = xi * xi * diag;
            for (int j = i + 1; j < f; j++) {
                phi[p++] = xi * x[off + j] * cross;
            }
        }
    }

    static void run(MixerConfig.LinearAttention cfg, float[] q, float[] k, float[] v, float[] out, int row0, int len,
                    int h, float[] stateKv, float[] stateK) {
        int f = cfg.featureDim();
        int dh = cfg.headDim();
        int nf = cfg.expandedDim();
        int qkCols = cfg.numHeads() * f;
        int vCols = cfg.dModel();
        int sOff = h * nf * dh;
        int zOff = h * nf;
        float invSqrtF = (float) (1.0 / Math.sqrt(f));
        float eps = (float) cfg.eps();
        float[] phi = new float[nf];
        float[] num = new float[dh];
        for (int c0 = 0; c0 < len; c0 += CpuBackend.LINEAR_CHUNK) {
            int c1 = Math.min(len, c0 + CpuBackend.LINEAR_CHUNK);
            for (int t = c0; t < c1; t++) {
                int qOff = (row0 + t) * qkCols + h * f;
                featurize(q, qOff, f, phi);
                java.util.Arrays.fill(num, 0f);
                float den = 0f;
                for (int a = 0; a < nf; a++) {
                    float p = phi[a];
                    den += p * stateK[zOff + a];
                    CpuBackend.axpy(p, stateKv, sOff + a * dh, num, 0, dh);
                }
                for (int s = c0; s <= t; s++) {
                    int kOff = (row0 + s) * qkCols + h * f;
                    float qk = 0f;
                    for (int i = 0; i < f; i++) {
                        qk += q[qOff + i] * k[kOff + i];
                    }
                    float x = qk * invSqrtF;
                    float a = 1f + x + 0.5f * x * x;
                    den += a;
                    CpuBackend.axpy(a, v, (row0 + s) * vCols + h * dh, num, 0, dh);
                }
                int oOff = (row0 + t) * vCols + h * dh;
                float inv = 1f / (den + eps);
                for (int e = 0; e < dh; e++) {
                    out[oOff + e] = num[e] * inv;
                }
            }
            for (int s = c0; s < c1; s++) {
                featurize(k, (row0 + s) * qkCols + h * f, f, phi);
                int vOff = (row0 + s) * vCols + h * dh;
                for (int a = 0; a < nf; a++) {
                    float p = phi[a];
                    stateK[zOff + a] += p;
                    CpuBackend.axpy(p, v, vOff, stateKv, sOff + a * dh, dh);
                }
            }
        }
    }
}
