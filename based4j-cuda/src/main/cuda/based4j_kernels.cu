// CUDA kernels of based4j: the simple, obviously-correct versions of every operation the CUDA backend needs besides
// the matrix products (cuBLAS). Each one computes the same function as the CPU backend (io.based4j.backend.cpu);
// the launch shapes, limits and the state layouts are described in io.based4j.cuda.Kernels, which launches them.
//
// Every kernel exists twice, with suffix _f32 (weights W and activations A in float) and _bf16 (both in
// __nv_bfloat16). Sums are taken in float32; the residual stream, logits and all recurrent state are float32.
// Indices that can pass 2^31 (element counts, row * stride) are 64-bit.

#include <cuda_bf16.h>
#include <math_constants.h>
#include <stdint.h>

/**
 * The first statement of every kernel (gemv version 3 excepted, which may load its weights before it where the
 * launcher says no kernel before it writes them): with programmatic dependent launch (sm_90 on, the launch attribute
 * set by io.based4j.cuda.Kernels where asked for), a kernel may start while the one before it on the stream
 * finishes; this waits until that one has completed and its memory is visible, before the kernel reads or writes
 * any. It then lets
 * the kernel after it be launched as soon as every block of this one has got here (that kernel waits in turn for
 * this one to complete), so that its launch and its blocks' start overlap this kernel's work. No-ops for a kernel
 * launched the usual way, and on older GPUs.
 */
__device__ __forceinline__ void b4jPdlWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

namespace b4j {

typedef long long i64;
typedef unsigned long long u64;

__device__ __forceinline__ float toF(float x) { return x; }
__device__ __forceinline__ float toF(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T fromF(float x);
template <> __device__ __forceinline__ float fromF<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 fromF<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

/** Views of the packed batch description: slots | starts | lengths | offsets (B + 1) | tokSeq (T). */
struct Layout {
    const int* slots;
    const int* starts;
    const int* lengths;
    const int* offsets;
    const int* tokSeq;
};

__device__ __forceinline__ Layout layoutOf(const int* layout, int B) {
    Layout l;
    l.slots = layout;
    l.starts = layout + B;
    l.lengths = layout + 2 * B;
    l.offsets = layout + 3 * B;
    l.tokSeq = layout + 4 * B + 1;
    return l;
}

__device__ __forceinline__ i64 globalThread() { return (i64)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ i64 globalStride() { return (i64)gridDim.x * blockDim.x; }

/** Sum over a warp; every lane gets the same value (a fixed butterfly, so the result is deterministic). */
__device__ __forceinline__ float warpSum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/** silu(x) = x / (1 + exp(-x)), as HeapBackend.silu. */
__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// ------------------------------------------------------------------------------------------------ dense ops

template <typename W, typename A>
__device__ void embedding_impl(const W* table, const int* ids, float* out, int n, int d) {
    const i64 total = (i64)n * d;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 i = idx / d;
        const i64 j = idx - i * d;
        out[idx] = toF(table[(i64)ids[i] * d + j]);
    }
}

/** Values of a row a thread of rmsNormRowsOf keeps in registers where the row is narrow enough (d <= 8 blockDim.x). */
#define RMS_KEEP 8

/**
 * RMSNorm's scale of a row whose sum of squares is spread over the block's threads (ss each): the lanes' sums as a
 * butterfly, the warps' in order (every thread gets the same value), then r = 1 / sqrt(mean + eps) as the CPU makes it
 * ((float) (1.0 / Math.sqrt(ss / n + eps)), the mean and + eps in float). partial holds a float a warp; the caller
 * syncs the block before partial is written again.
 */
__device__ __forceinline__ float blockRmsScale(float ss, float* partial, int d, float eps) {
    ss = warpSum(ss);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) total += partial[w];
    return (float)(1.0 / sqrt((double)(total / (float)d + eps)));
}

/**
 * out = x * rsqrt(mean(x^2) + eps) * weight row by row, after x += branch where branch is not null (x then written,
 * each thread reading back only the sums it wrote). One block (blockDim.x a multiple of 32, <= 1024) per row; rows
 * grid-strided. rstd (float [n]), if given, gets r. Thread t takes the values t, t + blockDim.x, ... of a row, in that
 * order; a row of at most RMS_KEEP values a thread is read whole (x, branch and weight, all loads in flight together)
 * into registers before anything is written, wider rows value by value: the same numbers either way.
 */
template <typename W, typename A>
__device__ void rmsNormRowsOf(float* x, const A* branch, const W* weight, A* out, int n, int d, float eps,
                              float* rstd) {
    __shared__ float partial[32];
    const bool kept = d <= RMS_KEEP * (int)blockDim.x;
    for (i64 row = blockIdx.x; row < n; row += gridDim.x) {
        float* xr = x + row * d;
        float ss = 0.0f;
        float v[RMS_KEEP];
        float wt[RMS_KEEP];
        if (kept) {
#pragma unroll
            for (int i = 0; i < RMS_KEEP; i++) {
                const int j = threadIdx.x + i * blockDim.x;
                v[i] = 0.0f;
                wt[i] = 0.0f;
                if (j < d) {
                    v[i] = branch != nullptr ? xr[j] + toF(branch[row * d + j]) : xr[j];
                    wt[i] = toF(weight[j]);
                }
            }
#pragma unroll
            for (int i = 0; i < RMS_KEEP; i++) {
                const int j = threadIdx.x + i * blockDim.x;
                if (j < d) {
                    if (branch != nullptr) xr[j] = v[i];
                    ss += v[i] * v[i];
                }
            }
        } else if (branch != nullptr) {
            const A* br = branch + row * d;
            for (int j = threadIdx.x; j < d; j += blockDim.x) {
                const float s = xr[j] + toF(br[j]);
                xr[j] = s;  // read back below by this thread only
                ss += s * s;
            }
        } else {
            for (int j = threadIdx.x; j < d; j += blockDim.x) ss += xr[j] * xr[j];
        }
        const float r = blockRmsScale(ss, partial, d, eps);
        if (rstd != nullptr && threadIdx.x == 0) rstd[row] = r;
        A* o = out + row * d;
        if (kept) {
#pragma unroll
            for (int i = 0; i < RMS_KEEP; i++) {
                const int j = threadIdx.x + i * blockDim.x;
                if (j < d) o[j] = fromF<A>(v[i] * r * wt[i]);
            }
        } else {
            for (int j = threadIdx.x; j < d; j += blockDim.x) o[j] = fromF<A>(xr[j] * r * toF(weight[j]));
        }
        __syncthreads();  // partial is reused by the next row
    }
}

/** RMSNorm rows: rmsNormRowsOf without a branch. */
template <typename W, typename A>
__device__ void rmsNorm_impl(const float* x, const W* weight, A* out, int n, int d, float eps,
                             float* rstd = nullptr) {
    rmsNormRowsOf<W, A>(const_cast<float*>(x), nullptr, weight, out, n, d, eps, rstd);  // x is only read
}

/**
 * residual += branch, then out = rmsNorm of the new residual: addInto's sums and rmsNorm_impl's numbers in one pass
 * over the row (the end of a residual branch and the next norm of a decode step). One block per row, rows
 * grid-strided; each thread reads back only the sums it wrote.
 */
template <typename W, typename A>
__device__ void addRmsNorm_impl(float* residual, const A* branch, const W* weight, A* out, int n, int d, float eps) {
    rmsNormRowsOf<W, A>(residual, branch, weight, out, n, d, eps, nullptr);
}

template <typename W, typename A>
__device__ void addInto_impl(float* acc, const A* x, i64 count) {
    for (i64 i = globalThread(); i < count; i += globalStride()) acc[i] += toF(x[i]);
}

template <typename W, typename A>
__device__ void addBias_impl(A* out, const W* bias, int n, int m) {
    const i64 total = (i64)n * m;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const int j = (int)(idx % m);
        out[idx] = fromF<A>(toF(out[idx]) + toF(bias[j]));
    }
}

