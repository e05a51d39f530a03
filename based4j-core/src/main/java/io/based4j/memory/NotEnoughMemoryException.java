package io.based4j.memory;

/**
 * Work refused before it started because the memory it needs is not free. The message is one line naming what was
 * refused, the bytes needed, the bytes free and where ("model DIR needs 3.1 GiB for its weights (1.6B parameters)
 * but only 1.2 GiB is free (memory available on this machine: MemAvailable in /proc/meminfo)").
 */
public final class NotEnoughMemoryException extends IllegalStateException {
    private final long needed;
    private final long free;

    /**
     * @param detail what the {@code needed} bytes are (the need's heap or off-heap detail)
     * @param where the memory that was short
     */
    public NotEnoughMemoryException(MemoryNeed need, long needed, String detail, long free, String where) {
        super(need.subject() + " needs " + Sizes.human(needed) + (detail.isEmpty() ? "" : " " + detail)
                + " but only " + Sizes.human(Math.max(0, free)) + " is free (" + where + ")"
                + (need.hint().isEmpty() ? "" : "; " + need.hint()));
        this.needed = needed;
        this.free = Math.max(0, free);
    }

    /** Bytes the refused work needed in the memory that was short. */
    public long needed() {
        return needed;
    }

    /** Bytes that were free there. */
    public long free() {
        return free;
    }
}
