package io.based4j.cli.plot;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.text.NumberFormat;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Consumer;
import java.util.function.ToDoubleFunction;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.CategoryAxis;
import org.jfree.chart.axis.CategoryLabelPositions;
import org.jfree.chart.axis.LogAxis;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.axis.ValueAxis;
import org.jfree.chart.labels.ItemLabelAnchor;
import org.jfree.chart.labels.ItemLabelPosition;
import org.jfree.chart.labels.StandardCategoryItemLabelGenerator;
import org.jfree.chart.plot.CategoryPlot;
import org.jfree.chart.plot.CombinedDomainCategoryPlot;
import org.jfree.chart.renderer.category.BarRenderer;
import org.jfree.chart.renderer.category.StandardBarPainter;
import org.jfree.chart.ui.TextAnchor;
import org.jfree.data.category.DefaultCategoryDataset;

/**
 * {@code plot bench}: the throughput a {@code bench train}, {@code bench gpu} or {@code bench cpu} run measured, as
 * bars per shape and length (or prompt and batch), one colour per file when several are compared; and the table.
 */
public final class BenchPlot {
    /** Beyond this ratio of largest to smallest bar, the value axis is logarithmic (or the small bars vanish). */
    private static final double LOG_SPREAD = 30;

    private BenchPlot() {
    }

    /**
     * Reads the bench JSON files (all of one benchmark), prints their results on {@code out} and returns the chart
     * as a PNG.
     *
     * @param title the chart's title, or null for the default
     */
    public static byte[] render(List<Path> files, String title, int width, int height, PrintWriter out,
                                Consumer<String> notes) throws IOException {
        List<BenchResults> runs = new ArrayList<>();
        for (Path f : files) {
            for (BenchResults r : BenchResults.read(f, notes)) {
                if (!runs.isEmpty() && r.kind() != runs.getFirst().kind()) {
                    throw new IllegalArgumentException(f + " holds '" + r.kind().command + "' results and "
                            + runs.getFirst().file() + " '" + runs.getFirst().kind().command + "' results: plot"
                            + " one benchmark at a time");
                }
                runs.add(r);
            }
        }
        List<String> names = seriesNames(runs);
        printTable(runs, names, out);
        return Charts.png(chart(runs, names, title), width, height);
    }

    /** The files' names in the legend: their names without {@code .json}, or their paths where those repeat. */
    static List<String> seriesNames(List<BenchResults> runs) {
        List<String> stems = runs.stream().map(r -> {
            String n = r.file().getFileName().toString();
            return n.endsWith(".json") ? n.substring(0, n.length() - 5) : n;
        }).toList();
        long files = runs.stream().map(BenchResults::file).distinct().count();
        List<String> out = new ArrayList<>();
        for (int i = 0; i < runs.size(); i++) {
            BenchResults r = runs.get(i);
            boolean sameStem = runs.stream().filter(o -> !o.file().equals(r.file()))
                    .anyMatch(o -> stems.get(runs.indexOf(o)).equals(stems.get(runs.indexOf(r))));
            String file = sameStem ? r.file().toString() : stems.get(i);
            // the models of a --compare file by their names (with the file's where several files are plotted)
            String name = r.model() == null ? file : files == 1 ? r.model() : file + ": " + r.model();
            if (out.contains(name)) {
                throw new IllegalArgumentException(runs.get(i).file() + " is given twice");
            }
            out.add(name);
        }
        return out;
    }

    static void printTable(List<BenchResults> runs, List<String> names, PrintWriter out) {
        BenchResults.Kind kind = runs.getFirst().kind();
        int w = Math.max(8, runs.stream().flatMap(r -> r.rows().stream()).mapToInt(r -> r.category().length())
                .max().orElse(0));
        String row = "%-" + w + "s %16s %28s%s%n";
        out.printf(Locale.ROOT, row, "", kind.first, kind.second, runs.size() > 1 ? "  file" : "");
        for (int i = 0; i < runs.size(); i++) {
            for (BenchResults.Row r : runs.get(i).rows()) {
                out.printf(Locale.ROOT, row, r.category(), String.format(Locale.ROOT, "%,.1f", r.first()),
                        Double.isNaN(r.second()) ? "-" : String.format(Locale.ROOT, kind == BenchResults.Kind.TRAIN
                                ? "%.2f" : "%,.1f", r.second()), runs.size() > 1 ? "  " + names.get(i) : "");
            }
        }
        out.flush();
    }

