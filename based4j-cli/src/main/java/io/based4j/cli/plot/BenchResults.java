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
 * @param model the model's name where the file holds several ({@code bench gpu --compare}), else null
 */
record BenchResults(Path file, Kind kind, String description, List<Row> rows, String model) {
    /** The benchmarks, told apart by their JSON, and the two values each plots per row. */
    enum Kind {
        TRAIN("bench train", "training tokens/s", "model FLOPs utilisation (%)"),
        GPU("bench gpu", "prefill tokens/s", "decode tokens/s"),
        GENERATE("bench gpu --generate", "generated tokens/s (prefill included)", "prefill share (%)"),
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

    /**
     * The results of a bench JSON file: one entry, or one per model of a {@code bench gpu --compare} file (its
     * {@code models}, each with its name and results).
     */
    static List<BenchResults> read(Path file, Consumer<String> notes) throws IOException {
        JsonEntry top = JsonInput.object(file);
        Kind kind = kind(top);
        String description = description(kind, top);
        if (!top.has("models")) {
            return List.of(results(file, kind, top, description, null, notes));
        }
        if (!(top.fields().get("models") instanceof List<?> models) || models.isEmpty()) {
            throw top.invalid("models", "must be a non-empty array of model objects, found "
                    + Json.typeName(top.fields().get("models")));
        }
        List<BenchResults> out = new ArrayList<>();
        for (int i = 0; i < models.size(); i++) {
            JsonEntry e = element(models, i, file + ": models");
            String name = required(e, "name");
            out.add(results(file, kind, e, description, name, notes));
        }
        return out;
    }

    /** Element {@code i} of the array at {@code where}, which must be a JSON object. */
    private static JsonEntry element(List<?> array, int i, String where) {
        if (!(array.get(i) instanceof Map<?, ?> m)) {
            throw new IllegalArgumentException(where + "[" + i + "] is " + Json.typeName(array.get(i))
                    + ", not a JSON object");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> fields = (Map<String, Object>) m;
        return new JsonEntry(where + "[" + i + "]", fields);
    }

    /** The rows of {@code holder}'s {@code results} (the file, or one model of it). */
    private static BenchResults results(Path file, Kind kind, JsonEntry holder, String description, String model,
                                        Consumer<String> notes) {
        Object results = holder.fields().get("results");
        if (!(results instanceof List<?> list)) {
            throw holder.invalid("results", "must be an array of result objects, found " + Json.typeName(results));
        }
        String where = model == null ? file + ": results" : holder.where() + " (" + model + "): results";
        List<Row> rows = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            JsonEntry e = element(list, i, where);
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
                case GENERATE -> new Row(category, e.requiredNumber("tokens_per_s"),
                        100 * e.requiredNumber("prefill_share"));
            });
        }
        if (rows.isEmpty()) {
            throw new IllegalArgumentException(where + ": no results to plot (" + list.size() + " result rows, none"
                    + " measured)");
        }
        return new BenchResults(file, kind, description, List.copyOf(rows), model);
    }

    /** Which benchmark wrote the document: {@code bench gpu} and {@code cpu} say so, {@code bench train} has shapes. */
    private static Kind kind(JsonEntry top) {
        String benchmark = top.string("benchmark");
        if (benchmark != null) {
            return switch (benchmark) {
                case "gpu" -> "generate".equals(top.string("mode")) ? Kind.GENERATE : Kind.GPU;
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
            case GPU, GENERATE -> "prompt " + requiredInteger(row, "prompt_len") + ", batch "
                    + requiredInteger(row, "batch");
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
