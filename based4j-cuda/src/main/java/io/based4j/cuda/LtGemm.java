package io.based4j.cuda;

/**
 * Everything a cuBLASLt plan (descriptors, layouts and the algorithm the heuristic chose) depends on, for
 * {@code D = alpha op(A) op(B) + beta C} with C = D, column-major as everywhere in cuBLAS: {@code op(A)} m x k,
 * {@code op(B)} k x n, D m x n. Equal values share a plan ({@link CublasLt}'s cache key). The pointers themselves are
 * not part of it, only how they are aligned (up to 256 bytes, what cuBLASLt asks for at most), since the algorithm
 * the heuristic picks may need that alignment.
 *
 * @param transA      {@link Cublas#OP_N} or {@link Cublas#OP_T}
 * @param aType       a {@code cudaDataType} ({@link Cublas#R_32F}, {@link Cublas#R_16BF})
 * @param computeType a {@code cublasComputeType_t} ({@link Cublas#COMPUTE_32F})
 * @param epilogue    a {@code cublasLtEpilogue_t} ({@link CublasLt#EPILOGUE_DEFAULT}, {@link CublasLt#EPILOGUE_BIAS},
 *                    {@link CublasLt#EPILOGUE_BGRADB}); the bias (or bias gradient) has D's type
 * @param accumulate  whether beta is nonzero (D adds to what it held)
 * @param alignA      the alignment of A's address in bytes, at most 256 (see {@link #alignment})
 * @param alignBias   the alignment of the bias vector's address (256 where there is none)
 * @param batch       how many such products one call makes (1: one), the i-th on A, B and C advanced by i times
 *                    {@code strideA}, {@code strideB} and {@code strideC} elements (cuBLASLt's strided batch; the
 *                    alignments then those of every product's addresses)
 */
