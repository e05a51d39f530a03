// Matrix products of a few rows (included by based4j_kernels.cu): y = x W^T (+ bias) for the M <= 8 rows of a decode
// step, streaming W once at the bandwidth limit where a general product's tiles would mostly hold zeros. Launched by
// io.based4j.cuda.Kernels.gemv for CudaBackend's products of at most GEMV_MAX_M rows.
#pragma once

namespace b4j {

#define GEMV_THREADS 256
/** Most rows of x. */
#define GEMV_MAX_M 8

/**
 * y = x W^T (+ bias): x A [M, K] (M <= GEMV_MAX_M), w W [N, K], bias W [N] or null, y [M, N] in A, or float32 where
 * outF32. Grid ceil(N / (8 warps x R)), block GEMV_THREADS: a warp takes R rows of W (1 for narrow outputs, so that
 * there are blocks enough to fill the GPU; 2 for wide ones, halving the reads of x), its lanes 8
 * values of a row at a time (16-byte loads: W read once; x, small, from the L1 cache), each lane summing its share of
 * the M x R dot products in float32; the lanes' sums are then added over the warp in a fixed order
 * (deterministic), the bias added in float32 and the result rounded once. K a multiple of 8; x and w 16-byte aligned.
 */
template <int R, typename W, typename A>
__device__ void gemvRows(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K) {
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int n0 = (blockIdx.x * (GEMV_THREADS / 32) + warp) * R;
    if (n0 >= N) return;  // the whole warp
    float acc[R][GEMV_MAX_M];
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int m = 0; m < GEMV_MAX_M; m++) acc[r][m] = 0.0f;
    }
    const int chunks = K >> 3;
    for (int c = lane; c < chunks; c += 32) {
        float wv[R][8];
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (n0 + r < N) {
                load8(w + (i64)(n0 + r) * K + 8 * c, wv[r]);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) wv[r][i] = 0.0f;
            }
        }
#pragma unroll
        for (int m = 0; m < GEMV_MAX_M; m++) {
            if (m < M) {
                float xv[8];
                load8(x + (i64)m * K + 8 * c, xv);
#pragma unroll
                for (int r = 0; r < R; r++) {
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[r][m] += wv[r][i] * xv[i];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int m = 0; m < GEMV_MAX_M; m++) {
            if (m < M) {
                float v = acc[r][m];
                for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
                acc[r][m] = v;
            }
        }
    }
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int n = n0 + r;
            if (n >= N) continue;
            const float b = bias != nullptr ? toF(bias[n]) : 0.0f;
#pragma unroll
            for (int m = 0; m < GEMV_MAX_M; m++) {
                if (m < M) {
                    const float v = acc[r][m] + b;
                    if (outF32) {
                        reinterpret_cast<float*>(out)[(i64)m * N + n] = v;
                    } else {
                        reinterpret_cast<A*>(out)[(i64)m * N + n] = fromF<A>(v);
                    }
                }
            }
        }
    }
}

template <typename W, typename A>
__device__ void gemv1_impl(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K) {
    gemvRows<1, W, A>(x, w, bias, out, outF32, M, N, K);
}

template <typename W, typename A>
__device__ void gemv2_impl(const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K) {
    gemvRows<2, W, A>(x, w, bias, out, outF32, M, N, K);
}

}  // namespace b4j

B4J_KERNEL(gemv1, GEMV_THREADS, (const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K),
           (x, w, bias, out, outF32, M, N, K))
B4J_KERNEL(gemv2, GEMV_THREADS, (const A* x, const W* w, const W* bias, void* out, int outF32, int M, int N, int K),
           (x, w, bias, out, outF32, M, N, K))
