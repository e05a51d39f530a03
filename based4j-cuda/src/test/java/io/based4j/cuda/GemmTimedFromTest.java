package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * {@code -Dbased4j.cuda.gemmTimedFrom}: a positive number of multiply-adds, the default where unset, else refused;
 * {@code -Dbased4j.cuda.gemmTimedCold}: true or false, null (each caller's default) where unset, else refused.
 */
class GemmTimedFromTest {
    @Test
    void theThresholdIsAPositiveNumber() {
        assertEquals(CublasLt.TIMED_MIN_MULTIPLY_ADDS, CublasLt.timedFrom(null));
        assertEquals(CublasLt.TIMED_MIN_MULTIPLY_ADDS, CublasLt.timedFrom(" "));
        assertEquals(1_000_000L, CublasLt.timedFrom("1000000"));
        assertEquals(5L, CublasLt.timedFrom(" 5 "));
        for (String bad : new String[] {"0", "-3", "lots", "1e6"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CublasLt.timedFrom(bad));
            assertTrue(e.getMessage().contains(CublasLt.TIMED_FROM_PROPERTY) && e.getMessage().contains(bad),
                    e.getMessage());
        }
    }

    @Test
    void coldTimingIsTrueOrFalse() {
        assertNull(CublasLt.timedCold(null));
        assertFalse(CublasLt.timedCold("false"));
        assertTrue(CublasLt.timedCold("true"));
        assertTrue(CublasLt.timedCold(" true "));
        for (String bad : new String[] {"yes", "1", "cold", ""}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CublasLt.timedCold(bad));
            assertTrue(e.getMessage().contains(CublasLt.TIMED_COLD_PROPERTY) && e.getMessage().contains(bad),
                    e.getMessage());
        }
    }
}
