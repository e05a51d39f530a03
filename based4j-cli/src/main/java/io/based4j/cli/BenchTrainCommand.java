package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.backend.OpProfile;
import io.based4j.backend.TrainingBackend;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.cuda.CudaBackend;
import io.based4j.memory.Sizes;
import io.based4j.model.Initializer;
import io.based4j.tensor.Tensor;
import io.based4j.train.AdamW;
import io.based4j.train.ModelSpec;
import io.based4j.train.TrainModel;
import io.based4j.train.cpu.CpuTrainBackend;
import io.based4j.train.mqar.MqarGenerator;
import io.based4j.train.mqar.MqarModel;
import io.based4j.train.mqar.MqarSet;
import io.based4j.train.mqar.MqarSlice;
import java.io.IOException;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code based4j bench train}: training throughput of whole steps (forward, backward, AdamW) on random tokens, for
 * BASED and attention shapes side by side, with the model FLOPs utilisation against the backend's own matrix product
 * measured in the same run, and the peak memory.
 *
 * <p>Model FLOPs per token, the usual convention (recomputation not counted): three times the forward's, where the
 * forward's is 2 per weight of every projection and of the head (the real vocabulary), plus the sequence mixers'
 * own: causal attention {@code 4 d} per key a query sees (scores and values), linear attention {@code 4 E d}
 * (state update and readout, {@code E = 1 + f + f(f+1)/2}), the short conv {@code 2 k} per channel.
 */
@Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Training throughput (tokens/s), model FLOPs utilisation against the backend's matrix product "
                + "measured in the same run, and peak memory, for BASED and attention shapes side by side.",
                "Steps are whole updates (forward, backward, AdamW) on random tokens; a table and JSON."})
final class BenchTrainCommand implements Callable<Integer> {
    /**
     * The MQAR shapes, each on the examples of the paper's longest training slice (256 tokens, 64 key-value pairs:
     * a quarter of the positions scored): {@code mqar}, the paper's largest BASED point (d 128, f 16, one head);
     * {@code mqar-sliding}, sliding-window attention d 128, window 64; {@code mqar-attention}, attention d 128.
     */
    static final Map<String, MqarModel> MQAR_SHAPES = Map.of("mqar", MqarModel.based(128, 16),
            "mqar-sliding", MqarModel.sliding(128, 64), "mqar-attention", MqarModel.attention(128));
    private static final int MQAR_SEQ_LEN = 256;
    private static final int MQAR_KV = 64;

    @Mixin
    TrainDeviceOptions deviceOptions = new TrainDeviceOptions();

    @Option(names = "--preset", paramLabel = "NAME", split = ",", defaultValue = "based-360m,attn-360m,mqar",
            description = "Shapes: based-360m, based-1b, attn-360m, attn-1b, mqar, mqar-sliding, mqar-attention "
                    + "(default ${DEFAULT-VALUE}).")
    List<String> presets;

    @Option(names = "--seq-len", paramLabel = "N", split = ",", defaultValue = "2048,8192",
            description = "Sequence lengths for the language-model shapes (default ${DEFAULT-VALUE}); mqar runs at "
                    + MQAR_SEQ_LEN + ".")
    List<Integer> seqLens;

    @Option(names = "--tokens", paramLabel = "N", defaultValue = "16384",
            description = "Tokens per step: sequences = N / seq-len, at least one (default ${DEFAULT-VALUE}).")
    int tokensPerStep;

    @Option(names = "--steps", paramLabel = "N", defaultValue = "3",
            description = "Timed steps at least (default ${DEFAULT-VALUE}); more while they have taken less than "
                    + MIN_TIMED_SECONDS + " s.")
    int steps;

    @Option(names = "--warmup", paramLabel = "N", defaultValue = "2",
            description = "Untimed steps first (default ${DEFAULT-VALUE}: the first runs op by op, the second records "
                    + "the step as a CUDA graph where the backend records, so that the timed steps replay it, as "
                    + "training does).")
    int warmup;

    /** The timed steps go on until they have taken this long (and --steps have run). */
    static final double MIN_TIMED_SECONDS = 1.0;

    @Option(names = "--profile", description = "After the timed steps, one more step timed op by op on the device's "
            + "clock: a table per shape of the ops and shapes that took the most time, and all of them in the JSON.")
    boolean profile;

    @Option(names = "--json", paramLabel = "FILE", defaultValue = "bench-train.json",
            description = "Where to write the results as JSON (default ${DEFAULT-VALUE}).")
    Path json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** One shape to measure; an MQAR shape trains on MQAR examples, the others on random tokens. */
    record Shape(String name, ModelConfig config, int batch, int seqLen, boolean mqar) {
        long tokens() {
            return (long) batch * seqLen;
        }

