package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/**
 * The argument list cuLaunchKernel reads: each argument's pointer leads to its value; a struct passed by value
 * ({@link KernelArgs#blob}) is pointed to where it lies, and the next launch's arguments after a reset lead to their
 * own slots again.
 */
class KernelArgsTest {
    private static MemorySegment pointed(KernelArgs args, int i, long bytes) {
        return args.pointers().getAtIndex(ValueLayout.ADDRESS, i).reinterpret(bytes);
    }

    @Test
    void eachPointerLeadsToItsValueAndBlobsAreUndoneByReset() {
        KernelArgs args = new KernelArgs(8);
        MemorySegment map = Arena.ofAuto().allocate(128, 64);
        for (int i = 0; i < 16; i++) {
            map.setAtIndex(ValueLayout.JAVA_LONG, i, 1000L + i);
        }
        args.reset().blob(map).ptr(0x1234_5678_9abcL).i32(-7).f32(2.5f).blob(map).i64(1L << 40);
        assertEquals(6, args.count());
        assertEquals(map.address(), pointed(args, 0, 128).address());
        assertEquals(1015L, pointed(args, 0, 128).getAtIndex(ValueLayout.JAVA_LONG, 15));
        assertEquals(0x1234_5678_9abcL, pointed(args, 1, 8).get(ValueLayout.JAVA_LONG, 0));
        assertEquals(-7, pointed(args, 2, 4).get(ValueLayout.JAVA_INT, 0));
        assertEquals(2.5f, pointed(args, 3, 4).get(ValueLayout.JAVA_FLOAT, 0));
        assertEquals(map.address(), pointed(args, 4, 128).address());
        assertEquals(1L << 40, pointed(args, 5, 8).get(ValueLayout.JAVA_LONG, 0));

        args.reset().i32(11).i32(12).i32(13).i32(14).i32(15);
        for (int i = 0; i < 5; i++) {
            assertEquals(11 + i, pointed(args, i, 4).get(ValueLayout.JAVA_INT, 0), "argument " + i);
        }
    }

    @Test
    void tooManyArgumentsAndBadCapacitiesAreRefused() {
        KernelArgs args = new KernelArgs(2);
        args.reset().i32(1).i32(2);
        assertThrows(IllegalStateException.class, () -> args.i32(3));
        assertThrows(IllegalArgumentException.class, () -> new KernelArgs(0));
        assertThrows(IllegalArgumentException.class, () -> new KernelArgs(65));
    }
}
