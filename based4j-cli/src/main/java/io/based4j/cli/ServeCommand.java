package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.model.BasedModel;
import io.based4j.serve.Engine;
import io.based4j.serve.EngineOptions;
import io.based4j.serve.OpenAiServer;
import io.based4j.serve.ServerOptions;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "Serve a model over HTTP with OpenAI's completions and chat APIs (GET /health, GET /v1/models, "
                + "POST /v1/completions, POST /v1/chat/completions) and Prometheus metrics (GET /metrics), "
                + "generating for many requests at once; runs until interrupted.")
final class ServeCommand implements Callable<Integer> {
    /** Most tokens of one step: prompt pieces beside the decode tokens; large enough to keep a prefill efficient. */
    static final int TOKENS_PER_STEP = 512;
    /** The prefix cache's default size, in MiB. */
    static final String DEFAULT_PREFIX_CACHE_MIB = "512";
    /** Largest prefix cache asked for: 1 PiB, past any machine's memory, and far from overflowing as bytes. */
    static final long MAX_PREFIX_CACHE_MIB = 1L << 30;
    /** Longest timeout: 100 days, in practice none. */
    static final long MAX_TIMEOUT_S = 100L * 24 * 3600;

    @Mixin
    ModelOptions modelOptions = new ModelOptions();

    @Option(names = "--host", paramLabel = "ADDR", defaultValue = ServerOptions.LOOPBACK,
            description = "Address to listen on (default ${DEFAULT-VALUE}, this machine only; 0.0.0.0 for all).")
    String host;

    @Option(names = "--port", paramLabel = "N", defaultValue = "8000",
            description = "Port to listen on (default ${DEFAULT-VALUE}; 0 picks a free one).")
    int port;

    @Option(names = "--slots", paramLabel = "N", defaultValue = "16",
            description = "Sequences generated together (default ${DEFAULT-VALUE}).")
    int slots;

    @Option(names = "--max-tokens-per-sequence", paramLabel = "N", defaultValue = "2048",
            description = "Most tokens of one request, prompt and generated together (default ${DEFAULT-VALUE}).")
    int maxTokensPerSequence;

    @Option(names = "--queue", paramLabel = "N", defaultValue = "256",
            description = "Requests that may wait for a slot; more are answered 429 (default ${DEFAULT-VALUE}).")
    int queue;

    @Option(names = "--api-key", paramLabel = "KEY",
            description = "Require 'Authorization: Bearer KEY' on /v1/ requests.")
    String apiKey;

    @Option(names = "--prefix-cache-mib", paramLabel = "MIB", defaultValue = DEFAULT_PREFIX_CACHE_MIB,
            description = "Memory for the states of prompt prefixes kept for later requests that start with the"
                    + " same tokens, in MiB, where the backend keeps states (default ${DEFAULT-VALUE}; 0 turns the"
                    + " cache off).")
    long prefixCacheMib;

    @Option(names = "--no-steps-ahead", description = "Each decode step waits for the ids of the step before on "
            + "the host (by default, on a GPU, a decode step is queued on the ids the step before drew before the "
            + "host has read them; the tokens are the same): for comparison.")
    boolean noStepsAhead;

    @Option(names = "--request-timeout", paramLabel = "SECONDS", defaultValue = "600",
            description = "Stop a completion that takes longer than this from its arrival, queue included: 504, or"
                    + " a stream ended with finish_reason \"length\" (default ${DEFAULT-VALUE}; 0: no limit).")
    long requestTimeout;

    @Option(names = "--body-timeout", paramLabel = "SECONDS", defaultValue = "30",
            description = "Answer 408 and close the connection when a request's body takes longer than this to"
                    + " arrive (default ${DEFAULT-VALUE}; 0: no limit).")
    long bodyTimeout;

    @Override
    public Integer call() throws InterruptedException {
        if (port < 0 || port > 65535) {
            throw new UsageException("--port must be in 0..65535, got " + port);
        }
        atLeastOne("--slots", slots);
        atLeastOne("--max-tokens-per-sequence", maxTokensPerSequence);
        atLeastOne("--queue", queue);
        if (apiKey != null && apiKey.isEmpty()) {
            throw new UsageException("--api-key is empty");
        }
        inRange("--prefix-cache-mib", prefixCacheMib, MAX_PREFIX_CACHE_MIB);
        inRange("--request-timeout", requestTimeout, MAX_TIMEOUT_S);
        inRange("--body-timeout", bodyTimeout, MAX_TIMEOUT_S);
        String modelId = modelOptions.modelDir().toAbsolutePath().normalize().getFileName().toString();
        Gpt2Tokenizer tokenizer = Gpt2Tokenizer.load();
        Backend backend = modelOptions.backend();
        BasedModel model = null;
        Engine engine = null;
        try {
            model = modelOptions.load(backend);
            int step = tokensPerStep(TOKENS_PER_STEP, slots, backend);
            engine = new Engine(model, tokenizer, new EngineOptions(slots, maxTokensPerSequence, step, queue,
                    prefixCacheMib << 20, !noStepsAhead));
            OpenAiServer server = open(engine, tokenizer, new ServerOptions(host, port, modelId, apiKey,
                    Duration.ofSeconds(requestTimeout), Duration.ofSeconds(bodyTimeout)));
            BasedModel m = model;
            Engine e = engine;
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                server.close();
                e.close();
                m.close();
                backend.close();
            }, "based4j-serve-shutdown"));
            System.err.println("serving " + modelId + " on " + server.url());
            System.err.flush();
        } catch (RuntimeException | Error ex) {
            closeQuietly(engine);
            closeQuietly(model);
            closeQuietly(backend);
            throw ex;
        }
        new CountDownLatch(1).await(); // until the process is interrupted; the shutdown hook closes everything
        return 0;
    }

    /**
     * The tokens of one engine step: {@code wanted}, raised where needed to carry a decode token for every other
     * slot and one prompt piece of the backend's exact split.
     */
    static int tokensPerStep(int wanted, int slots, Backend backend) {
        return Math.max(wanted, slots - 1 + Math.max(1, backend.exactSplit()));
    }

    private OpenAiServer open(Engine engine, Gpt2Tokenizer tokenizer, ServerOptions options) {
        try {
            return new OpenAiServer(engine, tokenizer, options);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot listen on " + host + ":" + port + ": " + e.getMessage(), e);
        }
    }

    static void inRange(String option, long value, long max) {
        if (value < 0 || value > max) {
            throw new UsageException(option + " must be in 0.." + max + ", got " + value);
        }
    }

    private static void atLeastOne(String option, int value) {
        if (value < 1) {
            throw new UsageException(option + " must be >= 1, got " + value);
        }
    }

    private static void closeQuietly(AutoCloseable c) {
        if (c != null) {
            try {
                c.close();
            } catch (Exception ignored) {
                // already failing: the first error is the one reported
            }
        }
    }
}
