package io.based4j.backend.cpu;

import io.based4j.backend.Backend;
import io.based4j.config.MixerConfig;
import io.based4j.memory.HostMemory;
import io.based4j.memory.MemoryNeed;
import io.based4j.memory.Sizes;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.Locale;

/** What the scalar reference and the fast CPU backend share: heap buffers, weights, states and trivial ops. */
abstract sealed class HeapBackend implements Backend permits ReferenceBackend, CpuBackend {
    /** Holds weights converted on load (fp16 or fp64 into fp32); closed with the backend. */
    private final Arena arena = Arena.ofShared();
    /** Where activations and states (Java arrays) and converted or mapped weights (outside the heap) must fit. */
    final HostMemory memory;

    HeapBackend(HostMemory memory) {
        this.memory = memory;
    }

    /**
     * Activations and recurrent state are Java arrays: they must fit in the Java heap. Every allocation is checked
     * too, with the array-length limit, before the array is made.
     */
    @Override
    public void checkFits(long bytes, String what) {
        memory.requireHeap(bytes, what);
    }

    /**
     * Weights stay outside the heap: float32 and bfloat16 ones are read straight from the memory-mapped checkpoint,
     * others are converted to float32 in native memory; both take memory the machine has available.
     */
    @Override
    public void checkWeightsFit(long bytes, String model, String detail) {
        memory.require(MemoryNeed.offHeap(model, bytes, "for its weights " + detail));
    }

    /**
     * The mapped file's pages a float32 or bfloat16 weight will read (nothing when it is already in memory), or the
     * float32 copy of any other type.
     */
    @Override
    public long storedBytes(Tensor tensor) {
        if (CpuWeight.computesDirectly(tensor)) {
            return tensor.data().isMapped() ? tensor.data().byteSize() : 0;
        }
        return Sizes.times(tensor.numel(), Float.BYTES);
    }

    @Override
    public Buffer allocate(int rows, int cols) {
        int n = Sizes.arrayLength(rows, cols, "activations");
        memory.requireHeap(4L * n, String.format(Locale.ROOT, "a buffer of %,d x %,d activations", rows, cols));
        return new CpuBuffer(new float[n], rows, cols);
    }

    @Override
    public Buffer view(Buffer buffer, int rows) {
        CpuBuffer b = CpuBuffer.of(buffer);
        if (rows < 0 || rows > b.rows) {
            throw new IllegalArgumentException("a view of " + rows + " rows does not fit " + b);
        }
        return rows == b.rows ? b : new CpuBuffer(b.data, rows, b.cols);
    }

    @Override
    public Buffer upload(float[] values, int rows, int cols) {
        return new CpuBuffer(values.clone(), rows, cols);
    }

    @Override
    public float[] download(Buffer buffer) {
        CpuBuffer b = CpuBuffer.of(buffer);
        return java.util.Arrays.copyOf(b.data, b.rows * b.cols);
    }

    @Override
    public Weight weight(Tensor tensor) {
        return new CpuWeight(tensor, arena, memory);
    }

    /** Width of the linear-attention state features this backend keeps (merged or not). */
    abstract int linearStateFeatures(MixerConfig.LinearAttention cfg);

    @Override
    public MixerState allocateState(MixerConfig mixer, int slots, int maxLength) {
        return switch (mixer) {
            case MixerConfig.BaseConv c -> new CpuStates.Conv(memory, slots, c.innerWidth(), c.kernel());
            case MixerConfig.LinearAttention l ->
                    new CpuStates.Linear(memory, slots, l.numHeads(), linearStateFeatures(l), l.headDim());
            case MixerConfig.Attention a -> a.sliding()
                    ? new CpuStates.KeyValue(memory, slots, a.window(), a.dModel(), true)
                    : new CpuStates.KeyValue(memory, slots, maxLength, a.dModel(), false);
        };
    }

    @Override
    public void embedding(Weight table, int[] ids, Buffer out) {
        CpuWeight t = CpuWeight.of(table);
        CpuBuffer o = CpuBuffer.of(out);
        checkShape("embedding", o, ids.length, t.cols);
        for (int i = 0; i < ids.length; i++) {
            int id = ids[i];
            if (id < 0 || id >= t.rows) {
                throw new IllegalArgumentException("token id " + id + " is outside the embedding table [0, " + t.rows + ")");
            }
            for (int j = 0; j < t.cols; j++) {
                o.data[i * t.cols + j] = t.get(id, j);
            }
        }
    }

    @Override
    public void addInPlace(Buffer acc, Buffer x) {
        CpuBuffer a = CpuBuffer.of(acc);
        CpuBuffer b = CpuBuffer.of(x);
        checkShape("add", b, a.rows, a.cols);
        for (int i = 0, n = a.rows * a.cols; i < n; i++) {
            a.data[i] += b.data[i];
        }
    }

    @Override
    public void close() {
        arena.close();
    }

    static void checkShape(String op, CpuBuffer b, int rows, int cols) {
        if (b.rows != rows || b.cols != cols) {
            throw new IllegalArgumentException(op + ": expected a " + rows + "x" + cols + " buffer, got " + b.rows + "x" + b.cols);
        }
    }

    static float silu(float x) {
        return x / (1f + (float) Math.exp(-x));
    }
}
