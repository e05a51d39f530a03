// The softmax parts of the fused head + cross-entropy (included by based4j_kernels.cu); the products around them are
// cuBLAS calls made by io.based4j.cuda.TrainKernels.crossEntropy, which describes the whole scheme. The function is
// io.based4j.train.cpu.CrossEntropyOps.forwardBackward's, in float32: loss_i = logsumexp(z_i) - z_i[t_i] over the
// first `vocab` logits of rows whose target t_i is not IGNORE_INDEX, the gradient of scale * sum_i loss_i being
// scale * (softmax(z_i) - onehot(t_i)), argmax the lowest index of the largest logit.
//
// The rows are walked in chunks; a chunk's logits are a row-major [rows, vocab] float32 scratch. Per row a float4
// keeps the row's state: x = the max M, y = sum exp(z - M), z = the target's logit (NaN for a target outside the
// vocabulary), w = the argmax (int bits).
#pragma once

#define B4J_IGNORE_INDEX (-100)

namespace b4j {

/** (value, index) of the larger value, the lower index on ties; NaN values never win. */
__device__ __forceinline__ void argmaxMerge(float& best, int& bestIdx, float v, int i) {
    if (v > best || (v == best && i < bestIdx)) {
        best = v;
        bestIdx = i;
    }
}

/** Merges the softmax state (m2, s2) into (m, s): the larger max, each sum rescaled to it (-inf maxes hold 0). */
__device__ __forceinline__ void softmaxMerge(float& m, float& s, float m2, float s2) {
    if (m2 == -CUDART_INF_F) return;
    if (m == -CUDART_INF_F) {
        m = m2;
        s = s2;
        return;
    }
    const float mm = fmaxf(m, m2);
    s = s * expf(m - mm) + s2 * expf(m2 - mm);
    m = mm;
}

/**
 * Whole rows at once (the rows-chunked scheme: logits [n, vocab] float32, row stride ld): one block of 512 threads
 * per row, rows grid-strided. One pass reads the row once (4 logits a load where the rows are 16-byte aligned, 8 where bf16 logits
 * become a bf16 gradient) into a
 * running max, sum of exponentials (rescaled at each new max, as an online softmax) and argmax per thread, merged over the block in a fixed order; thread 0 writes the
 * row's state (stats as in crossEntropyChunkStats_f32, complete). Where grad is not null a second pass writes
 * scale * (exp(z - M) / S - onehot) in A (zeros on ignored rows). Ignored rows' states are not written. Deterministic.
 */
/** One logit into a thread's online softmax state (m, s) and argmax. */
__device__ __forceinline__ void softmaxAdd(float& m, float& s, float& best, int& bestIdx, float v, int j) {
    argmaxMerge(best, bestIdx, v, j);
    if (v > m) {
        s = (m == -CUDART_INF_F ? 0.0f : s * expf(m - v)) + 1.0f;
        m = v;
    } else if (v != -CUDART_INF_F) {
        s += expf(v - m);
    }
}

/** Four values into A at p (8-byte aligned in bf16, 16-byte in float32). */
__device__ __forceinline__ void store4(float* p, const float (&v)[4]) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void store4(__nv_bfloat16* p, const float (&v)[4]) {
    __nv_bfloat162 lo = __floats2bfloat162_rn(v[0], v[1]);
    __nv_bfloat162 hi = __floats2bfloat162_rn(v[2], v[3]);
    uint2 bits;
    bits.x = *reinterpret_cast<unsigned*>(&lo);
    bits.y = *reinterpret_cast<unsigned*>(&hi);
    *reinterpret_cast<uint2*>(p) = bits;
}

/** log2(e): exp(x) = exp2(x log2(e)). */
#define CE_LOG2E 1.4426950408889634f

/**
 * The rows of logits of type L (float32, or bf16 as a bf16 product leaves them), the gradient in A; grad may be the
 * logits themselves (bf16): each value is read by the thread that writes it, after the whole row has been read.
 */
template <typename L, typename A>
__device__ void crossEntropyRowsOf(const L* logits, const int* targets, float4* stats, A* grad, int n, int vocab,
                                   int ld, float scale) {
    // rows 16-byte aligned (the scratch is; ld a multiple of 8): 4 logits a load (8 where logits and gradient are
    // both bf16, one 16-byte load or store), the last vocab % 4 (% 8) one by one
    const bool vec4 = (ld & 7) == 0 && (reinterpret_cast<uintptr_t>(logits) & 15) == 0
                      && (grad == nullptr || (reinterpret_cast<uintptr_t>(grad) & 15) == 0);
    constexpr bool narrow = sizeof(L) == 2 && sizeof(A) == 2;
    const int octs = narrow && vec4 ? vocab >> 3 : 0;
    const int quads = vec4 && !narrow ? vocab >> 2 : 0;
    const int tail = narrow ? 8 * octs : 4 * quads;  // logits from here on are taken one at a time
    __shared__ float redM[32], redS[32], redB[32];
    __shared__ int redI[32];
    __shared__ float4 rowState;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    for (i64 row = blockIdx.x; row < n; row += gridDim.x) {
        const int t = targets[row];
        const L* z = logits + row * ld;
        A* g = grad == nullptr ? nullptr : grad + row * ld;
        if (t == B4J_IGNORE_INDEX) {  // the same for the whole block
            if (g != nullptr) {
                for (int j = threadIdx.x; j < vocab; j += blockDim.x) g[j] = fromF<A>(0.0f);
            }
            continue;
        }
        float m = -CUDART_INF_F, s = 0.0f, best = -CUDART_INF_F;
        int bestIdx = 0x7fffffff;
        for (int q = threadIdx.x; q < quads; q += blockDim.x) {
            const float4 v = load4(z + 4 * q);
            softmaxAdd(m, s, best, bestIdx, v.x, 4 * q);
            softmaxAdd(m, s, best, bestIdx, v.y, 4 * q + 1);
            softmaxAdd(m, s, best, bestIdx, v.z, 4 * q + 2);
            softmaxAdd(m, s, best, bestIdx, v.w, 4 * q + 3);
        }
        if constexpr (narrow) {
            // the running max is the argmax's value: one rescale of the sum an eight where it grew, then eight
            // exponentials, each a fused multiply-add and a base-2 exponential (bf16 logits are far coarser)
#pragma unroll 2
            for (int q = threadIdx.x; q < octs; q += blockDim.x) {
                float v[8];
                load8(z + 8 * q, v);
#pragma unroll
                for (int e = 0; e < 8; e++) argmaxMerge(best, bestIdx, v[e], 8 * q + e);
                if (best == -CUDART_INF_F) {
                    // nothing to add (and no -inf - -inf), unless a NaN, which the argmax passes over, is there
#pragma unroll
                    for (int e = 0; e < 8; e++) {
                        if (v[e] != -CUDART_INF_F) s = CUDART_NAN_F;
                    }
                    continue;
                }
                if (best > m) {
                    s = m == -CUDART_INF_F ? 0.0f : s * exp2f((m - best) * CE_LOG2E);
                    m = best;
                }
                const float mL = m * CE_LOG2E;
#pragma unroll
                for (int e = 0; e < 8; e++) s += exp2f(fmaf(v[e], CE_LOG2E, -mL));
            }
        }
        for (int j = tail + threadIdx.x; j < vocab; j += blockDim.x) softmaxAdd(m, s, best, bestIdx, toF(z[j]), j);
        for (int o = 16; o > 0; o >>= 1) {
            softmaxMerge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
            const float ov = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bestIdx, o);
            argmaxMerge(best, bestIdx, ov, oi);
        }
        if (lane == 0) {
            redM[warp] = m;
            redS[warp] = s;
            redB[warp] = best;
            redI[warp] = bestIdx;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            float bm = -CUDART_INF_F, bs = 0.0f, bb = -CUDART_INF_F;
            int bi = 0x7fffffff;
            for (int w = 0; w < warps; w++) {
                softmaxMerge(bm, bs, redM[w], redS[w]);
                argmaxMerge(bb, bi, redB[w], redI[w]);
            }
            const float zt = t >= 0 && t < vocab ? toF(z[t]) : CUDART_NAN_F;
            rowState = make_float4(bm, bs, zt, __int_as_float(bi == 0x7fffffff ? -1 : bi));
            stats[row] = rowState;
        }
        __syncthreads();
        if (g != nullptr) {
            const float4 st = rowState;
            const float f = scale / st.y;
            for (int q = threadIdx.x; q < quads; q += blockDim.x) {
                const float4 v = load4(z + 4 * q);
                float o[4] = {expf(v.x - st.x) * f, expf(v.y - st.x) * f, expf(v.z - st.x) * f,
                              expf(v.w - st.x) * f};
                if ((t >> 2) == q) o[t & 3] -= scale;
                store4(g + 4 * q, o);
            }
            if constexpr (narrow) {
                const float mL = st.x * CE_LOG2E;
#pragma unroll 2
                for (int q = threadIdx.x; q < octs; q += blockDim.x) {
                    float v[8];
                    load8(z + 8 * q, v);
#pragma unroll
                    for (int e = 0; e < 8; e++) v[e] = exp2f(fmaf(v[e], CE_LOG2E, -mL)) * f;
                    if ((t >> 3) == q) v[t & 7] -= scale;
                    store8(g + 8 * q, v);
                }
            }
            for (int j = tail + threadIdx.x; j < vocab; j += blockDim.x) {
                float v = expf(toF(z[j]) - st.x) * f;
                if (j == t) v -= scale;
                g[j] = fromF<A>(v);
            }
        }
        __syncthreads();  // rowState and the warp slots are written again for the next row
    }
}

