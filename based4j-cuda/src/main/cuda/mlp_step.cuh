// A decode step's MLP branch of one row in one kernel (included by based4j_kernels.cu after gemv.cuh; sm_90 and
// newer): residual += branch, h = rmsNorm(residual), act = swiglu(h W1^T), out = act W2^T. Launched by
// io.based4j.cuda.Kernels.mlpStep for CudaBackend.mlpBranch.
//
// What it is for: at batch 1 the branch is three kernels (addRmsNorm, gemvSwiglu, gemv version 3), each with its
// launch, its ramp and its tail, while its weights (38.5 MB for based-1b) would stream in about 10 us. Here one
// block a multiprocessor (a cooperative launch, so that all are resident) streams its share of both products' rows
// into shared memory by bulk copies (cp.async.bulk, one mbarrier a slot), W1's first rows requested before the wait
// for the kernel before (no kernel of a decode step writes weights), and W2's while the blocks wait for each other
// between the two products (one grid-wide barrier: act is the second product's input).
//
// Every number is the unfused kernels', bit for bit: each block computes the norm as addRmsNorm's 256 threads do
// (thread t the values t, t + 256, ..., warp sums by the same butterfly, the warps' sums in order); each unit of work
// (a row of W, or one of its P parts as gemv version 3 cuts it) is summed as a warp of version 3 sums its part (lane
// l the pieces of 8 values l, l + 32, ... of the part, then the butterfly), the parts added in order from 0, the
// bias (or 0) after them, and rounded once; the SwiGLU of a pair as gemvSwiglu takes it.
#pragma once

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define B4J_MLP_STEP 1
#else
#define B4J_MLP_STEP 0
#endif

namespace b4j {

constexpr int MS_WARPS = 16;
constexpr int MS_THREADS = MS_WARPS * 32;
constexpr int MS_SLOTS = 3;            // units in flight a warp
constexpr int MS_SLOT_BYTES = 4096;    // a unit: at most 256 pieces of 8 bf16 values (one round of gemv version 3)
constexpr int MS_NORM_THREADS = 256;   // the block addRmsNorm is launched with (Kernels.THREADS)

#if B4J_MLP_STEP
__device__ __forceinline__ void msBarrierInit(unsigned bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar) : "memory");
}

/** Requests bytes at src into shared dst, completing on mbarrier bar (whose one arrival this is). */
__device__ __forceinline__ void msBulkLoad(unsigned dst, const void* src, unsigned bytes, unsigned bar) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
                 ::"r"(dst), "l"(src), "r"(bytes), "r"(bar)
                 : "memory");
}

__device__ __forceinline__ void msBarrierWait(unsigned bar, unsigned parity) {
    unsigned done = 0;
    while (!done) {
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n"
            "}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    }
}

__device__ __forceinline__ unsigned msLoadAcquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/**
 * Every block of the grid waits here until all have arrived (all resident: a cooperative launch). sync[0] counts the
 * arrivals and is 0 between barriers (the last to arrive sets it back), sync[1] is the generation, which the last
 * one advances; what a block wrote before is visible to every block after.
 */
__device__ __forceinline__ void msGridSync(unsigned* sync) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned gen = msLoadAcquire(sync + 1);
        __threadfence();
        if (atomicAdd(sync, 1u) == gridDim.x - 1) {
            atomicExch(sync, 0u);
            __threadfence();
            atomicAdd(sync + 1, 1u);
        } else {
            while (msLoadAcquire(sync + 1) == gen) {
            }
        }
        __threadfence();
    }
    __syncthreads();
}
#endif

/** Where a unit of a block's stream lies: its first piece of 8 values of W, and how many pieces. */
struct MsUnit {
    const bf16* src;
    int pieces;
};

/**
 * The block's units in order: the first product's (its pairs' value row then gate row, each in P1 parts), then the
 * second's (its rows, each in P2 parts).
 */
struct MsPlan {
    const bf16* w1;
    const bf16* w2;
    int D, H, P1, P2;
    int pair0, pairs;  // the block's pairs of the first product
    int row0, rows;    // its rows of the second
    int u1, units;     // units of the first product, of both

