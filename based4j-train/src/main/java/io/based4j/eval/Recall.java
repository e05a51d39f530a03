package io.based4j.eval;

import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.generate.Generator;
import io.based4j.model.BasedModel;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Recall scored as in the BASED paper's recall tasks (SWDE, FDA, SQuAD): the model reads each example's context and
 * prompt, continues it greedily until a newline, its end-of-text token or {@value #MAX_NEW_TOKENS} new tokens, and the
 * example counts as correct when any accepted answer appears in the continuation, ignoring case
 * ({@link RecallExample#contains}). An input longer than the context allows ({@code seqLen} less the new tokens) loses
 * its beginning: the end, where the question is, is kept.
 */
public final class Recall {
    /** Most new tokens per answer, as in the paper's harness. */
    public static final int MAX_NEW_TOKENS = 48;
    /** Generation ends at the first newline (which is not part of the output). */
    public static final String STOP = "\n";

    /**
     * What happened to one example.
     *
     * @param inputTokens tokens the model read (after any truncation)
     * @param truncated whether the input lost its beginning to fit the context
     * @param output the continuation, cut before the newline that ended it
     * @param generated tokens generated (a newline that ended the output counted)
     */
    public record Outcome(RecallExample example, int inputTokens, boolean truncated, String output, int generated,
                          GenerationResult.Finish finish, boolean correct) {
    }

    /** The outcomes of one set. */
    public record SetScore(RecallSet set, List<Outcome> outcomes) {
        public SetScore {
            outcomes = List.copyOf(outcomes);
        }

        public int examples() {
            return outcomes.size();
        }

        public int correct() {
            return (int) outcomes.stream().filter(Outcome::correct).count();
        }

        public double accuracy() {
            return (double) correct() / examples();
        }

        public int truncated() {
            return (int) outcomes.stream().filter(Outcome::truncated).count();
        }
    }

    /** Told after each batch how many examples of a set are done. */
    @FunctionalInterface
    public interface Listener {
        void progress(RecallSet set, int done);
    }

    private final BasedModel model;
    private final Gpt2Tokenizer tokenizer;
    private final int seqLen;
    private final int maxNewTokens;
    private final int batch;

    /**
     * @param seqLen most tokens of input and continuation together; more than {@code maxNewTokens}
     * @param batch examples generated together
     */
    public Recall(BasedModel model, Gpt2Tokenizer tokenizer, int seqLen, int maxNewTokens, int batch) {
        if (maxNewTokens < 1 || seqLen <= maxNewTokens || batch < 1) {
            throw new IllegalArgumentException("need max-new-tokens >= 1, seq-len > max-new-tokens and batch >= 1, got"
                    + " max-new-tokens " + maxNewTokens + ", seq-len " + seqLen + ", batch " + batch);
        }
        this.model = model;
        this.tokenizer = tokenizer;
        this.seqLen = seqLen;
        this.maxNewTokens = maxNewTokens;
        this.batch = batch;
    }

    /** The tokens the model reads for one example, and whether they lost their beginning. */
    private record Input(int[] tokens, boolean truncated) {
    }

    /**
     * Runs every set. All inputs are tokenized and checked first, so an example the model cannot read is refused
     * before anything is generated.
     *
     * @throws IllegalArgumentException naming the set's source and line of an input holding a token outside the
     *                                  model's vocabulary
     */
    public List<SetScore> run(List<RecallSet> sets, Listener listener) {
        List<List<Input>> inputs = new ArrayList<>();
        for (RecallSet set : sets) {
            List<Input> in = new ArrayList<>();
            for (RecallExample e : set.examples()) {
                in.add(input(set, e));
            }
            inputs.add(in);
        }
        Generator generator = new Generator(model, tokenizer);
        List<SetScore> out = new ArrayList<>();
        for (int s = 0; s < sets.size(); s++) {
            RecallSet set = sets.get(s);
            List<Outcome> outcomes = new ArrayList<>();
            for (int first = 0; first < set.examples().size(); first += batch) {
                int end = Math.min(set.examples().size(), first + batch);
                List<GenerationRequest> requests = new ArrayList<>();
                for (int i = first; i < end; i++) {
                    requests.add(new GenerationRequest(inputs.get(s).get(i).tokens, maxNewTokens,
                            SamplingParams.greedy(), List.of(STOP), true));
                }
                List<GenerationResult> results = generator.generate(requests, null);
                for (int i = first; i < end; i++) {
                    RecallExample e = set.examples().get(i);
                    Input in = inputs.get(s).get(i);
                    GenerationResult r = results.get(i - first);
                    outcomes.add(new Outcome(e, in.tokens.length, in.truncated, r.text(), r.tokens().length,
                            r.finish(), RecallExample.contains(r.text(), e.answers())));
                }
                if (listener != null) {
                    listener.progress(set, end);
                }
            }
            out.add(new SetScore(set, outcomes));
        }
        return out;
    }

    private Input input(RecallSet set, RecallExample e) {
        int[] ids = tokenizer.encode(e.input());
        int vocab = model.config().vocabSize();
        for (int id : ids) {
            if (id >= vocab) {
                throw new IllegalArgumentException(set.source() + ":" + e.line() + ": the input holds token " + id
                        + " ('" + tokenizer.decode(new int[] {id}).replace("\n", "\\n") + "'), outside this model's"
                        + " vocabulary of " + vocab + " tokens");
            }
        }
        int limit = seqLen - maxNewTokens;
        if (ids.length <= limit) {
            return new Input(ids, false);
        }
        return new Input(Arrays.copyOfRange(ids, ids.length - limit, ids.length), true);
    }
}
