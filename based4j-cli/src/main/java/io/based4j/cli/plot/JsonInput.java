package io.based4j.cli.plot;

import io.based4j.json.Json;
import io.based4j.json.JsonException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * Reads the JSON inputs of {@code plot}: JSON Lines files (one object per line: metrics logs, result records) and
 * whole JSON documents (bench results, {@code mqar train --json}). Every error names the file, and for JSON Lines
 * the line.
 */
final class JsonInput {
    /** Largest JSON Lines file read (a metrics log of a million updates logged every one is about 150 MB). */
    static final long MAX_LINES_BYTES = 1L << 30;

    /** Largest JSON document read (bench results and single run records are a few kilobytes). */
    static final long MAX_DOCUMENT_BYTES = 64L << 20;

    private JsonInput() {
    }

    /**
     * The objects of a JSON Lines file, blank lines skipped. A last line that is not JSON and has no line end is
     * what a writer still at work (or stopped while writing) leaves: it is skipped with a note on {@code notes}.
     * Any other line that is not a JSON object is an error naming its number.
     */
    static List<JsonEntry> lines(Path file, Consumer<String> notes) throws IOException {
        return lines(file, read(file, MAX_LINES_BYTES), notes);
    }

    private static List<JsonEntry> lines(Path file, String text, Consumer<String> notes) {
        String[] lines = text.split("\n", -1);
        List<JsonEntry> out = new ArrayList<>();
        for (int i = 0; i < lines.length; i++) {
            String line = lines[i].strip();
            if (line.isEmpty()) {
                continue;
            }
            boolean unfinished = i == lines.length - 1; // no line end after it
            try {
                out.add(new JsonEntry(file + ": line " + (i + 1), Json.parseObject(line)));
            } catch (JsonException e) {
                if (unfinished) {
                    notes.accept(file + ": skipped an unfinished last line (line " + (i + 1) + ", "
                            + line.length() + " characters with no line end), as a run still writing it leaves it");
                    continue;
                }
                throw new IllegalArgumentException(file + ": line " + (i + 1) + " is not a JSON object ("
                        + e.getMessage() + "): " + JsonEntry.abbreviate(line));
            }
        }
        return out;
    }

    /** A whole JSON document that must be an object. */
    static JsonEntry object(Path file) throws IOException {
        Object doc = parse(file, read(file, MAX_DOCUMENT_BYTES));
        if (!(doc instanceof Map<?, ?> m)) {
            throw new IllegalArgumentException(file + ": holds a JSON " + Json.typeName(doc) + ", not an object");
        }
        return entry(file.toString(), m);
    }

    /** A whole JSON document: an object, or an array of objects. */
    private static List<JsonEntry> document(Path file, String text) {
        Object doc = parse(file, text);
        return switch (doc) {
            case Map<?, ?> m -> List.of(entry(file.toString(), m));
            case List<?> l -> {
                List<JsonEntry> out = new ArrayList<>();
                for (int i = 0; i < l.size(); i++) {
                    if (!(l.get(i) instanceof Map<?, ?> m)) {
                        throw new IllegalArgumentException(file + ": item " + i + " of the array is "
                                + Json.typeName(l.get(i)) + ", not a JSON object");
                    }
                    out.add(entry(file + ": item " + i, m));
                }
                yield out;
            }
            default -> throw new IllegalArgumentException(file + ": holds a JSON " + Json.typeName(doc)
                    + ", not an object or an array of objects");
        };
    }

    private static Object parse(Path file, String text) {
        try {
            return Json.parse(text, MAX_DOCUMENT_BYTES);
        } catch (JsonException e) {
            throw new IllegalArgumentException(file + ": not JSON: " + e.getMessage());
        }
    }

    /**
     * Records from a file that is either JSON Lines or one JSON document (an object or an array of objects, as
     * pretty-printed by the commands' {@code --json}): JSON Lines unless the first line alone is not JSON.
     */
    static List<JsonEntry> records(Path file, Consumer<String> notes) throws IOException {
        String text = read(file, MAX_LINES_BYTES);
        String first = text.strip().lines().findFirst().orElse("");
        if (first.startsWith("[") || (first.startsWith("{") && !parses(first))) {
            return document(file, text);
        }
        return lines(file, text, notes);
    }

    private static boolean parses(String line) {
        try {
            Json.parse(line);
            return true;
        } catch (JsonException e) {
            return false;
        }
    }

    @SuppressWarnings("unchecked")
    private static JsonEntry entry(String where, Map<?, ?> m) {
        return new JsonEntry(where, (Map<String, Object>) m);
    }

    private static String read(Path file, long maxBytes) throws IOException {
        try {
            return Json.readFile(file, maxBytes);
        } catch (JsonException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage());
        }
    }
}
