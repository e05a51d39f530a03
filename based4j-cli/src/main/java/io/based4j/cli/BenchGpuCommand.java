package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.backend.OpClock;
import io.based4j.backend.OpProfile;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.TrainingBackend;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.model.BasedModel;
import io.based4j.model.Presets;
import io.based4j.model.Session;
import io.based4j.model.StateSize;
import io.based4j.sampling.Sampler;
import io.based4j.sampling.SamplingParams;
import java.io.IOException;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.stream.IntStream;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "gpu", mixinStandardHelpOptions = true,
        description = {"Prefill and decode throughput on an NVIDIA GPU for several batch sizes and prompt lengths, with "
                + "state bytes per sequence, peak GPU memory, and decode's memory traffic against the device copy "
                + "bandwidth measured in the same run.",
                "--generate G times whole generations instead: prefill and G greedy tokens per sequence, tokens/s = "
                        + "batch x G / seconds end to end (default batch " + BenchGpuCommand.GENERATE_BATCH
                        + ", prompt " + BenchGpuCommand.GENERATE_PROMPT + ").",
                "--compare A,B measures two models (presets or checkpoint directories) in one run and adds B's "
                        + "tokens/s against A's."})
final class BenchGpuCommand implements Callable<Integer> {
    /** The batch and prompt length of {@code --generate} unless --batch or --prompt-len is given. */
    static final int GENERATE_BATCH = 128;
    static final int GENERATE_PROMPT = 512;

    @Option(names = {"-m", "--model"}, paramLabel = "DIR", description = "Checkpoint directory (instead of --preset).")
    Path model;

    @Option(names = "--preset", paramLabel = "NAME", completionCandidates = InfoCommand.PresetNames.class,
            description = "Random weights in a released shape: ${COMPLETION-CANDIDATES}. Default: based-360m unless "
                    + "--model or --compare is given.")
    String preset;

    @Option(names = "--compare", paramLabel = "A,B", split = ",",
            description = "Two models measured one after the other in this run, each a preset (random weights) or a "
                    + "checkpoint directory, e.g. based-1b,attn-1b: both tables, then B's tokens/s against A's.")
    List<String> compare;

    @Option(names = "--generate", paramLabel = "G",
            description = "Time whole generations of G tokens per sequence (prefill included) instead of prefill and "
                    + "decode steps apart.")
    Integer generate;

    @Option(names = "--device", paramLabel = "DEVICE", defaultValue = "cuda",
            description = "cuda or cuda:N; cpu for a quick check of the benchmark (no memory figures).")
    String device;

    @Option(names = "--precision", paramLabel = "TYPE", defaultValue = "bf16", description = "bf16 or f32.")
    String precision;

    @Option(names = "--batch", paramLabel = "B", split = ",",
            description = "Batch sizes (default 1,8,64,256; with --generate " + GENERATE_BATCH + ").")
    List<Integer> batches;

    @Option(names = "--prompt-len", paramLabel = "N", split = ",",
            description = "Prompt lengths (default 512,2048; with --generate " + GENERATE_PROMPT + ").")
    List<Integer> promptLens;

    @Option(names = "--decode-steps", paramLabel = "N", defaultValue = "32",
            description = "Decode steps timed per configuration (default ${DEFAULT-VALUE}).")
    int steps;

    @Option(names = "--tokens-per-call", paramLabel = "N", defaultValue = "16384",
            description = "Most tokens of one prefill call (default ${DEFAULT-VALUE}).")
    int tokensPerCall;

    @Option(names = "--repeat", paramLabel = "N", defaultValue = "1",
            description = "Timed runs of each configuration, each in a fresh session (default ${DEFAULT-VALUE}): the "
                    + "table shows the median run (by decode tokens/s, or tokens/s with --generate; the slower middle "
                    + "one of an even number) and the range over the runs, the JSON every run's figure too.")
    int repeat;

    /** The most runs --repeat takes. */
    static final int MAX_REPEAT = 100;

    @Option(names = "--json", paramLabel = "FILE", defaultValue = "bench-gpu.json",
            description = "Where to write the results as JSON (default ${DEFAULT-VALUE}).")
    Path json;

