// Tensor-core training kernels of Taylor linear attention for bf16 activations (included by train_linear.cuh): the
// chunked algorithm of train_linear.cuh (chunks of 64 tokens, the same [E, dh + 1] float32 chunk states in the same
// scratch), with every matrix product on mma.sync.m16n8k16 (bf16 operands, float32 accumulation). Launch shapes,
// the cases it serves and the scratch: io.based4j.cuda.MixerTrainKernels.
//
// Four kernels:
//   states       U_c = phi(K_c)^T V'_c summed over the chunks in a running float32 state held in the mma accumulators
//                of a block per (64 features, head, sequence) that walks its sequence's chunks in order, writing
//                the exclusive prefix S_c before each chunk (the separate scan is gone); run in reverse over
//                (Q, G') it gives the exclusive suffix dS_c = sum_{c' > c} phi(Q_c')^T G'_c'
//   forward      [num | den] = A V' + phi(Q) S_c, y = num / (den + eps); a_ts = 1 + x + x^2/2, x = q.k / sqrt(f)
//   backward q   the forward again, G' = [dout / D, -dout.y / D] (bf16, kept in the scratch),
//                dq += P K + J^T (G' S_c^T) with P_ts = (G'_t . V'_s)(1 + x_ts) / sqrt(f)
//   backward kv  dv += A^T G' + phi(K) dS_c, dk += P^T Q + J^T (V' dS_c^T)
// A block of 4 warps takes a chunk (64 rows, 16 per warp) or, in the states kernel, a slab of 64 features (16 per
// warp). phi is never stored: each lane forms the elements of its own A fragments from q or k in shared memory and
// a table of (i, j, coefficient) per feature, rounding (x_i x_j) c to bf16. The in-chunk scores, their gradients
// and P stay in registers between products (an accumulator fragment of two 8-column tiles is the A fragment of the
// next product). A chunk state enters a product as a bf16 copy of a 64-feature tile in shared memory; the sums
// themselves (the running state, every accumulator) are float32. The feature map's transpose J^T runs on the CUDA
// cores from a per-warp float32 tile of dphi. Every sum is in a fixed order: deterministic.
//
// The per-chunk parts (lmmForwardChunk, lmmBackwardQChunk, lmmBackwardKVChunk) take the chunk state from a source:
// the float32 states in global memory, a 64-feature tile at a time (these kernels), or the whole state kept in
// shared memory by the scan kernels of train_linear_scan.cuh (included at the end), which walk a sequence's chunks
// with the running state on chip.
//
// Requirements (checked by MixerTrainKernels): bf16, f a multiple of 8 up to 32, dh a multiple of 8 from 16 to 120,
// q, k, v, dout and the scratch 16-byte aligned (rows are copied by cp.async in 16-byte pieces).
#pragma once

namespace b4j {

typedef __nv_bfloat16 lmm_bf16;

constexpr int LMM_THREADS = 128;
constexpr int LMM_ROWS = 16;        // rows (or features) per warp
constexpr int LMM_SLAB = 64;        // features per state tile and per block of the states kernel
constexpr int LMM_DPHI_LD = 72;     // row stride of a warp's float32 dphi tile: 8-byte stores meet no bank twice
constexpr int LMM_MAX_F = 32;       // feature dims up to 32: dx fragments of at most 4 tiles of 8
constexpr unsigned LMM_FULL = 0xffffffffu;

/**
 * The sizes of a (feature dim f, head dim dh) pair. Rows of bf16 tiles are padded to an odd number of 16-byte
 * pieces, so that the 8 rows an ldmatrix reads fall in 8 different bank groups.
 */
struct LmmDims {
    int f, dh;
    int E;      // features, 1 + f + f(f+1)/2
    int epad;   // E rounded up to 16 (a k-step); the table's length
    int fpad;   // f rounded up to 16; column fpad of the q and k tiles holds 1 (the table's "no factor")
    int ldX;    // row stride of the q and k tiles: fpad + 8
    int nt;     // 8-column tiles over the dh + 1 value columns: dh / 8 + 1 (column dh, the normaliser, opens the last)
    int kv;     // 16-column k-steps over the dh + 1 value columns
    int ldV;    // row stride of the V', G' and state tiles: 16 kv + 8
    int dpS;    // row length of G' in the scratch (bf16): 8 nt = dh + 8
};

__host__ __device__ __forceinline__ LmmDims lmmDims(int f, int dh) {
    LmmDims d;
    d.f = f;
    d.dh = dh;
    d.E = 1 + f + f * (f + 1) / 2;
    d.epad = (d.E + 15) / 16 * 16;
    d.fpad = (f + 15) / 16 * 16;
    d.ldX = d.fpad + 8;
    d.nt = dh / 8 + 1;
    d.kv = (dh + 16) / 16;
    d.ldV = 16 * d.kv + 8;
    d.dpS = dh + 8;
    return d;
}

/**
 * Byte offsets of the chunk kernels' tiles in dynamic shared memory, and their end: the one layout that lmmCarve
 * carves and lmmChunkSmemBytes counts. Each offset is the one before plus the bytes of the tile that starts there
 * (named beside it); the forward ends at gp (no G', dphi or dx). stateRows: the rows of the state tile, 64 (a tile
 * rounded from the float32 states a slab at a time) or epad (the whole rounded state of the rounded-state kernels).
 */
struct LmmLayout {
    int tab, xq, xk, vp, st, gp, dphi, dx, end;
};

__host__ __device__ __forceinline__ LmmLayout lmmLayout(const LmmDims& d, bool backward, int stateRows = LMM_SLAB) {
    const int warps = LMM_THREADS / 32;
    LmmLayout o;
    o.tab = 0;
    o.xq = o.tab + 8 * d.epad;                                              // int2 [epad] the feature table
    o.xk = o.xq + 2 * 64 * d.ldX;                                           // bf16 [64][ldX] q rows
    o.vp = o.xk + 2 * 64 * d.ldX;                                           // bf16 [64][ldX] k rows
    o.st = o.vp + 2 * 64 * d.ldV;                                           // bf16 [64][ldV] V'
    o.gp = o.st + 2 * stateRows * d.ldV;                                    // bf16 [stateRows][ldV] a state tile
    if (!backward) {
        o.dphi = o.dx = o.end = o.gp;
        return o;
    }
    o.dphi = o.gp + 2 * 64 * d.ldV;                                         // bf16 [64][ldV] G'
    o.dx = o.dphi + 4 * warps * LMM_ROWS * LMM_DPHI_LD;                     // float [warps][16][LMM_DPHI_LD]
    o.end = o.dx + 4 * warps * LMM_ROWS * d.fpad;                           // float [warps][16][fpad]
    return o;
}

/**
 * Dynamic shared memory of the chunk kernels (mirrored by MixerTrainKernels.linearMmaSharedBytes and, with the
 * whole state, linearMmaRoundedSharedBytes).
 */
__host__ __device__ __forceinline__ int lmmChunkSmemBytes(const LmmDims& d, bool backward, int stateRows = LMM_SLAB) {
    return lmmLayout(d, backward, stateRows).end;
}

/** Dynamic shared memory of the states kernel: two buffers of q or k rows and of V' or G' rows. */
__host__ __device__ __forceinline__ int lmmStatesSmemBytes(const LmmDims& d) {
    return 2 * (2 * 64 * d.ldX) + 2 * (2 * 64 * d.ldV);
}

// ------------------------------------------------------------------------------------------------ warp primitives

#ifndef B4J_LMM_HOST_PRIMITIVES
__device__ __forceinline__ unsigned lmmSmemAddr(const void* p) {
    return (unsigned)__cvta_generic_to_shared(p);
}

/** 16 bytes global -> shared, asynchronously (cp.async.cg); both addresses 16-byte aligned. */
__device__ __forceinline__ void lmmCopy16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(lmmSmemAddr(dst)), "l"(src) : "memory");
}

__device__ __forceinline__ void lmmCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

/** Waits until at most N of this thread's committed copy groups are pending. */
template <int N>
__device__ __forceinline__ void lmmWait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/** ldmatrix x4: lane l gives the address of row l % 8 of matrix l / 8; r[i] is the lane's part of matrix i. */
__device__ __forceinline__ void lmmLdsm4(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(lmmSmemAddr(p))
                 : "memory");
}

/** ldmatrix x4 transposed: the lane's part of matrix i is its column (l % 4) * 2, + 1 at row l / 4. */
__device__ __forceinline__ void lmmLdsm4T(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(lmmSmemAddr(p))
                 : "memory");
}

/** ldmatrix x2 transposed (lanes 0-15 give the addresses). */
__device__ __forceinline__ void lmmLdsm2T(unsigned (&r)[2], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(lmmSmemAddr(p))
                 : "memory");
}

/** d += a b: one m16n8k16 product, bf16 operands, float32 accumulators. */
__device__ __forceinline__ void lmmMma(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

/** Two floats rounded to bf16 in one register, lo in the low half (the lower column of a fragment). */
__device__ __forceinline__ unsigned lmmPack(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&v);
}

__device__ __forceinline__ int lmmWarp() { return threadIdx.x >> 5; }
__device__ __forceinline__ int lmmLane() { return threadIdx.x & 31; }

