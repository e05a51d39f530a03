package io.based4j.backend;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.Backend.Weight;

/**
 * The rows a norm gives, {@code out = rmsNorm(residual + branch) * weight} (the branch, where not null, first added
 * into the residual in place), written to {@code out} only when an op needs them there ({@link Backend#normedRows}):
 * a backend may instead take them into the product that reads them ({@link Backend#normedMatmul} and the like), so
 * that a decode step's norm costs no kernel of its own. Once written, every later use reads {@code out}. One forward
 * pass's, for one caller at a time.
 */
public final class Normed {
    private final Buffer residual;
    private Buffer branch;
    private final Weight weight;
    private final double eps;
    private final Buffer out;
    private boolean written;

    private Normed(Buffer residual, Buffer branch, Weight weight, double eps, Buffer out, boolean written) {
        this.residual = residual;
        this.branch = branch;
        this.weight = weight;
        this.eps = eps;
        this.out = out;
        this.written = written;
    }

    /** The norm of {@code residual} (after adding {@code branch} into it where not null), not yet written. */
    public static Normed of(Buffer residual, Buffer branch, Weight weight, double eps, Buffer out) {
        return new Normed(residual, branch, weight, eps, out, false);
    }

    /** Rows already written to {@code out} (by a norm that keeps its rstd, or any op). */
    public static Normed written(Buffer out) {
        return new Normed(null, null, null, 0, out, true);
    }

    /** The float32 rows normalised (the residual stream). */
    public Buffer residual() {
        return residual;
    }

    /** The branch still to be added into the residual first, or null. */
    public Buffer branch() {
        return branch;
    }

    public Weight weight() {
        return weight;
    }

    public double eps() {
        return eps;
    }

    /** Where the rows are written, when they are. */
    public Buffer out() {
        return out;
    }

    /** Whether the rows are in {@link #out} (and the branch, if any, in the residual). */
    public boolean written() {
        return written;
    }

    /** Says the rows are now in {@link #out} and the branch in the residual (for a backend's {@code normedRows}). */
    public void markWritten() {
        written = true;
        branch = null;
    }
}
