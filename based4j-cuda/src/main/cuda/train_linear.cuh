// Training kernels of Taylor linear attention (included by based4j_kernels.cu): the forward over whole sequences
// and its backward in the chunked form, computing in float32 what io.based4j.train.cpu.LinearAttentionOps computes
// in float64. A training pass is batch sequences of L tokens packed as batch x L rows, each starting from an empty
// state; q, k, v, out, dout, dq, dk and dv are of type A; backward outputs are ADDED into (+=). Launch shapes and
// the scratch layout: io.based4j.cuda.MixerTrainKernels. bf16 passes of the shapes that the tensor-core kernels
// of train_linear_mma.cuh (included at the end) serve run those instead; these CUDA-core kernels serve the rest.
//
// Per (sequence, head) the tokens fall into chunks of C = 64 (the last one ragged). With V' = [v, 1] (dh + 1
// columns: the state's last column is the normaliser z) and G' = [g, r] (g = dout / D, r = -dout.y / D):
//   chunk states    U_c = phi(K_c)^T V'_c                          [E, dh + 1], one block per chunk
//   prefix scan     S_c = sum_{c' < c} U_c'                          in place, one thread per state element
//   output          [num | den]_t = phi(q_t) S_c + sum_{s <= t in c} a_ts V'_s,   y = num / (den + eps)
//   backward (q)    the output again, then G'; dq = J^T (S_c G'_t) + sum_s da_ts (1 + x_ts) k_s / sqrt(f) with
//                   da_ts = G'_t . V'_s; the chunk's W_c = phi(Q_c)^T G'_c replaces S_c in place
//   suffix scan     dS_c = sum_{c' > c} W_c'
//   backward (k, v) dv_s = sum_{t >= s in c} a_ts g_t + dS_c^T phi(k_s) (first dh columns),
//                   dk_s = J^T (dS_c V'_s) + sum_t da_ts (1 + x_ts) q_t / sqrt(f)
// where a_ts = phi(q_t).phi(k_s) = 1 + x_ts + x_ts^2 / 2, x_ts = q_t.k_s / sqrt(f), is evaluated directly inside a
// chunk (no feature map) and phi (E = 1 + f + f(f+1)/2 features) is formed on chip, 64 features at a time, never
// stored. Products are block-wide float32 tiles out of shared memory: 256 threads as 16 row groups x 16 column
// lanes, each thread 4 rows x NJ column strips of 16 (each per-chunk kernel is compiled for NJ = 5, head dims up to
// 79, and NJ = 8, up to 127, and picks one by dh). Global reads keep LIN_INFLIGHT loads per thread in flight. Every
// sum is taken in a fixed order: deterministic.
#pragma once

