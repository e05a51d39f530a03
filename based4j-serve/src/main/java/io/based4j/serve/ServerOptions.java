package io.based4j.serve;

import java.time.Duration;
import java.util.Objects;

/**
 * Where and how an {@link OpenAiServer} listens.
 *
 * @param host address to bind (loopback unless told otherwise)
 * @param port port to bind; 0 picks a free one
 * @param modelId the name clients give as {@code model} and {@code GET /v1/models} lists
 * @param apiKey the key clients must send as {@code Authorization: Bearer KEY}, or null for none
 * @param requestTimeout longest a completion may take from its arrival, waiting in the queue included (zero: no
 *                       limit); one past it is stopped and its slot freed at the engine's next step
 * @param bodyTimeout longest a client may take to send a request's body once its headers are in (zero: no limit);
 *                    a slower one is answered 408 and its connection closed
 */
public record ServerOptions(String host, int port, String modelId, String apiKey, Duration requestTimeout,
                            Duration bodyTimeout) {
    public static final String LOOPBACK = "127.0.0.1";
    /** The request timeout unless told otherwise: far more than a request of the longest sequences takes. */
    public static final Duration DEFAULT_REQUEST_TIMEOUT = Duration.ofSeconds(600);
    /** The body timeout unless told otherwise: a body of the largest size allowed takes far less on any link. */
    public static final Duration DEFAULT_BODY_TIMEOUT = Duration.ofSeconds(30);

    public ServerOptions {
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port must be in 0..65535, got " + port);
        }
        if (apiKey != null && apiKey.isEmpty()) {
            throw new IllegalArgumentException("the API key is empty");
        }
        notNegative("request timeout", requestTimeout);
        notNegative("body timeout", bodyTimeout);
    }

    /** Options with the default timeouts. */
    public ServerOptions(String host, int port, String modelId, String apiKey) {
        this(host, port, modelId, apiKey, DEFAULT_REQUEST_TIMEOUT, DEFAULT_BODY_TIMEOUT);
    }

    /** These options with another request timeout (zero: none). */
    public ServerOptions withRequestTimeout(Duration timeout) {
        return new ServerOptions(host, port, modelId, apiKey, timeout, bodyTimeout);
    }

    /** These options with another body timeout (zero: none). */
    public ServerOptions withBodyTimeout(Duration timeout) {
        return new ServerOptions(host, port, modelId, apiKey, requestTimeout, timeout);
    }

    private static void notNegative(String what, Duration d) {
        Objects.requireNonNull(d, what);
        if (d.isNegative()) {
            throw new IllegalArgumentException(what + " must not be negative, got " + d);
        }
    }
}
