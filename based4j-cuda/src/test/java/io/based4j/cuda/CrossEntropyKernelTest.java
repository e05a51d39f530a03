package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.U;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static io.based4j.cuda.Near.toDouble;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.train.cpu.CrossEntropyOps;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The fused head + cross-entropy on the GPU ({@link TrainKernels#crossEntropy}) against
 * {@link CrossEntropyOps#forwardBackward} in float64: summed loss, argmax, and the gradients added into dx and dhead,
 * on batches of rows that no chunk divides (211 rows in chunks of 64; 67 in chunks of 32 and 16) and in one chunk
 * (among them 4,096 rows of 8,192 logits, written over by their gradient: a row's target logit read after another
 * thread wrote its gradient would move that row's loss by several units, far beyond the allowance),
 * over a vocabulary of 1000 and the GPT-2 vocabulary 50257 in a head padded to 50264, with ignored targets and
 * targets on the first and last token. The padded head rows hold a large sentinel: reading them would change the loss by far more than the
 * allowance, and dhead's padded rows must come back exactly as they were.
 *
 * <p>The inputs are the floats (bf16 values in bf16) the GPU holds, so the differences are the GPU's rounding.
 * Allowances (u = 2^-24):
 * <ul>
 * <li>Loss: a logit is a d-term float32 dot product, off by at most d u sum|x h| (about 9e-5 here: x ~ N(0, 1),
 * head ~ N(0, 4 / d)); the logsumexp takes two such errors plus the float32 sum of exponentials (relative
 * (vocab / 512 per thread, a few rescalings at new maxima, 9 + 4 merges: under 150 u, 9e-6). That bounds a row's loss, about log V + 1 ~ 8..12, by 2e-5 relatively;
 * allowed: 3e-5 in f32. The bf16 products add in float32 on tensor cores, which may truncate where float32
 * arithmetic rounds: 1e-4.</li>
 * <li>Argmax: the GPU's choice must have a float64 logit within twice the logit error bound above of the
 * reference's choice (so only near-ties may differ).</li>
 * <li>dx, dhead (normwise, against the largest value): the products sum up to 50257 terms; independent roundings
 * grow as sqrt(K) u, about 1.3e-5 relatively, so 1e-4 in f32 (the worst-case K u, 3e-3, is never approached and
 * would hide a lost chunk). In bf16 the softmax gradient is rounded to bf16 (2^-8 relatively) before the products,
 * which moves a sum by at most 2^-8 sum|g h|, a few times 2^-8 of the largest value: 2e-2.</li>
 * <li>With bf16 logits (the product's sums rounded to bf16, as the reference's bf16 autocast leaves its head's
 * output): each logit moves by up to 2^-9 of itself (|z| up to about 8 here), which moves a row's loss by at most
 * 2^-9 of its terms (loss sum within 2^-9 relatively) and each probability by up to 2^-9 |z| relatively (under 2%):
 * gradients within 4e-2. Ties of rounded logits make the argmax unchecked there.</li>
 * </ul>
 */
@GpuTest
class CrossEntropyKernelTest {
    private static final float SENTINEL = 1000f;

    @ParameterizedTest(name = "{0} n {1}, d {2}, vocab {3} (padded {4}), chunk {5}, bf16 logits {6}")
    @CsvSource({
        "F32, 211, 64, 1000, 1000, 64, false",
        "F32, 67, 112, 50257, 50264, 32, false",
        "BF16, 67, 112, 50257, 50264, 16, false",
        "BF16, 211, 64, 1000, 1000, 256, false",
        "BF16, 67, 112, 50257, 50264, 16, true",
        "BF16, 37, 64, 30001, 30008, 16, true",
        "BF16, 211, 64, 1000, 1000, 256, true",
        "F32, 4096, 64, 8192, 8192, 4096, false",
        "BF16, 4096, 64, 8192, 8192, 4096, true",
    })
    void matchesTheReference(Precision p, int n, int d, int vocab, int padded, int chunk, boolean bf16Logits) {
        SplittableRandom r = new SplittableRandom(SEED);
        float[] x = stored(p, gaussian(r, n * d, 1));
        float[] head = stored(p, gaussian(r, padded * d, 2 / Math.sqrt(d)));
        Arrays.fill(head, vocab * d, padded * d, SENTINEL);
        int[] targets = new int[n];
        for (int i = 0; i < n; i++) {
            targets[i] = r.nextInt(4) == 0 ? CrossEntropyOps.IGNORE_INDEX : r.nextInt(vocab);
        }
        int[] edges = {0, vocab - 1, 1, vocab - 2, vocab / 2};
        for (int i = 0; i < edges.length; i++) {
            targets[i + 1] = edges[i];
        }
        int counted = CrossEntropyOps.counted(targets);
        float scale = 1f / counted;
        // starting gradients of the size of the increments, so that adding (not overwriting) is checked
        float[] dx0 = gaussian(r, n * d, scale / 5);
        float[] dhead0 = gaussian(r, padded * d, scale / 10);
        Arrays.fill(dhead0, vocab * d, padded * d, 7f);
        double loss0 = 0.25;

        double[] wantDx = toDouble(dx0);
        double[] wantDhead = toDouble(dhead0);
        int[] wantArgmax = new int[n];
        double[] xd = toDouble(x);
        double[] hd = toDouble(head);
        double wantLoss = loss0 + CrossEntropyOps.forwardBackward(xd, n, d, hd, vocab, targets, scale, wantDx,
                wantDhead, wantArgmax);

        String what = String.format("cross-entropy %s n %d, d %d, vocab %d, chunk %d%s", p.suffix(), n, d, vocab, chunk,
                bf16Logits ? ", bf16 logits" : "");
        try (KernelRig rig = new KernelRig()) {
            long xDev = rig.values(p, x);
            long headDev = rig.values(p, head);
            long targetsDev = rig.ints(targets);
            long dx = rig.floats(dx0);
            long dhead = rig.floats(dhead0);
            long argmax = rig.zeros(4L * n);
            long loss = rig.doubles(new double[] {loss0});
            long scratch = rig.zeros(TrainKernels.crossEntropyScratchBytes(p, n, chunk, vocab));
            rig.train.crossEntropy(p, xDev, headDev, n, d, vocab, targetsDev, scale, dx, dhead, argmax, loss, scratch,
                    chunk, bf16Logits);
            double gotLoss = rig.doubles(loss, 1)[0];
            int[] gotArgmax = rig.ints(argmax, n);

            double lossTol = p == Precision.F32 ? 3e-5 : bf16Logits ? 0x1p-9 : 1e-4;
            double lossErr = Math.abs((gotLoss - loss0) - (wantLoss - loss0)) / Math.abs(wantLoss - loss0);
            assertTrue(lossErr <= lossTol, what + ": loss sum " + (gotLoss - loss0) + " on the GPU, "
                    + (wantLoss - loss0) + " in the float64 reference: relative error " + lossErr + " > " + lossTol
                    + " [-Dbased4j.seed=" + SEED + "]");
            if (!bf16Logits) {  // the argmax of bf16 logits may fall on any of a tie of rounded values
                checkArgmax(what, x, head, d, vocab, targets, wantArgmax, gotArgmax);
            }

            double gradTol = p == Precision.F32 ? 1e-4 : bf16Logits ? 4e-2 : 2e-2;
            Near.normwise(what + ": dx", wantDx, rig.floats(dx, n * d), gradTol);
            float[] gotDhead = rig.floats(dhead, padded * d);
            Near.normwise(what + ": dhead", Arrays.copyOf(wantDhead, vocab * d), Arrays.copyOf(gotDhead, vocab * d),
                    gradTol);
            for (int i = vocab * d; i < padded * d; i++) {
                assertEquals(7f, gotDhead[i], 0f, what + ": padded dhead row " + i / d + " was written");
            }

            // the loss alone (no gradient products): the same pass 1, so the same loss and argmax bit for bit
            long lossOnly = rig.doubles(new double[] {loss0});
            long argmaxOnly = rig.zeros(4L * n);
            rig.train.crossEntropy(p, xDev, headDev, n, d, vocab, targetsDev, scale, 0, 0, argmaxOnly, lossOnly,
                    scratch, chunk, bf16Logits);
            assertEquals(gotLoss, rig.doubles(lossOnly, 1)[0], 0.0, what + ": loss without gradients");
            assertArrayEquals(gotArgmax, rig.ints(argmaxOnly, n), what + ": argmax without gradients");
        }
    }

    /**
     * Ignored rows get -1; a counted row's GPU argmax is a real token whose float64 logit is within twice the logit
     * error bound (d u sum|x h|) of the reference's choice.
     */
    private static void checkArgmax(String what, float[] x, float[] head, int d, int vocab, int[] targets,
                                    int[] want, int[] got) {
        for (int i = 0; i < targets.length; i++) {
            if (targets[i] == CrossEntropyOps.IGNORE_INDEX) {
                assertEquals(-1, got[i], what + ": argmax of ignored row " + i);
                continue;
            }
            int g = got[i];
            assertTrue(g >= 0 && g < vocab, what + ": argmax of row " + i + " is " + g + ", not a token of [0, "
                    + vocab + ") [-Dbased4j.seed=" + SEED + "]");
            if (g == want[i]) {
                continue;
            }
            double zg = 0;
            double zw = 0;
            double mag = 0;
            for (int j = 0; j < d; j++) {
                zg += (double) x[i * d + j] * head[g * d + j];
                zw += (double) x[i * d + j] * head[want[i] * d + j];
                mag += Math.abs((double) x[i * d + j] * head[g * d + j])
                        + Math.abs((double) x[i * d + j] * head[want[i] * d + j]);
            }
            double allowed = 2 * d * U * mag;
            assertTrue(zw - zg <= allowed, what + ": row " + i + " argmax " + g + " (logit " + zg + ") on the GPU, "
                    + want[i] + " (logit " + zw + ") in the reference: not a near-tie (gap " + (zw - zg)
                    + " > " + allowed + ") [-Dbased4j.seed=" + SEED + "]");
        }
    }

    @Test
    void rowsThatAllIgnoreTheirTargetAddNothing() {
        int n = 9;
        int d = 64;
        int vocab = 1000;
        SplittableRandom r = new SplittableRandom(SEED);
        float[] x = gaussian(r, n * d, 1);
        float[] head = gaussian(r, vocab * d, 0.25);
        int[] targets = new int[n];
        Arrays.fill(targets, CrossEntropyOps.IGNORE_INDEX);
        float[] dx0 = gaussian(r, n * d, 1);
        float[] dhead0 = gaussian(r, vocab * d, 1);
        try (KernelRig rig = new KernelRig()) {
            long dx = rig.floats(dx0);
            long dhead = rig.floats(dhead0);
            long argmax = rig.zeros(4L * n);
            long loss = rig.doubles(new double[] {1.5});
            long scratch = rig.zeros(TrainKernels.crossEntropyScratchBytes(Precision.F32, n, 4, vocab));
            rig.train.crossEntropy(Precision.F32, rig.floats(x), rig.floats(head), n, d, vocab, rig.ints(targets), 1f,
                    dx, dhead, argmax, loss, scratch, 4);
            assertEquals(1.5, rig.doubles(loss, 1)[0], 0.0, "the loss sum is unchanged");
            int[] minusOne = new int[n];
            Arrays.fill(minusOne, -1);
            assertArrayEquals(minusOne, rig.ints(argmax, n), "every argmax is -1");
            assertArrayEquals(dx0, rig.floats(dx, n * d), "dx is unchanged");
            assertArrayEquals(dhead0, rig.floats(dhead, vocab * d), "dhead is unchanged");
        }
    }
}
