package io.based4j.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Reading recall JSONL: the forms accepted, and errors that name the file and the line. */
class RecallFileTest {
    @TempDir
    Path tmp;

    @Test
    void everyAcceptedFormIsRead() throws IOException {
        Path f = tmp.resolve("probe.jsonl");
        Files.writeString(f, """
                {"context": "Ohio's capital is Columbus.", "prompt": "The capital of Ohio is", "answers": ["Columbus"]}

                {"context": "C", "question": "Q?", "answer": "A", "id": 12, "extra": [1, 2]}
                {"text": "Passage and question", "answers": ["x", "y"], "id": "q3"}\r
                {"prompt": "P", "answer": "B"}
                """);
        RecallSet set = RecallFile.read(f);
        assertEquals("probe", set.name());
        assertEquals(f.toString(), set.source());
        List<RecallExample> e = set.examples();
        assertEquals(4, e.size());
        assertEquals(new RecallExample(1, null, "Ohio's capital is Columbus.", "The capital of Ohio is",
                List.of("Columbus")), e.get(0));
        assertEquals(new RecallExample(3, "12", "C", "Q?", List.of("A")), e.get(1), "line numbers count blank lines");
        assertEquals(new RecallExample(4, "q3", "", "Passage and question", List.of("x", "y")), e.get(2));
        assertEquals(new RecallExample(5, null, "", "P", List.of("B")), e.get(3));
    }

    @Test
    void errorsNameTheFileAndLine() {
        assertError("{\"prompt\": \"a\", \"answer\": \"b\"}\n{\"prompt\": \"a\", \"answer\": }\n",
                "src:2: invalid JSON at column ");
        assertError("[1, 2]\n", "src:1: expected a JSON object");
        assertError("{\"answer\": \"b\"}\n", "src:1: no question: give it as \"prompt\", \"question\" or \"text\"");
        assertError("{\"prompt\": \"a\", \"question\": \"b\", \"answer\": \"c\"}",
                "src:1: gives both \"prompt\" and \"question\"");
        assertError("{\"prompt\": \"\", \"answer\": \"c\"}", "src:1: \"prompt\" is empty");
        assertError("{\"prompt\": 5, \"answer\": \"c\"}", "src:1: \"prompt\" must be a string, got number");
        assertError("{\"prompt\": \"a\"}", "src:1: no answer: give \"answers\"");
        assertError("{\"prompt\": \"a\", \"answers\": []}", "src:1: \"answers\" must be a non-empty array");
        assertError("{\"prompt\": \"a\", \"answers\": [\"x\", \"\"]}", "src:1: \"answers\"[1] must be a non-empty string");
        assertError("{\"prompt\": \"a\", \"answer\": \"\"}", "src:1: \"answer\" is empty");
        assertError("{\"prompt\": \"a\", \"answer\": \"x\", \"answers\": [\"x\"]}", "src:1: gives both \"answers\"");
        assertError("{\"prompt\": \"a\", \"answer\": \"x\", \"context\": null}", "src:1: \"context\" must be a string");
        assertError("{\"prompt\": \"a\", \"answer\": \"x\", \"id\": [1]}", "src:1: \"id\" must be a string or a number");
        assertError("", "src: no examples (the file is empty");
        assertError("\n  \n", "src: no examples");
    }

    @Test
    void aFileThatIsNotUtf8IsNamed() throws IOException {
        Path f = tmp.resolve("bad.jsonl");
        Files.write(f, new byte[] {'{', (byte) 0xff, '}'});
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> RecallFile.read(f));
        assertEquals(f + ": not UTF-8 text (bad byte at offset 1)", e.getMessage());
    }

    private static void assertError(String text, String start) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> RecallFile.parse("n", "src", text));
        assertTrue(e.getMessage().startsWith(start), e.getMessage());
        assertTrue(!e.getMessage().contains("\n"), "one line: " + e.getMessage());
    }
}
