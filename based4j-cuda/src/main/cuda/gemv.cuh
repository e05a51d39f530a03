// Matrix products of a few rows (included by based4j_kernels.cu): y = x W^T (+ bias) for the M <= 8 rows of a decode
// step, streaming W once at the bandwidth limit where a general product's tiles would mostly hold zeros. Launched by
// io.based4j.cuda.Kernels.gemv for CudaBackend's products of at most GEMV_MAX_M rows.
#pragma once

namespace b4j {

#define GEMV_THREADS 256
/** Most rows of x. */
#define GEMV_MAX_M 8

/**
 * y = x W^T (+ bias): x A [M, K] (M <= GEMV_MAX_M), w W [N, K], bias W [N] or null, y [M, N] in A, or float32 where
 * outF32. Grid ceil(N / (8 warps x R)), block GEMV_THREADS: a warp takes R rows of W (1 for narrow outputs, so that
 * there are blocks enough to fill the GPU; 2 for wide ones, halving the reads of x), its lanes 8
 * values of a row at a time (16-byte loads: W read once; x, small, from the L1 cache), each lane summing its share of
 * the M x R dot products in float32; the lanes' sums are then added over the warp in a fixed order
 * (deterministic), the bias added in float32 and the result rounded once. K a multiple of 8; x and w 16-byte aligned.
 */
template <int R, typename W, typename A>
__device__ void gemvRows(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K) {
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int n0 = (blockIdx.x * (GEMV_THREADS / 32) + warp) * R;
    if (n0 >= N) return;  // the whole warp
    float acc[R][GEMV_MAX_M];
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int m = 0; m < GEMV_MAX_M; m++) acc[r][m] = 0.0f;
    }
    const int chunks = K >> 3;
    for (int c = lane; c < chunks; c += 32) {
        float wv[R][8];
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (n0 + r < N) {
                load8(w + (i64)(n0 + r) * K + 8 * c, wv[r]);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) wv[r][i] = 0.0f;
            }
        }
#pragma unroll
        for (int m = 0; m < GEMV_MAX_M; m++) {
            if (m < M) {
                float xv[8];
                load8(x + (i64)m * K + 8 * c, xv);
#pragma unroll
                for (int r = 0; r < R; r++) {
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[r][m] += wv[r][i] * xv[i];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int m = 0; m < GEMV_MAX_M; m++) {
            if (m < M) {
                float v = acc[r][m];
                for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
                acc[r][m] = v;
            }
        }
    }
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int n = n0 + r;
            if (n >= N) continue;
            const float b = bias != nullptr ? toF(bias[n]) : 0.0f;
#pragma unroll
            for (int m = 0; m < GEMV_MAX_M; m++) {
                if (m < M) {
                    const float v = acc[r][m] + b;
                    if (outF32) {
                        reinterpret_cast<float*>(out)[(i64)m * N + n] = v;
                    } else {
                        reinterpret_cast<A*>(out)[(i64)m * N + n] = fromF<A>(v);
                    }
                }
            }
        }
    }
}

/**
 * Where a warp of gemv versions 2 and 3 works: the first of its R rows of w (n0) and its part [c0, c1) of the
 * width's pieces of 8 values; the block's warps are groups of P parts, a group R rows.
 */
struct GemvPart {
    int n0, c0, c1;
};

template <int R>
__device__ __forceinline__ GemvPart gemvPartOf(int K, int P, int block) {
    const int warp = threadIdx.x >> 5;
    const int groups = (GEMV_THREADS / 32) / P;
    const int group = warp / P;
    const int part = warp - group * P;
    const int chunks = K >> 3;
    const int perPart = (chunks + P - 1) / P;
    GemvPart g;
    g.n0 = (block * groups + group) * R;
    g.c0 = part * perPart;
    g.c1 = min(chunks, g.c0 + perPart);
    return g;
}

/** gemvPartOf for the block's own index. */
template <int R>
__device__ __forceinline__ GemvPart gemvPartOf(int K, int P) {
    return gemvPartOf<R>(K, P, blockIdx.x);
}

