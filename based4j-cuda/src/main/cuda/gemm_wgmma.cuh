// A decode step's products on Hopper's warpgroup tensor cores (gemmRows version 2, sm_90a; included by
// based4j_kernels.cu after gemm_rows.cuh): out = x W^T (+ bias) for up to 128 rows of x a block, bf16 operands,
// float32 sums. Launched by io.based4j.cuda.Kernels.gemmWg; compared with cuBLASLt and gemmRows by
// `based4j bench kernels --kernel gemv`.
//
// What it is for: a decode step of 33 to 128 sequences still reads every weight once a step, but its products are
// now as much multiply-adds as bytes (based-1b's MLP in-projection at 128 rows: 3.3 GFLOP, 4.2 us at the bf16
// matrix rate, beside 25.7 MB of weights, 5.7 us at the copy bandwidth). gemmRows' mma.sync leaves the tensor cores
// too slow for that and the library's 128-wide tiles leave most multiprocessors idle on the narrow products (1792
// outputs: 14 tiles). Here a block takes 128 outputs (rows of W) by 128 rows of x and a share of the width (K): its
// 256 threads stream W's rows and x's through six stages of 64 columns with cp.async (rows of x past the last
// filled with zeros by the copy), written in the 128-byte swizzled layout wgmma reads, and each warpgroup multiplies
// its 64 outputs by the 128 rows with wgmma.m64n128k16 (W the A operand, x the B operand, both K-major, read from
// shared memory through descriptors) while the next stages load. The S blocks sharing a tile's width form a cluster
// and add up their float32 tiles through distributed shared memory, 16 bytes a read (in the order of the blocks,
// deterministic, the bias before the one rounding).
//
// Where it stands (measured on an H200, README): level with cuBLASLt on the narrow products of 64 and 128 rows,
// behind it on the wide ones, and whole decode steps slower with it, so it is taken only where
// -Dbased4j.cuda.gemmWg=true asks. Every tile reads all of x again (L2 traffic 2.3 times the weights at 128 rows):
// x multicast to a cluster's blocks by TMA is the next step.
//
// Requirements (checked by Kernels.gemmWgFits and the launcher): bf16, K a multiple of 64, x and W 16-byte
// aligned, an sm_90a device (compute capability 9.0: the kernels are empty in the other binaries and the host never
// launches them there).
#pragma once

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define B4J_GW_WGMMA 1
#else
#define B4J_GW_WGMMA 0
#endif

namespace b4j {

constexpr int GW_THREADS = 256;                        // two warpgroups of 64 outputs each
constexpr int GW_FEATURES = 128;                       // outputs (rows of W) a block
constexpr int GW_ROWS = 128;                           // rows of x a block: the wgmma's n
constexpr int GW_KC = 64;                              // columns a stage: one 128-byte row of the swizzled layout
constexpr int GW_STAGES = 6;
constexpr int GW_TILE_BYTES = GW_FEATURES * GW_KC * 2;  // W's part of a stage (x's is as large)
constexpr int GW_STAGE_BYTES = GW_TILE_BYTES + GW_ROWS * GW_KC * 2;
constexpr int GW_RLD = GW_ROWS + 4;                    // the float32 tile's row stride (outputs by rows of x)
constexpr int GW_SMEM = GW_STAGES * GW_STAGE_BYTES + 1024;  // and the 1024 bytes the swizzled layout's alignment takes
static_assert(GW_FEATURES * GW_RLD * 4 <= GW_STAGES * GW_STAGE_BYTES, "the float32 tile fits in the stages");

#if B4J_GW_WGMMA
/** Byte offset of 16-byte chunk c of row r of a 128-byte-row tile in the 128-byte swizzled layout. */
__device__ __forceinline__ unsigned gwSwizzled(int r, int c) {
    return (unsigned)(r * 128 + ((c ^ (r & 7)) << 4));
}

/** 16 bytes global -> shared by cp.async.cg, or 16 zero bytes where !valid (src then not read). */
__device__ __forceinline__ void gwCopy16(unsigned dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}

/**
 * wgmma's shared memory descriptor of a K-major operand in the 128-byte swizzled layout at shared address addr
 * (its 8-row groups 1024 bytes apart; the leading offset unused for this layout, 16 bytes by convention).
 */
__device__ __forceinline__ unsigned long long gwDescriptor(unsigned addr) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | (1ull << 16) | (64ull << 32) | (1ull << 62);
}

/** d += A B^T for A 64 x 16 and B 128 x 16 (K-major bf16 in shared memory), d in the m64n128 float32 layout. */
__device__ __forceinline__ void gwMma(float (&d)[64], unsigned long long a, unsigned long long b) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16\n"
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,\n"
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,\n"
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,\n"
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63},\n"
        "%64, %65, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(a), "l"(b), "r"(1)
        : "memory");
}

/** Keeps the compiler from moving accesses of d across the wgmma calls around it. */
__device__ __forceinline__ void gwFenceOperands(float (&d)[64]) {
#pragma unroll
    for (int i = 0; i < 64; i++) asm volatile("" : "+f"(d[i])::"memory");
}
#endif

