package io.based4j.cli;

import io.based4j.backend.OpProfile;
import java.io.PrintWriter;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** An {@link OpProfile}'s rows as the benchmarks print them (a table, the longest first) and write them (JSON). */
final class ProfileTable {
    private ProfileTable() {
    }

    /**
     * Prints {@code title}, the total, and the {@code limit} longest op shapes with their share; the rest summed into
     * one line.
     */
    static void print(PrintWriter out, String title, List<OpProfile.Row> rows, int limit) {
        double total = rows.stream().mapToDouble(OpProfile.Row::millis).sum();
        out.printf(Locale.ROOT, "%s, %.2f ms in ops%n", title, total);
        out.printf(Locale.ROOT, "%9s %6s %6s  %-24s %s%n", "ms", "share", "calls", "op", "shapes");
        double rest = 0;
        int restCalls = 0;
        for (int i = 0; i < rows.size(); i++) {
            OpProfile.Row r = rows.get(i);
            if (i >= limit) {
                rest += r.millis();
                restCalls += r.calls();
                continue;
            }
            out.printf(Locale.ROOT, "%9.3f %5.1f%% %6d  %-24s %s%n", r.millis(), 100 * r.millis() / total, r.calls(),
                    r.op(), r.shapes());
        }
        if (rows.size() > limit) {
            out.printf(Locale.ROOT, "%9.3f %5.1f%% %6d  (%d more op shapes)%n", rest, 100 * rest / total, restCalls,
                    rows.size() - limit);
        }
        out.flush();
    }

    /**
     * Prints the backend's own kernels over the same calls (where it timed them): the {@code limit} longest with
     * their share of the calls' total, and what the kernels leave of it (library products, copies, the gaps between
     * launches). Nothing where no kernels were timed.
     */
    static void printKernels(PrintWriter out, String title, List<OpProfile.Row> ops, List<OpProfile.Row> kernels,
                             int limit) {
        if (kernels.isEmpty()) {
            return;
        }
        double total = ops.stream().mapToDouble(OpProfile.Row::millis).sum();
        double inKernels = kernels.stream().mapToDouble(OpProfile.Row::millis).sum();
        out.printf(Locale.ROOT, "%s: its kernels, %.2f ms of the %.2f%n", title, inKernels, total);
        out.printf(Locale.ROOT, "%9s %6s %6s  %s%n", "ms", "share", "calls", "kernel");
        for (int i = 0; i < Math.min(limit, kernels.size()); i++) {
            OpProfile.Row r = kernels.get(i);
            out.printf(Locale.ROOT, "%9.3f %5.1f%% %6d  %s%n", r.millis(), 100 * r.millis() / total, r.calls(),
                    r.op());
        }
        if (kernels.size() > limit) {
            double rest = kernels.subList(limit, kernels.size()).stream().mapToDouble(OpProfile.Row::millis).sum();
            out.printf(Locale.ROOT, "%9.3f %5.1f%% %6s  (%d more kernels)%n", rest, 100 * rest / total, "",
                    kernels.size() - limit);
        }
        out.printf(Locale.ROOT, "%9.3f %5.1f%% %6s  (library products, copies, gaps)%n", total - inKernels,
                100 * (total - inKernels) / total, "");
        out.flush();
    }

    /** Every row as JSON: op, shapes, calls, ms. */
    static List<Map<String, Object>> json(List<OpProfile.Row> rows) {
        return rows.stream().map(t -> {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("op", t.op());
            m.put("shapes", t.shapes());
            m.put("calls", t.calls());
            m.put("ms", t.millis());
            return m;
        }).toList();
    }
}
