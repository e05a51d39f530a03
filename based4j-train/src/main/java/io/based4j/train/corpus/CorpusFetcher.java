package io.based4j.train.corpus;

import io.based4j.json.IoErrors;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;
import java.util.regex.Pattern;

/**
 * Fetches corpus sources into a folder: {@code DIR/SOURCE/...txt}, one UTF-8 document a file, listed with their
 * provenance in {@code DIR/corpus.json} ({@link CorpusManifest}).
 *
 * <p>Package files are downloaded into {@code DIR/.downloads/} (verified against their pins, see
 * {@link Downloader}) and deleted once their source is complete, unless kept. Each document is written to a
 * temporary sibling and renamed into place; the manifest is rewritten after each source. A run is idempotent and
 * resumable: a source the manifest lists with the same pins and whose documents all match their recorded SHA-256
 * is only verified; an interrupted source is fetched again, keeping the documents already written. A file in the
 * way that this command did not write (it is neither identical to the document nor a document the manifest
 * records) is never overwritten: the run stops and names it. Files that are not documents are never touched.
 */
public final class CorpusFetcher {
    /** Folder of {@code DIR} that package files are downloaded into. */
    public static final String DOWNLOADS = ".downloads";
    private static final Pattern UNSAFE = Pattern.compile("[^A-Za-z0-9_.+-]");

    /** What happened to a source: {@code "fetched"} or {@code "verified"}, and its documents. */
    public record Result(CorpusSource source, String status, int documents, long bytes) {
    }

    private final Path dir;
    private final Registries registries;
    private final Downloader downloader;
    private final boolean keepDownloads;
    private final Consumer<String> progress;
    private CorpusManifest manifest;

    public CorpusFetcher(Path dir, Registries registries, Downloader downloader, boolean keepDownloads,
                         Consumer<String> progress) {
        this.dir = dir;
        this.registries = registries;
        this.downloader = downloader;
        this.keepDownloads = keepDownloads;
        this.progress = progress;
    }

