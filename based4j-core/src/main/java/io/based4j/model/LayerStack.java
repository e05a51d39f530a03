package io.based4j.model;

import io.based4j.backend.Backend;
import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.Backend.MixerState;
import io.based4j.backend.Backend.Weight;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.TrainingBackend;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Function;

/**
 * The one definition of what a BASED model computes (BASED-SPEC section 2), written once for every use: the forward
 * walk of the layer stack, from the token embedding to the final norm, serves prefill, decode and training alike, and
 * the backward walk sits beside it. What differs between the uses lies outside: where the activations live
 * ({@link Activations}: a session's workspace or a training pass's kept buffers), whether the mixers continue
 * recurrent states (inference) or start fresh (training), and what follows the final norm (the head's logits, or the
 * fused loss).
 *
 * <pre>
 * r = E[ids]
 * for each layer:  r = r + mixer(rmsnorm1(r));  r = r + fc2(swiglu(fc1(rmsnorm2(r))))
 * x = rmsnorm_f(r)                               # then logits = x @ E_head^T, or the loss
 * </pre>
 */
public final class LayerStack {
    private final ModelConfig config;
    private final Weight embedding;
    private final Weight head;
    private final Weight finalNorm;
    private final List<LayerWeights> layers;
    private final Grads grads;

    /** A layer's weights; a mixer's are in {@link ModelWeights#mixerTensors} order (absent biases are null). */
    private record LayerWeights(MixerConfig mixer, Weight norm1, Weight norm2, Weight fc1, Weight fc2, Weight[] mix) {
    }

    /** The gradient buffers of a trained stack, in the same places as the weights. */
    private record Grads(Buffer embedding, Buffer head, Buffer finalNorm, List<LayerGrads> layers) {
    }

    private record LayerGrads(Buffer norm1, Buffer norm2, Buffer fc1, Buffer fc2, Buffer[] mix) {
    }

    /**
     * The stack over bound weights: {@code weight} gives each tensor's form on the backend. {@code grad}, for a
     * trained stack, gives each tensor's gradient buffer (null for inference).
     */
    public LayerStack(ModelWeights weights, Function<Tensor, Weight> weight, Function<Tensor, Buffer> grad) {
        this.config = weights.config();
        Function<Tensor, Weight> w = t -> t == null ? null : weight.apply(t);
        this.embedding = w.apply(weights.embedding());
        this.head = weights.head() == weights.embedding() ? embedding : w.apply(weights.head());
        this.finalNorm = w.apply(weights.finalNorm());
        List<LayerWeights> ls = new ArrayList<>();
        for (int i = 0; i < weights.layers().size(); i++) {
            ModelWeights.Layer l = weights.layers().get(i);
            Weight[] mix = Arrays.stream(ModelWeights.mixerTensors(l.mixer())).map(w).toArray(Weight[]::new);
            ls.add(new LayerWeights(config.layer(i), w.apply(l.norm1()), w.apply(l.norm2()), w.apply(l.fc1()),
                    w.apply(l.fc2()), mix));
        }
        this.layers = List.copyOf(ls);
        if (grad == null) {
            this.grads = null;
        } else {
            Function<Tensor, Buffer> g = t -> t == null ? null : grad.apply(t);
            List<LayerGrads> lg = new ArrayList<>();
            for (ModelWeights.Layer l : weights.layers()) {
                lg.add(new LayerGrads(g.apply(l.norm1()), g.apply(l.norm2()), g.apply(l.fc1()), g.apply(l.fc2()),
                        Arrays.stream(ModelWeights.mixerTensors(l.mixer())).map(g).toArray(Buffer[]::new)));
            }
            this.grads = new Grads(g.apply(weights.embedding()), g.apply(weights.head()), g.apply(weights.finalNorm()),
                    List.copyOf(lg));
        }
    }

    public ModelConfig config() {
        return config;
    }

    /** The output head (the embedding when tied). */
    public Weight head() {
        return head;
    }

    /** The head's gradient (the embedding's when tied); null for inference. */
    public Buffer headGrad() {
        return grads == null ? null : grads.head();
    }

    /** Receives the residual stream after each layer (for tests and inspection). */
    @FunctionalInterface
    public interface LayerObserver {
        void afterLayer(int layer, Buffer residual);
    }

    /**
     * Checks every token id against the vocabulary, naming the first outside it. The forward walk takes ids as they
     * are (a GPU backend cannot check them), so its callers check first.
     */
    public void checkTokens(int[] tokens) {
        int vocab = config.vocabSize();
        for (int i = 0; i < tokens.length; i++) {
            if (tokens[i] < 0 || tokens[i] >= vocab) {
                throw new IllegalArgumentException("token id " + tokens[i] + (tokens.length > 1 ? " at position " + i
                        : "") + " is outside the vocabulary [0, " + vocab + ")");
            }
        }
    }

