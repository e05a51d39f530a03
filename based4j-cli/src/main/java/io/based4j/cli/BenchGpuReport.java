package io.based4j.cli;

import io.based4j.model.StateSize;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The tables of {@code bench gpu} (decode and prefill rows, or end-to-end generation rows) and the ratios of a second
 * model's tokens/s against a first's, configuration by configuration.
 */
final class BenchGpuReport {
    /** The tokens/s compared between two models, per row kind: JSON key of the row, column title. */
    static final Map<String, String> DECODE_RATES = rates("prefill_tokens_per_s", "prefill", "decode_tokens_per_s",
            "decode");
    static final Map<String, String> GENERATE_RATES = rates("tokens_per_s", "generate");

    private BenchGpuReport() {
    }

    private static Map<String, String> rates(String... keyAndTitle) {
        Map<String, String> out = new LinkedHashMap<>();
        for (int i = 0; i < keyAndTitle.length; i += 2) {
            out.put(keyAndTitle[i], keyAndTitle[i + 1]);
        }
        return out;
    }

    /** The prefill and decode table; the memory-traffic columns read "-" where they were not measured (the CPU). */
    static void printDecode(PrintWriter out, List<Map<String, Object>> rows) {
        out.printf("%7s %6s %14s %14s %14s %10s %11s %11s %12s%n", "prompt", "batch", "state B/seq", "prefill tok/s",
                "decode tok/s", "ms/step", "decode GB/s", "of copy bw", "peak GPU mem");
        for (Map<String, Object> row : rows) {
            if (row.containsKey("error")) {
                out.printf("%7d %6d %,14d  does not fit: %s%n", row.get("prompt_len"), row.get("batch"),
                        row.get("state_bytes_per_sequence"), row.get("error"));
                continue;
            }
            Object achieved = row.get("decode_achieved_GBps");
            Object fraction = row.get("decode_fraction_of_copy_bw");
            out.printf("%7d %6d %,14d %14.0f %14.1f %10.2f %11s %11s %12s%n", row.get("prompt_len"),
                    row.get("batch"), row.get("state_bytes_per_sequence"), row.get("prefill_tokens_per_s"),
                    row.get("decode_tokens_per_s"), row.get("decode_ms_per_step"),
                    achieved == null ? "-" : String.format("%.0f", (double) achieved),
                    fraction == null ? "-" : String.format("%.1f%%", 100 * (double) fraction),
                    bytes(row.get("peak_gpu_bytes")));
        }
        printRanges(out, rows, List.of("prefill_tokens_per_s_runs", "prefill tok/s", "decode_tokens_per_s_runs",
                "decode tok/s"));
    }

    /**
     * Under a table whose rows hold several runs (--repeat): for each row, the range of each named list of figures
     * (pairs of the row's key and its name in the table) over the runs.
     */
    private static void printRanges(PrintWriter out, List<Map<String, Object>> rows, List<String> keysAndNames) {
        for (Map<String, Object> row : rows) {
            if (!row.containsKey("runs")) {
                continue;
            }
            StringBuilder line = new StringBuilder(String.format(Locale.ROOT, "  prompt %d, batch %d, median of %d "
                    + "runs;", row.get("prompt_len"), row.get("batch"), row.get("runs")));
            for (int i = 0; i < keysAndNames.size(); i += 2) {
                @SuppressWarnings("unchecked")
                List<Double> runs = (List<Double>) row.get(keysAndNames.get(i));
                double lo = runs.stream().mapToDouble(Double::doubleValue).min().orElseThrow();
                double hi = runs.stream().mapToDouble(Double::doubleValue).max().orElseThrow();
                line.append(String.format(Locale.ROOT, " %s %,.1f to %,.1f", keysAndNames.get(i + 1), lo, hi));
                line.append(i + 2 < keysAndNames.size() ? "," : "");
            }
            out.println(line);
        }
    }

