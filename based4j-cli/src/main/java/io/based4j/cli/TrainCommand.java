package io.based4j.cli;

import io.based4j.backend.TrainingBackend;
import io.based4j.train.TrainConfig;
import io.based4j.train.Trainer;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "train", mixinStandardHelpOptions = true,
        description = {"Train a BASED (or attention / sliding-window) language model on token shards.",
                "Settings come from a JSON or YAML file (see the README); checkpoints load in 'generate --model'."})
final class TrainCommand implements Callable<Integer> {
    @Option(names = {"-c", "--config"}, paramLabel = "FILE", required = true,
            description = "Training settings (JSON or YAML): model, data, train, optimizer, eval, checkpoint.")
    Path config;

    @Option(names = "--resume", paramLabel = "DIR",
            description = "Continue from a checkpoint (or the newest checkpoint of a run directory).")
    Path resume;

    @Option(names = "--overwrite", description = "Start over in a run directory that already holds checkpoints"
            + " (deletes the checkpoints and metrics a run wrote there; refused while another run uses it).")
    boolean overwrite;

    @Option(names = "--steps", paramLabel = "N", description = "Override train.steps.")
    Long steps;

    @CommandLine.Mixin
    TrainDeviceOptions deviceOptions = new TrainDeviceOptions();

    @Option(names = "--stop-at", paramLabel = "N", hidden = true,
            description = "Stop after update N (the schedule still runs to train.steps), as if interrupted.")
    Long stopAt;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        TrainConfig cfg = TrainConfig.read(config);
        if (steps != null) {
            if (steps < 1) {
                throw new UsageException("--steps must be >= 1, got " + steps);
            }
            cfg = cfg.withSteps(steps);
        }
        if (stopAt != null && stopAt < 1) {
            throw new UsageException("--stop-at must be >= 1, got " + stopAt);
        }
        if (overwrite && resume != null) {
            throw new UsageException("--overwrite starts a run over and --resume continues one: give one of them");
        }
        // progress and notes on standard error, the summary on standard output
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        try (TrainingBackend backend = deviceOptions.open()) {
            Trainer trainer = new Trainer(cfg, backend, err, io.based4j.train.Progress.stderrTerminal());
            Trainer.Result r = trainer.overwrite(overwrite).run(resume, stopAt == null ? Long.MAX_VALUE : stopAt);
            err.flush();
            out.printf(Locale.ROOT, "trained updates %d..%d in %s (%,.0f tokens/s); final loss %.4f%s%n",
                    r.firstStep() + 1, r.lastStep(), io.based4j.train.Progress.duration(r.seconds()),
                    r.tokensPerSecond(), r.losses().isEmpty() ? Double.NaN : r.losses().getLast(),
                    r.valLoss() == null ? "" : String.format(Locale.ROOT, ", validation loss %.4f (perplexity %.2f)",
                            r.valLoss(), Math.exp(r.valLoss())));
            if (r.checkpoint() != null) {
                out.println("checkpoint: " + r.checkpoint() + "  (based4j generate --model " + r.checkpoint() + ")");
            }
            out.flush();
        }
        return 0;
    }
}
