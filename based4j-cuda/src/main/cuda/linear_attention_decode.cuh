// One decode step of Taylor linear attention (included by based4j_kernels.cu): every sequence one token, its state
// S and z read and written once in place. Versions: 1, a column of S a thread; 2 and 3, four columns a thread in
// 16-byte loads; 4, as 3 with 12 rows a thread in flight, the first ones before the token is featurized; 5 (sm_90),
// persistent blocks taking each item's S into shared memory by one bulk copy, two items ahead. Launched
// by io.based4j.cuda.Kernels.linearAttentionDecode; compared and timed by
// `based4j bench kernels --kernel linearAttentionDecode`.
#pragma once

namespace b4j {

/**
 * Where a block of a linearAttentionDecode version works: its state's S and z, its output row, and the parts of
 * shared memory laDecodeStart fills (phi(k), phi(q), v) and the rest, from which a version takes its sums.
 */
struct LaDecode {
    float* S;         // [E][dh]
    float* z;         // [E]
    i64 out;          // the first output of the block's head in out
    const float* pk;  // [E] phi(k)
    const float* pq;  // [E] phi(q)
    const float* vs;  // [dh] v
    float* red;       // the shared memory after v
};

/**
 * The start every linearAttentionDecode version shares: the block's (sequence, head) (grid (B, H)), its token's k and q
 * featurized into shared memory (phi(k) at smem, phi(q) after it, then x_k, x_q and v, E + E + f + f + dh floats);
 * the block synchronised after.
 */
template <typename A>
__device__ __forceinline__ LaDecode laDecodeStart(const A* q, const A* k, const A* v, float* kvState, float* kState,
                                                  const int* layout, int B, int H, int f, int dh, float* smem) {
    const Layout L = layoutOf(layout, B);
    const int seq = blockIdx.x;
    const int head = blockIdx.y;
    const int E = expandedDim(f);
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const Taylor tc = taylorOf(f);
    float* pk = smem;       // [E]
    float* pq = pk + E;     // [E]
    float* xk = pq + E;     // [f]
    float* xq = xk + f;     // [f]
    float* vs = xq + f;     // [dh]
    const i64 row = L.offsets[seq];
    const i64 slot = L.slots[seq];
    LaDecode D;
    D.S = kvState + (slot * H + head) * (i64)E * dh;
    D.z = kState + (slot * H + head) * (i64)E;
    const i64 qkCols = (i64)H * f;
    const i64 vCols = (i64)H * dh;
    D.out = row * vCols + (i64)head * dh;
    D.pk = pk;
    D.pq = pq;
    D.vs = vs;
    D.red = vs + dh;
    for (int i = tid; i < f; i += nt) {
        xk[i] = toF(k[row * qkCols + (i64)head * f + i]);
        xq[i] = toF(q[row * qkCols + (i64)head * f + i]);
    }
    for (int c = tid; c < dh; c += nt) vs[c] = toF(v[D.out + c]);
    __syncthreads();
    featurize(xk, f, tc, pk);
    featurize(xq, f, tc, pq);
    __syncthreads();
    return D;
}

/**
 * The end every version shares: z += phi(k) and the denominator phi(q).z (summed over the block in a fixed order,
 * dred: blockDim / 32 floats), then each output the sum of the numerator's pieces over the R row groups (red
 * [R][dh], written before) over the denominator plus eps.
 */
template <typename A>
__device__ __forceinline__ void laDecodeFinish(const LaDecode& D, const float* red, float* dred, int R, int E, int dh,
                                               A* out, float eps) {
    const float* pk = D.pk;
    const float* pq = D.pq;
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    float den = 0.0f;
    for (int a = tid; a < E; a += nt) {
        const float z = D.z[a] + pk[a];
        D.z[a] = z;
        den += pq[a] * z;
    }
    den = warpSum(den);
    if ((tid & 31) == 0) dred[tid >> 5] = den;
    __syncthreads();
    if (tid < dh) {
        float total = 0.0f;
        for (int w = 0; w < (nt >> 5); w++) total += dred[w];
        float acc = 0.0f;
        for (int gg = 0; gg < R; gg++) acc += red[gg * dh + tid];
        out[D.out + tid] = fromF<A>(acc * (1.0f / (total + eps)));
    }
}

/** Rows of S a thread of linearAttentionDecode loads before writing any back. */
#define LA_DECODE_BATCH 8

/**
 * One decode step of Taylor linear attention (every sequence one token): S += phi(k) v^T, z += phi(k), then
 * y = phi(q).S / (phi(q).z + eps), S and z read and written once, in place in the state. Grid (B, H), block 256
 * (dh <= 256): thread (g, e) takes column e of S and the features a = g, g + G, .. (G = 256 / dh), their new values
 * the same float operations as linearAttention's; threads over the features update z. The numerator's pieces are
 * summed over g, and the denominator's over the block, in a fixed order. Dynamic shared memory
 * 2E + 2f + dh + 256 + 8 floats.
 */
template <typename W, typename A>
__device__ void linearAttentionDecode_impl(const A* q, const A* k, const A* v, float* kvState, float* kState,
                                           const int* layout, A* out, int B, int H, int f, int dh, float eps) {
    extern __shared__ float smem[];
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const int E = expandedDim(f);
    LaDecode D = laDecodeStart(q, k, v, kvState, kState, layout, B, H, f, dh, smem);
    const float* pk = D.pk;
    const float* pq = D.pq;
    const float* vs = D.vs;
    float* red = D.red;  // [nt]
    float* Sg = D.S;
    const int G = nt / dh;
    const int e = tid % dh;
    const int g = tid / dh;
    float num = 0.0f;
    if (g < G) {
        // LA_DECODE_BATCH rows of S loaded before any is written back: the loads in flight together (a store to one
        // row could otherwise be taken to alias the next row's load), the same operations in the same order
        const float ve = vs[e];
        for (int a0 = g; a0 < E; a0 += G * LA_DECODE_BATCH) {
            float sv[LA_DECODE_BATCH];
#pragma unroll
            for (int u = 0; u < LA_DECODE_BATCH; u++) {
                const int a = a0 + u * G;
                sv[u] = a < E ? Sg[(i64)a * dh + e] : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < LA_DECODE_BATCH; u++) {
                const int a = a0 + u * G;
                if (a < E) {
                    const float s = sv[u] + pk[a] * ve;
                    Sg[(i64)a * dh + e] = s;
                    num += pq[a] * s;
                }
            }
        }
    }
    red[tid] = num;
    laDecodeFinish(D, red, red + nt, G, E, dh, out, eps);
}

/**
 * Versions 2 and 3 of linearAttentionDecode: the same arguments, grid and results, S read and written 4 columns a
 * thread in 16-byte loads and stores. Thread (g, c) of R = 256 / (dh / 4) row groups takes columns 4c .. 4c + 3 of
 * rows a = g, g + R, ..; U rows in flight before any is written back (version 2: 8, more loads in flight; version 3:
 * 4, fewer registers and so more blocks a multiprocessor; version 4 (EARLY): 12, the first ones loaded before the
 * token is featurized, while its loads and the block's barriers go on). S's new values are the same float
 * operations as version 1's (bit for bit); the numerator's pieces are summed over the row groups in a fixed order
 * (another order than version 1's). Requires dh a multiple of 4 (S 16-byte aligned); dynamic shared memory
 * 2E + 2f + dh + 4 * 256 + 8 floats.
 */
template <int U, bool EARLY, typename W, typename A>
__device__ void linearAttentionDecodeQuads(const A* q, const A* k, const A* v, float* kvState, float* kState,
                                            const int* layout, A* out, int B, int H, int f, int dh, float eps) {
    extern __shared__ float smem[];
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const int E = expandedDim(f);
    const int quads = dh >> 2;
    const int R = nt / quads;
    const int c = tid % quads;
    const int g = tid / quads;
    float4 sv[U];
    if (EARLY && g < R) {
        // the first U rows of the thread in flight before the token is featurized (S does not depend on it)
        const i64 slot = layoutOf(layout, B).slots[blockIdx.x];
        const float4* S4 = reinterpret_cast<const float4*>(kvState + (slot * H + blockIdx.y) * (i64)E * dh);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int a = g + u * R;
            sv[u] = a < E ? S4[(i64)a * quads + c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    }
    LaDecode D = laDecodeStart(q, k, v, kvState, kState, layout, B, H, f, dh, smem);
    const float* pk = D.pk;
    const float* pq = D.pq;
    const float* vs = D.vs;
    float* red = D.red;  // [4 nt]
    float* Sg = D.S;
    float4 num = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (g < R) {
        const float v0 = vs[4 * c], v1 = vs[4 * c + 1], v2 = vs[4 * c + 2], v3 = vs[4 * c + 3];
        float4* S4 = reinterpret_cast<float4*>(Sg);
        for (int a0 = g; a0 < E; a0 += R * U) {
            if (!EARLY || a0 != g) {
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int a = a0 + u * R;
                    sv[u] = a < E ? S4[(i64)a * quads + c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                }
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int a = a0 + u * R;
                if (a < E) {
                    const float p = pk[a];
                    float4 s;
                    s.x = sv[u].x + p * v0;
                    s.y = sv[u].y + p * v1;
                    s.z = sv[u].z + p * v2;
                    s.w = sv[u].w + p * v3;
                    S4[(i64)a * quads + c] = s;
                    const float w = pq[a];
                    num.x += w * s.x;
                    num.y += w * s.y;
                    num.z += w * s.z;
                    num.w += w * s.w;
                }
            }
        }
        red[g * dh + 4 * c] = num.x;
        red[g * dh + 4 * c + 1] = num.y;
        red[g * dh + 4 * c + 2] = num.z;
        red[g * dh + 4 * c + 3] = num.w;
    }
    laDecodeFinish(D, red, red + 4 * nt, R, E, dh, out, eps);
}

template <typename W, typename A>
__device__ void linearAttentionDecode2_impl(const A* q, const A* k, const A* v, float* kvState, float* kState,
                                            const int* layout, A* out, int B, int H, int f, int dh, float eps) {
    linearAttentionDecodeQuads<8, false, W, A>(q, k, v, kvState, kState, layout, out, B, H, f, dh, eps);
}

template <typename W, typename A>
__device__ void linearAttentionDecode3_impl(const A* q, const A* k, const A* v, float* kvState, float* kState,
                                            const int* layout, A* out, int B, int H, int f, int dh, float eps) {
    linearAttentionDecodeQuads<4, false, W, A>(q, k, v, kvState, kState, layout, out, B, H, f, dh, eps);
}

template <typename W, typename A>
__device__ void linearAttentionDecode4_impl(const A* q, const A* k, const A* v, float* kvState, float* kState,
                                            const int* layout, A* out, int B, int H, int f, int dh, float eps) {
    linearAttentionDecodeQuads<12, true, W, A>(q, k, v, kvState, kState, layout, out, B, H, f, dh, eps);
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define B4J_LA_BULK 1
#else
#define B4J_LA_BULK 0
#endif

#if B4J_LA_BULK
/** Shared-memory address (32 bits) of a generic pointer into the block's shared memory. */
__device__ __forceinline__ unsigned laSmem(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void laBarrierInit(u64* bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(laSmem(bar)) : "memory");
}

/** One bulk copy of `bytes` (a multiple of 16, both ends 16-byte aligned) global -> shared, completing on bar. */
__device__ __forceinline__ void laBulkLoad(void* dst, const void* src, unsigned bytes, u64* bar) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(laSmem(bar)), "r"(bytes) : "memory");
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(laSmem(dst)),
        "l"(src), "r"(bytes), "r"(laSmem(bar))
        : "memory");
}

