// A decode step's attention over a short sliding window (included by based4j_kernels.cu after attention_decode.cuh):
// every sequence one new token whose query sees at most one block's worth of cached keys, so that a block takes a
// (head, sequence) whole: its keys and values copied into shared memory while the block works on the one before,
// the output written at once (no split, no merge), the token's rotated key and value appended to the ring (no
// attentionAppend after it). Launched by io.based4j.cuda.Kernels.attentionDecodeWindow; timed beside attentionDecode's
// versions (and their append) by `based4j bench kernels --kernel attentionDecode`.
#pragma once

namespace b4j {

/** Threads of a block of attentionDecodeWindow, and the blocks a multiprocessor should hold (by registers). */
#define WDEC_THREADS 256
#define WDEC_BLOCKS 3
/** Keys a lane group of attentionDecodeWindow takes at most: an item has (WDEC_THREADS / G) times these. */
#define WDEC_KEYS_A_GROUP 4

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
    i64 row;
    int pos, slot, head, cached, c0;
};

__device__ __forceinline__ WdecItem wdecItemOf(int item, const Layout& L, int H, int window, int capacity) {
    WdecItem w;
    const int seq = item / H;
    w.head = item - seq * H;
    w.row = L.offsets[seq];
    w.pos = L.starts[seq];
    w.slot = L.slots[seq];
    const int first = w.pos - window > 0 ? w.pos - window : 0;
    w.cached = w.pos - first;
    w.c0 = first % capacity;
    return w;
}

/**
 * Copies an item's cached keys and values (cache row c0 + k, wrapped once at capacity), its token's q, k and v, and
 * its cos and sin (cos at 0, sin at rd / 2; none past the table) into a stage and commits them as one group, without
 * waiting: each lane its 8 dims of the keys of its group (as the work on them reads them), 16 bytes a copy (4 for the
 * table).
 */
