package io.based4j.train.corpus;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** A package registry on the loopback interface: serves files by path, answers range requests, 404 otherwise. */
final class TestRegistry implements AutoCloseable {
    private static final Pattern RANGE = Pattern.compile("bytes=(\\d+)-");
    private final HttpServer server;
    /** A thread per answer, so that a stalled answer does not hold up the others. */
    private final ExecutorService executor = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "test registry");
        t.setDaemon(true);
        return t;
    });
    private final Map<String, byte[]> files = new ConcurrentHashMap<>();
    /** Paths whose first answer sends this many bytes, then nothing for {@link #STALL_MS} ms. */
    final Map<String, Integer> stallAfter = new ConcurrentHashMap<>();
    /** How long a stalled answer stays silent: longer than the downloader's stall timeout in the tests. */
    static final long STALL_MS = 4000;
    /** Every request, as "PATH" or "PATH range=N-". */
    final List<String> requests = new CopyOnWriteArrayList<>();

    TestRegistry() throws IOException {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/", this::handle);
        server.setExecutor(executor);
        server.start();
    }

    /** The server's root URL, ending in '/'. */
    URI root() {
        return URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/");
    }

    /** Debian pools "debian/pool/" and "security/pool/updates/", and npm at "npm/", all on this server. */
    Registries registries() {
        return new Registries(List.of(root().resolve("debian/pool/"), root().resolve("security/pool/updates/")),
                root().resolve("npm/"));
    }

    void put(String path, byte[] body) {
        files.put(path, body);
    }

    private void handle(HttpExchange ex) throws IOException {
        String path = ex.getRequestURI().getRawPath().substring(1);
        String range = ex.getRequestHeaders().getFirst("Range");
        requests.add(range == null ? path : path + " range=" + range.substring("bytes=".length()));
        byte[] body = files.get(path);
        try (ex) {
            if (body == null) {
                ex.sendResponseHeaders(404, -1);
                return;
            }
            Matcher m = range == null ? null : RANGE.matcher(range);
            int from = m != null && m.matches() ? Integer.parseInt(m.group(1)) : 0;
            if (from > 0) {
                ex.getResponseHeaders().add("Content-Range", "bytes " + from + "-" + (body.length - 1) + "/"
                        + body.length);
            }
            ex.sendResponseHeaders(from > 0 ? 206 : 200, body.length - from);
            try (OutputStream out = ex.getResponseBody()) {
                Integer stall = stallAfter.remove(path);
                if (stall != null) {
                    out.write(body, from, stall - from);
                    out.flush();
                    try {
                        Thread.sleep(STALL_MS);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                    return; // the connection closes without the rest
                }
                out.write(body, from, body.length - from);
            }
        }
    }

    @Override
    public void close() {
        server.stop(0);
        executor.shutdownNow();
    }
}
