package io.based4j.train.mqar;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The result record of one MQAR run (docs/mqar/RESULTS.md): what {@code mqar train --json} writes and what an MQAR
 * sweep appends to its {@code results.jsonl}, one per line, and what {@code plot mqar} reads. Besides the fields
 * the plot reads (mixer, d_model, feature_dim, window, lr, state_bytes, accuracy) it holds how the run ended, the
 * accuracy of each test slice, and the settings it was trained with.
 */
public final class MqarRecord {
    /**
     * The settings that make two runs of one model and learning rate the same run: a sweep takes a record as done
     * only when it agrees with the sweep on all of them.
     */
    public static final List<String> SETTINGS = List.of("heads", "epochs", "batch", "weight_decay", "warmup",
            "eval_every", "target", "seed", "train", "test");

    private MqarRecord() {
    }

    /**
     * The record of {@code run}'s {@code result}, trained on {@code device} in {@code precision}.
     */
    public static Map<String, Object> of(MqarTrainer.Run run, MqarTrainer.Result r, String device, String precision) {
        Map<String, Object> m = runKey(run);
        m.put("state_bytes", r.stateBytes());
        m.put("parameters", r.parameters());
        m.put("accuracy", r.accuracy());
        m.put("reached_target", r.reached());
        m.put("stop", r.stop().key());
        if (r.detail() != null) {
            m.put("stop_detail", r.detail());
        }
        m.put("updates", r.steps());
        m.put("epochs_trained", r.epochs());
        m.put("seconds", r.seconds());
        List<Object> slices = new ArrayList<>();
        for (MqarTrainer.SliceScore s : r.scores()) {
            Map<String, Object> e = new LinkedHashMap<>();
            e.put("seq_len", (long) s.slice().seqLen());
            e.put("num_kv", (long) s.slice().numKv());
            e.put("examples", (long) s.slice().count());
            e.put("accuracy", s.accuracy());
            e.put("loss", s.loss());
            slices.add(e);
        }
        m.put("slices", slices);
        m.putAll(settings(run));
        m.put("device", device);
        m.put("precision", precision);
        return m;
    }

    /**
     * What names {@code run} in its record: its model (mixer, d_model, and feature_dim or window where it has one)
     * and learning rate.
     */
    public static Map<String, Object> runKey(MqarTrainer.Run run) {
        Map<String, Object> m = new LinkedHashMap<>();
        MqarModel model = run.model();
        m.put("mixer", model.mixer());
        m.put("d_model", (long) model.dModel());
        if (model.featureDim() > 0) {
            m.put("feature_dim", (long) model.featureDim());
        }
        if (model.window() > 0) {
            m.put("window", (long) model.window());
        }
        m.put("lr", run.lr());
        return m;
    }

    /** The {@link #SETTINGS} of {@code run}, as its record holds them. */
    public static Map<String, Object> settings(MqarTrainer.Run run) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("heads", (long) run.heads());
        m.put("epochs", (long) run.epochs());
        m.put("batch", (long) run.batchSize());
        m.put("weight_decay", run.weightDecay());
        m.put("warmup", (long) run.warmupSteps());
        m.put("eval_every", (long) run.evalEvery());
        m.put("target", run.target());
        m.put("seed", run.seed());
        m.put("train", MqarSlice.spec(run.train()));
        m.put("test", MqarSlice.spec(run.test()));
        return m;
    }

    /** The first of {@code settings} on which {@code record} differs, or null when it agrees on all of them. */
    public static String difference(Map<String, Object> record, Map<String, Object> settings) {
        for (Map.Entry<String, Object> e : settings.entrySet()) {
            Object mine = record.get(e.getKey());
            Object theirs = e.getValue();
            boolean same = mine instanceof Number a && theirs instanceof Number b
                    ? a.doubleValue() == b.doubleValue() : Objects.equals(mine, theirs);
            if (!same) {
                return e.getKey();
            }
        }
        return null;
    }

    /** Whether {@code record} has what a sweep reads back: a model of a known mixer, a learning rate, an accuracy. */
    public static boolean readable(Map<String, Object> record) {
        try {
            model(record);
            return record.get("lr") instanceof Number && record.get("accuracy") instanceof Number;
        } catch (IllegalArgumentException e) {
            return false;
        }
    }

    /**
     * The model a record describes.
     *
     * @throws IllegalArgumentException when its mixer is unknown or a size it needs is missing or out of range
     */
    public static MqarModel model(Map<String, Object> record) {
        if (!(record.get("mixer") instanceof String mixer)) {
            throw new IllegalArgumentException("no mixer");
        }
        return new MqarModel(mixer, whole(record, "d_model"), mixer.equals("based") ? whole(record, "feature_dim") : 0,
                mixer.equals("sliding") ? whole(record, "window") : 0);
    }

    public static double lr(Map<String, Object> record) {
        return ((Number) record.get("lr")).doubleValue();
    }

    public static double accuracy(Map<String, Object> record) {
        return ((Number) record.get("accuracy")).doubleValue();
    }

    private static int whole(Map<String, Object> record, String key) {
        if (record.get(key) instanceof Long v && v >= 1 && v <= Integer.MAX_VALUE) {
            return v.intValue();
        }
        throw new IllegalArgumentException("no " + key);
    }
}
