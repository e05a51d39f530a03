package io.based4j.eval;

import io.based4j.train.data.TokenDataset;
import java.util.Objects;

/** One stream of tokens to score: a text file's tokens, or the validation split of a token folder. */
public interface TokenSource {
    /** What the tokens are, in words ({@code "notes.txt"}, {@code "val split of data/"}). */
    String name();

    /** Number of tokens. */
    long length();

    /** Copies tokens {@code [from, from + n)} into {@code dst[off .. off + n)}. */
    void read(long from, int[] dst, int off, int n);

    /** Tokens held in memory. */
    static TokenSource of(String name, int[] tokens) {
        Objects.requireNonNull(name, "name");
        int[] copy = tokens.clone();
        return new TokenSource() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public long length() {
                return copy.length;
            }

            @Override
            public void read(long from, int[] dst, int off, int n) {
                System.arraycopy(copy, Math.toIntExact(from), dst, off, n);
            }
        };
    }

    /** The tokens of a split of a token folder, read from its shards as they are needed. */
    static TokenSource of(TokenDataset dataset) {
        String name = dataset.split() + " split of " + dataset.dir();
        return new TokenSource() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public long length() {
                return dataset.count();
            }

            @Override
            public void read(long from, int[] dst, int off, int n) {
                dataset.read(from, dst, off, n);
            }
        };
    }
}
