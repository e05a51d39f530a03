// The fused head + cross-entropy on tensor cores for narrow models (bf16, d a multiple of 16 up to 128: the MQAR
// models), included by based4j_kernels.cu after train_attention_mma.cuh, whose primitives it uses. The logits are
// never stored: the loss is attention with the queries x, the keys and values the head's rows w and scores
// z = x w^T, so the scheme is FlashAttention-2's (io.based4j.cuda.TrainKernels.crossEntropyMma launches it):
//   rows    block of 64 rows of x (4 warps x 16), over a split's vocabulary tiles of 64 (double-buffered cp.async):
//           z = x w^T in float32, an online softmax in base 2 with the target's logit picked on the way, P rounded
//           to bf16 and O += P w; per (split, row) the partial state (max, sum of rounded P, exact sum, target logit)
//           and the unnormalised O.
//   merge   one warp a row: the splits' states rescaled to the common max and summed in split order; the row's
//           float4 state (M, S, z_t, -1) for crossEntropyLoss_f32, its log-sum-exp in base 2 for the head kernel,
//           and dx = scale (O / S_rounded - w[t]) (the softmax-weighted head rows minus the target's: the gradient of
//           scale * loss through z = x w^T).
//   head    block of 64 head rows (4 warps x 16), over a split's tiles of 64 rows of x: z^T = w x^T,
//           G = scale (exp2(z log2 e - lse_2) - onehot) rounded to bf16, dW += G x; each split's partial dW.
//   headsum dhead += the splits' partials, in split order.
// Every element is written by one thread, sums in a fixed order: deterministic. Rows whose target is IGNORE_INDEX
// get dx = 0 and no share of dW (and the loss kernel skips them).
#pragma once

