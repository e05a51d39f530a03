package io.based4j.train.data;

import io.based4j.json.Json;
import io.based4j.json.JsonException;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The manifest {@code data.json} of a token folder: it names the folder's dataset, and a dataset is exactly the
 * shards its manifest lists.
 *
 * <p>Version 2 (written by {@code based4j data tokenize}):
 * <pre>
 *   {"format": "based4j-tokens", "version": 2, "vocab_size": 50257, "eos_token_id": 50256, ...,
 *    "train_tokens": 1234, "val_tokens": 56,
 *    "shards": {"train": [{"file": "train-3fa9c012-00000.bin", "tokens": 1234}],
 *               "val":   [{"file": "val-3fa9c012-00000.bin", "tokens": 56}]}}
 * </pre>
 * Every split lists its shards in order, each a file of the folder named {@code {split}-*.bin} with its token
 * count, and states its total in {@code {split}_tokens}; an empty split lists no shards. Version 1 manifests (older
 * builds) stated only counts: {@code {split}_shards = n} stands for {@code {split}-00000.bin ..} shard {@code n - 1}.
 * Everything is checked when the manifest is read; errors name the file.
 */
public final class TokenManifest {
    /** File name of the manifest in a token folder. */
    public static final String FILE = "data.json";
    /** Value of the manifest's {@code format} field. */
    public static final String FORMAT = "based4j-tokens";
    /** Version written by this build (version 1 is still read). */
    public static final int VERSION = 2;
    /** Largest manifest read: a manifest of millions of shards stays far below it. */
    static final long MAX_BYTES = 64L << 20;

    static final Pattern SPLIT = Pattern.compile("[A-Za-z0-9_.]+");
    private static final Pattern SHARD_FILE = Pattern.compile("([A-Za-z0-9_.]+)-[A-Za-z0-9_.-]*\\.bin");
    private static final Pattern V1_SHARDS_KEY = Pattern.compile("([A-Za-z0-9_.]+)_shards");
    /** Fields this class writes itself; {@link #write} refuses them among the caller's fields. */
    private static final Set<String> RESERVED = Set.of("format", "version", "shards");

    /** One shard of a split: its file name in the folder and its token count (-1 when a version-1 manifest). */
    public record Shard(String file, long tokens) {
    }

    private final Path file;
    private final Map<String, Object> fields;
    private final Map<String, List<Shard>> splits;
    private final Map<String, Long> tokens;

    private TokenManifest(Path file, Map<String, Object> fields, Map<String, List<Shard>> splits,
                          Map<String, Long> tokens) {
        this.file = file;
        this.fields = Collections.unmodifiableMap(fields);
        this.splits = Collections.unmodifiableMap(splits);
        this.tokens = Collections.unmodifiableMap(tokens);
    }

    /**
     * Reads and checks {@code dir/data.json}.
     *
     * @throws IllegalArgumentException naming the file when it is missing, not valid JSON or not a valid manifest
     * @throws java.io.UncheckedIOException naming the file when it cannot be read
     */
    public static TokenManifest read(Path dir) {
        TokenManifest m = readIfPresent(dir);
        if (m == null) {
            throw new IllegalArgumentException(dir.resolve(FILE) + ": no such file: " + dir + " is not a token folder"
                    + " (make one with 'based4j data tokenize'; its manifest data.json lists the shards)");
        }
        return m;
    }

