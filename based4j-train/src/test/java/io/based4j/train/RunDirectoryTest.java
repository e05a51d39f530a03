package io.based4j.train;

import static io.based4j.train.TrainFixtures.config;
import static io.based4j.train.TrainFixtures.metricLosses;
import static io.based4j.train.TrainFixtures.randomData;
import static io.based4j.train.TrainFixtures.section;
import static io.based4j.train.TrainFixtures.settings;
import static io.based4j.train.TrainFixtures.smallModel;
import static io.based4j.train.TrainFixtures.train;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.json.Json;
import java.io.IOException;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The run directory: its lock, starting over, resuming, retiring checkpoints and the metrics log. */
class RunDirectoryTest {
    @TempDir
    Path tmp;
    Path data;
    Path run;

    @BeforeEach
    void data() {
        data = randomData(tmp.resolve("data"), 3000);
        run = tmp.resolve("run");
    }

    /** 12 updates of 2 x 8 tokens, a checkpoint every {@code ckpt} updates. */
    private Map<String, Object> settings12(int ckpt) {
        return settings(smallModel(), data, 8, 12, 2, ckpt, 1e-2, run);
    }

    private static List<String> names(Path folder) throws IOException {
        try (Stream<Path> s = Files.list(folder)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void aRunDirectoryHeldByALiveRunIsRefusedAndNothingInItIsTouched() throws IOException {
        TrainConfig cfg = config(settings12(4));
        train(cfg, null, 6);
        List<String> before = names(run.resolve("checkpoints"));
        String metrics = Files.readString(run.resolve("metrics.jsonl"));
        try (RunLock held = RunLock.acquire(run)) {
            String holder = "pid " + ProcessHandle.current().pid();
            // a second run in the same process
            RunLock.BusyException e = assertThrows(RunLock.BusyException.class, () -> train(cfg, run, Long.MAX_VALUE));
            assertTrue(e.getMessage().contains(run + " is in use by another training run (" + holder), e.getMessage());
            // a second lock in the same process, taken directly
            assertThrows(RunLock.BusyException.class, () -> RunLock.acquire(run));
            // starting over while the directory is in use deletes nothing
            e = assertThrows(RunLock.BusyException.class,
                    () -> new Trainer(cfg, new io.based4j.train.cpu.CpuTrainBackend(),
                            new java.io.PrintWriter(new StringWriter()), false).overwrite(true).run(null, 2));
            assertTrue(e.getMessage().startsWith("--overwrite refused: ") && e.getMessage().contains(holder),
                    e.getMessage());
            assertTrue(Files.readString(held.file()).startsWith(holder), Files.readString(held.file()));
        }
        assertEquals(before, names(run.resolve("checkpoints")));
        assertEquals(metrics, Files.readString(run.resolve("metrics.jsonl")));
        // released: the run continues
        assertEquals(12, train(cfg, run, Long.MAX_VALUE).lastStep());
    }

    @Test
    void theLockFileOfADeadRunBlocksNobody() throws IOException {
        Files.createDirectories(run);
        Files.writeString(run.resolve(RunLock.FILE), "pid 999999999 on a host long gone, started 2001-01-01T00:00:00Z\n");
        Trainer.Result r = train(config(settings12(0)), null, Long.MAX_VALUE);
        assertEquals(12, r.lastStep());
        // released at the end: the holder's line is cleared, the file stays for the next run to lock
        assertEquals("", Files.readString(run.resolve(RunLock.FILE)));
    }

    @Test
    void overwriteDeletesOnlyWhatARunWrote() throws IOException {
        TrainConfig cfg = config(settings12(4));
        train(cfg, null, Long.MAX_VALUE);
        Files.writeString(run.resolve("notes.txt"), "mine");
        Files.writeString(run.resolve("checkpoints/README"), "mine too");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> train(cfg, null, 2));
        assertTrue(e.getMessage().contains("already holds checkpoints") && e.getMessage().contains("--overwrite"),
                e.getMessage());

        new Trainer(cfg, new io.based4j.train.cpu.CpuTrainBackend(), new java.io.PrintWriter(new StringWriter()), false)
                .overwrite(true).run(null, 2);
        assertEquals("mine", Files.readString(run.resolve("notes.txt")));
        assertEquals(List.of("README"), names(run.resolve("checkpoints")));
        assertEquals(2, metricLosses(run).size());
    }

    @Test
    void resumingFromAnOlderCheckpointRetiresTheNewerOnes() throws IOException {
        TrainConfig cfg = config(settings12(4));
        train(cfg, null, Long.MAX_VALUE);
        Path ckpts = run.resolve("checkpoints");
        assertEquals(List.of("step-00000004", "step-00000008", "step-00000012"), names(ckpts));
        byte[] eight = Files.readAllBytes(ckpts.resolve("step-00000008/trainer.json"));

        // back to update 4, stopped (as if killed) after update 6, before the next checkpoint
        StringWriter notes = new StringWriter();
        train(cfg, ckpts.resolve("step-00000004"), 6, notes);
        assertEquals(List.of("step-00000004"), names(ckpts));
        List<String> retired = names(run.resolve("retired"));
        assertEquals(1, retired.size(), retired.toString());
        Path aside = run.resolve("retired").resolve(retired.getFirst());
        assertEquals(List.of("metrics.jsonl", "step-00000008", "step-00000012"), names(aside));
        assertEquals(new String(eight), Files.readString(aside.resolve("step-00000008/trainer.json")), "moved, intact");
        assertEquals(12, metricLosses(aside).size(), "the abandoned run's metrics are kept beside its checkpoints");
        assertTrue(notes.toString().contains("retired 2 newer checkpoints of the abandoned run (step-00000008,"
                + " step-00000012) to " + aside), notes.toString());

        // a later resume of the run continues from update 4, not from the abandoned update 12
        Trainer.Result r = train(cfg, run, Long.MAX_VALUE);
        assertEquals(4, r.firstStep());
        assertEquals(12, metricLosses(run).size());
    }

    @Test
    void aResumeOnAnotherBackendOrPrecisionSaysItWillNotBeExact() throws IOException {
        TrainConfig cfg = config(settings12(4));
        StringWriter first = new StringWriter();
        train(cfg, null, 4, first);
        Path trainer = run.resolve("checkpoints/step-00000004/trainer.json");
        Map<String, Object> facts = Json.parseObject(Files.readString(trainer));
        assertEquals("cpu", facts.get("backend"));
        assertEquals("f64", facts.get("precision"));
        StringWriter same = new StringWriter();
        train(cfg, run, 8, same);
        assertFalse(same.toString().contains("note: the checkpoint was written on"), same.toString());

        // as if written by a GPU run in bf16
        Path eight = run.resolve("checkpoints/step-00000008/trainer.json");
        Map<String, Object> gpu = Json.parseObject(Files.readString(eight));
        gpu.put("backend", "cuda:0");
        gpu.put("precision", "bf16");
        Files.writeString(eight, Json.writePretty(gpu));
        StringWriter other = new StringWriter();
        train(cfg, run, Long.MAX_VALUE, other);
        assertTrue(other.toString().contains("note: the checkpoint was written on cuda:0 bf16 and the run continues on"
                + " cpu f64: the losses will not repeat the uninterrupted run's exactly"), other.toString());
    }

    @Test
    void aResumeWithOtherRunSettingsIsRefusedNamingTheSetting() {
        train(config(settings12(4)), null, 4);
        Map<String, Object> seed = settings12(4);
        section(seed, "train").put("seed", 4);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> train(config(seed), run, Long.MAX_VALUE));
        assertTrue(e.getMessage().contains("train.seed is 4 in the settings but 3 in ")
                && e.getMessage().contains("trainer.json"), e.getMessage());

        Map<String, Object> seqLen = settings12(4);
        section(seqLen, "data").put("seq_len", 16);
        e = assertThrows(IllegalArgumentException.class, () -> train(config(seqLen), run, Long.MAX_VALUE));
        assertTrue(e.getMessage().contains("data.seq_len is 16 in the settings but 8 in "), e.getMessage());

        Map<String, Object> otherData = settings12(4);
        Path copy = randomData(tmp.resolve("other"), 3000);
        section(otherData, "data").put("dir", copy.toString());
        e = assertThrows(IllegalArgumentException.class, () -> train(config(otherData), run, Long.MAX_VALUE));
        assertTrue(e.getMessage().contains("data.dir is \"" + copy + "\" in the settings but \"" + data + "\""),
                e.getMessage());

        Map<String, Object> model = settings12(4);
        section(model, "model").put("d_model", 32);
        e = assertThrows(IllegalArgumentException.class, () -> train(config(model), run, Long.MAX_VALUE));
        assertTrue(e.getMessage().contains("different model") && e.getMessage().contains("n_embd is 16 there and 32"),
                e.getMessage());
    }

