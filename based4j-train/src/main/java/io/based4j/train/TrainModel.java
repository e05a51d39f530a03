package io.based4j.train;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.TrainingBackend;
import io.based4j.config.ModelConfig;
import io.based4j.memory.MemoryNeed;
import io.based4j.memory.NotEnoughMemoryException;
import io.based4j.memory.Sizes;
import io.based4j.model.LayerStack;
import io.based4j.model.ModelWeights;
import io.based4j.model.TrainingActivations;
import io.based4j.model.WeightSpec;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * A BASED (or attention baseline) model being trained: its parameters with their gradients, and the training pass:
 * the model's one forward walk ({@link LayerStack}, the same that inference runs) over kept activations
 * ({@link TrainingActivations}), the fused head and loss, and the backward walk beside it, with the ops run by a
 * {@link TrainingBackend}.
 *
 * <p>What the forward keeps for the backward, and why:
 * <ul>
 *   <li>every layer's residual input and the norm outputs with their per-row rstd: the norms and every projection's
 *       weight gradient need their inputs, and recomputing a norm costs as much code as it saves memory;</li>
 *   <li>BaseConv: the projection u, the conv output c and the gated output: all small (a few d per token) and
 *       needed by the gate's and out_proj's gradients;</li>
 *   <li>linear attention: q, k, v and the output only; the chunk states (F x dh per chunk) are recomputed by the
 *       backward, so memory stays linear in the sequence length with no L x L matrix;</li>
 *   <li>attention: qkv, the output and one log-sum-exp per (token, head); the probabilities are recomputed in the
 *       backward (flash-attention style), never stored as L x L;</li>
 *   <li>MLP: fc1's output and the SwiGLU output (fc2's input);</li>
 *   <li>the head: nothing. Logits are computed row block by row block inside the fused cross-entropy, and only for
 *       positions whose target is not ignored.</li>
 * </ul>
 */
public final class TrainModel {
    private final ModelConfig config;
    private final TrainingBackend backend;
    private final Map<String, Param> params = new LinkedHashMap<>();
    private final LayerStack stack;
    /** The activations of each batch shape seen: a set of its own, or the first rows of a larger one. */
    private final Map<Long, TrainingActivations> activations = new HashMap<>();
    /** The sets of activations that hold memory. */
    private final List<TrainingActivations> owners = new ArrayList<>();
    private final Map<StepShape, TrainingBackend.RecordedStep> recordedSteps = new HashMap<>();
    private final Set<StepShape> warmShapes = new HashSet<>();
    private final Map<StepShape, String> refusals = new LinkedHashMap<>();
    private boolean recordSteps = true;
    /** The optimizer of the recorded steps. */
    private AdamW stepsOptimizer;

    /**
     * Binds a state dict (checked and resolved as inference loads it) to the backend. Values may be any floating
     * dtype; float64 tensors keep every bit (used when resuming from optimizer state). Each parameter's name, shape
     * and decay group come from its {@link WeightSpec}.
     */
    public TrainModel(ModelConfig config, Map<String, Tensor> stateDict, TrainingBackend backend, String source) {
        ModelWeights bound = ModelWeights.bind(config, stateDict, source);
        this.config = bound.config();
        this.backend = backend;
        backend.timeProducts();
        Map<Tensor, Param> byTensor = new IdentityHashMap<>();
        for (ModelWeights.Bound b : bound.named()) {
            WeightSpec w = b.spec();
            TrainingBackend.Parameter value = backend.parameter(b.tensor());
            Param p = new Param(w.name(), w.shape(), value, backend.allocateF32(value.rows(), value.cols()),
                    w.kind().decays());
            params.put(w.name(), p);
            byTensor.put(b.tensor(), p);
        }
        this.stack = new LayerStack(bound, t -> byTensor.get(t).value(), t -> byTensor.get(t).grad());
    }

    public ModelConfig config() {
        return config;
    }

    public TrainingBackend backend() {
        return backend;
    }

    /** Every parameter, in state-dict order (the tied head is the embedding and appears once). */
    public Collection<Param> params() {
        return Collections.unmodifiableCollection(params.values());
    }

    public Param param(String name) {
        return params.get(name);
    }

    public long parameterCount() {
        long n = 0;
        for (Param p : params.values()) {
            n += p.numel();
        }
        return n;
    }

