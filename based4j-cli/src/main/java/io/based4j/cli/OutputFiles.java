package io.based4j.cli;

import io.based4j.json.Json;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.SecureRandom;
import java.util.Map;

/** The files a command is told to write (--out, --json): checked before any work starts, written whole or not at all. */
final class OutputFiles {
    private static final SecureRandom RANDOM = new SecureRandom();

    private OutputFiles() {
    }

    /**
     * Refuses {@code file} (given as {@code option}) unless a temporary file written beside it can be renamed over it:
     * its folder must exist and be writable, and the file, where it exists, must be a regular file (not a symbolic
     * link, a folder, a device or a pipe, which the rename would replace).
     */
    static void checkWritable(String option, Path file) {
        String what = option + " " + file;
        BasicFileAttributes attributes;
        try {
            attributes = Files.readAttributes(file, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        } catch (NoSuchFileException e) {
            attributes = null; // created by the write
        } catch (IOException e) {
            throw new IllegalArgumentException(what + ": " + Errors.describe(e));
        }
        if (attributes != null && !attributes.isRegularFile()) {
            String kind = attributes.isSymbolicLink() ? "a symbolic link" : attributes.isDirectory() ? "a directory"
                    : "not a regular file (a device, a pipe or a socket)";
            throw new IllegalArgumentException(what + ": is " + kind + "; give a regular file's path (the file is"
                    + " replaced whole)");
        }
        Path dir = file.toAbsolutePath().getParent();
        if (dir != null && !Files.isDirectory(dir)) {
            throw new IllegalArgumentException(what + ": directory " + dir + " does not exist");
        }
        if (dir != null && !Files.isWritable(dir)) {
            throw new IllegalArgumentException(what + ": directory " + dir + " is not writable");
        }
    }

    /** Writes a JSON document whole or not at all: a temporary file beside {@code json}, then a rename. */
    static void writeJson(Path json, Map<String, Object> doc) throws IOException {
        write(json, (Json.writePretty(doc) + "\n").getBytes(StandardCharsets.UTF_8));
    }

    /**
     * Writes {@code bytes} to {@code file} whole or not at all: a temporary file beside it, then a rename. The
     * temporary file is created as any new file is (its permissions follow the umask, so the result is readable as
     * the user's other files are), under a name no other writer picks.
     */
    static void write(Path file, byte[] bytes) throws IOException {
        Path dir = file.toAbsolutePath().getParent();
        Path tmp;
        while (true) {
            tmp = dir.resolve("." + file.getFileName() + "." + Long.toHexString(RANDOM.nextLong()) + ".tmp");
            try {
                Files.write(tmp, bytes, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
                break;
            } catch (FileAlreadyExistsException taken) {
                // another writer's temporary file: draw another name
            } catch (IOException e) {
                Files.deleteIfExists(tmp); // a partial file (a full disk)
                throw e;
            }
        }
        try {
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }
}
