package io.based4j;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The golden tiny checkpoint produced by the reference implementation: the copy kept in the repository
 * ({@code models/golden-tiny}, also the built-in model) and, where present, the shared original beside it.
 */
public final class GoldenModel {
    private GoldenModel() {
    }

    private static Path find(Path relative) {
        for (Path dir = Path.of("").toAbsolutePath(); dir != null; dir = dir.getParent()) {
            Path candidate = dir.resolve(relative);
            if (Files.isRegularFile(candidate.resolve("model.safetensors"))) {
                return candidate;
            }
        }
        return null;
    }

    /** The repository's copy (always present). */
    public static Path dir() {
        Path p = find(Path.of("models", "golden-tiny"));
        if (p == null) {
            throw new IllegalStateException("models/golden-tiny not found above " + Path.of("").toAbsolutePath());
        }
        return p;
    }

    /** The shared original, or null when this checkout has none beside it. */
    public static Path shared() {
        return find(Path.of("shared", "golden", "tiny"));
    }

    /** Every available copy. */
    public static List<Path> all() {
        List<Path> dirs = new ArrayList<>();
        Path shared = shared();
        if (shared != null) {
            dirs.add(shared);
        }
        dirs.add(dir());
        return dirs;
    }

    /**
     * Largest |logit - reference| over {@code rows} rows: ours are {@code padded} wide (the padded vocabulary), the
     * reference's {@code vocab} wide; the padding is not compared.
     */
    public static double maxLogitError(float[] got, float[] want, int rows, int vocab, int padded) {
        double maxErr = 0;
        for (int row = 0; row < rows; row++) {
            for (int v = 0; v < vocab; v++) {
                maxErr = Math.max(maxErr, Math.abs(got[row * padded + v] - want[row * vocab + v]));
            }
        }
        return maxErr;
    }
}
