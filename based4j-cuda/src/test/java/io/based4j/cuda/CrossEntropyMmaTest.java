package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static io.based4j.cuda.Near.toDouble;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.train.cpu.CrossEntropyOps;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The tensor-core head + cross-entropy ({@link TrainKernels#crossEntropyMma}) against
 * {@link CrossEntropyOps#forwardBackward} in float64: the summed loss, dx (written), dhead (added to), on awkward
 * sizes: rows that fill no tile (1, 65, 211, 300), widths 16, 48 (padded to 64 inside), 64 and 128, vocabularies of
 * 1, 63, 200, 1000 and 8197 (tiles of 64 not filled; splits of the rows kernel and of the head kernel of 1 to
 * many), ignored targets and targets on the first and last token. The head's rows past the vocabulary hold a large
 * sentinel (reading them would move the loss by far more than the allowance) and their gradient rows must stay as
 * they were.
 *
 * <p>Allowances, as {@link CrossEntropyKernelTest}'s for bf16: the loss sum within 1e-4 relatively (each logit a
 * float32 sum of d exact products on the tensor cores, the exponentials summed exactly in float32), the gradients
 * normwise within 2e-2 (the softmax is rounded to bf16, 2^-8 relatively, before its products with the head rows or
 * the rows of x, as the cuBLAS path rounds its gradient).
 */
@GpuTest
class CrossEntropyMmaTest {
    private static final float SENTINEL = 1000f;

    @ParameterizedTest(name = "n {0}, d {1}, vocab {2} (padded {3})")
    @CsvSource({
        "211, 64, 1000, 1000",
        "67, 128, 8197, 8200",
        "300, 48, 63, 64",
        "65, 16, 1, 8",
        "1, 128, 200, 200",
        "4096, 128, 8192, 8192",
    })
    void matchesTheReference(int n, int d, int vocab, int padded) {
        Precision p = Precision.BF16;
        SplittableRandom r = new SplittableRandom(SEED);
        float[] x = stored(p, gaussian(r, n * d, 1));
        float[] head = stored(p, gaussian(r, padded * d, 2 / Math.sqrt(d)));
        Arrays.fill(head, vocab * d, padded * d, SENTINEL);
        int[] targets = new int[n];
        for (int i = 0; i < n; i++) {
            targets[i] = r.nextInt(5) == 0 ? CrossEntropyOps.IGNORE_INDEX : r.nextInt(vocab);
        }
        int[] edges = {0, vocab - 1};
        for (int i = 0; i < edges.length && i < n; i++) {
            targets[i] = edges[i];
        }
        int counted = Math.max(1, CrossEntropyOps.counted(targets));
        float scale = 1f / counted;
        float[] dhead0 = gaussian(r, padded * d, scale / 10);
        Arrays.fill(dhead0, vocab * d, padded * d, 7f);
        double loss0 = 0.25;

        double[] wantDx = new double[n * d];
        double[] wantDhead = toDouble(dhead0);
        double wantLoss = loss0 + CrossEntropyOps.forwardBackward(toDouble(x), n, d, toDouble(head), vocab, targets,
                scale, wantDx, wantDhead, new int[n]);

        String what = String.format("tensor-core cross-entropy n %d, d %d, vocab %d", n, d, vocab);
        try (KernelRig rig = new KernelRig()) {
            long xDev = rig.values(p, x);
            long headDev = rig.values(p, head);
            long targetsDev = rig.ints(targets);
            long dx = rig.floats(gaussian(r, n * d, 3));  // written over
            long dhead = rig.floats(dhead0);
            long loss = rig.doubles(new double[] {loss0});
            long scratch = rig.zeros(TrainKernels.crossEntropyMmaScratchBytes(n, d, vocab));
            rig.train.crossEntropyMma(xDev, headDev, n, d, vocab, targetsDev, scale, dx, dhead, loss, scratch);
            double gotLoss = rig.doubles(loss, 1)[0];

            // relative to the size of a row's terms (lse and z_t, about log V + a few): one token gives a loss of 0
            double lossErr = Math.abs((gotLoss - loss0) - (wantLoss - loss0)) / Math.max(Math.abs(wantLoss - loss0),
                    counted * (1 + Math.log(vocab)));
            assertTrue(lossErr <= 1e-4, what + ": loss sum " + (gotLoss - loss0) + " on the GPU, "
                    + (wantLoss - loss0) + " in the float64 reference: relative error " + lossErr
                    + " [-Dbased4j.seed=" + SEED + "]");
            float[] gotDx = rig.floats(dx, n * d);
            for (int i = 0; i < n; i++) {
                if (targets[i] == CrossEntropyOps.IGNORE_INDEX) {
                    for (int e = 0; e < d; e++) {
                        assertEquals(0f, gotDx[i * d + e], 0f, what + ": dx of ignored row " + i);
                    }
                }
            }
            if (vocab > 1) {
                Near.normwise(what + ": dx", wantDx, gotDx, 2e-2);
            } else {  // one token: its softmax is 1, every gradient 0, which normwise cannot measure against
                // O scale - scale w rounds once where the compiler fuses it (a multiply-add): 2^-24 of scale |w|
                for (int i = 0; i < gotDx.length; i++) {
                    float w = head[targets[i / d] == CrossEntropyOps.IGNORE_INDEX ? 0 : i % d];
                    assertEquals(0f, gotDx[i], 0x1p-23f * scale * Math.abs(w), what + ": dx with one token");
                }
            }
            float[] gotDhead = rig.floats(dhead, padded * d);
            Near.normwise(what + ": dhead", Arrays.copyOf(wantDhead, vocab * d), Arrays.copyOf(gotDhead, vocab * d),
                    2e-2);
            for (int i = vocab * d; i < padded * d; i++) {
                assertEquals(7f, gotDhead[i], 0f, what + ": padded dhead row " + i / d + " was written");
            }
        }
    }
}