/** Quads of logits a thread of crossEntropyRowsHeld holds at most: rows of up to 512 x 4 x 8 = 16384 logits. */
#define CE_HELD_MAX_QUADS 8
#define CE_HELD_THREADS 512

/**
 * crossEntropyRowsOf for rows of at most 2048 Q logits, each read once into registers (quad q of thread t: logits
 * 4 (t + 512 q) .. + 3; rows 16-byte aligned, ld a multiple of 8): the row's max and argmax over the block, then one
 * exponential a logit, exp(z - M), kept for both the block's sum and the gradient, which is written from the
 * registers (over the logits where grad is them). Block 512 threads, rows grid-strided; the state as
 * crossEntropyRowsOf leaves it (the sum in another fixed order). Ignored rows: zero gradients, no state.
 */
template <typename L, typename A, int Q>
__device__ void crossEntropyRowsHeld(const L* logits, const int* targets, float4* stats, A* grad, int n, int vocab,
                                     int ld, float scale) {
    __shared__ float redM[CE_HELD_THREADS / 32], redS[CE_HELD_THREADS / 32];
    __shared__ int redI[CE_HELD_THREADS / 32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    for (i64 row = blockIdx.x; row < n; row += gridDim.x) {
        const int t = targets[row];
        const L* z = logits + row * ld;
        A* g = grad == nullptr ? nullptr : grad + row * ld;
        float v[Q][4];
        float best = -CUDART_INF_F;
        int bestIdx = 0x7fffffff;
#pragma unroll
        for (int q = 0; q < Q; q++) {
            const int j0 = 4 * (threadIdx.x + CE_HELD_THREADS * q);
            if (j0 + 3 < vocab) {
                const float4 f = load4(z + j0);
                v[q][0] = f.x, v[q][1] = f.y, v[q][2] = f.z, v[q][3] = f.w;
            } else {
#pragma unroll
                for (int e = 0; e < 4; e++) v[q][e] = j0 + e < vocab ? toF(z[j0 + e]) : -CUDART_INF_F;
            }
#pragma unroll
            for (int e = 0; e < 4; e++) {
                if (j0 + e < vocab) argmaxMerge(best, bestIdx, v[q][e], j0 + e);  // never the padding
            }
        }
        // the target's logit, read before any thread writes the gradient (over the logits where grad is them)
        const float zt = threadIdx.x == 0 && t >= 0 && t < vocab ? toF(z[t]) : CUDART_NAN_F;
        if (t == B4J_IGNORE_INDEX) {  // the same for the whole block
            if (g != nullptr) {
#pragma unroll
                for (int q = 0; q < Q; q++) {
                    const int j0 = 4 * (threadIdx.x + CE_HELD_THREADS * q);
                    const float o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    if (j0 + 3 < vocab) {
                        store4(g + j0, o);
                    } else {
                        for (int e = 0; e < 4 && j0 + e < vocab; e++) g[j0 + e] = fromF<A>(0.0f);
                    }
                }
            }
            continue;
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bestIdx, o);
            argmaxMerge(best, bestIdx, ov, oi);
        }
        if (lane == 0) {
            redM[warp] = best;
            redI[warp] = bestIdx;
        }
        __syncthreads();
        float mx = -CUDART_INF_F;
        int mi = 0x7fffffff;
        for (int w = 0; w < CE_HELD_THREADS / 32; w++) argmaxMerge(mx, mi, redM[w], redI[w]);
        // the row's max is its largest logit (all finite logits; -inf ones add nothing)
        float sum = 0.0f;
#pragma unroll
        for (int q = 0; q < Q; q++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                v[q][e] = expf(v[q][e] - mx);  // -inf past the vocabulary: 0
                sum += v[q][e];
            }
        }
        sum = warpSum(sum);
        if (lane == 0) redS[warp] = sum;
        __syncthreads();
        float total = 0.0f;
        for (int w = 0; w < CE_HELD_THREADS / 32; w++) total += redS[w];
        if (threadIdx.x == 0) stats[row] = make_float4(mx, total, zt, __int_as_float(mi == 0x7fffffff ? -1 : mi));
        if (g != nullptr) {
            const float f = scale / total;
#pragma unroll
            for (int q = 0; q < Q; q++) {
                const int j0 = 4 * (threadIdx.x + CE_HELD_THREADS * q);
                float o[4];
#pragma unroll
                for (int e = 0; e < 4; e++) o[e] = v[q][e] * f - (j0 + e == t ? scale : 0.0f);
                if (j0 + 3 < vocab) {
                    store4(g + j0, o);
                } else {
                    for (int e = 0; e < 4 && j0 + e < vocab; e++) g[j0 + e] = fromF<A>(o[e]);
                }
            }
        }
        __syncthreads();  // the warp slots are written again for the next row
    }
}

