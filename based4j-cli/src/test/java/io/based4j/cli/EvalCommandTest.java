package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.checkpoint.Safetensors;
import io.based4j.cli.CliTest.Result;
import io.based4j.config.ConfigParser;
import io.based4j.json.Json;
import io.based4j.model.Initializer;
import io.based4j.model.Presets;
import io.based4j.tokenizer.Gpt2Tokenizer;
import io.based4j.train.data.DatasetWriter;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code based4j eval} end to end: perplexity, recall and the built-in probes, their JSON and their errors. */
class EvalCommandTest {
    static final String GOLDEN = CliTest.GOLDEN.toString();
    /** Text of GPT-2 tokens below 1000, the built-in model's vocabulary. */
    static final String TEXT = " it is the man and the man is in a good way. it is not for you, and it was on the way to the"
            + " world of all. it is new.";

    @TempDir
    Path tmp;

    @TempDir
    static Path shared;
    /** A small model with random weights over the whole GPT-2 vocabulary (it reads any text). */
    static Path fullVocab;

    @BeforeAll
    static void fullVocabularyModel() throws IOException {
        Map<String, Object> config = new LinkedHashMap<>(Presets.configMap("based-360m"));
        config.put("n_embd", 16L);
        config.put("n_layer", 2L);
        config.put("n_head", 2L);
        config.put("n_inner", 32L);
        config.put("alt_mixer", Presets.linearMixer(4, 2));
        config.put("alt_mixer_layers", List.of(1L));
        config.remove("alt_mixer_2");
        config.remove("alt_mixer_2_layers");
        fullVocab = shared.resolve("full-vocab");
        Files.createDirectories(fullVocab);
        Files.writeString(fullVocab.resolve("config.json"), Json.writePretty(config));
        try (Arena arena = Arena.ofShared()) {
            Safetensors.write(fullVocab.resolve("model.safetensors"),
                    Initializer.stateDict(ConfigParser.fromMap("test", config), 5, arena), Map.of());
        }
    }

