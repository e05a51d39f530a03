package io.based4j.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** The "contains" score of the paper and how context and prompt are joined. */
class RecallExampleTest {
    @Test
    void containsIgnoresCaseAndAcceptsAnyAnswer() {
        assertTrue(RecallExample.contains(" COLUMBUS, of course.", List.of("Columbus")));
        assertTrue(RecallExample.contains(" columbus", List.of("Columbus")));
        assertTrue(RecallExample.contains(" St. Paul is", List.of("Saint Paul", "St. Paul", "St Paul")));
        assertTrue(RecallExample.contains("Saint Paulite", List.of("saint paul")), "a substring counts");
        assertFalse(RecallExample.contains(" Cleveland", List.of("Columbus", "Ohio City")));
        assertFalse(RecallExample.contains("", List.of("a")));
        assertFalse(RecallExample.contains("Colum", List.of("Columbus")), "a prefix of the answer is not enough");
        // non-ASCII letters compare without case too
        assertTrue(RecallExample.contains(" ÉCOLE", List.of("école")));
    }

    @Test
    void contextAndPromptAreJoinedByOneSpaceUnlessWhitespaceIsThere() {
        assertEquals("A is B. A is", new RecallExample(1, null, "A is B.", "A is", List.of("B")).input());
        assertEquals("A is B.\nA is", new RecallExample(1, null, "A is B.\n", "A is", List.of("B")).input());
        assertEquals("A is B. A is", new RecallExample(1, null, "A is B.", " A is", List.of("B")).input());
        assertEquals("A is", new RecallExample(1, null, "", "A is", List.of("B")).input());
    }
}
