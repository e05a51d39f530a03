// A decode step's products on tensor cores (included by based4j_kernels.cu after the mma.sync helpers of
// train_linear_mma.cuh): out = x W^T (+ bias) for the few rows of x a decode step has (1 to 128 sequences), bf16
// operands, float32 sums. Launched by io.based4j.cuda.Kernels.gemmRows; compared with cuBLASLt and gemv.cuh by
// `based4j bench kernels --kernel gemv`.
//
// What it is for: a decode step of 2 to 8 sequences multiplies a handful of rows by each weight matrix, so the
// weights (based-1b's MLP in-projection: 25.7 MB) are the bytes that count, and the library's tiles leave most
// multiprocessors idle for the narrow products (1792 outputs: 14 tiles of 128). Here a block takes 128 outputs (rows
// of W) and a share of the width (K), streams its W tile and the matching columns of x through shared memory in
// stages of 64 (cp.async, several stages in flight), and multiplies them on mma.sync.m16n8k16 with the outputs as the A operand (W's rows, row-major) and the
// rows of x as the B operand (so that 8 rows of x are a whole n8 tile: no padding to 16 below 16 rows but the
// operand's zeros in shared memory). The S blocks that share a tile's width form a thread block cluster (sm_90):
// each leaves its float32 tile in its own shared memory and block r adds up outputs [r 128 / S, (r + 1) 128 / S) of
// the S tiles through distributed shared memory, in the order of the blocks: deterministic, nothing written to global
// memory but the output. The bias is added before the one rounding.
//
// Which products take it: Kernels.gemmRowsPays (measured on an H200). Requirements (checked by Kernels.gemmRowsFits
// and the launcher): bf16, M from 1 to 128 (MP, the rows a block takes, 8 to 128, the
// smallest power of two at or above M and 8), K a multiple of 64, x and W 16-byte aligned; S > 1 only on sm_90.
#pragma once

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#include <cooperative_groups.h>
#define B4J_GR_CLUSTERS 1
#else
#define B4J_GR_CLUSTERS 0
#endif

