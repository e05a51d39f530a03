// The optimizer step on the device (included by based4j_kernels.cu): the global gradient norm and its clip factor,
// kept in device memory, and AdamW over flat float32 arrays reading that factor, so that a step needs no host
// synchronisation. The semantics are io.based4j.train.AdamW.update and CpuTrainBackend.adamw, in float32; the launch
// shapes and the grouping are described in io.based4j.cuda.TrainKernels.
#pragma once

namespace b4j {

/** The device record of a step's gradient norm (16 bytes; TrainKernels names the offsets). */
struct GradNorm {
    double sumOfSquares;
    /** sqrt(sumOfSquares) rounded to float. */
    float norm;
    /** What the gradients are multiplied by: clip / (norm + 1e-6) when 0 < clip < norm, else 1. */
    float scale;
};

/**
 * The sum over the block of every thread's s, in a fixed order (each warp by shuffles, then the warps in order by
 * thread 0), valid in thread 0; red holds at least one double per warp. Ends with the block's threads past a barrier.
 */
__device__ __forceinline__ double blockSumInOrder(double s, double* red) {
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
    __syncthreads();
    double total = 0.0;
    if (threadIdx.x == 0) {
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) total += red[w];
    }
    return total;
}

/**
 * Sum of squares, part 1: block b writes partial[b] = the sum of g[i]^2 over the elements its threads visit (grid
 * stride), in double. The assignment of elements to threads depends only on count and the grid, so with the grid
 * TrainKernels derives from count the result is the same on every run.
 */