/**
 * Adds each of a warp's R x MM sums over its lanes in a fixed order (a butterfly, deterministic) into
 * partial[warp][r][m], for the M rows of x there.
 */
template <int R, int MM>
__device__ __forceinline__ void gemvWarpSums(float (&acc)[R][MM], float (*partial)[R][MM], int M) {
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int m = 0; m < MM; m++) {
            if (m < M) {
                float v = acc[r][m];
                for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
                if (lane == 0) partial[warp][r][m] = v;
            }
        }
    }
}

/**
 * The end of gemv versions 2 and 3: each warp's sums added over its lanes in a fixed order into partial[warp], then
 * the P parts' sums of each output in part order, the bias added and the result rounded once (deterministic). The
 * block's warps are groups of P parts, a group R rows of w; MM rows of x at most, M of them there.
 */
template <int R, int MM, typename W, typename A>
__device__ __forceinline__ void gemvPartsOut(float (&acc)[R][MM], float (*partial)[R][MM], const W* bias, void* out,
                                             int outF32, int M, int N, int P, int block) {
    const int groups = (GEMV_THREADS / 32) / P;
    gemvWarpSums<R, MM>(acc, partial, M);
    __syncthreads();
    // thread t: (group, r, m) of the block's outputs, the parts summed in order
    for (int t = threadIdx.x; t < groups * R * MM; t += GEMV_THREADS) {
        const int g = t / (R * MM);
        const int r = (t / MM) % R;
        const int m = t % MM;
        const int n = (block * groups + g) * R + r;
        if (m >= M || n >= N) continue;
        float v = 0.0f;
        for (int p = 0; p < P; p++) v += partial[g * P + p][r][m];
        v += bias != nullptr ? toF(bias[n]) : 0.0f;
        if (outF32) {
            reinterpret_cast<float*>(out)[(i64)m * N + n] = v;
        } else {
            reinterpret_cast<A*>(out)[(i64)m * N + n] = fromF<A>(v);
        }
    }
}

/** gemvPartsOut for the block's own index. */
template <int R, int MM, typename W, typename A>
__device__ __forceinline__ void gemvPartsOut(float (&acc)[R][MM], float (*partial)[R][MM], const W* bias, void* out,
                                             int outF32, int M, int N, int P) {
    gemvPartsOut<R, MM, W, A>(acc, partial, bias, out, outF32, M, N, P, blockIdx.x);
}

/**
 * Version 2: y = x W^T (+ bias) as version 1, with more of W in flight and the reads of x shared. A warp takes R rows
 * of W (R = 1, 2, 4 for M up to 2, 4, 8: each x value a lane loads serves R rows) and one of P parts of the width
 * (P = 1, 2, 4 or 8 warps a row group, so that narrow outputs still give every SM warps enough); its lanes load
 * U = 4 / R 16-byte pieces of each row before using them (4 x 16 bytes of W in flight a lane). Each warp's sums are
 * added over its lanes in a fixed order, the P parts' sums in part order through shared memory, then the bias, and
 * the result rounded once: deterministic. Grid ceil(N / (R 8 / P)), block GEMV_THREADS.
 */
template <int R, typename W, typename A>
__device__ void gemvParts(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K,
                          int P) {
    constexpr int U = 4 / R;
    __shared__ float partial[GEMV_THREADS / 32][R][GEMV_MAX_M];
    const int lane = threadIdx.x & 31;
    const GemvPart wp = gemvPartOf<R>(K, P);
    const int n0 = wp.n0;
    const int c0 = wp.c0;
    const int c1 = wp.c1;
    float acc[R][GEMV_MAX_M];
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int m = 0; m < GEMV_MAX_M; m++) acc[r][m] = 0.0f;
    }
    if (n0 < N) {
        for (int c = c0 + lane; c < c1; c += 32 * U) {
            float wv[U][R][8];
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int cu = c + 32 * u;
#pragma unroll
                for (int r = 0; r < R; r++) {
                    if (cu < c1 && n0 + r < N) {
                        load8(w + (i64)(n0 + r) * K + 8 * cu, wv[u][r]);
                    } else {
#pragma unroll
                        for (int i = 0; i < 8; i++) wv[u][r][i] = 0.0f;
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int cu = c + 32 * u;
                if (cu >= c1) break;
#pragma unroll
                for (int m = 0; m < GEMV_MAX_M; m++) {
                    if (m < M) {
                        float xv[8];
                        load8(x + (i64)m * K + 8 * cu, xv);
#pragma unroll
                        for (int r = 0; r < R; r++) {
#pragma unroll
                            for (int i = 0; i < 8; i++) acc[r][m] += wv[u][r][i] * xv[i];
                        }
                    }
                }
            }
        }
    }
    gemvPartsOut<R, GEMV_MAX_M, W, A>(acc, partial, bias, out, outF32, M, N, P);
}

