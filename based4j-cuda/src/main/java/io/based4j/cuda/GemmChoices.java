package io.based4j.cuda;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Which of the algorithms cuBLASLt's heuristic offers for a product was the fastest when timed ({@link CublasLt}'s
 * {@code timing}): kept for the process, so that every handle on the same kind of device takes the same algorithm for
 * the same product (and a training run's numbers do not depend on which handle ran it), and, where a file is given,
 * kept in it, so that a run resumed in a later process takes the same algorithms as the run it continues.
 *
 * <p>A choice is the index of the algorithm in the heuristic's answer together with the number of algorithms in that
 * answer, both for one product on one device name and one cuBLASLt version: the heuristic's answer is the same for
 * the same inputs, so the index names the same algorithm; a choice whose count no longer matches is timed again.
 *
 * <p>The file holds one line a choice, {@code key TAB index TAB count}, and is written whole beside itself then moved
 * over the old one, so that a reader never sees half of it, under a lock on {@code FILE.lock} beside it, so that two
 * processes never lose each other's choices; a choice another process made for the same product is taken (the first
 * choice made for a key stays). A file that cannot be read is not written over; one that cannot be written leaves
 * the choices in memory only ({@link #problem} says why). Thread-safe.
 */
public final class GemmChoices {

    /** The default file: {@code $XDG_CACHE_HOME/based4j/gemm-choices.tsv}, else {@code ~/.cache/based4j/...}. */
    public static Path defaultFile() {
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path base = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return base.resolve("based4j").resolve("gemm-choices.tsv");
    }

    /** A chosen algorithm: its index in the heuristic's answer of {@code count} algorithms. */
    public record Choice(int index, int count) {
        public Choice {
            if (index < 0 || index >= count) {
                throw new IllegalArgumentException("choice " + index + " of " + count + " algorithms");
            }
        }
    }

    private static final Map<Path, GemmChoices> BY_FILE = new HashMap<>();
    private static final GemmChoices IN_MEMORY = new GemmChoices(null);

    private final Path file;
    private final Map<String, Choice> choices = new HashMap<>();
    private boolean loaded;
    private String problem;

    private GemmChoices(Path file) {
        this.file = file;
    }

    /** The choices of this process kept in {@code file} (null: in memory only), one store a file. */
    public static GemmChoices of(Path file) {
        if (file == null) {
            return IN_MEMORY;
        }
        synchronized (BY_FILE) {
            return BY_FILE.computeIfAbsent(file.toAbsolutePath().normalize(), GemmChoices::new);
        }
    }

    /** A store of its own for {@code file} (null: in memory only), as another process would have it. */
    static GemmChoices unshared(Path file) {
        return new GemmChoices(file);
    }

    /** The file the choices are kept in, null for none. */
    public Path file() {
        return file;
    }

    /** Why the file could not be read or written the last time that failed, null where it never failed. */
    public synchronized String problem() {
        return problem;
    }

    /** The choice made for {@code key} (by this process or one that wrote the file), null for none. */
    public synchronized Choice get(String key) {
        load();
        return choices.get(key);
    }

    /**
     * Keeps {@code choice} for {@code key} unless a choice is kept for it already, here or in the file (then that one),
     * and returns the one kept; with a file, writes it there. {@code replace}: the choice replaces one kept before (a
     * choice made for another answer of the heuristic).
     */
    public synchronized Choice put(String key, Choice choice, boolean replace) {
        load();
        if (file == null) {
            return keep(key, choice, replace);
        }
        try (Locked ignored = lock()) {
            boolean read = readInto(choices, false);  // what other processes chose meanwhile
            Choice kept = keep(key, choice, replace);
            if (read) {
                save(replace ? key : null);
            }
            return kept;
        } catch (IOException e) {
            problem = "locking " + file + ": " + e.getMessage();
            return keep(key, choice, replace);
        }
    }

    /** {@link #put(String, Choice, boolean)} keeping a choice made before. */
    public Choice put(String key, Choice choice) {
        return put(key, choice, false);
    }

    /** {@code choice} for {@code key} in memory (over a kept one where {@code replace}); the choice now kept. */
    private Choice keep(String key, Choice choice, boolean replace) {
        if (replace) {
            choices.put(key, choice);
            return choice;
        }
        Choice kept = choices.putIfAbsent(key, choice);
        return kept != null ? kept : choice;
    }

    /** Choices kept now. */
    public synchronized int size() {
        load();
        return choices.size();
    }

    private void load() {
        if (loaded || file == null) {
            return;
        }
        loaded = true;
        readInto(choices, false);
    }

    /**
     * Adds the file's lines to {@code into}; where {@code fileWins}, a key the file holds takes the file's choice.
     * False where the file exists but could not be read (then it must not be written over).
     */
    private boolean readInto(Map<String, Choice> into, boolean fileWins) {
        if (!Files.exists(file)) {
            return true;
        }
        List<String> lines;
        try {
            lines = Files.readAllLines(file, StandardCharsets.UTF_8);
        } catch (IOException | UncheckedIOException e) {
            problem = "reading " + file + ": " + e.getMessage();
            return false;
        }
        for (String line : lines) {
            Map.Entry<String, Choice> e = parse(line);
            if (e == null) {
                continue;  // a line this version does not read: the product is timed again
            }
            if (fileWins) {
                into.put(e.getKey(), e.getValue());
            } else {
                into.putIfAbsent(e.getKey(), e.getValue());
            }
        }
        return true;
    }

    /** A lock on {@code FILE.lock} beside the file, held while it is read, merged and written: one writer at a time. */
    private Locked lock() throws IOException {
        Path dir = file.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        FileChannel channel = FileChannel.open(dir.resolve(file.getFileName() + ".lock"), StandardOpenOption.CREATE,
                StandardOpenOption.WRITE);
        try {
            FileLock lock = channel.lock();
            return () -> {
                try {
                    lock.release();
                } finally {
                    channel.close();
                }
            };
        } catch (IOException | RuntimeException e) {
            channel.close();
            throw e;
        }
    }

    /** A held lock. */
    private interface Locked extends AutoCloseable {
        @Override
        void close() throws IOException;
    }

    /** One line of the file, null where it is not {@code key TAB index TAB count}. */
    static Map.Entry<String, Choice> parse(String line) {
        String[] f = line.split("\t", -1);
        if (f.length != 3 || f[0].isEmpty()) {
            return null;
        }
        try {
            return Map.entry(f[0], new Choice(Integer.parseInt(f[1]), Integer.parseInt(f[2])));
        } catch (IllegalArgumentException e) {
            return null;
        }
    }

    /**
     * Writes every choice, the file's own first (a key another process chose meanwhile keeps that choice), except
     * {@code replaced}, whose choice is this process's (null for none). Called with the lock held.
     */
    private void save(String replaced) {
        Map<String, Choice> merged = new TreeMap<>(choices);
        readInto(merged, true);
        if (replaced != null) {
            merged.put(replaced, choices.get(replaced));
        }
        merged.forEach(choices::putIfAbsent);  // this process keeps the choices its plans use
        List<String> lines = new ArrayList<>(merged.size());
        merged.forEach((k, c) -> lines.add(k + "\t" + c.index() + "\t" + c.count()));
        Path tmp = null;
        try {
            Files.createDirectories(file.toAbsolutePath().getParent());
            tmp = Files.createTempFile(file.toAbsolutePath().getParent(), file.getFileName() + ".", ".tmp");
            Files.write(tmp, lines, StandardCharsets.UTF_8);
            try {
                Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rw-r--r--"));
            } catch (UnsupportedOperationException e) {
                // not a POSIX file system: the default permissions
            }
            try {
                Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
            }
            tmp = null;
        } catch (IOException | RuntimeException e) {
            problem = "writing " + file + ": " + e.getMessage();
        } finally {
            if (tmp != null) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // the temporary file is ours; nothing else to undo
                }
            }
        }
    }
}
