package io.based4j.config;

import java.util.List;
import java.util.Map;

/**
 * The model a checkpoint defines: widths, depth, vocabulary and each layer's mixer.
 *
 * @param vocabSize real tokens (the first {@code vocabSize} logits)
 * @param paddedVocabSize rows of the embedding and head matrices
 * @param mlpHidden SwiGLU hidden width h (fc1 is 2h wide); 0 means the layers have no MLP
 * @param layers the mixer of each layer, in order
 * @param raw the parsed config.json, kept so a checkpoint can be written back with every field
 */
public record ModelConfig(int dModel, int nLayer, int nHead, int vocabSize, int paddedVocabSize, int mlpHidden,
                          double normEps, boolean tieWordEmbeddings, List<MixerConfig> layers,
                          Map<String, Object> raw) {
    public ModelConfig {
        layers = List.copyOf(layers);
        if (layers.size() != nLayer) {
            throw new ConfigException("n_layer is " + nLayer + " but " + layers.size() + " layer mixers were resolved");
        }
        if (paddedVocabSize < vocabSize) {
            throw new ConfigException("padded vocabulary " + paddedVocabSize + " is smaller than vocab_size " + vocabSize);
        }
    }

    public MixerConfig layer(int i) {
        return layers.get(i);
    }

    public boolean hasMlp() {
        return mlpHidden > 0;
    }

    /** The same model with a different list of mixers (used when the weights settle bias flags). */
    public ModelConfig withLayers(List<MixerConfig> newLayers) {
        return new ModelConfig(dModel, nLayer, nHead, vocabSize, paddedVocabSize, mlpHidden, normEps,
                tieWordEmbeddings, newLayers, raw);
    }
}
