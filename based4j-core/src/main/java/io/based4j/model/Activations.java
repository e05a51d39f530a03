package io.based4j.model;

import io.based4j.backend.Backend.Buffer;
import io.based4j.config.MixerConfig;

/**
 * Where one forward pass of a {@link LayerStack} writes its activations. Inference reuses a few buffers of a
 * session's workspace for every layer and keeps nothing; a training pass ({@link TrainingActivations}) gives every
 * layer buffers of its own and the places for what the forward keeps for the backward.
 */
public interface Activations {

    /** The residual stream entering layer {@code layer} ({@code layer == nLayer}: leaving the last one). */
    Buffer residual(int layer);

    /**
     * Whether each layer's residual is a buffer of its own (a training pass, whose backward needs them all) rather
     * than one buffer summed into in place.
     */
    boolean keepsResiduals();

    /** The buffers layer {@code layer} (whose mixer is {@code mixer}) writes. */
    LayerBuffers layer(int layer, MixerConfig mixer);

    /** The final norm's output (the head's input). */
    Buffer finalNormed();

    /** The final norm's rstd, or null when nothing is kept. */
    Buffer finalRstd();

    /**
     * The buffers one layer writes. {@code mixer} holds the mixer's own, by kind: BaseConv {@code u [N, 2 inner]},
     * {@code c [N, inner]} (the conv output, kept for training; null in inference), the gated output
     * {@code [N, inner]}; linear attention q, k {@code [N, H f]}, v, y {@code [N, d]}; attention {@code qkv [N, 3d]},
     * {@code y [N, d]}, {@code lse [N, heads]} (kept for training; null in inference). The rstd buffers are null in
     * inference. Where residuals are kept, {@code mixerOut} is the residual after the mixer when the layer has an MLP
     * (and the next layer's residual when it has none), and {@code mlpOut} the next layer's residual.
     */
    record LayerBuffers(Buffer normed1, Buffer rstd1, Buffer[] mixer, Buffer mixerOut, Buffer normed2, Buffer rstd2,
                        Buffer mlpIn, Buffer mlpGate, Buffer mlpOut) {
    }
}
