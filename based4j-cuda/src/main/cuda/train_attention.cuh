// Training kernels of causal and sliding-window softmax attention with rotary positions (included by
// based4j_kernels.cu): the forward over whole sequences that keeps one log-sum-exp per (token, head), and the
// flash-style backward that recomputes the probabilities from it. Each computes in float32 what
// io.based4j.train.cpu.AttentionOps computes in float64. A training pass is batch sequences of L tokens packed as
// batch x L rows at positions 0 .. L-1; the query at t attends keys max(0, t - window) ..= t. qkv [N, 3d]
// (q | k | v, d = H dh), out, dout and dqkv are of type A; lse is float32 [N, H]; dqkv is ADDED into (+=). Nothing
// L x L is ever stored. Launch shapes: io.based4j.cuda.MixerTrainKernels.
//
// Rotary ("rotate half" on the first rd dims of q and k) is computed in the kernels with the numbers of
// io.based4j.backend.cpu.RotaryAngles: invFreq_p = (float) (1 / base^((float) (2p) / rd)) in double, angle
// (float) pos * invFreq_p in float, cos and sin of it in double rounded to float.
//
// All three kernels use warps of 32 lanes over a head vector (lane l holds elements l, l + 32, .., so dh <= 128)
// and a shared-memory tile of rotated vectors that every warp of the block reads.
#pragma once

namespace b4j {

#define ATR_R 4                          // elements per lane of a head vector
#define ATR_MAXD (32 * ATR_R)            // the largest head dim
#define ATR_WARPS 4
#define ATR_THREADS (32 * ATR_WARPS)
#define ATR_PER_WARP 4                   // queries (forward, dq) or keys (dk, dv) per warp
#define ATR_ROWS (ATR_WARPS * ATR_PER_WARP)  // queries or keys per block: 16
#define ATR_TILE 32                      // vectors per shared tile

/** The inverse frequency of rotary pair p (RotaryAngles.inverseFrequency). */
__device__ __forceinline__ float rotaryInverseFrequency(int p, int rd, double base) {
    const float x = __fdiv_rn((float)(2 * p), (float)rd);
    return (float)(1.0 / pow(base, (double)x));
}

/** invFreq[p] for p < rd/2, written by the block; ends with a barrier. */
__device__ __forceinline__ void rotaryInverseFrequencies(float* invFreq, int rd, double base) {
    for (int p = threadIdx.x; p < rd / 2; p += blockDim.x) invFreq[p] = rotaryInverseFrequency(p, rd, base);
    __syncthreads();
}

/** cos and sin of the angle (float) pos * invFreq, in double, rounded to float. */
__device__ __forceinline__ void rotaryCosSin(int pos, float invFreq, float* c, float* s) {
    const float angle = __fmul_rn((float)pos, invFreq);
    double sd, cd;
    sincos((double)angle, &sd, &cd);
    *c = (float)cd;
    *s = (float)sd;
}

/** The rotary pair of element e < rd: e or e - half. */
__device__ __forceinline__ int rotaryPair(int e, int half) { return e < half ? e : e - half; }

/**
 * Element e < rd of head vector x rotated by the cos c and sin s of its pair (x1' = x1 c - x2 s,
 * x2' = x2 c + x1 s; no fused ops).
 */
template <typename A>
__device__ __forceinline__ float rotatedWith(const A* x, int e, int half, float c, float s) {
    const int p = rotaryPair(e, half);
    const float x1 = toF(x[p]);
    const float x2 = toF(x[p + half]);
    return e < half ? __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s)) : __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
}

/** Element e < rd of the transposed rotation of g by the cos c and sin s of its pair: g1 c + g2 s, g2 c - g1 s. */
__device__ __forceinline__ float rotatedBackWith(const float* g, int e, int half, float c, float s) {
    const int p = rotaryPair(e, half);
    const float g1 = g[p];
    const float g2 = g[p + half];
    return e < half ? g1 * c + g2 * s : g2 * c - g1 * s;
}

/** Element e of head vector x at position pos, rotated. */
template <typename A>
__device__ __forceinline__ float rotatedAt(const A* x, int e, int pos, const float* invFreq, int rd) {
    if (e >= rd) return toF(x[e]);
    const int half = rd >> 1;
    float c, s;
    rotaryCosSin(pos, invFreq[rotaryPair(e, half)], &c, &s);
    return rotatedWith(x, e, half, c, s);
}

