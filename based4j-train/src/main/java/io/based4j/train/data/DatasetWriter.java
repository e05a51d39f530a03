package io.based4j.train.data;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Pattern;

/**
 * Writes a token dataset into a folder beside whatever the folder already holds, and swaps it in only when complete.
 *
 * <p>The shards of this write get names unique to it ({@code {split}-{tag}-00000.bin}, the tag chosen so that no
 * file of the folder contains it). {@link #commit} finishes them and renames a new {@code data.json} listing them
 * over the old one: that rename is the swap. Only then are the shards the old manifest listed deleted (those, and
 * nothing else). Until the swap the old dataset stays exactly as it was; a write that fails or is abandoned
 * ({@link #close()} without {@link #commit}, or the JVM shutting down) deletes the files it wrote, and the folders
 * it created if they are left empty. Files it did not write are never touched. Not thread-safe.
 */
public final class DatasetWriter implements AutoCloseable {
    private final Path dir;
    private final long shardTokens;
    private final String tag;
    private final Pattern mine;
    private final TokenManifest old;
    private final List<Path> created;
    private final Map<String, ShardWriter> splits = new LinkedHashMap<>();
    private final Object lock = new Object();
    private final Thread cleanupOnExit;
    private FileChannel marker;
    private boolean committed;
    private boolean finished;

    /** What a folder holds before a dataset is written into it. */
    public record Contents(Path dir, TokenManifest manifest, List<String> shardFiles, List<String> others) {
        /** Whether the folder is missing or holds nothing. */
        public boolean isEmpty() {
            return manifest == null && others.isEmpty();
        }

        /** In words, e.g. "a token dataset (data.json and 3 shard files) and 2 other entries (a.txt, notes)". */
        public String describe() {
            if (isEmpty()) {
                return "nothing";
            }
            if (manifest == null) {
                return entries(others, "");
            }
            String ds = "a token dataset (" + TokenManifest.FILE + " and " + shardFiles.size() + " shard file"
                    + (shardFiles.size() == 1 ? "" : "s") + ")";
            return others.isEmpty() ? ds : ds + " and " + entries(others, "other ");
        }

        /** E.g. "4 other entries (a.txt, b.txt, notes, ...)". */
        private static String entries(List<String> names, String other) {
            int shown = Math.min(3, names.size());
            return names.size() + " " + other + (names.size() == 1 ? "entry" : "entries") + " ("
                    + String.join(", ", names.subList(0, shown)) + (names.size() > shown ? ", ..." : "") + ")";
        }
    }

    /** The names of the files a write with this tag creates: shards, their temporary files, the manifest's. */
    private static Pattern filesOf(String tag) {
        return Pattern.compile("[A-Za-z0-9_.]+-" + tag + "-[0-9]{5,}\\.bin(\\.tmp)?|"
                + Pattern.quote(TokenManifest.FILE + "." + tag + ".tmp"));
    }

    /** The marker a write holds locked for its whole life: {@code .data.json.TAG.writing}. */
    private static final Pattern MARKER = Pattern.compile("\\." + Pattern.quote(TokenManifest.FILE)
            + "\\.([0-9a-f]{8})\\.writing");

    private static Path markerOf(Path dir, String tag) {
        return dir.resolve("." + TokenManifest.FILE + "." + tag + ".writing");
    }

    private DatasetWriter(Path dir, long shardTokens, String tag, TokenManifest old, List<Path> created) {
        this.dir = dir;
        this.shardTokens = shardTokens;
        this.tag = tag;
        this.mine = filesOf(tag);
        this.old = old;
        this.created = created;
        this.cleanupOnExit = new Thread(this::discardOnExit, "discard unfinished token dataset " + dir);
    }

