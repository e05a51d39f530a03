package io.based4j.serve;

import io.based4j.generate.GenerationResult;
import java.math.BigDecimal;
import java.time.Duration;

/**
 * A request stopped because it ran past the timeout it was submitted with (counted from its submit, waiting in the
 * queue included); its slot was freed at the engine's next step. {@link #partial()} holds what it had generated, as
 * a result that ended by length (its listener was given all of that text before the error).
 */
public final class RequestTimeoutException extends RuntimeException {
    private final transient GenerationResult partial;
    private final Duration timeout;

    RequestTimeoutException(long requestId, Duration timeout, GenerationResult partial) {
        super("request " + requestId + " ran past its timeout of " + seconds(timeout) + " after "
                + partial.tokens().length + " generated tokens");
        this.partial = partial;
        this.timeout = timeout;
    }

    /** "600 s", "0.25 s". */
    static String seconds(Duration d) {
        return d.getNano() == 0 ? d.getSeconds() + " s"
                : BigDecimal.valueOf(d.getSeconds()).add(BigDecimal.valueOf(d.getNano(), 9)).stripTrailingZeros()
                        .toPlainString() + " s";
    }

    /** The tokens and text generated before the request was stopped. */
    public GenerationResult partial() {
        return partial;
    }

    /** The timeout it ran past. */
    public Duration timeout() {
        return timeout;
    }
}