    @Option(names = "--no-steps-ahead", description = "Each decode step waits for the ids of the step before on "
            + "the host before it is queued (by default a step is queued on them before the host has read them, the "
            + "sampling kernel handing them to it, as a generation runs): for comparison.")
    boolean noStepsAhead;

    @Option(names = "--profile", description = "After each configuration's timed steps (not with --generate), its "
            + "prefill and one decode step again, op by op on the device's clock (no CUDA graph): a table of the ops "
            + "that took the most time, and all of them in the JSON.")
    boolean profile;

    @Option(names = "--profiler-range", paramLabel = "PART",
            description = "prefill or decode: the last timed run of each configuration has its prefill, or its timed "
                    + "decode steps, between cuProfilerStart and cuProfilerStop, so that a profiler started with "
                    + "collection off sees those alone (ncu --profile-from-start off, nsys profile "
                    + "--capture-range=cudaProfilerApi); the warm-up and the untimed steps stay outside. GPU only, "
                    + "not with --generate.")
    String profilerRange;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** The profile of the backend the models run on, with --profile. */
    private final OpProfile[] ops = new OpProfile[1];
    /** The model being measured, as the profile tables name it. */
    private String profiled = "";

    /** The parts --profiler-range can mark. */
    private static final List<String> PROFILER_PARTS = List.of("prefill", "decode");

    /** Rows of a profile table before the rest is summed into one line. */
    private static final int PROFILE_ROWS = 25;

    /** One model's measurements. */
    private record Measured(BenchServeCommand.Subject subject, String source, long parameters, long weightBytes,
                            Map<String, Long> stateBytesByKind, List<Map<String, Object>> rows) {
    }

