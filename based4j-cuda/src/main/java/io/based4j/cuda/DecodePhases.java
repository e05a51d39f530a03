package io.based4j.cuda;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * The products of one row a recorded decode step queues, held back and launched as phases of one kernel
 * (decode_phases.cuh's {@code decodePhases}) instead of a kernel each: gemv version 3's products (each with its own
 * parts and blocks, as its own launch would take them), its fused forms (SwiGLU, BaseConv's step) and the residual's
 * add and RMSNorm that come before a product. The phases of a run are launched when anything else is queued on the
 * stream ({@link Kernels} runs {@link #takeProgram} then), so the stream's order stays the order of the calls.
 *
 * <p>A norm is held until the product after it comes: where that product reads the norm's output, the norm becomes
 * that product's first step (every block computes it in its shared memory, block 0 writes it out); otherwise, or
 * where it would be the launch's first phase, it is launched as its own kernel. Products of one input queued
 * together ({@link Kernels#gemvSegments}) do not wait for each other; every other phase waits for every phase
 * before it.
 *
 * <p>Not thread-safe: owned by one {@link Kernels}.
 */
final class DecodePhases {
    /** Phases a launch takes at most (decode_phases.cuh's PHASES_MAX). */
    static final int MAX = 28;
    /** Bytes of a phase (decode_phases.cuh's Phase: ten pointers, nine ints and a float). */
    static final int PHASE_BYTES = 120;
    /** Bytes of the kernel's parameter (PhaseProgram: the phases, the residual, the counters, count, d). */
    static final int PROGRAM_BYTES = MAX * PHASE_BYTES + 8 + 8 + 4 + 4;
    /** The widest residual whose norm a phase takes (shared memory: 6 bytes a value). */
    static final int MAX_WIDTH = 4096;
    /** Blocks a multiprocessor the kernel runs (its launch bounds: 256 threads, at most 128 registers). */
    static final int BLOCKS_PER_MULTIPROCESSOR = 2;

    static final int GEMV = 0;
    static final int SWIGLU = 1;
    static final int CONV = 2;
    /** The phase waits for every phase before it. */
    static final int WAITS = 1;
    /** The phase's x is the normalised row in shared memory. */
    static final int X_SHARED = 2;

    /** A product (and the norm before it where norm is set). */
    record Phase(int kind, long x, long w, long bias, long out, boolean outF32, int n, int k, int parts, int blocks,
                 int flags, Norm norm, long convW, long hist, long layout, int batch, int convK) {
    }

    /** {@code residual += branch; out = rmsNorm(residual) * weight} of one row of width d. */
    record Norm(long residual, long branch, long weight, long out, int d, float eps) {
    }

    private final List<Phase> phases = new ArrayList<>();
    /** The norm queued last, not yet taken by a product (launched after the phases where none takes it). */
    private Norm held;
    /** The residual of the norms the phases take (0: none yet). */
    private long residual;
    private int width;
    /** The output of the last norm a phase took, while the blocks' shared memory holds it (0: none). */
    private long shared;

    /** Whether nothing is held. */
    boolean isEmpty() {
        return phases.isEmpty() && held == null;
    }

    /** Phases held. */
    int size() {
        return phases.size();
    }

    /**
     * Whether a norm of width d can be held: its output is not its own branch (the phase reads the branch while block
     * 0 writes the output), and d fits the shared memory.
     */
    static boolean takes(long branch, long out, int d) {
        return d > 0 && d <= MAX_WIDTH && branch != out;
    }

    /**
     * Holds a norm; returns false where the phases held must be launched first (a norm is held already, or the norm's
     * residual is not the phases' own).
     */
    boolean norm(Norm n) {
        if (held != null || (residual != 0 && residual != n.residual)) {
            return false;
        }
        held = n;
        return true;
    }

    /**
     * Adds a product reading x; returns false where the phases held (and a held norm) must be launched first: the
     * launch is full, or a norm is held that this product cannot take as its first step (it does not read the norm's
     * output, or it would be the launch's first phase). {@code independent}: the product reads nothing the phase before
     * it writes (the second and third of one input's products).
     */
    boolean product(int kind, long x, long w, long bias, long out, boolean outF32, int n, int k, int parts,
                    int blocks, boolean independent, long convW, long hist, long layout, int batch, int convK) {
        if (phases.size() == MAX) {
            return false;
        }
        Norm first = null;
        if (held != null) {
            if (phases.isEmpty() || x != held.out || k != held.d) {
                return false;
            }
            first = held;
        }
        int flags = independent ? 0 : WAITS;
        if (first != null) {
            flags |= WAITS;
            held = null;
            residual = first.residual;
            width = first.d;
            shared = first.out;
        } else if (shared != 0 && x == shared && k == width) {
            flags |= X_SHARED;
        }
        phases.add(new Phase(kind, x, w, bias, out, outF32, n, k, parts, blocks, flags, first, convW, hist, layout,
                batch, convK));
        if (out == shared) {
            shared = 0;  // the normalised row's global copy is overwritten from here on
        }
        return true;
    }

    /**
     * Writes the held phases as the kernel's parameter into {@code program} ({@link #PROGRAM_BYTES} bytes) with the
     * launch's counters, and forgets them; returns the launch's dynamic shared memory in bytes, or -1 where no phase
     * is held. A held norm stays held ({@link #takeNorm}).
     */
    int takeProgram(MemorySegment program, long counters) {
        if (phases.isEmpty()) {
            return -1;
        }
        program.fill((byte) 0);
        for (int i = 0; i < phases.size(); i++) {
            Phase p = phases.get(i);
            long at = (long) i * PHASE_BYTES;
            Norm nm = p.norm;
            long[] pointers = {p.x, p.w, p.bias, p.out, nm != null ? nm.branch : 0, nm != null ? nm.weight : 0,
                    nm != null ? nm.out : 0, p.convW, p.hist, p.layout};
            for (int j = 0; j < pointers.length; j++) {
                program.set(ValueLayout.JAVA_LONG_UNALIGNED, at + 8L * j, pointers[j]);
            }
            int[] ints = {p.kind, p.n, p.k, p.parts, p.blocks, p.outF32 ? 1 : 0, p.flags, p.convK, p.batch};
            for (int j = 0; j < ints.length; j++) {
                program.set(ValueLayout.JAVA_INT_UNALIGNED, at + 80 + 4L * j, ints[j]);
            }
            program.set(ValueLayout.JAVA_FLOAT_UNALIGNED, at + 116, nm != null ? nm.eps : 0f);
        }
        long end = (long) MAX * PHASE_BYTES;
        program.set(ValueLayout.JAVA_LONG_UNALIGNED, end, residual);
        program.set(ValueLayout.JAVA_LONG_UNALIGNED, end + 8, counters);
        program.set(ValueLayout.JAVA_INT_UNALIGNED, end + 16, phases.size());
        program.set(ValueLayout.JAVA_INT_UNALIGNED, end + 20, residual != 0 ? width : 0);
        int shm = residual != 0 ? sharedBytes(width) : 0;
        phases.clear();
        residual = 0;
        width = 0;
        shared = 0;
        return shm;
    }

    /** The held norm, no longer held (null: none). */
    Norm takeNorm() {
        Norm n = held;
        held = null;
        return n;
    }

    /** Dynamic shared memory of a launch whose norms are of width d: the float32 residual (d rounded up to 4), x. */
    static int sharedBytes(int d) {
        return 4 * ((d + 3) & ~3) + 2 * d;
    }

    /** Forgets everything held. */
    void clear() {
        phases.clear();
        held = null;
        residual = 0;
        width = 0;
        shared = 0;
    }
}
