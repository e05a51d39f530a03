// A run of a decode step's products of one row in one kernel (included by based4j_kernels.cu after gemv.cuh):
// gemv version 3's products, its fused forms (SwiGLU, BaseConv's step) and the residual's add and RMSNorm before
// them, as phases of one launch instead of a launch each. Launched by io.based4j.cuda.Kernels through
// io.based4j.cuda.DecodePhases, which gathers the phases of a recorded decode step of one sequence.
//
// Why: a decode step of one sequence is some 240 kernels, most of them products that read their weights once; every
// kernel's end (its last blocks, the grid's completion, the wait of the kernel after it) costs a few microseconds
// that no weights stream in. Here a grid of two blocks a multiprocessor, all resident, takes each phase's blocks in
// turn as gemv's streamed form does (block b: the phase's blocks b, b + grid, ...), and ends a phase with an arrival
// on a counter instead of the kernel's end: a phase that reads what the phases before it wrote waits until every
// block has arrived for each of them. As soon as a block has arrived, its warps load their first weights of the next
// phase (which no phase writes), so that they stream in while the other blocks finish.
//
// Each phase's block does what the same block of the product's own launch does (gemvPartOf / gemvPairOf, version
// 3's sums in their order, gemvPartsOut / gemvPairedOut): every output is the unfused kernels' bit for bit. The norm:
// every block keeps the residual row (float32) in its shared memory, and where a phase starts with the residual's add
// and norm, every block computes them there with addRmsNorm's own code (rmsNormRowsOf, the same 256 threads a row),
// the product reading the normalised row from shared memory; block 0 also writes the residual and the normalised row
// to global memory for the kernels after this one.
#pragma once

namespace b4j {

/** Phases a launch takes at most (the parameter block stays under the 4 KiB every CUDA 12 driver takes). */
#define PHASES_MAX 28
/** Threads of a block of decodePhases (version 3's 256: the same warps, parts and sums). */
#define PHASES_THREADS GEMV_THREADS

/** What a phase does: a product (gemv version 3), or a paired product with SwiGLU or with BaseConv's step. */
enum PhaseKind { PHASE_GEMV = 0, PHASE_SWIGLU = 1, PHASE_CONV = 2 };

/** The phase waits until every block has ended every phase before it (it reads what they wrote). */
#define PHASE_WAITS 1
/** The phase's x is the normalised row in shared memory (the last norm's), not x. */
#define PHASE_X_SHARED 2

/** One phase: a product of one row of x, and the residual's add and norm before it where branch is set. */
struct Phase {
    const bf16* x;        // the row of x in global memory (unless PHASE_X_SHARED or branch)
    const bf16* w;        // [N, K] (gemv) or [2 H, K] (paired)
    const bf16* bias;     // or null
    void* out;            // [N] in bf16 or float32 (outF32); [H] bf16 for the paired kinds
    const bf16* branch;   // the residual's add and norm before the product: residual += branch (null: none)
    const bf16* normW;    // the norm's weight [K]
    bf16* normOut;        // where block 0 writes the normalised row [K]
    const bf16* convW;    // BaseConv: taps [H, convK]
    float* hist;          // BaseConv: the float32 history
    const int* layout;    // BaseConv: the batch's layout (B sequences)
    int kind, n, k, parts, vblocks, outF32, flags, convK, batch;
    float eps;
};

/** A launch's phases, the residual row its norms add to, and its two counters (arrivals, exits; zero between). */
struct PhaseProgram {
    Phase phases[PHASES_MAX];
    float* residual;
    unsigned* counters;
    int count;
    int d;  // the residual's width (0: no norm among the phases)
};

/** Where a warp of a phase's block vb works (n0 = the product's rows: nothing). */
__device__ __forceinline__ GemvPart phasePartOf(const Phase& ph, int vb) {
    if (vb >= ph.vblocks) {
        GemvPart none;
        none.n0 = ph.kind == PHASE_GEMV ? ph.n : 2 * ph.n;
        none.c0 = none.c1 = 0;
        return none;
    }
    return ph.kind == PHASE_GEMV ? gemvPartOf<1>(ph.k, ph.parts, vb) : gemvPairOf(ph.n, ph.k, ph.parts, vb);
}

/** Rows of W of a phase's product. */
__device__ __forceinline__ int phaseRows(const Phase& ph) { return ph.kind == PHASE_GEMV ? ph.n : 2 * ph.n; }

/** The first round of a warp's loads of W for the phase's block vb (none past its blocks). */
__device__ __forceinline__ void phaseFirstRound(GemvPiece<bf16> (&pieces)[gemv3Pieces<1, bf16>()][1], const Phase& ph,
                                                int vb) {
    const GemvPart wp = phasePartOf(ph, vb);
    const int rows = phaseRows(ph);
    if (wp.n0 < rows) gemv3Round<1, bf16>(pieces, ph.w, rows, ph.k, wp.n0, wp.c0 + (threadIdx.x & 31), wp.c1);
}

/**
 * Arrival on counter c once the block's writes are done: the barrier orders every thread's writes before thread 0's
 * add, a release at the GPU's scope (so that they are visible to whoever acquires the count). Called with no loads of
 * the block in flight (the next phase's weights are asked for after it), which a release would wait for.
 */
__device__ __forceinline__ void phaseArrive(unsigned* c) {
    __syncthreads();
    if (threadIdx.x == 0) asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(c) : "memory");
}

