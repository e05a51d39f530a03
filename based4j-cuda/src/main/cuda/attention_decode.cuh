// A decode step's attention (included by based4j_kernels.cu): every sequence one new token, its query against the
// keys and values cached for it and its own, split over the keys (flash-decoding) and merged. Versions: 1, a pair of
// dims a thread; 2, 8 dims a lane in 16-byte loads, several keys in flight; 3, as 2 but each score one thread's whole
// dot product (no shuffles; a warp's loads then touch 32 rows at once); 4, the split's keys and values copied into
// shared memory first (every load in flight at once), then as 2, one split's output written without the merge; 5, one
// pass: each lane group's keys and values loaded together, an online softmax, no barrier between scores and values;
// 6, a block a split of a sequence's keys for all its heads, a lane group a head with its online softmax in registers
// (no shared memory, no barrier); 7, as 6 with half the keys in flight.
// Launched by io.based4j.cuda.Kernels.attentionDecode; compared and timed by
// `based4j bench kernels --kernel attentionDecode`.
#pragma once

namespace b4j {

/** Keys one block of attentionDecode (both versions) scores at most; its threads. */
#define DEC_KEYS 256
#define DEC_THREADS 128

/** The cell of a ring of `capacity` cells that position c (below 2 capacity) falls in. */
__device__ __forceinline__ int ringCell(int c, int capacity) { return c >= capacity ? c - capacity : c; }

/** Two neighbouring values (4-byte aligned in bf16, 8-byte in float32) as floats. */
__device__ __forceinline__ void loadPair(const float* p, float& a, float& b) {
    const float2 v = *reinterpret_cast<const float2*>(p);
    a = v.x;
    b = v.y;
}
__device__ __forceinline__ void loadPair(const __nv_bfloat16* p, float& a, float& b) {
    const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
    a = f.x;
    b = f.y;
}

/** A block's split of attentionDecode: its sequence's position, slot and first key, its keys, where it writes. */
template <typename A>
struct DecodeSplit {
    i64 pos, slot, d, j0;
    i64 row;        // the token's row of qkv and of the output
    int n;          // keys of the split, the query's own last where the split reaches pos
    int cached;     // of those, the ones from the cache: k < cached
    float* out;     // 2 + dh floats of partial
    const A* kNew;  // the query's own key in qkv (its value follows d later)
};

/**
 * The prologue every version of attentionDecode shares: the block's split (grid (H, B, splits)), or, for a split
 * past the last key, its empty result written (m = -inf, l = 0, zeros) and false; else true (decodeSplit: and the
 * rotated query in qs, the block synchronised after).
 */
template <typename A>
__device__ __forceinline__ bool decodeSplitOf(const A* qkv, const int* layout, float* partial, int B, int H, int dh,
                                              int window, int splits, DecodeSplit<A>& S) {
    const int head = blockIdx.x;
    const int seq = blockIdx.y;
    const int split = blockIdx.z;
    const int tid = threadIdx.x;
    const Layout L = layoutOf(layout, B);
    const i64 row = L.offsets[seq];
    S.row = row;
    S.pos = L.starts[seq];
    S.slot = L.slots[seq];
    S.d = (i64)H * dh;
    const i64 first = S.pos - window > 0 ? S.pos - window : 0;
    S.j0 = first + (i64)split * DEC_KEYS;
    S.out = partial + (((i64)seq * H + head) * splits + split) * (2 + dh);
    if (S.j0 > S.pos) {
        if (tid == 0) {
            S.out[0] = -CUDART_INF_F;
            S.out[1] = 0.0f;
        }
        for (int e = tid; e < dh; e += DEC_THREADS) S.out[2 + e] = 0.0f;
        return false;
    }
    const i64 j1 = S.pos < S.j0 + DEC_KEYS - 1 ? S.pos : S.j0 + DEC_KEYS - 1;
    S.n = (int)(j1 - S.j0 + 1);
    S.cached = (int)((j1 < S.pos ? j1 : S.pos - 1) - S.j0 + 1);
    S.kNew = qkv + row * 3 * S.d + (i64)head * dh + S.d;
    return true;
}

/** The block's query, rotated, into qs (the query precedes its key by d in qkv). */
template <typename A>
__device__ __forceinline__ void decodeQuery(const DecodeSplit<A>& S, const float* rotary, int dh, int rd, int maxPos,
                                            int interleaved, float* qs) {
    const A* qp = S.kNew - S.d;
    for (int e = threadIdx.x; e < dh; e += DEC_THREADS) {
        qs[e] = rotated(qp, e, (int)S.pos, rotary, rd, maxPos, interleaved);
    }
}

template <typename A>
__device__ __forceinline__ bool decodeSplit(const A* qkv, const float* rotary, const int* layout, float* partial,
                                            int B, int H, int dh, int window, int rd, int maxPos, int interleaved,
                                            int splits, float* qs, DecodeSplit<A>& S) {
    if (!decodeSplitOf(qkv, layout, partial, B, H, dh, window, splits, S)) return false;
    decodeQuery(S, rotary, dh, rd, maxPos, interleaved, qs);
    __syncthreads();
    return true;
}

/**
 * The softmax both versions share, over the n scores in sc (written over by exp(score - m)): m the largest score, l
 * the sum of the exponentials, each reduced over the block in a fixed order (red: DEC_THREADS / 32 floats).
 */
__device__ __forceinline__ void decodeSoftmax(float* sc, int n, float* red, float& m, float& l) {
    const int tid = threadIdx.x;
    m = -CUDART_INF_F;
    for (int k = tid; k < n; k += DEC_THREADS) m = fmaxf(m, sc[k]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((tid & 31) == 0) red[tid >> 5] = m;
    __syncthreads();
    m = red[0];
    for (int w = 1; w < DEC_THREADS / 32; w++) m = fmaxf(m, red[w]);
    __syncthreads();  // red is written again below
    l = 0.0f;
    for (int k = tid; k < n; k += DEC_THREADS) {
        const float p = expf(sc[k] - m);
        sc[k] = p;
        l += p;
    }
    l = warpSum(l);
    if ((tid & 31) == 0) red[tid >> 5] = l;
    __syncthreads();
    l = 0.0f;
    for (int w = 0; w < DEC_THREADS / 32; w++) l += red[w];
}

/**
 * The end of versions 2 to 4's scores: where the split reaches the query's own key (the split's last, from qkv,
 * rotated here), its score by one warp; then, the block synchronised, the softmax (decodeSoftmax).
 */
template <typename A>
__device__ __forceinline__ void decodeOwnKeySoftmax(bool own, const float* qs, const A* kNew, int dh, i64 pos,
                                                    const float* rotary, int rd, int maxPos, int interleaved,
                                                    float scale, float* sc, int n, float* red, float& m, float& l) {
    const int tid = threadIdx.x;
    if (own && tid < 32) {
        float dot = 0.0f;
        for (int e = tid; e < dh; e += 32) dot += qs[e] * rotated(kNew, e, (int)pos, rotary, rd, maxPos, interleaved);
        dot = warpSum(dot);
        if (tid == 0) sc[n - 1] = dot * scale;
    }
    __syncthreads();
    decodeSoftmax(sc, n, red, m, l);
}

/**
 * The end every version shares: the split's partial result, m, l and its sum of p v, the last added over the parts
 * ([parts][dh] in vred, written before a barrier) in a fixed order.
 */
__device__ __forceinline__ void decodeWrite(float* out, const float* vred, int parts, int dh, float m, float l) {
    for (int e = threadIdx.x; e < dh; e += DEC_THREADS) {
        float sum = 0.0f;
        for (int g = 0; g < parts; g++) sum += vred[g * dh + e];
        out[2 + e] = sum;
    }
    if (threadIdx.x == 0) {
        out[0] = m;
        out[1] = l;
    }
}

/**
 * One decode step's attention split over the keys (flash-decoding). Sequence b has one token in this call, at
 * position pos = starts[b]; its query sees keys max(0, pos - window) ..= pos: the earlier ones from the cache (slot,
 * position % capacity, already rotated), its own from qkv (rotated here). Grid (H, B, splits), block DEC_THREADS:
 * block s takes the keys from first + s DEC_KEYS, DEC_KEYS at most, and writes to partial[(b H + h) splits + s]
 * (2 + dh floats) its largest score m, l = sum exp(score - m) and sum exp(score - m) v; a block past the last key
 * writes m = -inf, l = 0. Scores: a group of 8 threads a key, each thread over dh / 8 neighbouring dims read in
 * pairs; values: a thread a pair of dims, the keys shared out between DEC_THREADS / (dh / 2) threads of each pair.
 * The host calls it for dh a multiple of 16 up to 128, with a cache that holds every key a query sees; then
 * attentionDecodeMerge.
 */
template <typename W, typename A>
__device__ void attentionDecode_impl(const A* qkv, const A* kCache, const A* vCache, const float* rotary,
                                     const int* layout, float* partial, int B, int H, int dh, int capacity,
                                     int window, int rd, int maxPos, int interleaved, float scale, int splits) {
    __shared__ float qs[128];
    __shared__ float sc[DEC_KEYS];
    __shared__ float red[DEC_THREADS / 32];
    __shared__ float vred[256];  // (DEC_THREADS / (dh / 2)) x dh <= 256
    const int head = blockIdx.x;
    const int tid = threadIdx.x;
    DecodeSplit<A> S;
    if (!decodeSplit(qkv, rotary, layout, partial, B, H, dh, window, rd, maxPos, interleaved, splits, qs, S)) return;
    const i64 pos = S.pos;
    const i64 slot = S.slot;
    const i64 d = S.d;
    const i64 j0 = S.j0;
    const int n = S.n;
    float* out = S.out;
    const A* kNew = S.kNew;
    const A* vNew = S.kNew + d;

    const int per = dh >> 3;
    const int g = tid >> 3;
    const int lane8 = tid & 7;
    const int e0 = lane8 * per;
    for (int base = 0; base < n; base += DEC_THREADS / 8) {  // every thread goes round alike: the shuffles see all
        const int k = base + g;
        const i64 j = j0 + k;
        float dot = 0.0f;
        if (k < n && j < pos) {
            const A* kp = kCache + (slot * capacity + j % capacity) * d + (i64)head * dh + e0;
            for (int i = 0; i < per; i += 2) {
                float a, b;
                loadPair(kp + i, a, b);
                dot += qs[e0 + i] * a + qs[e0 + i + 1] * b;
            }
        } else if (k < n) {
            for (int i = 0; i < per; i++) {
                dot += qs[e0 + i] * rotated(kNew, e0 + i, (int)pos, rotary, rd, maxPos, interleaved);
            }
        }
        dot += __shfl_xor_sync(0xffffffffu, dot, 4);
        dot += __shfl_xor_sync(0xffffffffu, dot, 2);
        dot += __shfl_xor_sync(0xffffffffu, dot, 1);
        if (k < n && lane8 == 0) sc[k] = dot * scale;
    }
    __syncthreads();

    float m, l;
    decodeSoftmax(sc, n, red, m, l);

    const int pairs = dh >> 1;
    const int halves = DEC_THREADS / pairs;
    const int pi = tid % pairs;
    const int h = tid / pairs;
    if (h < halves) {
        float a0 = 0.0f, a1 = 0.0f;
        for (int k = h; k < n; k += halves) {
            const i64 j = j0 + k;
            const float p = sc[k];
            float x, y;
            if (j < pos) {
                loadPair(vCache + (slot * capacity + j % capacity) * d + (i64)head * dh + 2 * pi, x, y);
            } else {
                x = toF(vNew[2 * pi]);
                y = toF(vNew[2 * pi + 1]);
            }
            a0 += p * x;
            a1 += p * y;
        }
        vred[h * dh + 2 * pi] = a0;
        vred[h * dh + 2 * pi + 1] = a1;
    }
    __syncthreads();
    decodeWrite(out, vred, halves, dh, m, l);
}

/**
 * The output of attentionDecode from its splits: per (head, sequence) the largest m, then
 * y = sum_s acc_s exp(m_s - M) / sum_s l_s exp(m_s - M), rounded to A into out's row of the sequence. Grid (H, B),
 * block DEC_THREADS over the dims.
 */
template <typename W, typename A>
__device__ void attentionDecodeMerge_impl(const float* partial, const int* layout, A* out, int B, int H, int dh,
                                          int splits) {
    const int head = blockIdx.x;
    const int seq = blockIdx.y;
    const Layout L = layoutOf(layout, B);
    const i64 row = L.offsets[seq];
    const float* p = partial + ((i64)seq * H + head) * splits * (2 + dh);
    float M = -CUDART_INF_F;
    for (int s = 0; s < splits; s++) M = fmaxf(M, p[(i64)s * (2 + dh)]);
    float sum = 0.0f;
    for (int s = 0; s < splits; s++) {
        const float ms = p[(i64)s * (2 + dh)];
        if (ms != -CUDART_INF_F) sum += p[(i64)s * (2 + dh) + 1] * expf(ms - M);
    }
    const float inv = 1.0f / sum;
    for (int e = threadIdx.x; e < dh; e += blockDim.x) {
        float y = 0.0f;
        for (int s = 0; s < splits; s++) {
            const float ms = p[(i64)s * (2 + dh)];
            if (ms != -CUDART_INF_F) y += p[(i64)s * (2 + dh) + 2 + e] * expf(ms - M);
        }
        out[row * H * dh + (i64)head * dh + e] = fromF<A>(y * inv);
    }
}

/**
 * How versions 2 to 5 of attentionDecode share a key among lanes: dh / 8 lanes (8 dims each) of a group of G (the
 * power of 2 at or above dh / 8, at most 16; the lanes past dh / 8 idle), DEC_THREADS / G groups side by side.
 */
struct DecLanes {
    int G, groups, lane, grp, e0;
    bool active;
};

/** The lanes of a group that takes a key (or a head) of dh dims, 8 a lane: the power of 2 at or above dh / 8, 2 to 16. */
__device__ __forceinline__ int decGroupLanes(int dh) {
    const int lanes = dh >> 3;
    return lanes <= 2 ? 2 : lanes <= 4 ? 4 : lanes <= 8 ? 8 : 16;
}

__device__ __forceinline__ DecLanes decLanes(int dh, int tid) {
    const int lanes = dh >> 3;
    DecLanes L;
    L.G = decGroupLanes(dh);
    L.groups = DEC_THREADS / L.G;
    L.lane = tid & (L.G - 1);
    L.grp = tid / L.G;
    L.active = L.lane < lanes;
    L.e0 = L.lane * 8;
    return L;
}

/**
 * The sum of v over a lane group of G lanes (2, 4, 8 or 16, aligned within the warp; every lane of the group gets it):
 * butterflies over G / 2, G / 4, ..., 1, unrolled (G is a run-time value). mask: the lanes taking part.
 */
__device__ __forceinline__ float groupSum(float v, int G, unsigned mask = 0xffffffffu) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) {
        if (o < G) v += __shfl_xor_sync(mask, v, o);
    }
    return v;
}

