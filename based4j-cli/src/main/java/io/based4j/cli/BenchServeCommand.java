package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.config.ModelConfig;
import io.based4j.cuda.CudaBackend;
import io.based4j.generate.GenerationRequest;
import io.based4j.model.BasedModel;
import io.based4j.model.Initializer;
import io.based4j.sampling.SamplingParams;
import io.based4j.serve.Engine;
import io.based4j.serve.EngineMetrics;
import io.based4j.serve.EngineOptions;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.io.IOException;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code based4j bench serve}: the serving engine (continuous batching, as {@code based4j serve} runs it) loaded in
 * this process with requests arriving at several rates, for one or more models side by side: throughput and the
 * latencies a client sees, and each model's throughput against the first's.
 */
@Command(name = "serve", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Serving throughput and latency against request rate, for one or more models side by side: "
                + "the engine of 'based4j serve' in this process, requests of fixed prompt and generation lengths "
                + "arriving as a Poisson process at each rate.",
                "Reports requests/s, generated tokens/s, time to first token and inter-token latency (p50, p90, p99) "
                        + "per model and rate, and each model's throughput against the first's; a table and JSON."})
final class BenchServeCommand implements Callable<Integer> {
    private static final int[] PERCENTILES = {50, 90, 99};

    @Option(names = {"-m", "--model"}, paramLabel = "DIR", split = ",",
            description = "Checkpoint directories. Default: the built-in model, unless --preset is given.")
    List<Path> models = new ArrayList<>();

    @Option(names = "--preset", paramLabel = "NAME", split = ",", completionCandidates = InfoCommand.PresetNames.class,
            description = "Random weights in released shapes, after the --model ones: ${COMPLETION-CANDIDATES} "
                    + "(e.g. based-1b,attn-1b).")
    List<String> presets = new ArrayList<>();

    @Option(names = "--device", paramLabel = "DEVICE", defaultValue = "cpu",
            description = "cpu, cuda or cuda:N. Default: ${DEFAULT-VALUE}.")
    String device;

    @Option(names = "--precision", paramLabel = "TYPE", defaultValue = "bf16",
            description = "On a GPU: bf16 or f32. Default: ${DEFAULT-VALUE}.")
    String precision;

    @Option(names = "--threads", paramLabel = "N", description = "CPU threads (default: all cores).")
    Integer threads;

    @Option(names = "--rate", paramLabel = "R", split = ",", defaultValue = "1,4,16,inf",
            description = "Request rates (requests/s, Poisson arrivals); inf: all at once (default ${DEFAULT-VALUE}).")
    List<String> rates;

    @Option(names = "--requests", paramLabel = "N", defaultValue = "64",
            description = "Requests per rate (default ${DEFAULT-VALUE}).")
    int requests;

    @Option(names = "--prompt-len", paramLabel = "N", defaultValue = "128",
            description = "Prompt tokens of every request, random ids (default ${DEFAULT-VALUE}).")
    int promptLen;

    @Option(names = "--gen-len", paramLabel = "N", defaultValue = "128",
            description = "Tokens every request generates, end-of-text ignored (default ${DEFAULT-VALUE}).")
    int genLen;

    @Option(names = "--slots", paramLabel = "N", defaultValue = "64",
            description = "Sequences generated together (default ${DEFAULT-VALUE}).")
    int slots;

    @Option(names = "--tokens-per-step", paramLabel = "N", defaultValue = "" + ServeCommand.TOKENS_PER_STEP,
            description = "Most tokens of one step, prompt pieces beside the decode tokens; raised to what the slots "
                    + "need (default ${DEFAULT-VALUE}).")
    int tokensPerStep;

    @Option(names = "--prefix-cache-mib", paramLabel = "MIB", defaultValue = ServeCommand.DEFAULT_PREFIX_CACHE_MIB,
            description = "The engine's prefix cache, as serve's (default ${DEFAULT-VALUE}; 0: none). The prompts are "
                    + "random, so it finds nothing to reuse: its cost is measured, not its gain.")
    long prefixCacheMib;

    @Option(names = "--no-steps-ahead", description = "The engine's decode steps wait for the ids of the step before "
            + "on the host, as serve's --no-steps-ahead: for comparison.")
    boolean noStepsAhead;

    @Option(names = "--temperature", paramLabel = "T", defaultValue = "0",
            description = "Sampling temperature, 0 for greedy (default ${DEFAULT-VALUE}).")
    double temperature;

