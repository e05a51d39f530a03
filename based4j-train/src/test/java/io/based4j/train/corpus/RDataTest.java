package io.based4j.train.corpus;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Character vectors of an R lazy-load database. */
class RDataTest {
    @Test
    void readsEveryCharacterVectorWithItsEncodingAndWithoutNa() throws IOException {
        byte[] rdb = Fixtures.rdb(
                Fixtures.rStrings("EMMA", "", "By Jane Austen", null, "Émma’s “quotes”"),
                Fixtures.rStrings("PERSUASION", "latin1:caf\u00e9"));
        List<List<String>> v = RData.characterVectors(rdb);
        assertEquals(List.of(List.of("EMMA", "", "By Jane Austen", "Émma’s “quotes”"),
                List.of("PERSUASION", "caf\u00e9")), v);
    }

    @Test
    void objectsOfOtherTypesArePassedOver() throws IOException {
        byte[] intVector = Fixtures.rStrings("x").clone();
        intVector[26] = 13; // the vector's type: INTSXP instead of STRSXP
        assertEquals(List.of(List.of("kept")), RData.characterVectors(Fixtures.rdb(intVector,
                Fixtures.rStrings("kept"))));
    }

    @Test
    void aCutDatabaseIsAnError() {
        byte[] rdb = Fixtures.rdb(Fixtures.rStrings("a line of text", "another line of text"));
        for (int cut : new int[] {2, 10, rdb.length - 3}) {
            IOException e = assertThrows(IOException.class, () -> RData.characterVectors(Arrays.copyOf(rdb, cut)));
            assertTrue(e.getMessage().contains("cut short"), cut + ": " + e.getMessage());
        }
        byte[] notX = Fixtures.rdb("A\n".getBytes());
        assertThrows(IOException.class, () -> RData.characterVectors(notX));
    }
}
