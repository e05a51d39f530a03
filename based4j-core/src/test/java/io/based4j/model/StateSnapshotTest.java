package io.based4j.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.GoldenModel;
import io.based4j.backend.Backend;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.backend.cpu.ReferenceBackend;
import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * A sequence restored from a {@link StateSnapshot} continues exactly as the sequence it was taken from: on the CPU
 * backend and the scalar reference, for the golden model (BaseConv, linear attention, a sliding window of 16 tokens
 * whose ring has wrapped at the snapshot) and for a model with a full attention layer (whose snapshot is the first
 * tokens of its key/value cache). The comparisons are bit for bit: the original and the restored sequence run side
 * by side in the same forward calls (the CPU backend computes each sequence of a call independently of the others).
 */
class StateSnapshotTest {
    static final int PREFIX = 64;
    static final int REST = 40;
    static final int DECODE = 5;
    static final int MAX_LENGTH = 256;
    /**
     * Rounds allowed for the JIT to settle: until the CPU backend's Vector API kernels are compiled, two sequences
     * of one call can go through the interpreted and the compiled form, which sum a vector's lanes in other orders
     * (see the serve module's ExactSplitTest). A restore that lost anything differs in every round.
     */
    static final int ROUNDS = 200;

    record Case(String name, Function<Backend, BasedModel> model, int vocab) {
        @Override
        public String toString() {
            return name;
        }
    }

    static List<Case> models() {
        return List.of(new Case("golden tiny", b -> BasedModel.load(GoldenModel.dir(), b), 1000),
                new Case("conv, full attention and linear attention", b -> BasedModel.of(withAttention(), b), 101));
    }

    static Stream<Object[]> cases() {
        return models().stream().flatMap(m -> Stream.of("cpu", "reference").map(b -> new Object[] {m, b}));
    }

    static Backend backend(String name) {
        return name.equals("cpu") ? new CpuBackend() : new ReferenceBackend();
    }

