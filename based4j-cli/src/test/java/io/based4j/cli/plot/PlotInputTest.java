package io.based4j.cli.plot;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** How plot reads its inputs and writes its numbers: record files, smoothing, compact numbers. */
class PlotInputTest {
    @TempDir
    Path tmp;

    @Test
    void compactNumbersKeepThreeSignificantDigits() {
        assertEquals("991k", CompactFormat.of(990_560.29));
        assertEquals("6.19k", CompactFormat.of(6_187.43));
        assertEquals("49k", CompactFormat.of(49_004.2));
        assertEquals("1.66k", CompactFormat.of(1_655.67));
        assertEquals("1.5M", CompactFormat.of(1_500_000));
        assertEquals("298", CompactFormat.of(298.04));
        assertEquals("0", CompactFormat.of(0));
        assertEquals("0.5", CompactFormat.of(0.5));
        assertEquals("3.2e-4", CompactFormat.of(3.2e-4));
        assertEquals("1e-3", CompactFormat.of(0.00099999)); // rounds up to the next power of ten
        assertEquals("-2e-5", CompactFormat.of(-2e-5));
    }

    @Test
    void smoothingStartsAtTheFirstLossAndFollowsAStep() {
        List<TrainingRun.Train> train = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            train.add(new TrainingRun.Train(i, i < 20 ? 4.0 : 2.0, 1e-3));
        }
        TrainingRun run = new TrainingRun("r", tmp, train, List.of());
        double[] s = run.smoothedLoss(0.9);
        // corrected for its start at zero, a constant stays that constant from the first point on
        for (int i = 0; i < 20; i++) {
            assertEquals(4.0, s[i], 1e-12, "point " + i);
        }
        // after the drop to 2 it moves about 10% of the way each point (3.78 one point after, worked out by hand;
        // 2.22 twenty points after, where the first twenty points still weigh 0.9^20 = 12%)
        assertEquals(3.775, s[20], 0.001);
        assertEquals(2.217, s[39], 0.001);
        assertArrayEquals(train.stream().mapToDouble(TrainingRun.Train::loss).toArray(), run.smoothedLoss(0), 0);
    }

    @Test
    void recordsAreJsonLinesOrOneDocument() throws IOException {
        Path lines = Files.writeString(tmp.resolve("a.jsonl"), "{\"x\": 1}\n\n{\"x\": 2}\n");
        assertEquals(List.of("a.jsonl: line 1", "a.jsonl: line 3"), wheres(lines));
        Path pretty = Files.writeString(tmp.resolve("b.json"), "{\n  \"x\": 1\n}\n");
        assertEquals(List.of("b.json"), wheres(pretty));
        Path array = Files.writeString(tmp.resolve("c.json"), "[{\"x\": 1},\n {\"x\": 2}]");
        assertEquals(List.of("c.json: item 0", "c.json: item 1"), wheres(array));
        Path brokenPretty = Files.writeString(tmp.resolve("d.json"), "{\n  \"x\": 1,\n}\n");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> JsonInput.records(brokenPretty, note -> { }));
        assertTrue(e.getMessage().startsWith(brokenPretty + ": not JSON: "), e.getMessage());
        assertTrue(e.getMessage().contains("line 3"), e.getMessage());
    }

    private List<String> wheres(Path file) throws IOException {
        return JsonInput.records(file, note -> { }).stream().map(e -> e.where().replace(tmp + "/", "")).toList();
    }
}
