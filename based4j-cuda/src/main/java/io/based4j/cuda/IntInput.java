package io.based4j.cuda;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Integers the host hands to kernels (token ids, a batch layout, sampling settings): a pinned host staging area and
 * the device buffer it is copied into, on the backend's stream. Before the staging area is written again, the host
 * waits for the copy that last read it; the device side needs no wait, since the copy and the kernels that read the
 * buffer are ordered on one stream.
 *
 * <p>When it belongs to a recorded forward call, the copy is part of the graph: replays refill the staging area
 * ({@link #stage}) and the graph copies it. A kernel may write the staging area too (the sampling, handing its ids to
 * the next replay: {@link #writtenOnStream}); the host's next write then waits for that kernel. A recorded training
 * step's inputs are copied ahead of each launch instead ({@link #upload}), so that the host need only wait for the
 * copy before writing the next step's.
 */
final class IntInput implements AutoCloseable {
    private final CudaDriver cu;
    private final CudaBackend backend;
    private final String what;
    private MemorySegment host;
    private long device;
    private int capacity;
    private final long copied;
    private boolean pending;
    /** Writes into the staging area so far, the host's and the device's ({@link #writtenOnStream}). */
    private long writes;
    /** Whether the graph this belongs to records the copy's event itself ({@link #copiedInGraph}). */
    private boolean recordedInGraph;

    IntInput(CudaBackend backend, String what, int capacity) {
        this.backend = backend;
        this.cu = backend.driver();
        this.what = what;
        this.copied = cu.createEvent();
        grow(Math.max(capacity, 16));
    }

    private void grow(int ints) {
        if (device != 0) {
            cu.synchronize(backend.stream());
            backend.free(device);
            cu.freeHost(host);
            device = 0;
        }
        host = cu.mallocHost(4L * ints);
        device = backend.allocate(4L * ints, what);
        capacity = ints;
    }

    /** Device address of the values last uploaded. */
    long device() {
        return device;
    }

    int capacity() {
        return capacity;
    }

    /** Writes {@code values} into the staging area (after the copy that last read it has run). */
    void stage(int[] values) {
        if (values.length > capacity) {
            throw new IllegalStateException(what + ": " + values.length + " values do not fit the recorded "
                    + capacity);
        }
        if (pending) {
            cu.synchronizeEvent(copied);
            pending = false;
        }
        MemorySegment.copy(values, 0, host, ValueLayout.JAVA_INT, 0, values.length);
        writes++;
    }

    /** Address of the staging area, which a kernel may write too ({@link #writtenOnStream}). */
    long hostAddress() {
        return host.address();
    }

    /**
     * Notes that work just queued on the stream writes the staging area (a sampling kernel handing its ids to the
     * next replay): the host's next {@link #stage} waits for it. Returns the count of writes, this one included.
     */
    long writtenOnStream() {
        cu.record(copied, backend.stream());
        pending = true;
        return ++writes;
    }

    /** The count of writes into the staging area so far. */
    long writes() {
        return writes;
    }

    /** Stages {@code values} and copies them to the device on the stream; grows first where allowed. */
    long upload(int[] values, boolean mayGrow) {
        if (values.length > capacity) {
            if (!mayGrow) {
                throw new IllegalStateException(what + ": " + values.length + " values exceed " + capacity
                        + " while recording");
            }
            grow(Math.max(values.length, 2 * capacity));
        }
        stage(values);
        if (values.length > 0) {
            cu.copyHtoDAsync(device, host, 4L * values.length, backend.stream());
        }
        if (mayGrow) { // no event records while a graph is being recorded
            cu.record(copied, backend.stream());
            pending = true;
        }
        return device;
    }

    /** Marks the staging area as read by work just launched (a graph replay). */
    void markRead() {
        if (!recordedInGraph) {
            cu.record(copied, backend.stream());  // at the replay's end
        }
        pending = true;
    }

    /**
     * In a graph being captured, just after the copy of the staging area: a node that records the copy's event at
     * this point of each replay, so that the host may stage the next replay's values as soon as this one has copied
     * them ({@link #markRead} then records nothing at the replay's end).
     */
    void copiedInGraph() {
        cu.recordInGraph(copied, backend.stream());
        recordedInGraph = true;
    }

    @Override
    public void close() {
        if (pending) {
            cu.synchronizeEvent(copied);
        }
        if (device != 0) {
            backend.free(device);
            cu.freeHost(host);
            device = 0;
        }
        cu.destroyEvent(copied);
    }
}
