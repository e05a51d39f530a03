package io.based4j.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.SymbolLookup;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * Finds and loads the CUDA driver library, cuBLAS and cuBLASLt. Each is looked for, in order, at
 * <ol>
 * <li>the path in a system property ({@code -Dbased4j.cuda.libcuda}, {@code -Dbased4j.cuda.libcublas},
 * {@code -Dbased4j.cuda.libcublaslt});</li>
 * <li>{@code $CUDA_HOME/lib64}, {@code $CUDA_HOME/lib} and {@code $CUDA_HOME/targets/x86_64-linux/lib};</li>
 * <li>the system library path: the plain soname handed to {@code dlopen}, which searches {@code LD_LIBRARY_PATH},
 * the {@code ld.so} cache and the default directories;</li>
 * <li>{@code /usr/local/cuda/lib64} and {@code /usr/lib/x86_64-linux-gnu}.</li>
 * </ol>
 * cuBLAS is tried as {@code libcublas.so.13}, {@code libcublas.so.12} and {@code libcublas.so} at each place, cuBLASLt
 * likewise as {@code libcublasLt.so.13}, {@code .so.12} and {@code .so} (cuBLAS depends on cuBLASLt, so once cuBLAS is
 * loaded its soname on the system library path names the copy already loaded beside it). When
 * nothing loads, {@link CudaUnavailableException} lists every place tried and why it failed. Libraries stay loaded
 * for the life of the process.
 */
@SuppressWarnings("restricted")
final class NativeLibraries {
    static final String CUDA_PROPERTY = "based4j.cuda.libcuda";
    static final String CUBLAS_PROPERTY = "based4j.cuda.libcublas";
    static final String CUBLASLT_PROPERTY = "based4j.cuda.libcublaslt";

    /** What to look for: a description for messages, the system property naming a path, the sonames in order. */
    record Spec(String description, String property, List<String> sonames) {
    }

    static final Spec CUDA = new Spec("libcuda.so.1 (the NVIDIA driver)", CUDA_PROPERTY, List.of("libcuda.so.1"));
    static final Spec CUBLAS = new Spec("cuBLAS (libcublas.so.13, libcublas.so.12 or libcublas.so)", CUBLAS_PROPERTY,
            List.of("libcublas.so.13", "libcublas.so.12", "libcublas.so"));
    static final Spec CUBLASLT = new Spec("cuBLASLt (libcublasLt.so.13, libcublasLt.so.12 or libcublasLt.so)",
            CUBLASLT_PROPERTY, List.of("libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"));

    static final List<Path> DEFAULT_DIRECTORIES =
            List.of(Path.of("/usr/local/cuda/lib64"), Path.of("/usr/lib/x86_64-linux-gnu"));

    /** A loaded library and where it came from (a path, or the soname that the system library path resolved). */
    record Library(SymbolLookup lookup, String where) {
    }

    private NativeLibraries() {
    }

    /** Loads the CUDA driver library from the places this process is configured with. */
    static Library cuda() {
        return load(CUDA, System.getProperty(CUDA_PROPERTY), System.getenv("CUDA_HOME"), true, DEFAULT_DIRECTORIES);
    }

    /** Loads cuBLAS from the places this process is configured with. */
    static Library cublas() {
        return load(CUBLAS, System.getProperty(CUBLAS_PROPERTY), System.getenv("CUDA_HOME"), true,
                DEFAULT_DIRECTORIES);
    }

    /** Loads cuBLASLt from the places this process is configured with. */
    static Library cublasLt() {
        return load(CUBLASLT, System.getProperty(CUBLASLT_PROPERTY), System.getenv("CUDA_HOME"), true,
                DEFAULT_DIRECTORIES);
    }