    @Override
    public Integer call() throws IOException {
        if (steps < 1 || tokensPerCall < 1 || batches != null && batches.stream().anyMatch(b -> b < 1)
                || promptLens != null && promptLens.stream().anyMatch(p -> p < 1)) {
            throw new UsageException("--batch, --prompt-len, --decode-steps and --tokens-per-call must be >= 1");
        }
        if (repeat < 1 || repeat > MAX_REPEAT) {
            throw new UsageException("--repeat must be from 1 to " + MAX_REPEAT + " runs, got " + repeat);
        }
        if (generate != null && generate < 1) {
            throw new UsageException("--generate must be >= 1 generated tokens, got " + generate);
        }
        if (profile && (generate != null || device.equals("cpu"))) {
            throw new UsageException("--profile times prefill and decode steps on a GPU: not with --generate or "
                    + "--device cpu");
        }
        if (profilerRange != null && !PROFILER_PARTS.contains(profilerRange)) {
            throw new UsageException("--profiler-range is prefill or decode, got " + profilerRange);
        }
        if (profilerRange != null && (generate != null || device.equals("cpu"))) {
            throw new UsageException("--profiler-range marks a timed prefill or timed decode steps on a GPU: not with "
                    + "--generate or --device cpu");
        }
        if (batches == null) {
            batches = generate != null ? List.of(GENERATE_BATCH) : List.of(1, 8, 64, 256);
        }
        if (promptLens == null) {
            promptLens = generate != null ? List.of(GENERATE_PROMPT) : List.of(512, 2048);
        }
        List<BenchServeCommand.Subject> subjects = subjects();
        ModelOptions.precision(precision);
        if (!device.equals("cpu") && !ModelOptions.isCuda(device)) {
            throw new UsageException("bench gpu runs on cuda, cuda:N or cpu, not --device " + device);
        }
        OutputFiles.checkWritable("--json", json);
        PrintWriter out = spec.commandLine().getOut();
        List<Measured> measured = new ArrayList<>();
        BenchDevice dev;
        Double copyGBs;
        try (Backend backend = ModelOptions.open(device, precision)) {
            dev = BenchDevice.of(backend);
            copyGBs = dev.copyGBs();
            if (copyGBs != null) {
                Progress.note(String.format("%s (%s): device copy bandwidth %.0f GB/s", backend.name(),
                        dev.deviceName(), copyGBs));
            }
            // with --profile the models run on the backend seen through a profile, which times ops only when asked
            Backend runOn = profile ? OpProfile.wrap((TrainingBackend) backend, ops) : backend;
            for (BenchServeCommand.Subject s : subjects) {
                try (Arena arena = Arena.ofShared(); BasedModel m = BenchServeCommand.load(s, runOn, arena)) {
                    profiled = s.name();
                    String source = s.preset() != null ? "preset " + s.preset() + " (random weights)"
                            : s.dir().toString();
                    long weightBytes = m.parameterCount() * dev.weightBytes();
                    int longest = promptLens.get(0) + (generate != null ? generate : steps) + 1;
                    measured.add(new Measured(s, source, m.parameterCount(), weightBytes,
                            new LinkedHashMap<>(StateSize.byKind(m.config(), longest,
                                    m.backend().cacheValueBytes())),
                            generate != null ? generateRows(m, dev) : decodeRows(m, dev, weightBytes, copyGBs)));
                }
            }
        }
        Map<String, String> compared = generate != null ? BenchGpuReport.GENERATE_RATES : BenchGpuReport.DECODE_RATES;
        for (Measured m : measured) {
            print(out, m, dev, copyGBs);
        }
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("benchmark", "gpu");
        if (generate != null) {
            doc.put("mode", "generate");
        }
        if (measured.size() == 1) {
            doc.put("model", measured.getFirst().source());
        }
        doc.put("backend", dev.backend().name());
        doc.put("device", dev.deviceName());
        doc.put("precision", dev.precision());
        BenchRun.describe(doc);
        if (measured.size() == 1) {
            doc.put("parameters", measured.getFirst().parameters());
            doc.put("weight_bytes_on_gpu", measured.getFirst().weightBytes());
        }
        if (generate != null) {
            doc.put("generated_tokens", generate);
            doc.put("tokens_per_s", "batch x generated tokens / seconds from the start of the prefill to the last "
                    + "token, greedy; an untimed short generation at the same batch before");
        } else {
            doc.put("decode_steps", steps);
            doc.put("prefill_timing", "prefill_tokens_per_s: batch x prompt / seconds of a prefill of every slot of "
                    + "a fresh session, after one prefill of the same shape in another (its figure: "
                    + "prefill_first_call_tokens_per_s)");
            doc.put("decode_timing", "decode_ms_per_step: seconds of decode_steps steps on the host's clock, from an "
                    + "idle GPU to the last step's ids on the host, " + (noStepsAhead ? "each step queued once the ids "
                    + "of the step before are on the host (--no-steps-ahead)" : "each step queued on the ids the step "
                    + "before drew, ahead of the host's reading them (as a generation runs)") + "; "
                    + "decode_graph_ms_per_step, "
                    + "decode_sampling_ms_per_step and decode_between_steps_ms: a step's forward, its sampling until "
                    + "the ids are on the host, and the host's turn until the next forward, on the device's clock, "
                    + "over steps run one after the other without that overlap");
        }
        doc.put("tokens_per_prefill_call", tokensPerCall);
        if (profilerRange != null) {
            // the last timed run of each configuration ran under the profiler that asked for the range, if one did
            doc.put("profiler_range", profilerRange + ": the last timed run of each configuration between "
                    + "cuProfilerStart and cuProfilerStop");
        }
        if (repeat > 1) {
            doc.put("repeat", repeat);
            doc.put("repeat_timing", "each configuration timed in " + repeat + " runs, each in a fresh session: its "
                    + "figures are the median run's (by " + (generate != null ? "tokens/s" : "decode tokens/s, the "
                    + "prefill's median apart") + "; of an even number the slower middle one), the lists ending in "
                    + "_runs every run's");
        }
        if (measured.size() == 1) {
            doc.put("state_bytes_by_kind", measured.getFirst().stateBytesByKind());
        }
        doc.put("copy_bandwidth_GBps", copyGBs);
        if (measured.size() == 1) {
            doc.put("results", measured.getFirst().rows());
        } else {
            List<Map<String, Object>> models = new ArrayList<>();
            for (Measured m : measured) {
                Map<String, Object> entry = new LinkedHashMap<>();
                entry.put("name", m.subject().name());
                entry.put("source", m.source());
                entry.put("parameters", m.parameters());
                entry.put("weight_bytes_on_gpu", m.weightBytes());
                entry.put("state_bytes_by_kind", m.stateBytesByKind());
                entry.put("results", m.rows());
                models.add(entry);
            }
            doc.put("models", models);
            Measured a = measured.get(0);
            Measured b = measured.get(1);
            List<Map<String, Object>> ratios = BenchGpuReport.ratios(a.subject().name(), a.rows(), b.subject().name(),
                    b.rows(), compared);
            BenchGpuReport.printRatios(out, ratios, compared);
            doc.put("ratios", ratios);
        }
        OutputFiles.writeJson(json, doc);
        out.printf("%nwrote %s%n", json);
        out.flush();
        return 0;
    }

