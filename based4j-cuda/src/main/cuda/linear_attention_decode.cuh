// One decode step of Taylor linear attention (included by based4j_kernels.cu): every sequence one token, its state
// S and z read and written once in place. Versions: 1, a column of S a thread; 2 and 3, four columns a thread in
// 16-byte loads; 4, as 3 with 12 rows a thread in flight, the first ones before the token is featurized; 5, as 4 with
// 17 rows (all of based-1b's) and z in flight together. Launched
// by io.based4j.cuda.Kernels.linearAttentionDecode; compared and timed by
// `based4j bench kernels --kernel linearAttentionDecode`.
//
// The deferred form (linearAttentionDecodeDeferred, with linearAttentionFold): S is read every step but written
// once every K steps. The keys and values of the tokens since the last write wait beside the state (at most K - 1
// of them), and a step's output adds their part to phi(q).S: y = (phi(q).S + sum_i (phi(q).phi(k_i)) v_i) /
// (phi(q).z + sum_i phi(q).phi(k_i) + eps). Every K-th step (staggered over the slots) adds them in, one token after
// another with the same float operations as the step-by-step update, so the state is that update's bit for bit.
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
 * The start every linearAttentionDecode version shares: head `head` of sequence `seq`, its token's k and q featurized
 * into shared memory (phi(k) at smem, phi(q) after it, then x_k, x_q and v, E + E + f + f + dh floats); the block
 * synchronised after.
 */