/** Element e of the transposed rotation of g (a gradient in shared memory). */
__device__ __forceinline__ float rotatedBackAt(const float* g, int e, int pos, const float* invFreq, int rd) {
    if (e >= rd) return g[e];
    const int half = rd >> 1;
    float c, s;
    rotaryCosSin(pos, invFreq[rotaryPair(e, half)], &c, &s);
    return rotatedBackWith(g, e, half, c, s);
}

/** Zeroes a tile, so that the columns past dh that loadTile never writes read as zeros. No barrier. */
__device__ __forceinline__ void zeroTile(float (*tile)[ATR_MAXD]) {
    for (int idx = threadIdx.x; idx < ATR_TILE * ATR_MAXD; idx += blockDim.x) tile[idx / ATR_MAXD][idx % ATR_MAXD] = 0.0f;
}

/** Loads rows [from, to) of one head's (rotated, if rd > 0 and rotate) vectors into tile[row - from][..]. */
template <typename A>
__device__ __forceinline__ void loadTile(float (*tile)[ATR_MAXD], const A* base, i64 row0, i64 stride, int from,
                                         int to, int dh, bool rotate, const float* invFreq, int rd) {
    const int n = to - from;
    for (int idx = threadIdx.x; idx < n * dh; idx += blockDim.x) {
        const int i = idx / dh;
        const int e = idx - i * dh;
        const A* x = base + (row0 + from + i) * stride;
        tile[i][e] = rotate ? rotatedAt(x, e, from + i, invFreq, rd) : toF(x[e]);
    }
}

/** Sum over the warp of sum_r a[r] b[lane + 32 r]. */
__device__ __forceinline__ float warpDot(const float* a, const float* b) {
    float s = 0.0f;
#pragma unroll
    for (int r = 0; r < ATR_R; r++) s += a[r] * b[(threadIdx.x & 31) + 32 * r];
    return warpSum(s);
}

/** The last query that sees key j: min(L - 1, j + window) without overflow. */
__device__ __forceinline__ int lastQuery(int j, int L, int window) {
    return window >= L - 1 - j ? L - 1 : j + window;
}

/**
 * Forward. Grid (ceil(L / 16), H, batch), block 128: warp w owns queries q0 + 4 i + w (i < 4), each with its
 * rotated q, running max m, sum l and accumulator in registers; the block walks the keys its queries see in
 * tiles of 32 (rotated k and v in shared memory) with an online softmax, key by key in increasing order. Writes
 * out = acc / l and lse = m + log l.
 */
