package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.config.ModelConfig;
import io.based4j.cuda.CudaBackend;
import io.based4j.cuda.Precision;
import io.based4j.model.BasedModel;
import io.based4j.model.Initializer;
import io.based4j.model.Session;
import io.based4j.model.StateSize;
import io.based4j.sampling.Sampler;
import io.based4j.sampling.SamplingParams;
import java.io.IOException;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.stream.IntStream;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "gpu", mixinStandardHelpOptions = true,
        description = "Prefill and decode throughput on an NVIDIA GPU for several batch sizes and prompt lengths, with "
                + "state bytes per sequence, peak GPU memory, and decode's memory traffic against the device copy "
                + "bandwidth measured in the same run.")
final class BenchGpuCommand implements Callable<Integer> {
    @Option(names = {"-m", "--model"}, paramLabel = "DIR", description = "Checkpoint directory (instead of --preset).")
    Path model;

    @Option(names = "--preset", paramLabel = "NAME", completionCandidates = InfoCommand.PresetNames.class,
            description = "Random weights in a released shape: ${COMPLETION-CANDIDATES}. Default: based-360m unless "
                    + "--model is given.")
    String preset;

    @Option(names = "--device", paramLabel = "DEVICE", defaultValue = "cuda", description = "cuda or cuda:N.")
    String device;

    @Option(names = "--precision", paramLabel = "TYPE", defaultValue = "bf16", description = "bf16 or f32.")
    String precision;

    @Option(names = "--batch", paramLabel = "B", split = ",", defaultValue = "1,8,64,256",
            description = "Batch sizes (default ${DEFAULT-VALUE}).")
    List<Integer> batches;

    @Option(names = "--prompt-len", paramLabel = "N", split = ",", defaultValue = "512,2048",
            description = "Prompt lengths (default ${DEFAULT-VALUE}).")
    List<Integer> promptLens;

    @Option(names = "--decode-steps", paramLabel = "N", defaultValue = "32",
            description = "Decode steps timed per configuration (default ${DEFAULT-VALUE}).")
    int steps;

    @Option(names = "--tokens-per-call", paramLabel = "N", defaultValue = "16384",
            description = "Most tokens of one prefill call (default ${DEFAULT-VALUE}).")
    int tokensPerCall;

