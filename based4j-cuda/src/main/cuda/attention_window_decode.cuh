// A decode step's attention over a short sliding window (included by based4j_kernels.cu after attention_decode.cuh):
// every sequence one new token whose query sees at most one block's worth of cached keys, so that a block takes a
// (head, sequence) whole: its keys and values copied into shared memory while the block works on the one before,
// the output written at once (no split, no merge), the token's rotated key and value appended to the ring (no
// attentionAppend after it). Launched by io.based4j.cuda.Kernels.attentionDecodeWindow; timed beside attentionDecode's
// versions (and their append) by `based4j bench kernels --kernel attentionDecode`.
#pragma once

namespace b4j {

/** Keys a lane group of attentionDecodeWindow takes at most: an item has (DEC_THREADS / G) times these. */
#define WDEC_KEYS_A_GROUP 8

/** 4 bytes global -> shared, asynchronously (cp.async.ca); both addresses 4-byte aligned. */
__device__ __forceinline__ void decCopy4(void* dst, const void* src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"((unsigned)__cvta_generic_to_shared(dst)),
                 "l"(src) : "memory");
}

/**
 * Bytes of one stage of attentionDecodeWindow's shared memory: the keys' rows and the values' rows of an item (window
 * rows of dh values each), the token's q, k and v (dh values each), its cos and sin (128 floats): each part a multiple
 * of 16 bytes. The host sizes the launch's dynamic shared memory as two stages.
 */
__host__ __device__ __forceinline__ int wdecStageBytes(int window, int dh, int valueBytes) {
    return (2 * window + 3) * dh * valueBytes + 128 * 4;
}

/** An item of attentionDecodeWindow: head `head` of sequence `seq`, its token's row, position, slot and window. */
struct WdecItem {
    i64 row, pos, slot;
    int head, cached, c0;
};

__device__ __forceinline__ WdecItem wdecItemOf(int item, const Layout& L, int H, int window, int capacity) {
    WdecItem w;
    const int seq = item / H;
    w.head = item - seq * H;
    w.row = L.offsets[seq];
    w.pos = L.starts[seq];
    w.slot = L.slots[seq];
    const i64 first = w.pos - window > 0 ? w.pos - window : 0;
    w.cached = (int)(w.pos - first);
    w.c0 = (int)(first % capacity);
    return w;
}

/**
 * Copies an item's cached keys and values (window rows at most, cache row c0 + k wrapped once at capacity), its
 * token's q, k and v, and its cos and sin (cos at 0, sin at rd / 2; none past the table) into a stage, 16 bytes a copy
 * (4 for the table), and commits them as one group, without waiting.
 */