    /** The models: the two of --compare, or the one of --model or --preset (based-360m when none is given). */
    private List<BenchServeCommand.Subject> subjects() {
        if (compare != null) {
            if (model != null || preset != null) {
                throw new UsageException("give either --compare or --model/--preset, not both");
            }
            if (compare.size() != 2) {
                throw new UsageException("--compare takes two models, A,B; got " + compare.size());
            }
            List<BenchServeCommand.Subject> out = new ArrayList<>();
            for (String c : compare) {
                if (Presets.NAMES.contains(c)) {
                    out.add(new BenchServeCommand.Subject(c, null, c));
                    continue;
                }
                Path dir = Path.of(c);
                if (!Files.isDirectory(dir)) {
                    throw new UsageException("--compare " + c + " is neither a preset (" + String.join(", ",
                            Presets.NAMES) + ") nor a checkpoint directory");
                }
                Path name = dir.toAbsolutePath().normalize().getFileName();
                out.add(new BenchServeCommand.Subject(name == null ? c : name.toString(), dir, null));
            }
            if (out.get(0).name().equals(out.get(1).name())) {
                throw new UsageException("--compare names " + out.get(0).name() + " twice; give two models");
            }
            return out;
        }
        ModelOptions.modelOrPreset(model, preset);
        if (model != null) {
            ModelOptions modelOptions = new ModelOptions();
            modelOptions.model = model;
            modelOptions.modelDir(); // refuses a missing --model before the device is opened
            return List.of(new BenchServeCommand.Subject(model.toString(), model, null));
        }
        String name = preset == null ? "based-360m" : preset;
        ModelOptions.preset(name);
        return List.of(new BenchServeCommand.Subject(name, null, name));
    }

    private void print(PrintWriter out, Measured m, BenchDevice dev, Double copyGBs) {
        String backend = dev.backend().name();
        if (generate != null) {
            out.printf("based4j bench gpu --generate %d: %s on %s (%s), %s; greedy, tokens/s = batch x %1$d / "
                    + "seconds, prefill included%n", generate, m.source(), backend, dev.deviceName(), dev.precision());
        } else {
            out.printf("based4j bench gpu: %s on %s (%s), %s%n", m.source(), backend, dev.deviceName(),
                    dev.precision());
        }
        out.printf("parameters %.1fM, weights on the GPU %s; device copy bandwidth (read + write) %s%n%n",
                m.parameters() / 1e6, StateSize.human(m.weightBytes()),
                copyGBs == null ? "not measured" : String.format("%.0f GB/s", copyGBs));
        if (generate != null) {
            BenchGpuReport.printGenerate(out, m.rows());
        } else {
            BenchGpuReport.printDecode(out, m.rows());
        }
    }

    /** Measures one configuration into its row; may throw IllegalStateException where it does not fit. */
    @FunctionalInterface
    private interface RowMeasure {
        void fill(int prompt, int batch, Map<String, Object> row, SplittableRandom rnd);
    }

    /**
     * A row for every prompt length and batch, after a warm-up (cuBLAS heuristics, first graph, module load): its
     * prompt and batch, then what {@code measure} adds, or the error of a configuration that does not fit.
     */
    private List<Map<String, Object>> grid(BasedModel m, BenchDevice dev, String what, RowMeasure measure) {
        SplittableRandom rnd = new SplittableRandom(7);
        measure(m, dev, 2, 64, 4, rnd);
        List<Map<String, Object>> rows = new ArrayList<>();
        for (int prompt : promptLens) {
            for (int b : batches) {
                Progress.note("prompt " + prompt + ", batch " + b + ": " + what);
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("prompt_len", prompt);
                row.put("batch", b);
                try {
                    measure.fill(prompt, b, row, rnd);
                } catch (IllegalStateException e) {
                    row.put("error", e.getMessage());
                    Progress.note("  skipped: " + e.getMessage());
                }
                rows.add(row);
            }
        }
        return rows;
    }