/** out = a[:, :h] * silu(a[:, h:]): the first half is the value, the second the gate. */
template <typename W, typename A>
__device__ void swiglu_impl(const A* a, A* out, int n, int h) {
    const i64 total = (i64)n * h;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 r = idx / h;
        const i64 j = idx - r * h;
        const float value = toF(a[r * 2 * h + j]);
        const float gate = toF(a[r * 2 * h + h + j]);
        out[idx] = fromF<A>(value * silu(gate));
    }
}

template <typename W, typename A>
__device__ void gatherRows_impl(const A* x, const int* rows, A* out, int n, int cols) {
    const i64 total = (i64)n * cols;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 i = idx / cols;
        const i64 j = idx - i * cols;
        out[idx] = x[(i64)rows[i] * cols + j];
    }
}

template <typename W, typename A>
__device__ void f32ToA_impl(const float* src, A* dst, i64 count) {
    for (i64 i = globalThread(); i < count; i += globalStride()) dst[i] = fromF<A>(src[i]);
}

template <typename W, typename A>
__device__ void aToF32_impl(const A* src, float* dst, i64 count) {
    for (i64 i = globalThread(); i < count; i += globalStride()) dst[i] = toF(src[i]);
}

// ------------------------------------------------------------------------------------------------ BaseConv

/**
 * One thread per (token row, channel). The channel's input sequence is its k-1 remembered values (hist, oldest
 * first) followed by this call's u1 values; tap j multiplies element t + j of it, so tap k-1 meets the current token
 * (c_t = w0 u1_{t-k+1} + ... + w_{k-1} u1_t). out = silu(c) * u2. Reads hist only. The history holds past u1 values,
 * so it is kept in u's type A (bf16: half the bytes of float32, no value changed).
 */
template <typename W, typename A>
__device__ void baseConv_impl(const A* u, const W* convW, const A* hist, const int* layout, A* out, int T,
                              int B, int inner, int k) {
    const Layout L = layoutOf(layout, B);
    const i64 total = (i64)T * inner;
    const int taps = k - 1;
    const i64 width = 2 * (i64)inner;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 row = idx / inner;
        const int c = (int)(idx - row * inner);
        const int seq = L.tokSeq[row];
        const int t = (int)(row - L.offsets[seq]);
        const A* h = hist + (i64)L.slots[seq] * taps * inner;
        float acc = 0.0f;
        for (int j = 0; j < k; j++) {
            const int s = t + j;  // index in [remembered | this call]
            const float xv = toF(s < taps ? h[(i64)s * inner + c] : u[(row + j - taps) * width + c]);
            acc = fmaf(toF(convW[(i64)c * k + j]), xv, acc);
        }
        const float gate = toF(u[row * width + inner + c]);
        out[idx] = fromF<A>(gate * silu(acc));
    }
}

/**
 * One thread per (sequence, channel): hist of the sequence's slot becomes the last k-1 values of
 * [old hist | this call's u1]. Taps are written in increasing order and tap j reads element len + j > j, which is
 * written later by the same thread, so the update is in place without a race.
 */
