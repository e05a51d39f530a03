package io.based4j.cli;

import picocli.CommandLine.Option;

/** How an MQAR run trains besides its model, learning rate and data: shared by {@code mqar train} and {@code mqar sweep}. */
final class MqarRunOptions {
    @Option(names = "--weight-decay", paramLabel = "WD", defaultValue = "0.1",
            description = "AdamW weight decay (default ${DEFAULT-VALUE}).")
    double weightDecay;

    @Option(names = "--batch", paramLabel = "B", defaultValue = "256",
            description = "Examples per update (default ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--warmup", paramLabel = "N", defaultValue = "0",
            description = "Linear warmup updates (default ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--seed", paramLabel = "S", defaultValue = "0",
            description = "Seed of data, order and initialization.")
    long seed;

    @Option(names = "--eval-every", paramLabel = "N", defaultValue = "0",
            description = "Updates between test evaluations (0: every epoch).")
    int evalEvery;

    @Option(names = "--target", paramLabel = "ACC", defaultValue = "0.99",
            description = "Stop once test accuracy exceeds this (default ${DEFAULT-VALUE}; above 1 never stops).")
    double target;

    @Option(names = "--max-minutes", paramLabel = "M", defaultValue = "0",
            description = "Stop a run after this long (0: no limit).")
    double maxMinutes;

    /** Refuses values out of range as bad usage. */
    void check() {
        if (batch < 1) {
            throw new UsageException("--batch must be >= 1, got " + batch);
        }
        if (!(weightDecay >= 0) || warmup < 0 || evalEvery < 0 || !(maxMinutes >= 0) || Double.isNaN(target)) {
            throw new UsageException("--weight-decay, --warmup, --eval-every and --max-minutes must be >= 0, and"
                    + " --target a number");
        }
    }
}
