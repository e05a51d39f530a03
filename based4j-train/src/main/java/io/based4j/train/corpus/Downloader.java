package io.based4j.train.corpus;

import io.based4j.json.IoErrors;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.URI;
import java.net.UnknownHostException;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Downloads pinned package files over HTTP(S) with the JDK's client, into a folder of its own.
 *
 * <p>A file is written to {@code NAME.part} and renamed to {@code NAME} only once its size and SHA-256 match the
 * pin; a mismatch deletes the part file. A download that breaks off keeps its part file, and the next call asks
 * the server for the rest (an HTTP range request; a server that ignores it sends the whole file again). A file
 * already there is checked, not downloaded again. Candidate URLs are tried in order: one that answers 404 or 410
 * (the registry does not have the file) or cannot be reached gives way to the next. A server that sends nothing
 * for {@code stallTimeout} is given up on.
 */
public final class Downloader implements AutoCloseable {
    private static final Pattern CONTENT_RANGE = Pattern.compile("bytes (\\d+)-");
    private final HttpClient client;
    private final Duration stallTimeout;
    private final Consumer<String> progress;
    private final ScheduledExecutorService watchdog;

    /**
     * @param stallTimeout how long a connection may stay silent (while connecting, before the answer, or within the
     *                     body) before it is given up on
     * @param progress     receives a line now and then while a large file downloads
     */
    public Downloader(Duration stallTimeout, Consumer<String> progress) {
        this.stallTimeout = stallTimeout;
        this.progress = progress;
        this.client = HttpClient.newBuilder()
                .connectTimeout(stallTimeout)
                .followRedirects(HttpClient.Redirect.NORMAL)
                .build();
        this.watchdog = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "download watchdog");
            t.setDaemon(true);
            return t;
        });
    }

    /**
     * Makes {@code dir/NAME} the verified package file, downloading it when it is not there yet.
     *
     * @param source the corpus source it is for (named in messages)
     * @return the verified file and the URL it came from (null when it was there already)
     * @throws CorpusException naming the source and the file: not found at any URL, no URL reachable, a size or
     *                         checksum that does not match the pin, or a download that broke off
     */
    public Fetched fetch(String source, PackageFile file, List<URI> candidates, Path dir) {
        Path target = dir.resolve(file.fileName());
        Path part = dir.resolve(file.fileName() + ".part");
        try {
            Files.createDirectories(dir);
            if (Files.isRegularFile(target)) {
                if (Files.size(target) == file.size() && sha256(target).equals(file.sha256())) {
                    return new Fetched(target, null);
                }
                // a file of this name in the download folder that is not the pinned one was left by an older run
                Files.delete(target);
            }
        } catch (IOException e) {
            throw new CorpusException("source " + source + ": cannot use the download folder " + dir + ": "
                    + IoErrors.reason(e), e);
        }
        List<String> notFound = new ArrayList<>();
        List<String> failed = new ArrayList<>();
        for (URI url : candidates) {
            try {
                if (download(source, file, url, part)) {
                    verify(source, file, url, part);
                    Moves.intoPlace(part, target);
                    return new Fetched(target, url);
                }
                notFound.add(url.toString());
            } catch (Unreachable e) {
                failed.add(url + " (" + e.getMessage() + ")");
            } catch (IOException e) {
                throw new CorpusException("source " + source + ": cannot write " + part + ": "
                        + IoErrors.reason(e), e);
            }
        }
        String what = "source " + source + ": " + file.describe() + " (" + file.fileName() + ")";
        if (failed.isEmpty()) {
            throw new CorpusException(what + " is not in the registry: HTTP 404 from " + String.join(" and ", notFound)
                    + "; the pinned version may have been withdrawn");
        }
        throw new CorpusException(what + " cannot be downloaded: " + String.join("; ", failed)
                + (notFound.isEmpty() ? "" : "; not found at " + String.join(" and ", notFound)));
    }

    /** A verified package file, and the URL it was downloaded from (null when it was present already). */
    public record Fetched(Path file, URI url) {
    }

    /** A URL that could not be used: unreachable, silent, or answering with an error. */
    private static final class Unreachable extends Exception {
        Unreachable(String message) {
            super(message);
        }
    }

    /**
     * Downloads {@code url} into {@code part}, continuing a part file an earlier run left.
     *
     * @return false when the server does not have the file (404 or 410)
     */
    private boolean download(String source, PackageFile file, URI url, Path part) throws Unreachable, IOException {
        long have = Files.isRegularFile(part) ? Files.size(part) : 0;
        if (have >= file.size()) {
            Files.deleteIfExists(part); // complete but unverified, or too long: start again
            have = 0;
        }
        HttpRequest.Builder req = HttpRequest.newBuilder(url).timeout(stallTimeout).GET()
                .header("User-Agent", "based4j");
        if (have > 0) {
            req.header("Range", "bytes=" + have + "-");
        }
        HttpResponse<InputStream> resp;
        try {
            resp = client.send(req.build(), HttpResponse.BodyHandlers.ofInputStream());
        } catch (HttpConnectTimeoutException e) {
            throw new Unreachable("no connection within " + stallTimeout.toSeconds() + " s");
        } catch (HttpTimeoutException e) {
            throw new Unreachable("no answer within " + stallTimeout.toSeconds() + " s");
        } catch (ConnectException e) {
            throw new Unreachable("connection refused");
        } catch (UnknownHostException e) {
            throw new Unreachable("unknown host " + url.getHost());
        } catch (IOException e) {
            throw new Unreachable(reason(e));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Unreachable("interrupted");
        }
        int status = resp.statusCode();
        try (InputStream body = resp.body()) {
            if (status == 404 || status == 410) {
                return false;
            }
            if (status == 416) {
                Files.deleteIfExists(part); // the part file does not fit the server's file
                throw new Unreachable("HTTP 416 for the rest of a partial download, which was discarded");
            }
            boolean resumed = status == 206 && have > 0 && contentRangeStart(resp) == have;
            if (status != 200 && !resumed) {
                throw new Unreachable("HTTP " + status);
            }
            if (!resumed && have > 0) {
                have = 0; // the server sends the whole file
            }
            copy(source, file, url, body, part, have);
        }
        return true;
    }

    private static long contentRangeStart(HttpResponse<?> resp) {
        // "bytes START-END/TOTAL"
        String cr = resp.headers().firstValue("Content-Range").orElse("");
        Matcher m = CONTENT_RANGE.matcher(cr);
        return m.lookingAt() ? Long.parseLong(m.group(1)) : -1;
    }

    private void copy(String source, PackageFile file, URI url, InputStream body, Path part, long from)
            throws IOException {
        AtomicLong lastData = new AtomicLong(System.nanoTime());
        AtomicBoolean stalled = new AtomicBoolean();
        ScheduledFuture<?> guard = watchdog.scheduleAtFixedRate(() -> {
            if (System.nanoTime() - lastData.get() > stallTimeout.toNanos() && stalled.compareAndSet(false, true)) {
                try {
                    body.close(); // the blocked read then fails
                } catch (IOException ignored) {
                    // the read fails either way
                }
            }
        }, 1, 1, TimeUnit.SECONDS);
        long got = from;
        long lastNote = System.nanoTime();
        try (OutputStream out = Files.newOutputStream(part, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                from > 0 ? StandardOpenOption.APPEND : StandardOpenOption.TRUNCATE_EXISTING)) {
            byte[] buf = new byte[1 << 16];
            int n;
            while (true) {
                try {
                    n = body.read(buf);
                } catch (IOException e) {
                    throw new CorpusException("source " + source + ": download of " + url + " broke off after "
                            + got + " of " + file.size() + " bytes (" + (stalled.get() ? "no data for "
                            + stallTimeout.toSeconds() + " s" : reason(e)) + "); run again to continue it", e);
                }
                if (n < 0) {
                    break;
                }
                lastData.set(System.nanoTime());
                got += n;
                if (got > file.size()) {
                    break;
                }
                out.write(buf, 0, n);
                if (System.nanoTime() - lastNote > 10_000_000_000L) {
                    lastNote = System.nanoTime();
                    progress.accept(String.format("%s: %s %.1f of %.1f MB", source, file.fileName(), got / 1e6,
                            file.size() / 1e6));
                }
            }
        } finally {
            guard.cancel(false);
        }
        if (got > file.size()) {
            Files.deleteIfExists(part);
            throw new CorpusException("source " + source + ": " + url + " sends more than the " + file.size()
                    + " bytes of the pinned " + file.fileName() + ": not the pinned file (nothing was kept)");
        }
        if (got < file.size()) {
            Files.deleteIfExists(part);
            throw new CorpusException("source " + source + ": " + url + " sent " + got + " bytes, but the pinned "
                    + file.fileName() + " has " + file.size() + ": the file there is truncated or not the pinned one");
        }
    }

    private static void verify(String source, PackageFile file, URI url, Path part) throws IOException {
        String actual = sha256(part);
        if (!actual.equals(file.sha256())) {
            Files.deleteIfExists(part);
            throw new CorpusException("source " + source + ": checksum mismatch for " + file.fileName() + " from "
                    + url + ": SHA-256 " + actual + ", pinned " + file.sha256() + " (nothing was kept)");
        }
    }

    /** The SHA-256 of a file's contents, in lower-case hex. */
    static String sha256(Path f) throws IOException {
        MessageDigest md = newSha256();
        try (InputStream in = Files.newInputStream(f)) {
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) >= 0) {
                md.update(buf, 0, n);
            }
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /** The SHA-256 of bytes, in lower-case hex. */
    static String sha256(byte[] b) {
        return HexFormat.of().formatHex(newSha256().digest(b));
    }

    private static MessageDigest newSha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JDK has no SHA-256", e);
        }
    }

    private static String reason(IOException e) {
        return e.getMessage() == null || e.getMessage().isBlank() ? "I/O error" : e.getMessage();
    }

    @Override
    public void close() {
        watchdog.shutdownNow();
        client.close();
    }
}
