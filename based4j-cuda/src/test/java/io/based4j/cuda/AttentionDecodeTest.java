package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link Kernels#attentionDecode}, a decode step split over the keys, against {@link Kernels#attention}, the kernel
 * that takes any call, on the same cache: the same function summed in another order. Queries far enough on that
 * their keys span several splits (positions 0, 3, 301 and 1103 of 256-key splits), full and sliding windows (a ring
 * cache of the window, its split's keys wrapping round the ring), rotate-half and interleaved rotary, head dims 16, 32,
 * 48, 64, 96, 112 and 128 (lane groups of 2 to 16 in version 2, some of their lanes idle); every version of
 * attention_decode.cuh, the test checking that the version's own kernel is the one that runs; two heads, and for
 * versions 6 and 7 (a block a sequence's heads) and version 2 beside them 3, 5, 16 and 40.
 *
 * <p>Tolerance. In float32 both kernels sum dot products of dh terms and a softmax over up to 1,101 keys in float32,
 * in different orders: each result carries a relative error of a few times sqrt(n) u (u = 6e-8), well under 1e-5 of
 * the largest output, the bound. In bf16 both round their float32 result to bf16 (8 significant bits): results that
 * differ by the float32 amount may round to neighbouring bf16 values, one unit apart ({@link Near#bf16Ulp}: up to 2^-7
 * of the value), so the bound is one unit of the larger of the two plus the float32 bound.
 */
@GpuTest
class AttentionDecodeTest {
    static Stream<Arguments> cases() {
        Stream.Builder<Arguments> cases = Stream.builder();
        for (int version = 1; version <= Kernels.DECODE_VERSIONS; version++) {
            cases.add(Arguments.of(version, Precision.F32, 64, Integer.MAX_VALUE, 32, false, 2));
            cases.add(Arguments.of(version, Precision.BF16, 128, Integer.MAX_VALUE, 64, false, 2));
            cases.add(Arguments.of(version, Precision.BF16, 112, Integer.MAX_VALUE, 0, false, 2));
            cases.add(Arguments.of(version, Precision.F32, 112, 300, 32, true, 2));
            cases.add(Arguments.of(version, Precision.BF16, 64, 600, 64, false, 2));
            cases.add(Arguments.of(version, Precision.BF16, 32, Integer.MAX_VALUE, 32, true, 2));
            cases.add(Arguments.of(version, Precision.F32, 16, 100, 16, false, 2));
            cases.add(Arguments.of(version, Precision.BF16, 48, 300, 16, false, 2));
            cases.add(Arguments.of(version, Precision.F32, 96, Integer.MAX_VALUE, 96, true, 2));
        }
        // versions 6 and 7 take all of a sequence's heads in a block: attn-1b's 16 of 112, a warp not filled (5 heads of 64,
        // 3 of 16), a block of the most threads (32 heads of 128: 512) and more than a block holds (40 of 112: version 2
        // runs); version 2 beside them on the same shapes
        for (int version : new int[] {2, 6, 7}) {
            cases.add(Arguments.of(version, Precision.BF16, 112, Integer.MAX_VALUE, 32, false, 16));
            cases.add(Arguments.of(version, Precision.F32, 64, 600, 64, true, 5));
            cases.add(Arguments.of(version, Precision.BF16, 16, 100, 16, false, 3));
            cases.add(Arguments.of(version, Precision.BF16, 112, 300, 0, false, 40));
            cases.add(Arguments.of(version, Precision.BF16, 128, Integer.MAX_VALUE, 64, true, 32));  // 512 threads
        }
        return cases.build();
    }

    @ParameterizedTest(name = "version {0}, {1}, head dim {2}, window {3}, rotary {4}, interleaved {5}, heads {6}")
    @MethodSource("cases")
    void theSplitDecodeIsTheOneKernelsAttention(int version, Precision p, int dh, int window, int rotaryDim,
                                                boolean interleaved, int heads) {
        int d = heads * dh;
        int maxPos = 1200;
        boolean ring = window != Integer.MAX_VALUE;
        int capacity = ring ? window : maxPos;
        MixerConfig.Attention cfg = new MixerConfig.Attention(d, heads, dh, window, rotaryDim, 10000.0, interleaved,
                1 / Math.sqrt(dh), false, false);
        // odd positions leave a split's last chunk of keys part empty in every version's chunk size (at 3: 3 cached
        // keys; at 1103 of the whole context: 79 in the last split of 256)
        int[] positions = {0, 3, 301, 1103};
        int b = positions.length;
        TokenBatch batch = new TokenBatch(new int[] {1, 2, 0, 3}, positions, new int[] {1, 1, 1, 1});
        SplittableRandom r = new SplittableRandom(5 + dh + window);
        float[] qkv = Near.gaussian(r, b * 3 * d, 1);
        float[] keys = Near.gaussian(r, b * capacity * d, 1);
        float[] values = Near.gaussian(r, b * capacity * d, 1);
        long keysSeen = Math.min((long) maxPos, ring ? (long) window + 1 : maxPos);
        int splits = Kernels.decodeSplitCount(keysSeen);
        try (KernelRig rig = new KernelRig()) {
            long qkvD = rig.values(p, qkv);
            long kc = rig.values(p, keys);
            long vc = rig.values(p, values);
            long rotary = rig.floats(Kernels.rotaryTable(cfg, maxPos));
            long layout = rig.ints(CudaBackend.layoutOf(batch));
            long want = rig.zeros((long) b * d * p.bytes());
            long got = rig.zeros((long) b * d * p.bytes());
            long partial = rig.zeros(4L * b * heads * splits * (2 + dh));
            float scale = (float) cfg.softmaxScale();
            rig.kernels.attention(p, qkvD, kc, vc, rotary, layout, want, b, b, heads, dh, capacity, window, rotaryDim,
                    maxPos, interleaved, scale);
            int runs = Kernels.decodeLaunchVersion(version, heads, dh);  // 2 for version 6 or 7 past a block's threads
            assertEquals(version == 1 ? "attentionDecode" : "attentionDecode" + runs,
                    Kernels.decodeKernel(runs, qkvD, kc, vc), "the kernel of version " + version);
            rig.kernels.attentionDecode(version, p, qkvD, kc, vc, rotary, layout, got, partial, b, heads, dh, capacity,
                    window, rotaryDim, maxPos, interleaved, scale, splits);
            float[] w = rig.values(p, want, b * d);
            float[] g = rig.values(p, got, b * d);
            Near.sameAttention(p, w, g, i -> String.format(Locale.ROOT, "output %d (sequence %d, head %d)", i, i / d,
                    (i % d) / dh), "split", "unsplit");
        }
    }
}
