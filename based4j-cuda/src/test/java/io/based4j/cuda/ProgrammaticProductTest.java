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
 * cuBLASLt products on programmatic edges ({@code -Dbased4j.cuda.ltProgrammatic=true}): a product recorded so after
 * a kernel may be launched while that kernel still runs, and is right only where its kernel waits for it. The kernel
 * before is a slow writer ({@link Kernels#delayedCopy}: one block, which lets the kernel after it start at once on the
 * other multiprocessors, then writes x 200 us later), the product reads x (zeros before). For each shape: the plan's probe on its first call in a decode step
 * run op by op ({@link CublasLt#probing}) says whether its kernel waits; a graph whose product is put on the edge whatever
 * the probe said gives the product of the x written exactly where the probe said it waits (and of the zeros where
 * not); and the backend's own recording ({@link CublasLt#programmaticEdges}) puts it on the edge only where the probe
 * said so, and is right either way. Shapes of a decode step's products at 128 and 1,024 sequences (cuBLASLt's nvjet
 * kernels on an H200) and an awkward one (another kernel there).
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
        lt.slowWriter(gpu::probeWriter);
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
    void aProductGoesOnAProgrammaticEdgeOnlyWhereItsKernelWaits(String shape) {
        String[] f = shape.split(",");
        int n = Integer.parseInt(f[0]);
        int k = Integer.parseInt(f[1]);
        int m = Integer.parseInt(f[2]);
        assumeTrue(gpu.kernels().programmaticFits(), "programmatic launches need compute capability 9");
        assumeTrue(gpu.driver().capturesProgrammaticEdges(), "the driver cannot make programmatic capture edges");
        assertTrue(lt.probesFirstCalls(), "asked for, on a device and driver that can: plans are probed");
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
        String what = "n " + n + ", k " + k + ", m " + m;
        long xs = ((CudaBuffer) src).ptr;

        // the first call, op by op as in a decode step's first run: the plan is probed
        Buffer first = gpu.upload(new float[n * m], n, m);
        int probed = lt.probedPlans();
        int waiting = lt.waitingPlans();
        lt.probing(true);
        try {
            product(w.ptr, xs, ((CudaBuffer) first).ptr, n, k, m);
        } finally {
            lt.probing(false);
        }
        gpu.driver().synchronize(gpu.stream());
        assertEquals(1, lt.probedPlans() - probed, what + ": the plan probed on its first call");
        boolean waits = lt.waitingPlans() - waiting == 1;
        // the verdict itself is the finding (whether this library's kernel for the shape waits): in the test's log
        System.out.println("[ProgrammaticProductTest] " + what + ": the probe says cuBLASLt's kernel "
                + (waits ? "waits" : "does not wait") + " for the kernel before it");
        Near.within(what + ", op by op", want, gpu.download(first), bound);

        // on the edge whatever the probe said: right exactly where it said the kernel waits
        Buffer x = gpu.upload(new float[n * k], n, k);
        Buffer out = gpu.upload(new float[n * m], n, m);
        replayOnce(((CudaBuffer) x).ptr, xs, 2L * n * k, w.ptr, ((CudaBuffer) out).ptr, n, k, m, true, false);
        float[] forced = gpu.download(out);
        double worst = 0;
        for (int i = 0; i < want.length; i++) {
            worst = Math.max(worst, Math.abs(forced[i] - want[i]) / bound[i]);
        }
        assertEquals(waits, worst <= 1, what + ": the probe said the kernel " + (waits ? "waits" : "does not wait")
                + ", on the edge the product was off by " + worst + " of its bound");

        // the backend's recording: on the edge only where the probe said so, right either way
        Buffer again = gpu.upload(new float[n * k], n, k);
        Buffer out2 = gpu.upload(new float[n * m], n, m);
        long made = lt.programmaticProducts();
        replayOnce(((CudaBuffer) again).ptr, xs, 2L * n * k, w.ptr, ((CudaBuffer) out2).ptr, n, k, m, false, true);
        assertEquals(waits ? 1 : 0, lt.programmaticProducts() - made, what + ": the edges the recording made");
        Near.within(what + ", recorded", want, gpu.download(out2), bound);
        for (Buffer b : new Buffer[] {first, x, out, again, out2, src}) {
            gpu.release(b);
        }
    }

    private static void product(long w, long x, long out, int n, int k, int m) {
        assertTrue(lt.matmul(Cublas.OP_T, Cublas.OP_N, m, n, k, 1f, w, Cublas.R_16BF, k, x, Cublas.R_16BF, k, 0f, out,
                Cublas.R_16BF, m, Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, 0), "an algorithm");
    }

    /**
     * Records delayedCopy(x <- src) launched programmatically, then out = x W^T through {@link #lt}: on a programmatic
     * edge made here whatever the probe said ({@code forced}), or as the backend's recording makes them
     * ({@code edges}); replays the graph once.
     */
    private static void replayOnce(long x, long src, long bytes, long w, long out, int n, int k, int m,
                                   boolean forced, boolean edges) {
        CudaDriver cu = gpu.driver();
        long stream = gpu.stream();
        cu.synchronize(stream);
        long graph;
        cu.beginCapture(stream);
        lt.capturing(true);
        try {
            lt.programmaticEdges(edges);
            gpu.probeWriter(x, src, bytes, 200_000);
            if (forced) {
                assertTrue(cu.captureNextProgrammatic(stream), "the edge after a kernel");
            }
            product(w, x, out, n, k, m);
        } finally {
            lt.programmaticEdges(false);
            lt.capturing(false);
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
