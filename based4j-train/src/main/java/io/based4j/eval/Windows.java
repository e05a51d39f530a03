package io.based4j.eval;

import java.util.ArrayList;
import java.util.List;

/**
 * How a stream of tokens is cut into the windows a model scores, so that every token but the first is scored exactly
 * once. The first window takes the first {@code seqLen} tokens and scores its predictions of tokens
 * {@code 1 .. seqLen}; each later window scores the next {@code stride} tokens and reads the {@code seqLen} tokens
 * before its last one, so that every scored token after the first window has at least
 * {@code seqLen - stride + 1} tokens of context. With {@code stride == seqLen} the windows do not overlap (each token is
 * read once, the cheapest), but for the last, which reads {@code seqLen} tokens however few it scores; a smaller stride
 * gives later tokens more context for more computation.
 */
public final class Windows {
    /**
     * One forward pass: tokens {@code [start, start + length)} go in, and rows {@code firstScored .. length - 1} are
     * scored: row {@code r} predicts token {@code start + r + 1}.
     */
    public record Window(long start, int length, int firstScored) {
        /** How many tokens the window scores. */
        public int scored() {
            return length - firstScored;
        }
    }

    private Windows() {
    }

    /** The windows over {@code tokens} tokens; none when there are fewer than two (nothing to predict). */
    public static List<Window> plan(long tokens, int seqLen, int stride) {
        if (seqLen < 1 || stride < 1 || stride > seqLen) {
            throw new IllegalArgumentException("windows need 1 <= stride <= seq-len, got stride " + stride
                    + " and seq-len " + seqLen);
        }
        List<Window> out = new ArrayList<>();
        // targets [from, to): the tokens this window scores; window tokens end one before the last target
        long from = 1;
        long to = Math.min(tokens, (long) seqLen + 1);
        while (from < to) {
            long start = Math.max(0, to - 1 - seqLen);
            out.add(new Window(start, (int) (to - 1 - start), (int) (from - 1 - start)));
            from = to;
            to = Math.min(tokens, to + stride);
        }
        return out;
    }
}
