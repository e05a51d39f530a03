package io.based4j.eval;

import java.util.List;

/**
 * Recall questions read from one JSONL file or built-in probe set.
 *
 * @param name short name in tables and JSON ({@code capitals-in-context}, or the file's name)
 * @param source where the examples came from (a path, or {@code builtin:NAME})
 */
public record RecallSet(String name, String source, List<RecallExample> examples) {
    public RecallSet {
        examples = List.copyOf(examples);
    }
}
