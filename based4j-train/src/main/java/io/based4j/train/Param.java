package io.based4j.train;

import java.util.Arrays;

/**
 * One trained tensor: its state-dict name and shape, its values and its gradient (both held by the backend), and
 * whether AdamW decays it (BASED-SPEC section 6: no decay on biases, norms and embeddings).
 */
public record Param(String name, long[] shape, TrainBackend.Buf value, TrainBackend.Buf grad, boolean decay) {

    public long numel() {
        return (long) value.rows() * value.cols();
    }

    /** Whether a weight of this name is decayed: matrices and conv taps are, biases, norms and embeddings are not. */
    public static boolean decays(String name) {
        return !(name.endsWith(".bias") || name.endsWith("norm1.weight") || name.endsWith("norm2.weight")
                || name.equals("transformer.ln_f.weight") || name.contains("word_embeddings")
                || name.equals("lm_head.weight"));
    }

    @Override
    public String toString() {
        return name + Arrays.toString(shape);
    }
}
