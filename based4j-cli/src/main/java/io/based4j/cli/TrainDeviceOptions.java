package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.backend.TrainingBackend;
import io.based4j.train.cpu.CpuTrainBackend;
import picocli.CommandLine.Option;

/** Options shared by commands that train: where, and in which precision. */
final class TrainDeviceOptions {
    @Option(names = "--device", paramLabel = "DEVICE", defaultValue = "cpu",
            description = "cpu (float64, exact: the reference trainer) or cuda / cuda:N (an NVIDIA GPU). "
                    + "Default: ${DEFAULT-VALUE}.")
    String device;

    @Option(names = "--precision", paramLabel = "TYPE", defaultValue = "bf16",
            description = "On a GPU: bf16 (bf16 weights for compute and activations, float32 master weights, "
                    + "gradients and moments) or f32. Default: ${DEFAULT-VALUE}.")
    String precision;

    @Option(names = "--threads", paramLabel = "N", description = "CPU threads (default: all cores).")
    Integer threads;

    /**
     * Checks the options without opening the device (for a command that opens it later, after other work): a usage
     * error for a device that cannot train, a precision or a thread count out of range.
     */
    void check() {
        ModelOptions.applyThreads(threads);
        ModelOptions.precision(precision); // checked on the CPU too, though its trainer always computes in float64
        if (!device.equals("cpu") && !ModelOptions.isCuda(device)) {
            throw new UsageException("--device " + device + " cannot train (choose cpu, cuda or cuda:N)");
        }
    }

    /** The training backend the options name; a usage error for a device that cannot train. */
    TrainingBackend open() {
        check();
        if (device.equals("cpu")) {
            return new CpuTrainBackend();
        }
        Backend b = ModelOptions.open(device, precision);
        if (b instanceof TrainingBackend t) {
            return t;
        }
        b.close();
        throw new IllegalArgumentException("--device " + device + ": this build's CUDA backend does not train yet");
    }

    /** What the run computes in: {@code f64} on the CPU, the --precision on a GPU. */
    String precisionName() {
        return device.equals("cpu") ? "f64" : precision;
    }
}