    private List<Map<String, Object>> decodeRows(BasedModel m, BenchDevice dev, long weightBytes, Double copyGBs) {
        ModelConfig cfg = m.config();
        int cacheBytes = m.backend().cacheValueBytes();
        return grid(m, dev, "prefill, then " + steps + " decode steps", (prompt, b, row, rnd) -> {
            row.put("state_bytes_per_sequence", StateSize.total(cfg, prompt + steps + 1, cacheBytes));
            // a prompt's first call at a shape also pays its one-time costs (kernels loaded, products planned,
            // scratch grown, the JIT): timed apart, then the prefill of the measured session comes warm
            double first = prefillOnce(m, dev, b, prompt, steps, rnd);
            List<Timing> runs = new ArrayList<>();
            for (int r = 0; r < repeat; r++) {
                runs.add(measure(m, dev, b, prompt, steps, rnd, r == repeat - 1 ? profilerRange : null));
            }
            // the median run by decode rate (the longer of the two middle steps of an even number); the prefill's
            // median apart
            Timing t = median(runs, Timing::secondsPerStep);
            double prefillSeconds = median(runs, Timing::prefillSeconds).prefillSeconds();
            double bytesPerStep = weightBytes + (double) b * stepStateBytes(cfg, prompt + steps / 2, cacheBytes);
            Double achieved = copyGBs == null ? null : bytesPerStep / t.secondsPerStep() / 1e9;
            row.put("prefill_tokens_per_s", (double) b * prompt / prefillSeconds);
            row.put("prefill_first_call_tokens_per_s", (double) b * prompt / first);
            row.put("decode_tokens_per_s", b / t.secondsPerStep());
            row.put("decode_ms_per_step", t.secondsPerStep() * 1e3);
            row.put("decode_graph_ms_per_step", t.graphMillisPerStep());
            row.put("decode_sampling_ms_per_step", t.samplingMillisPerStep());
            row.put("decode_between_steps_ms", t.betweenMillisPerStep());
            row.put("decode_bytes_per_step", bytesPerStep);
            row.put("decode_achieved_GBps", achieved);
            row.put("decode_fraction_of_copy_bw", achieved == null ? null : achieved / copyGBs);
            row.put("peak_gpu_bytes", t.peakBytes());
            row.put("device_used_bytes", t.usedBytes());
            if (repeat > 1) {
                row.put("runs", repeat);
                row.put("prefill_tokens_per_s_runs", runs.stream().map(x -> (double) b * prompt / x.prefillSeconds())
                        .toList());
                row.put("decode_tokens_per_s_runs", runs.stream().map(x -> b / x.secondsPerStep()).toList());
            }
            if (profile) {
                profileRows(m, b, prompt, row, rnd);
            }
        });
    }

    /**
     * The configuration's prefill and one decode step once more, op by op (a session without CUDA graphs) under the
     * profile: both tables printed, both in the row.
     */
    private void profileRows(BasedModel m, int batch, int prompt, Map<String, Object> row, SplittableRandom rnd) {
        PrintWriter out = spec.commandLine().getOut();
        try (Session session = m.newSession(batch, prompt + 3, Math.max(batch, tokensPerCall)).useGraphs(false)) {
            Decoding d = new Decoding(m, session, batch, false);  // op by op: one step at a time
            ops[0].start();
            d.prefill(prompt, rnd);
            List<OpProfile.Row> prefill = ops[0].stop();
            List<OpProfile.Row> prefillKernels = ops[0].kernels();
            d.step(); // untimed: the step's first run
            ops[0].start();
            d.step();
            List<OpProfile.Row> step = ops[0].stop();
            List<OpProfile.Row> stepKernels = ops[0].kernels();
            row.put("profile_prefill", ProfileTable.json(prefill));
            row.put("profile_prefill_kernels", ProfileTable.json(prefillKernels));
            row.put("profile_decode_step", ProfileTable.json(step));
            row.put("profile_decode_step_kernels", ProfileTable.json(stepKernels));
            String what = String.format(Locale.ROOT, "%s, prompt %d, batch %d", profiled, prompt, batch);
            ProfileTable.print(out, what + ": the prefill op by op", prefill, PROFILE_ROWS);
            ProfileTable.printKernels(out, what + ": the prefill", prefill, prefillKernels, PROFILE_ROWS);
            ProfileTable.print(out, what + ": one decode step op by op", step, PROFILE_ROWS);
            ProfileTable.printKernels(out, what + ": one decode step", step, stepKernels, PROFILE_ROWS);
        }
    }

