// A decode step's products on Hopper with the tensor memory accelerator (gemmWg version 2, sm_90a; included by
// based4j_kernels.cu after gemm_wgmma.cuh, whose wgmma, descriptors and cluster sum it takes): out = x W^T (+ bias)
// for up to 128 rows of x a block, bf16 operands, float32 sums. Launched by io.based4j.cuda.Kernels.gemmTma; compared
// with cuBLASLt and gemmWg by `based4j bench kernels --kernel gemv`.
//
// What it changes against gemmWg, from what Nsight Compute showed of it at 128 rows (docs/bench/gpu-h200.md, "A
// decode step at batch 128 under Nsight Compute, and its products"): there every thread computed the addresses of
// its 16-byte copies of every stage and each stage's products were waited for before the next copies were asked for.
// Here a producer warpgroup's first thread asks for each stage with two tensor copies (W's 128 rows and x's 128 rows
// of 64 columns, written by the copy engine in the 128-byte swizzled layout wgmma reads; rows past the tensor's last
// are filled with zeros), each stage's arrival and release tracked by a pair of mbarriers, and the two warpgroups
// that multiply keep one stage's products in flight while they wait for the next. The cluster's sum and the store
// are gemmWg's. The tensor maps (cuTensorMapEncodeTiled) come from the host as kernel parameters. A paired form takes
// the MLP's SwiGLU into the product's end: each tile's W rows are 64 values and their 64 gates, and the block writes
// y silu(g) with the numbers of the product written in bf16 and swigluVec after it; and BaseConv's decode step the
// same way (baseConvStep's numbers after the product with its bias).
//
// Requirements (checked by Kernels.gemmTmaFits and the launcher): bf16, K a multiple of 64, x and W 16-byte aligned,
// an sm_90a device (compute capability 9.0: the kernels are empty in the other binaries and the host never launches
// them there).
#pragma once

