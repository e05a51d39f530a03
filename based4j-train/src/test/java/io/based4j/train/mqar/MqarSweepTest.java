package io.based4j.train.mqar;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.TrainingBackend;
import io.based4j.json.Json;
import io.based4j.train.RunLock;
import io.based4j.train.cpu.CpuTrainBackend;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** An MQAR sweep on the CPU with tiny models: records, resume, torn lines, the lock and the best of each model. */
class MqarSweepTest {
    /** Three tiny models (one of each mixer) at two rates, one update of 8 examples each: a second or two in all. */
    static final MqarGrid TINY = new MqarGrid("tiny", List.of(MqarModel.based(8, 4), MqarModel.sliding(8, 4),
            MqarModel.attention(8)), List.of(1e-2, 3.2e-2), 1, List.of(new MqarSlice(16, 2, 8)),
            List.of(new MqarSlice(16, 2, 8), new MqarSlice(32, 4, 4)));

    static final MqarSweep.Options OPTIONS = new MqarSweep.Options(8, 0.1, 0, 0, 0, 0.99, 0, 0, "cpu", "f64");

    @TempDir
    Path dir;

    StringWriter notes = new StringWriter();

    MqarSweep.Outcome sweep(MqarGrid grid, MqarSweep.Options options) {
        return new MqarSweep(dir, grid, options, CpuTrainBackend::new, new PrintWriter(notes, true), false).run();
    }

    /** The records of the results, by model and rate. */
    Map<String, Map<String, Object>> byRun() throws IOException {
        Map<String, Map<String, Object>> out = new java.util.HashMap<>();
        for (Map<String, Object> r : records(MqarSweep.RESULTS)) {
            out.put(MqarRecord.model(r) + "@" + MqarRecord.lr(r), r);
        }
        return out;
    }

    List<Map<String, Object>> records(String file) throws IOException {
        return Files.readAllLines(dir.resolve(file)).stream().map(Json::parseObject).toList();
    }

    @Test
    void everyModelAtEveryRateIsOneRecordAndTheBestOfEachIsKept() throws IOException {
        MqarSweep.Outcome o = sweep(TINY, OPTIONS);
        assertEquals(6, o.ran());
        assertEquals(0, o.skipped());
        assertEquals(0, o.left());
        List<Map<String, Object>> records = records(MqarSweep.RESULTS);
        assertEquals(6, records.size());
        for (Map<String, Object> r : records) {
            MqarModel m = MqarRecord.model(r);
            assertTrue(TINY.models().contains(m), m.toString());
            assertEquals(m.stateBytes(), r.get("state_bytes"));
            double accuracy = MqarRecord.accuracy(r);
            assertTrue(accuracy >= 0 && accuracy <= 1, r.toString());
            assertEquals("epochs", r.get("stop"));
            assertEquals(1L, r.get("updates"));
            assertEquals(2, ((List<?>) r.get("slices")).size());
            assertEquals("16:2:8", r.get("train"));
            assertEquals("16:2:8,32:4:4", r.get("test"));
            assertEquals(0L, r.get("seed"));
            assertEquals("cpu", r.get("device"));
            assertTrue(r.get("seconds") instanceof Double s && s > 0, r.toString());
        }
        // the fields the plot reads, by mixer
        assertEquals(4L, records.get(0).get("feature_dim"));
        assertFalse(records.get(0).containsKey("window"));
        assertEquals(4L, records.get(2).get("window"));
        assertFalse(records.get(4).containsKey("feature_dim") || records.get(4).containsKey("window"));

        List<Map<String, Object>> best = records(MqarSweep.BEST);
        assertEquals(List.of("based", "sliding", "attention"), best.stream().map(b -> b.get("mixer")).toList());
        for (int i = 0; i < 3; i++) {
            assertEquals(2L, best.get(i).get("runs"));
            double top = Math.max(MqarRecord.accuracy(records.get(2 * i)), MqarRecord.accuracy(records.get(2 * i + 1)));
            assertEquals(top, MqarRecord.accuracy(best.get(i)));
            assertEquals(top, o.best().get(i).accuracy());
        }
        assertEquals(1, notes.toString().lines().filter(l -> l.startsWith("generating ")).count(),
                "the examples are generated once for all runs: " + notes);
        assertTrue(notes.toString().contains("run 6/6: attention d8, lr 3.20e-02: accuracy "), notes.toString());
    }

