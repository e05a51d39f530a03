package io.based4j.generate;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
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

    /** Receives generated tokens as they are chosen, with the text they complete (never half a character). */
    @FunctionalInterface
    public interface Listener {
        void onToken(int sequence, int tokenId, String text);
    }

    public Generator(BasedModel model, Gpt2Tokenizer tokenizer) {
        this.model = model;
        this.tokenizer = tokenizer;
        Object eos = model.config().raw().get("eos_token_id");
        this.eosId = eos instanceof Long l ? l.intValue() : tokenizer.eosId();
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
        Session session = model.newSession(n, maxLength);
        Sequence[] seqs = new Sequence[n];
        for (int i = 0; i < n; i++) {
            seqs[i] = new Sequence(requests.get(i), tokenizer);
        }

        int[] slots = new int[n];
        int[] lengths = new int[n];
        int total = 0;
        for (int i = 0; i < n; i++) {
            slots[i] = i;
            lengths[i] = requests.get(i).promptIds().length;
            total += lengths[i];
        }
        int[] packed = new int[total];
        for (int i = 0, o = 0; i < n; i++) {
            System.arraycopy(requests.get(i).promptIds(), 0, packed, o, lengths[i]);
            o += lengths[i];
        }
        Backend backend = model.backend();
        int padded = model.config().paddedVocabSize();
        int[] active = Arrays.stream(slots).filter(i -> seqs[i].request.maxNewTokens() > 0).toArray();
        if (active.length == 0) {
            return finish(seqs);
        }
        float[] logits = backend.download(model.forward(session, session.batch(slots, lengths), packed, false, null));
        int[] rowOf = slots.clone();
        while (active.length > 0) {
            int[] next = new int[active.length];
            List<Integer> still = new ArrayList<>();
            for (int a = 0; a < active.length; a++) {
                int i = active[a];
                Sequence s = seqs[i];
                int id = s.sampler.sample(logits, rowOf[i] * padded, vocab);
                next[a] = id;
                if (s.request.stopOnEos() && id == eosId) {
                    s.finish = GenerationResult.Finish.EOS;
                    continue;
                }
                s.tokens.add(id);
                String text = s.stops.accept(s.decoder.accept(id));
                s.text.append(text);
                if (listener != null) {
                    listener.onToken(i, id, text);
                }
                if (s.stops.stopped()) {
                    s.finish = GenerationResult.Finish.STOP;
                } else if (s.tokens.size() >= s.request.maxNewTokens()) {
                    s.finish = GenerationResult.Finish.LENGTH;
                } else {
                    still.add(a);
                }
            }
            if (still.isEmpty()) {
                break;
            }
            int[] stepSlots = new int[still.size()];
            int[] stepIds = new int[still.size()];
            int[] positions = new int[still.size()];
            for (int j = 0; j < still.size(); j++) {
                int a = still.get(j);
                stepSlots[j] = active[a];
                stepIds[j] = next[a];
                positions[j] = session.position(active[a]);
                rowOf[active[a]] = j;
            }
            logits = backend.download(model.forward(session, TokenBatch.step(stepSlots, positions), stepIds, false, null));
            active = stepSlots;
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
