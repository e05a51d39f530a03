// Backward kernels of the dense training ops (included by based4j_kernels.cu): embedding, RMSNorm, SwiGLU. Each
// computes in float32 what io.based4j.train.cpu.DenseOps computes in float64, with the same formulas in the same
// order. Gradients are float32 and ADDED into (+=), so branches and micro-batches accumulate; saved activations are
// of type A. The launch shapes are described in io.based4j.cuda.TrainKernels, which launches them.
#pragma once

namespace b4j {

/**
 * Sum over a block whose size is a multiple of 32; every thread gets the same value (warp butterflies, then the warp
 * totals in warp order: deterministic). partial: 32 floats of shared memory; all threads must call it.
 */
__device__ __forceinline__ float blockSum(float v, float* partial) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    v = warpSum(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < warps; w++) total += partial[w];
    __syncthreads();  // partial may be written again by the next call
    return total;
}

// ------------------------------------------------------------------------------------------------ embedding

/**
 * dtable[ids[i], j] += dout[i, j] with one atomicAdd per element, one thread per element (grid-strided). Rows of
 * repeated ids are summed in whatever order the additions land: not bit-reproducible.
 */
extern "C" __global__ void __launch_bounds__(256)
    embeddingBackwardAtomic_f32(const int* ids, const float* dout, float* dtable, int n, int d) {
    const i64 total = (i64)n * d;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 i = idx / d;
        const i64 j = idx - i * d;
        atomicAdd(dtable + (i64)ids[i] * d + j, dout[idx]);
    }
}

/**
 * The deterministic form, as DenseOps.embeddingBackward: groups = starts[G + 1] | positions[n], the positions of
 * each distinct id in increasing order (TrainKernels.embeddingGroups makes it on the host). One block per group
 * (grid-strided), threads over the columns; a group's positions are summed in order from zero and the sum is added
 * to the id's row, which no other group touches. No atomics.
 */
extern "C" __global__ void __launch_bounds__(256)
    embeddingBackwardGrouped_f32(const int* ids, const int* groups, int G, const float* dout, float* dtable, int d) {
    const int* starts = groups;
    const int* positions = groups + G + 1;
    for (int g = blockIdx.x; g < G; g += gridDim.x) {
        const int from = starts[g];
        const int to = starts[g + 1];
        float* row = dtable + (i64)ids[positions[from]] * d;
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            float s = 0.0f;
            for (int p = from; p < to; p++) s += dout[(i64)positions[p] * d + j];
            row[j] += s;
        }
    }
}

// ------------------------------------------------------------------------------------------------ RMSNorm

/** rmsNorm that also writes r = rstd (float [n]) for the backward. */
template <typename W, typename A>
__device__ void rmsNormRstd_impl(const float* x, const W* weight, A* out, float* rstd, int n, int d, float eps) {
    rmsNorm_impl<W, A>(x, weight, out, n, d, eps, rstd);
}

/**
 * RMSNorm backward, part 1 (DenseOps.rmsNormBackward): block b owns rows [b R, min(n, (b + 1) R)). Per row, with
 * g = dout, dot = sum_l (g_l w_l) x_l (block sum), c = (r r) dot / d: dx_j += r (g_j w_j - x_j c) (dx may be null).
 * Then each thread sums (g_ij x_ij) r_i over the block's rows, in order, for its columns j into
 * partial[b * d + j]; rmsNormWeightGrad adds those partial rows into dw.
 */