    /**
     * Lists what {@code dir} holds: its dataset (the manifest and the listed shards that exist) and everything else.
     *
     * @throws IllegalArgumentException when {@code dir} is not a directory, or its {@code data.json} is not a valid
     *                                  token manifest (naming the file)
     * @throws java.io.UncheckedIOException naming the folder when it cannot be listed
     */
    public static Contents inspect(Path dir) {
        if (!Files.exists(dir)) {
            return new Contents(dir, null, List.of(), List.of());
        }
        if (!Files.isDirectory(dir)) {
            throw new IllegalArgumentException(dir + ": exists and is not a directory");
        }
        List<String> names = list(dir);
        TokenManifest manifest = TokenManifest.readIfPresent(dir);
        Set<String> listed = manifest == null ? Set.of() : new HashSet<>(manifest.shardFiles());
        List<String> shards = new ArrayList<>();
        List<String> others = new ArrayList<>();
        for (String n : names) {
            if (listed.contains(n)) {
                shards.add(n);
            } else if (manifest == null || !n.equals(TokenManifest.FILE)) {
                others.add(n);
            }
        }
        return new Contents(dir, manifest, List.copyOf(shards), List.copyOf(others));
    }

    /**
     * Starts a dataset in {@code dir} (created if missing), checking first that files can be created there.
     *
     * @param shardTokens tokens per shard file, at least 1
     * @throws IllegalArgumentException when {@code dir} is not a directory or its {@code data.json} is not a valid
     *                                  token manifest (naming the file)
     * @throws java.io.UncheckedIOException naming the folder when it cannot be created or written
     */
    public static DatasetWriter create(Path dir, long shardTokens) {
        Objects.requireNonNull(dir, "dir");
        if (shardTokens < 1) {
            throw new IllegalArgumentException("tokens per shard must be >= 1, got " + shardTokens);
        }
        sweepAbandoned(dir);
        TokenManifest old = inspect(dir).manifest();
        List<Path> created = createDirectories(dir);
        try {
            String tag = uniqueTag(dir);
            FileChannel marker = holdMarker(dir, tag);
            DatasetWriter w = new DatasetWriter(dir, shardTokens, tag, old, created);
            w.marker = marker;
            Runtime.getRuntime().addShutdownHook(w.cleanupOnExit);
            return w;
        } catch (RuntimeException | Error e) {
            removeIfEmpty(created);
            throw e;
        }
    }

    /**
     * Writes a dataset of two splits, each one shard (none when empty), replacing the dataset {@code dir} holds.
     *
     * @return the manifest written
     */
    public static TokenManifest writeAll(Path dir, int[] train, int[] val) {
        return writeAll(dir, train, val, Map.of());
    }

    /**
     * Like {@link #writeAll(Path, int[], int[])}, with more manifest fields (e.g. {@code vocab_size} and
     * {@code eos_token_id} of the tokenizer that made the tokens).
     */
    public static TokenManifest writeAll(Path dir, int[] train, int[] val, Map<String, Object> fields) {
        try (DatasetWriter w = create(dir, Long.MAX_VALUE)) {
            w.split("train").append(train);
            w.split("val").append(val);
            return w.commit(fields).manifest();
        }
    }

    /** The folder written into. */
    public Path dir() {
        return dir;
    }

    /** The manifest the folder held when this write started, or null. */
    public TokenManifest replaced() {
        return old;
    }

    /**
     * The writer of split {@code name}'s shards (one per split; the manifest declares the splits in the order
     * they were first asked for).
     */
    public ShardWriter split(String name) {
        ensureOpen();
        if (!TokenManifest.SPLIT.matcher(name).matches()) {
            throw new IllegalArgumentException("split name \"" + name
                    + "\" must be non-empty and use only letters, digits, '_' or '.'");
        }
        return splits.computeIfAbsent(name, n -> new ShardWriter(dir, n + "-" + tag, shardTokens, this::gate));
    }

    /** What {@link #commit} did: the manifest written, the replaced shards deleted, and those that could not be. */
    public record Committed(TokenManifest manifest, List<Path> deleted, List<String> notDeleted) {
    }

