package io.based4j.train.corpus;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The LZW decoder of Unix compress and the King James Bible data file built on it. */
class BibleDataTest {
    /** Text with enough repetition to fill the code table and enough variety to need wide codes. */
    static byte[] sampleText(int n, long seed) {
        String[] words = {"and", "the", "of", "LORD", "unto", "he", "said", "them", "shall", "his", "in", "that",
            "beginning", "heaven", "earth", "waters", "light", "darkness", "firmament", "evening", "morning"};
        Random r = new Random(seed);
        StringBuilder sb = new StringBuilder();
        while (sb.length() < n) {
            sb.append(words[r.nextInt(words.length)]).append(r.nextInt(10) == 0 ? ".\n" : " ");
            if (r.nextInt(50) == 0) {
                sb.append(r.nextInt(100000)); // rarer strings keep adding new codes
            }
        }
        return sb.substring(0, n).getBytes(StandardCharsets.ISO_8859_1);
    }

    @Test
    void decodesWhatCompressEncodesAtEveryCodeWidthWithAndWithoutTableClears() throws IOException {
        byte[] text = sampleText(300_000, 1);
        for (int maxBits : new int[] {9, 12, 16}) {
            for (int clearEvery : new int[] {0, 700}) {
                byte[] z = Fixtures.compress(text, maxBits, clearEvery);
                byte[] back = UnixCompress.decode(z, 0, z.length, maxBits, true);
                assertArrayEquals(text, back, "maxBits " + maxBits + ", clear every " + clearEvery);
            }
        }
        assertEquals(0, UnixCompress.decode(new byte[0], 0, 0, 16, true).length);
        byte[] one = Fixtures.compress(new byte[] {'a'}, 16, 0);
        assertArrayEquals(new byte[] {'a'}, UnixCompress.decode(one, 0, one.length, 16, true));
    }

    @Test
    void aDamagedCodeStreamIsAnError() {
        byte[] z = Fixtures.compress(sampleText(5000, 2), 16, 0);
        byte[] bad = z.clone();
        // the 4th code (bits 27..35) becomes 511, far past the 260 or so table entries made by then
        bad[3] |= (byte) 0xF8;
        bad[4] = (byte) 0xFF;
        IOException e = assertThrows(IOException.class, () -> UnixCompress.decode(bad, 0, bad.length, 16, true));
        assertTrue(e.getMessage().contains("damaged"), e.getMessage());
        assertThrows(IOException.class, () -> UnixCompress.decode(z, 0, z.length, 17, true));
    }

    /** A text in the data file's layout: a title line, then "AbbrC:V text" lines of 66 books. */
    static String bibleText() {
        StringBuilder sb = new StringBuilder("Holy Bible, Authorized (King James) Version.  Textfile 930105.\n");
        for (int b = 0; b < 66; b++) {
            String abbr = (b % 3 == 0 ? "1" : "") + "Bk" + (char) ('a' + b / 26) + (char) ('a' + b % 26);
            for (int c = 1; c <= 2; c++) {
                for (int v = 1; v <= 3; v++) {
                    sb.append(abbr).append(c).append(':').append(v).append(" Verse ").append(v).append(" of ")
                            .append(BibleData.BOOKS.get(b)).append(", chapter ").append(c).append(".\n");
                }
            }
        }
        return sb.toString();
    }

    @Test
    void dataFileDecodesWindowByWindowAndSplitsIntoTheBooks() throws IOException {
        String text = bibleText();
        byte[] file = Fixtures.bibleData(text, 1024);
        assertEquals(text, BibleData.text(file));
        List<BibleData.Book> books = BibleData.books(text);
        assertEquals(66, books.size());
        assertEquals("Genesis", books.getFirst().name());
        assertTrue(books.getFirst().text().startsWith("Genesis\n\n1:1 Verse 1 of Genesis, chapter 1.\n"),
                books.getFirst().text());
        assertEquals("Revelation", books.getLast().name());
        assertTrue(books.getLast().text().endsWith("2:3 Verse 3 of Revelation, chapter 2.\n"));
        assertEquals(7, books.get(21).text().split("\n").length - 1, "title, empty line, 6 verses");
    }

    @Test
    void aCutOrForeignDataFileAndAWrongBookCountAreErrors() {
        byte[] file = Fixtures.bibleData(bibleText(), 1024);
        IOException e = assertThrows(IOException.class, () -> BibleData.text(Arrays.copyOf(file, file.length - 10)));
        assertTrue(e.getMessage().contains("cut short"), e.getMessage());
        e = assertThrows(IOException.class, () -> BibleData.text("not a bible data file at all, no".repeat(5)
                .getBytes(StandardCharsets.US_ASCII)));
        assertTrue(e.getMessage().contains("not a Bible Retrieval System data file"), e.getMessage());
        e = assertThrows(IOException.class, () -> BibleData.books("Title\nGe1:1 In the beginning.\nExo1:1 Now.\n"));
        assertTrue(e.getMessage().contains("holds 2 books, not 66"), e.getMessage());
        e = assertThrows(IOException.class, () -> BibleData.books("Title\nGe1:1 One.\nthis is no verse\n"));
        assertTrue(e.getMessage().contains("not a verse"), e.getMessage());
    }
}