namespace b4j {

constexpr int CEM_TILE = 64;  // rows of x or w per tile and per block

/** Bytes of dynamic shared memory of the rows and head kernels: a tile and two buffers of the other operand. */
template <int DHP> __host__ __device__ constexpr int cemShared() {
    return 3 * CEM_TILE * atmLd<DHP>() * 2 + 2 * CEM_TILE * 8;
}

/**
 * Rows kernel. Grid (ceil(m / 64), splits), block 128, dynamic shared memory cemShared. Split s takes the vocabulary
 * tiles [s T / splits, (s + 1) T / splits) of the T = ceil(vocab / 64). Writes part [splits][m] float4
 * (max in base 2, sum of the rounded P, exact sum, target logit or 0) and partO [splits][m][d].
 */
template <int DHP>
__device__ void crossEntropyMmaRows_impl(const bf16* x, const bf16* w, const int* targets, int m, int d, int vocab,
                                         float4* part, float* partO) {
    constexpr int LD = atmLd<DHP>();
    constexpr int KS = DHP / 16;
    constexpr int NT = DHP / 8;
    constexpr int ST = CEM_TILE / 8;
    extern __shared__ __align__(16) unsigned char cemSmem[];
    bf16* xs = reinterpret_cast<bf16*>(cemSmem);
    bf16* ws = xs + CEM_TILE * LD;  // [2][CEM_TILE][LD]
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2;
    const int c = lane & 3;
    const int r0 = blockIdx.x * CEM_TILE;
    const int split = blockIdx.y;
    const int splits = gridDim.y;
    const int T = (vocab + CEM_TILE - 1) / CEM_TILE;
    const int tFirst = (int)((i64)split * T / splits);
    const int tEnd = (int)((i64)(split + 1) * T / splits);
    atmLoadTile<CEM_TILE, DHP>(xs, x, d, r0, m, d);
    if (tFirst < tEnd) atmLoadTile<CEM_TILE, DHP>(ws, w, d, tFirst * CEM_TILE, vocab, d);
    atmCommit();

    int tgt[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int row = r0 + warp * 16 + g + 8 * h;
        tgt[h] = row < m ? targets[row] : B4J_IGNORE_INDEX;
    }
    unsigned xf[KS][4];
    float o[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
    float mx2[2] = {-CUDART_INF_F, -CUDART_INF_F};
    float lr[2] = {0.0f, 0.0f};  // sum of the rounded P (this lane's columns)
    float le[2] = {0.0f, 0.0f};  // sum of the exact exponentials
    float zt[2] = {0.0f, 0.0f};  // the target's logit where this lane holds it
    if (tFirst >= tEnd) atmWait<0>();
    for (int it = tFirst; it < tEnd; it++) {
        const int buf = (it - tFirst) & 1;
        const int v0 = it * CEM_TILE;
        if (it + 1 < tEnd) {
            atmLoadTile<CEM_TILE, DHP>(ws + (buf ^ 1) * CEM_TILE * LD, w, d, v0 + CEM_TILE, vocab, d);
            atmCommit();
            atmWait<1>();
        } else {
            atmWait<0>();
        }
        __syncthreads();
        if (it == tFirst) {
#pragma unroll
            for (int kk = 0; kk < KS; kk++) atmLdm(xf[kk], atmA<LD>(xs, warp * 16, kk * 16, lane));
        }
        const bf16* wt = ws + buf * CEM_TILE * LD;
        float s[ST][4];
        atmScoreTile<DHP, ST>(s, xf, wt, d, lane);
#pragma unroll
        for (int nt = 0; nt < ST; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int j = v0 + nt * 8 + 2 * c + (e & 1);
                if (j == tgt[e >> 1]) zt[e >> 1] = s[nt][e];
                s[nt][e] = j < vocab ? s[nt][e] * ATM_LOG2E : -CUDART_INF_F;
            }
        }
        unsigned p[ST][2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const float mx = atmRowMax<ST>(s, h, mx2[h]);
            const float corr = exp2f(mx2[h] - mx);  // every tile holds a column < vocab: mx is finite
            mx2[h] = mx;
            lr[h] *= corr;
            le[h] *= corr;
            atmScaleRow<NT>(o, h, corr);
#pragma unroll
            for (int nt = 0; nt < ST; nt++) {
                const float e0 = exp2f(s[nt][2 * h] - mx);
                const float e1 = exp2f(s[nt][2 * h + 1] - mx);
                p[nt][h] = atmPack(e0, e1);
                const float2 pr = atmUnpack(p[nt][h]);
                lr[h] += pr.x + pr.y;
                le[h] += e0 + e1;
            }
        }
        atmAccumulatePV<DHP, ST>(o, p, wt, d, lane);
        __syncthreads();  // this tile's buffer is refilled two tiles on
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        lr[h] += __shfl_xor_sync(0xffffffffu, lr[h], 1);
        lr[h] += __shfl_xor_sync(0xffffffffu, lr[h], 2);
        le[h] += __shfl_xor_sync(0xffffffffu, le[h], 1);
        le[h] += __shfl_xor_sync(0xffffffffu, le[h], 2);
        zt[h] += __shfl_xor_sync(0xffffffffu, zt[h], 1);  // one lane at most holds it; the others add zeros
        zt[h] += __shfl_xor_sync(0xffffffffu, zt[h], 2);
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int row = r0 + warp * 16 + g + 8 * h;
        if (row >= m) continue;
        const i64 at = (i64)split * m + row;
        if (c == 0) part[at] = make_float4(mx2[h], lr[h], le[h], zt[h]);
        float* orow = partO + at * d;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            if (nt * 8 >= d) break;
            *reinterpret_cast<float2*>(orow + nt * 8 + 2 * c) = make_float2(o[nt][2 * h], o[nt][2 * h + 1]);
        }
    }
}

/**
 * Merge of the rows kernel's splits: one warp a row (rows grid-strided). stats [m] float4 (M, S, z_t, -1) as
 * crossEntropyRows leaves them; lse2 [m] the row's log-sum-exp in base 2 (+inf for an ignored row); dx [m, d]
 * float32 = scale (O / S_rounded - w[t]), zeros for an ignored row.
 */