template <typename A>
__device__ __forceinline__ LaDecode laDecodeStartAt(int seq, int head, const A* q, const A* k, const A* v,
                                                    float* kvState, float* kState, const int* layout, int B, int H,
                                                    int f, int dh, float* smem) {
    const Layout L = layoutOf(layout, B);
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

/** laDecodeStartAt for the block's own (sequence, head): grid (B, H). */
template <typename A>
__device__ __forceinline__ LaDecode laDecodeStart(const A* q, const A* k, const A* v, float* kvState, float* kState,
                                                  const int* layout, int B, int H, int f, int dh, float* smem) {
    return laDecodeStartAt((int)blockIdx.x, (int)blockIdx.y, q, k, v, kvState, kState, layout, B, H, f, dh, smem);
}

/**
 * The end every version shares: z += phi(k) and the denominator phi(q).z (summed over the block in a fixed order,
 * dred: blockDim / 32 floats), then each output the sum of the numerator's pieces over the R row groups (red
 * [R][dh], written before) over the denominator plus eps.
 */
template <bool ZE = false, typename A>
__device__ __forceinline__ void laDecodeFinish(const LaDecode& D, const float* red, float* dred, int R, int E, int dh,
                                               A* out, float eps, float zEarly = 0.0f) {
    const float* pk = D.pk;
    const float* pq = D.pq;
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    float den = 0.0f;
    for (int a = tid; a < E; a += nt) {
        // ZE: z[tid] loaded early into zEarly (where E <= nt)
        const float z = (ZE && a == tid ? zEarly : D.z[a]) + pk[a];
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
 * Versions 2 to 5 of linearAttentionDecode: the same arguments, grid and results, S read and written 4 columns a
 * thread in 16-byte loads and stores. Thread (g, c) of R = 256 / (dh / 4) row groups takes columns 4c .. 4c + 3 of
 * rows a = g, g + R, ..; U rows in flight before any is written back (version 2: 8, more loads in flight; version 3:
 * 4, fewer registers and so more blocks a multiprocessor; version 4 (EARLY): 12, the first ones loaded before the
 * token is featurized, while its loads and the block's barriers go on; version 5: 17, and with ZE each thread's
 * value of z (tid < E) loaded before the token is featurized too). S's new values are the same float
 * operations as version 1's (bit for bit); the numerator's pieces are summed over the row groups in a fixed order
 * (another order than version 1's). Requires dh a multiple of 4 (S 16-byte aligned); dynamic shared memory
 * 2E + 2f + dh + 4 * 256 + 8 floats.
 */
template <int U, bool EARLY, typename W, typename A, bool ZE = false, bool PRE = false>
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
    float zEarly = 0.0f;
    // the sequence's slot, where z or S is loaded before the token is featurized
    const i64 slot = ZE || EARLY ? layoutOf(layout, B).slots[blockIdx.x] : 0;
    if (ZE && tid < E) {
        zEarly = kState[(slot * H + blockIdx.y) * (i64)E + tid];
    }
    if (EARLY && g < R) {
        // the first U rows of the thread in flight before the token is featurized (S does not depend on it)
        const float4* S4 = reinterpret_cast<const float4*>(kvState + (slot * H + blockIdx.y) * (i64)E * dh);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int a = g + u * R;
            sv[u] = a < E ? S4[(i64)a * quads + c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    }
    if constexpr (PRE) {
        // the wait for the kernel before (q, k and v) after the state's loads: S, z and the layout were written two
        // kernels before this one or earlier, done once the kernel before it is past its own wait
        b4jPdlWait();
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
    laDecodeFinish<ZE>(D, red, red + 4 * nt, R, E, dh, out, eps, zEarly);
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

/**
 * Version 5: version 4 with every row of a thread in flight at once at based-1b's heads (17 rows of S a thread: 153
 * features over 9 row groups at head dim 112; narrower heads have fewer rows a thread, 10 at 64, and wider heads or
 * more features loop) and z's value of each thread (tid < E) loaded with them: one wait on memory for the whole state
 * instead of two, then z's.
 */
template <typename W, typename A>
__device__ void linearAttentionDecode5_impl(const A* q, const A* k, const A* v, float* kvState, float* kState,
                                            const int* layout, A* out, int B, int H, int f, int dh, float eps) {
    linearAttentionDecodeQuads<17, true, W, A, true>(q, k, v, kvState, kState, layout, out, B, H, f, dh, eps);
}

/**
 * Version 6: version 5 with its state's loads (the slot, S's rows and z) asked for before the wait for the kernel
 * before it (programmatic launch), which wrote q, k and v: launched programmatically in a recorded step, it reads the
 * state while the projections before it run. Its kernel does not wait as it starts.
 */
template <typename W, typename A>
__device__ void linearAttentionDecode6_impl(const A* q, const A* k, const A* v, float* kvState, float* kState,
                                            const int* layout, A* out, int B, int H, int f, int dh, float eps) {
    linearAttentionDecodeQuads<17, true, W, A, true, true>(q, k, v, kvState, kState, layout, out, B, H, f, dh, eps);
}

/**
 * Where the deferred form keeps a (slot, head)'s waiting tokens: their keys' f values then their values' dh, each
 * token f + dh floats, K - 1 tokens a head.
 */
__device__ __forceinline__ float* laPending(float* pend, i64 sh, int K, int f, int dh) {
    return pend + sh * (i64)(K - 1) * (f + dh);
}

/**
 * phi of the keys of the n waiting tokens held in raw ([n][f + dh], each key then its value) into pkP [n][E]. Every
 * thread calls it; the block is synchronised after.
 */
__device__ __forceinline__ void laFeaturizePending(const float* raw, int n, int f, int dh, float* pkP) {
    const int E = expandedDim(f);
    const Taylor tc = taylorOf(f);
    for (int idx = threadIdx.x; idx < n * f; idx += blockDim.x) {
        const int i = idx / f;
        featurizeComponent(raw + i * (f + dh), f, tc, pkP + i * E, idx - i * f);
    }
    __syncthreads();
}

/** The n waiting tokens from src into raw ([n][f + dh]), phi of their keys into pkP; the block synchronised after. */
__device__ __forceinline__ void laLoadPending(const float* src, int n, int f, int dh, float* raw, float* pkP) {
    for (int idx = threadIdx.x; idx < n * (f + dh); idx += blockDim.x) raw[idx] = src[idx];
    __syncthreads();
    laFeaturizePending(raw, n, f, dh, pkP);
}

/** The first 16-byte aligned float at or after p. */
__device__ __forceinline__ float* laAligned16(float* p) {
    return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 15) & ~(uintptr_t)15);
}

/**
 * Thread (g, c) of a deferred step's block: columns 4c .. 4c + 3 of rows g, g + R, .. of S, R = blockDim / (dh / 4)
 * row groups (version 4's threads).
 */
struct LaQuad {
    int E, quads, R, c, g, fd;
};

__device__ __forceinline__ LaQuad laQuadOf(int f, int dh) {
    LaQuad t;
    t.E = expandedDim(f);
    t.quads = dh >> 2;
    t.R = (int)blockDim.x / t.quads;
    t.c = (int)threadIdx.x % t.quads;
    t.g = (int)threadIdx.x / t.quads;
    t.fd = f + dh;
    return t;
}

/** Thread (g, c)'s piece of the numerator into red [R][dh]. */
__device__ __forceinline__ void laStoreNum(float* red, const LaQuad& t, int dh, float4 num) {
    float* r = red + t.g * dh + 4 * t.c;
    r[0] = num.x;
    r[1] = num.y;
    r[2] = num.z;
    r[3] = num.w;
}

/** Where a deferred step's block keeps what its parts share (shared memory, the state's places). */
struct LaDeferred {
    float* red;      // [R][dh] the numerator's pieces
    float* dred;     // [nt / 32] the denominator's
    float* raw;      // [K - 1][f + dh] the waiting tokens as stored
    float* pkP;      // [K - 1][E] phi of their keys
    float* coef;     // [K] phi(q).phi(k_i)
    float* waiting;  // the waiting tokens' places in pend
    int* count;      // the count of waiting tokens
    int E, f, dh, R;
};

/**
 * The deferred form's shared memory after version 4's (laDecodeStart's, red [4 nt], dred [nt / 32]): the waiting
 * tokens as stored ([K - 1][f + dh], 16-byte aligned), phi of their keys ([K - 1][E]) and the sums phi(q).phi(k_i)
 * ([K]); and the (slot, head) sh's places in pend and count.
 */
__device__ __forceinline__ LaDeferred laDeferredOf(float* smem, float* pend, int* count, i64 sh, int K, int f,
                                                   int dh) {
    const int E = expandedDim(f);
    const int nt = blockDim.x;
    LaDeferred Dd;
    Dd.red = smem + 2 * E + 2 * f + dh;
    Dd.dred = Dd.red + 4 * nt;
    Dd.raw = laAligned16(Dd.dred + nt / 32);
    Dd.pkP = Dd.raw + (K - 1) * (f + dh);
    Dd.coef = Dd.pkP + (K - 1) * E;
    Dd.waiting = laPending(pend, sh, K, f, dh);
    Dd.count = count + sh;
    Dd.E = E;
    Dd.f = f;
    Dd.dh = dh;
    Dd.R = nt / (dh >> 2);
    return Dd;
}

/**
 * One row a of S, 4 columns from 4c, s its current value: where the step writes, the waiting tokens and then its own
 * (its value's 4 columns vk, phi(k) pk) added in, in order, and stored to dst; its part of the numerator (phi(q) pq)
 * added to num either way.
 */
__device__ __forceinline__ void laDeferredRow(const LaDeferred& Dd, bool write, int n, int a, int c, float4 s,
                                              float4 vk, float4& dst, float4& num, const float* pk, const float* pq) {
    if (write) {
        const int fd = Dd.f + Dd.dh;
        for (int i = 0; i < n; i++) {
            const float p = Dd.pkP[i * Dd.E + a];
            const float* vi = Dd.raw + i * fd + Dd.f + 4 * c;
            s.x = s.x + p * vi[0];
            s.y = s.y + p * vi[1];
            s.z = s.z + p * vi[2];
            s.w = s.w + p * vi[3];
        }
        const float p = pk[a];
        s.x = s.x + p * vk.x;
        s.y = s.y + p * vk.y;
        s.z = s.z + p * vk.z;
        s.w = s.w + p * vk.w;
        dst = s;
    }
    const float w = pq[a];
    num.x += w * s.x;
    num.y += w * s.y;
    num.z += w * s.z;
    num.w += w * s.w;
}

/**
 * Rows a0, a0 + G, .. (U of them) of S, 4 columns from 4c, into sv (zeros past the last row); where CS, as streamed
 * data (ld.global.cs: the first lines the caches give up), so that a step's stream of S does not push out of the L2
 * cache what the step's other kernels wrote for it.
 */
template <int U, bool CS = false>
__device__ __forceinline__ void laLoadRows(float4 (&sv)[U], const float4* S4, int a0, int G, int E, int quads,
                                           int c) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int a = a0 + u * G;
        const float4* src = S4 + (i64)a * quads + c;
        sv[u] = a >= E ? make_float4(0.0f, 0.0f, 0.0f, 0.0f) : CS ? __ldcs(src) : *src;
    }
}

/**
 * A thread's rows g, g + G, .. of S (4 columns from 4c) through laDeferredRow, U in flight, the first U already in
 * sv (laLoadRows); its piece of the numerator added to num. vs: the step's value, pk and pq: phi(k) and phi(q).
 */
template <int U, bool CS = false>
__device__ __forceinline__ void laDeferredRows(const LaDeferred& Dd, bool write, int n, int g, int G, int c,
                                               int quads, float4 (&sv)[U], float4* S4, const float* vs,
                                               const float* pk, const float* pq, float4& num) {
    const int E = Dd.E;
    const float4 vk = make_float4(vs[4 * c], vs[4 * c + 1], vs[4 * c + 2], vs[4 * c + 3]);
    for (int a0 = g; a0 < E; a0 += G * U) {
        if (a0 != g) laLoadRows<U, CS>(sv, S4, a0, G, E, quads, c);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int a = a0 + u * G;
            if (a < E) laDeferredRow(Dd, write, n, a, c, sv[u], vk, S4[(i64)a * quads + c], num, pk, pq);
        }
    }
}

/** z[a] with the n waiting tokens' features (pkP [n][E]) added in, in order. */
__device__ __forceinline__ float laAddWaiting(float z, const float* pkP, int n, int E, int a) {
    for (int i = 0; i < n; i++) z = z + pkP[i * E + a];
    return z;
}

/**
 * The end of a deferred step, once the numerator's pieces are in Dd.red: z (written with the waiting tokens' and this
 * token's features where the step writes; zEarly the value of z[tid] loaded before, where tid < E, or 0 with none)
 * and the denominator, the waiting tokens' sums and this token's place among them where it does not write, the
 * count, and the output.
 */
template <typename A>
__device__ __forceinline__ void laDeferredFinish(const LaDecode& D, const LaDeferred& Dd, bool write, int n,
                                                 bool early, float zEarly, A* out, float eps) {
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const int E = Dd.E, f = Dd.f, dh = Dd.dh, fd = f + dh;
    const float* pk = D.pk;
    const float* pq = D.pq;
    float den = 0.0f;
    for (int a = tid; a < E; a += nt) {
        float z = early && a == tid ? zEarly : D.z[a];
        if (write) {
            z = laAddWaiting(z, Dd.pkP, n, E, a) + pk[a];
            D.z[a] = z;
        }
        den += pq[a] * z;
    }
    den = warpSum(den);
    if ((tid & 31) == 0) Dd.dred[tid >> 5] = den;
    if (!write) {
        // phi(q).phi(k_i) of the waiting tokens and of this one (i = n), a warp each
        for (int i = tid >> 5; i <= n; i += nt >> 5) {
            const float* pki = i < n ? Dd.pkP + i * E : pk;
            float sum = 0.0f;
            for (int a = tid & 31; a < E; a += 32) sum += pq[a] * pki[a];
            sum = warpSum(sum);
            if ((tid & 31) == 0) Dd.coef[i] = sum;
        }
        // this token waits after the others: its key (x_k, after phi(q) in laDecodeStart's shared memory), its value
        float* mine = Dd.waiting + (i64)n * fd;
        for (int j = tid; j < fd; j += nt) mine[j] = j < f ? pq[E + j] : D.vs[j - f];
    }
    __syncthreads();
    if (tid == 0) *Dd.count = write ? 0 : n + 1;
    if (tid < dh) {
        float total = 0.0f;
        for (int w = 0; w < (nt >> 5); w++) total += Dd.dred[w];
        float acc = 0.0f;
        for (int gg = 0; gg < Dd.R; gg++) acc += Dd.red[gg * dh + tid];
        if (!write) {
            for (int i = 0; i < n; i++) {
                acc += Dd.coef[i] * Dd.raw[i * fd + f + tid];
                total += Dd.coef[i];
            }
            acc += Dd.coef[n] * D.vs[tid];
            total += Dd.coef[n];
        }
        out[D.out + tid] = fromF<A>(acc * (1.0f / (total + eps)));
    }
}

/**
 * One decode step of Taylor linear attention with the state's update deferred (grid (B, H), 256 threads, version 4's
 * rows of S a thread and 16-byte loads, U rows in flight; dh a multiple of 4, S 16-byte aligned, f + dh a multiple of
 * 4). count [slot][H] says how many tokens wait in pend (laPending); K, 2 to 16, the most steps between two writes of
 * S. A step writes S and z where its token would be the K-th to wait, or where (position + slot) % K == K - 1 (the
 * writes of a batch's sequences spread over the steps): the waiting tokens and then its own added in, in order, as
 * version 4 adds its one (its output that of version 4 on the state it writes, bit for bit); the count back to 0.
 * Any other step only reads S and z: its output phi(q).S plus the waiting tokens' and its own part, over phi(q).z
 * plus theirs; its token's key and value wait in pend after the others. ASYNC: every waiting place copied into shared
 * memory (cp.async) as the block starts, with S's first rows, rather than the count's places once the count is in.
 * Dynamic shared memory: version 4's and the waiting tokens' (laDeferredOf; Kernels.linearDeferredExtraFloats
 * sizes it).
 */
template <int U, bool ASYNC, typename W, typename A>
__device__ void linearAttentionDecodeDeferredQuads(const A* q, const A* k, const A* v, float* kvState,
                                                   float* kState, float* pend, int* count, const int* layout, A* out,
                                                   int B, int H, int f, int dh, float eps, int K) {
    extern __shared__ float smem[];
    const LaQuad t = laQuadOf(f, dh);
    const int E = t.E, quads = t.quads, R = t.R, c = t.c, g = t.g;
    const int nt = blockDim.x;
    const Layout L = layoutOf(layout, B);
    const i64 slot = L.slots[blockIdx.x];
    const i64 sh = slot * H + blockIdx.y;
    const LaDeferred Dd = laDeferredOf(smem, pend, count, sh, K, f, dh);
    float* raw = Dd.raw;
    float* pkP = Dd.pkP;
    float* waiting = Dd.waiting;
    if (ASYNC) {
        for (int idx = threadIdx.x; idx < (K - 1) * t.fd / 4; idx += nt) decCopy16(raw + 4 * idx, waiting + 4 * idx);
    }
    float4 sv[U];
    // the first U rows of the thread in flight before the token is featurized (S does not depend on it)
    if (g < R) laLoadRows(sv, reinterpret_cast<const float4*>(kvState + sh * (i64)E * dh), g, R, E, quads, c);
    const int n = count[sh];  // tokens waiting
    const bool write = n + 1 >= K || (int)(((i64)L.starts[blockIdx.x] + slot) % K) == K - 1;
    LaDecode D = laDecodeStart(q, k, v, kvState, kState, layout, B, H, f, dh, smem);
    const float* pk = D.pk;
    const float* pq = D.pq;
    const float* vs = D.vs;
    if (ASYNC) {
        decCopiesDone();
        laFeaturizePending(raw, n, f, dh, pkP);
    } else {
        laLoadPending(waiting, n, f, dh, raw, pkP);
    }
    float4 num = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (g < R) {
        laDeferredRows(Dd, write, n, g, R, c, quads, sv, reinterpret_cast<float4*>(D.S), vs, pk, pq, num);
        laStoreNum(Dd.red, t, dh, num);
    }
    laDeferredFinish(D, Dd, write, n, false, 0.0f, out, eps);
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define B4J_LA_BULK 1
#else
#define B4J_LA_BULK 0
#endif

#if B4J_LA_BULK
/** An mbarrier in shared memory for one arrival and the bytes of bulk copies (the block's thread 0 calls it). */
__device__ __forceinline__ void laBarrierInit(unsigned long long* bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"((unsigned)__cvta_generic_to_shared(bar)) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

/** The barrier's one arrival, and `bytes` more that the bulk copies counted on it will bring. */
__device__ __forceinline__ void laExpectBytes(unsigned long long* bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                     (unsigned)__cvta_generic_to_shared(bar)),
                 "r"(bytes)
                 : "memory");
}

/**
 * A bulk copy of `bytes` (a multiple of 16, both addresses 16-byte aligned) global -> shared, its bytes counted on bar
 * (announced there by laExpectBytes).
 */
__device__ __forceinline__ void laBulkCopyOn(void* dst, const void* src, unsigned bytes, unsigned long long* bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                     (unsigned)__cvta_generic_to_shared(dst)),
                 "l"(src), "r"(bytes), "r"((unsigned)__cvta_generic_to_shared(bar))
                 : "memory");
}

