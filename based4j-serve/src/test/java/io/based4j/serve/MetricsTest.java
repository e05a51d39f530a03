package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.GoldenModel;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.json.Json;
import io.based4j.model.BasedModel;
import io.based4j.model.StateSize;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** {@code GET /metrics} of a fresh server on the golden tiny model, after requests whose counts are known. */
class MetricsTest {
    static final HttpClient CLIENT = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    static HttpResponse<String> send(OpenAiServer server, String path, String body) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(server.url() + path));
        b = body == null ? b.GET() : b.POST(HttpRequest.BodyPublishers.ofString(body));
        return CLIENT.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    /** The samples of an exposition, by name with labels; checks every sample's metric has HELP and TYPE lines. */
    static Map<String, Double> samples(String text) {
        Map<String, Double> samples = new LinkedHashMap<>();
        for (String line : text.split("\n")) {
            if (line.startsWith("#")) {
                continue;
            }
            int space = line.lastIndexOf(' ');
            String name = line.substring(0, space);
            String family = name.replaceAll("\\{.*", "").replaceAll("_(bucket|sum|count)$", "");
            assertTrue(text.contains("# TYPE " + family + " "), "no TYPE line for " + name);
            samples.put(name, Double.parseDouble(line.substring(space + 1)));
        }
        return samples;
    }

    static void histogram(Map<String, Double> s, String name, double count) {
        double previous = 0;
        for (Map.Entry<String, Double> e : s.entrySet()) {
            if (e.getKey().startsWith(name + "_bucket{")) {
                assertTrue(e.getValue() >= previous, "buckets are cumulative: " + e.getKey());
                previous = e.getValue();
            }
        }
        assertEquals(count, s.get(name + "_bucket{le=\"+Inf\"}"), name);
        assertEquals(count, s.get(name + "_count"), name);
        assertEquals(count, previous, "the last bucket is +Inf");
        assertTrue(count == 0 || s.get(name + "_sum") > 0, name + "_sum");
    }

    @Test
    void countsRequestsTokensAndLatencies() throws Exception {
        try (CpuBackend backend = new CpuBackend();
             BasedModel model = BasedModel.load(GoldenModel.dir(), backend);
             Engine engine = new Engine(model, Gpt2Tokenizer.load(), new EngineOptions(1, 512, 64, 1));
             OpenAiServer server = new OpenAiServer(engine, Gpt2Tokenizer.load(),
                     new ServerOptions(ServerOptions.LOOPBACK, 0, "golden-tiny", null))) {
            HttpResponse<String> empty = send(server, "/metrics", null);
            assertEquals(200, empty.statusCode(), empty.body());
            assertEquals(PrometheusText.CONTENT_TYPE, empty.headers().firstValue("Content-Type").orElse(""));
            Map<String, Double> before = samples(empty.body());
            assertEquals(0.0, before.get("based4j_requests_total{outcome=\"finished\"}"));
            assertEquals(1.0, before.get("based4j_slots"));
            histogram(before, "based4j_time_to_first_token_seconds", 0);

            long completionTokens = 0;
            for (String stream : List.of("false", "true")) {
                HttpResponse<String> r = send(server, "/v1/completions", "{\"prompt\": [464, 318], \"max_tokens\": 6,"
                        + " \"temperature\": 0, \"stream\": " + stream + "}");
                assertEquals(200, r.statusCode(), r.body());
                if (stream.equals("false")) {
                    completionTokens = (Long) ((Map<?, ?>) Json.parseObject(r.body()).get("usage"))
                            .get("completion_tokens");
                }
            }
            // three choices for one slot and a queue of one: the third cannot wait, so the request is refused
            // whole (429) and the choices already submitted are cancelled
            HttpResponse<String> refused = send(server, "/v1/completions", "{\"prompt\": [464], \"n\": 3,"
                    + " \"max_tokens\": 400, \"temperature\": 0}");
            assertEquals(429, refused.statusCode(), refused.body());
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while ((engine.metrics().running() > 0 || engine.metrics().queueDepth() > 0)
                    && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }

            Map<String, Double> s = samples(send(server, "/metrics", null).body());
            assertEquals(2.0, s.get("based4j_requests_total{outcome=\"finished\"}"));
            assertEquals(1.0, s.get("based4j_requests_total{outcome=\"rejected\"}"));
            double cancelled = s.get("based4j_requests_total{outcome=\"cancelled\"}");
            assertTrue(cancelled == 1 || cancelled == 2, "the choices submitted before the refusal: " + cancelled);
            assertEquals(0.0, s.get("based4j_requests_total{outcome=\"failed\"}"));
            assertEquals(0.0, s.get("based4j_requests_total{outcome=\"timed_out\"}"));
            assertEquals(0.0, s.get("based4j_prefix_cache_budget_bytes"), "no cache without a budget");
            assertEquals(0.0, s.get("based4j_prefix_cache_misses_total"), "nothing looked up");
            assertEquals(0.0, s.get("based4j_queue_depth"));
            assertEquals(0.0, s.get("based4j_running_sequences"));
            // both answered requests are the same greedy run; a cancelled choice may have generated some tokens
            double generated = s.get("based4j_generated_tokens_total");
            assertTrue(generated >= 2 * completionTokens, "generated " + generated);
            double firstTokens = s.get("based4j_time_to_first_token_seconds_count");
            assertTrue(firstTokens >= 2 && firstTokens <= 2 + cancelled, "first tokens " + firstTokens);
            histogram(s, "based4j_time_to_first_token_seconds", firstTokens);
            // every generated token is a sequence's first or follows another of it
            histogram(s, "based4j_inter_token_latency_seconds", generated - firstTokens);
            // two prompts of 2 tokens, and the 1-token prompt of each cancelled choice that got as far as a token
            assertEquals(4 + (firstTokens - 2), s.get("based4j_prompt_tokens_total"));
        }
    }

    @Test
    void prefixCacheHitsAndMissesAreCounted() throws Exception {
        int[] prompt = new SplittableRandom(3).ints(100, 0, 1000).toArray(); // cached after 64 tokens
        long budget = 1 << 20;
        try (CpuBackend backend = new CpuBackend();
             BasedModel model = BasedModel.load(GoldenModel.dir(), backend);
             Engine engine = new Engine(model, Gpt2Tokenizer.load(), new EngineOptions(1, 512, 64, 1, budget));
             OpenAiServer server = new OpenAiServer(engine, Gpt2Tokenizer.load(),
                     new ServerOptions(ServerOptions.LOOPBACK, 0, "golden-tiny", null))) {
            Map<String, Double> before = samples(send(server, "/metrics", null).body());
            assertEquals(0.0, before.get("based4j_prefix_cache_hits_total"));
            assertEquals(0.0, before.get("based4j_prefix_cache_misses_total"));
            assertEquals((double) budget, before.get("based4j_prefix_cache_budget_bytes"));
            String body = "{\"prompt\": " + Json.write(prompt) + ", \"max_tokens\": 4, \"temperature\": 0}";
            HttpResponse<String> cold = send(server, "/v1/completions", body);
            HttpResponse<String> warm = send(server, "/v1/completions", body);
            assertEquals(200, cold.statusCode(), cold.body());
            assertEquals(200, warm.statusCode(), warm.body());
            assertEquals(((List<?>) Json.parseObject(cold.body()).get("choices")).getFirst(),
                    ((List<?>) Json.parseObject(warm.body()).get("choices")).getFirst());

            Map<String, Double> s = samples(send(server, "/metrics", null).body());
            assertEquals(1.0, s.get("based4j_prefix_cache_hits_total"));
            assertEquals(1.0, s.get("based4j_prefix_cache_misses_total"));
            assertEquals(64.0, s.get("based4j_prefix_cache_reused_tokens_total"));
            assertEquals(1.0, s.get("based4j_prefix_cache_entries"));
            assertEquals((double) StateSize.total(model.config(), 64), s.get("based4j_prefix_cache_bytes"));
            assertEquals(0.0, s.get("based4j_prefix_cache_evictions_total"));
            assertEquals(100.0 + (100 - 64), s.get("based4j_prompt_tokens_total"), "the second fed 36 tokens");
        }
    }
}
