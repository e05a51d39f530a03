package io.based4j.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/** The built-in probes: the shipped files are what the generator writes from the facts, and the facts hold together. */
class ProbeSetsTest {
    @Test
    void theShippedFilesAreWhatTheGeneratorWrites() throws IOException {
        for (String name : ProbeSets.setNames()) {
            try (InputStream in = ProbeSets.class.getResourceAsStream("probes/" + name + ".jsonl")) {
                assertEquals(ProbeSets.generate(name), new String(in.readAllBytes(), StandardCharsets.UTF_8),
                        name + ": regenerate with ProbeSets DIR");
            }
        }
    }

    @Test
    void theFactsAreComplete() {
        assertEquals(50, ProbeFacts.CAPITALS.size());
        assertEquals(50, ProbeFacts.CAPITALS.stream().map(ProbeFacts.StateCapital::state).distinct().count());
        assertEquals(118, ProbeFacts.ELEMENTS.size());
        assertEquals(IntStream.rangeClosed(1, 118).boxed().toList(),
                ProbeFacts.ELEMENTS.stream().map(ProbeFacts.Element::number).toList());
        assertEquals(118, ProbeFacts.ELEMENTS.stream().map(ProbeFacts.Element::symbol).distinct().count());
        assertEquals(118, ProbeFacts.ELEMENTS.stream().map(ProbeFacts.Element::name).distinct().count());
        ProbeFacts.ELEMENTS.forEach(e -> assertTrue(e.names().contains(e.name()), e.toString()));
        ProbeFacts.CAPITALS.forEach(c -> assertTrue(c.answers().contains(c.capital()), c.toString()));
    }

    @Test
    void closedBookAsksAloneAndInContextPutsTheAnswerAmongOtherStatements() {
        for (String task : ProbeSets.TASKS) {
            List<RecallSet> sets = ProbeSets.task(task);
            assertEquals(List.of(task + "-closed-book", task + "-in-context"), sets.stream().map(RecallSet::name).toList());
            RecallSet closed = sets.get(0);
            RecallSet open = sets.get(1);
            int size = task.equals("capitals") ? 50 : 2 * 118;
            assertEquals(size, closed.examples().size());
            assertEquals(size, open.examples().size());
            for (int i = 0; i < size; i++) {
                RecallExample c = closed.examples().get(i);
                RecallExample o = open.examples().get(i);
                assertEquals("", c.context());
                assertEquals(c.prompt(), o.prompt());
                assertEquals(c.answers(), o.answers());
                assertEquals(c.id(), o.id());
                String[] statements = o.context().split("(?<=\\.) ");
                assertEquals(ProbeSets.PASSAGE, statements.length, o.context());
                assertEquals(ProbeSets.PASSAGE, new HashSet<>(List.of(statements)).size(), "no statement twice");
                long asked = List.of(statements).stream().filter(s -> s.startsWith(o.prompt() + " ")
                        && RecallExample.contains(s.substring(o.prompt().length()), o.answers())).count();
                assertEquals(1, asked, "the asked statement, with its answer, is in the passage: " + o);
                for (String s : statements) {
                    assertTrue(s.endsWith("."), s);
                }
            }
        }
        RecallExample ohio = ProbeSets.set("capitals-closed-book").examples().get(34);
        assertEquals(new RecallExample(35, "capital:Ohio", "", "The capital of Ohio is", List.of("Columbus")), ohio);
        RecallExample iron = ProbeSets.set("elements-closed-book").examples().get(25);
        assertEquals(new RecallExample(26, "symbol:Fe", "", "The chemical element with the symbol Fe is",
                List.of("iron")), iron);
        RecallExample ironNumber = ProbeSets.set("elements-closed-book").examples().get(118 + 25);
        assertEquals(new RecallExample(144, "number:iron", "", "The atomic number of iron is", List.of("26")),
                ironNumber);
    }

    @Test
    void unknownNamesAreRefusedNamingTheKnownOnes() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ProbeSets.set("rivers"));
        assertEquals("no built-in set 'rivers' (there are capitals-closed-book, capitals-in-context,"
                + " elements-closed-book, elements-in-context)", e.getMessage());
        Set<String> tasks = Set.copyOf(ProbeSets.TASKS);
        assertEquals(Set.of("capitals", "elements"), tasks);
        assertThrows(IllegalArgumentException.class, () -> ProbeSets.task("rivers"));
    }
}
