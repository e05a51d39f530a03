package io.based4j.serve;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.json.Json;
import io.based4j.json.JsonException;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.BiFunction;

/**
 * OpenAI's HTTP API over an {@link Engine}, on the JDK's built-in HTTP server: {@code GET /health},
 * {@code GET /v1/models}, {@code POST /v1/completions} and {@code POST /v1/chat/completions} (whole or streamed as
 * server-sent events, several prompts and n choices each submitted together) and {@code GET /metrics}
 * (Prometheus' text format, see {@link PrometheusText}). Each exchange runs on its own virtual thread; the engine's
 * thread only hands streamed text over, so a slow client never holds up the other sequences. Errors have OpenAI's
 * JSON shape. A completion past the {@linkplain ServerOptions#requestTimeout() request timeout} is stopped at the
 * engine's next step (answered 504, or, streamed, ended with {@code finish_reason "length"}); a body slower than
 * the {@linkplain ServerOptions#bodyTimeout() body timeout} is answered 408.
 *
 * <p>The server does not own the engine: close the server first, then the engine.
 */
public final class OpenAiServer implements AutoCloseable {
    /** Largest request body read, in bytes: a prompt of the longest sequences served is far smaller. */
    public static final int MAX_BODY_BYTES = 1 << 20;
    /** Seconds a client told to retry (429) is asked to wait: a request of a loaded engine takes about that long. */
    static final int RETRY_AFTER_S = 1;

    private final Engine engine;
    private final Gpt2Tokenizer tokenizer;
    private final ServerOptions options;
    private final byte[] keyDigest;
    private final HttpServer server;
    private final ExecutorService executor = Executors.newVirtualThreadPerTaskExecutor();
    private final long created = System.currentTimeMillis() / 1000;

    /**
     * Binds the address and starts serving.
     *
     * @throws IOException when the address cannot be bound (in use, not an address of this host)
     */
    public OpenAiServer(Engine engine, Gpt2Tokenizer tokenizer, ServerOptions options) throws IOException {
        this.engine = Objects.requireNonNull(engine, "engine");
        this.tokenizer = Objects.requireNonNull(tokenizer, "tokenizer");
        this.options = Objects.requireNonNull(options, "options");
        this.keyDigest = options.apiKey() == null ? null : sha256(options.apiKey());
        this.server = HttpServer.create(new InetSocketAddress(options.host(), options.port()), 0);
        server.createContext("/", this::handle);
        server.setExecutor(executor);
        server.start();
    }

    /** The port bound (the one picked when the options asked for 0). */
    public int port() {
        return server.getAddress().getPort();
    }

    /** The address clients reach, as {@code http://HOST:PORT}. */
    public String url() {
        String host = options.host().contains(":") ? "[" + options.host() + "]" : options.host();
        return "http://" + host + ":" + port();
    }

    /** Stops accepting connections and ends the exchanges under way (their streams are cut). */
    @Override
    public void close() {
        server.stop(0);
        executor.shutdownNow();
    }

    // ------------------------------------------------------------------ dispatch

    private void handle(HttpExchange ex) throws IOException {
        try (ex) {
            try {
                route(ex);
            } catch (ApiException e) {
                send(ex, e.status(), e.body(), e.status() == 429 ? RETRY_AFTER_S : -1);
            } catch (IOException e) {
                // the client went away: nothing to answer
            } catch (RuntimeException e) {
                ApiException server = new ApiException(500, "server_error", null, null,
                        "the server failed on this request: " + e.getMessage());
                send(ex, 500, server.body(), -1);
            }
        }
    }

