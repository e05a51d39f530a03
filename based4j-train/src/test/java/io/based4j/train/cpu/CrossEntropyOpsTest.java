package io.based4j.train.cpu;

import static io.based4j.train.cpu.CrossEntropyOps.IGNORE_INDEX;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.train.GradCheck;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The fused head + softmax cross-entropy: loss, argmax and gradients against a plain scalar implementation (with
 * {@code Math.exp}), finite differences, ignored rows, padded head rows, accumulation and repeatability.
 */
class CrossEntropyOpsTest {
    private final SplittableRandom rnd = new SplittableRandom(77);

    /** The straightforward version: {loss, dx, dhead, argmax (as doubles)}. */
    private static double[][] reference(double[] x, int n, int d, double[] head, int vocab, int[] targets,
                                        double scale) {
        double loss = 0;
        double[] dx = new double[n * d];
        double[] dhead = new double[head.length];
        double[] argmax = new double[n];
        for (int i = 0; i < n; i++) {
            if (targets[i] == IGNORE_INDEX) {
                argmax[i] = -1;
                continue;
            }
            double[] z = new double[vocab];
            double max = Double.NEGATIVE_INFINITY;
            int arg = -1;
            for (int v = 0; v < vocab; v++) {
                for (int j = 0; j < d; j++) {
                    z[v] += x[i * d + j] * head[v * d + j];
                }
                if (z[v] > max) {
                    max = z[v];
                    arg = v;
                }
            }
            argmax[i] = arg;
            double sum = 0;
            for (int v = 0; v < vocab; v++) {
                sum += Math.exp(z[v] - max);
            }
            loss += max + Math.log(sum) - z[targets[i]];
            for (int v = 0; v < vocab; v++) {
                double g = scale * (Math.exp(z[v] - max) / sum - (v == targets[i] ? 1 : 0));
                for (int j = 0; j < d; j++) {
                    dx[i * d + j] += g * head[v * d + j];
                    dhead[v * d + j] += g * x[i * d + j];
                }
            }
        }
        return new double[][] {{loss}, dx, dhead, argmax};
    }

    private static void assertClose(String what, double[] want, double[] got, double tol) {
        assertEquals(want.length, got.length, what + ": length");
        for (int i = 0; i < want.length; i++) {
            double err = Math.abs(got[i] - want[i]);
            if (!(err <= tol * Math.max(1, Math.abs(want[i])))) {
                fail(what + ": element " + i + " want " + want[i] + " got " + got[i] + " (|diff| " + err + ")");
            }
        }
    }

    private static double[] asDoubles(int[] v) {
        return Arrays.stream(v).asDoubleStream().toArray();
    }

