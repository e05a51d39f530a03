package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.toDouble;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.train.AdamW;
import io.based4j.train.cpu.CpuBuf;
import io.based4j.train.cpu.CpuTrainBackend;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The device-side optimizer step (gradient norm, clip factor, AdamW per parameter group) against the CPU trainer's:
 * {@code AdamW.update}'s clipping rule followed by {@link CpuTrainBackend#adamw} per group, in float64. One flat
 * array of 100003 values, the first 70001 decaying and the rest not; three steps: one clipped (norm far above the
 * limit), one under the limit, one with clipping off.
 *
 * <p>Allowances: the sum of squares is a double sum of exact squares, off from the reference's order by at most
 * count * 2^-53 relatively (1e-11; 1e-10 allowed); the norm and the clip factor are rounded to float once: 1 ulp. m
 * and v take about four float32 roundings of their terms per step (u = 2^-24): 1e-5 of the largest value (normwise,
 * since m cancels). Each step rounds p (|p| &lt; 6) to float, about 4e-7 absolutely, against changes of about lr
 * (5e-4 .. 2e-3) per step: the changes p - p0 must agree to 1e-3 of the largest change; decaying the wrong group
 * would be off by lr wd |p|, 10% of a change.
 */
@GpuTest
class AdamWKernelTest {
    private static final int COUNT = 100_003;
    private static final int DECAYING = 70_001;

    @ParameterizedTest
    @EnumSource(Precision.class)
    void stepsMatchTheCpuOptimizer(Precision p) {
        AdamW.Settings s = AdamW.Settings.DEFAULTS;
        SplittableRandom r = new SplittableRandom(SEED);
        float[] p0 = gaussian(r, COUNT, 1);
        double[][] cpuP = split(toDouble(p0));
        double[][] cpuM = {new double[DECAYING], new double[COUNT - DECAYING]};
        double[][] cpuV = {new double[DECAYING], new double[COUNT - DECAYING]};
        CpuTrainBackend cpu = new CpuTrainBackend();
        double[] lrs = {1e-3, 2e-3, 5e-4};
        double[] sigmas = {1, 1e-3, 1};
        double[] clips = {s.gradClip(), s.gradClip(), 0};
        try (KernelRig rig = new KernelRig()) {
            long param = rig.floats(p0);
            long m = rig.zeros(4L * COUNT);
            long v = rig.zeros(4L * COUNT);
            long compute = rig.zeros((long) p.bytes() * COUNT);
            long partial = rig.zeros(8L * TrainKernels.NORM_MAX_PARTIALS);
            long record = rig.zeros(TrainKernels.GRAD_NORM_BYTES);
            for (int step = 1; step <= 3; step++) {
                String what = String.format("AdamW %s step %d (lr %s, clip %s)", p.suffix(), step, lrs[step - 1],
                        clips[step - 1]);
                float[] g = gaussian(r, COUNT, sigmas[step - 1]);
                long grad = rig.floats(g);
                rig.train.gradNorm(grad, COUNT, partial, clips[step - 1], record);
                gpuStep(rig, p, s, param, grad, m, v, compute, lrs[step - 1], step, record);

                // the CPU trainer: AdamW.update's norm and clipping, then CpuTrainBackend.adamw per group
                CpuBuf[] cg = bufs(split(toDouble(g)));
                double ss = cpu.sumOfSquares(cg[0]) + cpu.sumOfSquares(cg[1]);
                double norm = Math.sqrt(ss);
                double factor = 1;
                if (clips[step - 1] > 0 && norm > clips[step - 1]) {
                    factor = clips[step - 1] / (norm + 1e-6);
                    cpu.scale(cg[0], factor);
                    cpu.scale(cg[1], factor);
                }
                for (int group = 0; group < 2; group++) {
                    cpu.adamw(buf(cpuP[group]), cg[group], buf(cpuM[group]), buf(cpuV[group]), lrs[step - 1],
                            s.beta1(), s.beta2(), s.eps(), group == 0 ? s.weightDecay() : 0.0, step);
                }

                double gotSs = rig.doubles(record + TrainKernels.GRAD_NORM_SUM_OFFSET, 1)[0];
                float[] normAndScale = rig.floats(record + TrainKernels.GRAD_NORM_NORM_OFFSET, 2);
                assertEquals(ss, gotSs, 1e-10 * ss, what + ": sum of squares [-Dbased4j.seed=" + SEED + "]");
                assertEquals((float) norm, normAndScale[0], Math.ulp((float) norm), what + ": norm");
                assertEquals((float) factor, normAndScale[1], Math.ulp((float) factor), what + ": clip factor");
                assertTrue(step != 1 || factor < 1e-2, what + ": this step is meant to clip (factor " + factor + ")");

                Near.normwise(what + ": m", join(cpuM), rig.floats(m, COUNT), 1e-5);
                Near.normwise(what + ": v", join(cpuV), rig.floats(v, COUNT), 1e-5);
                float[] gotP = rig.floats(param, COUNT);
                double[] wantChange = join(cpuP);
                float[] gotChange = new float[COUNT];
                for (int i = 0; i < COUNT; i++) {
                    wantChange[i] -= p0[i];
                    gotChange[i] = (float) ((double) gotP[i] - p0[i]);
                }
                Near.normwise(what + ": p - p0", wantChange, gotChange, 1e-3);
                assertArrayEquals(Near.stored(p, gotP), rig.values(p, compute, COUNT),
                        what + ": the compute copy is p rounded to " + p.suffix());
            }

            // a non-finite gradient norm: nothing moves (the trainer refuses the step on reading the norm)
            float[] before = rig.floats(param, COUNT);
            float[] mBefore = rig.floats(m, COUNT);
            float[] vBefore = rig.floats(v, COUNT);
            float[] bad = gaussian(r, COUNT, 1);
            bad[COUNT / 2] = Float.NaN;
            long grad = rig.floats(bad);
            rig.train.gradNorm(grad, COUNT, partial, s.gradClip(), record);
            gpuStep(rig, p, s, param, grad, m, v, compute, 1e-3, 4, record);
            assertTrue(Double.isNaN(rig.doubles(record, 1)[0]), "a NaN gradient gives a NaN sum of squares");
            assertArrayEquals(before, rig.floats(param, COUNT), "parameters unchanged after a NaN gradient");
            assertArrayEquals(mBefore, rig.floats(m, COUNT), "m unchanged after a NaN gradient");
            assertArrayEquals(vBefore, rig.floats(v, COUNT), "v unchanged after a NaN gradient");
        }
    }

