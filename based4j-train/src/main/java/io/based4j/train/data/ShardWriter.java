package io.based4j.train.data;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Streams tokens into numbered {@link TokenShard} files {@code DIR/{prefix}-00000.bin}, {@code -00001.bin}, ...,
 * starting a new shard every {@code shardTokens} tokens.
 *
 * <p>Each shard is written to {@code name.tmp} and renamed into place once complete, so a reader never sees a
 * partial shard. Memory use is a fixed 1 MiB staging buffer whatever the shard size. {@link #close()} finishes
 * the last (partial) shard and then deletes shards of the same prefix left in the directory by an earlier run
 * ({@code {prefix}-NNNNN.bin} files this writer did not write), so that the directory holds exactly this run's
 * shards. Not thread-safe.
 */
public final class ShardWriter implements AutoCloseable {
    private static final Pattern PREFIX = Pattern.compile("[A-Za-z0-9_.]+");
    private static final int STAGING_BYTES = 1 << 20;

    private final Path dir;
    private final String prefix;
    private final long shardTokens;
    private final List<Path> shards = new ArrayList<>();
    private final ByteBuffer staging = ByteBuffer.allocate(STAGING_BYTES).order(ByteOrder.LITTLE_ENDIAN);

    private FileChannel channel;
    private Path current;
    private Path currentTmp;
    private long inShard;
    private long filePos;
    private long written;
    private boolean closed;

    /**
     * @param dir         output directory (created if missing)
     * @param prefix      shard name prefix, letters, digits, '_' or '.' (e.g. {@code train})
     * @param shardTokens tokens per shard, at least 1
     */
    public ShardWriter(Path dir, String prefix, long shardTokens) {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(prefix, "prefix");
        if (!PREFIX.matcher(prefix).matches()) {
            throw new IllegalArgumentException("shard prefix \"" + prefix
                    + "\" must be non-empty and use only letters, digits, '_' or '.'");
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
            throw new UncheckedIOException("cannot create output directory " + dir + ": " + e.getMessage(), e);
        }
        this.dir = dir;
        this.prefix = prefix;
        this.shardTokens = shardTokens;
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
            throw new UncheckedIOException("cannot write token shard " + current + ": " + e.getMessage(), e);
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

    public Path dir() {
        return dir;
    }

    public String prefix() {
        return prefix;
    }

    /** Finishes the last shard (if it holds any tokens) and removes stale shards of this prefix. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        try {
            if (channel != null) {
                finishShard();
            }
            removeStale();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot finish token shard " + current + ": " + e.getMessage(), e);
        } finally {
            closed = true;
        }
    }

    /** Abandons the shard in progress (its temporary file is deleted); completed shards stay. */
    public void abort() {
        if (closed) {
            return;
        }
        closed = true;
        if (channel != null) {
            discardShard();
        }
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
        }
        TokenShard.deleteQuietly(currentTmp);
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("shard writer for " + dir.resolve(prefix + "-*.bin") + " is closed");
        }
    }

    private void startShard() throws IOException {
        current = dir.resolve(shardName(prefix, shards.size()));
        currentTmp = TokenShard.tmpPath(current);
        channel = FileChannel.open(currentTmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING);
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
            TokenShard.moveAtomically(currentTmp, current);
        } catch (IOException e) {
            discardShard();
            throw e;
        }
        shards.add(current);
    }

    private void removeStale() throws IOException {
        Set<Path> mine = new HashSet<>(shards);
        Pattern stale = Pattern.compile(Pattern.quote(prefix) + "-[0-9]{5,}\\.bin");
        List<Path> remove = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
            for (Path p : ds) {
                if (stale.matcher(p.getFileName().toString()).matches() && !mine.contains(p)) {
                    remove.add(p);
                }
            }
        }
        for (Path p : remove) {
            Files.deleteIfExists(p);
        }
    }
}
