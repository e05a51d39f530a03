package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.eval.ContextLength;
import io.based4j.eval.Perplexity;
import io.based4j.eval.PerplexityData;
import io.based4j.eval.ProbeSets;
import io.based4j.eval.Recall;
import io.based4j.eval.RecallFile;
import io.based4j.eval.RecallSet;
import io.based4j.eval.TokenBytes;
import io.based4j.model.BasedModel;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.OptionalInt;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "eval", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Evaluate a model: perplexity and bits per byte on held-out text, or recall",
                "scored as in the BASED paper. A table goes to standard output; --json FILE",
                "writes the whole result.",
                "",
                "Tasks:",
                "  perplexity  --data PATH...: token folders from 'based4j data tokenize' (their",
                "              val split, or --split) or UTF-8 text files (GPT-2 tokens).",
                "              Windows of --seq-len tokens; each window after the first scores",
                "              --stride new tokens; every token but a stream's first is scored",
                "              once. Bits per byte = nats / ln 2 / UTF-8 bytes of the scored",
                "              text (<|endoftext|> counts no bytes).",
                "  recall      --data FILE.jsonl...: one JSON object a line, e.g.",
                "              {\"context\": \"...\", \"prompt\": \"...\", \"answers\": [\"...\", \"...\"]}",
                "              The question is \"prompt\", \"question\" or \"text\"; \"context\" is",
                "              optional (joined to the question by one space); the answers are",
                "              \"answers\" (an array) or \"answer\" (a string); an \"id\" is kept.",
                "              The model reads context and question, continues greedily until",
                "              a newline or --max-new-tokens, and is right when any answer",
                "              appears in its output, ignoring case. An input too long for",
                "              --seq-len loses its beginning. builtin:NAME is a built-in set.",
                "  capitals    built-in: the 50 US state capitals, closed-book and in-context.",
                "  elements    built-in: the 118 chemical elements (symbol -> name, name ->",
                "              atomic number), closed-book and in-context.",
                "",
                "Details: docs/eval.md.", ""})
final class EvalCommand implements Callable<Integer> {
    /** The tasks, in the order the help lists them. */
    static final List<String> TASKS = List.of("perplexity", "recall", "capitals", "elements");

    /** Tokens per forward pass a perplexity batch aims at when --batch is not given. */
    static final int PERPLEXITY_TOKENS_PER_PASS = 4096;
    /** Prompts generated together when --batch is not given. */
    static final int RECALL_BATCH = 16;

    @Mixin
    ModelOptions modelOptions = new ModelOptions();

    @Option(names = "--task", paramLabel = "TASK", required = true,
            description = "perplexity, recall, capitals or elements.")
    String task;

    @Option(names = "--data", paramLabel = "PATH", arity = "1..*",
            description = "perplexity: token folders or text files; recall: JSONL files (or builtin:NAME).")
    List<String> data = new ArrayList<>();

    @Option(names = "--split", paramLabel = "NAME", defaultValue = "val",
            description = "Split of a token folder to score (default ${DEFAULT-VALUE}: the held-out tokens).")
    String split;

    @Option(names = "--seq-len", paramLabel = "N",
            description = "Context in tokens: a perplexity window; a recall input plus its answer. Default: "
                    + ContextLength.DEFAULT + ", or the model's l_max where it is smaller.")
    Integer seqLen;

    @Option(names = "--stride", paramLabel = "N",
            description = "perplexity: tokens each window after the first scores, at most --seq-len (default: "
                    + "--seq-len, windows that do not overlap).")
    Integer stride;

    @Option(names = "--batch", paramLabel = "N",
            description = "Windows (perplexity) or prompts (recall) per pass. Default: windows making "
                    + PERPLEXITY_TOKENS_PER_PASS + " tokens; " + RECALL_BATCH + " prompts.")
    Integer batch;

    @Option(names = "--max-new-tokens", paramLabel = "N", defaultValue = "" + Recall.MAX_NEW_TOKENS,
            description = "recall: most tokens of an answer (default ${DEFAULT-VALUE}, as in the paper).")
    int maxNewTokens;

