package io.based4j.serve;

import io.based4j.json.Json;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The body of {@code POST /v1/completions}, checked field by field; a field of the wrong type or out of range is
 * refused with an {@link ApiException} naming it.
 *
 * @param model the model asked for, or null
 * @param prompt the prompt's token ids (a text prompt is encoded)
 * @param maxTokens most tokens to generate
 * @param sampling temperature, top-k, top-p and seed
 * @param stop stop strings
 * @param echo whether the text returned starts with the prompt
 * @param stream whether the answer is sent as server-sent events
 */
record CompletionRequest(String model, int[] prompt, int maxTokens, SamplingParams sampling, List<String> stop,
                         boolean echo, boolean stream) {
    /** OpenAI's default for max_tokens in the completions API. */
    static final int DEFAULT_MAX_TOKENS = 16;
    /** OpenAI accepts at most 4 stop strings. */
    static final int MAX_STOPS = 4;

    static CompletionRequest parse(Map<String, Object> body, Gpt2Tokenizer tokenizer) {
        String model = optional(body, "model", String.class, null);
        int[] prompt = prompt(body.get("prompt"), tokenizer);
        int maxTokens = integer(body, "max_tokens", DEFAULT_MAX_TOKENS);
        if (maxTokens < 0) {
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
        List<String> stop = stop(body.get("stop"));
        boolean echo = optional(body, "echo", Boolean.class, false);
        boolean stream = optional(body, "stream", Boolean.class, false);
        notSupported(body, "n", 1L);
        notSupported(body, "best_of", 1L);
        if (body.get("logprobs") != null) {
            throw ApiException.badRequest("logprobs", "logprobs is not supported yet");
        }
        SamplingParams sampling = new SamplingParams((float) temperature, Math.max(topK, 0), (float) topP, seed);
        return new CompletionRequest(model, prompt, maxTokens, sampling, stop, echo, stream);
    }

    /** A string, an array of token ids, or an array holding one of those (several prompts are not taken yet). */
    private static int[] prompt(Object value, Gpt2Tokenizer tokenizer) {
        if (value == null) {
            throw ApiException.badRequest("prompt", "prompt is required");
        }
        if (value instanceof List<?> list && !list.isEmpty() && !(list.get(0) instanceof Number)) {
            if (list.size() != 1) {
                throw ApiException.badRequest("prompt", "prompt: several prompts in one request are not supported"
                        + " yet; send them as separate requests");
            }
            value = list.get(0);
        }
        int[] ids;
        if (value instanceof String text) {
            ids = tokenizer.encode(text);
        } else if (value instanceof List<?> list) {
            ids = new int[list.size()];
            for (int i = 0; i < ids.length; i++) {
                if (!(list.get(i) instanceof Long id) || id < 0 || id > Integer.MAX_VALUE) {
                    throw ApiException.badRequest("prompt", "prompt[" + i + "] must be a token id (an integer >= 0),"
                            + " got " + Json.typeName(list.get(i)));
                }
                ids[i] = (int) (long) id;
            }
        } else {
            throw ApiException.badRequest("prompt", "prompt must be a string or an array of token ids, got "
                    + Json.typeName(value));
        }
        if (ids.length == 0) {
            throw ApiException.badRequest("prompt", "prompt is empty: give at least one token");
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