    /**
     * Runs trained three at a time give the records one at a time gives (each run on its own backend, the same
     * examples and seeds: the same float64 numbers), in the order they finished, and the same best of each model.
     */
    @Test
    void runsTrainedTogetherGiveTheRecordsOfRunsInTurn() throws IOException {
        sweep(TINY, OPTIONS);
        Map<String, Map<String, Object>> inTurn = byRun();
        List<Map<String, Object>> bestInTurn = records(MqarSweep.BEST);
        Files.delete(dir.resolve(MqarSweep.RESULTS));
        Files.delete(dir.resolve(MqarSweep.BEST));
        MqarSweep.Options together = new MqarSweep.Options(8, 0.1, 0, 0, 0, 0.99, 0, 0, "cpu", "f64", 3);
        MqarSweep.Outcome o = sweep(TINY, together);
        assertEquals(6, o.ran());
        assertTrue(notes.toString().contains("3 runs at a time"), notes.toString());
        List<Map<String, Object>> records = records(MqarSweep.RESULTS);
        assertEquals(6, records.size());
        for (Map<String, Object> r : records) {
            Map<String, Object> same = inTurn.remove(MqarRecord.model(r) + "@" + MqarRecord.lr(r));
            assertTrue(same != null, "a run trained twice or not at all: " + r);
            assertEquals(same.get("accuracy"), r.get("accuracy"), r.toString());
            assertEquals(same.get("slices"), r.get("slices"), r.toString());
        }
        assertEquals(bestInTurn.stream().map(b -> b.get("accuracy")).toList(),
                records(MqarSweep.BEST).stream().map(b -> b.get("accuracy")).toList());
        assertThrows(IllegalArgumentException.class,
                () -> new MqarSweep.Options(8, 0.1, 0, 0, 0, 0.99, 0, 0, "cpu", "f64", 0));
    }

    @Test
    void runsSideBySideStartWidestFirstAndInTurnInTheGridsOrder() {
        List<MqarSweep.Planned> grid = List.of(new MqarSweep.Planned(1, MqarModel.based(48, 8), 1e-3),
                new MqarSweep.Planned(2, MqarModel.based(128, 8), 1e-3),
                new MqarSweep.Planned(3, MqarModel.sliding(128, 8), 1e-3),
                new MqarSweep.Planned(4, MqarModel.attention(64), 1e-3),
                new MqarSweep.Planned(5, MqarModel.based(48, 16), 1e-3));
        assertEquals(List.of(1, 2, 3, 4, 5), MqarSweep.startOrder(grid, 1).stream().map(MqarSweep.Planned::index)
                .toList());
        // the d 128 runs, then d 64, then d 48, each width in the grid's order: the quickest end the sweep
        assertEquals(List.of(2, 3, 4, 1, 5), MqarSweep.startOrder(grid, 4).stream().map(MqarSweep.Planned::index)
                .toList());
    }

