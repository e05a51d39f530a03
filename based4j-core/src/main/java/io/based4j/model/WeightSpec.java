package io.based4j.model;

import java.util.Arrays;

/**
 * One weight tensor a configuration defines: its state-dict name, its shape, and what kind of weight it is. The kind
 * says everything else about it: how it is initialised (BASED-SPEC section 6) and whether AdamW decays it. The list
 * of these for a configuration ({@link ModelWeights#specs}) is the one place where weights' names, shapes, decay
 * groups and initialisation are declared; checkpoint binding, the initializer, the trainer and the memory planners
 * all read it.
 *
 * @param optional present only when the checkpoint holds it (an attention bias the configuration leaves open);
 *                 fresh models leave optional weights out
 */
public record WeightSpec(String name, long[] shape, Kind kind, boolean optional) {

    /** What a weight is, which fixes its initialisation and decay group. */
    public enum Kind {
        /** The token embedding (also the head when tied): N(0, 0.02), not decayed. */
        EMBEDDING,
        /** An untied output head: N(0, 0.02), not decayed. */
        HEAD,
        /** An RMSNorm weight: ones, not decayed. */
        NORM,
        /** A projection whose output is the input of the next op: N(0, 0.02), decayed. */
        MATRIX,
        /** A projection back into the residual stream ({@code out_proj}, {@code fc2}): N(0, 0.02 / sqrt(2 n_layer)), decayed. */
        RESIDUAL_MATRIX,
        /** A bias: zeros, not decayed. */
        BIAS,
        /** BaseConv's depthwise taps {@code [channels, 1, k]}: uniform in +-1/sqrt(k), decayed. */
        CONV_TAPS;

        /** Whether AdamW's weight decay applies (matrices and conv taps; not biases, norms and embeddings). */
        public boolean decays() {
            return this == MATRIX || this == RESIDUAL_MATRIX || this == CONV_TAPS;
        }
    }

    public WeightSpec {
        shape = shape.clone();
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    @Override
    public String toString() {
        return name + Arrays.toString(shape) + " " + kind + (optional ? " (optional)" : "");
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof WeightSpec w && name.equals(w.name) && Arrays.equals(shape, w.shape) && kind == w.kind
                && optional == w.optional;
    }

    @Override
    public int hashCode() {
        return name.hashCode() * 31 + Arrays.hashCode(shape);
    }
}
