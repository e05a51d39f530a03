package io.based4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.cuda.CudaBackend;
import io.based4j.cuda.DeferredUpdates;
import io.based4j.cuda.GpuTest;
import io.based4j.cuda.Precision;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * State snapshots on the GPU (device-to-device copies): a sequence restored into a slot that held another one
 * continues as the sequence it was taken from, through a prefill piece and recorded decode steps, for the models of
 * {@link StateSnapshotTest} (a sliding window whose ring has wrapped; a full attention cache copied up to its
 * length) in float32 and bfloat16; the copy's device memory is given back when it is closed.
 */
@GpuTest
class GpuStateSnapshotTest {
    static final int PREFIX = StateSnapshotTest.PREFIX;
    static final int REST = StateSnapshotTest.REST;
    static final int DECODE = StateSnapshotTest.DECODE;

    /**
     * The original and the restored sequence run side by side in the same calls, so the same kernels see the same
     * inputs; they could differ only where a kernel's summation order depended on a sequence's place in the batch.
     * Allowed: the bounds GpuModelTest gives for two summation orders (float32: 1e-4 of the logits' rms per logit;
     * bfloat16: 3e-2 of the logits' norm). A restore that lost or misplaced state moves the logits by O(1) of their
     * scale, which the comparison with a sequence fed the continuation alone checks to be far over the bound.
     */
    static double bound(Precision precision, float[] want) {
        double rms = Math.sqrt(sumOfSquares(want) / want.length);
        return precision == Precision.F32 ? 1e-4 * rms : 3e-2 * Math.sqrt(sumOfSquares(want));
    }

    static Stream<Object[]> cases() {
        return StateSnapshotTest.models().stream()
                .flatMap(m -> Stream.of(Precision.F32, Precision.BF16).map(p -> new Object[] {m, p}));
    }

    private static double sumOfSquares(float[] v) {
        double s = 0;
        for (float x : v) {
            s += (double) x * x;
        }
        return s;
    }

    /** The largest |a - b| (float32) or ||a - b|| (bfloat16), to set against {@link #bound}. */
    static double distance(Precision precision, float[] a, float[] b) {
        double worst = 0;
        double sum = 0;
        for (int i = 0; i < a.length; i++) {
            double d = Math.abs((double) a[i] - b[i]);
            worst = Double.isNaN(d) ? Double.POSITIVE_INFINITY : Math.max(worst, d);
            sum += d * d;
        }
        return precision == Precision.F32 ? worst : Math.sqrt(sum);
    }

    static void near(Precision precision, float[] want, float[] got, String what) {
        double d = distance(precision, want, got);
        double bound = bound(precision, want);
        assertTrue(d <= bound, String.format(Locale.ROOT, "%s: the restored sequence is off by %.3g, allowed %.3g",
                what, d, bound));
    }

    /**
     * The same with linear attention's update deferred ({@link DeferredUpdates}; a session of a few sequences writes
     * its states every step otherwise): a snapshot holds S and z with the waiting tokens added in, the model's state.
     */
    @ParameterizedTest(name = "{0} in {1}, linear attention's update deferred")
    @MethodSource("cases")
    void aRestoredSequenceContinuesWithDeferredUpdates(StateSnapshotTest.Case c, Precision precision) {
        DeferredUpdates.forced(() -> aRestoredSequenceContinuesAsTheOriginal(c, precision));
    }

    @ParameterizedTest(name = "{0} in {1}")
    @MethodSource("cases")
    void aRestoredSequenceContinuesAsTheOriginal(StateSnapshotTest.Case c, Precision precision) {
        SplittableRandom r = new SplittableRandom(19);
        int[] prefix = r.ints(PREFIX, 0, c.vocab()).toArray();
        int[] other = r.ints(90, 0, c.vocab()).toArray();
        int[] rest = r.ints(REST, 0, c.vocab()).toArray();
        int[] decoded = r.ints(DECODE, 0, c.vocab()).toArray();
        try (CudaBackend gpu = CudaBackend.open("cuda", precision); BasedModel model = c.model().apply(gpu);
             Session s = model.newSession(3, StateSnapshotTest.MAX_LENGTH)) {
            StateSnapshotTest.call(model, s, new int[] {0, 1}, new int[][] {prefix, other});
            long before = gpu.allocatedBytes();
            StateSnapshot snapshot = s.snapshot(0);
            assertEquals(s.snapshotBytes(PREFIX), snapshot.bytes());
            assertEquals(StateSize.total(model.config(), PREFIX, gpu.cacheValueBytes()), snapshot.bytes());
            assertEquals(before + snapshot.bytes(), gpu.allocatedBytes(), "device memory of the snapshot");
            s.restore(1, snapshot);
            assertEquals(PREFIX, s.position(1));

            float[][] piece = StateSnapshotTest.call(model, s, new int[] {0, 1, 2}, new int[][] {rest, rest, rest});
            near(precision, piece[0], piece[1], "the first logits after the restore");
            double lost = distance(precision, piece[0], piece[2]);
            // on the CPU the continuation alone is 0.32 (golden) and 0.48 (attention mix) of the logits' norm away
            assertTrue(lost > 3 * bound(precision, piece[0]), "the continuation alone is only " + lost + " away:"
                    + " the comparison cannot tell a restored state from an empty one");
            for (int t = 0; t < DECODE; t++) { // decode steps of two sequences: recorded once, then replayed
                int[] token = {decoded[t]};
                float[][] step = StateSnapshotTest.call(model, s, new int[] {1, 0}, new int[][] {token, token});
                near(precision, step[1], step[0], "decode step " + t + " after the restore");
            }
            // a second snapshot, between decode steps (where linear attention defers its update, tokens wait beside
            // the state then), restored into slot 2: it goes on as slot 0 does
            try (StateSnapshot later = s.snapshot(0)) {
                assertEquals(StateSize.total(model.config(), s.position(0), gpu.cacheValueBytes()), later.bytes());
                s.restore(2, later);
                int[] token = {decoded[0]};
                float[][] step = StateSnapshotTest.call(model, s, new int[] {0, 2}, new int[][] {token, token});
                near(precision, step[0], step[1], "a step after a snapshot taken between decode steps");
            }
            long held = gpu.allocatedBytes();
            snapshot.close();
            assertEquals(held - snapshot.bytes(), gpu.allocatedBytes(), "device memory after the snapshot is closed");
        }
    }
}