    @Test
    void aResumedSweepTrainsOnlyTheRunsWithoutARecord() throws IOException {
        // a run of an earlier sweep, marked so that a retrained one would show
        MqarTrainer.Run earlier = new MqarSweep(dir, TINY, OPTIONS, CpuTrainBackend::new, null, false)
                .run(MqarModel.sliding(8, 4), 3.2e-2);
        Map<String, Object> record = new LinkedHashMap<>(Map.of("mixer", "sliding", "d_model", 8L, "window", 4L,
                "lr", 0.032, "state_bytes", 256L, "accuracy", 0.625, "seconds", 1234.5));
        record.putAll(MqarRecord.settings(earlier));
        Files.writeString(dir.resolve(MqarSweep.RESULTS), Json.write(record) + "\n");

        MqarSweep.Outcome o = sweep(TINY, OPTIONS);
        assertEquals(5, o.ran());
        assertEquals(1, o.skipped());
        // the start is logged with its time and runs: what the starts on the folder add up to
        List<Map<String, Object>> starts = records(MqarSweep.STARTS);
        assertEquals(1, starts.size());
        assertEquals(5L, starts.getFirst().get("ran"));
        assertEquals(1L, starts.getFirst().get("found_done"));
        assertEquals(o.seconds(), ((Number) starts.getFirst().get("seconds")).doubleValue());
        assertEquals(new MqarSweep.Starts(1, o.seconds(), 5), o.starts());
        List<Map<String, Object>> records = records(MqarSweep.RESULTS);
        assertEquals(6, records.size());
        assertEquals(record, records.getFirst(), "kept as it was");
        assertEquals(1, records.stream().filter(r -> r.get("mixer").equals("sliding") && r.get("lr").equals(0.032))
                .count());
        assertFalse(notes.toString().contains("sliding d8 w4, lr 3.20e-02"), "not trained again: " + notes);

        // everything done: nothing is trained, nothing generated
        notes.getBuffer().setLength(0);
        MqarSweep.Outcome again = sweep(TINY, OPTIONS);
        assertEquals(0, again.ran());
        assertEquals(6, again.skipped());
        assertEquals(1, records(MqarSweep.STARTS).size(), "a start that trained nothing is not logged");
        assertFalse(notes.toString().contains("generating"), notes.toString());
        assertEquals(6, records(MqarSweep.RESULTS).size());

        // a log spoilt before its last line: the sweep's work stands, the sum is left out with a note
        Files.writeString(dir.resolve(MqarSweep.STARTS), "not json\n{\"seconds\": 1.0, \"ran\": 1}\n");
        Files.delete(dir.resolve(MqarSweep.RESULTS));
        notes.getBuffer().setLength(0);
        MqarSweep.Outcome spoilt = sweep(TINY, OPTIONS);
        assertEquals(6, spoilt.ran());
        assertEquals(null, spoilt.starts());
        assertTrue(notes.toString().contains("the starts are not summed"), notes.toString());
    }

    @Test
    void aTornLastLineIsCutOffWithANote() throws IOException {
        MqarGrid one = TINY.with(List.of(1e-2), null, null, null);
        sweep(one, OPTIONS);
        Path results = dir.resolve(MqarSweep.RESULTS);
        List<String> whole = Files.readAllLines(results);
        Files.writeString(results, "{\"mixer\": \"based\", \"d_mo", StandardOpenOption.APPEND);
        notes.getBuffer().setLength(0);
        MqarSweep.Outcome o = sweep(one, OPTIONS);
        assertEquals(0, o.ran());
        assertTrue(notes.toString().contains(results + ": cut off a torn last line (line 4, 24 characters), left by"
                + " a run stopped while writing it"), notes.toString());
        assertEquals(whole, Files.readAllLines(results));
        assertTrue(Files.readString(results).endsWith("}\n"));
    }

