package io.based4j.cli;

import io.based4j.tokenizer.Gpt2Tokenizer;
import io.based4j.train.corpus.CorpusManifest;
import io.based4j.train.data.DatasetWriter;
import io.based4j.train.data.ShardWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ForkJoinPool;
import java.util.stream.Stream;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code based4j data ...}: preparing training data. */
@Command(name = "data", mixinStandardHelpOptions = true,
        description = "Prepare training data (see 'based4j data fetch --help' and 'based4j data tokenize --help').",
        subcommands = {DataFetchCommand.class, DataCommand.Tokenize.class})
final class DataCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    /** Largest input file read (Java arrays and strings cannot hold more). */
    static final long MAX_FILE_BYTES = Integer.MAX_VALUE - 16;
    /** Documents longer than this are split at safe line boundaries and encoded in parallel. */
    static final int CHUNK_CHARS = 1 << 18;
    /** Bytes of input text being tokenized ahead of the writer at most (beyond the one document written next). */
    static final long LOOKAHEAD_BYTES = 256L << 20;

    @Command(name = "tokenize", mixinStandardHelpOptions = true, sortOptions = false,
            description = {
                "Tokenize UTF-8 text files with the GPT-2 tokenizer into token shards for training.",
                "",
                "Each input file is one document (a directory stands for its regular files, recursively, in "
                        + "sorted order; a corpus folder written by 'based4j data fetch' for the documents its "
                        + "corpus.json lists, source by source); its tokens are followed by <|endoftext|> (50256). "
                        + "The last ceil(F * n) tokens of every document (plus an <|endoftext|>) go to the validation "
                        + "split, the rest to the training split, so every source holds out the same fixed fraction "
                        + "of its text. data.json records each input's (each corpus source's) token counts; its "
                        + "tokens lie together in each split, in input order.",
                "",
                "Writes the shards DIR/train-<tag>-00000.bin ..., DIR/val-<tag>-00000.bin ... and the manifest "
                        + "DIR/data.json, which lists them: a dataset is exactly the shards its manifest lists.",
                "",
                "A folder that already holds anything is refused unless --overwrite is given. Then the new dataset is "
                        + "written beside the old one and replaces it only once complete (the old one's shards are "
                        + "deleted after that); a run that fails leaves the old dataset as it was. Files the "
                        + "dataset does not list are never touched."})
    static final class Tokenize implements Callable<Integer> {
        @Option(names = "--input", arity = "1..*", required = true, paramLabel = "FILE",
                description = "Text files or directories to tokenize, in order.")
        List<Path> inputs;

        @Option(names = "--out", required = true, paramLabel = "DIR", description = "Output directory.")
        Path out;

        @Option(names = "--val-fraction", paramLabel = "F", defaultValue = "0.05",
                description = "Fraction of each document's tokens (its end) held out for validation, in [0, 1); "
                        + "0 writes no validation split (default ${DEFAULT-VALUE}).")
        double valFraction;

        @Option(names = "--shard-tokens", paramLabel = "N", defaultValue = "100000000",
                description = "Tokens per shard file (default ${DEFAULT-VALUE}).")
        long shardTokens;

        @Option(names = "--overwrite",
                description = "Replace the dataset DIR holds (files it does not list are kept); without it a "
                        + "folder that holds anything is refused.")
        boolean overwrite;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() {
            if (!(valFraction >= 0 && valFraction < 1)) {
                throw new UsageException("--val-fraction must be in [0, 1), got " + valFraction);
            }
            if (shardTokens < 1) {
                throw new UsageException("--shard-tokens must be >= 1, got " + shardTokens);
            }
            List<Part> parts = expandInputs(inputs);
            List<Path> docs = parts.stream().flatMap(p -> p.docs().stream()).toList();
            checkOutside(docs, out);
            List<String> swept = DatasetWriter.sweepAbandoned(out);
            if (!swept.isEmpty()) {
                Progress.note("removed " + swept.size() + " file(s) an interrupted earlier tokenize left in " + out);
            }
            DatasetWriter.Contents existing = DatasetWriter.inspect(out);
            if (!existing.isEmpty() && !overwrite) {
                throw new IllegalArgumentException("--out " + out + " already holds " + existing.describe() + "; add"
                        + " --overwrite to " + (existing.manifest() != null ? "replace that dataset (files it does not"
                        + " list are kept)" : "write the dataset beside what is there (it is kept)")
                        + ", or choose an empty folder");
            }

            Gpt2Tokenizer tok = Gpt2Tokenizer.load();
            long t0 = System.nanoTime();
            Totals totals = new Totals(parts);
            int threads = Math.max(1, Runtime.getRuntime().availableProcessors());
            DatasetWriter.Committed done;
            ShardWriter train;
            ShardWriter val;
            try (DatasetWriter writer = DatasetWriter.create(out, shardTokens)) {
                train = writer.split("train");
                val = writer.split("val");
                try (ForkJoinPool pool = new ForkJoinPool(threads)) {
                    boolean ok = false;
                    try {
                        tokenizeAll(docs, tok, pool, train, val, totals, threads);
                        ok = true;
                    } finally {
                        if (!ok) {
                            pool.shutdownNow();
                        }
                    }
                }
                Map<String, Object> manifest = new LinkedHashMap<>();
                manifest.put("tokenizer", "gpt2");
                manifest.put("vocab_size", tok.vocabSize());
                manifest.put("eos_token_id", tok.eosId());
                manifest.put("documents", docs.size());
                manifest.put("inputs", inputs.stream().map(Path::toString).toList());
                manifest.put("parts", totals.parts());
                manifest.put("val_fraction", valFraction);
                manifest.put("shard_tokens", shardTokens);
                done = writer.commit(manifest);
            }
            if (existing.manifest() != null) {
                Progress.note("replaced the dataset in " + out + " (deleted its " + done.deleted().size()
                        + " shard file(s))");
            }
            for (String problem : done.notDeleted()) {
                Progress.note("could not delete a shard of the replaced dataset: " + problem);
            }

            double secs = Math.max(1e-9, (System.nanoTime() - t0) / 1e9);
            long tokens = train.written() + val.written();
            PrintWriter pw = spec.commandLine().getOut();
            pw.printf("documents  %,d (%.1f MB of text, %,d empty)%n", docs.size(), totals.textBytes / 1e6,
                    totals.emptyDocs);
            pw.printf("train      %,d tokens in %d shard(s), %.1f MB%n", train.written(), train.shards().size(),
                    train.bytes() / 1e6);
            pw.printf("val        %,d tokens in %d shard(s), %.1f MB%n", val.written(), val.shards().size(),
                    val.bytes() / 1e6);
            if (parts.size() > 1) {
                for (int i = 0; i < parts.size(); i++) {
                    pw.printf("  %-30s %,7d documents, train %,d tokens, val %,d tokens%n", parts.get(i).name(),
                            parts.get(i).docs().size(), totals.train[i], totals.val[i]);
                }
            }
            pw.printf("speed      %,.0f tokens/s (%.1f s on %d threads)%n", tokens / secs, secs, threads);
            pw.printf("wrote      %s%n", done.manifest().file());
            pw.flush();
            return 0;
        }

        private void tokenizeAll(List<Path> docs, Gpt2Tokenizer tok, ForkJoinPool pool, ShardWriter train,
                                 ShardWriter val, Totals totals, int threads) {
            record Pending(Path file, long bytes, CompletableFuture<int[]> tokens) {
            }
            ArrayDeque<Pending> pending = new ArrayDeque<>();
            long inFlightBytes = 0;
            int next = 0;
            int eos = tok.eosId();
            int part = 0;
            int partEnd = totals.partSize(0);
            long lastNote = System.nanoTime();
            for (int d = 0; d < docs.size(); d++) {
                // keep up to 2 * threads documents (and at most LOOKAHEAD_BYTES of text) tokenizing ahead
                while (next < docs.size() && (pending.isEmpty()
                        || (pending.size() < 2 * threads && inFlightBytes + sizeOf(docs.get(next)) <= LOOKAHEAD_BYTES))) {
                    Path f = docs.get(next++);
                    long size = sizeOf(f);
                    inFlightBytes += size;
                    pending.add(new Pending(f, size, CompletableFuture.supplyAsync(() -> readAndEncode(f, tok), pool)));
                }
                Pending p = pending.poll();
                int[] t;
                try {
                    t = p.tokens().join();
                } catch (CompletionException e) {
                    pending.forEach(q -> q.tokens().cancel(true));
                    Throwable c = e.getCause() == null ? e : e.getCause();
                    if (c instanceof RuntimeException r) {
                        throw r;
                    }
                    if (c instanceof Error err) {
                        throw err;
                    }
                    throw new IllegalStateException("input file " + p.file() + ": " + c.getMessage(), c);
                }
                inFlightBytes -= p.bytes();
                while (d >= partEnd) {
                    partEnd += totals.partSize(++part);
                }
                totals.textBytes += p.bytes();
                int n = t.length;
                if (n == 0) {
                    totals.emptyDocs++;
                    continue;
                }
                int nVal = (int) valTokens(n, valFraction);
                int nTrain = n - nVal;
                if (nTrain > 0) {
                    train.append(t, 0, nTrain);
                    train.append(eos);
                    totals.train[part] += nTrain + 1;
                }
                if (nVal > 0) {
                    val.append(t, nTrain, nVal);
                    val.append(eos);
                    totals.val[part] += nVal + 1;
                }
                if (System.nanoTime() - lastNote > 10_000_000_000L) {
                    lastNote = System.nanoTime();
                    Progress.note(String.format("tokenized %,d/%,d documents, %,d tokens", d + 1, docs.size(),
                            train.written() + val.written()));
                }
            }
        }
    }

    /** A named group of documents: an --input argument, or one source of a corpus folder. */
    record Part(String name, List<Path> docs) {
    }

    private static final class Totals {
        final List<Part> parts;
        final long[] train;
        final long[] val;
        long textBytes;
        int emptyDocs;

        Totals(List<Part> parts) {
            this.parts = parts;
            this.train = new long[parts.size()];
            this.val = new long[parts.size()];
        }

        int partSize(int i) {
            return i < parts.size() ? parts.get(i).docs().size() : Integer.MAX_VALUE;
        }

        /** Each part's name, documents and tokens per split (end-of-text tokens included), for the manifest. */
        List<Map<String, Object>> parts() {
            List<Map<String, Object>> out = new ArrayList<>();
            for (int i = 0; i < parts.size(); i++) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("input", parts.get(i).name());
                m.put("documents", parts.get(i).docs().size());
                m.put("train_tokens", train[i]);
                m.put("val_tokens", val[i]);
                out.add(m);
            }
            return out;
        }
    }

    /** Validation tokens of a document of {@code n} tokens: {@code ceil(fraction * n)}, computed in decimal. */
    static long valTokens(long n, double fraction) {
        if (fraction == 0 || n == 0) {
            return 0;
        }
        return BigDecimal.valueOf(fraction).multiply(BigDecimal.valueOf(n)).setScale(0, RoundingMode.CEILING)
                .longValueExact();
    }

    private static long sizeOf(Path f) {
        try {
            return Files.size(f);
        } catch (IOException e) {
            return 0; // reported when the file is read
        }
    }

    /**
     * The documents named by the arguments, one part per argument: files as given, directories replaced by their
     * regular files (recursively, sorted by path), and a corpus folder ({@code corpus.json} inside) by the
     * documents its manifest lists, one part per source. Each is checked to be readable and small enough before
     * any is read.
     *
     * @throws IllegalArgumentException naming an argument that does not exist or a directory without files, or a
     *                                  document that cannot be read or is too large
     */
    static List<Part> expandInputs(List<Path> inputs) {
        List<Part> parts = new ArrayList<>();
        for (Path in : inputs) {
            if (Files.isDirectory(in) && CorpusManifest.isCorpus(in)) {
                parts.addAll(corpusParts(in));
                continue;
            }
            List<Path> docs = new ArrayList<>();
            if (Files.isDirectory(in)) {
                List<Path> files;
                try (Stream<Path> s = Files.walk(in)) {
                    files = s.filter(Files::isRegularFile).sorted().toList();
                } catch (IOException | UncheckedIOException e) {
                    throw new IllegalArgumentException("input directory " + in + ": cannot list it (" + e.getMessage()
                            + ")", e);
                }
                if (files.isEmpty()) {
                    throw new IllegalArgumentException("input directory " + in + ": holds no files");
                }
                docs.addAll(files);
            } else if (Files.isRegularFile(in)) {
                docs.add(in);
            } else if (Files.exists(in)) {
                throw new IllegalArgumentException("input " + in + ": not a regular file or directory");
            } else {
                throw new IllegalArgumentException("input file " + in + ": no such file or directory");
            }
            parts.add(new Part(in.toString(), docs));
        }
        for (Part part : parts) {
            for (Path doc : part.docs()) {
                if (!Files.isReadable(doc)) {
                    throw new IllegalArgumentException("input file " + doc + ": " + (Files.exists(doc)
                            ? "permission denied" : "no such file (listed in its corpus.json; run 'based4j data"
                            + " fetch' again)"));
                }
                checkSize(doc, sizeOf(doc));
            }
        }
        return parts;
    }

    /** The sources of a corpus folder, each the documents its manifest lists, in order. */
    private static List<Part> corpusParts(Path dir) {
        CorpusManifest m = CorpusManifest.readIfPresent(dir);
        if (m == null || m.sources().isEmpty()) {
            throw new IllegalArgumentException("input corpus " + dir + ": its " + CorpusManifest.FILE
                    + " lists no documents");
        }
        return m.sources().stream().map(s -> new Part(dir.resolve(s.name()).toString(),
                s.documents().stream().map(d -> dir.resolve(d.path())).toList())).toList();
    }

    /** Refuses documents inside the output folder (shards of an earlier run are not text). */
    static void checkOutside(List<Path> docs, Path out) {
        Path o = out.toAbsolutePath().normalize();
        for (Path doc : docs) {
            if (doc.toAbsolutePath().normalize().startsWith(o)) {
                throw new IllegalArgumentException("input file " + doc + " lies inside --out " + out
                        + ": keep the text and the token folder apart");
            }
        }
    }

    private static void checkSize(Path file, long size) {
        if (size > MAX_FILE_BYTES) {
            throw new IllegalArgumentException("input file " + file + ": too large (" + size
                    + " bytes; split it into files under 2 GB)");
        }
    }

    /** Reads a document and encodes it. */
    static int[] readAndEncode(Path file, Gpt2Tokenizer tok) {
        return encodeChunked(tok, readUtf8(file), CHUNK_CHARS);
    }

    /**
     * Reads a file as strict UTF-8 (a leading byte-order mark is dropped).
     *
     * @throws IllegalArgumentException naming the file when it cannot be read or is not valid UTF-8
     */
    static String readUtf8(Path file) {
        byte[] bytes;
        try {
            checkSize(file, Files.size(file));
            bytes = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("input file " + file + ": no such file", e);
        } catch (AccessDeniedException e) {
            throw new IllegalArgumentException("input file " + file + ": permission denied", e);
        } catch (IOException e) {
            throw new IllegalArgumentException("input file " + file + ": cannot read it (" + e.getMessage() + ")", e);
        }
        ByteBuffer in = ByteBuffer.wrap(bytes);
        if (bytes.length >= 3 && (bytes[0] & 0xFF) == 0xEF && (bytes[1] & 0xFF) == 0xBB && (bytes[2] & 0xFF) == 0xBF) {
            in.position(3);
        }
        CharsetDecoder dec = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        CharBuffer chars = CharBuffer.allocate(in.remaining()); // UTF-8 never decodes to more chars than bytes
        CoderResult r = dec.decode(in, chars, true);
        if (!r.isError()) {
            r = dec.flush(chars);
        }
        if (r.isError()) {
            throw new IllegalArgumentException("input file " + file + ": not valid UTF-8 text ("
                    + (r.isMalformed() ? "malformed" : "unmappable") + " byte sequence at byte offset "
                    + in.position() + ")");
        }
        if (r.isOverflow()) {
            throw new IllegalStateException("UTF-8 decoding of " + file + " overflowed");
        }
        chars.flip();
        return chars.toString();
    }

    /**
     * Encodes text like {@link Gpt2Tokenizer#encode(String)}, splitting text longer than {@code chunkChars} into
     * pieces encoded in parallel. Pieces are cut only before a letter or digit that follows a {@code '\n'} which
     * itself follows a non-whitespace ASCII or alphanumeric character: the GPT-2 pre-tokenizer always ends a
     * pre-token there (a lone newline is its own pre-token and a letter or digit after it cannot join a
     * whitespace token), so the result is identical to encoding the whole text.
     */
    static int[] encodeChunked(Gpt2Tokenizer tok, String text, int chunkChars) {
        if (text.length() <= chunkChars) {
            return tok.encode(text);
        }
        List<Integer> cuts = new ArrayList<>();
        cuts.add(0);
        int pos = 0;
        while (true) {
            int i = safeCut(text, pos + chunkChars);
            if (i < 0) {
                break;
            }
            cuts.add(i);
            pos = i;
        }
        cuts.add(text.length());
        List<int[]> parts = java.util.stream.IntStream.range(0, cuts.size() - 1).parallel()
                .mapToObj(k -> tok.encode(text.substring(cuts.get(k), cuts.get(k + 1)))).toList();
        int total = 0;
        for (int[] p : parts) {
            total += p.length;
        }
        int[] all = new int[total];
        int off = 0;
        for (int[] p : parts) {
            System.arraycopy(p, 0, all, off, p.length);
            off += p.length;
        }
        return all;
    }

    /** The first safe cut position at or after {@code from} (and before the end), or -1. */
    private static int safeCut(String text, int from) {
        for (int i = Math.max(from, 2); i < text.length(); i++) {
            if (text.charAt(i - 1) == '\n' && Character.isLetterOrDigit(text.charAt(i))) {
                char before = text.charAt(i - 2);
                if ((before > ' ' && before < 0x7F) || Character.isLetterOrDigit(before)) {
                    return i;
                }
            }
        }
        return -1;
    }
}
