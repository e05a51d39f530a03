package io.based4j.cli.plot;

/**
 * Drawing without a display. Holds no AWT type, so that it can run before any is loaded: AWT reads
 * {@code java.awt.headless} once, when its first class starts.
 */
public final class Headless {
    private Headless() {
    }

    /**
     * Makes the charts drawable where there is no display, and refuses, in one line, a Java runtime without AWT
     * (one linked without the {@code java.desktop} module). Call before any chart is made.
     */
    public static void prepare() {
        if (ModuleLayer.boot().findModule("java.desktop").isEmpty()) {
            throw new IllegalStateException("plot needs the java.desktop module (AWT) of the Java runtime, and this"
                    + " runtime (" + System.getProperty("java.home") + ") has none: run it with a full JDK");
        }
        System.setProperty("java.awt.headless", "true");
    }
}
