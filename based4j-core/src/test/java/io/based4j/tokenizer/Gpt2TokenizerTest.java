package io.based4j.tokenizer;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.*;

class Gpt2TokenizerTest {
    private static final String TEXT =
            "Hello world! BASED linear attention models use the GPT-2 tokenizer.\n  Numbers 12345 and ünïcödé 😀.";
    private static final int[] IDS = {15496, 995, 0, 29809, 1961, 14174, 3241, 4981, 779, 262, 402, 11571, 12, 17,
            11241, 7509, 13, 198, 220, 27797, 17031, 2231, 290, 6184, 120, 77, 26884, 66, 9101, 67, 2634, 30325, 222,
            13};
    /** Bytes " \xF0\x9F\x98": a space and the first three of the four bytes of U+1F600. */
    private static final int EMOJI_FIRST_PART = 30325;

    private final Gpt2Tokenizer tok = Gpt2Tokenizer.load();

    @Test
    void loadIsCached() {
        assertSame(tok, Gpt2Tokenizer.load());
    }

    @Test
    void encodesReferenceVector() {
        assertArrayEquals(IDS, tok.encode(TEXT));
    }

    @Test
    void decodeRoundTripsExactly() {
        assertEquals(TEXT, tok.decode(IDS));
        assertArrayEquals(TEXT.getBytes(StandardCharsets.UTF_8), tok.decodeBytes(IDS));
        assertEquals(TEXT, tok.decode(tok.encode(TEXT)));
    }

    @Test
    void vocabularyAndEndOfText() {
        assertEquals(50257, tok.vocabSize());
        assertEquals(50256, tok.eosId());
        assertEquals("<|endoftext|>", tok.eosText());
        assertEquals("<|endoftext|>", tok.decode(new int[] {tok.eosId()}));
        assertEquals("", tok.decode(new int[0]));
    }

    @Test
    void specialTokenTextIsEncodedAsOrdinaryText() {
        int[] ids = tok.encode("a<|endoftext|>b");
        for (int id : ids) {
            assertNotEquals(tok.eosId(), id);
        }
        assertEquals("a<|endoftext|>b", tok.decode(ids));
    }

    @Test
    void outOfRangeIdsAreRejected() {
        var e = assertThrows(IllegalArgumentException.class, () -> tok.decode(new int[] {1, 50257}));
        assertTrue(e.getMessage().contains("50257"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> tok.decodeBytes(new int[] {-1}));
        assertTrue(e.getMessage().contains("-1"), e.getMessage());
        var d = new StreamingDecoder(tok);
        assertThrows(IllegalArgumentException.class, () -> d.accept(99999));
    }

    @Test
    void streamingConcatenatesToInputWithoutBrokenCharacters() {
        var decoder = new StreamingDecoder(tok);
        var all = new StringBuilder();
        for (int id : IDS) {
            String piece = decoder.accept(id);
            assertWellFormed(piece);
            if (id == EMOJI_FIRST_PART) {
                assertEquals(" ", piece, "the first bytes of the emoji must be held back");
            }
            all.append(piece);
        }
        String rest = decoder.flush();
        assertEquals("", rest);
        assertEquals(TEXT, all.append(rest).toString());
    }

    @Test
    void emojiIsEmittedWhenComplete() {
        var decoder = tok.streamingDecoder();
        assertEquals(" ", decoder.accept(EMOJI_FIRST_PART));
        assertEquals("😀", decoder.accept(222));
    }

    @Test
    void streamingEveryCharacterSplitByteByByte() {
        // Single bytes are tokens of the byte-level vocabulary, so this splits every multi-byte character.
        String text = "ä€😀 x 𝄞";
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        var decoder = tok.streamingDecoder();
        var all = new StringBuilder();
        for (byte b : bytes) {
            String piece = decoder.accept(singleByteToken(b));
            assertWellFormed(piece);
            all.append(piece);
        }
        all.append(decoder.flush());
        assertEquals(text, all.toString());
    }

    @Test
    void flushTurnsIncompleteCharacterIntoReplacement() {
        var decoder = tok.streamingDecoder();
        assertEquals(" ", decoder.accept(EMOJI_FIRST_PART));
        assertEquals("\uFFFD", decoder.flush());
        assertEquals("", decoder.flush());
    }

    @Test
    void parseIds() {
        assertArrayEquals(new int[] {1, 2, 3}, Gpt2Tokenizer.parseIds("1,2, 3"));
        assertArrayEquals(new int[] {1, 2, 3}, Gpt2Tokenizer.parseIds("1 2 3"));
        assertArrayEquals(new int[] {15496, 995}, Gpt2Tokenizer.parseIds("  15496 ,\t995 \n"));
        assertArrayEquals(new int[0], Gpt2Tokenizer.parseIds(" "));
        var e = assertThrows(IllegalArgumentException.class, () -> Gpt2Tokenizer.parseIds("1, x2, 3"));
        assertTrue(e.getMessage().contains("\"x2\""), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Gpt2Tokenizer.parseIds("1,,3"));
        assertTrue(e.getMessage().contains("element 2"), e.getMessage());
    }

    /** The token whose bytes are exactly {@code b}. */
    private int singleByteToken(byte b) {
        for (int id = 0; id < 256; id++) {
            byte[] t = tok.decodeBytes(new int[] {id});
            if (t.length == 1 && t[0] == b) {
                return id;
            }
        }
        throw new AssertionError("no single-byte token for " + (b & 0xFF));
    }

    private static void assertWellFormed(String s) {
        assertFalse(s.contains("\uFFFD"), () -> "replacement character in " + s);
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c)) {
                assertTrue(i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1)), "lone high surrogate");
                i++;
            } else {
                assertFalse(Character.isLowSurrogate(c), "lone low surrogate");
            }
        }
    }
}
