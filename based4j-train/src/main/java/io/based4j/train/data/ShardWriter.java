package io.based4j.train.data;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * Streams tokens into numbered {@link TokenShard} files {@code DIR/{prefix}-00000.bin}, {@code -00001.bin}, ...,
 * starting a new shard every {@code shardTokens} tokens.
 *
 * <p>Each shard is written to {@code name.tmp} (created new: an existing file is never overwritten) and renamed into
 * place once complete, so a reader never sees a partial shard. Memory use is a fixed 1 MiB staging buffer whatever
 * the shard size. The writer touches no file it did not create: {@link #close()} finishes the last (partial)
 * shard; {@link #abort()} deletes everything this writer wrote. Not thread-safe.
 */
public final class ShardWriter implements AutoCloseable {
    private static final Pattern PREFIX = Pattern.compile("[A-Za-z0-9_.-]+");
    private static final int STAGING_BYTES = 1 << 20;

    private final Path dir;
    private final String prefix;
    private final long shardTokens;
    private final List<Path> shards = new ArrayList<>();
    private final List<TokenManifest.Shard> entries = new ArrayList<>();
    private final ByteBuffer staging = ByteBuffer.allocate(STAGING_BYTES).order(ByteOrder.LITTLE_ENDIAN);
    private final Gate gate;

    private FileChannel channel;
    private Path current;
    private Path currentTmp;
    private long inShard;
    private long filePos;
    private long written;
    private boolean closed;

    /**
     * @param dir         output directory (created if missing)
     * @param prefix      shard name prefix, letters, digits, '_', '.' or '-' (e.g. {@code train})
     * @param shardTokens tokens per shard, at least 1
     */
    public ShardWriter(Path dir, String prefix, long shardTokens) {
        this(dir, prefix, shardTokens, IoStep::run);
    }

    /** A step that creates or renames a file. */
    interface IoStep {
        void run() throws IOException;
    }

    /** Runs the steps that create or rename files, so that an owner can stop them (and clean up) at any time. */
    interface Gate {
        void run(IoStep step) throws IOException;
    }

    ShardWriter(Path dir, String prefix, long shardTokens, Gate gate) {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(prefix, "prefix");
        if (!PREFIX.matcher(prefix).matches()) {
            throw new IllegalArgumentException("shard prefix \"" + prefix
                    + "\" must be non-empty and use only letters, digits, '_', '.' or '-'");
        }
        if (shardTokens < 1) {
            throw new IllegalArgumentException("tokens per shard must be >= 1, got " + shardTokens);
        }
        if (Files.exists(dir) && !Files.isDirectory(dir)) {
            throw new IllegalArgumentException(dir + ": exists and is not a directory");
        }
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw TokenShard.ioError("cannot create output directory", dir, e);
        }
        this.dir = dir;
        this.prefix = prefix;
        this.shardTokens = shardTokens;
        this.gate = gate;
    }

    /** Name of shard number {@code index}: {@code {prefix}-%05d.bin}. */
    public static String shardName(String prefix, int index) {
        return String.format("%s-%05d.bin", prefix, index);
    }

    /**
     * Appends {@code tokens[off, off + n)}. All of them are checked before any is written.
     *
     * @throws IllegalArgumentException when a token lies outside [0, 65535]
     */
    public void append(int[] tokens, int off, int n) {
        ensureOpen();
        Objects.checkFromIndexSize(off, n, tokens.length);
        TokenShard.checkTokens(tokens, off, n, written, "shard writer " + dir.resolve(prefix + "-*.bin"));
        try {
            int i = 0;
            while (i < n) {
                if (channel == null) {
                    startShard();
                }
                long room = shardTokens - inShard;
                int take = (int) Math.min(room, n - i);
                for (int k = 0; k < take; k++) {
                    if (!staging.hasRemaining()) {
                        flushStaging();
                    }
                    staging.putShort((short) tokens[off + i + k]);
                }
                i += take;
                inShard += take;
                written += take;
                if (inShard == shardTokens) {
                    finishShard();
                }
            }
        } catch (IOException e) {
            throw TokenShard.ioError("cannot write token shard", current, e);
        }
    }

    /** Appends all of {@code tokens}. */
    public void append(int[] tokens) {
        append(tokens, 0, tokens.length);
    }

    /** Appends one token. */
    public void append(int token) {
        append(new int[] {token}, 0, 1);
    }

    /** Tokens appended so far. */
    public long written() {
        return written;
    }

    /** Completed shards, in order (the last partial shard appears after {@link #close()}). */
    public List<Path> shards() {
        return List.copyOf(shards);
    }

    /** Completed shards as manifest entries: file name and token count, in order. */
    public List<TokenManifest.Shard> entries() {
        return List.copyOf(entries);
    }

    /** Bytes of the completed shards. */
    public long bytes() {
        long b = 0;
        for (TokenManifest.Shard s : entries) {
            b += TokenShard.HEADER_BYTES + (long) TokenShard.BYTES_PER_TOKEN * s.tokens();
        }
        return b;
    }

    public Path dir() {
        return dir;
    }

    public String prefix() {
        return prefix;
    }

    /** Finishes the last shard (if it holds any tokens). */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        try {
            if (channel != null) {
                finishShard();
            }
        } catch (IOException e) {
            throw TokenShard.ioError("cannot finish token shard", current, e);
        } finally {
            closed = true;
        }
    }

    /**
     * Abandons the writer: the shard in progress and every shard it completed are deleted (best effort: files that
     * cannot be deleted stay). Nothing else in the directory is touched. Allowed after {@link #close()} too.
     */
    public void abort() {
        closed = true;
        discardShard();
        for (Path p : shards) {
            TokenShard.deleteQuietly(p);
        }
        shards.clear();
        entries.clear();
    }

    /** Closes the shard in progress without finishing it and deletes its temporary file. */
    private void discardShard() {
        if (channel != null) {
            try {
                channel.close();
            } catch (IOException ignored) {
                // the temporary file is deleted next
            }
            channel = null;
            TokenShard.deleteQuietly(currentTmp);
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("shard writer for " + dir.resolve(prefix + "-*.bin") + " is closed");
        }
    }

    private void startShard() throws IOException {
        current = dir.resolve(shardName(prefix, shards.size()));
        currentTmp = TokenShard.tmpPath(current);
        // CREATE_NEW: a file of that name that this writer did not create is an error, never overwritten
        gate.run(() -> channel = FileChannel.open(currentTmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE));
        TokenShard.writeFully(channel, TokenShard.header(0), 0);
        filePos = TokenShard.HEADER_BYTES;
        inShard = 0;
        staging.clear();
    }

    private void flushStaging() throws IOException {
        staging.flip();
        filePos += TokenShard.writeFully(channel, staging, filePos);
        staging.clear();
    }

    private void finishShard() throws IOException {
        try {
            flushStaging();
            TokenShard.writeFully(channel, TokenShard.header(inShard), 0);
            channel.force(true);
            channel.close();
            channel = null;
            gate.run(() -> {
                if (Files.exists(current, LinkOption.NOFOLLOW_LINKS)) {
                    throw new FileAlreadyExistsException(current.toString(), null, "a file of that name exists (not"
                            + " written by this writer; it is left as it is)");
                }
                TokenShard.moveAtomically(currentTmp, current);
            });
        } catch (IOException e) {
            discardShard();
            TokenShard.deleteQuietly(currentTmp);
            throw e;
        }
        shards.add(current);
        entries.add(new TokenManifest.Shard(current.getFileName().toString(), inShard));
    }
}
