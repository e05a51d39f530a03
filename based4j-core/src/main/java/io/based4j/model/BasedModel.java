package io.based4j.model;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.checkpoint.CheckpointFiles;
import io.based4j.checkpoint.LoadedCheckpoint;
import io.based4j.config.ConfigParser;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.memory.Sizes;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

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

    private BasedModel(ModelWeights weights, Backend backend, Arena arena, String name) {
        this.config = weights.config();
        this.backend = backend;
        this.arena = arena;
        long params = 0;
        long bytes = 0;
        long stored = 0;
        for (Tensor t : weights.tensors()) {
            params += t.numel();
            bytes += t.data().byteSize();
            stored = Sizes.plus(stored, backend.storedBytes(t));
        }
        backend.checkWeightsFit(stored, name, "(" + Sizes.count(params) + " parameters)");
        this.embedding = backend.weight(weights.embedding());
        this.head = weights.head() == weights.embedding() ? embedding : backend.weight(weights.head());
        this.finalNorm = backend.weight(weights.finalNorm());
        List<LayerHandles> ls = new ArrayList<>();
        for (int i = 0; i < weights.layers().size(); i++) {
            ModelWeights.Layer l = weights.layers().get(i);
            Tensor[] mixerTensors = ModelWeights.mixerTensors(l.mixer());
            Backend.Weight[] handles = new Backend.Weight[mixerTensors.length];
            for (int j = 0; j < mixerTensors.length; j++) {
                handles[j] = mixerTensors[j] == null ? null : backend.weight(mixerTensors[j]);
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

    /**
     * Loads {@code dir} (config.json plus model.safetensors, a sharded index or pytorch_model.bin) onto a backend.
     * Before any weight is read, the weights' size is computed from config.json (at 2 bytes a parameter, the least any
     * stored type takes) and checked against the backend's memory; once the checkpoint's tensors are matched to the
     * configuration, their exact size is checked before the backend takes them.
     */
    public static BasedModel load(Path dir, Backend backend) {
        Path configFile = Files.isDirectory(dir) ? dir.resolve("config.json") : dir.resolveSibling("config.json");
        ModelConfig config = ConfigParser.read(configFile);
        String name = "model " + dir;
        long params = ModelWeights.parameterCount(config);
        backend.checkWeightsFit(Sizes.times(params, MIN_BYTES_PER_PARAMETER), name,
                "(" + Sizes.count(params) + " parameters of " + MIN_BYTES_PER_PARAMETER + " bytes or more)");
        Arena arena = Arena.ofShared();
        try {
            LoadedCheckpoint ckpt = CheckpointFiles.open(dir, arena);
            ModelWeights weights = ModelWeights.bind(config, ckpt.tensors(), ckpt.source().toString());
            return new BasedModel(weights, backend, arena, name);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** A model over weights already in memory (the caller keeps them alive). */
    public static BasedModel of(ModelWeights weights, Backend backend) {
        return new BasedModel(weights, backend, null, "the model");
    }

    /** Bytes of the narrowest type a checkpoint stores weights in (bfloat16 and float16). */
    private static final int MIN_BYTES_PER_PARAMETER = 2;

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

    /** Tokens one forward call takes at most, unless a session asks for another number. */
    public static final int DEFAULT_TOKENS_PER_CALL = 8192;

    /**
     * State for {@code slots} sequences of at most {@code maxLength} tokens each, with a workspace for calls of up to
     * {@code min(slots * maxLength, DEFAULT_TOKENS_PER_CALL)} tokens ({@link #prefill} splits longer prompts).
     */
    public Session newSession(int slots, int maxLength) {
        long all = (long) slots * maxLength;
        return newSession(slots, maxLength, (int) Math.max(slots, Math.min(all, DEFAULT_TOKENS_PER_CALL)));
    }

    /** State for {@code slots} sequences of at most {@code maxLength} tokens, calls of at most {@code maxTokensPerCall}. */
    public Session newSession(int slots, int maxLength, int maxTokensPerCall) {
        if (slots < 1 || maxLength < 1) {
            throw new IllegalArgumentException("a session needs at least one slot and one token, got " + slots
                    + " slots of " + maxLength);
        }
        if (maxTokensPerCall < slots) {
            throw new IllegalArgumentException("a session of " + slots + " slots needs calls of at least " + slots
                    + " tokens (one decode step), got " + maxTokensPerCall);
        }
        long stateBytes = 0;
        for (LayerHandles l : layers) {
            stateBytes = Sizes.plus(stateBytes, StateSize.layerBytes(l.mixer(), maxLength));
        }
        long allStates = Sizes.times(stateBytes, slots);
        long activations = Workspace.bytes(config, maxTokensPerCall, slots);
        backend.checkFits(Sizes.plus(allStates, activations), String.format(Locale.ROOT,
                "a session of %,d sequence%s of up to %,d tokens (recurrent state %s, activations for %,d tokens per"
                        + " call %s)", slots, slots == 1 ? "" : "s", maxLength, Sizes.human(allStates), maxTokensPerCall,
                Sizes.human(activations)));
        Backend.MixerState[] states = new Backend.MixerState[layers.size()];
        Workspace workspace = null;
        try {
            for (int i = 0; i < states.length; i++) {
                states[i] = backend.allocateState(layers.get(i).mixer(), slots, maxLength);
            }
            workspace = new Workspace(config, backend, maxTokensPerCall, slots);
            return new Session(this, states, slots, maxLength, workspace);
        } catch (RuntimeException e) {
            for (Backend.MixerState s : states) {
                if (s != null) {
                    s.release();
                }
            }
            if (workspace != null) {
                workspace.release();
            }
            throw e;
        }
    }

    /** Receives the residual stream after each layer (for tests and inspection). */
    @FunctionalInterface
    public interface LayerObserver {
        void afterLayer(int layer, Backend.Buffer residual);
    }

    /**
     * Runs the tokens of {@code batch} (packed, {@code tokens.length == batch.totalTokens()}) through the model,
     * continuing each sequence from its state and advancing it. Returns logits {@code [rows, paddedVocab]} for every
     * token when {@code allLogits}, else for the last token of each sequence. The logits live in the session's
     * workspace: they are valid until its next call.
     *
     * <p>A decode step (one token per sequence, last logits only) is recorded the first time a session sees its
     * number of sequences and replayed after that, where the backend records ({@link Backend#graphs()}).
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
        Workspace ws = session.workspace();
        if (n > ws.capacity) {
            throw new IllegalArgumentException("a call of " + n + " tokens is more than the session's " + ws.capacity
                    + " tokens per call; split the prompts (BasedModel.prefill does)");
        }
        session.checkBatch(batch);
        for (int id : tokens) {
            if (id < 0 || id >= config.vocabSize()) {
                throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, "
                        + config.vocabSize() + ")");
            }
        }
        boolean step = n == batch.size();
        Backend.StepGraphs recorder = backend.graphs();
        Backend.Buffer logits;
        if (step && !allLogits && observer == null && recorder != null && session.usesGraphs()) {
            Backend.Graph graph = session.graph(n);
            if (graph == null) {
                session.putGraph(n, recorder.record(tokens, batch, () -> run(session, ws, batch, tokens, false, null)));
            } else {
                recorder.replay(graph, tokens, batch);
            }
            logits = backend.view(ws.take(Workspace.Role.LAST_LOGITS, ws.slots(), config.paddedVocabSize()), n);
        } else {
            logits = run(session, ws, batch, tokens, allLogits, observer);
        }
        session.advance(batch);
        return logits;
    }

    /** The ops of one forward call, over the workspace's buffers. */
    private Backend.Buffer run(Session session, Workspace ws, TokenBatch batch, int[] tokens, boolean allLogits,
                               LayerObserver observer) {
        int n = batch.totalTokens();
        int d = config.dModel();
        Backend b = backend;
        Backend.Buffer r = ws.take(Workspace.Role.RESIDUAL, n, d);
        b.embedding(embedding, tokens, r);
        Backend.Buffer x = ws.take(Workspace.Role.NORMED, n, d);
        Backend.Buffer mixed = ws.take(Workspace.Role.MIXED, n, d);
        float eps = (float) config.normEps();
        for (int i = 0; i < layers.size(); i++) {
            LayerHandles l = layers.get(i);
            b.rmsNorm(r, l.norm1(), eps, x);
            mix(l, ws, x, batch, session.state(i), mixed);
            b.addInPlace(r, mixed);
            if (l.fc1() != null) {
                int h = config.mlpHidden();
                b.rmsNorm(r, l.norm2(), eps, x);
                Backend.Buffer a = ws.take(Workspace.Role.MLP_IN, n, 2 * h);
                b.matmul(x, l.fc1(), null, a);
                Backend.Buffer g = ws.take(Workspace.Role.MLP_GATE, n, h);
                b.swiglu(a, g);
                b.matmul(g, l.fc2(), null, mixed);
                b.addInPlace(r, mixed);
            }
            if (observer != null) {
                observer.afterLayer(i, r);
            }
        }
        b.rmsNorm(r, finalNorm, eps, x);
        int padded = config.paddedVocabSize();
        if (allLogits) {
            Backend.Buffer logits = ws.allLogits(n);
            b.matmul(x, head, null, logits);
            return logits;
        }
        Backend.Buffer logits = b.view(ws.take(Workspace.Role.LAST_LOGITS, ws.slots(), padded), batch.size());
        if (n == batch.size()) {
            b.matmul(x, head, null, logits); // one token per sequence: every row is a last row
        } else {
            b.matmulRows(x, batch.lastRows(), head, logits);
        }
        return logits;
    }

    private void mix(LayerHandles l, Workspace ws, Backend.Buffer x, TokenBatch batch, Backend.MixerState state,
                     Backend.Buffer out) {
        Backend b = backend;
        int n = x.rows();
        int d = config.dModel();
        Backend.Weight[] w = l.w();
        switch (l.mixer()) {
            case MixerConfig.BaseConv c -> {
                Backend.Buffer u = ws.take(Workspace.Role.CONV_IN, n, 2 * c.innerWidth());
                b.matmul(x, w[0], w[1], u);
                Backend.Buffer y = ws.take(Workspace.Role.CONV_OUT, n, c.innerWidth());
                b.baseConv(c, u, w[2], batch, state, y);
                b.matmul(y, w[3], w[4], out);
            }
            case MixerConfig.LinearAttention la -> {
                int qk = la.numHeads() * la.featureDim();
                Backend.Buffer q = ws.take(Workspace.Role.QUERY, n, qk);
                Backend.Buffer k = ws.take(Workspace.Role.KEY, n, qk);
                Backend.Buffer v = ws.take(Workspace.Role.VALUE, n, d);
                b.matmul(x, w[0], null, q);
                b.matmul(x, w[1], null, k);
                b.matmul(x, w[2], null, v);
                Backend.Buffer y = ws.take(Workspace.Role.MIXER_OUT, n, d);
                b.linearAttention(la, q, k, v, batch, state, y);
                b.matmul(y, w[3], null, out);
            }
            case MixerConfig.Attention a -> {
                Backend.Buffer qkv = ws.take(Workspace.Role.QKV, n, 3 * d);
                b.matmul(x, w[0], w[1], qkv);
                Backend.Buffer y = ws.take(Workspace.Role.MIXER_OUT, n, d);
                b.attention(a, qkv, batch, state, y);
                b.matmul(y, w[2], w[3], out);
            }
        }
    }

    /** Receives the logits of the sequences whose prompt ended in one call of {@link #prefill}. */
    @FunctionalInterface
    public interface PromptEnds {
        /** Row {@code rows[i]} of {@code logits} belongs to the last prompt token of sequence {@code sequences[i]}. */
        void accept(Backend.Buffer logits, int[] rows, int[] sequences);
    }

    /**
     * Feeds whole prompts ({@code prompts[i]} continues the sequence in {@code slots[i]}) in as many forward calls as
     * the session's tokens per call need, packing several prompts, or pieces of a long one, into each call. After each
     * call, {@code ends} receives the logits of the prompts that ended in it (valid only during that callback).
     * Empty prompts are skipped.
     */
    public void prefill(Session session, int[] slots, int[][] prompts, PromptEnds ends) {
        if (slots.length != prompts.length) {
            throw new IllegalArgumentException(slots.length + " slots for " + prompts.length + " prompts");
        }
        int budget = session.maxTokensPerCall();
        int[] fed = new int[prompts.length];
        int next = 0;
        while (true) {
            while (next < prompts.length && fed[next] == prompts[next].length) {
                next++;
            }
            if (next == prompts.length) {
                return;
            }
            int[] callSlots = new int[prompts.length - next];
            int[] callLengths = new int[callSlots.length];
            int[] callSeqs = new int[callSlots.length];
            int count = 0;
            int tokens = 0;
            for (int i = next; i < prompts.length && tokens < budget; i++) {
                int take = Math.min(prompts[i].length - fed[i], budget - tokens);
                if (take == 0) {
                    continue;
                }
                callSlots[count] = slots[i];
                callLengths[count] = take;
                callSeqs[count++] = i;
                tokens += take;
            }
            int[] packed = new int[tokens];
            int[] endRows = new int[count];
            int[] endSeqs = new int[count];
            int ended = 0;
            for (int c = 0, o = 0; c < count; c++) {
                int i = callSeqs[c];
                System.arraycopy(prompts[i], fed[i], packed, o, callLengths[c]);
                o += callLengths[c];
                fed[i] += callLengths[c];
                if (fed[i] == prompts[i].length) {
                    endRows[ended] = c;
                    endSeqs[ended++] = i;
                }
            }
            TokenBatch batch = session.batch(Arrays.copyOf(callSlots, count), Arrays.copyOf(callLengths, count));
            Backend.Buffer logits = forward(session, batch, packed, false, null);
            if (ended > 0) {
                ends.accept(logits, Arrays.copyOf(endRows, ended), Arrays.copyOf(endSeqs, ended));
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