    /**
     * Finishes the shards, swaps the new manifest in (atomically), then deletes the shards the replaced manifest
     * listed. {@code fields} go into the manifest beside those the writer sets (format, version, shard lists and
     * per-split token totals).
     *
     * @throws IllegalStateException when {@code data.json} changed since this write started (another write into the
     *                               same folder); nothing is swapped, and closing the writer deletes this write's
     *                               files
     */
    public Committed commit(Map<String, Object> fields) {
        ensureOpen();
        Map<String, List<TokenManifest.Shard>> lists = new LinkedHashMap<>();
        for (Map.Entry<String, ShardWriter> e : splits.entrySet()) {
            e.getValue().close();
            lists.put(e.getKey(), e.getValue().entries());
        }
        TokenManifest written;
        synchronized (lock) {
            TokenManifest now = TokenManifest.readIfPresent(dir);
            if (!sameManifest(old, now)) {
                throw new IllegalStateException(dir.resolve(TokenManifest.FILE) + ": changed while this dataset was"
                        + " being written (another write into the same folder?); it is left as it is and this"
                        + " write's shards are removed");
            }
            written = TokenManifest.write(dir, fields, lists, tag);
            committed = true;
            finished = true;
            releaseMarker();
        }
        removeShutdownHook();
        List<Path> deleted = new ArrayList<>();
        List<String> notDeleted = new ArrayList<>();
        if (old != null) {
            Set<String> keep = new HashSet<>(written.shardFiles());
            for (String name : old.shardFiles()) {
                if (keep.contains(name)) {
                    continue;
                }
                Path p = dir.resolve(name);
                try {
                    if (Files.deleteIfExists(p)) {
                        deleted.add(p);
                    }
                } catch (IOException e) {
                    notDeleted.add(p + ": " + TokenShard.reason(e));
                }
            }
        }
        return new Committed(written, List.copyOf(deleted), List.copyOf(notDeleted));
    }

    /** Without a {@link #commit}: deletes every file this write created (the old dataset is untouched). */
    @Override
    public void close() {
        synchronized (lock) {
            if (finished) {
                return;
            }
            finished = true;
            splits.values().forEach(ShardWriter::abort);
            discardFiles();
        }
        removeShutdownHook();
    }

    private void ensureOpen() {
        if (finished) {
            throw new IllegalStateException("the dataset write into " + dir + " is already "
                    + (committed ? "committed" : "abandoned"));
        }
    }

    /**
     * Creates or renames a file of this write unless the write was abandoned meanwhile: the lock orders it before or
     * after {@link #discardOnExit}, whose sweep therefore sees every file created.
     */
    private void gate(ShardWriter.IoStep step) throws IOException {
        synchronized (lock) {
            if (finished) {
                throw new IOException("the dataset write was abandoned (the program is stopping)");
            }
            step.run();
        }
    }

    /** At JVM shutdown (an interrupted run) the files of an unfinished write are deleted. */
    private void discardOnExit() {
        synchronized (lock) {
            if (!finished) {
                finished = true;
                discardFiles();
            }
        }
    }

