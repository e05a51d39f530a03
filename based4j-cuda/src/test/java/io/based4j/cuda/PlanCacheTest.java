package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The cache of cuBLASLt plans, with stand-in plans: built once per key, least recently used evicted and freed. */
class PlanCacheTest {
    /** A stand-in plan: which key it was built for. */
    record Plan(String key) {
    }

    final List<Plan> disposed = new ArrayList<>();

    @Test
    void aKeyIsBuiltOnceAndThenReused() {
        PlanCache<String, Plan> cache = new PlanCache<>(4, disposed::add);
        List<String> built = new ArrayList<>();
        Plan first = cache.get("a", k -> {
            built.add(k);
            return new Plan(k);
        });
        for (int i = 0; i < 10; i++) {
            assertSame(first, cache.get("a", k -> {
                throw new AssertionError("built again");
            }));
        }
        cache.get("b", k -> {
            built.add(k);
            return new Plan(k);
        });
        assertEquals(List.of("a", "b"), built);
        assertEquals(2, cache.builds());
        assertEquals(2, cache.size());
        assertTrue(disposed.isEmpty());
    }

    @Test
    void theLeastRecentlyUsedPlanIsEvictedAndDisposedOf() {
        PlanCache<String, Plan> cache = new PlanCache<>(2, disposed::add);
        cache.get("a", Plan::new);
        cache.get("b", Plan::new);
        cache.get("a", Plan::new); // a is now the most recently used
        cache.get("c", Plan::new);
        assertEquals(List.of(new Plan("b")), disposed);
        assertEquals(2, cache.size());
        assertEquals(new Plan("a"), cache.peek("a"));
        assertNull(cache.peek("b"));
        // b is built anew when asked for again, and evicts a: a was last used before c was built (a peek is no use)
        cache.get("b", Plan::new);
        assertEquals(4, cache.builds());
        assertEquals(List.of(new Plan("b"), new Plan("a")), disposed);
    }

    @Test
    void aFailedBuildKeepsNothing() {
        PlanCache<String, Plan> cache = new PlanCache<>(2, disposed::add);
        assertThrows(IllegalStateException.class, () -> cache.get("a", k -> {
            throw new IllegalStateException("no descriptor");
        }));
        assertEquals(0, cache.size());
        assertEquals(new Plan("a"), cache.get("a", Plan::new));
        assertEquals(1, cache.builds());
    }

    @Test
    void closingDisposesOfEveryPlanOnceEvenWhenOneFails() {
        List<Plan> tried = new ArrayList<>();
        PlanCache<String, Plan> cache = new PlanCache<>(8, p -> {
            tried.add(p);
            if (p.key().equals("b")) {
                throw new IllegalStateException("cannot free b");
            }
        });
        for (String k : List.of("a", "b", "c")) {
            cache.get(k, Plan::new);
        }
        IllegalStateException e = assertThrows(IllegalStateException.class, cache::close);
        assertEquals("cannot free b", e.getMessage());
        assertEquals(List.of(new Plan("a"), new Plan("b"), new Plan("c")), tried);
        assertEquals(0, cache.size());
        cache.close();
        assertEquals(3, tried.size());
    }

    @Test
    void capacityMustBePositive() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new PlanCache<String, Plan>(0, disposed::add));
        assertTrue(e.getMessage().contains("at least 1"), e.getMessage());
    }
}