namespace b4j {

/** A CUtensorMap: the 128 opaque bytes cuTensorMapEncodeTiled writes, passed by value (__grid_constant__). */
struct alignas(64) B4jTensorMap {
    unsigned long long opaque[16];
};

constexpr int GT_THREADS = 384;  // a producer warpgroup, then two warpgroups of 64 outputs each
constexpr int GT_STAGES = 6;
constexpr int GT_SMEM = GT_STAGES * GW_STAGE_BYTES + 1024;  // and the 1024 bytes the swizzled layout's alignment takes
/** Arrivals that free a stage: the first lane of each of the two multiplying warpgroups' 8 warps. */
constexpr int GT_RELEASES = 8;

#if B4J_GW_WGMMA
__device__ __forceinline__ void gtInit(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

/** Arrives on the barrier and adds `bytes` to the transfers its phase waits for. */
__device__ __forceinline__ void gtExpect(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

__device__ __forceinline__ void gtArrive(unsigned bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

/**
 * Waits until the barrier's phase of parity `parity` has completed; traps (the launch fails, naming no hang) after
 * some 2^28 polls, far past any stage's arrival, should a phase's bytes never all arrive.
 */
__device__ __forceinline__ void gtWait(unsigned bar, unsigned parity) {
    unsigned done;
    unsigned polls = 0;
    do {
        if (++polls == (1u << 28)) __trap();
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n"
            "}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}

/** Brings a tensor map (a kernel parameter) near the copy engine before its first copy. */
__device__ __forceinline__ void gtPrefetchMap(const B4jTensorMap* map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(map)) : "memory");
}

/** The box of `map` at (column c0, row c1) into shared memory at dst, its bytes counted on the barrier. */
__device__ __forceinline__ void gtLoad(unsigned dst, const B4jTensorMap* map, unsigned bar, int c0, int c1) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], "
        "[%2];\n" ::"r"(dst),
        "l"(reinterpret_cast<unsigned long long>(map)), "r"(bar), "r"(c0), "r"(c1)
        : "memory");
}
#endif

#if B4J_GW_WGMMA
/**
 * The end of the paired form: the S blocks of a cluster each hold the float32 tile red[f * GW_RLD + m] whose rows 0 to
 * 63 are the values of pairs p0 .. p0 + 63 and rows 64 to 127 their gates; block `rank` takes pairs [rank 64 / S,
 * (rank + 1) 64 / S), adds each value and each gate over the S tiles in the blocks' order and its bias, rounds both
 * to bf16 as the product would write them, and writes y silu(g) rounded once (swigluVec's numbers) into out [M, H]
 * for the `rows` rows from m0; CONV: BaseConv's decode step of channel j instead (baseConvStep's numbers, as
 * gemvPairedOut takes them), y the conv's input and g its gate, row m the one token of sequence tokSeq[m] of the
 * layout's B, whose history of kern - 1 taps (slot-major, bf16) is shifted as the conv reads it: out = g silu(conv).
 * Every thread of every block of the cluster calls it.
 */
template <int S, bool CONV>
__device__ __forceinline__ void gtReducePaired(const float* red, int rank, int p0, int m0, int rows, int H,
                                               const lmm_bf16* bias, lmm_bf16* out, const lmm_bf16* convW,
                                               lmm_bf16* hist, const int* layout, int B, int kern) {
    cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
    if (S > 1) {
        cluster.sync();
    } else {
        __syncthreads();
    }
    constexpr int share = GW_FEATURES / 2 / S;  // pairs this block writes
    const int quads = (rows + 3) >> 2;
    for (int idx = threadIdx.x; idx < quads * share; idx += GT_THREADS) {
        const int mq = idx / share;
        const int jl = rank * share + (idx - mq * share);
        const int j = p0 + jl;
        if (j >= H) continue;
        float4 value = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        float4 gate = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int s = 0; s < S; s++) {
            const float* part = S > 1 ? cluster.map_shared_rank(red, s) : red;
            const float4 v = *reinterpret_cast<const float4*>(part + jl * GW_RLD + 4 * mq);
            const float4 g = *reinterpret_cast<const float4*>(part + (GW_FEATURES / 2 + jl) * GW_RLD + 4 * mq);
            value.x += v.x;
            value.y += v.y;
            value.z += v.z;
            value.w += v.w;
            gate.x += g.x;
            gate.y += g.y;
            gate.z += g.z;
            gate.w += g.w;
        }
        const float bv = bias != nullptr ? toF(bias[j]) : 0.0f;
        const float bg = bias != nullptr ? toF(bias[H + j]) : 0.0f;
        const float v4[4] = {value.x + bv, value.y + bv, value.z + bv, value.w + bv};
        const float g4[4] = {gate.x + bg, gate.y + bg, gate.z + bg, gate.w + bg};
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int m = 4 * mq + e;
            if (m >= rows) break;
            const float y = toF(__float2bfloat16_rn(v4[e]));
            const float g = toF(__float2bfloat16_rn(g4[e]));
            if (CONV) {
                const Layout L = layoutOf(layout, B);
                const int taps = kern - 1;
                lmm_bf16* h = hist + (i64)L.slots[L.tokSeq[m0 + m]] * taps * H;
                float conv = 0.0f;
                for (int i = 0; i < kern; i++) {
                    const float xv = i < taps ? toF(h[(i64)i * H + j]) : y;
                    conv = fmaf(toF(convW[(i64)j * kern + i]), xv, conv);
                    if (i > 0) h[(i64)(i - 1) * H + j] = __float2bfloat16_rn(xv);  // y is bf16's already: exact
                }
                out[(i64)(m0 + m) * H + j] = __float2bfloat16_rn(g * silu(conv));
            } else {
                out[(i64)(m0 + m) * H + j] = __float2bfloat16_rn(y * silu(g));
            }
        }
    }
    if (S > 1) gwClusterDone();  // no block leaves while another still reads its tile
}
#endif