/** The lane's 8 dims of the query (zero for an idle lane) from qs. */
__device__ __forceinline__ void decLaneQuery(const DecLanes& L, const float* qs, float (&q)[8]) {
#pragma unroll
    for (int i = 0; i < 8; i++) q[i] = L.active ? qs[L.e0 + i] : 0.0f;
}

/** Keys a lane group of attentionDecode2 has in flight at once (loads issued before their sums). */
#define DEC2_UNROLL 4

/**
 * Versions 2 and 3 of attentionDecode: the same arguments, grid, splits and partial results (attentionDecodeMerge
 * merges them), the keys and values read 8 dims a lane in one 16-byte load (two in float32) instead of pairs,
 * DEC2_UNROLL keys of a lane group in flight before their sums. A key takes dh / 8 lanes of a group of G lanes (G the
 * power of 2 at or above dh / 8, at most 16; the lanes past dh / 8 idle), DEC_THREADS / G keys side by side; a lane
 * keeps its 8 dims of the query in registers. Scores: the lanes' dot products summed over the group by shuffles; the
 * query's own key (position pos, from qkv, rotated here) by one warp after. Values: each lane sums p v over its 8 dims
 * for the keys of its group, then the groups' sums are added in shared memory in a fixed order. Cache rows by an index
 * kept in 32 bits: j0 % capacity once, then at most one wrap, since a split's cached keys (fewer than DEC_KEYS, and
 * than capacity + 1 for a ring of the window) stay within one turn of the ring. The host calls it for dh a multiple of
 * 16 up to 128 with the cache, qkv and rows 16-byte aligned. Version 3 (KEY_A_THREAD) makes each cached key's score one
 * thread's whole dot product instead (8 dims a 16-byte load, DEC2_UNROLL loads in flight, the query from shared
 * memory), no shuffles; its values as version 2's.
 */