template <typename W, typename A>
__device__ void attentionTrainForward_impl(const A* qkv, A* out, float* lse, int L, int H, int dh, int window, int rd,
                                           double base, float scale) {
    __shared__ float invFreq[ATR_MAXD / 2];
    __shared__ float ks[ATR_TILE][ATR_MAXD];
    __shared__ float vs[ATR_TILE][ATR_MAXD];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int q0 = blockIdx.x * ATR_ROWS;
    const int head = blockIdx.y;
    const i64 row0 = (i64)blockIdx.z * L;
    const i64 d = (i64)H * dh;
    const i64 stride = 3 * d;
    const int qEnd = min(L, q0 + ATR_ROWS);
    zeroTile(ks);
    zeroTile(vs);
    rotaryInverseFrequencies(invFreq, rd, base);

    float qr[ATR_PER_WARP][ATR_R];
    float acc[ATR_PER_WARP][ATR_R];
    float m[ATR_PER_WARP];
    float l[ATR_PER_WARP];
#pragma unroll
    for (int i = 0; i < ATR_PER_WARP; i++) {
        const int t = q0 + i * ATR_WARPS + warp;
        const A* qp = qkv + (row0 + (t < L ? t : 0)) * stride + (i64)head * dh;
#pragma unroll
        for (int r = 0; r < ATR_R; r++) {
            const int e = lane + 32 * r;
            qr[i][r] = t < L && e < dh ? rotatedAt(qp, e, t, invFreq, rd) : 0.0f;
            acc[i][r] = 0.0f;
        }
        m[i] = -CUDART_INF_F;
        l[i] = 0.0f;
    }
    const int keyFirst = q0 - window > 0 ? q0 - window : 0;
    for (int k0 = keyFirst; k0 < qEnd; k0 += ATR_TILE) {
        const int k1 = min(qEnd, k0 + ATR_TILE);
        __syncthreads();  // the previous tile has been read
        loadTile(ks, qkv + d + (i64)head * dh, row0, stride, k0, k1, dh, true, invFreq, rd);
        loadTile(vs, qkv + 2 * d + (i64)head * dh, row0, stride, k0, k1, dh, false, invFreq, rd);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATR_PER_WARP; i++) {
            const int t = q0 + i * ATR_WARPS + warp;
            if (t >= L) continue;
            const int first = t - window > k0 ? t - window : k0;
            const int last = t < k1 - 1 ? t : k1 - 1;
            for (int j = first; j <= last; j++) {
                const float s = warpDot(qr[i], ks[j - k0]) * scale;
                if (s > m[i]) {
                    const float corr = expf(m[i] - s);  // 0 for the first key (m = -inf)
                    l[i] = l[i] * corr + 1.0f;
#pragma unroll
                    for (int r = 0; r < ATR_R; r++) acc[i][r] = acc[i][r] * corr + vs[j - k0][lane + 32 * r];
                    m[i] = s;
                } else {
                    const float p = expf(s - m[i]);
                    l[i] += p;
#pragma unroll
                    for (int r = 0; r < ATR_R; r++) acc[i][r] += p * vs[j - k0][lane + 32 * r];
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < ATR_PER_WARP; i++) {
        const int t = q0 + i * ATR_WARPS + warp;
        if (t >= L) continue;
        const float inv = 1.0f / l[i];
        A* o = out + (row0 + t) * d + (i64)head * dh;
#pragma unroll
        for (int r = 0; r < ATR_R; r++) {
            const int e = lane + 32 * r;
            if (e < dh) o[e] = fromF<A>(acc[i][r] * inv);
        }
        if (lane == 0) lse[(row0 + t) * H + head] = m[i] + logf(l[i]);
    }
}

/**
 * Backward, queries. Grid and block as the forward; warp w owns the same queries. Per query D = dout . out, and per
 * key it sees (tiles of 32 rotated keys and values): p = exp(scale q.k - lse), ds = p (dout . v - D) scale,
 * dq += ds k. At the end the rotation is undone (through shared memory) and dq is added into dqkv's q columns.
 */
template <typename W, typename A>
__device__ void attentionTrainBackwardQ_impl(const A* qkv, const A* out, const float* lse, const A* dout, A* dqkv,
                                             int L, int H, int dh, int window, int rd, double base, float scale) {
    __shared__ float invFreq[ATR_MAXD / 2];
    __shared__ float ks[ATR_TILE][ATR_MAXD];
    __shared__ float vs[ATR_TILE][ATR_MAXD];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int q0 = blockIdx.x * ATR_ROWS;
    const int head = blockIdx.y;
    const i64 row0 = (i64)blockIdx.z * L;
    const i64 d = (i64)H * dh;
    const i64 stride = 3 * d;
    const int qEnd = min(L, q0 + ATR_ROWS);
    zeroTile(ks);
    zeroTile(vs);
    rotaryInverseFrequencies(invFreq, rd, base);

    float qr[ATR_PER_WARP][ATR_R];
    float go[ATR_PER_WARP][ATR_R];
    float dq[ATR_PER_WARP][ATR_R];
    float D[ATR_PER_WARP];
    float ls[ATR_PER_WARP];
#pragma unroll
    for (int i = 0; i < ATR_PER_WARP; i++) {
        const int t = q0 + i * ATR_WARPS + warp;
        const i64 row = row0 + (t < L ? t : 0);
        const A* qp = qkv + row * stride + (i64)head * dh;
        const A* op = out + row * d + (i64)head * dh;
        const A* gp = dout + row * d + (i64)head * dh;
        float dot = 0.0f;
#pragma unroll
        for (int r = 0; r < ATR_R; r++) {
            const int e = lane + 32 * r;
            const bool in = t < L && e < dh;
            qr[i][r] = in ? rotatedAt(qp, e, t, invFreq, rd) : 0.0f;
            go[i][r] = in ? toF(gp[e]) : 0.0f;
            dot += in ? go[i][r] * toF(op[e]) : 0.0f;
            dq[i][r] = 0.0f;
        }
        D[i] = warpSum(dot);
        ls[i] = t < L ? lse[row * H + head] : 0.0f;
    }
    const int keyFirst = q0 - window > 0 ? q0 - window : 0;
    for (int k0 = keyFirst; k0 < qEnd; k0 += ATR_TILE) {
        const int k1 = min(qEnd, k0 + ATR_TILE);
        __syncthreads();
        loadTile(ks, qkv + d + (i64)head * dh, row0, stride, k0, k1, dh, true, invFreq, rd);
        loadTile(vs, qkv + 2 * d + (i64)head * dh, row0, stride, k0, k1, dh, false, invFreq, rd);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATR_PER_WARP; i++) {
            const int t = q0 + i * ATR_WARPS + warp;
            if (t >= L) continue;
            const int first = t - window > k0 ? t - window : k0;
            const int last = t < k1 - 1 ? t : k1 - 1;
            for (int j = first; j <= last; j++) {
                const float p = expf(warpDot(qr[i], ks[j - k0]) * scale - ls[i]);
                const float ds = p * (warpDot(go[i], vs[j - k0]) - D[i]) * scale;
#pragma unroll
                for (int r = 0; r < ATR_R; r++) dq[i][r] += ds * ks[j - k0][lane + 32 * r];
            }
        }
    }
    __syncthreads();  // ks is reused for the rotation back
#pragma unroll
    for (int i = 0; i < ATR_PER_WARP; i++) {
        const int slot = i * ATR_WARPS + warp;
#pragma unroll
        for (int r = 0; r < ATR_R; r++) ks[slot][lane + 32 * r] = dq[i][r];
    }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < ATR_PER_WARP; i++) {
        const int slot = i * ATR_WARPS + warp;
        const int t = q0 + slot;
        if (t >= L) continue;
        A* g = dqkv + (row0 + t) * stride + (i64)head * dh;
        for (int e = lane; e < dh; e += 32) g[e] = fromF<A>(toF(g[e]) + rotatedBackAt(ks[slot], e, t, invFreq, rd));
    }
}