namespace b4j {

/** Tokens per chunk and features per tile of the chunked kernels (mirrored by MixerTrainKernels). */
constexpr int LIN_CHUNK = 64;
constexpr int LIN_FTILE = 64;
/** Column strips of 16 per thread: value widths dh + 1 up to 16 x LIN_NJ. */
constexpr int LIN_NJ = 8;
/** Row stride of the [C][C] scores and the [64][C] feature tiles: one more than a row, so rows meet other banks. */
constexpr int LIN_SLD = LIN_CHUNK + 1;

/** Row length of the [C, dh + 1] tiles: whole strips of 16, plus one so a strided column read meets no bank twice. */
__host__ __device__ __forceinline__ int linLd(int dh) { return ((dh + 1 + 15) / 16) * 16 + 1; }

/** Floats of dynamic shared memory of the chunked kernels (mirrored by MixerTrainKernels.linearSharedFloats). */
__host__ __device__ __forceinline__ int linChunkSmemFloats(int f, int dh) {
    const int E = 1 + f + f * (f + 1) / 2;
    const int ld = linLd(dh);
    return 2 * LIN_CHUNK * (f + 1)          // xq, xk with a trailing 1
           + 3 * LIN_CHUNK * ld             // V', G' and a state tile [LIN_FTILE][ld]
           + 2 * LIN_CHUNK * LIN_SLD        // scores and a feature tile
           + LIN_CHUNK * f                  // dx
           + 2 * LIN_CHUNK                  // D, r
           + 3 * E;                         // the feature table: i, j, coefficient
}

/** The shared memory of a chunked block, carved from one dynamic array. */
struct LinChunkSmem {
    float* xq;    // [C][f + 1] q rows (zero past the chunk), x[f] = 1
    float* xk;    // [C][f + 1] k rows
    float* vp;    // [C][ld] V' = [v, 1, 0..] (zero rows past the chunk)
    float* gp;    // [C][ld] G' = [g, r, 0..] or dout
    float* st;    // [LIN_FTILE][ld] a tile of a state
    float* sc;    // [C][C] scores: sc[s * LIN_SLD + t]
    float* ft;    // [LIN_FTILE][C] a feature tile: ft[a * LIN_SLD + t], or dphi [C][LIN_FTILE] (row stride LIN_SLD)
    float* dx;    // [C][f]
    float* D;     // [C]
    float* r;     // [C]
    int* fi;      // [E] phi_a = coef_a x_fi x_fj (index f is the constant 1)
    int* fj;      // [E]
    float* fc;    // [E]
};

__device__ __forceinline__ LinChunkSmem linChunkSmem(float* smem, int f, int dh) {
    const int E = expandedDim(f);
    const int ld = linLd(dh);
    LinChunkSmem m;
    m.xq = smem;
    m.xk = m.xq + LIN_CHUNK * (f + 1);
    m.vp = m.xk + LIN_CHUNK * (f + 1);
    m.gp = m.vp + LIN_CHUNK * ld;
    m.st = m.gp + LIN_CHUNK * ld;
    m.sc = m.st + LIN_FTILE * ld;
    m.ft = m.sc + LIN_CHUNK * LIN_SLD;
    m.dx = m.ft + LIN_FTILE * LIN_SLD;
    m.D = m.dx + LIN_CHUNK * f;
    m.r = m.D + LIN_CHUNK;
    m.fi = reinterpret_cast<int*>(m.r + LIN_CHUNK);
    m.fj = m.fi + E;
    m.fc = reinterpret_cast<float*>(m.fj + E);
    return m;
}

/** Where a block is: its sequence, head and chunk, the chunk's first row and length. */
struct LinChunk {
    int head, chunk, n, nC;
    i64 row0;   // first row of the chunk
    i64 bh;     // sequence * H + head
};

__device__ __forceinline__ LinChunk linChunkOf(int L, int H) {
    LinChunk c;
    c.chunk = blockIdx.x;
    c.head = blockIdx.y;
    c.nC = (L + LIN_CHUNK - 1) / LIN_CHUNK;
    const int c0 = c.chunk * LIN_CHUNK;
    c.n = min(LIN_CHUNK, L - c0);
    c.row0 = (i64)blockIdx.z * L + c0;
    c.bh = (i64)blockIdx.z * H + c.head;
    return c;
}

/** The feature table: phi_a = fc[a] * x[fi[a]] * x[fj[a]] with x[f] = 1 (rounded as featurize rounds). */
__device__ __forceinline__ void linFeatureTable(const LinChunkSmem& m, int f, Taylor tc) {
    const int E = expandedDim(f);
    for (int a = threadIdx.x; a < E; a += blockDim.x) {
        int i, j;
        float c;
        if (a == 0) {
            i = f; j = f; c = 1.0f;
        } else if (a <= f) {
            i = a - 1; j = f; c = tc.lin;
        } else {
            int p = a - 1 - f;
            i = 0;
            while (p >= f - i) { p -= f - i; i++; }
            j = i + p;
            c = i == j ? tc.diag : tc.cross;
        }
        m.fi[a] = i;
        m.fj[a] = j;
        m.fc[a] = c;
    }
}

/** phi_a of row x (f + 1 values ending in 1). */
__device__ __forceinline__ float linPhi(const LinChunkSmem& m, const float* x, int a) {
    return __fmul_rn(__fmul_rn(x[m.fi[a]], x[m.fj[a]]), m.fc[a]);
}

/**
 * dst[idx] = value(idx) for idx < count, the block's threads striding over idx with LIN_INFLIGHT values read before
 * any is stored, so that that many global loads per thread are in flight at once.
 */
constexpr int LIN_INFLIGHT = 8;

template <typename F>
__device__ __forceinline__ void linFill(float* dst, int count, F value) {
    for (int base = threadIdx.x; base < count; base += LIN_INFLIGHT * blockDim.x) {
        float r[LIN_INFLIGHT];
#pragma unroll
        for (int u = 0; u < LIN_INFLIGHT; u++) {
            const int idx = base + u * blockDim.x;
            r[u] = idx < count ? value(idx) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < LIN_INFLIGHT; u++) {
            const int idx = base + u * blockDim.x;
            if (idx < count) dst[idx] = r[u];
        }
    }
}

/** Rows of q or k of the chunk into x [C][f + 1] (zero past the chunk, x[f] = 1). */
template <typename A>
__device__ __forceinline__ void linLoadX(const A* src, const LinChunk& c, int H, int f, float* x) {
    const i64 cols = (i64)H * f;
    linFill(x, LIN_CHUNK * (f + 1), [&](int idx) {
        const int t = idx / (f + 1);
        const int i = idx - t * (f + 1);
        if (i == f) return 1.0f;
        return t < c.n ? toF(src[(c.row0 + t) * cols + (i64)c.head * f + i]) : 0.0f;
    });
}

/** Rows of v (or dout) into [C][ld]: columns < dh from src, column dh = one (0 for dout), zero elsewhere. */
template <typename A>
__device__ __forceinline__ void linLoadV(const A* src, const LinChunk& c, int H, int dh, float one, float* dst) {
    const int ld = linLd(dh);
    const i64 cols = (i64)H * dh;
    linFill(dst, LIN_CHUNK * ld, [&](int idx) {
        const int t = idx / ld;
        const int e = idx - t * ld;
        if (t >= c.n) return 0.0f;
        return e < dh ? toF(src[(c.row0 + t) * cols + (i64)c.head * dh + e]) : e == dh ? one : 0.0f;
    });
}

/**
 * acc[i][j] += sum_{k < K} A(k, rg + 16 i) B(k, cl + 16 j) for the thread's rows (4) and column strips j < nj,
 * with A(k, row) = A[k * aK + row * aR] and B(k, col) = B[k * bK + col * bC] in shared memory.
 */
template <int NJ>
__device__ __forceinline__ void linGemm(const float* A, int aK, int aR, const float* B, int bK, int bC, int K, int nj,
                                        float (&acc)[4][NJ]) {
    const int rg = threadIdx.x >> 4;
    const int cl = threadIdx.x & 15;
    for (int k = 0; k < K; k++) {
        float a[4];
        float b[NJ];
#pragma unroll
        for (int i = 0; i < 4; i++) a[i] = A[k * aK + (rg + 16 * i) * aR];
#pragma unroll
        for (int j = 0; j < NJ; j++) b[j] = j < nj ? B[k * bK + (cl + 16 * j) * bC] : 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                if (j < nj) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
            }
        }
    }
}