// Fragment layouts of m16n8k16 (g = lane / 4, q = lane % 4):
//   A (16 x 16): a[0] = (g, 2q..2q+1), a[1] = (g+8, 2q..), a[2] = (g, 2q+8..2q+9), a[3] = (g+8, 2q+8..)
//   B (16 x 8):  b[0] = (k 2q..2q+1, n g), b[1] = (k 2q+8..2q+9, n g)
//   C (16 x 8):  c[0], c[1] = (g, 2q), (g, 2q+1); c[2], c[3] = (g+8, 2q), (g+8, 2q+1)

/** A fragment of rows m0.., k-step k0 of a row-major [m][k] tile. */
__device__ __forceinline__ void lmmLoadA(unsigned (&a)[4], const lmm_bf16* tile, int ld, int m0, int k0) {
    const int l = lmmLane();
    lmmLdsm4(a, tile + (m0 + (l & 7) + 8 * ((l >> 3) & 1)) * ld + k0 + 8 * (l >> 4));
}

/**
 * B fragments of the 8-column tiles n0 and n0 + 8, k-step k0, of a tile stored n-major ([n][k], so B = tile^T):
 * b[0], b[1] for n0 and b[2], b[3] for n0 + 8.
 */
__device__ __forceinline__ void lmmLoadBnk(unsigned (&b)[4], const lmm_bf16* tile, int ld, int n0, int k0) {
    const int l = lmmLane();
    lmmLdsm4(b, tile + (n0 + (l & 7) + 8 * (l >> 4)) * ld + k0 + 8 * ((l >> 3) & 1));
}

/** As lmmLoadBnk for a tile stored k-major ([k][n], B = tile), by the transposing ldmatrix. */
__device__ __forceinline__ void lmmLoadBkn(unsigned (&b)[4], const lmm_bf16* tile, int ld, int k0, int n0) {
    const int l = lmmLane();
    lmmLdsm4T(b, tile + (k0 + (l & 7) + 8 * ((l >> 3) & 1)) * ld + n0 + 8 * (l >> 4));
}

/** The B fragment of the one 8-column tile n0 of a [k][n] tile (lanes 16-31 repeat the addresses of 0-15). */
__device__ __forceinline__ void lmmLoadBkn1(unsigned (&b)[2], const lmm_bf16* tile, int ld, int k0, int n0) {
    const int l = lmmLane();
    lmmLdsm2T(b, tile + (k0 + (l & 7) + 8 * ((l >> 3) & 1)) * ld + n0);
}

/** acc[j] += a B for the 8-column tiles j < nt of a [k][n] tile, k-step k0 (NT even: the tiles go in pairs). */
template <int NT>
__device__ __forceinline__ void lmmTimesTile(const unsigned (&a)[4], const lmm_bf16* tile, int ld, int k0, int nt,
                                             float (&acc)[NT][4]) {
    static_assert(NT % 2 == 0, "tiles go in pairs");
#pragma unroll
    for (int j = 0; j < NT; j += 2) {
        if (j + 1 < nt) {
            unsigned b[4];
            lmmLoadBkn(b, tile, ld, k0, 8 * j);
            lmmMma(acc[j], a, b[0], b[1]);
            lmmMma(acc[j + 1], a, b[2], b[3]);
        } else if (j < nt) {
            unsigned b[2];
            lmmLoadBkn1(b, tile, ld, k0, 8 * j);
            lmmMma(acc[j], a, b[0], b[1]);
        }
    }
}

/** The A fragments of a [16][64] accumulator (8 tiles of 8 columns) as the left operand over 64 (4 k-steps). */
__device__ __forceinline__ void lmmPackA(const float (&c)[8][4], unsigned (&a)[4][4]) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        a[kk][0] = lmmPack(c[2 * kk][0], c[2 * kk][1]);
        a[kk][1] = lmmPack(c[2 * kk][2], c[2 * kk][3]);
        a[kk][2] = lmmPack(c[2 * kk + 1][0], c[2 * kk + 1][1]);
        a[kk][3] = lmmPack(c[2 * kk + 1][2], c[2 * kk + 1][3]);
    }
}

template <int R, int C>
__device__ __forceinline__ void lmmZeroAcc(float (&acc)[R][C]) {
#pragma unroll
    for (int i = 0; i < R; i++) {
#pragma unroll
        for (int j = 0; j < C; j++) acc[i][j] = 0.0f;
    }
}

// ------------------------------------------------------------------------------------------------ block helpers

/** Zeroes bytes (a multiple of 16) of shared memory. */
__device__ __forceinline__ void lmmZero(void* smem, int bytes) {
    uint4* p = reinterpret_cast<uint4*>(smem);
    for (int i = threadIdx.x; i < bytes / 16; i += LMM_THREADS) p[i] = make_uint4(0u, 0u, 0u, 0u);
}

/**
 * Rows [0, n) of a chunk by cp.async: dst[t][0, w) = src[t * stride + 0, w) (w a multiple of 8, 16-byte aligned);
 * rows [n, 64) get zeros. The caller commits and waits.
 */
__device__ __forceinline__ void lmmLoadRows(lmm_bf16* dst, int ld, const lmm_bf16* src, i64 stride, int n, int w) {
    const int pieces = w / 8;
    for (int idx = threadIdx.x; idx < 64 * pieces; idx += LMM_THREADS) {
        const int t = idx / pieces;
        const int p = idx - t * pieces;
        lmm_bf16* d = dst + t * ld + 8 * p;
        if (t < n) {
            lmmCopy16(d, src + t * stride + 8 * p);
        } else {
            *reinterpret_cast<uint4*>(d) = make_uint4(0u, 0u, 0u, 0u);
        }
    }
}

/**
 * Feature a of the merged Taylor map: phi_a(x) = (x_i x_j) c, with index fpad standing for the constant 1 (column
 * fpad of the q and k tiles); features past E have c = 0.
 */
__device__ __forceinline__ void lmmFeature(int a, const LmmDims& d, const Taylor& tc, int& i, int& j, float& c) {
    const int f = d.f;
    i = d.fpad;
    j = d.fpad;
    c = 0.0f;
    if (a == 0) {
        c = 1.0f;
    } else if (a <= f) {
        i = a - 1;
        c = tc.lin;
    } else if (a < d.E) {
        int p = a - 1 - f;
        int r = 0;
        while (p >= f - r) {
            p -= f - r;
            r++;
        }
        i = r;
        j = r + p;
        c = i == j ? tc.diag : tc.cross;
    }
}

/** phi_a(x) as featurize rounds it, (x_i x_j) c, from a bf16 row. */
__device__ __forceinline__ float lmmPhi(const lmm_bf16* x, int i, int j, float c) {
    return __fmul_rn(__fmul_rn(__bfloat162float(x[i]), __bfloat162float(x[j])), c);
}

/**
 * acc += phi(X)^T R over one 64-token tile: X the tokens' q or k rows (xs, stride d.ldX), R their rows of a
 * 64-row tile (rs, stride d.ldV); the lane's A rows are its two features (ia, ja, ca) and (ib, jb, cb) of the table,
 * each element of phi formed from xs and rounded to bf16 (lmmPhi).
 */
template <int NT>
__device__ __forceinline__ void lmmPhiTransposedTimes(const LmmDims& d, const lmm_bf16* xs, const lmm_bf16* rs, int l,
                                                      int ia, int ja, float ca, int ib, int jb, float cb,
                                                      float (&acc)[NT][4]) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        // A = phi(X)^T: rows the lane's features, columns the tokens 16 kk + 2q (+1, +8, +9)
        const lmm_bf16* x0 = xs + (16 * kk + 2 * (l & 3)) * d.ldX;
        const lmm_bf16* x1 = x0 + d.ldX;
        const lmm_bf16* x8 = x0 + 8 * d.ldX;
        const lmm_bf16* x9 = x8 + d.ldX;
        unsigned a[4];
        a[0] = lmmPack(lmmPhi(x0, ia, ja, ca), lmmPhi(x1, ia, ja, ca));
        a[1] = lmmPack(lmmPhi(x0, ib, jb, cb), lmmPhi(x1, ib, jb, cb));
        a[2] = lmmPack(lmmPhi(x8, ia, ja, ca), lmmPhi(x9, ia, ja, ca));
        a[3] = lmmPack(lmmPhi(x8, ib, jb, cb), lmmPhi(x9, ib, jb, cb));
        lmmTimesTile<NT>(a, rs, d.ldV, 16 * kk, d.nt, acc);
    }
}

/** The A fragment of phi(x) for rows m0 + g, m0 + g + 8 and the features a0 .. a0 + 15 (a table entry each). */
__device__ __forceinline__ void lmmPhiRows(unsigned (&a)[4], const lmm_bf16* x, int ldX, const int2* tab, int m0,
                                           int a0) {
    const int l = lmmLane();
    const lmm_bf16* x0 = x + (m0 + (l >> 2)) * ldX;
    const lmm_bf16* x1 = x0 + 8 * ldX;
    float p0[4], p1[4];
#pragma unroll
    for (int u = 0; u < 4; u++) {
        const int2 e = tab[a0 + 2 * (l & 3) + (u & 1) + 8 * (u >> 1)];
        const int i = e.x & 0xffff;
        const int j = e.x >> 16;
        const float c = __int_as_float(e.y);
        p0[u] = lmmPhi(x0, i, j, c);
        p1[u] = lmmPhi(x1, i, j, c);
    }
    a[0] = lmmPack(p0[0], p0[1]);
    a[1] = lmmPack(p1[0], p1[1]);
    a[2] = lmmPack(p0[2], p0[3]);
    a[3] = lmmPack(p1[2], p1[3]);
}