__device__ void crossEntropyMmaMerge_impl(const float4* part, const float* partO, const bf16* w, const int* targets,
                                          int m, int d, int splits, float scale, float4* stats, float* lse2,
                                          float* dx) {
    const int lane = threadIdx.x & 31;
    for (i64 row = globalThread() >> 5; row < m; row += globalStride() >> 5) {
        const int t = targets[row];
        float* dr = dx + row * d;
        if (t == B4J_IGNORE_INDEX) {
            for (int e = lane; e < d; e += 32) dr[e] = 0.0f;
            if (lane == 0) lse2[row] = CUDART_INF_F;
            continue;
        }
        float mx = -CUDART_INF_F;
        for (int s = 0; s < splits; s++) mx = fmaxf(mx, part[(i64)s * m + row].x);
        float lr = 0.0f, le = 0.0f, zt = 0.0f;
        for (int s = 0; s < splits; s++) {
            const float4 q = part[(i64)s * m + row];
            const float f = q.x == -CUDART_INF_F ? 0.0f : exp2f(q.x - mx);
            lr += q.y * f;
            le += q.z * f;
            zt += q.w;
        }
        if (lane == 0) {
            stats[row] = make_float4(mx * ATM_LN2, le, zt, __int_as_float(-1));
            lse2[row] = mx + log2f(le);
        }
        const float inv = scale / lr;
        const bf16* wt = w + (i64)t * d;
        for (int e = lane; e < d; e += 32) {
            float sum = 0.0f;
            for (int s = 0; s < splits; s++) {
                const float4 q = part[(i64)s * m + row];
                const float f = q.x == -CUDART_INF_F ? 0.0f : exp2f(q.x - mx);
                sum += partO[((i64)s * m + row) * d + e] * f;
            }
            dr[e] = sum * inv - scale * __bfloat162float(wt[e]);
        }
    }
}

/**
 * Head kernel. Grid (ceil(vocab / 64), splits), block 128, dynamic shared memory cemShared. Split s takes the row
 * tiles [s R / splits, (s + 1) R / splits) of the R = ceil(m / 64) of x; writes partW [splits][vocab][d].
 */
template <int DHP>
__device__ void crossEntropyMmaHead_impl(const bf16* x, const bf16* w, const int* targets, const float* lse2, int m,
                                         int d, int vocab, float scale, float* partW) {
    constexpr int LD = atmLd<DHP>();
    constexpr int KS = DHP / 16;
    constexpr int NT = DHP / 8;
    constexpr int ST = CEM_TILE / 8;
    extern __shared__ __align__(16) unsigned char cemSmem[];
    bf16* wsh = reinterpret_cast<bf16*>(cemSmem);
    bf16* xs = wsh + CEM_TILE * LD;                                  // [2][CEM_TILE][LD]
    float* ls = reinterpret_cast<float*>(xs + 2 * CEM_TILE * LD);    // [2][CEM_TILE]
    int* ts = reinterpret_cast<int*>(ls + 2 * CEM_TILE);             // [2][CEM_TILE]
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2;
    const int c = lane & 3;
    const int v0 = blockIdx.x * CEM_TILE;
    const int split = blockIdx.y;
    const int splits = gridDim.y;
    const int R = (m + CEM_TILE - 1) / CEM_TILE;
    const int rFirst = (int)((i64)split * R / splits);
    const int rEnd = (int)((i64)(split + 1) * R / splits);
    atmLoadTile<CEM_TILE, DHP>(wsh, w, d, v0, vocab, d);
    if (rFirst < rEnd) atmLoadTile<CEM_TILE, DHP>(xs, x, d, rFirst * CEM_TILE, m, d);
    atmCommit();
    const int vr[2] = {v0 + warp * 16 + g, v0 + warp * 16 + g + 8};  // the head rows of accumulator rows g, g + 8
    unsigned wf[KS][4];
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    if (rFirst >= rEnd) atmWait<0>();
    for (int it = rFirst; it < rEnd; it++) {
        const int buf = (it - rFirst) & 1;
        const int i0 = it * CEM_TILE;
        if (threadIdx.x < CEM_TILE) {  // this tile's rows' log-sum-exp and targets (the buffer was last read two tiles ago)
            const int row = i0 + threadIdx.x;
            const int t = row < m ? targets[row] : B4J_IGNORE_INDEX;
            ls[buf * CEM_TILE + threadIdx.x] = t == B4J_IGNORE_INDEX ? CUDART_INF_F : lse2[row];
            ts[buf * CEM_TILE + threadIdx.x] = t;
        }
        if (it + 1 < rEnd) {
            atmLoadTile<CEM_TILE, DHP>(xs + (buf ^ 1) * CEM_TILE * LD, x, d, i0 + CEM_TILE, m, d);
            atmCommit();
            atmWait<1>();
        } else {
            atmWait<0>();
        }
        __syncthreads();
        if (it == rFirst) {
#pragma unroll
            for (int kk = 0; kk < KS; kk++) atmLdm(wf[kk], atmA<LD>(wsh, warp * 16, kk * 16, lane));
        }
        const bf16* xt = xs + buf * CEM_TILE * LD;
        const float* lt = ls + buf * CEM_TILE;
        const int* tt = ts + buf * CEM_TILE;
        float s[ST][4];
        atmScoreTile<DHP, ST>(s, wf, xt, d, lane);
        unsigned p[ST][2];  // G rounded to bf16: rows the head rows, columns the tile's rows of x
#pragma unroll
        for (int nt = 0; nt < ST; nt++) {
            const int i = nt * 8 + 2 * c;
            const float l0 = lt[i], l1 = lt[i + 1];
            const int t0 = tt[i], t1 = tt[i + 1];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                float g0 = exp2f(s[nt][2 * h] * ATM_LOG2E - l0);
                float g1 = exp2f(s[nt][2 * h + 1] * ATM_LOG2E - l1);
                if (t0 == vr[h]) g0 -= 1.0f;
                if (t1 == vr[h]) g1 -= 1.0f;
                p[nt][h] = atmPack(scale * g0, scale * g1);
            }
        }
        atmAccumulatePV<DHP, ST>(acc, p, xt, d, lane);
        __syncthreads();
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        if (vr[h] >= vocab) continue;
        float* prow = partW + ((i64)split * vocab + vr[h]) * d;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            if (nt * 8 >= d) break;
            *reinterpret_cast<float2*>(prow + nt * 8 + 2 * c) = make_float2(acc[nt][2 * h], acc[nt][2 * h + 1]);
        }
    }
}