template <int NJ>
__device__ __forceinline__ void linZeroAcc(float (&acc)[4][NJ]) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int j = 0; j < NJ; j++) acc[i][j] = 0.0f;
    }
}

/** Column strips of the [., ld] tiles that hold the dh + 1 columns. */
__device__ __forceinline__ int linStrips(int dh) { return (dh + 1 + 15) / 16; }

/** dot[i][j] = q_t . k_s for the thread's rows t = rg + 16 i and columns s = cl + 16 j. */
__device__ __forceinline__ void linDots(const LinChunkSmem& m, int f, float (&dot)[4][4]) {
    linZeroAcc<4>(dot);
    linGemm<4>(m.xq, 1, f + 1, m.xk, 1, f + 1, f, 4, dot);
}

/** sc[s * LIN_SLD + t] = a_ts (causal inside the chunk; 0 past it). */
__device__ __forceinline__ void linScores(const LinChunkSmem& m, const LinChunk& c, int f, float invSqrtF) {
    float dot[4][4];
    linDots(m, f, dot);
    const int rg = threadIdx.x >> 4;
    const int cl = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int t = rg + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int s = cl + 16 * j;
            float a = 0.0f;
            if (s <= t && t < c.n) {
                const float x = dot[i][j] * invSqrtF;
                a = 1.0f + x + 0.5f * x * x;
            }
            m.sc[s * LIN_SLD + t] = a;
        }
    }
}

/** ft[a * LIN_SLD + t] = phi_{a0 + a}(x_t) for the features of one tile (0 past E). */
__device__ __forceinline__ void linFeatureTile(const LinChunkSmem& m, const float* x, int f, int a0, int E) {
    for (int idx = threadIdx.x; idx < LIN_FTILE * LIN_CHUNK; idx += blockDim.x) {
        const int a = idx / LIN_CHUNK;
        const int t = idx - a * LIN_CHUNK;
        m.ft[a * LIN_SLD + t] = a0 + a < E ? linPhi(m, x + t * (f + 1), a0 + a) : 0.0f;
    }
}

/** st = rows a0 .. a0 + LIN_FTILE of a state [E][dh + 1] in global memory (zero past E and past column dh). */
__device__ __forceinline__ void linLoadStateTile(const float* state, int a0, int E, int dh, float* st) {
    const int ld = linLd(dh);
    const int dp = dh + 1;
    linFill(st, LIN_FTILE * ld, [&](int idx) {
        const int a = idx / ld;
        const int e = idx - a * ld;
        return (a0 + a < E && e < dp) ? state[(i64)(a0 + a) * dp + e] : 0.0f;
    });
}

