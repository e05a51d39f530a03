// Vector memory access for the bandwidth-bound kernels (included by based4j_kernels.cu), and the vectorised forms of
// the elementwise ops of based4j_kernels.cu: each thread moves 8 values per step (16 bytes of bf16, 32 of float) so
// that a warp's access is whole, aligned 128-byte lines, and walks rows and columns without a division per step.
// Each kernel here computes, element by element, the same float32 expression as its scalar original, so the results
// are the same. Java launches the bf16 instantiations, and addIntoVec_f32 (float32 into float32) in either
// precision, where the pointers are 16-byte aligned and the widths of row ops multiples of 8 (io.based4j.cuda.Kernels);
// the counts may be anything (a tail after the last whole vector is done one value a thread).
#pragma once

namespace b4j {

typedef __nv_bfloat16 bf16;

/** The 8 bf16 values of a 16-byte piece as floats. */
__device__ __forceinline__ void unpack8(const uint4& raw, float* v) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 f = __bfloat1622float2(h[i]);
        v[2 * i] = f.x;
        v[2 * i + 1] = f.y;
    }
}

/** Value e (0 .. 7, a constant where unrolled) of the 8 bf16 values of a 16-byte piece, as a float. */
__device__ __forceinline__ float bf16At(const uint4& raw, int e) {
    const unsigned word = e < 2 ? raw.x : e < 4 ? raw.y : e < 6 ? raw.z : raw.w;
    return __uint_as_float((e & 1) ? (word & 0xffff0000u) : (word << 16));
}

/** 8 consecutive values at p (16-byte aligned) as floats. */
__device__ __forceinline__ void load8(const bf16* p, float* v) {
    unpack8(*reinterpret_cast<const uint4*>(p), v);
}

__device__ __forceinline__ void load8(const float* p, float* v) {
    const float4 a = reinterpret_cast<const float4*>(p)[0];
    const float4 b = reinterpret_cast<const float4*>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
    v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

/** Stores 8 floats at p (16-byte aligned), bf16 rounded to nearest even as fromF. */
__device__ __forceinline__ void store8(bf16* p, const float* v) {
    uint4 raw;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
    *reinterpret_cast<uint4*>(p) = raw;
}

__device__ __forceinline__ void store8(float* p, const float* v) {
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

/** 4 consecutive values at p (8-byte aligned for bf16, 16 for float) as a float4. */
__device__ __forceinline__ float4 load4(const bf16* p) {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
    return make_float4(a.x, a.y, b.x, b.y);
}

__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }

__device__ __forceinline__ void store4(bf16* p, float4 v) {
    uint2 raw;
    *reinterpret_cast<__nv_bfloat162*>(&raw.x) = __floats2bfloat162_rn(v.x, v.y);
    *reinterpret_cast<__nv_bfloat162*>(&raw.y) = __floats2bfloat162_rn(v.z, v.w);
    *reinterpret_cast<uint2*>(p) = raw;
}

__device__ __forceinline__ void store4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }

/**
 * o[e] = bf16(o[e] + v[e]) for e < 8, each sum rounded once; one 16-byte read and write where {@code wide} (o then
 * 16-byte aligned), else element by element (the same numbers).
 */
__device__ __forceinline__ void addInto8(bf16* o, const float* v, bool wide) {
    if (wide) {
        uint4 old = *reinterpret_cast<const uint4*>(o);
        __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&old);
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float2 f = __bfloat1622float2(h[e]);
            h[e] = __floats2bfloat162_rn(f.x + v[2 * e], f.y + v[2 * e + 1]);
        }
        *reinterpret_cast<uint4*>(o) = old;
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = __float2bfloat16_rn(__bfloat162float(o[e]) + v[e]);
    }
}

/**
 * The (row, column) of a grid-stride loop over the cells of an [rows, cols] grid, advanced by the loop's stride with
 * one comparison per step instead of a division (the one division is made once, when it starts).
 */
struct GridCursor {
    i64 row;
    int col;
    i64 rowStep;
    int colStep;

    __device__ __forceinline__ GridCursor(i64 first, int cols, i64 stride) {
        if (((first | stride) >> 32) == 0) {  // the usual case: 32-bit divisions, a few instructions each
            const unsigned f = (unsigned)first, s = (unsigned)stride, c = (unsigned)cols;
            const unsigned r = f / c, rs = s / c;
            row = r;
            col = (int)(f - r * c);
            rowStep = rs;
            colStep = (int)(s - rs * c);
        } else {
            row = first / cols;
            col = (int)(first - row * cols);
            rowStep = stride / cols;
            colStep = (int)(stride - rowStep * cols);
        }
    }

