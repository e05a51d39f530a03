package io.based4j.cli;

import io.based4j.cuda.CudaBackend;
import io.based4j.cuda.KernelWorkbench;
import io.based4j.cuda.Precision;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code based4j bench kernels}: the kernel workbench ({@link KernelWorkbench}). Every version of each kernel, and
 * the library routine it competes with, at the shapes the models use: milliseconds a call (CUDA events), GB/s, the
 * error against a float64 reference and whether it is within its bound; a table and JSON.
 */
@Command(name = "kernels", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"The kernel workbench: each numbered version of a kernel, and the library routine it competes "
                + "with, checked against a float64 reference and timed with CUDA events at the models' shapes.",
                "The backend runs the version marked (used)."})
final class BenchKernelsCommand implements Callable<Integer> {
    @Option(names = "--kernel", paramLabel = "NAME", split = ",",
            defaultValue = "gemv,crossEntropy,attentionDecode,linearAttentionDecode,linearAttentionPrefill,addRmsNorm,"
                    + "baseConvStep",
            description = "Kernels: gemv, crossEntropy, attentionDecode, linearAttentionDecode, linearAttentionPrefill, "
                    + "addRmsNorm, baseConvStep (default ${DEFAULT-VALUE}).")
    List<String> kernels;

    @Option(names = "--device", paramLabel = "DEV", defaultValue = "cuda",
            description = "cuda or cuda:N (default ${DEFAULT-VALUE}).")
    String device;

    @Option(names = "--reps", paramLabel = "N", defaultValue = "200",
            description = "Timed calls per version and shape (default ${DEFAULT-VALUE}).")
    int reps;

    @Option(names = "--json", paramLabel = "FILE", defaultValue = "bench-kernels.json",
            description = "Where to write the results as JSON (default ${DEFAULT-VALUE}).")
    Path json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** Most timed calls a version and shape: more only lengthens the run (a call takes microseconds to ms). */
    static final int MAX_REPS = 100_000;

    @Override
    public Integer call() throws IOException {
        if (reps < 1 || reps > MAX_REPS) {
            throw new UsageException("--reps must be between 1 and " + MAX_REPS + ", got " + reps);
        }
        for (String k : kernels) {
            if (!KernelWorkbench.KERNELS.contains(k)) {
                throw new UsageException("--kernel " + k + " is not on the workbench (choose from "
                        + String.join(", ", KernelWorkbench.KERNELS) + ")");
            }
        }
        if (!ModelOptions.isCuda(device)) {
            throw new UsageException("--device " + device + ": the workbench runs CUDA kernels (cuda or cuda:N)");
        }
        OutputFiles.checkWritable("--json", json);
        PrintWriter out = spec.commandLine().getOut();
        List<KernelWorkbench.Result> results = new ArrayList<>();
        String deviceName;
        try (CudaBackend gpu = CudaBackend.open(device, Precision.BF16)) {
            deviceName = gpu.name() + " (" + gpu.deviceName() + ")";
            for (String k : kernels) {
                results.addAll(KernelWorkbench.run(gpu, k, reps, Progress::note));
            }
        }
        out.printf(Locale.ROOT, "based4j bench kernels on %s, bf16, %d timed calls each%n", deviceName, reps);
        out.printf(Locale.ROOT, "%-15s %-36s %-18s %10s %9s %10s %9s %s%n", "kernel", "shape", "version", "us/call",
                "GB/s", "error", "bound", "ok");
        boolean allOk = true;
        List<Map<String, Object>> rows = new ArrayList<>();
        for (KernelWorkbench.Result r : results) {
            out.printf(Locale.ROOT, "%-15s %-36s %-18s %10.2f %9.0f %10.2e %9.2e %s%n", r.kernel(), r.shape(),
                    r.version(), r.millis() * 1e3, r.gbPerSecond(), r.error(), r.bound(), r.ok() ? "yes" : "NO");
            allOk &= r.ok();
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("kernel", r.kernel());
            row.put("shape", r.shape());
            row.put("version", r.version());
            row.put("ms", r.millis());
            row.put("GBps", r.gbPerSecond());
            row.put("error", r.error());
            row.put("bound", r.bound());
            row.put("ok", r.ok());
            rows.add(row);
        }
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("benchmark", "kernels");
        doc.put("device", deviceName);
        BenchRun.describe(doc);
        doc.put("reps", reps);
        doc.put("results", rows);
        OutputFiles.writeJson(json, doc);
        out.println("wrote " + json);
        if (!allOk) {
            out.println("some versions are outside their bounds (ok = NO)");
            return 1;
        }
        return 0;
    }
}