/** Eight values of W as loaded (one 16-byte load of bf16, two of float32), converted to float32 when used. */
template <typename T>
struct GemvPiece;

template <>
struct GemvPiece<bf16> {
    uint4 raw;
    __device__ __forceinline__ void load(const bf16* p) { raw = *reinterpret_cast<const uint4*>(p); }
    __device__ __forceinline__ void clear() { raw = make_uint4(0u, 0u, 0u, 0u); }
    __device__ __forceinline__ void get(float* v) const { unpack8(raw, v); }
};

template <>
struct GemvPiece<float> {
    float4 a, b;
    __device__ __forceinline__ void load(const float* p) {
        a = reinterpret_cast<const float4*>(p)[0];
        b = reinterpret_cast<const float4*>(p)[1];
    }
    __device__ __forceinline__ void clear() { a = b = make_float4(0.0f, 0.0f, 0.0f, 0.0f); }
    __device__ __forceinline__ void get(float* v) const {
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
        v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    }
};

/** Pieces of W in flight a lane in version 3, over its R rows: 8 / R of bf16, 4 / R of float32 (16 bytes each or 32). */
template <int R, typename W>
__host__ __device__ constexpr int gemv3Pieces() {
    return (sizeof(W) == 2 ? 8 : 4) / R;
}

/**
 * One round of a lane's loads of W in version 3: the U pieces from piece `from` (every 32nd) of rows n0 ..
 * n0 + R - 1, zeros past the part's end c1 or the last row.
 */
template <int R, typename W>
__device__ __forceinline__ void gemv3Round(GemvPiece<W> (&pieces)[gemv3Pieces<R, W>()][R], const W* w, int N, int K,
                                           int n0, int from, int c1) {
#pragma unroll
    for (int u = 0; u < gemv3Pieces<R, W>(); u++) {
        const int cu = from + 32 * u;
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (cu < c1 && n0 + r < N) {
                pieces[u][r].load(w + (i64)(n0 + r) * K + 8 * cu);
            } else {
                pieces[u][r].clear();
            }
        }
    }
}

/**
 * A warp's sums of version 3 over its part [c0, c1) of rows n0.., whose first round of loads is in pieces: each
 * round used, then the next one loaded. After the last round, the first round of the part (nn0, nc0, nc1) is loaded
 * into pieces where nn0 < N (the streamed form's next part, in flight while this one's sums are added and written).
 */
template <int R, int MM, typename W, typename A>
__device__ __forceinline__ void gemv3Rounds(const A* x, const W* w, int M, int N, int K, int n0, int c0, int c1,
                                            GemvPiece<W> (&pieces)[gemv3Pieces<R, W>()][R], float (&acc)[R][MM],
                                            int nn0, int nc0, int nc1) {
    constexpr int U = gemv3Pieces<R, W>();
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int m = 0; m < MM; m++) acc[r][m] = 0.0f;
    }
    if (n0 < N) {
        for (int c = c0 + lane; c < c1; c += 32 * U) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int cu = c + 32 * u;
                if (cu >= c1) break;
#pragma unroll
                for (int m = 0; m < MM; m++) {
                    if (MM == 1 || m < M) {
                        float xv[8];
                        load8(x + (i64)m * K + 8 * cu, xv);
#pragma unroll
                        for (int r = 0; r < R; r++) {
                            float wv[8];
                            pieces[u][r].get(wv);
#pragma unroll
                            for (int i = 0; i < 8; i++) acc[r][m] += wv[i] * xv[i];
                        }
                    }
                }
            }
            if (c + 32 * U < c1) gemv3Round<R, W>(pieces, w, N, K, n0, c + 32 * U, c1);
        }
    }
    if (nn0 < N) gemv3Round<R, W>(pieces, w, N, K, nn0, nc0 + lane, nc1);
}