    public void zeroGrad() {
        for (Param p : params.values()) {
            backend.zero(p.grad());
        }
    }

    /**
     * The weights as float32 tensors under their state-dict names (what {@code generate} loads), held outside the heap
     * (freed when the tensors are no longer reachable).
     */
    public Map<String, Tensor> floatStateDict() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (Param p : params.values()) {
            float[] values = backend.download(p.value());
            MemorySegment seg = Arena.ofAuto().allocate((long) values.length * Float.BYTES, Float.BYTES);
            MemorySegment.copy(values, 0, seg, Tensor.F32_LE, 0, values.length);
            out.put(p.name(), new Tensor(DType.F32, p.shape(), seg));
        }
        return out;
    }

    /** The weights exactly, in the backend's storage type (for resuming). */
    public Map<String, Tensor> exactStateDict() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (Param p : params.values()) {
            out.put(p.name(), backend.save(p.value(), p.shape()));
        }
        return out;
    }

    // ---------------------------------------------------------------- forward and backward

    /** What one pass saw: the summed loss over counted targets, how many were counted, and how many were argmax-right. */
    public record Pass(double lossSum, int counted, int correct) {
        public double meanLoss() {
            return counted == 0 ? 0 : lossSum / counted;
        }
    }

    /**
     * Runs the model over {@code batch} sequences of {@code seqLen} tokens and scores the next-token targets
     * ({@link TrainingBackend#IGNORE_INDEX} to skip a position): the layer stack's forward walk, then the fused head
     * and loss. With {@code backward}, adds {@code lossScale} times the gradient of the summed loss into every
     * parameter's gradient (the stack's backward walk).
     */
    public Pass forward(int[] ids, int[] targets, int batch, int seqLen, boolean backward, double lossScale) {
        Buffer x = forwardWalk(ids, targets, batch, seqLen);
        int n = ids.length;
        TrainingActivations acts = activations(batch, seqLen);
        TokenBatch layout = TokenBatch.uniform(batch, seqLen);
        int[] argmax = new int[n];
        if (backward) {
            backend.zero(acts.dFinal());
        }
        double loss = backend.crossEntropy(x, stack.head(), config.vocabSize(), targets, lossScale,
                backward ? acts.dFinal() : null, backward ? stack.headGrad() : null, argmax);
        int counted = 0;
        int correct = 0;
        for (int i = 0; i < n; i++) {
            if (targets[i] != TrainingBackend.IGNORE_INDEX) {
                counted++;
                if (argmax[i] == targets[i]) {
                    correct++;
                }
            }
        }
        if (backward) {
            stack.backward(backend, acts, layout, ids);
        }
        return new Pass(loss, counted, correct);
    }

    /**
     * A training pass: the forward walk, the fused head and loss, and the backward walk adding {@code lossScale}
     * times the gradient of the summed loss into every parameter's gradient, as {@link #forward} with backward, but
     * without argmax and without waiting for the device: the returned summed loss may still be in the making.
     */
    public TrainingBackend.Readout trainPass(int[] ids, int[] targets, int batch, int seqLen, double lossScale) {
        Buffer x = forwardWalk(ids, targets, batch, seqLen);
        TrainingActivations acts = activations(batch, seqLen);
        backend.zero(acts.dFinal());
        TrainingBackend.Readout loss = backend.crossEntropyLater(x, stack.head(), config.vocabSize(), targets,
                lossScale, acts.dFinal(), stack.headGrad());
        stack.backward(backend, acts, TokenBatch.uniform(batch, seqLen), ids);
        return loss;
    }

    /** What {@link #trainStep} leaves for the host to read when it wants: the summed loss and the update's norm. */
    public record Step(TrainingBackend.Readout loss, AdamW.Norm norm) {
    }

    /** The shape of a step (with the number of targets it scores): steps of one shape replay one recording. */
    private record StepShape(int batch, int seqLen, double lossScale, int scored) {
    }

    /** Shapes recorded at most: steps of further shapes run op by op. */
    private static final int MAX_RECORDED_SHAPES = 16;

    /**
     * One training step: gradients zeroed, {@link #trainPass}, then {@code opt.update(lr)}, with the same results.
     * Where the backend records steps ({@link TrainingBackend#stepRecorder}, CUDA graphs) and {@link #recordSteps}
     * allows it, the second step of a shape (batch, length and loss scale: the first one allocates what the shape
     * needs) is recorded, and every later step of that shape replays the recording with its own ids, targets, rate
     * and update number, with no op launched one by one. A shape is also the number of targets scored; at most
     * {@value #MAX_RECORDED_SHAPES} shapes are recorded. A pass the backend cannot record runs op by op, as do all
     * steps of its shape after it ({@link #stepRecordRefusals} says why).
     */
    public Step trainStep(int[] ids, int[] targets, int batch, int seqLen, double lossScale, AdamW opt, double lr) {
        TrainingBackend.StepRecorder recorder = recordSteps ? backend.stepRecorder() : null;
        if (recorder == null) {
            return stepOpByOp(ids, targets, batch, seqLen, lossScale, opt, lr);
        }
        int scored = 0;
        for (int t : targets) {
            scored += t == TrainingBackend.IGNORE_INDEX ? 0 : 1;
        }
        StepShape shape = new StepShape(batch, seqLen, lossScale, scored);
        if (stepsOptimizer != opt) {
            closeRecordedSteps();  // recordings update the moments of the optimizer they were recorded with
            stepsOptimizer = opt;
        }
        TrainingBackend.RecordedStep recorded = recordedSteps.get(shape);
        if (recorded != null) {
            checkPass(ids, targets, batch, seqLen);
            TrainingBackend.StepOutcome o = recorded.replay(ids, targets, opt.next(lr));
            return new Step(o.loss(), opt.taken(o.norm()));
        }
        if (warmShapes.contains(shape) && !refusals.containsKey(shape) && recordedSteps.size() < MAX_RECORDED_SHAPES) {
            checkPass(ids, targets, batch, seqLen);  // bad input is refused as such, not as a pass not recordable
            try {
                TrainingBackend.Recording r = recorder.record(ids, targets, () -> {
                    zeroGrad();
                    return trainPass(ids, targets, batch, seqLen, lossScale);
                }, opt.slots(), opt.next(lr));
                recordedSteps.put(shape, r.step());
                return new Step(r.first().loss(), opt.taken(r.first().norm()));
            } catch (TrainingBackend.StepNotRecordable e) {
                refusals.put(shape, e.getMessage());
            }
        }
        warmShapes.add(shape);
        return stepOpByOp(ids, targets, batch, seqLen, lossScale, opt, lr);
    }

    private Step stepOpByOp(int[] ids, int[] targets, int batch, int seqLen, double lossScale, AdamW opt, double lr) {
        zeroGrad();
        TrainingBackend.Readout loss = trainPass(ids, targets, batch, seqLen, lossScale);
        return new Step(loss, opt.update(lr));
    }

    /** Whether {@link #trainStep} may record steps where the backend can (the default). */
    public TrainModel recordSteps(boolean record) {
        this.recordSteps = record;
        if (!record) {
            closeRecordedSteps();
        }
        return this;
    }

    /** Shapes whose steps {@link #trainStep} replays from a recording now. */
    public int recordedStepShapes() {
        return recordedSteps.size();
    }

    /** Why steps of some shape could not be recorded (one line per shape), empty when none was refused. */
    public List<String> stepRecordRefusals() {
        return refusals.entrySet().stream().map(e -> e.getKey().batch() + " x " + e.getKey().seqLen() + ": "
                + e.getValue()).toList();
    }

    private void closeRecordedSteps() {
        recordedSteps.values().forEach(TrainingBackend.RecordedStep::close);
        recordedSteps.clear();
        warmShapes.clear();
    }

    /** Checks a pass's shape and tokens and runs the layer stack's forward walk; returns the final norm's output. */
    private Buffer forwardWalk(int[] ids, int[] targets, int batch, int seqLen) {
        checkPass(ids, targets, batch, seqLen);
        return stack.forward(backend, activations(batch, seqLen), TokenBatch.uniform(batch, seqLen), ids, null, null);
    }

    /** Checks a pass's shape and token ids (targets are checked by the loss). */
    private void checkPass(int[] ids, int[] targets, int batch, int seqLen) {
        if (batch < 1 || seqLen < 1) {
            throw new IllegalArgumentException("a pass needs at least one sequence of one token, got " + batch + " x "
                    + seqLen);
        }
        int n = Sizes.arrayLength(batch, seqLen, "tokens of a pass (batch x seqLen)");
        if (ids.length != n || targets.length != n) {
            throw new IllegalArgumentException("ids (" + ids.length + ") and targets (" + targets.length
                    + ") must hold batch x seqLen = " + n + " tokens");
        }
        stack.checkTokens(ids);
    }

    // ---------------------------------------------------------------- activations

    /**
     * The activations of a {@code batch x seqLen} pass: kept per shape, so passes of shapes seen before allocate
     * nothing. Where the backend views fewer rows of a buffer, a shape of no more tokens than a set already made
     * takes the first rows of that set (the smallest that holds it) and allocates nothing; passes run one after
     * the other, so sets shared that way are never in use twice at once. A new set is checked against the backend's
     * memory first; when it does not fit beside the sets kept so far, they are dropped and it is checked again, alone.
     */
    private TrainingActivations activations(int batch, int seqLen) {
        long key = ((long) batch << 32) | seqLen;
        TrainingActivations a = activations.get(key);
        if (a != null) {
            return a;
        }
        int tokens = batch * seqLen;
        TrainingActivations holder = holderOf(tokens);
        if (holder != null) {
            a = holder.rows() == tokens ? holder : holder.rowsOf(backend, tokens);
            activations.put(key, a);
            return a;
        }
        a = allocateActivations(tokens, String.format(Locale.ROOT, "%,d x %,d tokens", batch, seqLen));
        activations.put(key, a);
        return a;
    }

    /**
     * Makes the activations of passes of up to {@code tokens} tokens now, so that later passes of any shape up to
     * that size share them instead of each allocating its own (where the backend views fewer rows of a buffer).
     *
     * @throws io.based4j.memory.NotEnoughMemoryException when they do not fit
     */
    public void reserveActivations(int tokens) {
        if (tokens < 1) {
            throw new IllegalArgumentException("activations for " + tokens + " tokens: need at least 1");
        }
        if (!backend.viewsFewerRows() || holderOf(tokens) != null) {
            return;
        }
        allocateActivations(tokens, String.format(Locale.ROOT, "up to %,d tokens", tokens));
    }

    /** Sets of activations that hold memory now (shapes that take the first rows of a larger set add none). */
    public int activationSets() {
        return owners.size();
    }

    /** The smallest set of activations made so far that holds {@code tokens} tokens; null if none does. */
    private TrainingActivations holderOf(int tokens) {
        TrainingActivations best = null;
        if (backend.viewsFewerRows()) {
            for (TrainingActivations o : owners) {
                if (o.rows() >= tokens && (best == null || o.rows() < best.rows())) {
                    best = o;
                }
            }
        }
        return best;
    }

    /** A new set of activations for passes of up to {@code tokens} tokens ({@code what}: the pass, for errors). */
    private TrainingActivations allocateActivations(int tokens, String what) {
        long bytes = Sizes.times(activationValues(config, tokens), backend.valueBytes());
        MemoryNeed need = MemoryNeed.heap("the activations of a pass of " + what, 0)
                .withHint("lower the batch size or the sequence length");
        try {
            backend.checkFits(bytes, need);
        } catch (NotEnoughMemoryException e) {
            if (owners.isEmpty()) {
                throw e;
            }
            releaseActivations();
            backend.checkFits(bytes, need);
        }
        TrainingActivations a = new TrainingActivations(backend, config, tokens, 1);
        owners.add(a);
        return a;
    }

    /**
     * Values of everything a pass over {@code tokens} tokens keeps for its backward, with the gradient scratch of the
     * backward: what {@link TrainModel} allocates per batch shape.
     */
    public static long activationValues(ModelConfig config, int tokens) {
        return TrainingActivations.values(config, tokens);
    }

    /** The widest activation (values per token) a pass keeps: every activation buffer is {@code tokens x width}. */
    public static int widestActivation(ModelConfig config) {
        return TrainingActivations.widest(config);
    }

    /** Drops the cached activations (of every batch shape seen so far), and the steps recorded over them. */
    public void releaseActivations() {
        closeRecordedSteps();  // they run on these activations
        for (TrainingActivations a : owners) {
            a.release(backend);
        }
        owners.clear();
        activations.clear();
    }
}
