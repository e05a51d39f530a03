package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.GoldenModel;
import io.based4j.backend.Backend;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.generate.Generator;
import io.based4j.json.Json;
import io.based4j.model.BasedModel;
import io.based4j.model.Session;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The HTTP API on the CPU backend and the golden tiny model, through a real client on an ephemeral port. */
class OpenAiServerTest {
    static final String KEY = "sk-test-key";
    /** The golden model's vocabulary is GPT-2's first 1000 tokens: these ids are all inside it. */
    static final int[] PROMPT = {464, 318, 257, 286, 262, 11, 290};
    static final String MODEL_ID = "golden-tiny";

    static ServeFixture fixture;
    static CpuBackend backend;
    static BasedModel model;
    static Gpt2Tokenizer tokenizer;
    static Engine engine;
    static OpenAiServer server;
    static HttpClient client;

    @BeforeAll
    static void start() throws Exception {
        fixture = new ServeFixture(GoldenModel.dir(), MODEL_ID, new EngineOptions(4, 256, 4 - 1 + 64 + 1, 16), KEY);
        backend = fixture.backend;
        model = fixture.model;
        tokenizer = fixture.tokenizer;
        engine = fixture.engine;
        server = fixture.server;
        client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    }

    @AfterAll
    static void stop() {
        fixture.close();
    }

