package io.based4j.cli;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;

/** Turns exceptions into one readable line. */
final class Errors {
    private Errors() {
    }

    static String describe(Throwable ex) {
        Throwable t = ex;
        while ((t instanceof UncheckedIOException || t.getClass() == RuntimeException.class) && t.getCause() != null
                && String.valueOf(t.getMessage()).equals(String.valueOf(t.getCause()))) { // a bare wrapper
            t = t.getCause();
        }
        if (t instanceof NoSuchFileException n) {
            return n.getFile() + ": no such file";
        }
        if (t instanceof AccessDeniedException a) {
            return a.getFile() + ": permission denied";
        }
        if (t instanceof OutOfMemoryError) {
            return "out of memory (raise the heap with JAVA_OPTS=-Xmx...): " + t.getMessage();
        }
        String msg = t.getMessage();
        if (msg == null || msg.isBlank()) {
            return t.getClass().getSimpleName();
        }
        if (t instanceof IOException) {
            return "I/O error: " + msg;
        }
        return msg;
    }
}
