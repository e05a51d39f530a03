// A decode step's products of up to 128 rows on Hopper, a block a stripe of 64 outputs (gemmWg version 3, sm_90a;
// included by based4j_kernels.cu after gemm_tma.cuh, whose barriers and tensor copies it takes, and gemm_wgmma.cuh,
// whose wgmma and descriptors it takes): out = x W^T (+ bias), bf16 operands and output, float32 sums. Launched by
// io.based4j.cuda.Kernels.gemmStripe; the program docs/bench/gemm-tile-lab/rows128.cu measured its design against
// cuBLAS (docs/bench/gpu-h200.md, "A product of 128 rows, a block a stripe of 64 outputs").
//
// What it changes against gemmWg's versions 1 and 2 (a tile of 128 outputs, its width split over a cluster whose
// blocks add their float32 tiles through distributed shared memory: a third of version 2's time was that end): a
// block takes 64 outputs (W's rows n0 .. n0 + 63) and walks the whole width, so it ends without a sum. A producer warp
// asks for each stage of 64 columns with two tensor copies (W's 64 rows and x's 128, rows past x's last filled with
// zeros) into eight stages, the first ones of W before the wait for the kernel before (W does not depend on it); one
// warpgroup multiplies (wgmma.m64n128k16: W the A operand, x the B operand, both K-major in the 128-byte swizzled
// layout), keeping one stage's products in flight while it waits for the next. At the end the float32 sums, the bias
// added, are rounded once to bf16, written through shared memory transposed, and stored 16 bytes a thread. A narrow
// product (based-1b's out-projections: 28 stripes) has its width split over a cluster of 2 or 4 blocks, each adding
// up its rows of the cluster's float32 tiles through distributed shared memory; the MLP's in-projection can take its
// SwiGLU into the end (a stripe of 32 values and their 32 gates).
//
// Requirements (checked by Kernels.gemmStripeFits and the launcher): bf16, 1 to 128 rows, N and K / S multiples of
// 64 (N of 64 pairs' worth, 32 outputs, for the SwiGLU form), x, W and out 16-byte aligned, an sm_90a device
// (compute capability 9.0: the kernels are empty in the other binaries and the host never launches them there).
#pragma once

