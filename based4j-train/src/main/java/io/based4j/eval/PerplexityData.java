package io.based4j.eval;

import io.based4j.json.Json;
import io.based4j.json.JsonException;
import io.based4j.tokenizer.Gpt2Tokenizer;
import io.based4j.train.data.TokenDataset;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The streams a perplexity run scores, one per path: a token folder written by {@code based4j data tokenize} gives
 * one split of it (the held-out {@code val} split unless told otherwise), read from its shards as needed; any other
 * file is read as UTF-8 text and tokenized with the GPT-2 tokenizer. Close it to release the shards.
 */
public final class PerplexityData implements AutoCloseable {
    /** Largest text file tokenized in memory; larger text belongs in a token folder. */
    public static final long MAX_TEXT_BYTES = 1L << 30;

    private final List<TokenSource> sources;
    private final List<TokenDataset> datasets;

    private PerplexityData(List<TokenSource> sources, List<TokenDataset> datasets) {
        this.sources = List.copyOf(sources);
        this.datasets = List.copyOf(datasets);
    }

    /**
     * Opens every path.
     *
     * @throws IllegalArgumentException naming the path that is missing, empty, not UTF-8 text, too large, or a
     *                                  folder that is not a token folder with a non-empty {@code split}
     * @throws IOException when a file cannot be read
     */
    public static PerplexityData open(List<Path> paths, String split, Gpt2Tokenizer tokenizer) throws IOException {
        if (paths.isEmpty()) {
            throw new IllegalArgumentException("no data: give token folders or text files to score");
        }
        List<TokenSource> sources = new ArrayList<>();
        List<TokenDataset> datasets = new ArrayList<>();
        try {
            for (Path p : paths) {
                if (Files.isDirectory(p)) {
                    TokenDataset ds = TokenDataset.open(p, split);
                    datasets.add(ds);
                    sources.add(TokenSource.of(ds));
                } else if (Files.exists(p)) {
                    sources.add(TokenSource.of(p.toString(), tokenize(p, tokenizer)));
                } else {
                    throw new IllegalArgumentException(p + ": no such file or directory");
                }
            }
        } catch (IOException | RuntimeException e) {
            datasets.forEach(TokenDataset::close);
            throw e;
        }
        return new PerplexityData(sources, datasets);
    }

    private static int[] tokenize(Path file, Gpt2Tokenizer tokenizer) throws IOException {
        String text;
        try {
            text = Json.readFile(file, MAX_TEXT_BYTES);
        } catch (JsonException e) {
            boolean tooLarge = Files.size(file) > MAX_TEXT_BYTES;
            throw new IllegalArgumentException(file + ": " + e.getMessage() + (tooLarge ? " (a text file is read"
                    + " whole: tokenize large text with 'based4j data tokenize' and give its folder)" : ""));
        }
        if (text.isEmpty()) {
            throw new IllegalArgumentException(file + ": empty file (no text to score)");
        }
        return tokenizer.encode(text);
    }

    public List<TokenSource> sources() {
        return sources;
    }

    @Override
    public void close() {
        datasets.forEach(TokenDataset::close);
    }
}
