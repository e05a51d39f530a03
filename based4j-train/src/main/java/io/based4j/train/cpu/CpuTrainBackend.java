package io.based4j.train.cpu;

import io.based4j.backend.TokenBatch;
import io.based4j.backend.TrainingBackend;
import io.based4j.backend.cpu.Parallel;
import io.based4j.config.MixerConfig;
import io.based4j.memory.HostMemory;
import io.based4j.memory.MemoryNeed;
import io.based4j.memory.Sizes;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Locale;

/**
 * Training on the CPU in float64: exact enough for finite-difference gradient checks of whole models, and the
 * reference that faster backends are tested against. Each op is a static kernel over {@code double[]} with its
 * backward beside it ({@link DenseOps}, {@link CrossEntropyOps}, {@link LinearAttentionOps}, {@link AttentionOps}).
 *
 * <p>It runs training passes only: whole sequences from an empty state. Recurrent states (decode), views of fewer
 * rows and per-row head products are the inference backends' ({@code cpu}, {@code cuda}).
 */
public final class CpuTrainBackend implements TrainingBackend {
    /** Where the buffers (Java arrays) must fit. */
    private final HostMemory memory;

    /** A backend whose memory checks measure this JVM and machine. */
    public CpuTrainBackend() {
        this(HostMemory.system());
    }

    /** A backend checking its buffers against {@code memory}. */
    public CpuTrainBackend(HostMemory memory) {
        this.memory = memory;
    }

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public String precisionName() {
        return "f64";
    }

    private static double[] d(Buffer b) {
        return b == null ? null : ((CpuBuf) b).data();
    }

    private static double[] d(Weight w) {
        return w == null ? null : ((CpuBuf) w).data();
    }

    private static CpuBuf buf(Weight w) {
        return (CpuBuf) w;
    }

    /** A training pass starts every sequence afresh: a recurrent state is the inference backends' business. */
    private static int seqLen(String op, TokenBatch batch, MixerState state) {
        if (state != null) {
            throw new UnsupportedOperationException(op + ": the float64 training backend runs whole sequences from an"
                    + " empty state; decode on the cpu or cuda backend");
        }
        return batch.uniformLength();
    }

    private static void sameShape(String what, Buffer a, Buffer b) {
        if (a.rows() != b.rows() || a.cols() != b.cols()) {
            throw new IllegalArgumentException(what + ": " + a.rows() + "x" + a.cols() + " vs " + b.rows() + "x" + b.cols());
        }
    }

    @Override
    public Buffer allocate(int rows, int cols) {
        return new CpuBuf(newArray(rows, cols), rows, cols);
    }

    /** A zeroed {@code rows x cols} array, after checking its length and that it fits in the heap. */
    private double[] newArray(int rows, int cols) {
        int n = Sizes.arrayLength(rows, cols, "training buffer");
        memory.requireHeap((long) Double.BYTES * n,
                String.format(Locale.ROOT, "a training buffer of %,d x %,d float64 values", rows, cols));
        return new double[n];
    }

    @Override
    public int valueBytes() {
        return Double.BYTES;
    }

    /**
     * {@link CrossEntropyOps#forwardBackward}: the head transposed ({@code vocab x width}), the logits of one block of
     * rows ({@code block x vocab}), the block's inputs and input gradients ({@code 2 x block x width}), and per row a
     * loss, a row index and an argmax (counted as two values).
     */
    @Override
    public long lossScratchValues(long rows, long width, long vocab) {
        long block = Math.min(CrossEntropyOps.BLOCK_ROWS, rows);
        return Sizes.sum(Sizes.times(vocab, width), Sizes.times(block, vocab), Sizes.product(2, block, width),
                Sizes.times(2, rows));
    }

    /** Buffers are Java arrays: they join the host's heap need. */
    @Override
    public void checkFits(long bufferBytes, MemoryNeed host) {
        memory.require(host.plusHeap(bufferBytes));
    }

    @Override
    public void checkFits(long bytes, String what) {
        memory.requireHeap(bytes, what);
    }

    /** Parameters are float64 Java arrays. */
    @Override
    public long storedBytes(Tensor tensor) {
        return Sizes.times(tensor.numel(), Double.BYTES);
    }

    @Override
    public Parameter parameter(Tensor tensor) {
        long[] shape = tensor.shape();
        int rows = shape.length == 1 ? 1 : Math.toIntExact(shape[0]);
        int cols = Math.toIntExact(tensor.numel() / Math.max(1, rows));
        double[] out = newArray(rows, cols);
        if (tensor.dtype() == DType.F64) {
            MemorySegment.copy(tensor.data(), Tensor.F64_LE, 0, out, 0, out.length);
        } else {
            for (int i = 0; i < out.length; i++) {
                out[i] = tensor.getFloat(i);
            }
        }
        return new CpuBuf(out, rows, cols, shape);
    }

    @Override
    public Weight weight(Tensor tensor) {
        return parameter(tensor);
    }