    @Option(names = "--warmup", paramLabel = "N", defaultValue = "8",
            description = "Requests run all at once and untimed before each model's rates (default ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--seed", paramLabel = "N", defaultValue = "1",
            description = "Seed of the prompts, the arrivals and the sampling (default ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--json", paramLabel = "FILE", defaultValue = "bench-serve.json",
            description = "Where to write the results as JSON (default ${DEFAULT-VALUE}).")
    Path json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** A model to measure: a checkpoint directory or a preset shape with random weights. */
    record Subject(String name, Path dir, String preset) {
    }

    @Override
    public Integer call() throws IOException {
        atLeast("--requests", requests, 1);
        atLeast("--prompt-len", promptLen, 1);
        atLeast("--gen-len", genLen, 1);
        atLeast("--slots", slots, 1);
        atLeast("--tokens-per-step", tokensPerStep, 1);
        atLeast("--warmup", warmup, 0);
        ServeCommand.inRange("--prefix-cache-mib", prefixCacheMib, ServeCommand.MAX_PREFIX_CACHE_MIB);
        if (!(temperature >= 0 && temperature <= 2)) {
            throw new UsageException("--temperature must be in [0, 2], got " + temperature);
        }
        List<Double> rateValues = rates();
        List<Subject> subjects = subjects();
        ModelOptions.precision(precision);
        if (!device.equals("cpu") && !ModelOptions.isCuda(device)) {
            throw new UsageException("--device " + device + " is not available to bench serve (choose cpu, cuda or"
                    + " cuda:N)");
        }
        OutputFiles.checkWritable("--json", json);
        ModelOptions.applyThreads(threads);
        PrintWriter out = spec.commandLine().getOut();
        Gpt2Tokenizer tokenizer = Gpt2Tokenizer.load();
        List<Map<String, Object>> models = new ArrayList<>();
        List<Map<String, Object>> rows = new ArrayList<>();
        String backendName;
        int stepTokens = 0;
        try (Backend backend = ModelOptions.open(device, precision)) {
            backendName = backend.name() + (backend instanceof CudaBackend gpu ? " (" + gpu.deviceName() + ")" : "");
            for (Subject s : subjects) {
                try (Arena arena = Arena.ofShared(); BasedModel model = load(s, backend, arena)) {
                    stepTokens = ServeCommand.tokensPerStep(tokensPerStep, slots, backend);
                    Map<String, Object> info = new LinkedHashMap<>();
                    info.put("name", s.name());
                    info.put("source", s.preset() != null ? "preset " + s.preset() + " (random weights)"
                            : s.dir().toString());
                    info.put("parameters", model.parameterCount());
                    models.add(info);
                    rows.addAll(measure(s.name(), model, tokenizer, stepTokens, rateValues));
                }
            }
        }
        List<Map<String, Object>> ratios = ratios(subjects, rateValues, rows);
        print(out, backendName, stepTokens, subjects, rateValues, rows, ratios);
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("benchmark", "serve");
        doc.put("backend", backendName);
        doc.put("precision", device.equals("cpu") ? "f32" : precision);
        BenchRun.describe(doc);
        doc.put("requests_per_rate", requests);
        doc.put("prompt_len", promptLen);
        doc.put("gen_len", genLen);
        doc.put("slots", slots);
        doc.put("tokens_per_step", stepTokens);
        doc.put("prefix_cache_mib", prefixCacheMib);
        doc.put("steps_ahead", !noStepsAhead);
        doc.put("temperature", temperature);
        doc.put("warmup_requests", warmup);
        doc.put("seed", seed);
        doc.put("latency", "seconds from a request's scheduled arrival to its first token (ttft), and between two "
                + "tokens of a request (itl); nearest-rank percentiles");
        doc.put("models", models);
        doc.put("results", rows);
        doc.put("throughput_ratios", ratios);
        OutputFiles.writeJson(json, doc);
        out.println("wrote " + json);
        out.flush();
        return 0;
    }

    private static void atLeast(String option, int value, int least) {
        if (value < least) {
            throw new UsageException(option + " must be >= " + least + ", got " + value);
        }
    }

    /** The --rate values: positive numbers, or inf for all at once. */
    private List<Double> rates() {
        List<Double> out = new ArrayList<>();
        for (String r : rates) {
            if (r.equals("inf")) {
                out.add(ServeLoadRun.AT_ONCE);
                continue;
            }
            double v;
            try {
                v = Double.parseDouble(r);
            } catch (NumberFormatException e) {
                throw new UsageException("--rate " + r + " is not a number of requests per second (or inf)");
            }
            if (!(v > 0) || Double.isInfinite(v)) {
                throw new UsageException("--rate must be > 0 requests per second (or inf), got " + r);
            }
            out.add(v);
        }
        return out;
    }