template <typename W, typename A>
__device__ void baseConvState_impl(const A* u, A* hist, const int* layout, int T, int B, int inner, int k) {
    const Layout L = layoutOf(layout, B);
    const i64 total = (i64)B * inner;
    const int taps = k - 1;
    const i64 width = 2 * (i64)inner;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const int seq = (int)(idx / inner);
        const int c = (int)(idx - (i64)seq * inner);
        const int len = L.lengths[seq];
        const i64 off = L.offsets[seq];
        A* h = hist + (i64)L.slots[seq] * taps * inner;
        for (int j = 0; j < taps; j++) {
            const int s = len + j;
            h[(i64)j * inner + c] = s < taps ? h[(i64)s * inner + c] : u[(off + s - taps) * width + c];
        }
    }
}

/**
 * A decode step of BaseConv (every sequence one token): baseConv and then baseConvState in one pass, one thread per
 * (sequence, channel). The channel's k values [hist | the token's u1] are read once; the output is made as baseConv
 * makes it (the same fmaf order: bit for bit) and the history shifted as baseConvState shifts it (tap j - 1 takes
 * value j once value j is read, so in place without a race).
 */
template <typename W, typename A>
__device__ void baseConvStep_impl(const A* u, const W* convW, A* hist, const int* layout, A* out, int B,
                                  int inner, int k) {
    const Layout L = layoutOf(layout, B);
    const i64 total = (i64)B * inner;
    const int taps = k - 1;
    const i64 width = 2 * (i64)inner;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const int seq = (int)(idx / inner);
        const int c = (int)(idx - (i64)seq * inner);
        const i64 row = L.offsets[seq];
        A* h = hist + (i64)L.slots[seq] * taps * inner;
        const A current = u[row * width + c];
        float acc = 0.0f;
        for (int j = 0; j < k; j++) {
            const A xv = j < taps ? h[(i64)j * inner + c] : current;
            acc = fmaf(toF(convW[(i64)c * k + j]), toF(xv), acc);
            if (j > 0) h[(i64)(j - 1) * inner + c] = xv;
        }
        const float gate = toF(u[row * width + inner + c]);
        out[row * inner + c] = fromF<A>(gate * silu(acc));
    }
}

// ------------------------------------------------------------------------------------------------ linear attention

/** 1 + f + f(f+1)/2: the merged Taylor feature width. */
__device__ __forceinline__ int expandedDim(int f) { return 1 + f + f * (f + 1) / 2; }

/**
 * The merged Taylor feature map of LinearAttentionKernel.featurize, written by the threads of a block (x in shared
 * memory, phi to shared memory): [1, x_i * f^-1/4, then row by row i <= j: x_i x_i / sqrt(2f), x_i x_j / sqrt(f)].
 * Products are rounded as the CPU rounds them ((x_i * x_j) * c).
 */
struct Taylor {
    float lin, diag, cross;
};

/** The constants as the CPU makes them: (float) Math.pow(f, -0.25), (float) (1 / sqrt(2f)), (float) (1 / sqrt(f)). */
__device__ __forceinline__ Taylor taylorOf(int f) {
    Taylor c;
    c.lin = (float)pow((double)f, -0.25);
    c.diag = (float)(1.0 / sqrt(2.0 * f));
    c.cross = (float)(1.0 / sqrt((double)f));
    return c;
}

/** The features of x that component i gives: x_i's linear one and row i of the products (and phi[0] for i = 0). */
__device__ __forceinline__ void featurizeComponent(const float* x, int f, Taylor tc, float* phi, int i) {
    const float xi = x[i];
    if (i == 0) phi[0] = 1.0f;
    phi[1 + i] = __fmul_rn(xi, tc.lin);
    float* rowp = phi + 1 + f + i * f - i * (i - 1) / 2;  // rows 0..i-1 hold f, f-1, .., f-i+1 entries
    rowp[0] = __fmul_rn(__fmul_rn(xi, xi), tc.diag);
    for (int j = i + 1; j < f; j++) rowp[j - i] = __fmul_rn(__fmul_rn(xi, x[j]), tc.cross);
}

__device__ __forceinline__ void featurize(const float* x, int f, Taylor tc, float* phi) {
    for (int i = threadIdx.x; i < f; i += blockDim.x) featurizeComponent(x, f, tc, phi, i);
}

/**
 * Columns [e0, e0 + cols) of a state S ([E][dh] at Sg) into the shared tile S [E][dt], zeros past cols; the block's
 * threads share the work.
 */
__device__ __forceinline__ void loadStateTile(const float* Sg, float* S, int E, int dh, int dt, int e0, int cols) {
    for (int idx = threadIdx.x; idx < E * dt; idx += blockDim.x) {
        const int a = idx / dt;
        const int c = idx - a * dt;
        S[idx] = c < cols ? Sg[(i64)a * dh + e0 + c] : 0.0f;
    }
}

/** The tile back: S [E][dt]'s first cols columns into columns [e0, e0 + cols) of the state at Sg. */
__device__ __forceinline__ void storeStateTile(float* Sg, const float* S, int E, int dh, int dt, int e0, int cols) {
    for (int idx = threadIdx.x; idx < E * dt; idx += blockDim.x) {
        const int a = idx / dt;
        const int c = idx - a * dt;
        if (c < cols) Sg[(i64)a * dh + e0 + c] = S[idx];
    }
}