template <bool KEY_A_THREAD, typename A>
__device__ __forceinline__ void attentionDecodeLanes(const A* qkv, const A* kCache, const A* vCache,
                                                     const float* rotary, const int* layout, float* partial, int B,
                                                     int H, int dh, int capacity, int window, int rd, int maxPos,
                                                     int interleaved, float scale, int splits) {
    __shared__ float qs[128];
    __shared__ float sc[DEC_KEYS];
    __shared__ float red[DEC_THREADS / 32];
    __shared__ float vred[DEC_THREADS * 8];  // (DEC_THREADS / G) groups x dh, dh <= 8 G
    const int head = blockIdx.x;
    const int tid = threadIdx.x;
    DecodeSplit<A> S;
    if (!decodeSplit(qkv, rotary, layout, partial, B, H, dh, window, rd, maxPos, interleaved, splits, qs, S)) return;
    const i64 pos = S.pos;
    const i64 slot = S.slot;
    const i64 d = S.d;
    const i64 j0 = S.j0;
    const int n = S.n;
    const int cached = S.cached;
    float* out = S.out;
    const A* kNew = S.kNew;
    const A* vNew = S.kNew + d;

    const DecLanes Ln = decLanes(dh, tid);
    const int G = Ln.G, groups = Ln.groups, lane = Ln.lane, grp = Ln.grp, e0 = Ln.e0;
    const bool active = Ln.active;
    float q[8];
    decLaneQuery(Ln, qs, q);
    const int c0 = (int)(j0 % capacity);
    const A* kRows = kCache + slot * capacity * d + (i64)head * dh + e0;
    const A* vRows = vCache + slot * capacity * d + (i64)head * dh + e0;

    if constexpr (!KEY_A_THREAD) {
        for (int base = 0; base < n; base += groups * DEC2_UNROLL) {  // alike for every thread: the shuffles see all
            float kv[DEC2_UNROLL][8];
#pragma unroll
            for (int u = 0; u < DEC2_UNROLL; u++) {
                const int k = base + u * groups + grp;
                if (active && k < cached) {
                    const int c = ringCell(c0 + k, capacity);
                    load8(kRows + (i64)c * d, kv[u]);
                } else {
#pragma unroll
                    for (int i = 0; i < 8; i++) kv[u][i] = 0.0f;
                }
            }
#pragma unroll
            for (int u = 0; u < DEC2_UNROLL; u++) {
                float dot = 0.0f;
#pragma unroll
                for (int i = 0; i < 8; i++) dot += q[i] * kv[u][i];
                dot = groupSum(dot, G);
                const int k = base + u * groups + grp;
                if (lane == 0 && k < cached) sc[k] = dot * scale;
            }
        }
    } else {
        // a thread a key: its whole dot product, 8 dims a 16-byte load, DEC2_UNROLL loads in flight, the query read
        // from shared memory at one address for the whole warp; no shuffles
        const A* kHead = kCache + slot * capacity * d + (i64)head * dh;
        for (int k = tid; k < cached; k += DEC_THREADS) {
            const int c = ringCell(c0 + k, capacity);
            const A* kr = kHead + (i64)c * d;
            float dot = 0.0f;
            for (int e = 0; e < dh; e += 8 * DEC2_UNROLL) {
                float kv[DEC2_UNROLL][8];
#pragma unroll
                for (int u = 0; u < DEC2_UNROLL; u++) {
                    if (e + 8 * u < dh) {
                        load8(kr + e + 8 * u, kv[u]);
                    }
                }
#pragma unroll
                for (int u = 0; u < DEC2_UNROLL; u++) {
                    if (e + 8 * u < dh) {
#pragma unroll
                        for (int i = 0; i < 8; i++) dot += qs[e + 8 * u + i] * kv[u][i];
                    }
                }
            }
            sc[k] = dot * scale;
        }
    }
    float m, l;
    decodeOwnKeySoftmax(cached < n, qs, kNew, dh, pos, rotary, rd, maxPos, interleaved, scale, sc, n, red, m, l);

    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.0f;
    for (int base = 0; base < n; base += groups * DEC2_UNROLL) {
        float vv[DEC2_UNROLL][8];
        float p[DEC2_UNROLL];
#pragma unroll
        for (int u = 0; u < DEC2_UNROLL; u++) {
            const int k = base + u * groups + grp;
            p[u] = k < n ? sc[k] : 0.0f;
            if (active && k < n) {
                const int c = ringCell(c0 + k, capacity);
                load8(k < cached ? vRows + (i64)c * d : vNew + e0, vv[u]);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) vv[u][i] = 0.0f;
            }
        }
#pragma unroll
        for (int u = 0; u < DEC2_UNROLL; u++) {
#pragma unroll
            for (int i = 0; i < 8; i++) acc[i] += p[u] * vv[u][i];
        }
    }
    if (active) {
#pragma unroll
        for (int i = 0; i < 8; i++) vred[grp * dh + e0 + i] = acc[i];
    }
    __syncthreads();
    decodeWrite(out, vred, groups, dh, m, l);
}