        /** Share of the positions with a target: the head and loss run over those rows only. */
        double scoredFraction() {
            return mqar ? (double) MQAR_KV / MQAR_SEQ_LEN : 1.0;
        }
    }

    @Override
    public Integer call() throws IOException {
        if (steps < 1 || warmup < 0 || tokensPerStep < 1 || seqLens.stream().anyMatch(n -> n < 2)) {
            throw new UsageException("--steps and --tokens must be >= 1, --warmup >= 0 and --seq-len >= 2");
        }
        List<Shape> shapes = shapes();
        OutputFiles.checkWritable("--json", json);
        PrintWriter out = spec.commandLine().getOut();
        try (TrainingBackend backend = deviceOptions.open()) {
            double peak = matmulRate(backend);
            Progress.note(String.format(Locale.ROOT, "%s: matrix product %.1f GFLOP/s", backend.name(), peak / 1e9));
            List<Map<String, Object>> rows = new ArrayList<>();
            for (Shape s : shapes) {
                double flopsPerToken = flopsPerToken(s.config(), s.seqLen(), s.scoredFraction());
                Progress.note(String.format(Locale.ROOT, "%s, %d x %d tokens: %.1f ms of matrix products per step at"
                        + " the measured rate (%d untimed steps, then at least %d timed for %.0f s)", s.name(),
                        s.batch(), s.seqLen(), 1e3 * flopsPerToken * s.tokens() / peak, warmup, steps,
                        MIN_TIMED_SECONDS));
                rows.add(measure(backend, s, flopsPerToken, peak));
            }
            print(out, backend.name(), peak, rows);
            Map<String, Object> doc = new LinkedHashMap<>();
            doc.put("device", backend.name());
            doc.put("precision", deviceOptions.precisionName());
            BenchRun.describe(doc);
            doc.put("matmul_flops_per_s", peak);
            doc.put("flops_per_token", "3 x forward: 2 per projection weight, 2 per head weight per scored position, "
                    + "attention 4 d per key seen, linear attention 4 E d, conv 2 k per channel");
            doc.put("results", rows);
            OutputFiles.writeJson(json, doc);
            out.println("wrote " + json);
        }
        return 0;
    }

    private List<Shape> shapes() {
        List<Shape> out = new ArrayList<>();
        for (String p : presets) {
            MqarModel m = MQAR_SHAPES.get(p);
            if (m != null) {
                out.add(new Shape(p, ModelSpec.parse(p + " shape", m.configMap(1)),
                        Math.max(1, tokensPerStep / MQAR_SEQ_LEN), MQAR_SEQ_LEN, true));
                continue;
            }
            ModelConfig c = ModelOptions.preset(p);
            for (int n : seqLens) {
                out.add(new Shape(p, c, Math.max(1, tokensPerStep / n), n, false));
            }
        }
        return out;
    }

    /** Model FLOPs of one trained token (forward and backward) at sequence length {@code seqLen}, every one scored. */
    static double flopsPerToken(ModelConfig c, int seqLen) {
        return flopsPerToken(c, seqLen, 1.0);
    }

    /**
     * Model FLOPs of one trained token (forward and backward) at sequence length {@code seqLen}, where a share
     * {@code scored} of the positions has a target (the head runs over those rows only).
     */
    static double flopsPerToken(ModelConfig c, int seqLen, double scored) {
        double d = c.dModel();
        double forward = 2.0 * d * c.vocabSize() * scored; // the head
        for (MixerConfig m : c.layers()) {
            if (c.hasMlp()) {
                forward += 2.0 * 3 * d * c.mlpHidden(); // fc1 (2h x d) and fc2 (d x h)
            }
            forward += switch (m) {
                case MixerConfig.BaseConv conv -> 2.0 * (2 * conv.innerWidth() * d + conv.innerWidth() * d)
                        + 2.0 * conv.kernel() * conv.innerWidth();
                case MixerConfig.LinearAttention la -> {
                    double qk = (double) la.numHeads() * la.featureDim();
                    double e = 1 + la.featureDim() + la.featureDim() * (la.featureDim() + 1) / 2.0;
                    yield 2.0 * (2 * qk * d + 2 * d * d) + 4.0 * e * d;
                }
                case MixerConfig.Attention a -> 2.0 * (4 * d * d) + 4.0 * d * meanKeys(a.window(), seqLen);
            };
        }
        return 3 * forward;
    }

