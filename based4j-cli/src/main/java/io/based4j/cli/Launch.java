package io.based4j.cli;

import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.invoke.MethodHandle;

/**
 * The entry point of the launch scripts (scripts/launch.sh). They start the JVM with its standard error going through
 * a filter that drops the JVM's incubator-module warning, and with the real standard error set aside on the
 * descriptor named by {@code -Dbased4j.stderr.fd}. Before anything else, this puts the real standard error back on
 * descriptor 2, so that what the CLI and the JVM print from now on reaches it directly (in order with standard
 * output), then runs {@link Main}.
 */
public final class Launch {
    /** The system property naming the descriptor that holds the real standard error. */
    static final String STDERR_FD = "based4j.stderr.fd";

    private static final int STDERR = 2;

    private Launch() {
    }

    public static void main(String[] args) {
        String saved = System.getProperty(STDERR_FD);
        if (saved != null) {
            restoreStandardError(saved);
        }
        Main.main(args);
    }

    /**
     * Makes descriptor 2 a copy of {@code saved} and closes {@code saved}. When that cannot be done, standard error
     * stays the filter, which passes everything else on: nothing is lost, it only takes one hop more.
     */
    static void restoreStandardError(String saved) {
        try {
            int fd = Integer.parseInt(saved);
            Linker linker = Linker.nativeLinker();
            FunctionDescriptor intInt = FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT);
            MethodHandle dup2 = linker.downcallHandle(linker.defaultLookup().find("dup2").orElseThrow(), intInt);
            MethodHandle close = linker.downcallHandle(linker.defaultLookup().find("close").orElseThrow(),
                    FunctionDescriptor.of(JAVA_INT, JAVA_INT));
            System.err.flush();
            if ((int) dup2.invokeExact(fd, STDERR) == STDERR) {
                int unused = (int) close.invokeExact(fd);
            }
        } catch (Throwable e) {
            // left as it is: see above
        }
    }
}
