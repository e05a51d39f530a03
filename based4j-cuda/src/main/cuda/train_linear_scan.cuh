// Scan kernels of Taylor linear attention for bf16 activations on tensor cores (included by train_linear_mma.cuh):
// the chunked algorithm of train_linear_mma.cuh (chunks of 64 tokens, the same per-chunk products, the same bf16
// roundings of the operands and float32 sums), but one block per (head, sequence) walks the sequence's chunks in
// order with the running state on chip, so the [E, dh + 1] chunk states never go through global memory and no
// separate states kernel runs. Launch shapes, the cases served and the fallbacks: io.based4j.cuda.MixerTrainKernels.
//
// Three kernels, 8 warps each, grid (H, batch):
//   forward      per chunk: y = [num | den] / (den + eps) from S_c as lmmForwardChunk computes it, then
//                S_{c+1} = S_c + phi(K_c)^T V'_c (through the last chunk, whose S is then written into the
//                sequence's slot, in the Final variant that a prompt's forward takes)
//   backward q   per chunk: lmmBackwardQChunk from S_c (G' into the scratch, dq added), then S as the forward
//   backward kv  in reverse, per chunk: lmmBackwardKVChunk from dS_c (dk and dv added), then
//                dS_{c-1} = dS_c + phi(Q_c)^T G'_c (G' from the scratch, written by backward q)
// Warps 0-3 (the chunk warps, 16 rows each) take the chunk's part; warps 4-7 (the state warps) meanwhile update the
// running state, float32 in shared memory in the mma accumulator layout ([feature tile][value tile][lane] of 4
// floats): state warp w owns the feature tiles w, w + 4, w + 8 and adds each chunk's product into them (the states
// kernel's product, the same order of sums); after a barrier (the chunk warps done with the state) it writes their
// bf16 copy [epad][ldV], which the next chunk's products read as LmmStateInShared. The chunk tiles (q, k, V' and
// dout or G') are double-buffered: the copies of the next chunk (cp.async) fly while this one computes. Two barriers
// per chunk. Every sum is in a fixed order (deterministic), and the numbers are the chunk kernels' bit for bit: the
// float32 state here is the states kernel's, rounded to bf16 as the chunk kernels round the copy they read back.
//
// Requirements (checked by MixerTrainKernels): those of train_linear_mma.cuh, and E <= LMS_MAX_FEATURES (feature
// dims 8 and 16) and dh <= 72 (the 10 value tiles of the NAME72 chunk functions).
#pragma once