extern "C" __global__ void __launch_bounds__(256)
    sumOfSquaresPartial_f32(const float* g, long long count, double* partial) { b4jPdlWait();
    __shared__ double red[32];
    double s = 0.0;
    for (i64 i = globalThread(); i < count; i += globalStride()) {
        const double v = g[i];
        s += v * v;
    }
    const double total = blockSumInOrder(s, red);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

/**
 * Sum of squares, part 2, one thread: out = {sum of partial[0 .. parts) in order, its square root, and the clip
 * factor of AdamW.update: clip / (norm + 1e-6) (in double, then rounded) when clip > 0 and norm > clip, else 1}.
 */
extern "C" __global__ void __launch_bounds__(32)
    gradNormFinish_f32(const double* partial, int parts, double clip, GradNorm* out) { b4jPdlWait();
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double s = 0.0;
    for (int p = 0; p < parts; p++) s += partial[p];
    const double norm = sqrt(s);
    GradNorm r;
    r.sumOfSquares = s;
    r.norm = (float)norm;
    r.scale = clip > 0.0 && norm > clip ? (float)(clip / (norm + 1e-6)) : 1.0f;
    *out = r;
}

/**
 * AdamW over count elements, one thread per element (grid-strided), as CpuTrainBackend.adamw on gradients scaled
 * as AdamW.update scales them: with g = grad * gn->scale (grad alone when gn is null),
 * m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g g; p = p decay - lr (m / c1) / (sqrt(v / c2) + eps), where
 * the host passes oneMinusBeta1/2 = 1 - beta1/2, decay = 1 - lr wd, c1 = 1 - beta1^step and c2 = 1 - beta2^step
 * (each computed in double, then rounded). The gradients are not modified. When gn's norm is not finite nothing is
 * updated (the host reports it on reading the norm, as the CPU trainer refuses such a step). compute, if not null,
 * receives p rounded to A (the weights the next forward computes with).
 */
template <typename W, typename A>
__device__ void adamw_impl(float* p, const float* grad, float* m, float* v, A* compute, long long count, float lr,
                           float beta1, float oneMinusBeta1, float beta2, float oneMinusBeta2, float eps, float decay,
                           float c1, float c2, const GradNorm* gn) {
    float scale = 1.0f;
    if (gn != nullptr) {
        if (!isfinite(gn->sumOfSquares)) return;
        scale = gn->scale;
    }
    for (i64 i = globalThread(); i < count; i += globalStride()) {
        const float g = gn != nullptr ? grad[i] * scale : grad[i];
        const float mi = beta1 * m[i] + oneMinusBeta1 * g;
        const float vi = beta2 * v[i] + oneMinusBeta2 * g * g;
        const float pi = p[i] * decay - lr * (mi / c1) / (sqrtf(vi / c2) + eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        if (compute != nullptr) compute[i] = fromF<A>(pi);
    }
}

/**
 * One chunk of a parameter for the multi-tensor step (64 bytes; TrainKernels writes the table): count (at most
 * TrainKernels.OPTIMIZER_CHUNK) consecutive values of a parameter's float32 master p, its gradient g, moments m
 * and v, and, if not null, its compute copy (of the kernel's type A); the parameter's weight decay.
 */
struct AdamWChunk {
    float* p;
    float* g;
    float* m;
    float* v;
    void* compute;
    long long count;
    double weightDecay;
    long long reserved;
};

/**
 * The device record of a multi-tensor step (32 bytes; TrainKernels names the offsets): the latest update's norm and
 * clip factor, that update's number, and the first update whose norm was not finite (0: none) with its sum of
 * squares. Once that is set no later update changes anything.
 */
struct StepNorm {
    GradNorm current;
    long long update;
    long long failedUpdate;
};

/**
 * The scalars of an update that change from step to step (24 bytes; TrainKernels.packStepScalars writes them): a
 * recorded step reads them from the device, where the host copies new ones before each replay, instead of taking
 * them as launch arguments. c1 and c2 are the bias corrections (float) 1 - beta^update.
 */
struct StepScalars {
    double lr;
    long long update;
    float c1;
    float c2;
};

/**
 * Sums of squares per chunk: block b takes chunks b, b + gridDim.x, .. and writes partial[c] = the sum of the
 * chunk's g^2 in double (each thread over a fixed stride, then the block's warps in order): deterministic. Where the
 * chunk is 16-byte aligned a thread reads 4 values a load (its quads in order, then the chunk's last count % 4 values
 * one by one), so that enough loads are in flight to keep the memory busy.
 */
extern "C" __global__ void __launch_bounds__(256)
    sumOfSquaresChunks_f32(const AdamWChunk* chunks, int n, double* partial) { b4jPdlWait();
    __shared__ double red[32];
    for (int c = blockIdx.x; c < n; c += gridDim.x) {
        const float* g = chunks[c].g;
        const long long count = chunks[c].count;
        double s = 0.0;
        long long from = 0;
        if ((reinterpret_cast<unsigned long long>(g) & 15) == 0) {
            const float4* g4 = reinterpret_cast<const float4*>(g);
            const long long quads = count >> 2;
#pragma unroll 4
            for (long long i = threadIdx.x; i < quads; i += blockDim.x) {
                const float4 v = g4[i];
                s += (double)v.x * v.x;
                s += (double)v.y * v.y;
                s += (double)v.z * v.z;
                s += (double)v.w * v.w;
            }
            from = quads << 2;
        }
        for (long long i = from + threadIdx.x; i < count; i += blockDim.x) {
            const double v = g[i];
            s += v * v;
        }
        const double total = blockSumInOrder(s, red);
        if (threadIdx.x == 0) partial[c] = total;
        __syncthreads();  // red is written again by the next chunk
    }
}

/**
 * The step's norm from the chunks' partial sums, one block of 1024: thread t sums partial[t], partial[t + 1024], ..
 * in order, then a tree in shared memory (a fixed order: deterministic). Writes the current norm and clip factor as
 * gradNormFinish_f32 does, the update number, and marks the first update whose norm is not finite.
 */
extern "C" __global__ void __launch_bounds__(1024)
    gradNormFinishChunks_f32(const double* partial, int n, double clip, long long update, const StepScalars* live,
                             StepNorm* out) { b4jPdlWait();
    if (live != nullptr) update = live->update;
    __shared__ double red[1024];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    red[threadIdx.x] = s;
    __syncthreads();
    for (int w = blockDim.x >> 1; w > 0; w >>= 1) {
        if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        const double total = red[0];
        const double norm = sqrt(total);
        out->current.sumOfSquares = total;
        out->current.norm = (float)norm;
        out->current.scale = clip > 0.0 && norm > clip ? (float)(clip / (norm + 1e-6)) : 1.0f;
        out->update = update;
        if (!isfinite(total) && out->failedUpdate == 0) out->failedUpdate = update;
    }
}

/**
 * AdamW over every chunk (block b takes chunks b, b + gridDim.x, ..), the update of adamw_impl with the clip factor
 * of the record and each chunk's decay = (float) (1 - lr wd) computed in double from lrDouble; nothing when the
 * record marks a failed update. With live (a recorded step) lr, lrDouble, c1 and c2 come from there.
 */
template <typename W, typename A>
__device__ void adamwChunks_impl(const AdamWChunk* chunks, int n, float lr, float beta1, float oneMinusBeta1,
                                 float beta2, float oneMinusBeta2, float eps, double lrDouble, float c1, float c2,
                                 const StepNorm* record, const StepScalars* live) {
    if (record->failedUpdate != 0) return;
    if (live != nullptr) {
        lrDouble = live->lr;
        lr = (float)lrDouble;
        c1 = live->c1;
        c2 = live->c2;
    }
    const float scale = record->current.scale;
    for (int c = blockIdx.x; c < n; c += gridDim.x) {
        const AdamWChunk ch = chunks[c];
        const float decay = (float)(1.0 - lrDouble * ch.weightDecay);
        A* compute = (A*)ch.compute;
        for (long long i = threadIdx.x; i < ch.count; i += blockDim.x) {
            const float g = ch.g[i] * scale;
            const float mi = beta1 * ch.m[i] + oneMinusBeta1 * g;
            const float vi = beta2 * ch.v[i] + oneMinusBeta2 * g * g;
            const float pi = ch.p[i] * decay - lr * (mi / c1) / (sqrtf(vi / c2) + eps);
            ch.m[i] = mi;
            ch.v[i] = vi;
            ch.p[i] = pi;
            if (compute != nullptr) compute[i] = fromF<A>(pi);
        }
    }
}

}  // namespace b4j

B4J_KERNEL(adamwChunks, 256,
           (const b4j::AdamWChunk* chunks, int n, float lr, float beta1, float oneMinusBeta1, float beta2,
            float oneMinusBeta2, float eps, double lrDouble, float c1, float c2, const b4j::StepNorm* record,
            const b4j::StepScalars* live),
           (chunks, n, lr, beta1, oneMinusBeta1, beta2, oneMinusBeta2, eps, lrDouble, c1, c2, record, live))
B4J_KERNEL(adamw, 256,
           (float* p, const float* grad, float* m, float* v, A* compute, long long count, float lr, float beta1,
            float oneMinusBeta1, float beta2, float oneMinusBeta2, float eps, float decay, float c1, float c2,
            const b4j::GradNorm* gn),
           (p, grad, m, v, compute, count, lr, beta1, oneMinusBeta1, beta2, oneMinusBeta2, eps, decay, c1, c2, gn))