    @Test
    void aLineBeforeTheLastThatIsNoRecordIsAnErrorAndTheFileIsLeftAlone() throws IOException {
        Path results = dir.resolve(MqarSweep.RESULTS);
        String text = "{\"mixer\": \"based\", \"d_model\": 8}\n{\"mixer\": \"based\", \"d_mo\n";
        Files.writeString(results, text);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> sweep(TINY, OPTIONS));
        assertTrue(e.getMessage().startsWith(results + ": line 1 is not an MQAR result record"), e.getMessage());
        assertEquals(text, Files.readString(results));
    }

    @Test
    void recordsOfOtherSettingsAreRefusedNamingTheSetting() throws IOException {
        sweep(TINY.with(List.of(1e-2), null, null, null), OPTIONS);
        Path results = dir.resolve(MqarSweep.RESULTS);
        String before = Files.readString(results);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> sweep(TINY.with(null, 2, null, null), OPTIONS));
        assertTrue(e.getMessage().startsWith(results + ": line 1 (based d8 f4, lr 0.01) was trained with epochs 1,"
                + " and this sweep trains with epochs 2"), e.getMessage());
        MqarSweep.Options otherSeed = new MqarSweep.Options(8, 0.1, 0, 7, 0, 0.99, 0, 0, "cpu", "f64");
        e = assertThrows(IllegalArgumentException.class, () -> sweep(TINY, otherSeed));
        assertTrue(e.getMessage().contains("was trained with seed 0, and this sweep trains with seed 7"),
                e.getMessage());
        assertEquals(before, Files.readString(results), "left as it was");
    }

    @Test
    void aDirectoryInUseByAnotherSweepIsRefusedNamingItsHolder() throws IOException {
        try (RunLock held = RunLock.acquire(dir, "MQAR sweep", "give another --out")) {
            RunLock.BusyException e = assertThrows(RunLock.BusyException.class, () -> sweep(TINY, OPTIONS));
            assertTrue(e.getMessage().contains(dir + " is in use by another MQAR sweep (pid "
                    + ProcessHandle.current().pid() + " on "), e.getMessage());
            assertTrue(e.getMessage().endsWith("wait for it to end or give another --out"), e.getMessage());
        }
        assertFalse(Files.exists(dir.resolve(MqarSweep.RESULTS)), "nothing trained");
    }

    @Test
    void aSweepPastItsTimeStartsNoNewRunAndResumesLater() throws IOException {
        // a limit already passed when the first run would start
        MqarSweep.Options hurried = new MqarSweep.Options(8, 0.1, 0, 0, 0, 0.99, 0, 1e-9, "cpu", "f64");
        MqarSweep.Outcome o = sweep(TINY, hurried);
        assertEquals(0, o.ran());
        assertEquals(6, o.left());
        assertTrue(notes.toString().contains("6 of 6 runs left; run the same command again to go on"),
                notes.toString());
        assertEquals(6, sweep(TINY, OPTIONS).ran());
    }

    /**
     * Two models at two rates, 3 epochs of two batches each (6 updates a run), scored every third update: enough
     * updates for a run to pause between any two of them.
     */
    static final MqarGrid SIX_UPDATES = new MqarGrid("six", List.of(MqarModel.based(8, 4), MqarModel.sliding(8, 4)),
            List.of(1e-2, 3.2e-2), 3, List.of(new MqarSlice(16, 2, 16)), TINY.test());
    static final MqarSweep.Options EVERY_THIRD = new MqarSweep.Options(8, 0.1, 0, 0, 3, 0.99, 0, 0, "cpu", "f64");

    /**
     * A sweep whose time is up after a few updates pauses the run training (its state saved, no record, no new
     * run), and the next start goes on from that state first: every record is the one an uninterrupted sweep
     * writes, to the last bit (float64 on the CPU), but its time; and the paused state is removed once kept.
     */
    @Test
    void aRunPausedWhenTheTimeIsUpGoesOnUpdateForUpdate() throws IOException {
        sweep(SIX_UPDATES, EVERY_THIRD);
        Map<String, Map<String, Object>> whole = byRun();
        assertEquals(4, whole.size());
        for (String f : List.of(MqarSweep.RESULTS, MqarSweep.BEST, MqarSweep.STARTS)) {
            Files.delete(dir.resolve(f));
        }

        // the time is up at the 8th update of the sweep: the second run pauses after its second update
        AtomicInteger asked = new AtomicInteger();
        MqarSweep.Outcome first = new MqarSweep(dir, SIX_UPDATES, EVERY_THIRD, CpuTrainBackend::new,
                new PrintWriter(notes, true), false).stopWhen(() -> asked.incrementAndGet() > 8).run();
        assertEquals(1, first.ran());
        assertEquals(3, first.left());
        assertEquals(1, records(MqarSweep.RESULTS).size());
        Path paused = dir.resolve(MqarSweep.PAUSED);
        try (var list = Files.list(paused)) {
            List<Path> runs = list.toList();
            assertEquals(1, runs.size(), runs.toString());
            assertTrue(MqarTrainer.paused(runs.getFirst()), runs.toString());
        }
        assertTrue(notes.toString().contains("paused after 2 updates"), notes.toString());
        assertEquals(1L, records(MqarSweep.STARTS).getFirst().get("paused"));

        MqarSweep.Outcome second = sweep(SIX_UPDATES, EVERY_THIRD);
        assertEquals(3, second.ran());
        assertTrue(notes.toString().contains("(1 going on from where they were paused)"), notes.toString());
        assertTrue(notes.toString().contains("going on from update 2"), notes.toString());
        List<Map<String, Object>> records = records(MqarSweep.RESULTS);
        assertEquals(4, records.size());
        for (Map<String, Object> r : records) {
            Map<String, Object> same = whole.get(MqarRecord.model(r) + "@" + MqarRecord.lr(r));
            assertEquals(same.get("accuracy"), r.get("accuracy"), r.toString());
            assertEquals(same.get("slices"), r.get("slices"), r.toString());
            assertEquals(same.get("updates"), r.get("updates"), r.toString());
            assertEquals(same.get("stop"), r.get("stop"), r.toString());
        }
        try (var list = Files.list(paused)) {
            assertEquals(List.of(), list.toList(), "the paused state is removed once its record is kept");
        }
        double seconds = 0;
        for (Map<String, Object> l : records(MqarSweep.STARTS)) {
            seconds += ((Number) l.get("seconds")).doubleValue();  // in order, as the sweep adds them
        }
        assertEquals(new MqarSweep.Starts(2, seconds, 4), second.starts());
    }

    /** A paused state cut short (a disk filled, a file lost) is an error naming it and how to start afresh. */
    @Test
    void aDamagedPausedStateIsAnErrorNamingIt() throws IOException {
        MqarSweep sweep = new MqarSweep(dir, SIX_UPDATES, EVERY_THIRD, CpuTrainBackend::new, null, false);
        MqarTrainer.Run run = sweep.run(MqarModel.based(8, 4), 1e-2);
        MqarData data = MqarData.generate(SIX_UPDATES.train(), SIX_UPDATES.test(), 0);
        Path state = dir.resolve("state");
        AtomicInteger asked = new AtomicInteger();
        try (CpuTrainBackend backend = new CpuTrainBackend()) {
            new MqarTrainer(run, backend, new PrintWriter(notes), false).train(data,
                    new MqarTrainer.Pause(state, () -> asked.incrementAndGet() > 1));
        }
        Path optimizer = state.resolve(io.based4j.train.Checkpoint.OPTIMIZER);
        byte[] whole = Files.readAllBytes(optimizer);
        Files.write(optimizer, java.util.Arrays.copyOf(whole, whole.length / 2));
        try (CpuTrainBackend backend = new CpuTrainBackend()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new MqarTrainer(run, backend, new PrintWriter(notes), false).train(data,
                            new MqarTrainer.Pause(state, () -> false)));
            assertTrue(e.getMessage().startsWith("the paused run in " + state + " cannot go on: "), e.getMessage());
            assertTrue(e.getMessage().contains(io.based4j.train.Checkpoint.OPTIMIZER), e.getMessage());
            assertTrue(e.getMessage().endsWith("(remove " + state + " to train the run afresh)"), e.getMessage());
        }
    }

    /** A paused run's state goes on only as the run it was saved from. */
    @Test
    void aPausedStateOfAnotherRunIsRefusedNamingWhatDiffers() {
        MqarSweep sweep = new MqarSweep(dir, SIX_UPDATES, EVERY_THIRD, CpuTrainBackend::new, null, false);
        MqarTrainer.Run run = sweep.run(MqarModel.based(8, 4), 1e-2);
        MqarData data = MqarData.generate(SIX_UPDATES.train(), SIX_UPDATES.test(), 0);
        Path state = dir.resolve("state");
        AtomicInteger asked = new AtomicInteger();
        try (CpuTrainBackend backend = new CpuTrainBackend()) {
            MqarTrainer.Result r = new MqarTrainer(run, backend, new PrintWriter(notes), false).train(data,
                    new MqarTrainer.Pause(state, () -> asked.incrementAndGet() > 1));
            assertEquals(MqarTrainer.Stop.PAUSED, r.stop());
            assertEquals(2, r.steps());
        }
        MqarTrainer.Run otherRate = sweep.run(MqarModel.based(8, 4), 3.2e-2);
        try (CpuTrainBackend backend = new CpuTrainBackend()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new MqarTrainer(otherRate, backend, new PrintWriter(notes), false).train(data,
                            new MqarTrainer.Pause(state, () -> false)));
            assertTrue(e.getMessage().contains("holds a paused run with lr 0.01, not 0.032"), e.getMessage());
        }
    }

    @Test
    void sharedExamplesMustBeThoseOfTheRun() {
        MqarTrainer.Run run = new MqarSweep(dir, TINY, OPTIONS, CpuTrainBackend::new, null, false)
                .run(MqarModel.attention(8), 1e-2);
        MqarData other = MqarData.generate(TINY.train(), TINY.test(), 1);
        try (CpuTrainBackend backend = new CpuTrainBackend()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new MqarTrainer(run, backend, new PrintWriter(notes), false).train(other));
            assertTrue(e.getMessage().contains("not those of this run"), e.getMessage());
        }
    }

    /** The CPU backend, except that the gradients of every update from {@code from} on are reported not finite. */
    static TrainingBackend divergingAt(int from, AtomicInteger updates) {
        CpuTrainBackend cpu = new CpuTrainBackend();
        return (TrainingBackend) Proxy.newProxyInstance(TrainingBackend.class.getClassLoader(),
                new Class<?>[] {TrainingBackend.class}, (proxy, method, args) -> {
                    try {
                        Object r = method.invoke(cpu, args);
                        if (method.getName().equals("adamwStep") && updates.incrementAndGet() >= from) {
                            return new TrainingBackend.KnownNorm(Double.NaN);
                        }
                        return r;
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                });
    }

    @Test
    void aRunThatDivergesIsRecordedAsSuchAndTheSweepGoesOn() throws IOException {
        MqarGrid twoUpdates = new MqarGrid("tiny", List.of(MqarModel.based(8, 4)), List.of(1e-2, 3.2e-2), 2,
                TINY.train(), TINY.test());
        AtomicInteger backends = new AtomicInteger();
        AtomicInteger updates = new AtomicInteger();
        // the memory check opens the first backend; the second run (lr 3.2e-2) diverges at its second update
        MqarSweep.Outcome o = new MqarSweep(dir, twoUpdates, OPTIONS, () -> backends.incrementAndGet() == 3
                ? divergingAt(2, updates) : new CpuTrainBackend(), new PrintWriter(notes, true), false).run();
        assertEquals(2, o.ran());
        List<Map<String, Object>> records = records(MqarSweep.RESULTS);
        assertEquals("epochs", records.get(0).get("stop"));
        assertEquals(2L, records.get(0).get("updates"));
        Map<String, Object> diverged = records.get(1);
        assertEquals(0.032, diverged.get("lr"));
        assertEquals("diverged", diverged.get("stop"));
        assertEquals(1L, diverged.get("updates"), "the update that diverged is not counted");
        assertTrue(((String) diverged.get("stop_detail")).contains("gradient norm is NaN at update 2 (the loss"
                + " diverged"), diverged.toString());
        double accuracy = MqarRecord.accuracy(diverged);
        assertTrue(accuracy >= 0 && accuracy <= 1, "scored as it stands: " + diverged);
        assertTrue(notes.toString().contains("run 2/2: based d8 f4, lr 3.20e-02: accuracy "), notes.toString());
        assertTrue(notes.toString().contains("diverged) in "), notes.toString());
    }
}
