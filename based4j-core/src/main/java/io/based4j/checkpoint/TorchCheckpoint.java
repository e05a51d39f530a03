package io.based4j.checkpoint;

import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads a PyTorch state dict saved with {@code torch.save} (the zip format of PyTorch 1.6 and later, as in
 * {@code pytorch_model.bin}). The archive holds {@code <name>/data.pkl}, a pickle describing the dict, and one
 * entry {@code <name>/data/<key>} per storage. The file is memory-mapped and stored (uncompressed) storages,
 * the normal case, are used in place; tensors are slices of them.
 *
 * <p>The pickle is decoded by {@link PickleReader} without executing anything. It may only name the globals a
 * state dict needs ({@code collections.OrderedDict}, {@code torch._utils._rebuild_tensor_v2},
 * {@code torch._utils._rebuild_parameter} and the typed storage classes such as {@code torch.FloatStorage});
 * any other global is refused.
 */
public final class TorchCheckpoint {
    /** Keys under which training scripts commonly nest the actual state dict. */
    private static final List<String> WRAPPER_KEYS = List.of("state_dict", "model", "module", "model_state_dict");
    private static final int PICKLE_PROTO = 0x80;

    /** Functions the pickle may call. */
    private enum Function {
        ORDERED_DICT("collections.OrderedDict"),
        REBUILD_TENSOR_V2("torch._utils._rebuild_tensor_v2"),
        REBUILD_PARAMETER("torch._utils._rebuild_parameter");

        final String qualifiedName;

        Function(String qualifiedName) {
            this.qualifiedName = qualifiedName;
        }

        @Override
        public String toString() {
            return qualifiedName;
        }
    }

    /** A typed storage class such as {@code torch.FloatStorage}. */
    private record StorageType(String name, DType dtype) {
        @Override
        public String toString() {
            return "torch." + name;
        }
    }

    /** A storage as a tensor sees it: {@code numel} elements of {@code dtype} at the start of {@code data}. */
    private record Storage(String key, DType dtype, long numel, MemorySegment data) {
    }

    /** What {@code _rebuild_tensor_v2} describes: a strided view of a storage. */
    private record TensorView(Storage storage, long offset, long[] size, long[] stride) {
    }

    private static final Map<String, Object> ALLOWED_GLOBALS = Map.ofEntries(
            function(Function.ORDERED_DICT),
            function(Function.REBUILD_TENSOR_V2),
            function(Function.REBUILD_PARAMETER),
            storageType("FloatStorage", DType.F32),
            storageType("BFloat16Storage", DType.BF16),
            storageType("HalfStorage", DType.F16),
            storageType("DoubleStorage", DType.F64),
            storageType("LongStorage", DType.I64),
            storageType("IntStorage", DType.I32),
            storageType("ShortStorage", DType.I16),
            storageType("CharStorage", DType.I8),
            storageType("ByteStorage", DType.U8),
            storageType("BoolStorage", DType.BOOL));

    private TorchCheckpoint() {
    }

    private static Map.Entry<String, Object> function(Function function) {
        return Map.entry(function.qualifiedName, function);
    }

    private static Map.Entry<String, Object> storageType(String name, DType dtype) {
        return Map.entry("torch." + name, new StorageType(name, dtype));
    }

