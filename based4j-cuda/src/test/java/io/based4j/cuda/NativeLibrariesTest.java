package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The library search and the error messages, without a GPU or any CUDA library. */
class NativeLibrariesTest {

    @Test
    void missingDriverMessageNamesTheLibraryAndEveryPlaceTried() {
        CudaUnavailableException e;
        try {
            NativeLibraries.Library found = NativeLibraries.load(NativeLibraries.CUDA, "/nonexistent/libcuda.so.1",
                    null, true, NativeLibraries.DEFAULT_DIRECTORIES);
            Assumptions.abort("this machine has a CUDA driver (" + found.where() + "); the message is not made");
            return;
        } catch (CudaUnavailableException thrown) {
            e = thrown;
        }
        String m = e.getMessage();
        assertTrue(m.startsWith("libcuda.so.1 (the NVIDIA driver) was not found; tried: "), m);
        assertTrue(m.contains("-Dbased4j.cuda.libcuda=/nonexistent/libcuda.so.1 (no such file)"), m);
        assertTrue(m.contains("$CUDA_HOME (unset)"), m);
        assertTrue(m.contains("system library path (libcuda.so.1: not found)"), m);
        assertTrue(m.contains("/usr/local/cuda/lib64/libcuda.so.1 (no such"), m);
        assertTrue(m.contains("/usr/lib/x86_64-linux-gnu/libcuda.so.1 (no such"), m);
        // the places in the order they were tried
        assertTrue(m.indexOf("-Dbased4j.cuda.libcuda") < m.indexOf("$CUDA_HOME")
                && m.indexOf("$CUDA_HOME") < m.indexOf("system library path")
                && m.indexOf("system library path") < m.indexOf("/usr/local/cuda/lib64"), m);
        assertEquals(CudaException.NO_CODE, e.code());
        assertInstanceOf(CudaException.class, e);
    }

    @Test
    void unsetPropertyAndEveryCudaHomeDirectoryAreListed(@TempDir Path tmp) throws IOException {
        Path home = tmp.resolve("cuda");
        Files.createDirectories(home.resolve("lib64"));
        Path junk = Files.writeString(tmp.resolve("libcublas.so.13"), "not an ELF file");
        Path lib = Files.createDirectories(tmp.resolve("lib"));
        Files.copy(junk, lib.resolve("libcublas.so.12"));
        Path none = tmp.resolve("none");

        CudaUnavailableException e = assertThrows(CudaUnavailableException.class, () -> NativeLibraries.load(
                NativeLibraries.CUBLAS, null, home.toString(), false, List.of(lib, none)));

        String m = e.getMessage();
        assertTrue(m.startsWith("cuBLAS (libcublas.so.13, libcublas.so.12 or libcublas.so) was not found; tried: "
                + "-Dbased4j.cuda.libcublas (unset), "
                + "$CUDA_HOME: " + home.resolve("lib64") + " (has no libcublas.so.13, libcublas.so.12, libcublas.so), "
                + "$CUDA_HOME: " + home.resolve("lib") + " (no such directory), "
                + "$CUDA_HOME: " + home.resolve("targets/x86_64-linux/lib") + " (no such directory), "
                + lib.resolve("libcublas.so.12") + " (cannot load: not an ELF shared library), "), m);
        assertTrue(m.endsWith(lib + " (has no libcublas.so.13, libcublas.so), " + none + " (no such directory)"), m);
        assertFalse(m.contains("system library path"), m);
    }

    @Test
    void missingCublasLtNamesItsPropertyAndSonames(@TempDir Path tmp) {
        CudaUnavailableException e = assertThrows(CudaUnavailableException.class, () -> NativeLibraries.load(
                NativeLibraries.CUBLASLT, null, null, false, List.of(tmp)));
        assertEquals("cuBLASLt (libcublasLt.so.13, libcublasLt.so.12 or libcublasLt.so) was not found; tried: "
                + "-Dbased4j.cuda.libcublaslt (unset), $CUDA_HOME (unset), "
                + tmp + " (has no libcublasLt.so.13, libcublasLt.so.12, libcublasLt.so)", e.getMessage());
    }

    @Test
    void propertyPathThatIsNotALibraryIsReported(@TempDir Path tmp) throws IOException {
        Path junk = Files.writeString(tmp.resolve("libcuda.so.1"), "not an ELF file");

        CudaUnavailableException e = assertThrows(CudaUnavailableException.class, () -> NativeLibraries.load(
                NativeLibraries.CUDA, junk.toString(), tmp.resolve("absent").toString(), false, List.of()));

        String m = e.getMessage();
        assertEquals("libcuda.so.1 (the NVIDIA driver) was not found; tried: -Dbased4j.cuda.libcuda="
                + junk + " (cannot load: not an ELF shared library), $CUDA_HOME=" + tmp.resolve("absent")
                + " (no such directory)", m);
    }