/**
 * The rows t of the chunk (4 per thread) against V': acc = [num | den] = phi(q_t) S + sum_s a_ts V'_s, S the state
 * of the earlier chunks (skipped for the first chunk). Needs xq, vp, sc and the feature table; uses ft and st.
 */
template <int NJ>
__device__ __forceinline__ void linNumerators(const LinChunkSmem& m, const LinChunk& c, const float* S, int f,
                                              int dh, float (&acc)[4][NJ]) {
    const int E = expandedDim(f);
    const int ld = linLd(dh);
    const int nj = linStrips(dh);
    linZeroAcc(acc);
    linGemm<NJ>(m.sc, LIN_SLD, 1, m.vp, ld, 1, LIN_CHUNK, nj, acc);
    if (c.chunk == 0) return;
    for (int a0 = 0; a0 < E; a0 += LIN_FTILE) {
        __syncthreads();
        linFeatureTile(m, m.xq, f, a0, E);
        linLoadStateTile(S, a0, E, dh, m.st);
        __syncthreads();
        linGemm<NJ>(m.ft, LIN_SLD, 1, m.st, ld, 1, min(LIN_FTILE, E - a0), nj, acc);
    }
}

/** D[t] = den_t + eps from the thread that holds column dh. Ends with a barrier. */
template <int NJ>
__device__ __forceinline__ void linDenominators(const LinChunkSmem& m, int dh, float eps, const float (&acc)[4][NJ]) {
    const int rg = threadIdx.x >> 4;
    const int cl = threadIdx.x & 15;
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        if (cl + 16 * j == dh) {
#pragma unroll
            for (int i = 0; i < 4; i++) m.D[rg + 16 * i] = acc[i][j] + eps;
        }
    }
    __syncthreads();
}

/** The state of each (sequence, head, chunk): [E][dh + 1] floats. */
__device__ __forceinline__ float* linStateOf(float* states, const LinChunk& c, int E, int dh, int chunk) {
    return states + ((c.bh * c.nC + chunk) * (i64)E) * (dh + 1);
}

/** U_c = phi(K_c)^T V'_c into the chunk's state. Grid (chunks, H, batch). */
template <int NJ, typename A>
__device__ __forceinline__ void linChunkStatesBody(const A* k, const A* v, float* states, int L, int H, int f, int dh) {
    extern __shared__ float smem[];
    const int E = expandedDim(f);
    const int ld = linLd(dh);
    const int nj = linStrips(dh);
    const LinChunkSmem m = linChunkSmem(smem, f, dh);
    const LinChunk c = linChunkOf(L, H);
    linFeatureTable(m, f, taylorOf(f));
    linLoadX<A>(k, c, H, f, m.xk);
    linLoadV<A>(v, c, H, dh, 1.0f, m.vp);
    float* U = linStateOf(states, c, E, dh, c.chunk);
    const int rg = threadIdx.x >> 4;
    const int cl = threadIdx.x & 15;
    for (int a0 = 0; a0 < E; a0 += LIN_FTILE) {
        __syncthreads();
        linFeatureTile(m, m.xk, f, a0, E);
        __syncthreads();
        float acc[4][NJ];
        linZeroAcc(acc);
        linGemm<NJ>(m.ft, 1, LIN_SLD, m.vp, ld, 1, c.n, nj, acc);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int a = a0 + rg + 16 * i;
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                const int e = cl + 16 * j;
                if (a < E && e <= dh) U[(i64)a * (dh + 1) + e] = acc[i][j];
            }
        }
    }
}

template <typename W, typename A>
__device__ void linearAttentionChunkStates_impl(const A* k, const A* v, float* states, int L, int H, int f, int dh) {
    if (linStrips(dh) <= 5) {
        linChunkStatesBody<5, A>(k, v, states, L, H, f, dh);
    } else {
        linChunkStatesBody<LIN_NJ, A>(k, v, states, L, H, f, dh);
    }
}

/**
 * Exclusive scan of the chunk states of every (sequence, head), in place, one thread per state element: forward
 * (reverse = 0) S_c = sum_{c' < c}, or reverse S_c = sum_{c' > c}. count = batch x H x E x (dh + 1).
 */