    @Test
    void aCheckpointOfAnOlderVersionIsCheckedAgainstTheRunRecord() throws IOException {
        train(config(settings12(4)), null, 4);
        // trainer.json of older versions recorded the seed only: the run record at the start has the rest
        Path trainer = run.resolve("checkpoints/step-00000004/trainer.json");
        Map<String, Object> facts = Json.parseObject(Files.readString(trainer));
        facts.keySet().retainAll(List.of("step", "tokens", "seed", "loss", "backend"));
        Files.writeString(trainer, Json.writePretty(facts));
        Map<String, Object> batch = settings12(4);
        section(batch, "train").put("batch_size", 3);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> train(config(batch), run, Long.MAX_VALUE));
        assertTrue(e.getMessage().contains("train.batch_size is 3 in the settings but 2 in " + run.resolve("run.json")),
                e.getMessage());
    }

    @Test
    void aRunKilledBeforeItsFirstCheckpointCanBeStartedAfresh() throws IOException {
        TrainConfig cfg = config(settings12(5));
        train(cfg, null, 3); // killed after update 3: metrics and the run record, no checkpoint
        // ... while writing its first checkpoint: a half-written temporary directory
        Path partial = Files.createDirectories(run.resolve("checkpoints/step-00000005.tmp"));
        Files.writeString(partial.resolve(Checkpoint.CONFIG), "{\"n_embd\": ");

        StringWriter notes = new StringWriter();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> train(cfg, run, Long.MAX_VALUE, notes));
        assertTrue(e.getMessage().contains(run + " holds no complete checkpoint to resume from")
                && e.getMessage().contains("without --resume"), e.getMessage());
        // the leftover goes under the lock, whichever way the run is restarted
        assertFalse(Files.exists(partial));
        assertTrue(notes.toString().contains("removed " + partial), notes.toString());

        // a fresh run proceeds without --overwrite, also over a half-written first checkpoint
        Files.createDirectories(partial);
        Trainer.Result r = train(cfg, null, Long.MAX_VALUE);
        assertEquals(0, r.firstStep());
        assertFalse(Files.exists(partial));
        assertEquals(12, metricLosses(run).size(), "the log of the killed run is replaced, not continued");
    }

    @Test
    void aCheckpointBeingReplacedWhenTheRunWasKilledIsPutBack() throws IOException {
        TrainConfig cfg = config(settings12(4));
        train(cfg, null, 6);
        // killed between moving step 4 aside and moving its replacement in
        Path ckpts = run.resolve("checkpoints");
        Files.move(ckpts.resolve("step-00000004"), ckpts.resolve("step-00000004.old"));
        Files.createDirectories(ckpts.resolve("step-00000004.tmp"));
        StringWriter notes = new StringWriter();
        Trainer.Result r = train(cfg, run, Long.MAX_VALUE, notes);
        assertEquals(4, r.firstStep());
        assertTrue(notes.toString().contains("put back checkpoint " + ckpts.resolve("step-00000004")), notes.toString());
        assertEquals(List.of("step-00000004", "step-00000008", "step-00000012"), names(ckpts));
    }

    @Test
    void aTornLastMetricsLineIsCutOffOnResume() throws IOException {
        TrainConfig cfg = config(settings12(4));
        List<Double> expected = train(config(settings(smallModel(), data, 8, 12, 2, 4, 1e-2, tmp.resolve("whole"))),
                null, Long.MAX_VALUE).losses();
        train(cfg, null, 6);
        Files.writeString(run.resolve("metrics.jsonl"), "{\"step\": 7, \"loss\": 3.1", StandardOpenOption.APPEND);
        StringWriter notes = new StringWriter();
        train(cfg, run, Long.MAX_VALUE, notes);
        List<String> lines = notes.toString().lines().filter(l -> l.contains("torn")).toList();
        assertEquals(List.of(run.resolve("metrics.jsonl") + ": cut off a torn last line (line 7, 23 characters), left"
                + " by a run stopped while writing it"), lines);
        assertEquals(expected, metricLosses(run));
        assertFalse(Files.exists(run.resolve("metrics.jsonl.tmp")));
    }

    @Test
    void aMalformedMetricsLineBeforeTheLastIsAnErrorNamingItsLine() throws IOException {
        TrainConfig cfg = config(settings12(4));
        train(cfg, null, Long.MAX_VALUE);
        Path metrics = run.resolve("metrics.jsonl");
        List<String> lines = new java.util.ArrayList<>(Files.readAllLines(metrics));
        lines.set(2, "{\"step\": 3, \"loss\": ");
        Files.write(metrics, lines);
        Path four = run.resolve("checkpoints/step-00000004");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> train(cfg, four, 6));
        assertTrue(e.getMessage().startsWith(metrics + ": line 3 is not a JSON object with a step"), e.getMessage());
        assertEquals(lines, Files.readAllLines(metrics), "left as it was");
        assertEquals(List.of("step-00000004", "step-00000008", "step-00000012"), names(run.resolve("checkpoints")),
                "found before the newer checkpoints are retired");
    }

    @Test
    void aValidationSplitShorterThanOneWindowIsFoundBeforeTraining() {
        Path short_ = TrainFixtures.tokens(tmp.resolve("short"), TrainFixtures.structured(64, 3000, 1),
                new int[] {1, 2, 3, 4, 5}, 64, 0);
        Map<String, Object> s = settings(smallModel(), short_, 8, 12, 2, 4, 1e-2, run);
        section(s, "eval").put("interval", 6);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> train(config(s), null, Long.MAX_VALUE));
        assertTrue(e.getMessage().contains("the val split in " + short_ + " holds 5 tokens, fewer than one window"
                + " of 9 (data.seq_len + 1)"), e.getMessage());
        assertFalse(Files.exists(run), "nothing was written");
    }

    @Test
    void aResumeWithNothingLeftToTrainIsRefused() {
        TrainConfig cfg = config(settings12(4));
        train(cfg, null, Long.MAX_VALUE);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> train(cfg, run, Long.MAX_VALUE));
        assertTrue(e.getMessage().contains("is at update 12 and train.steps is 12: nothing is left to train"),
                e.getMessage());
    }
}
