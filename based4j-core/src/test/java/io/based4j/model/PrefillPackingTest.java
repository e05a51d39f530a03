package io.based4j.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.based4j.backend.Backend;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * {@link BasedModel#prefill} packs whole prompts into its calls and splits a prompt only when it alone exceeds a
 * call, and the logits at each prompt's end are those of prefilling it alone.
 */
class PrefillPackingTest {
    @Test
    void wholePromptsGoTogetherAndOnlyAPromptLongerThanACallIsSplit() {
        DecodeEqualsPrefillTest.Case c = DecodeEqualsPrefillTest.cases().stream()
                .filter(k -> k.name().equals("BASED mix")).findFirst().orElseThrow();
        ModelConfig config = ConfigParser.fromMap(c.name(), c.config());
        ModelWeights weights = DecodeEqualsPrefillTest.randomWeights(config, 7);
        SplittableRandom r = new SplittableRandom(11);
        // a call holds 10 tokens: 4 alone (8 does not fit beside it), 8 alone (3 does not fit beside it), then 3 and
        // 5 together, then 23 in pieces of 10, 10 and 3
        int[] lengths = {4, 8, 3, 5, 23};
        int[][] prompts = new int[lengths.length][];
        for (int i = 0; i < lengths.length; i++) {
            prompts[i] = r.ints(lengths[i], 0, DecodeEqualsPrefillTest.VOCAB).toArray();
        }
        try (Backend backend = new CpuBackend(); BasedModel model = BasedModel.of(weights, backend)) {
            int padded = config.paddedVocabSize();
            List<List<Integer>> endsPerCall = new ArrayList<>();
            float[][] last = new float[prompts.length][];
            try (Session session = model.newSession(prompts.length, 32, 10)) {
                model.prefill(session, new int[] {0, 1, 2, 3, 4}, prompts, (logits, rows, sequences) -> {
                    float[] all = backend.download(logits);
                    List<Integer> ended = new ArrayList<>();
                    for (int i = 0; i < rows.length; i++) {
                        ended.add(sequences[i]);
                        last[sequences[i]] = Arrays.copyOfRange(all, rows[i] * padded, (rows[i] + 1) * padded);
                    }
                    endsPerCall.add(ended);
                });
            }
            assertEquals(List.of(List.of(0), List.of(1), List.of(2, 3), List.of(4)), endsPerCall,
                    "the prompts that ended in each call that ended any");
            for (int i = 0; i < prompts.length; i++) {
                try (Session alone = model.newSession(1, 32)) {
                    float[][] want = new float[1][];
                    model.prefill(alone, new int[] {0}, new int[][] {prompts[i]},
                            (logits, rows, sequences) -> {
                                float[] all = backend.download(logits);
                                want[0] = Arrays.copyOfRange(all, rows[0] * padded, (rows[0] + 1) * padded);
                            });
                    assertArrayEquals(want[0], last[i], 1e-4f * rms(want[0]),
                            "logits at the end of prompt " + i + ", packed against alone");
                }
            }
        }
    }

    private static float rms(float[] v) {
        double s = 0;
        for (float x : v) {
            s += (double) x * x;
        }
        return (float) Math.sqrt(s / v.length);
    }
}
