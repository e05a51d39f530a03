package io.based4j.cuda;

import java.util.function.Supplier;

/**
 * A native library's binding, loaded on first use by one thread while others wait. A failure is kept: every later
 * call throws a {@link CudaUnavailableException} with the same message, code and cause, without trying again.
 *
 * @param <T> the binding
 */
final class LoadOnce<T> {
    private final String failed;
    private final Supplier<T> load;
    private final Object lock = new Object();
    private volatile T loaded;
    private volatile CudaUnavailableException failure;

    /**
     * @param failed what an unexpected failure of {@code load} says, before the failure itself (e.g.
     *               {@code "cuBLAS could not be loaded"}); a {@link CudaUnavailableException} it throws is kept as is
     * @param load   loads and binds the library
     */
    LoadOnce(String failed, Supplier<T> load) {
        this.failed = failed;
        this.load = load;
    }

    /**
     * The binding, loaded on the first call.
     *
     * @throws CudaUnavailableException when it could not be loaded, on this call or an earlier one
     */
    T get() {
        T t = loaded;
        if (t != null) {
            return t;
        }
        synchronized (lock) {
            if (loaded != null) {
                return loaded;
            }
            if (failure != null) {
                throw new CudaUnavailableException(failure.getMessage(), failure.code(), failure.api(), failure);
            }
            try {
                loaded = load.get();
                return loaded;
            } catch (CudaUnavailableException e) {
                failure = e;
                throw e;
            } catch (RuntimeException | Error e) {
                failure = new CudaUnavailableException(failed + ": " + e, e);
                throw failure;
            }
        }
    }

    /** Whether {@link #get()} succeeds (loading the library if that has not been tried yet). */
    boolean isAvailable() {
        try {
            get();
            return true;
        } catch (CudaUnavailableException e) {
            return false;
        }
    }
}