    /** Keys a query sees on average over positions {@code 0 .. seqLen-1}: {@code min(t, window) + 1}. */
    static double meanKeys(int window, int seqLen) {
        double sum = 0;
        for (int t = 0; t < seqLen; t++) {
            sum += Math.min((long) t, window) + 1;
        }
        return sum / seqLen;
    }

    /** Floating-point operations per second of the backend's matrix product ({@code x @ w^T}), measured now. */
    private static double matmulRate(TrainingBackend backend) {
        boolean cpu = backend instanceof CpuTrainBackend;
        int n = cpu ? 256 : 8192;
        int k = cpu ? 512 : 8192;
        int m = cpu ? 512 : 8192;
        SplittableRandom r = new SplittableRandom(1);
        // the timed product reads activations in the compute type, as a training step's products do: x is made by a
        // first product (uploads are float32) of random [n, 64] by a random [k, 64] projection
        int rank = 64;
        Backend.Weight w = backend.weight(Tensor.ofFloats(gaussian(r, m * k, 1), m, k));
        Backend.Buffer x = backend.allocate(n, k);
        backend.matmul(backend.upload(gaussian(r, n * rank, 1), n, rank),
                backend.weight(Tensor.ofFloats(gaussian(r, k * rank, 1 / Math.sqrt(rank)), k, rank)), null, x);
        Backend.Buffer out = backend.allocate(n, m);
        for (int i = 0; i < 3; i++) { // warm-up (and, on the CPU, the compiler)
            backend.matmul(x, w, null, out);
        }
        waitFor(backend, out);
        // batches of products until half a second has passed
        int reps = 0;
        long t0 = System.nanoTime();
        double seconds;
        do {
            for (int i = 0; i < 10; i++) {
                backend.matmul(x, w, null, out);
            }
            waitFor(backend, out);
            reps += 10;
            seconds = (System.nanoTime() - t0) / 1e9;
        } while (seconds < 0.5);
        return 2.0 * n * k * m * reps / seconds;
    }

    /** Returns once {@code out} is computed: a GPU's work is queued, so one row is read back; the CPU's is done. */
    private static void waitFor(TrainingBackend backend, Backend.Buffer out) {
        if (!(backend instanceof CpuTrainBackend)) {
            backend.download(backend.view(out, 1));
        }
    }

    /** {@code count} values from N(0, std^2). */
    private static float[] gaussian(SplittableRandom r, int count, double std) {
        float[] v = new float[count];
        for (int i = 0; i < count; i++) {
            v[i] = (float) (r.nextGaussian() * std);
        }
        return v;
    }

