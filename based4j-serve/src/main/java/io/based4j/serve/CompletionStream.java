package io.based4j.serve;

import com.sun.net.httpserver.HttpExchange;
import io.based4j.generate.GenerationResult;
import io.based4j.json.Json;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * Streams the choices of one request as server-sent events, as OpenAI sends them: for each choice an opening chunk
 * where the format has one, a {@code data: CHUNK} event for each piece of text, a last chunk with the finish
 * reason, where asked a chunk of the usage, and after every choice has ended {@code data: [DONE]}. The engine's thread only queues the pieces; the
 * exchange's thread writes them, and a write that fails (the client went away) cancels the choices still running,
 * which frees their slots at the engine's next step. A choice stopped at the request timeout ends with the text it
 * had and {@code finish_reason "length"}, as one cut by {@code max_tokens} does (the status line is already sent).
 */
final class CompletionStream {
    /** The chunks of one API's stream; a method returning null sends nothing. */
    interface Format {
        /** The chunk that opens choice {@code index} (the echoed prompt, the assistant's role), or null. */
        Map<String, Object> start(int index);

        /** A chunk carrying a piece of choice {@code index}'s text, or null to send nothing. */
        Map<String, Object> piece(int index, String text);

        /** The last chunk of choice {@code index}, with its finish reason. */
        Map<String, Object> end(int index, String finishReason);

        /** The chunk after every choice's last one that carries the request's usage, with no choices. */
        Map<String, Object> usage(Map<String, Object> usage);
    }

    private sealed interface Event permits Piece, End, Failed { }

    private record Piece(int index, String text) implements Event { }

    private record End(int index, GenerationResult result) implements Event { }

    private record Failed(int index, Throwable error) implements Event { }

    private final LinkedBlockingQueue<Event> events = new LinkedBlockingQueue<>();

    /** The listener for choice {@code index}: it queues that choice's events. */
    StreamListener listener(int index) {
        return new StreamListener() {
            @Override
            public void onToken(int tokenId, String text) {
                if (!text.isEmpty()) {
                    events.add(new Piece(index, text));
                }
            }

            @Override
            public void onFinish(GenerationResult result) {
                events.add(new End(index, result));
            }

            @Override
            public void onError(Throwable error) {
                events.add(new Failed(index, error));
            }
        };
    }

    /**
     * Writes the events of the choices (handle {@code i} is choice {@code i}) until all have ended. An error after
     * the stream has started ends it with an error event and cancels the other choices.
     */
    void send(HttpExchange ex, List<RequestHandle> handles, Format format) throws IOException {
        send(ex, handles, format, -1);
    }

    /**
     * {@link #send}, and where {@code promptTokens >= 0} ({@code stream_options.include_usage}), as OpenAI does:
     * {@code "usage": null} in every chunk, and before {@code [DONE]} a chunk with no choices and the usage (the
     * prompts' tokens, every choice's generated tokens).
     */
    void send(HttpExchange ex, List<RequestHandle> handles, Format format, long promptTokens) throws IOException {
        boolean usage = promptTokens >= 0;
        long completionTokens = 0;
        ex.getResponseHeaders().set("Content-Type", "text/event-stream");
        ex.getResponseHeaders().set("Cache-Control", "no-cache");
        try {
            ex.sendResponseHeaders(200, 0);
            OutputStream out = ex.getResponseBody();
            for (int i = 0; i < handles.size(); i++) {
                event(out, format.start(i), usage);
            }
            int running = handles.size();
            while (running > 0) {
                switch (events.take()) {
                    case Piece p -> event(out, format.piece(p.index(), p.text()), usage);
                    case End end -> {
                        event(out, format.end(end.index(), OpenAiServer.finishReason(end.result())), usage);
                        completionTokens += end.result().tokens().length;
                        running--;
                    }
                    case Failed f when f.error() instanceof RequestTimeoutException t -> {
                        // past the request timeout: the choice ends as one cut by length, with what it wrote
                        event(out, format.end(f.index(), "length"), usage);
                        completionTokens += t.partial().tokens().length;
                        running--;
                    }
                    case Failed f -> {
                        handles.forEach(RequestHandle::cancel);
                        ApiException error = new ApiException(503, "server_error", null, null,
                                "the request did not finish: " + f.error().getMessage());
                        event(out, error.body(), false);
                        out.close();
                        return;
                    }
                }
            }
            if (usage) {
                event(out, format.usage(OpenAiServer.usage(promptTokens, completionTokens)), false);
            }
            write(out, "[DONE]");
            out.close();
        } catch (IOException | InterruptedException e) {
            handles.forEach(RequestHandle::cancel); // the client is gone, or the server is closing
            if (e instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Writes a chunk (null: nothing), with {@code "usage": null} where {@code nullUsage}. */
    private static void event(OutputStream out, Map<String, Object> chunk, boolean nullUsage) throws IOException {
        if (chunk != null) {
            if (nullUsage) {
                chunk = new LinkedHashMap<>(chunk);
                chunk.put("usage", null);
            }
            write(out, Json.write(chunk));
        }
    }

    private static void write(OutputStream out, String data) throws IOException {
        out.write(("data: " + data + "\n\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }
}
