package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.GoldenModel;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.generate.Generator;
import io.based4j.json.Json;
import io.based4j.model.BasedModel;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Requests past their timeout on the CPU backend and the golden tiny model: the engine stops them at its next step
 * and frees their slots; the server answers 504, or ends a stream with {@code finish_reason "length"}; a body that
 * does not arrive in time is answered 408 and its connection closed.
 */
class RequestTimeoutTest {
    static final int[] PROMPT = {464, 318, 257, 286, 262, 11, 290};
    /**
     * Tokens of a generation that runs for many seconds on the tiny model (about a millisecond a token), so that
     * any timeout of the tests below ends it first.
     */
    static final int LONG = 30_000;

    static CpuBackend backend;
    static BasedModel model;
    static Gpt2Tokenizer tokenizer;
    static HttpClient client;

    @BeforeAll
    static void load() {
        backend = new CpuBackend();
        model = BasedModel.load(GoldenModel.dir(), backend);
        tokenizer = Gpt2Tokenizer.load();
        client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    }

    @AfterAll
    static void unload() {
        model.close();
        backend.close();
    }

    static Engine engine(int slots) {
        return new Engine(model, tokenizer, new EngineOptions(slots, LONG + 16, slots - 1 + 64, 4));
    }

    static OpenAiServer server(Engine engine, Duration requestTimeout, Duration bodyTimeout) throws Exception {
        return new OpenAiServer(engine, tokenizer, new ServerOptions(ServerOptions.LOOPBACK, 0, "golden-tiny", null)
                .withRequestTimeout(requestTimeout).withBodyTimeout(bodyTimeout));
    }