template <typename W, typename A>
__device__ void attentionDecode2_impl(const A* qkv, const A* kCache, const A* vCache, const float* rotary,
                                      const int* layout, float* partial, int B, int H, int dh, int capacity,
                                      int window, int rd, int maxPos, int interleaved, float scale, int splits) {
    attentionDecodeLanes<false, A>(qkv, kCache, vCache, rotary, layout, partial, B, H, dh, capacity, window, rd,
                                   maxPos, interleaved, scale, splits);
}

template <typename W, typename A>
__device__ void attentionDecode3_impl(const A* qkv, const A* kCache, const A* vCache, const float* rotary,
                                      const int* layout, float* partial, int B, int H, int dh, int capacity,
                                      int window, int rd, int maxPos, int interleaved, float scale, int splits) {
    attentionDecodeLanes<true, A>(qkv, kCache, vCache, rotary, layout, partial, B, H, dh, capacity, window, rd,
                                  maxPos, interleaved, scale, splits);
}

/** Keys version 4 of attentionDecode stages in shared memory at once: 16 KiB of keys (rows of 128) and as much of values. */
template <typename A>
__host__ __device__ constexpr int dec4Keys() {
    return sizeof(A) == 2 ? 64 : 32;
}

/** 16 bytes global -> shared, asynchronously (cp.async.cg, sm_80 and newer); both addresses 16-byte aligned. */
__device__ __forceinline__ void decCopy16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"((unsigned)__cvta_generic_to_shared(dst)),
                 "l"(src) : "memory");
}

/** Waits for this thread's copies (cp.async), then for the block's. */
__device__ __forceinline__ void decCopiesDone() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads();
}

/**
 * Copies the cached rows k0 .. k0 + count - 1 of a split (cache row c0 + k, wrapped once at capacity) of one head into
 * the staging rows (128 values apart), 16 bytes a copy, without waiting for them.
 */
template <typename A>
__device__ __forceinline__ void decStage(const A* rows, i64 d, int c0, int capacity, int k0, int count, int dh,
                                         A* staged) {
    constexpr int P = 16 / sizeof(A);  // values a copy
    const int per = dh / P;
    for (int t = threadIdx.x; t < count * per; t += DEC_THREADS) {
        const int key = t / per;
        const int off = (t - key * per) * P;
        const int c = ringCell(c0 + k0 + key, capacity);
        decCopy16(staged + key * 128 + off, rows + (i64)c * d + off);
    }
}

/**
 * Version 4 of attentionDecode, for short splits (a sliding window's few keys): the same grid, splits and partial
 * results as versions 2 and 3, but the split's keys and values, dec4Keys at a time, copied into shared memory
 * (cp.async) first, the first ones while the query is rotated, so that a window of up to dec4Keys cached keys costs
 * the block one trip to memory instead of a round of key loads, a round of value loads and their waits. Scores and
 * values then as version 2's (a key dh / 8 lanes of a group of G, the groups' sums of p v added in a fixed order),
 * from shared memory. A split of more keys stages them in turns. With one split and out given, the output is
 * written at once as attentionDecodeMerge would write it (acc / l, the same float operations), and no merge runs.
 * The host calls it for dh a multiple of 16 up to 128, the cache, qkv and rows 16-byte aligned.
 */