    __device__ __forceinline__ void next(int cols) {
        row += rowStep;
        col += colStep;
        if (col >= cols) {
            col -= cols;
            row++;
        }
    }
};

// ------------------------------------------------------------------------------------------------ elementwise

/** acc += x over count values (any count: 8 at a time, then the tail one by one); x of type S (A or float). */
template <typename S>
__device__ void addIntoValues(float* acc, const S* x, i64 count) {
    const i64 vectors = count >> 3;
    for (i64 v = globalThread(); v < vectors; v += globalStride()) {
        float a[8], b[8];
        load8(acc + 8 * v, a);
        load8(x + 8 * v, b);
#pragma unroll
        for (int i = 0; i < 8; i++) a[i] += b[i];
        store8(acc + 8 * v, a);
    }
    for (i64 i = 8 * vectors + globalThread(); i < count; i += globalStride()) acc[i] += toF(x[i]);
}

/** dst = src converted (float to A or A to float), any count. */
template <typename S, typename D>
__device__ void convertValues(const S* src, D* dst, i64 count) {
    const i64 vectors = count >> 3;
    for (i64 v = globalThread(); v < vectors; v += globalStride()) {
        float a[8];
        load8(src + 8 * v, a);
        store8(dst + 8 * v, a);
    }
    for (i64 i = 8 * vectors + globalThread(); i < count; i += globalStride()) dst[i] = fromF<D>(toF(src[i]));
}

/** out[i, j] += bias[j], out [n, m] of type O (A or float), m a multiple of 8. */
template <typename W, typename O>
__device__ void addBiasRows(O* out, const W* bias, int n, int m) {
    const int perRow = m >> 3;
    const i64 vectors = (i64)n * perRow;
    GridCursor at(globalThread(), perRow, globalStride());
    for (i64 v = globalThread(); v < vectors; v += globalStride(), at.next(perRow)) {
        float o[8], b[8];
        load8(out + 8 * v, o);
        load8(bias + 8 * at.col, b);
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] += b[i];
        store8(out + 8 * v, o);
    }
}

/** out = a[:, :h] * silu(a[:, h:]) as swiglu_impl, h a multiple of 8. */
template <typename W, typename A>
__device__ void swigluVec_impl(const A* a, A* out, int n, int h) {
    const int perRow = h >> 3;
    const i64 vectors = (i64)n * perRow;
    GridCursor at(globalThread(), perRow, globalStride());
    for (i64 v = globalThread(); v < vectors; v += globalStride(), at.next(perRow)) {
        const A* value = a + at.row * 2 * h + 8 * at.col;
        float y[8], g[8];
        load8(value, y);
        load8(value + h, g);
#pragma unroll
        for (int i = 0; i < 8; i++) y[i] = y[i] * silu(g[i]);
        store8(out + 8 * v, y);
    }
}

/** Taps of BaseConv's kernel up to which its decode step has the vector form (the history held in registers). */
#define CONV_VEC_TAPS 4

/**
 * The K taps of channels c .. c + 7 of BaseConv's kernel convW [inner, K] (bf16) into ws[j][i] (tap j of channel c +
 * i): 8 K consecutive values from value c K, read as K pieces of 8 (16 bytes each, aligned where convW is, as c is a
 * multiple of 8).
 */
template <int K, typename W>
__device__ __forceinline__ void convTaps8(const W* convW, int c, float (&ws)[CONV_VEC_TAPS][8]) {
    float t[K][8];
#pragma unroll
    for (int j = 0; j < K; j++) load8(convW + (i64)c * K + 8 * j, t[j]);
#pragma unroll
    for (int i = 0; i < 8; i++) {
#pragma unroll
        for (int j = 0; j < K; j++) ws[j][i] = t[(i * K + j) >> 3][(i * K + j) & 7];
    }
}

/**
 * Version 2 of BaseConv's decode step (the kernel workbench's; the backend takes version 3, baseConvStepVecK): 8
 * channels a thread, the token's u1 and gate, the history and the output (all of type A) moved 16 bytes at a time (32
 * in float32), every load before the first store, for any count of taps up to CONV_VEC_TAPS, its arrays sized for
 * that many and guarded at run time (104 registers a thread in bf16); each channel's numbers as baseConvStep_impl
 * makes them (the same fmaf order: bit for bit). inner a multiple of 8, k <= CONV_VEC_TAPS.
 */