/** One bulk copy of `bytes` global -> shared, the barrier's arrival and the copy's bytes counted on it. */
__device__ __forceinline__ void laBulkCopy(void* dst, const void* src, unsigned bytes, unsigned long long* bar) {
    laExpectBytes(bar, bytes);
    laBulkCopyOn(dst, src, bytes, bar);
}

/** Waits until the barrier's phase of parity `parity` is complete (the bulk copies counted on it have landed). */
__device__ __forceinline__ void laBarrierWait(unsigned long long* bar, unsigned parity = 0) {
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "LA_WAIT_%=:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra LA_WAIT_%=;\n"
        "}\n" ::"r"((unsigned)__cvta_generic_to_shared(bar)),
        "r"(parity)
        : "memory");
}

#endif

/** (sequence, head)s versions 6 and 7 hold in shared memory at once (Kernels.LINEAR_RING sizes their launch). */
#define LA_RING 2
// version 7 reads the next item's place in meta while it works on the current one: that place must be issued already
static_assert(LA_RING >= 2, "the ring holds the current item and the next");

/**
 * The rows of S from its copy Ss in shared memory, laDeferredRow a row (the state's S at D.S written where the step
 * writes), the numerator's pieces into Dd.red.
 */
__device__ __forceinline__ void laDeferredRowsShared(const LaDeferred& Dd, const LaQuad& t, bool write, int n,
                                                     const float* Ss, const LaDecode& D) {
    if (t.g < t.R) {
        const float* vs = D.vs;
        const float4 vk = make_float4(vs[4 * t.c], vs[4 * t.c + 1], vs[4 * t.c + 2], vs[4 * t.c + 3]);
        const float4* S4s = reinterpret_cast<const float4*>(Ss);
        float4* S4 = reinterpret_cast<float4*>(D.S);
        float4 num = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int a = t.g; a < t.E; a += t.R) {
            laDeferredRow(Dd, write, n, a, t.c, S4s[a * t.quads + t.c], vk, S4[(i64)a * t.quads + t.c], num, D.pk,
                          D.pq);
        }
        laStoreNum(Dd.red, t, Dd.dh, num);
    }
}

#if B4J_LA_BULK
/**
 * A persistent deferred step's ring (versions 6 and 7): the block's run of items [first, end) of the B H (sequence,
 * head)s in sequence-major order (split evenly over the blocks), and LA_RING buffers after the deferred form's shared
 * memory, each S then the waiting tokens as stored, each its mbarrier.
 */
struct LaRing {
    float* ring;               // [LA_RING][bufFloats]
    unsigned long long* bars;  // [LA_RING]
    int sFloats, bufFloats, first, end;
};

__device__ __forceinline__ LaRing laRingOf(const LaDeferred& Dd, const LaQuad& t, int B, int H, int K, int dh) {
    LaRing R;
    const int items = B * H;
    R.first = (int)((i64)blockIdx.x * items / gridDim.x);
    R.end = (int)((i64)(blockIdx.x + 1) * items / gridDim.x);
    R.sFloats = t.E * dh;
    R.bufFloats = R.sFloats + (K - 1) * t.fd;
    R.ring = laAligned16(Dd.coef + K);
    R.bars = reinterpret_cast<unsigned long long*>(R.ring + LA_RING * R.bufFloats);
    return R;
}

/** Thread 0: S and the waiting tokens of (slot, head) sh into buffer buf, counted on its barrier. */
__device__ __forceinline__ void laRingCopy(const LaRing& R, int buf, i64 sh, const float* kvState, float* pend, int K,
                                           int f, int dh) {
    float* dst = R.ring + buf * R.bufFloats;
    const unsigned sBytes = (unsigned)R.sFloats * 4u;
    const unsigned wBytes = (unsigned)(R.bufFloats - R.sFloats) * 4u;
    laExpectBytes(&R.bars[buf], sBytes + wBytes);
    laBulkCopyOn(dst, kvState + sh * (i64)R.sFloats, sBytes, &R.bars[buf]);
    laBulkCopyOn(dst + R.sFloats, laPending(pend, sh, K, f, dh), wBytes, &R.bars[buf]);
}

/**
 * The ring's start: thread 0 initialises the barriers and has issue(it, buf) fill each buffer with the run's first
 * items; the block synchronised after, so that no thread waits on a barrier before it is initialised.
 */
template <typename Issue>
__device__ __forceinline__ void laRingStart(const LaRing& R, Issue issue) {
    if (threadIdx.x == 0) {
        for (int j = 0; j < LA_RING; j++) laBarrierInit(&R.bars[j]);
        for (int j = 0; j < LA_RING && R.first + j < R.end; j++) issue(R.first + j, j);
    }
    __syncthreads();
}

/**
 * After item it's work on buffer buf: once every thread is done with the buffer (the output's last sums read the
 * waiting values), thread 0 has issue fill it with item it + LA_RING, where the run has one, the reads ordered
 * before the bulk copy's writes.
 */
template <typename Issue>
__device__ __forceinline__ void laRingRefill(const LaRing& R, int it, int buf, Issue issue) {
    __syncthreads();
    if (threadIdx.x == 0 && it + LA_RING < R.end) {
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        issue(it + LA_RING, buf);
    }
}

/**
 * Item j of the run, the (slot, head) sh, in its buffer once its bulk copies have landed, its phi(k), phi(q) and v in
 * place (D): its waiting tokens' keys featurized, the rows of S, then the output, and where the step writes, the
 * state, the count and (where not) this token among the waiting ones.
 */
template <typename A>
__device__ __forceinline__ void laRingItem(const LaRing& R, LaDeferred& Dd, const LaQuad& t, const LaDecode& D, int j,
                                           i64 sh, int n, bool write, float zEarly, float* pend, int* count, int K,
                                           int f, int dh, A* out, float eps) {
    const int buf = j % LA_RING;
    float* Ss = R.ring + buf * R.bufFloats;
    Dd.raw = Ss + R.sFloats;
    Dd.waiting = laPending(pend, sh, K, f, dh);
    Dd.count = count + sh;
    laBarrierWait(&R.bars[buf], (unsigned)(j / LA_RING) & 1u);
    laFeaturizePending(Dd.raw, n, f, dh, Dd.pkP);  // synchronises
    laDeferredRowsShared(Dd, t, write, n, Ss, D);
    laDeferredFinish(D, Dd, write, n, true, zEarly, out, eps);
}
#endif

/**
 * Version 5 of the deferred form: the block's whole S copied into shared memory by one bulk copy (cp.async.bulk on
 * an mbarrier, issued first, before anything else is read), so that a step that only reads the state has all of it
 * in flight at once with no registers held for it; z's value of each thread loaded early with it. The same float
 * operations as the other versions on the same values (the state bit for bit, the output's sums in their order).
 * Two blocks a multiprocessor (shared memory). Requires S's bytes to fit beside the rest (Kernels.linearBulkFits)
 * and compute capability 9.0 (empty in the sm_80 binary, which the host never launches it on).
 */
template <typename W, typename A>
__device__ void linearAttentionDecodeDeferred5_impl(const A* q, const A* k, const A* v, float* kvState,
                                                    float* kState, float* pend, int* count, const int* layout, A* out,
                                                    int B, int H, int f, int dh, float eps, int K) {
#if B4J_LA_BULK
    extern __shared__ float smem[];
    const int tid = threadIdx.x;
    const LaQuad t = laQuadOf(f, dh);
    const Layout L = layoutOf(layout, B);
    const i64 slot = L.slots[blockIdx.x];
    const i64 sh = slot * H + blockIdx.y;
    const LaDeferred Dd = laDeferredOf(smem, pend, count, sh, K, f, dh);
    float* Ss = laAligned16(Dd.coef + K);  // [E][dh]
    unsigned long long* bar = reinterpret_cast<unsigned long long*>(Ss + t.E * dh);
    if (tid == 0) {
        laBarrierInit(bar);
        laBulkCopy(Ss, kvState + sh * (i64)t.E * dh, (unsigned)(t.E * dh * 4), bar);
    }
    for (int idx = tid; idx < (K - 1) * t.fd / 4; idx += blockDim.x) {
        decCopy16(Dd.raw + 4 * idx, Dd.waiting + 4 * idx);
    }
    const float zEarly = tid < t.E ? kState[sh * t.E + tid] : 0.0f;
    const int n = count[sh];  // tokens waiting
    const bool write = n + 1 >= K || (int)(((i64)L.starts[blockIdx.x] + slot) % K) == K - 1;
    LaDecode D = laDecodeStart(q, k, v, kvState, kState, layout, B, H, f, dh, smem);  // synchronises the block
    decCopiesDone();
    laFeaturizePending(Dd.raw, n, f, dh, Dd.pkP);
    laBarrierWait(bar);
    laDeferredRowsShared(Dd, t, write, n, Ss, D);
    laDeferredFinish(D, Dd, write, n, true, zEarly, out, eps);
#endif
}

