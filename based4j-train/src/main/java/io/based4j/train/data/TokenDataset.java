package io.based4j.train.data;

import io.based4j.json.Json;
import io.based4j.json.JsonException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * One split ({@code train}, {@code val}, ...) of a tokenized corpus: the shards {@code DIR/{split}-*.bin}, taken in
 * file-name order and read as one concatenated token sequence.
 *
 * <p>The directory's manifest {@code data.json} (written by {@code based4j data tokenize}) is optional; when it is
 * present its {@code format} must be {@code based4j-tokens}, and a {@code {split}_tokens} count in it must match
 * the shards (so stale or missing shards are caught). Thread-safe for reads.
 */
public final class TokenDataset implements AutoCloseable {
    /** File name of the manifest in a token directory. */
    public static final String MANIFEST = "data.json";
    /** Value of the manifest's {@code format} field. */
    public static final String FORMAT = "based4j-tokens";
    private static final Pattern SPLIT = Pattern.compile("[A-Za-z0-9_.]+");

    private final Path dir;
    private final String split;
    private final List<TokenShard> shards;
    /** starts[i] = index of shard i's first token; starts[n] = total count. */
    private final long[] starts;
    private final Map<String, Object> manifest;

    private TokenDataset(Path dir, String split, List<TokenShard> shards, Map<String, Object> manifest) {
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
     * Opens every {@code dir/{split}-*.bin} shard.
     *
     * @throws IllegalArgumentException when the directory is missing, holds no shard of the split, a shard is
     *                                  invalid, or the manifest is invalid or disagrees with the shards
     */
    public static TokenDataset open(Path dir, String split) {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(split, "split");
        if (!SPLIT.matcher(split).matches()) {
            throw new IllegalArgumentException("split name \"" + split
                    + "\" must be non-empty and use only letters, digits, '_' or '.'");
        }
        if (!Files.isDirectory(dir)) {
            throw new IllegalArgumentException(dir + ": " + (Files.exists(dir) ? "not a directory" : "no such directory")
                    + " (expected a token directory written by 'based4j data tokenize')");
        }
        List<Path> files = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, split + "-*.bin")) {
            for (Path p : ds) {
                if (Files.isRegularFile(p)) {
                    files.add(p);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + dir + ": " + e.getMessage(), e);
        }
        if (files.isEmpty()) {
            throw new IllegalArgumentException("no " + split + " shards in " + dir + " (expected " + split + "-*.bin)");
        }
        files.sort(Comparator.comparing(p -> p.getFileName().toString()));
        Map<String, Object> manifest = readManifest(dir);
        List<TokenShard> shards = new ArrayList<>(files.size());
        try {
            for (Path f : files) {
                shards.add(TokenShard.open(f));
            }
            TokenDataset ds = new TokenDataset(dir, split, shards, manifest);
            Object declared = manifest.get(split + "_tokens");
            if (declared != null && !(declared instanceof Long l && l == ds.count())) {
                throw new IllegalArgumentException(dir.resolve(MANIFEST) + ": says " + split + "_tokens = " + declared
                        + " but the " + files.size() + " " + split + " shard(s) hold " + ds.count()
                        + " tokens (stale or missing shards? re-run 'based4j data tokenize')");
            }
            return ds;
        } catch (RuntimeException | Error e) {
            shards.forEach(TokenShard::close);
            throw e;
        }
    }

    /**
     * Reads {@code dir/data.json}; an empty map when there is none.
     *
     * @throws IllegalArgumentException naming the file when it is not valid JSON or not a based4j token manifest
     */
    public static Map<String, Object> readManifest(Path dir) {
        Path file = dir.resolve(MANIFEST);
        if (!Files.isRegularFile(file)) {
            return Map.of();
        }
        Map<String, Object> m;
        try {
            m = Json.parseObject(Files.readString(file, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        } catch (JsonException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage(), e);
        }
        Object format = m.get("format");
        if (format != null && !FORMAT.equals(format)) {
            throw new IllegalArgumentException(file + ": format is \"" + format + "\", expected \"" + FORMAT + "\"");
        }
        for (String key : List.of("vocab_size", "eos_token_id")) {
            Object v = m.get(key);
            if (v != null && !(v instanceof Long l && l >= 0 && l <= Integer.MAX_VALUE)) {
                throw new IllegalArgumentException(file + ": " + key + " must be a non-negative integer, got "
                        + Json.write(v));
            }
        }
        return Collections.unmodifiableMap(m);
    }

    /** Writes {@code dir/data.json} atomically (pretty-printed JSON, via {@code data.json.tmp}). */
    public static void writeManifest(Path dir, Map<String, Object> manifest) {
        Path file = dir.resolve(MANIFEST);
        Path tmp = TokenShard.tmpPath(file);
        try {
            Files.writeString(tmp, Json.writePretty(manifest) + "\n", StandardCharsets.UTF_8,
                    StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE);
            TokenShard.moveAtomically(tmp, file);
        } catch (IOException e) {
            TokenShard.deleteQuietly(tmp);
            throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
        }
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

    /** The manifest's fields (empty when the directory has no {@code data.json}). */
    public Map<String, Object> manifest() {
        return manifest;
    }

    /** Vocabulary size from the manifest, or -1 when there is no manifest or it does not say. */
    public int vocabSize() {
        return manifest.get("vocab_size") instanceof Long l ? l.intValue() : -1;
    }

    /** End-of-text token id from the manifest, or -1 when there is no manifest or it does not say. */
    public int eosTokenId() {
        return manifest.get("eos_token_id") instanceof Long l ? l.intValue() : -1;
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