template <typename W, typename A>
__device__ void baseConvStepVecAny_impl(const A* u, const W* convW, A* hist, const int* layout, A* out, int B,
                                     int inner, int k) {
    const Layout L = layoutOf(layout, B);
    const int perRow = inner >> 3;
    const i64 vectors = (i64)B * perRow;
    const int taps = k - 1;
    GridCursor at(globalThread(), perRow, globalStride());
    for (i64 v = globalThread(); v < vectors; v += globalStride(), at.next(perRow)) {
        const int seq = (int)at.row;
        const int c = 8 * at.col;
        const i64 row = L.offsets[seq];
        A* h = hist + (i64)L.slots[seq] * taps * inner + c;
        const A* ur = u + row * 2 * inner + c;
        float cur[8], gate[8], xs[CONV_VEC_TAPS - 1][8], ws[CONV_VEC_TAPS][8];
        load8(ur, cur);
        load8(ur + inner, gate);
#pragma unroll
        for (int j = 0; j < CONV_VEC_TAPS - 1; j++) {
            if (j < taps) load8(h + (i64)j * inner, xs[j]);
        }
        if constexpr (sizeof(W) == 2) {
            switch (k) {
                case 1: convTaps8<1>(convW, c, ws); break;
                case 2: convTaps8<2>(convW, c, ws); break;
                case 3: convTaps8<3>(convW, c, ws); break;
                default: convTaps8<4>(convW, c, ws); break;
            }
        } else {
#pragma unroll
            for (int i = 0; i < 8; i++) {
#pragma unroll
                for (int j = 0; j < CONV_VEC_TAPS; j++) {
                    if (j < k) ws[j][i] = toF(convW[(i64)(c + i) * k + j]);
                }
            }
        }
        float y[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            float acc = 0.0f;
#pragma unroll
            for (int j = 0; j < CONV_VEC_TAPS; j++) {
                if (j < k) acc = fmaf(ws[j][i], j < taps ? xs[j][i] : cur[i], acc);
            }
            y[i] = gate[i] * silu(acc);
        }
#pragma unroll
        for (int j = 1; j < CONV_VEC_TAPS - 1; j++) {
            if (j < taps) store8(h + (i64)(j - 1) * inner, xs[j]);
        }
        if (taps > 0) store8(h + (i64)(taps - 1) * inner, cur);
        store8(out + row * inner + c, y);
    }
}

/**
 * Version 3 of BaseConv's decode step, the backend's: version 2 for a kernel of K taps (K - 1 of history), K <=
 * CONV_VEC_TAPS, the taps' count a template parameter, so that a kernel holds only its own taps' registers, and in
 * bf16 each 16-byte piece held as loaded until the sums use its values (57 registers a thread for 3 taps against
 * version 2's 104: four blocks a multiprocessor against two); each channel's numbers as baseConvStep_impl makes them
 * (the same fmaf order: bit for bit). inner a multiple of 8.
 */
template <int K, typename W, typename A>
__device__ void baseConvStepVecK(const A* u, const W* convW, A* hist, const int* layout, A* out, int B, int inner) {
    constexpr int taps = K - 1;
    const Layout L = layoutOf(layout, B);
    const int perRow = inner >> 3;
    const i64 vectors = (i64)B * perRow;
    GridCursor at(globalThread(), perRow, globalStride());
    for (i64 v = globalThread(); v < vectors; v += globalStride(), at.next(perRow)) {
        const int seq = (int)at.row;
        const int c = 8 * at.col;
        const i64 row = L.offsets[seq];
        A* h = hist + (i64)L.slots[seq] * taps * inner + c;
        const A* ur = u + row * 2 * inner + c;
        if constexpr (sizeof(A) == 2 && sizeof(W) == 2) {
            // every value held as its 16-byte piece until used: half the registers of floats, four blocks a
            // multiprocessor
            uint4 cur, gate, xs[taps > 0 ? taps : 1], t[K];
            cur = *reinterpret_cast<const uint4*>(ur);
            gate = *reinterpret_cast<const uint4*>(ur + inner);
#pragma unroll
            for (int j = 0; j < taps; j++) xs[j] = *reinterpret_cast<const uint4*>(h + (i64)j * inner);
            // the 8 K taps from value c K, read as K pieces of 8 (16 bytes each, aligned where convW is)
#pragma unroll
            for (int j = 0; j < K; j++) t[j] = *reinterpret_cast<const uint4*>(convW + (i64)c * K + 8 * j);
            float y[8];
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float acc = 0.0f;
#pragma unroll
                for (int j = 0; j < K; j++) {
                    const float w = bf16At(t[(i * K + j) >> 3], (i * K + j) & 7);
                    acc = fmaf(w, j < taps ? bf16At(xs[j], i) : bf16At(cur, i), acc);
                }
                y[i] = bf16At(gate, i) * silu(acc);
            }
#pragma unroll
            for (int j = 1; j < taps; j++) *reinterpret_cast<uint4*>(h + (i64)(j - 1) * inner) = xs[j];
            if constexpr (taps > 0) *reinterpret_cast<uint4*>(h + (i64)(taps - 1) * inner) = cur;
            store8(out + row * inner + c, y);
        } else {
            float cur[8], gate[8], xs[taps > 0 ? taps : 1][8], ws[K][8];
            load8(ur, cur);
            load8(ur + inner, gate);
#pragma unroll
            for (int j = 0; j < taps; j++) load8(h + (i64)j * inner, xs[j]);
            if constexpr (sizeof(W) == 2) {
                // 8 K consecutive values from value c K, read as K pieces of 8 (16 bytes each, aligned where convW is)
                float t[K][8];
#pragma unroll
                for (int j = 0; j < K; j++) load8(convW + (i64)c * K + 8 * j, t[j]);
#pragma unroll
                for (int i = 0; i < 8; i++) {
#pragma unroll
                    for (int j = 0; j < K; j++) ws[j][i] = t[(i * K + j) >> 3][(i * K + j) & 7];
                }
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) {
#pragma unroll
                    for (int j = 0; j < K; j++) ws[j][i] = toF(convW[(i64)(c + i) * K + j]);
                }
            }
            float y[8];
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float acc = 0.0f;
#pragma unroll
                for (int j = 0; j < K; j++) acc = fmaf(ws[j][i], j < taps ? xs[j][i] : cur[i], acc);
                y[i] = gate[i] * silu(acc);
            }
