package io.based4j.cli;

import static io.based4j.cli.HostileInputTest.assertOneErrorLine;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.json.Json;
import io.based4j.train.RunLock;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** {@code based4j mqar sweep}: the quick grid end to end on the CPU, resume, the lock, and bad input. */
class MqarSweepCommandTest {
    @TempDir
    Path tmp;

    /** The quick grid's four models at its two rates, each trained one update on 8 tiny examples: a few seconds. */
    static String[] quick(Path dir, String... more) {
        return Stream.concat(Stream.of("mqar", "sweep", "--out", dir.toString(), "--grid", "quick", "--train",
                "16:2:8", "--test", "16:2:8,32:4:4", "--epochs", "1"), Arrays.stream(more)).toArray(String[]::new);
    }

    @Test
    void theQuickGridRunsEndToEndAndASecondStartTrainsNothing() throws IOException {
        Path dir = tmp.resolve("sweep");
        CliTest.Result r = CliTest.run(quick(dir));
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("grid quick, 4 models x 2 learning rates = 8 runs, 1 epoch; 0 done already, 8"
                + " to run"), r.err());
        assertTrue(r.err().contains("run 8/8: attention d64, lr 1.00e-02: accuracy "), r.err());

        // the table: a header and the best rate of each model, by mixer and state size
        List<String> table = r.out().lines().toList();
        assertEquals(5, table.size(), r.out());
        assertEquals(List.of("mixer", "d_model", "dial", "state", "bytes", "log2", "accuracy", "best", "lr", "runs",
                "stop"), Arrays.asList(table.get(0).trim().split("\\s+")));
        assertTrue(table.get(1).matches("based\\s+64\\s+f 8\\s+11,700\\s+13\\.51\\s+\\S+\\s+\\S+\\s+2\\s+epochs"),
                table.get(1));
        assertTrue(table.get(3).matches("sliding\\s+128\\s+w 64\\s+65,536\\s+16\\.00 .*"), table.get(3));
        assertTrue(table.get(4).matches("attention\\s+64\\s+-\\s+524,288\\s+19\\.00 .*"), table.get(4));

        Path results = dir.resolve("results.jsonl");
        List<String> lines = Files.readAllLines(results);
        assertEquals(8, lines.size());
        for (String line : lines) {
            Map<String, Object> rec = Json.parseObject(line);
            for (String key : List.of("mixer", "d_model", "lr", "state_bytes", "accuracy", "slices", "updates",
                    "seconds", "epochs", "seed", "stop")) {
                assertTrue(rec.containsKey(key), key + " in " + line);
            }
        }
        assertEquals(4, Files.readAllLines(dir.resolve("best.jsonl")).size());
        BufferedImage chart = ImageIO.read(dir.resolve("recall.png").toFile());
        assertEquals(1000, chart.getWidth());
        assertEquals(650, chart.getHeight());
        assertArrayEquals(PlotCommandTest.PNG_SIGNATURE,
                Arrays.copyOf(Files.readAllBytes(dir.resolve("recall.png")), 8));

        // what 'plot mqar' reads: the same four points from the eight records
        Path png = tmp.resolve("replot.png");
        CliTest.Result plot = CliTest.run("plot", "mqar", results.toString(), "--out", png.toString());
        assertEquals(0, plot.code(), plot.err());
        assertEquals(5, plot.out().lines().count(), plot.out());
        assertTrue(plot.out().lines().skip(1).allMatch(l -> l.trim().endsWith(" 2")), "two rates each: " + plot.out());

        CliTest.Result again = CliTest.run(quick(dir));
        assertEquals(0, again.code(), again.err());
        assertTrue(again.err().contains("8 done already, 0 to run"), again.err());
        assertFalse(again.err().contains("run 1/8"), again.err());
        assertEquals(lines, Files.readAllLines(results), "nothing trained again");
        assertEquals(r.out(), again.out(), "the same table");
    }

    @Test
    void aDirectoryInUseIsRefusedNamingItsHolder() throws IOException {
        Path dir = tmp.resolve("sweep");
        try (RunLock held = RunLock.acquire(dir, "MQAR sweep", "give another --out")) {
            CliTest.Result r = CliTest.run(quick(dir));
            assertOneErrorLine(r, dir + " is in use by another MQAR sweep (pid " + ProcessHandle.current().pid()
                    + " on ", "give another --out");
        }
        assertFalse(Files.exists(dir.resolve("results.jsonl")));
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "--lrs 0                       | --lrs: learning rate 0.0 is out of range (0, 1)",
        "--lrs 1e-3,x                  | --lrs: 'x' is not a number",
        "--lrs 1e-3,1e-3               | --lrs: learning rate 0.001 is listed twice",
        "--epochs 0                    | --epochs must be between 1 and",
        "--grid quik                   | --grid quik: no such file (give default, quick, or a YAML or JSON grid file)",
        "--train 64:4                  | --train: '64:4' is not L:KV:COUNT",
        "--test 63:4:10                | --test: MQAR (seq_len=63",
        "--batch 0                     | --batch must be >= 1",
        "--stop-after -1               | --stop-after must be >= 0",
        "--max-minutes NaN             | --max-minutes",
        "--device tpu                  | --device tpu cannot train",
        "--precision f8                | --precision f8",
    })
    void anOptionOutOfRangeIsBadUsageAndNothingIsMade(String options, String message) {
        Path dir = tmp.resolve("sweep");
        String[] args = Stream.concat(Stream.of("mqar", "sweep", "--out", dir.toString()),
                Arrays.stream(options.trim().split(" +"))).toArray(String[]::new);
        CliTest.Result r = CliTest.run(args);
        assertEquals(2, r.code(), r.err());
        List<String> lines = r.err().lines().toList();
        assertEquals(2, lines.size(), "the error and the --help hint: " + r.err());
        assertTrue(lines.get(0).startsWith("based4j: error: ") && lines.get(0).contains(message.strip()), r.err());
        assertFalse(Files.exists(dir), "nothing made");
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', quoteCharacter = '"', value = {
        "models: [{mixer: mamba, d_model: 64}]     | models[0].mixer must be one of based, sliding, attention, got 'mamba'",
        "models: [{mixer: based, d_model: 64}]     | models[0].feature_dim must be an integer or a list of integers",
        "{lrs: [2], models: [{mixer: attention, d_model: 64}]} | lrs: learning rate 2.0 is out of range",
        "lrs: [1e-3]                                | models is missing or empty",
        "'models: [unclosed'                        | is not valid YAML",
    })
    void aWrongGridFileIsOneLineAndNothingIsMade(String text, String message) throws IOException {
        Path grid = tmp.resolve("grid.yaml");
        Files.writeString(grid, text.startsWith("'") ? text.substring(1, text.length() - 1) : text);
        Path dir = tmp.resolve("sweep");
        assertOneErrorLine(CliTest.run("mqar", "sweep", "--out", dir.toString(), "--grid", grid.toString()),
                grid.toString(), message.strip());
        assertFalse(Files.exists(dir), "nothing made");
    }

    @Test
    void anOutThatIsAFileIsRefused() throws IOException {
        Path file = Files.writeString(tmp.resolve("results"), "mine");
        assertOneErrorLine(CliTest.run(quick(file)), "--out " + file + ": is not a directory");
        assertEquals("mine", Files.readString(file));
    }
}
