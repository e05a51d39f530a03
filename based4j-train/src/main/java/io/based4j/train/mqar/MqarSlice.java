package io.based4j.train.mqar;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;

/**
 * A block of MQAR examples of one shape: {@code count} sequences of {@code seqLen} tokens, each with
 * {@code numKv} key-value pairs to recall.
 */
public record MqarSlice(int seqLen, int numKv, int count) {
    public MqarSlice {
        if (seqLen < 2) {
            throw new IllegalArgumentException("MQAR sequence length must be >= 2, got " + seqLen);
        }
        if (numKv < 1) {
            throw new IllegalArgumentException("MQAR needs at least 1 key-value pair, got " + numKv);
        }
        if (count < 0) {
            throw new IllegalArgumentException("MQAR example count must be >= 0, got " + count);
        }
    }

    /** The slice as {@link #parse} reads it: {@code L:KV:COUNT}. */
    public String spec() {
        return seqLen + ":" + numKv + ":" + count;
    }

    /** Slices as {@link #parse} reads them: {@code L:KV:COUNT,L:KV:COUNT,...}. */
    public static String spec(List<MqarSlice> slices) {
        return slices.stream().map(MqarSlice::spec).collect(Collectors.joining(","));
    }

    /**
     * Reads {@code paper} (the given list) or {@code L:KV:COUNT,...}, each shape checked against the MQAR
     * constraints at the paper's vocabulary.
     *
     * @param what where the text comes from, the start of every error ({@code "--train"})
     * @throws IllegalArgumentException naming {@code what} and the part that is wrong
     */
    public static List<MqarSlice> parse(String what, String text, List<MqarSlice> paper) {
        if (text.equals("paper")) {
            return paper;
        }
        List<MqarSlice> out = new ArrayList<>();
        for (String part : text.split(",")) {
            String[] f = part.trim().split(":");
            try {
                if (f.length != 3) {
                    throw new NumberFormatException();
                }
                MqarSlice s = new MqarSlice(Integer.parseInt(f[0]), Integer.parseInt(f[1]), Integer.parseInt(f[2]));
                MqarGenerator.check(s.seqLen(), s.numKv(), MqarGenerator.DEFAULT_VOCAB);
                out.add(s);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(what + ": '" + part + "' is not L:KV:COUNT (e.g. 64:4:1000)");
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException(what + ": " + e.getMessage());
            }
        }
        return out;
    }

    @Override
    public String toString() {
        return "(L=" + seqLen + ", kv=" + numKv + ") x " + count;
    }
}