#pragma unroll
            for (int j = 1; j < taps; j++) store8(h + (i64)(j - 1) * inner, xs[j]);
            if constexpr (taps > 0) store8(h + (i64)(taps - 1) * inner, cur);
            store8(out + row * inner + c, y);
        }
    }
}

/**
 * addRmsNorm_impl with 8 values a thread (the residual moved 32 bytes at a time, the branch, the weight and the output
 * 16): residual += branch, out = rmsNorm(residual) x weight. One block a row (rows grid-strided), d a multiple of 8 and
 * at most 8 blockDim.x; every load of the row before its first store. Each value as addRmsNorm_impl makes it; the sum
 * of squares in another fixed order (a thread's 8 in pairs, the lanes as a butterfly, the warps in order), so the
 * norm's scale may differ from addRmsNorm_impl's in its last bits. The launcher (Kernels.addRmsNormVecFits) holds d
 * to 8 blockDim.x: a row's values past that would be left out.
 */
template <typename W, typename A>
__device__ void addRmsNormVec_impl(float* residual, const A* branch, const W* weight, A* out, int n, int d,
                                   float eps) {
    __shared__ float partial[32];
    const int c = 8 * threadIdx.x;
    const bool mine = c < d;
    for (i64 row = blockIdx.x; row < n; row += gridDim.x) {
        float v[8], b[8], wt[8];
        float ss = 0.0f;
        if (mine) {
            load8(residual + row * d + c, v);
            load8(branch + row * d + c, b);
            load8(weight + c, wt);
#pragma unroll
            for (int i = 0; i < 8; i++) v[i] += b[i];
            store8(residual + row * d + c, v);
            ss = ((v[0] * v[0] + v[1] * v[1]) + (v[2] * v[2] + v[3] * v[3])) +
                 ((v[4] * v[4] + v[5] * v[5]) + (v[6] * v[6] + v[7] * v[7]));
        }
        const float r = blockRmsScale(ss, partial, d, eps);
        if (mine) {
#pragma unroll
            for (int i = 0; i < 8; i++) v[i] = v[i] * r * wt[i];
            store8(out + row * d + c, v);
        }
        __syncthreads();  // partial is reused by the next row
    }
}

template <typename W, typename A>
__device__ void addIntoVec_impl(float* acc, const A* x, i64 count) { addIntoValues(acc, x, count); }
template <typename W, typename A>
__device__ void f32ToAVec_impl(const float* src, A* dst, i64 count) { convertValues(src, dst, count); }
template <typename W, typename A>
__device__ void aToF32Vec_impl(const A* src, float* dst, i64 count) { convertValues(src, dst, count); }
template <typename W, typename A>
__device__ void addBiasVec_impl(A* out, const W* bias, int n, int m) { addBiasRows<W, A>(out, bias, n, m); }