/** Waits until bar's phase of this parity has completed (the bulk copy it counts has landed). */
__device__ __forceinline__ void laBarrierWait(u64* bar, unsigned parity) {
    unsigned done = 0;
    do {
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n"
            "}\n"
            : "=r"(done)
            : "r"(laSmem(bar)), "r"(parity)
            : "memory");
    } while (!done);
}

#endif

/**
 * Version 5 of linearAttentionDecode (sm_90): the same arguments and results as version 4, bit for bit, with the
 * state read through shared memory by the copy engine. A block is persistent: it takes the (sequence, head) items
 * blockIdx.x, blockIdx.x + gridDim.x, .. (items in order of sequence then head, so that the grid works on one
 * contiguous stretch of the state at a time), and each item's S, one contiguous E x dh block of floats, arrives by one
 * bulk copy into one of `stages` buffers, stages - 1 items ahead of the one being worked on. A thread updates its
 * float4s of S from the buffer (thread (g, c) of version 4: columns 4c .. 4c + 3 of rows g, g + R, .., the same
 * operations in the same order) and stores them to S itself, so that the buffer is free for the next load once the
 * block has read it (written back by a bulk copy from the buffer instead, a buffer waited for its write-back: 98.9
 * against version 4's 87.4 us on based-1b's layer at batch 128). The token's q, k, v and z are loaded into registers
 * an item ahead. Requires E <= blockDim.x, dh a multiple of 4, S 16-byte aligned; dynamic shared memory stages E dh
 * floats, stages barriers, then 2E + 2f + dh + 4 blockDim + blockDim / 32 floats.
 */