/** Dynamic shared memory (floats) of linearAttention for column tile width dt. */
__host__ __device__ __forceinline__ int linearSmemFloats(int f, int dt, int threads) {
    const int e = 1 + f + f * (f + 1) / 2;
    return e * dt + 3 * e + dt + 2 * f + threads;
}

/**
 * Recurrent Taylor linear attention. Grid (B, H, ceil(dh / dt)), block 256 threads (a multiple of dt; dt in
 * {8, 16, 32}). The block owns columns [e0, e0 + dt) of S = sum phi(k) v^T of its (sequence slot, head), kept in
 * shared memory for the whole sequence; z = sum phi(k) is copied into shared memory and updated there identically
 * by every column block but never written back (linearAttentionZ does that afterwards, so no block can read a z
 * that another block already advanced). Per token, in order: S += phi(k) v^T, z += phi(k), then
 * y = phi(q).S / (phi(q).z + eps) (the current token included). Thread (g, e) owns column e and the features
 * a = g, g + G, ... (G = 256 / dt); its partial numerators are summed over g in a fixed order.
 */
template <typename W, typename A>
__device__ void linearAttention_impl(const A* q, const A* k, const A* v, float* kvState, const float* kState,
                                     const int* layout, A* out, int T, int B, int H, int f, int dh, float eps,
                                     int dt) {
    extern __shared__ float smem[];
    const Layout L = layoutOf(layout, B);
    const int seq = blockIdx.x;
    const int head = blockIdx.y;
    const int e0 = blockIdx.z * dt;
    const int cols = min(dt, dh - e0);
    const int E = expandedDim(f);
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const int G = nt / dt;
    const int e = tid % dt;
    const int g = tid / dt;
    const Taylor tc = taylorOf(f);

    float* S = smem;             // [E][dt]
    float* z = S + E * dt;       // [E]
    float* pk = z + E;           // [E]
    float* pq = pk + E;          // [E]
    float* vs = pq + E;          // [dt]
    float* xk = vs + dt;         // [f]
    float* xq = xk + f;          // [f]
    float* red = xq + f;         // [nt]

    const i64 slot = L.slots[seq];
    const int len = L.lengths[seq];
    const i64 off = L.offsets[seq];
    float* Sg = kvState + (slot * H + head) * (i64)E * dh;
    const float* zg = kState + (slot * H + head) * (i64)E;
    const i64 qkCols = (i64)H * f;
    const i64 vCols = (i64)H * dh;

    loadStateTile(Sg, S, E, dh, dt, e0, cols);
    for (int a = tid; a < E; a += nt) z[a] = zg[a];
    __syncthreads();

    for (int t = 0; t < len; t++) {
        const i64 row = off + t;
        for (int i = tid; i < f; i += nt) {
            xk[i] = toF(k[row * qkCols + (i64)head * f + i]);
            xq[i] = toF(q[row * qkCols + (i64)head * f + i]);
        }
        for (int c = tid; c < dt; c += nt) vs[c] = c < cols ? toF(v[row * vCols + (i64)head * dh + e0 + c]) : 0.0f;
        __syncthreads();
        featurize(xk, f, tc, pk);
        featurize(xq, f, tc, pq);
        __syncthreads();
        for (int a = tid; a < E; a += nt) z[a] += pk[a];
        float num = 0.0f;
        for (int a = g; a < E; a += G) {
            const float s = S[a * dt + e] + pk[a] * vs[e];
            S[a * dt + e] = s;
            num += pq[a] * s;
        }
        red[tid] = num;  // red[g * dt + e]
        __syncthreads();
        if (tid < 32) {  // dt <= 32: warp 0 holds every column
            float den = 0.0f;
            for (int a = tid; a < E; a += 32) den += pq[a] * z[a];
            den = warpSum(den);
            if (tid < cols) {
                float acc = 0.0f;
                for (int gg = 0; gg < G; gg++) acc += red[gg * dt + tid];
                const float inv = 1.0f / (den + eps);
                out[row * vCols + (i64)head * dh + e0 + tid] = fromF<A>(acc * inv);
            }
        }
        __syncthreads();  // pq, z, red and the inputs are rewritten by the next token
    }

    storeStateTile(Sg, S, E, dh, dt, e0, cols);
}

/**
 * z += phi(k_t) for every token of the sequence, in order (the same float additions linearAttention makes on its
 * copy). Grid (B, H), block 256, dynamic shared memory (2E + f) floats. Launched after linearAttention.
 */
template <typename W, typename A>
__device__ void linearAttentionZ_impl(const A* k, float* kState, const int* layout, int T, int B, int H, int f) {
    extern __shared__ float smem[];
    const Layout L = layoutOf(layout, B);
    const int seq = blockIdx.x;
    const int head = blockIdx.y;
    const int E = expandedDim(f);
    const Taylor tc = taylorOf(f);
    float* z = smem;
    float* pk = z + E;
    float* xk = pk + E;
    const i64 slot = L.slots[seq];
    const int len = L.lengths[seq];
    const i64 off = L.offsets[seq];
    float* zg = kState + (slot * H + head) * (i64)E;
    const i64 qkCols = (i64)H * f;
    for (int a = threadIdx.x; a < E; a += blockDim.x) z[a] = zg[a];
    for (int t = 0; t < len; t++) {
        for (int i = threadIdx.x; i < f; i += blockDim.x) xk[i] = toF(k[(off + t) * qkCols + (i64)head * f + i]);
        __syncthreads();
        featurize(xk, f, tc, pk);
        __syncthreads();
        for (int a = threadIdx.x; a < E; a += blockDim.x) z[a] += pk[a];
        __syncthreads();
    }
    for (int a = threadIdx.x; a < E; a += blockDim.x) zg[a] = z[a];
}

