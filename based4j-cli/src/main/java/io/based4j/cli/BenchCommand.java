package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.config.ModelConfig;
import io.based4j.model.BasedModel;
import io.based4j.model.Initializer;
import io.based4j.model.Session;
import io.based4j.model.StateSize;
import java.io.IOException;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.stream.IntStream;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks.",
        subcommands = {BenchCommand.Cpu.class, BenchGpuCommand.class, BenchTrainCommand.class,
            BenchServeCommand.class, BenchKernelsCommand.class})
final class BenchCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    @Command(name = "cpu", mixinStandardHelpOptions = true,
            description = "Prefill and decode throughput on the CPU at several batch sizes, state bytes per sequence, "
                    + "and decode's memory bandwidth against the machine's copy bandwidth measured in the same run.")
    static final class Cpu implements Callable<Integer> {
        @Mixin
        ModelOptions modelOptions = new ModelOptions();

        @Option(names = "--preset", paramLabel = "NAME", completionCandidates = InfoCommand.PresetNames.class,
                description = "Random weights in a released shape instead of --model: ${COMPLETION-CANDIDATES}.")
        String preset;

        @Option(names = "--batch", paramLabel = "B", split = ",", defaultValue = "1,8",
                description = "Batch sizes (default ${DEFAULT-VALUE}).")
        List<Integer> batches;

        @Option(names = "--prompt-len", paramLabel = "N", defaultValue = "128",
                description = "Prompt tokens per sequence for prefill (default ${DEFAULT-VALUE}).")
        int promptLen;

        @Option(names = "--decode-steps", paramLabel = "N", defaultValue = "16",
                description = "Decode steps timed per batch size (default ${DEFAULT-VALUE}).")
        int steps;

        @Option(names = "--json", paramLabel = "FILE", defaultValue = "bench-cpu.json",
                description = "Where to write the results as JSON (default ${DEFAULT-VALUE}).")
        Path json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws IOException {
            if (promptLen < 1 || steps < 1 || batches.stream().anyMatch(b -> b < 1)) {
                throw new UsageException("--prompt-len, --decode-steps and --batch must be >= 1");
            }
            PrintWriter out = spec.commandLine().getOut();
            ModelOptions.modelOrPreset(modelOptions.model, preset);
            ModelConfig presetConfig = preset == null ? null : ModelOptions.preset(preset);
            OutputFiles.checkWritable("--json", json);
            try (Backend backend = modelOptions.backend(); Arena arena = Arena.ofShared()) {
                double copyGBs = copyBandwidth();
                Progress.note(String.format("copy bandwidth %.1f GB/s", copyGBs));
                BasedModel model;
                String name;
                if (presetConfig != null) {
                    Progress.note("initialising random weights for " + preset);
                    model = BasedModel.of(Initializer.weights(presetConfig, 1234, arena), backend);
                    name = "preset " + preset + " (random weights)";
                } else {
                    model = modelOptions.load(backend);
                    name = modelOptions.modelDir().toString();
                }
                try (model) {
                    run(model, name, copyGBs, out);
                }
            }
            return 0;
        }

        private void run(BasedModel model, String name, double copyGBs, PrintWriter out) throws IOException {
            ModelConfig cfg = model.config();
            int context = promptLen + steps + 1;
            long stateBytes = StateSize.total(cfg, context);
            SplittableRandom rnd = new SplittableRandom(7);
            // warm-up: compile the hot loops before anything is timed
            measure(model, 1, Math.min(promptLen, 32), 4, rnd);
            List<Map<String, Object>> rows = new ArrayList<>();
            for (int b : batches) {
                Progress.note("batch " + b + ": prefill " + b + " x " + promptLen + ", then " + steps + " decode steps");
                double[] r = measure(model, b, promptLen, steps, rnd);
                double stepSeconds = r[1];
                // a decode step reads every weight once and reads and writes each sequence's state
                double bytesPerStep = model.weightBytes() + 2.0 * b * StateSize.total(cfg, promptLen + steps / 2);
                double achieved = bytesPerStep / stepSeconds / 1e9;
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("batch", b);
                row.put("prefill_tokens_per_s", b * promptLen / r[0]);
                row.put("decode_tokens_per_s", b / stepSeconds);
                row.put("decode_ms_per_step", stepSeconds * 1e3);
                row.put("decode_bytes_per_step", bytesPerStep);
                row.put("decode_achieved_GBps", achieved);
                row.put("decode_fraction_of_copy_bw", achieved / copyGBs);
                rows.add(row);
            }
            out.printf("based4j bench cpu: %s on %s (%d threads)%n", name, model.backend().name(),
                    java.util.concurrent.ForkJoinPool.getCommonPoolParallelism() + 1);
            out.printf("parameters %.1fM, weights %s, state per sequence at %d tokens: %,d bytes (%s)%n",
                    model.parameterCount() / 1e6, StateSize.human(model.weightBytes()), context, stateBytes,
                    StateSize.human(stateBytes));
            for (Map.Entry<String, Long> e : StateSize.byKind(cfg, context).entrySet()) {
                out.printf("  %-12s %,12d bytes%n", e.getKey(), e.getValue());
            }
            out.printf("machine copy bandwidth (read + write): %.1f GB/s%n%n", copyGBs);
            out.printf("%6s %16s %16s %12s %14s %12s%n", "batch", "prefill tok/s", "decode tok/s", "ms/step",
                    "decode GB/s", "of copy bw");
            for (Map<String, Object> row : rows) {
                out.printf("%6d %16.1f %16.2f %12.1f %14.2f %11.1f%%%n", row.get("batch"), row.get("prefill_tokens_per_s"),
                        row.get("decode_tokens_per_s"), row.get("decode_ms_per_step"), row.get("decode_achieved_GBps"),
                        100 * (double) row.get("decode_fraction_of_copy_bw"));
            }
            Map<String, Object> doc = new LinkedHashMap<>();
            doc.put("benchmark", "cpu");
            doc.put("model", name);
            doc.put("backend", model.backend().name());
            doc.put("threads", java.util.concurrent.ForkJoinPool.getCommonPoolParallelism() + 1);
            BenchRun.describe(doc);
            doc.put("parameters", model.parameterCount());
            doc.put("weight_bytes", model.weightBytes());
            doc.put("prompt_len", promptLen);
            doc.put("decode_steps", steps);
            doc.put("state_bytes_per_sequence", stateBytes);
            doc.put("state_bytes_by_kind", new LinkedHashMap<>(StateSize.byKind(cfg, context)));
            doc.put("copy_bandwidth_GBps", copyGBs);
            doc.put("results", rows);
            OutputFiles.writeJson(json, doc);
            out.printf("%nwrote %s%n", json);
            out.flush();
        }

        /** Returns {prefill seconds, seconds per decode step}. */
        private static double[] measure(BasedModel model, int batch, int promptLen, int steps, SplittableRandom rnd) {
            Backend backend = model.backend();
            int vocab = model.config().vocabSize();
            int padded = model.config().paddedVocabSize();
            Session session = model.newSession(batch, promptLen + steps + 1);
            int[] slots = IntStream.range(0, batch).toArray();
            int[] lengths = new int[batch];
            java.util.Arrays.fill(lengths, promptLen);
            int[] tokens = rnd.ints(batch * promptLen, 0, vocab).toArray();
            long t0 = System.nanoTime();
            float[] logits = backend.download(model.forward(session, session.batch(slots, lengths), tokens, false, null));
            long t1 = System.nanoTime();
            for (int s = 0; s < steps; s++) {
                int[] next = new int[batch];
                for (int b = 0; b < batch; b++) {
                    int best = 0;
                    for (int v = 1; v < vocab; v++) {
                        if (logits[b * padded + v] > logits[b * padded + best]) {
                            best = v;
                        }
                    }
                    next[b] = best;
                }
                logits = backend.download(model.forward(session, session.step(slots), next, false, null));
            }
            long t2 = System.nanoTime();
            return new double[] {(t1 - t0) / 1e9, (t2 - t1) / 1e9 / steps};
        }

        /** Best of several multithreaded copies of a 256 MiB array, counting bytes read plus bytes written. */
        private static double copyBandwidth() {
            int n = 64 << 20;
            float[] src = new float[n];
            float[] dst = new float[n];
            java.util.Arrays.fill(src, 1f);
            int threads = java.util.concurrent.ForkJoinPool.getCommonPoolParallelism() + 1;
            int chunk = (n + threads * 8 - 1) / (threads * 8);
            double best = 0;
            for (int rep = 0; rep < 6; rep++) {
                long t0 = System.nanoTime();
                IntStream.range(0, threads * 8).parallel().forEach(c -> {
                    int from = c * chunk;
                    int len = Math.min(chunk, n - from);
                    if (len > 0) {
                        System.arraycopy(src, from, dst, from, len);
                    }
                });
                double s = (System.nanoTime() - t0) / 1e9;
                best = Math.max(best, 2.0 * 4 * n / s / 1e9);
            }
            return best;
        }
    }
}