    @Option(names = "--json", paramLabel = "FILE", description = "Also write the whole result, per-example outcomes"
            + " included, as JSON (written whole or not at all).")
    Path json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        checkOptions();
        if (json != null) {
            OutputFiles.checkWritable("--json", json);
        }
        Gpt2Tokenizer tokenizer = Gpt2Tokenizer.load();
        Map<String, Object> doc;
        if (task.equals("perplexity")) {
            try (PerplexityData sources = PerplexityData.open(data.stream().map(Path::of).toList(), split, tokenizer)) {
                doc = perplexity(sources, tokenizer);
            }
        } else {
            doc = recall(recallSets(), tokenizer);
        }
        if (json != null) {
            OutputFiles.writeJson(json, doc);
            Progress.note("wrote " + json);
        }
        return 0;
    }

    /** Refuses an unknown task and option values out of range before anything is read. */
    private void checkOptions() {
        if (!TASKS.contains(task)) {
            throw new UsageException("--task " + task + " is not a task; choose " + String.join(", ", TASKS));
        }
        boolean builtin = ProbeSets.TASKS.contains(task);
        if (builtin && !data.isEmpty()) {
            throw new UsageException("--task " + task + " runs its built-in sets; --data is for the perplexity and"
                    + " recall tasks");
        }
        if (!builtin && data.isEmpty()) {
            throw new UsageException("--task " + task + " needs --data (" + (task.equals("perplexity")
                    ? "token folders or text files" : "JSONL files of questions, or builtin:NAME") + ")");
        }
        positive("--seq-len", seqLen);
        positive("--stride", stride);
        positive("--batch", batch);
        positive("--max-new-tokens", maxNewTokens);
        if (seqLen != null && stride != null && stride > seqLen) {
            throw new UsageException("--stride " + stride + " is more than --seq-len " + seqLen);
        }
        if (!task.equals("perplexity") && seqLen != null && seqLen <= maxNewTokens) {
            throw new UsageException("--seq-len " + seqLen + " leaves no room for a prompt beside "
                    + maxNewTokens + " new tokens (--max-new-tokens); give more");
        }
    }

    private static void positive(String option, Integer value) {
        if (value != null && value < 1) {
            throw new UsageException(option + " must be >= 1, got " + value);
        }
    }

    /** The context to use: --seq-len, else the model's default, with a note when it passes the model's own. */
    private int seqLen(BasedModel model) {
        OptionalInt own = ContextLength.ofModel(model.config());
        int len = seqLen != null ? seqLen : ContextLength.defaultSeqLen(model.config());
        if (own.isPresent() && len > own.getAsInt()) {
            Progress.note(String.format(Locale.ROOT, "--seq-len %,d is longer than the %,d tokens (l_max) the model"
                    + " was built for", len, own.getAsInt()));
        }
        return len;
    }

    private Map<String, Object> perplexity(PerplexityData data, Gpt2Tokenizer tokenizer) {
        PrintWriter out = spec.commandLine().getOut();
        try (Backend backend = modelOptions.backend(); BasedModel model = modelOptions.load(backend)) {
            int len = seqLen(model);
            int step = stride != null ? stride : len;
            if (step > len) {
                throw new UsageException("--stride " + step + " is more than the window of " + len + " tokens");
            }
            int windows = batch != null ? batch : Math.max(1, PERPLEXITY_TOKENS_PER_PASS / len);
            Progress.note(String.format(Locale.ROOT, "perplexity: windows of %,d tokens, stride %,d, %,d per pass",
                    len, step, windows));
            long t0 = System.nanoTime();
            long[] lastNote = {t0};
            List<Perplexity.Score> scores = new Perplexity(model, new TokenBytes(tokenizer), len, step, windows)
                    .run(data.sources(), (done, all, tokens) -> {
                        long now = System.nanoTime();
                        if (done < all && now - lastNote[0] > 10_000_000_000L) {
                            lastNote[0] = now;
                            Progress.note(String.format(Locale.ROOT, "%,d/%,d windows, %,d tokens scored", done, all,
                                    tokens));
                        }
                    });
            double seconds = (System.nanoTime() - t0) / 1e9;
            Perplexity.Score total = Perplexity.Score.sum("all", scores);
            int width = Math.max(24, scores.stream().mapToInt(s -> s.name().length()).max().orElse(0));
            String row = "%-" + width + "s %14s %10s %12s %10s%n";
            out.printf(Locale.ROOT, row, "data", "tokens", "loss", "perplexity", "bits/byte");
            for (Perplexity.Score s : scores.size() > 1 ? append(scores, total) : scores) {
                out.printf(Locale.ROOT, row, s.name(), String.format(Locale.ROOT, "%,d", s.tokens()),
                        String.format(Locale.ROOT, "%.4f", s.loss()), String.format(Locale.ROOT, "%.3f",
                                s.perplexity()), String.format(Locale.ROOT, "%.4f", s.bitsPerByte()));
            }
            out.flush();
            Progress.note(String.format(Locale.ROOT, "%,d tokens in %.1f s (%,.0f tokens/s)", total.tokens(), seconds,
                    total.tokens() / Math.max(seconds, 1e-9)));
            Map<String, Object> doc = header(model, backend);
            doc.put("seq_len", (long) len);
            doc.put("stride", (long) step);
            doc.put("batch", (long) windows);
            doc.put("split", split);
            doc.put("data", scores.stream().map(EvalCommand::scoreJson).toList());
            doc.put("total", scoreJson(total));
            doc.put("seconds", seconds);
            return doc;
        }
    }

    private static <T> List<T> append(List<T> list, T last) {
        List<T> out = new ArrayList<>(list);
        out.add(last);
        return out;
    }

    private static Map<String, Object> scoreJson(Perplexity.Score s) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", s.name());
        m.put("tokens", s.tokens());
        m.put("nats", s.nats());
        m.put("bytes", s.bytes());
        m.put("loss", s.loss());
        m.put("perplexity", s.perplexity());
        m.put("bits_per_byte", s.bitsPerByte());
        return m;
    }

    /** The sets a recall task runs: the built-in ones, or the --data files (builtin:NAME for a built-in set). */
    private List<RecallSet> recallSets() throws IOException {
        if (ProbeSets.TASKS.contains(task)) {
            return ProbeSets.task(task);
        }
        List<RecallSet> sets = new ArrayList<>();
        for (String d : data) {
            if (d.startsWith("builtin:")) {
                try {
                    sets.add(ProbeSets.set(d.substring("builtin:".length())));
                } catch (IllegalArgumentException e) {
                    throw new UsageException("--data " + d + ": " + e.getMessage());
                }
            } else {
                sets.add(RecallFile.read(Path.of(d)));
            }
        }
        return sets;
    }

    private Map<String, Object> recall(List<RecallSet> sets, Gpt2Tokenizer tokenizer) {
        PrintWriter out = spec.commandLine().getOut();
        try (Backend backend = modelOptions.backend(); BasedModel model = modelOptions.load(backend)) {
            int len = seqLen(model);
            if (len <= maxNewTokens) {
                throw new UsageException("the context of " + len + " tokens leaves no room for a prompt beside "
                        + maxNewTokens + " new tokens; give a larger --seq-len");
            }
            int prompts = batch != null ? batch : RECALL_BATCH;
            int count = sets.stream().mapToInt(s -> s.examples().size()).sum();
            Progress.note(String.format(Locale.ROOT, "recall: %,d examples in %d set%s; greedy, until a newline or"
                    + " %d new tokens; inputs of at most %,d tokens", count, sets.size(), sets.size() == 1 ? "" : "s",
                    maxNewTokens, len - maxNewTokens));
            long t0 = System.nanoTime();
            List<Recall.SetScore> scores = new Recall(model, tokenizer, len, maxNewTokens, prompts).run(sets,
                    (set, done) -> {
                        if (done == set.examples().size()) {
                            Progress.note(String.format(Locale.ROOT, "%s: %,d examples done", set.name(), done));
                        }
                    });
            double seconds = (System.nanoTime() - t0) / 1e9;
            int width = Math.max(24, sets.stream().mapToInt(s -> s.name().length()).max().orElse(0));
            String row = "%-" + width + "s %9s %9s %9s %10s%n";
            out.printf(Locale.ROOT, row, "set", "examples", "correct", "accuracy", "truncated");
            for (Recall.SetScore s : scores) {
                out.printf(Locale.ROOT, row, s.set().name(), s.examples(), s.correct(),
                        String.format(Locale.ROOT, "%.4f", s.accuracy()), s.truncated());
            }
            out.flush();
            Progress.note(String.format(Locale.ROOT, "%,d examples in %.1f s", count, seconds));
            Map<String, Object> doc = header(model, backend);
            doc.put("seq_len", (long) len);
            doc.put("max_new_tokens", (long) maxNewTokens);
            doc.put("stop", Recall.STOP);
            doc.put("batch", (long) prompts);
            doc.put("sets", scores.stream().map(EvalCommand::setJson).toList());
            doc.put("seconds", seconds);
            return doc;
        }
    }

    private static Map<String, Object> setJson(Recall.SetScore s) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", s.set().name());
        m.put("source", s.set().source());
        m.put("examples", (long) s.examples());
        m.put("correct", (long) s.correct());
        m.put("accuracy", s.accuracy());
        m.put("truncated", (long) s.truncated());
        List<Object> results = new ArrayList<>();
        for (Recall.Outcome o : s.outcomes()) {
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("line", (long) o.example().line());
            if (o.example().id() != null) {
                r.put("id", o.example().id());
            }
            r.put("answers", o.example().answers());
            r.put("output", o.output());
            r.put("correct", o.correct());
            r.put("input_tokens", (long) o.inputTokens());
            r.put("truncated", o.truncated());
            r.put("generated_tokens", (long) o.generated());
            r.put("finish", o.finish().name().toLowerCase(Locale.ROOT));
            results.add(r);
        }
        m.put("results", results);
        return m;
    }

    private Map<String, Object> header(BasedModel model, Backend backend) {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("task", task);
        doc.put("model", modelOptions.modelDir().toString());
        doc.put("parameters", model.parameterCount());
        doc.put("device", modelOptions.device);
        doc.put("precision", ModelOptions.isCuda(modelOptions.device) ? modelOptions.precision : "f32");
        doc.put("backend", backend.name());
        return doc;
    }
}