template <typename W, typename A>
__device__ void attentionDecode4_impl(const A* qkv, const A* kCache, const A* vCache, const float* rotary,
                                      const int* layout, float* partial, A* out, int B, int H, int dh, int capacity,
                                      int window, int rd, int maxPos, int interleaved, float scale, int splits) {
    constexpr int C = dec4Keys<A>();
    __shared__ __align__(16) A ks[C * 128];
    __shared__ __align__(16) A vs[C * 128];
    __shared__ float qs[128];
    __shared__ float sc[DEC_KEYS];
    __shared__ float red[DEC_THREADS / 32];
    __shared__ float vred[DEC_THREADS * 8];
    const int head = blockIdx.x;
    const int tid = threadIdx.x;
    DecodeSplit<A> S;
    if (!decodeSplitOf(qkv, layout, partial, B, H, dh, window, splits, S)) return;
    const i64 pos = S.pos;
    const i64 d = S.d;
    const int n = S.n;
    const int cached = S.cached;
    const int c0 = (int)(S.j0 % capacity);
    const A* kRows = kCache + S.slot * capacity * d + (i64)head * dh;
    const A* vRows = vCache + S.slot * capacity * d + (i64)head * dh;
    const A* kNew = S.kNew;
    const A* vNew = S.kNew + d;
    // the first keys and values on their way while the query is rotated
    decStage(kRows, d, c0, capacity, 0, min(C, cached), dh, ks);
    decStage(vRows, d, c0, capacity, 0, min(C, cached), dh, vs);
    decodeQuery(S, rotary, dh, rd, maxPos, interleaved, qs);
    decCopiesDone();

    const DecLanes Ln = decLanes(dh, tid);
    const int G = Ln.G, groups = Ln.groups, lane = Ln.lane, grp = Ln.grp, e0 = Ln.e0;
    const bool active = Ln.active;
    float q[8];
    decLaneQuery(Ln, qs, q);
    for (int k0 = 0; k0 < cached; k0 += C) {
        const int count = min(C, cached - k0);
        if (k0 > 0) {  // a longer split: its next keys in turn
            __syncthreads();
            decStage(kRows, d, c0, capacity, k0, count, dh, ks);
            decCopiesDone();
        }
        for (int base = 0; base < count; base += groups) {  // alike for every thread: the shuffles see all
            const int k = base + grp;
            float kv[8];
            if (active && k < count) {
                load8(ks + k * 128 + e0, kv);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) kv[i] = 0.0f;
            }
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; i++) dot += q[i] * kv[i];
            dot = groupSum(dot, G);
            if (lane == 0 && k < count) sc[k0 + k] = dot * scale;
        }
    }
    float m, l;
    decodeOwnKeySoftmax(cached < n, qs, kNew, dh, pos, rotary, rd, maxPos, interleaved, scale, sc, n, red, m, l);

    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.0f;
    for (int k0 = 0; k0 < cached; k0 += C) {
        const int count = min(C, cached - k0);
        if (k0 > 0) {
            __syncthreads();
            decStage(vRows, d, c0, capacity, k0, count, dh, vs);
            decCopiesDone();
        }
        if (active) {
            for (int k = grp; k < count; k += groups) {
                const float p = sc[k0 + k];
                float vv[8];
                load8(vs + k * 128 + e0, vv);
#pragma unroll
                for (int i = 0; i < 8; i++) acc[i] += p * vv[i];
            }
        }
    }
    if (cached < n && active && grp == (n - 1) % groups) {  // the own key's value, in its group's turn
        const float p = sc[n - 1];
        float vv[8];
        load8(vNew + e0, vv);
#pragma unroll
        for (int i = 0; i < 8; i++) acc[i] += p * vv[i];
    }
    if (active) {
#pragma unroll
        for (int i = 0; i < 8; i++) vred[grp * dh + e0 + i] = acc[i];
    }
    __syncthreads();
    if (splits == 1 && out != nullptr) {
        // attentionDecodeMerge's numbers for one split: M = m, sum = l, y = acc, out = y (1 / sum)
        const float inv = 1.0f / l;
        for (int e = tid; e < dh; e += DEC_THREADS) {
            float sum = 0.0f;
            for (int g = 0; g < groups; g++) sum += vred[g * dh + e];
            out[S.row * d + (i64)head * dh + e] = fromF<A>(sum * inv);
        }
        return;
    }
    decodeWrite(S.out, vred, groups, dh, m, l);
}

/** Keys a lane group of attentionDecode5 has in flight at once, each with its value. */
#define DEC5_UNROLL 4

/**
 * The online softmax step of attentionDecode5 for U scores s of one lane group (the same in every lane of the group;
 * -inf for a key not taken) and their values vv: m the group's largest score so far, l its sum of exp(score - m), acc
 * the lane's 8 dims of its sum of exp(score - m) v, rescaled when m grows.
 */
template <int U>
__device__ __forceinline__ void dec5Step(const float (&s)[U], const float (&vv)[U][8], float& m, float& l,
                                         float (&acc)[8]) {
    float mn = m;
#pragma unroll
    for (int u = 0; u < U; u++) mn = fmaxf(mn, s[u]);
    if (mn == -CUDART_INF_F) return;  // no key yet
    const float corr = expf(m - mn);  // 0 while m is -inf
    l *= corr;
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] *= corr;
#pragma unroll
    for (int u = 0; u < U; u++) {
        const float p = expf(s[u] - mn);
        l += p;
#pragma unroll
        for (int i = 0; i < 8; i++) acc[i] += p * vv[u][i];
    }
    m = mn;
}

/**
 * Version 5 of attentionDecode: the same arguments, grid, splits and partial results as versions 2 and 3
 * (attentionDecodeMerge merges them), but one pass over the split: each lane group (a key dh / 8 lanes of G, 8 dims a
 * lane in 16-byte loads) loads DEC5_UNROLL keys and their values at once and keeps an online softmax (its largest
 * score m, l and the sum of exp(score - m) v over its 8 dims, rescaled when m grows), so that no barrier and no
 * second round of loads separates the scores from the values. The groups' results are then combined in shared memory
 * in a fixed order (M the largest m, each group's l and sums scaled by exp(m - M)). The query's own key (from qkv,
 * rotated here) is group 0's last. The host calls it for dh a multiple of 16 up to 128, the cache, qkv and rows
 * 16-byte aligned.
 */