    /**
     * Deletes the files named with this write's tag (shards, their temporary files, the manifest's), its marker, and
     * the folders it created when they are left empty.
     */
    private void discardFiles() {
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
            for (Path p : ds) {
                if (mine.matcher(p.getFileName().toString()).matches()) {
                    TokenShard.deleteQuietly(p);
                }
            }
        } catch (IOException | RuntimeException e) {
            // best effort: the shard writers have already deleted what they knew of
        }
        releaseMarker();
        removeIfEmpty(created);
    }

    /** Ends this write's claim on its files: closes (which unlocks) and deletes its marker. */
    private void releaseMarker() {
        if (marker == null) {
            return;
        }
        try {
            marker.close();
        } catch (IOException e) {
            // closing drops the lock whatever happens; the marker is deleted next
        }
        marker = null;
        TokenShard.deleteQuietly(markerOf(dir, tag));
    }

    private void removeShutdownHook() {
        try {
            Runtime.getRuntime().removeShutdownHook(cleanupOnExit);
        } catch (IllegalStateException e) {
            // the JVM is shutting down already
        }
    }

    private static boolean sameManifest(TokenManifest a, TokenManifest b) {
        return a == null ? b == null : b != null && a.fields().equals(b.fields());
    }

    private static List<String> list(Path dir) {
        List<String> names = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
            for (Path p : ds) {
                names.add(p.getFileName().toString());
            }
        } catch (IOException e) {
            throw TokenShard.ioError("cannot list the folder", dir, e);
        }
        names.sort(null);
        return names;
    }

    /** Creates {@code dir} and any missing parents; returns those created, innermost first. */
    private static List<Path> createDirectories(Path dir) {
        List<Path> missing = new ArrayList<>();
        for (Path p = dir.toAbsolutePath(); p != null && !Files.exists(p); p = p.getParent()) {
            missing.add(p);
        }
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw TokenShard.ioError("cannot create the folder", dir, e);
        }
        return List.copyOf(missing);
    }

    private static void removeIfEmpty(List<Path> createdInnermostFirst) {
        for (Path p : createdInnermostFirst) {
            try {
                Files.deleteIfExists(p);
            } catch (IOException e) {
                return; // not empty (or not ours to remove any more): keep it and its parents
            }
        }
    }

    /** Eight hex digits that no name in {@code dir} contains. */
    private static String uniqueTag(Path dir) {
        List<String> names = list(dir);
        while (true) {
            String tag = String.format("%08x", ThreadLocalRandom.current().nextInt());
            if (names.stream().noneMatch(n -> n.contains(tag))) {
                return tag;
            }
        }
    }

    /**
     * Creates this write's marker and locks it for the write's life; creating it also shows, before any work, that
     * files can be created in the folder.
     */
    private static FileChannel holdMarker(Path dir, String tag) {
        Path file = markerOf(dir, tag);
        FileChannel ch = null;
        try {
            ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
            if (ch.tryLock() == null) {
                throw new IOException("cannot lock it");
            }
            return ch;
        } catch (IOException e) {
            if (ch != null) {
                try {
                    ch.close();
                } catch (IOException ignored) {
                    // reported below
                }
            }
            TokenShard.deleteQuietly(file);
            throw TokenShard.ioError("cannot create files in the folder", dir, e);
        }
    }

    /**
     * Deletes what earlier writes into {@code dir} left when their process was killed (no chance to clean up): the
     * files named with the tag of a marker that no live process holds locked, and the marker. Writes still running
     * (in this process or another) are left alone.
     *
     * @return the names of the files deleted
     */
    public static List<String> sweepAbandoned(Path dir) {
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        List<String> names = list(dir);
        List<String> deleted = new ArrayList<>();
        for (String name : names) {
            java.util.regex.Matcher m = MARKER.matcher(name);
            if (!m.matches()) {
                continue;
            }
            Path marker = dir.resolve(name);
            try (FileChannel ch = FileChannel.open(marker, StandardOpenOption.WRITE)) {
                if (ch.tryLock() == null) {
                    continue; // held by a live write in another process
                }
                Pattern files = filesOf(m.group(1));
                for (String n : names) {
                    if (files.matcher(n).matches() && Files.deleteIfExists(dir.resolve(n))) {
                        deleted.add(n);
                    }
                }
                Files.deleteIfExists(marker);
            } catch (java.nio.channels.OverlappingFileLockException e) {
                // held by a live write in this process
            } catch (IOException e) {
                throw TokenShard.ioError("cannot clear what an interrupted write left", marker, e);
            }
        }
        return List.copyOf(deleted);
    }
}