/**
 * Version 6 of the deferred form, persistent: a grid of at most one block a multiprocessor, each block taking a run of
 * the (sequence, head)s in turn (B H of them in sequence-major order, split evenly over the blocks), with LA_RING of
 * them in shared memory at once: S and the waiting tokens of the next ones copied in by bulk copies (each buffer its
 * mbarrier) while the block works on the current one, so that the memory streams on through each one's featurizing,
 * barriers and sums. Each (sequence, head) the same float operations as version 5 on the same values (the state bit
 * for bit, the output's sums in their order). Requires the ring to fit the shared memory beside the rest
 * (Kernels.linearDeferRuns) and compute capability 9.0 (empty in the sm_80 binary).
 *
 * Measured slower than version 5 (docs/bench/gpu-h200.md): a (sequence, head)'s own chain of loads (its slot, then
 * its count and z; its row, then q, k and v), barriers and sums takes some 8 us, and one block a multiprocessor runs
 * those chains one after another where version 5's blocks run several side by side.
 */
template <typename W, typename A>
__device__ void linearAttentionDecodeDeferred6_impl(const A* q, const A* k, const A* v, float* kvState,
                                                    float* kState, float* pend, int* count, const int* layout, A* out,
                                                    int B, int H, int f, int dh, float eps, int K) {
#if B4J_LA_BULK
    extern __shared__ float smem[];
    const int tid = threadIdx.x;
    const LaQuad t = laQuadOf(f, dh);
    const Layout L = layoutOf(layout, B);
    LaDeferred Dd = laDeferredOf(smem, pend, count, 0, K, f, dh);
    const LaRing R = laRingOf(Dd, t, B, H, K, dh);
    // thread 0: S and the waiting tokens of (sequence, head) `it` into buffer `buf`
    auto issue = [&](int it, int buf) {
        laRingCopy(R, buf, (i64)L.slots[it / H] * H + it % H, kvState, pend, K, f, dh);
    };
    laRingStart(R, issue);
    for (int it = R.first; it < R.end; it++) {
        const int j = it - R.first;
        const int buf = j % LA_RING;
        const int seq = it / H;
        const int head = it - seq * H;
        const i64 slot = L.slots[seq];
        const i64 sh = slot * H + head;
        const float zEarly = tid < t.E ? kState[sh * t.E + tid] : 0.0f;
        const int n = count[sh];  // tokens waiting
        const bool write = n + 1 >= K || (int)(((i64)L.starts[seq] + slot) % K) == K - 1;
        LaDecode D = laDecodeStartAt(seq, head, q, k, v, kvState, kState, layout, B, H, f, dh, smem);  // synchronises
        laRingItem(R, Dd, t, D, j, sh, n, write, zEarly, pend, count, K, f, dh, out, eps);
        laRingRefill(R, it, buf, issue);
    }
#endif
}

/**
 * Version 7 of the deferred form: version 6's persistent blocks and ring, with nothing of a (sequence, head) read from
 * global memory on its own chain. Where thread 0 issues the bulk copies of an item (S and its waiting tokens) it also
 * writes the item's place in the layout (slot, row, position) into the ring's meta [LA_RING][4], a place it loaded
 * while the block worked on the item before; while the block works on item it, each thread holds in registers what
 * it will need of item it + 1 (its count, its value of z, of q, k and v), loaded as the item starts, so that those
 * loads wait behind the current item's work and not in front of the next one's. Each (sequence, head) the same
 * float operations as versions 5 and 6 on the same values (the state bit for bit, the output's sums in their order).
 * Requires f and dh at most the block's 256 threads, the ring to fit the shared memory beside the rest
 * (Kernels.linearDeferRuns) and compute capability 9.0 (empty in the sm_80 binary).
 */
template <typename W, typename A>
__device__ void linearAttentionDecodeDeferred7_impl(const A* q, const A* k, const A* v, float* kvState,
                                                    float* kState, float* pend, int* count, const int* layout, A* out,
                                                    int B, int H, int f, int dh, float eps, int K) {
#if B4J_LA_BULK
    extern __shared__ float smem[];
    const int tid = threadIdx.x;
    const LaQuad t = laQuadOf(f, dh);
    const Layout L = layoutOf(layout, B);
    LaDeferred Dd = laDeferredOf(smem, pend, count, 0, K, f, dh);
    const LaRing R = laRingOf(Dd, t, B, H, K, dh);
    const int E = t.E;
    int* meta = reinterpret_cast<int*>(R.bars + LA_RING);  // [LA_RING][4]: slot, row, position
    // version 4's shared memory at the front: phi(k), phi(q), x_k, x_q, v (laDecodeStartAt's places)
    float* pk = smem;
    float* pq = pk + E;
    float* xk = pq + E;
    float* xq = xk + f;
    float* vs = xq + f;
    const Taylor tc = taylorOf(f);
    const i64 qkCols = (i64)H * f;
    const i64 vCols = (i64)H * dh;
    // thread 0: item `it`'s place (slot, row, position) into meta[buf], its S and waiting tokens into buffer `buf`
    auto issueAt = [&](int it, int buf, int slot, int row, int position) {
        int* m = meta + 4 * buf;
        m[0] = slot;
        m[1] = row;
        m[2] = position;
        laRingCopy(R, buf, (i64)slot * H + it % H, kvState, pend, K, f, dh);
    };
    // thread 0: the place of the item the next refill issues, loaded while the block works on the current one
    int aheadSlot = 0, aheadRow = 0, aheadPosition = 0;
    auto issueAhead = [&](int it, int buf) { issueAt(it, buf, aheadSlot, aheadRow, aheadPosition); };
    // what each thread holds of the next item: its count, z[tid], x_k[tid], x_q[tid] and v[tid] where in range
    int nNext = 0;
    float zNext = 0.0f, kNext = 0.0f, qNext = 0.0f, vNext = 0.0f;
    auto load = [&](int it, int buf) {
        const int* m = meta + 4 * buf;
        const int head = it % H;
        const i64 sh = (i64)m[0] * H + head;
        const i64 row = m[1];
        nNext = count[sh];
        if (tid < E) zNext = kState[sh * E + tid];
        if (tid < f) {
            kNext = toF(k[row * qkCols + (i64)head * f + tid]);
            qNext = toF(q[row * qkCols + (i64)head * f + tid]);
        }
        if (tid < dh) vNext = toF(v[row * vCols + (i64)head * dh + tid]);
    };
    laRingStart(R, [&](int it, int buf) {  // the first items' places in meta too, before any thread reads them
        const int seq = it / H;
        issueAt(it, buf, L.slots[seq], L.offsets[seq], L.starts[seq]);
    });
    if (R.first < R.end) load(R.first, 0);
    for (int it = R.first; it < R.end; it++) {
        const int j = it - R.first;
        const int buf = j % LA_RING;
        const int head = it % H;
        const int* m = meta + 4 * buf;
        const i64 slot = m[0];
        const i64 row = m[1];
        const int position = m[2];
        const i64 sh = slot * H + head;
        const int n = nNext;  // tokens waiting
        const float zEarly = zNext;
        if (tid < f) {
            xk[tid] = kNext;
            xq[tid] = qNext;
        }
        if (tid < dh) vs[tid] = vNext;
        __syncthreads();  // x_k, x_q and v in place; the next item's place in meta (issued after the last item)
        if (it + 1 < R.end) load(it + 1, (j + 1) % LA_RING);
        if (tid == 0 && it + LA_RING < R.end) {
            const int seq = (it + LA_RING) / H;
            aheadSlot = L.slots[seq];
            aheadRow = L.offsets[seq];
            aheadPosition = L.starts[seq];
        }
        featurize(xk, f, tc, pk);
        featurize(xq, f, tc, pq);
        __syncthreads();
        LaDecode D;
        D.S = kvState + sh * (i64)R.sFloats;
        D.z = kState + sh * (i64)E;
        D.out = row * vCols + (i64)head * dh;
        D.pk = pk;
        D.pq = pq;
        D.vs = vs;
        D.red = vs + dh;
        const bool write = n + 1 >= K || (int)(((i64)position + slot) % K) == K - 1;
        laRingItem(R, Dd, t, D, j, sh, n, write, zEarly, pend, count, K, f, dh, out, eps);
        laRingRefill(R, it, buf, issueAhead);  // after every read of the buffer and of meta
    }
#endif
}

/** Where feature a of the merged Taylor map comes from: kind 0 the constant 1, 1 x_i, 2 x_i x_i, 3 x_i x_j. */
struct LaFeature {
    int kind, i, j;
};

/** Feature a's place in the map of featurizeComponent (f components). */
__device__ __forceinline__ LaFeature laFeatureOf(int f, int a) {
    LaFeature p;
    p.j = 0;
    if (a == 0) {
        p.kind = 0;
        p.i = 0;
    } else if (a <= f) {
        p.kind = 1;
        p.i = a - 1;
    } else {
        int r = a - 1 - f;
        int i = 0;
        while (r >= f - i) {  // row i of the products holds f - i features
            r -= f - i;
            i++;
        }
        p.kind = r == 0 ? 2 : 3;
        p.i = i;
        p.j = i + r;
    }
    return p;
}

/** The feature at p of x: featurizeComponent's value there, the same float operations. */
__device__ __forceinline__ float laFeatureValue(const float* x, Taylor tc, LaFeature p) {
    const float xi = x[p.i];
    switch (p.kind) {
        case 0: return 1.0f;
        case 1: return __fmul_rn(xi, tc.lin);
        case 2: return __fmul_rn(__fmul_rn(xi, xi), tc.diag);
        default: return __fmul_rn(__fmul_rn(xi, x[p.j]), tc.cross);
    }
}

/** Warps a block of version 8 of the deferred form, a (sequence, head) each (Kernels.LINEAR_WARPS). */
#define LA_WARPS 4
/** Rows of S a lane of version 8 has in flight at once. */
#define LA_WARP_ROWS 16

/**
 * Floats of shared memory a warp of version 8 takes (Kernels.linearWarpFloats): the waiting tokens as stored, v,
 * x_q, x_k, phi(q), phi(k), z and phi of the waiting keys; a multiple of 4, so that each warp's part starts 16-byte
 * aligned.
 */
