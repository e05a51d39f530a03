package io.based4j.serve;

import com.sun.net.httpserver.HttpExchange;
import io.based4j.json.Json;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Reads a request's body within a time limit, so that a client sending it slowly (or not at all) cannot hold a
 * connection open: past the limit it is answered 408 and its connection is closed.
 *
 * <p>The body is read on a virtual thread of its own while the exchange's thread waits; at the limit the exchange's
 * thread writes the answer, then interrupts the reader, which closes the connection under its blocked read.
 */
final class BodyReader {
    private BodyReader() {
    }

    /** The exchange was answered already (408): nothing more is to be sent on it. */
    static final class Answered extends IOException {
        Answered(String message) {
            super(message);
        }
    }

    /**
     * At most {@code limit} bytes of the body and one more (so that a larger body shows), read within
     * {@code timeout} (zero: no limit).
     *
     * @throws Answered when the body did not arrive in time: the client has been answered 408
     * @throws IOException when the client went away
     */
    static byte[] read(HttpExchange ex, int limit, Duration timeout) throws IOException {
        InputStream in = ex.getRequestBody();
        if (timeout.isZero()) {
            return in.readNBytes(limit + 1);
        }
        CompletableFuture<byte[]> body = new CompletableFuture<>();
        Thread reader = Thread.ofVirtual().name("based4j-body").start(() -> {
            try {
                body.complete(in.readNBytes(limit + 1));
            } catch (Throwable e) {
                body.completeExceptionally(e);
            }
        });
        try {
            return body.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof IOException io) {
                throw io;
            }
            throw new IllegalStateException("reading the request body failed: " + e.getCause(), e.getCause());
        } catch (InterruptedException e) {
            reader.interrupt();
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted while reading the request body");
        } catch (TimeoutException e) {
            String message = "the request body did not arrive within this server's body timeout of "
                    + RequestTimeoutException.seconds(timeout);
            answer(ex, reader, message);
            throw new Answered(message);
        }
    }

    /**
     * Writes the 408 while the reader is still blocked, then interrupts the reader (which closes the connection)
     * and ends the exchange: closing its output first would wait for the rest of the body.
     */
    private static void answer(HttpExchange ex, Thread reader, String message) throws IOException {
        ApiException error = new ApiException(408, "invalid_request_error", null, "request_timeout", message);
        byte[] bytes = Json.write(error.body()).getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.getResponseHeaders().set("Connection", "close");
        OutputStream out = null;
        try {
            ex.sendResponseHeaders(408, bytes.length);
            out = ex.getResponseBody();
            out.write(bytes);
            out.flush();
        } finally {
            stop(reader);
            try {
                if (out != null) {
                    out.close(); // the answer is out; this ends the exchange and closes the connection
                }
            } catch (IOException ignored) {
                // the connection is closed already
            }
            ex.close();
        }
    }

    /** Interrupts the reader, which closes the connection under its read, and waits for it to end. */
    private static void stop(Thread reader) {
        reader.interrupt();
        boolean interrupted = false;
        while (reader.isAlive()) {
            try {
                reader.join();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }
}
