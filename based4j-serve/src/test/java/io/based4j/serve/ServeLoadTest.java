package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.GoldenModel;
import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.json.Json;
import io.based4j.sampling.SamplingParams;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;

/**
 * The server under load on the CPU backend and the golden tiny model: 64 concurrent clients, each sending a few
 * requests, streamed or whole, some of them disconnecting mid-stream and some malformed. Every valid request gets
 * exactly the text and finish reason of a solo greedy run, every bad one its status and the field it names, every
 * disconnect is counted as a cancel, and afterwards no sequence holds a slot and nothing waits. A second test fills
 * a small queue on purpose for its 429s.
 */
class ServeLoadTest {
    static final int CLIENTS = 64;
    static final int REQUESTS_PER_CLIENT = 4;
    static final int SLOTS = 16;
    /** Tokens per sequence: the malformed requests' "prompt past the limit" is measured against it. */
    static final int LIMIT = 512;
    static final int VOCAB = 1000;
    /** max_tokens of a request its client abandons: far more than are made before the server sees it gone. */
    static final int ABANDONED_TOKENS = 448;
    /** Bound on any wait: the whole load takes a few seconds on two cores. */
    static final long WAIT_S = 120;
    static final long SEED = 20_261_130;
    /**
     * The load test's prefix cache: room for some 15 of the tiny model's prefix states (about 35 KB each), fewer
     * than the 20-odd distinct prefixes of the clients' prompts, so it also evicts under the load.
     */
    static final long PREFIX_CACHE_BYTES = 512 << 10;

    /** What a client sends, and what must come back. */
    enum Kind { STREAMED, WHOLE, DISCONNECT, MALFORMED }

    /** A malformed body, the status it must get and the field its error must name (null: none). */
    record Bad(String name, String body, int status, String param) { }

    static final List<Bad> BAD = List.of(
            new Bad("bad JSON", "{\"prompt\": [1, 2,", 400, null),
            new Bad("not an object", "[1, 2, 3]", 400, null),
            new Bad("max_tokens a string", "{\"prompt\": [1, 2], \"max_tokens\": \"5\", \"stream\": true}", 400,
                    "max_tokens"),
            new Bad("prompt an object", "{\"prompt\": {\"text\": \"a\"}}", 400, "prompt"),
            new Bad("stream a string", "{\"prompt\": [1, 2], \"stream\": \"yes\"}", 400, "stream"),
            new Bad("temperature out of range", "{\"prompt\": [1, 2], \"temperature\": 5}", 400, "temperature"),
            new Bad("huge max_tokens", "{\"prompt\": [1, 2], \"max_tokens\": 1000000000, \"stream\": true}", 400,
                    "max_tokens"),
            new Bad("max_tokens past 32 bits", "{\"prompt\": [1, 2], \"max_tokens\": 99999999999}", 400,
                    "max_tokens"),
            new Bad("unknown model", "{\"model\": \"gpt-unknown\", \"prompt\": [1, 2], \"stream\": true}", 404,
                    "model"),
            new Bad("prompt past the limit", "{\"prompt\": " + Json.write(new int[LIMIT + 1]) + ", \"max_tokens\": 1}",
                    400, "prompt"),
            new Bad("prompt and max_tokens past the limit", "{\"prompt\": " + Json.write(new int[LIMIT - 8])
                    + ", \"max_tokens\": 16, \"stream\": true}", 400, "prompt"),
            new Bad("token outside the vocabulary", "{\"prompt\": [1, 5000]}", 400, "prompt"));

    /** A valid greedy request and what a solo run of it gives. */
    record Valid(int[] prompt, int maxTokens, GenerationResult want) {
        String body(boolean stream) {
            return "{\"model\": \"golden-tiny\", \"prompt\": " + Json.write(prompt) + ", \"max_tokens\": " + maxTokens
                    + ", \"temperature\": 0" + (stream ? ", \"stream\": true}" : "}");
        }
    }

