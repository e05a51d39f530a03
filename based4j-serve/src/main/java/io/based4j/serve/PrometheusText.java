package io.based4j.serve;

import java.util.Locale;

/**
 * An {@link EngineMetrics} in Prometheus' text exposition format (version 0.0.4): each metric's {@code # HELP} and
 * {@code # TYPE} lines, then its samples. Every name starts with {@code based4j_}; durations are in seconds.
 */
final class PrometheusText {
    /** The Content-Type of the format. */
    static final String CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

    private final StringBuilder out = new StringBuilder();

    private PrometheusText() {
    }

    static String of(EngineMetrics m) {
        PrometheusText t = new PrometheusText();
        t.single("based4j_queue_depth", "gauge", "Requests waiting for a slot.", m.queueDepth());
        t.single("based4j_running_sequences", "gauge", "Sequences holding a slot (prefilling or generating).",
                m.running());
        t.single("based4j_slots", "gauge", "Sequences the engine generates together.", m.slots());
        t.head("based4j_requests_total", "counter", "Requests ended or refused, by outcome.");
        t.sample("based4j_requests_total{outcome=\"finished\"}", m.requestsFinished());
        t.sample("based4j_requests_total{outcome=\"cancelled\"}", m.requestsCancelled());
        t.sample("based4j_requests_total{outcome=\"failed\"}", m.requestsFailed());
        t.sample("based4j_requests_total{outcome=\"rejected\"}", m.requestsRejected());
        t.sample("based4j_requests_total{outcome=\"timed_out\"}", m.requestsTimedOut());
        t.single("based4j_generated_tokens_total", "counter", "Tokens generated (an ending end-of-text included).",
                m.tokensGenerated());
        t.single("based4j_prompt_tokens_total", "counter", "Prompt tokens fed.", m.promptTokens());
        t.single("based4j_steps_total", "counter", "Forward steps run.", m.steps());
        t.single("based4j_steps_ahead_total", "counter",
                "Decode steps queued on the ids the step before drew before the host had read them.", m.stepsAhead());
        EngineMetrics.PrefixCacheMetrics c = m.prefixCache();
        t.single("based4j_prefix_cache_hits_total", "counter", "Prompts that started from a cached prefix's state.",
                c.hits());
        t.single("based4j_prefix_cache_misses_total", "counter", "Prompts long enough to look up that found no"
                + " cached prefix.", c.misses());
        t.single("based4j_prefix_cache_reused_tokens_total", "counter", "Prompt tokens not fed because their state"
                + " came from the prefix cache.", c.tokensReused());
        t.single("based4j_prefix_cache_evictions_total", "counter", "Prefixes dropped to make room for newer ones.",
                c.evictions());
        t.single("based4j_prefix_cache_entries", "gauge", "Prefixes the cache holds.", c.entries());
        t.single("based4j_prefix_cache_bytes", "gauge", "Bytes of states the prefix cache holds.", c.bytes());
        t.single("based4j_prefix_cache_budget_bytes", "gauge", "Most bytes the prefix cache may hold (0: off).",
                c.budgetBytes());
        t.histogram("based4j_time_to_first_token_seconds", "Seconds from a request's arrival to its first token.",
                m.timeToFirstToken());
        t.histogram("based4j_inter_token_latency_seconds", "Seconds between two tokens of a sequence.",
                m.interTokenLatency());
        return t.out.toString();
    }

    private void single(String name, String type, String help, double value) {
        head(name, type, help);
        sample(name, value);
    }

    private void head(String name, String type, String help) {
        out.append("# HELP ").append(name).append(' ').append(help).append('\n');
        out.append("# TYPE ").append(name).append(' ').append(type).append('\n');
    }

    private void sample(String name, double value) {
        out.append(name).append(' ').append(number(value)).append('\n');
    }

    private void histogram(String name, String help, LatencyHistogram.Snapshot h) {
        head(name, "histogram", help);
        for (int i = 0; i < h.bounds().length; i++) {
            sample(name + "_bucket{le=\"" + number(h.bounds()[i]) + "\"}", h.cumulative()[i]);
        }
        sample(name + "_bucket{le=\"+Inf\"}", h.count());
        sample(name + "_sum", h.sum());
        sample(name + "_count", h.count());
    }

    /** A whole number without a fraction, any other in Java's shortest exact form. */
    private static String number(double v) {
        return v == Math.rint(v) && Math.abs(v) < 1e15 ? String.format(Locale.ROOT, "%d", (long) v)
                : Double.toString(v);
    }
}