    static Map<String, Object> json(Path file) throws IOException {
        return Json.parseObject(Files.readString(file));
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> map(Object o) {
        return (Map<String, Object>) o;
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Object o) {
        return (List<Object>) o;
    }

    @Test
    void perplexityOfATokenFolderEqualsThatOfTheTextItHolds() throws IOException {
        Path text = tmp.resolve("a.txt");
        Files.writeString(text, TEXT);
        int[] ids = Gpt2Tokenizer.load().encode(TEXT);
        Path folder = tmp.resolve("shards");
        DatasetWriter.writeAll(folder, new int[] {1, 2, 3}, ids, Map.of("vocab_size", 50257L));
        Path out = tmp.resolve("p.json");
        Result r = CliTest.run("eval", "--model", GOLDEN, "--task", "perplexity", "--data", text.toString(),
                folder.toString(), "--seq-len", "16", "--stride", "5", "--json", out.toString());
        assertEquals(0, r.code(), r.err());
        String[] lines = r.outLines();
        assertEquals(4, lines.length, r.out());
        assertTrue(lines[0].startsWith("data ") && lines[0].contains("bits/byte"), lines[0]);
        assertTrue(lines[1].startsWith(text.toString()) && lines[2].startsWith("val split of " + folder)
                && lines[3].startsWith("all "), r.out());
        Map<String, Object> doc = json(out);
        assertEquals("perplexity", doc.get("task"));
        assertEquals(16L, doc.get("seq_len"));
        assertEquals(5L, doc.get("stride"));
        List<Object> data = list(doc.get("data"));
        Map<String, Object> fromText = map(data.get(0));
        Map<String, Object> fromShards = map(data.get(1));
        // the same tokens: the same windows, the same sums
        assertEquals((long) ids.length - 1, fromText.get("tokens"));
        assertEquals(fromText.get("tokens"), fromShards.get("tokens"));
        assertEquals(fromText.get("nats"), fromShards.get("nats"));
        // the scored text is all but the first token (" it"), counted in UTF-8 bytes
        long bytes = TEXT.getBytes(StandardCharsets.UTF_8).length - 3;
        assertEquals(bytes, fromText.get("bytes"));
        assertEquals(bytes, fromShards.get("bytes"));
        double nats = (Double) fromText.get("nats");
        assertEquals(nats / Math.log(2) / bytes, (Double) fromText.get("bits_per_byte"), 1e-12);
        assertEquals(Math.exp(nats / (ids.length - 1)), (Double) fromText.get("perplexity"), 1e-9 * Math.exp(nats
                / (ids.length - 1)));
        Map<String, Object> total = map(doc.get("total"));
        assertEquals(2L * (ids.length - 1), total.get("tokens"));
        assertEquals(2 * nats, (Double) total.get("nats"), 1e-9 * nats);
    }

    @Test
    void recallGeneratesGreedilyStopsAtANewlineAndScoresContains() throws IOException {
        Path file = tmp.resolve("probe.jsonl");
        // the built-in model continues " and it is" with " per" again and again and never writes a newline, and
        // continues "ivust" with "ust" and then a newline
        Files.writeString(file, """
                {"prompt": " and it is", "answers": ["xyz", "PER PER"], "id": "many"}
                {"context": " it is", "prompt": "the man", "answer": "q"}
                {"prompt": "ivust", "answers": ["UST"]}
                {"prompt": "ivust", "answers": ["ust\\n"]}
                """);
        Path out = tmp.resolve("r.json");
        Result r = CliTest.run("eval", "--model", GOLDEN, "--task", "recall", "--data", file.toString(), "--json",
                out.toString());
        assertEquals(0, r.code(), r.err());
        assertEquals(List.of("set examples correct accuracy truncated", "probe 4 2 0.5000 0"),
                Arrays.stream(r.outLines()).map(l -> l.strip().replaceAll(" +", " ")).toList());
        Map<String, Object> set = map(list(json(out).get("sets")).getFirst());
        assertEquals(4L, set.get("examples"));
        assertEquals(2L, set.get("correct"));
        assertEquals(0.5, set.get("accuracy"));
        List<Object> results = list(set.get("results"));
        Map<String, Object> many = map(results.get(0));
        assertEquals("many", many.get("id"));
        assertEquals(" per".repeat(48), many.get("output"), "48 new tokens at most");
        assertEquals(48L, many.get("generated_tokens"));
        assertEquals("length", many.get("finish"));
        assertEquals(true, many.get("correct"), "any answer, any case");
        Map<String, Object> joined = map(results.get(1));
        assertEquals(4L, joined.get("input_tokens"), "' it is the man': context and prompt joined by a space");
        assertEquals(false, joined.get("correct"));
        Map<String, Object> stopped = map(results.get(2));
        assertEquals("ust", stopped.get("output"), "the newline ends the output and is not part of it");
        assertEquals(2L, stopped.get("generated_tokens"));
        assertEquals("stop", stopped.get("finish"));
        assertEquals(true, stopped.get("correct"));
        assertEquals(false, map(results.get(3)).get("correct"), "nothing after the newline is scored");
        assertEquals(3L, map(results.get(2)).get("line"));

        // the cap follows --max-new-tokens
        Result five = CliTest.run("eval", "--model", GOLDEN, "--task", "recall", "--data", file.toString(),
                "--max-new-tokens", "5", "--json", out.toString());
        assertEquals(0, five.code(), five.err());
        assertEquals(" per".repeat(5), map(list(map(list(json(out).get("sets")).getFirst()).get("results")).get(0))
                .get("output"));
    }

    @Test
    void inputsTooLongForTheContextLoseTheirBeginning() throws IOException {
        Path file = tmp.resolve("long.jsonl");
        Files.writeString(file, "{\"context\": \"" + TEXT + "\", \"prompt\": \" and it is\", \"answer\": \"per\"}\n"
                + "{\"prompt\": \" and it is\", \"answer\": \"per\"}\n");
        Path out = tmp.resolve("t.json");
        // 52 tokens of context less 48 new ones: inputs keep their last 4 tokens
        Result r = CliTest.run("eval", "--model", GOLDEN, "--task", "recall", "--data", file.toString(), "--seq-len",
                "52", "--json", out.toString());
        assertEquals(0, r.code(), r.err());
        Map<String, Object> set = map(list(json(out).get("sets")).getFirst());
        assertEquals(1L, set.get("truncated"));
        List<Object> results = list(set.get("results"));
        assertEquals(true, map(results.get(0)).get("truncated"));
        assertEquals(4L, map(results.get(0)).get("input_tokens"));
        assertEquals(false, map(results.get(1)).get("truncated"));
        assertEquals(3L, map(results.get(1)).get("input_tokens"));
        // what remains of the long input (". and it is") is continued as the model continues those 4 tokens
        int[] kept = Gpt2Tokenizer.load().encode(". and it is");
        Result g = CliTest.run("generate", "--model", GOLDEN, "--prompt-ids", CliTest.csv(kept), "-n", "48", "-t", "0",
                "--no-echo", "--stop", "\n");
        assertEquals(0, g.code(), g.err());
        assertTrue(g.out().endsWith("\n"), g.out());
        assertEquals(g.out().substring(0, g.out().length() - 1), map(results.get(0)).get("output"));
    }

    @Test
    void theBuiltInProbesRunBothVariants() throws IOException {
        Path out = tmp.resolve("c.json");
        Result r = CliTest.run("eval", "--model", fullVocab.toString(), "--task", "capitals", "--max-new-tokens", "4",
                "--json", out.toString());
        assertEquals(0, r.code(), r.err());
        String[] lines = r.outLines();
        assertEquals(3, lines.length, r.out());
        assertTrue(lines[1].startsWith("capitals-closed-book ") && lines[2].startsWith("capitals-in-context "),
                r.out());
        List<Object> sets = list(json(out).get("sets"));
        assertEquals(List.of("capitals-closed-book", "capitals-in-context"),
                sets.stream().map(s -> map(s).get("name")).toList());
        for (Object s : sets) {
            assertEquals(50L, map(s).get("examples"));
            assertEquals(50, list(map(s).get("results")).size());
            assertEquals("builtin:" + map(s).get("name"), map(s).get("source"));
        }
        Map<String, Object> ohio = map(list(map(sets.get(0)).get("results")).get(34));
        assertEquals("capital:Ohio", ohio.get("id"));
        assertEquals(List.of("Columbus"), ohio.get("answers"));

        // a built-in set named as recall data
        Result one = CliTest.run("eval", "--model", fullVocab.toString(), "--task", "recall", "--data",
                "builtin:elements-in-context", "--max-new-tokens", "1", "--json", out.toString());
        assertEquals(0, one.code(), one.err());
        assertEquals(236L, map(list(json(out).get("sets")).getFirst()).get("examples"));
    }

    @Test
    void aModelThatCannotReadTheTextIsRefusedNamingTheExample() {
        Result r = CliTest.run("eval", "--model", GOLDEN, "--task", "capitals");
        OutputFilesTest.assertOneLineNaming(r, "builtin:capitals-closed-book:1", "token", "' capital'",
                "vocabulary of 1000 tokens");
    }

    @Test
    void badUsageIsRefusedWithExitCode2() {
        Result r = CliTest.run("eval", "--task", "hellaswag");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--task hellaswag is not a task; choose perplexity, recall, capitals, elements"),
                r.err());
        assertEquals(2, CliTest.run("eval", "--task", "recall").code(), "recall needs --data");
        assertEquals(2, CliTest.run("eval", "--task", "perplexity").code(), "perplexity needs --data");
        assertEquals(2, CliTest.run("eval", "--task", "capitals", "--data", "x.jsonl").code());
        assertEquals(2, CliTest.run("eval", "--task", "perplexity", "--data", "x", "--seq-len", "0").code());
        assertEquals(2, CliTest.run("eval", "--task", "perplexity", "--data", "x", "--seq-len", "8", "--stride", "9")
                .code());
        assertEquals(2, CliTest.run("eval", "--task", "recall", "--data", "x", "--seq-len", "48").code());
        assertEquals(2, CliTest.run("eval", "--task", "recall", "--data", "builtin:rivers").code());
        assertEquals(2, CliTest.run("eval", "--data", "x").code(), "--task is required");
    }