/** x[j][e] = rows . cols over the feature dims: the warp's 16 rows (m0 = 16 warp) against the 64 columns. */
__device__ __forceinline__ void lmmDots(const lmm_bf16* rows, const lmm_bf16* cols, const LmmDims& d,
                                        float (&x)[8][4]) {
    lmmZeroAcc(x);
    const int m0 = LMM_ROWS * lmmWarp();
    for (int k0 = 0; k0 < d.fpad; k0 += 16) {
        unsigned a[4];
        lmmLoadA(a, rows, d.ldX, m0, k0);
#pragma unroll
        for (int jp = 0; jp < 4; jp++) {
            unsigned b[4];
            lmmLoadBnk(b, cols, d.ldX, 16 * jp, k0);
            lmmMma(x[2 * jp], a, b[0], b[1]);
            lmmMma(x[2 * jp + 1], a, b[2], b[3]);
        }
    }
}

/**
 * Element e of accumulator tile j of the warp's [16][64] fragment as (query t, key s) of the chunk: rows are queries
 * (keysAreRows false) or keys. live: s <= t < n (causal, inside the chunk).
 */
__device__ __forceinline__ bool lmmLive(int j, int e, bool keysAreRows, int n) {
    const int l = lmmLane();
    const int row = LMM_ROWS * lmmWarp() + (l >> 2) + 8 * (e >> 1);
    const int col = 8 * j + 2 * (l & 3) + (e & 1);
    const int t = keysAreRows ? col : row;
    const int s = keysAreRows ? row : col;
    return s <= t && t < n;
}

/** The in-chunk scores a_ts = 1 + x + x^2/2, x = q_t.k_s / sqrt(f) (0 where not live), as A fragments. */
__device__ __forceinline__ void lmmScores(const float (&dot)[8][4], float invSqrtF, bool keysAreRows, int n,
                                          unsigned (&sa)[4][4]) {
    float a[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float v = 0.0f;
            if (lmmLive(j, e, keysAreRows, n)) {
                const float x = dot[j][e] * invSqrtF;
                v = 1.0f + x + 0.5f * x * x;
            }
            a[j][e] = v;
        }
    }
    lmmPackA(a, sa);
}

/** P = da (1 + x) / sqrt(f) where live (the gradient of q_t.k_s), as A fragments; da, dot as lmmDots leaves them. */
__device__ __forceinline__ void lmmScoreGradients(const float (&da)[8][4], const float (&dot)[8][4], float invSqrtF,
                                                  bool keysAreRows, int n, unsigned (&pa)[4][4]) {
    float p[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            p[j][e] = lmmLive(j, e, keysAreRows, n) ? da[j][e] * (1.0f + dot[j][e] * invSqrtF) * invSqrtF : 0.0f;
        }
    }
    lmmPackA(p, pa);
}

/**
 * st = a bf16 copy of rows a0 .. a0 + 63 of a state [E][dh + 1] in global memory (rows past E zero; the columns
 * past dh stay as lmmZero left them). Reads the contiguous rows with LIN_INFLIGHT loads per thread in flight.
 */
__device__ __forceinline__ void lmmLoadStateTile(const float* S, int a0, const LmmDims& d, lmm_bf16* st) {
    const int dp = d.dh + 1;
    const int rows = min(LMM_SLAB, d.E - a0);
    const float* src = S + (i64)a0 * dp;
    const int count = rows * dp;
    for (int base = threadIdx.x; base < count; base += LIN_INFLIGHT * LMM_THREADS) {
        float r[LIN_INFLIGHT];
#pragma unroll
        for (int u = 0; u < LIN_INFLIGHT; u++) {
            const int idx = base + u * LMM_THREADS;
            r[u] = idx < count ? src[idx] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < LIN_INFLIGHT; u++) {
            const int idx = base + u * LMM_THREADS;
            if (idx < count) {
                const int a = idx / dp;
                st[a * d.ldV + idx - a * dp] = __float2bfloat16_rn(r[u]);
            }
        }
    }
    for (int idx = threadIdx.x; idx < (LMM_SLAB - rows) * dp; idx += LMM_THREADS) {
        const int a = idx / dp;
        st[(rows + a) * d.ldV + idx - a * dp] = __float2bfloat16_rn(0.0f);
    }
}

/** The chunk tiles of shared memory, at the offsets of lmmLayout (gp, dphi and dx only in the backward). */
struct LmmSmem {
    int2* tab;       // [epad] feature a: (i | j << 16, bits of c)
    lmm_bf16* xq;    // [64][ldX] q rows, zero past f, 1 at column fpad
    lmm_bf16* xk;    // [64][ldX] k rows
    lmm_bf16* vp;    // [64][ldV] V' = [v, 1, 0..] (zero rows past the chunk)
    lmm_bf16* st;    // [64][ldV] a tile of 64 features of a state
    lmm_bf16* gp;    // [64][ldV] dout, then G' = [g, r, 0..] (backward)
    float* dphi;     // [4][16][LMM_DPHI_LD] a dphi tile per warp (backward)
    float* dx;       // [4][16][fpad] dq or dk of the warp's rows (backward)
};

__device__ __forceinline__ LmmSmem lmmCarve(unsigned char* smem, const LmmDims& d, bool backward,
                                            int stateRows = LMM_SLAB) {
    const LmmLayout o = lmmLayout(d, backward, stateRows);
    LmmSmem m;
    m.tab = reinterpret_cast<int2*>(smem + o.tab);
    m.xq = reinterpret_cast<lmm_bf16*>(smem + o.xq);
    m.xk = reinterpret_cast<lmm_bf16*>(smem + o.xk);
    m.vp = reinterpret_cast<lmm_bf16*>(smem + o.vp);
    m.st = reinterpret_cast<lmm_bf16*>(smem + o.st);
    m.gp = reinterpret_cast<lmm_bf16*>(smem + o.gp);
    m.dphi = reinterpret_cast<float*>(smem + o.dphi);
    m.dx = reinterpret_cast<float*>(smem + o.dx);
    return m;
}

/**
 * Where a product finds the chunk state: tile(a0) is rows a0 .. a0 + 63 of the state as bf16 [feature][ldV], ready
 * for every warp of the block. LmmStateFromGlobal rounds a float32 state [E][dh + 1] in global memory into the one
 * tile of shared memory (between two barriers: the block takes the tiles in step); LmmStateInShared points into a
 * whole bf16 state kept in shared memory by a scan kernel (no copy, no barrier).
 */
struct LmmStateFromGlobal {
    const float* S;
    lmm_bf16* st;
    __device__ __forceinline__ const lmm_bf16* tile(int a0, const LmmDims& d) const {
        __syncthreads();
        lmmLoadStateTile(S, a0, d, st);
        __syncthreads();
        return st;
    }
};

struct LmmStateInShared {
    const lmm_bf16* s;  // [epad][ldV]
    __device__ __forceinline__ const lmm_bf16* tile(int a0, const LmmDims& d) const { return s + a0 * d.ldV; }
};

/**
 * The start of every chunk kernel: zeroed tiles (of the layout with stateRows state rows), the ones of the q and k
 * tiles, the feature table, and the copies of the chunk's q, k and v rows issued (V' with its column of ones). The
 * caller adds its own copies, then waits.
 */
__device__ __forceinline__ void lmmChunkStart(unsigned char* smem, const LmmSmem& m, const LmmDims& d, bool backward,
                                              const LinChunk& c, int H, const lmm_bf16* q, const lmm_bf16* k,
                                              const lmm_bf16* v, int stateRows = LMM_SLAB) {
    lmmZero(smem, lmmChunkSmemBytes(d, backward, stateRows));
    __syncthreads();
    const Taylor tc = taylorOf(d.f);
    for (int a = threadIdx.x; a < d.epad; a += LMM_THREADS) {
        int i, j;
        float cf;
        lmmFeature(a, d, tc, i, j, cf);
        m.tab[a] = make_int2(i | (j << 16), __float_as_int(cf));
    }
    const __nv_bfloat16 one = __float2bfloat16_rn(1.0f);
    const __nv_bfloat16 zero = __float2bfloat16_rn(0.0f);
    for (int t = threadIdx.x; t < 64; t += LMM_THREADS) {
        m.xq[t * d.ldX + d.fpad] = one;
        m.xk[t * d.ldX + d.fpad] = one;
        m.vp[t * d.ldV + d.dh] = t < c.n ? one : zero;
    }
    const i64 qkCols = (i64)H * d.f;
    const i64 vCols = (i64)H * d.dh;
    lmmLoadRows(m.xq, d.ldX, q + c.row0 * qkCols + (i64)c.head * d.f, qkCols, c.n, d.f);
    lmmLoadRows(m.xk, d.ldX, k + c.row0 * qkCols + (i64)c.head * d.f, qkCols, c.n, d.f);
    lmmLoadRows(m.vp, d.ldV, v + c.row0 * vCols + (i64)c.head * d.dh, vCols, c.n, d.dh);
}