    /**
     * Loads the library {@code spec} describes, looking at the places given here rather than at the process's
     * properties and environment (for the tests).
     *
     * @param propertyValue the value of {@code spec.property()}, or null when unset
     * @param cudaHome      the value of {@code $CUDA_HOME}, or null when unset
     * @param systemPath    whether to try the sonames on the system library path
     * @param directories   the directories tried last
     */
    static Library load(Spec spec, String propertyValue, String cudaHome, boolean systemPath, List<Path> directories) {
        Arena arena = Arena.global();
        List<String> tried = new ArrayList<>();
        Set<Path> seen = new LinkedHashSet<>();

        if (propertyValue == null || propertyValue.isBlank()) {
            tried.add("-D" + spec.property() + " (unset)");
        } else {
            Path path = Path.of(propertyValue.strip());
            String entry = "-D" + spec.property() + "=" + path;
            if (!Files.exists(path)) {
                tried.add(entry + " (no such file)");
            } else {
                String unfit = unfit(path);
                if (unfit != null) {
                    tried.add(entry + " (cannot load: " + unfit + ")");
                } else {
                    try {
                        return new Library(SymbolLookup.libraryLookup(path, arena), path.toString());
                    } catch (RuntimeException e) {
                        tried.add(entry + " (cannot load: " + reason(e) + ")");
                    }
                }
            }
            seen.add(path.toAbsolutePath().normalize());
        }

        if (cudaHome == null || cudaHome.isBlank()) {
            tried.add("$CUDA_HOME (unset)");
        } else {
            Path home = Path.of(cudaHome.strip());
            if (!Files.isDirectory(home)) {
                tried.add("$CUDA_HOME=" + home + " (no such directory)");
            } else {
                for (Path dir : List.of(home.resolve("lib64"), home.resolve("lib"),
                        home.resolve("targets").resolve("x86_64-linux").resolve("lib"))) {
                    Library found = inDirectory(spec, dir, "$CUDA_HOME: ", arena, tried, seen);
                    if (found != null) {
                        return found;
                    }
                }
            }
        }

        if (systemPath) {
            List<String> missing = new ArrayList<>();
            for (String soname : spec.sonames()) {
                try {
                    return new Library(SymbolLookup.libraryLookup(soname, arena), soname + " (system library path)");
                } catch (RuntimeException e) {
                    missing.add(soname);
                }
            }
            tried.add("system library path (" + String.join(", ", missing) + ": not found)");
        }

        for (Path dir : directories) {
            Library found = inDirectory(spec, dir, "", arena, tried, seen);
            if (found != null) {
                return found;
            }
        }
        throw new CudaUnavailableException(spec.description() + " was not found; tried: " + String.join(", ", tried));
    }

    /** Tries each soname in one directory; notes in {@code tried} why none loaded. */
    private static Library inDirectory(Spec spec, Path dir, String prefix, Arena arena, List<String> tried,
                                       Set<Path> seen) {
        Path key = dir.toAbsolutePath().normalize();
        if (!seen.add(key)) {
            return null;
        }
        List<String> absent = new ArrayList<>();
        for (String soname : spec.sonames()) {
            Path file = dir.resolve(soname);
            if (!Files.exists(file)) {
                absent.add(soname);
                continue;
            }
            String unfit = unfit(file);
            if (unfit != null) {
                tried.add(prefix + file + " (cannot load: " + unfit + ")");
                continue;
            }
            try {
                return new Library(SymbolLookup.libraryLookup(file, arena), file.toString());
            } catch (RuntimeException e) {
                tried.add(prefix + file + " (cannot load: " + reason(e) + ")");
            }
        }
        if (absent.size() == 1) {
            tried.add(prefix + dir.resolve(absent.getFirst()) + (Files.isDirectory(dir) ? " (no such file)"
                    : " (no such directory)"));
        } else if (!absent.isEmpty()) {
            tried.add(prefix + dir + (Files.isDirectory(dir) ? " (has no " + String.join(", ", absent) + ")"
                    : " (no such directory)"));
        }
        return null;
    }

    /**
     * Why a file cannot be a 64-bit shared library, judged from its ELF header, or null where it may be one. Saves
     * handing {@code dlopen} a file that is bound to fail (whose failure the JDK reports only as "Cannot open
     * library").
     */
    static String unfit(Path file) {
        if (Files.isDirectory(file)) {
            return "a directory";
        }
        byte[] head = new byte[5];
        try (InputStream in = Files.newInputStream(file)) {
            if (in.readNBytes(head, 0, head.length) < head.length) {
                return "not an ELF shared library (too short)";
            }
        } catch (IOException e) {
            return "unreadable: " + e.getMessage();
        }
        if (head[0] != 0x7f || head[1] != 'E' || head[2] != 'L' || head[3] != 'F') {
            return "not an ELF shared library";
        }
        if (head[4] != 2) {
            return "a 32-bit library";
        }
        return null;
    }

    private static String reason(RuntimeException e) {
        String message = e.getMessage();
        return message == null || message.isBlank() ? e.getClass().getSimpleName() : message;
    }
}
