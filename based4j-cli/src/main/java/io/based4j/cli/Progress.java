package io.based4j.cli;

/** Progress lines on standard error (never mixed into the output on standard out). */
final class Progress {
    private static volatile boolean quiet;

    private Progress() {
    }

    static void setQuiet(boolean q) {
        quiet = q;
    }

    static void note(String line) {
        if (!quiet) {
            System.err.println("[based4j] " + line);
            System.err.flush();
        }
    }
}
