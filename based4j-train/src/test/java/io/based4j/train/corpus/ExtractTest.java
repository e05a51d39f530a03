package io.based4j.train.corpus;

import static io.based4j.train.corpus.Fixtures.utf8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/** dictd databases, text decoding, names and document paths. */
class ExtractTest {
    @Test
    void dictEntriesFollowTheIndexInDataOrderOnceEachWithoutTheHeader() throws IOException {
        String dict = "00-database-short\n   Test dictionary\n\nhydrogen\nSymbol: H\n\nhelium\nSymbol: He\n";
        int h = dict.indexOf("hydrogen");
        int he = dict.indexOf("helium");
        // dictd numbers are base 64 over A-Z a-z 0-9 + /: "B" is 1, "BA" is 64
        String index = "00-database-short\t" + b64(0) + "\t" + b64(h) + "\n"
                + "helium\t" + b64(he) + "\t" + b64(dict.length() - he) + "\n"
                + "hydrogen\t" + b64(h) + "\t" + b64(he - h) + "\n"
                + "H\t" + b64(h) + "\t" + b64(he - h) + "\n";
        List<String> entries = Extract.dictEntries(utf8(index), utf8(dict));
        assertEquals(List.of("hydrogen\nSymbol: H\n\n", "helium\nSymbol: He\n"), entries);

        IOException e = assertThrows(IOException.class, () -> Extract.dictEntries(utf8("x\tB\t/////\n"),
                utf8(dict)));
        assertTrue(e.getMessage().contains("points past the end"), e.getMessage());
        e = assertThrows(IOException.class, () -> Extract.dictEntries(utf8("x\tB\n"), utf8(dict)));
        assertTrue(e.getMessage().contains("2 fields"), e.getMessage());
    }

    static String b64(int v) {
        String digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        StringBuilder sb = new StringBuilder();
        do {
            sb.insert(0, digits.charAt(v % 64));
            v /= 64;
        } while (v > 0);
        return sb.toString();
    }

    @Test
    void textIsUtf8OrElseLatin1() {
        assertEquals("café ✓", Extract.text(utf8("café ✓")));
        assertEquals("café", Extract.text("café".getBytes(StandardCharsets.ISO_8859_1)));
    }

    @Test
    void slugsAndSafeDocumentPaths() {
        assertEquals("song-of-solomon", Extract.slug("Song of Solomon"));
        assertEquals("pride-and-prejudice", Extract.slug("  PRIDE AND PREJUDICE "));
        assertEquals("untitled", Extract.slug("***"));
        assertEquals("admin-guide/media/bttv.txt", CorpusFetcher.safePath("admin-guide/media/bttv.txt"));
        assertEquals("a/b_c.txt", CorpusFetcher.safePath("/a/../b c"));
        assertEquals("x_y/z.txt", CorpusFetcher.safePath("x:y/./z.txt"));
    }
}
