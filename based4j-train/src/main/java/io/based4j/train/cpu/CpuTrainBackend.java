package io.based4j.train.cpu;

import io.based4j.backend.cpu.Parallel;
import io.based4j.config.MixerConfig;
import io.based4j.memory.HostMemory;
import io.based4j.memory.MemoryNeed;
import io.based4j.memory.Sizes;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import io.based4j.train.TrainBackend;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Locale;

/**
 * Training on the CPU in float64: exact enough for finite-difference gradient checks of whole models, and the
 * reference that faster backends are tested against. Each op is a static kernel over {@code double[]} with its
 * backward beside it ({@link DenseOps}, {@link CrossEntropyOps}, {@link LinearAttentionOps}, {@link AttentionOps}).
 */
public final class CpuTrainBackend implements TrainBackend {
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

    private static double[] d(Buf b) {
        return b == null ? null : ((CpuBuf) b).data();
    }

    private static void sameShape(String what, Buf a, Buf b) {
        if (a.rows() != b.rows() || a.cols() != b.cols()) {
            throw new IllegalArgumentException(what + ": " + a.rows() + "x" + a.cols() + " vs " + b.rows() + "x" + b.cols());
        }
    }

    @Override
    public Buf allocate(int rows, int cols) {
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
    public Buf load(Tensor tensor, int rows, int cols) {
        if (tensor.numel() != (long) rows * cols) {
            throw new IllegalArgumentException("tensor " + tensor + " does not hold " + rows + " x " + cols + " values");
        }
        double[] out = newArray(rows, cols);
        if (tensor.dtype() == DType.F64) {
            MemorySegment.copy(tensor.data(), Tensor.F64_LE, 0, out, 0, out.length);
        } else {
            for (int i = 0; i < out.length; i++) {
                out[i] = tensor.getFloat(i);
            }
        }
        return new CpuBuf(out, rows, cols);
    }

    @Override
    public Tensor save(Buf buf, long... shape) {
        double[] v = d(buf);
        if (Tensor.numel(shape) != v.length) {
            throw new IllegalArgumentException("shape does not hold the " + v.length + " values of the buffer");
        }
        MemorySegment seg = Arena.ofAuto().allocate((long) v.length * 8, 8);
        MemorySegment.copy(v, 0, seg, Tensor.F64_LE, 0, v.length);
        return new Tensor(DType.F64, shape, seg);
    }

    @Override
    public float[] toFloats(Buf buf) {
        double[] v = d(buf);
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = (float) v[i];
        }
        return out;
    }

    @Override
    public void zero(Buf buf) {
        java.util.Arrays.fill(d(buf), 0.0);
    }

    @Override
    public void embedding(Buf table, int[] ids, Buf out) {
        DenseOps.embedding(d(table), table.cols(), ids, d(out));
    }

    @Override
    public void embeddingBackward(int[] ids, Buf dout, Buf dtable) {
        DenseOps.embeddingBackward(ids, dtable.cols(), d(dout), d(dtable));
    }

    @Override
    public void rmsNorm(Buf x, Buf w, double eps, Buf out, Buf rstd) {
        DenseOps.rmsNorm(d(x), x.rows(), x.cols(), d(w), eps, d(out), d(rstd));
    }

    @Override
    public void rmsNormBackward(Buf x, Buf w, Buf rstd, Buf dout, Buf dx, Buf dw) {
        DenseOps.rmsNormBackward(d(x), x.rows(), x.cols(), d(w), d(rstd), d(dout), d(dx), d(dw));
    }

    @Override
    public void matmul(Buf x, Buf w, Buf bias, Buf out) {
        DenseOps.matmul(d(x), x.rows(), x.cols(), d(w), w.rows(), d(bias), d(out));
    }

    @Override
    public void matmulBackward(Buf x, Buf w, Buf dout, Buf dx, Buf dw, Buf db) {
        DenseOps.matmulBackward(d(x), x.rows(), x.cols(), d(w), w.rows(), d(dout), d(dx), d(dw), d(db));
    }

