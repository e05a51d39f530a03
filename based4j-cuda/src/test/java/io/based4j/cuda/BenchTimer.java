package io.based4j.cuda;

/** The CUDA-event timing the benchmarks share: the mean time of repeated calls on a {@link KernelRig}'s stream. */
final class BenchTimer {
    private BenchTimer() {
    }

    /**
     * Mean milliseconds of {@code reps} calls of {@code call} between two events on the rig's stream, after one
     * warm-up call that the stream finishes first.
     */
    static double millis(KernelRig rig, int reps, Runnable call) {
        CudaDriver cu = rig.cu;
        call.run();
        cu.synchronize(rig.stream);
        long start = cu.createEvent();
        long end = cu.createEvent();
        try {
            cu.record(start, rig.stream);
            for (int i = 0; i < reps; i++) {
                call.run();
            }
            cu.record(end, rig.stream);
            cu.synchronizeEvent(end);
            return cu.elapsedMillis(start, end) / reps;
        } finally {
            cu.destroyEvent(start);
            cu.destroyEvent(end);
        }
    }
}
