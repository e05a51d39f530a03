package io.based4j.model;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.TrainingBackend;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.memory.Sizes;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * The activations of a training pass over {@code batch x seqLen} tokens: every layer's own buffers, kept from the
 * forward for the backward (see {@link TrainingBackend} for what each op keeps), and the gradient scratch the
 * backward walk reuses from layer to layer.
 */
public final class TrainingActivations implements Activations {
    private final ModelConfig config;
    private final int rows;
    private final Buffer[] residuals;
    private final LayerBuffers[] layers;
    private final Buffer finalNormed;
    private final Buffer finalRstd;
    private final Buffer dFinal;
    private final Buffer dResidual;
    private final Buffer dNormed;
    private final Buffer dGate;
    private final Buffer dMlpIn;
    private final Map<MixerConfig, Buffer[]> dMixer = new HashMap<>();

    /** Makes the buffers of a pass (or, for the plans below, only counts them). */
    @FunctionalInterface
    public interface Allocator {
        Buffer allocate(int rows, int cols);
    }

    /** The buffers of a {@code batch x seqLen} pass on {@code backend}. */
    public TrainingActivations(TrainingBackend backend, ModelConfig config, int batch, int seqLen) {
        this(config, Math.multiplyExact(batch, seqLen), backend::allocate);
    }

    private TrainingActivations(ModelConfig config, int rows, Allocator backend) {
        this.config = config;
        this.rows = rows;
        int d = config.dModel();
        int nl = config.nLayer();
        boolean mlp = config.hasMlp();
        int h = config.mlpHidden();
        residuals = new Buffer[nl + 1];
        residuals[0] = backend.allocate(rows, d);
        layers = new LayerBuffers[nl];
        for (int i = 0; i < nl; i++) {
            MixerConfig mc = config.layer(i);
            Buffer[] mixer = Arrays.stream(mixerWidths(mc, d)).mapToObj(w -> backend.allocate(rows, w))
                    .toArray(Buffer[]::new);
            Buffer mixerOut = backend.allocate(rows, d);
            Buffer mlpOut = mlp ? backend.allocate(rows, d) : null;
            residuals[i + 1] = mlp ? mlpOut : mixerOut;
            layers[i] = new LayerBuffers(backend.allocate(rows, d), backend.allocate(rows, 1), mixer, mixerOut,
                    mlp ? backend.allocate(rows, d) : null, mlp ? backend.allocate(rows, 1) : null,
                    mlp ? backend.allocate(rows, 2 * h) : null, mlp ? backend.allocate(rows, h) : null, mlpOut);
            dMixer.computeIfAbsent(mc, k -> Arrays.stream(mixerWidths(mc, d)).mapToObj(w -> backend.allocate(rows, w))
                    .toArray(Buffer[]::new));
        }
        finalNormed = backend.allocate(rows, d);
        finalRstd = backend.allocate(rows, 1);
        dFinal = backend.allocate(rows, d);
        dResidual = backend.allocate(rows, d);
        dNormed = backend.allocate(rows, d);
        dGate = mlp ? backend.allocate(rows, h) : null;
        dMlpIn = mlp ? backend.allocate(rows, 2 * h) : null;
    }

    /**
     * Values of everything a pass over {@code tokens} tokens keeps for its backward, with the gradient scratch of the
     * backward: what the constructor allocates (counted by the same code, without allocating).
     */
    public static long values(ModelConfig config, int tokens) {
        long[] total = {0};
        new TrainingActivations(config, tokens, (r, c) -> {
            total[0] = Sizes.plus(total[0], Sizes.times(r, c));
            return null;
        });
        return total[0];
    }

    /** The widest buffer (values per token) a pass allocates: every one is {@code tokens x width}. */
    public static int widest(ModelConfig config) {
        int[] widest = {0};
        new TrainingActivations(config, 1, (r, c) -> {
            widest[0] = Math.max(widest[0], c);
            return null;
        });
        return widest[0];
    }

    /**
     * Widths of a mixer's buffers for one token, in {@link Activations.LayerBuffers#mixer()} order (the gradient
     * scratch has the same shapes).
     */
    public static int[] mixerWidths(MixerConfig mc, int d) {
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

    /** Tokens of the pass. */
    public int rows() {
        return rows;
    }

    public ModelConfig config() {
        return config;
    }

    @Override
    public Buffer residual(int layer) {
        return residuals[layer];
    }

    @Override
    public boolean keepsResiduals() {
        return true;
    }

    @Override
    public LayerBuffers layer(int layer, MixerConfig mixer) {
        return layers[layer];
    }

    @Override
    public Buffer finalNormed() {
        return finalNormed;
    }

    @Override
    public Buffer finalRstd() {
        return finalRstd;
    }

    /** The loss's gradient with respect to the final norm's output: the loss writes it, the backward starts there. */
    public Buffer dFinal() {
        return dFinal;
    }

    /** Gradient scratch: the residual stream's gradient, carried down the layers. */
    Buffer dResidual() {
        return dResidual;
    }

    /** Gradient scratch: a norm's output. */
    Buffer dNormed() {
        return dNormed;
    }

    /** Gradient scratch: the SwiGLU output (fc2's input). */
    Buffer dGate() {
        return dGate;
    }

    /** Gradient scratch: fc1's output. */
    Buffer dMlpIn() {
        return dMlpIn;
    }

    /** Gradient scratch of a mixer's buffers (shared by the layers with the same mixer configuration). */
    Buffer[] dMixer(MixerConfig mixer) {
        return dMixer.get(mixer);
    }
}