template <typename W, typename A>
__device__ void crossEntropyRows_impl(const float* logits, const int* targets, float4* stats, A* grad, int n,
                                      int vocab, int ld, float scale) {
    crossEntropyRowsOf<float, A>(logits, targets, stats, grad, n, vocab, ld, scale);
}

/**
 * After crossEntropyRows, one block of 1024 threads: per counted row loss = (M + log S) - z_t (in double from the float
 * state; NaN for a target outside [0, vocab)), argmax[row] = its argmax (-1 for ignored rows; argmax may be null),
 * and *lossSum += the sum of the losses: per-thread sums over rows strided by the block, then a fixed tree, so the
 * sum is the same on every run.
 */
extern "C" __global__ void __launch_bounds__(1024)
    crossEntropyLoss_f32(const int* targets, const float4* stats, int* argmax, double* lossSum, int n, int vocab) {
    b4jPdlWait();
    __shared__ double red[32];
    double sum = 0.0;
    for (int row = threadIdx.x; row < n; row += blockDim.x) {
        const int t = targets[row];
        if (t == B4J_IGNORE_INDEX) {
            if (argmax != nullptr) argmax[row] = -1;
            continue;
        }
        const float4 st = stats[row];
        if (argmax != nullptr) argmax[row] = __float_as_int(st.w);
        sum += t < 0 || t >= vocab ? CUDART_NAN : (double)st.x + log((double)st.y) - (double)st.z;
    }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) total += red[w];
        *lossSum += total;
    }
}

}  // namespace b4j