namespace b4j {

constexpr int GR_THREADS = 256;
constexpr int GR_FEATURES = 128;    // outputs (rows of W) a block
constexpr int GR_KC = 64;           // columns of W and x a stage
constexpr int GR_LD = GR_KC + 8;    // a stage's row stride in bf16: ldmatrix's 8 rows fall on distinct banks

/** The shape of gemmRows for MP rows of x a block (its SMEM mirrored by io.based4j.cuda.Kernels.gemmRowsSmem). */
template <int MP>
struct GrShape {
    static constexpr int WM = MP >= 64 ? 2 : 1;                    // warps along the rows of x
    static constexpr int WN = 8 / WM;                              // warps along the outputs
    static constexpr int FI = GR_FEATURES / WN / 16;               // m16 tiles of outputs a warp: 1 or 2
    static constexpr int BJ = MP / WM / 8;                         // n8 tiles of rows of x a warp
    static constexpr int XR = MP < 16 ? 16 : MP;                   // rows of x a stage holds (ldmatrix x4: 16)
    static constexpr int STAGES = MP >= 64 ? 3 : 4;
    static constexpr int STAGE_ELEMS = (GR_FEATURES + XR) * GR_LD;  // W's rows, then x's
    static constexpr int RLD = MP + 1;                              // the float32 tile's row stride
    static constexpr int STAGE_BYTES = STAGES * STAGE_ELEMS * 2;
    static constexpr int TILE_BYTES = GR_FEATURES * RLD * 4;
    static constexpr int SMEM = STAGE_BYTES > TILE_BYTES ? STAGE_BYTES : TILE_BYTES;
};

/**
 * The end of a product whose S blocks of a cluster each hold a float32 tile red[f * RLD + m] (outputs f of the tile
 * from f0, rows m from m0) of their part of the width: block `rank` adds outputs [rank 128 / S, (rank + 1) 128 / S)
 * of the S tiles in the order of the blocks (through distributed shared memory), adds the bias and writes the
 * `rows` rows, rounded once to bf16 or in float32. Every one of the THREADS threads of every block of the cluster
 * calls it (it synchronises them).
 */
template <int S, int RLD, int THREADS>
__device__ __forceinline__ void grReduceStore(const float* red, int rank, int f0, int m0, int rows, int N,
                                              const lmm_bf16* bias, void* out, int outF32) {
    constexpr int TILE = 128;
    const int tid = threadIdx.x;
#if B4J_GR_CLUSTERS
    cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
    if (S > 1) {
        cluster.sync();
    } else {
        __syncthreads();
    }
#else
    __syncthreads();
#endif
    constexpr int share = TILE / S;  // outputs this block writes
    for (int idx = tid; idx < rows * share; idx += THREADS) {
        const int m = idx / share;
        const int fl = rank * share + (idx - m * share);
        const int n = f0 + fl;
        if (n >= N) continue;
        float sum = 0.0f;
#pragma unroll
        for (int s = 0; s < S; s++) {
#if B4J_GR_CLUSTERS
            const float* part = S > 1 ? cluster.map_shared_rank(red, s) : red;
#else
            const float* part = red;
#endif
            sum += part[fl * RLD + m];
        }
        if (bias != nullptr) sum += toF(bias[n]);
        const i64 o = (i64)(m0 + m) * N + n;
        if (outF32) {
            reinterpret_cast<float*>(out)[o] = sum;
        } else {
            reinterpret_cast<lmm_bf16*>(out)[o] = __float2bfloat16_rn(sum);
        }
    }
#if B4J_GR_CLUSTERS
    if (S > 1) cluster.sync();  // no block leaves while another still reads its tile
#endif
}

/**
 * out[m][n] = sum_k x[m][k] W[n][k] (+ bias[n]) for the rows m0 .. m0 + MP - 1 of x (grid y) and the outputs of tile
 * blockIdx.x / S; the block's rank r = blockIdx.x % S in its cluster takes stages [r T / S, (r + 1) T / S) of the
 * T = K / 64. Where early is set (a recorded decode step: no kernel of it writes weights), the first stages of W are
 * requested before the wait for the kernel before (programmatic dependent launch), x's after it.
 */
template <int MP, int S>
__device__ __forceinline__ void gemmRowsBody(const lmm_bf16* x, const lmm_bf16* w, const lmm_bf16* bias, void* out,
                                             int outF32, int M, int N, int K, int early) {
    using G = GrShape<MP>;
    extern __shared__ __align__(16) unsigned char grSmem[];
    lmm_bf16* stages = reinterpret_cast<lmm_bf16*>(grSmem);
    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int tile = blockIdx.x / S;
    const int rank = blockIdx.x - tile * S;
    const int f0 = tile * GR_FEATURES;
    const int m0 = blockIdx.y * MP;
    const int rows = M - m0 < MP ? M - m0 : MP;
    const int T = K / GR_KC;
    const int st0 = (int)((i64)rank * T / S);
    const int nst = (int)((i64)(rank + 1) * T / S) - st0;

    auto loadW = [&](int buf, int st) {
        lmm_bf16* ws = stages + buf * G::STAGE_ELEMS;
        const i64 kb = (i64)(st0 + st) * GR_KC;
#pragma unroll
        for (int i = 0; i < GR_FEATURES * 8 / GR_THREADS; i++) {
            const int idx = tid + i * GR_THREADS;
            const int r = idx >> 3;
            const int c = idx & 7;
            const int n = f0 + r < N ? f0 + r : N - 1;  // past the last output: a valid row, its sums unused
            lmmCopy16(ws + r * GR_LD + 8 * c, w + (i64)n * K + kb + 8 * c);
        }
    };
    auto loadX = [&](int buf, int st) {
        lmm_bf16* xs = stages + buf * G::STAGE_ELEMS + GR_FEATURES * GR_LD;
        const i64 kb = (i64)(st0 + st) * GR_KC;
        for (int idx = tid; idx < rows * 8; idx += GR_THREADS) {
            const int r = idx >> 3;
            const int c = idx & 7;
            lmmCopy16(xs + r * GR_LD + 8 * c, x + (i64)(m0 + r) * K + kb + 8 * c);
        }
    };

    if (early) {
        for (int s = 0; s < G::STAGES - 1 && s < nst; s++) loadW(s, s);
    }
    b4jPdlWait();
    // the rows of x past the last hold zeros in every stage (no copy writes them)
    for (int idx = tid; idx < G::STAGES * (G::XR - rows) * (GR_LD / 8); idx += GR_THREADS) {
        const int per = (G::XR - rows) * (GR_LD / 8);
        const int buf = idx / per;
        const int rest = idx - buf * per;
        lmm_bf16* xs = stages + buf * G::STAGE_ELEMS + (GR_FEATURES + rows) * GR_LD;
        reinterpret_cast<uint4*>(xs)[rest] = make_uint4(0u, 0u, 0u, 0u);
    }
    for (int s = 0; s < G::STAGES - 1; s++) {
        if (s < nst) {
            if (!early) loadW(s, s);
            loadX(s, s);
        }
        lmmCommit();
    }

    float acc[G::FI][G::BJ][4];
#pragma unroll
    for (int i = 0; i < G::FI; i++) {
#pragma unroll
        for (int j = 0; j < G::BJ; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
        }
    }
    const int wf = (warp % G::WN) * (G::FI * 16);  // the warp's first output in the tile
    const int wb = (warp / G::WN) * (G::BJ * 8);   // its first row of x
    for (int i = 0; i < nst; i++) {
        lmmWait<G::STAGES - 2>();
        __syncthreads();  // stage i is in for every thread; stage i - 1's buffer is free
        const int next = i + G::STAGES - 1;
        if (next < nst) {
            loadW(next % G::STAGES, next);
            loadX(next % G::STAGES, next);
        }
        lmmCommit();
        const lmm_bf16* ws = stages + (i % G::STAGES) * G::STAGE_ELEMS;
        const lmm_bf16* xs = ws + GR_FEATURES * GR_LD;
#pragma unroll
        for (int kk = 0; kk < GR_KC; kk += 16) {
            unsigned a[G::FI][4];
#pragma unroll
            for (int fi = 0; fi < G::FI; fi++) lmmLoadA(a[fi], ws, GR_LD, wf + 16 * fi, kk);
#pragma unroll
            for (int j = 0; j < G::BJ; j += 2) {
                unsigned b[4];
                lmmLoadBnk(b, xs, GR_LD, wb + 8 * j, kk);
#pragma unroll
                for (int fi = 0; fi < G::FI; fi++) {
                    lmmMma(acc[fi][j], a[fi], b[0], b[1]);
                    if (j + 1 < G::BJ) lmmMma(acc[fi][j + 1], a[fi], b[2], b[3]);
                }
            }
        }
    }
    lmmWait<0>();
    __syncthreads();  // every stage consumed: the shared memory becomes the float32 tile

    float* red = reinterpret_cast<float*>(grSmem);
    const int g = lane >> 2;
    const int q = lane & 3;
#pragma unroll
    for (int fi = 0; fi < G::FI; fi++) {
#pragma unroll
        for (int j = 0; j < G::BJ; j++) {
            const int f = wf + 16 * fi + g;
            const int b = wb + 8 * j + 2 * q;
            red[f * G::RLD + b] = acc[fi][j][0];
            red[f * G::RLD + b + 1] = acc[fi][j][1];
            red[(f + 8) * G::RLD + b] = acc[fi][j][2];
            red[(f + 8) * G::RLD + b + 1] = acc[fi][j][3];
        }
    }
    grReduceStore<S, G::RLD, GR_THREADS>(red, rank, f0, m0, rows, N, bias, out, outF32);
}

}  // namespace b4j

