package io.based4j.train.mqar;

import io.based4j.train.Settings;
import io.based4j.train.TrainConfig;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * The models and learning rates of an MQAR sweep, and what every run of it trains on: the recall study of the
 * BASED paper's figure 2 ({@link #paper()}), a small one for trying the sweep out ({@link #quick()}), or one read
 * from a YAML or JSON file ({@link #read}):
 *
 * <pre>
 * lrs: [1e-3, 3.2e-3, 1e-2, 3.2e-2]   # optional: the paper's four
 * epochs: 32                          # optional: 32
 * train: paper                        # optional: 'paper' or L:KV:COUNT,...
 * test: paper                         # optional
 * models:                             # each entry: every combination of its values
 *   - {mixer: based, d_model: [48, 64, 128], feature_dim: [8, 16, 24]}
 *   - {mixer: sliding, d_model: 128, window: [8, 16, 32, 64]}
 *   - {mixer: attention, d_model: [64, 128]}
 * </pre>
 *
 * @param name what the grid is called in messages: {@code default}, {@code quick} or its file
 */
public record MqarGrid(String name, List<MqarModel> models, List<Double> lrs, int epochs, List<MqarSlice> train,
                       List<MqarSlice> test) {
    /** The learning rates the paper tries for every model, reporting the best. */
    public static final List<Double> PAPER_LRS = List.of(1e-3, 3.2e-3, 1e-2, 3.2e-2);
    /** The paper's epochs: the cosine schedule ends at the last. */
    public static final int PAPER_EPOCHS = 32;
    /** Sliding windows of the paper's figure: 8 to 1024 keys. */
    public static final List<Integer> PAPER_WINDOWS = List.of(8, 16, 32, 64, 128, 256, 512, 1024);

    /** Widest model a grid may name: far above the paper's 128, and within what one array holds per row. */
    static final int MAX_D_MODEL = 1 << 16;
    /** Largest BASED feature dimension a grid may name (the paper's largest is 24; E grows as f^2 / 2). */
    static final int MAX_FEATURE_DIM = 256;
    /** Longest window: config.json's window_size, twice the window, is at most 2^20. */
    static final int MAX_WINDOW = 1 << 19;
    /** Most epochs: a million passes over the data is far beyond any run. */
    static final int MAX_EPOCHS = 1 << 20;

    public MqarGrid {
        models = List.copyOf(models);
        lrs = List.copyOf(lrs);
        train = List.copyOf(train);
        test = List.copyOf(test);
        if (models.isEmpty() || lrs.isEmpty() || train.isEmpty() || test.isEmpty()) {
            throw new IllegalArgumentException("MQAR grid " + name + ": needs at least one model, learning rate,"
                    + " train slice and test slice");
        }
        if (epochs < 1) {
            throw new IllegalArgumentException("MQAR grid " + name + ": epochs must be >= 1, got " + epochs);
        }
        Set<MqarModel> seen = new HashSet<>();
        for (MqarModel m : models) {
            if (!seen.add(m)) {
                throw new IllegalArgumentException("MQAR grid " + name + ": " + m + " is listed twice");
            }
        }
        checkLrs("MQAR grid " + name + ": lrs", lrs);
    }

    /** The recall study of the paper's figure 2 (MQAR-SPEC "Models"), each model at each of the paper's four rates. */
    public static MqarGrid paper() {
        List<MqarModel> models = new ArrayList<>();
        for (int d : List.of(48, 64, 128)) {
            for (int f : List.of(8, 16, 24)) {
                models.add(MqarModel.based(d, f));
            }
        }
        for (int w : PAPER_WINDOWS) {
            models.add(MqarModel.sliding(128, w));
        }
        models.add(MqarModel.attention(64));
        models.add(MqarModel.attention(128));
        return new MqarGrid("default", models, PAPER_LRS, PAPER_EPOCHS, MqarGenerator.paperTrain(),
                MqarGenerator.paperTest());
    }

    /**
     * A smoke run of the sweep: four models, two learning rates, 8 epochs of 30,000 training examples, and 200
     * test examples of each of the paper's test shapes (a few minutes on a GPU).
     */
    public static MqarGrid quick() {
        List<MqarSlice> test = MqarGenerator.paperTest().stream()
                .map(s -> new MqarSlice(s.seqLen(), s.numKv(), 200)).toList();
        return new MqarGrid("quick", List.of(MqarModel.based(64, 8), MqarModel.based(64, 16),
                MqarModel.sliding(128, 64), MqarModel.attention(64)), List.of(3.2e-3, 1e-2), 8,
                List.of(new MqarSlice(64, 4, 20_000), new MqarSlice(128, 8, 5_000), new MqarSlice(256, 16, 5_000)),
                test);
    }

    /** {@code default}, {@code quick}, or a grid file. */
    public static MqarGrid named(String nameOrFile) {
        return switch (nameOrFile) {
            case "default" -> paper();
            case "quick" -> quick();
            default -> read(Path.of(nameOrFile));
        };
    }

    /**
     * Reads a grid file (YAML, or JSON for a {@code .json} file; the format is in the class comment). Every error is
     * one line naming the file and the field.
     */
    public static MqarGrid read(Path file) {
        Settings s = TrainConfig.readSettings(file, "MQAR grid", "a map with models (and optionally lrs, epochs,"
                + " train, test)");
        List<Double> lrs = s.numbers("lrs");
        if (lrs != null) {
            checkLrs(file + ": lrs", lrs);
        }
        int epochs = s.integer("epochs", PAPER_EPOCHS, 1, MAX_EPOCHS);
        List<MqarSlice> train = MqarSlice.parse(file + ": train", s.string("train", "paper"),
                MqarGenerator.paperTrain());
        List<MqarSlice> test = MqarSlice.parse(file + ": test", s.string("test", "paper"), MqarGenerator.paperTest());
        List<Settings> entries = s.sections("models");
        if (entries == null || entries.isEmpty()) {
            throw s.problem("models is missing or empty: list the models to train (mixer, d_model, and feature_dim"
                    + " for based, window for sliding)");
        }
        List<MqarModel> models = new ArrayList<>();
        for (Settings m : entries) {
            models.addAll(models(m));
        }
        s.finish();
        return new MqarGrid(file.toString(), models, lrs == null ? PAPER_LRS : lrs, epochs, train, test);
    }

    /** The models of one entry of a grid file: every combination of its values. */
    private static List<MqarModel> models(Settings m) {
        String mixer = m.string("mixer", null);
        if (mixer == null || !MqarModel.MIXERS.contains(mixer)) {
            throw m.error("mixer", "one of " + String.join(", ", MqarModel.MIXERS), mixer);
        }
        List<Long> widths = required(m, "d_model", MAX_D_MODEL);
        List<Long> dials = switch (mixer) {
            case "based" -> required(m, "feature_dim", MAX_FEATURE_DIM);
            case "sliding" -> required(m, "window", MAX_WINDOW);
            default -> List.of(0L);
        };
        m.finish();
        List<MqarModel> out = new ArrayList<>();
        for (long d : widths) {
            for (long x : dials) {
                out.add(new MqarModel(mixer, (int) d, mixer.equals("based") ? (int) x : 0,
                        mixer.equals("sliding") ? (int) x : 0));
            }
        }
        return out;
    }

    private static List<Long> required(Settings m, String key, int max) {
        List<Long> values = m.integers(key, 1, max);
        if (values == null) {
            throw m.error(key, "an integer or a list of integers in [1, " + max + "]", "(missing)");
        }
        return values;
    }

    /**
     * Reads a comma-separated list of learning rates ({@code --lrs 1e-3,3.2e-3}).
     *
     * @throws IllegalArgumentException starting with {@code what} and naming the value that is not a rate
     */
    public static List<Double> parseLrs(String what, String text) {
        List<Double> out = new ArrayList<>();
        for (String part : text.split(",", -1)) {
            try {
                out.add(Double.parseDouble(part.strip()));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(what + ": '" + part.strip() + "' is not a number (give"
                        + " learning rates such as 1e-3,3.2e-3)");
            }
        }
        checkLrs(what, out);
        return out;
    }

    private static void checkLrs(String what, List<Double> lrs) {
        if (lrs.isEmpty()) {
            throw new IllegalArgumentException(what + ": needs at least one learning rate");
        }
        Set<Double> seen = new HashSet<>();
        for (double lr : lrs) {
            // the paper's rates are 1e-3 to 3.2e-2; 1 and above makes AdamW diverge at once
            if (!(lr > 0 && lr < 1)) {
                throw new IllegalArgumentException(what + ": learning rate " + lr + " is out of range (0, 1)");
            }
            if (!seen.add(lr)) {
                throw new IllegalArgumentException(what + ": learning rate " + lr + " is listed twice");
            }
        }
    }

    /** The same grid with the settings that are not null replaced (command-line options over the grid's). */
    public MqarGrid with(List<Double> newLrs, Integer newEpochs, List<MqarSlice> newTrain, List<MqarSlice> newTest) {
        return new MqarGrid(name, models, newLrs != null ? newLrs : lrs, newEpochs != null ? newEpochs : epochs,
                newTrain != null ? newTrain : train, newTest != null ? newTest : test);
    }

    /** Runs of the grid: every model at every learning rate. */
    public int runs() {
        return models.size() * lrs.size();
    }

    /** {@code "19 models x 4 learning rates = 76 runs, 32 epochs"}. */
    public String describe() {
        return String.format(Locale.ROOT, "%d model%s x %d learning rate%s = %d run%s, %d epoch%s", models.size(),
                models.size() == 1 ? "" : "s", lrs.size(), lrs.size() == 1 ? "" : "s", runs(), runs() == 1 ? "" : "s",
                epochs, epochs == 1 ? "" : "s");
    }
}
