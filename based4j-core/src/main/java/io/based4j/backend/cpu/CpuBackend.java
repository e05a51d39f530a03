package io.based4j.backend.cpu;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
import io.based4j.memory.HostMemory;
import io.based4j.tensor.DType;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * The fast CPU backend: Vector API matmuls over float32 or bfloat16 weights read straight from the
 * memory-mapped checkpoint, multithreaded over output features, sequences and heads; chunked linear attention
 * and ring-buffer sliding-window attention.
 */
public final class CpuBackend extends HeapBackend {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final VectorSpecies<Short> HALF = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, VectorShape.forBitSize(F.vectorBitSize()));
    static final int L = F.length();
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    /** Tokens of one sequence handled together in the quadratic part of linear attention. */
    static final int LINEAR_CHUNK = 64;

    /** A CPU backend whose memory checks measure this JVM and machine. */
    public CpuBackend() {
        this(HostMemory.system());
    }

    /** A CPU backend checking its allocations against {@code memory}. */
    public CpuBackend(HostMemory memory) {
        super(memory);
    }

    @Override
    public String name() {
        return "cpu";
    }

    /** Also extends the rotary angle table to the session's length, so no call has to grow it later. */
    @Override
    public MixerState allocateState(MixerConfig mixer, int slots, int maxLength) {
        MixerState state = super.allocateState(mixer, slots, maxLength);
        if (mixer instanceof MixerConfig.Attention a) {
            RotaryTable.of(a.rotaryDim(), a.rotaryBase()).ensure(maxLength, memory);
        }
        return state;
    }

    /** Linear attention sums chunk by chunk from the start of each call. */
    @Override
    public int exactSplit() {
        return LINEAR_CHUNK;
    }

    @Override
    int linearStateFeatures(MixerConfig.LinearAttention cfg) {
        return cfg.expandedDim();
    }

    // ------------------------------------------------------------------ dense ops

    @Override
    public void rmsNorm(Buffer x, Weight weight, double epsilon, Buffer out, Buffer rstd) {
        Backend.keepsNothing("rmsNorm", rstd);
        float eps = (float) epsilon;
        CpuBuffer a = CpuBuffer.of(x);
        CpuBuffer o = CpuBuffer.of(out);
        checkShape("rmsNorm", o, a.rows, a.cols);
        float[] w = CpuWeight.of(weight).floats();
        int n = a.cols;
        Parallel.forRanges(a.rows, 16, (from, to) -> {
            for (int i = from; i < to; i++) {
                int base = i * n;
                float ss = sumSquares(a.data, base, n);
                float r = (float) (1.0 / Math.sqrt(ss / n + eps));
                int j = 0;
                for (; j <= n - L; j += L) {
                    FloatVector.fromArray(F, a.data, base + j).mul(r).mul(FloatVector.fromArray(F, w, j))
                            .intoArray(o.data, base + j);
                }
                for (; j < n; j++) {
                    o.data[base + j] = a.data[base + j] * r * w[j];
                }
            }
        });
    }

    private static float sumSquares(float[] x, int base, int n) {
        FloatVector acc = FloatVector.zero(F);
        int j = 0;
        for (; j <= n - L; j += L) {
            FloatVector v = FloatVector.fromArray(F, x, base + j);
            acc = v.fma(v, acc);
        }
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; j < n; j++) {
            s += x[base + j] * x[base + j];
        }
        return s;
    }

    @Override
    public void matmul(Buffer x, Weight w, Weight bias, Buffer out) {
        CpuBuffer a = CpuBuffer.of(x);
        product(a, null, a.rows, CpuWeight.of(w), bias == null ? null : CpuWeight.of(bias).floats(), CpuBuffer.of(out));
    }

    @Override
    public void matmulRows(Buffer x, int[] rows, Weight w, Buffer out) {
        product(CpuBuffer.of(x), rows, rows.length, CpuWeight.of(w), null, CpuBuffer.of(out));
    }

    /** {@code out[i, m] = x[row(i)] . w[m] (+ bias[m])}, tiled 4 inputs x 4 weight rows, parallel over weight rows. */
    private static void product(CpuBuffer a, int[] rows, int n, CpuWeight w, float[] bias, CpuBuffer o) {
        if (w.cols != a.cols) {
            throw new IllegalArgumentException("matmul: input width " + a.cols + " does not match weight " + w);
        }
        checkShape("matmul", o, n, w.rows);
        int k = a.cols;
        int m = w.rows;
        boolean bf16 = w.dtype == DType.BF16;
        int[] r = rows != null ? rows : identity(n);
        Parallel.forRanges((m + 3) / 4, (int) Math.max(1, 4096 / Math.max(1, (long) n * k / 64)), (from, to) -> {
            for (int mb = from; mb < to; mb++) {
                int m0 = mb * 4;
                int mCount = Math.min(4, m - m0);
                for (int i0 = 0; i0 < n; i0 += 4) {
                    int nCount = Math.min(4, n - i0);
                    if (mCount == 4 && nCount == 4) {
                        tile4x4(a.data, r, i0, k, w.data, m0, bf16, o.data, m, bias);
                    } else {
                        for (int i = i0; i < i0 + nCount; i++) {
                            for (int j = m0; j < m0 + mCount; j++) {
                                float v = dot(a.data, r[i] * k, w.data, (long) j * k, k, bf16);
                                o.data[i * m + j] = bias == null ? v : v + bias[j];
                            }
                        }
                    }
                }
            }
        });
    }

    private static int[] identity(int n) {
        int[] r = new int[n];
        for (int i = 0; i < n; i++) {
            r[i] = i;
        }
        return r;
    }

    static FloatVector load(MemorySegment seg, long element, boolean bf16) {
        if (!bf16) {
            return FloatVector.fromMemorySegment(F, seg, element * 4, LE);
        }
        IntVector wide = (IntVector) ShortVector.fromMemorySegment(HALF, seg, element * 2, LE)
                .convertShape(VectorOperators.S2I, I, 0);
        return wide.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    static float scalar(MemorySegment seg, long element, boolean bf16) {
        return bf16 ? io.based4j.tensor.Tensor.bf16ToFloat(seg.getAtIndex(io.based4j.tensor.Tensor.I16_LE, element))
                : seg.getAtIndex(io.based4j.tensor.Tensor.F32_LE, element);
    }

    static float dot(float[] x, int xOff, MemorySegment w, long wOff, int k, boolean bf16) {
        FloatVector acc = FloatVector.zero(F);
        int j = 0;
        for (; j <= k - L; j += L) {
            acc = FloatVector.fromArray(F, x, xOff + j).fma(load(w, wOff + j, bf16), acc);
        }
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; j < k; j++) {
            s += x[xOff + j] * scalar(w, wOff + j, bf16);
        }
        return s;
    }

    private static void tile4x4(float[] x, int[] rows, int i0, int k, MemorySegment w, int m0, boolean bf16,
                                float[] out, int m, float[] bias) {
        int x0 = rows[i0] * k;
        int x1 = rows[i0 + 1] * k;
        int x2 = rows[i0 + 2] * k;
        int x3 = rows[i0 + 3] * k;
        long w0 = (long) m0 * k;
        long w1 = w0 + k;
        long w2 = w1 + k;
        long w3 = w2 + k;
        FloatVector a00 = FloatVector.zero(F), a01 = a00, a02 = a00, a03 = a00;
        FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00;
        FloatVector a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        int j = 0;
        for (; j <= k - L; j += L) {
            FloatVector b0 = load(w, w0 + j, bf16);
            FloatVector b1 = load(w, w1 + j, bf16);
            FloatVector b2 = load(w, w2 + j, bf16);
            FloatVector b3 = load(w, w3 + j, bf16);
            FloatVector v = FloatVector.fromArray(F, x, x0 + j);
            a00 = v.fma(b0, a00);
            a01 = v.fma(b1, a01);
            a02 = v.fma(b2, a02);
            a03 = v.fma(b3, a03);
            v = FloatVector.fromArray(F, x, x1 + j);
            a10 = v.fma(b0, a10);
            a11 = v.fma(b1, a11);
            a12 = v.fma(b2, a12);
            a13 = v.fma(b3, a13);
            v = FloatVector.fromArray(F, x, x2 + j);
            a20 = v.fma(b0, a20);
            a21 = v.fma(b1, a21);
            a22 = v.fma(b2, a22);
            a23 = v.fma(b3, a23);
            v = FloatVector.fromArray(F, x, x3 + j);
            a30 = v.fma(b0, a30);
            a31 = v.fma(b1, a31);
            a32 = v.fma(b2, a32);
            a33 = v.fma(b3, a33);
        }
        float[] s = {
            a00.reduceLanes(VectorOperators.ADD), a01.reduceLanes(VectorOperators.ADD),
            a02.reduceLanes(VectorOperators.ADD), a03.reduceLanes(VectorOperators.ADD),
            a10.reduceLanes(VectorOperators.ADD), a11.reduceLanes(VectorOperators.ADD),
            a12.reduceLanes(VectorOperators.ADD), a13.reduceLanes(VectorOperators.ADD),
            a20.reduceLanes(VectorOperators.ADD), a21.reduceLanes(VectorOperators.ADD),
            a22.reduceLanes(VectorOperators.ADD), a23.reduceLanes(VectorOperators.ADD),
            a30.reduceLanes(VectorOperators.ADD), a31.reduceLanes(VectorOperators.ADD),
            a32.reduceLanes(VectorOperators.ADD), a33.reduceLanes(VectorOperators.ADD)};
        int[] xo = {x0, x1, x2, x3};
        for (; j < k; j++) {
            for (int c = 0; c < 4; c++) {
                float wv = scalar(w, w0 + (long) c * k + j, bf16);
                for (int r = 0; r < 4; r++) {
                    s[r * 4 + c] += x[xo[r] + j] * wv;
                }
            }
        }
        for (int r = 0; r < 4; r++) {
            for (int c = 0; c < 4; c++) {
                out[(i0 + r) * m + m0 + c] = bias == null ? s[r * 4 + c] : s[r * 4 + c] + bias[m0 + c];
            }
        }
    }

    @Override
    public void swiglu(Buffer a, Buffer out) {
        CpuBuffer in = CpuBuffer.of(a);
        CpuBuffer o = CpuBuffer.of(out);
        int h = in.cols / 2;
        checkShape("swiglu", o, in.rows, h);
        Parallel.forRanges(in.rows, 4, (from, to) -> {
            for (int i = from; i < to; i++) {
                gatedSilu(in.data, i * in.cols, in.data, i * in.cols + h, o.data, i * h, h);
            }
        });
    }

    /** {@code out[i] = silu(gate[i]) * value[i]} for {@code n} elements. */
    static void gatedSilu(float[] value, int vOff, float[] gate, int gOff, float[] out, int oOff, int n) {
        int j = 0;
        for (; j <= n - L; j += L) {
            FloatVector g = FloatVector.fromArray(F, gate, gOff + j);
            FloatVector silu = g.div(g.neg().lanewise(VectorOperators.EXP).add(1f));
            silu.mul(FloatVector.fromArray(F, value, vOff + j)).intoArray(out, oOff + j);
        }
        for (; j < n; j++) {
            out[oOff + j] = value[vOff + j] * silu(gate[gOff + j]);
        }
    }

    // ------------------------------------------------------------------ mixers

    @Override
    public void baseConv(MixerConfig.BaseConv cfg, Buffer u, Weight convWeight, TokenBatch batch, MixerState state,
                         Buffer out, Buffer convOut) {
        Backend.keepsNothing("baseConv", convOut);
        CpuBuffer in = CpuBuffer.of(u);
        CpuBuffer o = CpuBuffer.of(out);
        CpuStates.Conv st = CpuStates.cast(state, CpuStates.Conv.class, "baseConv");
        float[] w = CpuWeight.of(convWeight).floats();
        int ch = cfg.innerWidth();
        int k = cfg.kernel();
        int taps = k - 1;
        checkShape("baseConv", o, in.rows, ch);
        int[] off = batch.offsets();
        // taps transposed to [tap][channel] so the convolution runs along channels in vectors
        float[] tapsT = new float[k * ch];
        for (int c = 0; c < ch; c++) {
            for (int j = 0; j < k; j++) {
                tapsT[j * ch + c] = w[c * k + j];
            }
        }
        int block = 256;
        int blocks = (ch + block - 1) / block;
        Parallel.forEach(batch.size() * blocks, task -> {
            int b = task / blocks;
            int c0 = (task % blocks) * block;
            int c1 = Math.min(ch, c0 + block);
            int width = c1 - c0;
            float[] hist = st.history[batch.slot(b)];
            int len = batch.length(b);
            int row0 = off[b];
            float[] conv = new float[width];
            for (int t = 0; t < len; t++) {
                int row = row0 + t;
                java.util.Arrays.fill(conv, 0f);
                for (int j = 0; j < k; j++) {
                    int back = taps - j; // how many steps before t this tap reads
                    float[] src = t - back >= 0 ? in.data : hist;
                    int srcOff = t - back >= 0 ? (row - back) * in.cols + c0 : (taps + t - back) * ch + c0;
                    axpy(tapsT, j * ch + c0, src, srcOff, conv, 0, width);
                }
                gatedSilu(in.data, row * in.cols + ch + c0, conv, 0, o.data, row * ch + c0, width);
            }
            // remember the last k-1 inputs of u1
            for (int j = 0; j < taps; j++) {
                int t = len - taps + j; // position in this call of the j-th remembered value (may be < 0)
                if (t >= 0) {
                    System.arraycopy(in.data, (row0 + t) * in.cols + c0, hist, j * ch + c0, width);
                } else {
                    System.arraycopy(hist, (taps + t) * ch + c0, hist, j * ch + c0, width);
                }
            }
        });
    }

    /** {@code y[i] += a[i] * x[i]} elementwise for {@code n} elements. */
    static void axpy(float[] a, int aOff, float[] x, int xOff, float[] y, int yOff, int n) {
        int i = 0;
        for (; i <= n - L; i += L) {
            FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromArray(F, x, xOff + i),
                    FloatVector.fromArray(F, y, yOff + i)).intoArray(y, yOff + i);
        }
        for (; i < n; i++) {
            y[yOff + i] += a[aOff + i] * x[xOff + i];
        }
    }

    /** {@code y[i] += a * x[i]} for {@code n} elements. */
    static void axpy(float a, float[] x, int xOff, float[] y, int yOff, int n) {
        int i = 0;
        FloatVector av = FloatVector.broadcast(F, a);
        for (; i <= n - L; i += L) {
            av.fma(FloatVector.fromArray(F, x, xOff + i), FloatVector.fromArray(F, y, yOff + i)).intoArray(y, yOff + i);
        }
        for (; i < n; i++) {
            y[yOff + i] += a * x[xOff + i];
        }
    }

    @Override
    public void linearAttention(MixerConfig.LinearAttention cfg, Buffer q, Buffer k, Buffer v, TokenBatch batch,
                                MixerState state, Buffer out) {
        CpuBuffer qb = CpuBuffer.of(q);
        CpuBuffer kb = CpuBuffer.of(k);
        CpuBuffer vb = CpuBuffer.of(v);
        CpuBuffer o = CpuBuffer.of(out);
        CpuStates.Linear st = CpuStates.cast(state, CpuStates.Linear.class, "linearAttention");
        checkShape("linearAttention", o, vb.rows, cfg.dModel());
        int heads = cfg.numHeads();
        int[] off = batch.offsets();
        Parallel.forEach(batch.size() * heads, task -> {
            int b = task / heads;
            int h = task % heads;
            LinearAttentionKernel.run(cfg, qb.data, kb.data, vb.data, o.data, off[b], batch.length(b), h,
                    st.kv[batch.slot(b)], st.k[batch.slot(b)]);
        });
    }

    @Override
    public void attention(MixerConfig.Attention cfg, Buffer qkv, TokenBatch batch, MixerState state, Buffer out,
                          Buffer lse) {
        Backend.keepsNothing("attention", lse);
        CpuBuffer in = CpuBuffer.of(qkv);
        CpuBuffer o = CpuBuffer.of(out);
        CpuStates.KeyValue st = CpuStates.cast(state, CpuStates.KeyValue.class, "attention");
        checkShape("attention", o, in.rows, cfg.dModel());
        int heads = cfg.numHeads();
        int[] off = batch.offsets();
        for (int b = 0; b < batch.size(); b++) {
            int last = batch.start(b) + batch.length(b) - 1;
            if (!st.ring && last >= st.capacity) {
                throw new IllegalStateException("attention: position " + last + " is past the KV cache of "
                        + st.capacity + " tokens");
            }
        }
        for (int b = 0; b < batch.size(); b++) {
            st.ensure(batch.slot(b), batch.start(b) + batch.length(b));  // the pages this call writes, made here
        }
        Parallel.forEach(batch.size() * heads, task -> {
            int b = task / heads;
            int h = task % heads;
            AttentionKernel.run(cfg, in.data, o.data, off[b], batch.start(b), batch.length(b), h, st, batch.slot(b),
                    memory);
        });
    }
}
