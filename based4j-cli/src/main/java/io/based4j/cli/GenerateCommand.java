package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.generate.Generator;
import io.based4j.model.BasedModel;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Continue one or more prompts (several prompts run together in one batch).")
final class GenerateCommand implements Callable<Integer> {
    @Mixin
    ModelOptions modelOptions = new ModelOptions();

    @Option(names = {"-p", "--prompt"}, paramLabel = "TEXT", description = "Prompt text; repeat for a batch of prompts.")
    List<String> prompts = new ArrayList<>();

    @Option(names = "--prompt-ids", paramLabel = "IDS", description = "Prompt as token ids (e.g. 1,2,3); repeatable.")
    List<String> promptIds = new ArrayList<>();

    @Option(names = {"-n", "--max-new-tokens"}, paramLabel = "N", defaultValue = "64",
            description = "Most tokens to generate per prompt (default ${DEFAULT-VALUE}).")
    int maxNewTokens;

    @Option(names = {"-t", "--temperature"}, paramLabel = "T", defaultValue = "0.8",
            description = "Sampling temperature; 0 is greedy (default ${DEFAULT-VALUE}).")
    float temperature;

    @Option(names = "--top-k", paramLabel = "K", defaultValue = "0", description = "Keep the K most likely tokens (0: all).")
    int topK;

    @Option(names = "--top-p", paramLabel = "P", defaultValue = "0.95",
            description = "Nucleus sampling mass (default ${DEFAULT-VALUE}; 1 disables).")
    float topP;

    @Option(names = "--seed", paramLabel = "S", description = "Random seed (default: a fresh one each run).")
    Long seed;

    @Option(names = "--stop", paramLabel = "TEXT", description = "Stop when this text appears; repeatable.")
    List<String> stops = new ArrayList<>();

    @Option(names = "--ignore-eos", description = "Keep generating after the end-of-text token.")
    boolean ignoreEos;

    @Option(names = "--print-ids", description = "End the output with a line holding the generated ids.")
    boolean printIds;

    @Option(names = "--no-echo", description = "Do not print the prompt before its continuation.")
    boolean noEcho;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        if (prompts.isEmpty() && promptIds.isEmpty()) {
            throw new UsageException("give a prompt with --prompt TEXT or --prompt-ids 1,2,3");
        }
        long baseSeed = seed != null ? seed : System.nanoTime();
        Gpt2Tokenizer tokenizer = Gpt2Tokenizer.load();
        List<int[]> ids = new ArrayList<>();
        for (String p : prompts) {
            ids.add(tokenizer.encode(p));
        }
        List<GenerationRequest> requests = new ArrayList<>();
        try {
            for (String p : promptIds) {
                ids.add(Gpt2Tokenizer.parseIds(p));
            }
            for (int i = 0; i < ids.size(); i++) {
                SamplingParams sp = new SamplingParams(temperature, topK, topP, baseSeed + i);
                requests.add(new GenerationRequest(ids.get(i), maxNewTokens, sp, stops, !ignoreEos));
            }
        } catch (IllegalArgumentException e) {
            throw new UsageException(e.getMessage()); // an option value out of range, named by the message
        }
        PrintWriter out = spec.commandLine().getOut();
        try (Backend backend = modelOptions.backend(); BasedModel model = modelOptions.load(backend)) {
            Generator generator = new Generator(model, tokenizer);
            boolean stream = requests.size() == 1;
            // the prompt is echoed with the first token, once the request has been checked and its state planned,
            // so an error never lands in the middle of a line of output
            String echo = stream && !noEcho ? tokenizer.decode(ids.get(0)) : "";
            boolean[] started = new boolean[1];
            long t0 = System.nanoTime();
            List<GenerationResult> results = generator.generate(requests, stream ? (seq, id, text) -> {
                out.print(started[0] ? text : echo + text);
                started[0] = true;
                out.flush();
            } : null);
            double secs = (System.nanoTime() - t0) / 1e9;
            int generated = results.stream().mapToInt(r -> r.tokens().length).sum();
            if (stream) {
                out.println(started[0] ? "" : echo);
            } else {
                for (int i = 0; i < results.size(); i++) {
                    out.println("=== " + (i + 1) + " ===");
                    out.println((noEcho ? "" : tokenizer.decode(ids.get(i))) + results.get(i).text());
                }
            }
            if (printIds) {
                for (GenerationResult r : results) {
                    out.println(Arrays.stream(r.tokens()).mapToObj(Integer::toString).collect(Collectors.joining(" ")));
                }
            }
            out.flush();
            Progress.note(String.format("%d tokens in %.2f s (%.1f tokens/s), finished by %s", generated, secs,
                    generated / Math.max(secs, 1e-9),
                    results.stream().map(r -> r.finish().name().toLowerCase()).collect(Collectors.joining(", "))));
        }
        return 0;
    }
}
