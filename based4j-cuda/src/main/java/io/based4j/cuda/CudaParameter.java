package io.based4j.cuda;

import io.based4j.backend.TrainingBackend;

/**
 * A trained tensor on the GPU: its float32 master values, which the optimizer updates, and the weight the forward
 * ops read. In float32 the weight is the master itself; in bf16 it is a bf16 copy, rounded from the master when the
 * parameter is made and rewritten by every AdamW update.
 */
final class CudaParameter implements TrainingBackend.Parameter {
    /** The float32 master values, {@code rows x cols}. */
    final CudaBuffer master;
    /** What the forward ops read: the master's memory in float32, a bf16 copy in bf16. */
    final CudaWeight compute;

    CudaParameter(CudaBuffer master, CudaWeight compute) {
        this.master = master;
        this.compute = compute;
    }

    /** Whether the compute weight is a separate copy (bf16) rather than the master itself. */
    boolean hasCopy() {
        return compute.ptr != master.ptr;
    }

    @Override
    public long[] shape() {
        return compute.shape();
    }

    @Override
    public int rows() {
        return master.rows;
    }

    @Override
    public int cols() {
        return master.cols;
    }

    @Override
    public String toString() {
        return "CudaParameter" + java.util.Arrays.toString(compute.shape) + " f32"
                + (hasCopy() ? " + " + compute.type.suffix() + " copy" : "");
    }
}