    @Option(names = "--json", paramLabel = "FILE", defaultValue = "bench-gpu.json",
            description = "Where to write the results as JSON (default ${DEFAULT-VALUE}).")
    Path json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        if (steps < 1 || batches.stream().anyMatch(b -> b < 1) || promptLens.stream().anyMatch(p -> p < 1)
                || tokensPerCall < 1) {
            throw new UsageException("--batch, --prompt-len, --decode-steps and --tokens-per-call must be >= 1");
        }
        ModelOptions.modelOrPreset(model, preset);
        String presetName = preset == null && model == null ? "based-360m" : preset;
        ModelConfig presetConfig = presetName == null ? null : ModelOptions.preset(presetName);
        Precision gpuPrecision = ModelOptions.precision(precision);
        if (!ModelOptions.isCuda(device)) {
            throw new UsageException("bench gpu runs on cuda or cuda:N, not --device " + device);
        }
        ModelOptions modelOptions = new ModelOptions();
        modelOptions.model = model;
        if (model != null) {
            modelOptions.modelDir(); // refuses a missing --model before the GPU is opened
        }
        OutputFiles.checkWritable("--json", json);
        PrintWriter out = spec.commandLine().getOut();
        try (CudaBackend gpu = CudaBackend.open(device, gpuPrecision); Arena arena = Arena.ofShared()) {
            double copyGBs = copyBandwidth(gpu);
            Progress.note(String.format("%s (%s): device copy bandwidth %.0f GB/s", gpu.name(), gpu.deviceName(),
                    copyGBs));
            BasedModel m;
            String name;
            if (presetConfig != null) {
                Progress.note("initialising random weights for " + presetName);
                m = BasedModel.of(Initializer.weights(presetConfig, 1234, arena), gpu);
                name = "preset " + presetName + " (random weights)";
            } else {
                m = modelOptions.load(gpu);
                name = model.toString();
            }
            try (m) {
                run(m, gpu, name, copyGBs, out);
            }
        }
        return 0;
    }

    private void run(BasedModel m, CudaBackend gpu, String name, double copyGBs, PrintWriter out) throws IOException {
        ModelConfig cfg = m.config();
        long weightBytes = m.parameterCount() * gpu.precision().bytes();
        SplittableRandom rnd = new SplittableRandom(7);
        measure(m, gpu, 2, 64, 4, rnd); // warm-up: cuBLAS heuristics, first graph, module load
        List<Map<String, Object>> rows = new ArrayList<>();
        for (int prompt : promptLens) {
            for (int b : batches) {
                Progress.note("prompt " + prompt + ", batch " + b + ": prefill, then " + steps + " decode steps");
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("prompt_len", prompt);
                row.put("batch", b);
                long state = StateSize.total(cfg, prompt + steps + 1);
                row.put("state_bytes_per_sequence", state);
                try {
                    double[] r = measure(m, gpu, b, prompt, steps, rnd);
                    double bytesPerStep = weightBytes + 2.0 * b * StateSize.total(cfg, prompt + steps / 2);
                    double achieved = bytesPerStep / r[1] / 1e9;
                    row.put("prefill_tokens_per_s", (double) b * prompt / r[0]);
                    row.put("decode_tokens_per_s", b / r[1]);
                    row.put("decode_ms_per_step", r[1] * 1e3);
                    row.put("decode_bytes_per_step", bytesPerStep);
                    row.put("decode_achieved_GBps", achieved);
                    row.put("decode_fraction_of_copy_bw", achieved / copyGBs);
                    row.put("peak_gpu_bytes", (long) r[2]);
                    row.put("device_used_bytes", (long) r[3]);
                } catch (IllegalStateException e) {
                    row.put("error", e.getMessage());
                    Progress.note("  skipped: " + e.getMessage());
                }
                rows.add(row);
            }
        }
        out.printf("based4j bench gpu: %s on %s (%s), %s%n", name, gpu.name(), gpu.deviceName(),
                gpu.precision().suffix());
        out.printf("parameters %.1fM, weights on the GPU %s; device copy bandwidth (read + write) %.0f GB/s%n%n",
                m.parameterCount() / 1e6, StateSize.human(weightBytes), copyGBs);
        out.printf("%7s %6s %14s %14s %14s %10s %11s %11s %12s%n", "prompt", "batch", "state B/seq", "prefill tok/s",
                "decode tok/s", "ms/step", "decode GB/s", "of copy bw", "peak GPU mem");
        for (Map<String, Object> row : rows) {
            if (row.containsKey("error")) {
                out.printf("%7d %6d %,14d  does not fit: %s%n", row.get("prompt_len"), row.get("batch"),
                        row.get("state_bytes_per_sequence"), row.get("error"));
                continue;
            }
            out.printf("%7d %6d %,14d %14.0f %14.1f %10.2f %11.0f %10.1f%% %12s%n", row.get("prompt_len"),
                    row.get("batch"), row.get("state_bytes_per_sequence"), row.get("prefill_tokens_per_s"),
                    row.get("decode_tokens_per_s"), row.get("decode_ms_per_step"), row.get("decode_achieved_GBps"),
                    100 * (double) row.get("decode_fraction_of_copy_bw"),
                    StateSize.human((long) row.get("peak_gpu_bytes")));
        }
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("benchmark", "gpu");
        doc.put("model", name);
        doc.put("backend", gpu.name());
        doc.put("device", gpu.deviceName());
        doc.put("precision", gpu.precision().suffix());
        doc.put("java", Runtime.version().toString());
        doc.put("parameters", m.parameterCount());
        doc.put("weight_bytes_on_gpu", weightBytes);
        doc.put("decode_steps", steps);
        doc.put("tokens_per_prefill_call", tokensPerCall);
        doc.put("state_bytes_by_kind", new LinkedHashMap<>(StateSize.byKind(cfg, promptLens.get(0) + steps + 1)));
        doc.put("copy_bandwidth_GBps", copyGBs);
        doc.put("results", rows);
        OutputFiles.writeJson(json, doc);
        out.printf("%nwrote %s%n", json);
        out.flush();
    }

    /** Returns {prefill seconds, seconds per decode step, peak bytes held, device bytes in use}. */
    private double[] measure(BasedModel m, CudaBackend gpu, int batch, int prompt, int decodeSteps,
                             SplittableRandom rnd) {
        Backend backend = m.backend();
        int vocab = m.config().vocabSize();
        gpu.synchronize();
        gpu.resetPeak();
        try (Session session = m.newSession(batch, prompt + decodeSteps + 3, Math.max(batch, tokensPerCall))) {
            int[] slots = IntStream.range(0, batch).toArray();
            int[][] prompts = new int[batch][];
            for (int b = 0; b < batch; b++) {
                prompts[b] = rnd.ints(prompt, 0, vocab).toArray();
            }
            Sampler[] greedy = new Sampler[batch];
            Arrays.setAll(greedy, i -> new Sampler(SamplingParams.greedy()));
            int[] next = new int[batch];
            long t0 = System.nanoTime();
            m.prefill(session, slots, prompts, (logits, rows, seqs) -> {
                int[] ids = backend.sample(logits, rows, vocab, Arrays.copyOf(greedy, rows.length));
                for (int j = 0; j < seqs.length; j++) {
                    next[seqs[j]] = ids[j];
                }
            });
            gpu.synchronize();
            long t1 = System.nanoTime();
            int[] rows = IntStream.range(0, batch).toArray();
            // two untimed steps: the first records the step's CUDA graph
            for (int s = 0; s < 2; s++) {
                step(m, session, slots, rows, next, greedy);
            }
            long t2 = System.nanoTime();
            for (int s = 0; s < decodeSteps; s++) {
                step(m, session, slots, rows, next, greedy);
            }
            long t3 = System.nanoTime();
            long[] mem = gpu.deviceMemory();
            return new double[] {(t1 - t0) / 1e9, (t3 - t2) / 1e9 / decodeSteps, gpu.peakAllocatedBytes(),
                    mem[1] - mem[0]};
        }
    }

    private static void step(BasedModel m, Session session, int[] slots, int[] rows, int[] next, Sampler[] samplers) {
        int[] positions = new int[slots.length];
        for (int b = 0; b < slots.length; b++) {
            positions[b] = session.position(slots[b]);
        }
        Backend.Buffer logits = m.forward(session, TokenBatch.step(slots, positions), next.clone(), false, null);
        int[] ids = m.backend().sample(logits, rows, m.config().vocabSize(), samplers);
        System.arraycopy(ids, 0, next, 0, ids.length);
    }

    private static double copyBandwidth(CudaBackend gpu) {
        return gpu.copyBandwidth(1L << 30, 10) / 1e9;
    }
}