namespace b4j {

constexpr int LMS_MAX_FEATURES = 160;  // E rounded up to 16: the feature tiles, at most 3 per state warp
constexpr int LMS_MAX_HEAD = 72;
constexpr int LMS_THREADS = 2 * LMM_THREADS;  // 4 chunk warps, then 4 state warps
constexpr int LMS_STATE_WARPS = (LMS_THREADS - LMM_THREADS) / 32;

/**
 * Byte offsets of the scan kernels' dynamic shared memory: the feature table, two sets of chunk tiles (q, k, V' and,
 * backward, G'), the per-warp dphi and dx tiles (backward), the bf16 state and the float32 state. lmsSmemBytes is
 * its end (mirrored by MixerTrainKernels.linearScanSharedBytes).
 */
struct LmsLayout {
    int tab, set0, set1, dphi, dx, sb, sf, end;
    int xk, vp, gp;  // within a set
};

__host__ __device__ __forceinline__ LmsLayout lmsLayout(const LmmDims& d, bool backward) {
    const int warps = LMM_THREADS / 32;
    LmsLayout o;
    o.xk = 2 * 64 * d.ldX;                                 // bf16 [64][ldX] q rows at 0
    o.vp = o.xk + 2 * 64 * d.ldX;                          // bf16 [64][ldX] k rows
    o.gp = o.vp + 2 * 64 * d.ldV;                          // bf16 [64][ldV] V'
    const int set = backward ? o.gp + 2 * 64 * d.ldV : o.gp;  // bf16 [64][ldV] dout, then G' (backward)
    o.tab = 0;
    o.set0 = o.tab + 8 * d.epad;                           // int2 [epad] the feature table
    o.set1 = o.set0 + set;
    o.dphi = o.set1 + set;
    o.dx = o.dphi + (backward ? 4 * warps * LMM_ROWS * LMM_DPHI_LD : 0);  // float [warps][16][LMM_DPHI_LD]
    o.sb = o.dx + (backward ? 4 * warps * LMM_ROWS * d.fpad : 0);         // float [warps][16][fpad]
    o.sf = o.sb + 2 * d.epad * d.ldV;                      // bf16 [epad][ldV] the state
    o.end = o.sf + 16 * 32 * d.nt * (d.epad / 16);         // float4 [epad / 16][nt][32] the float32 state
    return o;
}

/** Dynamic shared memory of a scan kernel. */
__host__ __device__ __forceinline__ int lmsSmemBytes(const LmmDims& d, bool backward) {
    return lmsLayout(d, backward).end;
}

/** The chunk tiles of set s (0 or 1), with the shared table, dphi and dx; no state tile (st). */
__device__ __forceinline__ LmmSmem lmsCarve(unsigned char* smem, const LmsLayout& o, int s) {
    unsigned char* set = smem + (s ? o.set1 : o.set0);
    LmmSmem m;
    m.tab = reinterpret_cast<int2*>(smem + o.tab);
    m.xq = reinterpret_cast<lmm_bf16*>(set);
    m.xk = reinterpret_cast<lmm_bf16*>(set + o.xk);
    m.vp = reinterpret_cast<lmm_bf16*>(set + o.vp);
    m.gp = reinterpret_cast<lmm_bf16*>(set + o.gp);
    m.st = nullptr;
    m.dphi = reinterpret_cast<float*>(smem + o.dphi);
    m.dx = reinterpret_cast<float*>(smem + o.dx);
    return m;
}

/**
 * The start of a scan kernel: zeroed shared memory (the zero state and the tiles' padding), the feature table and
 * the ones of the q and k tiles of both sets (column fpad, never overwritten by the copies of f columns).
 */
__device__ __forceinline__ void lmsStart(unsigned char* smem, const LmsLayout& o, const LmmDims& d) {
    if (threadIdx.x < LMM_THREADS) lmmZero(smem, o.end);
    __syncthreads();
    if (threadIdx.x >= LMM_THREADS) return;
    const Taylor tc = taylorOf(d.f);
    int2* tab = reinterpret_cast<int2*>(smem + o.tab);
    for (int a = threadIdx.x; a < d.epad; a += LMM_THREADS) {
        int i, j;
        float cf;
        lmmFeature(a, d, tc, i, j, cf);
        tab[a] = make_int2(i | (j << 16), __float_as_int(cf));
    }
    const __nv_bfloat16 one = __float2bfloat16_rn(1.0f);
    for (int s = 0; s < 2; s++) {
        const LmmSmem m = lmsCarve(smem, o, s);
        for (int t = threadIdx.x; t < 64; t += LMM_THREADS) {
            m.xq[t * d.ldX + d.fpad] = one;
            m.xk[t * d.ldX + d.fpad] = one;
        }
    }
}

/** Chunk `chunk` of the block's (sequence, head): as linChunkOf, from the scan's grid (H, batch). */
__device__ __forceinline__ LinChunk lmsChunk(int chunk, int L, int H) {
    LinChunk c;
    c.chunk = chunk;
    c.head = blockIdx.x;
    c.nC = (L + LIN_CHUNK - 1) / LIN_CHUNK;
    const int c0 = chunk * LIN_CHUNK;
    c.n = min(LIN_CHUNK, L - c0);
    c.row0 = (i64)blockIdx.y * L + c0;
    c.bh = (i64)blockIdx.y * H + c.head;
    return c;
}

/**
 * Issues the copies of a chunk's q, k and v rows into a set (V' with its column of ones: 1 for the chunk's rows, 0
 * past them, rewritten for every chunk since the ragged one may come first or last). The caller adds its own copies
 * and commits.
 */
__device__ __forceinline__ void lmsIssue(const LmmSmem& m, const LmmDims& d, const LinChunk& c, int H,
                                         const lmm_bf16* q, const lmm_bf16* k, const lmm_bf16* v) {
    for (int t = threadIdx.x; t < 64; t += LMM_THREADS) {
        m.vp[t * d.ldV + d.dh] = __float2bfloat16_rn(t < c.n ? 1.0f : 0.0f);
    }
    const i64 qkCols = (i64)H * d.f;
    const i64 vCols = (i64)H * d.dh;
    lmmLoadRows(m.xq, d.ldX, q + c.row0 * qkCols + (i64)c.head * d.f, qkCols, c.n, d.f);
    lmmLoadRows(m.xk, d.ldX, k + c.row0 * qkCols + (i64)c.head * d.f, qkCols, c.n, d.f);
    lmmLoadRows(m.vp, d.ldV, v + c.row0 * vCols + (i64)c.head * d.dh, vCols, c.n, d.dh);
}

/** A feature tile of the float32 state as mma accumulators: the lane's 4 values of each of its nt value tiles. */
template <int NT>
__device__ __forceinline__ void lmsTile(const float4* frag, int nt, float (&acc)[NT][4]) {
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const float4 s = j < nt ? frag[32 * j] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        acc[j][0] = s.x;
        acc[j][1] = s.y;
        acc[j][2] = s.z;
        acc[j][3] = s.w;
    }
}

