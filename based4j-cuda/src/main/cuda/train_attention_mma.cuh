// Tensor-core training kernels of causal and sliding-window softmax attention in bf16 (included by
// based4j_kernels.cu after train_attention.cuh): the same functions as its scalar kernels (forward with one
// log-sum-exp per (token, head), backward from it), FlashAttention-2 style with mma.sync m16n8k16 (bf16 operands,
// float32 accumulation). Launch shapes and the scratch layout: io.based4j.cuda.MixerTrainKernels.
//
// A pass first writes, when rd > 0, the rotary table (cos then sin, float32 [L, rd/2] each, the numbers of
// RotaryAngles computed as the scalar kernels do) and the rotated q and k (bf16 [N, 2d], q | k) into a scratch;
// without rotary the kernels read q and k from qkv. Per (sequence, head):
//   forward     block of 64 queries, 4 warps x 16 rows; key tiles of 64 from max(0, q0 - window) to the diagonal
//               (double-buffered cp.async); S = Q K^T, online softmax in float32 (base 2), P rounded to bf16 and
//               reused from the S registers as the A operand of P V; out = O / l, lse = m + log l.
//   D           D = dout . out per (row, head), float32, into the scratch.
//   backward q  block of 64 queries over the same key tiles: P = exp(scale S - lse), dP = dout V^T,
//               dS = P (dP - D), dQ += dS K; scaled, rotated back and added into dqkv's q columns.
//   backward kv block of 64 keys, 4 warps x 16 keys, over the queries that see them in tiles of 32-64:
//               S^T = K Q^T, P^T, dV += P^T dout, dP^T = V dout^T, dS^T, dK += dS^T Q; dK scaled and rotated back,
//               both added into dqkv's k and v columns.
// No atomics: every element of dqkv is written by one thread, sums in a fixed order (deterministic). Head dims are
// padded with zeros to DHP (64 or 128; the kernels are compiled for both); dh must be a multiple of 16.
//
// Fragments (PTX m16n8k16, lane = 4 g + c): A (16 x 16, row-major) regs {rows g | g + 8} x {cols 2c, 2c+1 |
// 8 + 2c, 9 + 2c} in the order (g, lo) (g + 8, lo) (g, hi) (g + 8, hi); B (16 x 8) regs k = 2c, 2c+1 and
// 8 + 2c, 9 + 2c at column n = g; C (16 x 8, float32) c0 c1 at row g, c2 c3 at row g + 8, columns 2c, 2c+1.
// Shared tiles are row-major [rows][DHP + 8] bf16 (16 padding bytes per row: the 8 rows an ldmatrix reads start in
// 8 different bank quads).
#pragma once

namespace b4j {

typedef __nv_bfloat16 bf16;

constexpr int ATM_THREADS = 128;  // 4 warps
constexpr int ATM_BLOCK = 64;     // queries (forward, backward q) or keys (backward kv) per block: 16 per warp
constexpr int ATM_KTILE = 64;     // keys per tile of the forward and backward q
constexpr float ATM_LOG2E = 1.4426950408889634f;
constexpr float ATM_LN2 = 0.6931471805599453f;

/** Row stride (elements) of a bf16 tile of head dims padded to DHP. */
template <int DHP> __host__ __device__ constexpr int atmLd() { return DHP + 8; }
/** Row stride (floats) of the float32 tiles the epilogues stage gradients in. */
template <int DHP> __host__ __device__ constexpr int atmFloatLd() { return DHP + 4; }
/** Queries per tile of the backward kv: 64 at DHP 64, 32 at DHP 128 (the dK and dV accumulators take 128 regs). */
template <int DHP> __host__ __device__ constexpr int atmQueryTile() { return DHP <= 64 ? 64 : 32; }

// ------------------------------------------------------------------------------------------------ primitives

__device__ __forceinline__ unsigned atmShared(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

/** 16 bytes global -> shared, asynchronously; zeros where !valid (src is then not read). */
__device__ __forceinline__ void atmCopy16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(atmShared(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}

/** 4 bytes global -> shared, asynchronously; zeros where !valid. */
__device__ __forceinline__ void atmCopy4(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(atmShared(dst)), "l"(src),
                 "r"(valid ? 4 : 0));
}

__device__ __forceinline__ void atmCommit() { asm volatile("cp.async.commit_group;\n" ::); }

/** Waits until at most N groups of this thread's copies are in flight. */
template <int N> __device__ __forceinline__ void atmWait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/** Four 8x8 bf16 matrices; lanes 8i .. 8i + 7 give the row addresses of matrix i; r[i] holds matrix i's fragment. */
__device__ __forceinline__ void atmLdm(unsigned (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(atmShared(p)));
}

/** As atmLdm, each matrix transposed. */
__device__ __forceinline__ void atmLdmT(unsigned (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(atmShared(p)));
}

/** d += a b (16 x 16 by 16 x 8, bf16, float32 accumulation). */
__device__ __forceinline__ void atmMma(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/** Two floats rounded to bf16, lo in the low half (the lower column of an A register). */
__device__ __forceinline__ unsigned atmPack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&v);
}

__device__ __forceinline__ float2 atmUnpack(unsigned v) {
    return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&v));
}

/**
 * Address of this lane's row for an ldmatrix x4 of a 16 x 16 A operand at (row r0, col c0) of a tile: matrices
 * (rows 0-7, cols 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) -> A registers 0..3.
 */
template <int LD>
__device__ __forceinline__ const bf16* atmA(const bf16* tile, int r0, int c0, int lane) {
    return tile + (r0 + (lane & 7) + 8 * ((lane >> 3) & 1)) * LD + c0 + 8 * (lane >> 4);
}

/**
 * Address for an ldmatrix x4 (not transposed) of the B operands of two n-tiles whose columns n are ROWS n0 .. n0 + 15
 * of the tile and whose k is the tile's cols k0 .. k0 + 15 (B = tile^T): matrices (rows n0 + 0-7, cols k0 + 0-7),
 * (n0 + 0-7, k0 + 8-15), (n0 + 8-15, k0 + 0-7), (n0 + 8-15, k0 + 8-15) -> n-tile n0 {r0, r1}, n-tile n0 + 8 {r2, r3}.
 */
