package io.based4j.cuda;

/**
 * What the CUDA backend computes with. Weights and activations are stored in this type and every sum is taken in
 * float32; the residual stream, the logits and all recurrent state stay float32 in either mode.
 */
public enum Precision {
    /** Everything in float32 (for checks against the reference). */
    F32("f32", 4),
    /** Weights and activations in bfloat16 with float32 accumulation: the default. */
    BF16("bf16", 2);

    private final String suffix;
    private final int bytes;

    Precision(String suffix, int bytes) {
        this.suffix = suffix;
        this.bytes = bytes;
    }

    /** Suffix of the kernel instantiations for this type ({@code rmsnorm_bf16}). */
    public String suffix() {
        return suffix;
    }

    /** Bytes per element. */
    public int bytes() {
        return bytes;
    }
}
