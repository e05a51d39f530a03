package io.based4j.checkpoint;

import io.based4j.tensor.Tensor;

import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

/** Builds PyTorch-style checkpoints by hand: pickle byte streams and the zip archive around them. */
final class TorchFixtures {
    private TorchFixtures() {
    }

    /** Writes pickle opcodes; method names follow the opcode names of Python's pickletools. */
    static final class Pickle {
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();

        Pickle proto(int version) {
            return op(0x80).op(version);
        }

        Pickle global(String module, String name) {
            op('c');
            byte[] text = (module + "\n" + name + "\n").getBytes(StandardCharsets.UTF_8);
            out.writeBytes(text);
            return this;
        }

        Pickle stackGlobal(String module, String name) {
            return shortUnicode(module).shortUnicode(name).op(0x93);
        }

        Pickle unicode(String s) {
            byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
            return op('X').int32(bytes.length).raw(bytes);
        }

        Pickle shortUnicode(String s) {
            byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
            return op(0x8c).op(bytes.length).raw(bytes);
        }

        /** The shortest integer opcode for {@code v}, as the pickler picks it. */
        Pickle integer(long v) {
            if (v >= 0 && v < 256) {
                return op('K').op((int) v);
            }
            if (v >= 0 && v < 65536) {
                return op('M').op((int) v & 0xff).op((int) (v >>> 8));
            }
            if (v >= Integer.MIN_VALUE && v <= Integer.MAX_VALUE) {
                return op('J').int32((int) v);
            }
            op(0x8a).op(8);
            for (int i = 0; i < 8; i++) {
                op((int) (v >>> (8 * i)) & 0xff);
            }
            return this;
        }

        /** A tuple of integers (TUPLE1/2/3 or MARK ... TUPLE). */
        Pickle intTuple(long... values) {
            if (values.length == 0) {
                return op(')');
            }
            if (values.length > 3) {
                mark();
            }
            for (long v : values) {
                integer(v);
            }
            return values.length > 3 ? op('t') : op(0x84 + values.length);
        }

        Pickle mark() {
            return op('(');
        }

        Pickle op(int code) {
            out.write(code);
            return this;
        }

        Pickle raw(byte[] bytes) {
            out.writeBytes(bytes);
            return this;
        }

        Pickle int32(int v) {
            return op(v & 0xff).op((v >>> 8) & 0xff).op((v >>> 16) & 0xff).op((v >>> 24) & 0xff);
        }

        /** {@code OrderedDict()} with the global memoized at {@code memo}. */
        Pickle orderedDict(int memo) {
            return global("collections", "OrderedDict").op('q').op(memo).op(')').op('R');
        }

        /**
         * {@code _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())}, the OrderedDict global
         * being in memo slot {@code orderedDictMemo}.
         */
        Pickle tensor(String storageType, String key, long storageNumel, long offset, long[] size, long[] stride,
                      int orderedDictMemo) {
            global("torch._utils", "_rebuild_tensor_v2");
            mark();
            mark().unicode("storage").global("torch", storageType).unicode(key).unicode("cpu")
                    .integer(storageNumel).op('t');
            op('Q');
            integer(offset).intTuple(size).intTuple(stride);
            op(0x89); // False
            op('h').op(orderedDictMemo).op(')').op('R');
            op('t');
            return op('R');
        }

        byte[] bytes() {
            return out.toByteArray();
        }
    }

    /** An archive entry and whether to deflate it. */
    record Entry(byte[] bytes, boolean deflate) {
        static Entry stored(byte[] bytes) {
            return new Entry(bytes, false);
        }
    }

    /** Writes a zip of {@code entries}, stored unless marked for deflation. */
    static void writeZip(Path file, Map<String, Entry> entries) throws IOException {
        try (OutputStream os = new BufferedOutputStream(Files.newOutputStream(file));
             ZipOutputStream zip = new ZipOutputStream(os)) {
            for (Map.Entry<String, Entry> e : entries.entrySet()) {
                byte[] bytes = e.getValue().bytes();
                ZipEntry entry = new ZipEntry(e.getKey());
                if (e.getValue().deflate()) {
                    entry.setMethod(ZipEntry.DEFLATED);
                } else {
                    CRC32 crc = new CRC32();
                    crc.update(bytes);
                    entry.setMethod(ZipEntry.STORED);
                    entry.setSize(bytes.length);
                    entry.setCompressedSize(bytes.length);
                    entry.setCrc(crc.getValue());
                }
                zip.putNextEntry(entry);
                zip.write(bytes);
                zip.closeEntry();
            }
        }
    }

    /**
     * Writes a torch.save-style archive: {@code archive/data.pkl}, {@code archive/byteorder},
     * {@code archive/data/<key>} for each storage and {@code archive/version}.
     */
    static void writeCheckpoint(Path file, byte[] pickle, Map<String, byte[]> storages, boolean deflateStorages)
            throws IOException {
        Map<String, Entry> entries = new LinkedHashMap<>();
        entries.put("archive/data.pkl", new Entry(pickle, true));
        entries.put("archive/byteorder", Entry.stored("little".getBytes(StandardCharsets.US_ASCII)));
        for (Map.Entry<String, byte[]> s : storages.entrySet()) {
            entries.put("archive/data/" + s.getKey(), new Entry(s.getValue(), deflateStorages));
        }
        entries.put("archive/version", Entry.stored("3\n".getBytes(StandardCharsets.US_ASCII)));
        writeZip(file, entries);
    }

    static byte[] floats(float... values) {
        return Tensor.ofFloats(values, values.length).data().toArray(ValueLayout.JAVA_BYTE);
    }

    static byte[] bf16(float... values) {
        MemorySegment seg = MemorySegment.ofArray(new byte[values.length * 2]);
        for (int i = 0; i < values.length; i++) {
            seg.setAtIndex(Tensor.I16_LE, i, Tensor.floatToBf16(values[i]));
        }
        return seg.toArray(ValueLayout.JAVA_BYTE);
    }
}