    /** The models in order: the --model directories (checked to exist), then the presets; names are unique. */
    private List<Subject> subjects() {
        List<Subject> out = new ArrayList<>();
        List<Path> dirs = new ArrayList<>(models);
        if (dirs.isEmpty() && presets.isEmpty()) {
            ModelOptions defaults = new ModelOptions();
            dirs.add(defaults.modelDir());
        }
        for (Path dir : dirs) {
            if (!Files.isDirectory(dir)) {
                throw new IllegalArgumentException("--model " + dir + ": no such directory");
            }
            Path name = dir.toAbsolutePath().normalize().getFileName();
            out.add(new Subject(name == null ? dir.toString() : name.toString(), dir, null));
        }
        for (String p : presets) {
            ModelOptions.preset(p);
            out.add(new Subject(p, null, p));
        }
        Set<String> seen = new HashSet<>();
        for (Subject s : out) {
            if (!seen.add(s.name())) {
                throw new UsageException("the model " + s.name() + " is given twice; give each model once");
            }
        }
        return out;
    }

    static BasedModel load(Subject s, Backend backend, Arena arena) {
        if (s.preset() != null) {
            Progress.note("initialising random weights for " + s.preset());
            return BasedModel.of(Initializer.weights(ModelOptions.preset(s.preset()), 1234, arena), backend);
        }
        long t0 = System.nanoTime();
        BasedModel m = BasedModel.load(s.dir(), backend);
        Progress.note(String.format(Locale.ROOT, "loaded %s: %.1fM parameters in %.2f s", s.dir(),
                m.parameterCount() / 1e6, (System.nanoTime() - t0) / 1e9));
        return m;
    }

    /** The rows of one model: a warm-up, then each rate with the same prompts. */
    private List<Map<String, Object>> measure(String name, BasedModel model, Gpt2Tokenizer tokenizer, int stepTokens,
                                              List<Double> rateValues) {
        ModelConfig cfg = model.config();
        EngineOptions options = new EngineOptions(slots, promptLen + genLen, stepTokens, Math.max(requests, warmup),
                prefixCacheMib << 20, !noStepsAhead);
        List<Map<String, Object>> rows = new ArrayList<>();
        try (Engine engine = new Engine(model, tokenizer, options)) {
            // other prompts for the warm-up and for every rate (a prompt seen before could be served from a state
            // kept of it); the same ones for every model
            if (warmup > 0) {
                Progress.note(name + ": " + warmup + " warm-up requests");
                ServeLoadRun.run(engine, requests(cfg, warmup, promptSeed(-1)), ServeLoadRun.AT_ONCE,
                        new SplittableRandom(seed));
            }
            for (int k = 0; k < rateValues.size(); k++) {
                double rate = rateValues.get(k);
                Progress.note(name + ": " + requests + " requests at " + rateLabel(rate) + " requests/s");
                EngineMetrics before = engine.metrics();
                ServeLoadRun.Result r = ServeLoadRun.run(engine, requests(cfg, requests, promptSeed(k)), rate,
                        new SplittableRandom(seed + k));
                EngineMetrics after = engine.metrics();
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("model", name);
                row.put("rate", rate == ServeLoadRun.AT_ONCE ? "inf" : rate);
                row.put("requests", r.requests());
                row.put("generated_tokens", r.tokens());
                row.put("seconds", r.seconds());
                row.put("requests_per_s", r.requestsPerSecond());
                row.put("tokens_per_s", r.tokensPerSecond());
                // the engine's forward steps over the run, and of them those queued ahead of the ids' reading
                row.put("engine_steps", after.steps() - before.steps());
                row.put("engine_steps_ahead", after.stepsAhead() - before.stepsAhead());
                for (int p : PERCENTILES) {
                    row.put("ttft_p" + p + "_s", seconds(ServeLoadRun.percentile(r.timeToFirstToken(), p)));
                }
                for (int p : PERCENTILES) {
                    // none where each request generates one token
                    row.put("itl_p" + p + "_s", seconds(ServeLoadRun.percentile(r.interToken(), p)));
                }
                rows.add(row);
            }
        }
        return rows;
    }

    private long promptSeed(int load) {
        return seed * 1_000 + load;
    }

    private static Double seconds(double value) {
        return Double.isNaN(value) ? null : value;
    }

