package io.based4j.serve;

import io.based4j.backend.cpu.CpuBackend;
import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.generate.Generator;
import io.based4j.model.BasedModel;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/** A model on the CPU backend with an engine and a server on an ephemeral loopback port, for the end-to-end tests. */
final class ServeFixture implements AutoCloseable {
    final CpuBackend backend;
    final BasedModel model;
    final Gpt2Tokenizer tokenizer;
    final Engine engine;
    final OpenAiServer server;

    ServeFixture(Path modelDir, String modelId, EngineOptions options, String apiKey) throws IOException {
        backend = new CpuBackend();
        model = BasedModel.load(modelDir, backend);
        tokenizer = Gpt2Tokenizer.load();
        engine = new Engine(model, tokenizer, options);
        server = new OpenAiServer(engine, tokenizer, new ServerOptions(ServerOptions.LOOPBACK, 0, modelId, apiKey));
    }

    /** What a solo {@link Generator} run of the request gives. */
    GenerationResult solo(GenerationRequest request) {
        return new Generator(model, tokenizer).generate(List.of(request), null).get(0);
    }

    @Override
    public void close() {
        server.close();
        engine.close();
        model.close();
        backend.close();
    }
}