/** acc += phi(x rows of the warp) S over every feature, S the state [E][dh + 1] of the chunk. */
template <int NT, typename State>
__device__ __forceinline__ void lmmPhiTimesState(const LmmSmem& m, const LmmDims& d, const lmm_bf16* x,
                                                 const State& S, float (&acc)[NT][4]) {
    const int m0 = LMM_ROWS * lmmWarp();
    for (int a0 = 0; a0 < d.E; a0 += LMM_SLAB) {
        const lmm_bf16* st = S.tile(a0, d);
        const int ks = min(LMM_SLAB, d.epad - a0) / 16;
        for (int kk = 0; kk < ks; kk++) {
            unsigned a[4];
            lmmPhiRows(a, x, d.ldX, m.tab, m0, a0 + 16 * kk);
            lmmTimesTile<NT>(a, st, d.ldV, 16 * kk, d.nt, acc);
        }
    }
}

/** [num | den] of the warp's rows: acc = A V' + phi(Q) S_c (the state only after the first chunk). */
template <int NT, typename State>
__device__ __forceinline__ void lmmNumerators(const LmmSmem& m, const LmmDims& d, const LinChunk& c,
                                              const State& S, float (&acc)[NT][4]) {
    float dot[8][4];
    lmmDots(m.xq, m.xk, d, dot);
    unsigned sa[4][4];
    lmmScores(dot, taylorOf(d.f).cross, false, c.n, sa);
    lmmZeroAcc(acc);
#pragma unroll
    for (int kk = 0; kk < 4; kk++) lmmTimesTile<NT>(sa[kk], m.vp, d.ldV, 16 * kk, d.nt, acc);
    if (c.chunk > 0) lmmPhiTimesState<NT>(m, d, m.xq, S, acc);
}

/** den + eps of the rows g and g + 8 of the warp (column dh opens tile nt - 1, held by the lanes with q = 0). */
template <int NT>
__device__ __forceinline__ void lmmDenominators(const float (&acc)[NT][4], int nt, float eps, float& D0, float& D1) {
    // weights 0 and 1 (exact), not a selection by j == nt - 1, which the compiler would turn into acc[nt - 1], an
    // indexed array in local memory
    float den0 = 0.0f, den1 = 0.0f;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const float w = j == nt - 1 ? 1.0f : 0.0f;
        den0 = fmaf(w, acc[j][0], den0);
        den1 = fmaf(w, acc[j][2], den1);
    }
    const int lead = lmmLane() & ~3;
    D0 = __shfl_sync(LMM_FULL, den0, lead) + eps;
    D1 = __shfl_sync(LMM_FULL, den1, lead) + eps;
}

/** The state of each (sequence, head, chunk): [E][dh + 1] floats. */
__device__ __forceinline__ const float* lmmStateOf(const float* states, i64 bh, int nC, int chunk, const LmmDims& d) {
    return states + ((bh * nC + chunk) * (i64)d.E) * (d.dh + 1);
}

/**
 * Where the rounded state of each (sequence, head, chunk) of the rounded-state kernels starts (in bf16 elements):
 * bf16 [epad][dpS], the float32 state rounded to bf16 as the chunk kernels round the tiles they read (rows past E
 * and columns past dh zero), in rows of whole 16-byte pieces.
 */
__device__ __forceinline__ i64 lmmRoundedStateAt(i64 bh, int nC, int chunk, const LmmDims& d) {
    return (bh * nC + chunk) * (i64)d.epad * d.dpS;
}

/**
 * Issues the copies (cp.async) of a rounded state [epad][dpS] into st [epad][ldV] (the columns from dpS on keep
 * the zeros lmmZero left). The caller commits and waits.
 */
__device__ __forceinline__ void lmmLoadRoundedState(lmm_bf16* st, const LmmDims& d, const lmm_bf16* src) {
    const int pieces = d.dpS / 8;
    for (int idx = threadIdx.x; idx < d.epad * pieces; idx += LMM_THREADS) {
        const int a = idx / pieces;
        const int p = idx - a * pieces;
        lmmCopy16(st + a * d.ldV + 8 * p, src + (i64)a * d.dpS + 8 * p);
    }
}

/** The factors (lo <= hi) of quadratic feature a (17 <= a < 153) of f = 16: a = 17 + lo 16 - lo (lo - 1) / 2 + hi - lo. */
struct LmmPair16 {
    int lo, hi;
};

__host__ __device__ constexpr LmmPair16 lmmPair16(int a) {
    int r = a - 17;
    int lo = 0;
    while (r >= 16 - lo) {
        r -= 16 - lo;
        lo++;
    }
    return LmmPair16{lo, lo + r};
}

constexpr int LMM_E16 = 1 + 16 + 16 * 17 / 2;  // the features of f = 16

/** Feature A's part of J^T for f = 16 (dphi value g): the linear term, or both factors of a product. */
template <int A>
__device__ __forceinline__ void lmmFeatureGrad16One(float g, const float (&x)[16], const Taylor& tc,
                                                    float (&acc)[16]) {
    if constexpr (A >= 1 && A <= 16) {
        acc[A - 1] = fmaf(tc.lin, g, acc[A - 1]);
    } else if constexpr (A > 16 && A < LMM_E16) {
        constexpr LmmPair16 p = lmmPair16(A);
        if constexpr (p.lo == p.hi) {
            acc[p.lo] = fmaf((2.0f * tc.diag) * g, x[p.lo], acc[p.lo]);
        } else {
            const float cg = tc.cross * g;
            acc[p.lo] = fmaf(cg, x[p.hi], acc[p.lo]);
            acc[p.hi] = fmaf(cg, x[p.lo], acc[p.hi]);
        }
    }
}

/** Features A0 + 4Q onwards of a slab for f = 16, four a 16-byte load of the lane's dphi row. */
template <int A0, int Q>
__device__ __forceinline__ void lmmFeatureGrad16From(const float4* dp, const float (&x)[16], const Taylor& tc,
                                                     float (&acc)[16]) {
    if constexpr (Q < LMM_SLAB / 4 && A0 + 4 * Q < LMM_E16) {
        const float4 g = dp[Q];
        lmmFeatureGrad16One<A0 + 4 * Q>(g.x, x, tc, acc);
        lmmFeatureGrad16One<A0 + 4 * Q + 1>(g.y, x, tc, acc);
        lmmFeatureGrad16One<A0 + 4 * Q + 2>(g.z, x, tc, acc);
        lmmFeatureGrad16One<A0 + 4 * Q + 3>(g.w, x, tc, acc);
        lmmFeatureGrad16From<A0, Q + 1>(dp, x, tc, acc);
    }
}

/**
 * lmmFeatureGrad for f = 16 (the released checkpoints' feature dimension): a lane takes a row (lanes 0 to 15), every
 * feature's factors known at compile time, so that J^T is two fused multiply-adds a product feature with no index
 * arithmetic or loop; the row's sums are added to dx once a slab.
 */
__device__ __forceinline__ void lmmFeatureGrad16(const float* dphi, const lmm_bf16* x, int m0, int a0,
                                                 const Taylor& tc, float* dx) {
    const int t = lmmLane();
    if (t >= LMM_ROWS) return;
    float xr[16];
    const uint4* xp = reinterpret_cast<const uint4*>(x + (m0 + t) * (16 + 8));
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const uint4 w = xp[h];
        const unsigned u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float2 two = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u[e]));
            xr[8 * h + 2 * e] = two.x;
            xr[8 * h + 2 * e + 1] = two.y;
        }
    }
    float acc[16];
#pragma unroll
    for (int i = 0; i < 16; i++) acc[i] = 0.0f;
    const float4* dp = reinterpret_cast<const float4*>(dphi + t * LMM_DPHI_LD);
    if (a0 == 0) {
        lmmFeatureGrad16From<0, 0>(dp, xr, tc, acc);
    } else if (a0 == LMM_SLAB) {
        lmmFeatureGrad16From<LMM_SLAB, 0>(dp, xr, tc, acc);
    } else {
        lmmFeatureGrad16From<2 * LMM_SLAB, 0>(dp, xr, tc, acc);
    }
    float4* out = reinterpret_cast<float4*>(dx + t * 16);
#pragma unroll
    for (int q = 0; q < 4; q++) {
        float4 o = out[q];
        o.x += acc[4 * q];
        o.y += acc[4 * q + 1];
        o.z += acc[4 * q + 2];
        o.w += acc[4 * q + 3];
        out[q] = o;
    }
}

/**
 * dx[t][i] += J^T dphi for the warp's rows and the features a0 .. a0 + 63: x_i enters feature 1 + i (factor
 * f^-1/4) and the pairs (min(i, j), max(i, j)) (derivative c x_j, doubled for j = i). The pair index grows with j,
 * so cur[u] carries each element's next j from tile to tile. Element u of the lane: idx = lane + 32 u < 16 f,
 * row idx / f, column idx % f.
 * f = 16 takes lmmFeatureGrad16.
 */
