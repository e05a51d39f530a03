package io.based4j.cuda;

import static io.based4j.cuda.Near.U;
import static io.based4j.cuda.Near.abs;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static io.based4j.cuda.Near.toDouble;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.based4j.backend.Backend.Buffer;
import io.based4j.tensor.Tensor;
import io.based4j.train.cpu.DenseOps;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A cuBLASLt product recorded on a programmatic edge after a kernel of ours ({@link CublasLt#programmaticEdges},
 * {@code -Dbased4j.cuda.ltProgrammatic=true}) may be launched while that kernel still runs: it must wait for what
 * the kernel writes. The kernel before is a slow writer ({@link Kernels#delayedCopy}: it lets the kernel after it
 * start at once, then writes x 200 us later), the product reads x; replayed, the product must be that of the x it
 * wrote, not of the zeros x held before. Shapes of a decode step's products at 128 and 1,024 sequences and of an
 * awkward one; the same graph without the edge is the control.
 */
@GpuTest
class ProgrammaticProductTest {
    static CudaBackend gpu;
    static CublasLt lt;

    @BeforeAll
    static void open() {
        gpu = CudaBackend.open("cuda", Precision.BF16);
        String before = System.getProperty(CublasLt.PROGRAMMATIC_PROPERTY);
        System.setProperty(CublasLt.PROGRAMMATIC_PROPERTY, "true");
        try {
            lt = CublasLt.create(gpu.stream(), 0, 0);
        } finally {
            if (before == null) {
                System.clearProperty(CublasLt.PROGRAMMATIC_PROPERTY);
            } else {
                System.setProperty(CublasLt.PROGRAMMATIC_PROPERTY, before);
            }
        }
    }

    @AfterAll
    static void close() {
        if (lt != null) {
            lt.close();
        }
        if (gpu != null) {
            gpu.close();
        }
    }

    /** n x k . k x m, as n, k, m: based-1b's MLP out-projection at 128 and 1,024 rows, and 37 x 96 . 96 x 45. */
    @ParameterizedTest
    @ValueSource(strings = {"128,3584,1792", "1024,1792,7168", "37,96,45"})
    void aProductOnAProgrammaticEdgeWaitsForTheKernelBefore(String shape) {
        String[] f = shape.split(",");
        int n = Integer.parseInt(f[0]);
        int k = Integer.parseInt(f[1]);
        int m = Integer.parseInt(f[2]);
        assumeTrue(gpu.kernels().programmaticFits(), "programmatic launches need compute capability 9");
        assumeTrue(gpu.driver().capturesProgrammaticEdges(), "the driver cannot make programmatic capture edges");
        SplittableRandom random = new SplittableRandom(n * 31L + k);
        float[] wv = stored(Precision.BF16, gaussian(random, m * k, 1 / Math.sqrt(k)));
        CudaWeight w = (CudaWeight) gpu.weight(Tensor.ofFloats(wv, m, k));
        Buffer src = gpu.upload(gaussian(random, n * k, 1), n, k);
        float[] xv = gpu.download(src);
        double[] want = new double[n * m];
        DenseOps.matmul(toDouble(xv), n, k, toDouble(wv), m, null, want);
        double[] bound = new double[n * m];
        DenseOps.matmul(abs(toDouble(xv)), n, k, abs(toDouble(wv)), m, null, bound);
        for (int i = 0; i < bound.length; i++) {
            bound[i] = bound[i] * 2 * (k + 2) * U + 1.01 * Near.U_BF16 * Math.abs(want[i]);
        }
        for (boolean edge : new boolean[] {false, true}) {
            Buffer x = gpu.upload(new float[n * k], n, k);
            Buffer out = gpu.upload(new float[n * m], n, m);
            long made = lt.programmaticProducts();
            replayOnce(((CudaBuffer) x).ptr, ((CudaBuffer) src).ptr, 2L * n * k, w.ptr, ((CudaBuffer) out).ptr, n, k,
                    m, edge);
            String what = "n " + n + ", k " + k + ", m " + m + (edge ? ", on a programmatic edge" : ", plain");
            assertEquals(edge ? 1 : 0, lt.programmaticProducts() - made, what + ": the edges made");
            Near.within(what, want, gpu.download(out), bound);
            gpu.release(x);
            gpu.release(out);
        }
        gpu.release(src);
    }

    /**
     * Records delayedCopy(x <- src) launched programmatically, then out = x W^T through {@link #lt} (its edge
     * programmatic where asked), and replays the graph once.
     */
    private static void replayOnce(long x, long src, long bytes, long w, long out, int n, int k, int m,
                                   boolean edge) {
        CudaDriver cu = gpu.driver();
        Kernels kernels = gpu.kernels();
        long stream = gpu.stream();
        cu.synchronize(stream);
        boolean before = kernels.programmatic();
        long graph;
        cu.beginCapture(stream);
        kernels.capturing(true);
        lt.capturing(true);
        try {
            kernels.programmatic(true);
            lt.programmaticEdges(edge);
            kernels.delayedCopy(x, src, bytes, 200_000);
            assertTrue(lt.matmul(Cublas.OP_T, Cublas.OP_N, m, n, k, 1f, w, Cublas.R_16BF, k, x, Cublas.R_16BF, k, 0f,
                    out, Cublas.R_16BF, m, Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, 0), "an algorithm");
        } finally {
            lt.programmaticEdges(false);
            lt.capturing(false);
            kernels.capturing(false);
            kernels.programmatic(before);
            graph = cu.endCapture(stream);
        }
        long exec = cu.instantiateGraph(graph);
        try {
            cu.launchGraph(exec, stream);
            cu.synchronize(stream);
        } finally {
            cu.destroyGraphExec(exec);
            cu.destroyGraph(graph);
        }
    }
}