template <int LD>
__device__ __forceinline__ const bf16* atmBt(const bf16* tile, int n0, int k0, int lane) {
    return tile + (n0 + (lane & 7) + 8 * (lane >> 4)) * LD + k0 + 8 * ((lane >> 3) & 1);
}

/**
 * Address for an ldmatrix x4 .trans of the B operands of two n-tiles whose k is ROWS k0 .. k0 + 15 of the tile and
 * whose n is its cols n0 .. n0 + 15 (B = tile): matrices (rows k0 + 0-7, cols n0 + 0-7), (k0 + 8-15, n0 + 0-7),
 * (k0 + 0-7, n0 + 8-15), (k0 + 8-15, n0 + 8-15) -> n-tile n0 {r0, r1}, n-tile n0 + 8 {r2, r3}.
 */
template <int LD>
__device__ __forceinline__ const bf16* atmB(const bf16* tile, int k0, int n0, int lane) {
    return tile + (k0 + (lane & 7) + 8 * ((lane >> 3) & 1)) * LD + n0 + 8 * (lane >> 4);
}

/**
 * s = A B^T for one tile: A the warp's 16 rows as fragments af (k over the head dims), B the tile's 8 ST rows (the n
 * of the scores) by its head dims; dims from dh on (zeros) are skipped.
 */
template <int DHP, int ST>
__device__ __forceinline__ void atmScoreTile(float (&s)[ST][4], const unsigned (&af)[DHP / 16][4], const bf16* tile,
                                             int dh, int lane) {
    constexpr int LD = atmLd<DHP>();
#pragma unroll
    for (int nt = 0; nt < ST; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < DHP / 16; kk++) {
        if (kk * 16 >= dh) break;
#pragma unroll
        for (int np = 0; np < ST / 2; np++) {
            unsigned b[4];
            atmLdm(b, atmBt<LD>(tile, np * 16, kk * 16, lane));
            atmMma(s[2 * np], af[kk], b[0], b[1]);
            atmMma(s[2 * np + 1], af[kk], b[2], b[3]);
        }
    }
}

/**
 * o += P V for one tile: P the warp's 16 rows in bf16 (p[nt][h]: columns 2c, 2c + 1 of row g + 8h of n-tile nt, the
 * n of the scores being the tile's 8 ST rows), V the tile's rows by its head dims; dims from dh on are skipped.
 */
template <int DHP, int ST>
__device__ __forceinline__ void atmAccumulatePV(float (&o)[DHP / 8][4], const unsigned (&p)[ST][2], const bf16* tile,
                                                int dh, int lane) {
    constexpr int LD = atmLd<DHP>();
#pragma unroll
    for (int kk = 0; kk < ST / 2; kk++) {
        const unsigned a[4] = {p[2 * kk][0], p[2 * kk][1], p[2 * kk + 1][0], p[2 * kk + 1][1]};
#pragma unroll
        for (int dp = 0; dp < DHP / 16; dp++) {
            if (dp * 16 >= dh) break;
            unsigned b[4];
            atmLdmT(b, atmB<LD>(tile, kk * 16, dp * 16, lane));
            atmMma(o[2 * dp], a, b[0], b[1]);
            atmMma(o[2 * dp + 1], a, b[2], b[3]);
        }
    }
}

/** The largest of m and the scores of accumulator row g + 8h in the tile (over the four lanes of the row). */
template <int ST>
__device__ __forceinline__ float atmRowMax(const float (&s)[ST][4], int h, float m) {
#pragma unroll
    for (int nt = 0; nt < ST; nt++) m = fmaxf(m, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
    return fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
}

/** Accumulator row g + 8h times f (an online softmax's rescaling at a new maximum). */
template <int NT>
__device__ __forceinline__ void atmScaleRow(float (&o)[NT][4], int h, float f) {
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        o[nt][2 * h] *= f;
        o[nt][2 * h + 1] *= f;
    }
}

/**
 * Rows [r0, r0 + ROWS) of one head's vectors (src: the head's row 0 of the sequence, rows stride elements apart) into
 * tile [ROWS][LD], asynchronously: rows outside [0, L) and columns from dh on (dh a multiple of 8) as zeros.
 */
template <int ROWS, int DHP>
__device__ __forceinline__ void atmLoadTile(bf16* tile, const bf16* src, i64 stride, int r0, int L, int dh) {
    constexpr int CHUNKS = DHP / 8;  // 16 bytes each
    static_assert(ROWS * CHUNKS % ATM_THREADS == 0, "whole rounds of copies");
#pragma unroll
    for (int round = 0; round < ROWS * CHUNKS / ATM_THREADS; round++) {
        const int idx = round * ATM_THREADS + threadIdx.x;
        const int i = idx / CHUNKS;
        const int c = idx - i * CHUNKS;
        const int row = r0 + i;
        const bool valid = row >= 0 && row < L && c * 8 < dh;
        atmCopy16(tile + i * atmLd<DHP>() + c * 8, valid ? src + (i64)row * stride + c * 8 : src, valid);
    }
}

/** rot[pos * half + p] (cos) and rot[L * half + pos * half + p] (sin) of element e < rd's pair. */
__device__ __forceinline__ void atmCosSin(const float* rot, int L, int half, int pos, int e, float* c, float* s) {
    const i64 at = (i64)pos * half + rotaryPair(e, half);
    *c = rot[at];
    *s = rot[(i64)L * half + at];
}

/**
 * Epilogue: staged rows i < 64 of a float32 gradient [64][DHP + 4] of the rotated vectors at positions p0 + i,
 * rotated back (rd > 0) and added into dst (the head's columns of row 0 of the sequence, rows stride apart). A thread
 * takes 8 neighbouring elements of a row at a time: one 16-byte read and write of dst where dst and the stride allow
 * it (dh is a multiple of 16), and the cos and sin loads of all 8 issued before their first use; so a block makes
 * few dependent round trips to memory (element by element, they dominated the backward kernels' time).
 */
