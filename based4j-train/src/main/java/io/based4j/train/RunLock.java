package io.based4j.train;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.HashMap;
import java.util.Map;

/**
 * The claim of one live process on a run directory: an operating-system lock on {@code RUN/run.lock}, held from
 * before the run touches anything in the directory until it ends. The file also says who holds it (process id,
 * host and start time), but only the lock counts: the file a killed run leaves behind blocks nobody, because the
 * operating system drops a lock with the process that held it.
 *
 * <p>Within one JVM the directories locked are also kept in a table, so that a second run in the same process is
 * refused without opening the file again (closing any descriptor of a locked file may drop the process's lock on
 * some systems).
 */
public final class RunLock implements AutoCloseable {
    /** File name of the lock in a run directory. */
    public static final String FILE = "run.lock";
    /** Holders of the locks this JVM holds, by lock file. */
    private static final Map<Path, String> HELD = new HashMap<>();

    private final Path file;
    private final FileChannel channel;
    private final FileLock lock;

    /** A run directory that another live run holds; the message names the holder. */
    public static final class BusyException extends IllegalStateException {
        public BusyException(String message) {
            super(message);
        }
    }

    private RunLock(Path file, FileChannel channel, FileLock lock) {
        this.file = file;
        this.channel = channel;
        this.lock = lock;
    }

    /**
     * Creates {@code dir} when needed and locks it for this process (a training run's directory).
     *
     * @throws BusyException when another run (in this or another process) holds it
     * @throws UncheckedIOException naming the file when the directory or the lock file cannot be made
     */
    public static RunLock acquire(Path dir) {
        return acquire(dir, "training run", "set another train.out");
    }

    /**
     * Creates {@code dir} when needed and locks it for this process; a refusal says the directory is in use by
     * another {@code kind} ("MQAR sweep") and suggests {@code elsewhere} ("give another --out").
     *
     * @throws BusyException when another run (in this or another process) holds it
     * @throws UncheckedIOException naming the file when the directory or the lock file cannot be made
     */
    public static RunLock acquire(Path dir, String kind, String elsewhere) {
        synchronized (HELD) {
            Path file = dir.resolve(FILE);
            FileChannel channel = null;
            try {
                Files.createDirectories(dir);
                // the real path, so that one directory reached by two names is one entry
                file = dir.toRealPath().resolve(FILE);
                String holder = HELD.get(file);
                if (holder != null) {
                    throw busy(dir, holder, kind, elsewhere);
                }
                channel = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ,
                        StandardOpenOption.WRITE);
                FileLock lock;
                try {
                    lock = channel.tryLock();
                } catch (OverlappingFileLockException e) {
                    lock = null; // held through another channel of this JVM, outside this class
                }
                if (lock == null) {
                    String other = read(channel);
                    channel.close();
                    throw busy(dir, other, kind, elsewhere);
                }
                String me = describeThisProcess();
                channel.truncate(0);
                channel.write(ByteBuffer.wrap((me + "\n").getBytes(StandardCharsets.UTF_8)), 0);
                channel.force(true);
                HELD.put(file, me);
                return new RunLock(file, channel, lock);
            } catch (IOException e) {
                closeQuietly(channel);
                throw new UncheckedIOException("cannot lock run directory " + dir + " (" + file + "): "
                        + e.getMessage(), e);
            }
        }
    }

    private static BusyException busy(Path dir, String holder, String kind, String elsewhere) {
        return new BusyException(dir + " is in use by another " + kind + " (" + (holder.isBlank()
                ? "its holder has not written its details yet" : holder) + "); wait for it to end or " + elsewhere);
    }

    /** The holder's line, read through the channel that failed to lock (so no other descriptor is opened). */
    private static String read(FileChannel channel) throws IOException {
        long size = Math.min(channel.size(), 4096);
        ByteBuffer buf = ByteBuffer.allocate((int) size);
        while (buf.hasRemaining() && channel.read(buf, buf.position()) > 0) {
            // reads until full or end of file
        }
        return new String(buf.array(), 0, buf.position(), StandardCharsets.UTF_8).strip();
    }

    static String describeThisProcess() {
        String host;
        try {
            host = InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            host = "an unknown host";
        }
        return "pid " + ProcessHandle.current().pid() + " on " + host + ", started "
                + Instant.now().truncatedTo(ChronoUnit.SECONDS);
    }

    /** The lock file. */
    public Path file() {
        return file;
    }

    /** Clears the holder's line and releases the lock; the file stays (deleting it would race with a new holder). */
    @Override
    public void close() {
        synchronized (HELD) {
            try {
                if (lock.isValid()) {
                    channel.truncate(0);
                    lock.release();
                }
            } catch (IOException e) {
                // the lock goes with the channel below; a stale line in the file blocks nobody
            } finally {
                closeQuietly(channel);
                HELD.remove(file);
            }
        }
    }

    private static void closeQuietly(FileChannel channel) {
        if (channel != null) {
            try {
                channel.close();
            } catch (IOException e) {
                // nothing left to release
            }
        }
    }
}