__device__ __forceinline__ int laWarpFloats(int E, int f, int dh, int K) {
    return ((K - 1) * (f + dh) + dh + 2 * f + 3 * E + (K - 1) * E + 3) & ~3;
}

/**
 * Version 8 of the deferred form: a warp a (sequence, head), LA_WARPS of them a block (a sequence's heads side by
 * side), with no block barrier. Lane (g, c) of G = 32 / (dh / 4) lane groups takes columns 4c .. 4c + 3 of rows g,
 * g + G, .. of S, LA_WARP_ROWS rows in flight at a time, the first ones as soon as the sequence's slot is in; the
 * warp's own shared memory holds phi(q), phi(k), z, the waiting tokens and phi of their keys, each lane featurizing
 * the features a = lane, lane + 32, .. of each. Many small independent chains a
 * multiprocessor (attentionDecode version 6's habit) rather than a block's barriers between its loads. S and z the
 * same float operations as the other versions on the same values (bit for bit); the output's sums in another order.
 * Requires dh a multiple of 4 and at most 128, f + dh a multiple of 4, S and the waiting tokens 16-byte aligned.
 * Dynamic shared memory LA_WARPS laWarpFloats floats.
 */
template <typename W, typename A>
__device__ void linearAttentionDecodeDeferredWarp(const A* q, const A* k, const A* v, float* kvState, float* kState,
                                                  float* pend, int* count, const int* layout, A* out, int B, int H,
                                                  int f, int dh, float eps, int K) {
    extern __shared__ float smem[];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const i64 item = (i64)blockIdx.x * LA_WARPS + warp;
    if (item >= (i64)B * H) return;
    const int E = expandedDim(f);
    const int fd = f + dh;
    const int quads = dh >> 2;
    const int G = 32 / quads;
    const int c = lane % quads;
    const int g = lane / quads;
    const int seq = (int)(item / H);
    const int head = (int)(item - (i64)seq * H);
    const Layout L = layoutOf(layout, B);
    const i64 slot = L.slots[seq];
    const i64 sh = slot * H + head;
    float* Sg = kvState + sh * (i64)E * dh;
    float4* S4 = reinterpret_cast<float4*>(Sg);
    float4 sv[LA_WARP_ROWS];
    // the first rows in flight before anything else of the token is read
    if (g < G) laLoadRows(sv, S4, g, G, E, quads, c);
    float* raw = smem + warp * laWarpFloats(E, f, dh, K);  // [K - 1][f + dh]
    float* vs = raw + (K - 1) * fd;                         // [dh]
    float* xq = vs + dh;                                    // [f]
    float* xk = xq + f;                                     // [f]
    float* pq = xk + f;                                     // [E]
    float* pk = pq + E;                                     // [E]
    float* zs = pk + E;                                     // [E]
    float* pkP = zs + E;                                    // [K - 1][E]
    const i64 row = L.offsets[seq];
    const int position = L.starts[seq];
    const int n = count[sh];  // tokens waiting
    float* zg = kState + sh * (i64)E;
    for (int a = lane; a < E; a += 32) zs[a] = zg[a];
    const i64 qkAt = row * H * f + (i64)head * f;
    for (int i = lane; i < f; i += 32) {
        xq[i] = toF(q[qkAt + i]);
        xk[i] = toF(k[qkAt + i]);
    }
    const i64 vAt = row * H * dh + (i64)head * dh;
    for (int e = lane; e < dh; e += 32) vs[e] = toF(v[vAt + e]);
    float* waiting = laPending(pend, sh, K, f, dh);
    const float4* W4 = reinterpret_cast<const float4*>(waiting);
    for (int idx = lane; idx < n * fd / 4; idx += 32) reinterpret_cast<float4*>(raw)[idx] = W4[idx];
    __syncwarp();
    const Taylor tc = taylorOf(f);
    for (int a = lane; a < E; a += 32) {
        const LaFeature p = laFeatureOf(f, a);
        pq[a] = laFeatureValue(xq, tc, p);
        pk[a] = laFeatureValue(xk, tc, p);
        for (int i = 0; i < n; i++) pkP[i * E + a] = laFeatureValue(raw + i * fd, tc, p);
    }
    __syncwarp();
    const bool write = n + 1 >= K || (int)(((i64)position + slot) % K) == K - 1;
    LaDeferred Dd;  // the places laDeferredRow reads: the waiting tokens as stored and phi of their keys
    Dd.raw = raw;
    Dd.pkP = pkP;
    Dd.E = E;
    Dd.f = f;
    Dd.dh = dh;
    float4 num = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (g < G) laDeferredRows(Dd, write, n, g, G, c, quads, sv, S4, vs, pk, pq, num);
    // the lane groups' pieces into group 0, in group order
    for (int gg = 1; gg < G; gg++) {
        const int from = (lane + gg * quads) & 31;
        const float x = __shfl_sync(0xffffffffu, num.x, from);
        const float y = __shfl_sync(0xffffffffu, num.y, from);
        const float z = __shfl_sync(0xffffffffu, num.z, from);
        const float w = __shfl_sync(0xffffffffu, num.w, from);
        if (g == 0) {
            num.x += x;
            num.y += y;
            num.z += z;
            num.w += w;
        }
    }
    // z (written where the step writes) and the denominator
    float den = 0.0f;
    for (int a = lane; a < E; a += 32) {
        float z = zs[a];
        if (write) {
            z = laAddWaiting(z, pkP, n, E, a) + pk[a];
            zg[a] = z;
        }
        den += pq[a] * z;
    }
    float total = warpSum(den);
    if (!write) {
        // the waiting tokens' part and this token's (i = n): phi(q).phi(k_i) and its value
        for (int i = 0; i <= n; i++) {
            float part = 0.0f;
            for (int a = lane; a < E; a += 32) {
                part += pq[a] * (i < n ? pkP[i * E + a] : pk[a]);
            }
            const float coef = warpSum(part);
            total += coef;
            const float* vi = (i < n ? raw + i * fd + f : vs) + 4 * c;
            num.x += coef * vi[0];
            num.y += coef * vi[1];
            num.z += coef * vi[2];
            num.w += coef * vi[3];
        }
        // this token waits after the others: its key, its value
        float* mine = waiting + (i64)n * fd;
        for (int j = lane; j < fd; j += 32) mine[j] = j < f ? xk[j] : vs[j - f];
    }
    if (lane == 0) count[sh] = write ? 0 : n + 1;
    if (lane < quads) {
        const float r = 1.0f / (total + eps);
        A* o = out + vAt + 4 * c;
        o[0] = fromF<A>(num.x * r);
        o[1] = fromF<A>(num.y * r);
        o[2] = fromF<A>(num.z * r);
        o[3] = fromF<A>(num.w * r);
    }
}

/** n rounded up to a multiple of 4. */
__device__ __forceinline__ int laAlign4(int n) { return (n + 3) & ~3; }

/**
 * Floats of a (slot, head)'s work area of version 9 (Kernels.linearDeferWorkFloats): phi(q) ([E], 16-byte aligned
 * after it), then the step's own key and value ([f + dh], where the step writes) or the waiting tokens' and its own
 * part of the numerator ([dh], where it only reads), then the denominator's total and the step's kind (n | write <<
 * 16, an int's bits).
 */
__device__ __forceinline__ int laWorkFloats(int E, int f, int dh) { return laAlign4(E) + laAlign4(f + dh) + 4; }

/** Warps a block of version 9's first kernel (linearAttentionDecodePrep), a (sequence, head) each. */
#define LA_PREP_WARPS 4
/** The most waiting tokens a step sums (Kernels.LINEAR_DEFER_MAX - 1). */
#define LA_MAX_WAITING 15

/** Values of z (features lane, lane + 32, ..) and of v a lane of linearAttentionDecodePrep holds in registers. */
#define LA_PREP_HELD 8

/** Floats of shared memory a warp of linearAttentionDecodePrep takes: the waiting tokens as stored, x_q and x_k. */
__device__ __forceinline__ int laPrepFloats(int f, int dh, int K) { return laAlign4((K - 1) * (f + dh) + 2 * f); }

/**
 * The end of a step that writes in versions 9 to 12's first kernel: its key xk and value vr and the denominator
 * phi(q).z into the work area (aux, tail), the kind (n | 1 << 16), and the count of waiting tokens to 0.
 */
template <int HELD>
__device__ __forceinline__ void laPrepWrites(float* aux, float* tail, int* count, const float* xk,
                                             const float (&vr)[HELD], float den, int n, int f, int dh, int lane) {
    for (int j = lane; j < f; j += 32) aux[j] = xk[j];
#pragma unroll
    for (int j = 0; j < HELD; j++) {
        if (lane + 32 * j < dh) aux[f + lane + 32 * j] = vr[j];
    }
    if (lane == 0) {
        tail[0] = den;
        tail[1] = __int_as_float(n | 1 << 16);
        *count = 0;
    }
}

/**
 * The end of a step that only reads in versions 9 to 12's first kernel: the numerator's part (acc + own v, a lane's
 * values lane, lane + 32, ..) and the denominator's total into the work area, the kind (n), its key xk and value vr
 * appended to the waiting tokens (at mine), and their count one more.
 */
template <int HELD>
__device__ __forceinline__ void laPrepAppends(float* aux, float* tail, int* count, float* mine, const float* xk,
                                              const float (&vr)[HELD], const float (&acc)[HELD], float own,
                                              float total, int n, int f, int dh, int lane) {
#pragma unroll
    for (int j = 0; j < HELD; j++) {
        const int d = lane + 32 * j;
        if (d < dh) {
            aux[d] = acc[j] + own * vr[j];
            mine[f + d] = vr[j];
        }
    }
    for (int j = lane; j < f; j += 32) mine[j] = xk[j];
    if (lane == 0) {
        tail[0] = total;
        tail[1] = __int_as_float(n);
        *count = n + 1;
    }
}

