package io.based4j.cli.plot;

import io.based4j.json.Json;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The results of one {@code based4j bench} run, read from its JSON: each result row as a category (what was
 * measured: a model shape and length, or a prompt length and batch) with up to two values, one per panel of
 * the chart.
 *
 * @param description what the file says of the run (device, precision, model), for the chart's subtitle
 */
record BenchResults(Path file, Kind kind, String description, List<Row> rows) {
    /** The benchmarks, told apart by their JSON, and the two values each plots per row. */
    enum Kind {
        TRAIN("bench train", "training tokens/s", "model FLOPs utilisation (%)"),
        GPU("bench gpu", "prefill tokens/s", "decode tokens/s"),
        CPU("bench cpu", "prefill tokens/s", "decode tokens/s");

        final String command;
        final String first;
        final String second;

        Kind(String command, String first, String second) {
            this.command = command;
            this.first = first;
            this.second = second;
        }
    }

    /** One result row: its category and its two values (NaN where the row has none). */
    record Row(String category, double first, double second) {
    }

    static BenchResults read(Path file, Consumer<String> notes) throws IOException {
        JsonEntry top = JsonInput.object(file);
        Kind kind = kind(top);
        Object results = top.fields().get("results");
        if (!(results instanceof List<?> list)) {
            throw top.invalid("results", "must be an array of result objects, found " + Json.typeName(results));
        }
        List<Row> rows = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            if (!(list.get(i) instanceof Map<?, ?> m)) {
                throw new IllegalArgumentException(file + ": results[" + i + "] is " + Json.typeName(list.get(i))
                        + ", not a JSON object");
            }
            @SuppressWarnings("unchecked")
            JsonEntry e = new JsonEntry(file + ": results[" + i + "]", (Map<String, Object>) m);
            String category = category(kind, e);
            if (e.has("error")) {
                notes.accept(e.where() + " (" + category + ") failed in the benchmark and is left out: "
                        + e.fields().get("error"));
                continue;
            }
            rows.add(switch (kind) {
                case TRAIN -> new Row(category, e.requiredNumber("tokens_per_s"), 100 * e.number("mfu"));
                case GPU, CPU -> new Row(category, e.requiredNumber("prefill_tokens_per_s"),
                        e.requiredNumber("decode_tokens_per_s"));
            });
        }
        if (rows.isEmpty()) {
            throw new IllegalArgumentException(file + ": no results to plot (" + list.size() + " result rows, none"
                    + " measured)");
        }
        return new BenchResults(file, kind, description(kind, top), List.copyOf(rows));
    }

    /** Which benchmark wrote the document: {@code bench gpu} and {@code cpu} say so, {@code bench train} has shapes. */
    private static Kind kind(JsonEntry top) {
        String benchmark = top.string("benchmark");
        if (benchmark != null) {
            return switch (benchmark) {
                case "gpu" -> Kind.GPU;
                case "cpu" -> Kind.CPU;
                default -> throw top.invalid("benchmark", "is \"" + JsonEntry.abbreviate(benchmark)
                        + "\", not one plot knows (gpu, cpu)");
            };
        }
        if (top.fields().get("results") instanceof List<?> l && !l.isEmpty() && l.getFirst() instanceof Map<?, ?> r
                && r.containsKey("shape")) {
            return Kind.TRAIN;
        }
        throw new IllegalArgumentException(top.where() + ": not the JSON of 'bench train', 'bench gpu' or"
                + " 'bench cpu' (no \"benchmark\" field, and no \"results\" with a \"shape\")");
    }

    private static String category(Kind kind, JsonEntry row) {
        return switch (kind) {
            case TRAIN -> required(row, "shape") + ", L " + requiredInteger(row, "seq_len");
            case GPU -> "prompt " + requiredInteger(row, "prompt_len") + ", batch " + requiredInteger(row, "batch");
            case CPU -> "batch " + requiredInteger(row, "batch");
        };
    }

    private static String description(Kind kind, JsonEntry top) {
        List<String> parts = new ArrayList<>();
        for (String key : List.of("model", "device", "backend", "precision")) {
            if (top.fields().get(key) instanceof String s && !parts.contains(s)) {
                parts.add(s);
            }
        }
        Long prompt = top.integer("prompt_len");
        if (kind == Kind.CPU && prompt != null) {
            parts.add("prompt " + prompt);
        }
        Long threads = top.integer("threads");
        if (threads != null) {
            parts.add(threads + " threads");
        }
        return String.join(", ", parts);
    }

    private static String required(JsonEntry e, String key) {
        String s = e.string(key);
        if (s == null) {
            throw e.missing(key, "a string");
        }
        return s;
    }

    private static long requiredInteger(JsonEntry e, String key) {
        Long v = e.integer(key);
        if (v == null) {
            throw e.missing(key, "an integer");
        }
        return v;
    }
}
