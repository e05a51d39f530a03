// Token sampling on the GPU (included by based4j_kernels.cu). Deterministic: every decision is made on integers
// (order-preserving keys of the logits, fixed-point weights) or by one thread, so the chosen token never depends on
// thread scheduling. The CPU sampler (io.based4j.sampling.TokenDraw, behind Sampler) computes exactly the same
// function, so the CPU and the GPU choose the same token for the same logits, settings and uniform draw.
#pragma once

#define SAMPLE_THREADS 512

namespace b4j {

/** An unsigned key that orders like the float (for non-NaN values; -0.0 sorts just below +0.0). */
__device__ __forceinline__ unsigned int orderKey(float v) {
    const unsigned int b = __float_as_uint(v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/**
 * Fixed-point weight of a logit: w = exp((v - m) / temperature) rounded to float (exp taken in double, so the float
 * matches Java's (float) Math.exp), q = floor(w * 2^40). The maximum logit itself always gets w = 1 (also when it is
 * +inf); w <= 1, so q <= 2^40.
 */
__device__ __forceinline__ u64 sampleWeight(float v, float m, float temperature) {
    const float w = v == m ? 1.0f : (float)exp((double)__fdiv_rn(__fsub_rn(v, m), temperature));
    return (u64)__fmul_rn(w, 1099511627776.0f);
}

/**
 * Exclusive prefix sum of one value per thread over the block (thread order), and the block total. Integer sums:
 * the result does not depend on the order of anything. Every thread must call it.
 */
__device__ __forceinline__ u64 blockExclusiveScan(u64 v, u64* warpTotals, u64* total) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    u64 inc = v;
    for (int o = 1; o < 32; o <<= 1) {
        const u64 y = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o) inc += y;
    }
    if (lane == 31) warpTotals[warp] = inc;
    __syncthreads();
    u64 before = 0;
    u64 all = 0;
    for (int w = 0; w < warps; w++) {
        if (w < warp) before += warpTotals[w];
        all += warpTotals[w];
    }
    __syncthreads();  // warpTotals may be reused right away
    *total = all;
    return before + inc - v;
}

/**
 * The k-th largest key of x[0, vocab) (1 <= k <= vocab), exactly: radix select over the 32-bit keys, 8 bits a pass
 * from the top, with 256-bin count histograms in shared memory.
 */
__device__ unsigned int kthLargestKey(const float* x, int vocab, unsigned int k, unsigned int* bins,
                                      unsigned int* sPrefix, u64* sRem) {
    unsigned int prefix = 0, mask = 0;
    u64 rem = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) bins[i] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            const unsigned int key = orderKey(x[i]);
            if ((key & mask) == prefix) atomicAdd(&bins[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            u64 cum = 0;
            for (int dg = 255; dg >= 0; dg--) {
                const u64 c = bins[dg];
                if (cum + c >= rem) {
                    prefix |= (unsigned int)dg << shift;
                    rem -= cum;
                    break;
                }
                cum += c;
            }
            *sPrefix = prefix;
            *sRem = rem;
        }
        __syncthreads();
        prefix = *sPrefix;
        rem = *sRem;
        mask |= 255u << shift;
        __syncthreads();  // sPrefix and sRem are written again next pass
    }
    return prefix;
}

/**
 * The largest key tau such that the weights of the tokens with threshold <= key and key >= tau sum to >= need
 * (1 <= need <= their total): radix select with 64-bit weight histograms (integer atomics, order-independent).
 */
__device__ unsigned int nucleusKey(const float* x, int vocab, unsigned int threshold, float m, float temperature,
                                   u64 need, u64* bins, unsigned int* sPrefix, u64* sRem) {
    unsigned int prefix = 0, mask = 0;
    u64 rem = need;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) bins[i] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            const float v = x[i];
            const unsigned int key = orderKey(v);
            if (key >= threshold && (key & mask) == prefix) {
                const u64 q = sampleWeight(v, m, temperature);
                if (q != 0) atomicAdd(&bins[(key >> shift) & 255u], q);
            }
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            u64 cum = 0;
            for (int dg = 255; dg >= 0; dg--) {
                const u64 c = bins[dg];
                if (cum + c >= rem) {
                    prefix |= (unsigned int)dg << shift;
                    rem -= cum;
                    break;
                }
                cum += c;
            }
            *sPrefix = prefix;
            *sRem = rem;
        }
        __syncthreads();
        prefix = *sPrefix;
        rem = *sRem;
        mask |= 255u << shift;
        __syncthreads();
    }
    return prefix;
}

/** Row b's id into outIds and, where feedIds is not null, a valid id into feedIds (host memory: written through). */
__device__ __forceinline__ void sampleEmit(int* outIds, int* feedIds, int b, int id) {
    outIds[b] = id;
    if (feedIds != nullptr) {
        feedIds[b] = id < 0 ? 0 : id;
        __threadfence_system();
    }
}

