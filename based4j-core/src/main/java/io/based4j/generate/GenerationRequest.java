package io.based4j.generate;

import io.based4j.sampling.SamplingParams;
import java.util.List;

/**
 * One prompt to continue.
 *
 * @param promptIds tokens of the prompt (at least one)
 * @param maxNewTokens most tokens to generate
 * @param sampling how to choose each token
 * @param stopStrings generation ends when the text contains one of these (it is not part of the result)
 * @param stopOnEos whether the end-of-text token ends generation
 */
public record GenerationRequest(int[] promptIds, int maxNewTokens, SamplingParams sampling, List<String> stopStrings,
                                boolean stopOnEos) {
    public GenerationRequest {
        if (promptIds.length == 0) {
            throw new IllegalArgumentException("the prompt is empty: give at least one token");
        }
        if (maxNewTokens < 0) {
            throw new IllegalArgumentException("--max-new-tokens must be >= 0, got " + maxNewTokens);
        }
        promptIds = promptIds.clone();
        stopStrings = List.copyOf(stopStrings);
    }

    public static GenerationRequest of(int[] promptIds, int maxNewTokens, SamplingParams sampling) {
        return new GenerationRequest(promptIds, maxNewTokens, sampling, List.of(), true);
    }
}
