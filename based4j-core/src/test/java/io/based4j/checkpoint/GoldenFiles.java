package io.based4j.checkpoint;

import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Locates the golden "tiny" model files: the shared copy beside the repository, and the test resource copy. */
final class GoldenFiles {
    private static final String TINY = "golden/tiny";

    private GoldenFiles() {
    }

    /** The shared golden directory, found by walking up from the working directory; null when absent. */
    static Path sharedTinyDir() {
        for (Path dir = Path.of("").toAbsolutePath(); dir != null; dir = dir.getParent()) {
            Path candidate = dir.resolve("shared").resolve(TINY);
            if (Files.isRegularFile(candidate.resolve("model.safetensors"))) {
                return candidate;
            }
        }
        return null;
    }

    /** The copy shipped as a test resource (always present). */
    static Path resourceTinyDir() {
        URL url = GoldenFiles.class.getResource("/" + TINY + "/model.safetensors");
        if (url == null) {
            throw new IllegalStateException("test resource " + TINY + "/model.safetensors is missing");
        }
        try {
            return Path.of(url.toURI()).getParent();
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Every available copy of the tiny golden directory. */
    static List<Path> tinyDirs() {
        List<Path> dirs = new ArrayList<>();
        Path shared = sharedTinyDir();
        if (shared != null) {
            dirs.add(shared);
        }
        dirs.add(resourceTinyDir());
        return dirs;
    }
}