    /**
     * Fetches (or verifies) each source in turn.
     *
     * @throws CorpusException naming the source on a download, checksum, archive or conflicting-file problem
     * @throws IllegalArgumentException when {@code DIR} is not a folder or its manifest is not valid
     * @throws UncheckedIOException naming the file when the folder cannot be written
     */
    public List<Result> fetch(List<CorpusSource> sources) {
        if (Files.exists(dir) && !Files.isDirectory(dir)) {
            throw new IllegalArgumentException(dir + ": exists and is not a directory");
        }
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create " + dir + ": " + IoErrors.reason(e), e);
        }
        CorpusManifest m = CorpusManifest.readIfPresent(dir);
        manifest = m == null ? CorpusManifest.empty() : m;
        List<Result> results = new ArrayList<>();
        for (CorpusSource s : sources) {
            results.add(fetch(s));
        }
        if (!keepDownloads) {
            deleteIfEmpty(dir.resolve(DOWNLOADS));
        }
        return results;
    }

    private Result fetch(CorpusSource s) {
        CorpusManifest.Source old = manifest.source(s.name()).orElse(null);
        List<String> pins = s.packages().stream().map(PackageFile::sha256).toList();
        if (old != null && old.packageSha256s().equals(pins)) {
            int missing = verify(s, old);
            if (missing == 0) {
                return new Result(s, "verified", old.documents().size(), old.bytes());
            }
            progress.accept(s.name() + ": " + missing + " document(s) missing, extracting them again");
        }
        Map<String, String> owned = new HashMap<>();
        if (old != null) {
            old.documents().forEach(d -> owned.put(d.path(), d.sha256()));
        }

        List<Path> archives = new ArrayList<>();
        List<Map<String, Object>> packages = new ArrayList<>();
        Path downloads = dir.resolve(DOWNLOADS);
        for (PackageFile p : s.packages()) {
            List<URI> candidates = registries.candidates(p);
            progress.accept(s.name() + ": " + p.describe() + " (" + String.format("%.1f", p.size() / 1e6) + " MB)");
            Downloader.Fetched f = downloader.fetch(s.name(), p, candidates, downloads);
            archives.add(f.file());
            Map<String, Object> pm = new LinkedHashMap<>();
            pm.put("registry", p.registry().label());
            pm.put("name", p.name());
            pm.put("version", p.version());
            pm.put("file", p.fileName());
            pm.put("sha256", p.sha256());
            pm.put("bytes", p.size());
            pm.put("url", (f.url() != null ? f.url() : candidates.getFirst()).toString());
            packages.add(pm);
        }

        List<CorpusManifest.Document> docs = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        List<Path> created = new ArrayList<>();
        String files = String.join(", ", archives.stream().map(a -> a.getFileName().toString()).toList());
        boolean ok = false;
        try {
            s.extractor().extract(archives, (path, text) -> {
                if (!text.isBlank()) { // markup that reduces to nothing is no document
                    docs.add(write(s, path, text, owned, seen, created));
                }
            });
            if (docs.isEmpty()) {
                throw new CorpusException("source " + s.name() + ": no documents found in " + files);
            }
            ok = true;
        } catch (IOException | UncheckedIOException e) {
            IOException io = e instanceof UncheckedIOException u ? u.getCause() : (IOException) e;
            throw new CorpusException("source " + s.name() + ": cannot read " + files + ": " + IoErrors.reason(io)
                    + " (damaged or truncated archive)", e);
        } catch (CorpusException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new CorpusException("source " + s.name() + ": cannot read " + files + ": " + e.getMessage(), e);
        } finally {
            if (!ok) {
                removeCreated(created); // a failed source leaves none of its new documents behind
            }
        }
        if (old != null) {
            deleteObsolete(old, seen);
        }
        manifest = manifest.with(new CorpusManifest.Source(s.name(), s.title(), s.licence(), s.version(), packages,
                docs), Sources.names());
        manifest.write(dir);
        if (!keepDownloads) {
            for (Path a : archives) {
                deleteQuietly(a);
            }
        }
        long bytes = docs.stream().mapToLong(CorpusManifest.Document::bytes).sum();
        return new Result(s, "fetched", docs.size(), bytes);
    }

    /**
     * Checks the documents a manifest lists for a source.
     *
     * @return how many are missing
     * @throws CorpusException naming a document that exists but no longer holds what was written
     */
    private int verify(CorpusSource s, CorpusManifest.Source entry) {
        int missing = 0;
        for (CorpusManifest.Document d : entry.documents()) {
            Path f = dir.resolve(d.path());
            if (!Files.isRegularFile(f)) {
                missing++;
                continue;
            }
            try {
                if (Files.size(f) != d.bytes() || !Downloader.sha256(f).equals(d.sha256())) {
                    throw new CorpusException("source " + s.name() + ": " + f + " was changed after it was fetched"
                            + " (its SHA-256 is not the one " + CorpusManifest.FILE + " records); move it away to"
                            + " fetch it again");
                }
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read " + f + ": " + IoErrors.reason(e), e);
            }
        }
        return missing;
    }

    /**
     * Writes a document (unless an identical file is there) and returns its manifest record; the files and folders
     * it creates are added to {@code created}, in order.
     */
    private CorpusManifest.Document write(CorpusSource s, String path, String text, Map<String, String> owned,
                                          Set<String> seen, List<Path> created) {
        String rel = s.name() + "/" + safePath(path);
        if (!seen.add(rel)) {
            String base = rel.substring(0, rel.length() - ".txt".length());
            int k = 2;
            while (!seen.add(rel = base + "-" + k + ".txt")) {
                k++;
            }
        }
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        String sha = Downloader.sha256(bytes);
        Path f = dir.resolve(rel);
        try {
            boolean existed = Files.exists(f);
            if (existed) {
                String present = Files.isRegularFile(f) ? Downloader.sha256(f) : "";
                if (present.equals(sha)) {
                    return new CorpusManifest.Document(rel, bytes.length, sha);
                }
                if (!present.equals(owned.get(rel))) {
                    throw new CorpusException("source " + s.name() + ": " + f + " is in the way: it holds something"
                            + " else and was not written by data fetch, so it is left alone (move it away, or"
                            + " choose another --out)");
                }
            }
            List<Path> newDirs = new ArrayList<>();
            for (Path d = f.getParent(); !Files.exists(d); d = d.getParent()) {
                newDirs.add(d);
            }
            Files.createDirectories(f.getParent());
            created.addAll(newDirs.reversed());
            Path tmp = f.resolveSibling(f.getFileName() + ".part");
            try {
                Files.write(tmp, bytes);
                Moves.intoPlace(tmp, f);
            } finally {
                Files.deleteIfExists(tmp);
            }
            if (!existed) {
                created.add(f);
            }
        } catch (IOException e) {
            throw new CorpusException("source " + s.name() + ": cannot write " + f + ": " + IoErrors.reason(e), e);
        }
        return new CorpusManifest.Document(rel, bytes.length, sha);
    }

    /** A document path made of safe segments ending in {@code .txt}: other characters become '_'. */
    static String safePath(String path) {
        List<String> parts = new ArrayList<>();
        for (String seg : path.split("/")) {
            if (seg.isEmpty() || seg.equals(".") || seg.equals("..")) {
                continue;
            }
            parts.add(UNSAFE.matcher(seg).replaceAll("_").replace("..", "_"));
        }
        String p = parts.isEmpty() ? "untitled" : String.join("/", parts);
        return p.endsWith(".txt") ? p : p + ".txt";
    }

    /** Deletes the documents of an earlier fetch of a source that this one no longer writes, if still as written. */
    private void deleteObsolete(CorpusManifest.Source old, Set<String> kept) {
        for (CorpusManifest.Document d : old.documents()) {
            if (kept.contains(d.path())) {
                continue;
            }
            Path f = dir.resolve(d.path());
            try {
                if (Files.isRegularFile(f) && Downloader.sha256(f).equals(d.sha256())) {
                    Files.delete(f);
                }
            } catch (IOException e) {
                progress.accept("could not delete " + f + ", a document an earlier fetch wrote: "
                        + IoErrors.reason(e));
            }
        }
    }

    /** Deletes the documents and folders a failed extraction created (folders only where left empty). */
    private void removeCreated(List<Path> created) {
        for (Path p : created.reversed()) {
            if (Files.isDirectory(p)) {
                deleteIfEmpty(p);
            } else {
                deleteQuietly(p);
            }
        }
    }

    private void deleteQuietly(Path f) {
        try {
            Files.deleteIfExists(f);
        } catch (IOException e) {
            progress.accept("could not delete the download " + f + ": " + IoErrors.reason(e));
        }
    }

    private static void deleteIfEmpty(Path d) {
        try {
            Files.deleteIfExists(d);
        } catch (DirectoryNotEmptyException e) {
            // holds something else: kept
        } catch (IOException e) {
            // kept; nothing depends on it
        }
    }
}
