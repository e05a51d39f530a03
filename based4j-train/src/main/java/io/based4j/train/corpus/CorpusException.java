package io.based4j.train.corpus;

/** A corpus source that cannot be fetched or read; the message is one line that names the source. */
public final class CorpusException extends RuntimeException {
    public CorpusException(String message) {
        super(message);
    }

    public CorpusException(String message, Throwable cause) {
        super(message, cause);
    }
}
