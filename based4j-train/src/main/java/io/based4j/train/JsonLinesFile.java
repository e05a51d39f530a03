package io.based4j.train;

import io.based4j.json.Json;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * A file of JSON Lines that a run appends to as it goes ({@code metrics.jsonl}, an MQAR sweep's
 * {@code results.jsonl}): one JSON object per line, each appended whole by one write. A run stopped while writing
 * (killed, or out of disk) can leave a torn last line; a run that starts again reads the file, drops that line
 * with a note and rewrites the file without it before it appends.
 */
public final class JsonLinesFile {
    private final Path file;

    public JsonLinesFile(Path file) {
        this.file = file;
    }

    public Path file() {
        return file;
    }

    /**
     * Appends {@code object} as one line, in one write; with {@code sync} the line is on the disk when this
     * returns (for records that are costly to redo).
     */
    public void append(Map<String, Object> object, boolean sync) {
        ByteBuffer line = ByteBuffer.wrap((Json.write(object) + "\n").getBytes(StandardCharsets.UTF_8));
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.APPEND)) {
            while (line.hasRemaining()) {
                ch.write(line);
            }
            if (sync) {
                ch.force(true);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
        }
    }

    /** One line read back: its number in the file (from 1), its text and its object. */
    public record Line(int number, String text, Map<String, Object> object) {
    }

    /** The file's text as read, and its lines that hold a valid object (a torn last line left out). */
    public record Contents(String text, List<Line> lines) {
    }

    /**
     * Reads the file. A last line that is not an object {@code valid} accepts (a write cut short by a kill or a
     * full disk) is left out with a note on {@code notes}; any other such line is an error naming the file, the
     * line number and what it must be ({@code needs}: "a JSON object with a step"). Blank lines are passed over.
     * Nothing is written: {@link #rewrite} does that. Null when there is no file.
     */
    public Contents read(Predicate<Map<String, Object>> valid, String needs, PrintWriter notes) {
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
        List<Line> out = new ArrayList<>();
        for (int i = 0; i <= last; i++) {
            String line = lines[i];
            if (line.isBlank()) {
                continue;
            }
            Map<String, Object> object = parse(line);
            if (object == null || !valid.test(object)) {
                if (i < last) {
                    throw new IllegalArgumentException(file + ": line " + (i + 1) + " is not " + needs + ": "
                            + abbreviate(line));
                }
                notes.println(file + ": cut off a torn last line (line " + (i + 1) + ", " + line.length()
                        + " characters), left by a run stopped while writing it");
                continue;
            }
            out.add(new Line(i + 1, line, object));
        }
        return new Contents(text, out);
    }

    /**
     * Rewrites the file atomically to hold exactly {@code keep}, one line each (when that differs from what
     * {@code read} found in it): a torn last line goes, and a last line without its line end gets one.
     */
    public void rewrite(Contents read, List<Line> keep) {
        if (read == null) {
            return;
        }
        String kept = text(keep);
        if (!read.text().equals(kept)) {
            AtomicFiles.write(file, kept.getBytes(StandardCharsets.UTF_8));
        }
    }

    /** Replaces the file atomically by one line for each of {@code objects}: readers see the old file or the new. */
    public void replace(List<Map<String, Object>> objects) {
        StringBuilder sb = new StringBuilder();
        for (Map<String, Object> o : objects) {
            sb.append(Json.write(o)).append('\n');
        }
        AtomicFiles.write(file, sb.toString().getBytes(StandardCharsets.UTF_8));
    }

    /** The lines as the file holds them: each followed by a line end. */
    static String text(List<Line> lines) {
        StringBuilder sb = new StringBuilder();
        for (Line l : lines) {
            sb.append(l.text()).append('\n');
        }
        return sb.toString();
    }

    private static Map<String, Object> parse(String line) {
        try {
            return Json.parseObject(line);
        } catch (RuntimeException e) {
            return null;
        }
    }

    private static String abbreviate(String line) {
        return line.length() <= 60 ? line : line.substring(0, 60) + "...";
    }
}
