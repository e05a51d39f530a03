package io.based4j.cuda;

/**
 * The sequence mixers' training kernels: BaseConv, Taylor linear attention and softmax attention, forward from an
 * empty state with what the backward needs, and the backward. Activations and their gradients are in the
 * precision's activation type A, the conv taps W, {@code dtaps} and {@code lse} float32; backward ops add into
 * their gradients. This build carries none of them: every method refuses.
 */
public final class MixerTrainKernels {
    private static final String MISSING = "mixer training kernels are not in this build";

    public MixerTrainKernels(Kernels kernels) {
    }

    public void baseConvForward(Precision p, long u, long taps, long convOut, long out, int batch, int seqLen,
                                int inner, int kernel) {
        throw new UnsupportedOperationException(MISSING);
    }

    public void baseConvBackward(Precision p, long u, long taps, long convOut, long dout, long du, long dtaps,
                                 int batch, int seqLen, int inner, int kernel) {
        throw new UnsupportedOperationException(MISSING);
    }

    public void linearAttentionForward(Precision p, long q, long k, long v, long out, int batch, int seqLen, int heads,
                                       int featureDim, int headDim, float eps) {
        throw new UnsupportedOperationException(MISSING);
    }

    public void linearAttentionBackward(Precision p, long q, long k, long v, long dout, long dq, long dk, long dv,
                                        int batch, int seqLen, int heads, int featureDim, int headDim, float eps) {
        throw new UnsupportedOperationException(MISSING);
    }

    public void attentionForward(Precision p, long qkv, long out, long lse, int batch, int seqLen, int heads,
                                 int headDim, int window, int rotaryDim, double rotaryBase, float softmaxScale) {
        throw new UnsupportedOperationException(MISSING);
    }

    public void attentionBackward(Precision p, long qkv, long out, long lse, long dout, long dqkv, int batch,
                                  int seqLen, int heads, int headDim, int window, int rotaryDim, double rotaryBase,
                                  float softmaxScale) {
        throw new UnsupportedOperationException(MISSING);
    }
}
