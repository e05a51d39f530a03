package io.based4j.train;

import io.based4j.backend.TrainingBackend;
import io.based4j.tensor.Tensor;
import io.based4j.backend.Backend.Buffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * AdamW with decoupled weight decay on the parameters that decay (see {@link io.based4j.model.WeightSpec.Kind#decays}), gradient clipping by
 * global norm, and moments held by the backend next to the parameters.
 */
public final class AdamW {
    /** Defaults of BASED-SPEC section 6. */
    public record Settings(double beta1, double beta2, double eps, double weightDecay, double gradClip) {
        public static final Settings DEFAULTS = new Settings(0.9, 0.95, 1e-8, 0.1, 1.0);

        public Settings {
            if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) {
                throw new IllegalArgumentException("betas must be in [0, 1), got " + beta1 + ", " + beta2);
            }
            if (!(eps > 0) || !(weightDecay >= 0) || !(gradClip >= 0)) {
                throw new IllegalArgumentException("need eps > 0, weight_decay >= 0 and grad_clip >= 0 (0 = no clipping),"
                        + " got " + eps + ", " + weightDecay + ", " + gradClip);
            }
        }
    }

    private final TrainModel model;
    private final Settings settings;
    private final Map<String, Buffer[]> moments = new LinkedHashMap<>();
    private final Predicate<Param> decays;
    private long step;
    /** The update's slots, made on first use and again after {@link #restore} replaces the moments. */
    private List<TrainingBackend.AdamWSlot> slots;
    private Norm last;

    /** AdamW decaying the parameters of the recipe's decay group ({@link Param#decay()}). */
    public AdamW(TrainModel model, Settings settings) {
        this(model, settings, Param::decay);
    }

    /** AdamW decaying the parameters {@code decays} picks. */
    public AdamW(TrainModel model, Settings settings, Predicate<Param> decays) {
        this.model = model;
        this.settings = settings;
        this.decays = decays;
        for (Param p : model.params()) {
            moments.put(p.name(), new Buffer[] {model.backend().allocateF32(p.value().rows(), p.value().cols()),
                    model.backend().allocateF32(p.value().rows(), p.value().cols())});
        }
    }

    public Settings settings() {
        return settings;
    }

    /** Updates taken so far. */
    public long step() {
        return step;
    }

    /**
     * Clips the gradients to the global norm limit, then updates every parameter with rate {@code lr}, in one
     * {@link TrainingBackend#adamwStep}. Returns the gradient norm before clipping; reading it waits for the backend.
     * After an update whose norm is not finite the parameters stay as they were, and that norm's {@link Norm#value}
     * (read it before the next update, at the latest before saving) says so.
     */
    public Norm update(double lr) {
        return taken(model.backend().adamwStep(slots(), next(lr)));
    }

    /** The settings of the next update at rate {@code lr}: what {@link #update} hands the backend. */
    TrainingBackend.AdamWUpdate next(double lr) {
        return new TrainingBackend.AdamWUpdate(lr, settings.beta1, settings.beta2, settings.eps, settings.gradClip,
                step + 1);
    }

    /** Counts the update of {@link #next} as taken (by the backend, perhaps in a recorded step), with its norm. */
    Norm taken(TrainingBackend.GradientNorm n) {
        step++;
        last = new Norm(n, step);
        if (n instanceof TrainingBackend.KnownNorm) {
            last.value();  // known already: a norm that is not finite stops the run at once
        }
        return last;
    }

    /**
     * Throws the error of {@link Norm#value} when an update since the last check had gradients that were not
     * finite: call before saving the parameters. Waits for the backend.
     */
    public void requireFinite() {
        if (last != null) {
            last.value();
        }
    }

    /**
     * The gradient norm of an update, which the backend may still be computing: {@link #value} waits for it (once)
     * and refuses a norm that is not finite (the update changed nothing, and the run must stop).
     */
    public static final class Norm {
        private final TrainingBackend.GradientNorm norm;
        private final long update;
        private boolean read;
        private double value;

        private Norm(TrainingBackend.GradientNorm norm, long update) {
            this.norm = norm;
            this.update = update;
        }

        /** The norm before clipping. */
        public double value() {
            if (!read) {
                value = norm.value();
                read = true;
            }
            if (!Double.isFinite(value)) {
                throw new DivergedException("gradient norm is " + value + " at update " + update
                        + " (the loss diverged; try a lower learning rate)");
            }
            return value;
        }
    }

    /** An update whose gradients were not finite: the loss diverged, and the run cannot go on. */
    public static final class DivergedException extends IllegalStateException {
        public DivergedException(String message) {
            super(message);
        }
    }

    /** The update's slots, one per parameter, as {@link #update} hands them to the backend. */
    public List<TrainingBackend.AdamWSlot> slots() {
        if (slots == null) {
            List<TrainingBackend.AdamWSlot> out = new ArrayList<>();
            for (Param p : model.params()) {
                Buffer[] mv = moments.get(p.name());
                out.add(new TrainingBackend.AdamWSlot(p.value(), p.grad(), mv[0], mv[1],
                        decays.test(p) ? settings.weightDecay : 0.0));
            }
            slots = List.copyOf(out);
        }
        return slots;
    }

    /** The moments exactly, named {@code exp_avg.NAME} and {@code exp_avg_sq.NAME}. */
    public Map<String, Tensor> state() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (Param p : model.params()) {
            Buffer[] mv = moments.get(p.name());
            out.put("exp_avg." + p.name(), model.backend().save(mv[0], p.shape()));
            out.put("exp_avg_sq." + p.name(), model.backend().save(mv[1], p.shape()));
        }
        return out;
    }

    /** Restores moments written by {@link #state()} and the update count. */
    public void restore(Map<String, Tensor> state, long steps, String source) {
        for (Param p : model.params()) {
            Buffer[] mv = moments.get(p.name());
            for (int i = 0; i < 2; i++) {
                String key = (i == 0 ? "exp_avg." : "exp_avg_sq.") + p.name();
                Tensor t = state.get(key);
                if (t == null || t.numel() != p.numel()) {
                    throw new IllegalArgumentException(source + ": optimizer state '" + key + "' is "
                            + (t == null ? "missing" : "of the wrong size " + t));
                }
                mv[i] = model.backend().parameter(t);
            }
        }
        this.step = steps;
        this.slots = null;
        this.last = null;
    }
}