template <typename W, typename A>
__device__ void attentionDecode5_impl(const A* qkv, const A* kCache, const A* vCache, const float* rotary,
                                      const int* layout, float* partial, int B, int H, int dh, int capacity,
                                      int window, int rd, int maxPos, int interleaved, float scale, int splits) {
    __shared__ float qs[128];
    __shared__ float vred[DEC_THREADS * 8];  // (DEC_THREADS / G) groups x dh, dh <= 8 G
    __shared__ float gm[DEC_THREADS / 2];    // each group's m and l (G >= 2)
    __shared__ float gl[DEC_THREADS / 2];
    const int head = blockIdx.x;
    const int tid = threadIdx.x;
    DecodeSplit<A> S;
    if (!decodeSplit(qkv, rotary, layout, partial, B, H, dh, window, rd, maxPos, interleaved, splits, qs, S)) return;
    const i64 pos = S.pos;
    const i64 d = S.d;
    const int n = S.n;
    const int cached = S.cached;

    const DecLanes Ln = decLanes(dh, tid);
    const int G = Ln.G, groups = Ln.groups, lane = Ln.lane, grp = Ln.grp, e0 = Ln.e0;
    const bool active = Ln.active;
    float q[8];
    decLaneQuery(Ln, qs, q);
    const int c0 = (int)(S.j0 % capacity);
    const A* kRows = kCache + S.slot * capacity * d + (i64)head * dh + e0;
    const A* vRows = vCache + S.slot * capacity * d + (i64)head * dh + e0;

    float m = -CUDART_INF_F, l = 0.0f, acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.0f;
    for (int base = 0; base < cached; base += groups * DEC5_UNROLL) {  // alike for every thread: the shuffles see all
        float kv[DEC5_UNROLL][8], vv[DEC5_UNROLL][8];
#pragma unroll
        for (int u = 0; u < DEC5_UNROLL; u++) {
            const int k = base + u * groups + grp;
            if (active && k < cached) {
                const int c = ringCell(c0 + k, capacity);
                load8(kRows + (i64)c * d, kv[u]);
                load8(vRows + (i64)c * d, vv[u]);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) kv[u][i] = vv[u][i] = 0.0f;
            }
        }
        float sc[DEC5_UNROLL];
#pragma unroll
        for (int u = 0; u < DEC5_UNROLL; u++) {
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; i++) dot += q[i] * kv[u][i];
            dot = groupSum(dot, G);
            sc[u] = base + u * groups + grp < cached ? dot * scale : -CUDART_INF_F;
        }
        dec5Step<DEC5_UNROLL>(sc, vv, m, l, acc);
    }
    if (cached < n && grp == 0) {  // the query's own key and value, group 0's last
        float kv[1][8], vv[1][8];
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            kv[0][i] = active ? rotated(S.kNew, e0 + i, (int)pos, rotary, rd, maxPos, interleaved) : 0.0f;
            vv[0][i] = active ? toF(S.kNew[d + e0 + i]) : 0.0f;
            dot += q[i] * kv[0][i];
        }
        const unsigned mask = ((1u << G) - 1) << ((tid & 31) & ~(G - 1));  // group 0's lanes, the only ones here
        dot = groupSum(dot, G, mask);
        const float sc[1] = {dot * scale};
        dec5Step<1>(sc, vv, m, l, acc);
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
    for (int e = tid; e < dh; e += DEC_THREADS) {
        float sum = 0.0f;
        for (int g = 0; g < groups; g++) {
            if (gm[g] != -CUDART_INF_F) sum += vred[g * dh + e] * expf(gm[g] - M);
        }
        S.out[2 + e] = sum;
    }
    if (tid == 0) {
        float L = 0.0f;
        for (int g = 0; g < groups; g++) {
            if (gm[g] != -CUDART_INF_F) L += gl[g] * expf(gm[g] - M);
        }
        S.out[0] = M;
        S.out[1] = L;
    }
}

/** Most threads of a block of attentionDecode6: its lane groups, one a head (the host runs version 2 past it). */
#define DEC6_MAX_THREADS 512

/**
 * Version 6: a block takes one split of one sequence's keys for all H heads at once, a warp 32 / G of them (G lanes a
 * head as in version 2, dh / 8 of them with 8 dims each), so that the block reads a cached key's row whole (the H heads
 * side by side, d values in a row) and no lane group needs another: each runs an online softmax over its head's keys
 * in registers, U keys and their values loaded together (U = 8 in bf16, 4 in float32: 16 loads of 16 bytes in flight
 * a lane), then their scores summed over the group by shuffles, the chunk's largest, the rescale of l and of the sums,
 * and p v added; no shared memory and no barrier. The query's own key (the split's last where it reaches pos, from
 * qkv, rotated here) comes last, as in version 2. The partial results are version 2's (m, l, the sum of p v relative to
 * m), merged by attentionDecodeMerge. Grid (1, B, splits), ceil(H G / 32) warps a block (at most DEC6_MAX_THREADS
 * threads). WINDOW (attentionDecodeHeadsWindow, the window kernel's heads' form): one split holds the window and the
 * query's own key, so the block writes the output itself (no partial results, no merge) and appends the token's
 * rotated key and its value to the ring at pos % capacity, each lane the 8 dims it read of the cell (the window's
 * oldest key where the ring holds just the window) after reading it. Where prefetch is set, each chunk's loads are
 * followed by requests to the L2 cache for the next chunk's keys and values (prefetch.global.L2), which change no
 * value.
 */