B4J_KERNEL(crossEntropyRows, 512,
           (const float* logits, const int* targets, float4* stats, A* grad, int n, int vocab, int ld, float scale),
           (logits, targets, stats, grad, n, vocab, ld, scale))

/**
 * out[i] = -log softmax(logits[rows[i], 0 .. vocab))[targets[i]] in double (packed: rows then targets, n each),
 * as LogSoftmax.logNormalizer computes it on the host: the row's largest logit M, then the sum of exp(z - M) in
 * double, M + log(sum) - z_t. One block of 256 threads per entry, entries grid-strided; per-thread sums in order,
 * then a fixed tree: deterministic.
 */
extern "C" __global__ void __launch_bounds__(256)
    tokenNll_f32(const float* logits, long long ld, const int* packed, double* out, int n, int vocab) { b4jPdlWait();
    __shared__ float redM[32];
    __shared__ double redS[32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    for (int i = blockIdx.x; i < n; i += gridDim.x) {
        const float* z = logits + (long long)packed[i] * ld;
        const int t = packed[n + i];
        float m = -CUDART_INF_F;
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, z[j]);
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (lane == 0) redM[warp] = m;
        __syncthreads();
        m = redM[0];
        for (int w = 1; w < warps; w++) m = fmaxf(m, redM[w]);
        double s = 0.0;
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) s += exp((double)z[j] - (double)m);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) redS[warp] = s;
        __syncthreads();
        if (threadIdx.x == 0) {
            double total = 0.0;
            for (int w = 0; w < warps; w++) total += redS[w];
            out[i] = (double)m + log(total) - (double)z[t];
        }
        __syncthreads();  // redM and redS are written again for the next entry
    }
}

