package io.based4j.train;

import io.based4j.json.Json;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;

/**
 * A run's {@code metrics.jsonl}: one JSON object per line, each with the update ({@code step}) it belongs to.
 * Lines are appended as the run goes; a resumed run cuts the log back to its checkpoint first.
 */
final class MetricsLog {
    private final Path file;

    MetricsLog(Path file) {
        this.file = file;
    }

    Path file() {
        return file;
    }

    /** Appends one line. */
    void append(Map<String, Object> line) {
        try {
            Files.writeString(file, Json.write(line) + "\n", StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                    StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
        }
    }

    /** The log's text as read, and what is left of it when cut back. */
    record Cut(String text, String kept) {
    }

    /**
     * Reads the log and works out what is left after dropping the lines past update {@code step} (they belong to
     * the part of the run that is being redone); nothing is written until {@link #apply}. A last line that is not
     * a JSON object (a write cut short by a kill or a full disk) is dropped with a note on {@code notes}; any
     * other line that is not one is an error naming the file and the line number. Null when there is no log.
     */
    Cut cutAfter(long step, PrintWriter notes) {
        if (!Files.exists(file)) {
            return null;
        }
        String text;
        try {
            // decoded leniently: bytes that are not UTF-8 make their line fail to parse, and are reported as such
            text = new String(Files.readAllBytes(file), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
        String[] lines = text.split("\n", -1);
        int last = lines.length - 1;
        while (last >= 0 && lines[last].isBlank()) {
            last--;
        }
        StringBuilder keep = new StringBuilder();
        for (int i = 0; i <= last; i++) {
            String line = lines[i];
            if (line.isBlank()) {
                continue;
            }
            Long lineStep = stepOf(line);
            if (lineStep == null) {
                if (i < last) {
                    throw new IllegalArgumentException(file + ": line " + (i + 1) + " is not a JSON object with a"
                            + " step: " + abbreviate(line));
                }
                notes.println(file + ": cut off a torn last line (line " + (i + 1) + ", " + line.length()
                        + " characters), left by a run stopped while writing it");
                continue;
            }
            if (lineStep <= step) {
                keep.append(line).append('\n');
            }
        }
        return new Cut(text, keep.toString());
    }

    /** Rewrites the log atomically as {@code cut} leaves it (when that differs from what it holds). */
    void apply(Cut cut) {
        if (cut != null && !cut.text().equals(cut.kept())) {
            AtomicFiles.write(file, cut.kept().getBytes(StandardCharsets.UTF_8));
        }
    }

    /** The line's update, or null when the line is not a JSON object with an integer {@code step}. */
    private static Long stepOf(String line) {
        try {
            return Json.parseObject(line).get("step") instanceof Long s ? s : null;
        } catch (RuntimeException e) {
            return null;
        }
    }

    private static String abbreviate(String line) {
        return line.length() <= 60 ? line : line.substring(0, 60) + "...";
    }
}
