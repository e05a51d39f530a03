package io.based4j.cli.plot;

import java.awt.Color;
import java.awt.geom.Ellipse2D;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.function.Consumer;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.plot.CombinedDomainXYPlot;
import org.jfree.chart.plot.SeriesRenderingOrder;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/**
 * {@code plot metrics}: training loss (as logged, and smoothed), validation loss and learning rate against the
 * update, for one or several runs; and a summary line per run.
 */
public final class MetricsPlot {
    private MetricsPlot() {
    }

    /**
     * Reads the runs ({@code based4j train} run directories or their {@code metrics.jsonl}), prints a summary per
     * run on {@code out} and returns the chart as a PNG.
     *
     * @param smooth the weight of the moving average of the training loss, in [0, 1) (0: no smoothed curve)
     * @param title the chart's title, or null for the default
     */
    public static byte[] render(List<Path> inputs, double smooth, String title, int width, int height,
                                PrintWriter out, Consumer<String> notes) throws IOException {
        List<TrainingRun> runs = TrainingRun.read(inputs, notes);
        printSummary(runs, smooth, out);
        return Charts.png(chart(runs, smooth, title), width, height);
    }

    static void printSummary(List<TrainingRun> runs, double smooth, PrintWriter out) {
        int w = Math.max(3, runs.stream().mapToInt(r -> r.label().length()).max().orElse(0));
        out.printf(Locale.ROOT, "%-" + w + "s %10s %10s %10s %16s %10s%n", "run", "last step", "loss",
                smooth > 0 ? "smoothed" : "", "best val loss", "lr");
        for (TrainingRun r : runs) {
            String step = "-", loss = "-", smoothed = "", best = "-", lr = "-";
            long lastStep = -1;
            if (!r.train().isEmpty()) {
                TrainingRun.Train last = r.train().getLast();
                lastStep = last.step();
                loss = String.format(Locale.ROOT, "%.4f", last.loss());
                smoothed = smooth > 0 ? String.format(Locale.ROOT, "%.4f", r.smoothedLoss(smooth)[r.train().size() - 1])
                        : "";
                lr = Double.isNaN(last.lr()) ? "-" : String.format(Locale.ROOT, "%.3e", last.lr());
            }
            if (!r.validation().isEmpty()) {
                TrainingRun.Validation b = r.validation().stream()
                        .min((a, c) -> Double.compare(a.loss(), c.loss())).orElseThrow();
                best = String.format(Locale.ROOT, "%.4f @ %d", b.loss(), b.step());
                lastStep = Math.max(lastStep, r.validation().getLast().step());
            }
            step = lastStep < 0 ? step : Long.toString(lastStep);
            out.printf(Locale.ROOT, "%-" + w + "s %10s %10s %10s %16s %10s%n", r.label(), step, loss, smoothed, best,
                    lr);
        }
        out.flush();
    }

    static JFreeChart chart(List<TrainingRun> runs, double smooth, String title) {
        NumberAxis steps = Charts.style(new NumberAxis("step"));
        steps.setStandardTickUnits(NumberAxis.createIntegerTickUnits());
        steps.setAutoRangeIncludesZero(false);
        CombinedDomainXYPlot plot = new CombinedDomainXYPlot(steps);
        plot.setGap(12);
        plot.add(lossPlot(runs, smooth), 3);
        if (runs.stream().anyMatch(TrainingRun::hasLearningRate)) {
            plot.add(learningRatePlot(runs), 1);
        }
        String subtitle = runs.size() == 1 ? runs.getFirst().file().toString() : null;
        return Charts.chart(title != null ? title : "Training loss", subtitle, plot, true);
    }

    private static XYPlot lossPlot(List<TrainingRun> runs, double smooth) {
        XYSeriesCollection data = new XYSeriesCollection();
        XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, false);
        for (int i = 0; i < runs.size(); i++) {
            TrainingRun run = runs.get(i);
            String prefix = runs.size() > 1 ? run.label() + ": " : "";
            Color color = Charts.color(i);
            if (!run.train().isEmpty()) {
                XYSeries raw = series(prefix + "train");
                run.train().forEach(t -> raw.add(t.step(), t.loss()));
                int s = add(data, raw);
                // the logged losses are noisy: drawn faint under the smoothed curve
                renderer.setSeriesPaint(s, smooth > 0 ? Charts.withAlpha(color, 70) : color);
                renderer.setSeriesStroke(s, Charts.line(smooth > 0 ? 1f : 2f));
                if (smooth > 0) {
                    XYSeries smoothed = series(prefix + "train, smoothed (EMA " + trim(smooth) + ")");
                    double[] v = run.smoothedLoss(smooth);
                    for (int k = 0; k < v.length; k++) {
                        smoothed.add(run.train().get(k).step(), v[k]);
                    }
                    s = add(data, smoothed);
                    renderer.setSeriesPaint(s, color);
                    renderer.setSeriesStroke(s, Charts.line(2f));
                }
            }
            if (!run.validation().isEmpty()) {
                XYSeries val = series(prefix + "validation");
                run.validation().forEach(v -> val.add(v.step(), v.loss()));
                int s = add(data, val);
                renderer.setSeriesPaint(s, color.darker());
                renderer.setSeriesStroke(s, Charts.dashed(1.5f));
                renderer.setSeriesShapesVisible(s, true);
                renderer.setSeriesShape(s, new Ellipse2D.Double(-4, -4, 8, 8));
            }
        }
        NumberAxis loss = Charts.style(new NumberAxis("loss"));
        loss.setAutoRangeIncludesZero(false);
        return xyPlot(data, loss, renderer);
    }

    private static XYPlot learningRatePlot(List<TrainingRun> runs) {
        XYSeriesCollection data = new XYSeriesCollection();
        XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, false);
        for (int i = 0; i < runs.size(); i++) {
            TrainingRun run = runs.get(i);
            if (!run.hasLearningRate()) {
                continue;
            }
            XYSeries lr = series((runs.size() > 1 ? run.label() + ": " : "") + "learning rate");
            run.train().stream().filter(t -> !Double.isNaN(t.lr())).forEach(t -> lr.add(t.step(), t.lr()));
            int s = add(data, lr);
            renderer.setSeriesPaint(s, Charts.color(i));
            renderer.setSeriesStroke(s, Charts.line(1.5f));
            // the runs' schedules are told apart by colour in the loss panel's legend
            renderer.setSeriesVisibleInLegend(s, runs.size() == 1);
        }
        NumberAxis axis = Charts.style(new NumberAxis("learning rate"));
        axis.setNumberFormatOverride(new CompactFormat());
        return xyPlot(data, axis, renderer);
    }

    private static XYPlot xyPlot(XYSeriesCollection data, NumberAxis rangeAxis, XYLineAndShapeRenderer renderer) {
        XYPlot p = new XYPlot(data, null, rangeAxis, renderer);
        p.setSeriesRenderingOrder(SeriesRenderingOrder.FORWARD); // the faint raw curve under the others
        Charts.style(p);
        return p;
    }

    private static XYSeries series(String key) {
        return new XYSeries(key, false, true);
    }

    private static int add(XYSeriesCollection data, XYSeries s) {
        data.addSeries(s);
        return data.getSeriesCount() - 1;
    }

    private static String trim(double v) {
        return Charts.format("0.###").format(v);
    }
}