    /**
     * Bytes of state a decode step moves per sequence at least, at {@code context} tokens: a recurrent state (conv,
     * linear attention) read and written whole, a key/value cache read whole (its one new token's write is left
     * out).
     */
    static double stepStateBytes(ModelConfig cfg, int context, int cacheValueBytes) {
        double sum = 0;
        for (MixerConfig mixer : cfg.layers()) {
            long bytes = StateSize.layerBytes(mixer, context, cacheValueBytes);
            sum += mixer instanceof MixerConfig.Attention ? bytes : 2.0 * bytes;
        }
        return sum;
    }

    private List<Map<String, Object>> generateRows(BasedModel m, BenchDevice dev) {
        return grid(m, dev, "prefill and " + generate + " tokens", (prompt, b, row, rnd) -> {
            row.put("generated_tokens", generate);
            row.put("state_bytes_per_sequence", StateSize.total(m.config(), prompt + generate,
                    m.backend().cacheValueBytes()));
            measure(m, dev, b, 8, 2, rnd); // untimed: the step at this batch recorded and warm
            List<Generation> runs = new ArrayList<>();
            for (int r = 0; r < repeat; r++) {
                runs.add(generation(m, dev, b, prompt, generate, rnd));
            }
            Generation g = median(runs, Generation::seconds); // the median run (the slower middle one of two)
            row.put("seconds", g.seconds());
            row.put("prefill_seconds", g.prefillSeconds());
            row.put("prefill_share", g.prefillSeconds() / g.seconds());
            row.put("tokens_per_s", (double) b * generate / g.seconds());
            row.put("peak_gpu_bytes", g.peakBytes());
            if (repeat > 1) {
                row.put("runs", repeat);
                row.put("tokens_per_s_runs", runs.stream().map(x -> (double) b * generate / x.seconds()).toList());
            }
        });
    }

    /**
     * The median of {@code runs} by {@code seconds}: the middle one, of an even number the longer of the two in the
     * middle (so a rate reported from it is the slower middle one).
     */
    static <T> T median(List<T> runs, java.util.function.ToDoubleFunction<T> seconds) {
        List<T> sorted = new ArrayList<>(runs);
        sorted.sort(java.util.Comparator.comparingDouble(seconds));
        return sorted.get(sorted.size() / 2);
    }

    /** Seconds from the prefill's start to the last generated token, of them the prefill's, and peak memory. */
    private record Generation(double seconds, double prefillSeconds, Long peakBytes) {
    }

    private Generation generation(BasedModel m, BenchDevice dev, int batch, int prompt, int generated,
                                SplittableRandom rnd) {
        dev.synchronize();
        dev.resetPeak();
        try (Session session = m.newSession(batch, prompt + generated + 1, Math.max(batch, tokensPerCall))) {
            Decoding d = new Decoding(m, session, batch, !noStepsAhead);
            long t0 = System.nanoTime();
            d.prefill(prompt, rnd); // the first generated token
            dev.synchronize();
            long t1 = System.nanoTime();
            d.steps(generated - 1);
            dev.synchronize();
            long t2 = System.nanoTime();
            return new Generation((t2 - t0) / 1e9, (t1 - t0) / 1e9, dev.peakBytes());
        }
    }

