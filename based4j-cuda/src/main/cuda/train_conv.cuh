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
        if (convOut != nullptr) convOut[idx] = fromF<A>(acc);
        out[idx] = fromF<A>(silu(acc) * toF(u[row * width + inner + ch]));
    }
}

/** dc = g u2 s (1 + c (1 - s)) for the conv output c, s = sigmoid(c), output gradient g and gate u2. */
__device__ __forceinline__ float convGradOf(float c, float s, float g, float u2) {
    return g * u2 * s * (1.0f + c * (1.0f - s));
}

/** dc_t = dout_t u2_t s (1 + c (1 - s)), s = sigmoid(c_t), from the kept c (DenseOps.baseConvBackward). */
template <typename A>
__device__ __forceinline__ float convGradC(const A* u, const A* convOut, const A* dout, i64 row, int ch, int inner) {
    const float c = toF(convOut[row * inner + ch]);
    const float s = 1.0f / (1.0f + expf(-c));
    return convGradOf(c, s, toF(dout[row * inner + ch]), toF(u[row * 2 * (i64)inner + inner + ch]));
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

// ------------------------------------------------------------------------------------------------ by rows (bf16)

// The bf16 forms, for K <= 4 taps (a template constant) and inner a multiple of 8: lane l of warp w of block
// (bx, by) takes the 8 channels (32 bx + l) 8 .. + 8 (16-byte accesses) and walks the rows
// [(8 by + w) CONV_ROWS, + CONV_ROWS) in order, keeping the K - 1 neighbouring rows it needs in registers, so that
// each value is read about once (K - 1 rows more per run of CONV_ROWS) and each sigmoid computed once. Sequence
// boundaries inside a run are handled as in the scalar kernels: a term whose token lies outside the row's sequence
// is skipped. bf16 values are kept raw (two to a register) until used.

#define CONV_ROWS 16
#define CONV_WARPS 8
#define CONV_ROWS_MAX_K 4

/** Element i (0..7) of the 8 bf16 held raw in a uint4, as a float (exact). */
__device__ __forceinline__ float bf16Of(const uint4& raw, int i) {
    const unsigned word = i < 2 ? raw.x : i < 4 ? raw.y : i < 6 ? raw.z : raw.w;
    return __uint_as_float((i & 1) ? (word & 0xffff0000u) : (word << 16));
}

__device__ __forceinline__ uint4 loadRaw(const bf16* p) { return *reinterpret_cast<const uint4*>(p); }

/** Tap j of the lane's channel c (0..7) from the K uint4 holding taps [ch .. ch + 8) x K (channel-major). */
template <int K>
__device__ __forceinline__ float tapOf(const uint4* w, int c, int j) {
    return bf16Of(w[(c * K + j) >> 3], (c * K + j) & 7);
}

/** The lane's channel, first row and end of its run; false when it has none. */
__device__ __forceinline__ bool convRun(i64 n, int inner, int& ch, i64& first, i64& last) {
    ch = (blockIdx.x * 32 + (threadIdx.x & 31)) * 8;
    first = ((i64)blockIdx.y * CONV_WARPS + (threadIdx.x >> 5)) * CONV_ROWS;
    last = first + CONV_ROWS < n ? first + CONV_ROWS : n;
    return ch < inner && first < n;
}

/** Rows a lane of baseConvRowsForward loads ahead of its arithmetic and stores (CONV_ROWS a multiple of it). */
#define CONV_AHEAD 4

/**
 * baseConvTrainForward by rows: c_t with the same fused multiply-adds in tap order, out = silu(c) u2 (convOut, where
 * given, keeps c). The lane loads CONV_AHEAD rows of u1 and u2 before it computes and stores them.
 */
template <int K>
__device__ void baseConvRowsForward(const bf16* u, const bf16* taps, bf16* convOut, bf16* out, int L, i64 n,
                                    int inner) {
    int ch;
    i64 first, last;
    if (!convRun(n, inner, ch, first, last)) return;
    const i64 width = 2 * (i64)inner;
    float tw[8][K];  // the lane's taps as floats, unpacked once
    {
        uint4 w[K];
#pragma unroll
        for (int i = 0; i < K; i++) w[i] = loadRaw(taps + (i64)ch * K + 8 * i);
#pragma unroll
        for (int cc = 0; cc < 8; cc++) {
#pragma unroll
            for (int j = 0; j < K; j++) tw[cc][j] = tapOf<K>(w, cc, j);
        }
    }
    uint4 x[K - 1 + CONV_AHEAD];  // x[m]: u1 of row base - (K - 1) + m
#pragma unroll
    for (int m = 0; m < K - 1; m++) {
        const i64 q = first - (K - 1) + m;
        x[m] = q >= 0 ? loadRaw(u + q * width + ch) : make_uint4(0, 0, 0, 0);
    }
    int t = (int)(first % L);
    for (i64 base = first; base < last; base += CONV_AHEAD) {
        uint4 g[CONV_AHEAD];
#pragma unroll
        for (int a = 0; a < CONV_AHEAD; a++) {
            const i64 row = base + a;
            x[K - 1 + a] = row < last ? loadRaw(u + row * width + ch) : make_uint4(0, 0, 0, 0);
            g[a] = row < last ? loadRaw(u + row * width + inner + ch) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int a = 0; a < CONV_AHEAD; a++) {
            const i64 row = base + a;
            if (row < last) {
                float gate[8], c[8];
#pragma unroll
                for (int cc = 0; cc < 8; cc++) {
                    float acc = 0.0f;
#pragma unroll
                    for (int j = 0; j < K; j++) {
                        if (t - (K - 1) + j >= 0) acc = fmaf(tw[cc][j], bf16Of(x[a + j], cc), acc);
                    }
                    c[cc] = acc;
                    gate[cc] = silu(acc) * bf16Of(g[a], cc);
                }
                if (convOut != nullptr) store8(convOut + row * inner + ch, c);
                store8(out + row * inner + ch, gate);
            }
            if (++t == L) t = 0;
        }
#pragma unroll
        for (int m = 0; m < K - 1; m++) x[m] = x[m + CONV_AHEAD];
    }
}

/**
 * dc of row q (into dc) from the kept c, and, when the row is the lane's own, du2_q += dout c s (as
 * baseConvTrainBackwardInput_impl); s = sigmoid(c) computed once for both.
 */
__device__ __forceinline__ void convRowGrads(const bf16* u, const bf16* convOut, const bf16* dout, bf16* du, i64 q,
                                             int ch, int inner, bool own, bool fresh, float* dc) {
    const i64 width = 2 * (i64)inner;
    float c[8], g[8], u2[8];
    load8(convOut + q * inner + ch, c);
    load8(dout + q * inner + ch, g);
    load8(u + q * width + inner + ch, u2);
    float gate[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    if (own && !fresh) load8(du + q * width + inner + ch, gate);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const float s = 1.0f / (1.0f + expf(-c[i]));
        gate[i] = gate[i] + g[i] * c[i] * s;
        dc[i] = convGradOf(c[i], s, g[i], u2[i]);
    }
    if (own) store8(du + q * width + inner + ch, gate);
}

/**
 * baseConvTrainBackwardInput and baseConvTrainBackwardTaps fused, by rows: per row, dc once (for the K rows that
 * need it), du2 and du1 (the taps' transpose, the same terms in the same order) added into du, and the lane's tap
 * sums dc_t u1_{t-(K-1)+j} in row order; the block then adds its 8 warps' sums in warp order into
 * partial[by][ch K + j] (columnPartsSum_f32 adds the parts). sums: CONV_WARPS x 256 K floats of shared memory.
 * With fresh, du's old values are taken as zeros and not read (du written whole, not added into).
 */
template <int K>
__device__ void baseConvRowsBackward(const bf16* u, const bf16* taps, const bf16* convOut, const bf16* dout, bf16* du,
                                     float* partial, int L, i64 n, int inner, bool fresh, float* sums) {
    int ch;
    i64 first, last;
    float s[K][8];
#pragma unroll
    for (int j = 0; j < K; j++) {
#pragma unroll
        for (int i = 0; i < 8; i++) s[j][i] = 0.0f;
    }
    if (convRun(n, inner, ch, first, last)) {
        const i64 width = 2 * (i64)inner;
        uint4 w[K];
#pragma unroll
        for (int i = 0; i < K; i++) w[i] = loadRaw(taps + (i64)ch * K + 8 * i);
        uint4 x[K];     // x[m]: u1 of row - (K - 1) + m
        float dc[K][8];  // dc[m]: dc of row + m
#pragma unroll
        for (int m = 0; m < K - 1; m++) {
            const i64 q = first - (K - 1) + m;
            x[m] = q >= 0 ? loadRaw(u + q * width + ch) : make_uint4(0, 0, 0, 0);
            const i64 r = first + m;
            if (r < n) {
                convRowGrads(u, convOut, dout, du, r, ch, inner, r < last, fresh, dc[m]);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) dc[m][i] = 0.0f;
            }
        }
        int t = (int)(first % L);
        for (i64 row = first; row < last; row++) {
            // this row's du1 and u1 first, so that their loads are in flight with dc's (du2 of row + K - 1, which
            // convRowGrads stores, is never du1 of this row)
            float in[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            if (!fresh) load8(du + row * width + ch, in);
            x[K - 1] = loadRaw(u + row * width + ch);
            const i64 r = row + K - 1;
            if (r < n) {
                convRowGrads(u, convOut, dout, du, r, ch, inner, r < last, fresh, dc[K - 1]);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) dc[K - 1][i] = 0.0f;
            }
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float sum = 0.0f;
#pragma unroll
                for (int m = 0; m < K; m++) {
                    if (t + m < L) sum += tapOf<K>(w, i, K - 1 - m) * dc[m][i];
                }
                in[i] = in[i] + sum;
#pragma unroll
                for (int j = 0; j < K; j++) {
                    if (t - (K - 1) + j >= 0) s[j][i] += dc[0][i] * bf16Of(x[j], i);
                }
            }
            store8(du + row * width + ch, in);
#pragma unroll
            for (int m = 0; m < K - 1; m++) {
                x[m] = x[m + 1];
#pragma unroll
                for (int i = 0; i < 8; i++) dc[m][i] = dc[m + 1][i];
            }
            if (++t == L) t = 0;
        }
    }
    const int lane = threadIdx.x & 31;
    float* mine = sums + (threadIdx.x >> 5) * 256 * K;