/**
 * Backward, keys and values. Grid (ceil(L / 16), H, batch), block 128: warp w owns keys j0 + 4 i + w (rotated k,
 * v, dk and dv in registers); the block walks the queries that see them (j ..= min(L - 1, j + window)) in tiles of
 * 32 (rotated q, dout, D = dout . out and lse in shared memory): p = exp(scale q.k - lse), dv += p dout,
 * ds = p (dout . v - D) scale, dk += ds q. At the end dk's rotation is undone and both are added into dqkv.
 */
template <typename W, typename A>
__device__ void attentionTrainBackwardKV_impl(const A* qkv, const A* out, const float* lse, const A* dout, A* dqkv,
                                              int L, int H, int dh, int window, int rd, double base, float scale) {
    __shared__ float invFreq[ATR_MAXD / 2];
    __shared__ float qs[ATR_TILE][ATR_MAXD];
    __shared__ float gs[ATR_TILE][ATR_MAXD];
    __shared__ float Ds[ATR_TILE];
    __shared__ float lses[ATR_TILE];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int j0 = blockIdx.x * ATR_ROWS;
    const int head = blockIdx.y;
    const i64 row0 = (i64)blockIdx.z * L;
    const i64 d = (i64)H * dh;
    const i64 stride = 3 * d;
    const int jEnd = min(L, j0 + ATR_ROWS);
    zeroTile(qs);
    zeroTile(gs);
    rotaryInverseFrequencies(invFreq, rd, base);

    float kr[ATR_PER_WARP][ATR_R];
    float vr[ATR_PER_WARP][ATR_R];
    float dk[ATR_PER_WARP][ATR_R];
    float dv[ATR_PER_WARP][ATR_R];
#pragma unroll
    for (int i = 0; i < ATR_PER_WARP; i++) {
        const int j = j0 + i * ATR_WARPS + warp;
        const A* kp = qkv + (row0 + (j < L ? j : 0)) * stride + d + (i64)head * dh;
#pragma unroll
        for (int r = 0; r < ATR_R; r++) {
            const int e = lane + 32 * r;
            const bool in = j < L && e < dh;
            kr[i][r] = in ? rotatedAt(kp, e, j, invFreq, rd) : 0.0f;
            vr[i][r] = in ? toF(kp[d + e]) : 0.0f;
            dk[i][r] = 0.0f;
            dv[i][r] = 0.0f;
        }
    }
    const int queryLast = lastQuery(jEnd - 1, L, window);
    for (int t0 = j0; t0 <= queryLast; t0 += ATR_TILE) {
        const int t1 = min(queryLast + 1, t0 + ATR_TILE);
        __syncthreads();
        loadTile(qs, qkv + (i64)head * dh, row0, stride, t0, t1, dh, true, invFreq, rd);
        loadTile(gs, dout + (i64)head * dh, row0, d, t0, t1, dh, false, invFreq, rd);
        __syncthreads();
        for (int i = warp; i < t1 - t0; i += ATR_WARPS) {  // D = dout . out of each query of the tile
            const A* op = out + (row0 + t0 + i) * d + (i64)head * dh;
            float dot = 0.0f;
            for (int e = lane; e < dh; e += 32) dot += gs[i][e] * toF(op[e]);
            dot = warpSum(dot);
            if (lane == 0) {
                Ds[i] = dot;
                lses[i] = lse[(row0 + t0 + i) * H + head];
            }
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATR_PER_WARP; i++) {
            const int j = j0 + i * ATR_WARPS + warp;
            if (j >= L) continue;
            const int first = j > t0 ? j : t0;
            const int lastT = lastQuery(j, L, window);
            const int last = lastT < t1 - 1 ? lastT : t1 - 1;
            for (int t = first; t <= last; t++) {
                const int c = t - t0;
                const float p = expf(warpDot(kr[i], qs[c]) * scale - lses[c]);
                const float ds = p * (warpDot(vr[i], gs[c]) - Ds[c]) * scale;
#pragma unroll
                for (int r = 0; r < ATR_R; r++) {
                    dv[i][r] += p * gs[c][lane + 32 * r];
                    dk[i][r] += ds * qs[c][lane + 32 * r];
                }
            }
        }
    }
    __syncthreads();  // qs is reused for the rotation back
#pragma unroll
    for (int i = 0; i < ATR_PER_WARP; i++) {
        const int slot = i * ATR_WARPS + warp;
#pragma unroll
        for (int r = 0; r < ATR_R; r++) qs[slot][lane + 32 * r] = dk[i][r];
    }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < ATR_PER_WARP; i++) {
        const int slot = i * ATR_WARPS + warp;
        const int j = j0 + slot;
        if (j >= L) continue;
        A* g = dqkv + (row0 + j) * stride + d + (i64)head * dh;
        for (int e = lane; e < dh; e += 32) g[e] = fromF<A>(toF(g[e]) + rotatedBackAt(qs[slot], e, j, invFreq, rd));
#pragma unroll
        for (int r = 0; r < ATR_R; r++) {
            const int e = lane + 32 * r;
            if (e < dh) g[d + e] = fromF<A>(toF(g[d + e]) + dv[i][r]);
        }
    }
}

}  // namespace b4j

B4J_KERNEL(attentionTrainForward, ATR_THREADS,
           (const A* qkv, A* out, float* lse, int L, int H, int dh, int window, int rd, double base, float scale),
           (qkv, out, lse, L, H, dh, window, rd, base, scale))
B4J_KERNEL(attentionTrainBackwardQ, ATR_THREADS,
           (const A* qkv, const A* out, const float* lse, const A* dout, A* dqkv, int L, int H, int dh, int window,
            int rd, double base, float scale),
           (qkv, out, lse, dout, dqkv, L, H, dh, window, rd, base, scale))
B4J_KERNEL(attentionTrainBackwardKV, ATR_THREADS,
           (const A* qkv, const A* out, const float* lse, const A* dout, A* dqkv, int L, int H, int dh, int window,
            int rd, double base, float scale),
           (qkv, out, lse, dout, dqkv, L, H, dh, window, rd, base, scale))
