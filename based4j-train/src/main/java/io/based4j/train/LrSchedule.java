package io.based4j.train;

/**
 * Linear warmup from {@code warmupInit} to {@code peak} over {@code warmupSteps} updates, then a cosine from
 * {@code peak} down to {@code min} at {@code totalSteps} (BASED-SPEC section 6: 1e-6 -> 8e-4 over 200, cosine to
 * 8e-5).
 */
public record LrSchedule(double peak, int warmupSteps, double warmupInit, double min, long totalSteps) {
    public LrSchedule {
        if (!(peak > 0) || !(min >= 0) || !(warmupInit >= 0) || warmupSteps < 0 || totalSteps < 1) {
            throw new IllegalArgumentException("learning-rate schedule needs lr > 0, min_lr >= 0, warmup_init_lr >= 0,"
                    + " warmup_steps >= 0 and steps >= 1 (got lr " + peak + ", min_lr " + min + ", warmup_init_lr "
                    + warmupInit + ", warmup_steps " + warmupSteps + ", steps " + totalSteps + ")");
        }
    }

    /** The rate of update {@code step} (counting from 0). */
    public double lr(long step) {
        if (step < warmupSteps) {
            return warmupInit + (peak - warmupInit) * step / warmupSteps;
        }
        long decaySteps = totalSteps - warmupSteps;
        if (decaySteps <= 0) {
            return peak;
        }
        double progress = Math.min(1.0, (double) (step - warmupSteps) / decaySteps);
        return min + 0.5 * (peak - min) * (1 + Math.cos(Math.PI * progress));
    }
}
