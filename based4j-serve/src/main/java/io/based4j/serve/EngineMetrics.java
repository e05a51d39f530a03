package io.based4j.serve;

/**
 * A snapshot of an {@link Engine}'s load and counters (the counters only grow).
 *
 * @param queueDepth requests waiting for a slot
 * @param running sequences holding a slot (prefilling or generating)
 * @param slots the engine's slots
 * @param steps forward steps run
 * @param stepsAhead of them, decode steps queued on the ids the step before drew before the host had read them (fed
 *                   on the device where the step's recorded graph takes them, else once they are read)
 * @param promptTokens prompt tokens fed (those restored from the prefix cache are not)
 * @param tokensGenerated tokens generated (an end-of-text token that ends a sequence included)
 * @param requestsFinished requests that ended with a result
 * @param requestsCancelled requests cancelled (by the caller, or because their listener threw)
 * @param requestsFailed requests that ended with an error (a failed step, or the engine closed under them)
 * @param requestsRejected requests refused at submit because the queue was full
 * @param requestsTimedOut requests stopped because they ran past their timeout
 * @param timeToFirstToken seconds from a request's submit to its first generated token
 * @param interTokenLatency seconds between two generated tokens of one sequence
 * @param prefixCache the prefix cache's use
 */
public record EngineMetrics(int queueDepth, int running, int slots, long steps, long stepsAhead, long promptTokens,
                            long tokensGenerated, long requestsFinished, long requestsCancelled, long requestsFailed,
                            long requestsRejected, long requestsTimedOut, LatencyHistogram.Snapshot timeToFirstToken,
                            LatencyHistogram.Snapshot interTokenLatency, PrefixCacheMetrics prefixCache) {
    /**
     * The prefix cache's use (all zero when it has no budget). Only prompts long enough to have a cacheable prefix
     * (more tokens than the backend's exact split) are looked up.
     *
     * @param budgetBytes most bytes of states it may hold
     * @param bytes bytes of states it holds
     * @param entries prefixes it holds
     * @param hits prompts that started from a cached prefix
     * @param misses prompts looked up that found none
     * @param tokensReused prompt tokens not fed because their state came from the cache
     * @param evictions prefixes dropped to make room for newer ones
     */
    public record PrefixCacheMetrics(long budgetBytes, long bytes, int entries, long hits, long misses,
                                     long tokensReused, long evictions) {
    }
}
