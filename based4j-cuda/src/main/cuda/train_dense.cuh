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
    embeddingBackwardAtomic_f32(const int* ids, const float* dout, float* dtable, int n, int d) { b4jPdlWait();
    const i64 total = (i64)n * d;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 i = idx / d;
        const i64 j = idx - i * d;
        atomicAdd(dtable + (i64)ids[i] * d + j, dout[idx]);
    }
}

/**
 * The deterministic form, as DenseOps.embeddingBackward: groups = G | starts[n + 1] | positions[n] (2 n + 2 ints,
 * whatever G, so that a recorded step's copy of it has one size), the positions of each distinct id in increasing
 * order (TrainKernels.embeddingGroups makes it on the host). One block per group (grid-strided, so any grid covers
 * them), threads over the columns; a group's positions are summed in order from zero and the sum is added to the
 * id's row, which no other group touches. No atomics.
 */
extern "C" __global__ void __launch_bounds__(256)
    embeddingBackwardGrouped_f32(const int* ids, const int* groups, int n, const float* dout, float* dtable, int d) {
    b4jPdlWait();
    const int G = groups[0];
    const int* starts = groups + 1;
    const int* positions = groups + n + 2;
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
    rmsNormWeightGrad_f32(const float* partial, float* dw, int parts, int d) { b4jPdlWait();
    for (i64 j = globalThread(); j < d; j += globalStride()) {
        float s = 0.0f;
        for (int p = 0; p < parts; p++) s += partial[(i64)p * d + j];
        dw[j] += s;
    }
}

// ------------------------------------------------------------------------------------------------ RMSNorm by rows

// The bf16 forms of rmsNormRstd and rmsNormBackward: one warp per row (8 rows per block), the row held in registers
// as Q float4 per lane (lane l holds the quads l, l + 32, ..: d <= 128 Q, d a multiple of 4), 16-byte loads, no
// block-wide synchronisation per row. Their float32 sums are taken in another order than the scalar kernels' (which
// the f32 precision keeps).

#define RMS_ROW_WARPS 8

/** Sum over a row held as Q float4 per lane: within a lane as a tree (absent quads are zero), then the warp. */
template <int Q>
__device__ __forceinline__ float rowSum(float* s) {
#pragma unroll
    for (int w = 1; w < Q; w *= 2) {
#pragma unroll
        for (int i = 0; i + w < Q; i += 2 * w) s[i] += s[i + w];
    }
    return warpSum(s[0]);
}

/**
 * rmsNormRstd (rstd may be null) by rows: sum of squares as a tree (each quad's squares in pairs, the quads of a lane,
 * then the lanes: at most 1 + 2 + log2 Q + 5 roundings in a chain), r and out = x r w as rmsNorm_impl. With ADD
 * (addInPlace then rmsNorm, the inference op addRmsNorm, for more rows than the one-block-a-row kernel takes), the
 * row is x + branch (float32, as addIntoVec adds), written to sum (x itself) before it is normed: the two ops'
 * results bit for bit, one pass over the residual instead of two.
 */
template <int Q, bool ADD, typename W, typename A>
__device__ void rmsNormRowsOf(const float* x, const A* branch, float* sum, const W* weight, A* out, float* rstd, int n,
                              int d, float eps) {
    const int lane = threadIdx.x & 31;
    const int quads = d >> 2;
    for (i64 row = (i64)blockIdx.x * RMS_ROW_WARPS + (threadIdx.x >> 5); row < n;
         row += (i64)gridDim.x * RMS_ROW_WARPS) {
        const float* xr = x + row * d;
        float4 v[Q];
        float ss[Q];
        // every load of the row first: with ADD, sum is x itself, and a store before a load would keep the load
        // behind it (one quad in flight a lane)
#pragma unroll
        for (int i = 0; i < Q; i++) {
            const int q = lane + 32 * i;
            v[i] = q < quads ? load4(xr + 4 * q) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
        if constexpr (ADD) {
            float4 b[Q];
#pragma unroll
            for (int i = 0; i < Q; i++) {
                const int q = lane + 32 * i;
                b[i] = q < quads ? load4(branch + row * d + 4 * q) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
#pragma unroll
            for (int i = 0; i < Q; i++) {
                const int q = lane + 32 * i;
                v[i] = make_float4(v[i].x + b[i].x, v[i].y + b[i].y, v[i].z + b[i].z, v[i].w + b[i].w);
                if (q < quads) store4(sum + row * d + 4 * q, v[i]);
            }
        }
#pragma unroll
        for (int i = 0; i < Q; i++) {
            ss[i] = (v[i].x * v[i].x + v[i].y * v[i].y) + (v[i].z * v[i].z + v[i].w * v[i].w);
        }
        const float total = rowSum<Q>(ss);
        const float r = (float)(1.0 / sqrt((double)(total / (float)d + eps)));
        if (rstd != nullptr && lane == 0) rstd[row] = r;
#pragma unroll
        for (int i = 0; i < Q; i++) {
            const int q = lane + 32 * i;
            if (q < quads) {
                const float4 w = load4(weight + 4 * q);
                store4(out + row * d + 4 * q,
                       make_float4(v[i].x * r * w.x, v[i].y * r * w.y, v[i].z * r * w.z, v[i].w * r * w.w));
            }
        }
    }
}

/**
 * rmsNormBackward by rows, with dout of type G (A or float) and, when dxCopy is given, the new dx also written
 * rounded to A (the operand the next product reads). Block b owns rows [b R, (b + 1) R), its warp w the rows
 * w, w + 8, ..; per row dot (a tree, as rmsNormRows) and dx as rmsNormBackward_impl. Each lane sums g x r of its
 * columns over its rows in order; the block adds its 8 warps' sums in warp order into partial[b * d + j]
 * (columnPartsSum_f32 then adds the blocks).
 */
template <int Q, typename W, typename A, typename G>
__device__ void rmsNormBackwardRows_impl(const float* x, const W* weight, const float* rstd, const G* dout, float* dx,
                                         A* dxCopy, float* partial, int n, int d, int rowsPerBlock) {
    __shared__ float4 sums[RMS_ROW_WARPS][32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int quads = d >> 2;
    const i64 first = (i64)blockIdx.x * rowsPerBlock;
    const i64 last = first + rowsPerBlock < n ? first + rowsPerBlock : n;
    float4 dw[Q];
#pragma unroll
    for (int i = 0; i < Q; i++) dw[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (i64 row = first + warp; row < last; row += RMS_ROW_WARPS) {
        const float r = rstd[row];
        float dot[Q];
#pragma unroll
        for (int i = 0; i < Q; i++) {
            const int q = lane + 32 * i;
            dot[i] = 0.0f;
            if (q < quads) {
                const float4 xv = load4(x + row * d + 4 * q);
                const float4 g = load4(dout + row * d + 4 * q);
                const float4 w = load4(weight + 4 * q);
                dot[i] = (g.x * w.x * xv.x + g.y * w.y * xv.y) + (g.z * w.z * xv.z + g.w * w.w * xv.w);
                dw[i].x += g.x * xv.x * r;
                dw[i].y += g.y * xv.y * r;
                dw[i].z += g.z * xv.z * r;
                dw[i].w += g.w * xv.w * r;
            }
        }
        const float c = r * r * rowSum<Q>(dot) / (float)d;
        if (dx != nullptr) {
            // x and dout read again (from the L1 cache, the warp having just read them) rather than kept: half the
            // registers, twice the warps a multiprocessor holds
#pragma unroll
            for (int i = 0; i < Q; i++) {
                const int q = lane + 32 * i;
                if (q < quads) {
                    const float4 xv = load4(x + row * d + 4 * q);
                    const float4 g = load4(dout + row * d + 4 * q);
                    const float4 w = load4(weight + 4 * q);
                    float* at = dx + row * d + 4 * q;
                    float4 v = load4(at);
                    v.x += r * (g.x * w.x - xv.x * c);
                    v.y += r * (g.y * w.y - xv.y * c);
                    v.z += r * (g.z * w.z - xv.z * c);
                    v.w += r * (g.w * w.w - xv.w * c);
                    store4(at, v);
                    if (dxCopy != nullptr) store4(dxCopy + row * d + 4 * q, v);
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < Q; i++) {
        if (32 * i >= quads) break;  // the same for the whole block
        sums[warp][lane] = dw[i];
        __syncthreads();
        const int q = lane + 32 * i;
        if (warp == 0 && q < quads) {
            float4 t = sums[0][lane];
            for (int w = 1; w < RMS_ROW_WARPS; w++) {
                const float4 u = sums[w][lane];
                t.x += u.x, t.y += u.y, t.z += u.z, t.w += u.w;
            }
            store4(partial + (i64)blockIdx.x * d + 4 * q, t);
        }
        __syncthreads();
    }
}

// ------------------------------------------------------------------------------------------------ column parts

#define PARTS_GROUPS 32

/**
 * out[j] += sum over p < parts of partial[p * cols + j], the second level of the blocked column sums (bias, RMSNorm
 * weight and tap gradients of the bf16 kernels). Block of 32 columns (lanes: a warp reads 128 contiguous bytes) x
 * 32 groups (warps); group g sums the parts g, g + 32, .. in order, four loads in flight, then warp 0 adds the 32
 * group sums in group order: deterministic, no atomics, and 32 times the parallelism of one thread per column.
 */
extern "C" __global__ void __launch_bounds__(32 * PARTS_GROUPS)
    columnPartsSum_f32(const float* partial, float* out, int parts, long long cols) { b4jPdlWait();
    __shared__ float sums[PARTS_GROUPS][33];
    const int lane = threadIdx.x & 31;
    const int group = threadIdx.x >> 5;
    const i64 j = (i64)blockIdx.x * 32 + lane;
    float s = 0.0f;
    if (j < cols) {
        int p = group;
        for (; p + 3 * PARTS_GROUPS < parts; p += 4 * PARTS_GROUPS) {
            const float a0 = partial[(i64)p * cols + j];
            const float a1 = partial[(i64)(p + PARTS_GROUPS) * cols + j];
            const float a2 = partial[(i64)(p + 2 * PARTS_GROUPS) * cols + j];
            const float a3 = partial[(i64)(p + 3 * PARTS_GROUPS) * cols + j];
            s += a0;
            s += a1;
            s += a2;
            s += a3;
        }
        for (; p < parts; p += PARTS_GROUPS) s += partial[(i64)p * cols + j];
    }
    sums[group][lane] = s;
    __syncthreads();
    if (group == 0 && j < cols) {
        float total = 0.0f;
        for (int g = 0; g < PARTS_GROUPS; g++) total += sums[g][lane];
        out[j] += total;
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

/**
 * columnSumPartial for m a multiple of 8: block (bx, p) sums columns bx*256 .. + 256 of rows [p R, (p + 1) R);
 * lane l takes 8 columns (16-byte loads), warp w the rows w, w + 8, .. in order; the 8 warps' sums are added in
 * warp order into partial[p * m + j]. columnPartsSum_f32 then adds the parts.
 */
template <typename W, typename A>
__device__ void columnSumVec_impl(const A* x, float* partial, int n, int m, int rowsPerPart) {
    __shared__ float sums[8][257];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int col = (blockIdx.x * 32 + lane) * 8;
    const i64 first = (i64)blockIdx.y * rowsPerPart;
    const i64 last = first + rowsPerPart < n ? first + rowsPerPart : n;
    float s[8];
#pragma unroll
    for (int i = 0; i < 8; i++) s[i] = 0.0f;
    if (col < m) {
#pragma unroll 4
        for (i64 row = first + warp; row < last; row += 8) {
            float v[8];
            load8(x + row * m + col, v);
#pragma unroll
            for (int i = 0; i < 8; i++) s[i] += v[i];
        }
    }
#pragma unroll
    for (int i = 0; i < 8; i++) sums[warp][lane * 8 + i] = s[i];
    __syncthreads();
    const int j = blockIdx.x * 256 + threadIdx.x;
    if (j < m) {
        float total = 0.0f;
        for (int w = 0; w < 8; w++) total += sums[w][threadIdx.x];
        partial[(i64)blockIdx.y * m + j] = total;
    }
}

// ------------------------------------------------------------------------------------------------ SwiGLU

/**
 * The SwiGLU gradients of one element (DenseOps.swigluBackward), added into dValue and dGate: with value y, gate g,
 * s = sigmoid(g) recomputed and output gradient go: dValue += go g s, dGate += go y s (1 + g (1 - s)). The same
 * float32 expressions as swigluBackward_impl, which keeps its own copy so that its machine code stays as it was.
 */
__device__ __forceinline__ void swigluGrads(float y, float g, float go, float& dValue, float& dGate) {
    const float s = 1.0f / (1.0f + expf(-g));
    dValue += go * g * s;
    dGate += go * y * s * (1.0f + g * (1.0f - s));
}

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

/**
 * swigluBackward with dout and da of type A (bf16: the training pass's buffers, read and rounded back in place of
 * converting them to float32 and back, which gives the same values). flags bit 0, vector (h a multiple of 8,
 * pointers 16-byte aligned): 8 columns a thread, 16-byte accesses; otherwise one element a thread. Bit 1,
 * overwrite: da = the gradient (da is not read), else da += the gradient.
 */
template <typename W, typename A>
__device__ void swigluBackwardVec_impl(const A* a, const A* dout, A* da, int n, int h, int flags) {
    const bool overwrite = (flags & 2) != 0;
    if ((flags & 1) == 0) {
        const i64 total = (i64)n * h;
        GridCursor at(globalThread(), h, globalStride());
        for (i64 idx = globalThread(); idx < total; idx += globalStride(), at.next(h)) {
            const i64 value = at.row * 2 * h + at.col;
            float dv = overwrite ? 0.0f : toF(da[value]), dg = overwrite ? 0.0f : toF(da[value + h]);
            swigluGrads(toF(a[value]), toF(a[value + h]), toF(dout[idx]), dv, dg);
            da[value] = fromF<A>(dv);
            da[value + h] = fromF<A>(dg);
        }
        return;
    }
    const int perRow = h >> 3;
    const i64 vectors = (i64)n * perRow;
    GridCursor at(globalThread(), perRow, globalStride());
    for (i64 v = globalThread(); v < vectors; v += globalStride(), at.next(perRow)) {
        const i64 value = at.row * 2 * h + 8 * at.col;
        float y[8], g[8], go[8], dv[8], dg[8];
        load8(a + value, y);
        load8(a + value + h, g);
        load8(dout + 8 * v, go);
        if (overwrite) {
#pragma unroll
            for (int i = 0; i < 8; i++) dv[i] = dg[i] = 0.0f;
        } else {
            load8(da + value, dv);
            load8(da + value + h, dg);
        }
#pragma unroll
        for (int i = 0; i < 8; i++) swigluGrads(y[i], g[i], go[i], dv[i], dg[i]);
        store8(da + value, dv);
        store8(da + value + h, dg);
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
B4J_KERNEL(columnSumVec, 256, (const A* x, float* partial, int n, int m, int rowsPerPart),
           (x, partial, n, m, rowsPerPart))
B4J_KERNEL(swigluBackwardVec, 256, (const A* a, const A* dout, A* da, int n, int h, int flags),
           (a, dout, da, n, h, flags))

// The row kernels of RMSNorm for d <= 1024 (Q 8) and d <= 2048 (Q 16), in bf16 only; the backward with dout of
// type A (rmsNormBackwardRowsQ) or float (rmsNormBackwardRowsFQ). The backward, bound by memory, is held to the
// registers that let 4 blocks (Q 8) or 2 (Q 16) share a multiprocessor (io.based4j.cuda.TrainKernels launches that
// many blocks a multiprocessor): more rows in flight.
#define RMS_BACKWARD_BLOCKS_PER_SM(Q) ((Q) <= 8 ? 4 : 2)
#define B4J_RMS_ROWS(Q)                                                                                              \
    namespace b4j_bf16 {                                                                                             \
    extern "C" __global__ void __launch_bounds__(256)                                                                \
        rmsNormRows##Q##_bf16(const float* x, const W* weight, A* out, float* rstd, int n, int d, float eps) {       \
        b4jPdlWait();                                                                                                \
        b4j::rmsNormRowsOf<Q, false, W, A>(x, nullptr, nullptr, weight, out, rstd, n, d, eps);                      \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(256)                                                                \
        addRmsNormRows##Q##_bf16(float* x, const A* branch, const W* weight, A* out, int n, int d, float eps) {      \
        b4jPdlWait();                                                                                                \
        b4j::rmsNormRowsOf<Q, true, W, A>(x, branch, x, weight, out, nullptr, n, d, eps);                           \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(256, RMS_BACKWARD_BLOCKS_PER_SM(Q))                                 \
        rmsNormBackwardRows##Q##_bf16(const float* x, const W* weight, const float* rstd, const A* dout, float* dx,  \
                                      A* dxCopy, float* partial, int n, int d, int rowsPerBlock) {                   \
        b4jPdlWait();                                                                                                \
        b4j::rmsNormBackwardRows_impl<Q, W, A, A>(x, weight, rstd, dout, dx, dxCopy, partial, n, d, rowsPerBlock);   \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(256, RMS_BACKWARD_BLOCKS_PER_SM(Q))                                 \
        rmsNormBackwardRowsF##Q##_bf16(const float* x, const W* weight, const float* rstd, const float* dout,        \
                                       float* dx, A* dxCopy, float* partial, int n, int d, int rowsPerBlock) {       \
        b4jPdlWait();                                                                                                \
        b4j::rmsNormBackwardRows_impl<Q, W, A, float>(x, weight, rstd, dout, dx, dxCopy, partial, n, d,              \
                                                      rowsPerBlock);                                                 \
    }                                                                                                                \
    }
B4J_RMS_ROWS(8)
B4J_RMS_ROWS(16)