/**
 * A warp's sums of version 3 (gemvPartsFixed below) over its part [c0, c1) of rows n0..: its first round of W loaded
 * before the wait for the kernel before where early is set, after it elsewhere.
 */
template <int R, int MM, typename W, typename A>
__device__ __forceinline__ void gemv3Sums(const A* x, const W* w, int M, int N, int K, int n0, int c0, int c1,
                                          int early, float (&acc)[R][MM]) {
    GemvPiece<W> pieces[gemv3Pieces<R, W>()][R];
    const int c = c0 + (threadIdx.x & 31);
    if (early && n0 < N) gemv3Round<R, W>(pieces, w, N, K, n0, c, c1);
    b4jPdlWait();
    if (!early && n0 < N) gemv3Round<R, W>(pieces, w, N, K, n0, c, c1);
    gemv3Rounds<R, MM, W, A>(x, w, M, N, K, n0, c0, c1, pieces, acc, N, 0, 0);
}

/**
 * Version 3: version 2's rows and parts with the rows of x known at compile time (MM = 1, 2, 4 or 8, the launcher
 * taking the smallest >= M) and W's pieces kept as loaded until used: about half the registers of version 2, so a
 * multiprocessor holds 4 blocks of 256 threads (2 for 8 rows of x), and U pieces of 8 values in flight a lane (8 / R
 * of bf16, 16 bytes each; 4 / R of float32). The launcher gives each warp's part of a row at most 32 U pieces (one
 * round of loads) where 8 parts suffice. Where early is set (a recorded decode step, whose kernels write no
 * weights), the first pieces of W are loaded before waiting for the kernel before (programmatic dependent launch;
 * without it the wait returns at once), so that they stream in during that kernel's tail; elsewhere after it. Sums
 * as version 2: deterministic, the bias added before the one rounding (gemv3Sums: a warp's sums).
 */
template <int R, int MM, typename W, typename A>
__device__ void gemvPartsFixed(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K,
                               int P, int early) {
    __shared__ float partial[GEMV_THREADS / 32][R][MM];
    const GemvPart wp = gemvPartOf<R>(K, P);
    float acc[R][MM];
    gemv3Sums<R, MM, W, A>(x, w, M, N, K, wp.n0, wp.c0, wp.c1, early, acc);
    gemvPartsOut<R, MM, W, A>(acc, partial, bias, out, outF32, M, N, P);
}

/**
 * Version 3 streamed: the blocks of a launch of version 3 (one row of W a warp, MM = 1 or 2 rows of x) taken in turn
 * by a grid of fewer blocks (at most as many as are resident at once): block b does version 3's blocks b, b + grid,
 * b + 2 grid, ... below vblocks, each as version 3's block of that index would (its rows, its parts, its sums in their
 * order: every output version 3's bit for bit), and each warp's loads of the next one's first round of W go out as
 * soon as its last round of this one is used, before this one's sums are added over the warps and written: no block
 * starts after the grid's first (where its blocks are all resident at once), and no warp waits with nothing in
 * flight between its rows. The warps' sums go through two halves of shared memory in turn, so one barrier a block's
 * turn suffices. partOf(b) says where a warp of block b works (rows N: none), out(acc, partial, b) ends block b.
 */