/**
 * Version 9 of the deferred form, its first kernel: everything of a step but S, a warp a (sequence, head)
 * (LA_PREP_WARPS a block, no block barrier). It featurizes q and k (each lane the features a = lane, lane + 32, ..,
 * laFeatureValue: featurizeComponent's float operations) and writes phi(q) to the (slot, head)'s work area
 * (laWorkFloats). Where the step writes (as the other versions decide), it adds the waiting tokens' and its own
 * phi(k) into z in order (the step-by-step update's z bit for bit), and leaves the denominator phi(q).z, its key and
 * its value in the work area for the second kernel and the count at 0. Where it only reads, it sums phi(q).z and
 * phi(q).phi(k_i) of the waiting tokens and its own (over the warp in a fixed order), leaves the denominator's total
 * and the numerator's part sum_i (phi(q).phi(k_i)) v_i, appends its key and value to the waiting ones and counts
 * them. S is not touched: linearAttentionDecodeDeferred9 reads it (and writes it where the step writes).
 * Dynamic shared memory LA_PREP_WARPS laPrepFloats floats.
 */
template <typename A>
__device__ void linearAttentionDecodePrep_impl(const A* q, const A* k, const A* v, float* kState, float* pend,
                                               int* count, const int* layout, float* work, int B, int H, int f,
                                               int dh, int K) {
    extern __shared__ float smem[];
    const int lane = threadIdx.x & 31;
    const int w = threadIdx.x >> 5;
    const i64 item = (i64)blockIdx.x * LA_PREP_WARPS + w;
    if (item >= (i64)B * H) return;
    const int seq = (int)(item / H);
    const int head = (int)(item - (i64)seq * H);
    const int E = expandedDim(f);
    const int fd = f + dh;
    const Taylor tc = taylorOf(f);
    float* raw = smem + w * laPrepFloats(f, dh, K);  // [K - 1][f + dh]
    float* xq = raw + (K - 1) * fd;                  // [f]
    float* xk = xq + f;                              // [f]
    const Layout L = layoutOf(layout, B);
    const i64 slot = L.slots[seq];
    const i64 row = L.offsets[seq];
    const int position = L.starts[seq];
    const i64 sh = slot * H + head;
    // z, v, q and k asked for with the count, all at once; the waiting tokens once the count is in
    float* z = kState + sh * E;
    const i64 vRow = row * H * dh + (i64)head * dh;
    float zr[LA_PREP_HELD];
    float vr[LA_PREP_HELD];  // dh <= 256: all of v
#pragma unroll
    for (int j = 0; j < LA_PREP_HELD; j++) {
        const int a = lane + 32 * j;
        zr[j] = a < E ? z[a] : 0.0f;
        vr[j] = a < dh ? toF(v[vRow + a]) : 0.0f;
    }
    const i64 qk = row * H * f + (i64)head * f;
    for (int j = lane; j < f; j += 32) {
        xq[j] = toF(q[qk + j]);
        xk[j] = toF(k[qk + j]);
    }
    const int n = count[sh];
    const bool write = n + 1 >= K || (int)(((i64)position + slot) % K) == K - 1;
    float* waiting = laPending(pend, sh, K, f, dh);
    for (int j = lane; j < n * fd; j += 32) raw[j] = waiting[j];
    __syncwarp();
    float* wk = work + sh * laWorkFloats(E, f, dh);
    float* aux = wk + laAlign4(E);
    float* tail = aux + laAlign4(fd);
    float den = 0.0f;
    float own = 0.0f;
    float coef[LA_MAX_WAITING];
#pragma unroll
    for (int i = 0; i < LA_MAX_WAITING; i++) coef[i] = 0.0f;
    // feature a, z[a] held (za): phi(q) out, z added to where the step writes, the sums
    auto feature = [&](int a, float za) {
        const LaFeature p = laFeatureOf(f, a);
        const float pq = laFeatureValue(xq, tc, p);
        const float pk = laFeatureValue(xk, tc, p);
        wk[a] = pq;
        if (write) {
            for (int i = 0; i < n; i++) za = za + laFeatureValue(raw + i * fd, tc, p);
            za = za + pk;
            z[a] = za;
        } else {
#pragma unroll
            for (int i = 0; i < LA_MAX_WAITING; i++) {
                if (i < n) coef[i] += pq * laFeatureValue(raw + i * fd, tc, p);
            }
            own += pq * pk;
        }
        den += pq * za;
    };
#pragma unroll
    for (int j = 0; j < LA_PREP_HELD; j++) {
        if (lane + 32 * j < E) feature(lane + 32 * j, zr[j]);
    }
    for (int a = lane + 32 * LA_PREP_HELD; a < E; a += 32) feature(a, z[a]);
    den = warpSum(den);
    if (write) {
        laPrepWrites(aux, tail, count + sh, xk, vr, den, n, f, dh, lane);
        return;
    }
    float total = den;
#pragma unroll
    for (int i = 0; i < LA_MAX_WAITING; i++) {
        if (i < n) {
            coef[i] = warpSum(coef[i]);
            total += coef[i];
        }
    }
    own = warpSum(own);
    total += own;
    float acc[LA_PREP_HELD];
#pragma unroll
    for (int j = 0; j < LA_PREP_HELD; j++) {
        const int d = lane + 32 * j;
        acc[j] = 0.0f;
#pragma unroll
        for (int i = 0; i < LA_MAX_WAITING; i++) {
            if (i < n && d < dh) acc[j] += coef[i] * raw[i * fd + f + d];
        }
    }
    // this token waits after the others
    laPrepAppends(aux, tail, count + sh, waiting + (i64)n * fd, xk, vr, acc, own, total, n, f, dh, lane);
}

/**
 * Features a lane of version 10's first kernel holds (linearAttentionDecodePrep10): up to 32 J of them; the small form
 * also holds fewer values of v (LA_PREP10_SMALL_HELD, dh up to 128), so fewer registers and more warps at once.
 */
#define LA_PREP10_SMALL 5
#define LA_PREP10_SMALL_HELD 4
#define LA_PREP10_NARROW 8
#define LA_PREP10_WIDE 18

/**
 * Floats of shared memory a warp of version 10's first kernel takes (Kernels.linearPrep10Floats): the waiting tokens
 * as stored ([K - 1][f + dh]), then x_q, x_k and the waiting keys, each f values and 1, the map's linear constant
 * and two unused ([K + 1][f + 4]), so that every feature is two of a row's values times each other times a constant.
 */
__device__ __forceinline__ int laPrep10Floats(int f, int dh, int K) {
    return laAlign4((K - 1) * (f + dh) + (K + 1) * (f + 4));
}

/** Floats of version 10's first kernel's shared memory before its warps' (laPrep10Floats): the constants, places. */
__device__ __forceinline__ int laPrep10Head(int E) { return 8 + laAlign4(E); }

/**
 * Version 10 of the deferred form, its first kernel: version 9's (linearAttentionDecodePrep_impl, the same work
 * area, the same float operations in the same order), with fewer instructions. Each feature's place in the map
 * (laFeatureOf) is found once a block, before the wait for the kernel before, into a table in shared memory, and
 * the Taylor constants once a block; a lane holds its features' places, phi(q) and z in registers, and a feature of
 * a row x ([f + 4], x_f = 1, x_{f+1} the linear constant) is (x_i x_j) c with no branch, c the constant of its
 * kind (1 where the feature is 1 or linear: the same rounding). The waiting tokens are taken one after another
 * (no loop unrolled over the most there can be): their features added into z where the step writes, else their
 * phi(q).phi(k_i) summed over the warp, held by lane i, and their values times it added into the numerator's part.
 * Dynamic shared memory laPrep10Head floats and LA_PREP_WARPS laPrep10Floats (Kernels.linearPrep10Bytes), declared
 * float4 so that the compiler knows it 16-byte aligned and shared (aligned by address arithmetic, laAligned16, it
 * took generic loads and stores: 61.4 against 55.7 us at based-1b's batch 1,024 under ncu); E <= 32 J (so f <= 32:
 * a lane a value of a key) and dh <= 32 HELD (a lane's values of v held in registers).
 */
