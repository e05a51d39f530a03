package io.based4j.model;

import java.nio.file.Files;
import java.nio.file.Path;

/** Locates the golden tiny checkpoint produced by the reference implementation. */
final class Golden {
    private Golden() {
    }

    static Path tiny() {
        for (String candidate : new String[] {"../models/golden-tiny", "models/golden-tiny", "src/test/resources/golden/tiny"}) {
            Path p = Path.of(candidate);
            if (Files.isRegularFile(p.resolve("model.safetensors"))) {
                return p;
            }
        }
        throw new IllegalStateException("golden tiny checkpoint not found from " + Path.of("").toAbsolutePath());
    }
}
