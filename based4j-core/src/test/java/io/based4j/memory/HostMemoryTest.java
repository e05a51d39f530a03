package io.based4j.memory;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class HostMemoryTest {
    private static final long MIB = 1L << 20;
    private static final long GIB = 1L << 30;

    @Test
    void sizesSaturateInsteadOfWrapping() {
        assertEquals(6, Sizes.product(1, 2, 3));
        assertEquals(Long.MAX_VALUE, Sizes.times(1L << 32, 1L << 32));
        assertEquals(Long.MAX_VALUE, Sizes.product(16384, 16384, 16384, 16384, 16384));
        assertEquals(Long.MAX_VALUE, Sizes.plus(Long.MAX_VALUE - 1, 2));
        assertEquals(Long.MAX_VALUE, Sizes.sum(Long.MAX_VALUE, Long.MAX_VALUE, 1));
        // an int product that wraps to a negative number stays positive and exact in 64 bits
        assertEquals(65536L * 65536L, Sizes.times(65536, 65536));
    }

    @Test
    void arrayLengthRefusesWhatOneJavaArrayCannotHold() {
        assertEquals(1 << 20, Sizes.arrayLength(1024, 1024, "x"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Sizes.arrayLength(65536, 65536, "activations"));
        assertEquals("activations: 65,536 x 65,536 = 4,294,967,296 values, more than one Java array holds"
                + " (2,147,483,639)", e.getMessage());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Sizes.arrayLength(-1, 4, "state"))
                .getMessage().contains("negative size"));
    }

    @Test
    void humanSizesReachExbibytes() {
        assertEquals("1000 B", Sizes.human(1000));
        assertEquals("1.5 GiB", Sizes.human(3 * GIB / 2));
        assertEquals("8.0 EiB", Sizes.human(Long.MAX_VALUE));
        assertEquals("524,288", Sizes.count(524288));
        assertEquals("1.6B", Sizes.count(1_600_000_000L));
        assertEquals("13.2T", Sizes.count(13_200_000_000_000L));
    }

    @Test
    void heapNeedBeyondTheBudgetIsRefusedWithNeededAndFreeAmounts() {
        HostMemory memory = HostMemory.budget(64 * MIB, GIB);
        assertDoesNotThrow(() -> memory.requireHeap(64 * MIB, "a buffer"));
        NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class,
                () -> memory.require(MemoryNeed.heap("a buffer", 100 * MIB).withHint("use fewer rows")));
        assertEquals(100 * MIB, e.needed());
        assertEquals(64 * MIB, e.free());
        assertEquals("a buffer needs 100.0 MiB but only 64.0 MiB is free (Java heap of at most 64.0 MiB, 0 B in use;"
                + " JAVA_OPTS=-Xmx<size> raises it); use fewer rows", e.getMessage());
    }

    @Test
    void offHeapNeedCountsWhatTheHeapGrowsBy() {
        // 1 GiB heap limit, 256 MiB committed and in use, 512 MiB available on the machine
        HostMemory memory = HostMemory.of(new HostMemory.Probe() {
            @Override
            public long heapMax() {
                return GIB;
            }

            @Override
            public long heapCommitted() {
                return 256 * MIB;
            }

            @Override
            public long heapUsed() {
                return 256 * MIB;
            }

            @Override
            public long available() {
                return 512 * MIB;
            }
        });
        // the heap can only grow by what the machine has: 512 MiB, not the 768 MiB the limit allows
        assertEquals(512 * MIB, memory.heapFree());
        assertDoesNotThrow(() -> memory.require(new MemoryNeed("work", 200 * MIB, "", 300 * MIB, "", "")));
        NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class,
                () -> memory.require(new MemoryNeed("work", 300 * MIB, "", 300 * MIB, "for its weights", "")));
        assertEquals(212 * MIB, e.free(), "512 MiB available less the 300 MiB the heap grows by");
        assertTrue(e.getMessage().startsWith("work needs 300.0 MiB for its weights but only 212.0 MiB is free ("),
                e.getMessage());
        assertTrue(e.getMessage().contains("less the 300.0 MiB the Java heap grows by"), e.getMessage());
    }

    @Test
    void theSystemReportsPositiveAmounts() {
        HostMemory system = HostMemory.system();
        assertTrue(system.heapFree() > 0 && system.heapFree() <= Runtime.getRuntime().maxMemory());
        assertTrue(system.available() > 0);
        // no machine has 2^62 bytes: the check refuses it and names the heap and how to raise it
        NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class,
                () -> system.requireHeap(1L << 62, "an absurd array"));
        assertTrue(e.getMessage().startsWith("an absurd array needs 4.0 EiB but only "), e.getMessage());
        assertTrue(e.getMessage().contains("Java heap"), e.getMessage());
    }
}
