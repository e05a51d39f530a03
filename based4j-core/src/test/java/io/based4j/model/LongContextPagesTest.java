package io.based4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.backend.cpu.ReferenceBackend;
import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * Full attention over contexts longer than a page of the CPU key/value cache (256 tokens a page, made as a sequence
 * reaches it): decoding token by token, and a prefill in two pieces that splits a page, give the logits of the
 * parallel form, on the CPU backend and the float64 reference, within {@link DecodeEqualsPrefillTest#REL_TOL} of the
 * logits' rms.
 */
class LongContextPagesTest {
    private static final int[] LENGTHS = {600, 300};

    @Test
    void decodeAcrossPagesIsTheParallelForm() {
        DecodeEqualsPrefillTest.Case c = DecodeEqualsPrefillTest.cases().stream()
                .filter(k -> k.name().equals("full attention without biases")).findFirst().orElseThrow();
        ModelConfig config = ConfigParser.fromMap(c.name(), c.config());
        ModelWeights weights = DecodeEqualsPrefillTest.randomWeights(config, c.seed());
        SplittableRandom r = new SplittableRandom(c.seed());
        int[][] tokens = {r.ints(LENGTHS[0], 0, DecodeEqualsPrefillTest.VOCAB).toArray(),
            r.ints(LENGTHS[1], 0, DecodeEqualsPrefillTest.VOCAB).toArray()};
        int[] packed = Arrays.stream(tokens).flatMapToInt(Arrays::stream).toArray();
        int cols = config.paddedVocabSize();
        int maxLength = 1024;
        for (Supplier<Backend> make : java.util.List.<Supplier<Backend>>of(CpuBackend::new, ReferenceBackend::new)) {
            try (Backend backend = make.get(); BasedModel model = BasedModel.of(weights, backend)) {
                String name = backend.name();
                Session session = model.newSession(2, maxLength);
                float[] parallel = backend.download(model.forward(session, session.batch(new int[] {0, 1}, LENGTHS),
                        packed, true, null));
                double tol = DecodeEqualsPrefillTest.REL_TOL * rms(parallel);

                // two pieces: 333 and 267 tokens of the first sequence (its second piece starts mid-page)
                Session pieces = model.newSession(2, maxLength);
                model.forward(pieces, pieces.batch(new int[] {0}, new int[] {333}),
                        Arrays.copyOf(tokens[0], 333), true, null);
                float[] second = backend.download(model.forward(pieces, pieces.batch(new int[] {0}, new int[] {267}),
                        Arrays.copyOfRange(tokens[0], 333, 600), true, null));
                for (int t = 333; t < 600; t++) {
                    assertRow(name + ", second piece, position " + t, parallel, t, second, t - 333, cols, tol);
                }

                // token by token, both sequences in one batch while both run
                Session dec = model.newSession(2, maxLength);
                for (int t = 0; t < LENGTHS[0]; t++) {
                    int step = t;
                    int[] active = step < LENGTHS[1] ? new int[] {0, 1} : new int[] {0};
                    int[] ids = Arrays.stream(active).map(s -> tokens[s][step]).toArray();
                    int[] ones = new int[active.length];
                    Arrays.fill(ones, 1);
                    float[] got = backend.download(model.forward(dec, dec.batch(active, ones), ids, false, null));
                    for (int i = 0; i < active.length; i++) {
                        int row = (active[i] == 0 ? 0 : LENGTHS[0]) + t;
                        assertRow(name + ", sequence " + active[i] + " position " + t, parallel, row, got, i, cols,
                                tol);
                    }
                }
                assertEquals(LENGTHS[0], dec.position(0));
            }
        }
    }

    private static void assertRow(String what, float[] want, int wantRow, float[] got, int gotRow, int cols,
                                  double tol) {
        for (int j = 0; j < cols; j++) {
            double diff = Math.abs(want[wantRow * cols + j] - got[gotRow * cols + j]);
            assertTrue(diff <= tol, what + ": logit " + j + " is " + got[gotRow * cols + j] + ", expected "
                    + want[wantRow * cols + j] + " (|diff| " + diff + " > " + tol + ")");
        }
    }

    private static double rms(float[] v) {
        double s = 0;
        for (float x : v) {
            s += (double) x * x;
        }
        return Math.sqrt(s / v.length);
    }
}