    __device__ __forceinline__ MsUnit unit(int u) const {
        MsUnit r;
        if (u < u1) {
            const int chunks = D >> 3;
            const int per = (chunks + P1 - 1) / P1;
            const int part = u % P1;
            const int rowPair = u / P1;  // (local pair) * 2 + half
            const int row = (rowPair & 1) * H + pair0 + (rowPair >> 1);
            const int c0 = part * per;
            r.src = w1 + (i64)row * D + 8 * c0;
            r.pieces = min(chunks, c0 + per) - c0;
        } else {
            const int v = u - u1;
            const int chunks = H >> 3;
            const int per = (chunks + P2 - 1) / P2;
            const int part = v % P2;
            const int row = row0 + v / P2;
            const int c0 = part * per;
            r.src = w2 + (i64)row * H + 8 * c0;
            r.pieces = min(chunks, c0 + per) - c0;
        }
        return r;
    }

    /** The first piece of unit u within its row (where its values of x start). */
    __device__ __forceinline__ int firstPiece(int u) const {
        if (u < u1) {
            return (u % P1) * (((D >> 3) + P1 - 1) / P1);
        }
        return ((u - u1) % P2) * (((H >> 3) + P2 - 1) / P2);
    }
};

/**
 * The kernel's body (MS_THREADS threads, one block a multiprocessor): residual F32 [D], branch [D] or null (then the
 * residual is only read), normW [D], w1 [2H, D] (value rows then gate rows), bias1 [2H] or null, w2 [D, H], bias2 [D]
 * or null, act [H] (written, then read by every block), out [D] (which may be the branch: the branch is read before
 * the grid-wide barrier, out written after it); P1 and P2 the parts gemv version 3 gives the two
 * products; sync two words, the first 0. D and H multiples of 8, every pointer of W 16-byte aligned.
 */