#pragma unroll
    for (int i = 0; i < 8; i++) {
#pragma unroll
        for (int j = 0; j < K; j++) mine[(lane * 8 + i) * K + j] = s[j][i];
    }
    __syncthreads();
    const i64 cols = (i64)inner * K;
    const i64 base = (i64)blockIdx.x * 256 * K;
#pragma unroll
    for (int e = 0; e < K; e++) {
        const int v = threadIdx.x + 256 * e;
        if (base + v < cols) {
            float total = 0.0f;
            for (int wp = 0; wp < CONV_WARPS; wp++) total += sums[wp * 256 * K + v];
            partial[(i64)blockIdx.y * cols + base + v] = total;
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

// The by-rows kernels for K = 1 .. CONV_ROWS_MAX_K taps, bf16 only (baseConvRowsForwardK3_bf16, ..).
#define B4J_CONV_ROWS(K)                                                                                             \
    extern "C" __global__ void __launch_bounds__(256)                                                                \
        baseConvRowsForwardK##K##_bf16(const b4j::bf16* u, const b4j::bf16* taps, b4j::bf16* convOut,               \
                                       b4j::bf16* out, int L, long long n, int inner) {                              \
        b4jPdlWait();                                                                                                \
        b4j::baseConvRowsForward<K>(u, taps, convOut, out, L, n, inner);                                             \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(256)                                                                \
        baseConvRowsBackwardK##K##_bf16(const b4j::bf16* u, const b4j::bf16* taps, const b4j::bf16* convOut,         \
                                        const b4j::bf16* dout, b4j::bf16* du, float* partial, int L, long long n,    \
                                        int inner, int fresh) {                                                      \
        b4jPdlWait();                                                                                                \
        __shared__ float sums[CONV_WARPS * 256 * K];                                                                 \
        b4j::baseConvRowsBackward<K>(u, taps, convOut, dout, du, partial, L, n, inner, fresh != 0, sums);            \
    }
B4J_CONV_ROWS(1)
B4J_CONV_ROWS(2)
B4J_CONV_ROWS(3)
B4J_CONV_ROWS(4)