    /**
     * The forward walk over the packed tokens of {@code batch}, into {@code acts}; returns the final norm's output.
     * {@code states} continues each layer's recurrent state (inference), or is null: a training pass, whose mixers
     * start fresh and whose ops keep what {@code acts} has room for.
     */
    public Buffer forward(Backend b, Activations acts, TokenBatch batch, int[] tokens, MixerState[] states,
                          LayerObserver observer) {
        double eps = config.normEps();
        b.embedding(embedding, tokens, acts.residual(0));
        // where residuals are kept, each branch's last product adds the stream as it writes the branch; where they
        // are summed in place, a branch is added into the stream by the next norm (addRmsNorm: one pass)
        boolean kept = acts.keepsResiduals();
        Buffer branch = null;
        for (int i = 0; i < layers.size(); i++) {
            LayerWeights l = layers.get(i);
            Activations.LayerBuffers lb = acts.layer(i, l.mixer());
            Buffer in = acts.residual(i);
            norm(b, in, branch, l.norm1(), eps, lb.normed1(), lb.rstd1());
            mix(b, l, lb, batch, states == null ? null : states[i], kept ? in : null);
            Buffer mid = kept ? lb.mixerOut() : in;
            branch = kept ? null : lb.mixerOut();
            if (l.fc1() != null) {
                norm(b, mid, branch, l.norm2(), eps, lb.normed2(), lb.rstd2());
                if (states != null) {
                    // inference keeps no product: the backend may take the SwiGLU in the product's kernel
                    b.matmulSwiglu(lb.normed2(), l.fc1(), lb.mlpIn(), lb.mlpGate());
                } else {
                    b.matmul(lb.normed2(), l.fc1(), null, lb.mlpIn());
                    b.swiglu(lb.mlpIn(), lb.mlpGate());
                }
                project(b, lb.mlpGate(), l.fc2(), null, kept ? mid : null, lb.mlpOut());
                branch = kept ? null : lb.mlpOut();
            }
            if (observer != null) {
                if (branch != null) {
                    b.addInPlace(acts.residual(i + 1), branch);
                    branch = null;
                }
                observer.afterLayer(i, acts.residual(i + 1));
            }
        }
        norm(b, acts.residual(layers.size()), branch, finalNorm, eps, acts.finalNormed(), acts.finalRstd());
        return acts.finalNormed();
    }

    /**
     * {@code out = rmsNorm(residual)}, after adding {@code branch} into the residual where it is not null (the end of
     * the residual branch before this norm, in one op with it where no rstd is kept).
     */
    private static void norm(Backend b, Buffer residual, Buffer branch, Weight w, double eps, Buffer out,
                             Buffer rstd) {
        if (branch == null) {
            b.rmsNorm(residual, w, eps, out, rstd);
        } else if (rstd == null) {
            b.addRmsNorm(residual, branch, w, eps, out);
        } else {
            b.addInPlace(residual, branch);
            b.rmsNorm(residual, w, eps, out, rstd);
        }
    }

    /** {@code out = x @ w^T (+ bias)}, plus {@code residual} where it is not null (the branch then holds the sum). */
    private static void project(Backend b, Buffer x, Weight w, Weight bias, Buffer residual, Buffer out) {
        if (residual == null) {
            b.matmul(x, w, bias, out);
        } else {
            b.matmulAdd(x, w, bias, residual, out);
        }
    }

    /** The mixer of layer l into {@code lb.mixerOut()}, plus {@code residual} where it is not null. */
    private void mix(Backend b, LayerWeights l, Activations.LayerBuffers lb, TokenBatch batch, MixerState state,
                     Buffer residual) {
        Weight[] w = l.mix();
        Buffer[] m = lb.mixer();
        Buffer x = lb.normed1();
        switch (l.mixer()) {
            case MixerConfig.BaseConv c -> {
                if (state != null && m[1] == null) {
                    // inference keeps no product: the backend may take the conv's step in the product's kernel
                    b.matmulBaseConv(c, x, w[0], w[1], m[0], w[2], batch, state, m[2]);
                } else {
                    b.matmul(x, w[0], w[1], m[0]);
                    b.baseConv(c, m[0], w[2], batch, state, m[2], m[1]);
                }
                project(b, m[2], w[3], w[4], residual, lb.mixerOut());
            }
            case MixerConfig.LinearAttention la -> {
                if (state != null) {
                    // inference: the backend may take the three products in one kernel
                    b.matmulEach(x, new Weight[] {w[0], w[1], w[2]}, new Buffer[] {m[0], m[1], m[2]});
                } else {
                    b.matmul(x, w[0], null, m[0]);
                    b.matmul(x, w[1], null, m[1]);
                    b.matmul(x, w[2], null, m[2]);
                }
                b.linearAttention(la, m[0], m[1], m[2], batch, state, m[3]);
                project(b, m[3], w[3], null, residual, lb.mixerOut());
            }
            case MixerConfig.Attention a -> {
                b.matmul(x, w[0], w[1], m[0]);
                b.attention(a, m[0], batch, state, m[1], m[2]);
                project(b, m[1], w[2], w[3], residual, lb.mixerOut());
            }
        }
    }

