package io.based4j.train.mqar;

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

    @Override
    public String toString() {
        return "(L=" + seqLen + ", kv=" + numKv + ") x " + count;
    }
}
