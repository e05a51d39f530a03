package io.based4j.train.data;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * One split ({@code train}, {@code val}, ...) of a tokenized corpus: exactly the shards the folder's manifest
 * {@code data.json} lists for the split (see {@link TokenManifest}), read in order as one concatenated token
 * sequence. Other files in the folder, shard-like names included, are no part of the dataset. Thread-safe for reads.
 */
public final class TokenDataset implements AutoCloseable {
    private final Path dir;
    private final String split;
    private final List<TokenShard> shards;
    /** starts[i] = index of shard i's first token; starts[n] = total count. */
    private final long[] starts;
    private final TokenManifest manifest;

    private TokenDataset(Path dir, String split, List<TokenShard> shards, TokenManifest manifest) {
        this.dir = dir;
        this.split = split;
        this.shards = List.copyOf(shards);
        this.starts = new long[shards.size() + 1];
        for (int i = 0; i < shards.size(); i++) {
            starts[i + 1] = starts[i] + shards.get(i).count();
        }
        this.manifest = manifest;
    }

    /**
     * Opens the shards that {@code dir/data.json} lists for {@code split}, checking that each exists, is a valid
     * shard and holds the tokens the manifest states.
     *
     * @throws IllegalArgumentException naming the file at fault when the folder or its manifest is missing or
     *                                  invalid, the manifest declares no such split or an empty one, or a listed
     *                                  shard is missing, invalid or holds another count than the manifest states
     */
    public static TokenDataset open(Path dir, String split) {
        TokenManifest manifest = manifest(dir, split);
        List<TokenManifest.Shard> listed = manifest.shards(split);
        if (listed.isEmpty()) {
            throw new IllegalArgumentException(manifest.file() + ": the " + split + " split is empty (no shards; "
                    + "was it tokenized with --val-fraction 0?)");
        }
        List<TokenShard> shards = new ArrayList<>(listed.size());
        try {
            for (TokenManifest.Shard s : listed) {
                Path f = dir.resolve(s.file());
                if (!Files.exists(f)) {
                    throw new IllegalArgumentException(f + ": no such file, but " + manifest.file() + " lists it as a "
                            + split + " shard (re-run 'based4j data tokenize')");
                }
                TokenShard shard = TokenShard.open(f);
                shards.add(shard);
                if (s.tokens() >= 0 && shard.count() != s.tokens()) {
                    throw new IllegalArgumentException(f + ": holds " + shard.count() + " tokens but "
                            + manifest.file() + " says " + s.tokens() + " (re-run 'based4j data tokenize')");
                }
            }
            TokenDataset ds = new TokenDataset(dir, split, shards, manifest);
            long declared = manifest.tokens(split);
            if (ds.count() != declared) {
                throw new IllegalArgumentException(manifest.file() + ": says " + split + "_tokens = " + declared
                        + " but its " + listed.size() + " " + split + " shard(s) hold " + ds.count()
                        + " tokens (re-run 'based4j data tokenize')");
            }
            return ds;
        } catch (RuntimeException | Error e) {
            shards.forEach(TokenShard::close);
            throw e;
        }
    }

    /**
     * Whether {@code dir/data.json} declares tokens for {@code split}: false when it declares the split empty (no
     * shards, no tokens), true otherwise.
     *
     * @throws IllegalArgumentException naming the file when the folder or its manifest is missing or invalid, or the
     *                                  manifest declares no such split
     */
    public static boolean hasTokens(Path dir, String split) {
        TokenManifest m = manifest(dir, split);
        m.shards(split);
        return !m.declaresEmpty(split);
    }

    private static TokenManifest manifest(Path dir, String split) {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(split, "split");
        if (!TokenManifest.SPLIT.matcher(split).matches()) {
            throw new IllegalArgumentException("split name \"" + split
                    + "\" must be non-empty and use only letters, digits, '_' or '.'");
        }
        if (!Files.isDirectory(dir)) {
            throw new IllegalArgumentException(dir + ": " + (Files.exists(dir) ? "not a directory" : "no such directory")
                    + " (expected a token folder written by 'based4j data tokenize')");
        }
        return TokenManifest.read(dir);
    }

    public Path dir() {
        return dir;
    }

    public String split() {
        return split;
    }

    /** The shards in order. */
    public List<TokenShard> shards() {
        return shards;
    }

    /** The folder's manifest. */
    public TokenManifest manifest() {
        return manifest;
    }

    /** Vocabulary size from the manifest, or -1 when it does not say. */
    public int vocabSize() {
        return manifest.vocabSize();
    }

    /** End-of-text token id from the manifest, or -1 when it does not say. */
    public int eosTokenId() {
        return manifest.eosTokenId();
    }

    /** Total tokens over all shards. */
    public long count() {
        return starts[starts.length - 1];
    }

    /** Token {@code i} of the concatenation. */
    public int get(long i) {
        if (i < 0 || i >= count()) {
            throw new IndexOutOfBoundsException("token " + i + " outside [0, " + count() + ") of " + split + " in " + dir);
        }
        int s = shardOf(i);
        return shards.get(s).get(i - starts[s]);
    }

    /** Copies tokens {@code [from, from + n)} of the concatenation into {@code dst[off .. off + n)}. */
    public void read(long from, int[] dst, int off, int n) {
        Objects.checkFromIndexSize(off, n, dst.length);
        long count = count();
        if (from < 0 || n < 0 || from > count - n) {
            throw new IndexOutOfBoundsException("tokens [" + from + ", " + (from + n) + ") outside [0, " + count
                    + ") of " + split + " in " + dir);
        }
        if (n == 0) {
            return;
        }
        int s = shardOf(from);
        long pos = from;
        int done = 0;
        while (done < n) {
            while (pos >= starts[s + 1]) {
                s++; // skips empty shards too
            }
            long local = pos - starts[s];
            int take = (int) Math.min(n - done, starts[s + 1] - pos);
            shards.get(s).read(local, dst, off + done, take);
            done += take;
            pos += take;
        }
    }

    /** Index of the shard holding token {@code i} (0 <= i < count). */
    private int shardOf(long i) {
        int k = Arrays.binarySearch(starts, i);
        if (k >= 0) {
            // i is the first token of shard k (skip empty shards that start at the same index)
            while (starts[k + 1] == i) {
                k++;
            }
            return k;
        }
        return -k - 2;
    }

    @Override
    public void close() {
        shards.forEach(TokenShard::close);
    }

    @Override
    public String toString() {
        return "TokenDataset[" + dir + ", " + split + ", " + shards.size() + " shards, " + count() + " tokens]";
    }
}
