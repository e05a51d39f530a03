package io.based4j.serve;

/**
 * A snapshot of an {@link Engine}'s load and counters (the counters only grow).
 *
 * @param queueDepth requests waiting for a slot
 * @param running sequences holding a slot (prefilling or generating)
 * @param slots the engine's slots
 * @param steps forward steps run
 * @param promptTokens prompt tokens fed
 * @param tokensGenerated tokens generated (an end-of-text token that ends a sequence included)
 * @param requestsFinished requests that ended with a result
 * @param requestsCancelled requests cancelled (by the caller, or because their listener threw)
 * @param requestsFailed requests that ended with an error (a failed step, or the engine closed under them)
 * @param requestsRejected requests refused at submit because the queue was full
 * @param timeToFirstToken seconds from a request's submit to its first generated token
 * @param interTokenLatency seconds between two generated tokens of one sequence
 */
public record EngineMetrics(int queueDepth, int running, int slots, long steps, long promptTokens,
                            long tokensGenerated, long requestsFinished, long requestsCancelled, long requestsFailed,
                            long requestsRejected, LatencyHistogram.Snapshot timeToFirstToken,
                            LatencyHistogram.Snapshot interTokenLatency) {
}
