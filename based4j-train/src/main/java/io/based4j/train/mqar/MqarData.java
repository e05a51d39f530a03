package io.based4j.train.mqar;

import java.util.List;

/**
 * The generated train and test examples of MQAR runs, made once and shared by every run of a sweep that uses the
 * same slices and seed (generation is the costly part of a short run; the paper's 180,000 training examples take
 * about 200 MB).
 */
public record MqarData(long seed, List<MqarSet> train, List<MqarSet> test) {
    public MqarData {
        train = List.copyOf(train);
        test = List.copyOf(test);
    }

    /** Generates the slices at the paper's vocabulary; train and test seeds are disjoint (see MqarGenerator). */
    public static MqarData generate(List<MqarSlice> train, List<MqarSlice> test, long seed) {
        return new MqarData(seed, MqarGenerator.generate(train, MqarGenerator.DEFAULT_VOCAB, seed, true),
                MqarGenerator.generate(test, MqarGenerator.DEFAULT_VOCAB, seed, false));
    }

    /** Bytes of the examples' inputs and targets (two ints a token) of {@code slices}. */
    public static long bytes(List<MqarSlice> slices) {
        long tokens = 0;
        for (MqarSlice s : slices) {
            tokens += (long) s.count() * s.seqLen();
        }
        return 2L * Integer.BYTES * tokens;
    }

    /** Whether these are the examples of {@code trainSlices} and {@code testSlices} drawn from {@code seed}. */
    public boolean matches(List<MqarSlice> trainSlices, List<MqarSlice> testSlices, long seed) {
        return this.seed == seed && train.stream().map(MqarSet::slice).toList().equals(trainSlices)
                && test.stream().map(MqarSet::slice).toList().equals(testSlices);
    }
}
