package io.based4j.cli.plot;

import java.awt.Color;
import java.awt.Shape;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Consumer;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.LogAxis;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.axis.NumberTickUnit;
import org.jfree.chart.plot.DefaultDrawingSupplier;
import org.jfree.chart.plot.SeriesRenderingOrder;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/**
 * {@code plot mqar}: MQAR accuracy against recurrent state size (log scale), one curve per architecture, as the
 * BASED paper's figure 2 draws it; and the table of the points.
 */
public final class MqarPlot {
    /** The paper's points (MQAR-SPEC, accuracy read off its figure): log2 of the state bytes, accuracy. */
    private static final List<PaperCurve> PAPER = List.of(
            new PaperCurve("based", new double[][] {{13.5, 0.71}, {14.5, 0.82}, {15.3, 0.89}, {16.3, 0.97},
                {17.3, 0.99}}),
            new PaperCurve("sliding", new double[][] {{13, 0.07}, {14, 0.14}, {15, 0.31}, {16, 0.51}, {17, 0.65},
                {18, 0.80}, {19, 0.94}, {20, 1.00}}),
            new PaperCurve("attention", new double[][] {{19, 1.00}, {20, 1.00}}));

    /** The mixers' colours, the same in every chart. */
    private static final List<String> KNOWN = List.of("based", "sliding", "attention");

    private record PaperCurve(String mixer, double[][] points) {
    }

    private MqarPlot() {
    }

    /**
     * Reads the result records, prints the table of points (the best record of each configuration) on
     * {@code out} and returns the chart as a PNG.
     *
     * @param paper whether to draw the paper's published points beside them
     * @param title the chart's title, or null for the default
     */
    public static byte[] render(List<Path> files, boolean paper, String title, int width, int height,
                                PrintWriter out, Consumer<String> notes) throws IOException {
        List<MqarResult> results = MqarResult.read(files, notes);
        List<MqarResult.Best> best = MqarResult.best(results);
        printTable(best, out);
        return Charts.png(chart(MqarResult.mixers(results), best, paper, title), width, height);
    }

    static void printTable(List<MqarResult.Best> points, PrintWriter out) {
        String row = "%-12s %8s %-10s %14s %7s %9s %10s %8s%n";
        out.printf(Locale.ROOT, row, "mixer", "d_model", "dial", "state bytes", "log2", "accuracy", "lr", "records");
        for (MqarResult.Best b : points) {
            MqarResult r = b.result();
            out.printf(Locale.ROOT, row, r.mixer(), r.dModel() == null ? "-" : r.dModel(), r.dial(),
                    String.format(Locale.ROOT, "%,.0f", r.stateBytes()),
                    String.format(Locale.ROOT, "%.2f", Math.log(r.stateBytes()) / Math.log(2)),
                    String.format(Locale.ROOT, "%.4f", r.accuracy()),
                    Double.isNaN(r.lr()) ? "-" : String.format(Locale.ROOT, "%.2e", r.lr()), b.records());
        }
        out.flush();
    }

    static JFreeChart chart(List<String> mixers, List<MqarResult.Best> points, boolean paper, String title) {
        XYSeriesCollection data = new XYSeriesCollection();
        XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, true);
        Shape[] shapes = DefaultDrawingSupplier.createStandardSeriesShapes();
        List<Color> colors = colors(mixers);
        for (int m = 0; m < mixers.size(); m++) {
            String mixer = mixers.get(m);
            // a mixer whose display name another one has already (BASED and based) keeps its own
            String key = data.getSeriesIndex(name(mixer)) >= 0 ? mixer : name(mixer);
            XYSeries s = new XYSeries(key, false, true);
            points.stream().filter(b -> b.result().mixer().equals(mixer))
                    .forEach(b -> s.add(b.result().stateBytes(), b.result().accuracy()));
            data.addSeries(s);
            int i = data.getSeriesCount() - 1;
            renderer.setSeriesPaint(i, colors.get(m));
            renderer.setSeriesStroke(i, Charts.line(2f));
            renderer.setSeriesShape(i, shapes[m % shapes.length]);
        }
        if (paper) {
            for (PaperCurve c : PAPER) {
                XYSeries s = new XYSeries(name(c.mixer()) + " (paper)", false, true);
                for (double[] p : c.points()) {
                    s.add(Math.pow(2, p[0]), p[1]);
                }
                data.addSeries(s);
                int i = data.getSeriesCount() - 1;
                int m = mixers.indexOf(c.mixer());
                Color color = m >= 0 ? colors.get(m) : Charts.color(KNOWN.indexOf(c.mixer()));
                renderer.setSeriesPaint(i, Charts.withAlpha(color, 150));
                renderer.setSeriesStroke(i, Charts.dashed(1.5f));
                renderer.setSeriesShape(i, shapes[Math.max(0, m) % shapes.length]);
                renderer.setSeriesShapesFilled(i, false);
            }
        }
        LogAxis state = Charts.style(new LogAxis("recurrent state (bytes, log scale)"));
        state.setBase(2);
        state.setBaseSymbol("2");
        state.setSmallestValue(1);
        state.setStandardTickUnits(NumberAxis.createIntegerTickUnits()); // ticks at whole powers of two
        NumberAxis accuracy = Charts.style(new NumberAxis("MQAR accuracy"));
        accuracy.setRange(0, 1.04);
        accuracy.setTickUnit(new NumberTickUnit(0.1, Charts.format("0.0")));
        XYPlot plot = new XYPlot(data, state, accuracy, renderer);
        plot.setSeriesRenderingOrder(SeriesRenderingOrder.FORWARD);
        Charts.style(plot);
        return Charts.chart(title != null ? title : "MQAR recall against state size", null, plot, true);
    }

    /** The mixers' colours: the known ones keep theirs, the others take the next free ones. */
    private static List<Color> colors(List<String> mixers) {
        List<Color> out = new ArrayList<>();
        int next = KNOWN.size();
        for (String m : mixers) {
            int known = KNOWN.indexOf(m);
            out.add(Charts.color(known >= 0 ? known : next++));
        }
        return out;
    }

    private static String name(String mixer) {
        return switch (mixer) {
            case "based" -> "BASED";
            case "sliding" -> "sliding window attention";
            default -> mixer;
        };
    }
}
