package io.based4j.eval;

import io.based4j.json.Json;
import io.based4j.json.JsonException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Reads recall questions from JSONL: one JSON object per line (blank lines are skipped), in one of these forms:
 * <pre>
 *   {"context": "PASSAGE", "prompt": "QUESTION", "answers": ["ANSWER", "OTHER SPELLING"]}
 *   {"context": "PASSAGE", "question": "QUESTION", "answer": "ANSWER"}
 *   {"text": "PASSAGE AND QUESTION", "answers": ["ANSWER"]}
 *   {"prompt": "QUESTION", "answer": "ANSWER"}
 * </pre>
 * The question is exactly one of {@code prompt}, {@code question} and {@code text} (a non-empty string); {@code context}
 * (a string) is optional; the accepted answers are exactly one of {@code answers} (a non-empty array of non-empty
 * strings) and {@code answer} (a non-empty string). An {@code id} (a string or a number) is carried into the results;
 * other fields are ignored. Every error names the file and the line.
 */
public final class RecallFile {
    /** Largest file read: far more questions than an evaluation runs, and well inside what a string holds. */
    public static final long MAX_BYTES = 1L << 30;

    private static final List<String> QUESTION_FIELDS = List.of("prompt", "question", "text");

    private RecallFile() {
    }

    /**
     * Reads {@code file} as a set named after it.
     *
     * @throws IllegalArgumentException naming the file (and line) when it is not UTF-8, too large, or not valid
     *                                  recall JSONL, or holds no example
     * @throws IOException when it cannot be read
     */
    public static RecallSet read(Path file) throws IOException {
        String text;
        try {
            text = Json.readFile(file, MAX_BYTES);
        } catch (JsonException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage());
        }
        String name = file.getFileName() == null ? file.toString() : file.getFileName().toString();
        return parse(name.endsWith(".jsonl") ? name.substring(0, name.length() - ".jsonl".length()) : name,
                file.toString(), text);
    }

    /**
     * Parses JSONL {@code text} read from {@code source} (which error messages name).
     *
     * @throws IllegalArgumentException {@code "SOURCE:LINE: what is wrong"}, or {@code "SOURCE: no examples ..."}
     */
    public static RecallSet parse(String name, String source, String text) {
        List<RecallExample> examples = new ArrayList<>();
        String[] lines = text.split("\n", -1);
        for (int i = 0; i < lines.length; i++) {
            String line = lines[i];
            if (i == 0 && line.startsWith("\uFEFF")) {
                line = line.substring(1); // a byte order mark some editors write
            }
            if (line.isBlank()) {
                continue;
            }
            examples.add(example(source + ":" + (i + 1) + ": ", i + 1, line));
        }
        if (examples.isEmpty()) {
            throw new IllegalArgumentException(source + ": no examples (the file is empty; expected one JSON object a"
                    + " line, e.g. {\"context\": \"...\", \"prompt\": \"...\", \"answers\": [\"...\"]})");
        }
        return new RecallSet(name, source, examples);
    }

    private static RecallExample example(String at, int lineNumber, String line) {
        Map<String, Object> m;
        try {
            m = Json.parseObject(line);
        } catch (JsonException e) {
            throw new IllegalArgumentException(at + e.getMessage().replace("at line 1, column", "at column"));
        }
        String questionField = null;
        for (String f : QUESTION_FIELDS) {
            if (m.containsKey(f)) {
                if (questionField != null) {
                    throw new IllegalArgumentException(at + "gives both \"" + questionField + "\" and \"" + f
                            + "\"; give the question in one of them");
                }
                questionField = f;
            }
        }
        if (questionField == null) {
            throw new IllegalArgumentException(at + "no question: give it as \"prompt\", \"question\" or \"text\""
                    + " (a string)");
        }
        String prompt = string(at, m, questionField);
        if (prompt.isEmpty()) {
            throw new IllegalArgumentException(at + "\"" + questionField + "\" is empty");
        }
        String context = m.containsKey("context") ? string(at, m, "context") : "";
        return new RecallExample(lineNumber, id(at, m.get("id")), context, prompt, answers(at, m));
    }

    private static List<String> answers(String at, Map<String, Object> m) {
        boolean many = m.containsKey("answers");
        boolean one = m.containsKey("answer");
        if (many == one) {
            throw new IllegalArgumentException(at + (many ? "gives both \"answers\" and \"answer\"; give one"
                    : "no answer: give \"answers\" (an array of strings) or \"answer\" (a string)"));
        }
        if (one) {
            String a = string(at, m, "answer");
            if (a.isEmpty()) {
                throw new IllegalArgumentException(at + "\"answer\" is empty (an empty answer is in every output)");
            }
            return List.of(a);
        }
        if (!(m.get("answers") instanceof List<?> list) || list.isEmpty()) {
            throw new IllegalArgumentException(at + "\"answers\" must be a non-empty array of strings, got "
                    + Json.write(m.get("answers")));
        }
        List<String> out = new ArrayList<>();
        for (int k = 0; k < list.size(); k++) {
            if (!(list.get(k) instanceof String s) || s.isEmpty()) {
                throw new IllegalArgumentException(at + "\"answers\"[" + k + "] must be a non-empty string, got "
                        + Json.write(list.get(k)));
            }
            out.add(s);
        }
        return out;
    }

    private static String string(String at, Map<String, Object> m, String field) {
        if (!(m.get(field) instanceof String s)) {
            throw new IllegalArgumentException(at + "\"" + field + "\" must be a string, got "
                    + Json.typeName(m.get(field)));
        }
        return s;
    }

    private static String id(String at, Object id) {
        return switch (id) {
            case null -> null;
            case String s -> s;
            case Number n -> Json.write(n);
            default -> throw new IllegalArgumentException(at + "\"id\" must be a string or a number, got "
                    + Json.typeName(id));
        };
    }
}