template <int J, int HELD, typename A>
__device__ void linearAttentionDecodePrep10_impl(const A* q, const A* k, const A* v, float* kState, float* pend,
                                                 int* count, const int* layout, float* work, int B, int H, int f,
                                                 int dh, int K) {
    extern __shared__ float4 smem4[];  // 16-byte aligned, and known to the compiler as shared memory
    const int E = expandedDim(f);
    const int fd = f + dh;
    const int P = f + 4;
    float* consts = reinterpret_cast<float*>(smem4);  // [8]: the constants of the kinds (1, 1, diag, cross), then lin
    int* places = reinterpret_cast<int*>(consts + 8);  // [E]: feature a, x_i x_j consts[kind]: i | j << 10 | kind << 20
    if (threadIdx.x == 0) {
        const Taylor t = taylorOf(f);
        consts[0] = 1.0f;
        consts[1] = 1.0f;
        consts[2] = t.diag;
        consts[3] = t.cross;
        consts[4] = t.lin;
    }
    for (int a = threadIdx.x; a < E; a += blockDim.x) {
        const LaFeature p = laFeatureOf(f, a);
        const int i = p.kind == 0 ? f : p.i;
        const int j = p.kind == 0 ? f : p.kind == 1 ? f + 1 : p.j;
        places[a] = i | j << 10 | p.kind << 20;
    }
    const int lane = threadIdx.x & 31;
    const int w = threadIdx.x >> 5;
    const i64 item = (i64)blockIdx.x * LA_PREP_WARPS + w;
    const bool live = item < (i64)B * H;
    const int seq = live ? (int)(item / H) : 0;
    const int head = live ? (int)(item - (i64)seq * H) : 0;
    const Layout L = layoutOf(layout, B);  // written before the step's first kernel
    const i64 slot = live ? L.slots[seq] : 0;
    const i64 row = live ? L.offsets[seq] : 0;
    const int position = live ? L.starts[seq] : 0;
    __syncthreads();
    b4jPdlWait();
    if (!live) return;
    const i64 sh = slot * H + head;
    float* raw = consts + laPrep10Head(E) + w * laPrep10Floats(f, dh, K);  // [K - 1][f + dh]
    float* xs = raw + (K - 1) * fd;                                   // [K + 1][P]: x_q, x_k, the waiting keys
    const float lin = consts[4];
    float* z = kState + sh * E;
    const i64 vRow = row * H * dh + (i64)head * dh;
    float zr[J];
    float vr[HELD];  // dh <= 32 HELD: all of v
#pragma unroll
    for (int j = 0; j < J; j++) {
        const int a = lane + 32 * j;
        zr[j] = a < E ? z[a] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < HELD; j++) {
        const int d = lane + 32 * j;
        vr[j] = d < dh ? toF(v[vRow + d]) : 0.0f;
    }
    const i64 qk = row * H * f + (i64)head * f;
    if (lane < f) {
        xs[lane] = toF(q[qk + lane]);
        xs[P + lane] = toF(k[qk + lane]);
    }
    if (lane <= K) {
        xs[lane * P + f] = 1.0f;
        xs[lane * P + f + 1] = lin;
    }
    const int n = count[sh];
    const bool write = n + 1 >= K || (int)(((i64)position + slot) % K) == K - 1;
    float* waiting = laPending(pend, sh, K, f, dh);
    {
        const float4* src = reinterpret_cast<const float4*>(waiting);  // f + dh a multiple of 4 (linearDeferFits)
        float4* dst = reinterpret_cast<float4*>(raw);
        for (int j = lane; j < (n * fd) >> 2; j += 32) dst[j] = src[j];
    }
    __syncwarp();
    for (int i = 0; i < n; i++) {
        if (lane < f) xs[(2 + i) * P + lane] = raw[i * fd + lane];
    }
    int pl[J];
    float pc[J];
#pragma unroll
    for (int j = 0; j < J; j++) {
        const int a = lane + 32 * j;
        const int p = a < E ? places[a] : 0;
        pl[j] = p & 0xfffff;
        pc[j] = consts[p >> 20];
    }
    __syncwarp();
    // feature j of the lane of row x: featurizeComponent's operations (times 1 exactly where it has none)
    auto feature = [&](const float* x, int j) {
        return __fmul_rn(__fmul_rn(x[pl[j] & 1023], x[pl[j] >> 10]), pc[j]);
    };
    float* wk = work + sh * laWorkFloats(E, f, dh);
    float* aux = wk + laAlign4(E);
    float* tail = aux + laAlign4(fd);
    float pq[J];
#pragma unroll
    for (int j = 0; j < J; j++) {
        const int a = lane + 32 * j;
        pq[j] = a < E ? feature(xs, j) : 0.0f;
        if (a < E) wk[a] = pq[j];
    }
    float acc[HELD];
#pragma unroll
    for (int j = 0; j < HELD; j++) acc[j] = 0.0f;
    float coef = 0.0f;  // lane i: phi(q).phi(k_i) where the step only reads
    for (int i = 0; i < n; i++) {
        const float* x = xs + (2 + i) * P;
        float part = 0.0f;
#pragma unroll
        for (int j = 0; j < J; j++) {
            if (lane + 32 * j < E) {
                const float ph = feature(x, j);
                if (write) {
                    zr[j] = zr[j] + ph;
                } else {
                    part += pq[j] * ph;
                }
            }
        }
        if (!write) {
            const float c = warpSum(part);
            if (lane == i) coef = c;
            const float* vi = raw + i * fd + f;
#pragma unroll
            for (int j = 0; j < HELD; j++) {
                const int d = lane + 32 * j;
                if (d < dh) acc[j] += c * vi[d];
            }
        }
    }
    float den = 0.0f;
    float own = 0.0f;
#pragma unroll
    for (int j = 0; j < J; j++) {
        const int a = lane + 32 * j;
        if (a < E) {
            const float pk = feature(xs + P, j);
            if (write) {
                zr[j] = zr[j] + pk;
                z[a] = zr[j];
            } else {
                own += pq[j] * pk;
            }
            den += pq[j] * zr[j];
        }
    }
    den = warpSum(den);
    if (write) {
        laPrepWrites(aux, tail, count + sh, xs + P, vr, den, n, f, dh, lane);
        return;
    }
    float total = den;
    for (int i = 0; i < n; i++) total += __shfl_sync(0xffffffffu, coef, i);
    own = warpSum(own);
    total += own;
    // this token waits after the others
    laPrepAppends(aux, tail, count + sh, waiting + (i64)n * fd, xs + P, vr, acc, own, total, n, f, dh, lane);
}

/**
 * Version 9 of the deferred form, its second kernel (grid (B, H), 256 threads, version 4's rows of S a thread, U rows
 * in flight), after linearAttentionDecodePrep: the block's first rows of S are asked for as it starts, before it
 * waits for the kernel before it (which writes no S), and nothing else of the (sequence, head) is on their way: phi(q)
 * and the step's kind come from the work area. Where the step only reads, its output is (phi(q).S + the work area's
 * part) over the work area's total plus eps; where it writes, S takes the waiting tokens and then its own, in order,
 * as the other versions add them (bit for bit), and its output is phi(q).S over phi(q).z plus eps. Dynamic shared
 * memory that of versions 1 to 4.
 *
 * EARLY (versions 11 and 12): the sequence's row of the output read from the layout with its slot, and every load of
 * the work area (the kind, the total, the part, phi(q)) asked for at once after the wait, none behind another's value
 * (version 9 asks for the part once the kind is in, and for the output's row at the end: two more trips to memory
 * that a loaded memory makes long). CS (version 12): S read as streamed data (laLoadRows), so that the work area the
 * first kernel wrote stays in the L2 cache.
 */
template <int U, bool EARLY, bool CS, typename W, typename A>
__device__ void linearAttentionDecodeSplit_impl(float* kvState, float* pend, int* count, const float* work,
                                                const int* layout, A* out, int B, int H, int f, int dh, float eps,
                                                int K) {
    extern __shared__ float smem[];
    const LaQuad t = laQuadOf(f, dh);
    const int E = t.E, quads = t.quads, R = t.R, c = t.c, g = t.g;
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const Layout L = layoutOf(layout, B);
    const i64 slot = L.slots[blockIdx.x];
    const i64 outRow = EARLY ? L.offsets[blockIdx.x] : 0;
    const i64 sh = slot * H + blockIdx.y;
    float4* S4 = reinterpret_cast<float4*>(kvState + sh * (i64)E * dh);
    float4 sv[U];
    if (g < R) laLoadRows<U, CS>(sv, S4, g, R, E, quads, c);
    b4jPdlWait();
    const LaDeferred Dd = laDeferredOf(smem, pend, count, sh, K, f, dh);
    float* pk = smem;      // [E], laDecodeStart's places
    float* pq = pk + E;    // [E]
    float* xk = pq + E;    // [f]
    float* vs = xk + 2 * f;  // [dh]
    const float* wk = work + sh * laWorkFloats(E, f, dh);
    const float* aux = wk + laAlign4(E);
    const float* tail = aux + laAlign4(f + dh);
    int kind;
    float total, part;
    if (EARLY) {
        float held[2];  // phi(q) at tid and tid + nt
#pragma unroll
        for (int j = 0; j < 2; j++) held[j] = tid + j * nt < E ? wk[tid + j * nt] : 0.0f;
        const float partAny = tid < dh ? aux[tid] : 0.0f;
        kind = __float_as_int(tail[1]);
        total = tail[0];
#pragma unroll
        for (int j = 0; j < 2; j++) {
            if (tid + j * nt < E) pq[tid + j * nt] = held[j];
        }
        for (int a = tid + 2 * nt; a < E; a += nt) pq[a] = wk[a];
        part = (kind >> 16) == 0 ? partAny : 0.0f;
    } else {
        kind = __float_as_int(tail[1]);
        total = tail[0];
        part = (kind >> 16) == 0 && tid < dh ? aux[tid] : 0.0f;
        for (int a = tid; a < E; a += nt) pq[a] = wk[a];
    }
    const int n = kind & 0xffff;
    const bool write = (kind >> 16) != 0;
    if (write) {
        for (int j = tid; j < f + dh; j += nt) {
            if (j < f) {
                xk[j] = aux[j];
            } else {
                vs[j - f] = aux[j];
            }
        }
        for (int idx = tid; idx < n * (f + dh); idx += nt) Dd.raw[idx] = Dd.waiting[idx];
        __syncthreads();
        featurize(xk, f, taylorOf(f), pk);
        laFeaturizePending(Dd.raw, n, f, dh, Dd.pkP);
    } else {
        __syncthreads();
    }
    float4 num = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (g < R) {
        laDeferredRows<U, CS>(Dd, write, n, g, R, c, quads, sv, S4, vs, pk, pq, num);
        laStoreNum(Dd.red, t, dh, num);
    }
    __syncthreads();
    if (tid < dh) {
        float acc = 0.0f;
        for (int gg = 0; gg < R; gg++) acc += Dd.red[gg * dh + tid];
        acc += part;
        const i64 row = EARLY ? outRow : L.offsets[blockIdx.x];
        out[row * H * dh + (i64)blockIdx.y * dh + tid] = fromF<A>(acc * (1.0f / (total + eps)));
    }
}

/**
 * Adds the tokens waiting beside the state of each sequence of the layout (grid (B, H)) into its S and z, one after
 * another with the step-by-step update's float operations, and sets their count to 0: the state the step-by-step
 * update would hold, for the kernels that read it whole. A no-op where none waits. Dynamic shared memory: the waiting
 * tokens' (Kernels.linearDeferredExtraFloats).
 */