    static JFreeChart chart(List<BenchResults> runs, List<String> names, String title) {
        BenchResults.Kind kind = runs.getFirst().kind();
        CategoryAxis categories = Charts.style(new CategoryAxis());
        categories.setMaximumCategoryLabelLines(2);
        categories.setCategoryMargin(0.15);
        long count = runs.stream().flatMap(r -> r.rows().stream()).map(BenchResults.Row::category).distinct().count();
        if (count > 8) {
            categories.setCategoryLabelPositions(CategoryLabelPositions.UP_45);
        }
        CombinedDomainCategoryPlot plot = new CombinedDomainCategoryPlot(categories);
        plot.setGap(14);
        plot.add(panel(runs, names, kind.first, BenchResults.Row::first, new CompactFormat(), true), 1);
        boolean second = runs.stream().flatMap(r -> r.rows().stream()).anyMatch(r -> !Double.isNaN(r.second()));
        if (second) {
            NumberFormat format = kind == BenchResults.Kind.TRAIN || kind == BenchResults.Kind.GENERATE
                    ? Charts.format("0.0") : new CompactFormat();
            plot.add(panel(runs, names, kind.second, BenchResults.Row::second, format, false), 1);
        }
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < runs.size(); i++) {
            String d = runs.get(i).description();
            lines.add(runs.size() > 1 ? names.get(i) + (d.isEmpty() ? "" : ": " + d) : d);
        }
        String subtitle = String.join("\n", lines);
        return Charts.chart(title != null ? title : "based4j " + kind.command, subtitle, plot, runs.size() > 1);
    }

    private static CategoryPlot panel(List<BenchResults> runs, List<String> names, String label,
                                      ToDoubleFunction<BenchResults.Row> value, NumberFormat format,
                                      boolean inLegend) {
        DefaultCategoryDataset data = new DefaultCategoryDataset();
        double min = Double.POSITIVE_INFINITY;
        double max = 0;
        for (int i = 0; i < runs.size(); i++) {
            for (BenchResults.Row r : runs.get(i).rows()) {
                double v = value.applyAsDouble(r);
                if (!Double.isNaN(v)) {
                    data.addValue(v, names.get(i), r.category());
                    min = Math.min(min, v);
                    max = Math.max(max, v);
                }
            }
        }
        ValueAxis axis;
        if (min > 0 && max / min > LOG_SPREAD) {
            LogAxis log = new LogAxis(label + " (log scale)");
            log.setNumberFormatOverride(format);
            log.setStandardTickUnits(NumberAxis.createIntegerTickUnits()); // ticks at powers of ten
            log.setSmallestValue(min / 2);
            axis = log;
        } else {
            NumberAxis linear = new NumberAxis(label);
            linear.setNumberFormatOverride(format);
            axis = linear;
        }
        axis.setUpperMargin(0.15); // room for the labels above the bars
        Charts.style(axis);
        BarRenderer bars = new BarRenderer();
        bars.setBarPainter(new StandardBarPainter());
        bars.setShadowVisible(false);
        bars.setItemMargin(0.05);
        bars.setDefaultItemLabelGenerator(new StandardCategoryItemLabelGenerator("{2}", format));
        bars.setDefaultItemLabelsVisible(true);
        bars.setDefaultItemLabelFont(Charts.TICK_FONT);
        bars.setDefaultPositiveItemLabelPosition(new ItemLabelPosition(ItemLabelAnchor.OUTSIDE12,
                TextAnchor.BOTTOM_CENTER));
        for (int i = 0; i < runs.size(); i++) {
            bars.setSeriesPaint(i, Charts.color(i));
        }
        bars.setDefaultSeriesVisibleInLegend(inLegend); // the files once in the legend, not once per panel
        CategoryPlot p = new CategoryPlot(data, null, axis, bars);
        Charts.style(p);
        return p;
    }
}
