package io.based4j.train;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * A run's {@code metrics.jsonl}: one JSON object per line, each with the update ({@code step}) it belongs to.
 * Lines are appended as the run goes; a resumed run cuts the log back to its checkpoint first.
 */
final class MetricsLog {
    private final JsonLinesFile lines;

    MetricsLog(Path file) {
        this.lines = new JsonLinesFile(file);
    }

    Path file() {
        return lines.file();
    }

    /** Appends one line. */
    void append(Map<String, Object> line) {
        lines.append(line, false);
    }

    /** The log as read, and the lines left of it when cut back. */
    record Cut(JsonLinesFile.Contents read, List<JsonLinesFile.Line> kept) {
    }

    /**
     * Reads the log and works out what is left after dropping the lines past update {@code step} (they belong to
     * the part of the run that is being redone); nothing is written until {@link #apply}. A last line that is not
     * a JSON object with a step (a write cut short by a kill or a full disk) is dropped with a note on
     * {@code notes}; any other line that is not one is an error naming the file and the line number. Null when
     * there is no log.
     */
    Cut cutAfter(long step, PrintWriter notes) {
        JsonLinesFile.Contents read = lines.read(o -> o.get("step") instanceof Long, "a JSON object with a step",
                notes);
        if (read == null) {
            return null;
        }
        return new Cut(read, read.lines().stream().filter(l -> (Long) l.object().get("step") <= step).toList());
    }

    /** Rewrites the log atomically as {@code cut} leaves it (when that differs from what it holds). */
    void apply(Cut cut) {
        if (cut != null) {
            lines.rewrite(cut.read(), cut.kept());
        }
    }
}
