package io.based4j.eval;

import io.based4j.backend.Backend;
import io.based4j.memory.HostMemory;
import io.based4j.memory.Sizes;
import io.based4j.model.BasedModel;
import io.based4j.model.Session;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Perplexity and bits per byte of a model on streams of tokens: each stream is cut into {@link Windows}, several
 * windows go through one forward pass of the model (the parallel form, logits for every token), and each scored
 * token's negative log-likelihood is taken from a log-softmax over the real vocabulary computed in double, where
 * the logits are ({@link Backend#negativeLogLikelihoods}: on a GPU only the results are copied back). Every
 * token of a stream but its first (which has no context) is scored once.
 *
 * <p>Bits per byte are the nats over all scored tokens divided by {@code ln 2} and by the UTF-8 bytes of the text those
 * tokens decode to ({@link TokenBytes}: the end-of-text token between documents counts no bytes).
 */
public final class Perplexity {
    /** The score of one stream (or of several added up). */
    public record Score(String name, long tokens, double nats, long bytes) {
        /** Mean negative log-likelihood per token, in nats. */
        public double loss() {
            return nats / tokens;
        }

        public double perplexity() {
            return Math.exp(loss());
        }

        /** Bits per byte of the scored text; NaN when the scored tokens stand for no bytes. */
        public double bitsPerByte() {
            return bytes == 0 ? Double.NaN : nats / Math.log(2) / bytes;
        }

        /** The scores added up, under {@code name}. */
        public static Score sum(String name, List<Score> scores) {
            long tokens = 0;
            double nats = 0;
            long bytes = 0;
            for (Score s : scores) {
                tokens += s.tokens;
                nats += s.nats;
                bytes += s.bytes;
            }
            return new Score(name, tokens, nats, bytes);
        }
    }

    /** Told after each forward pass how many of all the windows are done. */
    @FunctionalInterface
    public interface Listener {
        void progress(long windowsDone, long windows, long tokensScored);
    }

    private final BasedModel model;
    private final TokenBytes bytes;
    private final int seqLen;
    private final int stride;
    private final int batch;

    /**
     * @param seqLen most tokens a window reads
     * @param stride tokens each window after the first scores ({@code 1 <= stride <= seqLen})
     * @param batch windows per forward pass
     */
    public Perplexity(BasedModel model, TokenBytes bytes, int seqLen, int stride, int batch) {
        if (seqLen < 1 || stride < 1 || stride > seqLen || batch < 1) {
            throw new IllegalArgumentException("need seq-len >= 1, 1 <= stride <= seq-len and batch >= 1, got seq-len "
                    + seqLen + ", stride " + stride + ", batch " + batch);
        }
        this.model = model;
        this.bytes = bytes;
        this.seqLen = seqLen;
        this.stride = stride;
        this.batch = batch;
    }

    /** One window of one stream. */
    private record Job(int source, Windows.Window window) {
    }

    /**
     * Scores every stream. All of them are checked first (at least two tokens each, every token inside the model's
     * vocabulary and the tokenizer's), so bad data is refused before the first forward pass.
     *
     * @throws IllegalArgumentException naming the stream (and the position of a bad token)
     */
    public List<Score> run(List<TokenSource> sources, Listener listener) {
        if (sources.isEmpty()) {
            throw new IllegalArgumentException("no data to score");
        }
        long[] textBytes = new long[sources.size()];
        List<Job> jobs = new ArrayList<>();
        for (int s = 0; s < sources.size(); s++) {
            textBytes[s] = checkAndCountBytes(sources.get(s));
            for (Windows.Window w : Windows.plan(sources.get(s).length(), seqLen, stride)) {
                jobs.add(new Job(s, w));
            }
        }
        long[] tokens = new long[sources.size()];
        double[] nats = new double[sources.size()];
        int slots = Math.min(batch, jobs.size());
        int padded = model.config().paddedVocabSize();
        HostMemory.system().requireHeap(Sizes.product(Float.BYTES, (long) slots * seqLen, padded), String.format(
                Locale.ROOT, "the logits of %,d windows of %,d tokens copied to the host (%,d tokens x %,d)", slots,
                seqLen, (long) slots * seqLen, padded));
        long scored = 0;
        try (Session session = model.newSession(slots, seqLen, slots * seqLen)) {
            for (int first = 0; first < jobs.size(); first += slots) {
                List<Job> call = jobs.subList(first, Math.min(jobs.size(), first + slots));
                double[] nll = forward(session, sources, call);
                int row = 0;
                for (Job job : call) {
                    for (int r = 0; r < job.window.scored(); r++) {
                        nats[job.source] += nll[row++];
                    }
                    tokens[job.source] += job.window.scored();
                    scored += job.window.scored();
                }
                if (listener != null) {
                    listener.progress(first + call.size(), jobs.size(), scored);
                }
            }
        }
        List<Score> out = new ArrayList<>();
        for (int s = 0; s < sources.size(); s++) {
            out.add(new Score(sources.get(s).name(), tokens[s], nats[s], textBytes[s]));
        }
        return out;
    }

    /**
     * One forward pass over the windows of {@code call}, each in its own slot from position 0; returns the negative
     * log-likelihood of every scored token, window after window.
     */
    private double[] forward(Session session, List<TokenSource> sources, List<Job> call) {
        int n = call.size();
        int[] slots = new int[n];
        int[] lengths = new int[n];
        int total = 0;
        int scoredTotal = 0;
        for (int i = 0; i < n; i++) {
            slots[i] = i;
            lengths[i] = call.get(i).window.length();
            total += lengths[i];
            scoredTotal += call.get(i).window.scored();
            session.reset(i);
        }
        int[] packed = new int[total];
        int[] rows = new int[scoredTotal];
        int[] targets = new int[scoredTotal];
        int[] window = new int[seqLen + 1];
        for (int i = 0, offset = 0, k = 0; i < n; i++) {
            Windows.Window w = call.get(i).window;
            // the window's tokens and the one after them: the targets are the tokens shifted by one
            sources.get(call.get(i).source).read(w.start(), window, 0, w.length() + 1);
            System.arraycopy(window, 0, packed, offset, w.length());
            for (int r = w.firstScored(); r < w.length(); r++, k++) {
                rows[k] = offset + r;
                targets[k] = window[r + 1];
            }
            offset += w.length();
        }
        Backend backend = model.backend();
        Backend.Buffer logits = model.forward(session, session.batch(slots, lengths), packed, true, null);
        return backend.negativeLogLikelihoods(logits, rows, targets, model.config().vocabSize());
    }

    /**
     * Checks a stream (at least two tokens, each inside the model's vocabulary and the tokenizer's) and returns the
     * bytes of text of its scored tokens: all but the first.
     */
    private long checkAndCountBytes(TokenSource source) {
        long n = source.length();
        if (n < 2) {
            throw new IllegalArgumentException(source.name() + ": holds " + n + " token" + (n == 1 ? "" : "s")
                    + "; perplexity needs at least 2 (the first token is context for the rest)");
        }
        int vocab = model.config().vocabSize();
        int chunk = 1 << 20;
        int[] buf = new int[(int) Math.min(chunk, n)];
        long total = 0;
        for (long from = 0; from < n; from += chunk) {
            int len = (int) Math.min(chunk, n - from);
            source.read(from, buf, 0, len);
            for (int i = 0; i < len; i++) {
                int id = buf[i];
                if (id < 0 || id >= vocab || id >= bytes.vocabSize()) {
                    throw new IllegalArgumentException(source.name() + ": token " + id + " at position " + (from + i)
                            + " is outside " + (id >= 0 && id < vocab ? "the GPT-2 tokenizer's vocabulary of "
                            + bytes.vocabSize() : "this model's vocabulary of " + vocab) + " tokens");
                }
                if (from + i > 0) {
                    total += bytes.of(id);
                }
            }
        }
        return total;
    }
}