__device__ __forceinline__ void lmmFeatureGrad(const float* dphi, const lmm_bf16* x, int m0, int a0,
                                               const LmmDims& d, const Taylor& tc, float* dx, int (&cur)[16]) {
    if (d.f == 16) {
        lmmFeatureGrad16(dphi, x, m0, a0, tc, dx);
        return;
    }
    const int f = d.f;
    const int l = lmmLane();
#pragma unroll
    for (int u = 0; u < 16; u++) {
        const int idx = l + 32 * u;
        if (idx < LMM_ROWS * f) {
            const int t = idx / f;
            const int i = idx - t * f;
            const float* dp = dphi + t * LMM_DPHI_LD;
            const lmm_bf16* xt = x + (m0 + t) * d.ldX;
            float s = 0.0f;
            const int lin = 1 + i - a0;
            if (lin >= 0 && lin < LMM_SLAB) s = tc.lin * dp[lin];
            int j = cur[u];
            for (; j < f; j++) {
                const int lo = min(i, j);
                const int a = 1 + f + lo * f - lo * (lo - 1) / 2 + (max(i, j) - lo) - a0;
                if (a >= LMM_SLAB) break;
                s = fmaf((j == i ? 2.0f * tc.diag : tc.cross) * __bfloat162float(xt[j]), dp[a], s);
            }
            cur[u] = j;
            dx[t * d.fpad + i] += s;
        }
    }
}

/** Stores a warp's [16][64] accumulator (8 tiles) into its dphi tile. */
__device__ __forceinline__ void lmmStoreDphi(const float (&c)[8][4], float* dphi) {
    const int l = lmmLane();
    float* r0 = dphi + (l >> 2) * LMM_DPHI_LD + 2 * (l & 3);
    float* r1 = r0 + 8 * LMM_DPHI_LD;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        *reinterpret_cast<float2*>(r0 + 8 * j) = make_float2(c[j][0], c[j][1]);
        *reinterpret_cast<float2*>(r1 + 8 * j) = make_float2(c[j][2], c[j][3]);
    }
}

/**
 * The in-chunk part of dq (or dk): dx = P X over the chunk (P the score gradients as A fragments, X the k or q rows
 * as [k = token][n = feature dim]), stored in the warp's dx rows.
 */
__device__ __forceinline__ void lmmScoreProduct(const unsigned (&pa)[4][4], const lmm_bf16* xOther, const LmmDims& d,
                                                float* dx) {
    float acc[LMM_MAX_F / 8][4];
    lmmZeroAcc(acc);
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
#pragma unroll
        for (int jf = 0; jf < LMM_MAX_F / 16; jf++) {
            if (16 * jf < d.fpad) {
                unsigned b[4];
                lmmLoadBkn(b, xOther, d.ldX, 16 * kk, 16 * jf);
                lmmMma(acc[2 * jf], pa[kk], b[0], b[1]);
                lmmMma(acc[2 * jf + 1], pa[kk], b[2], b[3]);
            }
        }
    }
    const int l = lmmLane();
    const int g = l >> 2;
#pragma unroll
    for (int j = 0; j < LMM_MAX_F / 8; j++) {
        const int col = 8 * j + 2 * (l & 3);
        if (col < d.f) {
            dx[g * d.fpad + col] = acc[j][0];
            dx[g * d.fpad + col + 1] = acc[j][1];
            dx[(g + 8) * d.fpad + col] = acc[j][2];
            dx[(g + 8) * d.fpad + col + 1] = acc[j][3];
        }
    }
}

/**
 * dst[row][i] += dx[t][i] for the warp's rows of the chunk (A [N, H f]): 8 elements a lane at a time (f is a multiple
 * of 8), one 16-byte read and write where dst is 16-byte aligned, so a lane makes one or two round trips to memory.
 */
__device__ __forceinline__ void lmmAddRows(const float* dx, const LmmDims& d, const LinChunk& c, int H,
                                           lmm_bf16* dst) {
    const int m0 = LMM_ROWS * lmmWarp();
    const int pieces = d.f >> 3;
    const bool wide = (reinterpret_cast<unsigned long long>(dst) & 15) == 0;
    for (int idx = lmmLane(); idx < LMM_ROWS * pieces; idx += 32) {
        const int t = idx / pieces;
        const int i0 = 8 * (idx - t * pieces);
        if (m0 + t < c.n) {
            addInto8(dst + (c.row0 + m0 + t) * H * (i64)d.f + (i64)c.head * d.f + i0, dx + t * d.fpad + i0, wide);
        }
    }
}

// ------------------------------------------------------------------------------------------------ kernels

/**
 * Where the states kernel of a prompt's forward also leaves each sequence's whole state, for the decode that follows
 * (kv null: nowhere): S [slot][realH][E][realDh] and z [slot][realH][E] in float32, the layout of the recurrent
 * kernels' state, slot slots[sequence]. The kernel's heads may be virtual heads of split columns each (head
 * h / split, columns (h % split) dh ..); z, the same in every part of a head, is written by part 0.
 */
struct LmmFinal {
    float* kv = nullptr;
    float* z = nullptr;
    const int* slots = nullptr;
    int realH = 0;
    int split = 1;
};

/** The LmmFinal of a kernel's arguments. */
__device__ __forceinline__ LmmFinal lmmFinalOf(float* kv, float* z, const int* slots, int realH, int split) {
    LmmFinal fin;
    fin.kv = kv;
    fin.z = z;
    fin.slots = slots;
    fin.realH = realH;
    fin.split = split;
    return fin;
}

/**
 * A states block's accumulators (features fa and fa + 8 of the lane, value columns 8 j + 2 (l % 4) and the next, the
 * normaliser at column dh) into the sequence's whole state (LmmFinal).
 */
template <int NT>
__device__ __forceinline__ void lmmWriteFinal(const LmmFinal& fin, const float (&acc)[NT][4], const LmmDims& d, int fa,
                                              int l, int seq, int head) {
    const int realHead = head / fin.split;
    const int part = head - realHead * fin.split;
    const int realDh = d.dh * fin.split;
    const i64 base = (i64)fin.slots[seq] * fin.realH + realHead;
    float* S = fin.kv + base * d.E * (i64)realDh + (i64)part * d.dh;
    float* z = fin.z + base * d.E;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        if (j < d.nt) {
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int a = fa + (u >> 1) * 8;
                const int col = 8 * j + 2 * (l & 3) + (u & 1);
                if (a < d.E) {
                    if (col < d.dh) {
                        S[(i64)a * realDh + col] = acc[j][u];
                    } else if (col == d.dh && part == 0) {
                        z[a] = acc[j][u];
                    }
                }
            }
        }
    }
}

/**
 * The chunk states, one block per (64 features, head, sequence) walking the chunks (reverse: from the last): before
 * each chunk its exclusive sum is written (except before the first, whose sum is zero and never read), then the
 * chunk's phi(X)^T R is added (except the last's, never needed). x: q or k; r: v (ones = 1: column dh of R is 1) or
 * G' from the scratch (rows of dpS, with r at column dh), rStride apart, head h at column h rHead, rWidth columns.
 * ROUNDED: the states are written rounded to bf16 (at lmmRoundedStateAt, bf16), else float32 [E][dh + 1].
 */
