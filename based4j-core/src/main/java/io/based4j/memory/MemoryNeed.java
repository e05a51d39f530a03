package io.based4j.memory;

/**
 * What a piece of work needs of the host's memory, computed before anything is allocated, and how a refusal words
 * it: "{@code subject} needs X {@code detail} but only Y is free (where); {@code hint}", with the detail of the kind of
 * memory that was short.
 *
 * @param subject what needs the memory ("model DIR", "a session of 8 sequences of up to 4,096 tokens")
 * @param heapBytes bytes of Java arrays
 * @param heapDetail what the Java arrays are, or the parts they add up from (may be empty)
 * @param offHeapBytes bytes outside the Java heap: {@code Arena} allocations and the pages of memory-mapped files
 * @param offHeapDetail what those bytes are ("for its weights (1.6B parameters)"; may be empty)
 * @param hint what to change when it does not fit (may be empty)
 */
public record MemoryNeed(String subject, long heapBytes, String heapDetail, long offHeapBytes, String offHeapDetail,
                         String hint) {
    public MemoryNeed {
        if (heapBytes < 0 || offHeapBytes < 0) {
            throw new IllegalArgumentException("negative memory need for " + subject + ": " + heapBytes + " + "
                    + offHeapBytes + " bytes");
        }
        heapDetail = heapDetail == null ? "" : heapDetail;
        offHeapDetail = offHeapDetail == null ? "" : offHeapDetail;
        hint = hint == null ? "" : hint;
    }

    /** Java arrays of {@code bytes}. */
    public static MemoryNeed heap(String subject, long bytes) {
        return new MemoryNeed(subject, bytes, "", 0, "", "");
    }

    /** Memory outside the Java heap of {@code bytes}, described by {@code detail}. */
    public static MemoryNeed offHeap(String subject, long bytes, String detail) {
        return new MemoryNeed(subject, 0, "", bytes, detail, "");
    }

    public MemoryNeed withHeapDetail(String detail) {
        return new MemoryNeed(subject, heapBytes, detail, offHeapBytes, offHeapDetail, hint);
    }

    public MemoryNeed withHint(String newHint) {
        return new MemoryNeed(subject, heapBytes, heapDetail, offHeapBytes, offHeapDetail, newHint);
    }

    /** The same need with {@code bytes} more of Java arrays. */
    public MemoryNeed plusHeap(long bytes) {
        return new MemoryNeed(subject, Sizes.plus(heapBytes, bytes), heapDetail, offHeapBytes, offHeapDetail, hint);
    }
}
