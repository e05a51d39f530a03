package io.based4j.backend.cpu;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
import io.based4j.memory.HostMemory;

/**
 * The plain scalar reference: single-threaded loops written straight from the model's definition, slow on purpose
 * and easy to check by eye. Every fast path is tested against it.
 *
 * <p>It keeps the linear-attention state in the unmerged feature space ({@code 1 + f + f^2}) and the whole key/value
 * history for sliding-window attention, so it also checks the fast backend's merged features and ring buffers.
 */
public final class ReferenceBackend extends HeapBackend {

    /** A reference backend whose memory checks measure this JVM and machine. */
    public ReferenceBackend() {
        this(HostMemory.system());
    }

    /** A reference backend checking its allocations against {@code memory}. */
    public ReferenceBackend(HostMemory memory) {
        super(memory);
    }

    @Override
    public String name() {
        return "reference";
    }

    @Override
    int linearStateFeatures(MixerConfig.LinearAttention cfg) {
        int f = cfg.featureDim();
        return 1 + f + f * f;
    }

    @Override
    public MixerState allocateState(MixerConfig mixer, int slots, int maxLength) {
        if (mixer instanceof MixerConfig.Attention a) {
            return new CpuStates.KeyValue(memory, slots, maxLength, a.dModel(), false);
        }
        return super.allocateState(mixer, slots, maxLength);
    }

    @Override
    public void rmsNorm(Buffer x, Weight weight, double epsilon, Buffer out, Buffer rstd) {
        Backend.keepsNothing("rmsNorm", rstd);
        float eps = (float) epsilon;
        CpuBuffer a = CpuBuffer.of(x);
        CpuBuffer o = CpuBuffer.of(out);
        checkShape("rmsNorm", o, a.rows, a.cols);
        float[] w = CpuWeight.of(weight).floats();
        for (int i = 0; i < a.rows; i++) {
            double ss = 0;
            for (int j = 0; j < a.cols; j++) {
                double v = a.data[i * a.cols + j];
                ss += v * v;
            }
            float r = (float) (1.0 / Math.sqrt(ss / a.cols + eps));
            for (int j = 0; j < a.cols; j++) {
                o.data[i * a.cols + j] = a.data[i * a.cols + j] * r * w[j];
            }
        }
    }

    @Override
    public void matmul(Buffer x, Weight w, Weight bias, Buffer out) {
        CpuBuffer a = CpuBuffer.of(x);
        int[] rows = new int[a.rows];
        for (int i = 0; i < rows.length; i++) {
            rows[i] = i;
        }
        product(a, rows, CpuWeight.of(w), bias == null ? null : CpuWeight.of(bias).floats(), CpuBuffer.of(out));
    }

    @Override
    public void matmulRows(Buffer x, int[] rows, Weight w, Buffer out) {
        product(CpuBuffer.of(x), rows, CpuWeight.of(w), null, CpuBuffer.of(out));
    }

    private static void product(CpuBuffer a, int[] rows, CpuWeight w, float[] bias, CpuBuffer o) {
        if (w.cols != a.cols) {
            throw new IllegalArgumentException("matmul: input width " + a.cols + " does not match weight " + w);
        }
        checkShape("matmul", o, rows.length, w.rows);
        for (int i = 0; i < rows.length; i++) {
            for (int m = 0; m < w.rows; m++) {
                double acc = bias == null ? 0 : bias[m];
                for (int k = 0; k < a.cols; k++) {
                    acc += (double) a.data[rows[i] * a.cols + k] * w.get(m, k);
                }
                o.data[i * w.rows + m] = (float) acc;
            }
        }
    }

    @Override
    public void swiglu(Buffer a, Buffer out) {
        CpuBuffer in = CpuBuffer.of(a);
        CpuBuffer o = CpuBuffer.of(out);
        int h = in.cols / 2;
        checkShape("swiglu", o, in.rows, h);
        for (int i = 0; i < in.rows; i++) {
            for (int j = 0; j < h; j++) {
                o.data[i * h + j] = in.data[i * in.cols + j] * silu(in.data[i * in.cols + h + j]);
            }
        }
    }