    /** Full attention in layers 1 and 3, BaseConv in 0 and 2, linear attention in 4; random weights. */
    static ModelWeights withAttention() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("model_type", "gpt2");
        m.put("n_embd", 32L);
        m.put("n_layer", 5L);
        m.put("n_head", 4L);
        m.put("n_inner", 64L);
        m.put("vocab_size", 101L);
        m.put("pad_vocab_size_multiple", 8L);
        m.put("layer_norm_epsilon", 1e-5);
        m.put("rms_norm", true);
        m.put("activation_function", "swiglu");
        m.put("rotary_emb_fraction", 1.0);
        m.put("tie_word_embeddings", true);
        m.put("alt_mixer", Presets.convMixer());
        m.put("alt_mixer_layers", List.of(0L, 2L));
        m.put("alt_mixer_2", Presets.linearMixer(8, 4));
        m.put("alt_mixer_2_layers", List.of(4L));
        ModelConfig config = ConfigParser.fromMap("attention mix", m);
        return DecodeEqualsPrefillTest.randomWeights(config, 41);
    }

    /** The logits of one call, one row per sequence: {@code slots[i]} continues with {@code tokens[i]}. */
    static float[][] call(BasedModel model, Session s, int[] slots, int[][] tokens) {
        int[] lengths = Arrays.stream(tokens).mapToInt(t -> t.length).toArray();
        int[] packed = Arrays.stream(tokens).flatMapToInt(Arrays::stream).toArray();
        float[] all = model.backend().download(model.forward(s, s.batch(slots, lengths), packed, false, null));
        int cols = model.config().paddedVocabSize();
        float[][] rows = new float[slots.length][];
        for (int i = 0; i < slots.length; i++) {
            rows[i] = Arrays.copyOfRange(all, i * cols, (i + 1) * cols);
        }
        return rows;
    }

    @ParameterizedTest(name = "{0} on {1}")
    @MethodSource("cases")
    void aRestoredSequenceContinuesAsTheOriginal(Case c, String backendName) {
        SplittableRandom r = new SplittableRandom(19);
        int[] prefix = r.ints(PREFIX, 0, c.vocab()).toArray();
        int[] other = r.ints(90, 0, c.vocab()).toArray();
        int[] rest = r.ints(REST, 0, c.vocab()).toArray();
        int[] decoded = r.ints(DECODE, 0, c.vocab()).toArray();
        try (Backend backend = backend(backendName); BasedModel model = c.model().apply(backend)) {
            String mismatch = null;
            for (int round = 0; round < ROUNDS; round++) {
                mismatch = round(model, backendName, prefix, other, rest, decoded);
                if (mismatch == null) {
                    return;
                }
            }
            fail("in " + ROUNDS + " rounds the restored sequence never continued as the original: " + mismatch);
        }
    }

    /** One comparison in a fresh session; returns what differed, or null. */
    private static String round(BasedModel model, String backendName, int[] prefix, int[] other, int[] rest,
                                int[] decoded) {
        try (Session s = model.newSession(3, MAX_LENGTH)) {
            call(model, s, new int[] {0, 1}, new int[][] {prefix, other});
            long expectBytes = s.snapshotBytes(PREFIX);
            try (StateSnapshot snapshot = s.snapshot(0)) {
                assertEquals(PREFIX, snapshot.position());
                assertEquals(expectBytes, snapshot.bytes());
                if (backendName.equals("cpu")) { // the reference keeps linear attention's features unmerged
                    assertEquals(StateSize.total(model.config(), PREFIX), snapshot.bytes());
                }
                // slot 1 holds another sequence of 90 tokens: the restore replaces all of it
                s.restore(1, snapshot);
                assertEquals(PREFIX, s.position(1));
                assertEquals(PREFIX, s.position(0), "the snapshot left its slot as it was");

                // slot 2 is fed the continuation alone: what a lost state would give
                float[][] piece = call(model, s, new int[] {0, 1, 2}, new int[][] {rest, rest, rest});
                assertFalse(Arrays.equals(piece[0], piece[2]), "the continuation alone gave the same logits: the"
                        + " comparison cannot tell a restored state from an empty one");
                if (!Arrays.equals(piece[0], piece[1])) {
                    return "the first logits after the restore";
                }
                for (int t = 0; t < DECODE; t++) {
                    int[] token = {decoded[t]};
                    float[][] step = call(model, s, new int[] {1, 0}, new int[][] {token, token});
                    if (!Arrays.equals(step[0], step[1])) {
                        return "decode step " + t + " after the restore";
                    }
                }
                // the snapshot stays usable: restored again into two slots, one of them just used
                s.restore(1, snapshot);
                s.restore(2, snapshot);
                float[][] again = call(model, s, new int[] {2, 1}, new int[][] {rest, rest});
                assertEquals(PREFIX + REST + DECODE, s.position(0));
                return Arrays.equals(again[0], again[1]) ? null : "two restores of one snapshot";
            }
        }
    }

    /**
     * The scalar reference computes the same way in every call, so a snapshot restored into another session (one of
     * shorter sequences, whose full attention cache is smaller) continues bit for bit as the original did.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("models")
    void aSnapshotMovesToAnotherSessionOfTheModel(Case c) {
        SplittableRandom r = new SplittableRandom(23);
        int[] prefix = r.ints(PREFIX, 0, c.vocab()).toArray();
        int[] rest = r.ints(REST, 0, c.vocab()).toArray();
        try (Backend backend = new ReferenceBackend(); BasedModel model = c.model().apply(backend);
             BasedModel other = c.model().apply(backend);
             Session s = model.newSession(1, MAX_LENGTH);
             Session small = model.newSession(2, PREFIX + REST);
             Session tooSmall = model.newSession(1, PREFIX - 1);
             Session foreign = other.newSession(1, MAX_LENGTH)) {
            call(model, s, new int[] {0}, new int[][] {prefix});
            StateSnapshot snapshot = s.snapshot(0);
            float[] want = call(model, s, new int[] {0}, new int[][] {rest})[0];
            small.restore(1, snapshot);
            assertArrayEquals(want, call(model, small, new int[] {1}, new int[][] {rest})[0]);

            IllegalArgumentException longer = assertThrows(IllegalArgumentException.class,
                    () -> tooSmall.restore(0, snapshot));
            assertEquals("a state snapshot of 64 tokens does not fit the session's sequences of at most 63 tokens",
                    longer.getMessage());
            IllegalArgumentException otherModel = assertThrows(IllegalArgumentException.class,
                    () -> foreign.restore(0, snapshot));
            assertEquals("the state snapshot belongs to another model", otherModel.getMessage());
            snapshot.close();
            IllegalStateException closed = assertThrows(IllegalStateException.class, () -> small.restore(0, snapshot));
            assertEquals("the state snapshot is closed", closed.getMessage());
            assertTrue(snapshot.bytes() > 0);
        }
    }
}