/**
 * The state after a call's tokens without the outputs (a prompt whose outputs the chunked kernels of training make):
 * S += phi(k_t) v_t^T and, in the blocks of the first column tile, z += phi(k_t), token after token, the same float
 * operations in the same order as linearAttention and linearAttentionZ make them, so the state is theirs bit for
 * bit. Grid (B, H, ceil(dh / dt)), block 256 (a multiple of dt); dynamic shared memory
 * E dt + E + C (f + dt + E) floats: S's column tile, z, and a chunk of C tokens' keys, values and features, read and
 * featurized together (one barrier a chunk where the recurrent kernels take three a token).
 */
template <typename W, typename A>
__device__ void linearAttentionState_impl(const A* k, const A* v, float* kvState, float* kState, const int* layout,
                                          int T, int B, int H, int f, int dh, int dt, int C) {
    extern __shared__ float smem[];
    const Layout L = layoutOf(layout, B);
    const int seq = blockIdx.x;
    const int head = blockIdx.y;
    const int e0 = blockIdx.z * dt;
    const int cols = min(dt, dh - e0);
    const int E = expandedDim(f);
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const int G = nt / dt;
    const int e = tid % dt;
    const int g = tid / dt;
    const bool withZ = blockIdx.z == 0;
    const Taylor tc = taylorOf(f);
    float* S = smem;          // [E][dt]
    float* z = S + E * dt;    // [E]
    float* xk = z + E;        // [C][f]
    float* vs = xk + C * f;   // [C][dt]
    float* pk = vs + C * dt;  // [C][E]

    const i64 slot = L.slots[seq];
    const int len = L.lengths[seq];
    const i64 off = L.offsets[seq];
    float* Sg = kvState + (slot * H + head) * (i64)E * dh;
    float* zg = kState + (slot * H + head) * (i64)E;
    const i64 qkCols = (i64)H * f;
    const i64 vCols = (i64)H * dh;
    loadStateTile(Sg, S, E, dh, dt, e0, cols);
    if (withZ) {
        for (int a = tid; a < E; a += nt) z[a] = zg[a];
    }
    for (int t0 = 0; t0 < len; t0 += C) {
        const int n = min(C, len - t0);
        for (int idx = tid; idx < n * f; idx += nt) {
            const int c = idx / f;
            xk[idx] = toF(k[(off + t0 + c) * qkCols + (i64)head * f + (idx - c * f)]);
        }
        for (int idx = tid; idx < n * dt; idx += nt) {
            const int c = idx / dt;
            const int col = idx - c * dt;
            vs[idx] = col < cols ? toF(v[(off + t0 + c) * vCols + (i64)head * dh + e0 + col]) : 0.0f;
        }
        __syncthreads();
        // features of the chunk's tokens: thread (c, i) writes phi_c[1 + i] and row i of the products
        for (int idx = tid; idx < n * f; idx += nt) {
            const int c = idx / f;
            const int i = idx - c * f;
            const float* x = xk + c * f;
            float* phi = pk + c * E;
            const float xi = x[i];
            if (i == 0) phi[0] = 1.0f;
            phi[1 + i] = __fmul_rn(xi, tc.lin);
            float* rowp = phi + 1 + f + i * f - i * (i - 1) / 2;
            rowp[0] = __fmul_rn(__fmul_rn(xi, xi), tc.diag);
            for (int j = i + 1; j < f; j++) rowp[j - i] = __fmul_rn(__fmul_rn(xi, x[j]), tc.cross);
        }
        __syncthreads();
        for (int a = g; a < E; a += G) {
            float acc = S[a * dt + e];
            for (int c = 0; c < n; c++) acc = acc + pk[c * E + a] * vs[c * dt + e];
            S[a * dt + e] = acc;
        }
        if (withZ) {
            for (int a = tid; a < E; a += nt) {
                float acc = z[a];
                for (int c = 0; c < n; c++) acc += pk[c * E + a];
                z[a] = acc;
            }
        }
        __syncthreads();  // the chunk's inputs and features are rewritten by the next one
    }
    storeStateTile(Sg, S, E, dh, dt, e0, cols);
    if (withZ) {
        for (int a = tid; a < E; a += nt) zg[a] = z[a];
    }
}

// ------------------------------------------------------------------------------------------------ softmax attention

/** Elements per lane of a head vector: dh <= 32 * ATTN_MAXR. */
#define ATTN_MAXR 8
#define ATTN_THREADS 128

/**
 * Element e of a head vector x (dh wide, at position pos) after the rotary rotation of RotaryTable.rotate: only the
 * first rd dims turn, in pairs (p, p + rd/2) ("rotate half") or (2p, 2p + 1) (interleaved), by the angle
 * pos * invFreq[p]: x1' = x1 c - x2 s, x2' = x2 c + x1 s (rounded as the CPU rounds: no fused multiply-add).
 */
template <typename A>
__device__ __forceinline__ float rotated(const A* x, int e, int pos, const float* rotary, int rd, int maxPos,
                                         int interleaved) {
    if (e >= rd) return toF(x[e]);
    const int half = rd >> 1;
    int p, i1, i2;
    if (interleaved) {
        p = e >> 1;
        i1 = 2 * p;
        i2 = i1 + 1;
    } else {
        p = e < half ? e : e - half;
        i1 = p;
        i2 = p + half;
    }
    const float c = rotary[(i64)pos * half + p];
    const float s = rotary[(i64)maxPos * half + (i64)pos * half + p];
    const float x1 = toF(x[i1]);
    const float x2 = toF(x[i2]);
    return e == i1 ? __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s)) : __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
}