template <int DHP>
__device__ __forceinline__ void atmAddRotatedBack(const float* staged, bf16* dst, i64 stride, int p0, int L, int dh,
                                                  int rd, const float* rot) {
    const int half = rd >> 1;
    const int pieces = dh >> 3;
    const bool wide = ((reinterpret_cast<unsigned long long>(dst) | (unsigned long long)stride * 2) & 15) == 0;
    for (int idx = threadIdx.x; idx < ATM_BLOCK * pieces; idx += ATM_THREADS) {
        const int i = idx / pieces;
        const int e0 = (idx - i * pieces) * 8;
        const int pos = p0 + i;
        if (pos >= L) break;  // idx only grows
        const float* g = staged + i * atmFloatLd<DHP>();
        float c[8], s[8], v[8];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            if (e0 + j < rd) atmCosSin(rot, L, half, pos, e0 + j, &c[j], &s[j]);
        }
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const int e = e0 + j;
            v[j] = e < rd ? rotatedBackWith(g, e, half, c[j], s[j]) : g[e];
        }
        addInto8(dst + (i64)pos * stride + e0, v, wide);
    }
}

/** Stages a warp's 16 x DHP accumulator rows (times factor) into rows warp * 16 .. of a float32 [64][DHP + 4] tile. */
template <int DHP>
__device__ __forceinline__ void atmStage(float* staged, const float (&acc)[DHP / 8][4], float factor, int warp,
                                         int lane) {
    const int g = lane >> 2;
    const int c = lane & 3;
#pragma unroll
    for (int nt = 0; nt < DHP / 8; nt++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float* row = staged + (warp * 16 + g + 8 * h) * atmFloatLd<DHP>() + nt * 8 + 2 * c;
            *reinterpret_cast<float2*>(row) = make_float2(acc[nt][2 * h] * factor, acc[nt][2 * h + 1] * factor);
        }
    }
}

// ------------------------------------------------------------------------------------------------ pre-passes

/** cos and sin of the rotary angles of positions 0 .. L-1: rot [2][L][rd/2] (RotaryAngles, as rotaryCosSin). */
__device__ void attentionRotaryTable_impl(float* rot, int L, int rd, double base) {
    const int half = rd >> 1;
    const i64 total = (i64)L * half;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const int pos = (int)(idx / half);
        const int p = (int)(idx - (i64)pos * half);
        float c, s;
        rotaryCosSin(pos, rotaryInverseFrequency(p, rd, base), &c, &s);
        rot[idx] = c;
        rot[total + idx] = s;
    }
}

/** qk [n, 2d] (q | k) = the rotated q and k of qkv [n, 3d], rounded to bf16; the rows are at positions row % L. */
__device__ void attentionRotate_impl(const bf16* qkv, const float* rot, bf16* qk, i64 n, int L, int H, int dh,
                                     int rd) {
    const int d = H * dh;
    const int half = rd >> 1;
    const i64 total = n * 2 * d;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 row = idx / (2 * d);
        const int col = (int)(idx - row * 2 * d);
        const int part = col >= d ? 1 : 0;  // q or k
        const int head = (col - part * d) / dh;
        const int e = col - part * d - head * dh;
        const bf16* x = qkv + row * 3 * d + part * d + head * dh;
        float v = __bfloat162float(x[e]);
        if (e < rd) {
            float c, s;
            atmCosSin(rot, L, half, (int)(row % L), e, &c, &s);
            v = rotatedWith(x, e, half, c, s);
        }
        qk[idx] = __float2bfloat16_rn(v);
    }
}

/**
 * Two neighbouring elements of a head vector rotated (rotatedWith's numbers, no fused ops): from the first half
 * (a the elements, b their partners) a c - b s, from the second b c + a s (b the elements, a their partners).
 */
__device__ __forceinline__ __nv_bfloat162 rotatedPair(float2 a, float2 b, float2 c, float2 s, bool firstHalf) {
    float2 v;
    if (firstHalf) {
        v.x = __fsub_rn(__fmul_rn(a.x, c.x), __fmul_rn(b.x, s.x));
        v.y = __fsub_rn(__fmul_rn(a.y, c.y), __fmul_rn(b.y, s.y));
    } else {
        v.x = __fadd_rn(__fmul_rn(b.x, c.x), __fmul_rn(a.x, s.x));
        v.y = __fadd_rn(__fmul_rn(b.y, c.y), __fmul_rn(a.y, s.y));
    }
    return __floats2bfloat162_rn(v.x, v.y);
}

/**
 * attentionRotate_impl by pairs of neighbouring elements (bf16x2 loads and stores, no 64-bit division): grid
 * (ceil(d / blockDim.x), rows), rows strided by gridDim.y; thread u of a row writes elements 2u, 2u + 1 of its q | k.
 * Needs dh even and rd a multiple of 4 (a pair never straddles the rotated halves); the same numbers.
 */
__device__ void attentionRotatePairs_impl(const bf16* qkv, const float* rot, bf16* qk, i64 n, int L, int H, int dh,
                                          int rd) {
    const int d = H * dh;
    const int half = rd >> 1;
    const int u = blockIdx.x * blockDim.x + threadIdx.x;  // pair index within the row's 2d elements
    if (u >= d) return;
    const int col = 2 * u;
    const int part = col >= d ? 1 : 0;
    const int head = (col - part * d) / dh;
    const int e = col - part * d - head * dh;
    for (i64 row = blockIdx.y; row < n; row += gridDim.y) {
        const bf16* x = qkv + row * 3 * d + part * d + head * dh;
        __nv_bfloat162 out;
        if (e >= rd) {
            out = *reinterpret_cast<const __nv_bfloat162*>(x + e);
        } else {
            const int p = rotaryPair(e, half);
            const int pos = (int)(row % L);
            const float2 c = *reinterpret_cast<const float2*>(rot + (i64)pos * half + p);
            const float2 sn = *reinterpret_cast<const float2*>(rot + ((i64)L + pos) * half + p);
            const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(x + p));
            const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(x + p + half));
            out = rotatedPair(a, b, c, sn, e < half);
        }
        *reinterpret_cast<__nv_bfloat162*>(qk + row * 2 * d + col) = out;
    }
}

