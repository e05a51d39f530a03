package io.based4j.model;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.checkpoint.CheckpointFiles;
import io.based4j.checkpoint.LoadedCheckpoint;
import io.based4j.config.ConfigParser;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A BASED language model (or an attention baseline in the same format) on a {@link Backend}: the parallel form
 * over packed prompts and the recurrent form one token per sequence are the same {@link #forward} call, which
 * continues each sequence from its state in a {@link Session}.
 */
public final class BasedModel implements AutoCloseable {
    private final ModelConfig config;
    private final Backend backend;
    private final Arena arena;
    private final long parameters;
    private final long weightBytes;
    private final Backend.Weight embedding;
    private final Backend.Weight head;
    private final Backend.Weight finalNorm;
    private final List<LayerHandles> layers;

    private record LayerHandles(MixerConfig mixer, Backend.Weight norm1, Backend.Weight norm2, Backend.Weight fc1,
                                Backend.Weight fc2, Backend.Weight[] w) {
    }

    private BasedModel(ModelWeights weights, Backend backend, Arena arena) {
        this.config = weights.config();
        this.backend = backend;
        this.arena = arena;
        this.embedding = backend.weight(weights.embedding());
        this.head = weights.head() == weights.embedding() ? embedding : backend.weight(weights.head());
        this.finalNorm = backend.weight(weights.finalNorm());
        long params = weights.embedding().numel() + weights.finalNorm().numel()
                + (weights.head() == weights.embedding() ? 0 : weights.head().numel());
        long bytes = weights.embedding().data().byteSize() + weights.finalNorm().data().byteSize()
                + (weights.head() == weights.embedding() ? 0 : weights.head().data().byteSize());
        List<LayerHandles> ls = new ArrayList<>();
        for (int i = 0; i < weights.layers().size(); i++) {
            ModelWeights.Layer l = weights.layers().get(i);
            Tensor[] mixerTensors = switch (l.mixer()) {
                case ModelWeights.ConvWeights c -> new Tensor[] {c.inProj(), c.inBias(), c.conv(), c.outProj(), c.outBias()};
                case ModelWeights.LinearWeights lw -> new Tensor[] {lw.projQ(), lw.projK(), lw.projV(), lw.outProj()};
                case ModelWeights.AttentionWeights a -> new Tensor[] {a.wqkv(), a.qkvBias(), a.outProj(), a.outBias()};
            };
            Backend.Weight[] handles = new Backend.Weight[mixerTensors.length];
            for (int j = 0; j < mixerTensors.length; j++) {
                handles[j] = mixerTensors[j] == null ? null : backend.weight(mixerTensors[j]);
                params += mixerTensors[j] == null ? 0 : mixerTensors[j].numel();
                bytes += mixerTensors[j] == null ? 0 : mixerTensors[j].data().byteSize();
            }
            for (Tensor t : new Tensor[] {l.norm1(), l.norm2(), l.fc1(), l.fc2()}) {
                params += t == null ? 0 : t.numel();
                bytes += t == null ? 0 : t.data().byteSize();
            }
            ls.add(new LayerHandles(config.layer(i), backend.weight(l.norm1()), weightOrNull(l.norm2()),
                    weightOrNull(l.fc1()), weightOrNull(l.fc2()), handles));
        }
        this.layers = List.copyOf(ls);
        this.parameters = params;
        this.weightBytes = bytes;
    }

    private Backend.Weight weightOrNull(Tensor t) {
        return t == null ? null : backend.weight(t);
    }

    /** Loads {@code dir} (config.json plus model.safetensors, a sharded index or pytorch_model.bin) onto a backend. */
    public static BasedModel load(Path dir, Backend backend) {
        Path configFile = Files.isDirectory(dir) ? dir.resolve("config.json") : dir.resolveSibling("config.json");
        ModelConfig config = ConfigParser.read(configFile);
        Arena arena = Arena.ofShared();
        try {
            LoadedCheckpoint ckpt = CheckpointFiles.open(dir, arena);
            ModelWeights weights = ModelWeights.bind(config, ckpt.tensors(), ckpt.source().toString());
            return new BasedModel(weights, backend, arena);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** A model over weights already in memory (the caller keeps them alive). */
    public static BasedModel of(ModelWeights weights, Backend backend) {
        return new BasedModel(weights, backend, null);
    }

    public ModelConfig config() {
        return config;
    }

    public Backend backend() {
        return backend;
    }

    /** Number of distinct parameters (the tied head counted once). */
    public long parameterCount() {
        return parameters;
    }

    /** Bytes of all weights as stored (what one decode step reads once). */
    public long weightBytes() {
        return weightBytes;
    }

    /** State for {@code slots} sequences of at most {@code maxLength} tokens each. */
    public Session newSession(int slots, int maxLength) {
        if (slots < 1 || maxLength < 1) {
            throw new IllegalArgumentException("a session needs at least one slot and one token, got " + slots
                    + " slots of " + maxLength);
        }
        Backend.MixerState[] states = new Backend.MixerState[layers.size()];
        for (int i = 0; i < states.length; i++) {
            states[i] = backend.allocateState(layers.get(i).mixer(), slots, maxLength);
        }
        return new Session(this, states, slots, maxLength);
    }

    /** Receives the residual stream after each layer (for tests and inspection). */
    @FunctionalInterface
    public interface LayerObserver {
        void afterLayer(int layer, Backend.Buffer residual);
    }

    /**
     * Runs the tokens of {@code batch} (packed, {@code tokens.length == batch.totalTokens()}) through the model,
     * continuing each sequence from its state and advancing it. Returns logits {@code [rows, paddedVocab]} for every
     * token when {@code allLogits}, else for the last token of each sequence.
     */
    public Backend.Buffer forward(Session session, TokenBatch batch, int[] tokens, boolean allLogits,
                                  LayerObserver observer) {
        if (session.model() != this) {
            throw new IllegalArgumentException("the session belongs to another model");
        }
        int n = batch.totalTokens();
        if (tokens.length != n) {
            throw new IllegalArgumentException("batch describes " + n + " tokens but " + tokens.length + " were given");
        }
        session.checkBatch(batch);
        for (int id : tokens) {
            if (id < 0 || id >= config.vocabSize()) {
                throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, "
                        + config.vocabSize() + ")");
            }
        }
        int d = config.dModel();
        Backend b = backend;
        Backend.Buffer r = b.allocate(n, d);
        b.embedding(embedding, tokens, r);
        Backend.Buffer x = b.allocate(n, d);
        Backend.Buffer mixed = b.allocate(n, d);
        float eps = (float) config.normEps();
        for (int i = 0; i < layers.size(); i++) {
            LayerHandles l = layers.get(i);
            b.rmsNorm(r, l.norm1(), eps, x);
            mix(l, x, batch, session.state(i), mixed);
            b.addInPlace(r, mixed);
            if (l.fc1() != null) {
                int h = config.mlpHidden();
                b.rmsNorm(r, l.norm2(), eps, x);
                Backend.Buffer a = b.allocate(n, 2 * h);
                b.matmul(x, l.fc1(), null, a);
                Backend.Buffer g = b.allocate(n, h);
                b.swiglu(a, g);
                b.matmul(g, l.fc2(), null, mixed);
                b.addInPlace(r, mixed);
            }
            if (observer != null) {
                observer.afterLayer(i, r);
            }
        }
        b.rmsNorm(r, finalNorm, eps, x);
        session.advance(batch);
        Backend.Buffer logits;
        if (allLogits) {
            logits = b.allocate(n, config.paddedVocabSize());
            b.matmul(x, head, null, logits);
        } else {
            int[] rows = batch.lastRows();
            logits = b.allocate(rows.length, config.paddedVocabSize());
            b.matmulRows(x, rows, head, logits);
        }
        return logits;
    }

    private void mix(LayerHandles l, Backend.Buffer x, TokenBatch batch, Backend.MixerState state, Backend.Buffer out) {
        Backend b = backend;
        int n = x.rows();
        int d = config.dModel();
        Backend.Weight[] w = l.w();
        switch (l.mixer()) {
            case MixerConfig.BaseConv c -> {
                Backend.Buffer u = b.allocate(n, 2 * c.innerWidth());
                b.matmul(x, w[0], w[1], u);
                Backend.Buffer y = b.allocate(n, c.innerWidth());
                b.baseConv(c, u, w[2], batch, state, y);
                b.matmul(y, w[3], w[4], out);
            }
            case MixerConfig.LinearAttention la -> {
                int qk = la.numHeads() * la.featureDim();
                Backend.Buffer q = b.allocate(n, qk);
                Backend.Buffer k = b.allocate(n, qk);
                Backend.Buffer v = b.allocate(n, d);
                b.matmul(x, w[0], null, q);
                b.matmul(x, w[1], null, k);
                b.matmul(x, w[2], null, v);
                Backend.Buffer y = b.allocate(n, d);
                b.linearAttention(la, q, k, v, batch, state, y);
                b.matmul(y, w[3], null, out);
            }
            case MixerConfig.Attention a -> {
                Backend.Buffer qkv = b.allocate(n, 3 * d);
                b.matmul(x, w[0], w[1], qkv);
                Backend.Buffer y = b.allocate(n, d);
                b.attention(a, qkv, batch, state, y);
                b.matmul(y, w[2], w[3], out);
            }
        }
    }

    /** Whether any layer keeps a cache that grows with the context (full attention). */
    public boolean hasGrowingState() {
        return config.layers().stream().anyMatch(m -> m instanceof MixerConfig.Attention a && !a.sliding());
    }

    @Override
    public void close() {
        if (arena != null) {
            arena.close();
        }
    }
}