    /**
     * One run's times: the prefill's seconds, the decode's seconds a step on the host's clock (steps queued on the
     * ids of the step before, on the device: {@link Decoding#steps}), and, in milliseconds a step on the device's
     * clock over steps run one after the other without that overlap (events on the backend's stream, which is idle
     * when each is queued; the host's clock where the backend has no device): from the forward's call to its end
     * (the host's work to launch it included), from there until the sampled ids are back on the host, and from then
     * until the next step's forward is called; and the device memory read after the timed steps.
     */
    private record Timing(double prefillSeconds, double secondsPerStep, double graphMillisPerStep,
                          double samplingMillisPerStep, double betweenMillisPerStep, Long peakBytes, Long usedBytes) {
    }

    /** Seconds of one prefill of every slot of a fresh session of measure's size, which is then closed. */
    private double prefillOnce(BasedModel m, BenchDevice dev, int batch, int prompt, int decodeSteps,
                               SplittableRandom rnd) {
        dev.synchronize();
        try (Session session = m.newSession(batch, sessionLength(prompt, decodeSteps),
                Math.max(batch, tokensPerCall))) {
            long t0 = System.nanoTime();
            new Decoding(m, session, batch, false).prefill(prompt, rnd);
            dev.synchronize();
            return (System.nanoTime() - t0) / 1e9;
        }
    }

    /** Decode steps after the timed ones whose parts are timed on the device ({@code decode_graph_ms_per_step}). */
    private static final int GRAPH_STEPS = 8;

    /** Tokens a sequence of a measured session holds: the prompt, two untimed steps, the timed and the split ones. */
    private static int sessionLength(int prompt, int decodeSteps) {
        return prompt + decodeSteps + 3 + GRAPH_STEPS;
    }

    private Timing measure(BasedModel m, BenchDevice dev, int batch, int prompt, int decodeSteps,
                           SplittableRandom rnd) {
        return measure(m, dev, batch, prompt, decodeSteps, rnd, null);
    }

    /**
     * {@link #measure(BasedModel, BenchDevice, int, int, int, SplittableRandom)}, with the prefill ({@code marked}
     * "prefill") or the timed decode steps ("decode") between the profiler range's start and end.
     */
    private Timing measure(BasedModel m, BenchDevice dev, int batch, int prompt, int decodeSteps,
                           SplittableRandom rnd, String marked) {
        dev.synchronize();
        dev.resetPeak();
        try (Session session = m.newSession(batch, sessionLength(prompt, decodeSteps),
                Math.max(batch, tokensPerCall))) {
            Decoding d = new Decoding(m, session, batch, !noStepsAhead);
            long[] t = new long[4];
            inRange(dev, marked, "prefill", () -> {
                t[0] = System.nanoTime();
                d.prefill(prompt, rnd);
                dev.synchronize();
                t[1] = System.nanoTime();
            });
            // two untimed steps: the first records the step's CUDA graph (the second, where products are timed)
            for (int s = 0; s < 2; s++) {
                d.step();
            }
            inRange(dev, marked, "decode", () -> {
                t[2] = System.nanoTime();
                d.steps(decodeSteps);
                t[3] = System.nanoTime();
            });
            Long peak = dev.peakBytes();
            Long used = dev.usedBytes();
            // after the timed steps (whose host time the marks would add to), a step's parts on the device's clock
            OpClock clock = m.backend().clock();
            long[] marks = new long[3 * GRAPH_STEPS];
            double[] millis = new double[3];  // the forward, the sampling, the host's turn before the next step
            try {
                for (int s = 0; s < GRAPH_STEPS; s++) {
                    d.step(clock, marks, 3 * s);
                }
                for (int s = 0; s < GRAPH_STEPS; s++) {
                    millis[0] += clock.millis(marks[3 * s], marks[3 * s + 1]);
                    millis[1] += clock.millis(marks[3 * s + 1], marks[3 * s + 2]);
                    if (s + 1 < GRAPH_STEPS) {
                        millis[2] += clock.millis(marks[3 * s + 2], marks[3 * s + 3]);
                    }
                }
            } finally {
                for (long mark : marks) {
                    if (mark != 0) {
                        clock.release(mark);
                    }
                }
            }
            return new Timing((t[1] - t[0]) / 1e9, (t[3] - t[2]) / 1e9 / decodeSteps, millis[0] / GRAPH_STEPS,
                    millis[1] / GRAPH_STEPS, millis[2] / (GRAPH_STEPS - 1), peak, used);
        }
    }