template <int G, typename A, bool CACHED = true, bool TOKEN = true>
__device__ __forceinline__ void wdecStage(const WdecItem& w, const A* qkv, const A* kCache, const A* vCache,
                                          const float* rotary, char* stage, int H, int dh, int capacity, int window,
                                          int rd, int maxPos) {
    constexpr int P = 16 / sizeof(A);  // values a copy
    constexpr int GROUPS = WDEC_THREADS / G;
    const int tid = threadIdx.x;
    const int grp = tid / G;
    const int e0 = (tid & (G - 1)) * 8;
    const i64 d = (i64)H * dh;
    A* ks = reinterpret_cast<A*>(stage);
    A* vs = ks + window * dh;
    A* tok = vs + window * dh;
    float* rot = reinterpret_cast<float*>(tok + 3 * dh);
    if (CACHED && e0 < dh) {
        const i64 cells = (i64)w.slot * capacity * d + (i64)w.head * dh + e0;
        int c = w.c0 + grp;
        if (c >= capacity) c -= capacity;
#pragma unroll
        for (int u = 0; u < WDEC_KEYS_A_GROUP; u++) {
            const int k = u * GROUPS + grp;
            if (k < w.cached) {
#pragma unroll
                for (int x = 0; x < 8; x += P) {
                    decCopy16(ks + k * dh + e0 + x, kCache + cells + (i64)c * d + x);
                    decCopy16(vs + k * dh + e0 + x, vCache + cells + (i64)c * d + x);
                }
            }
            c += GROUPS;
            if (c >= capacity) c -= capacity;
        }
    }
    if (TOKEN && e0 < dh) {
        if (grp < 3) {  // the token's q, k and v
            const A* token = qkv + w.row * 3 * d + (i64)grp * d + (i64)w.head * dh + e0;
#pragma unroll
            for (int x = 0; x < 8; x += P) decCopy16(tok + grp * dh + e0 + x, token + x);
        }
    }
    const int half = rd >> 1;
    if (CACHED && w.pos < maxPos) {
        for (int t = tid; t < rd; t += WDEC_THREADS) {
            decCopy4(rot + t, t < half ? rotary + (i64)w.pos * half + t
                                       : rotary + ((i64)maxPos + w.pos) * half + t - half);
        }
    }
    if (TOKEN) asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/** The shared arrays of attentionDecodeWindow besides its stages. */
struct WdecShared {
    float qs[128];                // the rotated query
    float kn[128];                // the token's rotated key
    float vred[WDEC_THREADS * 8];  // groups x dh, dh <= 8 G
    float gm[WDEC_THREADS / 2];    // each group's m, l and exp(m - M) (G >= 2)
    float gl[WDEC_THREADS / 2];
    float gf[WDEC_THREADS / 2];
};

/**
 * attentionDecodeWindow for lane groups of G (see attentionDecodeWindow_impl): a block's items in turn, the next one's
 * stage copied while it works on the current one.
 */
template <int G, bool EARLY, typename A>
__device__ __forceinline__ void wdecItems(const A* qkv, A* kCache, A* vCache, const float* rotary, const int* layout,
                                          A* out, int B, int H, int dh, int capacity, int window, int rd, int maxPos,
                                          int interleaved, float scale, char* stages, WdecShared& sh) {
    constexpr int GROUPS = WDEC_THREADS / G;
    const int tid = threadIdx.x;
    const int items = B * H;
    const Layout L = layoutOf(layout, B);
    const int stageBytes = wdecStageBytes(window, dh, (int)sizeof(A));
    const i64 d = (i64)H * dh;
    const int lane = tid & (G - 1);
    const int grp = tid / G;
    const int e0 = lane * 8;
    const bool active = e0 < dh;

    int item = blockIdx.x;
    WdecItem w = wdecItemOf(item, L, H, window, capacity);
    if constexpr (EARLY) {
        // the first item's cached keys and values and its cos and sin asked for before the wait for the kernel before
        // it, which wrote qkv: the ring and the layout were written two kernels before this one or earlier, done
        // once the kernel before it is past its own wait
        wdecStage<G, A, true, false>(w, qkv, kCache, vCache, rotary, stages, H, dh, capacity, window, rd, maxPos);
        b4jPdlWait();
        wdecStage<G, A, false, true>(w, qkv, kCache, vCache, rotary, stages, H, dh, capacity, window, rd, maxPos);
    } else {
        wdecStage<G, A>(w, qkv, kCache, vCache, rotary, stages, H, dh, capacity, window, rd, maxPos);
    }
    for (int buf = 0; item < items; item += gridDim.x, buf ^= 1) {
        asm volatile("cp.async.wait_group 0;\n" ::: "memory");
        __syncthreads();  // the item's stage is complete for every thread, and the item before is done with
        const int next = item + gridDim.x;
        WdecItem wn;
        if (next < items) {
            wn = wdecItemOf(next, L, H, window, capacity);
            wdecStage<G, A>(wn, qkv, kCache, vCache, rotary, stages + (buf ^ 1) * stageBytes, H, dh, capacity,
                            window, rd, maxPos);
        }
        const A* ks = reinterpret_cast<const A*>(stages + buf * stageBytes);
        const A* vs = ks + window * dh;
        const A* tok = vs + window * dh;
        const float* rot = reinterpret_cast<const float*>(tok + 3 * dh);
        // rotated() with the stage's cos and sin as a table of one position
        for (int e = tid; e < dh; e += WDEC_THREADS) {
            sh.qs[e] = rotated(tok, e, 0, rot, rd, 1, interleaved);
            sh.kn[e] = rotated(tok + dh, e, 0, rot, rd, 1, interleaved);
        }
        __syncthreads();
        float q[8];
#pragma unroll
        for (int i = 0; i < 8; i++) q[i] = active ? sh.qs[e0 + i] : 0.0f;

        float s[WDEC_KEYS_A_GROUP];
        float m = -CUDART_INF_F;
#pragma unroll
        for (int u = 0; u < WDEC_KEYS_A_GROUP; u++) {
            const int k = u * GROUPS + grp;
            float dot = 0.0f;
            if (active && k < w.cached) {
                float kv[8];
                load8(ks + k * dh + e0, kv);
#pragma unroll
                for (int i = 0; i < 8; i++) dot += q[i] * kv[i];
            }
            dot = groupSum(dot, G);
            s[u] = k < w.cached ? dot * scale : -CUDART_INF_F;
            m = fmaxf(m, s[u]);
        }
        // the query's own key: warp 0 (whole, for its shuffles) scores it; group 0 takes it
        float sOwn = -CUDART_INF_F;
        if (tid < 32) {
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; i++) dot += q[i] * (active ? sh.kn[e0 + i] : 0.0f);
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
                const int k = u * GROUPS + grp;
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
            for (int i = 0; i < 8; i++) sh.vred[grp * dh + e0 + i] = acc[i];
        }
        if (lane == 0) {
            sh.gm[grp] = m;
            sh.gl[grp] = l;
        }
        __syncthreads();
        if (tid < GROUPS) {  // each group's factor exp(m - M), 0 for a group without keys
            float M = -CUDART_INF_F;
#pragma unroll 8
            for (int g = 0; g < GROUPS; g++) M = fmaxf(M, sh.gm[g]);
            sh.gf[tid] = sh.gm[tid] == -CUDART_INF_F ? 0.0f : expf(sh.gm[tid] - M);
        }
        __syncthreads();
        float total = 0.0f;
#pragma unroll 8
        for (int g = 0; g < GROUPS; g++) total += sh.gl[g] * sh.gf[g];
        const float inv = 1.0f / total;
        A* o = out + w.row * d + (i64)w.head * dh;
        const i64 cell = ((i64)w.slot * capacity + w.pos % capacity) * d + (i64)w.head * dh;
        const bool pastTable = rd > 0 && w.pos >= maxPos;
        for (int e = tid; e < dh; e += WDEC_THREADS) {
            float sum = 0.0f;
#pragma unroll 8
            for (int g = 0; g < GROUPS; g++) sum += sh.vred[g * dh + e] * sh.gf[g];
            o[e] = fromF<A>(sum * inv);
            kCache[cell + e] = fromF<A>(pastTable ? CUDART_NAN_F : sh.kn[e]);
            vCache[cell + e] = tok[2 * dh + e];
        }
        w = wn;  // the stage, qs, kn, vred and the factors are free once every thread is past the next barrier
    }
}

