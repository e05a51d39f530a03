package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The plan by which a recorded decode step's products ask the L2 cache for the next product's weights
 * ({@link StepPrefetch}): on the CPU, since it is the host's bookkeeping (the kernels that read the table are checked
 * on the GPU by {@code FusedGemvTest}, {@code GemmRowsTest} and {@code GemmWgTest}, the same bits with it as without).
 */
class StepPrefetchTest {
    private static final long MIB = 1L << 20;

    @Test
    void eachSlotAsksForTheNextProductsWeightsAsFarAsTheBudgetLeaves() {
        // based-1b's MLP: in 25.7 MB, out 12.8 MB; then a projection of 6.4 MB
        List<long[]> products = List.of(new long[] {0x1000, 25_690_112}, new long[] {0x9000, 12_845_056},
                new long[] {0x5000, 6_422_528});
        long budget = 36 * MIB;
        long[] slots = StepPrefetch.slots(products, budget);
        // slot 0: the out-projection whole would pass the budget beside the in-projection: its first part
        assertEquals(0x9000, slots[0]);
        assertEquals((budget - 25_690_112) & ~15L, slots[1]);
        // slot 1: the projection whole
        assertArrayEquals(new long[] {0x5000, 6_422_528}, new long[] {slots[2], slots[3]});
        // the last product asks for nothing
        assertArrayEquals(new long[] {0, 0}, new long[] {slots[4], slots[5]});
    }

    @Test
    void aProductAsLargeAsTheBudgetAsksForNothingAndNoBudgetMeansNoPrefetch() {
        List<long[]> products = List.of(new long[] {0x1000, 180 * MIB}, new long[] {0x2000, MIB});
        assertArrayEquals(new long[] {0, 0, 0, 0}, StepPrefetch.slots(products, 36 * MIB));
        List<long[]> small = List.of(new long[] {0x1000, MIB}, new long[] {0x2000, MIB + 7});
        assertArrayEquals(new long[] {0, 0, 0, 0}, StepPrefetch.slots(small, 0));
        // byte counts go down to a multiple of 16 (the bulk prefetch's unit)
        assertEquals(MIB, StepPrefetch.slots(small, 36 * MIB)[1]);
    }

    @Test
    void theKernelAfterALibraryProductTakesItsSlotOnceAndOurProductsTakeNone() {
        long table = 0x7000_0000L;
        StepPrefetch plan = new StepPrefetch(table);
        assertEquals(0, plan.next(), "no product noted yet");
        plan.product(0x1000, 64);
        plan.served();  // a kernel of ours took it
        assertEquals(0, plan.next(), "our product loads its own weights");
        plan.product(0x2000, 64);
        assertEquals(table + StepPrefetch.SLOT_BYTES, plan.next(), "after the library's second product: its slot");
        assertEquals(0, plan.next(), "a second kernel after the same product");
        for (int i = 2; i < StepPrefetch.SLOTS + 3; i++) {
            plan.product(0x3000 + i, 64);
        }
        assertEquals(0, plan.next(), "a product past the table");
        assertEquals(StepPrefetch.SLOTS + 3, plan.products());
        assertEquals(2L * StepPrefetch.SLOTS, plan.slots(Long.MAX_VALUE).length, "the table's slots, no more");
        assertEquals(StepPrefetch.TABLE_BYTES, (long) StepPrefetch.SLOTS * StepPrefetch.SLOT_BYTES);
    }

    @Test
    void theBudgetIsThreeQuartersOfL2UnlessThePropertySaysOtherwise() {
        assertEquals(37_748_736, StepPrefetch.budget(null, 50_331_648), "an L2 cache of 48 MiB");
        assertEquals(0, StepPrefetch.budget("off", 50_331_648));
        assertEquals(0, StepPrefetch.budget("0", 50_331_648));
        assertEquals(24 * MIB, StepPrefetch.budget(" 24 ", 50_331_648));
        for (String bad : new String[] {"-1", "lots", "", "1.5", "true"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> StepPrefetch.budget(bad, 50_331_648));
            assertTrue(e.getMessage().contains(StepPrefetch.PROPERTY) && e.getMessage().contains("'" + bad + "'"),
                    e.getMessage());
        }
    }
}
