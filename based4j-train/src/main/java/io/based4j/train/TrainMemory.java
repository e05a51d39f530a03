package io.based4j.train;

import io.based4j.backend.TrainingBackend;
import io.based4j.config.ModelConfig;
import io.based4j.memory.MemoryNeed;
import io.based4j.memory.Sizes;
import io.based4j.model.ModelWeights;
import io.based4j.model.WeightSpec;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The memory a training run takes, planned from the model's shape and the batch before the initializer or anything
 * else allocates, and checked against the training backend and the host: one line names what does not fit, the bytes
 * needed and free, and the setting to lower.
 *
 * <p>What is counted (each value in the backend's type, float64 on the CPU):
 * <ul>
 *   <li>the parameters with their gradients and the two AdamW moments;</li>
 *   <li>the activations a pass keeps for its backward and the backward's gradient scratch
 *       ({@link TrainModel#activationValues}), for the largest batch of tokens;</li>
 *   <li>the loss's scratch ({@link TrainingBackend#lossScratchValues}: the logits of one block of rows at a time);</li>
 *   <li>on the host: the token arrays of a batch, any data the run holds in memory (MQAR's examples), and, outside the
 *       heap, the float32 initial weights and the copies a checkpoint is written from.</li>
 * </ul>
 * Sizes are computed in 64 bits; a batch whose tokens or activations would not fit one Java array is refused as well.
 */
public final class TrainMemory {
    /**
     * How a run names its settings in messages.
     *
     * @param batch the setting of sequences per batch ("batch_size")
     * @param seqLen the setting of tokens per sequence ("seq_len")
     * @param model the settings of the model's size ("d_model, layers or vocab_size")
     */
    public record Settings(String batch, String seqLen, String model) {
        /** The names of a training settings file ({@link TrainConfig}). */
        public static final Settings TRAIN_CONFIG = new Settings("batch_size", "seq_len", "d_model, layers or vocab_size");
    }

    /** Copies of the parameters a checkpoint is written from: float32 weights, float64 weights and two moments. */
    private static final int CHECKPOINT_BYTES_PER_PARAMETER = Float.BYTES + 3 * Double.BYTES;

    private final ModelConfig config;
    private final TrainingBackend backend;
    private final Settings names;
    private final long parameters;
    private long extraHeap;
    private String extraHeapWhat = "";
    private String extraHeapHint = "";
    private boolean checkpoints;

    private TrainMemory(ModelConfig config, TrainingBackend backend, Settings names) {
        this.config = config;
        this.backend = backend;
        this.names = names;
        this.parameters = ModelWeights.parameterCount(config);
    }

    /** A plan for training {@code config} on {@code backend}, with {@code names} in its messages. */
    public static TrainMemory of(ModelConfig config, TrainingBackend backend, Settings names) {
        return new TrainMemory(config, backend, names);
    }

    /**
     * Checks a language-model run of {@link TrainConfig}: batches of {@code batch x seqLen} tokens, checkpoints
     * written along the way.
     */
    public static void check(ModelConfig config, int batch, int seqLen, TrainingBackend backend) {
        of(config, backend, Settings.TRAIN_CONFIG).withCheckpoints().check(batch, seqLen);
    }

    /** Counts the copies checkpoints are written from. */
    public TrainMemory withCheckpoints() {
        this.checkpoints = true;
        return this;
    }

    /**
     * Counts {@code bytes} of Java arrays the run holds besides ({@code what}: "examples"); {@code hint} says how to
     * hold fewer, for when they take more than the passes do.
     */
    public TrainMemory withHostData(long bytes, String what, String hint) {
        this.extraHeap = bytes;
        this.extraHeapWhat = what;
        this.extraHeapHint = hint;
        return this;
    }

    /**
     * Checks that passes of up to {@code batch} sequences of {@code seqLen} tokens fit: the model alone first (so a
     * model too large is named as such), then the whole step.
     *
     * @throws IllegalArgumentException when a batch's tokens or activations are more than one Java array holds
     * @throws io.based4j.memory.NotEnoughMemoryException when the memory is not free
     */
    public void check(long batch, long seqLen) {
        String lower = "lower " + names.batch() + " or " + names.seqLen();
        String batchText = String.format(Locale.ROOT, "%s %,d x %s %,d", names.batch(), batch, names.seqLen(), seqLen);
        checkArrays(batch, seqLen, batchText, lower);
        for (WeightSpec w : ModelWeights.freshSpecs(config)) {
            long[] s = w.shape();
            try {
                Sizes.arrayLength(s[0], Sizes.product(s) / Math.max(1, s[0]), "parameter " + w.name());
            } catch (IllegalArgumentException tooLong) {
                throw new IllegalArgumentException(tooLong.getMessage() + "; a smaller model is needed ("
                        + names.model() + ")");
            }
        }
        int tokens = (int) (batch * seqLen);
        int vb = backend.valueBytes();
        long model = Sizes.product(4, parameters, vb);
        long activations = Sizes.times(TrainModel.activationValues(config, tokens), vb);
        long loss = Sizes.times(backend.lossScratchValues(tokens, config.dModel(), config.vocabSize()), vb);
        // ids, targets, argmax and the windows they are cut from: four ints per token
        long tokenArrays = Sizes.product(4, Integer.BYTES, batch, seqLen + 1);
        long initial = Sizes.times(parameters, Float.BYTES);
        long staging = checkpoints ? Sizes.times(parameters, CHECKPOINT_BYTES_PER_PARAMETER) : 0;

        String modelDetail = "(parameters, gradients and two AdamW moments, " + vb * 8 + "-bit)";
        String offHeapDetail = "outside the Java heap (float32 initial weights " + Sizes.human(initial)
                + (checkpoints ? ", copies a checkpoint is written from " + Sizes.human(staging) : "") + ")";
        backend.checkFits(model, new MemoryNeed("a model of " + Sizes.count(parameters) + " parameters", 0,
                modelDetail, Sizes.plus(initial, staging), offHeapDetail, "a smaller model is needed (" + names.model()
                + ")"));

        List<String> parts = new ArrayList<>();
        parts.add("parameters, gradients and AdamW moments " + Sizes.human(model));
        parts.add(String.format(Locale.ROOT, "activations of %,d tokens %s", tokens, Sizes.human(activations)));
        parts.add("loss " + Sizes.human(loss));
        parts.add("token arrays " + Sizes.human(tokenArrays));
        if (extraHeap > 0) {
            parts.add(extraHeapWhat + " " + Sizes.human(extraHeap));
        }
        String hint = extraHeap > Sizes.plus(activations, loss) ? extraHeapHint : lower;
        MemoryNeed host = new MemoryNeed("training at " + batchText, Sizes.plus(tokenArrays, extraHeap),
                "(" + String.join("; ", parts) + ")", Sizes.plus(initial, staging), offHeapDetail, hint);
        backend.checkFits(Sizes.sum(model, activations, loss), host);
    }

    /** Refuses a batch whose tokens, or whose widest activation, would not fit one Java array. */
    private void checkArrays(long batch, long seqLen, String batchText, String lower) {
        long windows = Sizes.times(batch, seqLen + 1);
        if (windows > Sizes.MAX_ARRAY_LENGTH) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "%s: %s tokens per batch (seq_len + 1 per sequence), more than one Java array holds (%,d); %s",
                    batchText,
                    count(windows), Sizes.MAX_ARRAY_LENGTH, lower));
        }
        int widest = TrainModel.widestActivation(config);
        long values = Sizes.times(batch * seqLen, widest);
        if (values > Sizes.MAX_ARRAY_LENGTH) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "%s: the widest activation holds %,d tokens x %,d = %s values, more than one Java array holds"
                            + " (%,d); %s", batchText, batch * seqLen, widest, count(values), Sizes.MAX_ARRAY_LENGTH,
                    lower));
        }
    }

    private static String count(long n) {
        return n == Long.MAX_VALUE ? "over 2^63" : String.format(Locale.ROOT, "%,d", n);
    }
}
