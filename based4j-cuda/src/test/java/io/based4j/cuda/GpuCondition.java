package io.based4j.cuda;

import org.junit.jupiter.api.extension.ConditionEvaluationResult;
import org.junit.jupiter.api.extension.ExecutionCondition;
import org.junit.jupiter.api.extension.ExtensionContext;

/** Enables {@link GpuTest}s only where a GPU can be opened; says once, on stderr, why they are skipped otherwise. */
public final class GpuCondition implements ExecutionCondition {
    private static final String REASON = probe();

    private static String probe() {
        String reason;
        try {
            CudaDriver cu = CudaDriver.get();
            reason = cu.deviceCount() > 0 ? null : "the CUDA driver sees no GPU";
            if (reason == null && CudaBackend.class.getResource(CudaBackend.FATBIN) == null) {
                reason = "this build carries no CUDA kernels (built with -Dbased4j.skipKernels=true)";
            }
        } catch (RuntimeException | LinkageError e) {
            reason = e.getMessage();
        }
        if (reason != null) {
            System.err.println("[based4j] GPU tests are skipped: " + reason);
        }
        return reason;
    }

    /** Why GPU tests cannot run here, or null when they can. */
    public static String unavailableReason() {
        return REASON;
    }

    @Override
    public ConditionEvaluationResult evaluateExecutionCondition(ExtensionContext context) {
        if (REASON != null && Boolean.getBoolean("based4j.requireGpu")) {
            // on a GPU host (scripts/gpu-check.sh) a skip would hide a broken setup
            throw new IllegalStateException("-Dbased4j.requireGpu is set but no GPU can be used: " + REASON);
        }
        return REASON == null ? ConditionEvaluationResult.enabled("a CUDA GPU is present")
                : ConditionEvaluationResult.disabled("no usable CUDA GPU: " + REASON);
    }
}