/**
 * attentionRotatePairs by pieces of 8 neighbouring elements (16-byte loads and stores): grid (ceil(d / 4 / blockDim.x),
 * rows), rows strided by gridDim.y; thread u of a row writes elements 8u .. 8u + 7 of its q | k, reading its piece
 * and the piece it pairs with and 8 cos and sin. Needs dh a multiple of 8, rd of 16 (a piece never straddles the
 * rotated halves) and 16-byte aligned rows; the same numbers as the pairs.
 */
__device__ void attentionRotateEights_impl(const bf16* qkv, const float* rot, bf16* qk, i64 n, int L, int H, int dh,
                                           int rd) {
    const int d = H * dh;
    const int half = rd >> 1;
    const int u = blockIdx.x * blockDim.x + threadIdx.x;  // piece index within the row's 2d elements
    if (8 * u >= 2 * d) return;
    const int col = 8 * u;
    const int part = col >= d ? 1 : 0;
    const int head = (col - part * d) / dh;
    const int e = col - part * d - head * dh;
    const int p = e < rd ? rotaryPair(e, half) : 0;
    for (i64 row = blockIdx.y; row < n; row += gridDim.y) {
        const bf16* x = qkv + row * 3 * d + part * d + head * dh;
        uint4 out;
        if (e >= rd) {
            out = *reinterpret_cast<const uint4*>(x + e);
        } else {
            const int pos = row < 0x7fffffff ? (int)((unsigned)row % (unsigned)L) : (int)(row % L);
            const float4* cp = reinterpret_cast<const float4*>(rot + (i64)pos * half + p);
            const float4* sp = reinterpret_cast<const float4*>(rot + ((i64)L + pos) * half + p);
            const float4 c[2] = {cp[0], cp[1]};
            const float4 sn[2] = {sp[0], sp[1]};
            const uint4 ra = *reinterpret_cast<const uint4*>(x + p);
            const uint4 rb = *reinterpret_cast<const uint4*>(x + p + half);
            const __nv_bfloat162* a2 = reinterpret_cast<const __nv_bfloat162*>(&ra);
            const __nv_bfloat162* b2 = reinterpret_cast<const __nv_bfloat162*>(&rb);
            __nv_bfloat162* o2 = reinterpret_cast<__nv_bfloat162*>(&out);
            const float2* cf = reinterpret_cast<const float2*>(c);
            const float2* sf = reinterpret_cast<const float2*>(sn);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                o2[j] = rotatedPair(__bfloat1622float2(a2[j]), __bfloat1622float2(b2[j]), cf[j], sf[j], e < half);
            }
        }
        *reinterpret_cast<uint4*>(qk + row * 2 * d + col) = out;
    }
}

/**
 * D[cell] = dout . out over the dh elements of each (row, head) cell (cell = row * H + head): 8 lanes a cell, 8
 * elements (one 16-byte load of each) a lane and step, so a warp takes 4 cells (dh a multiple of 16, rows 16-byte
 * aligned: the tensor-core kernels' requirements); the 8 lanes' sums added in a fixed tree.
 */
__device__ void attentionRowDot_impl(const bf16* dout, const bf16* out, float* D, i64 cells, int dh) {
    const int lane = threadIdx.x & 31;
    const int sub = lane & 7;
    for (i64 base = (globalThread() >> 5) * 4; base < cells; base += (globalStride() >> 5) * 4) {
        const i64 cell = base + (lane >> 3);
        float dot = 0.0f;
        if (cell < cells) {
            for (int e = 8 * sub; e < dh; e += 64) {
                float g[8], o[8];
                load8(dout + cell * dh + e, g);
                load8(out + cell * dh + e, o);
#pragma unroll
                for (int i = 0; i < 8; i++) dot = fmaf(g[i], o[i], dot);
            }
        }
        dot += __shfl_xor_sync(0xffffffffu, dot, 4);
        dot += __shfl_xor_sync(0xffffffffu, dot, 2);
        dot += __shfl_xor_sync(0xffffffffu, dot, 1);
        if (sub == 0 && cell < cells) D[cell] = dot;
    }
}

// ------------------------------------------------------------------------------------------------ forward

/** Bytes of dynamic shared memory of the forward: Q and two buffers of K and V. */
template <int DHP> __host__ __device__ constexpr int atmForwardShared() {
    return (ATM_BLOCK + 4 * ATM_KTILE) * atmLd<DHP>() * 2;
}

/**
 * Forward. Grid (ceil(L / 64), H, batch) (the last query tiles, which see the most keys, first), block 128, dynamic
 * shared memory atmForwardShared. q, k rows qkStride apart, v rows vStride apart (each pointing at column 0 of its
 * part); writes out [N, d] and lse [N, H].
 */