    /**
     * Reads the state dict in {@code file}: tensor name to tensor, in the order the dict was saved. Tensors are
     * slices of the file mapped into {@code arena} (copies in {@code arena} when the archive compresses their
     * storage or they are not laid out row-major). Entries that are not tensors are skipped. When the top-level
     * dict holds no tensors but one of the keys {@code "state_dict"}, {@code "model"}, {@code "module"} or
     * {@code "model_state_dict"} holds a dict, that dict is read instead (checkpoints saved by training loops).
     *
     * @throws CheckpointException when the file is not a readable PyTorch checkpoint or names a forbidden global
     */
    public static Map<String, Tensor> read(Path file, Arena arena) {
        MemorySegment whole;
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            whole = channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size(), arena);
        } catch (IOException e) {
            throw CheckpointException.of(file, "cannot read file: " + e, e);
        }
        if (whole.byteSize() > 0 && Byte.toUnsignedInt(whole.get(ValueLayout.JAVA_BYTE, 0)) == PICKLE_PROTO) {
            throw CheckpointException.of(file, "uses the legacy torch.save format of PyTorch before 1.6, which "
                    + "is not supported; re-save it with a current PyTorch or convert it to safetensors");
        }
        ZipArchive zip = ZipArchive.read(file, whole);
        String prefix = archivePrefix(file, zip);
        checkByteOrder(file, zip, prefix);

        byte[] pickle = zip.bytes(zip.entry(prefix + "data.pkl"));
        Unpickler unpickler = new Unpickler(file, zip, prefix, arena);
        Object root = new PickleReader(CheckpointException.name(file) + ": data.pkl", pickle, unpickler).load();
        return stateDict(file, root, arena);
    }

    /** The directory inside the archive that holds data.pkl, with a trailing slash ("" at the root). */
    private static String archivePrefix(Path file, ZipArchive zip) {
        List<String> candidates = zip.entries().keySet().stream()
                .filter(name -> name.equals("data.pkl")
                        || name.endsWith("/data.pkl") && name.indexOf('/') == name.length() - "/data.pkl".length())
                .toList();
        if (candidates.isEmpty()) {
            throw CheckpointException.of(file, "zip archive has no data.pkl entry; it is not a PyTorch checkpoint");
        }
        if (candidates.size() > 1) {
            throw CheckpointException.of(file, "zip archive has several data.pkl entries: " + candidates);
        }
        String pkl = candidates.getFirst();
        return pkl.substring(0, pkl.length() - "data.pkl".length());
    }

    private static void checkByteOrder(Path file, ZipArchive zip, String prefix) {
        ZipArchive.Entry entry = zip.entry(prefix + "byteorder");
        if (entry != null) {
            String order = new String(zip.bytes(entry), StandardCharsets.US_ASCII).trim();
            if (!order.equals("little")) {
                throw CheckpointException.of(file, "stores tensors in '" + order
                        + "' byte order; only little-endian checkpoints are supported");
            }
        }
    }

    // ------------------------------------------------------------------ the state dict

    private static Map<String, Tensor> stateDict(Path file, Object root, Arena arena) {
        if (!(root instanceof Map<?, ?> dict)) {
            throw CheckpointException.of(file, "data.pkl holds a " + PickleReader.typeName(root)
                    + " instead of a state dict");
        }
        dict = unwrap(dict);
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        for (Map.Entry<?, ?> e : dict.entrySet()) {
            if (e.getValue() instanceof TensorView view) {
                if (!(e.getKey() instanceof String key)) {
                    throw CheckpointException.of(file, "state dict key " + e.getKey() + " is of type "
                            + PickleReader.typeName(e.getKey()) + ", not str");
                }
                tensors.put(key, materialize(file, key, view, arena));
            }
        }
        if (tensors.isEmpty()) {
            throw CheckpointException.of(file, "state dict holds no tensors (keys: " + dict.keySet() + ")");
        }
        return tensors;
    }

    /** Descends through wrapper keys ("state_dict", "model", ...) while the dict holds no tensors itself. */
    private static Map<?, ?> unwrap(Map<?, ?> dict) {
        Map<?, ?> current = dict;
        for (int depth = 0; depth < 4; depth++) {
            if (current.values().stream().anyMatch(v -> v instanceof TensorView)) {
                return current;
            }
            Map<?, ?> inner = null;
            for (String key : WRAPPER_KEYS) {
                if (current.get(key) instanceof Map<?, ?> m) {
                    inner = m;
                    break;
                }
            }
            if (inner == null) {
                return current;
            }
            current = inner;
        }
        return current;
    }

    /** The tensor {@code view} describes: a slice of its storage when row-major contiguous, else a copy. */
    private static Tensor materialize(Path file, String key, TensorView view, Arena arena) {
        Storage storage = view.storage();
        DType dtype = storage.dtype();
        long[] size = view.size();
        long[] stride = view.stride();
        String what = "view (offset " + view.offset() + ", size " + Arrays.toString(size) + ", stride "
                + Arrays.toString(stride) + ") of storage '" + storage.key() + "'";
        if (size.length != stride.length) {
            throw CheckpointException.ofTensor(file, key, what + " has a size and stride of different ranks");
        }
        if (view.offset() < 0 || Arrays.stream(size).anyMatch(s -> s < 0)
                || Arrays.stream(stride).anyMatch(s -> s < 0)) {
            throw CheckpointException.ofTensor(file, key, what + " has a negative offset, size or stride");
        }
        long numel;
        long last;
        try {
            numel = Tensor.numel(size);
            last = view.offset();
            for (int d = 0; d < size.length; d++) {
                last = Math.addExact(last, Math.multiplyExact(Math.max(size[d] - 1, 0), stride[d]));
            }
        } catch (ArithmeticException e) {
            throw CheckpointException.ofTensor(file, key, what + " is too large");
        }
        if (numel == 0) {
            return new Tensor(dtype, size, storage.data().asSlice(0, 0));
        }
        if (last >= storage.numel()) {
            throw CheckpointException.ofTensor(file, key, what + " reaches element " + last
                    + ", but the storage holds " + storage.numel() + " elements");
        }
        int bytes = dtype.bytes();
        if (isRowMajor(size, stride)) {
            return new Tensor(dtype, size, storage.data().asSlice(view.offset() * bytes, numel * bytes));
        }
        MemorySegment copy = arena.allocate(numel * bytes, 64);
        gather(storage.data(), bytes, view.offset(), size, stride, copy);
        return new Tensor(dtype, size, copy);
    }

    private static boolean isRowMajor(long[] size, long[] stride) {
        long expected = 1;
        for (int d = size.length - 1; d >= 0; d--) {
            if (size[d] != 1 && stride[d] != expected) {
                return false;
            }
            expected *= size[d];
        }
        return true;
    }

    /** Copies the strided elements of {@code src} into {@code dst} in row-major order (rank >= 1, numel > 0). */
    private static void gather(MemorySegment src, int bytes, long offset, long[] size, long[] stride,
                               MemorySegment dst) {
        int rank = size.length;
        long inner = size[rank - 1];
        long innerStride = stride[rank - 1];
        long rows = dst.byteSize() / bytes / inner;
        long[] index = new long[rank - 1];
        long out = 0;
        for (long row = 0; row < rows; row++) {
            long base = offset;
            for (int d = 0; d < rank - 1; d++) {
                base += index[d] * stride[d];
            }
            if (innerStride == 1) {
                MemorySegment.copy(src, base * bytes, dst, out, inner * bytes);
                out += inner * bytes;
            } else {
                for (long j = 0; j < inner; j++) {
                    MemorySegment.copy(src, (base + j * innerStride) * bytes, dst, out, bytes);
                    out += bytes;
                }
            }
            for (int d = rank - 2; d >= 0; d--) {
                if (++index[d] < size[d]) {
                    break;
                }
                index[d] = 0;
            }
        }
    }

    // ------------------------------------------------------------------ unpickling

    /** Gives the allowed globals their meaning and loads storages from the archive. */
    private static final class Unpickler implements PickleReader.Resolver {
        private final Path file;
        private final ZipArchive zip;
        private final String prefix;
        private final Arena arena;
        private final Map<String, MemorySegment> storageBytes = new HashMap<>();

        Unpickler(Path file, ZipArchive zip, String prefix, Arena arena) {
            this.file = file;
            this.zip = zip;
            this.prefix = prefix;
            this.arena = arena;
        }

        private CheckpointException error(String what) {
            return CheckpointException.of(file, "data.pkl " + what);
        }

        @Override
        public Object global(String module, String name) {
            String qualified = module + "." + name;
            Object value = ALLOWED_GLOBALS.get(qualified);
            if (value == null) {
                throw error("refers to forbidden global '" + qualified + "'; only state-dict types are allowed");
            }
            return value;
        }

        @Override
        public Object reduce(Object callable, List<Object> args) {
            if (!(callable instanceof Function function)) {
                throw error("calls " + describe(callable) + ", which is not a function");
            }
            return switch (function) {
                case ORDERED_DICT -> {
                    if (!args.isEmpty()) {
                        throw error("calls OrderedDict with arguments " + args);
                    }
                    yield new LinkedHashMap<>();
                }
                case REBUILD_TENSOR_V2 -> rebuildTensor(args);
                case REBUILD_PARAMETER -> {
                    if (args.isEmpty() || !(args.getFirst() instanceof TensorView view)) {
                        throw error("calls _rebuild_parameter without a tensor");
                    }
                    yield view;
                }
            };
        }

        /** {@code _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, metadata])}. */
        private TensorView rebuildTensor(List<Object> args) {
            if (args.size() < 4 || !(args.get(0) instanceof Storage storage) || !(args.get(1) instanceof Long offset)
                    || !(args.get(2) instanceof List<?> size) || !(args.get(3) instanceof List<?> stride)) {
                throw error("calls _rebuild_tensor_v2 with arguments that are not "
                        + "(storage, offset, size, stride, ...): " + describe(args));
            }
            return new TensorView(storage, offset, longs(size, "size"), longs(stride, "stride"));
        }

        private long[] longs(List<?> values, String what) {
            long[] out = new long[values.size()];
            for (int i = 0; i < out.length; i++) {
                if (!(values.get(i) instanceof Long v)) {
                    throw error("gives _rebuild_tensor_v2 a " + what + " that is not a tuple of ints: " + values);
                }
                out[i] = v;
            }
            return out;
        }

        /** {@code ('storage', storage_type, key, location, numel)}. */
        @Override
        public Object persistentLoad(Object pid) {
            if (!(pid instanceof List<?> id) || id.size() != 5 || !"storage".equals(id.get(0))
                    || !(id.get(1) instanceof StorageType type) || !(id.get(2) instanceof String key)
                    || !(id.get(4) instanceof Long numel) || numel < 0) {
                throw error("has a persistent id that is not ('storage', type, key, location, numel): "
                        + describe(pid));
            }
            MemorySegment bytes = storageBytes.computeIfAbsent(key, this::loadStorage);
            long needed;
            try {
                needed = Math.multiplyExact(numel, type.dtype().bytes());
            } catch (ArithmeticException e) {
                throw error("declares storage '" + key + "' of " + numel + " elements, which is too large");
            }
            if (needed > bytes.byteSize()) {
                throw error("declares storage '" + key + "' as " + numel + " elements of " + type.name()
                        + " (" + needed + " bytes), but its archive entry holds " + bytes.byteSize() + " bytes");
            }
            return new Storage(key, type.dtype(), numel, bytes);
        }

        private MemorySegment loadStorage(String key) {
            String name = prefix + "data/" + key;
            ZipArchive.Entry entry = zip.entry(name);
            if (entry == null) {
                throw error("refers to storage '" + key + "', but the archive has no entry '" + name + "'");
            }
            return zip.content(entry, arena);
        }

        private static String describe(Object value) {
            return describe(value, 0);
        }

        /** A short rendering of a decoded value for error messages; deep or cyclic nesting is elided. */
        private static String describe(Object value, int depth) {
            if (value instanceof List<?> list) {
                if (depth >= 3) {
                    return "(...)";
                }
                List<String> parts = new ArrayList<>();
                for (Object item : list) {
                    parts.add(describe(item, depth + 1));
                }
                return "(" + String.join(", ", parts) + ")";
            }
            if (value instanceof String s) {
                return "'" + s + "'";
            }
            return value instanceof Long || value instanceof Double || value instanceof Boolean
                    || value instanceof StorageType || value instanceof Function
                    ? value.toString() : PickleReader.typeName(value);
        }
    }
}