template <int MM, typename W, typename A, typename PartOf, typename Out>
__device__ __forceinline__ void gemvStreamed(const A* x, const W* w, int M, int N, int K, int early, int vblocks,
                                             PartOf partOf, Out out) {
    __shared__ float partial[2][GEMV_THREADS / 32][1][MM];
    GemvPiece<W> pieces[gemv3Pieces<1, W>()][1];
    int vb = blockIdx.x;
    GemvPart wp = partOf(vb);
    const int c = wp.c0 + (threadIdx.x & 31);
    if (early && wp.n0 < N) gemv3Round<1, W>(pieces, w, N, K, wp.n0, c, wp.c1);
    b4jPdlWait();
    if (!early && wp.n0 < N) gemv3Round<1, W>(pieces, w, N, K, wp.n0, c, wp.c1);
    for (int half = 0; vb < vblocks; half ^= 1) {
        const int next = vb + gridDim.x;
        GemvPart np = partOf(next);
        if (next >= vblocks) np.n0 = N;
        float acc[1][MM];
        gemv3Rounds<1, MM, W, A>(x, w, M, N, K, wp.n0, wp.c0, wp.c1, pieces, acc, np.n0, np.c0, np.c1);
        out(acc, partial[half], vb);
        vb = next;
        wp = np;
    }
}

/** gemvStreamed over version 3's blocks (gemvPartsFixed's with R = 1). */
template <int MM, typename W, typename A>
__device__ void gemvStream(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K, int P,
                           int early, int vblocks) {
    gemvStreamed<MM, W, A>(x, w, M, N, K, early, vblocks, [&](int vb) { return gemvPartOf<1>(K, P, vb); },
                           [&](float (&acc)[1][MM], float (*partial)[1][MM], int vb) {
                               gemvPartsOut<1, MM, W, A>(acc, partial, bias, out, outF32, M, N, P, vb);
                           });
}

/**
 * Version 3 for up to three products of the same x in one launch (a decode step's linear-attention q, k and v
 * projections): product s takes blocks [start_s, start_{s+1}) of the grid, each block doing what block
 * (blockIdx.x - start_s) of that product's own launch would (its rows, its P parts, its sums in their order), so every
 * output is version 3's bit for bit. One row of W a warp (R = 1: at most 2 rows of x). No biases.
 */
template <int MM, typename W, typename A>
__device__ void gemvSegments(const A* x, int M, int K, int outF32, int early, const W* w0, const W* w1, const W* w2,
                             void* o0, void* o1, void* o2, int n0, int n1, int n2, int p0, int p1, int p2, int s1,
                             int s2) {
    __shared__ float partial[GEMV_THREADS / 32][1][MM];
    const int seg = blockIdx.x < s1 ? 0 : blockIdx.x < s2 ? 1 : 2;
    const int block = blockIdx.x - (seg == 0 ? 0 : seg == 1 ? s1 : s2);
    const W* w = seg == 0 ? w0 : seg == 1 ? w1 : w2;
    void* out = seg == 0 ? o0 : seg == 1 ? o1 : o2;
    const int N = seg == 0 ? n0 : seg == 1 ? n1 : n2;
    const int P = seg == 0 ? p0 : seg == 1 ? p1 : p2;
    const GemvPart wp = gemvPartOf<1>(K, P, block);
    float acc[1][MM];
    gemv3Sums<1, MM, W, A>(x, w, M, N, K, wp.n0, wp.c0, wp.c1, early, acc);
    gemvPartsOut<1, MM, W, A>(acc, partial, nullptr, out, outF32, M, N, P, block);
}

/**
 * Where a warp of gemvPaired's block `block` works: its rows n0 (j or H + j; 2H, past the product's rows, where j is
 * past H: no loads) and its part [c0, c1) of the width's pieces. The block's warps are groups of P parts; its first
 * half of groups take rows j, the second half rows H + j of the same j.
 */
__device__ __forceinline__ GemvPart gemvPairOf(int H, int K, int P, int block) {
    const int warp = threadIdx.x >> 5;
    const int groups = (GEMV_THREADS / 32) / P;
    const int pairs = groups / 2;
    const int group = warp / P;
    const int part = warp - group * P;
    const int half = group / pairs;
    const int j = block * pairs + (group - half * pairs);
    const int chunks = K >> 3;
    const int perPart = (chunks + P - 1) / P;
    GemvPart g;
    g.c0 = part * perPart;
    g.c1 = min(chunks, g.c0 + perPart);
    g.n0 = j < H ? half * H + j : 2 * H;
    return g;
}