    static HttpResponse<String> get(String path, String key) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(server.url() + path)).GET();
        if (key != null) {
            b.header("Authorization", "Bearer " + key);
        }
        return client.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> post(String path, String body, String key) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(server.url() + path))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body));
        if (key != null) {
            b.header("Authorization", "Bearer " + key);
        }
        return client.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    static String solo(int[] prompt, int maxTokens) {
        GenerationResult r = new Generator(model, tokenizer)
                .generate(List.of(GenerationRequest.of(prompt, maxTokens, SamplingParams.greedy())), null).get(0);
        return r.text();
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> error(HttpResponse<String> response) {
        Map<String, Object> error = (Map<String, Object>) Json.parseObject(response.body()).get("error");
        for (String field : List.of("message", "type", "param", "code")) {
            assertTrue(error.containsKey(field), "the error lacks '" + field + "': " + response.body());
        }
        assertTrue(response.headers().firstValue("Content-Type").orElse("").startsWith("application/json"));
        return error;
    }

    static String ids(int[] prompt) {
        return Json.write(prompt);
    }

    @Test
    void thePlaygroundPageIsServedAtTheRootAndWritesTextOnlyAsText() throws Exception {
        HttpResponse<String> r = get("/", null);  // no key needed to load the page; its requests send one
        assertEquals(200, r.statusCode(), r.body());
        assertEquals("text/html; charset=utf-8", r.headers().firstValue("Content-Type").orElse(""));
        assertTrue(r.headers().firstValue("Content-Security-Policy").orElse("").contains("default-src 'self'"));
        String page = r.body();
        for (String part : new String[] {"id=\"prompt\"", "id=\"max_tokens\"", "id=\"temperature\"",
            "id=\"top_p\"", "id=\"seed\"", "id=\"api_key\"", "fetch(\"/v1/completions\"", "stream: true",
            "data: ", "[DONE]"}) {
            assertTrue(page.contains(part), "the page has " + part);
        }
        // generated text is only ever set as textContent, never parsed as HTML
        assertFalse(page.contains("innerHTML"), "no innerHTML in the page");
        assertEquals(405, HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(server.url() + "/"))
                .POST(HttpRequest.BodyPublishers.ofString("x")).build(), HttpResponse.BodyHandlers.ofString())
                .statusCode());
    }

    @Test
    void healthAndModels() throws Exception {
        HttpResponse<String> health = get("/health", null);
        assertEquals(200, health.statusCode());
        assertEquals(Map.of("status", "ok"), Json.parseObject(health.body()));

        HttpResponse<String> models = get("/v1/models", KEY);
        assertEquals(200, models.statusCode(), models.body());
        Map<String, Object> list = Json.parseObject(models.body());
        assertEquals("list", list.get("object"));
        List<?> data = (List<?>) list.get("data");
        assertEquals(1, data.size());
        assertEquals(MODEL_ID, ((Map<?, ?>) data.get(0)).get("id"));
        assertEquals("model", ((Map<?, ?>) data.get(0)).get("object"));
    }

    @Test
    void greedyCompletionEqualsASoloRun() throws Exception {
        int maxTokens = 12;
        String want = solo(PROMPT, maxTokens);
        HttpResponse<String> r = post("/v1/completions", "{\"model\": \"" + MODEL_ID + "\", \"prompt\": "
                + ids(PROMPT) + ", \"max_tokens\": " + maxTokens + ", \"temperature\": 0}", KEY);
        assertEquals(200, r.statusCode(), r.body());
        Map<String, Object> body = Json.parseObject(r.body());
        assertTrue(((String) body.get("id")).startsWith("cmpl-"));
        assertEquals("text_completion", body.get("object"));
        assertEquals(MODEL_ID, body.get("model"));
        assertTrue(body.get("created") instanceof Long);
        Map<?, ?> choice = (Map<?, ?>) ((List<?>) body.get("choices")).get(0);
        assertEquals(want, choice.get("text"));
        assertEquals(0L, choice.get("index"));
        assertNull(choice.get("logprobs"));
        Map<?, ?> usage = (Map<?, ?>) body.get("usage");
        assertEquals((long) PROMPT.length, usage.get("prompt_tokens"));
        long completion = (Long) usage.get("completion_tokens");
        assertEquals(PROMPT.length + completion, usage.get("total_tokens"));
        // the golden model ends at max_tokens or at end-of-text, and the reason says which
        assertEquals(completion == maxTokens ? "length" : "stop", choice.get("finish_reason"));

        // a text prompt of in-vocabulary tokens, echoed back in front of its continuation
        int[] the = tokenizer.encode("The");
        HttpResponse<String> echoed = post("/v1/completions", "{\"prompt\": \"The\", \"max_tokens\": 5,"
                + " \"temperature\": 0, \"echo\": true}", KEY);
        assertEquals(200, echoed.statusCode(), echoed.body());
        Map<?, ?> echoChoice = (Map<?, ?>) ((List<?>) Json.parseObject(echoed.body()).get("choices")).get(0);
        assertEquals("The" + solo(the, 5), echoChoice.get("text"));
    }

    @Test
    void aStreamAsksForItsUsage() throws Exception {
        int maxTokens = 9;
        String body = "{\"prompt\": [" + ids(PROMPT) + ", " + ids(PROMPT) + "], \"max_tokens\": " + maxTokens
                + ", \"temperature\": 0, \"n\": 2";
        HttpResponse<String> whole = post("/v1/completions", body + "}", KEY);
        assertEquals(200, whole.statusCode(), whole.body());
        Object usage = Json.parseObject(whole.body()).get("usage");

        HttpResponse<String> r = post("/v1/completions", body
                + ", \"stream\": true, \"stream_options\": {\"include_usage\": true}}", KEY);
        assertEquals(200, r.statusCode(), r.body());
        List<String> events = new ArrayList<>(List.of(r.body().split("\n\n")));
        assertEquals("data: [DONE]", events.removeLast());
        Map<String, Object> last = Json.parseObject(events.removeLast().substring("data: ".length()));
        assertEquals(List.of(), last.get("choices"), "the usage chunk has no choices");
        assertEquals(usage, last.get("usage"), "the usage of the whole answer: 2 prompts once, 4 choices' tokens");
        for (String event : events) {
            Map<String, Object> chunk = Json.parseObject(event.substring("data: ".length()));
            assertTrue(chunk.containsKey("usage") && chunk.get("usage") == null, "usage: null in " + event);
        }
        // without stream_options no usage is sent; stream_options without stream is refused, as OpenAI does
        HttpResponse<String> plain = post("/v1/completions", body + ", \"stream\": true}", KEY);
        assertFalse(plain.body().contains("usage"), plain.body());
        HttpResponse<String> refused = post("/v1/completions", body
                + ", \"stream_options\": {\"include_usage\": true}}", KEY);
        assertEquals(400, refused.statusCode());
        assertTrue(refused.body().contains("stream_options"), refused.body());
        HttpResponse<String> wrongType = post("/v1/completions", body + ", \"stream\": true, "
                + "\"stream_options\": true}", KEY);
        assertEquals(400, wrongType.statusCode());
    }

    @Test
    void streamedChunksMakeTheSameText() throws Exception {
        int maxTokens = 12;
        String body = "{\"prompt\": " + ids(PROMPT) + ", \"max_tokens\": " + maxTokens + ", \"temperature\": 0";
        HttpResponse<String> whole = post("/v1/completions", body + "}", KEY);
        assertEquals(200, whole.statusCode(), whole.body());
        Map<?, ?> wholeChoice = (Map<?, ?>) ((List<?>) Json.parseObject(whole.body()).get("choices")).get(0);

        HttpResponse<String> r = post("/v1/completions", body + ", \"stream\": true}", KEY);
        assertEquals(200, r.statusCode(), r.body());
        assertEquals("text/event-stream", r.headers().firstValue("Content-Type").orElse(""));
        String sse = r.body();
        assertTrue(sse.endsWith("data: [DONE]\n\n"), sse);
        List<String> events = new ArrayList<>(List.of(sse.split("\n\n")));
        events.removeLast();
        StringBuilder text = new StringBuilder();
        String finish = null;
        for (int i = 0; i < events.size(); i++) {
            String event = events.get(i);
            assertTrue(event.startsWith("data: "), event);
            Map<String, Object> chunk = Json.parseObject(event.substring("data: ".length()));
            assertEquals("text_completion", chunk.get("object"));
            Map<?, ?> choice = (Map<?, ?>) ((List<?>) chunk.get("choices")).get(0);
            text.append((String) choice.get("text"));
            if (i < events.size() - 1) {
                assertNull(choice.get("finish_reason"), "a chunk before the last has a finish reason: " + event);
            } else {
                finish = (String) choice.get("finish_reason");
            }
        }
        assertTrue(events.size() >= 2, "expected text chunks and a last chunk, got: " + sse);
        assertEquals(wholeChoice.get("text"), text.toString());
        assertEquals(wholeChoice.get("finish_reason"), finish);
    }

    /** A solo run of a prompt with the given sampling. */
    static GenerationResult solo(int[] prompt, int maxTokens, SamplingParams sampling) {
        return fixture.solo(GenerationRequest.of(prompt, maxTokens, sampling));
    }

    @Test
    void severalPromptsAndNChoicesAreNumberedPromptMajor() throws Exception {
        int maxTokens = 8;
        int[] second = {11, 290, 464};
        long seed = 1234;
        // temperature 1: the n choices of a prompt differ, each being the solo run with seed + its index
        HttpResponse<String> r = post("/v1/completions", "{\"prompt\": [" + ids(PROMPT) + ", " + ids(second)
                + "], \"n\": 2, \"max_tokens\": " + maxTokens + ", \"temperature\": 1, \"seed\": " + seed + "}",
                KEY);
        assertEquals(200, r.statusCode(), r.body());
        Map<String, Object> body = Json.parseObject(r.body());
        List<?> choices = (List<?>) body.get("choices");
        assertEquals(4, choices.size(), r.body());
        long completionTokens = 0;
        for (int i = 0; i < 4; i++) {
            Map<?, ?> choice = (Map<?, ?>) choices.get(i);
            assertEquals((long) i, choice.get("index"));
            GenerationResult want = solo(i < 2 ? PROMPT : second, maxTokens,
                    new SamplingParams(1f, 0, 1f, seed + i));
            assertEquals(want.text(), choice.get("text"), "choice " + i);
            assertEquals(OpenAiServer.finishReason(want), choice.get("finish_reason"), "choice " + i);
            completionTokens += want.tokens().length;
        }
        Map<?, ?> usage = (Map<?, ?>) body.get("usage");
        assertEquals((long) PROMPT.length + second.length, usage.get("prompt_tokens"), "each prompt counted once");
        assertEquals(completionTokens, usage.get("completion_tokens"));
        assertEquals(PROMPT.length + second.length + completionTokens, usage.get("total_tokens"));

        // text prompts, echoed, streamed: each choice's chunks carry its index and make its text
        String request = "{\"prompt\": [\"The\", \"a\"], \"n\": 2, \"max_tokens\": 5, \"temperature\": 0,"
                + " \"echo\": true";
        HttpResponse<String> whole = post("/v1/completions", request + "}", KEY);
        assertEquals(200, whole.statusCode(), whole.body());
        List<?> wholeChoices = (List<?>) Json.parseObject(whole.body()).get("choices");
        assertEquals("The" + solo(tokenizer.encode("The"), 5), ((Map<?, ?>) wholeChoices.get(1)).get("text"));
        assertEquals("a" + solo(tokenizer.encode("a"), 5), ((Map<?, ?>) wholeChoices.get(2)).get("text"));

        HttpResponse<String> streamed = post("/v1/completions", request + ", \"stream\": true}", KEY);
        assertEquals(200, streamed.statusCode(), streamed.body());
        assertTrue(streamed.body().endsWith("data: [DONE]\n\n"), streamed.body());
        StringBuilder[] texts = {new StringBuilder(), new StringBuilder(), new StringBuilder(), new StringBuilder()};
        String[] finishes = new String[4];
        List<String> events = new ArrayList<>(List.of(streamed.body().split("\n\n")));
        events.removeLast();
        for (String event : events) {
            Map<?, ?> choice = (Map<?, ?>) ((List<?>) Json.parseObject(event.substring("data: ".length()))
                    .get("choices")).get(0);
            int index = (int) (long) (Long) choice.get("index");
            assertNull(finishes[index], "a chunk after the last of choice " + index + ": " + event);
            texts[index].append((String) choice.get("text"));
            finishes[index] = (String) choice.get("finish_reason");
        }
        for (int i = 0; i < 4; i++) {
            Map<?, ?> want = (Map<?, ?>) wholeChoices.get(i);
            assertEquals(want.get("text"), texts[i].toString(), "choice " + i);
            assertEquals(want.get("finish_reason"), finishes[i], "choice " + i);
        }
    }

    /**
     * The log-softmax, in double, of every position's logits for {@code tokens}, fed as one prompt to a fresh
     * session: row {@code t} is the distribution of the token after {@code tokens[0..t]}.
     */
    static double[][] logSoftmaxRows(int[] tokens) {
        try (Session session = model.newSession(1, tokens.length, tokens.length)) {
            Backend.Buffer logits = model.forward(session,
                    session.batch(new int[] {0}, new int[] {tokens.length}), tokens, true, null);
            float[] host = backend.download(logits);
            int vocab = model.config().vocabSize();
            double[][] rows = new double[tokens.length][vocab];
            for (int t = 0; t < tokens.length; t++) {
                double max = Double.NEGATIVE_INFINITY;
                for (int i = 0; i < vocab; i++) {
                    max = Math.max(max, host[t * logits.cols() + i]);
                }
                double total = 0;
                for (int i = 0; i < vocab; i++) {
                    total += Math.exp(host[t * logits.cols() + i] - max);
                }
                for (int i = 0; i < vocab; i++) {
                    rows[t][i] = host[t * logits.cols() + i] - max - Math.log(total);
                }
            }
            return rows;
        }
    }

    @Test
    void logprobsAreTheModelsLogSoftmaxOfEachChosenToken() throws Exception {
        int maxTokens = 6;
        int top = 3;
        HttpResponse<String> r = post("/v1/completions", "{\"prompt\": " + ids(PROMPT) + ", \"max_tokens\": "
                + maxTokens + ", \"temperature\": 0, \"logprobs\": " + top + "}", KEY);
        assertEquals(200, r.statusCode(), r.body());
        Map<?, ?> choice = (Map<?, ?>) ((List<?>) Json.parseObject(r.body()).get("choices")).get(0);
        Map<?, ?> logprobs = (Map<?, ?>) choice.get("logprobs");
        List<?> tokens = (List<?>) logprobs.get("tokens");
        List<?> tokenLogprobs = (List<?>) logprobs.get("token_logprobs");
        List<?> topLogprobs = (List<?>) logprobs.get("top_logprobs");
        List<?> offsets = (List<?>) logprobs.get("text_offset");
        GenerationResult want = solo(PROMPT, maxTokens, SamplingParams.greedy());
        int n = want.tokens().length;
        assertTrue(n > 0, "nothing generated");
        assertEquals(n, tokens.size());
        assertEquals(n, tokenLogprobs.size());
        assertEquals(n, topLogprobs.size());
        assertEquals(n, offsets.size());

        // the reference: one prefill of the prompt and the generated tokens; a row of float32 logits computed in
        // another batching may differ in its last bits (relative 1e-6 of logits of order 1), far inside 1e-4
        int[] all = IntStream.concat(Arrays.stream(PROMPT), Arrays.stream(want.tokens())).toArray();
        double[][] reference = logSoftmaxRows(all);
        int offset = 0;
        for (int t = 0; t < n; t++) {
            int id = want.tokens()[t];
            double[] row = reference[PROMPT.length - 1 + t];
            assertEquals(tokenizer.decode(new int[] {id}), tokens.get(t));
            assertEquals(row[id], (Double) tokenLogprobs.get(t), 1e-4, "token " + t);
            assertEquals((long) offset, offsets.get(t));
            offset += ((String) tokens.get(t)).length();
            Map<?, ?> alternatives = (Map<?, ?>) topLogprobs.get(t);
            assertEquals(top, alternatives.size(), alternatives.toString());
            double[] sorted = row.clone();
            Arrays.sort(sorted);
            List<?> values = List.copyOf(alternatives.values());
            for (int k = 0; k < top; k++) {
                assertEquals(sorted[sorted.length - 1 - k], (Double) values.get(k), 1e-4, "token " + t + " top " + k);
            }
            // greedy: the chosen token is the most likely one
            assertEquals(tokens.get(t), alternatives.keySet().iterator().next());
        }

        HttpResponse<String> tooMany = post("/v1/completions", "{\"prompt\": \"a\", \"logprobs\": 6}", KEY);
        assertEquals(400, tooMany.statusCode());
        assertEquals("logprobs", error(tooMany).get("param"));
        HttpResponse<String> streamed = post("/v1/completions", "{\"prompt\": \"a\", \"logprobs\": 1,"
                + " \"stream\": true}", KEY);
        assertEquals(400, streamed.statusCode());
        assertEquals("logprobs", error(streamed).get("param"));
    }

    @Test
    void badRequestsAreRefusedInOpenAisShape() throws Exception {
        HttpResponse<String> malformed = post("/v1/completions", "{\"prompt\": \"The\",", KEY);
        assertEquals(400, malformed.statusCode());
        assertTrue(((String) error(malformed).get("message")).contains("not a JSON object"), malformed.body());
        assertEquals("invalid_request_error", error(malformed).get("type"));

        HttpResponse<String> wrongType = post("/v1/completions", "{\"prompt\": \"The\", \"max_tokens\": \"5\"}", KEY);
        assertEquals(400, wrongType.statusCode());
        assertEquals("max_tokens", error(wrongType).get("param"));

        HttpResponse<String> tooMany = post("/v1/completions", "{\"prompt\": \"The\", \"max_tokens\": 100000}", KEY);
        assertEquals(400, tooMany.statusCode());
        assertEquals("max_tokens", error(tooMany).get("param"));
        assertTrue(((String) error(tooMany).get("message")).contains("256"), tooMany.body());

        int[] longPrompt = new int[250];
        HttpResponse<String> tooLong = post("/v1/completions", "{\"prompt\": " + ids(longPrompt)
                + ", \"max_tokens\": 16}", KEY);
        assertEquals(400, tooLong.statusCode());
        assertEquals("prompt", error(tooLong).get("param"));

        HttpResponse<String> outside = post("/v1/completions", "{\"prompt\": [5000]}", KEY);
        assertEquals(400, outside.statusCode());
        assertEquals("prompt", error(outside).get("param"));

        HttpResponse<String> badSecond = post("/v1/completions", "{\"prompt\": [\"a\", [1, \"x\"]]}", KEY);
        assertEquals(400, badSecond.statusCode());
        assertEquals("prompt", error(badSecond).get("param"));
        assertTrue(((String) error(badSecond).get("message")).contains("prompt[1][1]"), badSecond.body());

        HttpResponse<String> badN = post("/v1/completions", "{\"prompt\": \"a\", \"n\": 0}", KEY);
        assertEquals(400, badN.statusCode());
        assertEquals("n", error(badN).get("param"));

        // the second prompt does not fit: nothing of the request runs, and the error names that prompt
        HttpResponse<String> secondTooLong = post("/v1/completions", "{\"prompt\": [[464], " + ids(longPrompt)
                + "], \"max_tokens\": 16}", KEY);
        assertEquals(400, secondTooLong.statusCode());
        assertEquals("prompt[1]", error(secondTooLong).get("param"));

        String huge = "{\"prompt\": \"" + "a".repeat(OpenAiServer.MAX_BODY_BYTES) + "\"}";
        HttpResponse<String> tooBig = post("/v1/completions", huge, KEY);
        assertEquals(400, tooBig.statusCode());
        assertTrue(((String) error(tooBig).get("message")).contains("limit of " + OpenAiServer.MAX_BODY_BYTES),
                tooBig.body());
    }

    @Test
    void keysPathsAndMethodsAreChecked() throws Exception {
        String body = "{\"prompt\": \"The\", \"max_tokens\": 1}";
        HttpResponse<String> wrongKey = post("/v1/completions", body, "sk-wrong");
        assertEquals(401, wrongKey.statusCode());
        assertEquals("invalid_api_key", error(wrongKey).get("code"));
        assertEquals(401, post("/v1/completions", body, null).statusCode());
        assertEquals(401, get("/v1/models", null).statusCode());

        HttpResponse<String> unknown = get("/v1/nothing", KEY);
        assertEquals(404, unknown.statusCode());
        error(unknown);

        HttpResponse<String> wrongMethod = get("/v1/completions", KEY);
        assertEquals(405, wrongMethod.statusCode());
        error(wrongMethod);
        assertEquals("POST", wrongMethod.headers().firstValue("Allow").orElse(""));

        HttpResponse<String> otherModel = post("/v1/completions", "{\"model\": \"gpt-4\", \"prompt\": \"The\"}", KEY);
        assertEquals(404, otherModel.statusCode());
        assertEquals("model_not_found", error(otherModel).get("code"));
    }

    @Test
    void aClientThatGoesAwayCancelsItsRequest() throws Exception {
        // a long generation (seconds for the tiny model), so the client is gone long before it could finish
        int maxTokens = 30_000;
        try (Engine longEngine = new Engine(model, tokenizer, new EngineOptions(2, maxTokens + 16, 2 - 1 + 64, 4));
             OpenAiServer longServer = new OpenAiServer(longEngine, tokenizer,
                     new ServerOptions(ServerOptions.LOOPBACK, 0, MODEL_ID, null))) {
            String body = "{\"prompt\": [464], \"max_tokens\": " + maxTokens + ", \"temperature\": 0,"
                    + " \"stream\": true}";
            try (Socket socket = new Socket(InetAddress.getLoopbackAddress(), longServer.port())) {
                socket.getOutputStream().write(("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
                        + "Content-Type: application/json\r\nContent-Length: " + body.length() + "\r\n\r\n" + body)
                        .getBytes(StandardCharsets.UTF_8));
                InputStream in = socket.getInputStream();
                String head = new String(in.readNBytes(12), StandardCharsets.UTF_8);
                assertEquals("HTTP/1.1 200", head);
                socket.setSoLinger(true, 0); // closing resets the connection: the server's next write fails
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (longEngine.metrics().requestsCancelled() == 0 && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            EngineMetrics m = longEngine.metrics();
            assertEquals(1, m.requestsCancelled(), "the request was not cancelled: " + m);
            assertEquals(0, m.requestsFinished(), "the request ran to its end: " + m);
            assertTrue(m.tokensGenerated() < maxTokens, m.toString());
        }
    }
}
