package io.based4j.train;

import java.util.Arrays;

/**
 * One trained tensor: its state-dict name and shape, its values and its gradient (both held by the backend), and
 * whether AdamW decays it, as its {@link io.based4j.model.WeightSpec.Kind} says (BASED-SPEC section 6: no decay on
 * biases, norms and embeddings).
 */
public record Param(String name, long[] shape, TrainBackend.Buf value, TrainBackend.Buf grad, boolean decay) {

    public long numel() {
        return (long) value.rows() * value.cols();
    }

    @Override
    public String toString() {
        return name + Arrays.toString(shape);
    }
}