template <int DHP>
__device__ void attentionMmaForward_impl(const bf16* q, const bf16* k, i64 qkStride, const bf16* v, i64 vStride,
                                         bf16* out, float* lse, int L, int H, int dh, int window, float scale) {
    constexpr int LD = atmLd<DHP>();
    constexpr int KS = DHP / 16;  // k-steps over the head dims
    constexpr int NT = DHP / 8;   // n-tiles of the output
    constexpr int ST = ATM_KTILE / 8;  // n-tiles of the scores
    extern __shared__ __align__(16) unsigned char atmSmem[];
    bf16* qs = reinterpret_cast<bf16*>(atmSmem);
    bf16* ks = qs + ATM_BLOCK * LD;       // [2][ATM_KTILE][LD]
    bf16* vs = ks + 2 * ATM_KTILE * LD;   // [2][ATM_KTILE][LD]
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2;
    const int c = lane & 3;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * ATM_BLOCK;
    const int head = blockIdx.y;
    const i64 row0 = (i64)blockIdx.z * L;
    const i64 d = (i64)H * dh;
    const bf16* qh = q + row0 * qkStride + (i64)head * dh;
    const bf16* kh = k + row0 * qkStride + (i64)head * dh;
    const bf16* vh = v + row0 * vStride + (i64)head * dh;
    const int qEnd = min(L, q0 + ATM_BLOCK);
    const int keyFirst = max(0, q0 - window);
    const int tiles = (qEnd - keyFirst + ATM_KTILE - 1) / ATM_KTILE;
    atmLoadTile<ATM_BLOCK, DHP>(qs, qh, qkStride, q0, L, dh);
    atmLoadTile<ATM_KTILE, DHP>(ks, kh, qkStride, keyFirst, L, dh);
    atmLoadTile<ATM_KTILE, DHP>(vs, vh, vStride, keyFirst, L, dh);
    atmCommit();

    const int t = q0 + warp * 16 + g;  // the query of accumulator rows g; t + 8 that of rows g + 8
    const float sl2 = scale * ATM_LOG2E;
    unsigned qf[KS][4];
    float o[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
    float m[2] = {-CUDART_INF_F, -CUDART_INF_F};  // running max of the scores in base-2 units
    float l[2] = {0.0f, 0.0f};                    // this lane's part of the running sum
    for (int it = 0; it < tiles; it++) {
        const int k0 = keyFirst + it * ATM_KTILE;
        if (it + 1 < tiles) {
            const int next = ((it + 1) & 1) * ATM_KTILE * LD;
            atmLoadTile<ATM_KTILE, DHP>(ks + next, kh, qkStride, k0 + ATM_KTILE, L, dh);
            atmLoadTile<ATM_KTILE, DHP>(vs + next, vh, vStride, k0 + ATM_KTILE, L, dh);
            atmCommit();
            atmWait<1>();
        } else {
            atmWait<0>();
        }
        __syncthreads();
        if (it == 0) {
#pragma unroll
            for (int kk = 0; kk < KS; kk++) atmLdm(qf[kk], atmA<LD>(qs, warp * 16, kk * 16, lane));
        }
        const bf16* kt = ks + (it & 1) * ATM_KTILE * LD;
        const bf16* vt = vs + (it & 1) * ATM_KTILE * LD;

        float s[ST][4];
        atmScoreTile<DHP, ST>(s, qf, kt, dh, lane);
        // every (query, key) pair of the tile is seen: no key past the first query, none beyond the window
        const bool whole = k0 + ATM_KTILE - 1 <= q0 && q0 + ATM_BLOCK - 1 - k0 <= window;
#pragma unroll
        for (int nt = 0; nt < ST; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int tq = t + 8 * (e >> 1);
                const int j = k0 + nt * 8 + 2 * c + (e & 1);
                s[nt][e] = whole || (j <= tq && tq - j <= window) ? s[nt][e] * sl2 : -CUDART_INF_F;
            }
        }
        unsigned p[ST][2];  // P in bf16: p[nt][h] = columns 2c, 2c + 1 of row g + 8h of n-tile nt
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const float mx = atmRowMax<ST>(s, h, m[h]);
            const float base = mx == -CUDART_INF_F ? 0.0f : mx;  // a row with no key yet stays at zero
            const float corr = exp2f(m[h] - base);
            m[h] = mx;
            l[h] *= corr;
            atmScaleRow<NT>(o, h, corr);
#pragma unroll
            for (int nt = 0; nt < ST; nt++) {
                p[nt][h] = atmPack(exp2f(s[nt][2 * h] - base), exp2f(s[nt][2 * h + 1] - base));
                const float2 pr = atmUnpack(p[nt][h]);  // the sum takes the rounded weights P V uses
                l[h] += pr.x + pr.y;
            }
        }
        atmAccumulatePV<DHP, ST>(o, p, vt, dh, lane);
        __syncthreads();  // this tile's buffers are refilled two tiles on
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int tq = t + 8 * h;
        if (tq >= L) continue;
        const float inv = 1.0f / l[h];
        bf16* orow = out + (row0 + tq) * d + (i64)head * dh;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            if (nt * 8 >= dh) break;
            *reinterpret_cast<__nv_bfloat162*>(orow + nt * 8 + 2 * c) =
                __floats2bfloat162_rn(o[nt][2 * h] * inv, o[nt][2 * h + 1] * inv);
        }
        if (c == 0) lse[(row0 + tq) * H + head] = m[h] * ATM_LN2 + logf(l[h]);
    }
}

// ------------------------------------------------------------------------------------------------ backward

/** Bytes of dynamic shared memory of the backward q: Q, dout and two buffers of K and V. */
template <int DHP> __host__ __device__ constexpr int atmBackwardQShared() {
    return (2 * ATM_BLOCK + 4 * ATM_KTILE) * atmLd<DHP>() * 2;
}

/**
 * Backward, queries. Grid and block as the forward, dynamic shared memory atmBackwardQShared. D [N, H] from
 * attentionRowDot; rot the rotary table (unused when rd = 0). dqkv's q columns += the rotated-back dq.
 */