    /** Random targets with about a third ignored. */
    private int[] targets(int n, int vocab) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = rnd.nextInt(3) == 0 ? IGNORE_INDEX : rnd.nextInt(vocab);
        }
        t[0] = vocab - 1;
        t[n - 1] = IGNORE_INDEX;
        return t;
    }

    @Test
    void matchesScalarReference() {
        // {n, d, vocab, rowsPadded}: small and awkward; and more than two blocks of counted rows
        int[][] shapes = {{9, 13, 37, 40}, {1, 1, 3, 8}, {200, 45, 333, 336}};
        for (int[] s : shapes) {
            int n = s[0], d = s[1], vocab = s[2], padded = s[3];
            String name = "ce " + Arrays.toString(s);
            double[] x = GradCheck.random(rnd, n * d, 1.0);
            double[] head = GradCheck.random(rnd, padded * d, 1.0);
            int[] t = targets(n, vocab);
            if (n == 1) {
                t[0] = 1;
            }
            double scale = 0.7;
            double[] dx = new double[n * d];
            double[] dhead = new double[padded * d];
            int[] argmax = new int[n];
            double loss = CrossEntropyOps.forwardBackward(x, n, d, head, vocab, t, scale, dx, dhead, argmax);
            double[][] want = reference(x, n, d, head, vocab, t, scale);
            assertClose(name + " loss", want[0], new double[] {loss}, 1e-12);
            assertClose(name + " dx", want[1], dx, 1e-12);
            assertClose(name + " dhead", want[2], dhead, 1e-12);
            assertArrayEquals(want[3], asDoubles(argmax), name + " argmax");
            // loss only, argmax only
            int[] argmax2 = new int[n];
            assertEquals(loss, CrossEntropyOps.forwardBackward(x, n, d, head, vocab, t, scale, null, null, argmax2),
                    1e-12 * Math.abs(loss), name + " loss without gradients");
            assertArrayEquals(argmax, argmax2);
        }
    }

    @Test
    void gradientsMatchFiniteDifferences() {
        int n = 9, d = 13, vocab = 37, padded = 40;
        double scale = 0.37;
        double[] x = GradCheck.random(rnd, n * d, 1.0);
        double[] head = GradCheck.random(rnd, padded * d, 1.0);
        int[] t = targets(n, vocab);
        java.util.function.DoubleSupplier loss =
                () -> scale * CrossEntropyOps.forwardBackward(x, n, d, head, vocab, t, scale, null, null, null);
        double[] dx = new double[n * d];
        double[] dhead = new double[padded * d];
        CrossEntropyOps.forwardBackward(x, n, d, head, vocab, t, scale, dx, dhead, null);
        GradCheck.check("ce dx", loss, x, dx, 1000);
        GradCheck.check("ce dhead", loss, head, dhead, 1000);
    }

    @Test
    void ignoredRowsAndPaddedHeadRowsAreUntouched() {
        int n = 9, d = 13, vocab = 37, padded = 40;
        double[] x = GradCheck.random(rnd, n * d, 1.0);
        double[] head = GradCheck.random(rnd, padded * d, 1.0);
        int[] t = targets(n, vocab);
        double[] dx = new double[n * d];
        double[] dhead = new double[padded * d];
        Arrays.fill(dhead, vocab * d, padded * d, 7.0); // padded rows: never written
        double loss = CrossEntropyOps.forwardBackward(x, n, d, head, vocab, t, 1.0, dx, dhead, null);
        for (int i = 0; i < n; i++) {
            if (t[i] == IGNORE_INDEX) {
                for (int j = 0; j < d; j++) {
                    assertEquals(0.0, dx[i * d + j], "ignored row " + i);
                }
            }
        }
        for (int i = vocab * d; i < padded * d; i++) {
            assertEquals(7.0, dhead[i], "padded head element " + i);
        }
        // the ignored rows' inputs do not matter at all
        double[] x2 = x.clone();
        for (int i = 0; i < n; i++) {
            if (t[i] == IGNORE_INDEX) {
                Arrays.fill(x2, i * d, i * d + d, 1e300);
            }
        }
        assertEquals(loss, CrossEntropyOps.forwardBackward(x2, n, d, head, vocab, t, 1.0, null, null, null));
        // nor do the padded head rows
        double[] head2 = head.clone();
        Arrays.fill(head2, vocab * d, padded * d, Double.NaN);
        assertEquals(loss, CrossEntropyOps.forwardBackward(x, n, d, head2, vocab, t, 1.0, null, null, null));
    }

    @Test
    void allIgnoredGivesZero() {
        int n = 5, d = 3, vocab = 7;
        int[] t = new int[n];
        Arrays.fill(t, IGNORE_INDEX);
        assertEquals(0, CrossEntropyOps.counted(t));
        double[] dx = new double[n * d];
        double[] dhead = new double[vocab * d];
        int[] argmax = new int[n];
        Arrays.fill(argmax, 99);
        double loss = CrossEntropyOps.forwardBackward(GradCheck.random(rnd, n * d, 1.0), n, d,
                GradCheck.random(rnd, vocab * d, 1.0), vocab, t, 1.0, dx, dhead, argmax);
        assertEquals(0.0, loss);
        assertArrayEquals(new double[n * d], dx);
        assertArrayEquals(new double[vocab * d], dhead);
        assertArrayEquals(new int[] {-1, -1, -1, -1, -1}, argmax);
        assertEquals(3, CrossEntropyOps.counted(new int[] {IGNORE_INDEX, 0, 5, IGNORE_INDEX, 2}));
    }

    @Test
    void argmaxTakesTheLowestIndexOnTies() {
        int d = 2, vocab = 37;
        double[] head = new double[40 * d];
        double[] x = {1, 0, 0, 0};
        head[17 * d] = 1; // rows 17 and 30 tie for the largest logit of row 0
        head[30 * d] = 1;
        int[] argmax = new int[2];
        CrossEntropyOps.forwardBackward(x, 2, d, head, vocab, new int[] {4, 36}, 1.0, null, null, argmax);
        assertArrayEquals(new int[] {17, 0}, argmax, "row 1 sees all-zero logits: the first index wins");
        head[35 * d] = 2; // in the scalar tail past the last full vector for widths 2, 4 and 8
        CrossEntropyOps.forwardBackward(x, 2, d, head, vocab, new int[] {4, IGNORE_INDEX}, 1.0, null, null, argmax);
        assertArrayEquals(new int[] {35, -1}, argmax);
    }

    @Test
    void badTargetThrows() {
        int n = 3, d = 2, vocab = 5;
        double[] x = new double[n * d];
        double[] head = new double[8 * d];
        for (int bad : new int[] {vocab, -1, 7}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> CrossEntropyOps.forwardBackward(x, n, d, head, vocab, new int[] {0, bad, 1}, 1.0,
                            null, null, null));
            assertTrue(e.getMessage().contains("targets[1]") && e.getMessage().contains(String.valueOf(bad)),
                    e.getMessage());
        }
        assertThrows(IllegalArgumentException.class, () -> CrossEntropyOps.forwardBackward(x, n, d,
                new double[4 * d], vocab, new int[] {0, 1, 2}, 1.0, null, null, null), "head shorter than vocab");
    }

    @Test
    void repeatableAndAccumulating() {
        int n = 150, d = 45, vocab = 333, padded = 336;
        double[] x = GradCheck.random(rnd, n * d, 2.0);
        double[] head = GradCheck.random(rnd, padded * d, 2.0);
        int[] t = targets(n, vocab);
        double[] dx = new double[n * d];
        double[] dhead = new double[padded * d];
        double loss = CrossEntropyOps.forwardBackward(x, n, d, head, vocab, t, 0.5, dx, dhead, null);
        double[] dxB = new double[n * d];
        double[] dheadB = new double[padded * d];
        double lossB = CrossEntropyOps.forwardBackward(x, n, d, head, vocab, t, 0.5, dxB, dheadB, null);
        assertEquals(Double.doubleToRawLongBits(loss), Double.doubleToRawLongBits(lossB), "loss bits");
        assertArrayEquals(dx, dxB, "dx bits");
        assertArrayEquals(dhead, dheadB, "dhead bits");
        CrossEntropyOps.forwardBackward(x, n, d, head, vocab, t, 0.5, dxB, dheadB, null);
        double[] twice = dx.clone();
        double[] twiceHead = dhead.clone();
        for (int i = 0; i < twice.length; i++) {
            twice[i] *= 2;
        }
        for (int i = 0; i < twiceHead.length; i++) {
            twiceHead[i] *= 2;
        }
        assertClose("dx accumulates", twice, dxB, 1e-13);
        assertClose("dhead accumulates", twiceHead, dheadB, 1e-13);
    }

    /**
     * The polynomial exp against Math.exp, and its vector loop against its scalar twin bit for bit (the vector loop
     * covers whole vectors from an arbitrary start, the twin the rest).
     */
    @Test
    void expIsAccurateAndTheSameOnBothPaths() {
        int n = 8 * Gemm.L + 5;
        double worst = 0;
        SplittableRandom r = new SplittableRandom(5);
        for (int it = 0; it < 3000; it++) {
            double shift = it % 3 == 0 ? 0.0 : r.nextDouble() * 10;
            double[] xs = new double[n];
            for (int l = 0; l < n; l++) {
                xs[l] = it < 10 ? -it * 70.0 - l : (r.nextDouble() * 2 - 1) * (r.nextBoolean() ? 1 : 700);
            }
            int from = it % 4;
            double[] ys = xs.clone();
            CrossEntropyOps.expShifted(ys, from, n, shift);
            for (int l = 0; l < from; l++) {
                assertEquals(xs[l], ys[l], "before the range: untouched");
            }
            for (int l = from; l < n; l++) {
                double scalar = CrossEntropyOps.exp(xs[l] - shift);
                assertEquals(Double.doubleToRawLongBits(scalar), Double.doubleToRawLongBits(ys[l]),
                        "vector and scalar exp(" + xs[l] + " - " + shift + ")");
                double want = Math.exp(xs[l] - shift);
                if (xs[l] - shift >= -700 && xs[l] - shift <= 700) {
                    worst = Math.max(worst, Math.abs(scalar - want) / want);
                }
            }
        }
        assertTrue(worst < 4e-16, "relative error of exp " + worst);
        assertEquals(1.0, CrossEntropyOps.exp(0.0));
        assertTrue(CrossEntropyOps.exp(-1e6) > 0 && CrossEntropyOps.exp(-1e6) < 1e-300, "clamped far tail");
    }
}
