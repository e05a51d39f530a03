package io.based4j.backend.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.based4j.backend.Backend;
import io.based4j.memory.HostMemory;
import org.junit.jupiter.api.Test;

/**
 * The CPU key/value cache of full attention holds pages of {@link CpuStates.KeyValue#PAGE_TOKENS} tokens made as its
 * sequence reaches them, not its whole capacity; a reset gives them back; a snapshot past a page restores into
 * another slot row for row; a sliding window's ring is held whole from the start.
 */
class KeyValuePagesTest {
    private static final int WIDTH = 8;
    private static final int PAGE = CpuStates.KeyValue.PAGE_TOKENS;

    @Test
    void aFullCacheGrowsAPageAtATime() {
        CpuStates.KeyValue kv = new CpuStates.KeyValue(HostMemory.system(), 2, 4096, WIDTH, false);
        assertEquals(0, kv.heldFloats(0), "nothing before the first token");
        kv.ensure(0, 1);
        assertEquals(2L * PAGE * WIDTH, kv.heldFloats(0));
        kv.ensure(0, PAGE);
        assertEquals(2L * PAGE * WIDTH, kv.heldFloats(0), "still one page at " + PAGE + " tokens");
        kv.ensure(0, 2 * PAGE + 1);
        assertEquals(3 * 2L * PAGE * WIDTH, kv.heldFloats(0));
        assertEquals(0, kv.heldFloats(1), "another slot holds nothing");
        long pagesInAll = 2L * (4096 / PAGE);
        assertEquals((pagesInAll - 3) * 2L * Float.BYTES * PAGE * WIDTH, kv.growableBytes(),
                "what the pages not made yet would take");
        assertEquals(2L * 4 * 700 * WIDTH, kv.bytesPerSequence(700), "a sequence's bytes at a context length");
        kv.reset(0);
        assertEquals(0, kv.heldFloats(0), "a reset gives the pages back");
    }

    @Test
    void aSnapshotPastAPageRestoresRowForRow() {
        CpuStates.KeyValue kv = new CpuStates.KeyValue(HostMemory.system(), 2, 2048, WIDTH, false);
        int tokens = PAGE + 77;
        kv.ensure(0, tokens);
        for (int pos = 0; pos < tokens; pos++) {
            for (int e = 0; e < WIDTH; e++) {
                kv.keyPage(0, pos)[kv.row(pos) + e] = pos * 10 + e;
                kv.valuePage(0, pos)[kv.row(pos) + e] = -(pos * 10 + e);
            }
        }
        Backend.Snapshot snap = kv.snapshot(0, tokens);
        kv.ensure(1, 3 * PAGE);  // a longer sequence there before: its later rows must not survive the restore
        kv.restore(1, snap);
        assertEquals(2 * 2L * PAGE * WIDTH, kv.heldFloats(1), "the pages of the snapshot's tokens");
        for (int pos = 0; pos < tokens; pos++) {
            float[] want = new float[WIDTH];
            float[] got = new float[WIDTH];
            for (int e = 0; e < WIDTH; e++) {
                want[e] = pos * 10 + e;
                got[e] = kv.keyPage(1, pos)[kv.row(pos) + e];
            }
            assertArrayEquals(want, got, "keys of position " + pos);
            assertEquals((float) -(pos * 10), kv.valuePage(1, pos)[kv.row(pos)], "values of position " + pos);
        }
        kv.ensure(1, tokens + 1);
        assertEquals(0f, kv.keyPage(1, tokens)[kv.row(tokens)], "past the snapshot: zeros");
        assertThrows(IllegalArgumentException.class, () -> new CpuStates.KeyValue(HostMemory.system(), 1, 100, WIDTH,
                false).restore(0, snap), "a snapshot longer than the cache");
    }

    @Test
    void aSlidingWindowRingIsHeldWhole() {
        CpuStates.KeyValue ring = new CpuStates.KeyValue(HostMemory.system(), 1, 64, WIDTH, true);
        assertEquals(2L * 64 * WIDTH, ring.heldFloats(0));
        assertSame(ring.keyPage(0, 3), ring.keyPage(0, 3 + 64), "positions a ring apart share a page");
        assertEquals(ring.row(3), ring.row(3 + 64));
        ring.reset(0);
        assertEquals(2L * 64 * WIDTH, ring.heldFloats(0), "a reset zeros the ring in place");
    }
}
