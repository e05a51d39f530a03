package io.based4j.train;

import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.memory.MemoryNeed;
import io.based4j.memory.NotEnoughMemoryException;
import io.based4j.memory.Sizes;
import io.based4j.model.ModelWeights;
import io.based4j.model.WeightSpec;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import io.based4j.train.TrainBackend.Buf;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A BASED (or attention baseline) model being trained: its parameters with their gradients, and one training
 * forward and backward pass written out layer by layer (BASED-SPEC section 2), with the ops run by a
 * {@link TrainBackend}.
 *
 * <p>What the forward keeps for the backward, and why:
 * <ul>
 *   <li>every layer's residual input and the norm outputs with their per-row rstd: the norms and every projection's
 *       weight gradient need their inputs, and recomputing a norm costs as much code as it saves memory;</li>
 *   <li>BaseConv: the projection u, the conv output c and the gated output: all small (a few d per token) and
 *       needed by the gate's and out_proj's gradients;</li>
 *   <li>linear attention: q, k, v and the output only; the chunk states (F x dh per chunk) are recomputed by the
 *       backward, so memory stays linear in the sequence length with no L x L matrix;</li>
 *   <li>attention: qkv, the output and one log-sum-exp per (token, head); the probabilities are recomputed in the
 *       backward (flash-attention style), never stored as L x L;</li>
 *   <li>MLP: fc1's output and the SwiGLU output (fc2's input);</li>
 *   <li>the head: nothing. Logits are computed row block by row block inside the fused cross-entropy, and only for
 *       positions whose target is not ignored.</li>
 * </ul>
 */
public final class TrainModel {
    private final ModelConfig config;
    private final TrainBackend backend;
    private final Map<String, Param> params = new LinkedHashMap<>();
    private final Param embedding;
    private final Param head;
    private final Param finalNorm;
    private final List<LayerParams> layers = new ArrayList<>();
    private final Map<Long, Activations> activations = new HashMap<>();

    private record LayerParams(MixerConfig mixer, Param norm1, Param norm2, Param fc1, Param fc2, Param[] mix) {
    }

    /**
     * Binds a state dict (checked and resolved as inference loads it) to the backend. Values may be any floating
     * dtype; float64 tensors keep every bit (used when resuming from optimizer state). Each parameter's name, shape
     * and decay group come from its {@link WeightSpec}.
     */
    public TrainModel(ModelConfig config, Map<String, Tensor> stateDict, TrainBackend backend, String source) {
        ModelWeights bound = ModelWeights.bind(config, stateDict, source);
        this.config = bound.config();
        this.backend = backend;
        Map<Tensor, Param> byTensor = new IdentityHashMap<>();
        for (ModelWeights.Bound b : bound.named()) {
            WeightSpec w = b.spec();
            long[] shape = w.shape();
            int rows = shape.length == 1 ? 1 : (int) shape[0];
            int cols = (int) (Tensor.numel(shape) / rows);
            Param p = new Param(w.name(), shape, backend.load(b.tensor(), rows, cols), backend.allocate(rows, cols),
                    w.kind().decays());
            params.put(w.name(), p);
            byTensor.put(b.tensor(), p);
        }
        java.util.function.Function<Tensor, Param> param = t -> t == null ? null : byTensor.get(t);
        embedding = param.apply(bound.embedding());
        head = param.apply(bound.head());
        finalNorm = param.apply(bound.finalNorm());
        for (int i = 0; i < this.config.nLayer(); i++) {
            ModelWeights.Layer l = bound.layers().get(i);
            Param[] mix = java.util.Arrays.stream(ModelWeights.mixerTensors(l.mixer())).map(param).toArray(Param[]::new);
            layers.add(new LayerParams(this.config.layer(i), param.apply(l.norm1()), param.apply(l.norm2()),
                    param.apply(l.fc1()), param.apply(l.fc2()), mix));
        }
    }

