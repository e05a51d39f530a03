package io.based4j.tokenizer;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/**
 * Decodes a token stream incrementally. Byte-level BPE tokens may end inside a multi-byte UTF-8 character
 * (an emoji is often split over several tokens), so trailing bytes of an incomplete character are held back
 * until the character is complete. For valid text, the concatenation of all {@link #accept} results and
 * {@link #flush()} equals {@link Gpt2Tokenizer#decode} of all ids.
 *
 * <p>Not thread-safe.
 */
public final class StreamingDecoder {
    private final Gpt2Tokenizer tokenizer;
    private final ByteArrayOutputStream pending = new ByteArrayOutputStream();

    public StreamingDecoder(Gpt2Tokenizer tokenizer) {
        this.tokenizer = tokenizer;
    }

    /** Adds one token and returns the text completed by it (possibly empty). */
    public String accept(int id) {
        pending.writeBytes(tokenizer.tokenBytes(id));
        byte[] bytes = pending.toByteArray();
        int complete = completePrefixLength(bytes);
        pending.reset();
        pending.write(bytes, complete, bytes.length - complete);
        return new String(bytes, 0, complete, StandardCharsets.UTF_8);
    }

    /** Returns the held-back bytes as text (an incomplete character becomes U+FFFD) and clears them. */
    public String flush() {
        String rest = pending.toString(StandardCharsets.UTF_8);
        pending.reset();
        return rest;
    }

    /**
     * Length of the prefix that can be decoded now: everything except a trailing lead byte plus the
     * continuation bytes that follow it, when that sequence is shorter than its lead byte announces.
     */
    static int completePrefixLength(byte[] b) {
        int n = b.length;
        // A UTF-8 sequence has at most 4 bytes, so an incomplete tail has at most 3.
        for (int i = n - 1; i >= Math.max(0, n - 3); i--) {
            int v = b[i] & 0xFF;
            if ((v & 0xC0) == 0x80) {
                continue; // continuation byte: keep looking for the lead byte
            }
            int expected = v >= 0xF0 && v <= 0xF4 ? 4 : v >= 0xE0 && v <= 0xEF ? 3 : v >= 0xC2 && v <= 0xDF ? 2 : 1;
            return n - i < expected ? i : n;
        }
        return n;
    }
}