/**
 * State warp sw's feature tiles (sw, sw + 4, ..) of the float32 state sf += phi(X)^T R over the 64 rows of a chunk
 * (x: q or k rows, r: V' or G' rows; rows past the chunk are zero in r). The product of the states kernel, per
 * feature tile.
 */
template <int NT>
__device__ __forceinline__ void lmsAccumulate(const LmmDims& d, const int2* tab, const lmm_bf16* xs,
                                              const lmm_bf16* rs, float4* sf, int sw) {
    const int l = lmmLane();
    for (int ft = sw; ft < d.epad / 16; ft += LMS_STATE_WARPS) {
        float4* frag = sf + ft * d.nt * 32 + l;
        float acc[NT][4];
        lmsTile<NT>(frag, d.nt, acc);
        // the lane's two features: rows g and g + 8 of the tile
        const int2 ea = tab[16 * ft + (l >> 2)];
        const int2 eb = tab[16 * ft + (l >> 2) + 8];
        const int ia = ea.x & 0xffff, ja = ea.x >> 16, ib = eb.x & 0xffff, jb = eb.x >> 16;
        const float ca = __int_as_float(ea.y), cb = __int_as_float(eb.y);
        lmmPhiTransposedTimes<NT>(d, xs, rs, l, ia, ja, ca, ib, jb, cb, acc);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            if (j < d.nt) frag[32 * j] = make_float4(acc[j][0], acc[j][1], acc[j][2], acc[j][3]);
        }
    }
}

/**
 * The bf16 copy [epad][ldV] of state warp sw's feature tiles of the float32 state (after a barrier: the copy is what
 * the chunk products read). Columns past 8 nt stay zero.
 */
__device__ __forceinline__ void lmsRound(const LmmDims& d, const float4* sf, lmm_bf16* sb, int sw) {
    const int l = lmmLane();
    for (int ft = sw; ft < d.epad / 16; ft += LMS_STATE_WARPS) {
        const float4* frag = sf + ft * d.nt * 32 + l;
        unsigned* r0 = reinterpret_cast<unsigned*>(sb + (16 * ft + (l >> 2)) * d.ldV + 2 * (l & 3));
        unsigned* r8 = reinterpret_cast<unsigned*>(sb + (16 * ft + (l >> 2) + 8) * d.ldV + 2 * (l & 3));
        for (int j = 0; j < d.nt; j++) {
            const float4 s = frag[32 * j];
            r0[4 * j] = lmmPack(s.x, s.y);
            r8[4 * j] = lmmPack(s.z, s.w);
        }
    }
}

/** State warp sw's feature tiles of the float32 state into the sequence's whole state (LmmFinal). */
template <int NT>
__device__ __forceinline__ void lmsWriteFinal(const LmmFinal& fin, const LmmDims& d, const float4* sf, int sw) {
    const int l = lmmLane();
    for (int ft = sw; ft < d.epad / 16; ft += LMS_STATE_WARPS) {
        const float4* frag = sf + ft * d.nt * 32 + l;
        float acc[NT][4];
        lmsTile<NT>(frag, d.nt, acc);
        lmmWriteFinal<NT>(fin, acc, d, 16 * ft + (l >> 2), l, (int)blockIdx.y, (int)blockIdx.x);
    }
}