template <int DHP>
__device__ void attentionMmaBackwardQ_impl(const bf16* q, const bf16* k, i64 qkStride, const bf16* v, i64 vStride,
                                           const bf16* dout, const float* lse, const float* D, const float* rot,
                                           bf16* dqkv, int L, int H, int dh, int window, int rd, float scale) {
    constexpr int LD = atmLd<DHP>();
    constexpr int KS = DHP / 16;
    constexpr int NT = DHP / 8;
    constexpr int ST = ATM_KTILE / 8;
    extern __shared__ __align__(16) unsigned char atmSmem[];
    bf16* qs = reinterpret_cast<bf16*>(atmSmem);
    bf16* gs = qs + ATM_BLOCK * LD;       // dout
    bf16* ks = gs + ATM_BLOCK * LD;       // [2][ATM_KTILE][LD]
    bf16* vs = ks + 2 * ATM_KTILE * LD;   // [2][ATM_KTILE][LD]
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2;
    const int c = lane & 3;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * ATM_BLOCK;
    const int head = blockIdx.y;
    const i64 row0 = (i64)blockIdx.z * L;
    const i64 d = (i64)H * dh;
    const bf16* kh = k + row0 * qkStride + (i64)head * dh;
    const bf16* vh = v + row0 * vStride + (i64)head * dh;
    const int qEnd = min(L, q0 + ATM_BLOCK);
    const int keyFirst = max(0, q0 - window);
    const int tiles = (qEnd - keyFirst + ATM_KTILE - 1) / ATM_KTILE;
    atmLoadTile<ATM_BLOCK, DHP>(qs, q + row0 * qkStride + (i64)head * dh, qkStride, q0, L, dh);
    atmLoadTile<ATM_BLOCK, DHP>(gs, dout + row0 * d + (i64)head * dh, d, q0, L, dh);
    atmLoadTile<ATM_KTILE, DHP>(ks, kh, qkStride, keyFirst, L, dh);
    atmLoadTile<ATM_KTILE, DHP>(vs, vh, vStride, keyFirst, L, dh);
    atmCommit();

    const int t = q0 + warp * 16 + g;
    const float sl2 = scale * ATM_LOG2E;
    float lse2[2];  // lse in base-2 units; +inf past the sequence (P = 0 there)
    float Dr[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int tq = t + 8 * h;
        lse2[h] = tq < L ? lse[(row0 + tq) * H + head] * ATM_LOG2E : CUDART_INF_F;
        Dr[h] = tq < L ? D[(row0 + tq) * H + head] : 0.0f;
    }
    float dq[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) dq[nt][0] = dq[nt][1] = dq[nt][2] = dq[nt][3] = 0.0f;
    for (int it = 0; it < tiles; it++) {
        const int k0 = keyFirst + it * ATM_KTILE;
        if (it + 1 < tiles) {
            const int next = ((it + 1) & 1) * ATM_KTILE * LD;
            atmLoadTile<ATM_KTILE, DHP>(ks + next, kh, qkStride, k0 + ATM_KTILE, L, dh);
            atmLoadTile<ATM_KTILE, DHP>(vs + next, vh, vStride, k0 + ATM_KTILE, L, dh);
            atmCommit();
            atmWait<1>();
        } else {
            atmWait<0>();
        }
        __syncthreads();
        const bf16* kt = ks + (it & 1) * ATM_KTILE * LD;
        const bf16* vt = vs + (it & 1) * ATM_KTILE * LD;

        float s[ST][4];
        float dp[ST][4];
#pragma unroll
        for (int nt = 0; nt < ST; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.0f;
        }
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            if (kk * 16 >= dh) break;
            unsigned qa[4];
            unsigned ga[4];
            atmLdm(qa, atmA<LD>(qs, warp * 16, kk * 16, lane));
            atmLdm(ga, atmA<LD>(gs, warp * 16, kk * 16, lane));
#pragma unroll
            for (int np = 0; np < ST / 2; np++) {
                unsigned b[4];
                atmLdm(b, atmBt<LD>(kt, np * 16, kk * 16, lane));
                atmMma(s[2 * np], qa, b[0], b[1]);
                atmMma(s[2 * np + 1], qa, b[2], b[3]);
                atmLdm(b, atmBt<LD>(vt, np * 16, kk * 16, lane));
                atmMma(dp[2 * np], ga, b[0], b[1]);
                atmMma(dp[2 * np + 1], ga, b[2], b[3]);
            }
        }
        const bool whole = k0 + ATM_KTILE - 1 <= q0 && q0 + ATM_BLOCK - 1 - k0 <= window;
        unsigned ds[ST][2];  // dS = P (dP - D) in bf16, laid out as p of the forward
#pragma unroll
        for (int nt = 0; nt < ST; nt++) {
            float x[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int h = e >> 1;
                const int tq = t + 8 * h;
                const int j = k0 + nt * 8 + 2 * c + (e & 1);
                const float p = whole || (j <= tq && tq - j <= window) ? exp2f(s[nt][e] * sl2 - lse2[h]) : 0.0f;
                x[e] = p * (dp[nt][e] - Dr[h]);
            }
            ds[nt][0] = atmPack(x[0], x[1]);
            ds[nt][1] = atmPack(x[2], x[3]);
        }
#pragma unroll
        for (int kk = 0; kk < ATM_KTILE / 16; kk++) {
            const unsigned a[4] = {ds[2 * kk][0], ds[2 * kk][1], ds[2 * kk + 1][0], ds[2 * kk + 1][1]};
#pragma unroll
            for (int np = 0; np < DHP / 16; np++) {
                if (np * 16 >= dh) break;
                unsigned b[4];
                atmLdmT(b, atmB<LD>(kt, kk * 16, np * 16, lane));
                atmMma(dq[2 * np], a, b[0], b[1]);
                atmMma(dq[2 * np + 1], a, b[2], b[3]);
            }
        }
        __syncthreads();
    }
    // the loop ended with a barrier: the tiles are free for the staging
    float* staged = reinterpret_cast<float*>(atmSmem);
    atmStage<DHP>(staged, dq, scale, warp, lane);
    __syncthreads();
    atmAddRotatedBack<DHP>(staged, dqkv + row0 * 3 * d + (i64)head * dh, 3 * d, q0, L, dh, rd, rot);
}

/** Bytes of dynamic shared memory of the backward kv: K, V, and two buffers of Q, dout, lse and D. */
template <int DHP> __host__ __device__ constexpr int atmBackwardKVShared() {
    return (2 * ATM_BLOCK + 4 * atmQueryTile<DHP>()) * atmLd<DHP>() * 2 + 4 * atmQueryTile<DHP>() * 4;
}

