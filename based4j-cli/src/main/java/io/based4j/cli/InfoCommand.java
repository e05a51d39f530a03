package io.based4j.cli;

import io.based4j.config.ConfigParser;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.model.Presets;
import io.based4j.model.StateSize;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "info", mixinStandardHelpOptions = true,
        description = "Show a model's layer layout, parameter count and recurrent state size per sequence.")
final class InfoCommand implements Callable<Integer> {
    @Mixin
    ModelOptions modelOptions = new ModelOptions();

    @Option(names = "--preset", paramLabel = "NAME", description = "Describe a preset shape instead: ${COMPLETION-CANDIDATES}.",
            completionCandidates = PresetNames.class)
    String preset;

    @Option(names = "--context", paramLabel = "N", defaultValue = "2048",
            description = "Context length for the state size (default ${DEFAULT-VALUE}).")
    int context;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        if (context < 1) {
            throw new UsageException("--context must be >= 1, got " + context);
        }
        ModelConfig cfg;
        long params;
        String name;
        ModelOptions.modelOrPreset(modelOptions.model, preset);
        if (preset != null) {
            cfg = ModelOptions.preset(preset);
            name = "preset " + preset;
            params = parameterCount(cfg);
        } else {
            Path dir = modelOptions.modelDir();
            Path file = Files.isDirectory(dir) ? dir.resolve("config.json") : dir.resolveSibling("config.json");
            cfg = ConfigParser.read(file);
            name = dir.toString();
            try (var backend = modelOptions.backend(); var model = modelOptions.load(backend)) {
                params = model.parameterCount();
                cfg = model.config();
            }
        }
        PrintWriter out = spec.commandLine().getOut();
        out.printf("model        %s%n", name);
        out.printf("width        %d, %d layers, %d heads, MLP %s%n", cfg.dModel(), cfg.nLayer(), cfg.nHead(),
                cfg.hasMlp() ? "SwiGLU " + cfg.mlpHidden() : "none");
        out.printf("vocabulary   %d (padded to %d), %s head%n", cfg.vocabSize(), cfg.paddedVocabSize(),
                cfg.tieWordEmbeddings() ? "tied" : "separate");
        out.printf("parameters   %,d (%.1fM)%n", params, params / 1e6);
        out.println();
        out.printf("%-6s %-12s %-54s %12s%n", "layer", "mixer", "details", "state/seq");
        for (int i = 0; i < cfg.nLayer(); i++) {
            MixerConfig m = cfg.layer(i);
            out.printf("%-6d %-12s %-54s %12s%n", i, m.kind(), details(m), StateSize.human(StateSize.layerBytes(m, context)));
        }
        out.println();
        out.printf("recurrent state per sequence at %d tokens (float32):%n", context);
        for (Map.Entry<String, Long> e : StateSize.byKind(cfg, context).entrySet()) {
            out.printf("  %-12s %,14d bytes  (%s)%n", e.getKey(), e.getValue(), StateSize.human(e.getValue()));
        }
        long total = StateSize.total(cfg, context);
        out.printf("  %-12s %,14d bytes  (%s)%n", "total", total, StateSize.human(total));
        out.flush();
        return 0;
    }

    static String details(MixerConfig m) {
        return switch (m) {
            case MixerConfig.BaseConv c -> "kernel " + c.kernel() + ", inner " + c.innerWidth() + (c.bias() ? ", bias" : "");
            case MixerConfig.LinearAttention l -> "heads " + l.numHeads() + ", feature dim " + l.featureDim()
                    + " (" + l.expandedDim() + " features), head dim " + l.headDim();
            case MixerConfig.Attention a -> "heads " + a.numHeads() + ", head dim " + a.headDim()
                    + (a.sliding() ? ", window " + a.window() + " keys back" : ", causal")
                    + ", rotary " + a.rotaryDim();
        };
    }

    /** Parameter count implied by a configuration (as the weights would have). */
    static long parameterCount(ModelConfig cfg) {
        long d = cfg.dModel();
        long p = cfg.paddedVocabSize() * d * (cfg.tieWordEmbeddings() ? 1 : 2) + d;
        for (MixerConfig m : cfg.layers()) {
            p += d;
            if (cfg.hasMlp()) {
                p += d + 3L * cfg.mlpHidden() * d;
            }
            p += switch (m) {
                case MixerConfig.BaseConv c -> 2L * c.innerWidth() * d + (c.bias() ? 2L * c.innerWidth() + d : 0)
                        + (long) c.innerWidth() * c.kernel() + (long) c.innerWidth() * d;
                case MixerConfig.LinearAttention l -> 2L * l.numHeads() * l.featureDim() * d + 2 * d * d;
                case MixerConfig.Attention a -> 4 * d * d + (Boolean.TRUE.equals(a.qkvBias()) ? 3 * d : 0)
                        + (Boolean.TRUE.equals(a.outBias()) ? d : 0);
            };
        }
        return p;
    }

    static final class PresetNames implements Iterable<String> {
        @Override
        public java.util.Iterator<String> iterator() {
            return Presets.NAMES.iterator();
        }
    }
}
