package io.based4j.train;

import io.based4j.backend.Backend;
import io.based4j.backend.TrainingBackend;
import java.util.Arrays;

/**
 * One trained tensor: its state-dict name and shape, its values and its gradient (both held by the backend), and
 * whether AdamW decays it, as its {@link io.based4j.model.WeightSpec.Kind} says (BASED-SPEC section 6: no decay on
 * biases, norms and embeddings).
 */
public record Param(String name, long[] shape, TrainingBackend.Parameter value, Backend.Buffer grad, boolean decay) {

    public long numel() {
        return (long) value.rows() * value.cols();
    }

    @Override
    public String toString() {
        return name + Arrays.toString(shape);
    }
}
