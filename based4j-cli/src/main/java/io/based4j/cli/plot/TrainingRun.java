package io.based4j.cli.plot;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The curves of one training run, read from the {@code metrics.jsonl} that {@code based4j train} appends to: lines
 * with {@code step}, {@code loss} and {@code lr} (one per logged update) and lines with {@code step} and
 * {@code val_loss} (one per evaluation). Other lines and fields are passed over.
 *
 * @param label the run's name in the chart: its directory's name
 */
record TrainingRun(String label, Path file, List<Train> train, List<Validation> validation) {
    /** The log file in a run directory. */
    static final String METRICS = "metrics.jsonl";

    /** A logged update: its training loss and learning rate (NaN when the line has none). */
    record Train(long step, double loss, double lr) {
    }

    record Validation(long step, double loss) {
    }

    /** Reads the runs given as run directories or metrics files, named by their directories. */
    static List<TrainingRun> read(List<Path> inputs, Consumer<String> notes) throws IOException {
        List<Path> files = new ArrayList<>();
        List<String> labels = new ArrayList<>();
        for (Path input : inputs) {
            Path file = Files.isDirectory(input) ? input.resolve(METRICS) : input;
            if (Files.isDirectory(input) && !Files.exists(file)) {
                throw new IllegalArgumentException(input + ": a directory without " + METRICS + " (give the"
                        + " directory of a 'based4j train' run, or its " + METRICS + ")");
            }
            files.add(file);
            labels.add(label(input));
        }
        // two runs of the same name (runs/a/x and runs/b/x) are told apart by the paths as given
        Map<String, Integer> uses = new HashMap<>();
        labels.forEach(l -> uses.merge(l, 1, Integer::sum));
        List<TrainingRun> runs = new ArrayList<>();
        for (int i = 0; i < files.size(); i++) {
            String label = uses.get(labels.get(i)) > 1 ? inputs.get(i).toString() : labels.get(i);
            for (TrainingRun earlier : runs) {
                if (earlier.label().equals(label)) {
                    throw new IllegalArgumentException(inputs.get(i) + " is given twice");
                }
            }
            runs.add(read(label, files.get(i), notes));
        }
        return runs;
    }

    /** The run directory's name: the input's own for a directory, its folder's for a file. */
    private static String label(Path input) {
        Path abs = input.toAbsolutePath().normalize();
        Path dir = Files.isDirectory(abs) ? abs : abs.getParent();
        if (dir == null || dir.getFileName() == null) {
            return String.valueOf(abs.getFileName());
        }
        return dir.getFileName().toString();
    }

    static TrainingRun read(String label, Path file, Consumer<String> notes) throws IOException {
        List<JsonEntry> lines = JsonInput.lines(file, notes);
        List<Train> train = new ArrayList<>();
        List<Validation> validation = new ArrayList<>();
        int notFinite = 0;
        for (JsonEntry e : lines) {
            Long step = e.integer("step");
            if (step == null) {
                throw e.missing("step", "the update, an integer");
            }
            if (e.has("loss")) {
                train.add(new Train(step, e.number("loss"), e.number("lr")));
            } else if (e.fields().containsKey("loss")) {
                notFinite++;
            }
            if (e.has("val_loss")) {
                validation.add(new Validation(step, e.number("val_loss")));
            } else if (e.fields().containsKey("val_loss")) {
                notFinite++;
            }
        }
        if (notFinite > 0) {
            notes.accept(file + ": left out " + notFinite + " losses that were not finite (NaN or infinite, logged"
                    + " as null)");
        }
        if (train.isEmpty() && validation.isEmpty()) {
            throw new IllegalArgumentException(file + ": no training or validation loss (" + lines.size()
                    + " JSON lines read; a metrics log of 'based4j train' has lines with \"step\" and \"loss\" or"
                    + " \"val_loss\")");
        }
        return new TrainingRun(label, file, List.copyOf(train), List.copyOf(validation));
    }

    /**
     * The training loss smoothed by an exponential moving average of weight {@code weight} over the logged
     * updates, corrected for its start at zero (as TensorBoard smooths): {@code weight} 0 leaves it as it is.
     */
    double[] smoothedLoss(double weight) {
        double[] out = new double[train.size()];
        double ema = 0;
        double decay = 1;
        for (int i = 0; i < out.length; i++) {
            ema = weight * ema + (1 - weight) * train.get(i).loss();
            decay *= weight;
            out[i] = ema / (1 - decay);
        }
        return out;
    }

    boolean hasLearningRate() {
        return train.stream().anyMatch(t -> !Double.isNaN(t.lr()));
    }
}
