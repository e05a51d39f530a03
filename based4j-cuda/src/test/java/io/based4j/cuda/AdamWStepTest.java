package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.toDouble;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.TrainingBackend;
import io.based4j.backend.TrainingBackend.AdamWSlot;
import io.based4j.backend.TrainingBackend.AdamWUpdate;
import io.based4j.tensor.Tensor;
import io.based4j.train.AdamW;
import io.based4j.train.cpu.CpuBuf;
import io.based4j.train.cpu.CpuTrainBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@link CudaBackend#adamwStep}, the multi-tensor optimizer step (chunk table, norm and clip factor on the device,
 * AdamW per chunk), against the per-slot default on the float64 CPU trainer. Four parameters of awkward sizes: one of
 * three values, one of two chunks and a ragged tail (so that chunks of one parameter and of the next meet in the
 * table), one of exactly one chunk, and one under a chunk; two decay and two do not. Three updates: one clipped, one
 * under the limit, one with clipping off.
 *
 * <p>Allowances as {@link AdamWKernelTest}'s (whose single-array kernels this step replaces in the trainer): the norm
 * is a double sum of exact squares in another order (1e-10 relatively), m and v agree normwise to 1e-5, the
 * parameters' changes to 1e-3 of the largest change.
 */
@GpuTest
class AdamWStepTest {
    private static final int[] SIZES = {3, 2 * TrainKernels.OPTIMIZER_CHUNK + 17, TrainKernels.OPTIMIZER_CHUNK, 4001};
    private static final boolean[] DECAYS = {true, false, true, false};