/**
 * Causal softmax attention with rotary positions. Grid (T, H), block ATTN_THREADS (4 warps). The query at position
 * pos (row of sequence i) attends keys max(0, pos - window) ..= pos: those before starts[i] from the cache (slot,
 * position % capacity, already rotated), the others from this call's qkv, rotated here (qkv is not modified).
 * Each warp runs an online softmax over every 4th key (lane l holds elements l, l + 32, ..); the warps' partial
 * results are merged at the end. Writes NaN for a query that cannot be answered: a needed cached key that the
 * ring no longer holds (pos - window < start - capacity) or a rotary position >= maxPos.
 */
template <typename W, typename A>
__device__ void attention_impl(const A* qkv, const A* kCache, const A* vCache, const float* rotary,
                               const int* layout, A* out, int T, int B, int H, int dh, int capacity, int window,
                               int rd, int maxPos, int interleaved, float scale) {
    __shared__ float wm[ATTN_THREADS / 32];
    __shared__ float wl[ATTN_THREADS / 32];
    __shared__ float wacc[ATTN_THREADS / 32][32 * ATTN_MAXR];
    const Layout L = layoutOf(layout, B);
    const i64 row = blockIdx.x;
    const int head = blockIdx.y;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    const int seq = L.tokSeq[row];
    if (seq < 0) return;  // a row of the call that the layout's part leaves to another kernel
    const i64 start = L.starts[seq];
    const i64 slot = L.slots[seq];
    const i64 pos = start + (row - L.offsets[seq]);
    const i64 d = (i64)H * dh;
    const i64 first = pos - window > 0 ? pos - window : 0;
    A* o = out + row * d + (i64)head * dh;

    const bool ringMiss = first < start && (capacity <= 0 || first < start - capacity);
    const bool pastTable = rd > 0 && pos >= maxPos;
    if (ringMiss || pastTable) {
        for (int e = threadIdx.x; e < dh; e += blockDim.x) o[e] = fromF<A>(CUDART_NAN_F);
        return;
    }

    float qr[ATTN_MAXR];
    float acc[ATTN_MAXR];
    const A* qp = qkv + row * 3 * d + (i64)head * dh;
#pragma unroll
    for (int r = 0; r < ATTN_MAXR; r++) {
        const int e = lane + 32 * r;
        qr[r] = e < dh ? rotated(qp, e, (int)pos, rotary, rd, maxPos, interleaved) : 0.0f;
        acc[r] = 0.0f;
    }
    float m = -CUDART_INF_F;
    float l = 0.0f;
    for (i64 j = first + warp; j <= pos; j += warps) {
        float kr[ATTN_MAXR];
        float vr[ATTN_MAXR];
        if (j >= start) {
            const i64 krow = row - (pos - j);
            const A* kp = qkv + krow * 3 * d + d + (i64)head * dh;
            const A* vp = kp + d;
#pragma unroll
            for (int r = 0; r < ATTN_MAXR; r++) {
                const int e = lane + 32 * r;
                kr[r] = e < dh ? rotated(kp, e, (int)j, rotary, rd, maxPos, interleaved) : 0.0f;
                vr[r] = e < dh ? toF(vp[e]) : 0.0f;
            }
        } else {
            const i64 cell = ((slot * capacity) + j % capacity) * d + (i64)head * dh;
#pragma unroll
            for (int r = 0; r < ATTN_MAXR; r++) {
                const int e = lane + 32 * r;
                kr[r] = e < dh ? toF(kCache[cell + e]) : 0.0f;
                vr[r] = e < dh ? toF(vCache[cell + e]) : 0.0f;
            }
        }
        float dot = 0.0f;
#pragma unroll
        for (int r = 0; r < ATTN_MAXR; r++) dot += qr[r] * kr[r];
        dot = warpSum(dot);
        const float s = dot * scale;
        if (s > m) {
            const float corr = expf(m - s);  // 0 for the first key (m = -inf)
            l = l * corr + 1.0f;
#pragma unroll
            for (int r = 0; r < ATTN_MAXR; r++) acc[r] = acc[r] * corr + vr[r];
            m = s;
        } else {
            const float p = expf(s - m);
            l += p;
#pragma unroll
            for (int r = 0; r < ATTN_MAXR; r++) acc[r] += p * vr[r];
        }
    }
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
#pragma unroll
    for (int r = 0; r < ATTN_MAXR; r++) wacc[warp][lane + 32 * r] = acc[r];
    __syncthreads();
    float M = -CUDART_INF_F;
    for (int w = 0; w < warps; w++) M = fmaxf(M, wm[w]);
    float sum = 0.0f;
    for (int w = 0; w < warps; w++) sum += wm[w] == -CUDART_INF_F ? 0.0f : wl[w] * expf(wm[w] - M);
    const float inv = 1.0f / sum;
    for (int e = threadIdx.x; e < dh; e += blockDim.x) {
        float y = 0.0f;
        for (int w = 0; w < warps; w++) y += wm[w] == -CUDART_INF_F ? 0.0f : wacc[w][e] * expf(wm[w] - M);
        o[e] = fromF<A>(y * inv);
    }
}

