package io.based4j.generate;

import io.based4j.backend.Backend;
import io.based4j.model.BasedModel;
import io.based4j.model.Session;
import io.based4j.sampling.Sampler;
import io.based4j.tokenizer.Gpt2Tokenizer;
import io.based4j.tokenizer.StreamingDecoder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Generates continuations of several prompts together: one batched prefill of all prompts (packed, any lengths),
 * then one batched decode step per token for the sequences still running.
 */
public final class Generator {
    private final BasedModel model;
    private final Gpt2Tokenizer tokenizer;
    private final int eosId;
    private boolean stepsAhead = true;

    /** Receives generated tokens as they are chosen, with the text they complete (never half a character). */
    @FunctionalInterface
    public interface Listener {
        void onToken(int sequence, int tokenId, String text);
    }

    public Generator(BasedModel model, Gpt2Tokenizer tokenizer) {
        this.model = model;
        this.tokenizer = tokenizer;
        this.eosId = eosId(model, tokenizer);
    }

    /**
     * Whether a decode step is queued on the ids the step before drew, ahead of the host's reading them, the sampling
     * kernel handing them to that step itself (on by default, where the backend replays recorded steps): the host's
     * turn between steps then overlaps the device's work. Off, each step waits for the ids of the one before on the
     * host. The tokens are the same.
     */
    public Generator stepsAhead(boolean on) {
        this.stepsAhead = on;
        return this;
    }

    /** The end-of-text token: the model's {@code eos_token_id}, else the tokenizer's. */
    public static int eosId(BasedModel model, Gpt2Tokenizer tokenizer) {
        Object eos = model.config().raw().get("eos_token_id");
        return eos instanceof Long l ? l.intValue() : tokenizer.eosId();
    }

    public List<GenerationResult> generate(List<GenerationRequest> requests, Listener listener) {
        int n = requests.size();
        if (n == 0) {
            return List.of();
        }
        int vocab = model.config().vocabSize();
        int maxLength = 0;
        for (int i = 0; i < n; i++) {
            GenerationRequest r = requests.get(i);
            for (int id : r.promptIds()) {
                if (id < 0 || id >= vocab) {
                    throw new IllegalArgumentException("prompt " + (n > 1 ? i + 1 + " " : "") + "holds token " + id
                            + describe(id) + ", outside this model's vocabulary of " + vocab + " tokens");
                }
            }
            maxLength = Math.max(maxLength, r.promptIds().length + r.maxNewTokens());
        }
        Sequence[] seqs = new Sequence[n];
        for (int i = 0; i < n; i++) {
            seqs[i] = new Sequence(requests.get(i), tokenizer);
        }
        int[] slots = new int[n];
        int[][] prompts = new int[n][];
        for (int i = 0; i < n; i++) {
            slots[i] = i;
            prompts[i] = requests.get(i).promptIds();
        }
        if (Arrays.stream(slots).noneMatch(i -> seqs[i].request.maxNewTokens() > 0)) {
            return finish(seqs);
        }
        Backend backend = model.backend();
        try (Session session = model.newSession(n, maxLength)) {
            // The first token of each sequence, sampled from its prompt's last logits as soon as they exist.
            int[] next = new int[n];
            model.prefill(session, slots, prompts, (logits, rows, ended) -> {
                int[] ids = backend.sample(logits, rows, vocab, samplersOf(seqs, ended));
                for (int j = 0; j < ended.length; j++) {
                    next[ended[j]] = ids[j];
                }
            });
            int[] active = Arrays.stream(slots).filter(i -> seqs[i].request.maxNewTokens() > 0).toArray();
            int[] running = acceptAll(seqs, active, next, listener);
            Backend.Sampled drawn = running.length == 0 ? null
                    : queueStep(session, seqs, running, idsOf(next, running), vocab);
            // without recorded steps to feed on the device, a step ahead gains nothing
            boolean feeds = stepsAhead && backend.graphs() != null && session.usesGraphs();
            while (drawn != null) {
                // While no sequence can reach its length limit with the token being drawn, the next step is queued
                // on those tokens before the host reads them (the sampling kernel hands them to that step itself),
                // so the host's reading and the next step's launch overlap the device's work; a sequence that stops
                // on that token instead (an end-of-text token, a stop string) has its result of the step ahead
                // dropped.
                Backend.Sampled ahead = null;
                if (feeds && noneReachesLimit(seqs, running)) {
                    Backend.Buffer logits = model.forwardFed(session, session.step(running), drawn);
                    ahead = backend.sampleAhead(logits, inOrder(running.length), vocab, samplersOf(seqs, running));
                }
                int[] ids = drawn.ids();
                for (int j = 0; j < running.length; j++) {
                    next[running[j]] = ids[j];
                }
                int[] still = acceptAll(seqs, running, next, listener);
                if (ahead != null && still.length == running.length) {
                    drawn = ahead;
                    continue;
                }
                if (ahead != null && still.length > 0) {
                    // the step ahead ran for all of them: its tokens stand for those still running (only theirs
                    // are read, so a row of a sequence that ended cannot fail the generation)
                    int[] places = new int[still.length];
                    for (int j = 0, k = 0; j < running.length && k < still.length; j++) {
                        if (running[j] == still[k]) {  // still keeps running's order
                            places[k++] = j;
                        }
                    }
                    int[] aheadIds = ahead.ids(places);
                    for (int k = 0; k < still.length; k++) {
                        next[still[k]] = aheadIds[k];
                    }
                    still = acceptAll(seqs, still, next, listener);
                }
                running = still;
                drawn = running.length == 0 ? null : queueStep(session, seqs, running, idsOf(next, running), vocab);
            }
        }
        for (int i = 0; i < n; i++) {
            // bytes of an unfinished character, then text held back in case it began a stop string
            String released = seqs[i].stops.accept(seqs[i].decoder.flush()) + seqs[i].stops.finish();
            if (!released.isEmpty()) {
                seqs[i].text.append(released);
                if (listener != null) {
                    listener.onToken(i, -1, released);
                }
            }
        }
        return finish(seqs);
    }

