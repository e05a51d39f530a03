package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.GoldenModel;
import io.based4j.backend.Backend;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.model.BasedModel;
import io.based4j.model.Session;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * What the engine's exactness rests on, checked on the logits themselves (equal tokens alone would hide rounding
 * differences too small to change a choice): on the CPU backend, a prompt fed in pieces that are multiples of
 * {@link Backend#exactSplit()}, in calls shared with other sequences' tokens, gives bit for bit the logits of the
 * same prompt fed whole in a call of its own, and so do the decode steps after it; pieces of other lengths do not.
 *
 * <p>Until the JIT has compiled the Vector API kernels, two identical runs can differ in the last bits (the
 * interpreted forms sum a vector's lanes in another order than the compiled ones), so the comparison is repeated
 * until two runs of the whole prompt around the pieced one agree with each other (the steady state; a few rounds).
 */
class ExactSplitTest {
    static final int VOCAB = 1000;
    static final int PROMPT = 200;
    /** Rounds allowed for the JIT to settle; about 10 are needed on a 2-core machine. */
    static final int ROUNDS = 200;

    @Test
    void alignedPiecesAmongOtherSequencesGiveTheLogitsOfOneCall() {
        SplittableRandom r = new SplittableRandom(29);
        int[] prompt = r.ints(PROMPT, 0, VOCAB).toArray();
        int[] decoded = r.ints(5, 0, VOCAB).toArray();
        try (CpuBackend backend = new CpuBackend(); BasedModel model = BasedModel.load(GoldenModel.dir(), backend)) {
            int split = backend.exactSplit();
            assertEquals(64, split, "the CPU backend's linear-attention chunk");
            int[] aligned = {split, split, split, PROMPT - 3 * split};
            for (int round = 0; round < ROUNDS; round++) {
                List<float[]> whole = run(model, prompt, decoded, new int[] {PROMPT}, false);
                List<float[]> pieces = run(model, prompt, decoded, aligned, true);
                List<float[]> wholeAgain = run(model, prompt, decoded, new int[] {PROMPT}, false);
                if (same(whole, wholeAgain) && same(whole, pieces)) {
                    List<float[]> unaligned = run(model, prompt, decoded, new int[] {100, 100}, true);
                    assertFalse(Arrays.equals(whole.get(0), unaligned.get(0)),
                            "pieces of 100 tokens gave the same logits too: the check cannot tell splits apart");
                    return;
                }
            }
            fail("in " + ROUNDS + " rounds, the prompt fed in pieces of " + Arrays.toString(aligned)
                    + " beside other sequences never gave the logits of the prompt fed whole");
        }
    }

    private static boolean same(List<float[]> a, List<float[]> b) {
        for (int i = 0; i < a.size(); i++) {
            if (!Arrays.equals(a.get(i), b.get(i))) {
                return false;
            }
        }
        return true;
    }

    /**
     * Feeds the prompt in the given pieces, then the decoded tokens one a call, and returns the prompt's last logits
     * and each decode step's. With {@code neighbours}, the sequence sits in slot 2 of three and every call also
     * carries a token for slots 0 and 1 (which start with histories of their own), in varying batch positions.
     */
    private static List<float[]> run(BasedModel model, int[] prompt, int[] decoded, int[] pieces,
                                     boolean neighbours) {
        SplittableRandom r = new SplittableRandom(31);
        List<float[]> out = new ArrayList<>();
        try (Session s = model.newSession(neighbours ? 3 : 1, 256)) {
            int slot = 0;
            if (neighbours) {
                slot = 2;
                model.forward(s, s.batch(new int[] {0, 1}, new int[] {10, 3}), r.ints(13, 0, VOCAB).toArray(),
                        false, null);
            }
            int fed = 0;
            for (int piece : pieces) {
                out.clear();
                out.add(call(model, s, slot, Arrays.copyOfRange(prompt, fed, fed + piece), neighbours, r, 0));
                fed += piece;
            }
            for (int t = 0; t < decoded.length; t++) {
                out.add(call(model, s, slot, new int[] {decoded[t]}, neighbours, r, t % 3));
            }
        }
        return out;
    }

    /** One call: {@code tokens} for {@code slot}, placed at {@code place} among the neighbours' decode tokens. */
    private static float[] call(BasedModel model, Session s, int slot, int[] tokens, boolean neighbours,
                                SplittableRandom r, int place) {
        int padded = model.config().paddedVocabSize();
        if (!neighbours) {
            return model.backend().download(model.forward(s, s.batch(new int[] {slot}, new int[] {tokens.length}),
                    tokens, false, null));
        }
        List<Integer> slots = new ArrayList<>(List.of(0, 1));
        slots.add(place, slot);
        int[] lengths = new int[3];
        int[] packed = new int[2 + tokens.length];
        for (int i = 0, at = 0; i < 3; i++) {
            if (slots.get(i) == slot) {
                lengths[i] = tokens.length;
                System.arraycopy(tokens, 0, packed, at, tokens.length);
            } else {
                lengths[i] = 1;
                packed[at] = r.nextInt(VOCAB);
            }
            at += lengths[i];
        }
        float[] all = model.backend().download(model.forward(s,
                s.batch(slots.stream().mapToInt(Integer::intValue).toArray(), lengths), packed, false, null));
        return Arrays.copyOfRange(all, place * padded, (place + 1) * padded);
    }
}