template <typename W, typename A>
__device__ void linearAttentionScan_impl(float* states, long long count, int nC, int perHead, int reverse) {
    for (i64 idx = globalThread(); idx < count; idx += globalStride()) {
        const i64 bh = idx / perHead;
        float* p = states + bh * nC * (i64)perHead + (idx - bh * perHead);
        float run = 0.0f;
        for (int s0 = 0; s0 < nC; s0 += LIN_INFLIGHT) {
            float u[LIN_INFLIGHT];
#pragma unroll
            for (int j = 0; j < LIN_INFLIGHT; j++) {
                const int ch = reverse ? nC - 1 - (s0 + j) : s0 + j;
                u[j] = s0 + j < nC ? p[(i64)ch * perHead] : 0.0f;
            }
#pragma unroll
            for (int j = 0; j < LIN_INFLIGHT; j++) {
                const int ch = reverse ? nC - 1 - (s0 + j) : s0 + j;
                if (s0 + j < nC) p[(i64)ch * perHead] = run;
                run += u[j];
            }
        }
    }
}

/** Forward output of one chunk: y_t = num_t / (den_t + eps). Grid (chunks, H, batch). */
template <int NJ, typename A>
__device__ __forceinline__ void linChunkForwardBody(const A* q, const A* k, const A* v, const float* states, A* out,
                                                    int L, int H, int f, int dh, float eps) {
    extern __shared__ float smem[];
    const int E = expandedDim(f);
    const LinChunkSmem m = linChunkSmem(smem, f, dh);
    const LinChunk c = linChunkOf(L, H);
    linFeatureTable(m, f, taylorOf(f));
    linLoadX<A>(q, c, H, f, m.xq);
    linLoadX<A>(k, c, H, f, m.xk);
    linLoadV<A>(v, c, H, dh, 1.0f, m.vp);
    __syncthreads();
    linScores(m, c, f, taylorOf(f).cross);
    __syncthreads();
    float acc[4][NJ];
    linNumerators<NJ>(m, c, linStateOf(const_cast<float*>(states), c, E, dh, c.chunk), f, dh, acc);
    linDenominators<NJ>(m, dh, eps, acc);
    const int rg = threadIdx.x >> 4;
    const int cl = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int t = rg + 16 * i;
        if (t >= c.n) continue;
        const float inv = 1.0f / m.D[t];
        A* o = out + (c.row0 + t) * H * (i64)dh + (i64)c.head * dh;
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const int e = cl + 16 * j;
            if (e < dh) o[e] = fromF<A>(acc[i][j] * inv);
        }
    }
}

template <typename W, typename A>
__device__ void linearAttentionChunkForward_impl(const A* q, const A* k, const A* v, const float* states, A* out,
                                                 int L, int H, int f, int dh, float eps) {
    if (linStrips(dh) <= 5) {
        linChunkForwardBody<5, A>(q, k, v, states, out, L, H, f, dh, eps);
    } else {
        linChunkForwardBody<LIN_NJ, A>(q, k, v, states, out, L, H, f, dh, eps);
    }
}

/**
 * sc[s * LIN_SLD + t] = da_ts (1 + x_ts) / sqrt(f), the gradient of x_ts' pre-image q_t.k_s (causal, 0 past the chunk),
 * with da_ts = G'_t . V'_s. Needs xq, xk, vp, gp; uses acc's registers only.
 */
__device__ __forceinline__ void linScoreGradients(const LinChunkSmem& m, const LinChunk& c, int f, int dh,
                                                  float invSqrtF) {
    const int ld = linLd(dh);
    float acc[4][4];
    linZeroAcc<4>(acc);
    // rows t, columns s: sum_e G'[t][e] V'[s][e]
    linGemm<4>(m.gp, 1, ld, m.vp, 1, ld, dh + 1, 4, acc);
    float dot[4][4];
    linDots(m, f, dot);
    __syncthreads();
    const int rg = threadIdx.x >> 4;
    const int cl = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int t = rg + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int s = cl + 16 * j;
            float val = 0.0f;
            if (s <= t && t < c.n) val = acc[i][j] * (1.0f + dot[i][j] * invSqrtF) * invSqrtF;
            m.sc[s * LIN_SLD + t] = val;
        }
    }
    __syncthreads();
}

/**
 * dx[row][i] = sum_u P(u, row) x[u][i] (x rows of f + 1), P(u, row) = P[u * pK + row * pR]: the in-chunk part of
 * dq (P = the score gradients, rows t, summed over keys u) or of dk (transposed, rows s, summed over queries).
 * The product's columns past f read the next rows of x (finite values) and are dropped.
 */