/** The rotated key and the value of token t of sequence seq (row `row` of qkv) into the cache; its block's part. */
template <typename A>
__device__ __forceinline__ void appendToken(const A* qkv, A* kCache, A* vCache, const float* rotary, const Layout& L,
                                            int seq, int t, i64 row, int H, int dh, int capacity, int rd, int maxPos,
                                            int interleaved) {
    const i64 pos = (i64)L.starts[seq] + t;
    const i64 d = (i64)H * dh;
    const i64 cell = ((i64)L.slots[seq] * capacity + pos % capacity) * d;
    const bool pastTable = rd > 0 && pos >= maxPos;
    const A* kp = qkv + row * 3 * d + d;
    const A* vp = kp + d;
    for (i64 idx = (i64)blockIdx.y * blockDim.x + threadIdx.x; idx < d; idx += (i64)gridDim.y * blockDim.x) {
        const int h = (int)(idx / dh);
        const int e = (int)(idx - (i64)h * dh);
        kCache[cell + idx] = fromF<A>(
            pastTable ? CUDART_NAN_F : rotated(kp + (i64)h * dh, e, (int)pos, rotary, rd, maxPos, interleaved));
        vCache[cell + idx] = vp[idx];
    }
}

/**
 * Writes the rotated key (rounded to A) and the value of each sequence's last min(length, capacity) tokens into the
 * cache of its slot at position % capacity. Grid (T, parts), block 128: a token's d = H * dh elements in parts of 128,
 * each thread one element (a part per block: every load of a decode step's few tokens in flight at once); with
 * lastRows > 0, grid (B lastRows, parts) instead: lastRows blocks a sequence share its kept tokens (a prompt that a
 * short window keeps only the end of). Launched after attention (which reads cells this overwrites). A position >=
 * maxPos (with rd > 0) writes NaN keys.
 */
template <typename W, typename A>
__device__ void attentionAppend_impl(const A* qkv, A* kCache, A* vCache, const float* rotary,
                                     const int* layout, int T, int B, int H, int dh, int capacity, int rd, int maxPos,
                                     int interleaved, int lastRows) {
    if (capacity <= 0) return;
    const Layout L = layoutOf(layout, B);
    if (lastRows > 0) {
        // blocks x of sequence x / lastRows: its last min(length, capacity) tokens, from the (x % lastRows)-th on,
        // lastRows apart (all of them whatever lastRows is)
        const int seq = (int)(blockIdx.x / lastRows);
        const int len = L.lengths[seq];
        const int kept = min(len, capacity);
        for (int i = (int)(blockIdx.x - (i64)seq * lastRows); i < kept; i += lastRows) {
            const int t = len - kept + i;
            appendToken(qkv, kCache, vCache, rotary, L, seq, t, L.offsets[seq] + t, H, dh, capacity, rd, maxPos,
                        interleaved);
        }
        return;
    }
    // block x: token x of the batch, where it is one of its sequence's last min(length, capacity)
    const i64 row = blockIdx.x;
    const int seq = L.tokSeq[row];
    const int t = (int)(row - L.offsets[seq]);
    if (t < L.lengths[seq] - capacity) return;
    appendToken(qkv, kCache, vCache, rotary, L, seq, t, row, H, dh, capacity, rd, maxPos, interleaved);
}

}  // namespace b4j

// ------------------------------------------------------------------------------------------------ entry points

namespace b4j_f32 {
typedef float W;
typedef float A;
}
namespace b4j_bf16 {
typedef __nv_bfloat16 W;
typedef __nv_bfloat16 A;
}

// Defines NAME_f32 and NAME_bf16 (C linkage) forwarding to b4j::NAME_impl<W, A>; PARAMS may use the types W and A.
#define B4J_KERNEL(NAME, THREADS, PARAMS, ARGS)                                                                      \
    namespace b4j_f32 {                                                                                              \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME##_f32 PARAMS {                                       \
        b4jPdlWait(); b4j::NAME##_impl<W, A> ARGS; }                                                                \
    }                                                                                                                \
    namespace b4j_bf16 {                                                                                             \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME##_bf16 PARAMS {                                      \
        b4jPdlWait(); b4j::NAME##_impl<W, A> ARGS; }                                                                \
    }

B4J_KERNEL(embedding, 256, (const W* table, const int* ids, float* out, int n, int d), (table, ids, out, n, d))
B4J_KERNEL(addRmsNorm, 1024, (float* residual, const A* branch, const W* weight, A* out, int n, int d, float eps),
           (residual, branch, weight, out, n, d, eps))
B4J_KERNEL(rmsNorm, 1024, (const float* x, const W* weight, A* out, int n, int d, float eps),
           (x, weight, out, n, d, eps))
B4J_KERNEL(addInto, 256, (float* acc, const A* x, long long count), (acc, x, count))
B4J_KERNEL(addBias, 256, (A * out, const W* bias, int n, int m), (out, bias, n, m))
// the same into a float32 output (a training pass's residual branch), whatever the weights' type
namespace b4j_f32 {
extern "C" __global__ void __launch_bounds__(256) addBiasF32_f32(float* out, const W* bias, int n, int m) {
    b4jPdlWait();
    b4j::addBias_impl<W, float>(out, bias, n, m);
}
}
namespace b4j_bf16 {
extern "C" __global__ void __launch_bounds__(256) addBiasF32_bf16(float* out, const W* bias, int n, int m) {
    b4jPdlWait();
    b4j::addBias_impl<W, float>(out, bias, n, m);
}
}
B4J_KERNEL(swiglu, 256, (const A* a, A* out, int n, int h), (a, out, n, h))
B4J_KERNEL(gatherRows, 256, (const A* x, const int* rows, A* out, int n, int cols), (x, rows, out, n, cols))

