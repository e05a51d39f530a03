package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The system property that picks the decode attention's version: its values and a clear error for a bad one. */
class DecodeVersionTest {
    @Test
    void theDefaultIsVersionOneAndEachVersionCanBeNamed() {
        assertEquals(1, Kernels.decodeVersion(null));
        for (int v = 1; v <= Kernels.DECODE_VERSIONS; v++) {
            assertEquals(v, Kernels.decodeVersion(" " + v + " "));
        }
    }

    @Test
    void aVersionThatDoesNotExistIsNamedInTheError() {
        for (String bad : new String[] {"0", String.valueOf(Kernels.DECODE_VERSIONS + 1), "two", ""}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Kernels.decodeVersion(bad));
            assertTrue(e.getMessage().contains(Kernels.DECODE_VERSION_PROPERTY) && e.getMessage().contains("'" + bad + "'"),
                    e.getMessage());
        }
    }
}