/**
 * Backward, keys and values. Grid (ceil(L / 64), H, batch), block 128, dynamic shared memory atmBackwardKVShared:
 * warp w owns keys j0 + 16 w .. j0 + 16 w + 15 and walks the queries that see any key of the block,
 * j0 ..= min(L - 1, jEnd - 1 + window), in tiles of atmQueryTile. dqkv's k columns += the rotated-back dk, its v
 * columns += dv.
 */
template <int DHP>
__device__ void attentionMmaBackwardKV_impl(const bf16* q, const bf16* k, i64 qkStride, const bf16* v, i64 vStride,
                                            const bf16* dout, const float* lse, const float* D, const float* rot,
                                            bf16* dqkv, int L, int H, int dh, int window, int rd, float scale) {
    constexpr int LD = atmLd<DHP>();
    constexpr int KS = DHP / 16;
    constexpr int NT = DHP / 8;
    constexpr int QT = atmQueryTile<DHP>();
    constexpr int ST = QT / 8;  // n-tiles of the (transposed) scores
    extern __shared__ __align__(16) unsigned char atmSmem[];
    bf16* ks = reinterpret_cast<bf16*>(atmSmem);
    bf16* vs = ks + ATM_BLOCK * LD;
    bf16* qs = vs + ATM_BLOCK * LD;   // [2][QT][LD]
    bf16* gs = qs + 2 * QT * LD;      // [2][QT][LD] dout
    float* ls = reinterpret_cast<float*>(gs + 2 * QT * LD);  // [2][QT] lse
    float* Ds = ls + 2 * QT;                                  // [2][QT] D
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2;
    const int c = lane & 3;
    const int j0 = blockIdx.x * ATM_BLOCK;
    const int head = blockIdx.y;
    const i64 row0 = (i64)blockIdx.z * L;
    const i64 d = (i64)H * dh;
    const bf16* qh = q + row0 * qkStride + (i64)head * dh;
    const bf16* gh = dout + row0 * d + (i64)head * dh;
    const float* lh = lse + row0 * H + head;
    const float* Dh = D + row0 * H + head;
    const int jEnd = min(L, j0 + ATM_BLOCK);
    const int queryLast = lastQuery(jEnd - 1, L, window);
    const int tiles = (queryLast - j0 + QT) / QT;
    atmLoadTile<ATM_BLOCK, DHP>(ks, k + row0 * qkStride + (i64)head * dh, qkStride, j0, L, dh);
    atmLoadTile<ATM_BLOCK, DHP>(vs, v + row0 * vStride + (i64)head * dh, vStride, j0, L, dh);
    auto loadQueries = [&](int t0, int buf) {
        atmLoadTile<QT, DHP>(qs + buf * QT * LD, qh, qkStride, t0, L, dh);
        atmLoadTile<QT, DHP>(gs + buf * QT * LD, gh, d, t0, L, dh);
        if (threadIdx.x < QT) {
            const int tq = t0 + threadIdx.x;
            atmCopy4(ls + buf * QT + threadIdx.x, tq < L ? lh + (i64)tq * H : lh, tq < L);
            atmCopy4(Ds + buf * QT + threadIdx.x, tq < L ? Dh + (i64)tq * H : Dh, tq < L);
        }
    };
    loadQueries(j0, 0);
    atmCommit();

    const int j = j0 + warp * 16 + g;  // the key of accumulator rows g; j + 8 that of rows g + 8
    const float sl2 = scale * ATM_LOG2E;
    float dk[NT][4];
    float dv[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        dk[nt][0] = dk[nt][1] = dk[nt][2] = dk[nt][3] = 0.0f;
        dv[nt][0] = dv[nt][1] = dv[nt][2] = dv[nt][3] = 0.0f;
    }
    for (int it = 0; it < tiles; it++) {
        const int t0 = j0 + it * QT;
        if (it + 1 < tiles) {
            loadQueries(t0 + QT, (it + 1) & 1);
            atmCommit();
            atmWait<1>();
        } else {
            atmWait<0>();
        }
        __syncthreads();
        const bf16* qt = qs + (it & 1) * QT * LD;
        const bf16* gt = gs + (it & 1) * QT * LD;
        const float* lt = ls + (it & 1) * QT;
        const float* Dt = Ds + (it & 1) * QT;

        float s[ST][4];   // S^T: rows keys, columns queries
        float dp[ST][4];  // dP^T = V dout^T
#pragma unroll
        for (int nt = 0; nt < ST; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.0f;
        }
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            if (kk * 16 >= dh) break;
            unsigned ka[4];
            unsigned va[4];
            atmLdm(ka, atmA<LD>(ks, warp * 16, kk * 16, lane));
            atmLdm(va, atmA<LD>(vs, warp * 16, kk * 16, lane));
#pragma unroll
            for (int np = 0; np < ST / 2; np++) {
                unsigned b[4];
                atmLdm(b, atmBt<LD>(qt, np * 16, kk * 16, lane));
                atmMma(s[2 * np], ka, b[0], b[1]);
                atmMma(s[2 * np + 1], ka, b[2], b[3]);
                atmLdm(b, atmBt<LD>(gt, np * 16, kk * 16, lane));
                atmMma(dp[2 * np], va, b[0], b[1]);
                atmMma(dp[2 * np + 1], va, b[2], b[3]);
            }
        }
        // every pair seen: all queries at or past the last key, within the window of the first, inside the sequence
        const bool whole = j0 + ATM_BLOCK - 1 <= t0 && t0 + QT - 1 - j0 <= window && t0 + QT <= L;
        unsigned p[ST][2];
        unsigned ds[ST][2];
#pragma unroll
        for (int nt = 0; nt < ST; nt++) {
            float pv[4];
            float x[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int jk = j + 8 * (e >> 1);
                const int col = nt * 8 + 2 * c + (e & 1);
                const int tq = t0 + col;
                pv[e] = whole || (jk <= tq && tq - jk <= window && tq < L)
                            ? exp2f(s[nt][e] * sl2 - lt[col] * ATM_LOG2E) : 0.0f;
                x[e] = pv[e] * (dp[nt][e] - Dt[col]);
            }
            p[nt][0] = atmPack(pv[0], pv[1]);
            p[nt][1] = atmPack(pv[2], pv[3]);
            ds[nt][0] = atmPack(x[0], x[1]);
            ds[nt][1] = atmPack(x[2], x[3]);
        }
#pragma unroll
        for (int kk = 0; kk < QT / 16; kk++) {
            const unsigned pa[4] = {p[2 * kk][0], p[2 * kk][1], p[2 * kk + 1][0], p[2 * kk + 1][1]};
            const unsigned da[4] = {ds[2 * kk][0], ds[2 * kk][1], ds[2 * kk + 1][0], ds[2 * kk + 1][1]};
#pragma unroll
            for (int np = 0; np < DHP / 16; np++) {
                if (np * 16 >= dh) break;
                unsigned b[4];
                atmLdmT(b, atmB<LD>(gt, kk * 16, np * 16, lane));
                atmMma(dv[2 * np], pa, b[0], b[1]);
                atmMma(dv[2 * np + 1], pa, b[2], b[3]);
                atmLdmT(b, atmB<LD>(qt, kk * 16, np * 16, lane));
                atmMma(dk[2 * np], da, b[0], b[1]);
                atmMma(dk[2 * np + 1], da, b[2], b[3]);
            }
        }
        __syncthreads();
    }
    float* stagedK = reinterpret_cast<float*>(atmSmem);
    float* stagedV = stagedK + ATM_BLOCK * atmFloatLd<DHP>();
    atmStage<DHP>(stagedK, dk, scale, warp, lane);
    atmStage<DHP>(stagedV, dv, 1.0f, warp, lane);
    __syncthreads();
    bf16* dst = dqkv + row0 * 3 * d + d + (i64)head * dh;
    atmAddRotatedBack<DHP>(stagedK, dst, 3 * d, j0, L, dh, rd, rot);
    atmAddRotatedBack<DHP>(stagedV, dst + d, 3 * d, j0, L, dh, 0, rot);
}