#if B4J_GW_WGMMA
/**
 * The wait at the end of a cluster's sum: every block of the cluster has read what it reads of the others' tiles
 * (into registers, already added) before any block leaves; it orders no memory, so it does not wait for the block's
 * stores to the output as cluster.sync()'s release would.
 */
__device__ __forceinline__ void gwClusterDone() {
    asm volatile("barrier.cluster.arrive.relaxed.aligned;\nbarrier.cluster.wait.aligned;\n" ::: "memory");
}

/**
 * The end of gemmWg: the S blocks of a cluster each hold the float32 tile red[f * GW_RLD + m] of their part of the
 * width; block `rank` adds outputs [rank 128 / S, (rank + 1) 128 / S) of the S tiles, four rows of x a read (16
 * bytes through distributed shared memory), in the order of the blocks, adds the bias and writes the `rows` rows
 * from m0, rounded once to bf16 or in float32. Every thread of every block of the cluster calls it.
 */
template <int S, int THREADS = GW_THREADS>
__device__ __forceinline__ void gwReduceStore(const float* red, int rank, int f0, int m0, int rows, int N,
                                              const lmm_bf16* bias, void* out, int outF32) {
    cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
    if (S > 1) {
        cluster.sync();
    } else {
        __syncthreads();
    }
    constexpr int share = GW_FEATURES / S;  // outputs this block writes
    const int quads = (rows + 3) >> 2;
    for (int idx = threadIdx.x; idx < quads * share; idx += THREADS) {
        const int mq = idx / share;
        const int fl = rank * share + (idx - mq * share);
        const int n = f0 + fl;
        if (n >= N) continue;
        float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int s = 0; s < S; s++) {
            const float* part = S > 1 ? cluster.map_shared_rank(red, s) : red;
            const float4 v = *reinterpret_cast<const float4*>(part + fl * GW_RLD + 4 * mq);
            sum.x += v.x;
            sum.y += v.y;
            sum.z += v.z;
            sum.w += v.w;
        }
        const float b = bias != nullptr ? toF(bias[n]) : 0.0f;
        const float v4[4] = {sum.x + b, sum.y + b, sum.z + b, sum.w + b};
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int m = 4 * mq + e;
            if (m >= rows) break;
            const i64 o = (i64)(m0 + m) * N + n;
            if (outF32) {
                reinterpret_cast<float*>(out)[o] = v4[e];
            } else {
                reinterpret_cast<lmm_bf16*>(out)[o] = __float2bfloat16_rn(v4[e]);
            }
        }
    }
    if (S > 1) gwClusterDone();  // no block leaves while another still reads its tile
}
#endif

#if B4J_GW_WGMMA
/** A block's part of a product: its tile of outputs, its rows of x and its stages of the width. */
struct GwPart {
    int rank, f0, m0, rows, st0, nst;
};

/**
 * Block blockIdx.x's part: outputs from f0 of tile blockIdx.x / S, rank r = blockIdx.x % S in its cluster taking
 * stages [r T / S, (r + 1) T / S) of the T = K / 64; rows from m0 = blockIdx.y 128 of x's M.
 */
template <int S>
__device__ __forceinline__ GwPart gwPartOf(int M, int K) {
    GwPart p;
    const int tile = blockIdx.x / S;
    p.rank = blockIdx.x - tile * S;
    p.f0 = tile * GW_FEATURES;
    p.m0 = blockIdx.y * GW_ROWS;
    p.rows = M - p.m0 < GW_ROWS ? M - p.m0 : GW_ROWS;
    const int T = K / GW_KC;
    p.st0 = (int)((i64)p.rank * T / S);
    p.nst = (int)((i64)(p.rank + 1) * T / S) - p.st0;
    return p;
}

/**
 * Asks for a stage's products, without waiting for them: d += W's 64 rows at shared address a (the warpgroup's) times
 * x's 128 rows at b, 64 columns of both in the swizzled layout, as one wgmma group.
 */