template <typename A>
__device__ __forceinline__ void wdecStage(const WdecItem& w, const A* qkv, const A* kCache, const A* vCache,
                                          const float* rotary, char* stage, int H, int dh, int capacity, int window,
                                          int rd, int maxPos) {
    constexpr int P = 16 / sizeof(A);  // values a copy
    const int per = dh / P;
    const i64 d = (i64)H * dh;
    A* ks = reinterpret_cast<A*>(stage);
    A* vs = ks + window * dh;
    A* tok = vs + window * dh;
    float* rot = reinterpret_cast<float*>(tok + 3 * dh);
    const i64 cells = w.slot * capacity * d + (i64)w.head * dh;
    for (int t = threadIdx.x; t < w.cached * per; t += DEC_THREADS) {
        const int key = t / per;
        const int off = (t - key * per) * P;
        int c = w.c0 + key;
        if (c >= capacity) c -= capacity;
        decCopy16(ks + key * dh + off, kCache + cells + (i64)c * d + off);
        decCopy16(vs + key * dh + off, vCache + cells + (i64)c * d + off);
    }
    const A* token = qkv + w.row * 3 * d + (i64)w.head * dh;
    for (int t = threadIdx.x; t < 3 * per; t += DEC_THREADS) {
        const int part = t / per;
        const int off = (t - part * per) * P;
        decCopy16(tok + part * dh + off, token + part * d + off);
    }
    const int half = rd >> 1;
    if (w.pos < maxPos) {
        for (int t = threadIdx.x; t < rd; t += DEC_THREADS) {
            decCopy4(rot + t, t < half ? rotary + w.pos * half + t : rotary + ((i64)maxPos + w.pos) * half + t - half);
        }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/**
 * attentionDecodeWindow: the arguments of attentionDecode without partial and splits, with the output and the
 * writable caches. Items (head h of sequence b: item b H + h) are shared out over the grid, block x taking x, x +
 * gridDim.x, ...; a block copies its next item into one of two stages of shared memory (cp.async: the cached keys
 * and values, the token's q, k and v, its cos and sin) while it works on the item in the other, so that its
 * multiprocessor's copies go on during the work. Sequence b's token is at position pos = starts[b]; its query sees
 * keys max(0, pos - window) ..= pos, the cached ones at most (DEC_THREADS / G) WDEC_KEYS_A_GROUP (the host sees to
 * it, to window <= capacity, and to pos < maxPos where rd > 0). The query and the token's key are rotated from the
 * stage (the same float operations as rotated()). Lanes as in attentionDecode2 (a key dh / 8 lanes of a group of G, 8
 * dims a lane); group g takes keys g, g + groups, ...: its scores are its lanes' dot products summed by shuffles, its
 * softmax plain (all its scores at hand: m their largest, l the sum of exp(score - m), the lane's 8 dims of sum exp(score
 * - m) v); group 0 also takes the query's own key and value. The groups are combined in shared memory in a fixed order
 * (M the largest m, each group scaled by exp(m - M)) and the output written, rounded to A. Then the token's rotated key
 * (rounded to A; NaN past the rotary table, as attentionAppend writes it) and its value go to the ring at pos %
 * capacity: the cell of key pos - capacity, which only this item reads and whose copy is in the stage by then.
 */
template <typename W, typename A>
__device__ void attentionDecodeWindow_impl(const A* qkv, A* kCache, A* vCache, const float* rotary,
                                           const int* layout, A* out, int B, int H, int dh, int capacity, int window,
                                           int rd, int maxPos, int interleaved, float scale) {
    extern __shared__ __align__(16) char wdecShared[];
    __shared__ float qs[128];                // the rotated query
    __shared__ float kn[128];                // the token's rotated key
    __shared__ float vred[DEC_THREADS * 8];  // groups x dh, dh <= 8 G
    __shared__ float gm[DEC_THREADS / 2];    // each group's m and l (G >= 2)
    __shared__ float gl[DEC_THREADS / 2];
    const int tid = threadIdx.x;
    const int items = B * H;
    int item = blockIdx.x;
    if (item >= items) return;
    const Layout L = layoutOf(layout, B);
    const int stageBytes = wdecStageBytes(window, dh, (int)sizeof(A));
    const i64 d = (i64)H * dh;
    const DecLanes Ln = decLanes(dh, tid);
    const int G = Ln.G, groups = Ln.groups, lane = Ln.lane, grp = Ln.grp, e0 = Ln.e0;
    const bool active = Ln.active;

    wdecStage(wdecItemOf(item, L, H, window, capacity), qkv, kCache, vCache, rotary, wdecShared, H, dh, capacity,
              window, rd, maxPos);
    for (int buf = 0; item < items; item += gridDim.x, buf ^= 1) {
        const int next = item + gridDim.x;
        if (next < items) {
            wdecStage(wdecItemOf(next, L, H, window, capacity), qkv, kCache, vCache, rotary,
                      wdecShared + (buf ^ 1) * stageBytes, H, dh, capacity, window, rd, maxPos);
            asm volatile("cp.async.wait_group 1;\n" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;\n" ::: "memory");
        }
        __syncthreads();  // the item's stage is complete for every thread
        const WdecItem w = wdecItemOf(item, L, H, window, capacity);
        const A* ks = reinterpret_cast<const A*>(wdecShared + buf * stageBytes);
        const A* vs = ks + window * dh;
        const A* tok = vs + window * dh;
        const float* rot = reinterpret_cast<const float*>(tok + 3 * dh);
        // rotated() with the stage's cos and sin as a table of one position
        for (int e = tid; e < dh; e += DEC_THREADS) {
            qs[e] = rotated(tok, e, 0, rot, rd, 1, interleaved);
            kn[e] = rotated(tok + dh, e, 0, rot, rd, 1, interleaved);
        }
        __syncthreads();
        float q[8];
        decLaneQuery(Ln, qs, q);

        float s[WDEC_KEYS_A_GROUP];
        float m = -CUDART_INF_F;
#pragma unroll
        for (int u = 0; u < WDEC_KEYS_A_GROUP; u++) {
            const int k = u * groups + grp;
            float kv[8];
            if (active && k < w.cached) {
                load8(ks + k * dh + e0, kv);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) kv[i] = 0.0f;
            }
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; i++) dot += q[i] * kv[i];
            dot = groupSum(dot, G);
            s[u] = k < w.cached ? dot * scale : -CUDART_INF_F;
            m = fmaxf(m, s[u]);
        }
        // the query's own key: warp 0 (whole, for its shuffles) scores it; group 0 takes it
        float sOwn = -CUDART_INF_F;
        if (tid < 32) {
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; i++) dot += q[i] * (active ? kn[e0 + i] : 0.0f);
            dot = groupSum(dot, G);
            if (grp == 0) sOwn = dot * scale;
        }
        m = fmaxf(m, sOwn);

        float l = 0.0f, acc[8];
#pragma unroll
        for (int i = 0; i < 8; i++) acc[i] = 0.0f;
        if (m != -CUDART_INF_F) {  // a group with a key (group 0 always)
#pragma unroll
            for (int u = 0; u < WDEC_KEYS_A_GROUP; u++) {
                const int k = u * groups + grp;
                if (k < w.cached) {
                    const float p = expf(s[u] - m);
                    l += p;
                    if (active) {
                        float vv[8];
                        load8(vs + k * dh + e0, vv);
#pragma unroll
                        for (int i = 0; i < 8; i++) acc[i] += p * vv[i];
                    }
                }
            }
            if (grp == 0) {
                const float p = expf(sOwn - m);
                l += p;
                if (active) {
                    float vv[8];
                    load8(tok + 2 * dh + e0, vv);
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[i] += p * vv[i];
                }
            }
        }
        if (active) {
#pragma unroll
            for (int i = 0; i < 8; i++) vred[grp * dh + e0 + i] = acc[i];
        }
        if (lane == 0) {
            gm[grp] = m;
            gl[grp] = l;
        }
        __syncthreads();
        float M = -CUDART_INF_F;
        for (int g = 0; g < groups; g++) M = fmaxf(M, gm[g]);
        float total = 0.0f;
        for (int g = 0; g < groups; g++) {
            if (gm[g] != -CUDART_INF_F) total += gl[g] * expf(gm[g] - M);
        }
        const float inv = 1.0f / total;
        A* o = out + w.row * d + (i64)w.head * dh;
        const i64 cell = (w.slot * capacity + w.pos % capacity) * d + (i64)w.head * dh;
        const bool pastTable = rd > 0 && w.pos >= maxPos;
        for (int e = tid; e < dh; e += DEC_THREADS) {
            float sum = 0.0f;
            for (int g = 0; g < groups; g++) {
                if (gm[g] != -CUDART_INF_F) sum += vred[g * dh + e] * expf(gm[g] - M);
            }
            o[e] = fromF<A>(sum * inv);
            kCache[cell + e] = fromF<A>(pastTable ? CUDART_NAN_F : kn[e]);
            vCache[cell + e] = tok[2 * dh + e];
        }
        __syncthreads();  // the stage, qs, kn, vred, gm and gl are free for the next items
    }
}

}  // namespace b4j

B4J_KERNEL(attentionDecodeWindow, DEC_THREADS,
           (const A* qkv, A* kCache, A* vCache, const float* rotary, const int* layout, A* out, int B, int H, int dh,
            int capacity, int window, int rd, int maxPos, int interleaved, float scale),
           (qkv, kCache, vCache, rotary, layout, out, B, H, dh, capacity, window, rd, maxPos, interleaved, scale))