    @Test
    void badDataIsOneLineAndNeverAHalfWrittenJsonFile() throws IOException {
        Path json = tmp.resolve("kept.json");
        Files.writeString(json, "the user's file\n");
        Path jsonl = tmp.resolve("q.jsonl");
        Files.writeString(jsonl, "{\"prompt\": \" it is\", \"answer\": \"a\"}\n{\"prompt\": \" it is\", \"answers\": [1]}\n");
        OutputFilesTest.assertOneLineNaming(CliTest.run("eval", "--model", GOLDEN, "--task", "recall", "--data",
                jsonl.toString(), "--json", json.toString()), jsonl + ":2: \"answers\"[0] must be a non-empty string");

        Path empty = tmp.resolve("empty.jsonl");
        Files.writeString(empty, "");
        OutputFilesTest.assertOneLineNaming(CliTest.run("eval", "--model", GOLDEN, "--task", "recall", "--data",
                empty.toString(), "--json", json.toString()), empty + ": no examples");

        Path emptyText = tmp.resolve("empty.txt");
        Files.writeString(emptyText, "");
        OutputFilesTest.assertOneLineNaming(CliTest.run("eval", "--model", GOLDEN, "--task", "perplexity", "--data",
                emptyText.toString(), "--json", json.toString()), emptyText + ": empty file");

        Path oneToken = tmp.resolve("one.txt");
        Files.writeString(oneToken, " the");
        Result one = CliTest.run("eval", "--model", GOLDEN, "--task", "perplexity", "--data", oneToken.toString(),
                "--json", json.toString());
        assertEquals(1, one.code());
        assertTrue(one.err().contains(oneToken + ": holds 1 token; perplexity needs at least 2"), one.err());

        Path outside = tmp.resolve("outside.txt");
        Files.writeString(outside, " the capital");
        Result o = CliTest.run("eval", "--model", GOLDEN, "--task", "perplexity", "--data", outside.toString(),
                "--json", json.toString());
        assertEquals(1, o.code());
        assertTrue(o.err().contains(outside + ": token 3139 at position 1 is outside this model's vocabulary of 1000"),
                o.err());

        Path noVal = tmp.resolve("no-val");
        DatasetWriter.writeAll(noVal, new int[] {1, 2, 3}, new int[0], Map.of());
        OutputFilesTest.assertOneLineNaming(CliTest.run("eval", "--model", GOLDEN, "--task", "perplexity", "--data",
                noVal.toString(), "--json", json.toString()), "the val split is empty");

        OutputFilesTest.assertOneLineNaming(CliTest.run("eval", "--model", GOLDEN, "--task", "perplexity", "--data",
                tmp.resolve("missing.txt").toString(), "--json", json.toString()), "missing.txt: no such file");

        assertEquals("the user's file\n", Files.readString(json), "a failed run leaves the --json file alone");
        try (var files = Files.list(tmp)) {
            assertFalse(files.anyMatch(p -> p.getFileName().toString().endsWith(".tmp")), "no temporary file is left");
        }
    }
}