__device__ __forceinline__ void mlpStepBody(float* residual, const bf16* branch, const bf16* normW, float eps,
                                            const bf16* w1, const bf16* bias1, const bf16* w2, const bf16* bias2,
                                            bf16* act, bf16* out, int D, int H, int P1, int P2, unsigned* sync,
                                            int early) {
#if B4J_MLP_STEP
    extern __shared__ __align__(128) unsigned char msSmem[];
    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int G = gridDim.x;
    const int b = blockIdx.x;

    MsPlan plan;
    plan.w1 = w1;
    plan.w2 = w2;
    plan.D = D;
    plan.H = H;
    plan.P1 = P1;
    plan.P2 = P2;
    plan.pair0 = (int)((i64)b * H / G);
    plan.pairs = (int)((i64)(b + 1) * H / G) - plan.pair0;
    plan.row0 = (int)((i64)b * D / G);
    plan.rows = (int)((i64)(b + 1) * D / G) - plan.row0;
    plan.u1 = plan.pairs * 2 * P1;
    plan.units = plan.u1 + plan.rows * P2;

    // shared memory: the warps' rings, their mbarriers, the vector the product reads (h, then act), unit sums
    unsigned char* ring = msSmem;
    unsigned long long* bars = reinterpret_cast<unsigned long long*>(ring + MS_WARPS * MS_SLOTS * MS_SLOT_BYTES);
    bf16* vec = reinterpret_cast<bf16*>(bars + MS_WARPS * MS_SLOTS);
    const int vecLen = (D > H ? D : H);
    float* summed = reinterpret_cast<float*>(vec + ((vecLen + 7) & ~7));  // the new residual (block 0's)
    float* sums = summed + ((D + 3) & ~3);
    __shared__ float normPartial[MS_NORM_THREADS / 32];

    const unsigned ringAddr = lmmSmemAddr(ring) + warp * MS_SLOTS * MS_SLOT_BYTES;
    const unsigned barAddr = lmmSmemAddr(bars) + warp * MS_SLOTS * 8;
    if (lane == 0) {
        for (int s = 0; s < MS_SLOTS; s++) msBarrierInit(barAddr + 8 * s);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncwarp();
    // unit g of the block goes to warp g % MS_WARPS, its k-th (k = g / MS_WARPS) into slot k % MS_SLOTS
    auto request = [&](int g) {
        if (lane == 0 && g < plan.units) {
            const MsUnit u = plan.unit(g);
            const int s = (g / MS_WARPS) % MS_SLOTS;
            msBulkLoad(ringAddr + s * MS_SLOT_BYTES, u.src, (unsigned)(u.pieces * 16), barAddr + 8 * s);
        }
    };
    if (early) {
        for (int s = 0; s < MS_SLOTS; s++) request(warp + s * MS_WARPS);
    }
    b4jPdlWait();
    if (!early) {
        for (int s = 0; s < MS_SLOTS; s++) request(warp + s * MS_WARPS);
    }

    // the norm, as addRmsNorm's block of 256 threads takes it
    {
        float ss = 0.0f;
        if (tid < MS_NORM_THREADS) {
            for (int j = tid; j < D; j += MS_NORM_THREADS) {
                const float v = branch != nullptr ? residual[j] + toF(branch[j]) : residual[j];
                ss += v * v;
            }
            ss = warpSum(ss);
            if (lane == 0) normPartial[warp] = ss;
        }
        __syncthreads();
        float total = 0.0f;
        for (int w = 0; w < MS_NORM_THREADS / 32; w++) total += normPartial[w];
        const float r = (float)(1.0 / sqrt((double)(total / (float)D + eps)));
        if (tid < MS_NORM_THREADS) {
            for (int j = tid; j < D; j += MS_NORM_THREADS) {
                const float v = branch != nullptr ? residual[j] + toF(branch[j]) : residual[j];
                vec[j] = fromF<bf16>(v * r * toF(normW[j]));
                summed[j] = v;
            }
        }
        __syncthreads();
    }

    // a warp's units from g up to end (exclusive), x = vec; each unit's sum into sums[g]
    auto run = [&](int from, int end) {
        for (int g = from; g < end; g += MS_WARPS) {
            const int k = g / MS_WARPS;
            const int s = k % MS_SLOTS;
            msBarrierWait(barAddr + 8 * s, (unsigned)((k / MS_SLOTS) & 1));
            const MsUnit u = plan.unit(g);
            const int first = plan.firstPiece(g);
            const unsigned char* slot = ring + (warp * MS_SLOTS + s) * MS_SLOT_BYTES;
            float acc = 0.0f;
            for (int c = lane; c < u.pieces; c += 32) {
                float wv[8];
                float xv[8];
                unpack8(*reinterpret_cast<const uint4*>(slot + 16 * c), wv);
                unpack8(*reinterpret_cast<const uint4*>(vec + 8 * (first + c)), xv);
#pragma unroll
                for (int i = 0; i < 8; i++) acc += wv[i] * xv[i];
            }
            for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (lane == 0) sums[g] = acc;
            __syncwarp();
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // the slot's reads before its next copy
            request(g + MS_SLOTS * MS_WARPS);
        }
    };
    // the first product's units (the warp's first unit is its own index)
    run(warp, plan.u1);
    __syncthreads();
    for (int q = tid; q < plan.pairs; q += MS_THREADS) {
        const int jj = plan.pair0 + q;
        float value = 0.0f;
        float gate = 0.0f;
        for (int p = 0; p < P1; p++) value += sums[(2 * q) * P1 + p];
        for (int p = 0; p < P1; p++) gate += sums[(2 * q + 1) * P1 + p];
        value += bias1 != nullptr ? toF(bias1[jj]) : 0.0f;
        gate += bias1 != nullptr ? toF(bias1[H + jj]) : 0.0f;
        const float y = toF(fromF<bf16>(value));
        const float g = toF(fromF<bf16>(gate));
        act[jj] = fromF<bf16>(y * silu(g));
    }
    msGridSync(sync);
    if (b == 0 && branch != nullptr) {
        // every block has read the residual and the branch (which out may be: it is written below): the sum is
        // written once
        for (int j = tid; j < D; j += MS_THREADS) residual[j] = summed[j];
    }
    for (int j = tid; j < H / 8; j += MS_THREADS) {
        reinterpret_cast<uint4*>(vec)[j] = __ldcg(reinterpret_cast<const uint4*>(act) + j);
    }
    __syncthreads();
    // the second product's units: the warp's first at or past u1
    const int from2 = plan.u1 + ((warp - plan.u1 % MS_WARPS) + MS_WARPS) % MS_WARPS;
    run(from2, plan.units);
    __syncthreads();
    for (int q = tid; q < plan.rows; q += MS_THREADS) {
        const int n = plan.row0 + q;
        float v = 0.0f;
        for (int p = 0; p < P2; p++) v += sums[plan.u1 + q * P2 + p];
        v += bias2 != nullptr ? toF(bias2[n]) : 0.0f;
        out[n] = fromF<bf16>(v);
    }
#endif
}

}  // namespace b4j

namespace b4j_bf16 {
extern "C" __global__ void __launch_bounds__(b4j::MS_THREADS, 1)
    mlpStep_bf16(float* residual, const A* branch, const W* normW, float eps, const W* w1, const W* bias1,
                 const W* w2, const W* bias2, A* act, A* out, int D, int H, int P1, int P2, unsigned* sync,
                 int early) {
    b4j::mlpStepBody(residual, branch, normW, eps, w1, bias1, w2, bias2, act, out, D, H, P1, P2, sync, early);
}
}  // namespace b4j_bf16
