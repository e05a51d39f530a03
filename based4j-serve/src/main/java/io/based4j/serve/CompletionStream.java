package io.based4j.serve;

import com.sun.net.httpserver.HttpExchange;
import io.based4j.generate.GenerationResult;
import io.based4j.json.Json;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.BiFunction;

/**
 * Streams one completion as server-sent events, as OpenAI sends them: a {@code data: CHUNK} event for each piece
 * of text (finish_reason null), a last chunk with the finish reason, then {@code data: [DONE]}. The engine's thread
 * only queues the pieces; the exchange's thread writes them, and a write that fails (the client went away) cancels
 * the request, which frees its slot at the engine's next step.
 */
final class CompletionStream implements StreamListener {
    private sealed interface Event permits Piece, End, Failed { }

    private record Piece(String text) implements Event { }

    private record End(GenerationResult result) implements Event { }

    private record Failed(Throwable error) implements Event { }

    private final LinkedBlockingQueue<Event> events = new LinkedBlockingQueue<>();

    @Override
    public void onToken(int tokenId, String text) {
        if (!text.isEmpty()) {
            events.add(new Piece(text));
        }
    }

    @Override
    public void onFinish(GenerationResult result) {
        events.add(new End(result));
    }

    @Override
    public void onError(Throwable error) {
        events.add(new Failed(error));
    }

    /**
     * Writes the events of the request until it ends. {@code chunk} makes a completion chunk of a text and a finish
     * reason (null until the last). An error after the stream has started ends it with an error event.
     */
    void send(HttpExchange ex, RequestHandle handle, String echo,
              BiFunction<String, String, Map<String, Object>> chunk) throws IOException {
        ex.getResponseHeaders().set("Content-Type", "text/event-stream");
        ex.getResponseHeaders().set("Cache-Control", "no-cache");
        try {
            ex.sendResponseHeaders(200, 0);
            OutputStream out = ex.getResponseBody();
            if (!echo.isEmpty()) {
                event(out, Json.write(chunk.apply(echo, null)));
            }
            while (true) {
                Event e = events.take();
                switch (e) {
                    case Piece p -> event(out, Json.write(chunk.apply(p.text(), null)));
                    case End end -> {
                        event(out, Json.write(chunk.apply("", OpenAiServer.finishReason(end.result()))));
                        event(out, "[DONE]");
                        out.close();
                        return;
                    }
                    case Failed f -> {
                        ApiException error = new ApiException(503, "server_error", null, null,
                                "the request did not finish: " + f.error().getMessage());
                        event(out, Json.write(error.body()));
                        out.close();
                        return;
                    }
                }
            }
        } catch (IOException | InterruptedException e) {
            handle.cancel(); // the client is gone, or the server is closing
            if (e instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private static void event(OutputStream out, String data) throws IOException {
        out.write(("data: " + data + "\n\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }
}
