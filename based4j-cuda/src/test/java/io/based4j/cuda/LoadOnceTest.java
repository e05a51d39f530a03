package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** {@link LoadOnce}: the binding is loaded once, and a failure is kept and thrown again without a second try. */
class LoadOnceTest {
    @Test
    void loadsOnceAndKeepsTheBinding() {
        AtomicInteger loads = new AtomicInteger();
        LoadOnce<Object> once = new LoadOnce<>("x could not be loaded", () -> {
            loads.incrementAndGet();
            return new Object();
        });
        Object first = once.get();
        assertTrue(once.isAvailable());
        assertSame(first, once.get());
        assertEquals(1, loads.get());
    }

    @Test
    void anUnavailableLibraryIsThrownAgainWithItsMessageCodeAndApi() {
        AtomicInteger loads = new AtomicInteger();
        CudaUnavailableException cause = new CudaUnavailableException("no GPU", 100, CudaException.Api.DRIVER, null);
        LoadOnce<Object> once = new LoadOnce<>("x could not be loaded", () -> {
            loads.incrementAndGet();
            throw cause;
        });
        assertSame(cause, assertThrows(CudaUnavailableException.class, once::get));
        CudaUnavailableException again = assertThrows(CudaUnavailableException.class, once::get);
        assertNotSame(cause, again);
        assertEquals("no GPU", again.getMessage());
        assertEquals(100, again.code());
        assertEquals(CudaException.Api.DRIVER, again.api());
        assertSame(cause, again.getCause());
        assertFalse(once.isAvailable());
        assertEquals(1, loads.get(), "a failed load is not tried again");
    }

    @Test
    void anyOtherFailureBecomesAnUnavailableLibraryNamingIt() {
        LinkageError cause = new UnsatisfiedLinkError("bad ELF");
        LoadOnce<Object> once = new LoadOnce<>("x could not be loaded", () -> {
            throw cause;
        });
        CudaUnavailableException e = assertThrows(CudaUnavailableException.class, once::get);
        assertEquals("x could not be loaded: java.lang.UnsatisfiedLinkError: bad ELF", e.getMessage());
        assertSame(cause, e.getCause());
        assertEquals(CudaException.NO_CODE, e.code());
        assertEquals(e.getMessage(), assertThrows(CudaUnavailableException.class, once::get).getMessage());
    }
}
