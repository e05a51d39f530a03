// Training kernels of Taylor linear attention in the recurrent form, for heads wider than the chunked kernels of
// train_linear.cuh take (included by based4j_kernels.cu; launched by io.based4j.cuda.RecurrentLinearTrain): the
// forward over whole sequences and its backward, computing in float32 what io.based4j.train.cpu.LinearAttentionOps
// computes in float64. They run the recurrent form (token by token, state S = sum phi(k) v^T and z = sum phi(k) in shared memory); the
// reference is chunked: the two agree up to rounding. phi is the merged Taylor map of featurize (E features). A
// training pass is batch sequences of L tokens packed as batch x L rows, each starting from an empty state; q, k,
// v, out, dout, dq, dk and dv are of type A; backward outputs are ADDED into (+=). Launch shapes and the scratch
// layout: io.based4j.cuda.MixerTrainKernels.
//
// Every kernel here runs one block of 256 threads per (sequence, head, tile of dt value columns): grid
// (batch, H, ceil(dh / dt)), dt in {8, 16, 32}. Thread (g, e) = (tid / dt, tid % dt) owns column e of the tile and
// the feature rows a = g, g + G, .. (G = 256 / dt). Sums over a block are taken in a fixed order: deterministic.
#pragma once

namespace b4j {

/** The shared memory of the linear-attention training kernels, carved from one dynamic array. */
struct LinTrainSmem {
    float* S;     // [E][dt] the state tile S (forward scans) or dS (reverse scan)
    float* z;     // [E] z or dz
    float* pk;    // [E] phi(k_t)
    float* pq;    // [E] phi(q_t)
    float* dphi;  // [E] gradient with respect to phi(q_t) or phi(k_t)
    float* vs;    // [dt] v_t's columns of the tile
    float* gs;    // [dt] g_t = dout_t / D_t on the tile's columns
    float* xk;    // [f]
    float* xq;    // [f]
    float* red;   // [threads] partial sums over feature rows
    float* scal;  // [4] per-token scalars: D_t, r_t
};

/** Floats of dynamic shared memory of the training kernels (mirrored by MixerTrainKernels.linearSharedFloats). */
__host__ __device__ __forceinline__ int linearTrainSmemFloats(int f, int dt, int threads) {
    const int e = 1 + f + f * (f + 1) / 2;
    return e * dt + 4 * e + 2 * dt + 2 * f + threads + 4;
}

__device__ __forceinline__ LinTrainSmem linTrainSmem(float* smem, int E, int f, int dt) {
    LinTrainSmem m;
    m.S = smem;
    m.z = m.S + E * dt;
    m.pk = m.z + E;
    m.pq = m.pk + E;
    m.dphi = m.pq + E;
    m.vs = m.dphi + E;
    m.gs = m.vs + dt;
    m.xk = m.gs + dt;
    m.xq = m.xk + f;
    m.red = m.xq + f;
    m.scal = m.red + blockDim.x;
    return m;
}

/** Loads token row's q and k features and its v (and, if dout is given, g's numerators) on the tile's columns. */
template <typename A>
__device__ __forceinline__ void linLoad(const A* q, const A* k, const A* v, const A* dout, i64 row, int head, int H,
                                        int f, int dh, int e0, int cols, int dt, const LinTrainSmem& m) {
    const i64 qkCols = (i64)H * f;
    const i64 vCols = (i64)H * dh;
    for (int i = threadIdx.x; i < f; i += blockDim.x) {
        m.xk[i] = toF(k[row * qkCols + (i64)head * f + i]);
        m.xq[i] = toF(q[row * qkCols + (i64)head * f + i]);
    }
    for (int c = threadIdx.x; c < dt; c += blockDim.x) {
        const bool in = c < cols;
        m.vs[c] = in ? toF(v[row * vCols + (i64)head * dh + e0 + c]) : 0.0f;
        if (dout != nullptr) m.gs[c] = in ? toF(dout[row * vCols + (i64)head * dh + e0 + c]) : 0.0f;
    }
}

/**
 * One token of the forward recurrence (after linLoad and a barrier): phi(k), phi(q); z += phi(k);
 * S += phi(k) v^T; red[tid] = thread (g, e)'s part of num_e = sum_a phi(q)_a S[a, e]. Ends with a barrier.
 */
__device__ __forceinline__ void linAdvance(const LinTrainSmem& m, int E, int f, int dt, Taylor tc) {
    featurize(m.xk, f, tc, m.pk);
    featurize(m.xq, f, tc, m.pq);
    __syncthreads();
    for (int a = threadIdx.x; a < E; a += blockDim.x) m.z[a] += m.pk[a];
    const int G = blockDim.x / dt;
    const int e = threadIdx.x % dt;
    float num = 0.0f;
    for (int a = threadIdx.x / dt; a < E; a += G) {
        const float s = m.S[a * dt + e] + m.pk[a] * m.vs[e];
        m.S[a * dt + e] = s;
        num += m.pq[a] * s;
    }
    m.red[threadIdx.x] = num;
    __syncthreads();
}

/** Warp 0 only: phi(q).z summed by the warp (lane a, a + 32, .., then the butterfly). */
__device__ __forceinline__ float linDen(const LinTrainSmem& m, int E) {
    float den = 0.0f;
    for (int a = threadIdx.x; a < E; a += 32) den += m.pq[a] * m.z[a];
    return warpSum(den);
}

/** num_e for column e of the tile (e < dt): the partial sums of red in row-group order. */
__device__ __forceinline__ float linNum(const LinTrainSmem& m, int e, int dt) {
    const int G = blockDim.x / dt;
    float acc = 0.0f;
    for (int g = 0; g < G; g++) acc += m.red[g * dt + e];
    return acc;
}

/**
 * dx_i = (J^T dphi)_i for the merged Taylor map at x (f values, shared memory), thread i of the block (i < f):
 * dphi[1 + i] f^-1/4 + 2 x_i dphi[ii] / sqrt(2f) + sum_{j != i} dphi[ij] x_j / sqrt(f).
 */
__device__ __forceinline__ float featurizeBackward(const float* x, const float* dphi, int f, Taylor tc, int i) {
    const float xi = x[i];
    float dx = dphi[1 + i] * tc.lin;
    const float* rowi = dphi + 1 + f + i * f - i * (i - 1) / 2;  // features x_i x_j, j >= i
    dx += 2.0f * xi * tc.diag * rowi[0];
    for (int j = i + 1; j < f; j++) dx += tc.cross * rowi[j - i] * x[j];
    for (int j = 0; j < i; j++) {
        const float* rowj = dphi + 1 + f + j * f - j * (j - 1) / 2;
        dx += tc.cross * rowj[i - j] * x[j];
    }
    return dx;
}

/** Common setup of a block: zeroes the state tile and z. */
__device__ __forceinline__ void linZero(const LinTrainSmem& m, int E, int dt) {
    for (int i = threadIdx.x; i < E * dt; i += blockDim.x) m.S[i] = 0.0f;
    for (int a = threadIdx.x; a < E; a += blockDim.x) m.z[a] = 0.0f;
    __syncthreads();
}

/** Forward: y_t = phi(q_t).S_t / (phi(q_t).z_t + eps), S_t and z_t including token t. */
template <typename W, typename A>
__device__ void linearAttentionTrainForward_impl(const A* q, const A* k, const A* v, A* out, int L, int H, int f,
                                                 int dh, float eps, int dt) {
    extern __shared__ float smem[];
    const int E = expandedDim(f);
    const LinTrainSmem m = linTrainSmem(smem, E, f, dt);
    const Taylor tc = taylorOf(f);
    const int head = blockIdx.y;
    const int e0 = blockIdx.z * dt;
    const int cols = min(dt, dh - e0);
    const i64 row0 = (i64)blockIdx.x * L;
    linZero(m, E, dt);
    for (int t = 0; t < L; t++) {
        const i64 row = row0 + t;
        linLoad<A>(q, k, v, nullptr, row, head, H, f, dh, e0, cols, dt, m);
        __syncthreads();
        linAdvance(m, E, f, dt, tc);
        if (threadIdx.x < 32) {
            const float den = linDen(m, E);
            if (threadIdx.x < cols) {
                const float inv = 1.0f / (den + eps);
                out[row * H * (i64)dh + (i64)head * dh + e0 + threadIdx.x] = fromF<A>(linNum(m, threadIdx.x, dt) * inv);
            }
        }
        __syncthreads();
    }
}

/**
 * Backward pass 1: the forward recurrence again, writing per token the tile's part of dout_t . y_t into
 * P[tile][row * H + head] (float32 scratch; pass 2 and 3 sum the tiles in order).
 */
template <typename W, typename A>
__device__ void linearAttentionTrainBackwardDots_impl(const A* q, const A* k, const A* v, const A* dout, float* P,
                                                      int L, int H, int f, int dh, float eps, int dt) {
    extern __shared__ float smem[];
    const int E = expandedDim(f);
    const LinTrainSmem m = linTrainSmem(smem, E, f, dt);
    const Taylor tc = taylorOf(f);
    const int head = blockIdx.y;
    const int e0 = blockIdx.z * dt;
    const int cols = min(dt, dh - e0);
    const i64 row0 = (i64)blockIdx.x * L;
    const i64 NH = (i64)gridDim.x * L * H;
    linZero(m, E, dt);
    for (int t = 0; t < L; t++) {
        const i64 row = row0 + t;
        linLoad<A>(q, k, v, dout, row, head, H, f, dh, e0, cols, dt, m);
        __syncthreads();
        linAdvance(m, E, f, dt, tc);
        if (threadIdx.x < 32) {
            const float den = linDen(m, E);
            const float inv = 1.0f / (den + eps);
            const float part = threadIdx.x < cols ? m.gs[threadIdx.x] * (linNum(m, threadIdx.x, dt) * inv) : 0.0f;
            const float dot = warpSum(part);
            if (threadIdx.x == 0) P[blockIdx.z * NH + row * H + head] = dot;
        }
        __syncthreads();
    }
}

/** r_t = -(dout_t . y_t) / D_t from the tiles' parts of the dot, summed in tile order. */
__device__ __forceinline__ float linR(const float* P, int tiles, i64 NH, i64 cell, float D) {
    float dot = 0.0f;
    for (int tt = 0; tt < tiles; tt++) dot += P[tt * NH + cell];
    return -dot / D;
}

/**
 * Backward pass 2: the forward recurrence again; per token D_t = phi(q).z + eps (written to Dbuf by tile 0),
 * r_t, g_t = dout_t / D_t, the tile's part of dphi(q_t) = S_t g_t (+ z_t r_t on tile 0), and its image through
 * the feature map's transposed Jacobian into dqPart[tile][row][head * f + i].
 */
template <typename W, typename A>
__device__ void linearAttentionTrainBackwardQ_impl(const A* q, const A* k, const A* v, const A* dout, const float* P,
                                                   float* Dbuf, float* dqPart, int L, int H, int f, int dh,
                                                   float eps, int dt) {
    extern __shared__ float smem[];
    const int E = expandedDim(f);
    const LinTrainSmem m = linTrainSmem(smem, E, f, dt);
    const Taylor tc = taylorOf(f);
    const int head = blockIdx.y;
    const int tile = blockIdx.z;
    const int tiles = gridDim.z;
    const int e0 = tile * dt;
    const int cols = min(dt, dh - e0);
    const i64 row0 = (i64)blockIdx.x * L;
    const i64 NH = (i64)gridDim.x * L * H;
    linZero(m, E, dt);
    for (int t = 0; t < L; t++) {
        const i64 row = row0 + t;
        const i64 cell = row * H + head;
        linLoad<A>(q, k, v, dout, row, head, H, f, dh, e0, cols, dt, m);
        __syncthreads();
        linAdvance(m, E, f, dt, tc);
        if (threadIdx.x < 32) {
            const float D = linDen(m, E) + eps;
            if (threadIdx.x == 0) {
                m.scal[0] = D;
                m.scal[1] = linR(P, tiles, NH, cell, D);
                if (tile == 0) Dbuf[cell] = D;
            }
        }
        __syncthreads();
        const float D = m.scal[0];
        const float r = m.scal[1];
        for (int c = threadIdx.x; c < dt; c += blockDim.x) m.gs[c] = m.gs[c] / D;
        __syncthreads();
        for (int a = threadIdx.x; a < E; a += blockDim.x) {
            float s = tile == 0 ? m.z[a] * r : 0.0f;
            for (int c = 0; c < cols; c++) s += m.S[a * dt + c] * m.gs[c];
            m.dphi[a] = s;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < f; i += blockDim.x)
            dqPart[tile * NH * f + cell * f + i] = featurizeBackward(m.xq, m.dphi, f, tc, i);
        __syncthreads();
    }
}

/**
 * Backward pass 3, the reverse scan: dS = sum_{t >= s} phi(q_t) g_t^T and dz = sum_{t >= s} phi(q_t) r_t over
 * t = L-1 .. 0 (D_t from Dbuf); at each token s, dv_s += dS^T phi(k_s) on the tile's columns (complete: added into
 * dv), and the tile's part of dphi(k_s) = dS v_s (+ dz on tile 0) through the transposed Jacobian into
 * dkPart[tile][row][head * f + i].
 */
template <typename W, typename A>
__device__ void linearAttentionTrainBackwardKV_impl(const A* q, const A* k, const A* v, const A* dout, const float* P,
                                                    const float* Dbuf, float* dkPart, A* dv, int L, int H, int f,
                                                    int dh, int dt) {
    extern __shared__ float smem[];
    const int E = expandedDim(f);
    const LinTrainSmem m = linTrainSmem(smem, E, f, dt);
    const Taylor tc = taylorOf(f);
    const int head = blockIdx.y;
    const int tile = blockIdx.z;
    const int tiles = gridDim.z;
    const int e0 = tile * dt;
    const int cols = min(dt, dh - e0);
    const i64 row0 = (i64)blockIdx.x * L;
    const i64 NH = (i64)gridDim.x * L * H;
    const int G = blockDim.x / dt;
    const int e = threadIdx.x % dt;
    float* dS = m.S;
    float* dz = m.z;
    linZero(m, E, dt);
    for (int t = L - 1; t >= 0; t--) {
        const i64 row = row0 + t;
        const i64 cell = row * H + head;
        linLoad<A>(q, k, v, dout, row, head, H, f, dh, e0, cols, dt, m);
        __syncthreads();
        featurize(m.xk, f, tc, m.pk);
        featurize(m.xq, f, tc, m.pq);
        const float D = Dbuf[cell];
        const float r = linR(P, tiles, NH, cell, D);
        for (int c = threadIdx.x; c < dt; c += blockDim.x) m.gs[c] = m.gs[c] / D;
        __syncthreads();
        for (int a = threadIdx.x; a < E; a += blockDim.x) dz[a] += m.pq[a] * r;
        float dvPart = 0.0f;
        for (int a = threadIdx.x / dt; a < E; a += G) {
            const float s = dS[a * dt + e] + m.pq[a] * m.gs[e];
            dS[a * dt + e] = s;
            dvPart += m.pk[a] * s;
        }
        m.red[threadIdx.x] = dvPart;
        __syncthreads();
        if (threadIdx.x < cols) {
            A* o = dv + row * H * (i64)dh + (i64)head * dh + e0 + threadIdx.x;
            *o = fromF<A>(toF(*o) + linNum(m, threadIdx.x, dt));
        }
        for (int a = threadIdx.x; a < E; a += blockDim.x) {
            float s = tile == 0 ? dz[a] : 0.0f;
            for (int c = 0; c < cols; c++) s += dS[a * dt + c] * m.vs[c];
            m.dphi[a] = s;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < f; i += blockDim.x)
            dkPart[tile * NH * f + cell * f + i] = featurizeBackward(m.xk, m.dphi, f, tc, i);
        __syncthreads();
    }
}

/** Backward pass 4, elementwise over N x H f: dq += sum of the tiles' parts (in tile order), the same for dk. */
template <typename W, typename A>
__device__ void linearAttentionTrainBackwardReduce_impl(const float* dqPart, const float* dkPart, A* dq, A* dk,
                                                        long long count, int tiles) {
    for (i64 idx = globalThread(); idx < count; idx += globalStride()) {
        float sq = 0.0f;
        float sk = 0.0f;
        for (int tt = 0; tt < tiles; tt++) {
            sq += dqPart[tt * count + idx];
            sk += dkPart[tt * count + idx];
        }
        dq[idx] = fromF<A>(toF(dq[idx]) + sq);
        dk[idx] = fromF<A>(toF(dk[idx]) + sk);
    }
}

}  // namespace b4j