record LtGemm(int transA, int transB, int m, int n, int k, int aType, int lda, int bType, int ldb, int cType, int ldc,
              int computeType, int epilogue, boolean accumulate, int alignA, int alignB, int alignC, int alignBias,
              int batch, long strideA, long strideB, long strideC) {

    /** The most alignment cuBLASLt's algorithms ask for (its default minimum alignment preference). */
    static final int MAX_ALIGNMENT = 256;

    LtGemm {
        if (m <= 0 || n <= 0 || k <= 0) {
            throw new IllegalArgumentException(describe(transA, transB, m, n, k, aType, lda, bType, ldb, cType, ldc,
                    computeType, epilogue, accumulate) + ": m, n and k must be positive");
        }
        int aRows = transA == Cublas.OP_N ? m : k;
        int bRows = transB == Cublas.OP_N ? k : n;
        if (lda < aRows || ldb < bRows || ldc < m) {
            throw new IllegalArgumentException(describe(transA, transB, m, n, k, aType, lda, bType, ldb, cType, ldc,
                    computeType, epilogue, accumulate) + ": a leading dimension is less than its matrix's " + aRows
                    + "/" + bRows + "/" + m + " rows (A/B/C)");
        }
        if (batch < 1 || (batch > 1 && (strideA < 0 || strideB < 0 || strideC < (long) ldc * n))) {
            throw new IllegalArgumentException(describe(transA, transB, m, n, k, aType, lda, bType, ldb, cType, ldc,
                    computeType, epilogue, accumulate) + ": a batch of " + batch + " with strides " + strideA + "/"
                    + strideB + "/" + strideC + " (A/B/C; C's must keep the products' outputs apart)");
        }
    }

    /**
     * The key of one product; {@code a}, {@code b}, {@code c} and {@code bias} are device addresses (bias 0 for
     * none, which only {@link CublasLt#EPILOGUE_DEFAULT} takes).
     */
    static LtGemm of(int transA, int transB, int m, int n, int k, long a, int aType, int lda, long b, int bType,
                     int ldb, boolean accumulate, long c, int cType, int ldc, int computeType, int epilogue,
                     long bias) {
        if ((epilogue == CublasLt.EPILOGUE_DEFAULT) != (bias == 0)) {
            throw new IllegalArgumentException(describe(transA, transB, m, n, k, aType, lda, bType, ldb, cType, ldc,
                    computeType, epilogue, accumulate) + ": " + (bias == 0 ? "epilogue " + epilogueName(epilogue)
                    + " needs a bias vector" : "a bias vector needs a bias epilogue"));
        }
        return new LtGemm(transA, transB, m, n, k, aType, lda, bType, ldb, cType, ldc, computeType, epilogue,
                accumulate, alignment(a), alignment(b), alignment(c), alignment(bias), 1, 0, 0, 0);
    }

    /**
     * This product made {@code count} times by one call, the i-th on A, B and C advanced by i times the strides (in
     * elements); the alignments are those of every product's addresses.
     */
    LtGemm batched(int count, long strideA, long strideB, long strideC) {
        return new LtGemm(transA, transB, m, n, k, aType, lda, bType, ldb, cType, ldc, computeType, epilogue,
                accumulate, Math.min(alignA, alignment(strideA * typeBytes(aType))),
                Math.min(alignB, alignment(strideB * typeBytes(bType))),
                Math.min(alignC, alignment(strideC * typeBytes(cType))), alignBias, count, strideA, strideB, strideC);
    }

    /** Bytes from B's first value to its last, over every product of the batch. */
    long bBytes() {
        return ((long) ldb * (bCols() - 1) + bRows() + strideB * (batch - 1)) * typeBytes(bType);
    }

    /** Bytes from C's (and D's) first value to its last, over every product of the batch. */
    long cBytes() {
        return ((long) ldc * (n - 1) + m + strideC * (batch - 1)) * typeBytes(cType);
    }

    /** The bytes of one value of a {@code cudaDataType}. */
    static int typeBytes(int type) {
        return type == Cublas.R_32F ? 4 : 2;
    }

    /** How {@code address} is aligned, in bytes: its lowest set bit, at most {@link #MAX_ALIGNMENT} (0 counts as that). */
    static int alignment(long address) {
        return address == 0 ? MAX_ALIGNMENT : (int) Math.min(MAX_ALIGNMENT, Long.lowestOneBit(address));
    }

    /** Every field, comma-separated: the product's part of a {@link GemmChoices} key. */
    String key() {
        return transA + "," + transB + "," + m + "," + n + "," + k + "," + aType + "," + lda + "," + bType + ","
                + ldb + "," + cType + "," + ldc + "," + computeType + "," + epilogue + "," + (accumulate ? 1 : 0)
                + "," + alignA + "," + alignB + "," + alignC + "," + alignBias
                + (batch == 1 ? "" : ",batch " + batch + "," + strideA + "," + strideB + "," + strideC);
    }

    int aRows() {
        return transA == Cublas.OP_N ? m : k;
    }

    int aCols() {
        return transA == Cublas.OP_N ? k : m;
    }

    int bRows() {
        return transB == Cublas.OP_N ? k : n;
    }

    int bCols() {
        return transB == Cublas.OP_N ? n : k;
    }

    /** The call with its shape, for messages: {@code cublasLtMatmul(TN, m=4096, n=16384, k=1024, ...)}. */
    String describe() {
        String one = describe(transA, transB, m, n, k, aType, lda, bType, ldb, cType, ldc, computeType, epilogue,
                accumulate);
        return batch == 1 ? one : one.substring(0, one.length() - 1) + ", batch " + batch + " strided " + strideA
                + "/" + strideB + "/" + strideC + ")";
    }

    private static String describe(int transA, int transB, int m, int n, int k, int aType, int lda, int bType,
                                   int ldb, int cType, int ldc, int computeType, int epilogue, boolean accumulate) {
        return "cublasLtMatmul(" + op(transA) + op(transB) + ", m=" + m + ", n=" + n + ", k=" + k + ", types A/B/C "
                + typeName(aType) + "/" + typeName(bType) + "/" + typeName(cType) + ", lda=" + lda + ", ldb=" + ldb
                + ", ldc=" + ldc + ", compute " + computeName(computeType) + ", epilogue " + epilogueName(epilogue)
                + ", beta " + (accumulate ? "nonzero" : "0") + ")";
    }

    private static String op(int op) {
        return switch (op) {
            case Cublas.OP_N -> "N";
            case Cublas.OP_T -> "T";
            default -> "op" + op;
        };
    }

    static String typeName(int type) {
        return switch (type) {
            case Cublas.R_32F -> "f32";
            case Cublas.R_16F -> "f16";
            case Cublas.R_16BF -> "bf16";
            default -> "cudaDataType " + type;
        };
    }

    static String computeName(int computeType) {
        return switch (computeType) {
            case Cublas.COMPUTE_32F -> "32F";
            case Cublas.COMPUTE_32F_PEDANTIC -> "32F_PEDANTIC";
            case Cublas.COMPUTE_32F_FAST_TF32 -> "32F_FAST_TF32";
            default -> "cublasComputeType_t " + computeType;
        };
    }

    static String epilogueName(int epilogue) {
        return switch (epilogue) {
            case CublasLt.EPILOGUE_DEFAULT -> "DEFAULT";
            case CublasLt.EPILOGUE_BIAS -> "BIAS";
            case CublasLt.EPILOGUE_BGRADA -> "BGRADA";
            case CublasLt.EPILOGUE_BGRADB -> "BGRADB";
            default -> "cublasLtEpilogue_t " + epilogue;
        };
    }
}