/**
 * The end of gemvPaired's block `block`: each warp's sums added over its lanes into partial, then the pair's op on
 * each j of the block (the parts' sums in part order, the bias, each output rounded as the product would write it).
 */
template <int MM, int CONV, typename W, typename A>
__device__ __forceinline__ void gemvPairedOut(float (&acc)[1][MM], float (*partial)[1][MM], const W* bias, A* out,
                                              int M, int H, int P, int block, const W* convW, A* hist,
                                              const int* layout, int B, int k) {
    const int pairs = (GEMV_THREADS / 32) / P / 2;
    gemvWarpSums<1, MM>(acc, partial, M);
    __syncthreads();
    for (int t = threadIdx.x; t < pairs * MM; t += GEMV_THREADS) {
        const int p = t / MM;
        const int m = t % MM;
        const int jj = block * pairs + p;
        if (m >= M || jj >= H) continue;
        float value = 0.0f;
        float gate = 0.0f;
        for (int q = 0; q < P; q++) value += partial[p * P + q][0][m];
        for (int q = 0; q < P; q++) gate += partial[(pairs + p) * P + q][0][m];
        value += bias != nullptr ? toF(bias[jj]) : 0.0f;
        gate += bias != nullptr ? toF(bias[H + jj]) : 0.0f;
        const float y = toF(fromF<A>(value));
        const float g = toF(fromF<A>(gate));
        if (CONV) {
            const Layout L = layoutOf(layout, B);
            const int taps = k - 1;
            A* h = hist + (i64)L.slots[L.tokSeq[m]] * taps * H;
            float conv = 0.0f;
            for (int i = 0; i < k; i++) {
                const float xv = i < taps ? toF(h[(i64)i * H + jj]) : y;
                conv = fmaf(toF(convW[(i64)jj * k + i]), xv, conv);
                if (i > 0) h[(i64)(i - 1) * H + jj] = fromF<A>(xv);  // y is A's already: exact
            }
            out[(i64)m * H + jj] = fromF<A>(g * silu(conv));
        } else {
            out[(i64)m * H + jj] = fromF<A>(y * silu(g));
        }
    }
}

/**
 * A product of 2H outputs and the op that pairs output j with output H + j after it, in one kernel: y and g, outputs j
 * and H + j rounded to A as the product would write them, for M <= MM rows of x (MM 1 or 2). CONV 0: out[m, j] =
 * y * silu(g), the SwiGLU of a decode step's MLP in-projection (swigluVec's numbers). CONV 1: BaseConv's decode step
 * of channel j (baseConvStep's numbers), y the conv's input and g its gate: row m is the one token of sequence
 * tokSeq[m] of the batch's layout (B sequences), whose history of k - 1 taps (type A, slot-major, as the conv state
 * holds it) is shifted as the conv reads it; out[m, j] = g * silu(conv). The sums are those of version 3 (one row of W
 * a warp, P parts), so every number is the unfused kernels', bit for bit. A block's warps are groups of P parts; its
 * first half of groups take rows j, the second half rows H + j of the same j (P <= 4, so that a block holds a pair).
 * Grid ceil(H / (4 / P)).
 */
template <int MM, int CONV, typename W, typename A>
__device__ void gemvPaired(const A* x, const W* w, const W* bias, A* out, int M, int H, int K, int P, int early,
                           const W* convW, A* hist, const int* layout, int B, int k) {
    __shared__ float partial[GEMV_THREADS / 32][1][MM];
    const GemvPart wp = gemvPairOf(H, K, P, blockIdx.x);
    float acc[1][MM];
    gemv3Sums<1, MM, W, A>(x, w, M, 2 * H, K, wp.n0, wp.c0, wp.c1, early, acc);
    gemvPairedOut<MM, CONV, W, A>(acc, partial, bias, out, M, H, P, blockIdx.x, convW, hist, layout, B, k);
}

/**
 * gemvPaired streamed, as gemvStream streams version 3: block b takes gemvPaired's blocks b, b + grid, ... below
 * vblocks, each as gemvPaired's block of that index would (every output and the history bit for bit), the next one's
 * first round of W loaded as this one's last is used.
 */