namespace b4j_bf16 {
/** crossEntropyRows over bf16 logits, the gradient written over them (grad = logits). */
extern "C" __global__ void __launch_bounds__(512)
    crossEntropyRowsInPlace_bf16(A* logits, const int* targets, float4* stats, int n, int vocab, int ld, float scale) {
    b4jPdlWait();
    b4j::crossEntropyRowsOf<A, A>(logits, targets, stats, logits, n, vocab, ld, scale);
}
}  // namespace b4j_bf16

#define CE_HELD_KERNELS(Q)                                                                                           \
    namespace b4j_f32 {                                                                                              \
    extern "C" __global__ void __launch_bounds__(CE_HELD_THREADS) crossEntropyRowsHeld##Q##_f32(                     \
        const float* logits, const int* targets, float4* stats, A* grad, int n, int vocab, int ld, float scale) {    \
        b4jPdlWait();                                                                                                \
        b4j::crossEntropyRowsHeld<float, A, Q>(logits, targets, stats, grad, n, vocab, ld, scale);                   \
    }                                                                                                                \
    }                                                                                                                \
    namespace b4j_bf16 {                                                                                             \
    extern "C" __global__ void __launch_bounds__(CE_HELD_THREADS) crossEntropyRowsHeld##Q##_bf16(                    \
        const float* logits, const int* targets, float4* stats, A* grad, int n, int vocab, int ld, float scale) {    \
        b4jPdlWait();                                                                                                \
        b4j::crossEntropyRowsHeld<float, A, Q>(logits, targets, stats, grad, n, vocab, ld, scale);                   \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(CE_HELD_THREADS) crossEntropyRowsHeldInPlace##Q##_bf16(             \
        A* logits, const int* targets, float4* stats, int n, int vocab, int ld, float scale) {                       \
        b4jPdlWait();                                                                                                \
        b4j::crossEntropyRowsHeld<A, A, Q>(logits, targets, stats, logits, n, vocab, ld, scale);                     \
    }                                                                                                                \
    }

CE_HELD_KERNELS(1)
CE_HELD_KERNELS(2)
CE_HELD_KERNELS(4)
CE_HELD_KERNELS(8)
