package io.based4j.config;

/** A checkpoint configuration that is missing a field, has a field of the wrong type, or is inconsistent. */
public final class ConfigException extends RuntimeException {
    public ConfigException(String message) {
        super(message);
    }
}