    @Override
    public boolean viewsFewerRows() {
        return false;
    }

    @Override
    public Buffer view(Buffer buffer, int rows) {
        if (rows != buffer.rows()) {
            throw new UnsupportedOperationException("the float64 training backend keeps no views of fewer rows");
        }
        return buffer;
    }

    @Override
    public Buffer upload(float[] values, int rows, int cols) {
        double[] out = newArray(rows, cols);
        for (int i = 0; i < out.length; i++) {
            out[i] = values[i];
        }
        return new CpuBuf(out, rows, cols);
    }

    /** The values rounded to float32. */
    @Override
    public float[] download(Buffer buffer) {
        double[] v = d(buffer);
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = (float) v[i];
        }
        return out;
    }

    @Override
    public MixerState allocateState(MixerConfig mixer, int slots, int maxLength) {
        throw new UnsupportedOperationException("the float64 training backend keeps no recurrent state; decode on the"
                + " cpu or cuda backend");
    }

    @Override
    public Tensor save(Buffer buf, long... shape) {
        double[] v = d(buf);
        if (Tensor.numel(shape) != v.length) {
            throw new IllegalArgumentException("shape does not hold the " + v.length + " values of the buffer");
        }
        MemorySegment seg = Arena.ofAuto().allocate((long) v.length * 8, 8);
        MemorySegment.copy(v, 0, seg, Tensor.F64_LE, 0, v.length);
        return new Tensor(DType.F64, shape, seg);
    }

    @Override
    public void zero(Buffer buf) {
        java.util.Arrays.fill(d(buf), 0.0);
    }

    // ---------------------------------------------------------------- dense ops and their backward

    @Override
    public void embedding(Weight table, int[] ids, Buffer out) {
        DenseOps.embedding(d(table), buf(table).cols(), ids, d(out));
    }

    @Override
    public void embeddingBackward(int[] ids, Buffer dout, Buffer dtable) {
        DenseOps.embeddingBackward(ids, dtable.cols(), d(dout), d(dtable));
    }

    @Override
    public void rmsNorm(Buffer x, Weight w, double eps, Buffer out, Buffer rstd) {
        double[] r = rstd == null ? new double[x.rows()] : d(rstd);
        DenseOps.rmsNorm(d(x), x.rows(), x.cols(), d(w), eps, d(out), r);
    }

    @Override
    public void rmsNormBackward(Buffer x, Weight w, Buffer rstd, Buffer dout, Buffer dx, Buffer dw) {
        DenseOps.rmsNormBackward(d(x), x.rows(), x.cols(), d(w), d(rstd), d(dout), d(dx), d(dw));
    }

    @Override
    public void matmul(Buffer x, Weight w, Weight bias, Buffer out) {
        DenseOps.matmul(d(x), x.rows(), x.cols(), d(w), buf(w).rows(), d(bias), d(out));
    }

    @Override
    public void matmulRows(Buffer x, int[] rows, Weight w, Buffer out) {
        int k = x.cols();
        double[] picked = new double[Math.multiplyExact(rows.length, k)];
        for (int i = 0; i < rows.length; i++) {
            System.arraycopy(d(x), rows[i] * k, picked, i * k, k);
        }
        DenseOps.matmul(picked, rows.length, k, d(w), buf(w).rows(), null, d(out));
    }

    @Override
    public void matmulBackward(Buffer x, Weight w, Buffer dout, Buffer dx, Buffer dw, Buffer db) {
        DenseOps.matmulBackward(d(x), x.rows(), x.cols(), d(w), buf(w).rows(), d(dout), d(dx), d(dw), d(db));
    }

    @Override
    public void swiglu(Buffer a, Buffer out) {
        DenseOps.swiglu(d(a), a.rows(), a.cols() / 2, d(out));
    }

    @Override
    public void swigluBackward(Buffer a, Buffer dout, Buffer da) {
        DenseOps.swigluBackward(d(a), a.rows(), a.cols() / 2, d(dout), d(da));
    }

    @Override
    public void addInPlace(Buffer acc, Buffer x) {
        sameShape("add", acc, x);
        DenseOps.add(d(acc), d(x));
    }

    // ---------------------------------------------------------------- sequence mixers and their backward

    @Override
    public void baseConv(MixerConfig.BaseConv cfg, Buffer u, Weight convWeight, TokenBatch batch, MixerState state,
                         Buffer out, Buffer convOut) {
        int seqLen = seqLen("baseConv", batch, state);
        double[] c = convOut == null ? new double[out.rows() * out.cols()] : d(convOut);
        DenseOps.baseConv(d(u), batch.size(), seqLen, u.cols() / 2, d(convWeight), cfg.kernel(), c, d(out));
    }

    @Override
    public void baseConvBackward(MixerConfig.BaseConv cfg, TokenBatch batch, Buffer u, Weight taps, Buffer convOut,
                                 Buffer dout, Buffer du, Buffer dtaps) {
        DenseOps.baseConvBackward(d(u), batch.size(), batch.uniformLength(), u.cols() / 2, d(taps), cfg.kernel(),
                d(convOut), d(dout), d(du), d(dtaps));
    }

    @Override
    public void linearAttention(MixerConfig.LinearAttention cfg, Buffer q, Buffer k, Buffer v, TokenBatch batch,
                                MixerState state, Buffer out) {
        int seqLen = seqLen("linearAttention", batch, state);
        LinearAttentionOps.forward(batch.size(), seqLen, cfg.numHeads(), cfg.featureDim(), cfg.headDim(), cfg.eps(),
                LinearAttentionOps.DEFAULT_CHUNK, d(q), d(k), d(v), d(out));
    }

    @Override
    public void linearAttentionBackward(MixerConfig.LinearAttention cfg, TokenBatch batch, Buffer q, Buffer k,
                                        Buffer v, Buffer dout, Buffer dq, Buffer dk, Buffer dv) {
        LinearAttentionOps.backward(batch.size(), batch.uniformLength(), cfg.numHeads(), cfg.featureDim(),
                cfg.headDim(), cfg.eps(), LinearAttentionOps.DEFAULT_CHUNK, d(q), d(k), d(v), d(dout), d(dq), d(dk),
                d(dv));
    }

    private static void checkRotary(MixerConfig.Attention cfg) {
        if (cfg.rotaryInterleaved() && cfg.rotaryDim() > 0) {
            throw new IllegalArgumentException("training supports non-interleaved (rotate-half) rotary only");
        }
    }

    @Override
    public void attention(MixerConfig.Attention cfg, Buffer qkv, TokenBatch batch, MixerState state, Buffer out,
                          Buffer lse) {
        int seqLen = seqLen("attention", batch, state);
        checkRotary(cfg);
        double[] l = lse == null ? new double[out.rows() * cfg.numHeads()] : d(lse);
        AttentionOps.forward(batch.size(), seqLen, cfg.numHeads(), cfg.headDim(), cfg.window(), cfg.rotaryDim(),
                cfg.rotaryBase(), cfg.softmaxScale(), d(qkv), d(out), l);
    }

    @Override
    public void attentionBackward(MixerConfig.Attention cfg, TokenBatch batch, Buffer qkv, Buffer out, Buffer lse,
                                  Buffer dout, Buffer dqkv) {
        checkRotary(cfg);
        AttentionOps.backward(batch.size(), batch.uniformLength(), cfg.numHeads(), cfg.headDim(), cfg.window(),
                cfg.rotaryDim(), cfg.rotaryBase(), cfg.softmaxScale(), d(qkv), d(out), d(lse), d(dout), d(dqkv));
    }

    // ---------------------------------------------------------------- loss and optimizer

    @Override
    public double crossEntropy(Buffer x, Weight head, int vocab, int[] targets, double scale, Buffer dx,
                               Buffer dhead, int[] argmax) {
        return CrossEntropyOps.forwardBackward(d(x), x.rows(), x.cols(), d(head), vocab, targets, scale, d(dx),
                d(dhead), argmax);
    }

    @Override
    public double sumOfSquares(Buffer g) {
        double[] v = d(g);
        // fixed chunks summed in order: the same result whatever the thread count
        int chunk = 1 << 14;
        int n = (v.length + chunk - 1) / chunk;
        double[] partial = new double[n];
        Parallel.forEach(n, c -> {
            double s = 0;
            for (int i = c * chunk, end = Math.min(v.length, i + chunk); i < end; i++) {
                s += v[i] * v[i];
            }
            partial[c] = s;
        });
        double s = 0;
        for (double p : partial) {
            s += p;
        }
        return s;
    }

    @Override
    public void scale(Buffer g, double s) {
        double[] v = d(g);
        Parallel.forRanges(v.length, 1 << 14, (from, to) -> {
            for (int i = from; i < to; i++) {
                v[i] *= s;
            }
        });
    }

    @Override
    public void adamw(Parameter p, Buffer g, Buffer m, Buffer v, double lr, double beta1, double beta2, double eps,
                      double weightDecay, long step) {
        double[] pv = d((Buffer) p);
        double[] gv = d(g);
        double[] mv = d(m);
        double[] vv = d(v);
        double c1 = 1 - Math.pow(beta1, step);
        double c2 = 1 - Math.pow(beta2, step);
        double decay = 1 - lr * weightDecay;
        Parallel.forRanges(pv.length, 1 << 14, (from, to) -> {
            for (int i = from; i < to; i++) {
                double gi = gv[i];
                mv[i] = beta1 * mv[i] + (1 - beta1) * gi;
                vv[i] = beta2 * vv[i] + (1 - beta2) * gi * gi;
                pv[i] = pv[i] * decay - lr * (mv[i] / c1) / (Math.sqrt(vv[i] / c2) + eps);
            }
        });
    }

    @Override
    public void close() {
    }
}