template <int U, bool WINDOW, typename A>
__device__ __forceinline__ void attentionDecodeHeads(const A* qkv, const A* kCache, const A* vCache,
                                                     const float* rotary, const int* layout, float* partial, int B,
                                                     int H, int dh, int capacity, int window, int rd, int maxPos,
                                                     int interleaved, float scale, int splits, A* direct,
                                                     A* kAppend, A* vAppend, int prefetch) {
    const int seq = blockIdx.y;
    const int split = blockIdx.z;
    const int lanes = dh >> 3;
    const int G = decGroupLanes(dh);
    const int lane = threadIdx.x & (G - 1);
    const int head = threadIdx.x / G;
    const bool mine = head < H;  // a lane group past the last head idles (but takes part in the shuffles)
    const bool active = mine && lane < lanes;
    const int e0 = lane * 8;
    const Layout L = layoutOf(layout, B);
    const i64 row = L.offsets[seq];
    const i64 pos = L.starts[seq];
    const i64 slot = L.slots[seq];
    const i64 d = (i64)H * dh;
    const i64 first = pos - window > 0 ? pos - window : 0;
    const i64 j0 = first + (i64)split * DEC_KEYS;
    float* out = WINDOW ? nullptr : partial + (((i64)seq * H + (mine ? head : 0)) * splits + split) * (2 + dh);
    if (!WINDOW && j0 > pos) {  // a split past the last key: the empty result
        if (mine && lane == 0) {
            out[0] = -CUDART_INF_F;
            out[1] = 0.0f;
        }
        if (active) {
#pragma unroll
            for (int i = 0; i < 8; i++) out[2 + e0 + i] = 0.0f;
        }
        return;
    }
    const i64 j1 = pos < j0 + DEC_KEYS - 1 ? pos : j0 + DEC_KEYS - 1;
    const int n = (int)(j1 - j0 + 1);
    const int cached = (int)((j1 < pos ? j1 : pos - 1) - j0 + 1);
    const A* kNew = qkv + row * 3 * d + (i64)(mine ? head : 0) * dh + d;
    float q[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        q[i] = active ? rotated(kNew - d, e0 + i, (int)pos, rotary, rd, maxPos, interleaved) : 0.0f;
    }
    const int c0 = (int)(j0 % capacity);
    const A* kRows = kCache + slot * capacity * d + (i64)(mine ? head : 0) * dh + e0;
    const A* vRows = vCache + slot * capacity * d + (i64)(mine ? head : 0) * dh + e0;
    float m = -CUDART_INF_F;
    float l = 0.0f;
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.0f;
    for (int k0 = 0; k0 < cached; k0 += U) {  // alike for every thread: the shuffles see all
        GemvPiece<A> kp[U], vp[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (active && k0 + u < cached) {
                const int c = ringCell(c0 + k0 + u, capacity);
                kp[u].load(kRows + (i64)c * d);
                vp[u].load(vRows + (i64)c * d);
            } else {
                kp[u].clear();
                vp[u].clear();
            }
        }
        if (prefetch && active) {
            // the next chunk's keys and values asked of the L2 cache while this one is summed (no value changes)
#pragma unroll
            for (int u = 0; u < U; u++) {
                if (k0 + U + u < cached) {
                    const int c = ringCell(c0 + k0 + U + u, capacity);
                    asm volatile("prefetch.global.L2 [%0];\n" ::"l"(kRows + (i64)c * d));
                    asm volatile("prefetch.global.L2 [%0];\n" ::"l"(vRows + (i64)c * d));
                }
            }
        }
        // the online softmax step of version 5 (dec5Step) with the values unpacked as they are added (fewer
        // registers: version 7 keeps its 64) and no early return (a chunk of scores that are all NaN or -inf gives
        // NaN, as the rest of the kernels do)
        float sc[U];
        float top = m;
#pragma unroll
        for (int u = 0; u < U; u++) {
            float kv[8];
            kp[u].get(kv);
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; i++) dot += q[i] * kv[i];
            dot = groupSum(dot, G);
            sc[u] = k0 + u < cached ? dot * scale : -CUDART_INF_F;
            top = fmaxf(top, sc[u]);
        }
        const float corr = expf(m - top);  // 0 for the first chunk (m = -inf, top finite)
        l *= corr;
#pragma unroll
        for (int i = 0; i < 8; i++) acc[i] *= corr;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const float p = expf(sc[u] - top);
            l += p;
            float vv[8];
            vp[u].get(vv);
#pragma unroll
            for (int i = 0; i < 8; i++) acc[i] += p * vv[i];
        }
        m = top;
    }
    if (cached < n) {  // the query's own key and value, from qkv
        float dot = 0.0f;
        if (active) {
#pragma unroll
            for (int i = 0; i < 8; i++) dot += q[i] * rotated(kNew, e0 + i, (int)pos, rotary, rd, maxPos, interleaved);
        }
        dot = groupSum(dot, G);
        const float s = dot * scale;
        const float top = fmaxf(m, s);
        const float corr = expf(m - top);
        const float p = expf(s - top);
        l = l * corr + p;
        float vv[8];
        if (active) {
            load8(kNew + d + e0, vv);
        } else {
#pragma unroll
            for (int i = 0; i < 8; i++) vv[i] = 0.0f;
        }
#pragma unroll
        for (int i = 0; i < 8; i++) acc[i] = acc[i] * corr + p * vv[i];
        m = top;
    }
    if constexpr (WINDOW) {
        // one split (a short window): the output itself, as attentionDecodeMerge would write it from this one part,
        // and the token's rotated key and its value into the ring at pos % capacity, as attentionAppend writes them
        // (each lane the 16 bytes of its head's dims that it alone read above)
        if (active) {
            const float inv = 1.0f / l;
            float y[8];
#pragma unroll
            for (int i = 0; i < 8; i++) y[i] = acc[i] * inv;
            store8(direct + row * d + (i64)head * dh + e0, y);
            const i64 cell = (slot * capacity + pos % capacity) * d + (i64)head * dh + e0;
            const bool pastTable = rd > 0 && pos >= maxPos;
            float kr[8];
#pragma unroll
            for (int i = 0; i < 8; i++) {
                kr[i] = pastTable ? CUDART_NAN_F : rotated(kNew, e0 + i, (int)pos, rotary, rd, maxPos, interleaved);
            }
            store8(kAppend + cell, kr);
#pragma unroll
            for (int x = 0; x < (int)(8 * sizeof(A) / 16); x++) {  // the value's bits as qkv holds them
                reinterpret_cast<uint4*>(vAppend + cell)[x] = reinterpret_cast<const uint4*>(kNew + d + e0)[x];
            }
        }
        return;
    }
    if (mine && lane == 0) {
        out[0] = m;
        out[1] = l;
    }
    if (active) {
#pragma unroll
        for (int i = 0; i < 8; i++) out[2 + e0 + i] = acc[i];
    }
}

