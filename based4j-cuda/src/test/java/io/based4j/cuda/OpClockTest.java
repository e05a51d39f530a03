package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.OpClock;
import org.junit.jupiter.api.Test;

/**
 * The CUDA backend's op clock: marks queued inside a {@linkplain OpClock#hold hold} time the device's work alone (the
 * host's time queuing it is left out), work queued inside a hold runs once the hold lets go, and a hold the host
 * never releases lets go by itself (no hang).
 */
@GpuTest
class OpClockTest {
    @Test
    void aHoldLeavesTheHostsTimeOut() throws InterruptedException {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.F32)) {
            OpClock clock = gpu.clock();
            Buffer a = gpu.upload(new float[] {1, 2, 3, 4}, 1, 4);
            Buffer b = gpu.upload(new float[] {10, 20, 30, 40}, 1, 4);
            gpu.addInPlace(a, b);  // loaded and warm

            long hold = clock.hold();
            long from = clock.mark();
            Thread.sleep(10);  // the host is slow to queue the op (less than a hold waits at most)
            gpu.addInPlace(a, b);
            long to = clock.mark();
            clock.go(hold);
            double held = clock.millis(from, to);

            long from2 = clock.mark();
            Thread.sleep(10);
            gpu.addInPlace(a, b);
            long to2 = clock.mark();
            double unheld = clock.millis(from2, to2);

            // 10 ms of the host's sleep count without a hold and not with one; a four-value add takes microseconds
            assertTrue(held < 2, "held: " + held + " ms");
            assertTrue(unheld >= 9, "not held: " + unheld + " ms");
            assertArrayEquals(new float[] {31, 62, 93, 124}, gpu.download(a), "both adds ran");
        }
    }

    @Test
    void kernelsAreTimedOneByOne() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.F32)) {
            OpClock clock = gpu.clock();
            Buffer a = gpu.upload(new float[] {1, 2, 3, 4}, 1, 4);
            Buffer b = gpu.upload(new float[] {10, 20, 30, 40}, 1, 4);
            clock.timeKernels(true);
            gpu.addInPlace(a, b);
            gpu.addInPlace(a, b);
            java.util.List<io.based4j.backend.OpProfile.Row> rows = clock.kernelTimes();
            clock.timeKernels(false);
            assertEquals(1, rows.size(), "one kernel: " + rows);
            assertEquals(2, rows.getFirst().calls(), "called twice: " + rows);
            assertTrue(rows.getFirst().op().startsWith("add"), "named by its function: " + rows);
            assertTrue(rows.getFirst().millis() > 0 && rows.getFirst().millis() < 5, "timed: " + rows);
            gpu.addInPlace(a, b);
            assertTrue(clock.kernelTimes().isEmpty(), "no timing once stopped");
            assertArrayEquals(new float[] {31, 62, 93, 124}, gpu.download(a), "the adds ran");
        }
    }

    @Test
    void aHoldNotReleasedLetsGoByItself() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.F32)) {
            OpClock clock = gpu.clock();
            Buffer a = gpu.upload(new float[] {1, 2}, 1, 2);
            Buffer b = gpu.upload(new float[] {3, 4}, 1, 2);
            long t0 = System.nanoTime();
            clock.hold();  // never released: the device waits for it at most its bounded time
            gpu.addInPlace(a, b);
            assertArrayEquals(new float[] {4, 6}, gpu.download(a), "the add ran after the hold");
            double ms = (System.nanoTime() - t0) / 1e6;
            assertTrue(ms < 5_000, "the download waited " + ms + " ms");
        }
    }
}