// gemmRows{MP}s{S}_bf16: MP rows of x a block, clusters of S blocks along the width (sm_90; on older devices the
// S > 1 kernels are empty and the host never launches them), two blocks a multiprocessor
#if B4J_GR_CLUSTERS
#define B4J_GR_CLUSTER_DIMS(S) __cluster_dims__(S, 1, 1)
#else
#define B4J_GR_CLUSTER_DIMS(S)
#endif
#define B4J_GEMM_ROWS(MP, S)                                                                                         \
    namespace b4j_bf16 {                                                                                             \
    extern "C" __global__ void __launch_bounds__(b4j::GR_THREADS, 2) B4J_GR_CLUSTER_DIMS(S)                          \
        gemmRows##MP##s##S##_bf16(const b4j::lmm_bf16* x, const b4j::lmm_bf16* w, const b4j::lmm_bf16* bias,        \
                                  void* out, int outF32, int M, int N, int K, int early) {                           \
        if (S == 1 || B4J_GR_CLUSTERS) b4j::gemmRowsBody<MP, S>(x, w, bias, out, outF32, M, N, K, early);            \
    }                                                                                                                \
    }
#define B4J_GEMM_ROWS_SPLITS(MP) B4J_GEMM_ROWS(MP, 1) B4J_GEMM_ROWS(MP, 2) B4J_GEMM_ROWS(MP, 4) B4J_GEMM_ROWS(MP, 8)
B4J_GEMM_ROWS_SPLITS(8)
B4J_GEMM_ROWS_SPLITS(16)
B4J_GEMM_ROWS_SPLITS(32)
B4J_GEMM_ROWS_SPLITS(64)
B4J_GEMM_ROWS_SPLITS(128)
