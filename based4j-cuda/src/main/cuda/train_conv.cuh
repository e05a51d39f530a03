// Training kernels of BaseConv (included by based4j_kernels.cu): the forward over whole sequences that keeps the
// conv output c, and its backward. Each computes in float32 what io.based4j.train.cpu.DenseOps.baseConv and
// baseConvBackward compute in float64, with the same formulas in the same order. A training pass is batch sequences
// of L tokens packed as batch x L rows, each starting from an empty state (taps reaching before the sequence's first
// token see zeros). u, c, out, dout and du are of type A; the tap gradient is float32. Backward outputs are ADDED
// into (+=). Launch shapes: io.based4j.cuda.MixerTrainKernels.
#pragma once

namespace b4j {

/**
 * One thread per (row, channel), grid-strided: c_t = sum_{j >= max(0, k-1-t)} w[ch, j] u1_{t-(k-1)+j} (fused
 * multiply-adds in tap order), kept in convOut; out = silu(c) u2.
 */
template <typename W, typename A>
__device__ void baseConvTrainForward_impl(const A* u, const W* taps, A* convOut, A* out, int L, i64 n, int inner,
                                          int k) {
    const i64 total = n * inner;
    const i64 width = 2 * (i64)inner;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 row = idx / inner;
        const int ch = (int)(idx - row * inner);
        const int t = (int)(row % L);
        const int j0 = k - 1 - t > 0 ? k - 1 - t : 0;
        float acc = 0.0f;
        for (int j = j0; j < k; j++) acc = fmaf(toF(taps[(i64)ch * k + j]), toF(u[(row - (k - 1) + j) * width + ch]), acc);
        convOut[idx] = fromF<A>(acc);
        out[idx] = fromF<A>(silu(acc) * toF(u[row * width + inner + ch]));
    }
}

/** dc_t = dout_t u2_t s (1 + c (1 - s)), s = sigmoid(c_t), from the kept c (DenseOps.baseConvBackward). */
template <typename A>
__device__ __forceinline__ float convGradC(const A* u, const A* convOut, const A* dout, i64 row, int ch, int inner) {
    const float c = toF(convOut[row * inner + ch]);
    const float s = 1.0f / (1.0f + expf(-c));
    return toF(dout[row * inner + ch]) * toF(u[row * 2 * (i64)inner + inner + ch]) * s * (1.0f + c * (1.0f - s));
}

/**
 * One thread per (row, channel), grid-strided: du2_t += dout_t c_t s_t; du1_t += sum over taps j = k-1 .. 0 of
 * w[ch, j] dc_{t+(k-1)-j} (outputs inside the sequence only; each dc recomputed from the kept c).
 */
template <typename W, typename A>
__device__ void baseConvTrainBackwardInput_impl(const A* u, const W* taps, const A* convOut, const A* dout, A* du,
                                                int L, i64 n, int inner, int k) {
    const i64 total = n * inner;
    const i64 width = 2 * (i64)inner;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 row = idx / inner;
        const int ch = (int)(idx - row * inner);
        const int t = (int)(row % L);
        const float c = toF(convOut[idx]);
        const float s = 1.0f / (1.0f + expf(-c));
        A* gate = du + row * width + inner + ch;
        *gate = fromF<A>(toF(*gate) + toF(dout[idx]) * c * s);
        float sum = 0.0f;
        for (int j = k - 1; j >= 0; j--) {
            const int to = t + (k - 1) - j;
            if (to < L) sum += toF(taps[(i64)ch * k + j]) * convGradC(u, convOut, dout, row + (to - t), ch, inner);
        }
        A* in = du + row * width + ch;
        *in = fromF<A>(toF(*in) + sum);
    }
}

#define CONV_TAP_CHANNELS 32
#define CONV_TAP_GROUPS 8
#define CONV_TAP_MAX_K 8

/**
 * The parts of dtaps[ch, j] = sum over all rows of dc_t u1_{t-(k-1)+j} (inside the row's sequence). Grid
 * (ceil(inner / 32), parts): block (bx, p) takes rows [p R, (p + 1) R); 256 threads = 32 channels (lanes, so loads
 * are coalesced) x 8 row groups; thread (group g, channel) sums its rows g, g + 8, .. in order for every tap at
 * once (k <= CONV_TAP_MAX_K), then the 8 group sums are added in group order into partial[p][ch][j];
 * rmsNormWeightGrad adds the parts in part order into dtaps: deterministic, no atomics.
 */
template <typename W, typename A>
__device__ void baseConvTrainBackwardTaps_impl(const A* u, const A* convOut, const A* dout, float* partial, int L,
                                               i64 n, int inner, int k, int rowsPerPart) {
    __shared__ float part[CONV_TAP_GROUPS][CONV_TAP_CHANNELS * CONV_TAP_MAX_K];
    const int lane = threadIdx.x % CONV_TAP_CHANNELS;
    const int group = threadIdx.x / CONV_TAP_CHANNELS;
    const int ch = blockIdx.x * CONV_TAP_CHANNELS + lane;
    const i64 width = 2 * (i64)inner;
    const i64 first = (i64)blockIdx.y * rowsPerPart;
    const i64 last = first + rowsPerPart < n ? first + rowsPerPart : n;
    float s[CONV_TAP_MAX_K];
#pragma unroll
    for (int j = 0; j < CONV_TAP_MAX_K; j++) s[j] = 0.0f;
    if (ch < inner) {
        for (i64 row = first + group; row < last; row += CONV_TAP_GROUPS) {
            const int t = (int)(row % L);
            const float dc = convGradC(u, convOut, dout, row, ch, inner);
#pragma unroll
            for (int j = 0; j < CONV_TAP_MAX_K; j++) {
                if (j < k && t - (k - 1) + j >= 0) s[j] += dc * toF(u[(row - (k - 1) + j) * width + ch]);
            }
        }
    }
#pragma unroll
    for (int j = 0; j < CONV_TAP_MAX_K; j++) part[group][lane * CONV_TAP_MAX_K + j] = s[j];
    __syncthreads();
    if (group == 0 && ch < inner) {
        for (int j = 0; j < k; j++) {
            float total = 0.0f;
            for (int g = 0; g < CONV_TAP_GROUPS; g++) total += part[g][lane * CONV_TAP_MAX_K + j];
            partial[((i64)blockIdx.y * inner + ch) * k + j] = total;
        }
    }
}

}  // namespace b4j

B4J_KERNEL(baseConvTrainForward, 256,
           (const A* u, const W* taps, A* convOut, A* out, int L, long long n, int inner, int k),
           (u, taps, convOut, out, L, n, inner, k))
B4J_KERNEL(baseConvTrainBackwardInput, 256,
           (const A* u, const W* taps, const A* convOut, const A* dout, A* du, int L, long long n, int inner, int k),
           (u, taps, convOut, dout, du, L, n, inner, k))
B4J_KERNEL(baseConvTrainBackwardTaps, 256,
           (const A* u, const A* convOut, const A* dout, float* partial, int L, long long n, int inner, int k,
            int rowsPerPart),
           (u, convOut, dout, partial, L, n, inner, k, rowsPerPart))
