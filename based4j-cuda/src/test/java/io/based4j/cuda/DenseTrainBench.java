package io.based4j.cuda;

import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Times the bandwidth-bound bf16 kernels of a training step on GPU 0 with CUDA events, at based-360m's sizes (8
 * sequences of 2048 tokens: 16,384 rows; d 1024; BaseConv inner 2048, kernel 3; MLP hidden 2048): for each op the
 * scalar kernels as the backend ran them before (with the float32 conversions it made around them, where it made
 * some) and the vector / row kernels that replace them. Prints milliseconds per call (the mean of {@value #REPS}
 * calls after one warm-up call) and the bandwidth the op's compulsory traffic (each operand read or written once)
 * gets from it, next to a device-to-device copy's, the ceiling.
 *
 * <p>Run from the test classes (the kernels must be built, i.e. without {@code -Dbased4j.skipKernels}):
 * {@code java -cp based4j-cuda/target/classes:based4j-cuda/target/test-classes:<dependencies>
 * io.based4j.cuda.DenseTrainBench}.
 */
public final class DenseTrainBench {
    private static final int ROWS = 8 * 2048;
    private static final int D = 1024;
    private static final int INNER = 2048;
    private static final int KERNEL = 3;
    private static final int HIDDEN = 2048;
    private static final int REPS = 20;
    private static final Precision P = Precision.BF16;

    private final KernelRig rig;
    private final Kernels k;
    private final SplittableRandom random = new SplittableRandom(1);

    private DenseTrainBench(KernelRig rig) {
        this.rig = rig;
        this.k = rig.kernels;
    }

    public static void main(String[] args) {
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            DenseTrainBench b = new DenseTrainBench(rig);
            b.copy();
            b.rmsNorm();
            b.swiglu();
            b.baseConv(mk);
            b.elementwise();
        }
    }

    /** Device memory of {@code count} values of type {@code p}: a block of random values, repeated. */
    private long random(Precision p, long count) {
        int block = (int) Math.min(count, 1 << 20);
        long first = rig.values(p, Near.gaussian(random, block, 1));
        long ptr = rig.zeros(count * p.bytes());
        for (long at = 0; at < count; at += block) {
            rig.cu.copyDtoDAsync(ptr + at * p.bytes(), first, Math.min(block, count - at) * p.bytes(), rig.stream);
        }
        return ptr;
    }

    private long zeros(Precision p, long count) {
        return rig.zeros(count * p.bytes());
    }

    /** Launches the kernel {@code name} elementwise over {@code count} with the arguments {@code fill} sets. */
    private void scalar(String name, long count, java.util.function.Consumer<KernelArgs> fill) {
        fill.accept(k.args.reset());
        k.elementwise(k.function(name), count);
    }

    private void copy() {
        long bytes = 256L << 20;
        long src = rig.zeros(bytes);
        long dst = rig.zeros(bytes);
        double ms = millis(() -> rig.cu.copyDtoDAsync(dst, src, bytes, rig.stream));
        System.out.printf(Locale.ROOT, "device-to-device copy of 256 MiB: %.3f ms, %.0f GB/s (read + write)%n", ms,
                2 * bytes / ms / 1e6);
    }

    private void rmsNorm() {
        long x = random(Precision.F32, (long) ROWS * D);
        long w = random(P, D);
        long out = zeros(P, (long) ROWS * D);
        long rstd = zeros(Precision.F32, ROWS);
        compare("rmsNorm with rstd", 6L * ROWS * D + 4L * ROWS,
                () -> {
                    k.args.reset().ptr(x).ptr(w).ptr(out).ptr(rstd).i32(ROWS).i32(D).f32(1e-5f);
                    k.launch(k.function("rmsNormRstd_bf16"), ROWS, 1, 1, Kernels.THREADS, 0);
                },
                () -> rig.train.rmsNormRstd(P, x, w, out, rstd, ROWS, D, 1e-5f));

        long dout = random(P, (long) ROWS * D);
        long doutF = zeros(Precision.F32, (long) ROWS * D);
        long dx = random(Precision.F32, (long) ROWS * D);
        long copy = zeros(P, (long) ROWS * D);
        long dw = zeros(Precision.F32, D);
        long partial = rig.zeros(TrainKernels.rmsNormBackwardScratchBytes(ROWS, D));
        int rows = TrainKernels.rmsNormRowsPerBlock(ROWS);
        int blocks = (ROWS + rows - 1) / rows;
        Runnable oldKernels = () -> {
            k.args.reset().ptr(x).ptr(w).ptr(rstd).ptr(doutF).ptr(dx).ptr(partial).i32(ROWS).i32(D).i32(rows);
            k.launch(k.function("rmsNormBackward_bf16"), blocks, 1, 1, Kernels.THREADS, 0);
            k.args.reset().ptr(partial).ptr(dw).i32(blocks).i32(D);
            k.elementwise(k.function("rmsNormWeightGrad_f32"), D);
        };
        // x and dx float32, dout and the copy of dx bf16, rstd
        long bytes = (4L + 2 + 8 + 2) * ROWS * D + 4L * ROWS;
        compare("rmsNorm backward (kernels only)", bytes, oldKernels,
                () -> rig.train.rmsNormBackward(P, x, w, rstd, dout, P, dx, copy, dw, partial, ROWS, D));
        compare("rmsNorm backward with its conversions", bytes,
                () -> {
                    scalar("aToF32_bf16", (long) ROWS * D, a -> a.ptr(dout).ptr(doutF).i64((long) ROWS * D));
                    oldKernels.run();
                    scalar("f32ToA_bf16", (long) ROWS * D, a -> a.ptr(dx).ptr(copy).i64((long) ROWS * D));
                },
                () -> rig.train.rmsNormBackward(P, x, w, rstd, dout, P, dx, copy, dw, partial, ROWS, D));
    }

    private void swiglu() {
        long cells = (long) ROWS * HIDDEN;
        long a = random(P, 2 * cells);
        long out = zeros(P, cells);
        compare("swiglu", 6 * cells,
                () -> scalar("swiglu_bf16", cells, args -> args.ptr(a).ptr(out).i32(ROWS).i32(HIDDEN)),
                () -> k.swiglu(P, a, out, ROWS, HIDDEN));

        long dout = random(P, cells);
        long da = zeros(P, 2 * cells);
        long doutF = zeros(Precision.F32, cells);
        long daF = zeros(Precision.F32, 2 * cells);
        // a, dout and da read, da written, all bf16
        compare("swiglu backward with its conversions", 2 * (2 + 1 + 2 + 2) * cells,
                () -> {
                    scalar("aToF32_bf16", cells, args -> args.ptr(dout).ptr(doutF).i64(cells));
                    scalar("aToF32_bf16", 2 * cells, args -> args.ptr(da).ptr(daF).i64(2 * cells));
                    scalar("swigluBackward_bf16", cells,
                            args -> args.ptr(a).ptr(doutF).ptr(daF).i32(ROWS).i32(HIDDEN));
                    scalar("f32ToA_bf16", 2 * cells, args -> args.ptr(daF).ptr(da).i64(2 * cells));
                },
                () -> rig.train.swigluBackwardInA(P, a, dout, da, ROWS, HIDDEN, false));
    }

    private void baseConv(MixerTrainKernels mk) {
        long cells = (long) ROWS * INNER;
        long u = random(P, 2 * cells);
        long taps = random(P, (long) INNER * KERNEL);
        long convOut = zeros(P, cells);
        long out = zeros(P, cells);
        int seqLen = 2048;
        int batch = ROWS / seqLen;
        compare("baseConv forward", (4 + 2 + 2) * cells,
                () -> scalar("baseConvTrainForward_bf16", cells, a -> a.ptr(u).ptr(taps).ptr(convOut).ptr(out)
                        .i32(seqLen).i64(ROWS).i32(INNER).i32(KERNEL)),
                () -> mk.baseConvForward(P, u, taps, convOut, out, batch, seqLen, INNER, KERNEL));

        long dout = random(P, cells);
        long du = zeros(P, 2 * cells);
        long dtaps = zeros(Precision.F32, (long) INNER * KERNEL);
        int rows = MixerTrainKernels.convTapRowsPerPart(ROWS);
        int parts = (ROWS + rows - 1) / rows;
        long partial = rig.zeros(4L * parts * INNER * KERNEL);
        // u, convOut and dout read, du read and written
        compare("baseConv backward", (4 + 2 + 2 + 8) * cells,
                () -> {
                    scalar("baseConvTrainBackwardInput_bf16", cells, a -> a.ptr(u).ptr(taps).ptr(convOut).ptr(dout)
                            .ptr(du).i32(seqLen).i64(ROWS).i32(INNER).i32(KERNEL));
                    k.args.reset().ptr(u).ptr(convOut).ptr(dout).ptr(partial).i32(seqLen).i64(ROWS).i32(INNER)
                            .i32(KERNEL).i32(rows);
                    k.launch(k.function("baseConvTrainBackwardTaps_bf16"), INNER / 32, parts, 1, Kernels.THREADS, 0);
                    k.args.reset().ptr(partial).ptr(dtaps).i32(parts).i32(INNER * KERNEL);
                    k.elementwise(k.function("rmsNormWeightGrad_f32"), (long) INNER * KERNEL);
                },
                () -> mk.baseConvBackward(P, u, taps, convOut, dout, du, dtaps, batch, seqLen, INNER, KERNEL));
    }

    private void elementwise() {
        long cells = (long) ROWS * 2 * INNER;
        long out = random(P, cells);
        long bias = random(P, 2 * INNER);
        compare("addBias (BaseConv in-projection)", 4 * cells,
                () -> scalar("addBias_bf16", cells, a -> a.ptr(out).ptr(bias).i32(ROWS).i32(2 * INNER)),
                () -> k.addBias(P, out, bias, ROWS, 2 * INNER));
        long partial = rig.zeros(TrainKernels.columnSumScratchBytes(ROWS, 2 * INNER));
        long db = zeros(Precision.F32, 2 * INNER);
        int rows = TrainKernels.columnSumRowsPerPart(ROWS);
        int parts = (ROWS + rows - 1) / rows;
        compare("columnSum (its bias gradient)", 2 * cells,
                () -> {
                    k.args.reset().ptr(out).ptr(partial).i32(ROWS).i32(2 * INNER).i32(rows);
                    k.launch(k.function("columnSumPartial_bf16"), 2 * INNER / Kernels.THREADS, parts, 1,
                            Kernels.THREADS, 0);
                    k.args.reset().ptr(partial).ptr(db).i32(parts).i32(2 * INNER);
                    k.elementwise(k.function("rmsNormWeightGrad_f32"), 2 * INNER);
                },
                () -> rig.train.columnSum(P, out, db, partial, ROWS, 2 * INNER));

        long residual = (long) ROWS * D;
        long acc = random(Precision.F32, residual);
        long x = random(Precision.F32, residual);
        long xA = zeros(P, residual);
        compare("residual add (float32 + float32)", 12 * residual,
                () -> {
                    scalar("f32ToA_bf16", residual, a -> a.ptr(x).ptr(xA).i64(residual));
                    scalar("addInto_bf16", residual, a -> a.ptr(acc).ptr(xA).i64(residual));
                },
                () -> k.addIntoF32(acc, x, residual));
        compare("f32ToA", 6 * residual,
                () -> scalar("f32ToA_bf16", residual, a -> a.ptr(x).ptr(xA).i64(residual)),
                () -> k.f32ToA(P, x, xA, residual));
        compare("aToF32", 6 * residual,
                () -> scalar("aToF32_bf16", residual, a -> a.ptr(xA).ptr(x).i64(residual)),
                () -> k.aToF32(P, xA, x, residual));
    }

    private void compare(String what, long bytes, Runnable old, Runnable now) {
        double before = millis(old);
        double after = millis(now);
        System.out.printf(Locale.ROOT, "%-40s old %7.3f ms %6.0f GB/s   new %7.3f ms %6.0f GB/s   %5.2fx%n", what,
                before, bytes / before / 1e6, after, bytes / after / 1e6, before / after);
    }

    private double millis(Runnable call) {
        return BenchTimer.millis(rig, REPS, call);
    }
}
