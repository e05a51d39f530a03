package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.gaussian;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The bf16 vector forms of the elementwise ops (vector_ops.cuh), as {@link Kernels} launches them, against the
 * scalar kernels launched by name on the same inputs: each computes the same float32 operation per element, so the
 * results must agree bit for bit. Counts and widths leave a tail after the last whole vector, rows run from 1 to
 * more than one grid-stride step, and unaligned pointers (one element off) must fall back to the scalar kernels.
 */
@GpuTest
class VectorKernelsTest {
    private static final Precision P = Precision.BF16;
    /** rows x width: widths multiples of 8 (the vector forms), with one that is not. */
    private static final int[][] SHAPES = {{1, 8}, {3, 1032}, {700, 264}, {2, 100}};

    private final SplittableRandom random = new SplittableRandom(SEED);

    @Test
    void addIntoAddsBf16AndFloat32Values() {
        try (KernelRig rig = new KernelRig()) {
            for (int count : new int[] {5, 8, 8 * 1000 + 3, 300_001}) {
                float[] acc = gaussian(random, count, 1);
                float[] x = gaussian(random, count, 1);
                long xA = rig.values(P, x);
                long want = rig.floats(acc);
                scalar(rig, "addInto_bf16", count, a -> a.ptr(want).ptr(xA).i64(count));
                long got = rig.floats(acc);
                rig.kernels.addInto(P, got, xA, count);
                assertArrayEquals(rig.floats(want, count), rig.floats(got, count), "addInto bf16, " + count);

                long xF = rig.floats(x);
                long wantF = rig.floats(acc);
                scalar(rig, "addInto_f32", count, a -> a.ptr(wantF).ptr(xF).i64(count));
                long gotF = rig.floats(acc);
                rig.kernels.addIntoF32(gotF, xF, count);
                assertArrayEquals(rig.floats(wantF, count), rig.floats(gotF, count), "addInto float32, " + count);
                // from an unaligned accumulator (one element on): the scalar kernel, float32 additions
                long off = rig.floats(acc) + 4;
                rig.kernels.addIntoF32(off, xF, count - 1);
                float[] sums = new float[count - 1];
                for (int i = 0; i < count - 1; i++) {
                    sums[i] = acc[i + 1] + x[i];
                }
                assertArrayEquals(sums, rig.floats(off, count - 1), "addInto float32 unaligned, " + count);
            }
        }
    }

    @Test
    void conversionsRoundTheSameWay() {
        try (KernelRig rig = new KernelRig()) {
            for (int count : new int[] {3, 16, 8 * 999 + 7}) {
                float[] v = gaussian(random, count, 100);
                long src = rig.floats(v);
                long want = rig.zeros(2L * count);
                scalar(rig, "f32ToA_bf16", count, a -> a.ptr(src).ptr(want).i64(count));
                long got = rig.zeros(2L * count);
                rig.kernels.f32ToA(P, src, got, count);
                assertArrayEquals(rig.values(P, want, count), rig.values(P, got, count), "f32ToA, " + count);
                long back = rig.zeros(4L * count);
                rig.kernels.aToF32(P, got, back, count);
                assertArrayEquals(Near.stored(P, v), rig.floats(back, count), "aToF32, " + count);
            }
        }
    }

    @Test
    void addBiasAddsTheSameIntoBf16AndFloat32Rows() {
        try (KernelRig rig = new KernelRig()) {
            for (int[] shape : SHAPES) {
                int n = shape[0];
                int m = shape[1];
                int count = n * m;
                float[] out = gaussian(random, count, 1);
                long bias = rig.values(P, gaussian(random, m, 1));
                long want = rig.values(P, out);
                scalar(rig, "addBias_bf16", count, a -> a.ptr(want).ptr(bias).i32(n).i32(m));
                long got = rig.values(P, out);
                rig.kernels.addBias(P, got, bias, n, m);
                assertArrayEquals(rig.values(P, want, count), rig.values(P, got, count), "addBias " + n + " x " + m);

                long wantF = rig.floats(out);
                scalar(rig, "addBiasF32_bf16", count, a -> a.ptr(wantF).ptr(bias).i32(n).i32(m));
                long gotF = rig.floats(out);
                rig.kernels.addBiasF32(P, gotF, bias, n, m);
                assertArrayEquals(rig.floats(wantF, count), rig.floats(gotF, count), "addBiasF32 " + n + " x " + m);
            }
        }
    }

    @Test
    void swigluGatesTheSame() {
        try (KernelRig rig = new KernelRig()) {
            for (int[] shape : SHAPES) {
                int n = shape[0];
                int h = shape[1];
                float[] a = gaussian(random, 2 * n * h, 3);
                long in = rig.values(P, a);
                long want = rig.zeros(2L * n * h);
                scalar(rig, "swiglu_bf16", (long) n * h, args -> args.ptr(in).ptr(want).i32(n).i32(h));
                long got = rig.zeros(2L * n * h);
                rig.kernels.swiglu(P, in, got, n, h);
                float[] expected = rig.values(P, want, n * h);
                assertArrayEquals(expected, rig.values(P, got, n * h), "swiglu " + n + " x " + h);
                // from an unaligned input: the scalar kernel, the same values
                float[] padded = new float[a.length + 1];
                System.arraycopy(a, 0, padded, 1, a.length);
                long off = rig.values(P, padded) + 2;
                long gotOff = rig.zeros(2L * n * h);
                rig.kernels.swiglu(P, off, gotOff, n, h);
                assertArrayEquals(expected, rig.values(P, gotOff, n * h), "swiglu unaligned " + n + " x " + h);
            }
        }
    }

    /** Launches the scalar kernel {@code name} over {@code count} elements with the arguments {@code fill} sets. */
    private static void scalar(KernelRig rig, String name, long count, java.util.function.Consumer<KernelArgs> fill) {
        fill.accept(rig.kernels.args.reset());
        rig.kernels.elementwise(rig.kernels.function(name), count);
    }
}