template <typename W, typename A>
__device__ void attentionDecode6_impl(const A* qkv, const A* kCache, const A* vCache, const float* rotary,
                                      const int* layout, float* partial, int B, int H, int dh, int capacity,
                                      int window, int rd, int maxPos, int interleaved, float scale, int splits) {
    attentionDecodeHeads<sizeof(A) == 2 ? 8 : 4, false, A>(qkv, kCache, vCache, rotary, layout, partial, B, H, dh,
                                                           capacity, window, rd, maxPos, interleaved, scale, splits,
                                                           nullptr, nullptr, nullptr, 0);
}

/** Version 7: version 6 with half the keys in flight a lane group (4 in bf16, 2 in float32): fewer registers. */
template <typename W, typename A>
__device__ void attentionDecode7_impl(const A* qkv, const A* kCache, const A* vCache, const float* rotary,
                                      const int* layout, float* partial, int B, int H, int dh, int capacity,
                                      int window, int rd, int maxPos, int interleaved, float scale, int splits) {
    attentionDecodeHeads<sizeof(A) == 2 ? 4 : 2, false, A>(qkv, kCache, vCache, rotary, layout, partial, B, H, dh,
                                                           capacity, window, rd, maxPos, interleaved, scale, splits,
                                                           nullptr, nullptr, nullptr, 0);
}

}  // namespace b4j

B4J_KERNEL(attentionDecode, DEC_THREADS,
           (const A* qkv, const A* kCache, const A* vCache, const float* rotary, const int* layout, float* partial,
            int B, int H, int dh, int capacity, int window, int rd, int maxPos, int interleaved, float scale,
            int splits),
           (qkv, kCache, vCache, rotary, layout, partial, B, H, dh, capacity, window, rd, maxPos, interleaved, scale,
            splits))
B4J_KERNEL(attentionDecodeMerge, DEC_THREADS,
           (const float* partial, const int* layout, A* out, int B, int H, int dh, int splits),
           (partial, layout, out, B, H, dh, splits))
B4J_KERNEL(attentionDecode2, DEC_THREADS,
           (const A* qkv, const A* kCache, const A* vCache, const float* rotary, const int* layout, float* partial,
            int B, int H, int dh, int capacity, int window, int rd, int maxPos, int interleaved, float scale,
            int splits),
           (qkv, kCache, vCache, rotary, layout, partial, B, H, dh, capacity, window, rd, maxPos, interleaved, scale,
            splits))
B4J_KERNEL(attentionDecode3, DEC_THREADS,
           (const A* qkv, const A* kCache, const A* vCache, const float* rotary, const int* layout, float* partial,
            int B, int H, int dh, int capacity, int window, int rd, int maxPos, int interleaved, float scale,
            int splits),
           (qkv, kCache, vCache, rotary, layout, partial, B, H, dh, capacity, window, rd, maxPos, interleaved, scale,
            splits))
B4J_KERNEL(attentionDecode4, DEC_THREADS,
           (const A* qkv, const A* kCache, const A* vCache, const float* rotary, const int* layout, float* partial,
            A* out, int B, int H, int dh, int capacity, int window, int rd, int maxPos, int interleaved, float scale,
            int splits),
           (qkv, kCache, vCache, rotary, layout, partial, out, B, H, dh, capacity, window, rd, maxPos, interleaved,
            scale, splits))
B4J_KERNEL(attentionDecode5, DEC_THREADS,
           (const A* qkv, const A* kCache, const A* vCache, const float* rotary, const int* layout, float* partial,
            int B, int H, int dh, int capacity, int window, int rd, int maxPos, int interleaved, float scale,
            int splits),
           (qkv, kCache, vCache, rotary, layout, partial, B, H, dh, capacity, window, rd, maxPos, interleaved, scale,
            splits))
// a short window's decode step in the heads' layout of version 6 (attentionDecodeHeadsWindow): one split, the output
// written and the token appended; grid (1, B, 1), blocks of up to DEC6_MAX_THREADS
#define B4J_DEC_HEADS_WINDOW_KERNEL(NS, SUFFIX)                                                                        \
    namespace NS {                                                                                                     \
    extern "C" __global__ void __launch_bounds__(DEC6_MAX_THREADS) attentionDecodeHeadsWindow_##SUFFIX(                \
        const A* qkv, A* kCache, A* vCache, const float* rotary, const int* layout, A* out, int B, int H, int dh,      \
        int capacity, int window, int rd, int maxPos, int interleaved, float scale, int prefetch) {                    \
        b4jPdlWait();                                                                                                  \
        b4j::attentionDecodeHeads<sizeof(A) == 2 ? 8 : 4, true, A>(qkv, kCache, vCache, rotary, layout, nullptr, B, H, \
                                                                   dh, capacity, window, rd, maxPos, interleaved,      \
                                                                   scale, 1, out, kCache, vCache, prefetch);           \
    }                                                                                                                  \
    }
B4J_DEC_HEADS_WINDOW_KERNEL(b4j_f32, f32)
B4J_DEC_HEADS_WINDOW_KERNEL(b4j_bf16, bf16)

// versions 6 and 7: blocks of up to DEC6_MAX_THREADS (a sequence's heads), not B4J_KERNEL's DEC_THREADS
#define B4J_DEC6_KERNEL(V, NS, SUFFIX)                                                                                 \
    namespace NS {                                                                                                     \
    extern "C" __global__ void __launch_bounds__(DEC6_MAX_THREADS) attentionDecode##V##_##SUFFIX(                      \
        const A* qkv, const A* kCache, const A* vCache, const float* rotary, const int* layout, float* partial, int B, \
        int H, int dh, int capacity, int window, int rd, int maxPos, int interleaved, float scale, int splits) {      \
        b4jPdlWait();                                                                                                  \
        b4j::attentionDecode##V##_impl<W, A>(qkv, kCache, vCache, rotary, layout, partial, B, H, dh, capacity, window, \
                                             rd, maxPos, interleaved, scale, splits);                                  \
    }                                                                                                                  \
    }
B4J_DEC6_KERNEL(6, b4j_f32, f32)
B4J_DEC6_KERNEL(6, b4j_bf16, bf16)
B4J_DEC6_KERNEL(7, b4j_f32, f32)
B4J_DEC6_KERNEL(7, b4j_bf16, bf16)
