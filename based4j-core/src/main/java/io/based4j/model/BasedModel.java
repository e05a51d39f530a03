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
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.Map;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

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
    private final LayerStack stack;
    /**
     * Numbers of sequences whose decode step ran once op by op (in any session) where the backend times its products
     * on their first call: their plans are made, so a step of that many is recorded at once from then on.
     */
    private final Set<Integer> steppedUnrecorded = ConcurrentHashMap.newKeySet();

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
        Map<Tensor, Backend.Weight> onBackend = new IdentityHashMap<>();
        for (ModelWeights.Layer l : weights.layers()) {
            if (l.mixer() instanceof ModelWeights.LinearWeights lw) {
                // the three projections of one input, which a backend may take as one product
                Tensor[] qkv = {lw.projQ(), lw.projK(), lw.projV()};
                Backend.Weight[] on = backend.weights(qkv);
                for (int i = 0; i < qkv.length; i++) {
                    onBackend.putIfAbsent(qkv[i], on[i]);
                }
            }
        }
        this.stack = new LayerStack(weights, t -> onBackend.computeIfAbsent(t, backend::weight), null);
        this.parameters = params;
        this.weightBytes = bytes;
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
        long allStates = 0;
        for (MixerConfig m : config.layers()) {
            allStates = Sizes.plus(allStates, backend.stateBytes(m, slots, maxLength));
        }
        long activations = Workspace.bytes(config, maxTokensPerCall, slots);
        backend.checkFits(Sizes.plus(allStates, activations), String.format(Locale.ROOT,
                "a session of %,d sequence%s of up to %,d tokens (recurrent state %s, activations for %,d tokens per"
                        + " call %s)", slots, slots == 1 ? "" : "s", maxLength, Sizes.human(allStates), maxTokensPerCall,
                Sizes.human(activations)));
        Backend.MixerState[] states = new Backend.MixerState[config.nLayer()];
        Workspace workspace = null;
        try {
            for (int i = 0; i < states.length; i++) {
                states[i] = backend.allocateState(config.layer(i), slots, maxLength);
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

    /**
     * Runs the tokens of {@code batch} (packed, {@code tokens.length == batch.totalTokens()}) through the model,
     * continuing each sequence from its state and advancing it. Returns logits {@code [rows, paddedVocab]} for every
     * token when {@code allLogits}, else for the last token of each sequence. The logits live in the session's
     * workspace: they are valid until its next call.
     *
     * <p>A decode step (one token per sequence, last logits only) is recorded the first time a session sees its
     * number of sequences and replayed after that, where the backend records ({@link Backend#graphs()}). Where the
     * backend times its products on their first call ({@link Backend.StepGraphs#timesFirstCalls}), the model's first
     * step of a number of sequences runs op by op instead, so that its products are timed, and later ones record.
     */
    public Backend.Buffer forward(Session session, TokenBatch batch, int[] tokens, boolean allLogits,
                                  LayerStack.LayerObserver observer) {
        return forward(session, prepare(session, batch), batch, tokens, allLogits, observer);
    }

    /** {@link #forward} once {@link #prepare} has checked the call and given the session's workspace. */
    private Backend.Buffer forward(Session session, Workspace ws, TokenBatch batch, int[] tokens, boolean allLogits,
                                   LayerStack.LayerObserver observer) {
        int n = batch.totalTokens();
        if (tokens.length != n) {
            throw new IllegalArgumentException("batch describes " + n + " tokens but " + tokens.length + " were given");
        }
        stack.checkTokens(tokens);
        boolean step = n == batch.size();
        Backend.StepGraphs recorder = backend.graphs();
        Backend.Buffer logits;
        if (step && !allLogits && observer == null && recorder != null && session.usesGraphs()) {
            Backend.Graph graph = session.graph(n);
            if (graph == null && recorder.timesFirstCalls() && steppedUnrecorded.add(n)) {
                // op by op, so that the step's products are timed (or probed) before the recording keeps them
                logits = recorder.firstStep(() -> run(session, ws, batch, tokens, false, null));
            } else if (graph == null) {
                session.putGraph(n, recorder.record(tokens, batch, () -> run(session, ws, batch, tokens, false, null)));
                logits = stepLogits(ws, n);
            } else {
                recorder.replay(graph, tokens, batch);
                logits = stepLogits(ws, n);
            }
        } else {
            logits = run(session, ws, batch, tokens, allLogits, observer);
        }
        session.advance(batch);
        return logits;
    }

    /**
     * A decode step (one token per sequence of {@code batch}, last logits only) whose tokens are the ids of
     * {@code ids}, in the batch's order: ids a {@link Backend#sampleAhead} took from the rows 0 to n - 1 of the
     * logits of the step just before, of the same sequences. Where the backend replays the step's recorded graph on
     * the ids where the sampling left them ({@link Backend.StepGraphs#replayFed}), the step is queued without waiting
     * for them, so the host may read a step's ids while the next one runs; otherwise {@link #forward} with the ids
     * read.
     */
    public Backend.Buffer forwardFed(Session session, TokenBatch batch, Backend.Sampled ids) {
        int n = batch.size();
        if (batch.totalTokens() != n) {
            throw new IllegalArgumentException("a step fed sampled ids takes one token per sequence, not "
                    + batch.totalTokens() + " for " + n);
        }
        Workspace ws = prepare(session, batch);
        Backend.StepGraphs recorder = backend.graphs();
        if (recorder != null && session.usesGraphs() && session.graph(n) != null
                && recorder.replayFed(session.graph(n), ids, batch)) {
            // the ids are the sampler's: every one lies in the vocabulary (an error is reported by ids.ids())
            session.advance(batch);
            return stepLogits(ws, n);
        }
        return forward(session, ws, batch, ids.ids(), false, null);
    }

    /** The last logits of a decode step of n sequences, where its recorded graph leaves them. */
    private Backend.Buffer stepLogits(Workspace ws, int n) {
        return backend.view(ws.take(Workspace.Role.LAST_LOGITS, ws.slots(), config.paddedVocabSize()), n);
    }

    /** The checks of a forward call, and memory a growing state needs for it; returns the session's workspace. */
    private Workspace prepare(Session session, TokenBatch batch) {
        if (session.model() != this) {
            throw new IllegalArgumentException("the session belongs to another model");
        }
        int n = batch.totalTokens();
        Workspace ws = session.workspace();
        if (n > ws.capacity) {
            throw new IllegalArgumentException("a call of " + n + " tokens is more than the session's " + ws.capacity
                    + " tokens per call; split the prompts (BasedModel.prefill does)");
        }
        session.checkBatch(batch);
        for (Backend.MixerState s : session.states()) {
            s.reserve(batch);  // memory a growing state needs for this call, made before its ops are queued or replayed
        }
        return ws;
    }

    /** The ops of one forward call: the layer stack over the workspace's buffers, then the head. */
    private Backend.Buffer run(Session session, Workspace ws, TokenBatch batch, int[] tokens, boolean allLogits,
                               LayerStack.LayerObserver observer) {
        int n = batch.totalTokens();
        Backend b = backend;
        Backend.Buffer x = stack.forward(b, ws.activations(config, n), batch, tokens, session.states(), observer);
        if (allLogits) {
            Backend.Buffer logits = ws.allLogits(n);
            b.matmul(x, stack.head(), null, logits);
            return logits;
        }
        Backend.Buffer logits = b.view(ws.take(Workspace.Role.LAST_LOGITS, ws.slots(), config.paddedVocabSize()),
                batch.size());
        if (n == batch.size()) {
            b.matmul(x, stack.head(), null, logits); // one token per sequence: every row is a last row
        } else {
            b.matmulRows(x, batch.lastRows(), stack.head(), logits);
        }
        return logits;
    }

    /** Receives the logits of the sequences whose prompt ended in one call of {@link #prefill}. */
    @FunctionalInterface
    public interface PromptEnds {
        /** Row {@code rows[i]} of {@code logits} belongs to the last prompt token of sequence {@code sequences[i]}. */
        void accept(Backend.Buffer logits, int[] rows, int[] sequences);
    }

    /**
     * Feeds whole prompts ({@code prompts[i]} continues the sequence in {@code slots[i]}) in as many forward calls as
     * the session's tokens per call need, packing several whole prompts into each call (a prompt is split only when it
     * alone exceeds a call, so that prompts start and end within a call where they can). After each
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
                int left = prompts[i].length - fed[i];
                int take = Math.min(left, budget - tokens);
                if (take == 0) {
                    continue;
                }
                if (take < left && count > 0) {
                    break; // whole prompts where they fit: a prompt is split only when it alone exceeds a call
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