template <typename W, typename A>
__device__ void linearAttentionDecode5_impl(const A* q, const A* k, const A* v, float* kvState, float* kState,
                                            const int* layout, A* out, int B, int H, int f, int dh, float eps,
                                            int stages) {
#if B4J_LA_BULK
    extern __shared__ __align__(128) unsigned char laSmemRaw[];
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const int E = expandedDim(f);
    const int quads = dh >> 2;
    const int R = nt / quads;
    const int c = tid % quads;
    const int g = tid / quads;
    const int itemFloats = E * dh;
    const unsigned itemBytes = (unsigned)itemFloats * 4u;
    float* bufs = reinterpret_cast<float*>(laSmemRaw);
    u64* bars = reinterpret_cast<u64*>(bufs + (i64)stages * itemFloats);
    float* pk = reinterpret_cast<float*>(bars + stages);  // [E]
    float* pq = pk + E;                                   // [E]
    float* xk = pq + E;                                   // [f]
    float* xq = xk + f;                                   // [f]
    float* vs = xq + f;                                   // [dh]
    float* red = vs + dh;                                 // [4 nt]
    float* dred = red + 4 * nt;                           // [nt / 32]
    const Layout L = layoutOf(layout, B);
    const Taylor tc = taylorOf(f);
    const int items = B * H;
    const int first = blockIdx.x;
    const int step = gridDim.x;
    const int count = first < items ? (items - first + step - 1) / step : 0;
    const i64 qkCols = (i64)H * f;
    const i64 vCols = (i64)H * dh;
    auto stateOf = [&](int j) -> i64 {  // the index of item j's (slot, head) among the state's
        const int item = first + j * step;
        return (i64)L.slots[item / H] * H + item % H;
    };
    if (tid == 0) {
        for (int s = 0; s < stages; s++) laBarrierInit(bars + s);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (tid == 0) {
        for (int j = 0; j < stages - 1 && j < count; j++) {
            laBulkLoad(bufs + (i64)j * itemFloats, kvState + stateOf(j) * itemFloats, itemBytes, bars + j);
        }
    }
    // the token of item j in registers: x_k and x_q (tid < f), v (tid < dh), z (tid < E)
    float rk = 0.0f, rq = 0.0f, rv = 0.0f, rz = 0.0f;
    auto fetch = [&](int j) {
        const int item = first + j * step;
        const int seq = item / H;
        const int head = item % H;
        const i64 row = L.offsets[seq];
        if (tid < f) {
            rk = toF(k[row * qkCols + (i64)head * f + tid]);
            rq = toF(q[row * qkCols + (i64)head * f + tid]);
        }
        if (tid < dh) rv = toF(v[row * vCols + (i64)head * dh + tid]);
        if (tid < E) rz = kState[stateOf(j) * E + tid];
    };
    if (count > 0) fetch(0);
    for (int j = 0; j < count; j++) {
        const int item = first + j * step;
        const i64 sidx = stateOf(j);
        const i64 outRow = L.offsets[item / H] * vCols + (i64)(item % H) * dh;
        if (tid < f) {
            xk[tid] = rk;
            xq[tid] = rq;
        }
        if (tid < dh) vs[tid] = rv;
        const float zOld = rz;
        if (j + 1 < count) fetch(j + 1);
        __syncthreads();
        featurize(xk, f, tc, pk);
        featurize(xq, f, tc, pq);
        if (tid == 0 && j + stages - 1 < count) {
            // the buffer of item j - 1 (read by the block before the barrier after its sums) takes item j + stages - 1
            const int b = (j + stages - 1) % stages;
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            laBulkLoad(bufs + (i64)b * itemFloats, kvState + stateOf(j + stages - 1) * itemFloats, itemBytes,
                       bars + b);
        }
        __syncthreads();
        const int b = j % stages;
        laBarrierWait(bars + b, (unsigned)((j / stages) & 1));
        const float4* S4 = reinterpret_cast<const float4*>(bufs + (i64)b * itemFloats);
        float4* G4 = reinterpret_cast<float4*>(kvState + sidx * itemFloats);
        float4 num = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (g < R) {
            const float v0 = vs[4 * c], v1 = vs[4 * c + 1], v2 = vs[4 * c + 2], v3 = vs[4 * c + 3];
            for (int a = g; a < E; a += R) {
                const float p = pk[a];
                const float4 sv = S4[a * quads + c];
                float4 s;
                s.x = sv.x + p * v0;
                s.y = sv.y + p * v1;
                s.z = sv.z + p * v2;
                s.w = sv.w + p * v3;
                G4[(i64)a * quads + c] = s;
                const float w = pq[a];
                num.x += w * s.x;
                num.y += w * s.y;
                num.z += w * s.z;
                num.w += w * s.w;
            }
            red[g * dh + 4 * c] = num.x;
            red[g * dh + 4 * c + 1] = num.y;
            red[g * dh + 4 * c + 2] = num.z;
            red[g * dh + 4 * c + 3] = num.w;
        }
        float den = 0.0f;
        if (tid < E) {
            const float z = zOld + pk[tid];
            kState[sidx * E + tid] = z;
            den = pq[tid] * z;
        }
        den = warpSum(den);
        if ((tid & 31) == 0) dred[tid >> 5] = den;
        __syncthreads();
        if (tid < dh) {
            float total = 0.0f;
            for (int w = 0; w < (nt >> 5); w++) total += dred[w];
            float acc = 0.0f;
            for (int gg = 0; gg < R; gg++) acc += red[gg * dh + tid];
            out[outRow + tid] = fromF<A>(acc * (1.0f / (total + eps)));
        }
    }
#endif
}

}  // namespace b4j