    private Map<String, Object> measure(TrainingBackend backend, Shape s, double flopsPerToken, double peak) {
        ModelConfig c = s.config();
        Map<String, Object> row = new LinkedHashMap<>();
        row.put("shape", s.name());
        row.put("seq_len", s.seqLen());
        row.put("batch", s.batch());
        row.put("tokens_per_step", s.tokens());
        row.put("flops_per_token", flopsPerToken);
        try (Arena arena = Arena.ofShared()) {
            io.based4j.train.TrainMemory.check(c, s.batch(), s.seqLen(), backend);
            OpProfile[] ops = new OpProfile[1];
            TrainingBackend b = profile ? OpProfile.wrap(backend, ops) : backend;
            TrainModel model = new TrainModel(c, Initializer.stateDict(c, 1, arena), b, "random weights");
            AdamW opt = new AdamW(model, AdamW.Settings.DEFAULTS);
            row.put("parameters", model.parameterCount());
            int n = Math.toIntExact(s.tokens());
            int[] ids;
            int[] targets;
            if (s.mqar()) {
                MqarSet set = MqarGenerator.generate(new MqarSlice(s.seqLen(), MQAR_KV, s.batch()), c.vocabSize(),
                        2, true, 0);
                ids = set.inputs();
                targets = set.targets();
            } else {
                ids = new int[n];
                targets = new int[n];
                SplittableRandom r = new SplittableRandom(2);
                for (int i = 0; i < n; i++) {
                    ids[i] = r.nextInt(c.vocabSize());
                    targets[i] = r.nextInt(c.vocabSize());
                }
            }
            long scored = Arrays.stream(targets).filter(t -> t != TrainingBackend.IGNORE_INDEX).count();
            row.put("scored_targets", scored);
            double scale = 1.0 / Math.max(1, scored);
            resetPeak(backend);
            for (int i = 0; i < warmup; i++) {
                step(model, opt, ids, targets, s, scale).value();
            }
            long t0 = System.nanoTime();
            TrainingBackend.Readout last = null;
            int timedSteps = 0;
            // queued as the trainer queues its steps: the host runs at most a step or two ahead of the device, so the
            // time queuing them is close to the device's
            while (timedSteps < steps || System.nanoTime() - t0 < MIN_TIMED_SECONDS * 1e9) {
                last = step(model, opt, ids, targets, s, scale);
                timedSteps++;
            }
            double finalLoss = last.value();  // waits for the device: every timed step has run
            if (!Double.isFinite(finalLoss)) {
                throw new IllegalStateException(s.name() + ": the loss of the last timed step is " + finalLoss);
            }
            opt.requireFinite();
            double seconds = (System.nanoTime() - t0) / 1e9 / timedSteps;
            row.put("timed_steps", timedSteps);
            double tokensPerSecond = s.tokens() / seconds;
            row.put("seconds_per_step", seconds);
            row.put("tokens_per_s", tokensPerSecond);
            row.put("mfu", tokensPerSecond * flopsPerToken / peak);
            row.put("peak_bytes", peakBytes(backend));
            if (profile) {
                model.recordSteps(false);  // the timed steps replayed recordings; this one runs op by op
                ops[0].start();
                step(model, opt, ids, targets, s, scale).value();
                List<OpProfile.Row> timed = ops[0].stop();
                row.put("profile", ProfileTable.json(timed));
                row.put("profile_kernels", ProfileTable.json(ops[0].kernels()));
                String what = String.format(Locale.ROOT, "%s, %d x %d tokens: one step op by op", s.name(),
                        s.batch(), s.seqLen());
                ProfileTable.print(spec.commandLine().getOut(), what, timed, PROFILE_ROWS);
                ProfileTable.printKernels(spec.commandLine().getOut(), what, timed, ops[0].kernels(), PROFILE_ROWS);
            }
            // the next shape starts clean: its activations and recorded steps, and the scratch they held, go
            model.releaseActivations();
        } catch (io.based4j.memory.NotEnoughMemoryException e) {
            row.put("error", e.getMessage());
            Progress.note(s.name() + " at " + s.seqLen() + ": " + e.getMessage());
        }
        return row;
    }

    /** One training step as the trainer takes it; returns its loss, still on the device. */
    private static TrainingBackend.Readout step(TrainModel model, AdamW opt, int[] ids, int[] targets, Shape s,
                                                double scale) {
        return model.trainStep(ids, targets, s.batch(), s.seqLen(), scale, opt, 1e-4).loss();
    }

    private static void resetPeak(TrainingBackend backend) {
        if ((Object) backend instanceof CudaBackend gpu) {
            gpu.resetPeak();
        }
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == MemoryType.HEAP) {
                pool.resetPeakUsage();
            }
        }
    }

    /** Device memory held at the peak on a GPU; the Java heap's peak (where the CPU trainer keeps everything). */
    private static long peakBytes(TrainingBackend backend) {
        if ((Object) backend instanceof CudaBackend gpu) {
            return gpu.peakAllocatedBytes();
        }
        long sum = 0;
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == MemoryType.HEAP) {
                sum += pool.getPeakUsage().getUsed();
            }
        }
        return sum;
    }

    /** Rows of the op table before the rest is summed into one line. */
    private static final int PROFILE_ROWS = 40;

    private static void print(PrintWriter out, String device, double peak, List<Map<String, Object>> rows) {
        out.printf(Locale.ROOT, "based4j bench train on %s: matrix product %.1f GFLOP/s (measured in this run)%n",
                device, peak / 1e9);
        out.printf(Locale.ROOT, "%-14s %5s %6s %13s %11s %12s %7s %11s%n", "shape", "seq", "batch", "params",
                "GFLOP/tok", "tokens/s", "MFU", "peak mem");
        for (Map<String, Object> row : rows) {
            if (row.containsKey("error")) {
                out.printf(Locale.ROOT, "%-14s %5d %6d  does not fit: %s%n", row.get("shape"), row.get("seq_len"),
                        row.get("batch"), row.get("error"));
                continue;
            }
            out.printf(Locale.ROOT, "%-14s %5d %6d %13s %11.3f %,12.0f %6.1f%% %11s%n", row.get("shape"),
                    row.get("seq_len"), row.get("batch"), Sizes.count((long) row.get("parameters")),
                    (double) row.get("flops_per_token") / 1e9, (double) row.get("tokens_per_s"),
                    100 * (double) row.get("mfu"), Sizes.human((long) row.get("peak_bytes")));
        }
        out.flush();
    }
}
