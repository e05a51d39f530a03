// A decode step's attention over a short sliding window (included by based4j_kernels.cu after attention_decode.cuh):
// every sequence one new token whose query sees at most one block's worth of cached keys, so that one block a (head,
// sequence) loads all of them and their values at once, writes the output itself (no split, no merge) and appends the
// token's rotated key and value to the ring (no attentionAppend after it). Launched by
// io.based4j.cuda.Kernels.attentionDecodeWindow; timed beside attentionDecode's versions (and their append) by
// `based4j bench kernels --kernel attentionDecode`.
#pragma once

namespace b4j {

/** Keys a lane group of attentionDecodeWindow holds, each with its value: a block takes (DEC_THREADS / G) of these. */
#define WDEC_KEYS_A_GROUP 8

/** A lane's 8 values of a cache row as loaded, unconverted: 16 bytes of bf16, 32 of float. */
template <typename A>
struct Raw8;
template <>
struct Raw8<bf16> {
    uint4 r;
};
template <>
struct Raw8<float> {
    float4 a, b;
};

__device__ __forceinline__ void loadRaw8(const bf16* p, Raw8<bf16>& x) { x.r = *reinterpret_cast<const uint4*>(p); }
__device__ __forceinline__ void loadRaw8(const float* p, Raw8<float>& x) {
    x.a = reinterpret_cast<const float4*>(p)[0];
    x.b = reinterpret_cast<const float4*>(p)[1];
}
__device__ __forceinline__ void zeroRaw8(Raw8<bf16>& x) { x.r = make_uint4(0u, 0u, 0u, 0u); }
__device__ __forceinline__ void zeroRaw8(Raw8<float>& x) {
    x.a = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    x.b = x.a;
}
__device__ __forceinline__ void unpackRaw8(const Raw8<bf16>& x, float* v) { unpack8(x.r, v); }
__device__ __forceinline__ void unpackRaw8(const Raw8<float>& x, float* v) {
    v[0] = x.a.x, v[1] = x.a.y, v[2] = x.a.z, v[3] = x.a.w;
    v[4] = x.b.x, v[5] = x.b.y, v[6] = x.b.z, v[7] = x.b.w;
}

/**
 * attentionDecodeWindow: the arguments of attentionDecode without partial and splits, with the output and the
 * writable caches. Grid (H, B), block DEC_THREADS. Sequence b's token is at position pos = starts[b]; its query sees
 * keys max(0, pos - window) ..= pos, the cached ones at most (DEC_THREADS / G) WDEC_KEYS_A_GROUP (the host sees to it,
 * and to window <= capacity). Lanes as in attentionDecode2 (a key dh / 8 lanes of a group of G, 8 dims a lane in one
 * load); group g holds keys g, g + groups, ... and their values in registers as loaded, every load issued before the
 * first sum. A group's scores are its lanes' dot products summed by shuffles; its softmax is plain (all its scores at
 * hand: m their largest, l the sum of exp(score - m), the lane's 8 dims of sum exp(score - m) v); group 0 also takes
 * the query's own key and value (from qkv, the key rotated here). The groups are then combined in shared memory in a
 * fixed order (M the largest m, each group scaled by exp(m - M)) and the output written, rounded to A. Last, after a
 * barrier that every load of the cache precedes, the token's rotated key (rounded to A; NaN past the rotary table, as
 * attentionAppend writes it) and its value go to the ring at pos % capacity: the cell of key pos - capacity, which
 * this block alone reads (its head's dims of its sequence) and has read by then.
 */
template <typename W, typename A>
__device__ void attentionDecodeWindow_impl(const A* qkv, A* kCache, A* vCache, const float* rotary,
                                           const int* layout, A* out, int B, int H, int dh, int capacity, int window,
                                           int rd, int maxPos, int interleaved, float scale) {
    __shared__ float qs[128];                // the rotated query
    __shared__ float ks[128];                // the token's rotated key
    __shared__ float vred[DEC_THREADS * 8];  // groups x dh, dh <= 8 G
    __shared__ float gm[DEC_THREADS / 2];    // each group's m and l (G >= 2)
    __shared__ float gl[DEC_THREADS / 2];
    const int head = blockIdx.x;
    const int seq = blockIdx.y;
    const int tid = threadIdx.x;
    const Layout L = layoutOf(layout, B);
    const i64 row = L.offsets[seq];
    const i64 pos = L.starts[seq];
    const i64 slot = L.slots[seq];
    const i64 d = (i64)H * dh;
    const i64 first = pos - window > 0 ? pos - window : 0;
    const int cached = (int)(pos - first);
    const DecLanes Ln = decLanes(dh, tid);
    const int G = Ln.G, groups = Ln.groups, lane = Ln.lane, grp = Ln.grp, e0 = Ln.e0;
    const bool active = Ln.active;
    const int c0 = (int)(first % capacity);
    const A* kRows = kCache + slot * capacity * d + (i64)head * dh + e0;
    const A* vRows = vCache + slot * capacity * d + (i64)head * dh + e0;

    Raw8<A> kr[WDEC_KEYS_A_GROUP], vr[WDEC_KEYS_A_GROUP];
#pragma unroll
    for (int u = 0; u < WDEC_KEYS_A_GROUP; u++) {
        const int k = u * groups + grp;
        if (active && k < cached) {
            int c = c0 + k;
            if (c >= capacity) c -= capacity;
            loadRaw8(kRows + (i64)c * d, kr[u]);
            loadRaw8(vRows + (i64)c * d, vr[u]);
        } else {
            zeroRaw8(kr[u]);
            zeroRaw8(vr[u]);
        }
    }
    // the query and the token's own key rotated into shared memory while the loads are in flight
    const A* qp = qkv + row * 3 * d + (i64)head * dh;
    const A* kNew = qp + d;
    for (int e = tid; e < dh; e += DEC_THREADS) {
        qs[e] = rotated(qp, e, (int)pos, rotary, rd, maxPos, interleaved);
        ks[e] = rotated(kNew, e, (int)pos, rotary, rd, maxPos, interleaved);
    }
    __syncthreads();
    float q[8];
    decLaneQuery(Ln, qs, q);

    float s[WDEC_KEYS_A_GROUP];
    float m = -CUDART_INF_F;
#pragma unroll
    for (int u = 0; u < WDEC_KEYS_A_GROUP; u++) {
        float kv[8];
        unpackRaw8(kr[u], kv);
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) dot += q[i] * kv[i];
        dot = groupSum(dot, G);
        s[u] = u * groups + grp < cached ? dot * scale : -CUDART_INF_F;
        m = fmaxf(m, s[u]);
    }
    // the query's own key: warp 0 (whole, for its shuffles) scores it; group 0 takes it
    float sOwn = -CUDART_INF_F, vOwn[8];
    if (tid < 32) {
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            dot += q[i] * (active ? ks[e0 + i] : 0.0f);
            vOwn[i] = active ? toF(kNew[d + e0 + i]) : 0.0f;
        }
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
            float vv[8];
            unpackRaw8(vr[u], vv);
            const float p = expf(s[u] - m);  // 0 for a key not taken
            l += p;
#pragma unroll
            for (int i = 0; i < 8; i++) acc[i] += p * vv[i];
        }
        if (grp == 0) {
            const float p = expf(sOwn - m);
            l += p;
#pragma unroll
            for (int i = 0; i < 8; i++) acc[i] += p * vOwn[i];
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
    __syncthreads();  // every load of the cache is behind this (its values are in vred and gm)
    float M = -CUDART_INF_F;
    for (int g = 0; g < groups; g++) M = fmaxf(M, gm[g]);
    float total = 0.0f;
    for (int g = 0; g < groups; g++) {
        if (gm[g] != -CUDART_INF_F) total += gl[g] * expf(gm[g] - M);
    }
    const float inv = 1.0f / total;
    A* o = out + row * d + (i64)head * dh;
    for (int e = tid; e < dh; e += DEC_THREADS) {
        float sum = 0.0f;
        for (int g = 0; g < groups; g++) {
            if (gm[g] != -CUDART_INF_F) sum += vred[g * dh + e] * expf(gm[g] - M);
        }
        o[e] = fromF<A>(sum * inv);
    }
    const i64 cell = (slot * capacity + pos % capacity) * d + (i64)head * dh;
    const bool pastTable = rd > 0 && pos >= maxPos;
    for (int e = tid; e < dh; e += DEC_THREADS) {
        kCache[cell + e] =
            fromF<A>(pastTable ? CUDART_NAN_F : ks[e]);
        vCache[cell + e] = kNew[d + e];
    }
}

}  // namespace b4j

B4J_KERNEL(attentionDecodeWindow, DEC_THREADS,
           (const A* qkv, A* kCache, A* vCache, const float* rotary, const int* layout, A* out, int B, int H, int dh,
            int capacity, int window, int rd, int maxPos, int interleaved, float scale),
           (qkv, kCache, vCache, rotary, layout, out, B, H, dh, capacity, window, rd, maxPos, interleaved, scale))