__device__ __forceinline__ void linScoreProduct(const LinChunkSmem& m, const float* P, int pK, int pR, const float* x,
                                                int f) {
    float acc[4][4];
    linZeroAcc<4>(acc);
    linGemm<4>(P, pK, pR, x, f + 1, 1, LIN_CHUNK, (f + 15) / 16, acc);
    const int rg = threadIdx.x >> 4;
    const int cl = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int col = cl + 16 * j;
            if (col < f) m.dx[(rg + 16 * i) * f + col] = acc[i][j];
        }
    }
}

/**
 * dx[t][i] += J^T dphi for the features of one tile: dphi[t * LIN_SLD + a] the gradient of phi_{a0 + a} at x_t.
 * x_i enters f + 1 features: x_i f^-1/4 (feature 1 + i), x_i^2 / sqrt(2f) (derivative 2 x_i / sqrt(2f)) and
 * x_i x_j / sqrt(f) for j != i (derivative x_j / sqrt(f)), the pair (min, max) in row min of the quadratic block.
 */
__device__ __forceinline__ void linFeatureBackwardTile(const LinChunkSmem& m, const float* x, const float* dphi,
                                                       int f, int a0, int E, Taylor tc) {
    const int count = min(LIN_FTILE, E - a0);
    for (int idx = threadIdx.x; idx < LIN_CHUNK * f; idx += blockDim.x) {
        const int t = idx / f;
        const int i = idx - t * f;
        const float* xt = x + t * (f + 1);
        const float* d = dphi + t * LIN_SLD;
        float s = 0.0f;
        const int lin = 1 + i - a0;
        if (lin >= 0 && lin < count) s = tc.lin * d[lin];
        for (int j = 0; j < f; j++) {
            const int lo = min(i, j);
            const int a = 1 + f + lo * f - lo * (lo - 1) / 2 + (max(i, j) - lo) - a0;
            if (a >= 0 && a < count) s = fmaf((j == i ? 2.0f * tc.diag : tc.cross) * xt[j], d[a], s);
        }
        m.dx[idx] += s;
    }
}

/** Writes a [C][LIN_FTILE] tile of acc (rows t, columns a) into dphi with row stride LIN_SLD. */
__device__ __forceinline__ void linStoreTile(const float (&acc)[4][4], float* dphi) {
    const int rg = threadIdx.x >> 4;
    const int cl = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int j = 0; j < 4; j++) dphi[(rg + 16 * i) * LIN_SLD + cl + 16 * j] = acc[i][j];
    }
}

/** dst[row][i] += dx[t][i] for the rows of the chunk (A [N, H f]). */
template <typename A>
__device__ __forceinline__ void linAddRows(const LinChunkSmem& m, const LinChunk& c, int H, int f, A* dst) {
    for (int idx = threadIdx.x; idx < c.n * f; idx += blockDim.x) {
        const int t = idx / f;
        const int i = idx - t * f;
        A* o = dst + (c.row0 + t) * H * (i64)f + (i64)c.head * f + i;
        *o = fromF<A>(toF(*o) + m.dx[idx]);
    }
}

/**
 * Backward, the query side of one chunk: recomputes [num | den], writes G' = [g, r] of its rows into gbuf
 * ([N, H, dh + 1] float32), adds dq, and replaces the chunk's state S_c by W_c = phi(Q_c)^T G'_c. Grid (chunks, H,
 * batch); run after the chunk states and their forward scan.
 */
