package io.based4j.cuda;

/**
 * How many of a {@link CudaBackend}'s matrix products took each route, for the tests and benchmarks that check the
 * fast paths are taken: cuBLASLt, with or without an epilogue, or {@code cublasGemmEx} where cuBLASLt had no
 * algorithm; the decode step's own kernels (gemv, gemmRows, gemmWg); and the separate kernels for what no epilogue did.
 */
final class GemmRoutes {
    /** cuBLASLt products with no epilogue. */
    long lt;
    /** cuBLASLt products that added the bias ({@link CublasLt#EPILOGUE_BIAS}). */
    long ltBias;
    /** cuBLASLt products that added a residual (C) into a separate output (D), with or without a bias. */
    long ltResidual;
    /** {@code cublasGemmEx} products. */
    long gemmEx;
    /** Products of a few rows by the gemv kernel (with or without a bias). */
    long gemv;
    /** Of those, the ones that added a bias. */
    long gemvBias;
    /** Of those, the MLP in-projections that took their SwiGLU in the same kernel (gemvSwiglu). */
    long gemvSwiglu;
    /** Of those, BaseConv's in-projections that took its decode step in the same kernel (gemvConv). */
    long gemvConv;
    /** Launches that took two or three products of one input at once (gemvSegments; each product counted above). */
    long gemvSegments;
    /**
     * Products of one input over weights made together that ran as one product of the whole matrix, its columns then
     * split into each product's output (each product is also counted by the route the whole one took).
     */
    long merged;
    /** Products of a decode step's rows by gemmRows (with or without a bias). */
    long gemmRows;
    /** Of those, the ones that added a bias. */
    long gemmRowsBias;
    /** Products of a decode step's many rows by gemmWg (with or without a bias). */
    long gemmWg;
    /** Of those, the ones that added a bias. */
    long gemmWgBias;
    /** Of those, the MLP in-projections that took their SwiGLU in the same kernel (gemmTmaSwiglu). */
    long gemmWgSwiglu;
    /** Of those, BaseConv's in-projections that took its decode step in the same kernel (gemmTmaConv). */
    long gemmWgConv;
    /** Biases added by a kernel of their own. */
    long biasKernel;
    /** Bias gradients summed by a kernel or product of their own. */
    long biasGradientKernel;

    /** The counts as they are now. */
    GemmRoutes copy() {
        GemmRoutes c = new GemmRoutes();
        c.lt = lt;
        c.ltBias = ltBias;
        c.ltResidual = ltResidual;
        c.gemmEx = gemmEx;
        c.gemv = gemv;
        c.gemvBias = gemvBias;
        c.gemvSwiglu = gemvSwiglu;
        c.gemvConv = gemvConv;
        c.gemvSegments = gemvSegments;
        c.merged = merged;
        c.gemmRows = gemmRows;
        c.gemmRowsBias = gemmRowsBias;
        c.gemmWg = gemmWg;
        c.gemmWgBias = gemmWgBias;
        c.gemmWgSwiglu = gemmWgSwiglu;
        c.gemmWgConv = gemmWgConv;
        c.biasKernel = biasKernel;
        c.biasGradientKernel = biasGradientKernel;
        return c;
    }

    @Override
    public String toString() {
        return "cuBLASLt " + lt + ", cuBLASLt with bias " + ltBias + ", with a residual " + ltResidual
                + ", cublasGemmEx " + gemmEx + ", gemv " + gemv + " (with a bias " + gemvBias + ", with SwiGLU " + gemvSwiglu
                + ", with BaseConv's step " + gemvConv + ", " + gemvSegments + " launches of several"
                + "), " + merged + " taken as one product, gemmRows " + gemmRows + ", gemmWg " + gemmWg + " (with SwiGLU " + gemmWgSwiglu
                + ", with BaseConv's step " + gemmWgConv + ")"
                + ", bias kernels " + biasKernel + ", bias gradient kernels " + biasGradientKernel;
    }
}