template <int NT, bool ROUNDED>
__device__ __forceinline__ void lmmStatesBody(const lmm_bf16* x, const lmm_bf16* r, i64 rStride, int rHead,
                                              int rWidth, int ones, void* states, int L, int H, int f, int dh,
                                              int reverse, const LmmFinal& fin = LmmFinal{}) {
    extern __shared__ __align__(16) unsigned char lmmShared[];
    const LmmDims d = lmmDims(f, dh);
    lmm_bf16* xb = reinterpret_cast<lmm_bf16*>(lmmShared);  // [2][64][ldX]
    lmm_bf16* rb = xb + 2 * 64 * d.ldX;                      // [2][64][ldV]
    const int warp = lmmWarp();
    const int l = lmmLane();
    const int a0 = blockIdx.x * LMM_SLAB;
    const int head = blockIdx.y;
    const int nC = (L + LIN_CHUNK - 1) / LIN_CHUNK;
    const i64 bh = (i64)blockIdx.z * H + head;
    const i64 xCols = (i64)H * f;
    lmmZero(lmmShared, lmmStatesSmemBytes(d));
    __syncthreads();
    for (int t = threadIdx.x; t < 2 * 64; t += LMM_THREADS) xb[t * d.ldX + d.fpad] = __float2bfloat16_rn(1.0f);
    // the lane's two features (rows g and g + 8 of the warp's 16)
    const Taylor tc = taylorOf(f);
    const int fa = a0 + LMM_ROWS * warp + (l >> 2);
    int ia, ja, ib, jb;
    float ca, cb;
    lmmFeature(fa, d, tc, ia, ja, ca);
    lmmFeature(fa + 8, d, tc, ib, jb, cb);
    const bool active = a0 + LMM_ROWS * warp < d.E;
    float acc[NT][4];
    lmmZeroAcc(acc);
    auto issue = [&](int it) {
        const int chunk = reverse ? nC - 1 - it : it;
        const int n = min(LIN_CHUNK, L - chunk * LIN_CHUNK);
        const i64 row0 = (i64)blockIdx.z * L + (i64)chunk * LIN_CHUNK;
        lmm_bf16* xd = xb + (it & 1) * 64 * d.ldX;
        lmm_bf16* rd = rb + (it & 1) * 64 * d.ldV;
        lmmLoadRows(xd, d.ldX, x + row0 * xCols + (i64)head * f, xCols, n, f);
        lmmLoadRows(rd, d.ldV, r + row0 * rStride + (i64)head * rHead, rStride, n, rWidth);
        if (ones) {
            for (int t = threadIdx.x; t < 64; t += LMM_THREADS) {
                rd[t * d.ldV + dh] = __float2bfloat16_rn(t < n ? 1.0f : 0.0f);
            }
        }
        lmmCommit();
    };
    // the chunk loaded at iteration it into the running state
    auto add = [&](int it) {
        if (active) {
            const lmm_bf16* xs = xb + (it & 1) * 64 * d.ldX;
            const lmm_bf16* rs = rb + (it & 1) * 64 * d.ldV;
            lmmPhiTransposedTimes<NT>(d, xs, rs, l, ia, ja, ca, ib, jb, cb, acc);
        }
    };
    if (nC > 1) issue(0);
    const int dp = dh + 1;
    for (int it = 0; it < nC; it++) {
        const int chunk = reverse ? nC - 1 - it : it;
        if (ROUNDED && it > 0 && active) {
            // an active warp's rows are below epad (it starts below E, at a multiple of 16); columns past dh are 0
            lmm_bf16* S = static_cast<lmm_bf16*>(states) + lmmRoundedStateAt(bh, nC, chunk, d);
            unsigned* r0 = reinterpret_cast<unsigned*>(S + (i64)fa * d.dpS + 2 * (l & 3));
            unsigned* r8 = reinterpret_cast<unsigned*>(S + (i64)(fa + 8) * d.dpS + 2 * (l & 3));
#pragma unroll
            for (int j = 0; j < NT; j++) {
                if (j < d.nt) {
                    r0[4 * j] = lmmPack(acc[j][0], acc[j][1]);
                    r8[4 * j] = lmmPack(acc[j][2], acc[j][3]);
                }
            }
        } else if (it > 0 && active) {
            float* S = static_cast<float*>(states) + ((bh * nC + chunk) * (i64)d.E) * dp;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                const int col = 8 * j + 2 * (l & 3);  // columns past dh (the last tile's 2q > 0) are dropped
                if (fa < d.E) {
                    if (col < dp) S[(i64)fa * dp + col] = acc[j][0];
                    if (col + 1 < dp) S[(i64)fa * dp + col + 1] = acc[j][1];
                }
                if (fa + 8 < d.E) {
                    if (col < dp) S[(i64)(fa + 8) * dp + col] = acc[j][2];
                    if (col + 1 < dp) S[(i64)(fa + 8) * dp + col + 1] = acc[j][3];
                }
            }
        }
        if (it == nC - 1) {
            if (fin.kv != nullptr) {
                // the last chunk too (its data was not needed for the prefixes), then the whole state
                issue(it);
                lmmWait<0>();
                __syncthreads();
                add(it);
                if (active) lmmWriteFinal<NT>(fin, acc, d, fa, l, (int)blockIdx.z, head);
            }
            break;
        }
        if (it + 1 < nC - 1) {
            issue(it + 1);
            lmmWait<1>();
        } else {
            lmmWait<0>();
        }
        __syncthreads();
        add(it);
        __syncthreads();
    }
}

/** y_t = num_t / (den_t + eps) for the rows of a chunk whose tiles are in m, from its state S_c. */
template <int NT, typename State>
__device__ __forceinline__ void lmmForwardChunk(const LmmSmem& m, const LmmDims& d, const LinChunk& c,
                                                const State& S, lmm_bf16* out, int H, float eps) {
    const int dh = d.dh;
    float acc[NT][4];
    lmmNumerators<NT>(m, d, c, S, acc);
    float D0, D1;
    lmmDenominators<NT>(acc, d.nt, eps, D0, D1);
    const int l = lmmLane();
    const int t0 = LMM_ROWS * lmmWarp() + (l >> 2);
    const int t1 = t0 + 8;
    const float inv0 = 1.0f / D0;
    const float inv1 = 1.0f / D1;
    lmm_bf16* o0 = out + (c.row0 + t0) * H * (i64)dh + (i64)c.head * dh;
    lmm_bf16* o1 = o0 + 8 * H * (i64)dh;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const int col = 8 * j + 2 * (l & 3);
        if (j < d.nt - 1) {
            if (t0 < c.n) {
                *reinterpret_cast<__nv_bfloat162*>(o0 + col) =
                        __floats2bfloat162_rn(acc[j][0] * inv0, acc[j][1] * inv0);
            }
            if (t1 < c.n) {
                *reinterpret_cast<__nv_bfloat162*>(o1 + col) =
                        __floats2bfloat162_rn(acc[j][2] * inv1, acc[j][3] * inv1);
            }
        }
    }
}

/** Forward output of one chunk: y_t = num_t / (den_t + eps). Grid (chunks, H, batch). */
template <int NT>
__device__ __forceinline__ void lmmForwardBody(const lmm_bf16* q, const lmm_bf16* k, const lmm_bf16* v,
                                               const float* states, lmm_bf16* out, int L, int H, int f, int dh,
                                               float eps) {
    extern __shared__ __align__(16) unsigned char lmmShared[];
    const LmmDims d = lmmDims(f, dh);
    const LmmSmem m = lmmCarve(lmmShared, d, false);
    const LinChunk c = linChunkOf(L, H);
    lmmChunkStart(lmmShared, m, d, false, c, H, q, k, v);
    lmmCommit();
    lmmWait<0>();
    __syncthreads();
    lmmForwardChunk<NT>(m, d, c, LmmStateFromGlobal{lmmStateOf(states, c.bh, c.nC, c.chunk, d), m.st}, out, H,
                        eps);
}

/**
 * The query side of a chunk whose tiles are in m (dout in m.gp, replaced by G'), from its prefix state S_c: G' into
 * gbuf, dq += P K + J^T (G' S_c^T).
 */