template <int NJ, typename A>
__device__ __forceinline__ void linChunkBackwardQBody(const A* q, const A* k, const A* v, const A* dout,
                                                      float* states, float* gbuf, A* dq, int L, int H, int f, int dh,
                                                      float eps) {
    extern __shared__ float smem[];
    const int E = expandedDim(f);
    const int ld = linLd(dh);
    const int nj = linStrips(dh);
    const Taylor tc = taylorOf(f);
    const LinChunkSmem m = linChunkSmem(smem, f, dh);
    const LinChunk c = linChunkOf(L, H);
    linFeatureTable(m, f, tc);
    linLoadX<A>(q, c, H, f, m.xq);
    linLoadX<A>(k, c, H, f, m.xk);
    linLoadV<A>(v, c, H, dh, 1.0f, m.vp);
    linLoadV<A>(dout, c, H, dh, 0.0f, m.gp);
    for (int idx = threadIdx.x; idx < LIN_CHUNK * f; idx += blockDim.x) m.dx[idx] = 0.0f;
    __syncthreads();
    linScores(m, c, f, tc.cross);
    __syncthreads();
    float* S = linStateOf(states, c, E, dh, c.chunk);
    const int rg = threadIdx.x >> 4;
    const int cl = threadIdx.x & 15;
    {
        float acc[4][NJ];
        linNumerators<NJ>(m, c, S, f, dh, acc);
        linDenominators<NJ>(m, dh, eps, acc);
        // r_t = -(g_t . num_t) / D_t over the 16 lanes of the row group (a fixed butterfly)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int t = rg + 16 * i;
            float part = 0.0f;
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                const int e = cl + 16 * j;
                if (e < dh) part += m.gp[t * ld + e] * acc[i][j];
            }
            for (int o = 8; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
            if (cl == 0) m.r[t] = -(part / m.D[t]) / m.D[t];
        }
        __syncthreads();
    }
    // G' = [dout / D, r, 0..] (zero past the chunk), kept for the key side
    for (int idx = threadIdx.x; idx < LIN_CHUNK * ld; idx += blockDim.x) {
        const int t = idx / ld;
        const int e = idx - t * ld;
        float g = 0.0f;
        if (t < c.n) {
            g = e < dh ? m.gp[idx] / m.D[t] : e == dh ? m.r[t] : 0.0f;
            if (e <= dh) gbuf[((c.row0 + t) * H + c.head) * (i64)(dh + 1) + e] = g;
        }
        m.gp[idx] = g;
    }
    __syncthreads();
    // in-chunk: dq_t += sum_s sc[s][t] k_s
    linScoreGradients(m, c, f, dh, tc.cross);
    linScoreProduct(m, m.sc, LIN_SLD, 1, m.xk, f);
    // earlier chunks: dphi(q_t) = S G'_t through J^T; then W_c = phi(Q_c)^T G'_c over S_c
    if (c.chunk > 0) {
        for (int a0 = 0; a0 < E; a0 += LIN_FTILE) {
            __syncthreads();
            linLoadStateTile(S, a0, E, dh, m.st);
            __syncthreads();
            float dp[4][4];
            linZeroAcc<4>(dp);
            linGemm<4>(m.gp, 1, ld, m.st, 1, ld, dh + 1, 4, dp);  // rows t, columns a: sum_e G'[t][e] S[a][e]
            linStoreTile(dp, m.ft);
            __syncthreads();
            linFeatureBackwardTile(m, m.xq, m.ft, f, a0, E, tc);
            __syncthreads();
            linFeatureTile(m, m.xq, f, a0, E);
            __syncthreads();
            float w[4][NJ];
            linZeroAcc(w);
            linGemm<NJ>(m.ft, 1, LIN_SLD, m.gp, ld, 1, c.n, nj, w);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int a = a0 + rg + 16 * i;
#pragma unroll
                for (int j = 0; j < NJ; j++) {
                    const int e = cl + 16 * j;
                    if (a < E && e <= dh) S[(i64)a * (dh + 1) + e] = w[i][j];
                }
            }
        }
    }
    __syncthreads();
    linAddRows<A>(m, c, H, f, dq);
}

template <typename W, typename A>
__device__ void linearAttentionChunkBackwardQ_impl(const A* q, const A* k, const A* v, const A* dout, float* states,
                                                   float* gbuf, A* dq, int L, int H, int f, int dh, float eps) {
    if (linStrips(dh) <= 5) {
        linChunkBackwardQBody<5, A>(q, k, v, dout, states, gbuf, dq, L, H, f, dh, eps);
    } else {
        linChunkBackwardQBody<LIN_NJ, A>(q, k, v, dout, states, gbuf, dq, L, H, f, dh, eps);
    }
}

/**
 * Backward, the key and value side of one chunk, from G' (gbuf) and dS_c (the reverse-scanned W): adds dk and dv.
 * Grid (chunks, H, batch).
 */