/**
 * attentionDecodeWindow: the arguments of attentionDecode without partial and splits, with the output and the
 * writable caches. Items (head h of sequence b: item b H + h) are shared out over the grid, block x taking x, x +
 * gridDim.x, ...; a block copies its next item into one of two stages of shared memory (cp.async: the cached keys
 * and values, the token's q, k and v, its cos and sin) while it works on the item in the other, so that its
 * multiprocessor's copies go on during the work. Sequence b's token is at position pos = starts[b]; its query sees
 * keys max(0, pos - window) ..= pos, the cached ones at most (WDEC_THREADS / G) WDEC_KEYS_A_GROUP (the host sees to
 * it, to window <= capacity, and to pos < maxPos where rd > 0). The query and the token's key are rotated from the
 * stage (the same float operations as rotated()). Lanes as in attentionDecode2 (a key dh / 8 lanes of a group of G, 8
 * dims a lane; G a compile-time constant here); group g takes keys g, g + groups, ...: its scores are its lanes' dot
 * products summed by shuffles, its softmax plain (all its scores at hand: m their largest, l the sum of exp(score - m),
 * the lane's 8 dims of sum exp(score - m) v); group 0 also takes the query's own key and value. The groups are combined
 * in a fixed order (M the largest m, each group's factor exp(m - M)) and the output written, rounded to A. Then the
 * token's rotated key (rounded to A; NaN past the rotary table, as attentionAppend writes it) and its value go to the
 * ring at pos % capacity: the cell of key pos - capacity, which only this item reads and whose copy is in the stage.
 */
template <typename W, typename A, bool EARLY = false>
__device__ void attentionDecodeWindow_impl(const A* qkv, A* kCache, A* vCache, const float* rotary,
                                           const int* layout, A* out, int B, int H, int dh, int capacity, int window,
                                           int rd, int maxPos, int interleaved, float scale) {
    extern __shared__ __align__(16) char wdecStages[];
    __shared__ WdecShared sh;
    if ((int)blockIdx.x >= B * H) return;
    const int lanes = dh >> 3;
#define B4J_WDEC(G)                                                                                                    \
    wdecItems<G, EARLY, A>(qkv, kCache, vCache, rotary, layout, out, B, H, dh, capacity, window, rd, maxPos,         \
                           interleaved, scale, wdecStages, sh)
    if (lanes <= 2) {
        B4J_WDEC(2);
    } else if (lanes <= 4) {
        B4J_WDEC(4);
    } else if (lanes <= 8) {
        B4J_WDEC(8);
    } else {
        B4J_WDEC(16);
    }
#undef B4J_WDEC
}

}  // namespace b4j

// the kernel with its blocks' registers bounded so that WDEC_BLOCKS fit a multiprocessor (as its shared memory does)
#define B4J_WDEC_KERNEL(NS, SUFFIX)                                                                                    \
    namespace NS {                                                                                                     \
    extern "C" __global__ void __launch_bounds__(WDEC_THREADS, WDEC_BLOCKS) attentionDecodeWindow_##SUFFIX(            \
        const A* qkv, A* kCache, A* vCache, const float* rotary, const int* layout, A* out, int B, int H, int dh,      \
        int capacity, int window, int rd, int maxPos, int interleaved, float scale) {                                  \
        b4jPdlWait();                                                                                                  \
        b4j::attentionDecodeWindow_impl<W, A>(qkv, kCache, vCache, rotary, layout, out, B, H, dh, capacity, window,    \
                                              rd, maxPos, interleaved, scale);                                         \
    }                                                                                                                  \
    }
B4J_WDEC_KERNEL(b4j_f32, f32)
B4J_WDEC_KERNEL(b4j_bf16, bf16)
// attentionDecodeWindowEarly: the same, its first item's cached keys and values asked for before its wait
#define B4J_WDEC_EARLY_KERNEL(NS, SUFFIX)                                                                              \
    namespace NS {                                                                                                     \
    extern "C" __global__ void __launch_bounds__(WDEC_THREADS, WDEC_BLOCKS) attentionDecodeWindowEarly_##SUFFIX(       \
        const A* qkv, A* kCache, A* vCache, const float* rotary, const int* layout, A* out, int B, int H, int dh,      \
        int capacity, int window, int rd, int maxPos, int interleaved, float scale) {                                  \
        b4j::attentionDecodeWindow_impl<W, A, true>(qkv, kCache, vCache, rotary, layout, out, B, H, dh, capacity,      \
                                                    window, rd, maxPos, interleaved, scale);                           \
    }                                                                                                                  \
    }
B4J_WDEC_EARLY_KERNEL(b4j_f32, f32)
B4J_WDEC_EARLY_KERNEL(b4j_bf16, bf16)