template <int NT, typename State>
__device__ __forceinline__ void lmmBackwardQChunk(const LmmSmem& m, const LmmDims& d, const LinChunk& c,
                                                  const State& S, lmm_bf16* gbuf, lmm_bf16* dq, int H, float eps) {
    const int dh = d.dh;
    const Taylor tc = taylorOf(d.f);
    const int warp = lmmWarp();
    const int l = lmmLane();
    const int m0 = LMM_ROWS * warp;
    {
        float acc[NT][4];
        lmmNumerators<NT>(m, d, c, S, acc);
        float D0, D1;
        lmmDenominators<NT>(acc, d.nt, eps, D0, D1);
        const int t0 = m0 + (l >> 2);
        const int t1 = t0 + 8;
        lmm_bf16* go0 = m.gp + t0 * d.ldV;
        lmm_bf16* go1 = m.gp + t1 * d.ldV;
        // r_t = -(dout_t . num_t / D_t) / D_t over the 4 lanes of the row
        float part0 = 0.0f, part1 = 0.0f;
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int col = 8 * j + 2 * (l & 3);
            if (j < d.nt - 1) {
                part0 = fmaf(__bfloat162float(go0[col]), acc[j][0], part0);
                part0 = fmaf(__bfloat162float(go0[col + 1]), acc[j][1], part0);
                part1 = fmaf(__bfloat162float(go1[col]), acc[j][2], part1);
                part1 = fmaf(__bfloat162float(go1[col + 1]), acc[j][3], part1);
            }
        }
        part0 += __shfl_xor_sync(LMM_FULL, part0, 1);
        part0 += __shfl_xor_sync(LMM_FULL, part0, 2);
        part1 += __shfl_xor_sync(LMM_FULL, part1, 1);
        part1 += __shfl_xor_sync(LMM_FULL, part1, 2);
        const float r0 = -(part0 / D0) / D0;
        const float r1 = -(part1 / D1) / D1;
        // G' = [dout / D, r, 0..] (zero past the chunk), over dout in gp and into the scratch
        lmm_bf16* gb0 = gbuf + ((c.row0 + t0) * H + c.head) * (i64)d.dpS;
        lmm_bf16* gb1 = gbuf + ((c.row0 + t1) * H + c.head) * (i64)d.dpS;
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int col = 8 * j + 2 * (l & 3);
            if (j < d.nt) {
                float g00, g01, g10, g11;
                if (j < d.nt - 1) {
                    g00 = __bfloat162float(go0[col]) / D0;
                    g01 = __bfloat162float(go0[col + 1]) / D0;
                    g10 = __bfloat162float(go1[col]) / D1;
                    g11 = __bfloat162float(go1[col + 1]) / D1;
                } else {
                    g00 = col == dh ? r0 : 0.0f;
                    g10 = col == dh ? r1 : 0.0f;
                    g01 = 0.0f;
                    g11 = 0.0f;
                }
                if (t0 >= c.n) g00 = g01 = 0.0f;
                if (t1 >= c.n) g10 = g11 = 0.0f;
                const __nv_bfloat162 p0 = __floats2bfloat162_rn(g00, g01);
                const __nv_bfloat162 p1 = __floats2bfloat162_rn(g10, g11);
                *reinterpret_cast<__nv_bfloat162*>(go0 + col) = p0;
                *reinterpret_cast<__nv_bfloat162*>(go1 + col) = p1;
                if (t0 < c.n) *reinterpret_cast<__nv_bfloat162*>(gb0 + col) = p0;
                if (t1 < c.n) *reinterpret_cast<__nv_bfloat162*>(gb1 + col) = p1;
            }
        }
    }
    __syncwarp();  // the warp's G' rows, read below by the whole warp (no other warp reads them)
    float* dx = m.dx + warp * LMM_ROWS * d.fpad;
    float* dphi = m.dphi + warp * LMM_ROWS * LMM_DPHI_LD;
    {
        // in-chunk: da_ts = G'_t . V'_s (rows t, columns s), P = da (1 + x) / sqrt(f); dq = P K
        float da[8][4];
        lmmZeroAcc(da);
        for (int kk = 0; kk < d.kv; kk++) {
            unsigned a[4];
            lmmLoadA(a, m.gp, d.ldV, m0, 16 * kk);
#pragma unroll
            for (int jp = 0; jp < 4; jp++) {
                unsigned b[4];
                lmmLoadBnk(b, m.vp, d.ldV, 16 * jp, 16 * kk);
                lmmMma(da[2 * jp], a, b[0], b[1]);
                lmmMma(da[2 * jp + 1], a, b[2], b[3]);
            }
        }
        float dot[8][4];
        lmmDots(m.xq, m.xk, d, dot);
        unsigned pa[4][4];
        lmmScoreGradients(da, dot, tc.cross, false, c.n, pa);
        lmmScoreProduct(pa, m.xk, d, dx);
    }
    __syncwarp();
    // earlier chunks: dphi(q_t) = S_c G'_t (rows t, columns features) through J^T
    if (c.chunk > 0) {
        int cur[16];
#pragma unroll
        for (int u = 0; u < 16; u++) cur[u] = 0;
        for (int a0 = 0; a0 < d.E; a0 += LMM_SLAB) {
            const lmm_bf16* st = S.tile(a0, d);
            const int np = min(LMM_SLAB, d.epad - a0) / 16;
            float dp[8][4];
            lmmZeroAcc(dp);
            for (int kk = 0; kk < d.kv; kk++) {
                unsigned a[4];
                lmmLoadA(a, m.gp, d.ldV, m0, 16 * kk);
#pragma unroll
                for (int jp = 0; jp < 4; jp++) {
                    if (jp < np) {
                        unsigned b[4];
                        lmmLoadBnk(b, st, d.ldV, 16 * jp, 16 * kk);
                        lmmMma(dp[2 * jp], a, b[0], b[1]);
                        lmmMma(dp[2 * jp + 1], a, b[2], b[3]);
                    }
                }
            }
            lmmStoreDphi(dp, dphi);
            __syncwarp();
            lmmFeatureGrad(dphi, m.xq, m0, a0, d, tc, dx, cur);
            __syncwarp();
        }
    }
    lmmAddRows(dx, d, c, H, dq);
}

/**
 * Backward, the query side of one chunk: [num | den] again, G' = [g, r] of its rows into gbuf (bf16 [N, H, dh + 8],
 * the columns past dh zero), dq += the in-chunk score gradients times k + J^T (G' S_c^T). Grid (chunks, H, batch);
 * after the states kernel (prefix sums).
 */
template <int NT>
__device__ __forceinline__ void lmmBackwardQBody(const lmm_bf16* q, const lmm_bf16* k, const lmm_bf16* v,
                                                 const lmm_bf16* dout, const float* states, lmm_bf16* gbuf,
                                                 lmm_bf16* dq, int L, int H, int f, int dh, float eps) {
    extern __shared__ __align__(16) unsigned char lmmShared[];
    const LmmDims d = lmmDims(f, dh);
    const LmmSmem m = lmmCarve(lmmShared, d, true);
    const LinChunk c = linChunkOf(L, H);
    lmmChunkStart(lmmShared, m, d, true, c, H, q, k, v);
    lmmLoadRows(m.gp, d.ldV, dout + c.row0 * H * (i64)dh + (i64)c.head * dh, (i64)H * dh, c.n, dh);
    lmmCommit();
    lmmWait<0>();
    __syncthreads();
    lmmBackwardQChunk<NT>(m, d, c, LmmStateFromGlobal{lmmStateOf(states, c.bh, c.nC, c.chunk, d), m.st}, gbuf, dq,
                          H, eps);
}

/**
 * The key and value side of a chunk whose tiles are in m (G' in m.gp), from its suffix state dS_c: dk and dv added.
 */
template <int NT, typename State>
__device__ __forceinline__ void lmmBackwardKVChunk(const LmmSmem& m, const LmmDims& d, const LinChunk& c,
                                                   const State& dS, lmm_bf16* dk, lmm_bf16* dv, int H) {
    const int dh = d.dh;
    const Taylor tc = taylorOf(d.f);
    const int warp = lmmWarp();
    const int l = lmmLane();
    const int m0 = LMM_ROWS * warp;
    float* dx = m.dx + warp * LMM_ROWS * d.fpad;
    float* dphi = m.dphi + warp * LMM_ROWS * LMM_DPHI_LD;
    {
        // rows are the keys s. In-chunk: da_ts = V'_s . G'_t (columns t), P = da (1 + x) / sqrt(f); dk = P Q
        float da[8][4];
        lmmZeroAcc(da);
        for (int kk = 0; kk < d.kv; kk++) {
            unsigned a[4];
            lmmLoadA(a, m.vp, d.ldV, m0, 16 * kk);
#pragma unroll
            for (int jp = 0; jp < 4; jp++) {
                unsigned b[4];
                lmmLoadBnk(b, m.gp, d.ldV, 16 * jp, 16 * kk);
                lmmMma(da[2 * jp], a, b[0], b[1]);
                lmmMma(da[2 * jp + 1], a, b[2], b[3]);
            }
        }
        float dot[8][4];
        lmmDots(m.xk, m.xq, d, dot);
        unsigned pa[4][4];
        lmmScoreGradients(da, dot, tc.cross, true, c.n, pa);
        lmmScoreProduct(pa, m.xq, d, dx);
    }
    // dv_s = sum_t a_ts G'_t (the scores again, rather than held through the product above), + dS^T phi(k_s) below
    float acc[NT][4];
    lmmZeroAcc(acc);
    {
        float dot[8][4];
        lmmDots(m.xk, m.xq, d, dot);
        unsigned sa[4][4];
        lmmScores(dot, tc.cross, true, c.n, sa);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) lmmTimesTile<NT>(sa[kk], m.gp, d.ldV, 16 * kk, d.nt, acc);
    }
    __syncwarp();
    // later chunks: dv_s += dS^T phi(k_s), dphi(k_s) = dS V'_s through J^T
    if (c.chunk < c.nC - 1) {
        int cur[16];
#pragma unroll
        for (int u = 0; u < 16; u++) cur[u] = 0;
        for (int a0 = 0; a0 < d.E; a0 += LMM_SLAB) {
            const lmm_bf16* st = dS.tile(a0, d);
            const int ks = min(LMM_SLAB, d.epad - a0) / 16;
            for (int kk = 0; kk < ks; kk++) {
                unsigned a[4];
                lmmPhiRows(a, m.xk, d.ldX, m.tab, m0, a0 + 16 * kk);
                lmmTimesTile<NT>(a, st, d.ldV, 16 * kk, d.nt, acc);
            }
            float dp[8][4];
            lmmZeroAcc(dp);
            for (int kk = 0; kk < d.kv; kk++) {
                unsigned a[4];
                lmmLoadA(a, m.vp, d.ldV, m0, 16 * kk);
#pragma unroll
                for (int jp = 0; jp < 4; jp++) {
                    if (jp < ks) {
                        unsigned b[4];
                        lmmLoadBnk(b, st, d.ldV, 16 * jp, 16 * kk);
                        lmmMma(dp[2 * jp], a, b[0], b[1]);
                        lmmMma(dp[2 * jp + 1], a, b[2], b[3]);
                    }
                }
            }
            lmmStoreDphi(dp, dphi);
            __syncwarp();
            lmmFeatureGrad(dphi, m.xk, m0, a0, d, tc, dx, cur);
            __syncwarp();
        }
    }
    lmmAddRows(dx, d, c, H, dk);
    const int s0 = m0 + (l >> 2);
    const int s1 = s0 + 8;
    lmm_bf16* o0 = dv + (c.row0 + s0) * H * (i64)dh + (i64)c.head * dh;
    lmm_bf16* o1 = o0 + 8 * H * (i64)dh;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const int col = 8 * j + 2 * (l & 3);
        if (j < d.nt - 1) {
            if (s0 < c.n) {
                const float2 old = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(o0 + col));
                *reinterpret_cast<__nv_bfloat162*>(o0 + col) =
                        __floats2bfloat162_rn(old.x + acc[j][0], old.y + acc[j][1]);
            }
            if (s1 < c.n) {
                const float2 old = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(o1 + col));
                *reinterpret_cast<__nv_bfloat162*>(o1 + col) =
                        __floats2bfloat162_rn(old.x + acc[j][2], old.y + acc[j][3]);
            }
        }
    }
}