/** What a scan kernel does per chunk. */
enum LmsKind { LMS_FORWARD, LMS_BACKWARD_Q, LMS_BACKWARD_KV };

/**
 * The walk of one (head, sequence) over its chunks (from the last for the key and value side). Warps 0-3 (the
 * chunk warps) copy the chunks in and compute each chunk's part from the bf16 state; meanwhile warps 4-7 (the state
 * warps) add the same chunk's product into the float32 state, and after a barrier round it into the bf16 copy for
 * the next chunk. extra: dout (backward q) or G' (backward kv, the scratch); out: the forward
 * output, or G' (backward q); g1, g2: dq (backward q), or dk and dv (backward kv).
 */
template <int NT, LmsKind KIND, bool FINAL = false>
__device__ __forceinline__ void lmsScanBody(const lmm_bf16* q, const lmm_bf16* k, const lmm_bf16* v,
                                            const lmm_bf16* extra, lmm_bf16* out, lmm_bf16* g1, lmm_bf16* g2, int L,
                                            int H, int f, int dh, float eps, const LmmFinal& fin = LmmFinal{}) {
    extern __shared__ __align__(16) unsigned char lmmShared[];
    constexpr bool backward = KIND != LMS_FORWARD;
    constexpr bool reverse = KIND == LMS_BACKWARD_KV;
    const LmmDims d = lmmDims(f, dh);
    const LmsLayout o = lmsLayout(d, backward);
    const bool chunkWarp = threadIdx.x < LMM_THREADS;
    const int sw = lmmWarp() - LMM_THREADS / 32;
    lmsStart(lmmShared, o, d);
    lmm_bf16* sb = reinterpret_cast<lmm_bf16*>(lmmShared + o.sb);
    float4* sf = reinterpret_cast<float4*>(lmmShared + o.sf);
    const int nC = (L + LIN_CHUNK - 1) / LIN_CHUNK;
    auto issue = [&](int it) {
        const LinChunk c = lmsChunk(reverse ? nC - 1 - it : it, L, H);
        const LmmSmem m = lmsCarve(lmmShared, o, it & 1);
        lmsIssue(m, d, c, H, q, k, v);
        if (KIND == LMS_BACKWARD_Q) {
            lmmLoadRows(m.gp, d.ldV, extra + c.row0 * H * (i64)dh + (i64)c.head * dh, (i64)H * dh, c.n, dh);
        } else if (KIND == LMS_BACKWARD_KV) {
            lmmLoadRows(m.gp, d.ldV, extra + (c.row0 * H + c.head) * (i64)d.dpS, (i64)H * d.dpS, c.n, d.dpS);
        }
        lmmCommit();
    };
    if (chunkWarp) issue(0);
    for (int it = 0; it < nC; it++) {
        if (chunkWarp) {
            if (it + 1 < nC) {
                issue(it + 1);  // the other set: free since the barrier before the last rounding
                lmmWait<1>();
            } else {
                lmmWait<0>();
            }
        }
        __syncthreads();  // this chunk's tiles and the state's bf16 copy, for every warp
        const LinChunk c = lmsChunk(reverse ? nC - 1 - it : it, L, H);
        const LmmSmem m = lmsCarve(lmmShared, o, it & 1);
        if (chunkWarp) {
            const LmmStateInShared S{sb};
            if (KIND == LMS_FORWARD) {
                lmmForwardChunk<NT>(m, d, c, S, out, H, eps);
            } else if (KIND == LMS_BACKWARD_Q) {
                lmmBackwardQChunk<NT>(m, d, c, S, out, g1, H, eps);
            } else {
                lmmBackwardKVChunk<NT>(m, d, c, S, g1, g2, H);
            }
        } else if (it < nC - 1 || FINAL) {
            // the last chunk's product only where the whole state is wanted (FINAL: the forward of a prompt)
            if (reverse) {
                lmsAccumulate<NT>(d, m.tab, m.xq, m.gp, sf, sw);
            } else {
                lmsAccumulate<NT>(d, m.tab, m.xk, m.vp, sf, sw);
            }
            if constexpr (FINAL) {
                if (it == nC - 1) lmsWriteFinal<NT>(fin, d, sf, sw);
            }
        }
        if (it == nC - 1) break;
        __syncthreads();  // every warp done with the bf16 state and this set
        if (!chunkWarp) lmsRound(d, sf, sb, sw);
    }
}

}  // namespace b4j

