package io.based4j.cli;

import io.based4j.backend.TrainingBackend;
import io.based4j.train.Progress;
import io.based4j.train.mqar.MqarGenerator;
import io.based4j.train.mqar.MqarSlice;
import io.based4j.train.mqar.MqarTrainer;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "mqar", mixinStandardHelpOptions = true,
        description = "Multi-query associative recall: the recall benchmark of the BASED paper.",
        subcommands = {MqarCommand.Train.class})
final class MqarCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    @Command(name = "train", mixinStandardHelpOptions = true,
            description = {"Train a two-layer MQAR model (short conv + mixer) and print its recall per test slice",
                    "and its state size in bytes."})
    static final class Train implements Callable<Integer> {
        @Option(names = "--mixer", paramLabel = "KIND", defaultValue = "based",
                description = "based, attention or sliding (default ${DEFAULT-VALUE}).")
        String mixer;

        @Option(names = "--d-model", paramLabel = "D", defaultValue = "64", description = "Model width (default ${DEFAULT-VALUE}).")
        int dModel;

        @Option(names = "--feature-dim", paramLabel = "F", defaultValue = "16",
                description = "BASED Taylor feature dimension (default ${DEFAULT-VALUE}).")
        int featureDim;

        @Option(names = "--window", paramLabel = "W", defaultValue = "64",
                description = "Sliding window: keys each query sees back (default ${DEFAULT-VALUE}).")
        int window;

        @Option(names = "--heads", paramLabel = "H", defaultValue = "1", description = "Mixer heads (default ${DEFAULT-VALUE}).")
        int heads;

        @Option(names = "--lr", paramLabel = "LR", defaultValue = "3.2e-3",
                description = "Peak learning rate (the paper takes the best of 1e-3, 3.2e-3, 1e-2, 3.2e-2; default ${DEFAULT-VALUE}).")
        double lr;

        @Option(names = "--weight-decay", paramLabel = "WD", defaultValue = "0.1", description = "AdamW weight decay (default ${DEFAULT-VALUE}).")
        double weightDecay;

        @Option(names = "--epochs", paramLabel = "N", defaultValue = "32", description = "Epochs; the cosine schedule ends at the last (default ${DEFAULT-VALUE}).")
        int epochs;

        @Option(names = "--batch", paramLabel = "B", defaultValue = "256", description = "Examples per update (default ${DEFAULT-VALUE}).")
        int batch;

        @Option(names = "--warmup", paramLabel = "N", defaultValue = "0", description = "Linear warmup updates (default ${DEFAULT-VALUE}).")
        int warmup;

        @Option(names = "--train", paramLabel = "SLICES", defaultValue = "paper",
                description = "Training mixture: 'paper' or L:KV:COUNT,... (e.g. 64:4:20000).")
        String train;

        @Option(names = "--test", paramLabel = "SLICES", defaultValue = "paper",
                description = "Test slices: 'paper' (1000 each of (64,4) .. (1024,256)) or L:KV:COUNT,...")
        String test;

        @Option(names = "--seed", paramLabel = "S", defaultValue = "0", description = "Seed of data, order and initialization.")
        long seed;

        @Option(names = "--eval-every", paramLabel = "N", defaultValue = "0",
                description = "Updates between test evaluations (0: every epoch).")
        int evalEvery;

        @Option(names = "--target", paramLabel = "ACC", defaultValue = "0.99",
                description = "Stop once test accuracy exceeds this (default ${DEFAULT-VALUE}; above 1 never stops).")
        double target;

        @Option(names = "--max-minutes", paramLabel = "M", defaultValue = "0", description = "Stop after this long (0: no limit).")
        double maxMinutes;

        @Option(names = "--json", paramLabel = "FILE", description = "Also write the result as JSON.")
        Path json;

        @CommandLine.Mixin
        TrainDeviceOptions deviceOptions = new TrainDeviceOptions();

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws IOException {
            MqarTrainer.Run run = run();
            if (json != null) {
                OutputFiles.checkWritable("--json", json);
            }
            PrintWriter out = spec.commandLine().getOut();
            MqarTrainer.Result r;
            try (TrainingBackend backend = deviceOptions.open()) {
                // the progress lines go to standard error, the scores below to standard output
                r = new MqarTrainer(run, backend, spec.commandLine().getErr(), Progress.stderrTerminal()).train();
            }
            out.println();
            out.printf(Locale.ROOT, "%-16s %10s %10s%n", "test slice", "accuracy", "loss");
            for (MqarTrainer.SliceScore s : r.scores()) {
                out.printf(Locale.ROOT, "%-16s %10.4f %10.4f%n", "L " + s.slice().seqLen() + ", kv " + s.slice().numKv(),
                        s.accuracy(), s.loss());
            }
            out.printf(Locale.ROOT, "%-16s %10.4f%n", "all", r.accuracy());
            out.printf(Locale.ROOT, "state: %,d bytes (2^%.2f, MQAR-SPEC formula); %,d parameters%n", r.stateBytes(),
                    Math.log(r.stateBytes()) / Math.log(2), r.parameters());
            out.printf(Locale.ROOT, "%s accuracy %.4f after %,d updates in %s (%.1f minutes)%n",
                    r.reached() ? "reached" : "stopped at", r.accuracy(), r.steps(), Progress.duration(r.seconds()),
                    r.seconds() / 60);
            out.flush();
            if (json != null) {
                writeJson(run, r);
            }
            return 0;
        }

        /** The run the options describe; an option value out of range is a usage error. */
        private MqarTrainer.Run run() {
            positive("--d-model", dModel);
            positive("--feature-dim", featureDim);
            positive("--window", window);
            positive("--heads", heads);
            positive("--epochs", epochs);
            positive("--batch", batch);
            if (!(lr > 0) || !(weightDecay >= 0) || warmup < 0 || evalEvery < 0 || !(maxMinutes >= 0)
                    || Double.isNaN(target)) {
                throw new UsageException("--lr must be > 0, --weight-decay, --warmup, --eval-every and"
                        + " --max-minutes >= 0, and --target a number");
            }
            try {
                return new MqarTrainer.Run(mixer, dModel, featureDim, window, heads, lr, weightDecay, epochs, batch,
                        warmup, slices("--train", train, MqarGenerator.paperTrain()),
                        slices("--test", test, MqarGenerator.paperTest()), seed, evalEvery, target, maxMinutes);
            } catch (IllegalArgumentException e) {
                throw new UsageException(e.getMessage()); // a mixer or slice the options name, out of range
            }
        }

        private static void positive(String name, int v) {
            if (v < 1) {
                throw new UsageException(name + " must be >= 1, got " + v);
            }
        }

        static List<MqarSlice> slices(String option, String text, List<MqarSlice> paper) {
            if (text.equals("paper")) {
                return paper;
            }
            List<MqarSlice> out = new ArrayList<>();
            for (String part : text.split(",")) {
                String[] f = part.trim().split(":");
                try {
                    if (f.length != 3) {
                        throw new NumberFormatException();
                    }
                    MqarSlice s = new MqarSlice(Integer.parseInt(f[0]), Integer.parseInt(f[1]), Integer.parseInt(f[2]));
                    MqarGenerator.check(s.seqLen(), s.numKv(), MqarGenerator.DEFAULT_VOCAB);
                    out.add(s);
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException(option + ": '" + part + "' is not L:KV:COUNT (e.g. 64:4:1000)");
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException(option + ": " + e.getMessage());
                }
            }
            return out;
        }

        private void writeJson(MqarTrainer.Run run, MqarTrainer.Result r) throws IOException {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("mixer", run.mixer());
            m.put("d_model", (long) run.dModel());
            if (run.mixer().equals("based")) {
                m.put("feature_dim", (long) run.featureDim());
            }
            if (run.mixer().equals("sliding")) {
                m.put("window", (long) run.window());
            }
            m.put("lr", run.lr());
            m.put("state_bytes", r.stateBytes());
            m.put("parameters", r.parameters());
            m.put("accuracy", r.accuracy());
            m.put("reached_target", r.reached());
            m.put("updates", r.steps());
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
            OutputFiles.writeJson(json, m);
        }
    }
}
