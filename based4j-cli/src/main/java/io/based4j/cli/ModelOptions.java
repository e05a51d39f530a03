package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.backend.cpu.ReferenceBackend;
import io.based4j.config.ModelConfig;
import io.based4j.cuda.CudaBackend;
import io.based4j.cuda.Precision;
import io.based4j.model.BasedModel;
import io.based4j.model.Presets;
import java.nio.file.Files;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** Options shared by commands that load a model. */
final class ModelOptions {
    /** The trained model kept in the repository, used when --model is not given (models/based-small/README.md). */
    static final String DEFAULT_MODEL = "models/based-small";

    @Option(names = {"-m", "--model"}, paramLabel = "DIR",
            description = "Checkpoint directory (config.json + model.safetensors | sharded index | pytorch_model.bin). "
                    + "Default: the small built-in model in " + DEFAULT_MODEL + ".")
    Path model;

    @Option(names = "--device", paramLabel = "DEVICE", defaultValue = "cpu",
            description = "cpu (fast, multithreaded), cuda or cuda:N (an NVIDIA GPU), or reference (plain scalar "
                    + "code, slow). Default: ${DEFAULT-VALUE}.")
    String device;

    @Option(names = "--precision", paramLabel = "TYPE", defaultValue = "bf16",
            description = "On a GPU: bf16 (weights and activations in bfloat16, float32 sums and state) or f32. "
                    + "Default: ${DEFAULT-VALUE}. The CPU always computes in float32.")
    String precision;

    @Option(names = "--threads", paramLabel = "N", description = "CPU threads (default: all cores).")
    Integer threads;

    Path modelDir() {
        if (model != null) {
            if (!Files.exists(model)) {
                throw new IllegalArgumentException("--model " + model + ": no such file or directory");
            }
            return model;
        }
        String home = System.getProperty("based4j.home");
        Path p = home != null ? Path.of(home).resolve(DEFAULT_MODEL) : Path.of(DEFAULT_MODEL);
        if (!Files.isDirectory(p)) {
            throw new IllegalArgumentException("no --model given and the built-in model " + p + " is missing (a"
                    + " GPU bundle leaves it out to stay small): give --model DIR");
        }
        return p;
    }

    Backend backend() {
        applyThreads(threads);
        return open(device, precision);
    }

    /** The backend named by a --device value, with a --precision for GPUs. */
    static Backend open(String device, String precision) {
        Precision p = precision(precision);
        if (isCuda(device)) {
            return CudaBackend.open(device, p);
        }
        return switch (device) {
            case "cpu" -> new CpuBackend();
            case "reference" -> new ReferenceBackend();
            default -> throw new UsageException("--device " + device
                    + " is not available (choose cpu, cuda, cuda:N or reference)");
        };
    }

    static Precision precision(String precision) {
        return switch (precision) {
            case "bf16" -> Precision.BF16;
            case "f32" -> Precision.F32;
            default -> throw new UsageException("--precision " + precision + " is not bf16 or f32");
        };
    }

    /** Whether a --device value names a GPU; refuses one that starts like a GPU but is not cuda or cuda:N. */
    static boolean isCuda(String device) {
        if (!device.equals("cuda") && !device.startsWith("cuda:")) {
            return false;
        }
        try {
            CudaBackend.parseOrdinal(device);
        } catch (IllegalArgumentException e) {
            throw new UsageException("--device " + device + " is not of the form cuda or cuda:N (N = 0, 1, ...)");
        }
        return true;
    }

    /** The shape of a --preset, or a usage error naming the presets there are. */
    static ModelConfig preset(String name) {
        try {
            return Presets.get(name);
        } catch (IllegalArgumentException e) {
            throw new UsageException("--preset: " + e.getMessage());
        }
    }

    /** Refuses --model and --preset given together. */
    static void modelOrPreset(Path model, String preset) {
        if (model != null && preset != null) {
            throw new UsageException("give either --model or --preset, not both");
        }
    }

    static void applyThreads(Integer threads) {
        if (threads != null) {
            if (threads < 1) {
                throw new UsageException("--threads must be >= 1, got " + threads);
            }
            System.setProperty("java.util.concurrent.ForkJoinPool.common.parallelism", String.valueOf(threads - 1));
        }
    }

    BasedModel load(Backend backend) {
        Path dir = modelDir();
        long t0 = System.nanoTime();
        BasedModel m = BasedModel.load(dir, backend);
        Progress.note(String.format("loaded %s: %d layers, %.1fM parameters in %.2f s", dir,
                m.config().nLayer(), m.parameterCount() / 1e6, (System.nanoTime() - t0) / 1e9));
        return m;
    }
}