    @Override
    public void swiglu(Buf a, Buf out) {
        DenseOps.swiglu(d(a), a.rows(), a.cols() / 2, d(out));
    }

    @Override
    public void swigluBackward(Buf a, Buf dout, Buf da) {
        DenseOps.swigluBackward(d(a), a.rows(), a.cols() / 2, d(dout), d(da));
    }

    @Override
    public void add(Buf acc, Buf x) {
        sameShape("add", acc, x);
        DenseOps.add(d(acc), d(x));
    }

    @Override
    public void baseConv(int batch, int seqLen, Buf u, Buf convW, int kernel, Buf c, Buf out) {
        DenseOps.baseConv(d(u), batch, seqLen, u.cols() / 2, d(convW), kernel, d(c), d(out));
    }

    @Override
    public void baseConvBackward(int batch, int seqLen, Buf u, Buf convW, int kernel, Buf c, Buf dout, Buf du,
                                 Buf dconvW) {
        DenseOps.baseConvBackward(d(u), batch, seqLen, u.cols() / 2, d(convW), kernel, d(c), d(dout), d(du),
                d(dconvW));
    }

    @Override
    public void linearAttention(MixerConfig.LinearAttention cfg, int batch, int seqLen, Buf q, Buf k, Buf v,
                                Buf out) {
        LinearAttentionOps.forward(batch, seqLen, cfg.numHeads(), cfg.featureDim(), cfg.headDim(), cfg.eps(),
                LinearAttentionOps.DEFAULT_CHUNK, d(q), d(k), d(v), d(out));
    }

    @Override
    public void linearAttentionBackward(MixerConfig.LinearAttention cfg, int batch, int seqLen, Buf q, Buf k, Buf v,
                                        Buf dout, Buf dq, Buf dk, Buf dv) {
        LinearAttentionOps.backward(batch, seqLen, cfg.numHeads(), cfg.featureDim(), cfg.headDim(), cfg.eps(),
                LinearAttentionOps.DEFAULT_CHUNK, d(q), d(k), d(v), d(dout), d(dq), d(dk), d(dv));
    }

    private static void checkRotary(MixerConfig.Attention cfg) {
        if (cfg.rotaryInterleaved() && cfg.rotaryDim() > 0) {
            throw new IllegalArgumentException("training supports non-interleaved (rotate-half) rotary only");
        }
    }

    @Override
    public void attention(MixerConfig.Attention cfg, int batch, int seqLen, Buf qkv, Buf out, Buf lse) {
        checkRotary(cfg);
        AttentionOps.forward(batch, seqLen, cfg.numHeads(), cfg.headDim(), cfg.window(), cfg.rotaryDim(),
                cfg.rotaryBase(), cfg.softmaxScale(), d(qkv), d(out), d(lse));
    }

    @Override
    public void attentionBackward(MixerConfig.Attention cfg, int batch, int seqLen, Buf qkv, Buf out, Buf lse,
                                  Buf dout, Buf dqkv) {
        checkRotary(cfg);
        AttentionOps.backward(batch, seqLen, cfg.numHeads(), cfg.headDim(), cfg.window(), cfg.rotaryDim(),
                cfg.rotaryBase(), cfg.softmaxScale(), d(qkv), d(out), d(lse), d(dout), d(dqkv));
    }

    @Override
    public double crossEntropy(Buf x, Buf head, int vocab, int[] targets, double scale, Buf dx, Buf dhead,
                               int[] argmax) {
        return CrossEntropyOps.forwardBackward(d(x), x.rows(), x.cols(), d(head), vocab, targets, scale, d(dx),
                d(dhead), argmax);
    }

    @Override
    public double sumOfSquares(Buf g) {
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
    public void scale(Buf g, double s) {
        double[] v = d(g);
        Parallel.forRanges(v.length, 1 << 14, (from, to) -> {
            for (int i = from; i < to; i++) {
                v[i] *= s;
            }
        });
    }

    @Override
    public void adamw(Buf p, Buf g, Buf m, Buf v, double lr, double beta1, double beta2, double eps,
                      double weightDecay, long step) {
        double[] pv = d(p);
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
