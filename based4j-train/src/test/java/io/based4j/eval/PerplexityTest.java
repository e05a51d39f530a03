package io.based4j.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.TokenBatch;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.model.BasedModel;
import io.based4j.model.Session;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Perplexity of the reference's tiny checkpoint (vocabulary: the first 1000 GPT-2 tokens) on a short text, against the
 * same sums computed here by hand from the model's forward pass.
 */
class PerplexityTest {
    static final Path GOLDEN = Path.of("../models/golden-tiny");
    /** " it is the man and the man is in a good way. it is not for you, and it was on the way to the world of all. it is new." */
    static final String TEXT = " it is the man and the man is in a good way. it is not for you, and it was on the way to the"
            + " world of all. it is new.";

    static CpuBackend backend;
    static BasedModel model;
    static Gpt2Tokenizer tokenizer = Gpt2Tokenizer.load();
    static TokenBytes bytes = new TokenBytes(tokenizer);
    static int[] tokens;

    @BeforeAll
    static void load() {
        backend = new CpuBackend();
        model = BasedModel.load(GOLDEN, backend);
        tokens = tokenizer.encode(TEXT);
        assertTrue(Arrays.stream(tokens).allMatch(t -> t < 1000), "the text stays inside the model's vocabulary");
    }

    @AfterAll
    static void close() {
        model.close();
        backend.close();
    }

    /** -log p(tokens[t] | tokens[from .. t)) from a forward pass over exactly that context, in double by hand. */
    static double handNll(int from, int t) {
        int[] context = Arrays.copyOfRange(tokens, from, t);
        try (Session s = model.newSession(1, context.length)) {
            float[] logits = backend.download(model.forward(s, TokenBatch.uniform(1, context.length), context, true,
                    null));
            return nll(logits, (context.length - 1) * model.config().paddedVocabSize(), tokens[t]);
        }
    }

    /** -log softmax of the logits from {@code row} on, over the 1000 tokens of the vocabulary, at {@code token}. */
    static double nll(float[] logits, int row, int token) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < 1000; i++) {
            max = Math.max(max, logits[row + i]);
        }
        double sum = 0;
        for (int i = 0; i < 1000; i++) {
            sum += Math.exp(logits[row + i] - max);
        }
        return Math.log(sum) + max - logits[row + token];
    }

    static Perplexity.Score score(int seqLen, int stride, int batch) {
        return new Perplexity(model, bytes, seqLen, stride, batch).run(List.of(TokenSource.of("text", tokens)), null)
                .getFirst();
    }

    @Test
    void oneWindowScoresEveryTokenAfterTheFirstFromTheForwardPass() {
        // one forward over tokens [0, n-1): row t-1 predicts token t
        int n = tokens.length;
        int[] in = Arrays.copyOf(tokens, n - 1);
        double want = 0;
        try (Session s = model.newSession(1, in.length)) {
            float[] logits = backend.download(model.forward(s, TokenBatch.uniform(1, in.length), in, true, null));
            int padded = model.config().paddedVocabSize();
            for (int t = 1; t < n; t++) {
                want += nll(logits, (t - 1) * padded, tokens[t]);
            }
        }
        Perplexity.Score got = score(64, 64, 4);
        assertEquals(n - 1, got.tokens());
        // the same float32 logits and the same double arithmetic: only the order of the additions may differ
        assertEquals(want, got.nats(), 1e-12 * want);
        assertEquals(Math.exp(want / (n - 1)), got.perplexity(), 1e-9 * got.perplexity());
        // the scored text is all but the first token " it": its UTF-8 bytes
        long textBytes = TEXT.getBytes(StandardCharsets.UTF_8).length - " it".length();
        assertEquals(textBytes, got.bytes());
        assertEquals(want / Math.log(2) / textBytes, got.bitsPerByte(), 1e-12 * got.bitsPerByte());
    }

    @Test
    void slidingWindowsGiveEachTokenTheContextTheyPromise() {
        int n = tokens.length;
        // stride 1: token t is predicted from the seq-len tokens before it (all of them near the start)
        double want = 0;
        for (int t = 1; t < n; t++) {
            want += handNll(Math.max(0, t - 5), t);
        }
        // windows packed 3 to a forward pass against one context per pass: float32 logits of another batch layout
        // may differ in their last bits (about 1e-7 relative), far below 1e-6 of a sum of 34 terms
        assertEquals(want, score(5, 1, 3).nats(), 1e-6 * want);

        // stride = seq-len: windows [0,6), [6,12), ... score 6 tokens each, each token seeing back to its window's
        // start; the last window, short of targets, reads the 6 tokens before its last target
        want = 0;
        for (int t = 1; t < n; t++) {
            int end = Math.min(n, (t - 1) / 6 * 6 + 7); // one past the last target of t's window
            want += handNll(end - 1 - 6, t);
        }
        assertEquals(want, score(6, 6, 2).nats(), 1e-6 * want);
    }

    @Test
    void theBatchDoesNotChangeTheScore() {
        Perplexity.Score one = score(8, 3, 1);
        Perplexity.Score many = score(8, 3, 5);
        assertEquals(one.tokens(), many.tokens());
        assertEquals(tokens.length - 1, one.tokens());
        // float32 logits of another batch layout may differ in their last bits: see above
        assertEquals(one.nats(), many.nats(), 1e-6 * one.nats());
    }

    @Test
    void badStreamsAreRefusedBeforeAnyForwardPass() {
        Perplexity p = new Perplexity(model, bytes, 8, 8, 1);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> p.run(List.of(TokenSource.of("a.txt", tokens), TokenSource.of("short.txt", new int[] {5})), null));
        assertEquals("short.txt: holds 1 token; perplexity needs at least 2 (the first token is context for the rest)",
                e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> p.run(List.of(TokenSource.of("big.txt", new int[] {5, 6, 1000, 7})), null));
        assertEquals("big.txt: token 1000 at position 2 is outside this model's vocabulary of 1000 tokens",
                e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> p.run(List.of(), null));
        assertThrows(IllegalArgumentException.class, () -> new Perplexity(model, bytes, 8, 9, 1));
    }

    @Test
    void bitsPerByteAreNatsOverLn2OverBytes() {
        // 4 tokens of 2 ln 2 nats each: perplexity 4; over 2 bytes: 8 ln 2 / ln 2 / 2 = 4 bits a byte
        Perplexity.Score s = new Perplexity.Score("x", 4, 8 * Math.log(2), 2);
        assertEquals(2 * Math.log(2), s.loss(), 1e-15);
        assertEquals(4, s.perplexity(), 1e-12);
        assertEquals(4, s.bitsPerByte(), 1e-12);
        Perplexity.Score sum = Perplexity.Score.sum("all", List.of(s, new Perplexity.Score("y", 6, 6, 10)));
        assertEquals(new Perplexity.Score("all", 10, 8 * Math.log(2) + 6, 12), sum);
        assertTrue(Double.isNaN(new Perplexity.Score("eos only", 3, 1, 0).bitsPerByte()));
    }

    @Test
    void tokenBytesAreTheUtf8BytesOfTheDecodedTextAndNoneForEndOfText() {
        assertEquals(0, bytes.of(tokenizer.eosId()));
        assertEquals(4, bytes.of(tokenizer.encode(" the")[0]));
        String text = "naïve café, 東京 🙂";
        long sum = Arrays.stream(tokenizer.encode(text)).mapToLong(bytes::of).sum();
        assertEquals(text.getBytes(StandardCharsets.UTF_8).length, sum);
    }
}
