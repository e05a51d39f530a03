package io.based4j.train;

import io.based4j.json.Json;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * The settings that make a training run the run it is, besides its model: the data, the windows cut from it and
 * the seed. They are recorded when a run starts ({@code run.json}) and in every checkpoint ({@code trainer.json}),
 * and a resume with other values is refused, since it would silently continue a different run.
 */
final class RunFacts {
    /** Fact name (as recorded) and the setting it comes from. */
    private static final Map<String, String> SETTINGS = new LinkedHashMap<>();

    static {
        SETTINGS.put("data", "data.dir");
        SETTINGS.put("train_tokens", "the number of training tokens in data.dir");
        SETTINGS.put("seq_len", "data.seq_len");
        SETTINGS.put("batch_size", "train.batch_size");
        SETTINGS.put("grad_accum", "train.grad_accum");
        SETTINGS.put("seed", "train.seed");
    }

    private RunFacts() {
    }

    /** The facts of a run with these settings over a training split of {@code trainTokens} tokens. */
    static Map<String, Object> of(TrainConfig cfg, long trainTokens) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("data", cfg.data().toAbsolutePath().normalize().toString());
        m.put("train_tokens", trainTokens);
        m.put("seq_len", (long) cfg.seqLen());
        m.put("batch_size", (long) cfg.batchSize());
        m.put("grad_accum", (long) cfg.gradAccum());
        m.put("seed", cfg.seed());
        return m;
    }

    /**
     * Fails naming the first fact {@code recorded} (in {@code source}) holds with another value than
     * {@code current}; facts that were not recorded (by older versions) are not compared.
     */
    static void check(Map<String, Object> recorded, Map<String, Object> current, String source) {
        for (Map.Entry<String, String> e : SETTINGS.entrySet()) {
            String key = e.getKey();
            if (!recorded.containsKey(key)) {
                continue;
            }
            String was = Json.write(recorded.get(key));
            String now = Json.write(current.get(key));
            if (!was.equals(now)) {
                throw new IllegalArgumentException("cannot resume: " + e.getValue() + " is " + now + " in the settings"
                        + " but " + was + " in " + source + " (resume with the run's settings, or start a new run"
                        + " with --overwrite or another train.out)");
            }
        }
    }

    /** The first top-level field of two model configurations that differs, as "FIELD: A vs B", or null. */
    static String modelDifference(Map<String, Object> a, Map<String, Object> b) {
        Set<String> keys = new LinkedHashSet<>(a.keySet());
        keys.addAll(b.keySet());
        for (String k : keys) {
            String x = a.containsKey(k) ? Json.write(a.get(k)) : "(absent)";
            String y = b.containsKey(k) ? Json.write(b.get(k)) : "(absent)";
            if (!x.equals(y)) {
                return k + " is " + x + " there and " + y + " in the settings";
            }
        }
        return null;
    }
}
