package io.based4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.GoldenModel;
import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.cpu.CpuBackend;
import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A backend that times its products on their first call ({@link Backend.StepGraphs#timesFirstCalls}) has each new
 * shape of decode step run op by op once, then recorded on its second step and replayed after; one that does not
 * has it recorded on its first; a later session of the same model records its first step at once. The steps run
 * op by op and recorded give the logits of a session without recordings (within the CPU backend's reordered float32
 * sums).
 */
class FirstStepUnrecordedTest {
    /** What a recorder saw: "record n" or "replay n", n the step's sequences. */
    private static final class Recorder implements Backend.StepGraphs {
        final boolean timesFirstCalls;
        final List<String> calls = new ArrayList<>();

        Recorder(boolean timesFirstCalls) {
            this.timesFirstCalls = timesFirstCalls;
        }

        @Override
        public Backend.Graph record(int[] tokens, TokenBatch batch, Runnable forward) {
            calls.add("record " + batch.size());
            forward.run();
            return () -> { };
        }

        @Override
        public void replay(Backend.Graph graph, int[] tokens, TokenBatch batch) {
            calls.add("replay " + batch.size());
        }

        @Override
        public boolean timesFirstCalls() {
            return timesFirstCalls;
        }

        @Override
        public <T> T firstStep(java.util.function.Supplier<T> forward) {
            calls.add("first");
            return forward.get();
        }
    }

    /** The CPU backend, its graphs() answered by {@code recorder}. */
    private static Backend withRecorder(Backend cpu, Recorder recorder) {
        InvocationHandler h = (proxy, method, args) -> {
            if (method.getName().equals("graphs") && method.getParameterCount() == 0) {
                return recorder;
            }
            try {
                return method.invoke(cpu, args);
            } catch (InvocationTargetException e) {
                throw e.getCause();
            }
        };
        return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class}, h);
    }

    @Test
    void aBackendThatTimesFirstCallsRecordsTheSecondStep() {
        // session A: three steps; session B of the same model: one step
        assertEquals(List.of("record 2", "replay 2", "replay 2", "record 2"), steps(false));
        // A's first step op by op, through the recorder's firstStep; B's recorded at once (the model's products of
        // that shape are planned)
        assertEquals(List.of("first", "record 2", "replay 2", "record 2"), steps(true));
    }

    @Test
    void theUnrecordedStepAndTheRecordedOneGiveTheLogitsOfASessionWithoutRecordings() {
        Recorder recorder = new Recorder(true);
        try (CpuBackend cpu = new CpuBackend();
             BasedModel plain = BasedModel.load(GoldenModel.dir(), cpu);
             BasedModel timed = BasedModel.load(GoldenModel.dir(), withRecorder(cpu, recorder));
             Session want = plain.newSession(2, 32);
             Session got = timed.newSession(2, 32)) {
            want.useGraphs(false);
            int[] prompts = {1, 2, 3, 4, 5, 6};
            plain.forward(want, TokenBatch.uniform(2, 3), prompts, false, null);
            timed.forward(got, TokenBatch.uniform(2, 3), prompts, false, null);
            for (int t = 0; t < 2; t++) {
                int[] tokens = {7 + t, 9 + t};
                int[] positions = {3 + t, 3 + t};
                float[] a = plain.backend().download(
                        plain.forward(want, TokenBatch.step(new int[] {0, 1}, positions), tokens, false, null));
                float[] b = timed.backend().download(
                        timed.forward(got, TokenBatch.step(new int[] {0, 1}, positions), tokens, false, null));
                // the first step ran op by op (through firstStep, nothing recorded), the second was recorded (the
                // recorder runs it)
                assertEquals(t == 0 ? List.of("first") : List.of("first", "record 2"), recorder.calls,
                        "after step " + t);
                assertNear(a, b, "step " + t);
            }
        }
    }

    /**
     * Within the CPU backend's reordering: its parallel sums may add in another order from call to call (float32,
     * differences of some 1e-6 of the logits' scale); a step on wrong tokens or a state advanced twice moves them by
     * 1e-2 of it or more (DecodeEqualsPrefillTest's bound).
     */
    private static void assertNear(float[] want, float[] got, String what) {
        assertEquals(want.length, got.length);
        double rms = DecodeEqualsPrefillTest.rms(want);
        double worst = 0;
        for (int i = 0; i < want.length; i++) {
            worst = Math.max(worst, Math.abs(got[i] - want[i]));
        }
        assertTrue(worst <= DecodeEqualsPrefillTest.REL_TOL * rms,
                what + ": largest difference " + worst + " against rms " + rms);
    }

    /** The recorder's calls over three decode steps of two sequences in one session, then one in a second. */
    private static List<String> steps(boolean timesFirstCalls) {
        Recorder recorder = new Recorder(timesFirstCalls);
        try (CpuBackend cpu = new CpuBackend();
             BasedModel m = BasedModel.load(GoldenModel.dir(), withRecorder(cpu, recorder))) {
            for (int stepsOfSession : new int[] {3, 1}) {
                try (Session s = m.newSession(2, 32)) {
                    m.forward(s, TokenBatch.uniform(2, 3), new int[] {1, 2, 3, 4, 5, 6}, false, null);
                    for (int t = 0; t < stepsOfSession; t++) {
                        int[] positions = {s.position(0), s.position(1)};
                        m.forward(s, TokenBatch.step(new int[] {0, 1}, positions), new int[] {7 + t, 9 + t}, false,
                                null);
                    }
                }
            }
        }
        return recorder.calls;
    }
}