/**
 * out[m][n] = sum_k x[m][k] W[n][k] (+ bias[n]) for the rows m0 .. m0 + 127 of x (grid y) and the outputs of tile
 * blockIdx.x / S, the block's rank in its cluster taking its share of the K / 64 stages, as gemmWgBody; x and W read
 * through the tensor maps tmX (K columns, M rows, boxes of 64 x 128) and tmW (K columns, N rows, the same boxes).
 * Where early is set (a recorded decode step), the first stages' W copies are asked for before the wait for the
 * kernel before (programmatic dependent launch), x's after it. PAIRED (the MLP's in-projection and its SwiGLU): the
 * tile is 64 pairs from p0, W's rows p0 .. p0 + 63 (the values) and N / 2 + p0 .. (their gates) copied as two boxes
 * of 64 rows into the places of one of 128 (tmW's boxes are 64 x 64 then), and the end is gtReducePaired's.
 */
template <int S, bool PAIRED, bool CONV>
__device__ __forceinline__ void gemmTmaBody(const B4jTensorMap* tmX, const B4jTensorMap* tmW, const lmm_bf16* bias,
                                            void* out, int outF32, int M, int N, int K, int early,
                                            const lmm_bf16* convW, lmm_bf16* hist, const int* layout, int kern) {
#if B4J_GW_WGMMA
    extern __shared__ __align__(16) unsigned char gtSmem[];
    __shared__ __align__(8) unsigned long long gtBars[2 * GT_STAGES];  // full, then empty
    const unsigned raw = lmmSmemAddr(gtSmem);
    const unsigned base = (raw + 1023u) & ~1023u;  // the swizzled layout repeats every 1024 bytes of address
    const unsigned full = lmmSmemAddr(gtBars);
    const unsigned empty = full + 8 * GT_STAGES;
    const int tid = threadIdx.x;
    const int wg = tid >> 7;  // 0: the producer; 1 and 2 multiply
    const GwPart part = gwPartOf<S>(M, K);
    const int f0 = part.f0, m0 = part.m0, st0 = part.st0, nst = part.nst;
    // PAIRED: the tile's 64 pairs from p0, their values' rows of W from p0 and their gates' from H + p0
    const int H = N >> 1;
    const int p0 = (blockIdx.x / S) * (GW_FEATURES / 2);
    auto loadW = [&](unsigned dst, unsigned bar, int kc) {
        if (PAIRED) {
            gtLoad(dst, tmW, bar, kc, p0);
            gtLoad(dst + GW_TILE_BYTES / 2, tmW, bar, kc, H + p0);
        } else {
            gtLoad(dst, tmW, bar, kc, f0);
        }
    };

    if (tid == 0) {
        for (int s = 0; s < GT_STAGES; s++) {
            gtInit(full + 8 * s, 1);
            gtInit(empty + 8 * s, GT_RELEASES);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    float d[64];
#pragma unroll
    for (int i = 0; i < 64; i++) d[i] = 0.0f;
    if (wg == 0) {
        if (tid == 0) {
            gtPrefetchMap(tmW);  // both maps asked for at once, not each on its first copy
            gtPrefetchMap(tmX);
            const int ahead = nst < GT_STAGES ? nst : GT_STAGES;
            if (early) {
                for (int s = 0; s < ahead; s++) {
                    gtExpect(full + 8 * s, GW_STAGE_BYTES);
                    loadW(base + s * GW_STAGE_BYTES, full + 8 * s, (st0 + s) * GW_KC);
                }
            }
            b4jPdlWait();
            for (int i = 0; i < nst; i++) {
                const int s = i % GT_STAGES;
                if (i >= GT_STAGES) gtWait(empty + 8 * s, ((i / GT_STAGES) & 1) ^ 1);  // stage i - GT_STAGES read
                const unsigned sb = base + s * GW_STAGE_BYTES;
                const int kc = (st0 + i) * GW_KC;
                if (!early || i >= ahead) {
                    gtExpect(full + 8 * s, GW_STAGE_BYTES);
                    loadW(sb, full + 8 * s, kc);
                }
                gtLoad(sb + GW_TILE_BYTES, tmX, full + 8 * s, kc, m0);
            }
        } else {
            b4jPdlWait();
        }
    } else {
        b4jPdlWait();
        const int cw = wg - 1;  // the warpgroup's 64 outputs of the tile
        for (int i = 0; i < nst; i++) {
            const int s = i % GT_STAGES;
            gtWait(full + 8 * s, (i / GT_STAGES) & 1);
            const unsigned sb = base + s * GW_STAGE_BYTES;
            gwStageProducts(d, sb + cw * 64 * 128, sb + GW_TILE_BYTES);  // the warpgroup's 64 rows of W, x's 128
            asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");  // stage i - 1's products are done
            gwFenceOperands(d);
            if (i > 0 && (tid & 31) == 0) gtArrive(empty + 8 * ((i - 1) % GT_STAGES));
        }
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        gwFenceOperands(d);
    }
    __syncthreads();  // every stage consumed: the shared memory becomes the float32 tile

    unsigned char* aligned = gtSmem + (base - raw);
    float* red = reinterpret_cast<float*>(aligned);
    if (wg > 0) gwTileStore(d, red, wg - 1, (tid >> 5) & 3, tid & 31);
    if (PAIRED) {
        gtReducePaired<S, CONV>(red, part.rank, p0, m0, part.rows, H, bias, reinterpret_cast<lmm_bf16*>(out), convW,
                                hist, layout, M, kern);
    } else {
        gwReduceStore<S, GT_THREADS>(red, part.rank, f0, m0, part.rows, N, bias, out, outF32);
    }
#endif
}

}  // namespace b4j

// gemmTma{S}_bf16: clusters of S blocks along the width, one block a multiprocessor (its 193 KiB of shared memory);
// gemmTmaSwiglu{S}_bf16: the paired form, out [M, N / 2] = swiglu(x W^T), W's rows j and N / 2 + j a pair;
// gemmTmaConv{S}_bf16: the paired form with BaseConv's decode step (x W^T + bias its u, the history updated)
#define B4J_GEMM_TMA(S)                                                                                              \
    namespace b4j_bf16 {                                                                                             \
    extern "C" __global__ void __launch_bounds__(b4j::GT_THREADS, 1) B4J_GR_CLUSTER_DIMS(S)                          \
        gemmTma##S##_bf16(const __grid_constant__ b4j::B4jTensorMap tmX,                                              \
                          const __grid_constant__ b4j::B4jTensorMap tmW, const b4j::lmm_bf16* bias, void* out,       \
                          int outF32, int M, int N, int K, int early) {                                              \
        b4j::gemmTmaBody<S, false, false>(&tmX, &tmW, bias, out, outF32, M, N, K, early, nullptr, nullptr, nullptr,  \
                                          0);                                                                        \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(b4j::GT_THREADS, 1) B4J_GR_CLUSTER_DIMS(S)                          \
        gemmTmaSwiglu##S##_bf16(const __grid_constant__ b4j::B4jTensorMap tmX,                                        \
                                const __grid_constant__ b4j::B4jTensorMap tmW, const b4j::lmm_bf16* bias,            \
                                b4j::lmm_bf16* out, int M, int N, int K, int early) {                                \
        b4j::gemmTmaBody<S, true, false>(&tmX, &tmW, bias, out, 0, M, N, K, early, nullptr, nullptr, nullptr, 0);   \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(b4j::GT_THREADS, 1) B4J_GR_CLUSTER_DIMS(S)                          \
        gemmTmaConv##S##_bf16(const __grid_constant__ b4j::B4jTensorMap tmX,                                          \
                              const __grid_constant__ b4j::B4jTensorMap tmW, const b4j::lmm_bf16* bias,              \
                              b4j::lmm_bf16* out, const b4j::lmm_bf16* convW, b4j::lmm_bf16* hist,                   \
                              const int* layout, int M, int N, int K, int kern, int early) {                         \
        b4j::gemmTmaBody<S, true, true>(&tmX, &tmW, bias, out, 0, M, N, K, early, convW, hist, layout, kern);        \
    }                                                                                                                \
    }
B4J_GEMM_TMA(1)
B4J_GEMM_TMA(2)
B4J_GEMM_TMA(4)
B4J_GEMM_TMA(8)