template <typename W, typename A>
__device__ void rmsNormBackward_impl(const float* x, const W* weight, const float* rstd, const float* dout, float* dx,
                                     float* partial, int n, int d, int rowsPerBlock) {
    __shared__ float red[32];
    const i64 first = (i64)blockIdx.x * rowsPerBlock;
    const i64 last = first + rowsPerBlock < n ? first + rowsPerBlock : n;
    if (dx != nullptr) {
        for (i64 row = first; row < last; row++) {
            const float* xr = x + row * d;
            const float* gr = dout + row * d;
            const float r = rstd[row];
            float dot = 0.0f;
            for (int j = threadIdx.x; j < d; j += blockDim.x) dot += gr[j] * toF(weight[j]) * xr[j];
            dot = blockSum(dot, red);
            const float c = r * r * dot / (float)d;
            float* dxr = dx + row * d;
            for (int j = threadIdx.x; j < d; j += blockDim.x) dxr[j] += r * (gr[j] * toF(weight[j]) - xr[j] * c);
        }
    }
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        float s = 0.0f;
        for (i64 row = first; row < last; row++) s += dout[row * d + j] * x[row * d + j] * rstd[row];
        partial[(i64)blockIdx.x * d + j] = s;
    }
}

/** RMSNorm backward, part 2: dw[j] += sum over p < parts of partial[p * d + j], in order; one thread per column. */
extern "C" __global__ void __launch_bounds__(256)
    rmsNormWeightGrad_f32(const float* partial, float* dw, int parts, int d) {
    for (i64 j = globalThread(); j < d; j += globalStride()) {
        float s = 0.0f;
        for (int p = 0; p < parts; p++) s += partial[(i64)p * d + j];
        dw[j] += s;
    }
}

// ------------------------------------------------------------------------------------------------ column sums

/**
 * Partial column sums of x [n, m] (a bias gradient, colsum(dout)): block (bx, p) sums columns bx*256 .. of rows
 * [p R, (p + 1) R) in row order into partial[p * m + j]; rmsNormWeightGrad then adds the parts, in part order, into
 * the float32 gradient. Deterministic, no atomics; reads of a row are coalesced across the block.
 */
template <typename W, typename A>
__device__ void columnSumPartial_impl(const A* x, float* partial, int n, int m, int rowsPerPart) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= m) return;
    const i64 first = (i64)blockIdx.y * rowsPerPart;
    const i64 last = first + rowsPerPart < n ? first + rowsPerPart : n;
    float s = 0.0f;
    for (i64 row = first; row < last; row++) s += toF(x[row * m + j]);
    partial[(i64)blockIdx.y * m + j] = s;
}

// ------------------------------------------------------------------------------------------------ SwiGLU

/**
 * SwiGLU backward (DenseOps.swigluBackward), one thread per output element: with value y = a[:, j], gate
 * g = a[:, h + j], s = sigmoid(g) recomputed, go = dout: da[:, j] += go g s, da[:, h + j] += go y s (1 + g (1 - s)).
 */
template <typename W, typename A>
__device__ void swigluBackward_impl(const A* a, const float* dout, float* da, int n, int h) {
    const i64 total = (i64)n * h;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 r = idx / h;
        const i64 j = idx - r * h;
        const i64 value = r * 2 * h + j;
        const float y = toF(a[value]);
        const float g = toF(a[value + h]);
        const float s = 1.0f / (1.0f + expf(-g));
        const float go = dout[idx];
        da[value] += go * g * s;
        da[value + h] += go * y * s * (1.0f + g * (1.0f - s));
    }
}

}  // namespace b4j

B4J_KERNEL(rmsNormRstd, 1024, (const float* x, const W* weight, A* out, float* rstd, int n, int d, float eps),
           (x, weight, out, rstd, n, d, eps))
B4J_KERNEL(rmsNormBackward, 256,
           (const float* x, const W* weight, const float* rstd, const float* dout, float* dx, float* partial, int n,
            int d, int rowsPerBlock),
           (x, weight, rstd, dout, dx, partial, n, d, rowsPerBlock))
B4J_KERNEL(columnSumPartial, 256, (const A* x, float* partial, int n, int m, int rowsPerPart),
           (x, partial, n, m, rowsPerPart))
B4J_KERNEL(swigluBackward, 256, (const A* a, const float* dout, float* da, int n, int h), (a, dout, da, n, h))
