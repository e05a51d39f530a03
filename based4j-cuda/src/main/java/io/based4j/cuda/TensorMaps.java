package io.based4j.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The tensor maps of the matrices a product kernel reads with the tensor memory accelerator (gemm_tma.cuh): one a
 * (device address, rows, columns), made by {@code cuTensorMapEncodeTiled} the first time and kept (the most recently
 * used {@value #CAPACITY}), since a decode step reads the same weights and activations at the same addresses every
 * step. A launch copies a map's bytes, so a map dropped from here after its launch is no loss. One thread at a time,
 * as the {@link Kernels} that hold it.
 */
final class TensorMaps {
    /** Maps kept: more than the distinct operands of a decode step's products (based-1b's: some 2 x 160). */
    static final int CAPACITY = 1024;

    private record Key(long address, long rows, long cols, int boxCols, int boxRows, int l2Promotion) {
    }

    private final CudaDriver cu;
    private final Map<Key, MemorySegment> maps = new LinkedHashMap<>(64, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<Key, MemorySegment> eldest) {
            return size() > CAPACITY;
        }
    };

    TensorMaps(CudaDriver cu) {
        this.cu = cu;
    }

    /**
     * The map of a row-major bf16 matrix of {@code rows x cols} at {@code address} (rows packed), read in boxes of
     * {@code boxCols x boxRows} into the 128-byte swizzled layout, edges filled with zeros, with this L2 promotion
     * ({@link CudaDriver#tensorMap2d}).
     */
    MemorySegment bf16(long address, long rows, long cols, int boxCols, int boxRows, int l2Promotion) {
        Key key = new Key(address, rows, cols, boxCols, boxRows, l2Promotion);
        MemorySegment map = maps.get(key);
        if (map == null) {
            map = Arena.ofAuto().allocate(CudaDriver.TENSOR_MAP_BYTES, CudaDriver.TENSOR_MAP_ALIGN);
            cu.tensorMap2d(map, address, cols, rows, cols * 2, boxCols, boxRows, l2Promotion);
            maps.put(key, map);
        }
        return map;
    }

    /** Maps held now. */
    int size() {
        return maps.size();
    }
}