namespace b4j {

constexpr int GS_THREADS = 160;  // a warpgroup that multiplies, then the producer warp
constexpr int GS_OUTPUTS = 64;   // outputs (rows of W) a block
constexpr int GS_ROWS = 128;     // rows of x: wgmma's n
constexpr int GS_KC = 64;        // columns a stage: one 128-byte row of the swizzled layout
constexpr int GS_STAGES = 8;
constexpr int GS_W_BYTES = GS_OUTPUTS * GS_KC * 2;
constexpr int GS_STAGE_BYTES = GS_W_BYTES + GS_ROWS * GS_KC * 2;
constexpr int GS_SMEM = GS_STAGES * GS_STAGE_BYTES + 1024;  // and the 1024 bytes the swizzled layout's alignment takes
constexpr int GS_TLD = GS_OUTPUTS + 8;                       // the bf16 tile's row stride (rows of x by outputs)
constexpr int GS_RLD = GS_OUTPUTS + 4;                       // the float32 tile's row stride, where S blocks add up
static_assert(GS_ROWS * GS_RLD * 4 <= GS_STAGES * GS_STAGE_BYTES, "the output tiles fit in the stages");

/**
 * out[m][n0 + j] = sum_k x[m][k] W[n0 + j][k] (+ bias[n0 + j]) for every row m < M of x and the stripe's 64 outputs
 * from n0 = 64 (blockIdx.x / S), through the tensor maps tmX (K columns, M rows, boxes of 64 x 128) and tmW (K columns,
 * N rows, boxes of 64 x 64). S > 1: the S blocks of a cluster share the stripe, block `part` (its rank) walking the
 * part-th of the width's K / S columns; each keeps its float32 sums in shared memory and block `part` adds the S
 * tiles' rows part 128 / S .. (part + 1) 128 / S, in the blocks' order, through distributed shared memory, the bias
 * before the one rounding. PAIRED (the MLP's in-projection and its SwiGLU, S 1): the stripe is 32 pairs from p0 = 32
 * blockIdx.x, W's rows p0 .. p0 + 31 (the values) and N / 2 + p0 .. (their gates) copied as two boxes of 32 rows (tmW's
 * boxes are 64 x 32 then), and out [M, N / 2] gets value * silu(gate), each rounded to bf16 first as the product
 * writes them and swigluVec reads them. Where early is set (weights that no kernel of the step writes), the first
 * stages' W copies go out before the wait for the kernel before (programmatic dependent launch), x's after it.
 */
template <int S, bool PAIRED>
__device__ __forceinline__ void gemmStripeBody(const B4jTensorMap* tmX, const B4jTensorMap* tmW, const lmm_bf16* bias,
                                               lmm_bf16* out, int M, int N, int K, int early) {
#if B4J_GW_WGMMA
    static_assert(S == 1 || !PAIRED, "the paired form walks the whole width");
    extern __shared__ __align__(16) unsigned char gsSmem[];
    __shared__ __align__(8) unsigned long long gsBars[2 * GS_STAGES];  // full, then empty
    const unsigned raw = lmmSmemAddr(gsSmem);
    const unsigned base = (raw + 1023u) & ~1023u;  // the swizzled layout repeats every 1024 bytes of address
    const unsigned full = lmmSmemAddr(gsBars);
    const unsigned empty = full + 8 * GS_STAGES;
    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int stripe = blockIdx.x / S;
    const int part = S > 1 ? (int)(blockIdx.x % S) : 0;  // the block's rank in its cluster of S
    const int n0 = stripe * GS_OUTPUTS;
    const int H = N >> 1;
    const int p0 = stripe * (GS_OUTPUTS / 2);
    const int nst = K / S / GS_KC;
    const int k0 = part * nst * GS_KC;
    auto loadW = [&](unsigned dst, unsigned bar, int kc) {
        if (PAIRED) {
            gtLoad(dst, tmW, bar, kc, p0);
            gtLoad(dst + GS_W_BYTES / 2, tmW, bar, kc, H + p0);
        } else {
            gtLoad(dst, tmW, bar, kc, n0);
        }
    };

    if (tid == 0) {
        for (int s = 0; s < GS_STAGES; s++) {
            gtInit(full + 8 * s, 1);
            gtInit(empty + 8 * s, 4);  // the first lane of each of the warpgroup's warps
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    unsigned char* aligned = gsSmem + (base - raw);
    if (warp == 4) {
        if (lane == 0) {
            gtPrefetchMap(tmW);
            gtPrefetchMap(tmX);
            const int ahead = early ? (nst < GS_STAGES ? nst : GS_STAGES) : 0;
            for (int s = 0; s < ahead; s++) {
                gtExpect(full + 8 * s, GS_STAGE_BYTES);
                loadW(base + s * GS_STAGE_BYTES, full + 8 * s, k0 + s * GS_KC);
            }
            b4jPdlWait();
            for (int i = 0; i < nst; i++) {
                const int s = i % GS_STAGES;
                const unsigned sb = base + s * GS_STAGE_BYTES;
                if (i >= ahead) {
                    if (i >= GS_STAGES) gtWait(empty + 8 * s, ((i / GS_STAGES) & 1) ^ 1);  // stage i - 8 read
                    gtExpect(full + 8 * s, GS_STAGE_BYTES);
                    loadW(sb, full + 8 * s, k0 + i * GS_KC);
                }
                gtLoad(sb + GS_W_BYTES, tmX, full + 8 * s, k0 + i * GS_KC, 0);
            }
        } else {
            b4jPdlWait();
        }
        __syncwarp();
    } else {
        float d[64];
#pragma unroll
        for (int i = 0; i < 64; i++) d[i] = 0.0f;
        for (int i = 0; i < nst; i++) {
            const int s = i % GS_STAGES;
            gtWait(full + 8 * s, (i / GS_STAGES) & 1);
            const unsigned sb = base + s * GS_STAGE_BYTES;
            gwFenceOperands(d);
            asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
            for (int kk = 0; kk < GS_KC / 16; kk++) {
                gwMma(d, gwDescriptor(sb + 32 * kk), gwDescriptor(sb + GS_W_BYTES + 32 * kk));
            }
            asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
            asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");  // stage i - 1's products are done
            gwFenceOperands(d);
            if (i > 0 && lane == 0) gtArrive(empty + 8 * ((i - 1) % GS_STAGES));
        }
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        gwFenceOperands(d);
        b4jPdlWait();  // the kernel before has ended before this block writes out (it may read what out holds)
        asm volatile("bar.sync 1, 128;\n" ::: "memory");  // every warp's products read their stages: the tile's room
        // d in the m64n128 layout: output j = 16 warp + lane / 4 (+ 8), row of x m = 8 c + 2 (lane % 4) (+ 1)
        const int j0 = 16 * warp + (lane >> 2);
        const int c0 = 2 * (lane & 3);
        if (S > 1) {
            float* red = reinterpret_cast<float*>(aligned);
#pragma unroll
            for (int c = 0; c < 16; c++) {
                const int m = 8 * c + c0;
                red[m * GS_RLD + j0] = d[4 * c];
                red[(m + 1) * GS_RLD + j0] = d[4 * c + 1];
                red[m * GS_RLD + j0 + 8] = d[4 * c + 2];
                red[(m + 1) * GS_RLD + j0 + 8] = d[4 * c + 3];
            }
        } else {
            lmm_bf16* t = reinterpret_cast<lmm_bf16*>(aligned);
            const float b0 = bias != nullptr && !PAIRED ? __bfloat162float(bias[n0 + j0]) : 0.0f;
            const float b1 = bias != nullptr && !PAIRED ? __bfloat162float(bias[n0 + j0 + 8]) : 0.0f;
#pragma unroll
            for (int c = 0; c < 16; c++) {
                const int m = 8 * c + c0;
                t[m * GS_TLD + j0] = __float2bfloat16_rn(d[4 * c] + b0);
                t[(m + 1) * GS_TLD + j0] = __float2bfloat16_rn(d[4 * c + 1] + b0);
                t[m * GS_TLD + j0 + 8] = __float2bfloat16_rn(d[4 * c + 2] + b1);
                t[(m + 1) * GS_TLD + j0 + 8] = __float2bfloat16_rn(d[4 * c + 3] + b1);
            }
            asm volatile("bar.sync 1, 128;\n" ::: "memory");
            if (PAIRED) {
                // out[m][p0 + c] = value * silu(gate): the tile's columns c and 32 + c, 8 outputs a piece
                constexpr int PIECES = GS_OUTPUTS / 16;
                for (int p = tid; p < M * PIECES; p += 128) {
                    const int m = p / PIECES;
                    const int q = p - m * PIECES;
                    float y[8], g[8];
                    load8(t + m * GS_TLD + 8 * q, y);
                    load8(t + m * GS_TLD + GS_OUTPUTS / 2 + 8 * q, g);
#pragma unroll
                    for (int e = 0; e < 8; e++) y[e] = y[e] * silu(g[e]);
                    store8(out + (size_t)m * H + p0 + 8 * q, y);
                }
            } else {
                constexpr int PIECES = GS_OUTPUTS / 8;  // 16-byte pieces of a row's 64 outputs
                for (int p = tid; p < M * PIECES; p += 128) {
                    const int m = p / PIECES;
                    const int q = p - m * PIECES;
                    *reinterpret_cast<uint4*>(out + (size_t)m * N + n0 + 8 * q) =
                        *reinterpret_cast<const uint4*>(t + m * GS_TLD + 8 * q);
                }
            }
        }
    }
    if (S > 1) {
        cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
        cluster.sync();  // every block's tile written and visible to the cluster
        if (warp < 4) {
            const float* red = reinterpret_cast<const float*>(aligned);
            constexpr int ROWS = GS_ROWS / S;        // rows of x this block adds up and writes
            constexpr int QUADS = GS_OUTPUTS / 4;    // 4 outputs a read of 16 bytes
            for (int idx = tid; idx < ROWS * QUADS; idx += 128) {
                const int m = part * ROWS + idx / QUADS;
                const int q = idx % QUADS;
                if (m >= M) continue;
                float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
                for (int s = 0; s < S; s++) {
                    const float* tile = cluster.map_shared_rank(red, s);
                    const float4 v = *reinterpret_cast<const float4*>(tile + m * GS_RLD + 4 * q);
                    sum.x += v.x;
                    sum.y += v.y;
                    sum.z += v.z;
                    sum.w += v.w;
                }
                if (bias != nullptr) {
                    sum.x += __bfloat162float(bias[n0 + 4 * q]);
                    sum.y += __bfloat162float(bias[n0 + 4 * q + 1]);
                    sum.z += __bfloat162float(bias[n0 + 4 * q + 2]);
                    sum.w += __bfloat162float(bias[n0 + 4 * q + 3]);
                }
                __nv_bfloat162 lo = __floats2bfloat162_rn(sum.x, sum.y);
                __nv_bfloat162 hi = __floats2bfloat162_rn(sum.z, sum.w);
                uint2 pair;
                pair.x = *reinterpret_cast<unsigned*>(&lo);
                pair.y = *reinterpret_cast<unsigned*>(&hi);
                *reinterpret_cast<uint2*>(out + (size_t)m * N + n0 + 4 * q) = pair;
            }
        }
        gwClusterDone();  // no block leaves while another may still read its tile
    }
#endif
}

}  // namespace b4j

// gemmStripe{S}_bf16: grid S (N / 64) blocks of 160 threads in clusters of S, one a multiprocessor (197 KiB of shared
// memory); gemmStripeSwiglu_bf16: the paired form, out [M, N / 2] = swiglu(x W^T), grid N / 64
#define B4J_GEMM_STRIPE(S)                                                                                           \
    namespace b4j_bf16 {                                                                                             \
    extern "C" __global__ void __launch_bounds__(b4j::GS_THREADS, 1) B4J_GR_CLUSTER_DIMS(S)                          \
        gemmStripe##S##_bf16(const __grid_constant__ b4j::B4jTensorMap tmX,                                           \
                             const __grid_constant__ b4j::B4jTensorMap tmW, const b4j::lmm_bf16* bias,               \
                             b4j::lmm_bf16* out, int M, int N, int K, int early) {                                   \
        b4j::gemmStripeBody<S, false>(&tmX, &tmW, bias, out, M, N, K, early);                                        \
    }                                                                                                                \
    }
B4J_GEMM_STRIPE(1)
B4J_GEMM_STRIPE(2)
B4J_GEMM_STRIPE(4)

namespace b4j_bf16 {
extern "C" __global__ void __launch_bounds__(b4j::GS_THREADS, 1)
    gemmStripeSwiglu_bf16(const __grid_constant__ b4j::B4jTensorMap tmX, const __grid_constant__ b4j::B4jTensorMap tmW,
                          b4j::lmm_bf16* out, int M, int N, int K, int early) {
    b4j::gemmStripeBody<1, true>(&tmX, &tmW, nullptr, out, M, N, K, early);
}
}