    @ParameterizedTest
    @EnumSource(Precision.class)
    void matchesThePerSlotStepOnTheCpu(Precision p) {
        AdamW.Settings s = AdamW.Settings.DEFAULTS;
        SplittableRandom r = new SplittableRandom(SEED);
        CpuTrainBackend cpu = new CpuTrainBackend();
        try (CudaBackend gpu = CudaBackend.open("cuda", p)) {
            List<AdamWSlot> gpuSlots = new ArrayList<>();
            List<AdamWSlot> cpuSlots = new ArrayList<>();
            List<float[]> p0 = new ArrayList<>();
            for (int i = 0; i < SIZES.length; i++) {
                float[] values = gaussian(r, SIZES[i], 1);
                p0.add(values);
                double wd = DECAYS[i] ? s.weightDecay() : 0.0;
                gpuSlots.add(new AdamWSlot(gpu.parameter(Tensor.ofFloats(values, SIZES[i])),
                        gpu.allocateF32(1, SIZES[i]), gpu.allocateF32(1, SIZES[i]), gpu.allocateF32(1, SIZES[i]), wd));
                cpuSlots.add(new AdamWSlot(cpu.parameter(Tensor.ofFloats(values, SIZES[i])), buf(SIZES[i]),
                        buf(SIZES[i]), buf(SIZES[i]), wd));
            }
            double[] lrs = {1e-3, 2e-3, 5e-4};
            double[] sigmas = {1, 1e-4, 1};
            double[] clips = {s.gradClip(), s.gradClip(), 0};
            for (int step = 1; step <= 3; step++) {
                String what = String.format("adamwStep %s update %d (lr %s, clip %s)", p.suffix(), step,
                        lrs[step - 1], clips[step - 1]);
                for (int i = 0; i < SIZES.length; i++) {
                    // what the GPU's gradient holds: setGradient adds it through the precision's type
                    float[] g = Near.stored(p, gaussian(r, SIZES[i], sigmas[step - 1]));
                    setGradient(gpu, gpuSlots.get(i), g);
                    System.arraycopy(toDouble(g), 0, ((CpuBuf) cpuSlots.get(i).grad()).data(), 0, g.length);
                }
                AdamWUpdate u = new AdamWUpdate(lrs[step - 1], s.beta1(), s.beta2(), s.eps(), clips[step - 1], step);
                TrainingBackend.GradientNorm want = cpu.adamwStep(cpuSlots, u);
                TrainingBackend.GradientNorm got = gpu.adamwStep(gpuSlots, u);
                assertEquals(want.value(), got.value(), 1e-10 * want.value(), what + ": norm [-Dbased4j.seed=" + SEED
                        + "]");
                assertTrue(step != 1 || want.value() > 100 * clips[0], what + ": this update is meant to clip");
                for (int i = 0; i < SIZES.length; i++) {
                    String w = what + ", parameter " + i + " (" + SIZES[i] + " values)";
                    AdamWSlot gs = gpuSlots.get(i);
                    AdamWSlot cs = cpuSlots.get(i);
                    Near.normwise(w + ": m", ((CpuBuf) cs.m()).data(), gpu.download(gs.m()), 1e-5);
                    Near.normwise(w + ": v", ((CpuBuf) cs.v()).data(), gpu.download(gs.v()), 1e-5);
                    double[] wantChange = ((CpuBuf) cs.value()).data().clone();
                    float[] gotP = gpu.download(gs.value());
                    float[] gotChange = new float[SIZES[i]];
                    for (int j = 0; j < SIZES[i]; j++) {
                        wantChange[j] -= p0.get(i)[j];
                        gotChange[j] = (float) ((double) gotP[j] - p0.get(i)[j]);
                    }
                    Near.normwise(w + ": p - p0", wantChange, gotChange, 1e-3);
                    CudaParameter par = (CudaParameter) gs.value();
                    if (par.hasCopy()) {
                        assertArrayEquals(Near.stored(p, gotP), gpu.download(new CudaBuffer(par.compute.ptr, 1, SIZES[i], p, null)),
                                w + ": the compute copy is p rounded to " + p.suffix());
                    }
                }
            }

            // reading a norm after the next update replaced it is refused
            TrainingBackend.GradientNorm fourth = gpu.adamwStep(gpuSlots, new AdamWUpdate(1e-3, s.beta1(), s.beta2(),
                    s.eps(), s.gradClip(), 4));
            gpu.adamwStep(gpuSlots, new AdamWUpdate(1e-3, s.beta1(), s.beta2(), s.eps(), s.gradClip(), 5));
            IllegalStateException late = assertThrows(IllegalStateException.class, fourth::value);
            assertTrue(late.getMessage().contains("update 4"), late.getMessage());

            // a non-finite norm: nothing moves, then or at any later update over the same slots
            List<float[]> before = new ArrayList<>();
            for (AdamWSlot slot : gpuSlots) {
                before.add(gpu.download(slot.value()));
            }
            float[] bad = gaussian(r, SIZES[1], 1);
            bad[SIZES[1] - 5] = Float.POSITIVE_INFINITY;
            setGradient(gpu, gpuSlots.get(1), bad);
            TrainingBackend.GradientNorm failed = gpu.adamwStep(gpuSlots, new AdamWUpdate(1e-3, s.beta1(), s.beta2(),
                    s.eps(), s.gradClip(), 6));
            setGradient(gpu, gpuSlots.get(1), gaussian(r, SIZES[1], 1));
            TrainingBackend.GradientNorm after = gpu.adamwStep(gpuSlots, new AdamWUpdate(1e-3, s.beta1(), s.beta2(),
                    s.eps(), s.gradClip(), 7));
            assertTrue(Double.isNaN(after.value()), "an update after a failed one reports the failure");
            assertTrue(Double.isNaN(failed.value()), "the failed update's norm reads as NaN");
            for (int i = 0; i < SIZES.length; i++) {
                assertArrayEquals(before.get(i), gpu.download(gpuSlots.get(i).value()),
                        "parameter " + i + " unchanged after a gradient that is not finite");
            }
        }
    }

    /** Sets a float32 gradient through the backend's own ops (in bf16 the values pass through bf16). */
    private static void setGradient(CudaBackend gpu, AdamWSlot slot, float[] g) {
        TrainingBackend.Parameter src = gpu.parameter(Tensor.ofFloats(g, g.length));
        gpu.zero(slot.grad());
        gpu.addInPlace(slot.grad(), src);
        gpu.release(src);
    }

    private static CpuBuf buf(int n) {
        return new CpuBuf(new double[n], 1, n);
    }
}
