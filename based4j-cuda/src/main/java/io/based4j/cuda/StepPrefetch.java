package io.based4j.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * The products of a decode step being recorded, in the order they run, and the table through which each product
 * kernel of ours asks the L2 cache for the weights of the product after it ({@code b4jPrefetchNext} in
 * {@code based4j_kernels.cu}).
 *
 * <p>A decode step of one or a few sequences is a chain of some 300 kernels whose products each stream a weight
 * matrix: between two products (and through each product's own ramp and tail) the memory would stand idle. A product
 * kernel that asks for the next product's weights as it starts keeps the memory busy through the kernels between,
 * and the next product finds its weights in L2. Which product comes next is known only once the step is recorded, so
 * each product kernel takes a slot of a table in device memory (its address is a kernel argument, fixed in the
 * graph) and the table is written after the recording: slot i holds the address and the byte count of product i + 1's
 * weights, as much of them as fits beside product i's own in the L2 cache's {@linkplain #budget budget}. Products of
 * the library (cuBLASLt) take no slot, but their weights are asked for by the product before them all the same.
 * Prefetching changes no value: it only moves bytes into the cache earlier.
 */
class StepPrefetch {
    /**
     * The system property that sets the bytes, in MiB, that product i's weights and the part of product i + 1's asked
     * for may take of the L2 cache together ({@code off} or 0: nothing is asked for); three quarters of the device's
     * L2 cache by default.
     */
    static final String PROPERTY = "based4j.cuda.prefetch";
    /** Slots of a step's table: more than any model's decode step has products (based-1b's has 159). */
    static final int SLOTS = 2048;
    /** Bytes of a slot: the address and the byte count, 8 bytes each. */
    static final int SLOT_BYTES = 16;
    /** Bytes of a table. */
    static final long TABLE_BYTES = (long) SLOTS * SLOT_BYTES;

    private final long table;
    private final List<long[]> products = new ArrayList<>();
    /** The product whose kernel has not yet taken its slot, else -1. */
    private int pending = -1;

    /** A plan recording into the table at {@code table} ({@link #TABLE_BYTES} of device memory, zeroed). */
    StepPrefetch(long table) {
        this.table = table;
    }

    /**
     * The L2 budget {@link #PROPERTY} sets ({@code value}, null where unset) on a device of {@code l2Bytes} of L2
     * cache: bytes, 0 for none.
     *
     * @throws IllegalArgumentException naming the property for a value that is neither off nor a whole number of MiB
     */
    static long budget(String value, long l2Bytes) {
        if (value == null) {
            return l2Bytes / 4 * 3;
        }
        String v = value.trim();
        if (v.equals("off")) {
            return 0;
        }
        long mib;
        try {
            mib = Long.parseLong(v);
        } catch (NumberFormatException e) {
            mib = -1;
        }
        if (mib < 0 || mib > 1L << 20) {
            throw new IllegalArgumentException("-D" + PROPERTY + " must be off or the MiB of L2 cache a product and the"
                    + " next one's prefetched weights may take together (0 to 1048576), got '" + value + "'");
        }
        return mib << 20;
    }

    /** Notes a product of the step, in order: its weights' address and bytes. */
    void product(long weights, long bytes) {
        products.add(new long[] {weights, bytes});
        pending = products.size() - 1;
    }

    /** Says that the product noted last runs on a kernel of ours, which loads its weights itself (early). */
    void served() {
        pending = -1;
    }

    /**
     * For a kernel after a product that no kernel of ours took (the library's): the slot that holds the next
     * product's weights (the one noted last's), taken once; else 0, nothing to ask for.
     */
    long next() {
        int i = pending;
        pending = -1;
        return i >= 0 && i < SLOTS ? table + (long) i * SLOT_BYTES : 0;
    }

    /** The products noted so far. */
    int products() {
        return products.size();
    }

    /** The table's values for the products noted, within {@code budget} bytes of L2 ({@link #slots(List, long)}). */
    long[] slots(long budget) {
        return slots(products, budget, HEAD);
    }

    /** Bytes of the next product's weights a slot asks for at most (its head): {@code based4j.cuda.prefetchHead}, MiB. */
    static final long HEAD = Long.getLong("based4j.cuda.prefetchHead", 1L << 30) << 20;

    /** Writes the table for the products noted, within {@code budget} bytes of L2 (before any kernel reads it). */
    void write(CudaDriver cu, long budget) {
        long[] values = slots(budget);
        if (values.length == 0) {
            return;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(8L * values.length, 8);
            MemorySegment.copy(values, 0, host, ValueLayout.JAVA_LONG, 0, values.length);
            cu.copyHtoD(table, host, host.byteSize());
        }
    }

    /**
     * The values of a step's table (two longs a slot, at most {@link #SLOTS} slots): slot i asks for the first
     * {@code min(bytes(i + 1), budget - bytes(i))} bytes of product i + 1's weights (rounded down to 16), or for
     * nothing where that is not above 0 or product i is the last.
     */
    static long[] slots(List<long[]> products, long budget) {
        return slots(products, budget, Long.MAX_VALUE);
    }

    static long[] slots(List<long[]> products, long budget, long head) {
        int n = Math.min(products.size(), SLOTS);
        long[] values = new long[2 * n];
        for (int i = 0; i < n && i + 1 < products.size(); i++) {
            long[] next = products.get(i + 1);
            long bytes = Math.min(Math.min(next[1], head), budget - products.get(i)[1]) & ~15L;
            if (bytes > 0) {
                values[2 * i] = next[0];
                values[2 * i + 1] = bytes;
            }
        }
        return values;
    }
}