    /** The end-to-end generation table. */
    static void printGenerate(PrintWriter out, List<Map<String, Object>> rows) {
        out.printf("%7s %6s %9s %14s %10s %14s %8s %12s%n", "prompt", "batch", "generated", "state B/seq", "seconds",
                "tokens/s", "prefill", "peak GPU mem");
        for (Map<String, Object> row : rows) {
            if (row.containsKey("error")) {
                out.printf("%7d %6d %9d %,14d  does not fit: %s%n", row.get("prompt_len"), row.get("batch"),
                        row.get("generated_tokens"), row.get("state_bytes_per_sequence"), row.get("error"));
                continue;
            }
            out.printf("%7d %6d %9d %,14d %10.2f %14.1f %7.1f%% %12s%n", row.get("prompt_len"), row.get("batch"),
                    row.get("generated_tokens"), row.get("state_bytes_per_sequence"), row.get("seconds"),
                    row.get("tokens_per_s"), 100 * (double) row.get("prefill_share"), bytes(row.get("peak_gpu_bytes")));
        }
        printRanges(out, rows, List.of("tokens_per_s_runs", "tokens/s"));
    }

    private static String bytes(Object b) {
        return b == null ? "-" : StateSize.human((long) b);
    }

    /**
     * For each configuration (the rows of both models come in the same order of prompt length and batch) the
     * tokens/s of {@code model} over {@code baseline}'s, for each rate of {@code compared}; where a configuration did
     * not fit one model or both, those models' names instead, under {@code does_not_fit}.
     */
    static List<Map<String, Object>> ratios(String baseline, List<Map<String, Object>> baseRows, String model,
                                            List<Map<String, Object>> rows, Map<String, String> compared) {
        if (baseRows.size() != rows.size()) {
            throw new IllegalArgumentException(baseRows.size() + " rows of " + baseline + " against " + rows.size()
                    + " of " + model);
        }
        List<Map<String, Object>> out = new ArrayList<>();
        for (int i = 0; i < rows.size(); i++) {
            Map<String, Object> a = baseRows.get(i);
            Map<String, Object> b = rows.get(i);
            if (!a.get("prompt_len").equals(b.get("prompt_len")) || !a.get("batch").equals(b.get("batch"))) {
                throw new IllegalArgumentException("row " + i + " of " + model + " is not the configuration of "
                        + baseline + "'s");
            }
            Map<String, Object> ratio = new LinkedHashMap<>();
            ratio.put("prompt_len", a.get("prompt_len"));
            ratio.put("batch", a.get("batch"));
            ratio.put("model", model);
            ratio.put("baseline", baseline);
            List<String> missing = new ArrayList<>();
            if (a.containsKey("error")) {
                missing.add(baseline);
            }
            if (b.containsKey("error")) {
                missing.add(model);
            }
            if (!missing.isEmpty()) {
                ratio.put("does_not_fit", missing);
            } else {
                for (String key : compared.keySet()) {
                    ratio.put(key + "_ratio", (double) b.get(key) / (double) a.get(key));
                }
            }
            out.add(ratio);
        }
        return out;
    }

    static void printRatios(PrintWriter out, List<Map<String, Object>> ratios, Map<String, String> compared) {
        Map<String, Object> first = ratios.getFirst();
        out.printf("%ntokens/s of %s against %s (%1$s / %2$s):%n", first.get("model"), first.get("baseline"));
        StringBuilder header = new StringBuilder(String.format("%7s %6s", "prompt", "batch"));
        compared.values().forEach(title -> header.append(String.format(" %14s", title)));
        out.println(header);
        for (Map<String, Object> ratio : ratios) {
            StringBuilder line = new StringBuilder(String.format("%7d %6d", ratio.get("prompt_len"), ratio.get("batch")));
            if (ratio.get("does_not_fit") instanceof List<?> names) {
                line.append("  does not fit: ").append(String.join(", ", names.stream().map(String::valueOf).toList()));
            } else {
                for (String key : compared.keySet()) {
                    line.append(String.format(Locale.ROOT, " %13.2fx", (double) ratio.get(key + "_ratio")));
                }
            }
            out.println(line);
        }
    }
}