    private void route(HttpExchange ex) throws IOException {
        String path = ex.getRequestURI().getPath();
        switch (path) {
            case "/" -> {
                method(ex, "GET");
                byte[] page = playground();
                ex.getResponseHeaders().set("Content-Type", "text/html; charset=utf-8");
                ex.getResponseHeaders().set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline';"
                        + " style-src 'unsafe-inline'");
                ex.sendResponseHeaders(200, page.length);
                try (OutputStream out = ex.getResponseBody()) {
                    out.write(page);
                }
            }
            case "/health" -> {
                method(ex, "GET");
                send(ex, 200, Map.of("status", "ok"), -1);
            }
            case "/metrics" -> {
                method(ex, "GET");
                byte[] text = PrometheusText.of(engine.metrics()).getBytes(StandardCharsets.UTF_8);
                ex.getResponseHeaders().set("Content-Type", PrometheusText.CONTENT_TYPE);
                ex.sendResponseHeaders(200, text.length);
                try (OutputStream out = ex.getResponseBody()) {
                    out.write(text);
                }
            }
            case "/v1/models" -> {
                method(ex, "GET");
                authorize(ex);
                send(ex, 200, models(), -1);
            }
            case "/v1/completions" -> {
                method(ex, "POST");
                authorize(ex);
                complete(ex);
            }
            case "/v1/chat/completions" -> {
                method(ex, "POST");
                authorize(ex);
                chat(ex);
            }
            default -> throw new ApiException(404, "invalid_request_error", null, null,
                    "no such path: " + ex.getRequestMethod() + " " + path);
        }
    }

    /** The playground page (prompt, sampling settings, the streamed text), a resource of this module. */
    private static byte[] playground() throws IOException {
        try (var in = OpenAiServer.class.getResourceAsStream("playground.html")) {
            if (in == null) {
                throw new IllegalStateException("the playground page is missing from this build");
            }
            return in.readAllBytes();
        }
    }

    private static void method(HttpExchange ex, String allowed) {
        if (!ex.getRequestMethod().equals(allowed)) {
            ex.getResponseHeaders().set("Allow", allowed);
            throw new ApiException(405, "invalid_request_error", null, null, ex.getRequestMethod() + " is not"
                    + " allowed on " + ex.getRequestURI().getPath() + "; use " + allowed);
        }
    }

    /** Checks the bearer token when the server has a key; the digests compare in constant time. */
    private void authorize(HttpExchange ex) {
        if (keyDigest == null) {
            return;
        }
        String header = ex.getRequestHeaders().getFirst("Authorization");
        String token = header != null && header.regionMatches(true, 0, "Bearer ", 0, 7) ? header.substring(7).trim()
                : "";
        if (!MessageDigest.isEqual(keyDigest, sha256(token))) {
            throw new ApiException(401, "invalid_request_error", null, "invalid_api_key",
                    header == null ? "no API key given: send it as 'Authorization: Bearer KEY'"
                            : "incorrect API key");
        }
    }

    private Map<String, Object> models() {
        Map<String, Object> model = new LinkedHashMap<>();
        model.put("id", options.modelId());
        model.put("object", "model");
        model.put("created", created);
        model.put("owned_by", "based4j");
        return Map.of("object", "list", "data", List.of(model));
    }

    // ------------------------------------------------------------------ completions

    /** {@code POST /v1/completions}: every prompt's n choices, numbered prompt-major. */
    private void complete(HttpExchange ex) throws IOException {
        CompletionRequest req = CompletionRequest.parse(body(ex), tokenizer);
        String id = "cmpl-" + UUID.randomUUID().toString().replace("-", "");
        long createdAt = System.currentTimeMillis() / 1000;
        List<String> echoes = req.prompts().stream().map(p -> req.echo() ? tokenizer.decode(p) : "").toList();
        int n = req.n();
        CompletionStream.Format format = new CompletionStream.Format() {
            @Override
            public Map<String, Object> start(int index) {
                String echo = echoes.get(index / n);
                return echo.isEmpty() ? null : completion(id, createdAt, index, echo, null);
            }

            @Override
            public Map<String, Object> piece(int index, String text) {
                return completion(id, createdAt, index, text, null);
            }

            @Override
            public Map<String, Object> end(int index, String finishReason) {
                return completion(id, createdAt, index, "", finishReason);
            }

            @Override
            public Map<String, Object> usage(Map<String, Object> usage) {
                return usageChunk(envelope(id, "text_completion", createdAt, null), usage);
            }
        };
        generate(ex, req, "prompt", format, (index, result) -> completion(id, createdAt, index,
                echoes.get(index / n) + result.text(), finishReason(result)));
    }

    /** {@code POST /v1/chat/completions}: the messages through {@link ChatTemplate}, n replies. */
    private void chat(HttpExchange ex) throws IOException {
        CompletionRequest req = CompletionRequest.parseChat(body(ex), tokenizer);
        String id = "chatcmpl-" + UUID.randomUUID().toString().replace("-", "");
        long createdAt = System.currentTimeMillis() / 1000;
        ChatTemplate.LeadingSpaces[] spaces = new ChatTemplate.LeadingSpaces[req.n()];
        CompletionStream.Format format = new CompletionStream.Format() {
            @Override
            public Map<String, Object> start(int index) {
                spaces[index] = new ChatTemplate.LeadingSpaces();
                return chatChunk(id, createdAt, index, "delta", Map.of("role", "assistant", "content", ""), null);
            }

            @Override
            public Map<String, Object> piece(int index, String text) {
                String content = spaces[index].strip(text);
                return content.isEmpty() ? null
                        : chatChunk(id, createdAt, index, "delta", Map.of("content", content), null);
            }

            @Override
            public Map<String, Object> end(int index, String finishReason) {
                return chatChunk(id, createdAt, index, "delta", Map.of(), finishReason);
            }

            @Override
            public Map<String, Object> usage(Map<String, Object> usage) {
                return usageChunk(envelope(id, "chat.completion.chunk", createdAt, null), usage);
            }
        };
        generate(ex, req, "messages", format, (index, result) -> chatChunk(id, createdAt, index, "message",
                Map.of("role", "assistant", "content", result.text().stripLeading()), finishReason(result)));
    }

    /**
     * Submits every choice of a request to the engine together and answers: streamed through {@code format}, or
     * one body of all choices ({@code whole} makes a body of one choice; their choices are merged) with the usage
     * summed (each prompt counted once, every choice's generated tokens).
     */
    private void generate(HttpExchange ex, CompletionRequest req, String promptField, CompletionStream.Format format,
                          BiFunction<Integer, GenerationResult, Map<String, Object>> whole) throws IOException {
        if (req.model() != null && !req.model().equals(options.modelId())) {
            throw new ApiException(404, "invalid_request_error", "model", "model_not_found",
                    "the model '" + req.model() + "' does not exist here; this server has '" + options.modelId()
                            + "'");
        }
        List<GenerationRequest> choices = new ArrayList<>();
        for (int p = 0; p < req.prompts().size(); p++) {
            String name = req.prompts().size() == 1 ? promptField : promptField + "[" + p + "]";
            int[] prompt = req.prompts().get(p);
            int maxTokens = maxTokens(req, prompt, name);
            for (int j = 0; j < req.n(); j++) {
                choices.add(new GenerationRequest(prompt, maxTokens, req.sampling(choices.size()), req.stop(), true));
            }
        }
        CompletionStream stream = new CompletionStream();
        List<RequestHandle> handles = new ArrayList<>();
        List<List<TokenLogprobs>> logprobs = new ArrayList<>();
        try {
            for (int i = 0; i < choices.size(); i++) {
                List<TokenLogprobs> tokens = new ArrayList<>(); // written by the engine thread until the result
                logprobs.add(tokens);
                StreamListener listener = req.stream() ? stream.listener(i) : new StreamListener() {
                    @Override
                    public void onToken(int tokenId, String text) {
                    }

                    @Override
                    public void onLogprobs(TokenLogprobs token) {
                        tokens.add(token);
                    }
                };
                handles.add(submit(choices.get(i), req.logprobs(), listener, promptField));
            }
        } catch (RuntimeException e) {
            handles.forEach(RequestHandle::cancel); // all of the request runs, or none of it
            throw e;
        }
        long promptTokens = req.prompts().stream().mapToLong(p -> p.length).sum();
        if (req.stream()) {
            stream.send(ex, handles, format, req.includeUsage() ? promptTokens : -1);
            return;
        }
        Map<String, Object> body = null;
        List<Object> merged = new ArrayList<>();
        long completionTokens = 0;
        for (int i = 0; i < handles.size(); i++) {
            GenerationResult result;
            try {
                result = handles.get(i).result().join();
            } catch (RuntimeException e) {
                handles.forEach(RequestHandle::cancel);
                Throwable cause = e.getCause() != null ? e.getCause() : e;
                if (cause instanceof RequestTimeoutException) {
                    throw new ApiException(504, "server_error", null, "timeout", "the request ran past this"
                            + " server's request timeout of " + RequestTimeoutException.seconds(
                            options.requestTimeout()));
                }
                throw new ApiException(503, "server_error", null, null, "the request did not finish: "
                        + cause.getMessage());
            }
            completionTokens += result.tokens().length;
            body = whole.apply(i, result);
            if (req.logprobs() >= 0) {
                @SuppressWarnings("unchecked")
                Map<String, Object> choice = ((List<Map<String, Object>>) body.get("choices")).getFirst();
                choice.put("logprobs", legacyLogprobs(logprobs.get(i), result.tokens().length));
            }
            merged.addAll((List<?>) body.get("choices"));
        }
        body.put("choices", merged);
        body.put("usage", usage(promptTokens, completionTokens));
        send(ex, 200, body, -1);
    }

    /** The tokens a prompt may generate: as asked, or the room left ({@link CompletionRequest#FILL}), checked. */
    private int maxTokens(CompletionRequest req, int[] prompt, String name) {
        int limit = engine.options().maxTokensPerSequence();
        if (req.maxTokens() >= limit) {
            throw ApiException.badRequest("max_tokens", "max_tokens " + req.maxTokens() + " leaves no room for a"
                    + " prompt in this server's limit of " + limit + " tokens per sequence");
        }
        if (req.maxTokens() == CompletionRequest.FILL) {
            if (prompt.length >= limit) {
                throw ApiException.badRequest(name, "the prompt of " + prompt.length + " tokens leaves no room to"
                        + " generate in this server's limit of " + limit + " tokens per sequence");
            }
            return limit - prompt.length;
        }
        if (prompt.length + (long) req.maxTokens() > limit) {
            throw ApiException.badRequest(name, "the prompt of " + prompt.length + " tokens and max_tokens "
                    + req.maxTokens() + " need " + (prompt.length + (long) req.maxTokens())
                    + " tokens, over this server's limit of " + limit + " tokens per sequence");
        }
        return req.maxTokens();
    }

    /**
     * The completions API's logprobs object of a choice's first {@code count} tokens (those of its text; an ending
     * end-of-text is left out): each token's text, its logprob, the most likely tokens' texts and logprobs, and
     * where the token's text starts in the choice's text.
     */
    private Map<String, Object> legacyLogprobs(List<TokenLogprobs> generated, int count) {
        List<String> tokens = new ArrayList<>();
        List<Double> tokenLogprobs = new ArrayList<>();
        List<Map<String, Object>> top = new ArrayList<>();
        List<Integer> offsets = new ArrayList<>();
        int offset = 0;
        for (TokenLogprobs t : generated.subList(0, count)) {
            String text = tokenizer.decode(new int[] {t.id()});
            tokens.add(text);
            tokenLogprobs.add(t.logprob());
            Map<String, Object> alternatives = new LinkedHashMap<>();
            for (int k = 0; k < t.topIds().length; k++) {
                alternatives.putIfAbsent(tokenizer.decode(new int[] {t.topIds()[k]}), t.topLogprobs()[k]);
            }
            top.add(alternatives);
            offsets.add(offset);
            offset += text.length();
        }
        Map<String, Object> logprobs = new LinkedHashMap<>();
        logprobs.put("tokens", tokens);
        logprobs.put("token_logprobs", tokenLogprobs);
        logprobs.put("top_logprobs", top);
        logprobs.put("text_offset", offsets);
        return logprobs;
    }

    private RequestHandle submit(GenerationRequest generation, int topLogprobs, StreamListener listener,
                                 String promptField) {
        try {
            return engine.submit(generation, topLogprobs, options.requestTimeout(), listener);
        } catch (QueueFullException e) {
            throw new ApiException(429, "rate_limit_exceeded", null, "rate_limit_exceeded", e.getMessage());
        } catch (IllegalArgumentException e) {
            throw ApiException.badRequest(promptField, e.getMessage()); // a token outside the vocabulary
        } catch (IllegalStateException e) {
            throw new ApiException(503, "server_error", null, null, e.getMessage());
        }
    }

    /** A completion object of one choice (a whole answer, or a streamed chunk: then finishReason may be null). */
    private Map<String, Object> completion(String id, long createdAt, int index, String text, String finishReason) {
        Map<String, Object> choice = new LinkedHashMap<>();
        choice.put("text", text);
        choice.put("index", index);
        choice.put("logprobs", null);
        choice.put("finish_reason", finishReason);
        return envelope(id, "text_completion", createdAt, choice);
    }

    /** A chat.completion ({@code key} "message") or chat.completion.chunk ({@code key} "delta") of one choice. */
    private Map<String, Object> chatChunk(String id, long createdAt, int index, String key, Map<String, Object> message,
                                          String finishReason) {
        Map<String, Object> choice = new LinkedHashMap<>();
        choice.put("index", index);
        choice.put(key, message);
        choice.put("logprobs", null);
        choice.put("finish_reason", finishReason);
        return envelope(id, key.equals("delta") ? "chat.completion.chunk" : "chat.completion", createdAt, choice);
    }

    /** The fields every body and chunk has, with one choice (none where {@code choice} is null). */
    private Map<String, Object> envelope(String id, String object, long createdAt, Map<String, Object> choice) {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("id", id);
        body.put("object", object);
        body.put("created", createdAt);
        body.put("model", options.modelId());
        body.put("choices", choice == null ? new ArrayList<>() : new ArrayList<>(List.of(choice)));
        return body;
    }

    /** A stream's last chunk: no choices and the usage. */
    private static Map<String, Object> usageChunk(Map<String, Object> chunk, Map<String, Object> usage) {
        chunk.put("usage", usage);
        return chunk;
    }

    /** OpenAI's usage object: each prompt counted once, every choice's generated tokens. */
    static Map<String, Object> usage(long promptTokens, long completionTokens) {
        Map<String, Object> usage = new LinkedHashMap<>();
        usage.put("prompt_tokens", promptTokens);
        usage.put("completion_tokens", completionTokens);
        usage.put("total_tokens", promptTokens + completionTokens);
        return usage;
    }

    static String finishReason(GenerationResult result) {
        return result.finish() == GenerationResult.Finish.LENGTH ? "length" : "stop";
    }

    // ------------------------------------------------------------------ bodies

    /**
     * The request body as a JSON object, refused past {@link #MAX_BODY_BYTES} or when it is not UTF-8 JSON; a body
     * that does not arrive within the body timeout is answered 408 ({@link BodyReader}).
     */
    private Map<String, Object> body(HttpExchange ex) throws IOException {
        byte[] bytes = BodyReader.read(ex, MAX_BODY_BYTES, options.bodyTimeout());
        if (bytes.length > MAX_BODY_BYTES) {
            throw ApiException.badRequest(null, "the request body is larger than the limit of " + MAX_BODY_BYTES
                    + " bytes");
        }
        String text;
        ByteBuffer buffer = ByteBuffer.wrap(bytes);
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(buffer).toString();
        } catch (CharacterCodingException e) {
            throw ApiException.badRequest(null, "the request body is not UTF-8 (bad byte at offset "
                    + buffer.position() + ")");
        }
        try {
            return Json.parseObject(text, MAX_BODY_BYTES);
        } catch (JsonException e) {
            throw ApiException.badRequest(null, "the request body is not a JSON object: " + e.getMessage());
        }
    }

    static void send(HttpExchange ex, int status, Map<String, Object> body, int retryAfter) throws IOException {
        byte[] bytes = Json.write(body).getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        if (retryAfter >= 0) {
            ex.getResponseHeaders().set("Retry-After", String.valueOf(retryAfter));
        }
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }

    private static byte[] sha256(String s) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this Java runtime", e);
        }
    }
}