    /** Accepts the token in {@code next} of each listed sequence; returns those that go on, in the same order. */
    private int[] acceptAll(Sequence[] seqs, int[] which, int[] next, Listener listener) {
        List<Integer> still = new ArrayList<>();
        for (int i : which) {
            if (accept(seqs[i], i, next[i], listener)) {
                still.add(i);
            }
        }
        return still.stream().mapToInt(Integer::intValue).toArray();
    }

    /** Queues a decode step of the listed sequences on the given tokens and the sampling of its logits. */
    private Backend.Sampled queueStep(Session session, Sequence[] seqs, int[] which, int[] tokens, int vocab) {
        Backend.Buffer logits = model.forward(session, session.step(which), tokens, false, null);
        return model.backend().sampleAhead(logits, inOrder(which.length), vocab, samplersOf(seqs, which));
    }

    /** Whether none of the listed sequences has its length limit at the token being drawn for it. */
    private static boolean noneReachesLimit(Sequence[] seqs, int[] which) {
        for (int i : which) {
            if (seqs[i].tokens.size() + 1 >= seqs[i].request.maxNewTokens()) {
                return false;
            }
        }
        return true;
    }

    private static int[] idsOf(int[] next, int[] which) {
        int[] ids = new int[which.length];
        for (int j = 0; j < which.length; j++) {
            ids[j] = next[which[j]];
        }
        return ids;
    }

    private static int[] inOrder(int n) {
        int[] rows = new int[n];
        Arrays.setAll(rows, j -> j);
        return rows;
    }

    private static Sampler[] samplersOf(Sequence[] seqs, int[] which) {
        Sampler[] out = new Sampler[which.length];
        for (int j = 0; j < which.length; j++) {
            out[j] = seqs[which[j]].sampler;
        }
        return out;
    }

    /** Takes the token chosen for sequence {@code i}; false once the sequence has finished. */
    private boolean accept(Sequence s, int i, int id, Listener listener) {
        if (s.request.stopOnEos() && id == eosId) {
            s.finish = GenerationResult.Finish.EOS;
            return false;
        }
        s.tokens.add(id);
        String text = s.stops.accept(s.decoder.accept(id));
        s.text.append(text);
        if (listener != null) {
            listener.onToken(i, id, text);
        }
        if (s.stops.stopped()) {
            s.finish = GenerationResult.Finish.STOP;
            return false;
        }
        if (s.tokens.size() >= s.request.maxNewTokens()) {
            s.finish = GenerationResult.Finish.LENGTH;
            return false;
        }
        return true;
    }

    private String describe(int id) {
        if (id < 0 || id >= tokenizer.vocabSize()) {
            return "";
        }
        return " ('" + tokenizer.decode(new int[] {id}).replace("\n", "\\n") + "')";
    }

    private static List<GenerationResult> finish(Sequence[] seqs) {
        List<GenerationResult> out = new ArrayList<>();
        for (Sequence s : seqs) {
            out.add(new GenerationResult(s.tokens.stream().mapToInt(Integer::intValue).toArray(), s.text.toString(),
                    s.finish == null ? GenerationResult.Finish.LENGTH : s.finish));
        }
        return out;
    }

    private static final class Sequence {
        final GenerationRequest request;
        final Sampler sampler;
        final StreamingDecoder decoder;
        final StopMatcher stops;
        final List<Integer> tokens = new ArrayList<>();
        final StringBuilder text = new StringBuilder();
        GenerationResult.Finish finish;

        Sequence(GenerationRequest request, Gpt2Tokenizer tokenizer) {
            this.request = request;
            this.sampler = new Sampler(request.sampling());
            this.decoder = tokenizer.streamingDecoder();
            this.stops = new StopMatcher(request.stopStrings());
        }
    }
}
