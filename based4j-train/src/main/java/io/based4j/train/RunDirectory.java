package io.based4j.train;

import io.based4j.json.Json;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * What a training run keeps in its directory, and the housekeeping a run does there at its start. Every method
 * expects the caller to hold the directory's {@link RunLock}, and touches only files a run writes:
 * {@code checkpoints/step-*} (and their temporary {@code .tmp} and {@code .old} siblings), {@code metrics.jsonl},
 * {@code run.json} and {@code retired/}. Anything else a user keeps in the directory is left alone.
 */
final class RunDirectory {
    static final String CHECKPOINTS = "checkpoints";
    static final String METRICS = "metrics.jsonl";
    static final String RUN = "run.json";
    static final String RETIRED = "retired";
    private static final Pattern STEP = Pattern.compile(Checkpoint.PREFIX + "\\d{1,18}");
    private static final Pattern LEFTOVER = Pattern.compile("(" + Checkpoint.PREFIX + "\\d{1,18})\\.(tmp|old)");

    /** Shorter names first, so that step-100000000 comes after step-99999999. */
    private static final Comparator<Path> BY_NAME = Comparator.comparing((Path p) -> p.getFileName().toString().length())
            .thenComparing(p -> p.getFileName().toString());

    private final Path dir;
    private final PrintWriter notes;

    /** {@code notes} receives one line for each thing the housekeeping did (null where nothing is changed). */
    RunDirectory(Path dir, PrintWriter notes) {
        this.dir = dir;
        this.notes = notes;
    }

    Path dir() {
        return dir;
    }

    Path checkpoints() {
        return dir.resolve(CHECKPOINTS);
    }

    Path metrics() {
        return dir.resolve(METRICS);
    }

    Path runFile() {
        return dir.resolve(RUN);
    }

    /** Whether the directory holds anything a run writes (so it is a run directory, with or without checkpoints). */
    boolean looksLikeRun() {
        return Stream.of(checkpoints(), metrics(), runFile(), dir.resolve(RunLock.FILE)).anyMatch(Files::exists);
    }

    /** The checkpoint directories {@code checkpoints/step-N}, in update order. */
    List<Path> checkpointDirs() {
        return list(checkpoints(), STEP);
    }

    /**
     * Finishes or removes what a run killed while writing a checkpoint left: {@code step-N.tmp} (a checkpoint not
     * yet complete) is deleted; {@code step-N.old} (a complete checkpoint being replaced) is put back when its
     * replacement never arrived, and deleted otherwise. Also deletes the temporary files of atomic rewrites.
     */
    void cleanLeftovers() {
        for (Path p : list(checkpoints(), LEFTOVER)) {
            Matcher m = LEFTOVER.matcher(p.getFileName().toString());
            m.matches();
            Path complete = p.resolveSibling(m.group(1));
            if (m.group(2).equals("old") && !Files.exists(complete)) {
                AtomicFiles.rename(p, complete);
                notes.println("put back checkpoint " + complete + " (its replacement was never completed)");
            } else {
                Checkpoint.deleteTree(p);
                notes.println("removed " + p + " (left by a run stopped while writing a checkpoint)");
            }
        }
        deleteFiles(AtomicFiles.temporary(metrics()), AtomicFiles.temporary(runFile()));
    }

    /** Deletes everything a run writes, for a run that starts over. */
    void clear() {
        for (Path p : checkpointDirs()) {
            Checkpoint.deleteTree(p);
        }
        deleteIfEmpty(checkpoints());
        Checkpoint.deleteTree(dir.resolve(RETIRED));
        clearLog();
    }

    /** Deletes the metrics and the run facts of a run that left no checkpoint to resume from. */
    void clearLog() {
        deleteFiles(metrics(), runFile());
    }

    private static void deleteFiles(Path... files) {
        for (Path p : files) {
            try {
                Files.deleteIfExists(p);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot delete " + p + ": " + e.getMessage(), e);
            }
        }
    }

    /**
     * Moves the checkpoints past update {@code step} (those of a run abandoned by resuming from an older one) and a
     * copy of the metrics log to {@code retired/resumed-at-step-N-TIME/}, so that a later {@code --resume RUN}
     * does not jump back to them. Returns the folder, or null when there was nothing to retire.
     */
    Path retireAfter(long step) {
        List<Path> newer = new ArrayList<>();
        for (Path p : checkpointDirs()) {
            if (Long.parseLong(p.getFileName().toString().substring(Checkpoint.PREFIX.length())) > step) {
                newer.add(p);
            }
        }
        if (newer.isEmpty()) {
            return null;
        }
        Path target = uniqueRetiredFolder(step);
        try {
            Files.createDirectories(target);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create " + target + ": " + e.getMessage(), e);
        }
        if (Files.isRegularFile(metrics())) {
            try {
                Files.copy(metrics(), target.resolve(METRICS));
            } catch (IOException e) {
                throw new UncheckedIOException("cannot copy " + metrics() + " to " + target + ": " + e.getMessage(), e);
            }
        }
        for (Path p : newer) {
            AtomicFiles.rename(p, target.resolve(p.getFileName()));
        }
        notes.println("retired " + newer.size() + " newer checkpoint" + (newer.size() == 1 ? "" : "s") + " of the"
                + " abandoned run (" + String.join(", ", newer.stream().map(p -> p.getFileName().toString()).toList())
                + ") to " + target);
        return target;
    }

    private Path uniqueRetiredFolder(long step) {
        String base = "resumed-at-" + Checkpoint.name(step) + "-"
                + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss"));
        Path target = dir.resolve(RETIRED).resolve(base);
        for (int i = 2; Files.exists(target); i++) {
            target = dir.resolve(RETIRED).resolve(base + "-" + i);
        }
        return target;
    }

    /** The run facts recorded at the start ({@code run.json}), or null when there is none. */
    Map<String, Object> readFacts() {
        Path f = runFile();
        if (!Files.isRegularFile(f)) {
            return null;
        }
        try {
            return Json.parseObject(Json.readFile(f, Checkpoint.FACTS_MAX_BYTES));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + f + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            throw new IllegalArgumentException(f + " is not valid JSON: " + e.getMessage(), e);
        }
    }

    /** Records the run facts atomically in {@code run.json}. */
    void writeFacts(Map<String, Object> facts) {
        AtomicFiles.write(runFile(), (Json.writePretty(facts) + "\n").getBytes(StandardCharsets.UTF_8));
    }

    private static List<Path> list(Path folder, Pattern names) {
        if (!Files.isDirectory(folder)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(folder)) {
            return s.filter(p -> names.matcher(p.getFileName().toString()).matches())
                    .sorted(BY_NAME).toList();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + folder + ": " + e.getMessage(), e);
        }
    }

    private static void deleteIfEmpty(Path folder) {
        try (Stream<Path> s = Files.isDirectory(folder) ? Files.list(folder) : Stream.empty()) {
            if (Files.isDirectory(folder) && s.findAny().isEmpty()) {
                Files.delete(folder);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot delete " + folder + ": " + e.getMessage(), e);
        }
    }
}