template <typename W, typename A>
__device__ void linearAttentionFold_impl(float* kvState, float* kState, float* pend, int* count, const int* layout,
                                         int B, int H, int f, int dh, int K) {
    extern __shared__ float smem[];
    const Layout L = layoutOf(layout, B);
    const i64 sh = (i64)L.slots[blockIdx.x] * H + blockIdx.y;
    const int n = count[sh];
    if (n == 0) return;
    const int E = expandedDim(f);
    float* raw = smem;
    float* pkP = raw + (K - 1) * (f + dh);
    laLoadPending(laPending(pend, sh, K, f, dh), n, f, dh, raw, pkP);
    float* S = kvState + sh * (i64)E * dh;
    float* z = kState + sh * (i64)E;
    for (i64 idx = threadIdx.x; idx < (i64)E * dh; idx += blockDim.x) {
        const int a = (int)(idx / dh);
        const int e = (int)(idx - (i64)a * dh);
        float s = S[idx];
        for (int i = 0; i < n; i++) s = s + pkP[i * E + a] * raw[i * (f + dh) + f + e];
        S[idx] = s;
    }
    for (int a = threadIdx.x; a < E; a += blockDim.x) {
        z[a] = laAddWaiting(z[a], pkP, n, E, a);
    }
    __syncthreads();
    if (threadIdx.x == 0) count[sh] = 0;
}

}  // namespace b4j

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
B4J_KERNEL(linearAttentionDecode5, 256,
           (const A* q, const A* k, const A* v, float* kvState, float* kState, const int* layout, A* out, int B, int H,
            int f, int dh, float eps),
           (q, k, v, kvState, kState, layout, out, B, H, f, dh, eps))
// version 6 waits for the kernel before it itself, after its state's loads
#define B4J_LA_DECODE6(T)                                                                                            \
    namespace b4j_##T {                                                                                              \
    extern "C" __global__ void __launch_bounds__(256) linearAttentionDecode6_##T(                                    \
        const A* q, const A* k, const A* v, float* kvState, float* kState, const int* layout, A* out, int B, int H,   \
        int f, int dh, float eps) {                                                                                  \
        b4j::linearAttentionDecode6_impl<W, A>(q, k, v, kvState, kState, layout, out, B, H, f, dh, eps);             \
    }                                                                                                                \
    }
B4J_LA_DECODE6(f32)
B4J_LA_DECODE6(bf16)
// the deferred form's versions, held to MINB blocks a multiprocessor, each the device function after MINB and T: 1, U 8
// at three blocks a multiprocessor, the waiting tokens loaded once the count is in; 2, as 1 with every waiting place
// copied as the block starts; 3, as 2 with all of based-1b's 17 rows a thread in flight at once (two blocks a
// multiprocessor); 4, as 2 with 12 rows (two blocks); 5, 6 and 7 above
#define B4J_LA_DEFERRED(V, MINB, T, ...)                                                                             \
    namespace b4j_##T {                                                                                              \
    extern "C" __global__ void __launch_bounds__(256, MINB) linearAttentionDecodeDeferred##V##_##T(                  \
        const A* q, const A* k, const A* v, float* kvState, float* kState, float* pend, int* count,                  \
        const int* layout, A* out, int B, int H, int f, int dh, float eps, int K) {                                  \
        b4jPdlWait();                                                                                                \
        b4j::__VA_ARGS__(q, k, v, kvState, kState, pend, count, layout, out, B, H, f, dh, eps, K);                   \
    }                                                                                                                \
    }
B4J_LA_DEFERRED(1, 3, f32, linearAttentionDecodeDeferredQuads<8, false, W, A>)
B4J_LA_DEFERRED(1, 3, bf16, linearAttentionDecodeDeferredQuads<8, false, W, A>)
B4J_LA_DEFERRED(2, 3, f32, linearAttentionDecodeDeferredQuads<8, true, W, A>)
B4J_LA_DEFERRED(2, 3, bf16, linearAttentionDecodeDeferredQuads<8, true, W, A>)
B4J_LA_DEFERRED(3, 2, f32, linearAttentionDecodeDeferredQuads<17, true, W, A>)
B4J_LA_DEFERRED(3, 2, bf16, linearAttentionDecodeDeferredQuads<17, true, W, A>)
B4J_LA_DEFERRED(4, 2, f32, linearAttentionDecodeDeferredQuads<12, true, W, A>)
B4J_LA_DEFERRED(4, 2, bf16, linearAttentionDecodeDeferredQuads<12, true, W, A>)
B4J_LA_DEFERRED(5, 2, f32, linearAttentionDecodeDeferred5_impl<W, A>)
B4J_LA_DEFERRED(5, 2, bf16, linearAttentionDecodeDeferred5_impl<W, A>)
B4J_LA_DEFERRED(6, 1, f32, linearAttentionDecodeDeferred6_impl<W, A>)
B4J_LA_DEFERRED(6, 1, bf16, linearAttentionDecodeDeferred6_impl<W, A>)
B4J_LA_DEFERRED(7, 1, f32, linearAttentionDecodeDeferred7_impl<W, A>)
B4J_LA_DEFERRED(7, 1, bf16, linearAttentionDecodeDeferred7_impl<W, A>)
// version 8: LA_WARPS warps a block, a (sequence, head) each, held to 4 blocks a multiprocessor (128 registers)
#define B4J_LA_WARP(T)                                                                                               \
    namespace b4j_##T {                                                                                              \
    extern "C" __global__ void __launch_bounds__(32 * LA_WARPS, 4) linearAttentionDecodeDeferred8_##T(               \
        const A* q, const A* k, const A* v, float* kvState, float* kState, float* pend, int* count,                  \
        const int* layout, A* out, int B, int H, int f, int dh, float eps, int K) {                                  \
        b4jPdlWait();                                                                                                \
        b4j::linearAttentionDecodeDeferredWarp<W, A>(q, k, v, kvState, kState, pend, count, layout, out, B, H, f,    \
                                                     dh, eps, K);                                                    \
    }                                                                                                                \
    }
B4J_LA_WARP(f32)
B4J_LA_WARP(bf16)
// the second kernels of versions 9, 11 and 12: version 9's (17 rows a thread in flight, two blocks a multiprocessor),
// which asks for its first rows of S before it waits for the kernel before it; with its small loads at once (EARLY,
// 11 and 12), and S read as streamed data (CS, 12). Versions 11 and 12 run after version 10's first kernel
#define B4J_LA_SECOND(T, V, EARLY, CS)                                                                               \
    namespace b4j_##T {                                                                                              \
    extern "C" __global__ void __launch_bounds__(256, 2) linearAttentionDecodeDeferred##V##_##T(                     \
        float* kvState, float* pend, int* count, const float* work, const int* layout, A* out, int B, int H, int f,  \
        int dh, float eps, int K) {                                                                                  \
        b4j::linearAttentionDecodeSplit_impl<17, EARLY, CS, W, A>(kvState, pend, count, work, layout, out, B, H, f,  \
                                                                  dh, eps, K);                                       \
    }                                                                                                                \
    }
// version 9: linearAttentionDecodePrep, then its second kernel
#define B4J_LA_SPLIT(T)                                                                                              \
    namespace b4j_##T {                                                                                              \
    extern "C" __global__ void __launch_bounds__(32 * LA_PREP_WARPS) linearAttentionDecodePrep_##T(                  \
        const A* q, const A* k, const A* v, float* kState, float* pend, int* count, const int* layout, float* work,   \
        int B, int H, int f, int dh, int K) {                                                                        \
        b4jPdlWait();                                                                                                \
        b4j::linearAttentionDecodePrep_impl<A>(q, k, v, kState, pend, count, layout, work, B, H, f, dh, K);          \
    }                                                                                                                \
    }                                                                                                                \
    B4J_LA_SECOND(T, 9, false, false)
B4J_LA_SPLIT(f32)
B4J_LA_SPLIT(bf16)
B4J_LA_SECOND(f32, 11, true, false)
B4J_LA_SECOND(bf16, 11, true, false)
B4J_LA_SECOND(f32, 12, true, true)
B4J_LA_SECOND(bf16, 12, true, true)
// version 10: version 9 with linearAttentionDecodePrep10 as its first kernel (which waits for the kernel before
// itself, after its table of the features' places), held J features and HELD values of v a lane: small for E <= 160
// and dh <= 128 (f 16: based-360m's and based-1b's; held to 72 registers, 7 blocks a multiprocessor), narrow for
// E <= 256, wide for E <= 576 (both dh <= 256)
#define B4J_LA_PREP10(T, NAME, J, HELD, BOUNDS)                                                                      \
    namespace b4j_##T {                                                                                              \
    extern "C" __global__ void __launch_bounds__ BOUNDS NAME##_##T(                                                  \
        const A* q, const A* k, const A* v, float* kState, float* pend, int* count, const int* layout, float* work,   \
        int B, int H, int f, int dh, int K) {                                                                        \
        b4j::linearAttentionDecodePrep10_impl<J, HELD, A>(q, k, v, kState, pend, count, layout, work, B, H, f, dh,   \
                                                          K);                                                        \
    }                                                                                                                \
    }
B4J_LA_PREP10(f32, linearAttentionDecodePrep10Small, LA_PREP10_SMALL, LA_PREP10_SMALL_HELD, (32 * LA_PREP_WARPS, 7))
B4J_LA_PREP10(bf16, linearAttentionDecodePrep10Small, LA_PREP10_SMALL, LA_PREP10_SMALL_HELD, (32 * LA_PREP_WARPS, 7))
B4J_LA_PREP10(f32, linearAttentionDecodePrep10, LA_PREP10_NARROW, LA_PREP_HELD, (32 * LA_PREP_WARPS))
B4J_LA_PREP10(bf16, linearAttentionDecodePrep10, LA_PREP10_NARROW, LA_PREP_HELD, (32 * LA_PREP_WARPS))
B4J_LA_PREP10(f32, linearAttentionDecodePrep10Wide, LA_PREP10_WIDE, LA_PREP_HELD, (32 * LA_PREP_WARPS))
B4J_LA_PREP10(bf16, linearAttentionDecodePrep10Wide, LA_PREP10_WIDE, LA_PREP_HELD, (32 * LA_PREP_WARPS))
B4J_KERNEL(linearAttentionFold, 256,
           (float* kvState, float* kState, float* pend, int* count, const int* layout, int B, int H, int f, int dh,
            int K),
           (kvState, kState, pend, count, layout, B, H, f, dh, K))
