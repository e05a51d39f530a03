package io.based4j.tokenizer;

import com.knuddels.jtokkit.Encodings;
import com.knuddels.jtokkit.api.Encoding;
import com.knuddels.jtokkit.api.EncodingType;
import com.knuddels.jtokkit.api.IntArrayList;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The GPT-2 byte-level BPE tokenizer ({@code r50k_base}): 50,256 BPE tokens plus {@code <|endoftext|>} (id 50256).
 *
 * <p>Instances are immutable and thread-safe; {@link #load()} returns a shared instance.
 */
public final class Gpt2Tokenizer {
    private static final int VOCAB_SIZE = 50257;
    private static final int EOS_ID = 50256;
    private static final String EOS_TEXT = "<|endoftext|>";

    private final Encoding encoding;
    /** Raw bytes of every token id, indexed by id. */
    private final byte[][] tokenBytes;

    private Gpt2Tokenizer(Encoding encoding) {
        this.encoding = encoding;
        this.tokenBytes = new byte[VOCAB_SIZE][];
        IntArrayList single = new IntArrayList(1);
        single.add(0);
        for (int id = 0; id < VOCAB_SIZE; id++) {
            single.set(0, id);
            tokenBytes[id] = encoding.decodeBytes(single);
        }
    }

    private static final class Holder {
        static final Gpt2Tokenizer INSTANCE =
                new Gpt2Tokenizer(Encodings.newLazyEncodingRegistry().getEncoding(EncodingType.R50K_BASE));
    }

    /** Returns the shared GPT-2 tokenizer (built on first use). */
    public static Gpt2Tokenizer load() {
        return Holder.INSTANCE;
    }

    /** Encodes ordinary text; special-token strings such as {@code <|endoftext|>} are encoded as plain text. */
    public int[] encode(String text) {
        return encoding.encodeOrdinary(text).toArray();
    }

    /** Concatenated raw bytes of the tokens (may end in or contain incomplete UTF-8 sequences). */
    public byte[] decodeBytes(int[] ids) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(ids.length * 4);
        for (int id : ids) {
            out.writeBytes(tokenBytes(id));
        }
        return out.toByteArray();
    }

    /** Decodes ids to text; invalid UTF-8 becomes U+FFFD. */
    public String decode(int[] ids) {
        return new String(decodeBytes(ids), StandardCharsets.UTF_8);
    }

    public int vocabSize() {
        return VOCAB_SIZE;
    }

    public int eosId() {
        return EOS_ID;
    }

    public String eosText() {
        return EOS_TEXT;
    }

    /** Returns a streaming decoder for this tokenizer. */
    public StreamingDecoder streamingDecoder() {
        return new StreamingDecoder(this);
    }

    /** Raw bytes of one token; the returned array is shared and must not be modified. */
    byte[] tokenBytes(int id) {
        if (id < 0 || id >= VOCAB_SIZE) {
            throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + VOCAB_SIZE + ")");
        }
        return tokenBytes[id];
    }

    /**
     * Parses token ids separated by commas and/or whitespace, e.g. {@code "1,2, 3"} or {@code "1 2 3"}.
     * An empty or blank string gives an empty array.
     *
     * @throws IllegalArgumentException naming the first element that is not an integer
     */
    public static int[] parseIds(String csvOrSpaceSeparated) {
        String s = csvOrSpaceSeparated.strip();
        if (s.isEmpty()) {
            return new int[0];
        }
        String[] parts = s.split("\\s*,\\s*|\\s+", -1);
        List<Integer> ids = new ArrayList<>(parts.length);
        for (int i = 0; i < parts.length; i++) {
            try {
                ids.add(Integer.parseInt(parts[i]));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("invalid token id \"" + parts[i] + "\" (element " + (i + 1)
                        + " of \"" + csvOrSpaceSeparated + "\"): expected an integer");
            }
        }
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }
}