B4J_KERNEL(linearAttentionDecode5, 256,
           (const A* q, const A* k, const A* v, float* kvState, float* kState, const int* layout, A* out, int B, int H,
            int f, int dh, float eps, int stages),
           (q, k, v, kvState, kState, layout, out, B, H, f, dh, eps, stages))
B4J_KERNEL(linearAttentionDecode, 256,
           (const A* q, const A* k, const A* v, float* kvState, float* kState, const int* layout, A* out, int B, int H,
            int f, int dh, float eps),
           (q, k, v, kvState, kState, layout, out, B, H, f, dh, eps))
B4J_KERNEL(linearAttentionDecode2, 256,
           (const A* q, const A* k, const A* v, float* kvState, float* kState, const int* layout, A* out, int B, int H,
            int f, int dh, float eps),
           (q, k, v, kvState, kState, layout, out, B, H, f, dh, eps))
B4J_KERNEL(linearAttentionDecode3, 256,
           (const A* q, const A* k, const A* v, float* kvState, float* kState, const int* layout, A* out, int B, int H,
            int f, int dh, float eps),
           (q, k, v, kvState, kState, layout, out, B, H, f, dh, eps))
B4J_KERNEL(linearAttentionDecode4, 256,
           (const A* q, const A* k, const A* v, float* kvState, float* kState, const int* layout, A* out, int B, int H,
            int f, int dh, float eps),
           (q, k, v, kvState, kState, layout, out, B, H, f, dh, eps))