template <int MM, int CONV, typename W, typename A>
__device__ void gemvPairedStream(const A* x, const W* w, const W* bias, A* out, int M, int H, int K, int P, int early,
                                 const W* convW, A* hist, const int* layout, int B, int k, int vblocks) {
    gemvStreamed<MM, W, A>(x, w, M, 2 * H, K, early, vblocks, [&](int vb) { return gemvPairOf(H, K, P, vb); },
                           [&](float (&acc)[1][MM], float (*partial)[1][MM], int vb) {
                               gemvPairedOut<MM, CONV, W, A>(acc, partial, bias, out, M, H, P, vb, convW, hist,
                                                             layout, B, k);
                           });
}

template <typename W, typename A>
__device__ void gemv1_impl(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K) {
    gemvRows<1, W, A>(x, w, bias, out, outF32, M, N, K);
}

template <typename W, typename A>
__device__ void gemv2_impl(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K) {
    gemvRows<2, W, A>(x, w, bias, out, outF32, M, N, K);
}

template <typename W, typename A>
__device__ void gemvP1_impl(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K, int P) {
    gemvParts<1, W, A>(x, w, bias, out, outF32, M, N, K, P);
}

template <typename W, typename A>
__device__ void gemvP2_impl(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K, int P) {
    gemvParts<2, W, A>(x, w, bias, out, outF32, M, N, K, P);
}

template <typename W, typename A>
__device__ void gemvP4_impl(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K, int P) {
    gemvParts<4, W, A>(x, w, bias, out, outF32, M, N, K, P);
}

}  // namespace b4j

B4J_KERNEL(gemv1, GEMV_THREADS, (const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K),
           (x, w, bias, out, outF32, M, N, K))
B4J_KERNEL(gemv2, GEMV_THREADS, (const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K),
           (x, w, bias, out, outF32, M, N, K))
B4J_KERNEL(gemvP1, GEMV_THREADS,
           (const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K, int P),
           (x, w, bias, out, outF32, M, N, K, P))
B4J_KERNEL(gemvP2, GEMV_THREADS,
           (const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K, int P),
           (x, w, bias, out, outF32, M, N, K, P))
B4J_KERNEL(gemvP4, GEMV_THREADS,
           (const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K, int P),
           (x, w, bias, out, outF32, M, N, K, P))

// version 3 (gemvPartsFixed): gemv3r{R}m{MM}, at least BLOCKS blocks a multiprocessor (4: at most 64 registers a
// thread; 2 for 8 rows of x, whose 32 sums would not fit); the wait for the kernel before is in the body (after W's
// first loads where early is set)
#define GEMV3_KERNEL(R, MM, BLOCKS)                                                                                          \
    namespace b4j_f32 {                                                                                              \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, BLOCKS) gemv3r##R##m##MM##_f32(                           \
        const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K, int P, int early) {       \
        b4j::gemvPartsFixed<R, MM, W, A>(x, w, bias, out, outF32, M, N, K, P, early); }                              \
    }                                                                                                                \
    namespace b4j_bf16 {                                                                                             \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, BLOCKS) gemv3r##R##m##MM##_bf16(                          \
        const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K, int P, int early) {       \
        b4j::gemvPartsFixed<R, MM, W, A>(x, w, bias, out, outF32, M, N, K, P, early); }                              \
    }
GEMV3_KERNEL(1, 1, 4)
GEMV3_KERNEL(1, 2, 4)
GEMV3_KERNEL(2, 4, 4)
GEMV3_KERNEL(4, 8, 2)

// version 3 over up to three products of one x (gemvSegments): gemvSegments{MM} for one or two rows of x
#define GEMV_SEGMENTS_KERNEL_OF(MM, SUFFIX)                                                                             \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 4) gemvSegments##MM##SUFFIX(                            \
        const A* x, int M, int K, int outF32, int early, const W* w0, const W* w1, const W* w2, void* o0, void* o1,  \
        void* o2, int n0, int n1, int n2, int p0, int p1, int p2, int s1, int s2) {                                  \
        b4j::gemvSegments<MM, W, A>(x, M, K, outF32, early, w0, w1, w2, o0, o1, o2, n0, n1, n2, p0, p1, p2, s1, s2); }