/** dhead[i] += the splits' partW[s][i] in split order, i < count (elementwise, grid-strided). */
__device__ void crossEntropyMmaHeadSum_impl(const float* partW, float* dhead, i64 count, int splits) {
    for (i64 i = globalThread(); i < count; i += globalStride()) {
        float sum = 0.0f;
        for (int s = 0; s < splits; s++) sum += partW[(i64)s * count + i];
        dhead[i] += sum;
    }
}

static_assert(cemShared<128>() <= 227 * 1024, "fits an SM");

}  // namespace b4j

namespace b4j_bf16 {
extern "C" __global__ void __launch_bounds__(256)
    crossEntropyMmaMerge_bf16(const float4* part, const float* partO, const A* w, const int* targets, int m, int d,
                              int splits, float scale, float4* stats, float* lse2, float* dx) { b4jPdlWait();
    b4j::crossEntropyMmaMerge_impl(part, partO, w, targets, m, d, splits, scale, stats, lse2, dx);
}
extern "C" __global__ void __launch_bounds__(256)
    crossEntropyMmaHeadSum_bf16(const float* partW, float* dhead, long long count, int splits) { b4jPdlWait();
    b4j::crossEntropyMmaHeadSum_impl(partW, dhead, count, splits);
}
}  // namespace b4j_bf16

#define CEM_KERNELS(DHP)                                                                                             \
    namespace b4j_bf16 {                                                                                             \
    extern "C" __global__ void __launch_bounds__(b4j::ATM_THREADS) crossEntropyMmaRows##DHP##_bf16(                  \
        const A* x, const A* w, const int* targets, int m, int d, int vocab, float4* part, float* partO) {          \
        b4jPdlWait();                                                                                               \
        b4j::crossEntropyMmaRows_impl<DHP>(x, w, targets, m, d, vocab, part, partO);                                 \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(b4j::ATM_THREADS) crossEntropyMmaHead##DHP##_bf16(                  \
        const A* x, const A* w, const int* targets, const float* lse2, int m, int d, int vocab, float scale,         \
        float* partW) {                                                                                              \
        b4jPdlWait();                                                                                                \
        b4j::crossEntropyMmaHead_impl<DHP>(x, w, targets, lse2, m, d, vocab, scale, partW);                          \
    }                                                                                                                \
    }

CEM_KERNELS(64)
CEM_KERNELS(128)
