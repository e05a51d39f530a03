package io.based4j.cli;

import io.based4j.json.IoErrors;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.UndeclaredThrowableException;
import java.util.Locale;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import picocli.CommandLine;

/**
 * Turns any {@link Throwable} into one readable line: what went wrong and, where it helps, what to do. The line
 * never holds a Java class name (the stack trace, with {@code --debug}, has them); I/O errors name their file.
 */
final class Errors {
    /** A fully qualified exception or error class name, with the ": " that usually follows it in a message. */
    private static final Pattern CLASS_NAME =
            Pattern.compile("\\b(?:[a-z_][a-z0-9_]*\\.)+([A-Z][A-Za-z0-9_$]*(?:Exception|Error))\\b(?::\\s*)?");

    private static final String DEBUG_HINT = "run with --debug for the stack trace";

    private Errors() {
    }

    static String describe(Throwable ex) {
        Throwable t = unwrap(ex);
        return switch (t) {
            case OutOfMemoryError e -> outOfMemory(e);
            case StackOverflowError e -> "ran out of stack space, most likely on input nested too deeply (raise the"
                    + " stack size with JAVA_OPTS=-Xss16m if the input is genuine)";
            case UncheckedIOException e -> wrappedIo(e);
            case IOException e -> scrub(IoErrors.describe(e));
            case NumberFormatException e -> "not a number" + quotedInput(e.getMessage());
            case ArithmeticException e when "integer overflow".equals(e.getMessage()) || "long overflow".equals(e.getMessage()) ->
                    "a size is too large to compute (integer overflow); " + DEBUG_HINT;
            case ClassCastException e -> "internal error: a value has an unexpected type; " + DEBUG_HINT;
            case LinkageError e when t.getMessage() != null -> "cannot load a library: " + scrub(t.getMessage());
            case Error e -> "internal error" + (blank(e.getMessage()) ? "" : ": " + scrub(e.getMessage()))
                    + "; " + DEBUG_HINT;
            default -> blank(t.getMessage()) ? "internal error with no message; " + DEBUG_HINT : scrub(t.getMessage());
        };
    }

    /** Looks through wrappers that only carry another exception. */
    private static Throwable unwrap(Throwable ex) {
        Throwable t = ex;
        while (t.getCause() != null && t.getCause() != t && isWrapper(t)) {
            t = t.getCause();
        }
        return t;
    }

    private static boolean isWrapper(Throwable t) {
        boolean carrier = t instanceof ExceptionInInitializerError || t instanceof InvocationTargetException
                || t instanceof UndeclaredThrowableException || t instanceof ExecutionException
                || t instanceof CompletionException || t instanceof CommandLine.ExecutionException;
        boolean plain = t.getClass() == RuntimeException.class || t instanceof UncheckedIOException;
        // a wrapper made from its cause alone has the cause's toString() as message: it adds nothing
        return carrier || (plain && (blank(t.getMessage()) || t.getMessage().equals(t.getCause().toString())));
    }

    /** An {@link UncheckedIOException} whose message says what was being done: that, and the reason. */
    private static String wrappedIo(UncheckedIOException e) {
        String msg = scrub(e.getMessage());
        String reason = IoErrors.reason(e.getCause());
        return msg.contains(reason) ? msg : msg + " (" + reason + ")";
    }

    private static String outOfMemory(OutOfMemoryError e) {
        String what = e.getMessage() == null ? "" : e.getMessage();
        if (what.contains("array size")) {
            return "out of memory: the input needs an array larger than Java allows; use a smaller input, batch or"
                    + " context";
        }
        if (what.contains("Direct buffer")) {
            return "out of memory for direct buffers; raise the limit with JAVA_OPTS=-XX:MaxDirectMemorySize=<size>"
                    + " (e.g. 8g), or use a smaller model, batch or context";
        }
        long maxMiB = Runtime.getRuntime().maxMemory() >> 20;
        return String.format(Locale.ROOT, "out of memory (the Java heap is limited to %,d MiB); give it more with"
                + " JAVA_OPTS=-Xmx<size> (e.g. JAVA_OPTS=-Xmx%dg), or use a smaller model, batch or context", maxMiB,
                Math.max(2, 2 * ((maxMiB + 1023) >> 10)));
    }

    /** {@code ": \"abc\""} from a number format message ({@code For input string: "abc"}), or nothing. */
    private static String quotedInput(String message) {
        if (message == null) {
            return "";
        }
        int open = message.indexOf('"');
        int close = message.lastIndexOf('"');
        return open >= 0 && close > open ? ": " + message.substring(open, close + 1) : "";
    }

    /**
     * Replaces Java exception class names inside a message (as {@code "" + exception} puts them there) by words:
     * {@code "cannot read: java.nio.file.NoSuchFileException: x"} becomes {@code "cannot read: no such file: x"}.
     */
    static String scrub(String message) {
        if (message == null) {
            return "";
        }
        Matcher m = CLASS_NAME.matcher(message);
        StringBuilder sb = new StringBuilder();
        while (m.find()) {
            m.appendReplacement(sb, Matcher.quoteReplacement(words(m.group(1))));
        }
        m.appendTail(sb);
        return sb.toString().strip();
    }

    private static String words(String simpleName) {
        return switch (simpleName) {
            case "NoSuchFileException" -> "no such file: ";
            case "AccessDeniedException" -> "permission denied: ";
            case "FileAlreadyExistsException" -> "already exists: ";
            case "NotDirectoryException" -> "not a directory: ";
            case "DirectoryNotEmptyException" -> "directory not empty: ";
            case "EOFException" -> "unexpected end of file: ";
            case "OutOfMemoryError" -> "out of memory: ";
            default -> "";
        };
    }

    private static boolean blank(String s) {
        return s == null || s.isBlank();
    }
}
