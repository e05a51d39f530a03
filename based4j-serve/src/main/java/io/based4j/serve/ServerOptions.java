package io.based4j.serve;

/**
 * Where and how an {@link OpenAiServer} listens.
 *
 * @param host address to bind (loopback unless told otherwise)
 * @param port port to bind; 0 picks a free one
 * @param modelId the name clients give as {@code model} and {@code GET /v1/models} lists
 * @param apiKey the key clients must send as {@code Authorization: Bearer KEY}, or null for none
 */
public record ServerOptions(String host, int port, String modelId, String apiKey) {
    public static final String LOOPBACK = "127.0.0.1";

    public ServerOptions {
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port must be in 0..65535, got " + port);
        }
        if (apiKey != null && apiKey.isEmpty()) {
            throw new IllegalArgumentException("the API key is empty");
        }
    }
}