#define GEMV_SEGMENTS_KERNEL(MM)                                                                                        \
    namespace b4j_f32 {                                                                                              \
    GEMV_SEGMENTS_KERNEL_OF(MM, _f32)                                                                                \
    }                                                                                                                \
    namespace b4j_bf16 {                                                                                             \
    GEMV_SEGMENTS_KERNEL_OF(MM, _bf16)                                                                               \
    }
GEMV_SEGMENTS_KERNEL(1)
GEMV_SEGMENTS_KERNEL(2)

// version 3 streamed (gemvStream) and the fused forms streamed (gemvPairedStream), for one or two rows of x:
// gemvStream{MM}, gemvSwigluStream{MM}, gemvConvStream{MM}
#define GEMV_STREAM_KERNELS_OF(MM, SUFFIX)                                                                              \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 4) gemvStream##MM##SUFFIX(                              \
        const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K, int P, int early,         \
        int vblocks) {                                                                                               \
        b4j::gemvStream<MM, W, A>(x, w, bias, out, outF32, M, N, K, P, early, vblocks); }                            \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 4) gemvSwigluStream##MM##SUFFIX(                        \
        const A* x, const W* w, const W* bias, A* out, int M, int H, int K, int P, int early, int vblocks) {         \
        b4j::gemvPairedStream<MM, 0, W, A>(x, w, bias, out, M, H, K, P, early, nullptr, nullptr, nullptr, 0, 0,      \
                                           vblocks); }                                                               \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 4) gemvConvStream##MM##SUFFIX(                          \
        const A* x, const W* w, const W* bias, A* out, int M, int H, int K, int P, int early, const W* convW,        \
        A* hist, const int* layout, int B, int k, int vblocks) {                                                 \
        b4j::gemvPairedStream<MM, 1, W, A>(x, w, bias, out, M, H, K, P, early, convW, hist, layout, B, k, vblocks); }
#define GEMV_STREAM_KERNELS(MM)                                                                                         \
    namespace b4j_f32 {                                                                                              \
    GEMV_STREAM_KERNELS_OF(MM, _f32)                                                                                 \
    }                                                                                                                \
    namespace b4j_bf16 {                                                                                             \
    GEMV_STREAM_KERNELS_OF(MM, _bf16)                                                                                \
    }
GEMV_STREAM_KERNELS(1)
GEMV_STREAM_KERNELS(2)

// the fused forms of version 3 (one row of W a warp), for one or two rows of x: gemvSwiglu{MM}, gemvConv{MM}; W and A
// are the types of the namespace the entry points are defined in (SUFFIX _f32 or _bf16)
#define GEMV_FUSED_KERNELS_OF(MM, SUFFIX)                                                                               \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 4) gemvSwiglu##MM##SUFFIX(                              \
        const A* x, const W* w, const W* bias, A* out, int M, int H, int K, int P, int early) {                      \
        b4j::gemvPaired<MM, 0, W, A>(x, w, bias, out, M, H, K, P, early, nullptr, nullptr, nullptr, 0, 0); }          \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 4) gemvConv##MM##SUFFIX(                                \
        const A* x, const W* w, const W* bias, A* out, int M, int H, int K, int P, int early, const W* convW,        \
        A* hist, const int* layout, int B, int k) {                                                              \
        b4j::gemvPaired<MM, 1, W, A>(x, w, bias, out, M, H, K, P, early, convW, hist, layout, B, k); }
#define GEMV_FUSED_KERNELS(MM)                                                                                          \
    namespace b4j_f32 {                                                                                              \
    GEMV_FUSED_KERNELS_OF(MM, _f32)                                                                                  \
    }                                                                                                                \
    namespace b4j_bf16 {                                                                                             \
    GEMV_FUSED_KERNELS_OF(MM, _bf16)                                                                                 \
    }
GEMV_FUSED_KERNELS(1)
GEMV_FUSED_KERNELS(2)