/**
 * The columns of src [n, c0 + c1 + c2] copied into o0 [n, c0], o1 [n, c1] and o2 [n, c2] (c2 may be 0, o2 then
 * unused), a piece of P values a thread and step: a product of several matrices made together split into each one's
 * output. P is 8 (16 bytes of bf16) where every width is a multiple of 8 and every pointer 16-byte aligned (the
 * launcher checks), else 1.
 */
template <int P, typename A>
__device__ void splitColumnsRows(const A* src, A* o0, A* o1, A* o2, int n, int c0, int c1, int c2) {
    const int perRow = (c0 + c1 + c2) / P;
    const i64 pieces = (i64)n * perRow;
    GridCursor at(globalThread(), perRow, globalStride());
    for (i64 v = globalThread(); v < pieces; v += globalStride(), at.next(perRow)) {
        int c = P * at.col;
        A* dst;
        if (c < c0) {
            dst = o0 + at.row * c0 + c;
        } else if (c < c0 + c1) {
            dst = o1 + at.row * c1 + (c - c0);
        } else {
            dst = o2 + at.row * c2 + (c - c0 - c1);
        }
        if constexpr (P == 8) {
#pragma unroll
            for (int u = 0; u < (int)(P * sizeof(A) / 16); u++) {
                reinterpret_cast<uint4*>(dst)[u] = reinterpret_cast<const uint4*>(src + P * v)[u];
            }
        } else {
            *dst = src[v];
        }
    }
}
template <typename W, typename A>
__device__ void splitColumnsVec_impl(const A* src, A* o0, A* o1, A* o2, int n, int c0, int c1, int c2) {
    splitColumnsRows<8, A>(src, o0, o1, o2, n, c0, c1, c2);
}
template <typename W, typename A>
__device__ void splitColumns_impl(const A* src, A* o0, A* o1, A* o2, int n, int c0, int c1, int c2) {
    splitColumnsRows<1, A>(src, o0, o1, o2, n, c0, c1, c2);
}

}  // namespace b4j

// The A-typed entry points; addIntoVec_f32 is also the float32 + float32 add of a bf16 training pass.
B4J_KERNEL(addIntoVec, 256, (float* acc, const A* x, long long count), (acc, x, count))
B4J_KERNEL(f32ToAVec, 256, (const float* src, A* dst, long long count), (src, dst, count))
B4J_KERNEL(aToF32Vec, 256, (const A* src, float* dst, long long count), (src, dst, count))
B4J_KERNEL(addBiasVec, 256, (A * out, const W* bias, int n, int m), (out, bias, n, m))
B4J_KERNEL(splitColumnsVec, 256, (const A* src, A* o0, A* o1, A* o2, int n, int c0, int c1, int c2),
           (src, o0, o1, o2, n, c0, c1, c2))
B4J_KERNEL(splitColumns, 256, (const A* src, A* o0, A* o1, A* o2, int n, int c0, int c1, int c2),
           (src, o0, o1, o2, n, c0, c1, c2))
B4J_KERNEL(baseConvStepVecAny, 256,
           (const A* u, const W* convW, A* hist, const int* layout, A* out, int B, int inner, int k),
           (u, convW, hist, layout, out, B, inner, k))
// baseConvStepVec1 .. baseConvStepVec4: the step of a kernel of that many taps
#define B4J_CONV_STEP_VEC(K)                                                                                         \
    namespace b4j {                                                                                                  \
    template <typename W, typename A>                                                                                \
    __device__ void baseConvStepVec##K##_impl(const A* u, const W* convW, A* hist, const int* layout, A* out, int B, \
                                              int inner) {                                                           \
        baseConvStepVecK<K, W, A>(u, convW, hist, layout, out, B, inner);                                            \
    }                                                                                                                \
    }                                                                                                                \
    B4J_KERNEL(baseConvStepVec##K, 256,                                                                              \
               (const A* u, const W* convW, A* hist, const int* layout, A* out, int B, int inner),                   \
               (u, convW, hist, layout, out, B, inner))
B4J_CONV_STEP_VEC(1)
B4J_CONV_STEP_VEC(2)
B4J_CONV_STEP_VEC(3)
B4J_CONV_STEP_VEC(4)
B4J_KERNEL(addRmsNormVec, 256,
           (float* residual, const A* branch, const W* weight, A* out, int n, int d, float eps),
           (residual, branch, weight, out, n, d, eps))
B4J_KERNEL(swigluVec, 256, (const A* a, A* out, int n, int h), (a, out, n, h))
namespace b4j_bf16 {
extern "C" __global__ void __launch_bounds__(256) addBiasF32Vec_bf16(float* out, const W* bias, int n, int m) {
    b4jPdlWait();
    b4j::addBiasRows<W, float>(out, bias, n, m);
}
}
