// The softmax parts of the fused head + cross-entropy (included by based4j_kernels.cu); the products around them are
// cuBLAS calls made by io.based4j.cuda.TrainKernels.crossEntropy, which describes the whole scheme. The function is
// io.based4j.train.cpu.CrossEntropyOps.forwardBackward's, in float32: loss_i = logsumexp(z_i) - z_i[t_i] over the
// first `vocab` logits of rows whose target t_i is not IGNORE_INDEX, the gradient of scale * sum_i loss_i being
// scale * (softmax(z_i) - onehot(t_i)), argmax the lowest index of the largest logit.
//
// The vocabulary is walked in chunks of columns [c0, c0 + cw); a chunk's logits are a row-major [n, cw] float32
// scratch. Per row a float4 keeps the running state: x = the running max M, y = sum exp(z - M) so far,
// z = the target's logit (NaN until its chunk is seen), w = the argmax so far (int bits).
// Uses blockSum of train_dense.cuh, included before this file.
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

/**
 * Pass 1 over one chunk: one block (a multiple of 32 threads) per counted row, rows grid-strided; ignored rows are
 * skipped (their state is never read). The chunk's max and argmax (exact whatever the order), then its sum of
 * exp(z - chunk max) (blockSum: fixed order), merged into the row's state by thread 0:
 * M' = max(M, m), S' = S exp(M - M') + s exp(m - M'); the argmax moves only on a strictly larger max, so ties keep
 * the lower index of an earlier chunk. c0 == 0 starts the state afresh.
 */
extern "C" __global__ void __launch_bounds__(256)
    crossEntropyChunkStats_f32(const float* logits, const int* targets, float4* stats, int n, int c0, int cw) {
    __shared__ float red[32];
    __shared__ float bestOfWarp[32];
    __shared__ int idxOfWarp[32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    for (i64 row = blockIdx.x; row < n; row += gridDim.x) {
        const int t = targets[row];
        if (t == B4J_IGNORE_INDEX) continue;  // the same for the whole block
        const float* z = logits + row * cw;
        float best = -CUDART_INF_F;
        int bestIdx = 0x7fffffff;
        for (int j = threadIdx.x; j < cw; j += blockDim.x) argmaxMerge(best, bestIdx, z[j], j);
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bestIdx, o);
            argmaxMerge(best, bestIdx, ov, oi);
        }
        if (lane == 0) {
            bestOfWarp[warp] = best;
            idxOfWarp[warp] = bestIdx;
        }
        __syncthreads();
        best = -CUDART_INF_F;
        bestIdx = 0x7fffffff;
        for (int w = 0; w < warps; w++) argmaxMerge(best, bestIdx, bestOfWarp[w], idxOfWarp[w]);
        float s = 0.0f;
        if (best != -CUDART_INF_F) {
            for (int j = threadIdx.x; j < cw; j += blockDim.x) s += expf(z[j] - best);
        }
        s = blockSum(s, red);  // its barriers also keep bestOfWarp until every thread has read it
        if (threadIdx.x == 0) {
            float4 st = c0 == 0 ? make_float4(-CUDART_INF_F, 0.0f, CUDART_NAN_F, __int_as_float(-1)) : stats[row];
            const float m = fmaxf(st.x, best);
            const float kept = st.x == -CUDART_INF_F ? 0.0f : st.y * expf(st.x - m);
            const float added = best == -CUDART_INF_F ? 0.0f : s * expf(best - m);
            if (c0 == 0 || best > st.x) st.w = __int_as_float(c0 + bestIdx);
            st.x = m;
            st.y = kept + added;
            if (t >= c0 && t - c0 < cw) st.z = z[t - c0];
            stats[row] = st;
        }
    }
}

/**
 * Pass 2 over one chunk, one thread per logit (grid-strided): grad = scale * exp(z - M) / S, minus scale at the
 * target (CrossEntropyOps: the logits times scale / sum, then - scale at the target), 0 on ignored rows; written as
 * A for the gradient products (in float32 it may overwrite the logits it reads).
 */
template <typename W, typename A>
__device__ void crossEntropyChunkGrad_impl(const float* logits, const int* targets, const float4* stats, A* grad,
                                           int n, int c0, int cw, float scale) {
    const i64 total = (i64)n * cw;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 row = idx / cw;
        const int j = (int)(idx - row * cw);
        const int t = targets[row];
        float g = 0.0f;
        if (t != B4J_IGNORE_INDEX) {
            const float4 st = stats[row];
            g = expf(logits[idx] - st.x) * (scale / st.y);
            if (c0 + j == t) g -= scale;
        }
        grad[idx] = fromF<A>(g);
    }
}

/**
 * After pass 1, one block of 1024 threads: per counted row loss = (M + log S) - z_t (in double from the float
 * state; NaN for a target outside [0, vocab)), argmax[row] = its argmax (-1 for ignored rows; argmax may be null),
 * and *lossSum += the sum of the losses: per-thread sums over rows strided by the block, then a fixed tree, so the
 * sum is the same on every run.
 */
extern "C" __global__ void __launch_bounds__(1024)
    crossEntropyLoss_f32(const int* targets, const float4* stats, int* argmax, double* lossSum, int n, int vocab) {
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

B4J_KERNEL(crossEntropyChunkGrad, 256,
           (const float* logits, const int* targets, const float4* stats, A* grad, int n, int c0, int cw,
            float scale),
           (logits, targets, stats, grad, n, c0, cw, scale))