B4J_KERNEL(linearAttentionTrainForward, 256,
           (const A* q, const A* k, const A* v, A* out, int L, int H, int f, int dh, float eps, int dt),
           (q, k, v, out, L, H, f, dh, eps, dt))
B4J_KERNEL(linearAttentionTrainBackwardDots, 256,
           (const A* q, const A* k, const A* v, const A* dout, float* P, int L, int H, int f, int dh, float eps,
            int dt),
           (q, k, v, dout, P, L, H, f, dh, eps, dt))
B4J_KERNEL(linearAttentionTrainBackwardQ, 256,
           (const A* q, const A* k, const A* v, const A* dout, const float* P, float* Dbuf, float* dqPart, int L,
            int H, int f, int dh, float eps, int dt),
           (q, k, v, dout, P, Dbuf, dqPart, L, H, f, dh, eps, dt))
B4J_KERNEL(linearAttentionTrainBackwardKV, 256,
           (const A* q, const A* k, const A* v, const A* dout, const float* P, const float* Dbuf, float* dkPart,
            A* dv, int L, int H, int f, int dh, int dt),
           (q, k, v, dout, P, Dbuf, dkPart, dv, L, H, f, dh, dt))
B4J_KERNEL(linearAttentionTrainBackwardReduce, 256,
           (const float* dqPart, const float* dkPart, A* dq, A* dk, long long count, int tiles),
           (dqPart, dkPart, dq, dk, count, tiles))
