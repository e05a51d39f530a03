package io.based4j.cuda;

import io.based4j.backend.TrainingBackend;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Doubles the device computes that the host reads later (a training pass's loss): each is copied behind the work that
 * makes it into its own slot of a pinned ring, with an event, so that nothing waits until the value is read. A ring
 * of {@value #SLOTS} slots: a value must be read before {@value #SLOTS} more have been queued (reading it later is
 * refused, never wrong).
 */
final class Readouts implements AutoCloseable {
    static final int SLOTS = 1024;

    private final CudaDriver cu;
    private final long stream;
    /** Makes the backend's context current on the calling thread. */
    private final Runnable bind;
    private final MemorySegment host;
    private final long[] events = new long[SLOTS];
    private final long[] owner = new long[SLOTS];
    private long next = 1;

    Readouts(CudaDriver cu, long stream, Runnable bind) {
        this.cu = cu;
        this.stream = stream;
        this.bind = bind;
        this.host = cu.mallocHost(8L * SLOTS);
        for (int i = 0; i < SLOTS; i++) {
            events[i] = cu.createEvent();
        }
    }

    /** Queues the copy of the double at device address {@code src}; the readout waits for it. */
    TrainingBackend.Readout later(long src) {
        long ticket = next++;
        int slot = (int) (ticket % SLOTS);
        if (owner[slot] != 0) {
            cu.synchronizeEvent(events[slot]);  // the slot's last copy must land before it is written again
        }
        cu.copyDtoHAsync(host.asSlice(8L * slot, 8), src, 8, stream);
        cu.record(events[slot], stream);
        owner[slot] = ticket;
        return () -> {
            if (owner[slot] != ticket) {
                throw new IllegalStateException("a value from the device was read after " + SLOTS
                        + " later ones had taken its place");
            }
            bind.run();
            cu.synchronizeEvent(events[slot]);
            return host.get(ValueLayout.JAVA_DOUBLE, 8L * slot);
        };
    }

    @Override
    public void close() {
        cu.synchronize(stream);
        for (long e : events) {
            cu.destroyEvent(e);
        }
        cu.freeHost(host);
    }
}
