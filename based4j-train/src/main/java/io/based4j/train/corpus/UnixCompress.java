package io.based4j.train.corpus;

import java.io.ByteArrayOutputStream;
import java.io.IOException;

/**
 * Decoder of the LZW code stream of Unix {@code compress} (the body of a {@code .Z} file, after its 3-byte header):
 * codes of 9 up to {@code maxBits} bits, least significant bit first, read in groups of {@code n} bytes for
 * {@code n}-bit codes, a group's remaining bits dropped when the code width changes or the table is cleared (code
 * 256 in block mode).
 */
final class UnixCompress {
    private static final int INIT_BITS = 9;
    private static final int CLEAR = 256;

    private final byte[] in;
    private final int end;
    private final int maxBits;
    private final int maxMaxCode;
    private final boolean blockMode;
    private int pos;
    private int groupStart;
    private int bitOffset;
    private int groupBits;
    private int nBits = INIT_BITS;
    private int maxCode = (1 << INIT_BITS) - 1;
    private int freeEnt;
    private boolean clearFlag;

    private UnixCompress(byte[] in, int off, int len, int maxBits, boolean blockMode) {
        this.in = in;
        this.pos = off;
        this.end = off + len;
        this.maxBits = maxBits;
        this.maxMaxCode = 1 << maxBits;
        this.blockMode = blockMode;
        this.freeEnt = blockMode ? CLEAR + 1 : CLEAR;
    }

    /**
     * Decodes {@code len} bytes of code stream at {@code off}.
     *
     * @param maxBits   largest code width, 9 to 16 (the low 5 bits of the {@code .Z} header's third byte)
     * @param blockMode whether code 256 clears the table (bit 0x80 of that byte)
     * @throws IOException when the stream holds a code that cannot occur (damaged data)
     */
    static byte[] decode(byte[] in, int off, int len, int maxBits, boolean blockMode) throws IOException {
        if (maxBits < INIT_BITS || maxBits > 16) {
            throw new IOException("compressed with " + maxBits + "-bit codes (9 to 16 are supported)");
        }
        return new UnixCompress(in, off, len, maxBits, blockMode).run();
    }

    private byte[] run() throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream(Math.max(16, (end - pos) * 3));
        int[] prefix = new int[maxMaxCode];
        byte[] suffix = new byte[maxMaxCode];
        byte[] stack = new byte[maxMaxCode + 1];
        for (int c = 0; c < 256; c++) {
            suffix[c] = (byte) c;
        }
        int oldCode = nextCode();
        if (oldCode < 0) {
            return new byte[0];
        }
        if (oldCode >= 256) {
            throw damaged();
        }
        int finChar = oldCode;
        out.write(finChar);
        int code;
        while ((code = nextCode()) >= 0) {
            if (code == CLEAR && blockMode) {
                clearFlag = true;
                freeEnt = CLEAR;
                code = nextCode();
                if (code < 0) {
                    break;
                }
            }
            int inCode = code;
            int sp = 0;
            if (code >= freeEnt) {
                if (code > freeEnt) {
                    throw damaged();
                }
                stack[sp++] = (byte) finChar;
                code = oldCode;
            }
            while (code >= 256) {
                stack[sp++] = suffix[code];
                code = prefix[code];
            }
            finChar = suffix[code] & 0xFF;
            stack[sp++] = (byte) finChar;
            while (sp > 0) {
                out.write(stack[--sp]);
            }
            if (freeEnt < maxMaxCode) {
                prefix[freeEnt] = oldCode;
                suffix[freeEnt] = (byte) finChar;
                freeEnt++;
            }
            oldCode = inCode;
        }
        return out.toByteArray();
    }

    /** The next code, or -1 at the end of the input. */
    private int nextCode() {
        if (clearFlag || bitOffset >= groupBits || freeEnt > maxCode) {
            if (freeEnt > maxCode) {
                nBits++;
                maxCode = nBits == maxBits ? maxMaxCode : (1 << nBits) - 1;
            }
            if (clearFlag) {
                nBits = INIT_BITS;
                maxCode = (1 << nBits) - 1;
                clearFlag = false;
            }
            int n = Math.min(nBits, end - pos);
            if (n <= 0) {
                return -1;
            }
            groupStart = pos;
            pos += n;
            bitOffset = 0;
            groupBits = (n << 3) - (nBits - 1);
        }
        int at = groupStart + (bitOffset >> 3);
        int v = 0;
        for (int i = 0; i < 3 && at + i < end; i++) {
            v |= (in[at + i] & 0xFF) << (8 * i);
        }
        int code = (v >>> (bitOffset & 7)) & ((1 << nBits) - 1);
        bitOffset += nBits;
        return code;
    }

    private static IOException damaged() {
        return new IOException("compressed text is damaged (a code that cannot occur)");
    }
}