/**
 * One block (SAMPLE_THREADS threads) per output row b, rows grid-strided. Looks at logits[rows[b] * ld + i] for
 * i < vocab and writes outIds[b] (and feedIds[b] where feedIds is not null: the id, or 0 in place of -1 and -2, so
 * that a next step fed these ids on the device reads only valid ones; the host sees the error in outIds):
 *  -1 if any is NaN; -2 if all are -inf (or vocab == 0);
 *  greedy argmax (lowest index on ties) if !(temperature > 0) or topK == 1;
 *  else a draw: weights q_i (sampleWeight); top-k (0 < topK < vocab) keeps key >= the topK-th largest key (ties at
 *  the threshold all kept); top-p (topP < 1) then keeps key >= tau, the largest key whose kept tokens at or above it
 *  weigh >= need = clamp(ceil(topP * total), 1, total) (in double); target = floor(clamp(uniform, 0, 1) * kept)
 *  (in double, at most kept - 1); the answer is the first index, in index order over the kept tokens, at which the
 *  running sum of q exceeds target (so a token with q == 0 is never chosen).
 */
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_f32(const float* logits, const int* rows, int n, long long ld, int vocab, const float* temperature,
               const int* topK, const float* topP, const float* uniform, int* outIds, int* feedIds) { b4jPdlWait();
    __shared__ float sBest[32];
    __shared__ int sIdx[32];
    __shared__ unsigned int countBins[256];
    __shared__ u64 weightBins[256];
    __shared__ u64 warpTotals[32];
    __shared__ unsigned int sPrefix;
    __shared__ u64 sRem;
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int warps = blockDim.x >> 5;

    for (int b = blockIdx.x; b < n; b += gridDim.x) {
        __syncthreads();  // shared values of the previous row are no longer read
        const float* x = logits + (i64)rows[b] * ld;

        // NaN check and argmax (lowest index among the maximal values)
        float best = -CUDART_INF_F;
        int bestIdx = 0x7fffffff;
        int nan = 0;
        auto look = [&](float v, int i) {
            if (v != v) {
                nan = 1;
            } else if (v > best || (v == best && i < bestIdx)) {
                best = v;
                bestIdx = i;
            }
        };
        // 16-byte loads where the row is aligned, several in flight a thread (the same argmax: the lowest index
        // among the maximal values, whatever the order the values are looked at in)
        const int quads = (reinterpret_cast<uintptr_t>(x) & 15) == 0 ? vocab >> 2 : 0;
        const float4* x4 = reinterpret_cast<const float4*>(x);
#pragma unroll 4
        for (int q = tid; q < quads; q += blockDim.x) {
            const float4 f = x4[q];
            look(f.x, 4 * q);
            look(f.y, 4 * q + 1);
            look(f.z, 4 * q + 2);
            look(f.w, 4 * q + 3);
        }
        for (int i = 4 * quads + tid; i < vocab; i += blockDim.x) look(x[i], i);
        for (int o = 16; o > 0; o >>= 1) {
            const float ob = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bestIdx, o);
            if (ob > best || (ob == best && oi < bestIdx)) {
                best = ob;
                bestIdx = oi;
            }
        }
        if (lane == 0) {
            sBest[warp] = best;
            sIdx[warp] = bestIdx;
        }
        const int anyNan = __syncthreads_or(nan);
        best = sBest[0];
        bestIdx = sIdx[0];
        for (int w = 1; w < warps; w++) {
            if (sBest[w] > best || (sBest[w] == best && sIdx[w] < bestIdx)) {
                best = sBest[w];
                bestIdx = sIdx[w];
            }
        }
        if (anyNan) {
            if (tid == 0) sampleEmit(outIds, feedIds, b, -1);
            continue;
        }
        if (best == -CUDART_INF_F) {
            if (tid == 0) sampleEmit(outIds, feedIds, b, -2);
            continue;
        }
        const float temp = temperature[b];
        const int k = topK[b];
        if (!(temp > 0.0f) || k == 1) {
            if (tid == 0) sampleEmit(outIds, feedIds, b, bestIdx);
            continue;
        }
        const float m = best;

        unsigned int threshold = 0;
        if (k > 0 && k < vocab) threshold = kthLargestKey(x, vocab, (unsigned int)k, countBins, &sPrefix, &sRem);

        const float p = topP[b];
        if (p < 1.0f) {
            u64 mine = 0;
            for (int i = tid; i < vocab; i += blockDim.x) {
                const float v = x[i];
                if (orderKey(v) >= threshold) mine += sampleWeight(v, m, temp);
            }
            u64 total;
            blockExclusiveScan(mine, warpTotals, &total);
            const double prod = (double)p * (double)total;
            u64 need = prod <= 0.0 ? 0ull : (u64)ceil(prod);
            if (need > total) need = total;
            if (need < 1) need = 1;
            const unsigned int tau = nucleusKey(x, vocab, threshold, m, temp, need, weightBins, &sPrefix, &sRem);
            if (tau > threshold) threshold = tau;
        }

        // the draw: contiguous segments per thread, exclusive scan of their kept weight, the owner walks its segment
        const int seg = (vocab + blockDim.x - 1) / blockDim.x;
        const int lo = min(vocab, tid * seg);
        const int hi = min(vocab, lo + seg);
        u64 mine = 0;
        for (int i = lo; i < hi; i++) {
            const float v = x[i];
            if (orderKey(v) >= threshold) mine += sampleWeight(v, m, temp);
        }
        u64 kept;
        const u64 before = blockExclusiveScan(mine, warpTotals, &kept);
        float u = uniform[b];
        if (!(u > 0.0f)) u = 0.0f;
        if (u > 1.0f) u = 1.0f;
        u64 target = (u64)((double)u * (double)kept);
        if (target >= kept) target = kept - 1;  // kept >= 2^40: the maximal token always stays
        if (before <= target && target < before + mine) {
            u64 cum = before;
            for (int i = lo; i < hi; i++) {
                const float v = x[i];
                if (orderKey(v) >= threshold) {
                    cum += sampleWeight(v, m, temp);
                    if (cum > target) {
                        sampleEmit(outIds, feedIds, b, i);
                        break;
                    }
                }
            }
        }
    }
}

}  // namespace b4j
