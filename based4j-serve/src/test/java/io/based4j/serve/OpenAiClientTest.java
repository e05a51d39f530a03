package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.json.Json;
import io.based4j.sampling.SamplingParams;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The official OpenAI client for Node.js (the {@code openai} npm package, pinned in {@code src/test/node}) against
 * the server on the CPU backend: completions and chat completions, whole and streamed, equal the engine's solo
 * greedy runs, and refused requests surface as the client's {@code APIError} subclasses with the server's status,
 * param and code. The trained small model serves here (GPT-2's whole vocabulary: the chat template's words are
 * outside the golden tiny model's 1000 tokens).
 */
class OpenAiClientTest {
    static final String KEY = "sk-client-test";
    static final String MODEL_ID = "based-small";
    static final String PROMPT_TEXT = "The capital of France is";
    static final String IDS_TEXT = "Once upon a time";
    static final int MAX_TOKENS = 12;
    /** Tokens per sequence of the test server: a max_tokens at or over it is refused. */
    static final int LIMIT = 256;

    static ServeFixture fixture;

    @BeforeAll
    static void start() throws Exception {
        fixture = new ServeFixture(ChatCompletionsTest.BASED_SMALL, MODEL_ID,
                new EngineOptions(4, LIMIT, 4 - 1 + 64 + 1, 16), KEY);
    }

    @AfterAll
    static void stop() {
        fixture.close();
    }

    static GenerationResult greedy(int[] prompt, List<String> stops) {
        return fixture.solo(new GenerationRequest(prompt, MAX_TOKENS, SamplingParams.greedy(), stops, true));
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> map(Object o) {
        return (Map<String, Object>) o;
    }

    @Test
    void theOfficialClientCompletesChatsStreamsAndSeesErrorsAsApiErrors() throws Exception {
        int[] ids = fixture.tokenizer.encode(IDS_TEXT);
        NodeScripts.Result run = NodeScripts.run("openai-client.mjs", Map.of(
                "BASED4J_URL", fixture.server.url() + "/v1",
                "BASED4J_KEY", KEY,
                "BASED4J_MODEL", MODEL_ID,
                "PROMPT_IDS", Json.write(ids),
                "PROMPT_TEXT", PROMPT_TEXT,
                "MAX_TOKENS", String.valueOf(MAX_TOKENS),
                "TOO_MANY", String.valueOf(LIMIT + 1)), 120);
        Map<String, Object> out = run.json();

        assertEquals(List.of(MODEL_ID), out.get("models"));

        GenerationResult want = greedy(ids, List.of());
        String finish = OpenAiServer.finishReason(want);
        Map<String, Object> completion = map(out.get("completion"));
        assertEquals("text_completion", completion.get("object"));
        assertEquals(MODEL_ID, completion.get("model"));
        assertEquals(want.text(), completion.get("text"));
        assertEquals(finish, completion.get("finish_reason"));
        assertEquals(Map.of("prompt_tokens", (long) ids.length, "completion_tokens", (long) want.tokens().length,
                "total_tokens", (long) ids.length + want.tokens().length), completion.get("usage"));
        assertEquals(greedy(fixture.tokenizer.encode(PROMPT_TEXT), List.of()).text(),
                map(out.get("text_completion")).get("text"));

        Map<String, Object> stream = map(out.get("completion_stream"));
        assertEquals(want.text(), stream.get("text"), "the streamed pieces make the whole text");
        assertEquals(List.of(finish), stream.get("finish_reasons"), "one finish reason, on the last chunk");
        assertEquals(List.of("text_completion"), stream.get("objects"));
        assertTrue((Long) stream.get("chunks") >= 2, "text chunks and a last chunk: " + stream);

        List<Object> messages = List.of(Map.of("role", "system", "content", "You answer briefly."),
                Map.of("role", "user", "content", PROMPT_TEXT));
        GenerationResult reply = greedy(fixture.tokenizer.encode(ChatTemplate.render(messages)), ChatTemplate.STOPS);
        String chatFinish = OpenAiServer.finishReason(reply);
        Map<String, Object> chat = map(out.get("chat"));
        assertEquals("chat.completion", chat.get("object"));
        assertEquals("assistant", chat.get("role"));
        assertEquals(reply.text().stripLeading(), chat.get("content"));
        assertEquals(chatFinish, chat.get("finish_reason"));
        assertEquals((long) reply.tokens().length, map(chat.get("usage")).get("completion_tokens"));

        Map<String, Object> chatStream = map(out.get("chat_stream"));
        assertEquals(reply.text().stripLeading(), chatStream.get("content"));
        assertEquals(List.of("assistant"), chatStream.get("roles"), "the role comes once, in the first delta");
        assertEquals(List.of(chatFinish), chatStream.get("finish_reasons"));
        assertEquals(List.of("chat.completion.chunk"), chatStream.get("objects"));
        // stream_options.include_usage: one last chunk with the usage, the same as the whole answer's
        assertEquals(1L, chatStream.get("usage_chunks"));
        assertEquals(chat.get("usage"), chatStream.get("usage"));

        Map<String, Object> errors = map(out.get("errors"));
        assertApiError(errors, "too_many_tokens", "BadRequestError", 400, "max_tokens", null);
        assertApiError(errors, "too_many_tokens_streamed", "BadRequestError", 400, "max_tokens", null);
        assertApiError(errors, "wrong_type", "BadRequestError", 400, "temperature", null);
        assertApiError(errors, "bad_chat_role", "BadRequestError", 400, "messages[0].role", null);
        assertApiError(errors, "unknown_model", "NotFoundError", 404, "model", "model_not_found");
        assertApiError(errors, "wrong_key", "AuthenticationError", 401, null, "invalid_api_key");
        assertTrue(((String) map(errors.get("too_many_tokens")).get("message")).contains(String.valueOf(LIMIT)),
                "the message names the limit: " + errors.get("too_many_tokens"));
    }

    private static void assertApiError(Map<String, Object> errors, String name, String type, int status,
                                       String param, String code) {
        Map<String, Object> e = map(errors.get(name));
        assertEquals(Boolean.TRUE, e.get("isApiError"), name + ": " + e);
        assertEquals(type, e.get("name"), name + ": " + e);
        assertEquals((long) status, e.get("status"), name + ": " + e);
        assertEquals(param, e.get("param"), name + ": " + e);
        assertEquals(code, e.get("code"), name + ": " + e);
        assertEquals("invalid_request_error", e.get("type"), name + ": " + e);
    }
}