    /** {@code count} requests of random prompts (the same for every model of a vocabulary size). */
    private List<GenerationRequest> requests(ModelConfig cfg, int count, long promptSeed) {
        SplittableRandom r = new SplittableRandom(promptSeed);
        List<GenerationRequest> out = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            int[] prompt = r.ints(promptLen, 0, cfg.vocabSize()).toArray();
            SamplingParams sampling = temperature == 0 ? SamplingParams.greedy()
                    : new SamplingParams((float) temperature, 0, 1f, seed + i);
            out.add(new GenerationRequest(prompt, genLen, sampling, List.of(), false));
        }
        return out;
    }

    /** Each model's generated tokens/s against the first model's, at every rate. */
    private static List<Map<String, Object>> ratios(List<Subject> subjects, List<Double> rateValues,
                                                    List<Map<String, Object>> rows) {
        List<Map<String, Object>> out = new ArrayList<>();
        String baseline = subjects.getFirst().name();
        for (Subject s : subjects.subList(1, subjects.size())) {
            for (double rate : rateValues) {
                Object label = rate == ServeLoadRun.AT_ONCE ? "inf" : rate;
                Map<String, Object> ratio = new LinkedHashMap<>();
                ratio.put("rate", label);
                ratio.put("model", s.name());
                ratio.put("baseline", baseline);
                ratio.put("tokens_per_s_ratio", (double) row(rows, s.name(), label).get("tokens_per_s")
                        / (double) row(rows, baseline, label).get("tokens_per_s"));
                out.add(ratio);
            }
        }
        return out;
    }

    private static Map<String, Object> row(List<Map<String, Object>> rows, String model, Object rate) {
        return rows.stream().filter(r -> r.get("model").equals(model) && r.get("rate").equals(rate)).findFirst()
                .orElseThrow();
    }

    static String rateLabel(double rate) {
        return rate == ServeLoadRun.AT_ONCE ? "inf" : String.format(Locale.ROOT, "%.6g", rate)
                .replaceAll("\\.?0+$", "");
    }

    private void print(PrintWriter out, String backendName, int stepTokens, List<Subject> subjects,
                       List<Double> rateValues, List<Map<String, Object>> rows, List<Map<String, Object>> ratios) {
        out.printf(Locale.ROOT, "based4j bench serve on %s: %d requests per rate, prompt %d + %d generated tokens,"
                        + " %d slots, %d tokens per step, %s%n", backendName, requests, promptLen, genLen, slots,
                stepTokens, temperature == 0 ? "greedy" : "temperature " + temperature);
        int width = Math.max(5, subjects.stream().mapToInt(s -> s.name().length()).max().orElse(5));
        out.printf(Locale.ROOT, "%-" + width + "s %8s %9s %10s %9s %9s %9s %9s %9s %9s%n", "model", "rate/s", "req/s",
                "tokens/s", "TTFT p50", "p90", "p99", "ITL p50", "p90", "p99");
        for (double rate : rateValues) {
            Object label = rate == ServeLoadRun.AT_ONCE ? "inf" : rate;
            for (Subject s : subjects) {
                Map<String, Object> r = row(rows, s.name(), label);
                out.printf(Locale.ROOT, "%-" + width + "s %8s %9.2f %10.1f %9s %9s %9s %9s %9s %9s%n", s.name(),
                        rateLabel(rate), (double) r.get("requests_per_s"), (double) r.get("tokens_per_s"),
                        ms(r.get("ttft_p50_s")), ms(r.get("ttft_p90_s")), ms(r.get("ttft_p99_s")),
                        ms(r.get("itl_p50_s")), ms(r.get("itl_p90_s")), ms(r.get("itl_p99_s")));
            }
        }
        out.println("(latencies in ms; TTFT from a request's arrival)");
        if (!ratios.isEmpty()) {
            out.printf(Locale.ROOT, "generated tokens/s against %s:%n", subjects.getFirst().name());
            for (Map<String, Object> ratio : ratios) {
                String at = ratio.get("rate") instanceof Double d ? "at " + rateLabel(d) + " requests/s"
                        : "all at once";
                out.printf(Locale.ROOT, "  %-" + width + "s %-22s %.2fx%n", ratio.get("model"), at + ":",
                        (double) ratio.get("tokens_per_s_ratio"));
            }
        }
        out.flush();
    }

    private static String ms(Object seconds) {
        return seconds == null ? "-" : String.format(Locale.ROOT, "%.1f", (double) seconds * 1e3);
    }
}
