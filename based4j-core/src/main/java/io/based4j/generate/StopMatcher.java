package io.based4j.generate;

import java.util.List;

/**
 * Streams text while watching for stop strings: text that could still turn out to be the start of a stop string
 * is held back, and once a stop string appears, everything from it on is dropped.
 */
public final class StopMatcher {
    private final List<String> stops;
    private final StringBuilder pending = new StringBuilder();
    private boolean stopped;

    public StopMatcher(List<String> stops) {
        this.stops = stops.stream().filter(s -> !s.isEmpty()).toList();
    }

    public boolean stopped() {
        return stopped;
    }

    /** Adds decoded text; returns what can be released now. */
    public String accept(String text) {
        if (stopped) {
            return "";
        }
        pending.append(text);
        int first = -1;
        for (String s : stops) {
            int i = pending.indexOf(s);
            if (i >= 0 && (first < 0 || i < first)) {
                first = i;
            }
        }
        if (first >= 0) {
            stopped = true;
            String out = pending.substring(0, first);
            pending.setLength(0);
            return out;
        }
        int hold = 0;
        for (String s : stops) {
            for (int k = Math.min(s.length() - 1, pending.length()); k > hold; k--) {
                if (pending.length() >= k && s.startsWith(pending.substring(pending.length() - k))) {
                    hold = k;
                    break;
                }
            }
        }
        String out = pending.substring(0, pending.length() - hold);
        pending.delete(0, pending.length() - hold);
        return out;
    }

    /** Releases whatever is still held back (the text ended without a stop string). */
    public String finish() {
        String out = stopped ? "" : pending.toString();
        pending.setLength(0);
        return out;
    }
}
