package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.json.Json;
import io.based4j.sampling.SamplingParams;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The playground page at {@code /} in headless Chromium, driven by Playwright ({@code playwright-core}, pinned in
 * {@code src/test/node}; it drives the Chromium installed on the machine and downloads none): typed settings
 * (temperature 0) stream exactly the greedy completion the API gives for the same prompt, and Stop ends a long
 * generation, whose request the engine then cancels.
 *
 * <p>Chromium is looked for at {@code -Dbased4j.chromium=PATH} (default {@value #DEFAULT_CHROMIUM}). Where it is
 * missing the test fails, saying what to install; {@code -Dbased4j.skipBrowser=true} leaves the test out instead
 * (reported as skipped, never as passed). CI installs Chromium and never sets the property.
 */
class PlaygroundBrowserTest {
    static final String DEFAULT_CHROMIUM = "/usr/bin/chromium";
    static final String SKIP_PROPERTY = "based4j.skipBrowser";
    static final String KEY = "sk-playground-test";
    static final String PROMPT = "The capital of France is";
    static final int MAX_TOKENS = 16;
    static final String STOP_PROMPT = "Once upon a time";
    /**
     * Long enough that Stop, clicked when the first text shows, comes long before the end: the engine makes the
     * small model's tokens faster than a page shows them (some 500 a second on two cores), so this is many seconds
     * of work.
     */
    static final int STOP_MAX_TOKENS = 8000;
    /** Tokens of the greedy run that the stopped text is checked against (one of the two starts the other). */
    static final int STOP_CHECKED_TOKENS = 48;

    static ServeFixture fixture;

    @BeforeAll
    static void start() throws Exception {
        fixture = new ServeFixture(ChatCompletionsTest.BASED_SMALL, "based-small",
                new EngineOptions(2, STOP_MAX_TOKENS + 64, 2 - 1 + 64 + 1, 8), KEY);
    }

    @AfterAll
    static void stop() {
        fixture.close();
    }

    /** The Chromium to drive; fails naming what to install, or skips when the opt-out property is set. */
    static Path chromium() {
        if (Boolean.getBoolean(SKIP_PROPERTY)) {
            Assumptions.abort("left out by -D" + SKIP_PROPERTY + "=true");
        }
        Path chromium = Path.of(System.getProperty("based4j.chromium", DEFAULT_CHROMIUM));
        if (!Files.isExecutable(chromium)) {
            fail("the playground test needs Chromium and there is none at " + chromium + ": install it with"
                    + " scripts/install-test-tools.sh (Debian: apt-get install chromium), or name another with"
                    + " -Dbased4j.chromium=PATH, or leave this test out with -D" + SKIP_PROPERTY + "=true (it is then"
                    + " reported as skipped)");
        }
        return chromium;
    }

    /** The text of a whole (not streamed) greedy completion from the API. */
    static Map<?, ?> apiCompletion(String prompt, int maxTokens) throws Exception {
        String body = Json.write(Map.of("prompt", prompt, "max_tokens", maxTokens, "temperature", 0));
        HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                        URI.create(fixture.server.url() + "/v1/completions"))
                .header("Authorization", "Bearer " + KEY).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        return (Map<?, ?>) ((List<?>) Json.parseObject(r.body()).get("choices")).getFirst();
    }

    @Test
    void typedSettingsStreamTheGreedyCompletionAndStopCancelsTheRequest() throws Exception {
        Path chromium = chromium();
        Map<?, ?> api = apiCompletion(PROMPT, MAX_TOKENS);
        String want = (String) api.get("text");
        assertTrue(!want.isEmpty(), "the API generated nothing for the prompt");
        GenerationResult stopStart = fixture.solo(GenerationRequest.of(fixture.tokenizer.encode(STOP_PROMPT),
                STOP_CHECKED_TOKENS, SamplingParams.greedy()));
        assertEquals(STOP_CHECKED_TOKENS, stopStart.tokens().length, "the long generation would end early");
        long cancelledBefore = fixture.engine.metrics().requestsCancelled();
        Path screenshot = Path.of("target", "node-tests", "playground.png").toAbsolutePath();

        Map<String, Object> out = NodeScripts.run("playground.mjs", Map.of(
                "BASED4J_ORIGIN", fixture.server.url(),
                "BASED4J_KEY", KEY,
                "CHROMIUM", chromium.toString(),
                "PROMPT_TEXT", PROMPT,
                "MAX_TOKENS", String.valueOf(MAX_TOKENS),
                "STOP_PROMPT", STOP_PROMPT,
                "STOP_MAX_TOKENS", String.valueOf(STOP_MAX_TOKENS),
                "SCREENSHOT", screenshot.toString()), 120).json();

        assertEquals("based4j playground", out.get("title"));
        assertEquals(List.of(), out.get("console_errors"), "the page logged errors");
        Map<?, ?> generated = (Map<?, ?>) out.get("generated");
        assertEquals(want, generated.get("text"), "the page's streamed text");
        assertEquals(PROMPT, generated.get("echo"));
        assertTrue(((String) generated.get("status")).startsWith("done (" + api.get("finish_reason") + ")"),
                generated.toString());
        assertEquals(true, generated.get("go_enabled"));
        assertEquals(false, generated.get("stop_enabled"));
        assertTrue(Files.size(screenshot) > 0, "no screenshot");

        Map<?, ?> stopped = (Map<?, ?>) out.get("stopped");
        assertEquals("stopped", stopped.get("status"));
        assertEquals(true, stopped.get("go_enabled"));
        String shown = (String) stopped.get("text");
        String greedyStart = stopStart.text();
        assertTrue(!shown.isEmpty() && (shown.startsWith(greedyStart) || greedyStart.startsWith(shown)),
                "the stopped text follows the greedy run: '" + shown + "' against '" + greedyStart + "'");
        // the aborted stream's request is cancelled at the engine's next write to the gone client
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (fixture.engine.metrics().requestsCancelled() == cancelledBefore && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        EngineMetrics m = fixture.engine.metrics();
        assertEquals(cancelledBefore + 1, m.requestsCancelled(), m.toString());
        assertEquals(0, m.running(), m.toString());
    }
}