    public ModelConfig config() {
        return config;
    }

    public TrainBackend backend() {
        return backend;
    }

    /** Every parameter, in state-dict order (the tied head is the embedding and appears once). */
    public Collection<Param> params() {
        return Collections.unmodifiableCollection(params.values());
    }

    public Param param(String name) {
        return params.get(name);
    }

    public long parameterCount() {
        long n = 0;
        for (Param p : params.values()) {
            n += p.numel();
        }
        return n;
    }

    public void zeroGrad() {
        for (Param p : params.values()) {
            backend.zero(p.grad());
        }
    }

    /**
     * The weights as float32 tensors under their state-dict names (what {@code generate} loads), held outside the heap
     * (freed when the tensors are no longer reachable).
     */
    public Map<String, Tensor> floatStateDict() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (Param p : params.values()) {
            float[] values = backend.toFloats(p.value());
            MemorySegment seg = Arena.ofAuto().allocate((long) values.length * Float.BYTES, Float.BYTES);
            MemorySegment.copy(values, 0, seg, Tensor.F32_LE, 0, values.length);
            out.put(p.name(), new Tensor(DType.F32, p.shape(), seg));
        }
        return out;
    }

    /** The weights exactly, in the backend's storage type (for resuming). */
    public Map<String, Tensor> exactStateDict() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (Param p : params.values()) {
            out.put(p.name(), backend.save(p.value(), p.shape()));
        }
        return out;
    }

    // ---------------------------------------------------------------- forward and backward

    /** What one pass saw: the summed loss over counted targets, how many were counted, and how many were argmax-right. */
    public record Pass(double lossSum, int counted, int correct) {
        public double meanLoss() {
            return counted == 0 ? 0 : lossSum / counted;
        }
    }

    /**
     * Runs the model over {@code batch} sequences of {@code seqLen} tokens and scores the next-token targets
     * ({@link TrainBackend#IGNORE_INDEX} to skip a position). With {@code backward}, adds {@code lossScale} times the
     * gradient of the summed loss into every parameter's gradient.
     */
    public Pass forward(int[] ids, int[] targets, int batch, int seqLen, boolean backward, double lossScale) {
        if (batch < 1 || seqLen < 1) {
            throw new IllegalArgumentException("a pass needs at least one sequence of one token, got " + batch + " x "
                    + seqLen);
        }
        int n = Sizes.arrayLength(batch, seqLen, "tokens of a pass (batch x seqLen)");
        if (ids.length != n || targets.length != n) {
            throw new IllegalArgumentException("ids (" + ids.length + ") and targets (" + targets.length
                    + ") must hold batch x seqLen = " + n + " tokens");
        }
        int vocab = config.vocabSize();
        for (int i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= config.paddedVocabSize()) {
                throw new IllegalArgumentException("token id " + ids[i] + " at position " + i
                        + " is outside the vocabulary [0, " + config.paddedVocabSize() + ")");
            }
        }
        Activations a = activations(batch, seqLen);
        TrainBackend b = backend;
        double eps = config.normEps();

        b.embedding(embedding.value(), ids, a.res[0]);
        for (int l = 0; l < layers.size(); l++) {
            LayerParams lp = layers.get(l);
            LayerActs la = a.layers[l];
            b.rmsNorm(a.res[l], lp.norm1.value(), eps, la.n1, la.rstd1);
            Buf mixOut = config.hasMlp() ? la.mid : a.res[l + 1];
            mixerForward(lp, la, batch, seqLen, mixOut);
            b.add(mixOut, a.res[l]);
            if (config.hasMlp()) {
                b.rmsNorm(la.mid, lp.norm2.value(), eps, la.n2, la.rstd2);
                b.matmul(la.n2, lp.fc1.value(), null, la.fc1Out);
                b.swiglu(la.fc1Out, la.act);
                b.matmul(la.act, lp.fc2.value(), null, a.res[l + 1]);
                b.add(a.res[l + 1], la.mid);
            }
        }
        Buf last = a.res[layers.size()];
        b.rmsNorm(last, finalNorm.value(), eps, a.nf, a.rstdf);
        int[] argmax = new int[n];
        if (backward) {
            b.zero(a.dres);
        }
        double loss = b.crossEntropy(a.nf, head.value(), vocab, targets, lossScale, backward ? a.dres : null,
                backward ? head.grad() : null, argmax);
        int counted = 0;
        int correct = 0;
        for (int i = 0; i < n; i++) {
            if (targets[i] != TrainBackend.IGNORE_INDEX) {
                counted++;
                if (argmax[i] == targets[i]) {
                    correct++;
                }
            }
        }
        if (backward) {
            backwardPass(a, ids, batch, seqLen);
        }
        return new Pass(loss, counted, correct);
    }

    private void mixerForward(LayerParams lp, LayerActs la, int batch, int seqLen, Buf out) {
        TrainBackend b = backend;
        Param[] w = lp.mix;
        switch (lp.mixer) {
            case MixerConfig.BaseConv c -> {
                b.matmul(la.n1, w[0].value(), value(w[1]), la.m[0]);
                b.baseConv(batch, seqLen, la.m[0], w[2].value(), c.kernel(), la.m[1], la.m[2]);
                b.matmul(la.m[2], w[3].value(), value(w[4]), out);
            }
            case MixerConfig.LinearAttention l -> {
                b.matmul(la.n1, w[0].value(), null, la.m[0]);
                b.matmul(la.n1, w[1].value(), null, la.m[1]);
                b.matmul(la.n1, w[2].value(), null, la.m[2]);
                b.linearAttention(l, batch, seqLen, la.m[0], la.m[1], la.m[2], la.m[3]);
                b.matmul(la.m[3], w[3].value(), null, out);
            }
            case MixerConfig.Attention at -> {
                b.matmul(la.n1, w[0].value(), value(w[1]), la.m[0]);
                b.attention(at, batch, seqLen, la.m[0], la.m[1], la.m[2]);
                b.matmul(la.m[1], w[2].value(), value(w[3]), out);
            }
        }
    }

    private void backwardPass(Activations a, int[] ids, int batch, int seqLen) {
        TrainBackend b = backend;
        // a.dres holds d(loss)/d(final norm output); turn it into d/d(last residual)
        Buf dnf = a.dres;
        Buf dres = a.dres2;
        b.zero(dres);
        b.rmsNormBackward(a.res[layers.size()], finalNorm.value(), a.rstdf, dnf, dres, finalNorm.grad());
        for (int l = layers.size() - 1; l >= 0; l--) {
            LayerParams lp = layers.get(l);
            LayerActs la = a.layers[l];
            if (config.hasMlp()) {
                // res[l+1] = mid + fc2(swiglu(fc1(norm2(mid))))
                b.zero(a.dAct);
                b.matmulBackward(la.act, lp.fc2.value(), dres, a.dAct, lp.fc2.grad(), null);
                b.zero(a.dFc1);
                b.swigluBackward(la.fc1Out, a.dAct, a.dFc1);
                b.zero(a.dNorm);
                b.matmulBackward(la.n2, lp.fc1.value(), a.dFc1, a.dNorm, lp.fc1.grad(), null);
                b.rmsNormBackward(la.mid, lp.norm2.value(), la.rstd2, a.dNorm, dres, lp.norm2.grad());
            }
            // mid = res[l] + mixer(norm1(res[l])); dres is now d(mid)
            b.zero(a.dNorm);
            mixerBackward(lp, la, a, batch, seqLen, dres, a.dNorm);
            b.rmsNormBackward(a.res[l], lp.norm1.value(), la.rstd1, a.dNorm, dres, lp.norm1.grad());
        }
        b.embeddingBackward(ids, dres, embedding.grad());
    }

    private void mixerBackward(LayerParams lp, LayerActs la, Activations a, int batch, int seqLen, Buf dout,
                               Buf dIn) {
        TrainBackend b = backend;
        Param[] w = lp.mix;
        Buf[] dm = a.dMix.get(lp.mixer);
        for (Buf buf : dm) {
            b.zero(buf);
        }
        switch (lp.mixer) {
            case MixerConfig.BaseConv c -> {
                b.matmulBackward(la.m[2], w[3].value(), dout, dm[2], w[3].grad(), grad(w[4]));
                b.baseConvBackward(batch, seqLen, la.m[0], w[2].value(), c.kernel(), la.m[1], dm[2], dm[0],
                        w[2].grad());
                b.matmulBackward(la.n1, w[0].value(), dm[0], dIn, w[0].grad(), grad(w[1]));
            }
            case MixerConfig.LinearAttention l -> {
                b.matmulBackward(la.m[3], w[3].value(), dout, dm[3], w[3].grad(), null);
                b.linearAttentionBackward(l, batch, seqLen, la.m[0], la.m[1], la.m[2], dm[3], dm[0], dm[1], dm[2]);
                b.matmulBackward(la.n1, w[0].value(), dm[0], dIn, w[0].grad(), null);
                b.matmulBackward(la.n1, w[1].value(), dm[1], dIn, w[1].grad(), null);
                b.matmulBackward(la.n1, w[2].value(), dm[2], dIn, w[2].grad(), null);
            }
            case MixerConfig.Attention at -> {
                b.matmulBackward(la.m[1], w[2].value(), dout, dm[1], w[2].grad(), grad(w[3]));
                b.attentionBackward(at, batch, seqLen, la.m[0], la.m[1], la.m[2], dm[1], dm[0]);
                b.matmulBackward(la.n1, w[0].value(), dm[0], dIn, w[0].grad(), grad(w[1]));
            }
        }
    }

    private static Buf value(Param p) {
        return p == null ? null : p.value();
    }

    private static Buf grad(Param p) {
        return p == null ? null : p.grad();
    }

    // ---------------------------------------------------------------- activations

    /**
     * The activations of a {@code batch x seqLen} pass: kept per shape, so passes of shapes seen before allocate
     * nothing. A new shape is checked against the backend's memory first; when it does not fit beside the shapes kept
     * so far, they are dropped and it is checked again, alone.
     */
    private Activations activations(int batch, int seqLen) {
        long key = ((long) batch << 32) | seqLen;
        Activations a = activations.get(key);
        if (a != null) {
            return a;
        }
        int n = batch * seqLen;
        long bytes = Sizes.times(activationValues(config, n), backend.valueBytes());
        MemoryNeed need = MemoryNeed.heap(String.format(Locale.ROOT, "the activations of a pass of %,d x %,d tokens",
                batch, seqLen), 0).withHint("lower the batch size or the sequence length");
        try {
            backend.checkFits(bytes, need);
        } catch (NotEnoughMemoryException e) {
            if (activations.isEmpty()) {
                throw e;
            }
            activations.clear();
            backend.checkFits(bytes, need);
        }
        a = new Activations(config, n, backend::allocate);
        activations.put(key, a);
        return a;
    }

    /**
     * Values of everything a pass over {@code tokens} tokens keeps for its backward, with the gradient scratch of the
     * backward: what {@link TrainModel} allocates per batch shape (computed by the same code, without allocating).
     */
    public static long activationValues(ModelConfig config, int tokens) {
        long[] total = {0};
        new Activations(config, tokens, (rows, cols) -> {
            total[0] = Sizes.plus(total[0], Sizes.times(rows, cols));
            return null;
        });
        return total[0];
    }

    /** The widest activation (values per token) a pass keeps: every activation buffer is {@code tokens x width}. */
    public static int widestActivation(ModelConfig config) {
        int[] widest = {0};
        new Activations(config, 1, (rows, cols) -> {
            widest[0] = Math.max(widest[0], cols);
            return null;
        });
        return widest[0];
    }

    /** Makes the buffers of a pass (or, for the plans above, only counts them). */
    @FunctionalInterface
    private interface Allocator {
        Buf allocate(int rows, int cols);
    }

    /** Widths of a mixer's saved activations for N tokens (the gradient scratch has the same shapes). */
    private static int[] mixerWidths(ModelConfig config, MixerConfig mc) {
        int d = config.dModel();
        return switch (mc) {
            // u [N, 2 inner], c [N, inner], gated [N, inner]
            case MixerConfig.BaseConv c -> new int[] {2 * c.innerWidth(), c.innerWidth(), c.innerWidth()};
            // q, k [N, H f], v [N, d], y [N, d]
            case MixerConfig.LinearAttention l -> new int[] {l.numHeads() * l.featureDim(),
                    l.numHeads() * l.featureDim(), d, d};
            // qkv [N, 3d], y [N, d], lse [N, heads]
            case MixerConfig.Attention at -> new int[] {3 * d, d, at.numHeads()};
        };
    }

    private static Buf[] allocateAll(Allocator alloc, int n, int[] widths) {
        Buf[] out = new Buf[widths.length];
        for (int i = 0; i < widths.length; i++) {
            out[i] = alloc.allocate(n, widths[i]);
        }
        return out;
    }

    private static final class LayerActs {
        final Buf n1;
        final Buf rstd1;
        final Buf[] m;
        final Buf mid;
        final Buf n2;
        final Buf rstd2;
        final Buf fc1Out;
        final Buf act;

        LayerActs(ModelConfig config, int n, MixerConfig mc, Allocator alloc) {
            int d = config.dModel();
            n1 = alloc.allocate(n, d);
            rstd1 = alloc.allocate(n, 1);
            m = allocateAll(alloc, n, mixerWidths(config, mc));
            boolean mlp = config.hasMlp();
            mid = mlp ? alloc.allocate(n, d) : null;
            n2 = mlp ? alloc.allocate(n, d) : null;
            rstd2 = mlp ? alloc.allocate(n, 1) : null;
            fc1Out = mlp ? alloc.allocate(n, 2 * config.mlpHidden()) : null;
            act = mlp ? alloc.allocate(n, config.mlpHidden()) : null;
        }
    }

    private static final class Activations {
        final Buf[] res;
        final LayerActs[] layers;
        final Buf nf;
        final Buf rstdf;
        final Buf dres;
        final Buf dres2;
        final Buf dNorm;
        final Buf dAct;
        final Buf dFc1;
        final Map<MixerConfig, Buf[]> dMix = new HashMap<>();

        Activations(ModelConfig config, int n, Allocator alloc) {
            int d = config.dModel();
            int nl = config.nLayer();
            res = new Buf[nl + 1];
            for (int i = 0; i <= nl; i++) {
                res[i] = alloc.allocate(n, d);
            }
            layers = new LayerActs[nl];
            for (int i = 0; i < nl; i++) {
                MixerConfig mc = config.layer(i);
                layers[i] = new LayerActs(config, n, mc, alloc);
                if (!dMix.containsKey(mc)) {
                    dMix.put(mc, allocateAll(alloc, n, mixerWidths(config, mc)));
                }
            }
            nf = alloc.allocate(n, d);
            rstdf = alloc.allocate(n, 1);
            dres = alloc.allocate(n, d);
            dres2 = alloc.allocate(n, d);
            dNorm = alloc.allocate(n, d);
            boolean mlp = config.hasMlp();
            dAct = mlp ? alloc.allocate(n, config.mlpHidden()) : null;
            dFc1 = mlp ? alloc.allocate(n, 2 * config.mlpHidden()) : null;
        }
    }

    /** Drops the cached activations (of every batch shape seen so far). */
    public void releaseActivations() {
        activations.clear();
    }
}