/** dst[rows[i]] += src[i], float32 rows of cols; the rows are distinct (Kernels.scatterAddRows). */
extern "C" __global__ void __launch_bounds__(256)
    scatterAddRows_f32(const float* src, const int* rows, float* dst, int n, int cols) { b4jPdlWait();
    const b4j::i64 total = (b4j::i64)n * cols;
    for (b4j::i64 idx = b4j::globalThread(); idx < total; idx += b4j::globalStride()) {
        const b4j::i64 i = idx / cols;
        const b4j::i64 j = idx - i * cols;
        dst[(b4j::i64)rows[i] * cols + j] += src[idx];
    }
}
B4J_KERNEL(f32ToA, 256, (const float* src, A* dst, long long count), (src, dst, count))
B4J_KERNEL(aToF32, 256, (const A* src, float* dst, long long count), (src, dst, count))
B4J_KERNEL(baseConv, 256,
           (const A* u, const W* convW, const A* hist, const int* layout, A* out, int T, int B, int inner, int k),
           (u, convW, hist, layout, out, T, B, inner, k))
B4J_KERNEL(baseConvState, 256, (const A* u, A* hist, const int* layout, int T, int B, int inner, int k),
           (u, hist, layout, T, B, inner, k))
B4J_KERNEL(baseConvStep, 256,
           (const A* u, const W* convW, A* hist, const int* layout, A* out, int B, int inner, int k),
           (u, convW, hist, layout, out, B, inner, k))
B4J_KERNEL(linearAttention, 256,
           (const A* q, const A* k, const A* v, float* kvState, const float* kState, const int* layout, A* out, int T,
            int B, int H, int f, int dh, float eps, int dt),
           (q, k, v, kvState, kState, layout, out, T, B, H, f, dh, eps, dt))
B4J_KERNEL(linearAttentionZ, 256, (const A* k, float* kState, const int* layout, int T, int B, int H, int f),
           (k, kState, layout, T, B, H, f))
B4J_KERNEL(linearAttentionState, 256,
           (const A* k, const A* v, float* kvState, float* kState, const int* layout, int T, int B, int H, int f,
            int dh, int dt, int C),
           (k, v, kvState, kState, layout, T, B, H, f, dh, dt, C))
B4J_KERNEL(attention, ATTN_THREADS,
           (const A* qkv, const A* kCache, const A* vCache, const float* rotary, const int* layout, A* out,
            int T, int B, int H, int dh, int capacity, int window, int rd, int maxPos, int interleaved, float scale),
           (qkv, kCache, vCache, rotary, layout, out, T, B, H, dh, capacity, window, rd, maxPos, interleaved, scale))
B4J_KERNEL(attentionAppend, 128,
           (const A* qkv, A* kCache, A* vCache, const float* rotary, const int* layout, int T, int B, int H,
            int dh, int capacity, int rd, int maxPos, int interleaved, int lastRows),
           (qkv, kCache, vCache, rotary, layout, T, B, H, dh, capacity, rd, maxPos, interleaved, lastRows))

#include "vector_ops.cuh"
#include "gemv.cuh"
#include "attention_decode.cuh"
#include "attention_window_decode.cuh"
#include "linear_attention_decode.cuh"
#include "based4j_sample.cuh"
#include "train_dense.cuh"
#include "train_loss.cuh"
#include "train_adamw.cuh"
#include "train_conv.cuh"
#include "train_linear.cuh"
#include "train_linear_recurrent.cuh"
#include "train_linear_split.cuh"
#include "train_attention.cuh"
#include "train_attention_mma.cuh"
#include "train_loss_mma.cuh"
#include "gemm_rows.cuh"
#include "gemm_wgmma.cuh"
#include "gemm_tma.cuh"

// ------------------------------------------------------------------------------------------------ profiling

/**
 * Copies count bytes (a multiple of 16, both pointers 16-byte aligned) from src to dst, delayNs after the wait for
 * the kernel before; launched programmatically it lets the kernel after it start at once (its launch_dependents is
 * the wait's). The slow writer of the probes that tell whether a library kernel after it on a programmatic edge waits
 * for what it writes (CublasLt.probeEdge).
 */
extern "C" __global__ void __launch_bounds__(256)
    delayedCopy(uint4* dst, const uint4* src, unsigned long long count, unsigned long long delayNs) {
    b4jPdlWait();
    unsigned long long start;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    for (;;) {
        unsigned long long now;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
        if (now - start >= delayNs) break;
        __nanosleep(1000);
    }
    const unsigned long long n = count / 16;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        dst[i] = src[i];
    }
}

/**
 * Holds the stream until the host has queued what follows: waits until *released (host memory the device reads,
 * written by the host) reaches ticket, or timeoutNs have passed on the global timer, whichever comes first. One
 * thread. Used by op profiles so that the events around an op time the device's work, not the host queuing it.
 */
extern "C" __global__ void __launch_bounds__(32)
    opGate(const volatile unsigned long long* released, unsigned long long ticket, unsigned long long timeoutNs) {
    b4jPdlWait();
    unsigned long long start;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    while (*released < ticket) {
        unsigned long long now;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
        if (now - start > timeoutNs) break;
        __nanosleep(500);
    }
}