/**
 * Backward, the key and value side of one chunk, from G' (gbuf) and dS_c (the states kernel run in reverse): adds
 * dk and dv. Grid (chunks, H, batch).
 */
template <int NT>
__device__ __forceinline__ void lmmBackwardKVBody(const lmm_bf16* q, const lmm_bf16* k, const lmm_bf16* v,
                                                  const lmm_bf16* gbuf, const float* states, lmm_bf16* dk,
                                                  lmm_bf16* dv, int L, int H, int f, int dh) {
    extern __shared__ __align__(16) unsigned char lmmShared[];
    const LmmDims d = lmmDims(f, dh);
    const LmmSmem m = lmmCarve(lmmShared, d, true);
    const LinChunk c = linChunkOf(L, H);
    lmmChunkStart(lmmShared, m, d, true, c, H, q, k, v);
    lmmLoadRows(m.gp, d.ldV, gbuf + (c.row0 * H + c.head) * (i64)d.dpS, (i64)H * d.dpS, c.n, d.dpS);
    lmmCommit();
    lmmWait<0>();
    __syncthreads();
    lmmBackwardKVChunk<NT>(m, d, c, LmmStateFromGlobal{lmmStateOf(states, c.bh, c.nC, c.chunk, d), m.st}, dk, dv,
                           H);
}

/**
 * lmmBackwardQBody from the rounded states (lmmRoundedStateAt, written by the states kernel with ROUNDED): the
 * whole state is copied into shared memory with the chunk's rows (cp.async, one wait) and the products read it
 * there, so no float32 state is read and rounded a tile at a time between barriers (twice: for the outputs and for
 * dphi). The same products in the same order on the same bf16 values: the numbers of lmmBackwardQBody bit for bit.
 */
template <int NT>
__device__ __forceinline__ void lmmRoundedBackwardQBody(const lmm_bf16* q, const lmm_bf16* k, const lmm_bf16* v,
                                                        const lmm_bf16* dout, const lmm_bf16* states,
                                                        lmm_bf16* gbuf,
                                                        lmm_bf16* dq, int L, int H, int f, int dh, float eps) {
    extern __shared__ __align__(16) unsigned char lmmShared[];
    const LmmDims d = lmmDims(f, dh);
    const LmmSmem m = lmmCarve(lmmShared, d, true, d.epad);
    const LinChunk c = linChunkOf(L, H);
    lmmChunkStart(lmmShared, m, d, true, c, H, q, k, v, d.epad);
    lmmLoadRows(m.gp, d.ldV, dout + c.row0 * H * (i64)dh + (i64)c.head * dh, (i64)H * dh, c.n, dh);
    if (c.chunk > 0) lmmLoadRoundedState(m.st, d, states + lmmRoundedStateAt(c.bh, c.nC, c.chunk, d));
    lmmCommit();
    lmmWait<0>();
    __syncthreads();
    lmmBackwardQChunk<NT>(m, d, c, LmmStateInShared{m.st}, gbuf, dq, H, eps);
}

/** lmmBackwardKVBody from the rounded suffix states, copied whole as in lmmRoundedBackwardQBody. */
template <int NT>
__device__ __forceinline__ void lmmRoundedBackwardKVBody(const lmm_bf16* q, const lmm_bf16* k, const lmm_bf16* v,
                                                         const lmm_bf16* gbuf, const lmm_bf16* states, lmm_bf16* dk,
                                                         lmm_bf16* dv, int L, int H, int f, int dh) {
    extern __shared__ __align__(16) unsigned char lmmShared[];
    const LmmDims d = lmmDims(f, dh);
    const LmmSmem m = lmmCarve(lmmShared, d, true, d.epad);
    const LinChunk c = linChunkOf(L, H);
    lmmChunkStart(lmmShared, m, d, true, c, H, q, k, v, d.epad);
    lmmLoadRows(m.gp, d.ldV, gbuf + (c.row0 * H + c.head) * (i64)d.dpS, (i64)H * d.dpS, c.n, d.dpS);
    if (c.chunk < c.nC - 1) lmmLoadRoundedState(m.st, d, states + lmmRoundedStateAt(c.bh, c.nC, c.chunk, d));
    lmmCommit();
    lmmWait<0>();
    __syncthreads();
    lmmBackwardKVChunk<NT>(m, d, c, LmmStateInShared{m.st}, dk, dv, H);
}

}  // namespace b4j

// bf16 only (the float32 precision keeps the CUDA-core kernels of train_linear.cuh), each compiled twice so that
// registers are allotted for the value tiles it holds: NAME72 for head dims up to 72 (10 tiles of 8 over dh + 1
// columns), NAME120 up to 120 (16 tiles).
#define B4J_LMM_KERNELS(HEAD, NT)                                                                                  \
    namespace b4j_bf16 {                                                                                           \
    extern "C" __global__ void __launch_bounds__(b4j::LMM_THREADS, 2)                                               \
        linearAttentionMmaStates##HEAD##_bf16(const A* x, const A* r, long long rStride, int rHead, int rWidth,    \
                                              int ones, float* states, int L, int H, int f, int dh, int reverse) { \
        b4jPdlWait();                                                                                              \
        b4j::lmmStatesBody<NT, false>(x, r, rStride, rHead, rWidth, ones, states, L, H, f, dh, reverse);           \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(b4j::LMM_THREADS, 2)                                               \
        linearAttentionMmaStatesFinal##HEAD##_bf16(const A* x, const A* r, long long rStride, int rHead, int rWidth,\
                                                   float* states, int L, int H, int f, int dh, float* finalKv,     \
                                                   float* finalZ, const int* slots, int realH, int split) {        \
        b4jPdlWait();                                                                                              \
        b4j::lmmStatesBody<NT, false>(x, r, rStride, rHead, rWidth, 1, states, L, H, f, dh, 0,                     \
                                      b4j::lmmFinalOf(finalKv, finalZ, slots, realH, split));                      \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(b4j::LMM_THREADS, 2)                                               \
        linearAttentionMmaRoundedStates##HEAD##_bf16(const A* x, const A* r, long long rStride, int rHead,         \
                                                     int rWidth, int ones, A* states, int L, int H, int f, int dh, \
                                                     int reverse) {                                                \
        b4jPdlWait();                                                                                              \
        b4j::lmmStatesBody<NT, true>(x, r, rStride, rHead, rWidth, ones, states, L, H, f, dh, reverse);            \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(b4j::LMM_THREADS, 2)                                               \
        linearAttentionMmaRoundedBackwardQ##HEAD##_bf16(const A* q, const A* k, const A* v, const A* dout,         \
                                                        const A* states, A* gbuf, A* dq, int L, int H, int f,      \
                                                        int dh,                                                    \
                                                        float eps) {                                               \
        b4jPdlWait();                                                                                              \
        b4j::lmmRoundedBackwardQBody<NT>(q, k, v, dout, states, gbuf, dq, L, H, f, dh, eps);                      \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(b4j::LMM_THREADS, 2)                                               \
        linearAttentionMmaRoundedBackwardKV##HEAD##_bf16(const A* q, const A* k, const A* v, const A* gbuf,        \
                                                         const A* states, A* dk, A* dv, int L, int H, int f,       \
                                                         int dh) {                                                 \
        b4jPdlWait();                                                                                              \
        b4j::lmmRoundedBackwardKVBody<NT>(q, k, v, gbuf, states, dk, dv, L, H, f, dh);                             \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(b4j::LMM_THREADS, 2)                                               \
        linearAttentionMmaForward##HEAD##_bf16(const A* q, const A* k, const A* v, const float* states, A* out,    \
                                               int L, int H, int f, int dh, float eps) {                           \
        b4jPdlWait();                                                                                              \
        b4j::lmmForwardBody<NT>(q, k, v, states, out, L, H, f, dh, eps);                                           \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(b4j::LMM_THREADS, 2)                                               \
        linearAttentionMmaBackwardQ##HEAD##_bf16(const A* q, const A* k, const A* v, const A* dout,                \
                                                 const float* states, A* gbuf, A* dq, int L, int H, int f, int dh, \
                                                 float eps) {                                                      \
        b4jPdlWait();                                                                                              \
        b4j::lmmBackwardQBody<NT>(q, k, v, dout, states, gbuf, dq, L, H, f, dh, eps);                             \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(b4j::LMM_THREADS, 2)                                               \
        linearAttentionMmaBackwardKV##HEAD##_bf16(const A* q, const A* k, const A* v, const A* gbuf,               \
                                                  const float* states, A* dk, A* dv, int L, int H, int f,          \
                                                  int dh) {                                                        \
        b4jPdlWait();                                                                                              \
        b4j::lmmBackwardKVBody<NT>(q, k, v, gbuf, states, dk, dv, L, H, f, dh);                                    \
    }                                                                                                              \
    }

B4J_LMM_KERNELS(72, 10)
B4J_LMM_KERNELS(120, 16)

#include "train_linear_scan.cuh"
