package io.based4j.json;

/** Thrown when text is not valid JSON or does not have the expected shape. */
public final class JsonException extends RuntimeException {
    public JsonException(String message) {
        super(message);
    }
}
