package io.based4j.cli;

/**
 * A command-line argument that parsed but is not acceptable (a count below 1, an unknown device, two options that
 * exclude each other). Reported like a parse error: one line, a hint to {@code --help}, exit code 2.
 */
final class UsageException extends RuntimeException {
    UsageException(String message) {
        super(message);
    }
}