// bf16 only, head dims up to 72 (10 value tiles), E up to 160. Each kernel also comes as NAME16x64, and the forward
// ones as NAME16x56, for feature dim 16 and head dim 64 (based-360m's heads) or 56 (based-1b's heads split in two,
// which only the forward splits) compiled with those sizes fixed: the tiles' strides, the feature and value
// tile counts and every loop bound known to the compiler (the same operations in the same order, so the same
// numbers); it refuses other sizes.
#define B4J_SCAN_FORWARD_KERNELS(NAME_SUFFIX, F, DH, CHECK)                                                            \
    extern "C" __global__ void __launch_bounds__(b4j::LMS_THREADS, 1)                                                 \
        linearAttentionMmaScanForward##NAME_SUFFIX(const A* q, const A* k, const A* v, A* out, int L, int H, int f,   \
                                                   int dh, float eps) {                                               \
        b4jPdlWait();                                                                                                  \
        CHECK;                                                                                                         \
        b4j::lmsScanBody<10, b4j::LMS_FORWARD>(q, k, v, nullptr, out, nullptr, nullptr, L, H, F, DH, eps);            \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(b4j::LMS_THREADS, 1)                                                 \
        linearAttentionMmaScanForwardFinal##NAME_SUFFIX(const A* q, const A* k, const A* v, A* out, int L, int H,     \
                                                        int f, int dh, float eps, float* finalKv, float* finalZ,      \
                                                        const int* slots, int realH, int split) {                     \
        b4jPdlWait();                                                                                                  \
        CHECK;                                                                                                         \
        b4j::lmsScanBody<10, b4j::LMS_FORWARD, true>(q, k, v, nullptr, out, nullptr, nullptr, L, H, F, DH, eps,       \
                                                     b4j::lmmFinalOf(finalKv, finalZ, slots, realH, split));          \
    }
#define B4J_SCAN_BACKWARD_KERNELS(NAME_SUFFIX, F, DH, CHECK)                                                           \
    extern "C" __global__ void __launch_bounds__(b4j::LMS_THREADS, 1)                                                 \
        linearAttentionMmaScanBackwardQ##NAME_SUFFIX(const A* q, const A* k, const A* v, const A* dout, A* gbuf,      \
                                                     A* dq, int L, int H, int f, int dh, float eps) {                 \
        b4jPdlWait();                                                                                                  \
        CHECK;                                                                                                         \
        b4j::lmsScanBody<10, b4j::LMS_BACKWARD_Q>(q, k, v, dout, gbuf, dq, nullptr, L, H, F, DH, eps);                \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(b4j::LMS_THREADS, 1)                                                 \
        linearAttentionMmaScanBackwardKV##NAME_SUFFIX(const A* q, const A* k, const A* v, const A* gbuf, A* dk,       \
                                                      A* dv, int L, int H, int f, int dh) {                           \
        b4jPdlWait();                                                                                                  \
        CHECK;                                                                                                         \
        b4j::lmsScanBody<10, b4j::LMS_BACKWARD_KV>(q, k, v, gbuf, nullptr, dk, dv, L, H, F, DH, 0.0f);                \
    }

namespace b4j_bf16 {
B4J_SCAN_FORWARD_KERNELS(_bf16, f, dh, (void)0)
B4J_SCAN_BACKWARD_KERNELS(_bf16, f, dh, (void)0)
B4J_SCAN_FORWARD_KERNELS(16x64_bf16, 16, 64, if (f != 16 || dh != 64) __trap())
B4J_SCAN_BACKWARD_KERNELS(16x64_bf16, 16, 64, if (f != 16 || dh != 64) __trap())
B4J_SCAN_FORWARD_KERNELS(16x56_bf16, 16, 56, if (f != 16 || dh != 56) __trap())
}  // namespace b4j_bf16
#undef B4J_SCAN_FORWARD_KERNELS
#undef B4J_SCAN_BACKWARD_KERNELS
