package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.json.Json;
import io.based4j.model.BasedModel;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** {@code POST /v1/chat/completions} on the CPU backend and the trained small model, through a real client. */
class ChatCompletionsTest {
    /** The trained model kept in the repository (GPT-2's vocabulary), relative to this module. */
    static final Path BASED_SMALL = Path.of("../models/based-small");
    static final String MODEL_ID = "based-small";
    /** A question the model answers with a few lines of text (a greedy reply starts "*\n\nThe Perl interpreter"). */
    static final String MESSAGES = "[{\"role\": \"user\", \"content\": \"What is a dog?\"}]";

    static ServeFixture fixture;
    static BasedModel model;
    static Gpt2Tokenizer tokenizer;
    static Engine engine;
    static OpenAiServer server;
    static HttpClient client;

    @BeforeAll
    static void start() throws Exception {
        fixture = new ServeFixture(BASED_SMALL, MODEL_ID, new EngineOptions(4, 512, 4 - 1 + 64 + 1, 16), null);
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

    static HttpResponse<String> post(String body) throws Exception {
        return client.send(HttpRequest.newBuilder(URI.create(server.url() + "/v1/chat/completions"))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    /** What a solo greedy run of the template's prompt generates, with the template's stops. */
    static GenerationResult solo(String prompt, int maxTokens) {
        return fixture.solo(new GenerationRequest(tokenizer.encode(prompt), maxTokens, SamplingParams.greedy(),
                ChatTemplate.STOPS, true));
    }

    @Test
    void theTemplateIsOneLinePerMessageEndingWithTheAssistantsTurn() {
        List<Object> messages = List.of(Map.of("role", "system", "content", "Be brief."),
                Map.of("role", "user", "content", "Hi"), Map.of("role", "assistant", "content", "Hello."),
                Map.of("role", "user", "content", "Bye"));
        assertEquals("System: Be brief.\nUser: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:",
                ChatTemplate.render(messages));
    }

    @Test
    void aReplyIsTheTemplatesContinuationUpToTheNextTurn() throws Exception {
        int maxTokens = 24;
        String prompt = ChatTemplate.render(Json.parse(MESSAGES));
        GenerationResult want = solo(prompt, maxTokens);
        HttpResponse<String> r = post("{\"model\": \"" + MODEL_ID + "\", \"messages\": " + MESSAGES
                + ", \"max_tokens\": " + maxTokens + ", \"temperature\": 0}");
        assertEquals(200, r.statusCode(), r.body());
        Map<String, Object> body = Json.parseObject(r.body());
        assertTrue(((String) body.get("id")).startsWith("chatcmpl-"), r.body());
        assertEquals("chat.completion", body.get("object"));
        assertEquals(MODEL_ID, body.get("model"));
        Map<?, ?> choice = (Map<?, ?>) ((List<?>) body.get("choices")).get(0);
        assertEquals(0L, choice.get("index"));
        Map<?, ?> message = (Map<?, ?>) choice.get("message");
        assertEquals("assistant", message.get("role"));
        String content = (String) message.get("content");
        assertEquals(want.text().stripLeading(), content);
        assertFalse(content.contains("\nUser:"), content);
        assertEquals(OpenAiServer.finishReason(want), choice.get("finish_reason"));
        Map<?, ?> usage = (Map<?, ?>) body.get("usage");
        assertEquals((long) tokenizer.encode(prompt).length, usage.get("prompt_tokens"));
        assertEquals((long) want.tokens().length, usage.get("completion_tokens"));
    }

    @Test
    void theTemplatesTurnsEndAReplyBesideTheRequestsStops() throws Exception {
        // the small model never starts a "User:" line of its own (it continues dialogues with prose), so the
        // template's stops are checked in the parsed request, and a stop's effect through a request's own stop
        CompletionRequest parsed = CompletionRequest.parseChat(Json.parseObject("{\"messages\": " + MESSAGES
                + ", \"stop\": \"Perl\"}"), tokenizer);
        assertEquals(List.of("Perl", "\nUser:", "\nSystem:"), parsed.stop());
        assertEquals(CompletionRequest.FILL, parsed.maxTokens(), "a chat without max_tokens fills the sequence");

        String unstopped = solo(ChatTemplate.render(Json.parse(MESSAGES)), 32).text();
        int perl = unstopped.indexOf("Perl");
        assertTrue(perl > 0, unstopped);
        HttpResponse<String> r = post("{\"messages\": " + MESSAGES + ", \"max_tokens\": 32, \"temperature\": 0,"
                + " \"stop\": \"Perl\"}");
        assertEquals(200, r.statusCode(), r.body());
        Map<?, ?> choice = (Map<?, ?>) ((List<?>) Json.parseObject(r.body()).get("choices")).get(0);
        assertEquals(unstopped.substring(0, perl).stripLeading(), ((Map<?, ?>) choice.get("message"))
                .get("content"));
        assertEquals("stop", choice.get("finish_reason"));
    }

    @Test
    void streamedChunksStartWithTheRoleAndMakeTheSameReply() throws Exception {
        String body = "{\"messages\": " + MESSAGES + ", \"max_tokens\": 24, \"temperature\": 0";
        HttpResponse<String> whole = post(body + "}");
        assertEquals(200, whole.statusCode(), whole.body());
        Map<?, ?> wholeChoice = (Map<?, ?>) ((List<?>) Json.parseObject(whole.body()).get("choices")).get(0);

        HttpResponse<String> r = post(body + ", \"stream\": true}");
        assertEquals(200, r.statusCode(), r.body());
        assertEquals("text/event-stream", r.headers().firstValue("Content-Type").orElse(""));
        assertTrue(r.body().endsWith("data: [DONE]\n\n"), r.body());
        List<String> events = new ArrayList<>(List.of(r.body().split("\n\n")));
        events.removeLast();
        assertTrue(events.size() >= 3, "expected a role chunk, content chunks and a last chunk: " + r.body());
        StringBuilder content = new StringBuilder();
        String id = null;
        for (int i = 0; i < events.size(); i++) {
            assertTrue(events.get(i).startsWith("data: "), events.get(i));
            Map<String, Object> chunk = Json.parseObject(events.get(i).substring("data: ".length()));
            assertEquals("chat.completion.chunk", chunk.get("object"));
            id = id == null ? (String) chunk.get("id") : id;
            assertEquals(id, chunk.get("id"), "every chunk carries the completion's id");
            Map<?, ?> choice = (Map<?, ?>) ((List<?>) chunk.get("choices")).get(0);
            Map<?, ?> delta = (Map<?, ?>) choice.get("delta");
            if (i == 0) {
                assertEquals(Map.of("role", "assistant", "content", ""), delta);
            } else if (i < events.size() - 1) {
                assertNull(choice.get("finish_reason"), events.get(i));
                content.append((String) delta.get("content"));
            } else {
                assertEquals(Map.of(), delta);
                assertEquals(wholeChoice.get("finish_reason"), choice.get("finish_reason"));
            }
        }
        assertEquals(((Map<?, ?>) wholeChoice.get("message")).get("content"), content.toString());
    }

    @Test
    void badMessagesAreRefusedNamingTheField() throws Exception {
        Map<String, String> cases = Map.of(
                "{}", "messages",
                "{\"messages\": \"hi\"}", "messages",
                "{\"messages\": []}", "messages",
                "{\"messages\": [\"hi\"]}", "messages[0]",
                "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"robot\", \"content\": \"b\"}]}",
                "messages[1].role",
                "{\"messages\": [{\"content\": \"a\"}]}", "messages[0].role",
                "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages[0].content",
                "{\"messages\": [{\"role\": \"user\"}]}", "messages[0].content",
                "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"max_tokens\": -1}", "max_tokens");
        for (Map.Entry<String, String> c : cases.entrySet()) {
            HttpResponse<String> r = post(c.getKey());
            assertEquals(400, r.statusCode(), c.getKey() + " -> " + r.body());
            Map<?, ?> error = (Map<?, ?>) Json.parseObject(r.body()).get("error");
            assertEquals("invalid_request_error", error.get("type"), r.body());
            assertEquals(c.getValue(), error.get("param"), c.getKey() + " -> " + r.body());
            assertTrue(((String) error.get("message")).contains(c.getValue()), r.body());
        }
    }
}
