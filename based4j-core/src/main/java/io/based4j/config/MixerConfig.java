package io.based4j.config;

/**
 * The sequence mixer of one layer, resolved from the checkpoint configuration (BASED-SPEC section 1 and 2).
 */
public sealed interface MixerConfig {

    /** Short name used in tables and messages. */
    String kind();

    /** Gated short causal convolution: in_proj to 4d (split in two halves), depthwise conv of width 3 on the first. */
    record BaseConv(int dModel, int kernel, boolean bias) implements MixerConfig {
        public BaseConv {
            if (kernel < 1) throw new ConfigException("BaseConv kernel must be >= 1, got " + kernel);
        }

        /** Width of the convolved half (u1) and of the gate half (u2). */
        public int innerWidth() {
            return 2 * dModel;
        }

        @Override
        public String kind() {
            return "conv";
        }
    }

    /**
     * Global linear attention with the 2nd-order Taylor feature map.
     *
     * @param featureDim f, the width of q and k per head
     * @param headDim dh, the width of v per head (d / heads)
     * @param eps added to the denominator
     */
    record LinearAttention(int dModel, int numHeads, int featureDim, int headDim, double eps) implements MixerConfig {
        /** The largest feature_dim supported (the state has 1 + f + f(f+1)/2 features per head). */
        public static final int MAX_FEATURE_DIM = 64;

        public LinearAttention {
            if (featureDim < 1 || featureDim > MAX_FEATURE_DIM) {
                throw new ConfigException("linear attention feature_dim must be in [1, " + MAX_FEATURE_DIM + "], got "
                        + featureDim);
            }
            if (numHeads < 1 || numHeads * headDim != dModel) {
                throw new ConfigException("linear attention num_heads " + numHeads + " does not divide n_embd " + dModel);
            }
        }

        /** State feature width with the symmetric x_i x_j terms merged: 1 + f + f(f+1)/2. */
        public int expandedDim() {
            return expandedDim(featureDim);
        }

        /** The state feature width of feature dim {@code f}, the symmetric x_i x_j terms merged: 1 + f + f(f+1)/2. */
        public static int expandedDim(int f) {
            return 1 + f + f * (f + 1) / 2;
        }

        @Override
        public String kind() {
            return "linear-attn";
        }
    }

    /**
     * Softmax attention with rotary positions; a query at position i sees keys {@code max(0, i - window) .. i}
     * ({@code window} is {@link Integer#MAX_VALUE} for full causal attention).
     *
     * @param window keys back from the query (for SlidingAttention: window_size / 2)
     * @param rotaryDim leading dims of each head that are rotated (even)
     * @param qkvBias whether Wqkv has a bias; null when the configuration does not say (taken from the weights)
     * @param outBias whether out_proj has a bias; null when the configuration does not say
     */
    record Attention(int dModel, int numHeads, int headDim, int window, int rotaryDim, double rotaryBase,
                     boolean rotaryInterleaved, double softmaxScale, Boolean qkvBias, Boolean outBias)
            implements MixerConfig {
        public Attention {
            if (numHeads < 1 || numHeads * headDim != dModel) {
                throw new ConfigException("attention heads " + numHeads + " do not divide n_embd " + dModel);
            }
            if (window < 0) {
                throw new ConfigException("window_size must be >= 0, got " + window);
            }
            if (rotaryDim < 0 || rotaryDim > headDim || rotaryDim % 2 != 0) {
                throw new ConfigException("rotary dim must be even and in [0, head dim " + headDim + "], got " + rotaryDim);
            }
        }

        public boolean sliding() {
            return window != Integer.MAX_VALUE;
        }

        public Attention withBiases(boolean qkv, boolean out) {
            return new Attention(dModel, numHeads, headDim, window, rotaryDim, rotaryBase, rotaryInterleaved,
                    softmaxScale, qkv, out);
        }

        @Override
        public String kind() {
            return sliding() ? "swa" : "attn";
        }
    }
}