__device__ __forceinline__ void gwStageProducts(float (&d)[64], unsigned a, unsigned b) {
    gwFenceOperands(d);
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
    for (int kk = 0; kk < GW_KC / 16; kk++) gwMma(d, gwDescriptor(a + 32 * kk), gwDescriptor(b + 32 * kk));
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

/**
 * A multiplying warpgroup's sums (group 0 or 1: outputs [64 group, 64 group + 64) of the tile) into the float32 tile
 * red[f * GW_RLD + m], from the m64n128 accumulator layout; `warp` is the warp within the warpgroup.
 */
__device__ __forceinline__ void gwTileStore(const float (&d)[64], float* red, int group, int warp, int lane) {
    const int f = group * 64 + warp * 16 + (lane >> 2);  // the accumulator's row (an output of the tile)
    const int q = lane & 3;
#pragma unroll
    for (int j = 0; j < GW_ROWS / 8; j++) {
        const int m = 8 * j + 2 * q;  // its column (a row of x)
        *reinterpret_cast<float2*>(red + f * GW_RLD + m) = make_float2(d[4 * j], d[4 * j + 1]);
        *reinterpret_cast<float2*>(red + (f + 8) * GW_RLD + m) = make_float2(d[4 * j + 2], d[4 * j + 3]);
    }
}
#endif

/**
 * out[m][n] = sum_k x[m][k] W[n][k] (+ bias[n]) for the rows m0 .. m0 + 127 of x (grid y) and the outputs of tile
 * blockIdx.x / S; the block's rank r = blockIdx.x % S in its cluster takes stages [r T / S, (r + 1) T / S) of the
 * T = K / 64. Where early is set (a recorded decode step: no kernel of it writes weights), the first stages of W are
 * requested before the wait for the kernel before (programmatic dependent launch), x's after it.
 */
template <int S>
__device__ __forceinline__ void gemmWgBody(const lmm_bf16* x, const lmm_bf16* w, const lmm_bf16* bias, void* out,
                                           int outF32, int M, int N, int K, int early) {
#if B4J_GW_WGMMA
    extern __shared__ __align__(16) unsigned char gwSmem[];
    const unsigned raw = lmmSmemAddr(gwSmem);
    const unsigned base = (raw + 1023u) & ~1023u;  // the swizzled layout repeats every 1024 bytes of address
    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int wg = warp >> 2;
    const GwPart part = gwPartOf<S>(M, K);
    const int f0 = part.f0, m0 = part.m0, rows = part.rows, st0 = part.st0, nst = part.nst;

    auto loadW = [&](int buf, int st) {
        const unsigned ws = base + buf * GW_STAGE_BYTES;
        const i64 kb = (i64)(st0 + st) * GW_KC;
#pragma unroll
        for (int i = 0; i < GW_FEATURES * 8 / GW_THREADS; i++) {
            const int idx = tid + i * GW_THREADS;
            const int r = idx >> 3;
            const int c = idx & 7;
            const int n = f0 + r < N ? f0 + r : N - 1;  // past the last output: a valid row, its sums unused
            gwCopy16(ws + gwSwizzled(r, c), w + (i64)n * K + kb + 8 * c, true);
        }
    };
    auto loadX = [&](int buf, int st) {
        const unsigned xs = base + buf * GW_STAGE_BYTES + GW_TILE_BYTES;
        const i64 kb = (i64)(st0 + st) * GW_KC;
#pragma unroll
        for (int i = 0; i < GW_ROWS * 8 / GW_THREADS; i++) {
            const int idx = tid + i * GW_THREADS;
            const int r = idx >> 3;
            const int c = idx & 7;
            const bool valid = r < rows;  // rows past the last: zeros
            gwCopy16(xs + gwSwizzled(r, c), x + (i64)(m0 + (valid ? r : 0)) * K + kb + 8 * c, valid);
        }
    };

    if (early) {
        for (int s = 0; s < GW_STAGES - 1 && s < nst; s++) loadW(s, s);
    }
    b4jPdlWait();
    for (int s = 0; s < GW_STAGES - 1; s++) {
        if (s < nst) {
            if (!early) loadW(s, s);
            loadX(s, s);
        }
        lmmCommit();
    }

    float d[64];
#pragma unroll
    for (int i = 0; i < 64; i++) d[i] = 0.0f;
    for (int i = 0; i < nst; i++) {
        lmmWait<GW_STAGES - 2>();
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // the copies seen by wgmma's reads
        __syncthreads();  // stage i is in for every thread; every warpgroup is done with stage i - 1
        const unsigned sb = base + (i % GW_STAGES) * GW_STAGE_BYTES;
        gwStageProducts(d, sb + wg * 64 * 128, sb + GW_TILE_BYTES);  // the warpgroup's 64 rows of W, x's 128
        const int next = i + GW_STAGES - 1;
        if (next < nst) {
            loadW(next % GW_STAGES, next);
            loadX(next % GW_STAGES, next);
        }
        lmmCommit();
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        gwFenceOperands(d);
    }
    lmmWait<0>();
    __syncthreads();  // every stage consumed: the shared memory becomes the float32 tile

    unsigned char* aligned = gwSmem + (base - raw);
    float* red = reinterpret_cast<float*>(aligned);
    gwTileStore(d, red, wg, warp & 3, lane);
    gwReduceStore<S>(red, part.rank, f0, m0, rows, N, bias, out, outF32);
#endif
}

}  // namespace b4j

// gemmWg{S}_bf16: clusters of S blocks along the width, one block a multiprocessor (its 193 KiB of shared memory)
#define B4J_GEMM_WG(S)                                                                                               \
    namespace b4j_bf16 {                                                                                             \
    extern "C" __global__ void __launch_bounds__(b4j::GW_THREADS, 1) B4J_GR_CLUSTER_DIMS(S)                          \
        gemmWg##S##_bf16(const b4j::lmm_bf16* x, const b4j::lmm_bf16* w, const b4j::lmm_bf16* bias, void* out,      \
                         int outF32, int M, int N, int K, int early) {                                               \
        b4j::gemmWgBody<S>(x, w, bias, out, outF32, M, N, K, early);                                                 \
    }                                                                                                                \
    }
B4J_GEMM_WG(1)
B4J_GEMM_WG(2)
B4J_GEMM_WG(4)
B4J_GEMM_WG(8)
