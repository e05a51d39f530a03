package io.based4j.checkpoint;

import java.nio.file.Path;

/**
 * A checkpoint file that cannot be read or written. Every message starts with the name of the file concerned,
 * and names the tensor key (or archive entry, or pickle global) when one is involved.
 */
public final class CheckpointException extends RuntimeException {
    public CheckpointException(String message) {
        super(message);
    }

    public CheckpointException(String message, Throwable cause) {
        super(message, cause);
    }

    /** "{file name}: {what}". */
    static CheckpointException of(Path file, String what) {
        return new CheckpointException(name(file) + ": " + what);
    }

    /** "{file name}: {what}", keeping {@code cause}. */
    static CheckpointException of(Path file, String what, Throwable cause) {
        return new CheckpointException(name(file) + ": " + what, cause);
    }

    /** "{file name}: tensor '{key}': {what}". */
    static CheckpointException ofTensor(Path file, String key, String what) {
        return new CheckpointException(name(file) + ": tensor '" + key + "': " + what);
    }

    /** "{file name}: tensor '{key}': {what}", keeping {@code cause}. */
    static CheckpointException ofTensor(Path file, String key, String what, Throwable cause) {
        return new CheckpointException(name(file) + ": tensor '" + key + "': " + what, cause);
    }

    /** The name a message uses for {@code file}: its last path element. */
    static String name(Path file) {
        Path name = file.getFileName();
        return name == null ? file.toString() : name.toString();
    }
}
