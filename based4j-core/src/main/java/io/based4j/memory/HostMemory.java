package io.based4j.memory;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * How much of the host's memory new work may still take, asked before anything big is allocated, so that a size
 * that cannot fit is refused with one line ({@link NotEnoughMemoryException}) rather than failing half-way with an
 * {@link OutOfMemoryError}. The CPU backends, the initializer and the CPU trainer check here; the GPU backend checks
 * device memory the same way.
 *
 * <p>Two kinds of memory are told apart:
 * <ul>
 *   <li><b>the Java heap</b>, where the CPU backends keep activations and recurrent state (float32 arrays) and the CPU
 *       trainer keeps everything (float64 arrays): free is {@code Runtime.maxMemory()} less what is in use, and no
 *       more than the committed heap's free part plus what the machine has available. {@code -Xmx} (through
 *       {@code JAVA_OPTS} for the launcher) raises the limit;</li>
 *   <li><b>memory outside the heap</b>: {@code Arena} allocations (random weights, weights converted to float32,
 *       checkpoint staging) and the pages of memory-mapped checkpoints. In this JDK (25) {@code Arena.allocate} is not
 *       reserved against {@code -XX:MaxDirectMemorySize} (a 20 MiB {@code Arena.allocate} succeeds under
 *       {@code -XX:MaxDirectMemorySize=10m}, and the "direct" buffer pool does not count it), so its limit is the
 *       memory the machine has available: {@code MemAvailable} of {@code /proc/meminfo}, no more than a container's
 *       limit leaves free where the JVM sees one, or the JVM's free physical memory where there is no
 *       {@code /proc/meminfo} (no limit where neither can be read).</li>
 * </ul>
 * These are estimates: garbage not yet collected counts as used until a check that fails has run the collector once
 * and measured again, and other processes may take memory after a check.
 *
 * <p>Checks read the memory through a {@link Probe}: {@link #system()} measures this JVM and machine, and
 * {@link #budget} gives fixed amounts (for tests, or to hold work to less than the machine has).
 */
public final class HostMemory {
    /** The amounts a check reads. */
    public interface Probe {
        /** Most bytes the heap may grow to ({@code Runtime.maxMemory()}). */
        long heapMax();

        /** Bytes the heap holds from the operating system now ({@code Runtime.totalMemory()}). */
        long heapCommitted();

        /** Bytes of the heap in use, garbage included. */
        long heapUsed();

        /** Bytes of memory the machine can still give this process. */
        long available();

        /** Frees what garbage it can before a check that failed measures again. */
        default void collectGarbage() {
        }
    }

    private static final HostMemory SYSTEM = new HostMemory(new SystemProbe(), true);

    private final Probe probe;
    private final boolean fromSystem;

    private HostMemory(Probe probe, boolean fromSystem) {
        this.probe = probe;
        this.fromSystem = fromSystem;
    }

    /** This JVM's heap and this machine's memory. */
    public static HostMemory system() {
        return SYSTEM;
    }

    /** Fixed amounts: {@code heapFree} bytes for Java arrays, {@code available} bytes outside the heap. */
    public static HostMemory budget(long heapFree, long available) {
        return new HostMemory(new Probe() {
            @Override
            public long heapMax() {
                return heapFree;
            }

            @Override
            public long heapCommitted() {
                return heapFree;
            }

            @Override
            public long heapUsed() {
                return 0;
            }

            @Override
            public long available() {
                return available;
            }
        }, false);
    }

    /** A check against any probe. */
    public static HostMemory of(Probe probe) {
        return new HostMemory(probe, false);
    }

    /** Bytes new Java arrays may take now. */
    public long heapFree() {
        return heap().free();
    }

    /** Bytes outside the Java heap new work may take now. */
    public long available() {
        return Math.max(0, probe.available());
    }

    /** Refuses {@code bytes} of Java arrays for {@code subject} when they do not fit. */
    public void requireHeap(long bytes, String subject) {
        require(MemoryNeed.heap(subject, bytes));
    }

    /**
     * Refuses {@code need} when it does not fit: its Java arrays in the heap, then its memory outside the heap in
     * what the machine has available once the heap has grown by what the arrays take beyond the committed heap.
     *
     * @throws NotEnoughMemoryException naming the subject, the bytes needed and the bytes free
     */
    public void require(MemoryNeed need) {
        if (need.offHeapBytes() == 0 && fitsCommittedHeap(need.heapBytes())) {
            return;
        }
        Heap heap = heap();
        if (need.heapBytes() > heap.free()) {
            probe.collectGarbage();
            heap = heap();
            if (need.heapBytes() > heap.free()) {
                throw new NotEnoughMemoryException(need, need.heapBytes(), need.heapDetail(), heap.free(),
                        heap.where());
            }
        }
        if (need.offHeapBytes() == 0) {
            return;
        }
        long growth = Math.max(0, need.heapBytes() - heap.committedFree);
        long free = available() - growth;
        if (need.offHeapBytes() > free) {
            String where = availableWhere();
            if (growth > 0) {
                where += ", less the " + Sizes.human(growth) + " the Java heap grows by";
            }
            throw new NotEnoughMemoryException(need, need.offHeapBytes(), need.offHeapDetail(), free, where);
        }
    }

    /** Whether {@code bytes} fit in the heap's committed free part (no need to ask the machine then). */
    private boolean fitsCommittedHeap(long bytes) {
        long used = probe.heapUsed();
        return bytes <= probe.heapCommitted() - used && bytes <= probe.heapMax() - used;
    }

    /** A measurement of the heap: what is free and what bounds it. */
    private record Heap(long max, long used, long committedFree, long available) {
        long free() {
            long byLimit = max - used;
            long byMachine = Sizes.plus(committedFree, available);
            return Math.max(0, Math.min(byLimit, byMachine));
        }

        String where() {
            if (max - used <= Sizes.plus(committedFree, available)) {
                return "Java heap of at most " + Sizes.human(max) + ", " + Sizes.human(used)
                        + " in use; JAVA_OPTS=-Xmx<size> raises it";
            }
            return "Java heap, limited by the " + Sizes.human(available) + " this machine has available";
        }
    }

    private Heap heap() {
        long committed = probe.heapCommitted();
        long used = probe.heapUsed();
        return new Heap(probe.heapMax(), used, Math.max(0, committed - used), available());
    }

    private String availableWhere() {
        return fromSystem ? SystemProbe.availableSource() : "memory available outside the Java heap";
    }

    /** This JVM and machine. */
    private static final class SystemProbe implements Probe {
        private static final Path MEMINFO = Path.of("/proc/meminfo");

        @Override
        public long heapMax() {
            return Runtime.getRuntime().maxMemory();
        }

        @Override
        public long heapCommitted() {
            return Runtime.getRuntime().totalMemory();
        }

        @Override
        public long heapUsed() {
            Runtime r = Runtime.getRuntime();
            return r.totalMemory() - r.freeMemory();
        }

        @Override
        public long available() {
            long[] meminfo = meminfo();
            if (meminfo == null) {
                return OsBean.PRESENT ? OsBean.free() : Long.MAX_VALUE;
            }
            long available = meminfo[1];
            // In a container the JVM reports the container's limit; /proc/meminfo shows the whole host.
            if (OsBean.PRESENT && OsBean.total() < meminfo[0]) {
                available = Math.min(available, OsBean.free());
            }
            return available;
        }

        @Override
        public void collectGarbage() {
            System.gc();
        }

        static String availableSource() {
            return Files.isReadable(MEMINFO) ? "memory available on this machine: MemAvailable in /proc/meminfo"
                    : "memory available on this machine";
        }

        /** {MemTotal, MemAvailable} in bytes, or null when /proc/meminfo cannot be read. */
        private static long[] meminfo() {
            List<String> lines;
            try {
                lines = Files.readAllLines(MEMINFO);
            } catch (IOException | RuntimeException e) {
                return null;
            }
            long total = -1;
            long available = -1;
            for (String line : lines) {
                if (line.startsWith("MemTotal:")) {
                    total = kilobytes(line);
                } else if (line.startsWith("MemAvailable:")) {
                    available = kilobytes(line);
                }
            }
            return total < 0 || available < 0 ? null : new long[] {total, available};
        }

        /** The value of a "Name:   123 kB" line in bytes, or -1. */
        private static long kilobytes(String line) {
            String[] parts = line.trim().split("\\s+");
            try {
                return Long.parseLong(parts[1]) * 1024;
            } catch (NumberFormatException | ArrayIndexOutOfBoundsException e) {
                return -1;
            }
        }
    }

    /**
     * The JVM's view of physical memory (container-aware), from the {@code jdk.management} module where the runtime
     * has it (a minimal jlink'ed runtime may not).
     */
    private static final class OsBean {
        static final boolean PRESENT = ModuleLayer.boot().findModule("jdk.management").isPresent();

        static long total() {
            return bean().getTotalMemorySize();
        }

        static long free() {
            return bean().getFreeMemorySize();
        }

        private static com.sun.management.OperatingSystemMXBean bean() {
            return (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        }
    }
}