    /** One step as a trainer lays it out: the decaying group, then the rest, each one launch on its slice. */
    private static void gpuStep(KernelRig rig, Precision p, AdamW.Settings s, long param, long grad, long m, long v,
                                long compute, double lr, long step, long record) {
        rig.train.adamw(p, param, grad, m, v, compute, DECAYING, lr, s.beta1(), s.beta2(), s.eps(), s.weightDecay(),
                step, record);
        long f = 4L * DECAYING;
        rig.train.adamw(p, param + f, grad + f, m + f, v + f, compute + (long) p.bytes() * DECAYING,
                COUNT - DECAYING, lr, s.beta1(), s.beta2(), s.eps(), 0.0, step, record);
    }

    private static double[][] split(double[] all) {
        return new double[][] {Arrays.copyOfRange(all, 0, DECAYING), Arrays.copyOfRange(all, DECAYING, COUNT)};
    }

    private static double[] join(double[][] parts) {
        double[] out = Arrays.copyOf(parts[0], COUNT);
        System.arraycopy(parts[1], 0, out, DECAYING, COUNT - DECAYING);
        return out;
    }

    private static CpuBuf buf(double[] v) {
        return new CpuBuf(v, 1, v.length);
    }

    private static CpuBuf[] bufs(double[][] parts) {
        return new CpuBuf[] {buf(parts[0]), buf(parts[1])};
    }
}
