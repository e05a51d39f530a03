package io.based4j.eval;

import io.based4j.tokenizer.Gpt2Tokenizer;

/**
 * How many bytes of text each GPT-2 token stands for: the UTF-8 bytes its byte-level decoding gives, so the bytes of a
 * run of tokens are the UTF-8 bytes of the text they decode to. The end-of-text token counts no bytes: it separates
 * documents and is no part of their text.
 */
public final class TokenBytes {
    private final int[] bytes;

    public TokenBytes(Gpt2Tokenizer tokenizer) {
        bytes = new int[tokenizer.vocabSize()];
        int[] one = new int[1];
        for (int id = 0; id < bytes.length; id++) {
            one[0] = id;
            bytes[id] = id == tokenizer.eosId() ? 0 : tokenizer.decodeBytes(one).length;
        }
    }

    /** Tokens with a text: ids below this. */
    public int vocabSize() {
        return bytes.length;
    }

    /** Bytes of text token {@code id} stands for ({@code 0 <= id < vocabSize()}). */
    public int of(int id) {
        return bytes[id];
    }
}