/**
 * Waits until counter c reaches target: thread 0's acquire at the GPU's scope, then the barrier, after which every
 * thread of the block sees every write released by those arrivals (no fence: it would wait for the weights in
 * flight).
 */
__device__ __forceinline__ void phaseWait(unsigned* c, unsigned target) {
    if (threadIdx.x == 0) {
        unsigned v;
        for (;;) {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(c) : "memory");
            if (v >= target) break;
        }
    }
    __syncthreads();
}

/**
 * The phases in order. Before the wait for the kernel before (programmatic launch), the first phase's first weights
 * are requested; then each block loads the residual row into its shared memory.
 */
__device__ void decodePhases(const PhaseProgram& prog) {
    extern __shared__ float4 phaseShared[];
    float* residual = reinterpret_cast<float*>(phaseShared);
    bf16* xs = reinterpret_cast<bf16*>(residual + ((prog.d + 3) & ~3));
    __shared__ float partial[2][GEMV_THREADS / 32][1][1];
    GemvPiece<bf16> pieces[gemv3Pieces<1, bf16>()][1];
    unsigned* arrivals = prog.counters;
    int loaded = -1;  // the phase whose first round of this block's first block is in pieces
    if (prog.count > 0 && (int)blockIdx.x < prog.phases[0].vblocks) {
        phaseFirstRound(pieces, prog.phases[0], blockIdx.x);
        loaded = 0;
    }
    b4jPdlWait();
    for (int j = threadIdx.x; j < prog.d; j += blockDim.x) residual[j] = prog.residual[j];
    int half = 0;
    for (int p = 0; p < prog.count; p++) {
        const Phase& ph = prog.phases[p];
        const int rows = phaseRows(ph);
        int vb = blockIdx.x;
        if (loaded != p && vb < ph.vblocks) {
            phaseFirstRound(pieces, ph, vb);
            loaded = p;
        }
        if (ph.flags & PHASE_WAITS) phaseWait(arrivals, (unsigned)p * gridDim.x);
        const bf16* x = ph.x;
        if (ph.branch != nullptr) {
            // addRmsNorm's numbers for the one row, in this block's copy of the residual
            rmsNormRowsOf<bf16, bf16>(residual, ph.branch, ph.normW, xs, 1, ph.k, ph.eps, nullptr, 0, 1);
            if (blockIdx.x == 0) {
                for (int j = threadIdx.x; j < ph.k; j += blockDim.x) {
                    prog.residual[j] = residual[j];
                    ph.normOut[j] = xs[j];
                }
            }
        }
        if (ph.branch != nullptr || (ph.flags & PHASE_X_SHARED)) x = xs;
        GemvPart wp = phasePartOf(ph, vb);
        while (vb < ph.vblocks) {
            const int next = vb + gridDim.x;
            const bool last = next >= ph.vblocks;
            const GemvPart np = phasePartOf(ph, next);
            float acc[1][1];
            gemv3Rounds<1, 1, bf16, bf16>(x, ph.w, 1, rows, ph.k, wp.n0, wp.c0, wp.c1, pieces, acc,
                                          last ? rows : np.n0, np.c0, np.c1);
            if (ph.kind == PHASE_GEMV) {
                gemvPartsOut<1, 1, bf16, bf16>(acc, partial[half], ph.bias, ph.out, ph.outF32, 1, ph.n, ph.parts, vb);
            } else if (ph.kind == PHASE_SWIGLU) {
                gemvPairedOut<1, 0, bf16, bf16>(acc, partial[half], ph.bias, reinterpret_cast<bf16*>(ph.out), 1, ph.n,
                                                ph.parts, vb, nullptr, nullptr, nullptr, 0, 0);
            } else {
                gemvPairedOut<1, 1, bf16, bf16>(acc, partial[half], ph.bias, reinterpret_cast<bf16*>(ph.out), 1, ph.n,
                                                ph.parts, vb, ph.convW, ph.hist, ph.layout, ph.batch, ph.convK);
            }
            half ^= 1;
            vb = next;
            wp = np;
        }
        phaseArrive(arrivals);
        if (p + 1 < prog.count && (int)blockIdx.x < prog.phases[p + 1].vblocks) {
            phaseFirstRound(pieces, prog.phases[p + 1], blockIdx.x);  // in flight while the other blocks end phase p
            loaded = p + 1;
        }
    }
    // the last block out sets both counters back to zero for the next launch (every other block is past its waits)
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(prog.counters + 1, 1u) == gridDim.x - 1) {
            prog.counters[0] = 0;
            prog.counters[1] = 0;
            __threadfence();
        }
    }
}

}  // namespace b4j

namespace b4j_bf16 {
extern "C" __global__ void __launch_bounds__(PHASES_THREADS, 2) decodePhases_bf16(
    const __grid_constant__ b4j::PhaseProgram prog) {
    b4j::decodePhases(prog);
}
// four blocks a multiprocessor (at most 64 registers a thread), as gemv's streamed form runs
extern "C" __global__ void __launch_bounds__(PHASES_THREADS, 4) decodePhases4_bf16(
    const __grid_constant__ b4j::PhaseProgram prog) {
    b4j::decodePhases(prog);
}
}