    /**
     * The backward walk of a training pass that {@link #forward} ran into {@code acts} (with states null): from the
     * gradient of the loss with respect to the final norm's output, {@link TrainingActivations#dFinal()}, adds every
     * weight's gradient into the buffers this stack was built with.
     */
    public void backward(TrainingBackend b, TrainingActivations acts, TokenBatch batch, int[] tokens) {
        if (grads == null) {
            throw new IllegalStateException("this layer stack was built for inference: it has no gradients");
        }
        Buffer dres = acts.dResidual();
        b.zero(dres);
        b.rmsNormBackward(acts.residual(layers.size()), finalNorm, acts.finalRstd(), acts.dFinal(), dres,
                grads.finalNorm());
        for (int i = layers.size() - 1; i >= 0; i--) {
            LayerWeights l = layers.get(i);
            LayerGrads g = grads.layers().get(i);
            Activations.LayerBuffers lb = acts.layer(i, l.mixer());
            if (l.fc1() != null) {
                // residual(i+1) = mid + fc2(swiglu(fc1(norm2(mid)))), with mid = lb.mixerOut()
                b.zero(acts.dGate());
                b.matmulBackward(lb.mlpGate(), l.fc2(), dres, acts.dGate(), g.fc2(), null);
                b.zero(acts.dMlpIn());
                b.swigluBackward(lb.mlpIn(), acts.dGate(), acts.dMlpIn());
                b.zero(acts.dNormed());
                b.matmulBackward(lb.normed2(), l.fc1(), acts.dMlpIn(), acts.dNormed(), g.fc1(), null);
                b.rmsNormBackward(lb.mixerOut(), l.norm2(), lb.rstd2(), acts.dNormed(), dres, g.norm2());
            }
            // mid = residual(i) + mixer(norm1(residual(i))); dres is now d(mid)
            b.zero(acts.dNormed());
            mixBackward(b, l, g, lb, acts.dMixer(l.mixer()), batch, dres, acts.dNormed());
            b.rmsNormBackward(acts.residual(i), l.norm1(), lb.rstd1(), acts.dNormed(), dres, g.norm1());
        }
        b.embeddingBackward(tokens, dres, grads.embedding());
    }

    private static void mixBackward(TrainingBackend b, LayerWeights l, LayerGrads g, Activations.LayerBuffers lb,
                                    Buffer[] dm, TokenBatch batch, Buffer dout, Buffer dIn) {
        for (Buffer d : dm) {
            b.zero(d);
        }
        Weight[] w = l.mix();
        Buffer[] gw = g.mix();
        Buffer[] m = lb.mixer();
        Buffer x = lb.normed1();
        switch (l.mixer()) {
            case MixerConfig.BaseConv c -> {
                b.matmulBackward(m[2], w[3], dout, dm[2], gw[3], gw[4]);
                b.baseConvBackward(c, batch, m[0], w[2], m[1], dm[2], dm[0], gw[2]);
                b.matmulBackward(x, w[0], dm[0], dIn, gw[0], gw[1]);
            }
            case MixerConfig.LinearAttention la -> {
                b.matmulBackward(m[3], w[3], dout, dm[3], gw[3], null);
                b.linearAttentionBackward(la, batch, m[0], m[1], m[2], dm[3], dm[0], dm[1], dm[2]);
                b.matmulBackward(x, w[0], dm[0], dIn, gw[0], null);
                b.matmulBackward(x, w[1], dm[1], dIn, gw[1], null);
                b.matmulBackward(x, w[2], dm[2], dIn, gw[2], null);
            }
            case MixerConfig.Attention a -> {
                b.matmulBackward(m[1], w[2], dout, dm[1], gw[2], gw[3]);
                b.attentionBackward(a, batch, m[0], m[1], m[2], dm[1], dm[0]);
                b.matmulBackward(x, w[0], dm[0], dIn, gw[0], gw[1]);
            }
        }
    }
}