    @Override
    public void baseConv(MixerConfig.BaseConv cfg, Buffer u, Weight convWeight, TokenBatch batch, MixerState state,
                         Buffer out, Buffer convOut) {
        Backend.keepsNothing("baseConv", convOut);
        CpuBuffer in = CpuBuffer.of(u);
        CpuBuffer o = CpuBuffer.of(out);
        CpuStates.Conv st = CpuStates.cast(state, CpuStates.Conv.class, "baseConv");
        float[] w = CpuWeight.of(convWeight).floats();
        int ch = cfg.innerWidth();
        int k = cfg.kernel();
        checkShape("baseConv", o, in.rows, ch);
        int[] off = batch.offsets();
        for (int b = 0; b < batch.size(); b++) {
            float[] hist = st.history[batch.slot(b)];
            int len = batch.length(b);
            for (int c = 0; c < ch; c++) {
                // the input sequence seen by this channel: k-1 remembered values, then this call's values
                float[] seq = new float[k - 1 + len];
                for (int j = 0; j < k - 1; j++) {
                    seq[j] = hist[j * ch + c];
                }
                for (int t = 0; t < len; t++) {
                    seq[k - 1 + t] = in.data[(off[b] + t) * in.cols + c];
                }
                for (int t = 0; t < len; t++) {
                    double acc = 0;
                    for (int j = 0; j < k; j++) {
                        acc += (double) w[c * k + j] * seq[t + j];
                    }
                    float gate = in.data[(off[b] + t) * in.cols + ch + c];
                    o.data[(off[b] + t) * ch + c] = silu((float) acc) * gate;
                }
                for (int j = 0; j < k - 1; j++) {
                    hist[j * ch + c] = seq[len + j];
                }
            }
        }
    }

    /** The Taylor feature map as written in the definition: [1, x / f^(1/4), vec(x x^T) / (sqrt(2) sqrt(f))]. */
    static double[] taylor(float[] x, int off, int f) {
        double[] phi = new double[1 + f + f * f];
        phi[0] = 1;
        double r4 = Math.pow(f, 0.25);
        double r2 = Math.sqrt(2) * Math.sqrt(f);
        for (int i = 0; i < f; i++) {
            phi[1 + i] = x[off + i] / r4;
            for (int j = 0; j < f; j++) {
                phi[1 + f + i * f + j] = (double) x[off + i] * x[off + j] / r2;
            }
        }
        return phi;
    }

    @Override
    public void linearAttention(MixerConfig.LinearAttention cfg, Buffer q, Buffer k, Buffer v, TokenBatch batch,
                                MixerState state, Buffer out) {
        CpuBuffer qb = CpuBuffer.of(q);
        CpuBuffer kb = CpuBuffer.of(k);
        CpuBuffer vb = CpuBuffer.of(v);
        CpuBuffer o = CpuBuffer.of(out);
        CpuStates.Linear st = CpuStates.cast(state, CpuStates.Linear.class, "linearAttention");
        int f = cfg.featureDim();
        int dh = cfg.headDim();
        int nf = linearStateFeatures(cfg);
        checkShape("linearAttention", o, vb.rows, cfg.dModel());
        int[] off = batch.offsets();
        for (int b = 0; b < batch.size(); b++) {
            float[] s = st.kv[batch.slot(b)];
            float[] z = st.k[batch.slot(b)];
            for (int h = 0; h < cfg.numHeads(); h++) {
                for (int t = 0; t < batch.length(b); t++) {
                    int row = off[b] + t;
                    // state += phi(k_t) v_t^T, then y_t = phi(q_t)^T S / (phi(q_t) . z + eps)
                    double[] pk = taylor(kb.data, row * kb.cols + h * f, f);
                    for (int a = 0; a < nf; a++) {
                        z[h * nf + a] += (float) pk[a];
                        for (int e = 0; e < dh; e++) {
                            s[(h * nf + a) * dh + e] += (float) (pk[a] * vb.data[row * vb.cols + h * dh + e]);
                        }
                    }
                    double[] pq = taylor(qb.data, row * qb.cols + h * f, f);
                    double den = 0;
                    for (int a = 0; a < nf; a++) {
                        den += pq[a] * z[h * nf + a];
                    }
                    for (int e = 0; e < dh; e++) {
                        double num = 0;
                        for (int a = 0; a < nf; a++) {
                            num += pq[a] * s[(h * nf + a) * dh + e];
                        }
                        o.data[row * o.cols + h * dh + e] = (float) (num / (den + cfg.eps()));
                    }
                }
            }
        }
    }

