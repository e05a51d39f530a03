package io.based4j.cuda;

/**
 * For tests of whole models: the linear-attention states of the backends opened while {@link #forced} runs defer
 * their update ({@link Kernels#linearAttentionDecodeDeferred}) whatever their number of slots, so that sessions of a
 * few sequences take that form too.
 */
public final class DeferredUpdates {
    private DeferredUpdates() {
    }

    /** Whether a linear-attention layer of feature dim {@code f} and head dim {@code dh} can take the form. */
    public static boolean takes(int f, int dh) {
        return Kernels.linearDeferFits(f, dh, Kernels.LINEAR_DEFER_DEFAULT, 0);
    }

    /** Runs {@code body} with {@value Kernels#LINEAR_DEFER_MIN_BLOCKS_PROPERTY} at 1, then restores it. */
    public static void forced(Runnable body) {
        String property = Kernels.LINEAR_DEFER_MIN_BLOCKS_PROPERTY;
        String before = System.getProperty(property);
        System.setProperty(property, "1");
        try {
            body.run();
        } finally {
            if (before == null) {
                System.clearProperty(property);
            } else {
                System.setProperty(property, before);
            }
        }
    }
}
