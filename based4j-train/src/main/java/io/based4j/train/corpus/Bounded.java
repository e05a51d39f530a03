package io.based4j.train.corpus;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;

/**
 * The next {@code size} bytes of a stream, as a stream of their own: reading past them gives end of stream, and an
 * underlying stream that ends sooner is an {@link EOFException} naming {@code what} (a truncated archive). Closing it
 * leaves the underlying stream open.
 */
final class Bounded extends InputStream {
    private final InputStream in;
    private final String what;
    private final long size;
    private long left;

    Bounded(InputStream in, long size, String what) {
        this.in = in;
        this.size = size;
        this.left = size;
        this.what = what;
    }

    @Override
    public int read() throws IOException {
        byte[] one = new byte[1];
        return read(one, 0, 1) < 0 ? -1 : one[0] & 0xFF;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
        if (left == 0) {
            return -1;
        }
        int n = in.read(b, off, (int) Math.min(len, left));
        if (n < 0) {
            throw truncated();
        }
        left -= n;
        return n;
    }

    /** Reads and drops what is left of the bytes. */
    void skipRest() throws IOException {
        byte[] buf = new byte[8192];
        while (read(buf, 0, buf.length) >= 0) {
            // dropped
        }
    }

    private EOFException truncated() {
        return new EOFException(what + " is cut short (" + (size - left) + " of " + size + " bytes)");
    }

    @Override
    public void close() {
        // the underlying stream belongs to the caller
    }
}
