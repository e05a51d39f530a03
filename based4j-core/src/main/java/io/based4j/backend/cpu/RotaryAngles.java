package io.based4j.backend.cpu;

/**
 * The rotary angles as the reference computes them, in float32: inverse frequencies
 * {@code (float) (1 / base^((float) (2p) / rotaryDim))}, angles {@code (float) pos * invFreq_p}, and their cos and sin
 * rounded to float32. Every backend, the float64 trainer's included, rotates by these same numbers.
 */
public final class RotaryAngles {
    private RotaryAngles() {
    }

    /** The inverse frequency of rotary pair {@code pair}. */
    public static float inverseFrequency(double base, int pair, int rotaryDim) {
        return (float) (1.0 / Math.pow(base, (float) (2 * pair) / rotaryDim));
    }

    /** cos and sin of the rotary angles at {@code pos}, for the {@code rotaryDim / 2} pairs. */
    public static void at(int pos, int rotaryDim, double base, float[] cos, float[] sin) {
        for (int p = 0; p < rotaryDim / 2; p++) {
            float angle = (float) pos * inverseFrequency(base, p, rotaryDim);
            cos[p] = (float) Math.cos(angle);
            sin[p] = (float) Math.sin(angle);
        }
    }
}
