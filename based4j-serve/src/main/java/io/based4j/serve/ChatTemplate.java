package io.based4j.serve;

import io.based4j.json.Json;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * How a chat becomes a prompt for a base model, which knows no chat format of its own. Each message is a line
 * {@code "System: CONTENT\n"}, {@code "User: CONTENT\n"} or {@code "Assistant: CONTENT\n"} by its role, in order,
 * and the prompt ends with {@code "Assistant:"} for the model to continue; for example
 * <pre>
 * System: You answer briefly.
 * User: What is the capital of France?
 * Assistant:</pre>
 * Generation stops at {@link #STOPS} (a new line that starts another speaker's turn), as well as at the request's own
 * stop strings, end-of-text and its token limit; the reply is the text generated before the stop, without the
 * spaces the model puts after {@code "Assistant:"}.
 */
final class ChatTemplate {
    /** A new line that starts the user's (or a system) turn: the assistant's turn is over. */
    static final List<String> STOPS = List.of("\nUser:", "\nSystem:");
    private static final Map<String, String> SPEAKERS = Map.of("system", "System", "user", "User",
            "assistant", "Assistant");
    private static final Set<String> ROLES = Set.of("system", "user", "assistant");

    private ChatTemplate() {
    }

    /** The prompt of a request's {@code messages}, checked: a non-empty array of {role, content} objects. */
    static String render(Object messages) {
        if (messages == null) {
            throw ApiException.badRequest("messages", "messages is required");
        }
        if (!(messages instanceof List<?> list)) {
            throw ApiException.badRequest("messages", "messages must be an array, got " + Json.typeName(messages));
        }
        if (list.isEmpty()) {
            throw ApiException.badRequest("messages", "messages is empty: give at least one message");
        }
        StringBuilder prompt = new StringBuilder();
        for (int i = 0; i < list.size(); i++) {
            String at = "messages[" + i + "]";
            if (!(list.get(i) instanceof Map<?, ?> message)) {
                throw ApiException.badRequest(at, at + " must be an object, got " + Json.typeName(list.get(i)));
            }
            Object role = message.get("role");
            if (!(role instanceof String r) || !ROLES.contains(r)) {
                throw ApiException.badRequest(at + ".role", at + ".role must be one of 'system', 'user',"
                        + " 'assistant', got " + (role instanceof String s ? "'" + s + "'" : Json.typeName(role)));
            }
            Object content = message.get("content");
            if (!(content instanceof String c)) {
                throw ApiException.badRequest(at + ".content", at + ".content must be a string, got "
                        + Json.typeName(content));
            }
            prompt.append(SPEAKERS.get(r)).append(": ").append(c).append('\n');
        }
        return prompt.append("Assistant:").toString();
    }

    /** Drops the spaces that start a reply, piece by piece as it streams: each instance serves one reply. */
    static final class LeadingSpaces {
        private boolean started;

        String strip(String piece) {
            if (started) {
                return piece;
            }
            String rest = piece.stripLeading();
            started = !rest.isEmpty();
            return rest;
        }
    }
}