static_assert(2 * ATM_BLOCK * atmFloatLd<128>() * 4 <= atmBackwardKVShared<128>(), "kv staging fits");
static_assert(2 * ATM_BLOCK * atmFloatLd<64>() * 4 <= atmBackwardKVShared<64>(), "kv staging fits");
static_assert(ATM_BLOCK * atmFloatLd<128>() * 4 <= atmBackwardQShared<128>(), "q staging fits");

}  // namespace b4j

// bf16 only: NAME_bf16 (pre-passes) and NAMEDHP_bf16 for the padded head dims 64 and 128
namespace b4j_bf16 {
extern "C" __global__ void __launch_bounds__(256) attentionRotaryTable_bf16(float* rot, int L, int rd, double base) {
    b4jPdlWait();
    b4j::attentionRotaryTable_impl(rot, L, rd, base);
}
extern "C" __global__ void __launch_bounds__(256)
    attentionRotate_bf16(const A* qkv, const float* rot, A* qk, long long n, int L, int H, int dh, int rd) {
    b4jPdlWait();
    b4j::attentionRotate_impl(qkv, rot, qk, n, L, H, dh, rd);
}
extern "C" __global__ void __launch_bounds__(256)
    attentionRotatePairs_bf16(const A* qkv, const float* rot, A* qk, long long n, int L, int H, int dh, int rd) {
    b4jPdlWait();
    b4j::attentionRotatePairs_impl(qkv, rot, qk, n, L, H, dh, rd);
}
extern "C" __global__ void __launch_bounds__(256)
    attentionRotateEights_bf16(const A* qkv, const float* rot, A* qk, long long n, int L, int H, int dh, int rd) {
    b4jPdlWait();
    b4j::attentionRotateEights_impl(qkv, rot, qk, n, L, H, dh, rd);
}
extern "C" __global__ void __launch_bounds__(256)
    attentionRowDot_bf16(const A* dout, const A* out, float* D, long long cells, int dh) { b4jPdlWait();
    b4j::attentionRowDot_impl(dout, out, D, cells, dh);
}
}  // namespace b4j_bf16

#define ATM_KERNELS(DHP)                                                                                             \
    namespace b4j_bf16 {                                                                                             \
    extern "C" __global__ void __launch_bounds__(b4j::ATM_THREADS)                                                   \
        attentionMmaForward##DHP##_bf16(const A* q, const A* k, long long qkStride, const A* v, long long vStride,   \
                                        A* out, float* lse, int L, int H, int dh, int window, float scale) {         \
        b4jPdlWait();                                                                                                \
        b4j::attentionMmaForward_impl<DHP>(q, k, qkStride, v, vStride, out, lse, L, H, dh, window, scale);           \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(b4j::ATM_THREADS) attentionMmaBackwardQ##DHP##_bf16(                \
        const A* q, const A* k, long long qkStride, const A* v, long long vStride, const A* dout, const float* lse,  \
        const float* D, const float* rot, A* dqkv, int L, int H, int dh, int window, int rd, float scale) {          \
        b4jPdlWait();                                                                                                \
        b4j::attentionMmaBackwardQ_impl<DHP>(q, k, qkStride, v, vStride, dout, lse, D, rot, dqkv, L, H, dh, window,  \
                                             rd, scale);                                                             \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(b4j::ATM_THREADS) attentionMmaBackwardKV##DHP##_bf16(               \
        const A* q, const A* k, long long qkStride, const A* v, long long vStride, const A* dout, const float* lse,  \
        const float* D, const float* rot, A* dqkv, int L, int H, int dh, int window, int rd, float scale) {          \
        b4jPdlWait();                                                                                                \
        b4j::attentionMmaBackwardKV_impl<DHP>(q, k, qkStride, v, vStride, dout, lse, D, rot, dqkv, L, H, dh, window, \
                                              rd, scale);                                                            \
    }                                                                                                                \
    }

ATM_KERNELS(64)
ATM_KERNELS(128)
