package io.based4j.train;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/** Files of a run written beside and renamed into place, so a reader sees the old content or the new, never half. */
final class AtomicFiles {
    private AtomicFiles() {
    }

    /** The sibling a file is written to before it is renamed into place. */
    static Path temporary(Path file) {
        return file.resolveSibling(file.getFileName() + ".tmp");
    }

    /** Writes {@code bytes} to {@code file} through its temporary sibling, flushed to disk before the rename. */
    static void write(Path file, byte[] bytes) {
        Path tmp = temporary(file);
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                    StandardOpenOption.TRUNCATE_EXISTING)) {
                ByteBuffer buf = ByteBuffer.wrap(bytes);
                while (buf.hasRemaining()) {
                    ch.write(buf);
                }
                ch.force(true);
            }
            move(tmp, file);
        } catch (IOException e) {
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException ignored) {
                // the run's next start removes it
            }
            throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
        }
    }

    /** Renames {@code from} to {@code to}; an error names both. */
    static void rename(Path from, Path to) {
        try {
            move(from, to);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot rename " + from + " to " + to + ": " + e.getMessage(), e);
        }
    }

    /** Renames {@code from} to {@code to} (replacing a file there), atomically where the file system can. */
    private static void move(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
        }
    }
}
