package io.based4j.serve;

import io.based4j.json.Json;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The body of {@code POST /v1/completions} or {@code POST /v1/chat/completions}, checked field by field; a field of
 * the wrong type or out of range is refused with an {@link ApiException} naming it.
 *
 * @param model the model asked for, or null
 * @param prompts the prompts' token ids (a text prompt is encoded; a chat's messages make one prompt through
 *                {@link ChatTemplate})
 * @param n choices generated for each prompt
 * @param maxTokens most tokens to generate, or {@link #FILL} for as many as the server's sequence limit leaves
 * @param sampling temperature, top-k, top-p and seed (choice {@code i} of the answer is sampled with seed + i)
 * @param stop stop strings
 * @param echo whether the text returned starts with the prompt
 * @param stream whether the answer is sent as server-sent events
 * @param includeUsage whether a stream ends with a chunk of the usage ({@code stream_options.include_usage})
 * @param logprobs the most likely tokens reported beside each generated token's logprob; -1: no logprobs
 */
record CompletionRequest(String model, List<int[]> prompts, int n, int maxTokens, SamplingParams sampling,
                         List<String> stop, boolean echo, boolean stream, boolean includeUsage, int logprobs) {
    /** OpenAI's default for max_tokens in the completions API. */
    static final int DEFAULT_MAX_TOKENS = 16;
    /** {@link #maxTokens()} of a chat that gives none: the room the prompt leaves in a sequence. */
    static final int FILL = -1;
    /** OpenAI accepts at most 4 stop strings. */
    static final int MAX_STOPS = 4;
    /** OpenAI's largest n. */
    static final int MAX_N = 128;

    /** A {@code /v1/completions} body. */
    static CompletionRequest parse(Map<String, Object> body, Gpt2Tokenizer tokenizer) {
        List<int[]> prompts = prompts(body.get("prompt"), tokenizer);
        int maxTokens = integer(body, "max_tokens", DEFAULT_MAX_TOKENS);
        boolean echo = optional(body, "echo", Boolean.class, false);
        CompletionRequest req = common(body, prompts, maxTokens, echo, List.of());
        if (body.get("logprobs") == null) {
            return req;
        }
        int logprobs = integer(body, "logprobs", -1);
        if (logprobs < 0 || logprobs > TokenLogprobs.MAX_TOP) {
            throw ApiException.badRequest("logprobs", "logprobs must be in 0.." + TokenLogprobs.MAX_TOP + ", got "
                    + logprobs);
        }
        if (req.stream() || req.echo()) {
            throw ApiException.badRequest("logprobs", "logprobs with " + (req.stream() ? "stream" : "echo")
                    + " is not supported yet");
        }
        return new CompletionRequest(req.model(), req.prompts(), req.n(), req.maxTokens(), req.sampling(),
                req.stop(), req.echo(), req.stream(), req.includeUsage(), logprobs);
    }

    /** A {@code /v1/chat/completions} body: its messages make one prompt through {@link ChatTemplate}. */
    static CompletionRequest parseChat(Map<String, Object> body, Gpt2Tokenizer tokenizer) {
        String prompt = ChatTemplate.render(body.get("messages"));
        Object limit = body.get("max_completion_tokens") != null ? "max_completion_tokens" : "max_tokens";
        int maxTokens = integer(body, (String) limit, FILL);
        if (maxTokens < 0 && body.get(limit) != null) {
            throw ApiException.badRequest((String) limit, limit + " must be >= 0, got " + maxTokens);
        }
        if (Boolean.TRUE.equals(body.get("logprobs"))) {
            throw ApiException.badRequest("logprobs", "logprobs is not supported for chat yet");
        }
        return common(body, List.of(tokenizer.encode(prompt)), maxTokens, false, ChatTemplate.STOPS);
    }

    private static CompletionRequest common(Map<String, Object> body, List<int[]> prompts, int maxTokens,
                                            boolean echo, List<String> templateStops) {
        String model = optional(body, "model", String.class, null);
        if (maxTokens < 0 && maxTokens != FILL) {
            throw ApiException.badRequest("max_tokens", "max_tokens must be >= 0, got " + maxTokens);
        }
        double temperature = number(body, "temperature", 1.0);
        if (!(temperature >= 0 && temperature <= 2)) {
            throw ApiException.badRequest("temperature", "temperature must be in [0, 2], got " + temperature);
        }
        double topP = number(body, "top_p", 1.0);
        if (!(topP > 0 && topP <= 1)) {
            throw ApiException.badRequest("top_p", "top_p must be in (0, 1], got " + topP);
        }
        int topK = integer(body, "top_k", 0);
        if (topK < -1) {
            throw ApiException.badRequest("top_k", "top_k must be >= 0 (0 or -1: off), got " + topK);
        }
        Object seedValue = body.get("seed");
        long seed = seedValue == null ? ThreadLocalRandom.current().nextLong() : integerValue("seed", seedValue);
        List<String> stop = new ArrayList<>(stop(body.get("stop")));
        stop.addAll(templateStops);
        boolean stream = optional(body, "stream", Boolean.class, false);
        boolean includeUsage = includeUsage(body, stream);
        int n = integer(body, "n", 1);
        if (n < 1 || n > MAX_N) {
            throw ApiException.badRequest("n", "n must be in 1.." + MAX_N + ", got " + n);
        }
        notSupported(body, "best_of", 1L);
        SamplingParams sampling = new SamplingParams((float) temperature, Math.max(topK, 0), (float) topP, seed);
        return new CompletionRequest(model, prompts, n, maxTokens, sampling, List.copyOf(stop), echo, stream,
                includeUsage, -1);
    }

    /** {@code stream_options.include_usage}, as OpenAI takes it: an object allowed only with {@code stream}. */
    private static boolean includeUsage(Map<String, Object> body, boolean stream) {
        Object options = body.get("stream_options");
        if (options == null) {
            return false;
        }
        if (!(options instanceof Map<?, ?> map)) {
            throw ApiException.badRequest("stream_options", "stream_options must be an object, got "
                    + Json.typeName(options));
        }
        if (!stream) {
            throw ApiException.badRequest("stream_options", "stream_options is only allowed when stream is true");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> fields = (Map<String, Object>) map;
        return optional(fields, "include_usage", Boolean.class, false);
    }

    /** Sampling of choice {@code index}: the request's, with seed + index, so that n choices differ. */
    SamplingParams sampling(int index) {
        return new SamplingParams(sampling.temperature(), sampling.topK(), sampling.topP(), sampling.seed() + index);
    }

    /**
     * A string, an array of token ids, or an array of several prompts (strings or arrays of token ids).
     */
    private static List<int[]> prompts(Object value, Gpt2Tokenizer tokenizer) {
        if (value == null) {
            throw ApiException.badRequest("prompt", "prompt is required");
        }
        if (value instanceof List<?> list && !list.isEmpty() && !(list.get(0) instanceof Number)) {
            List<int[]> prompts = new ArrayList<>();
            for (int i = 0; i < list.size(); i++) {
                prompts.add(prompt("prompt[" + i + "]", list.get(i), tokenizer));
            }
            return prompts;
        }
        return List.of(prompt("prompt", value, tokenizer));
    }

    private static int[] prompt(String name, Object value, Gpt2Tokenizer tokenizer) {
        int[] ids;
        if (value instanceof String text) {
            ids = tokenizer.encode(text);
        } else if (value instanceof List<?> list) {
            ids = new int[list.size()];
            for (int i = 0; i < ids.length; i++) {
                if (!(list.get(i) instanceof Long id) || id < 0 || id > Integer.MAX_VALUE) {
                    throw ApiException.badRequest("prompt", name + "[" + i + "] must be a token id (an integer >= 0),"
                            + " got " + Json.typeName(list.get(i)));
                }
                ids[i] = (int) (long) id;
            }
        } else {
            throw ApiException.badRequest("prompt", name + " must be a string or an array of token ids, got "
                    + Json.typeName(value));
        }
        if (ids.length == 0) {
            throw ApiException.badRequest("prompt", name + " is empty: give at least one token");
        }
        return ids;
    }

    private static List<String> stop(Object value) {
        if (value == null) {
            return List.of();
        }
        if (value instanceof String s) {
            return List.of(s);
        }
        if (!(value instanceof List<?> list)) {
            throw ApiException.badRequest("stop", "stop must be a string or an array of strings, got "
                    + Json.typeName(value));
        }
        if (list.size() > MAX_STOPS) {
            throw ApiException.badRequest("stop", "stop holds " + list.size() + " strings, over the limit of "
                    + MAX_STOPS);
        }
        List<String> stops = new ArrayList<>();
        for (Object o : list) {
            if (!(o instanceof String s)) {
                throw ApiException.badRequest("stop", "stop must be an array of strings, found " + Json.typeName(o));
            }
            stops.add(s);
        }
        return stops;
    }

    private static void notSupported(Map<String, Object> body, String field, long only) {
        Object v = body.get(field);
        if (v != null && !Long.valueOf(only).equals(v)) {
            throw ApiException.badRequest(field, field + " other than " + only + " is not supported yet");
        }
    }

    private static <T> T optional(Map<String, Object> body, String field, Class<T> type, T fallback) {
        Object v = body.get(field);
        if (v == null) {
            return fallback;
        }
        if (!type.isInstance(v)) {
            String want = type == Boolean.class ? "a boolean" : "a string";
            throw ApiException.badRequest(field, field + " must be " + want + ", got " + Json.typeName(v));
        }
        return type.cast(v);
    }

    private static int integer(Map<String, Object> body, String field, int fallback) {
        Object v = body.get(field);
        if (v == null) {
            return fallback;
        }
        long n = integerValue(field, v);
        if (n < Integer.MIN_VALUE || n > Integer.MAX_VALUE) {
            throw ApiException.badRequest(field, field + " is out of range: " + n);
        }
        return (int) n;
    }

    private static long integerValue(String field, Object v) {
        if (v instanceof Long n) {
            return n;
        }
        throw ApiException.badRequest(field, field + " must be an integer, got " + Json.typeName(v)
                + (v instanceof Double d ? " " + d : ""));
    }

    private static double number(Map<String, Object> body, String field, double fallback) {
        Object v = body.get(field);
        if (v == null) {
            return fallback;
        }
        if (!(v instanceof Number n)) {
            throw ApiException.badRequest(field, field + " must be a number, got " + Json.typeName(v));
        }
        return n.doubleValue();
    }
}