    @Override
    public void attention(MixerConfig.Attention cfg, Buffer qkv, TokenBatch batch, MixerState state, Buffer out,
                          Buffer lse) {
        Backend.keepsNothing("attention", lse);
        CpuBuffer in = CpuBuffer.of(qkv);
        CpuBuffer o = CpuBuffer.of(out);
        CpuStates.KeyValue st = CpuStates.cast(state, CpuStates.KeyValue.class, "attention");
        int d = cfg.dModel();
        int dh = cfg.headDim();
        int rd = cfg.rotaryDim();
        checkShape("attention", o, in.rows, d);
        float[] cos = new float[rd / 2];
        float[] sin = new float[rd / 2];
        int[] off = batch.offsets();
        for (int b = 0; b < batch.size(); b++) {
            int slot = batch.slot(b);
            if (batch.start(b) + batch.length(b) > st.capacity) {
                throw new IllegalStateException("attention: position " + (batch.start(b) + batch.length(b) - 1)
                        + " is past the cache of " + st.capacity);
            }
            st.ensure(slot, batch.start(b) + batch.length(b));
            for (int t = 0; t < batch.length(b); t++) {
                int row = off[b] + t;
                int pos = batch.start(b) + t;
                RotaryAngles.at(pos, rd, cfg.rotaryBase(), cos, sin);
                float[] q = new float[d];
                System.arraycopy(in.data, row * 3 * d, q, 0, d);
                float[] keyPage = st.keyPage(slot, pos);
                int at = st.row(pos);
                System.arraycopy(in.data, row * 3 * d + d, keyPage, at, d);
                System.arraycopy(in.data, row * 3 * d + 2 * d, st.valuePage(slot, pos), at, d);
                for (int h = 0; h < cfg.numHeads(); h++) {
                    RotaryTable.rotate(q, h * dh, rd / 2, cfg.rotaryInterleaved(), cos, sin, 0);
                    RotaryTable.rotate(keyPage, at + h * dh, rd / 2, cfg.rotaryInterleaved(), cos, sin, 0);
                }
                int first = cfg.sliding() ? Math.max(0, pos - cfg.window()) : 0;
                for (int h = 0; h < cfg.numHeads(); h++) {
                    double[] score = new double[pos - first + 1];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = first; j <= pos; j++) {
                        double dot = 0;
                        float[] kp = st.keyPage(slot, j);
                        int kr = st.row(j) + h * dh;
                        for (int e = 0; e < dh; e++) {
                            dot += (double) q[h * dh + e] * kp[kr + e];
                        }
                        score[j - first] = dot * cfg.softmaxScale();
                        max = Math.max(max, score[j - first]);
                    }
                    double sum = 0;
                    for (int j = 0; j < score.length; j++) {
                        score[j] = Math.exp(score[j] - max);
                        sum += score[j];
                    }
                    for (int e = 0; e < dh; e++) {
                        double acc = 0;
                        for (int j = first; j <= pos; j++) {
                            acc += score[j - first] * st.valuePage(slot, j)[st.row(j) + h * dh + e];
                        }
                        o.data[row * d + h * dh + e] = (float) (acc / sum);
                    }
                }
            }
        }
    }
}
