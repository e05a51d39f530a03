package io.based4j.train;

import java.io.PrintWriter;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Optional;
import java.util.Locale;

/**
 * The training progress line: a bar, the step, and the figures a user watches (loss, learning rate, gradient norm,
 * throughput, time left). On a terminal it redraws one line in place; otherwise it prints a line per report and
 * writes no terminal escape codes.
 */
public final class Progress {
    private final PrintWriter out;
    private final boolean terminal;
    private final long total;
    private boolean open;

    public Progress(PrintWriter out, boolean terminal, long total) {
        this.out = out;
        this.terminal = terminal;
        this.total = total;
    }

    /**
     * Whether standard error is an interactive terminal that understands escape codes (not {@code TERM=dumb}).
     * Java has no call for this, so it asks the C library's {@code isatty}; false when that cannot be asked.
     */
    public static boolean stderrTerminal() {
        if ("dumb".equals(System.getenv("TERM"))) {
            return false;
        }
        try {
            Linker linker = Linker.nativeLinker();
            Optional<MemorySegment> isatty = linker.defaultLookup().find("isatty")
                    .or(() -> linker.defaultLookup().find("_isatty"));
            if (isatty.isEmpty()) {
                return false;
            }
            MethodHandle h = linker.downcallHandle(isatty.get(),
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
            return (int) h.invokeExact(2) == 1;
        } catch (Throwable e) { // no native access granted, or no such function: plain lines are always safe
            return false;
        }
    }

    /** Redraws (terminal) or prints the status after update {@code step} (1-based). */
    public void update(long step, String figures, double secondsLeft) {
        String line = String.format(Locale.ROOT, "%s %" + Long.toString(total).length() + "d/%d %s eta %s",
                bar(step), step, total, figures, duration(secondsLeft));
        if (terminal) {
            out.print("\r" + line + "\u001b[K");
            open = true;
        } else {
            out.println(line);
        }
        out.flush();
    }

    /** Prints a line of its own (evaluation, checkpoint) without breaking the bar. */
    public void message(String text) {
        if (open) {
            out.print("\r\u001b[K");
            open = false;
        }
        out.println(text);
        out.flush();
    }

    public void finish() {
        if (open) {
            out.println();
            open = false;
        }
        out.flush();
    }

    private String bar(long step) {
        int width = 20;
        int filled = (int) Math.min(width, width * step / Math.max(1, total));
        return "[" + "#".repeat(filled) + ".".repeat(width - filled) + "]";
    }

    /** {@code 1h02m}, {@code 3m12s}, {@code 45s}. */
    public static String duration(double seconds) {
        if (!Double.isFinite(seconds) || seconds < 0) {
            return "?";
        }
        long s = Math.round(seconds);
        if (s >= 3600) {
            return String.format(Locale.ROOT, "%dh%02dm", s / 3600, (s % 3600) / 60);
        }
        if (s >= 60) {
            return String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60);
        }
        return s + "s";
    }
}