    @Test
    void directoryAlreadyTriedIsNotListedTwice(@TempDir Path tmp) {
        CudaUnavailableException e = assertThrows(CudaUnavailableException.class, () -> NativeLibraries.load(
                NativeLibraries.CUDA, null, tmp.toString(), false, List.of(tmp.resolve("lib64"))));
        String m = e.getMessage();
        assertEquals(m.indexOf(tmp.resolve("lib64/libcuda.so.1").toString()),
                m.lastIndexOf(tmp.resolve("lib64/libcuda.so.1").toString()), m);
    }

    @Test
    void laterSonameOnTheSystemPathIsFound() {
        // libc stands in for a library the dynamic linker knows by its soname.
        NativeLibraries.Spec spec = new NativeLibraries.Spec("libc", "based4j.test.libc",
                List.of("libbased4j-absent.so.9", "libc.so.6"));
        NativeLibraries.Library found = NativeLibraries.load(spec, null, null, true, List.of());
        assertEquals("libc.so.6 (system library path)", found.where());
        assertTrue(found.lookup().find("strlen").isPresent());
    }

    @Test
    void driverErrorNamesTheCallAndTheError() {
        CudaException e = CudaException.driver("cuMemAlloc(1073741824 bytes)", 2);
        assertEquals("cuMemAlloc(1073741824 bytes) failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)", e.getMessage());
        assertEquals(CudaException.CUDA_ERROR_OUT_OF_MEMORY, e.code());
        assertEquals(2, CudaDriver.CUDA_ERROR_OUT_OF_MEMORY);
        assertEquals(CudaException.Api.DRIVER, e.api());
        assertEquals("cuMemAlloc(1073741824 bytes)", e.call());
        assertTrue(e.isOutOfMemory());

        CudaException capture = CudaException.driver("cuStreamEndCapture", 901);
        assertEquals("cuStreamEndCapture failed: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED "
                + "(operation failed due to a previous error during capture)", capture.getMessage());
        assertFalse(capture.isOutOfMemory());

        // a code the table does not describe keeps its name; one it does not know is given by number
        assertEquals("cuGraphLaunch failed: CUDA_ERROR_TENSOR_MEMORY_LEAK",
                CudaException.driver("cuGraphLaunch", 721).getMessage());
        assertEquals("cuInit(0) failed: CUresult 12345", CudaException.driver("cuInit(0)", 12345).getMessage());
    }

    @Test
    void driverErrorPrefersTheDriversOwnWords() {
        CudaException e = CudaException.driver("cuLaunchKernel(rmsnorm_bf16)", 719, "CUDA_ERROR_LAUNCH_FAILED",
                "unspecified launch failure");
        assertEquals("cuLaunchKernel(rmsnorm_bf16) failed: CUDA_ERROR_LAUNCH_FAILED (unspecified launch failure)",
                e.getMessage());
        assertEquals(719, e.code());
    }

    @Test
    void cublasErrorNamesTheCallAndTheStatus() {
        CudaException e = CudaException.cublas("cublasCreate", 3);
        assertEquals("cublasCreate failed: CUBLAS_STATUS_ALLOC_FAILED (the resource allocation failed)",
                e.getMessage());
        assertEquals(CudaException.Api.CUBLAS, e.api());
        assertEquals(3, e.code());
        assertTrue(e.isOutOfMemory());

        CudaException gemm = CudaException.cublas("cublasGemmEx(NT, m=4, n=4, k=4)", 15,
                "the functionality requested is not supported");
        assertEquals("cublasGemmEx(NT, m=4, n=4, k=4) failed: CUBLAS_STATUS_NOT_SUPPORTED "
                + "(the functionality requested is not supported)", gemm.getMessage());
        assertFalse(gemm.isOutOfMemory());
        // cuBLASLt returns the same statuses; its failures name the product's shape
        LtGemm g = LtGemm.of(Cublas.OP_T, Cublas.OP_N, 29, 33, 45, 1 << 20, Cublas.R_16BF, 45, 2 << 20,
                Cublas.R_16BF, 45, false, 3 << 20, Cublas.R_16BF, 29, Cublas.COMPUTE_32F, CublasLt.EPILOGUE_BIAS,
                4 << 20);
        assertEquals("cublasLtMatmul(TN, m=29, n=33, k=45, types A/B/C bf16/bf16/bf16, lda=45, ldb=45, ldc=29, compute"
                + " 32F, epilogue BIAS, beta 0) failed: CUBLAS_STATUS_NOT_SUPPORTED (the functionality requested is"
                + " not supported)", CublasStatus.error(g.describe(), 15, null, null).getMessage());
        assertEquals("CUBLAS_STATUS_EXECUTION_FAILED", CublasStatus.name(13, null));
        assertEquals("cublasStatus_t 99", CublasStatus.name(99, null));
        // CUBLAS_STATUS_NOT_INITIALIZED (1) shares its number with CUDA_ERROR_INVALID_VALUE: the API tells them apart
        assertEquals("cublasSetStream failed: CUBLAS_STATUS_NOT_INITIALIZED (the library was not initialized)",
                CudaException.cublas("cublasSetStream", 1).getMessage());
    }
}
