package io.based4j.backend.cpu;

import io.based4j.config.MixerConfig;
import io.based4j.memory.HostMemory;

/**
 * Causal softmax attention for one sequence and one head with rotary positions. Keys of this call's tokens are
 * rotated into a local block; keys of earlier tokens come from the cache ({@link CpuStates.KeyValue}: a ring of the
 * last {@code window} tokens for sliding-window attention, pages of the whole history otherwise), whose pages for
 * this call's tokens the caller has made ({@link CpuStates.KeyValue#ensure}).
 */
final class AttentionKernel {
    private AttentionKernel() {
    }

    static void run(MixerConfig.Attention cfg, float[] qkv, float[] out, int row0, int start, int len, int h,
                    CpuStates.KeyValue cache, int slot, HostMemory memory) {
        int capacity = cache.capacity;
        int d = cfg.dModel();
        int dh = cfg.headDim();
        int rd = cfg.rotaryDim();
        int half = rd / 2;
        boolean interleaved = cfg.rotaryInterleaved();
        RotaryTable table = RotaryTable.of(rd, cfg.rotaryBase());
        table.ensure(start + len, memory);
        float[] cos = table.cos();
        float[] sin = table.sin();
        float[] kLoc = new float[len * dh];
        float[] vLoc = new float[len * dh];
        for (int t = 0; t < len; t++) {
            int src = (row0 + t) * 3 * d + h * dh;
            System.arraycopy(qkv, src + d, kLoc, t * dh, dh);
            System.arraycopy(qkv, src + 2 * d, vLoc, t * dh, dh);
            RotaryTable.rotate(kLoc, t * dh, half, interleaved, cos, sin, (start + t) * half);
        }
        float scale = (float) cfg.softmaxScale();
        int window = cfg.window();
        float[] q = new float[dh];
        float[] acc = new float[dh];
        float[] scores = new float[Math.min(start + len, cfg.sliding() ? window + 1 : start + len)];
        for (int t = 0; t < len; t++) {
            int pos = start + t;
            System.arraycopy(qkv, (row0 + t) * 3 * d + h * dh, q, 0, dh);
            RotaryTable.rotate(q, 0, half, interleaved, cos, sin, pos * half);
            int first = cfg.sliding() ? Math.max(0, pos - window) : 0;
            float max = Float.NEGATIVE_INFINITY;
            for (int j = first; j <= pos; j++) {
                float[] src = j >= start ? kLoc : cache.keyPage(slot, j);
                int off = j >= start ? (j - start) * dh : cache.row(j) + h * dh;
                float dot = 0f;
                for (int e = 0; e < dh; e++) {
                    dot += q[e] * src[off + e];
                }
                float s = dot * scale;
                scores[j - first] = s;
                max = Math.max(max, s);
            }
            float sum = 0f;
            java.util.Arrays.fill(acc, 0f);
            for (int j = first; j <= pos; j++) {
                float p = (float) Math.exp(scores[j - first] - max);
                sum += p;
                float[] src = j >= start ? vLoc : cache.valuePage(slot, j);
                int off = j >= start ? (j - start) * dh : cache.row(j) + h * dh;
                for (int e = 0; e < dh; e++) {
                    acc[e] += p * src[off + e];
                }
            }
            float inv = 1f / sum;
            int o = (row0 + t) * d + h * dh;
            for (int e = 0; e < dh; e++) {
                out[o + e] = acc[e] * inv;
            }
        }
        for (int t = Math.max(0, len - capacity); t < len; t++) {
            int pos = start + t;
            int dst = cache.row(pos) + h * dh;
            System.arraycopy(kLoc, t * dh, cache.keyPage(slot, pos), dst, dh);
            System.arraycopy(vLoc, t * dh, cache.valuePage(slot, pos), dst, dh);
        }
    }
}
