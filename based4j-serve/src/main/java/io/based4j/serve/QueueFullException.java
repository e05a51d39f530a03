package io.based4j.serve;

/** The engine's queue of waiting requests is full: the request was not taken (a server answers 429). */
public final class QueueFullException extends RuntimeException {
    private final int capacity;

    public QueueFullException(int capacity) {
        super("the request queue is full (" + capacity + " requests waiting, its capacity); try again later");
        this.capacity = capacity;
    }

    public int capacity() {
        return capacity;
    }
}