    static HttpResponse<String> post(OpenAiServer server, String body) throws Exception {
        return client.send(HttpRequest.newBuilder(URI.create(server.url() + "/v1/completions"))
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    /** Waits until the engine holds no request (slots are freed at its step after a request ends). */
    static EngineMetrics idle(Engine engine) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(EngineTest.WAIT_S);
        while ((engine.metrics().running() > 0 || engine.metrics().queueDepth() > 0) && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        return engine.metrics();
    }

    @Test
    void aRequestPastItsTimeoutIsStoppedWithWhatItGenerated() throws Exception {
        GenerationRequest request = GenerationRequest.of(PROMPT, 200, SamplingParams.greedy());
        GenerationResult solo = new Generator(model, tokenizer).generate(List.of(request), null).get(0);
        // one second: the first three tokens of the tiny model take milliseconds
        Duration timeout = Duration.ofSeconds(1);
        CountDownLatch third = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        try (Engine engine = engine(1)) {
            EngineTest.Recorder streamed = new EngineTest.Recorder();
            RequestHandle stopped = engine.submit(request, -1, timeout, new StreamListener() {
                @Override
                public void onToken(int tokenId, String text) {
                    streamed.onToken(tokenId, text);
                    if (streamed.tokens.size() == 3 && tokenId >= 0) {
                        third.countDown();
                        await(release); // holds the engine (and so the request) past its timeout
                    }
                }

                @Override
                public void onError(Throwable error) {
                    streamed.onError(error);
                }
            });
            // waiting behind it for the one slot: past its own timeout before it gets there
            RequestHandle queued = engine.submit(request, -1, Duration.ofMillis(1), StreamListener.none());
            // and one without a timeout, which gets the slot once the others are gone
            RequestHandle after = engine.submit(request, StreamListener.none());
            assertTrue(third.await(EngineTest.WAIT_S, TimeUnit.SECONDS));
            Thread.sleep(timeout.toMillis() + 100);
            release.countDown();

            RequestTimeoutException e = assertInstanceOf(RequestTimeoutException.class,
                    EngineTest.failure(stopped));
            assertEquals(timeout, e.timeout());
            assertArrayEquals(Arrays.copyOf(solo.tokens(), 3), e.partial().tokens());
            assertEquals(GenerationResult.Finish.LENGTH, e.partial().finish());
            assertEquals("request " + stopped.id() + " ran past its timeout of 1 s after 3 generated tokens",
                    e.getMessage());
            assertEquals(e, streamed.error, "the listener hears why its request ended");
            assertEquals(e.partial().text(), streamed.text.toString(), "the listener got all of the text");
            RequestTimeoutException q = assertInstanceOf(RequestTimeoutException.class, EngineTest.failure(queued));
            assertEquals(0, q.partial().tokens().length);
            assertEquals("request " + queued.id() + " ran past its timeout of 0.001 s after 0 generated tokens",
                    q.getMessage());
            EngineTest.assertSameResult(solo, EngineTest.await(after), "the request that got the freed slot");
            EngineMetrics m = idle(engine);
            assertEquals(2, m.requestsTimedOut());
            assertEquals(1, m.requestsFinished());
            assertEquals(0, m.requestsCancelled() + m.requestsFailed());
            assertThrows(IllegalArgumentException.class,
                    () -> engine.submit(request, -1, Duration.ofSeconds(-1), StreamListener.none()));
        }
    }

    private static void await(CountDownLatch latch) {
        try {
            if (!latch.await(EngineTest.WAIT_S, TimeUnit.SECONDS)) {
                throw new IllegalStateException("the test did not release the engine");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Test
    void aCompletionPastTheTimeoutIsAnswered504AndItsSlotFreed() throws Exception {
        try (Engine engine = engine(2);
             OpenAiServer server = server(engine, Duration.ofMillis(500), ServerOptions.DEFAULT_BODY_TIMEOUT)) {
            long start = System.nanoTime();
            HttpResponse<String> r = post(server, "{\"prompt\": [464], \"max_tokens\": " + LONG
                    + ", \"temperature\": 0}");
            double seconds = (System.nanoTime() - start) / 1e9;
            assertEquals(504, r.statusCode(), r.body());
            Map<?, ?> error = (Map<?, ?>) Json.parseObject(r.body()).get("error");
            assertEquals("the request ran past this server's request timeout of 0.5 s", error.get("message"));
            assertEquals("server_error", error.get("type"));
            assertEquals("timeout", error.get("code"));
            assertTrue(seconds >= 0.5, "answered after " + seconds + " s");
            EngineMetrics m = idle(engine);
            assertEquals(1, m.requestsTimedOut());
            assertEquals(0, m.running(), "the slot is free");
            assertTrue(m.tokensGenerated() < LONG, "stopped before its end: " + m.tokensGenerated() + " tokens");
            Map<String, Double> samples = MetricsTest.samples(MetricsTest.send(server, "/metrics", null).body());
            assertEquals(1.0, samples.get("based4j_requests_total{outcome=\"timed_out\"}"));
            assertEquals(0.0, samples.get("based4j_requests_total{outcome=\"cancelled\"}"));
        }
    }

    @Test
    void aStreamPastTheTimeoutEndsAsOneCutByLength() throws Exception {
        try (Engine engine = engine(2);
             OpenAiServer server = server(engine, Duration.ofSeconds(1), ServerOptions.DEFAULT_BODY_TIMEOUT)) {
            HttpResponse<String> r = post(server, "{\"prompt\": [464], \"max_tokens\": " + LONG
                    + ", \"temperature\": 0, \"stream\": true}");
            assertEquals(200, r.statusCode(), r.body());
            assertTrue(r.body().endsWith("data: [DONE]\n\n"), r.body());
            String[] events = r.body().split("\n\n");
            StringBuilder text = new StringBuilder();
            for (int i = 0; i < events.length - 1; i++) {
                Map<?, ?> choice = (Map<?, ?>) ((List<?>) Json.parseObject(events[i].substring("data: ".length()))
                        .get("choices")).getFirst();
                text.append(choice.get("text"));
                assertEquals(i == events.length - 2 ? "length" : null, choice.get("finish_reason"), events[i]);
            }
            // the tiny model writes hundreds of tokens a second: a second's worth is there
            assertFalse(text.isEmpty(), "no text before the timeout");
            EngineMetrics m = idle(engine);
            assertEquals(1, m.requestsTimedOut());
            assertEquals(0, m.requestsCancelled());
            assertEquals(0, m.running());
        }
    }

    @Test
    void aBodyThatDoesNotArriveInTimeIsAnswered408() throws Exception {
        try (Engine engine = engine(1);
             OpenAiServer server = server(engine, ServerOptions.DEFAULT_REQUEST_TIMEOUT, Duration.ofMillis(300))) {
            try (Socket socket = new Socket(InetAddress.getLoopbackAddress(), server.port())) {
                socket.setSoTimeout((int) TimeUnit.SECONDS.toMillis(EngineTest.WAIT_S));
                OutputStream out = socket.getOutputStream();
                // the headers promise 100 bytes; 12 come, then nothing
                out.write(("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                        + "Content-Length: 100\r\n\r\n{\"prompt\": [").getBytes(StandardCharsets.UTF_8));
                out.flush();
                long start = System.nanoTime();
                InputStream in = socket.getInputStream();
                String response = new String(in.readAllBytes(), StandardCharsets.UTF_8); // until the server closes
                double seconds = (System.nanoTime() - start) / 1e9;
                assertTrue(response.startsWith("HTTP/1.1 408"), response);
                assertTrue(response.toLowerCase(Locale.ROOT).contains("connection: close"), response);
                Map<?, ?> error = (Map<?, ?>) Json.parseObject(response.substring(response.indexOf("\r\n\r\n") + 4))
                        .get("error");
                assertEquals("the request body did not arrive within this server's body timeout of 0.3 s",
                        error.get("message"));
                assertEquals("request_timeout", error.get("code"));
                assertTrue(seconds >= 0.3, "answered after " + seconds + " s");
            }
            // the server goes on serving, and the engine never saw the request
            HttpResponse<String> health = MetricsTest.send(server, "/health", null);
            assertEquals(200, health.statusCode());
            assertEquals(0, engine.metrics().steps());
            HttpResponse<String> ok = post(server, "{\"prompt\": [464], \"max_tokens\": 3, \"temperature\": 0}");
            assertEquals(200, ok.statusCode(), ok.body());
        }
    }
}
