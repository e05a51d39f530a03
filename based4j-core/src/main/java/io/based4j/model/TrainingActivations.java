package io.based4j.model;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.TrainingBackend;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.memory.Sizes;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
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
    /** The buffers allocated for this pass (none for a plan that only counts). */
    private List<Buffer> held = List.of();

    /** Makes the buffers of a pass (or, for the plans below, only counts them). */
    @FunctionalInterface
    public interface Allocator {
        /** A {@code rows x cols} buffer, float32 even where the backend computes in a narrower type when asked. */
        Buffer allocate(int rows, int cols, boolean f32);
    }

    /**
     * The buffers of a {@code batch x seqLen} pass on {@code backend}. The residual stream and its gradient, the
     * norms' rstd and attention's log-sum-exp are float32 ({@link TrainingBackend#allocateF32}); the rest is in the
     * backend's compute type.
     */
    public TrainingActivations(TrainingBackend backend, ModelConfig config, int batch, int seqLen) {
        this(config, Math.multiplyExact(batch, seqLen), new ArrayList<>(), backend);
    }

    private TrainingActivations(ModelConfig config, int rows, List<Buffer> held, TrainingBackend backend) {
        this(config, rows, (r, c, f32) -> {
            Buffer b = f32 ? backend.allocateF32(r, c) : backend.allocate(r, c);
            held.add(b);
            return b;
        });
        this.held = held;
    }

    /**
     * The activations of a pass over {@code rows} tokens, at most this pass's, in the first rows of this pass's
     * buffers ({@link io.based4j.backend.Backend#view}): they share this pass's memory, so only one of the two may be
     * in use at a time (passes of one model run one after the other), and they hold nothing of their own.
     *
     * @throws IllegalArgumentException when {@code rows} exceeds this pass's tokens or these activations are released
     */
    public TrainingActivations rowsOf(TrainingBackend backend, int rows) {
        if (rows < 1 || rows > this.rows) {
            throw new IllegalArgumentException("activations of " + rows + " tokens do not fit in those of "
                    + this.rows);
        }
        if (held.isEmpty()) {
            throw new IllegalArgumentException("these activations hold no buffers (released, or a plan)");
        }
        Iterator<Buffer> owned = held.iterator();
        // the constructor allocates in one fixed order: the same walk hands out this pass's buffers in that order
        return new TrainingActivations(config, rows, (r, c, f32) -> backend.view(owned.next(), r));
    }

    /** Gives every buffer of this pass back to {@code backend} (which made them); the activations are unusable after. */
    public void release(TrainingBackend backend) {
        for (Buffer b : held) {
            backend.release(b);
        }
        held.clear();
    }

    private TrainingActivations(ModelConfig config, int rows, Allocator alloc) {
        this.config = config;
        this.rows = rows;
        int d = config.dModel();
        int nl = config.nLayer();
        boolean mlp = config.hasMlp();
        int h = config.mlpHidden();
        residuals = new Buffer[nl + 1];
        residuals[0] = alloc.allocate(rows, d, true);
        layers = new LayerBuffers[nl];
        for (int i = 0; i < nl; i++) {
            MixerConfig mc = config.layer(i);
            Buffer mixerOut = alloc.allocate(rows, d, true);
            Buffer mlpOut = mlp ? alloc.allocate(rows, d, true) : null;
            residuals[i + 1] = mlp ? mlpOut : mixerOut;
            layers[i] = new LayerBuffers(alloc.allocate(rows, d, false), alloc.allocate(rows, 1, true),
                    mixerBuffers(alloc, rows, mc, d), mixerOut,
                    mlp ? alloc.allocate(rows, d, false) : null, mlp ? alloc.allocate(rows, 1, true) : null,
                    mlp ? alloc.allocate(rows, 2 * h, false) : null, mlp ? alloc.allocate(rows, h, false) : null,
                    mlpOut);
            dMixer.computeIfAbsent(mc, k -> mixerBuffers(alloc, rows, mc, d));
        }
        finalNormed = alloc.allocate(rows, d, false);
        finalRstd = alloc.allocate(rows, 1, true);
        dFinal = alloc.allocate(rows, d, true);
        dResidual = alloc.allocate(rows, d, true);
        dNormed = alloc.allocate(rows, d, false);
        dGate = mlp ? alloc.allocate(rows, h, false) : null;
        dMlpIn = mlp ? alloc.allocate(rows, 2 * h, false) : null;
    }

    /** A mixer's buffers ({@link #mixerWidths}); attention's log-sum-exp (the third) in float32. */
    private static Buffer[] mixerBuffers(Allocator alloc, int rows, MixerConfig mc, int d) {
        int[] widths = mixerWidths(mc, d);
        Buffer[] out = new Buffer[widths.length];
        for (int i = 0; i < widths.length; i++) {
            out[i] = alloc.allocate(rows, widths[i], mc instanceof MixerConfig.Attention && i == 2);
        }
        return out;
    }

    /**
     * Values of everything a pass over {@code tokens} tokens keeps for its backward, with the gradient scratch of the
     * backward: what the constructor allocates (counted by the same code, without allocating).
     */
    public static long values(ModelConfig config, int tokens) {
        long[] total = {0};
        new TrainingActivations(config, tokens, (r, c, f32) -> {
            total[0] = Sizes.plus(total[0], Sizes.times(r, c));
            return null;
        });
        return total[0];
    }

    /** The widest buffer (values per token) a pass allocates: every one is {@code tokens x width}. */
    public static int widest(ModelConfig config) {
        int[] widest = {0};
        new TrainingActivations(config, 1, (r, c, f32) -> {
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