    /**
     * Runs {@code work}, between the profiler range's start and end where {@code marked} names {@code part}: the
     * range ends also where the work fails (a configuration that does not fit), so that none stays open for the
     * next.
     */
    private static void inRange(BenchDevice dev, String marked, String part, Runnable work) {
        if (!part.equals(marked)) {
            work.run();
            return;
        }
        dev.synchronize();  // the work queued before stays outside the range
        dev.profilerRange(true);
        try {
            work.run();
        } catch (RuntimeException e) {
            try {
                dev.profilerRange(false);
            } catch (RuntimeException end) {
                e.addSuppressed(end);
            }
            throw e;
        }
        dev.profilerRange(false);
    }

    /** Greedy generation of one sequence per slot of a session: random prompts, then one token per step. */
    private static final class Decoding {
        private final BasedModel m;
        private final Session session;
        private final int[] slots;
        private final Sampler[] greedy;
        private final int[] next;
        /** Whether {@link #steps} queues each step on the ids of the one before while they are on the device. */
        private final boolean ahead;

        Decoding(BasedModel m, Session session, int batch, boolean ahead) {
            this.ahead = ahead;
            this.m = m;
            this.session = session;
            this.slots = IntStream.range(0, batch).toArray();
            this.greedy = new Sampler[batch];
            Arrays.setAll(greedy, i -> new Sampler(SamplingParams.greedy()));
            this.next = new int[batch];
        }

        /** Prefills every slot with a random prompt of {@code length} tokens and samples each one's next token. */
        void prefill(int length, SplittableRandom rnd) {
            Backend backend = m.backend();
            int vocab = m.config().vocabSize();
            int[][] prompts = new int[slots.length][];
            for (int b = 0; b < slots.length; b++) {
                prompts[b] = rnd.ints(length, 0, vocab).toArray();
            }
            m.prefill(session, slots, prompts, (logits, rows, seqs) -> {
                int[] ids = backend.sample(logits, rows, vocab, Arrays.copyOf(greedy, rows.length));
                for (int j = 0; j < seqs.length; j++) {
                    next[seqs[j]] = ids[j];
                }
            });
        }

        /**
         * {@code count} decode steps of every slot as a generation runs them: each step after the first queued on the
         * ids the step before drew, before the host reads those (the sampling kernel hands them to the step:
         * {@link BasedModel#forwardFed}); returns once the last step's ids are read.
         */
        void steps(int count) {
            if (!ahead) {
                for (int s = 0; s < count; s++) {
                    step();
                }
                return;
            }
            if (count <= 0) {
                return;
            }
            Backend backend = m.backend();
            int vocab = m.config().vocabSize();
            Backend.Buffer logits = m.forward(session, session.step(slots), next.clone(), false, null);
            Backend.Sampled drawn = backend.sampleAhead(logits, slots, vocab, greedy);
            for (int s = 1; s < count; s++) {
                logits = m.forwardFed(session, session.step(slots), drawn);
                Backend.Sampled ahead = backend.sampleAhead(logits, slots, vocab, greedy);
                System.arraycopy(drawn.ids(), 0, next, 0, slots.length);
                drawn = ahead;
            }
            System.arraycopy(drawn.ids(), 0, next, 0, slots.length);
        }

        /** One decode step of every slot: feeds the last tokens and samples the next ones. */
        void step() {
            step(null, null, 0);
        }

        /**
         * {@link #step()}, with marks of {@code clock} at {@code marks[at]}, {@code marks[at + 1]} and
         * {@code marks[at + 2]}: just before the step's forward, just after it (before the sampling) and once the
         * sampled ids are back, where a clock is given.
         */
        void step(OpClock clock, long[] marks, int at) {
            TokenBatch batch = session.step(slots);
            int[] tokens = next.clone();
            if (clock != null) {
                marks[at] = clock.mark();
            }
            Backend.Buffer logits = m.forward(session, batch, tokens, false, null);
            if (clock != null) {
                marks[at + 1] = clock.mark();
            }
            int[] ids = m.backend().sample(logits, slots, m.config().vocabSize(), greedy);
            if (clock != null) {
                marks[at + 2] = clock.mark();
            }
            System.arraycopy(ids, 0, next, 0, ids.length);
        }
    }
}
