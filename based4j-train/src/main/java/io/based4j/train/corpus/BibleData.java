package io.based4j.train.corpus;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The King James Bible from the data file of Debian's {@code bible-kjv-text} package ({@code usr/lib/bible.data},
 * the format of the Bible Retrieval System): a header ({@code "EC02"}, an 80-byte description, the window size
 * and count as big-endian 32-bit integers, then the file offset of each window and of the end), the 3-byte header
 * of Unix {@code compress} ({@code 1F 9D}, flags), and the text in windows each compressed on its own. The text
 * is a title line, then one line per verse: {@code "Ge1:1 In the beginning ..."}.
 */
final class BibleData {
    /** The 66 books in the order of the text, named as in the Authorized Version's table of contents. */
    static final List<String> BOOKS = List.of("Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua",
            "Judges", "Ruth", "1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra",
            "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah",
            "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah", "Micah",
            "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi", "Matthew", "Mark", "Luke", "John",
            "Acts", "Romans", "1 Corinthians", "2 Corinthians", "Galatians", "Ephesians", "Philippians", "Colossians",
            "1 Thessalonians", "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus", "Philemon", "Hebrews", "James",
            "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude", "Revelation");

    private static final int HEADER = 92;
    private static final Pattern VERSE = Pattern.compile("([1-3]?[A-Za-z]+)(\\d+:\\d+) (.*)");

    /** One book: its name and its verses, one a line, each led by chapter:verse. */
    record Book(String name, String text) {
    }

    private BibleData() {
    }

    /** The decompressed text of the data file. */
    static String text(byte[] file) throws IOException {
        if (file.length < HEADER || file[0] != 'E' || file[1] != 'C' || file[2] != '0' || file[3] != '2') {
            throw new IOException("not a Bible Retrieval System data file of version 02");
        }
        ByteBuffer b = ByteBuffer.wrap(file);
        int wsize = b.getInt(84);
        int wnum = b.getInt(88);
        if (wsize < 1 || wsize > (1 << 24) || wnum < 1 || HEADER + 4L * (wnum + 1) + 3 > file.length) {
            throw new IOException("damaged header (window size " + wsize + ", " + wnum + " windows)");
        }
        int[] start = new int[wnum + 1];
        for (int i = 0; i <= wnum; i++) {
            start[i] = b.getInt(HEADER + 4 * i);
        }
        int z = HEADER + 4 * (wnum + 1);
        if ((file[z] & 0xFF) != 0x1F || (file[z + 1] & 0xFF) != 0x9D || start[0] != z + 3) {
            throw new IOException("damaged header (no compress header before the first window)");
        }
        int maxBits = file[z + 2] & 0x1F;
        boolean block = (file[z + 2] & 0x80) != 0;
        StringBuilder text = new StringBuilder(wsize * wnum);
        for (int w = 0; w < wnum; w++) {
            if (start[w + 1] < start[w] || start[w + 1] > file.length) {
                throw new IOException("window " + w + " lies outside the file (cut short?)");
            }
            byte[] window = UnixCompress.decode(file, start[w], start[w + 1] - start[w], maxBits, block);
            if (window.length > wsize || (w < wnum - 1 && window.length != wsize)) {
                throw new IOException("window " + w + " decodes to " + window.length + " bytes, not " + wsize);
            }
            text.append(new String(window, StandardCharsets.ISO_8859_1));
        }
        return text.toString();
    }

    /** The text split into its 66 books; the title line is left out. */
    static List<Book> books(String text) throws IOException {
        List<Book> books = new ArrayList<>();
        String current = null;
        StringBuilder verses = null;
        for (String line : text.split("\n")) {
            Matcher m = VERSE.matcher(line);
            if (!m.matches()) {
                if (current == null) {
                    continue; // the title line
                }
                throw new IOException("a line is not a verse: '" + abbreviate(line) + "'");
            }
            if (!m.group(1).equals(current)) {
                if (verses != null) {
                    books.add(book(books.size(), verses));
                }
                current = m.group(1);
                verses = new StringBuilder();
            }
            verses.append(m.group(2)).append(' ').append(m.group(3)).append('\n');
        }
        if (verses != null) {
            books.add(book(books.size(), verses));
        }
        if (books.size() != BOOKS.size()) {
            throw new IOException("the text holds " + books.size() + " books, not " + BOOKS.size());
        }
        return books;
    }

    private static Book book(int index, StringBuilder verses) throws IOException {
        if (index >= BOOKS.size()) {
            throw new IOException("the text holds more than " + BOOKS.size() + " books");
        }
        String name = BOOKS.get(index);
        return new Book(name, name + "\n\n" + verses);
    }

    private static String abbreviate(String s) {
        return s.length() <= 60 ? s : s.substring(0, 60) + "...";
    }
}