template <int NJ, typename A>
__device__ __forceinline__ void linChunkBackwardKVBody(const A* q, const A* k, const A* v, const float* gbuf,
                                                       const float* states, A* dk, A* dv, int L, int H, int f,
                                                       int dh) {
    extern __shared__ float smem[];
    const int E = expandedDim(f);
    const int ld = linLd(dh);
    const int nj = linStrips(dh);
    const Taylor tc = taylorOf(f);
    const LinChunkSmem m = linChunkSmem(smem, f, dh);
    const LinChunk c = linChunkOf(L, H);
    linFeatureTable(m, f, tc);
    linLoadX<A>(q, c, H, f, m.xq);
    linLoadX<A>(k, c, H, f, m.xk);
    linLoadV<A>(v, c, H, dh, 1.0f, m.vp);
    linFill(m.gp, LIN_CHUNK * ld, [&](int idx) {
        const int t = idx / ld;
        const int e = idx - t * ld;
        return (t < c.n && e <= dh) ? gbuf[((c.row0 + t) * H + c.head) * (i64)(dh + 1) + e] : 0.0f;
    });
    __syncthreads();
    linScores(m, c, f, tc.cross);
    __syncthreads();
    const int rg = threadIdx.x >> 4;
    const int cl = threadIdx.x & 15;
    // dv_s = sum_t a_ts g_t (rows s, reduction over t), then + dS^T phi(k_s) below
    float acc[4][NJ];
    linZeroAcc(acc);
    linGemm<NJ>(m.sc, 1, LIN_SLD, m.gp, ld, 1, LIN_CHUNK, nj, acc);
    __syncthreads();
    // in-chunk: dk_s = sum_t sc[s][t] q_t
    linScoreGradients(m, c, f, dh, tc.cross);
    linScoreProduct(m, m.sc, 1, LIN_SLD, m.xq, f);
    // later chunks: dphi(k_s) = dS V'_s through J^T, dv_s += dS^T phi(k_s)
    if (c.chunk < c.nC - 1) {
        const float* dS = linStateOf(const_cast<float*>(states), c, E, dh, c.chunk);
        for (int a0 = 0; a0 < E; a0 += LIN_FTILE) {
            __syncthreads();
            linLoadStateTile(dS, a0, E, dh, m.st);
            linFeatureTile(m, m.xk, f, a0, E);
            __syncthreads();
            linGemm<NJ>(m.ft, LIN_SLD, 1, m.st, ld, 1, min(LIN_FTILE, E - a0), nj, acc);
            float dp[4][4];
            linZeroAcc<4>(dp);
            linGemm<4>(m.vp, 1, ld, m.st, 1, ld, dh + 1, 4, dp);  // rows s, columns a: sum_e V'[s][e] dS[a][e]
            __syncthreads();
            linStoreTile(dp, m.ft);
            __syncthreads();
            linFeatureBackwardTile(m, m.xk, m.ft, f, a0, E, tc);
        }
    }
    __syncthreads();
    linAddRows<A>(m, c, H, f, dk);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int s = rg + 16 * i;
        if (s >= c.n) continue;
        A* o = dv + (c.row0 + s) * H * (i64)dh + (i64)c.head * dh;
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const int e = cl + 16 * j;
            if (e < dh) o[e] = fromF<A>(toF(o[e]) + acc[i][j]);
        }
    }
}

template <typename W, typename A>
__device__ void linearAttentionChunkBackwardKV_impl(const A* q, const A* k, const A* v, const float* gbuf,
                                                    const float* states, A* dk, A* dv, int L, int H, int f, int dh) {
    if (linStrips(dh) <= 5) {
        linChunkBackwardKVBody<5, A>(q, k, v, gbuf, states, dk, dv, L, H, f, dh);
    } else {
        linChunkBackwardKVBody<LIN_NJ, A>(q, k, v, gbuf, states, dk, dv, L, H, f, dh);
    }
}

}  // namespace b4j

B4J_KERNEL(linearAttentionChunkStates, 256, (const A* k, const A* v, float* states, int L, int H, int f, int dh),
           (k, v, states, L, H, f, dh))
B4J_KERNEL(linearAttentionScan, 256, (float* states, long long count, int nC, int perHead, int reverse),
           (states, count, nC, perHead, reverse))
B4J_KERNEL(linearAttentionChunkForward, 256,
           (const A* q, const A* k, const A* v, const float* states, A* out, int L, int H, int f, int dh, float eps),
           (q, k, v, states, out, L, H, f, dh, eps))
B4J_KERNEL(linearAttentionChunkBackwardQ, 256,
           (const A* q, const A* k, const A* v, const A* dout, float* states, float* gbuf, A* dq, int L, int H, int f,
            int dh, float eps),
           (q, k, v, dout, states, gbuf, dq, L, H, f, dh, eps))
B4J_KERNEL(linearAttentionChunkBackwardKV, 256,
           (const A* q, const A* k, const A* v, const float* gbuf, const float* states, A* dk, A* dv, int L, int H,
            int f, int dh),
           (q, k, v, gbuf, states, dk, dv, L, H, f, dh))

// the tensor-core kernels for bf16 (they use LinChunk, linChunkOf and the constants above)
#include "train_linear_mma.cuh"