    /** Like {@link #read} but null when the folder holds no {@code data.json} at all. */
    public static TokenManifest readIfPresent(Path dir) {
        Path file = dir.resolve(FILE);
        if (!Files.exists(file, LinkOption.NOFOLLOW_LINKS)) {
            return null;
        }
        if (!Files.isRegularFile(file)) {
            throw new IllegalArgumentException(file + ": not a regular file (expected a token manifest)");
        }
        String text;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size > MAX_BYTES) {
                throw new IllegalArgumentException(file + ": too large for a token manifest (" + size
                        + " bytes, at most " + MAX_BYTES + ")");
            }
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (CharacterCodingException e) {
            throw new IllegalArgumentException(file + ": not UTF-8 text (expected a token manifest)", e);
        } catch (IOException e) {
            throw TokenShard.ioError("cannot read", file, e);
        }
        Map<String, Object> m;
        try {
            m = Json.parseObject(text);
        } catch (JsonException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage(), e);
        }
        return parse(file, m);
    }

    /** Checks the fields of a manifest read from {@code file}. */
    static TokenManifest parse(Path file, Map<String, Object> m) {
        Object format = m.get("format");
        if (!FORMAT.equals(format)) {
            throw new IllegalArgumentException(file + ": not a based4j token manifest (format is "
                    + (format == null ? "missing" : Json.write(format)) + ", expected \"" + FORMAT + "\")");
        }
        Object version = m.get("version");
        if (!(version instanceof Long ver && (ver == 1 || ver == VERSION))) {
            throw new IllegalArgumentException(file + ": unsupported manifest version " + Json.write(version)
                    + " (this build reads versions 1 and " + VERSION + "; re-run 'based4j data tokenize')");
        }
        for (String key : List.of("vocab_size", "eos_token_id")) {
            Object v = m.get(key);
            if (v != null && !(v instanceof Long l && l >= 0 && l <= Integer.MAX_VALUE)) {
                throw new IllegalArgumentException(file + ": " + key + " must be a non-negative integer, got "
                        + Json.write(v));
            }
        }
        Map<String, List<Shard>> splits = (Long) version == 1 ? version1Splits(file, m) : version2Splits(file, m);
        Map<String, Long> tokens = new LinkedHashMap<>();
        Set<String> seen = new HashSet<>();
        for (Map.Entry<String, List<Shard>> e : splits.entrySet()) {
            String split = e.getKey();
            String key = split + "_tokens";
            if (!(m.get(key) instanceof Long total && total >= 0)) {
                throw new IllegalArgumentException(file + ": " + key + " must be a non-negative integer, got "
                        + Json.write(m.get(key)));
            }
            long sum = 0;
            boolean known = true;
            for (Shard s : e.getValue()) {
                if (!seen.add(s.file())) {
                    throw new IllegalArgumentException(file + ": lists shard " + s.file() + " twice");
                }
                known &= s.tokens() >= 0;
                sum += Math.max(0, s.tokens());
            }
            if (known && sum != total) {
                throw new IllegalArgumentException(file + ": " + key + " is " + total + " but its " + split
                        + " shards add up to " + sum + " tokens");
            }
            tokens.put(split, total);
        }
        return new TokenManifest(file, m, splits, tokens);
    }

    private static Map<String, List<Shard>> version2Splits(Path file, Map<String, Object> m) {
        if (!(m.get("shards") instanceof Map<?, ?> byName)) {
            throw new IllegalArgumentException(file + ": \"shards\" must be an object listing the shard files of"
                    + " each split, got " + Json.write(m.get("shards")));
        }
        Map<String, List<Shard>> splits = new LinkedHashMap<>();
        for (Map.Entry<?, ?> e : byName.entrySet()) {
            String split = (String) e.getKey();
            String where = file + ": shards." + split;
            if (!SPLIT.matcher(split).matches()) {
                throw new IllegalArgumentException(where + ": a split name uses only letters, digits, '_' or '.'");
            }
            if (!(e.getValue() instanceof List<?> list)) {
                throw new IllegalArgumentException(where + " must be a list, got " + Json.write(e.getValue()));
            }
            List<Shard> shards = new ArrayList<>(list.size());
            for (int i = 0; i < list.size(); i++) {
                String at = where + "[" + i + "]";
                if (!(list.get(i) instanceof Map<?, ?> entry)) {
                    throw new IllegalArgumentException(at + " must be an object {\"file\": ..., \"tokens\": ...}");
                }
                if (!(entry.get("file") instanceof String name) || !isShardFile(split, name)) {
                    throw new IllegalArgumentException(at + ".file must name a file of the folder called " + split
                            + "-*.bin, got " + Json.write(entry.get("file")));
                }
                if (!(entry.get("tokens") instanceof Long n && n >= 0)) {
                    throw new IllegalArgumentException(at + ".tokens must be a non-negative integer, got "
                            + Json.write(entry.get("tokens")));
                }
                shards.add(new Shard(name, n));
            }
            splits.put(split, List.copyOf(shards));
        }
        return splits;
    }

    private static Map<String, List<Shard>> version1Splits(Path file, Map<String, Object> m) {
        Map<String, List<Shard>> splits = new LinkedHashMap<>();
        for (Map.Entry<String, Object> e : m.entrySet()) {
            Matcher k = V1_SHARDS_KEY.matcher(e.getKey());
            if (!k.matches()) {
                continue;
            }
            // a shard count per split; 100,000 shards is the most the five-digit names of version 1 number
            if (!(e.getValue() instanceof Long n && n >= 0 && n <= 100_000)) {
                throw new IllegalArgumentException(file + ": " + e.getKey() + " must be a shard count in [0, 100000],"
                        + " got " + Json.write(e.getValue()));
            }
            List<Shard> shards = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                shards.add(new Shard(ShardWriter.shardName(k.group(1), i), -1));
            }
            splits.put(k.group(1), List.copyOf(shards));
        }
        return splits;
    }

    /** Whether {@code name} is an acceptable shard file name of {@code split}: a plain {@code {split}-*.bin}. */
    static boolean isShardFile(String split, String name) {
        Matcher f = SHARD_FILE.matcher(name);
        return f.matches() && name.startsWith(split + "-");
    }

    /**
     * Writes a manifest (version {@value #VERSION}) atomically: the JSON goes to {@code data.json.TAG.tmp}, which is
     * then renamed over {@code data.json}. {@code fields} are written after {@code format} and {@code version};
     * {@code shards} lists each split's shards, and {@code {split}_tokens} its total is set from them.
     *
     * @return the manifest as written
     */
    static TokenManifest write(Path dir, Map<String, Object> fields, Map<String, List<Shard>> splits, String tmpTag) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("format", FORMAT);
        m.put("version", (long) VERSION);
        for (Map.Entry<String, Object> e : fields.entrySet()) {
            if (RESERVED.contains(e.getKey()) || e.getKey().endsWith("_tokens") && splits.containsKey(
                    e.getKey().substring(0, e.getKey().length() - "_tokens".length()))) {
                throw new IllegalArgumentException("manifest field " + e.getKey() + " is set by the writer");
            }
            m.put(e.getKey(), e.getValue());
        }
        Map<String, Object> listed = new LinkedHashMap<>();
        for (Map.Entry<String, List<Shard>> e : splits.entrySet()) {
            long total = 0;
            List<Object> entries = new ArrayList<>();
            for (Shard s : e.getValue()) {
                total += s.tokens();
                Map<String, Object> entry = new LinkedHashMap<>();
                entry.put("file", s.file());
                entry.put("tokens", s.tokens());
                entries.add(entry);
            }
            m.put(e.getKey() + "_tokens", total);
            listed.put(e.getKey(), entries);
        }
        m.put("shards", listed);
        Path file = dir.resolve(FILE);
        // written through JSON and read back as JSON: the manifest in memory is exactly the one on disk
        String text = Json.writePretty(m) + "\n";
        TokenManifest written = parse(file, Json.parseObject(text));
        Path tmp = dir.resolve(FILE + "." + tmpTag + ".tmp");
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                TokenShard.writeFully(ch, StandardCharsets.UTF_8.encode(text), 0);
                ch.force(true);
            }
            TokenShard.moveAtomically(tmp, file);
        } catch (IOException e) {
            TokenShard.deleteQuietly(tmp);
            throw TokenShard.ioError("cannot write", file, e);
        }
        return written;
    }

    /** The manifest file. */
    public Path file() {
        return file;
    }

    /** The folder the manifest describes. */
    public Path dir() {
        return file.getParent();
    }

    /** All fields as read. */
    public Map<String, Object> fields() {
        return fields;
    }

    /** The splits the manifest declares, in manifest order. */
    public Set<String> splits() {
        return splits.keySet();
    }

    /** Whether the manifest declares {@code split} (possibly empty). */
    public boolean declares(String split) {
        return splits.containsKey(split);
    }

    /** Whether the manifest declares {@code split} as empty: no shards, no tokens. */
    public boolean declaresEmpty(String split) {
        return declares(split) && splits.get(split).isEmpty() && tokens.get(split) == 0;
    }

    /**
     * The shards of {@code split}, in order.
     *
     * @throws IllegalArgumentException naming the file when the manifest does not declare the split
     */
    public List<Shard> shards(String split) {
        List<Shard> s = splits.get(split);
        if (s == null) {
            throw new IllegalArgumentException(file + ": declares no " + split + " split (it has "
                    + (splits.isEmpty() ? "none" : String.join(", ", splits.keySet())) + ")");
        }
        return s;
    }

    /** Tokens of {@code split} as the manifest states them (see {@link #shards} for an undeclared split). */
    public long tokens(String split) {
        shards(split);
        return tokens.get(split);
    }

    /** Every shard file the manifest lists, over all splits. */
    public List<String> shardFiles() {
        List<String> all = new ArrayList<>();
        splits.values().forEach(l -> l.forEach(s -> all.add(s.file())));
        return all;
    }

    /** Vocabulary size, or -1 when the manifest does not say. */
    public int vocabSize() {
        return fields.get("vocab_size") instanceof Long l ? l.intValue() : -1;
    }

    /** End-of-text token id, or -1 when the manifest does not say. */
    public int eosTokenId() {
        return fields.get("eos_token_id") instanceof Long l ? l.intValue() : -1;
    }

    @Override
    public String toString() {
        return "TokenManifest[" + file + ", " + tokens + "]";
    }
}
