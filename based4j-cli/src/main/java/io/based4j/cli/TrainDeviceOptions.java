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

    /** The training backend the options name; a usage error for a device that cannot train. */
    TrainingBackend open() {
        ModelOptions.applyThreads(threads);
        if (device.equals("cpu")) {
            ModelOptions.precision(precision); // checked, though the CPU trainer always computes in float64
            return new CpuTrainBackend();
        }
        if (!ModelOptions.isCuda(device)) {
            throw new UsageException("--device " + device + " cannot train (choose cpu, cuda or cuda:N)");
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
