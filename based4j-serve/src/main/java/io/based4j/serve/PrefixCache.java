package io.based4j.serve;

import io.based4j.model.StateSnapshot;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.IntToLongFunction;
import java.util.function.Supplier;
import java.util.stream.IntStream;

/**
 * The recurrent states of prompt prefixes, least recently used first out, within a budget of bytes: a request
 * whose prompt starts with a cached prefix starts from its state and skips its prefill.
 *
 * <p>Prefixes are cached only at lengths that are multiples of the backend's exact split, so that a prompt resumed
 * from one is fed in the pieces a cold run may use and gives the same logits bit for bit. A prompt is resumed from
 * its longest cached proper prefix (its last token is always fed, for the first logits), and its state is cached
 * after its longest aligned proper prefix (what a later turn of a conversation, or the same prompt again, starts
 * with) and, where it parts from a cached prefix, after the longest aligned prefix the two share (a system prompt,
 * few-shot examples or a document that prompts have in common).
 *
 * <p>Used by the engine thread only; the counters may be read from any thread.
 */
final class PrefixCache {
    /** The prefix a prompt resumes from ({@code snapshot} null and {@code length} 0 for none), and {@code shared}. */
    record Match(StateSnapshot snapshot, int length, int shared) {
    }

    private record Key(int[] tokens) {
        @Override
        public boolean equals(Object o) {
            return o instanceof Key k && Arrays.equals(tokens, k.tokens);
        }

        @Override
        public int hashCode() {
            return Arrays.hashCode(tokens);
        }
    }

    private final long budget;
    private final int split;
    /** In order of use, least recent first. */
    private final LinkedHashMap<Key, StateSnapshot> entries = new LinkedHashMap<>(16, 0.75f, true);

    private volatile long bytes;
    private volatile int size;
    private volatile long hits;
    private volatile long misses;
    private volatile long tokensReused;
    private volatile long evictions;

    /**
     * @param budget most bytes of states held; 0 holds none
     * @param split  the backend's exact split: cached prefix lengths are multiples of it
     */
    PrefixCache(long budget, int split) {
        if (budget < 0) {
            throw new IllegalArgumentException("the prefix cache budget must be at least 0 bytes, got " + budget);
        }
        this.budget = budget;
        this.split = Math.max(1, split);
    }

    /** Whether a prompt of {@code length} tokens has a prefix the cache could hold (and so counts a hit or miss). */
    boolean covers(int length) {
        return budget > 0 && alignedProperPrefix(length) > 0;
    }

    /** The longest proper prefix of a prompt of {@code length} tokens whose length is a multiple of the split. */
    private int alignedProperPrefix(int length) {
        return aligned(length - 1);
    }

    private int aligned(int length) {
        return Math.max(0, length) / split * split;
    }

    /**
     * The longest cached proper prefix of {@code prompt} (made the most recently used, counted as a hit), or none
     * (a miss); {@code shared} is the most tokens the prompt has in common with any cached prefix.
     */
    Match lookup(int[] prompt) {
        Key best = null;
        int bestLength = 0;
        int shared = 0;
        for (Map.Entry<Key, StateSnapshot> e : entries.entrySet()) {
            int[] key = e.getKey().tokens();
            int common = Arrays.mismatch(prompt, 0, Math.min(prompt.length, key.length), key, 0,
                    Math.min(prompt.length, key.length));
            common = common < 0 ? Math.min(prompt.length, key.length) : common;
            shared = Math.max(shared, common);
            if (common == key.length && key.length < prompt.length && key.length > bestLength) {
                best = e.getKey();
                bestLength = key.length;
            }
        }
        if (best == null) {
            misses++;
            return new Match(null, 0, shared);
        }
        hits++;
        tokensReused += bestLength;
        return new Match(entries.get(best), bestLength, shared); // the most recently used now
    }

    /**
     * The prompt lengths after which the state of a prompt of {@code length} tokens, resumed at {@code resumed},
     * is to be cached (ascending): its longest aligned proper prefix and the longest aligned prefix it shares with
     * a cached one, each past {@code resumed} (a cached one is not: the prompt resumed from it or a longer one),
     * and of a state ({@code bytesAt} a length) that fits the budget.
     */
    int[] points(int length, int resumed, int shared, IntToLongFunction bytesAt) {
        int last = alignedProperPrefix(length);
        int branch = Math.min(aligned(shared), last);
        return IntStream.of(branch, last).distinct().filter(p -> p > resumed && bytesAt.applyAsLong(p) <= budget)
                .toArray();
    }

    /**
     * Caches the state after the first {@code length} tokens of {@code prompt}, taken by {@code snapshot} once
     * room for {@code bytes} is made (least recently used prefixes are dropped first). Does nothing when the prefix
     * is cached already or its state is over the whole budget.
     */
    void put(int[] prompt, int length, long bytes, Supplier<StateSnapshot> snapshot) {
        Key key = new Key(Arrays.copyOf(prompt, length));
        if (bytes > budget || entries.containsKey(key)) {
            return;
        }
        Iterator<StateSnapshot> oldest = entries.values().iterator();
        long held = bytes();
        while (held + bytes > budget && oldest.hasNext()) {
            StateSnapshot s = oldest.next();
            oldest.remove();
            held -= s.bytes();
            s.close();
            evictions++;
        }
        this.bytes = held;
        size = entries.size();
        StateSnapshot taken = snapshot.get();
        entries.put(key, taken);
        this.bytes = held + taken.bytes();
        size = entries.size();
    }

    /** Drops every prefix, giving its state's memory back. */
    void clear() {
        entries.values().forEach(StateSnapshot::close);
        entries.clear();
        bytes = 0;
        size = 0;
    }

    long budget() {
        return budget;
    }

    long bytes() {
        return bytes;
    }

    int size() {
        return size;
    }

    long hits() {
        return hits;
    }

    long misses() {
        return misses;
    }

    long tokensReused() {
        return tokensReused;
    }

    long evictions() {
        return evictions;
    }
}