    static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10)).build();

    static HttpRequest post(OpenAiServer server, String body) {
        return HttpRequest.newBuilder(URI.create(server.url() + "/v1/completions"))
                .header("Content-Type", "application/json").timeout(Duration.ofSeconds(WAIT_S))
                .POST(HttpRequest.BodyPublishers.ofString(body)).build();
    }

    /** The solo greedy results of {@code count} random prompts of 1 to {@code maxPrompt} tokens. */
    static List<Valid> references(ServeFixture f, SplittableRandom r, int count, int maxPrompt, int minTokens,
                                  int maxTokens) {
        List<Valid> out = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            int[] prompt = r.ints(1 + r.nextInt(maxPrompt), 0, VOCAB).toArray();
            int tokens = minTokens + r.nextInt(maxTokens - minTokens + 1);
            out.add(new Valid(prompt, tokens, f.solo(GenerationRequest.of(prompt, tokens, SamplingParams.greedy()))));
        }
        return out;
    }

    /** The text and finish reason of a streamed completion, read to its end; fails on anything out of shape. */
    record Streamed(String text, String finish, int events) { }

    static Streamed readStream(InputStream body, int stopAfter) throws IOException {
        BufferedReader in = new BufferedReader(new InputStreamReader(body, StandardCharsets.UTF_8));
        StringBuilder text = new StringBuilder();
        String finish = null;
        int events = 0;
        for (String line; events < stopAfter && (line = in.readLine()) != null; ) {
            if (line.isEmpty()) {
                continue;
            }
            assertTrue(line.startsWith("data: "), line);
            String data = line.substring("data: ".length());
            if (data.equals("[DONE]")) {
                return new Streamed(text.toString(), finish, events);
            }
            events++;
            Map<String, Object> chunk = Json.parseObject(data);
            assertNull(chunk.get("error"), data);
            assertNull(finish, "a chunk after the finish reason: " + data);
            Map<?, ?> choice = (Map<?, ?>) ((List<?>) chunk.get("choices")).getFirst();
            text.append((String) choice.get("text"));
            finish = (String) choice.get("finish_reason");
        }
        if (events < stopAfter) {
            fail("the stream ended without data: [DONE] after " + events + " events");
        }
        return new Streamed(text.toString(), finish, events);
    }

    static void assertSame(Valid v, String text, String finish, String what) {
        assertEquals(v.want().text(), text, what + ": text");
        assertEquals(OpenAiServer.finishReason(v.want()), finish, what + ": finish reason");
    }

    static void awaitTrue(BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("waited " + WAIT_S + " s for " + what);
            }
            Thread.sleep(5);
        }
    }

    static void assertIdle(ServeFixture f, int slots) throws Exception {
        awaitTrue(() -> f.engine.metrics().running() == 0 && f.engine.metrics().queueDepth() == 0,
                "the engine to become idle: " + f.engine.metrics());
        EngineMetrics m = f.engine.metrics();
        assertEquals(slots, m.slots(), m.toString());
        String metrics = HTTP.send(HttpRequest.newBuilder(URI.create(f.server.url() + "/metrics")).build(),
                HttpResponse.BodyHandlers.ofString()).body();
        for (String sample : List.of("based4j_running_sequences 0", "based4j_queue_depth 0", "based4j_slots " + slots)) {
            assertTrue(metrics.lines().anyMatch(sample::equals), "/metrics lacks '" + sample + "':\n" + metrics);
        }
    }

    @Test
    void sixtyFourClientsWithDisconnectsAndMalformedRequestsGetExactlyTheirSoloResults() throws Exception {
        // with a prefix cache, as serve runs: the clients' prompts repeat, so some start from a kept state
        try (ServeFixture f = new ServeFixture(GoldenModel.dir(), "golden-tiny",
                new EngineOptions(SLOTS, LIMIT, SLOTS - 1 + 64 + 1, CLIENTS, PREFIX_CACHE_BYTES), null)) {
            SplittableRandom r = new SplittableRandom(SEED);
            // prompts up to 150 tokens are fed in pieces across steps beside the running streams
            List<Valid> valid = references(f, r, 40, 150, 1, 64);
            List<Valid> abandoned = references(f, r, 4, LIMIT - ABANDONED_TOKENS, ABANDONED_TOKENS, ABANDONED_TOKENS);
            for (Valid v : abandoned) {
                assertEquals(ABANDONED_TOKENS, v.want().tokens().length, "an abandoned request would end early");
            }
            // a deck of exactly known kinds, shuffled and dealt to the clients
            List<Kind> deck = new ArrayList<>();
            int total = CLIENTS * REQUESTS_PER_CLIENT;
            int disconnects = total / 6;
            int malformed = 2 * BAD.size();
            int whole = total / 6;
            for (int i = 0; i < total; i++) {
                deck.add(i < disconnects ? Kind.DISCONNECT : i < disconnects + malformed ? Kind.MALFORMED
                        : i < disconnects + malformed + whole ? Kind.WHOLE : Kind.STREAMED);
            }
            Collections.shuffle(deck, new Random(SEED));
            Map<Kind, AtomicInteger> done = new ConcurrentHashMap<>();
            Map<String, AtomicInteger> badSeen = new ConcurrentHashMap<>();
            AtomicInteger badIndex = new AtomicInteger();
            long t0 = System.nanoTime();
            AtomicBoolean loading = new AtomicBoolean(true);
            int[] peak = new int[2]; // most sequences running, most requests waiting, seen while the load ran
            Thread sampler = Thread.ofVirtual().start(() -> {
                while (loading.get()) {
                    EngineMetrics now = f.engine.metrics();
                    peak[0] = Math.max(peak[0], now.running());
                    peak[1] = Math.max(peak[1], now.queueDepth());
                    LockSupport.parkNanos(200_000);
                }
            });
            try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor()) {
                List<Future<?>> futures = new ArrayList<>();
                for (int c = 0; c < CLIENTS; c++) {
                    List<Kind> mine = deck.subList(c * REQUESTS_PER_CLIENT, (c + 1) * REQUESTS_PER_CLIENT);
                    SplittableRandom cr = r.split();
                    futures.add(clients.submit(() -> {
                        for (Kind kind : mine) {
                            Thread.sleep(cr.nextInt(20)); // arrivals spread over the running batch's steps
                            switch (kind) {
                                case STREAMED -> {
                                    Valid v = valid.get(cr.nextInt(valid.size()));
                                    HttpResponse<InputStream> resp = HTTP.send(post(f.server, v.body(true)),
                                            HttpResponse.BodyHandlers.ofInputStream());
                                    assertEquals(200, resp.statusCode());
                                    try (InputStream body = resp.body()) {
                                        Streamed s = readStream(body, Integer.MAX_VALUE);
                                        assertSame(v, s.text(), s.finish(), "streamed");
                                    }
                                }
                                case WHOLE -> {
                                    Valid v = valid.get(cr.nextInt(valid.size()));
                                    HttpResponse<String> resp = HTTP.send(post(f.server, v.body(false)),
                                            HttpResponse.BodyHandlers.ofString());
                                    assertEquals(200, resp.statusCode(), resp.body());
                                    Map<?, ?> choice = (Map<?, ?>) ((List<?>) Json.parseObject(resp.body())
                                            .get("choices")).getFirst();
                                    assertSame(v, (String) choice.get("text"), (String) choice.get("finish_reason"),
                                            "whole");
                                }
                                case DISCONNECT -> {
                                    Valid v = abandoned.get(cr.nextInt(abandoned.size()));
                                    HttpResponse<InputStream> resp = HTTP.send(post(f.server, v.body(true)),
                                            HttpResponse.BodyHandlers.ofInputStream());
                                    assertEquals(200, resp.statusCode());
                                    // gone right after the headers (possibly still queued), or after a few chunks
                                    int keep = cr.nextInt(4);
                                    try (InputStream body = resp.body()) {
                                        Streamed s = readStream(body, keep);
                                        assertTrue(v.want().text().startsWith(s.text()), "a start of the solo text");
                                    }
                                }
                                case MALFORMED -> {
                                    Bad bad = BAD.get(badIndex.getAndIncrement() % BAD.size());
                                    HttpResponse<String> resp = HTTP.send(post(f.server, bad.body()),
                                            HttpResponse.BodyHandlers.ofString());
                                    assertEquals(bad.status(), resp.statusCode(), bad.name() + ": " + resp.body());
                                    Map<?, ?> error = (Map<?, ?>) Json.parseObject(resp.body()).get("error");
                                    assertEquals(bad.param(), error.get("param"), bad.name() + ": " + resp.body());
                                    assertTrue(!((String) error.get("message")).isEmpty(), bad.name());
                                    badSeen.computeIfAbsent(bad.name(), k -> new AtomicInteger()).incrementAndGet();
                                }
                            }
                            done.computeIfAbsent(kind, k -> new AtomicInteger()).incrementAndGet();
                        }
                        return null;
                    }));
                }
                for (Future<?> future : futures) {
                    future.get(WAIT_S, TimeUnit.SECONDS);
                }
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            loading.set(false);
            sampler.join();
            // 64 clients on 16 slots: the load filled every slot and made requests wait
            assertEquals(SLOTS, peak[0], "most sequences running at once");
            assertTrue(peak[1] > 0, "no request ever waited in the queue");
            assertEquals(BAD.size(), badSeen.size(), "every kind of malformed request was sent: " + badSeen);

            int validCount = done.get(Kind.STREAMED).get() + done.get(Kind.WHOLE).get();
            assertEquals(total - disconnects - malformed, validCount);
            assertEquals(disconnects, done.get(Kind.DISCONNECT).get());
            // every disconnect is seen at the server's next write to the gone client, long before its last token
            awaitTrue(() -> f.engine.metrics().requestsCancelled() == disconnects,
                    disconnects + " cancels: " + f.engine.metrics());
            assertIdle(f, SLOTS);
            EngineMetrics m = f.engine.metrics();
            assertEquals(validCount, m.requestsFinished(), m.toString());
            assertEquals(disconnects, m.requestsCancelled(), m.toString());
            assertEquals(0, m.requestsFailed(), m.toString());
            assertEquals(0, m.requestsRejected(), m.toString());
            assertEquals(0, m.requestsTimedOut(), m.toString());
            EngineMetrics.PrefixCacheMetrics cache = m.prefixCache();
            assertTrue(cache.hits() > 0, "no prompt started from a kept prefix: " + cache);
            assertTrue(cache.bytes() <= PREFIX_CACHE_BYTES, "the prefix cache is over its budget: " + cache);
            assertTrue(cache.evictions() > 0, "the prefix cache never evicted: " + cache);
            System.err.printf("load: %d requests of %d clients in %.1f s (%d valid, %d disconnects, %d malformed),"
                    + " %d steps, up to %d waiting; prefix cache %s%n", total, CLIENTS, seconds, validCount, disconnects,
                    malformed, m.steps(), peak[1], cache);

            // every slot taken again at once, after all of that: each gives its solo result (no state left over)
            List<CompletableFuture<HttpResponse<String>>> wave = new ArrayList<>();
            for (int i = 0; i < SLOTS; i++) {
                wave.add(HTTP.sendAsync(post(f.server, valid.get(i).body(false)), HttpResponse.BodyHandlers.ofString()));
            }
            for (int i = 0; i < SLOTS; i++) {
                HttpResponse<String> resp = wave.get(i).get(WAIT_S, TimeUnit.SECONDS);
                Map<?, ?> choice = (Map<?, ?>) ((List<?>) Json.parseObject(resp.body()).get("choices")).getFirst();
                assertSame(valid.get(i), (String) choice.get("text"), (String) choice.get("finish_reason"),
                        "after the load, request " + i);
            }
            assertIdle(f, SLOTS);
        }
    }

    @Test
    void aFullQueueAnswers429AndTakesNoneOfARequestItCannotHoldWhole() throws Exception {
        // one slot and a queue of two: a long request holds the slot while the queue is filled on purpose; the tiny
        // model makes some 5,000 tokens a second, so the holder would run for a minute unless cancelled
        int limit = 300_000;
        try (ServeFixture f = new ServeFixture(GoldenModel.dir(), "golden-tiny",
                new EngineOptions(1, limit, 64, 2), null)) {
            SplittableRandom r = new SplittableRandom(SEED + 1);
            List<Valid> waiting = references(f, r, 2, 30, 8, 8);
            Valid holder = new Valid(new int[] {464}, limit - 16, null);
            HttpResponse<InputStream> held = HTTP.send(post(f.server, holder.body(true)),
                    HttpResponse.BodyHandlers.ofInputStream());
            assertEquals(200, held.statusCode());
            awaitTrue(() -> f.engine.metrics().running() == 1, "the long request to hold the slot");

            CompletableFuture<HttpResponse<String>> first = HTTP.sendAsync(post(f.server, waiting.get(0).body(false)),
                    HttpResponse.BodyHandlers.ofString());
            awaitTrue(() -> f.engine.metrics().queueDepth() == 1, "the first waiting request to be queued");

            // two choices, room for one: the first choice is queued, the second refused, and the first withdrawn
            HttpResponse<String> both = HTTP.send(post(f.server, "{\"prompt\": [1, 2], \"n\": 2, \"max_tokens\": 4}"),
                    HttpResponse.BodyHandlers.ofString());
            assertRateLimited(both);
            awaitTrue(() -> f.engine.metrics().queueDepth() == 1, "the withdrawn choice to leave the queue");

            CompletableFuture<HttpResponse<String>> second = HTTP.sendAsync(post(f.server, waiting.get(1).body(false)),
                    HttpResponse.BodyHandlers.ofString());
            awaitTrue(() -> f.engine.metrics().queueDepth() == 2, "the second waiting request to be queued");
            HttpResponse<String> full = HTTP.send(post(f.server, waiting.get(0).body(true)),
                    HttpResponse.BodyHandlers.ofString());
            assertRateLimited(full);

            held.body().close(); // the holder goes away: its slot frees and the waiting requests run
            for (var pair : List.of(Map.entry(first, waiting.get(0)), Map.entry(second, waiting.get(1)))) {
                HttpResponse<String> resp = pair.getKey().get(WAIT_S, TimeUnit.SECONDS);
                assertEquals(200, resp.statusCode(), resp.body());
                Map<?, ?> choice = (Map<?, ?>) ((List<?>) Json.parseObject(resp.body()).get("choices")).getFirst();
                assertSame(pair.getValue(), (String) choice.get("text"), (String) choice.get("finish_reason"),
                        "a request that waited");
            }
            assertIdle(f, 1);
            EngineMetrics m = f.engine.metrics();
            assertEquals(2, m.requestsRejected(), "the second choice and the request at a full queue: " + m);
            assertEquals(2, m.requestsCancelled(), "the withdrawn first choice and the holder: " + m);
            assertEquals(2, m.requestsFinished(), m.toString());
            assertEquals(0, m.requestsFailed(), m.toString());
        }
    }

    static void assertRateLimited(HttpResponse<String> resp) {
        assertEquals(429, resp.statusCode(), resp.body());
        assertEquals("1", resp.headers().firstValue("Retry-After").orElse(null), "Retry-After");
        Map<?, ?> error = (Map<?, ?>) Json.parseObject(resp.body()).get("error");
        assertEquals("rate_limit_exceeded", error.get("code"), resp.body());
        assertTrue(((String) error.get("message")).contains("queue is full"), resp.body());
    }
}
