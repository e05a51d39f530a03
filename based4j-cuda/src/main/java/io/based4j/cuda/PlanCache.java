package io.based4j.cuda;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * Plans built once per key and reused, the least recently used one disposed of when there are more than
 * {@code capacity}: a training step, whose products repeat the same few shapes, builds nothing after its first step,
 * while inference, whose row counts vary from call to call, keeps a bounded number. A key whose build throws is not
 * kept (the next call tries again). Not thread-safe (one per GPU thread, like the handle it belongs to).
 *
 * @param <K> what a plan depends on (a record: equal keys share a plan)
 * @param <P> the plan
 */
final class PlanCache<K, P> implements AutoCloseable {
    private final int capacity;
    private final Consumer<? super P> dispose;
    private final LinkedHashMap<K, P> plans = new LinkedHashMap<>(16, 0.75f, true);
    private long builds;

    /**
     * @param capacity plans kept at most (at least 1)
     * @param dispose  frees what a plan holds; called once per plan, when it is evicted or the cache is closed
     */
    PlanCache(int capacity, Consumer<? super P> dispose) {
        if (capacity < 1) {
            throw new IllegalArgumentException("a plan cache holds at least 1 plan, not " + capacity);
        }
        this.capacity = capacity;
        this.dispose = dispose;
    }

    /** The plan for {@code key}: the kept one, else {@code build(key)}, kept from now on. */
    P get(K key, Function<? super K, ? extends P> build) {
        P plan = plans.get(key);
        if (plan != null) {
            return plan;
        }
        plan = build.apply(key);
        builds++;
        plans.put(key, plan);
        if (plans.size() > capacity) {
            Iterator<Map.Entry<K, P>> eldest = plans.entrySet().iterator();
            P evicted = eldest.next().getValue();
            eldest.remove();
            dispose.accept(evicted);
        }
        return plan;
    }

    /** The plan kept for {@code key}, or null (without building one, and without counting as a use). */
    P peek(K key) {
        for (Map.Entry<K, P> e : plans.entrySet()) {
            if (e.getKey().equals(key)) {
                return e.getValue();
            }
        }
        return null;
    }

    /** Plans kept now. */
    int size() {
        return plans.size();
    }

    /** Plans built so far (kept or since evicted). */
    long builds() {
        return builds;
    }

    /** Disposes of every plan kept; the first failure is thrown after all were tried. */
    @Override
    public void close() {
        RuntimeException first = null;
        for (P plan : plans.values()) {
            try {
                dispose.accept(plan);
            } catch (RuntimeException e) {
                if (first == null) {
                    first = e;
                }
            }
        }
        plans.clear();
        if (first != null) {
            throw first;
        }
    }
}
