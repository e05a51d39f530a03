package io.based4j.cli;

import static io.based4j.cli.HostileInputTest.assertOneErrorLine;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code based4j plot}: each chart is a real PNG drawn from its input, and bad input is one line. */
class PlotCommandTest {
    static final Path DOCS = Path.of("../docs");
    static final byte[] PNG_SIGNATURE = {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

    /** The palette's first colour: the first run, file or mixer (see Charts). */
    static final int FIRST_COLOUR = 0x0072B2;

    @TempDir
    Path tmp;

    /**
     * Checks that {@code png} is a PNG of the size asked for that ImageIO decodes, with a drawing on it: many
     * colours, a good part of it not white, and pixels of the first series' colour.
     */
    static BufferedImage assertChart(Path png, int width, int height) throws IOException {
        byte[] bytes = Files.readAllBytes(png);
        assertArrayEquals(PNG_SIGNATURE, Arrays.copyOf(bytes, 8), "PNG signature of " + png);
        BufferedImage image = ImageIO.read(new ByteArrayInputStream(bytes));
        assertEquals(width, image.getWidth());
        assertEquals(height, image.getHeight());
        Set<Integer> colours = new HashSet<>();
        long inked = 0;
        long firstColour = 0;
        for (int y = 0; y < height; y++) {
            for (int x = 0; x < width; x++) {
                int rgb = image.getRGB(x, y) & 0xFFFFFF;
                colours.add(rgb);
                inked += rgb == 0xFFFFFF ? 0 : 1;
                firstColour += rgb == FIRST_COLOUR ? 1 : 0;
            }
        }
        // text, axes and curves are drawn with antialiasing: a chart has hundreds of shades, a blank image one
        assertTrue(colours.size() > 50, colours.size() + " colours");
        // axes, grid, text and the data cover well over 1% of a chart (a blank one: 0)
        assertTrue(inked > width * height / 100, inked + " pixels drawn");
        // the data are drawn: the first series' curve or bars (a few hundred pixels at least)
        assertTrue(firstColour > 200, firstColour + " pixels of the first series' colour");
        return image;
    }

    /** A run directory with a metrics log as 'based4j train' writes it: loss lines and two evaluations. */
    private Path run(String name, double offset) throws IOException {
        Path dir = Files.createDirectories(tmp.resolve(name));
        StringBuilder log = new StringBuilder();
        for (int step = 10; step <= 200; step += 10) {
            double loss = 3 + 7 * Math.exp(-step / 50.0) + offset + (step % 20 == 0 ? 0.1 : -0.1);
            double lr = 1e-3 * Math.min(1, step / 50.0);
            log.append(String.format(Locale.ROOT, "{\"step\":%d,\"loss\":%.4f,\"lr\":%.6f,"
                    + "\"grad_norm\":1.0,\"tokens\":%d,\"tokens_per_s\":1000.0}%n", step, loss, lr, step * 512));
            if (step % 100 == 0) {
                log.append(String.format(Locale.ROOT, "{\"step\":%d,\"val_loss\":%.4f,\"val_ppl\":%.4f}%n",
                        step, loss + 0.05, Math.exp(loss + 0.05)));
            }
        }
        Files.writeString(dir.resolve("metrics.jsonl"), log);
        return dir;
    }

    @Test
    void metricsDrawsTheRunsAndPrintsTheirSummary() throws IOException {
        Path a = run("lr-1e-3", 0);
        Path b = run("lr-3e-3", -0.2);
        Path png = tmp.resolve("loss.png");
        CliTest.Result r = CliTest.run("plot", "metrics", a.toString(), b.resolve("metrics.jsonl").toString(),
                "--out", png.toString(), "--width", "800", "--height", "500");
        assertEquals(0, r.code(), r.err());
        assertChart(png, 800, 500);
        // one line per run, named by its directory, with its last step and best validation loss
        List<String> lines = r.out().lines().toList();
        assertEquals(3, lines.size(), r.out());
        assertTrue(lines.get(1).startsWith("lr-1e-3") && lines.get(1).contains("200"), lines.get(1));
        assertTrue(lines.get(2).startsWith("lr-3e-3"), lines.get(2));
        String bestB = String.format(Locale.ROOT, "%.4f @ 200", 3 + 7 * Math.exp(-4.0) - 0.2 + 0.1 + 0.05);
        assertTrue(lines.get(2).contains(bestB), lines.get(2) + " holds " + bestB);
        assertTrue(r.err().contains("wrote " + png), r.err());
        assertOnly(tmp, "loss.png", "lr-1e-3", "lr-3e-3");
    }

    @Test
    void metricsSkipsTheUnfinishedLastLineOfARunStillWriting() throws IOException {
        Path a = run("live", 0);
        Files.writeString(a.resolve("metrics.jsonl"), "{\"step\":210,\"lo", StandardOpenOption.APPEND);
        Path png = tmp.resolve("live.png");
        CliTest.Result r = CliTest.run("plot", "metrics", a.toString(), "-o", png.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("unfinished last line (line 23"), r.err());
        assertChart(png, 1000, 650);
    }

    @Test
    void aMalformedLineIsAnErrorNamingItsNumberAndNothingIsWritten() throws IOException {
        Path a = run("broken", 0);
        Path log = a.resolve("metrics.jsonl");
        List<String> lines = Files.readAllLines(log);
        lines.set(2, "{\"step\": 30, \"loss\": }");
        Files.write(log, lines);
        Path png = tmp.resolve("out.png");
        assertOneErrorLine(CliTest.run("plot", "metrics", a.toString(), "-o", png.toString()),
                log + ": line 3 is not a JSON object");
        assertFalse(Files.exists(png));

        lines.set(2, "{\"loss\": 3.5}");
        Files.write(log, lines);
        assertOneErrorLine(CliTest.run("plot", "metrics", a.toString(), "-o", png.toString()),
                log + ": line 3: no \"step\"");
        lines.set(2, "{\"step\": 30, \"loss\": \"high\"}");
        Files.write(log, lines);
        assertOneErrorLine(CliTest.run("plot", "metrics", a.toString(), "-o", png.toString()),
                log + ": line 3: \"loss\" must be a number, found string \"high\"");
        // nested a hundred thousand levels deep: an error on the line, not a stack overflow
        lines.set(2, "{\"step\": 30, \"loss\": " + HostileInputTest.DEEP + "}");
        Files.write(log, lines);
        assertOneErrorLine(CliTest.run("plot", "metrics", a.toString(), "-o", png.toString()), "line 3");
        assertFalse(Files.exists(png));
    }

    @Test
    void inputsWithoutDataAreErrors() throws IOException {
        Path png = tmp.resolve("out.png");
        Path empty = Files.createDirectories(tmp.resolve("empty"));
        assertOneErrorLine(CliTest.run("plot", "metrics", empty.toString(), "-o", png.toString()),
                empty + ": a directory without metrics.jsonl");
        Path noLoss = empty.resolve("metrics.jsonl");
        Files.writeString(noLoss, "{\"step\": 1, \"tokens\": 10}\n\n");
        assertOneErrorLine(CliTest.run("plot", "metrics", empty.toString(), "-o", png.toString()),
                noLoss + ": no training or validation loss (1 JSON lines read");
        Path missing = tmp.resolve("missing.jsonl");
        assertOneErrorLine(CliTest.run("plot", "mqar", missing.toString(), "-o", png.toString()),
                missing + ": no such file");
        Path blank = Files.writeString(tmp.resolve("blank.jsonl"), "\n");
        assertOneErrorLine(CliTest.run("plot", "mqar", blank.toString(), "-o", png.toString()),
                blank + ": no MQAR result records");
        assertFalse(Files.exists(png));
    }

    @Test
    void mqarDrawsTheBestOfEachModelAndReadsWhatMqarTrainWrites() throws IOException {
        Path results = tmp.resolve("sweep.jsonl");
        Files.writeString(results, """
                {"mixer": "based", "d_model": 64, "feature_dim": 8, "lr": 0.001, "state_bytes": 11700, "accuracy": 0.61}
                {"mixer": "based", "d_model": 64, "feature_dim": 8, "lr": 0.0032, "state_bytes": 11700, "accuracy": 0.71}
                {"mixer": "based", "d_model": 128, "feature_dim": 16, "lr": 0.0032, "state_bytes": 78948, "accuracy": 0.97}
                {"architecture": "sliding", "d_model": 128, "window": 16, "lr": 0.01, "state_bytes": 16384, "accuracy": 0.14}
                {"mixer": "sliding", "d_model": 128, "window": 128, "lr": 0.01, "state_bytes": 131072, "accuracy": 0.65}
                """);
        Path trained = DOCS.resolve("mqar/based-d64-f16-L64-kv4.json"); // as 'mqar train --json' wrote it
        Path png = tmp.resolve("recall.png");
        CliTest.Result r = CliTest.run("plot", "mqar", results.toString(), trained.toString(), "--paper",
                "--out", png.toString());
        assertEquals(0, r.code(), r.err());
        assertChart(png, 1000, 650);
        List<String> lines = r.out().lines().toList();
        assertEquals(1 + 5, lines.size(), r.out()); // a header and five models
        // the two learning rates of d 64, f 8: the better one, and how many records it was chosen from
        assertEquals(List.of("based", "64", "f", "8", "11,700", "13.51", "0.7100", "3.20e-03", "2"),
                Arrays.asList(lines.get(1).trim().split("\\s+")));
        assertTrue(lines.get(2).matches("based\\s+64\\s+f 16\\s+39,780\\s+15\\.28\\s+0\\.9908.*"), lines.get(2));
        assertTrue(lines.get(4).matches("sliding\\s+128\\s+w 16\\s+16,384\\s+14\\.00\\s+0\\.1400.*"), lines.get(4));
    }

    @Test
    void mqarRecordsOutOfRangeAreErrorsNamingTheLineAndField() throws IOException {
        Path png = tmp.resolve("recall.png");
        Path results = tmp.resolve("bad.jsonl");
        Files.writeString(results, "{\"mixer\": \"based\", \"state_bytes\": 100, \"accuracy\": 0.5}\n"
                + "{\"mixer\": \"based\", \"state_bytes\": 200, \"accuracy\": 1.5}\n");
        assertOneErrorLine(CliTest.run("plot", "mqar", results.toString(), "-o", png.toString()),
                results + ": line 2: \"accuracy\" must be between 0 and 1, found 1.5");
        Files.writeString(results, "{\"mixer\": \"based\", \"accuracy\": 0.5}\n");
        assertOneErrorLine(CliTest.run("plot", "mqar", results.toString(), "-o", png.toString()),
                results + ": line 1: no \"state_bytes\"");
        Files.writeString(results, "{\"d_model\": 64, \"state_bytes\": 100, \"accuracy\": 0.5}\n");
        assertOneErrorLine(CliTest.run("plot", "mqar", results.toString(), "-o", png.toString()),
                results + ": line 1: no \"mixer\"");
        Files.writeString(results, "[{\"mixer\": \"based\", \"state_bytes\": 0, \"accuracy\": 0.5}]");
        assertOneErrorLine(CliTest.run("plot", "mqar", results.toString(), "-o", png.toString()),
                results + ": item 0: \"state_bytes\" must be a positive number");
        assertFalse(Files.exists(png));
    }

    @Test
    void benchDrawsTrainingThroughputPerShapeAndLength() throws IOException {
        Path png = tmp.resolve("bench.png");
        // a real bench train file of an earlier run, kept as a fixture (the docs' copy follows the latest run)
        CliTest.Result r = CliTest.run("plot", "bench", "src/test/resources/plot/bench-train-h200-bf16-2026-11.json",
                "--out", png.toString());
        assertEquals(0, r.code(), r.err());
        assertChart(png, 1000, 650);
        List<String> lines = r.out().lines().toList();
        assertEquals(1 + 5, lines.size(), r.out());
        assertTrue(lines.get(5).matches("attn-360m, L 8192\\s+1,655\\.7\\s+0\\.73"), lines.get(5));
    }

    @Test
    void benchComparesGpuFilesAndLeavesOutWhatDidNotFit() throws IOException {
        Path png = tmp.resolve("gpu.png");
        Path attn = DOCS.resolve("bench/h100-attn-360m-bf16.json");
        CliTest.Result r = CliTest.run("plot", "bench", attn.toString(),
                DOCS.resolve("bench/h100-based-360m-bf16.json").toString(), "--out", png.toString());
        assertEquals(0, r.code(), r.err());
        assertChart(png, 1000, 650);
        // attn-360m cannot hold batch 256 at 2048 tokens: the file says so, the chart leaves it out
        assertTrue(r.err().contains(attn + ": results[7] (prompt 2048, batch 256) failed"), r.err());
        assertEquals(1 + 7 + 8, r.out().lines().count(), r.out());
        assertTrue(r.out().lines().anyMatch(l -> l.matches(
                "prompt 2048, batch 256\\s+136,774\\.0\\s+75,682\\.4\\s+h100-based-360m-bf16")), r.out());
    }

    @Test
    void benchRefusesOtherJsonAndMixedBenchmarks() throws IOException {
        Path png = tmp.resolve("bench.png");
        Path other = Files.writeString(tmp.resolve("config.json"), "{\"d_model\": 64}");
        assertOneErrorLine(CliTest.run("plot", "bench", other.toString(), "-o", png.toString()),
                other + ": not the JSON of 'bench train', 'bench gpu' or 'bench cpu'");
        Path odd = Files.writeString(tmp.resolve("odd.json"), "{\"benchmark\": \"tpu\", \"results\": []}");
        assertOneErrorLine(CliTest.run("plot", "bench", odd.toString(), "-o", png.toString()),
                odd + ": \"benchmark\" is \"tpu\"");
        Path train = DOCS.resolve("bench/bench-train-h200-f32.json");
        Path gpu = DOCS.resolve("bench/h100-based-360m-bf16.json");
        assertOneErrorLine(CliTest.run("plot", "bench", train.toString(), gpu.toString(), "-o", png.toString()),
                "plot one benchmark at a time");
        Path array = Files.writeString(tmp.resolve("array.json"), "[1, 2]");
        assertOneErrorLine(CliTest.run("plot", "bench", array.toString(), "-o", png.toString()),
                array + ": holds a JSON array, not an object");
        assertFalse(Files.exists(png));
    }

    /** A compare.json as scripts/lm-compare.py writes it (the fields plot compare reads, and some it passes over). */
    private Path comparison() throws IOException {
        return Files.writeString(tmp.resolve("compare.json"), """
                {"device": "cuda", "steps": 1000, "models": [
                  {"name": "based", "label": "BASED", "parameters": 19243520,
                   "state_bytes": {"512": 600883, "2048": 600883}, "val_perplexity": 20.4,
                   "recall_in_context": 0.0070, "decode": []},
                  {"name": "transformer", "label": "Transformer++", "state_bytes": {"512": 9437184, "2048": 37748736},
                   "val_perplexity": 19.8, "recall_in_context": 0.31},
                  {"name": "swa", "state_bytes": {"512": 2359296, "2048": 2359296}, "val_perplexity": 21.7,
                   "recall_in_context": null},
                  {"name": "failed", "state_bytes": {}, "val_perplexity": null}
                ]}
                """);
    }

    @Test
    void compareDrawsEachModelByItsStateAndPrintsTheTable() throws IOException {
        Path png = tmp.resolve("state.png");
        CliTest.Result r = CliTest.run("plot", "compare", comparison().toString(), "--out", png.toString(),
                "--width", "900", "--height", "700");
        assertEquals(0, r.code(), r.err());
        assertChart(png, 900, 700);
        List<String> lines = r.out().lines().toList();
        assertEquals(1 + 3, lines.size(), r.out()); // a header and the three models measured
        assertTrue(lines.get(0).matches("model\\s+state @ 512\\s+state @ 2048\\s+perplexity\\s+recall"), lines.get(0));
        assertEquals(List.of("Transformer++", "9,437,184", "37,748,736", "19.800", "0.3100"),
                Arrays.asList(lines.get(2).trim().split("\\s+")));
        // a value a model lacks is a dash; a model with nothing to draw is left out with a note
        assertEquals(List.of("swa", "2,359,296", "2,359,296", "21.700", "-"),
                Arrays.asList(lines.get(3).trim().split("\\s+")));
        assertTrue(r.err().contains("models[3] (failed): left out, no state bytes"), r.err());
    }

    @Test
    void compareInputsWithoutModelsOrWithBadValuesAreErrors() throws IOException {
        Path png = tmp.resolve("state.png");
        Path file = tmp.resolve("bad.json");
        Files.writeString(file, "{\"device\": \"cuda\"}");
        assertOneErrorLine(CliTest.run("plot", "compare", file.toString(), "-o", png.toString()),
                file + ": no \"models\"");
        Files.writeString(file, "{\"models\": [{\"name\": \"a\", \"state_bytes\": {\"512\": 10},"
                + " \"recall_in_context\": 1.5}]}");
        assertOneErrorLine(CliTest.run("plot", "compare", file.toString(), "-o", png.toString()),
                file + ": models[0]: \"recall_in_context\" must be between 0 and 1, found 1.5");
        Files.writeString(file, "{\"models\": [{\"name\": \"a\", \"state_bytes\": {\"long\": 10},"
                + " \"val_perplexity\": 20}]}");
        assertOneErrorLine(CliTest.run("plot", "compare", file.toString(), "-o", png.toString()),
                file + ": models[0]: \"state_bytes\" has the key \"long\", not a context length");
        Files.writeString(file, "{\"models\": [{\"name\": \"a\", \"state_bytes\": {\"512\": 10}}]}");
        assertOneErrorLine(CliTest.run("plot", "compare", file.toString(), "-o", png.toString()),
                file + ": no model with state bytes and a perplexity or recall to draw");
        assertFalse(Files.exists(png));
    }

    @Test
    void badOptionsAreUsageErrorsFoundBeforeReading() throws IOException {
        Path input = DOCS.resolve("bench/bench-train-h200-bf16.json");
        Path png = tmp.resolve("bench.png");
        for (String[] args : List.of(
                new String[] {"plot", "bench", input.toString(), "-o", png.toString(), "--width", "10"},
                new String[] {"plot", "bench", input.toString(), "-o", png.toString(), "--height", "20000"},
                new String[] {"plot", "metrics", input.toString(), "-o", png.toString(), "--smooth", "1"},
                new String[] {"plot", "bench", "-o", png.toString()})) {
            CliTest.Result r = CliTest.run(args);
            assertEquals(2, r.code(), String.join(" ", args) + ": " + r.err());
            assertTrue(r.err().startsWith("based4j: error: "), r.err());
        }
        // the chart would replace its own input
        Path copy = Files.copy(input, tmp.resolve("bench.json"));
        byte[] before = Files.readAllBytes(copy);
        CliTest.Result r = CliTest.run("plot", "bench", copy.toString(), "-o", copy.toString());
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--out " + copy + " is the input"), r.err());
        assertArrayEquals(before, Files.readAllBytes(copy));
        // a folder that does not exist: refused before the input is read (the input does not exist either)
        Path nowhere = tmp.resolve("no-such-folder/bench.png");
        assertOneErrorLine(CliTest.run("plot", "bench", tmp.resolve("missing.json").toString(), "-o",
                nowhere.toString()), "--out " + nowhere, "does not exist");
    }

    @Test
    void anExistingChartIsReplacedWholeWithNothingLeftBeside() throws IOException {
        Path png = Files.writeString(tmp.resolve("bench.png"), "an older chart");
        CliTest.Result r = CliTest.run("plot", "bench", DOCS.resolve("bench/bench-train-h200-f32.json").toString(),
                "-o", png.toString(), "--width", "640", "--height", "400");
        assertEquals(0, r.code(), r.err());
        assertChart(png, 640, 400);
        assertOnly(tmp, "bench.png");
        // readable as any new file of the user's is (the umask's permissions, not a temporary file's 0600)
        Path fresh = Files.createFile(tmp.resolve("fresh"));
        assertEquals(Files.getPosixFilePermissions(fresh), Files.getPosixFilePermissions(png));
    }

    private static void assertOnly(Path dir, String... names) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(Set.of(names), s.map(p -> p.getFileName().toString()).collect(Collectors.toSet()));
        }
    }
}
