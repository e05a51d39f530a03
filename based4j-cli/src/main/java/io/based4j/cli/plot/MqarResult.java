package io.based4j.cli.plot;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Consumer;

/**
 * One MQAR result record (docs/mqar/RESULTS.md): a model's recall accuracy and its recurrent state size. Read from
 * JSON Lines (one record per line, as sweeps write them) or from a JSON document holding one record or an array
 * of them (as {@code mqar train --json} writes one).
 *
 * @param mixer the architecture ({@code based}, {@code attention}, {@code sliding}, or any other name)
 * @param dModel model width, or null when the record has none
 * @param featureDim BASED's Taylor feature dimension, or null
 * @param window the sliding window (keys a query sees back), or null
 * @param stateBytes the recurrent state in bytes as the paper counts it (MQAR-SPEC)
 * @param accuracy recall over the whole test set, in [0, 1]
 * @param lr the peak learning rate, or NaN
 */
record MqarResult(String mixer, Long dModel, Long featureDim, Long window, double stateBytes, double accuracy,
                  double lr) {

    /** One model configuration: the best of its records (the paper reports the best learning rate of four). */
    record Best(MqarResult result, int records) {
    }

    static List<MqarResult> read(List<Path> files, Consumer<String> notes) throws IOException {
        List<MqarResult> out = new ArrayList<>();
        for (Path file : files) {
            List<JsonEntry> entries = JsonInput.records(file, notes);
            if (entries.isEmpty()) {
                throw new IllegalArgumentException(file + ": no MQAR result records (the file is empty)");
            }
            for (JsonEntry e : entries) {
                out.add(of(e));
            }
        }
        return out;
    }

    static MqarResult of(JsonEntry e) {
        String mixer = e.string("mixer");
        if (mixer == null) {
            mixer = e.string("architecture");
        }
        if (mixer == null || mixer.isBlank()) {
            throw e.missing("mixer", "the architecture: based, attention, sliding, ...");
        }
        double state = e.requiredNumber("state_bytes");
        if (!(state > 0) || Double.isInfinite(state)) {
            throw e.invalid("state_bytes", "must be a positive number of bytes, found " + state);
        }
        double accuracy = e.requiredNumber("accuracy");
        if (!(accuracy >= 0 && accuracy <= 1)) {
            throw e.invalid("accuracy", "must be between 0 and 1, found " + accuracy);
        }
        return new MqarResult(mixer, e.integer("d_model"), e.integer("feature_dim"), e.integer("window"), state,
                accuracy, e.number("lr"));
    }

    /**
     * The best record of each configuration (mixer, width, feature dimension, window, state), in order of mixer
     * (as first met) and state size.
     */
    static List<Best> best(List<MqarResult> results) {
        Map<List<Object>, Best> best = new LinkedHashMap<>();
        for (MqarResult r : results) {
            List<Object> key = Arrays.asList(r.mixer, r.dModel, r.featureDim, r.window, r.stateBytes);
            best.merge(key, new Best(r, 1), (a, b) -> new Best(
                    b.result.accuracy > a.result.accuracy ? b.result : a.result, a.records + b.records));
        }
        List<String> mixers = mixers(results);
        List<Best> out = new ArrayList<>(best.values());
        out.sort(Comparator.<Best>comparingInt(b -> mixers.indexOf(b.result.mixer))
                .thenComparingDouble(b -> b.result.stateBytes)
                .thenComparing(b -> Objects.requireNonNullElse(b.result.dModel, 0L)));
        return out;
    }

    /** The mixers in the order first met. */
    static List<String> mixers(List<MqarResult> results) {
        return results.stream().map(MqarResult::mixer).distinct().toList();
    }

    /** What sets this configuration apart within its mixer: {@code "f 16"}, {@code "w 64"}, or empty. */
    String dial() {
        if (featureDim != null && window != null) {
            return "f " + featureDim + ", w " + window;
        }
        return featureDim != null ? "f " + featureDim : window != null ? "w " + window : "";
    }
}
