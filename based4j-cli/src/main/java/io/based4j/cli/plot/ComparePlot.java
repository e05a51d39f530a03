package io.based4j.cli.plot;

import java.awt.Font;
import java.awt.Shape;
import java.awt.geom.AffineTransform;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Function;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.LogAxis;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.axis.NumberTickUnit;
import org.jfree.chart.labels.ItemLabelAnchor;
import org.jfree.chart.labels.ItemLabelPosition;
import org.jfree.chart.plot.CombinedDomainXYPlot;
import org.jfree.chart.plot.DefaultDrawingSupplier;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.chart.ui.TextAnchor;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/**
 * {@code plot compare}: language models of one comparison ({@code scripts/lm-compare.sh}, docs/compare) placed by
 * their recurrent state per sequence (log scale): validation perplexity in the upper panel, in-context recall in the
 * lower one. A model whose state grows with the context (attention) is drawn at each context measured, joined by a
 * line; and the table of the values.
 */
public final class ComparePlot {
    private ComparePlot() {
    }

    /** One model of the comparison: its state bytes by context length, and the values drawn (NaN when absent). */
    record Model(String name, Map<Long, Double> stateBytes, double perplexity, double recall) {
    }

    /**
     * Reads {@code compare.json}, prints the table on {@code out} and returns the chart as a PNG.
     *
     * @param title the chart's title, or null for the default
     */
    public static byte[] render(Path file, String title, int width, int height, PrintWriter out,
                                Consumer<String> notes) throws IOException {
        List<Model> models = read(file, notes);
        printTable(models, out);
        return Charts.png(chart(models, title), width, height);
    }

    static List<Model> read(Path file, Consumer<String> notes) throws IOException {
        JsonEntry top = JsonInput.object(file);
        if (!(top.fields().get("models") instanceof List<?> list) || list.isEmpty()) {
            throw new IllegalArgumentException(file + ": no \"models\" (a non-empty array of the models compared, as"
                    + " scripts/lm-compare.py writes it)");
        }
        List<Model> models = new ArrayList<>();
        List<String> leftOut = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            String where = file + ": models[" + i + "]";
            if (!(list.get(i) instanceof Map<?, ?> m)) {
                throw new IllegalArgumentException(where + " is not a JSON object");
            }
            @SuppressWarnings("unchecked")
            JsonEntry e = new JsonEntry(where, (Map<String, Object>) m);
            String name = e.string("label") != null ? e.string("label") : e.string("name");
            if (name == null) {
                throw e.missing("name", "a string");
            }
            Map<Long, Double> state = stateBytes(e);
            double perplexity = e.number("val_perplexity");
            double recall = e.number("recall_in_context");
            if (!Double.isNaN(perplexity) && !(perplexity >= 1)) {
                throw e.invalid("val_perplexity", "must be at least 1, found " + perplexity);
            }
            if (!Double.isNaN(recall) && !(recall >= 0 && recall <= 1)) {
                throw e.invalid("recall_in_context", "must be between 0 and 1, found " + recall);
            }
            if (state.isEmpty() || (Double.isNaN(perplexity) && Double.isNaN(recall))) {
                leftOut.add(where + " (" + name + "): left out, " + (state.isEmpty() ? "no state bytes"
                        : "neither val_perplexity nor recall_in_context") + " (a step of its run failed?)");
                continue;
            }
            models.add(new Model(name, state, perplexity, recall));
        }
        if (models.isEmpty()) {
            throw new IllegalArgumentException(file + ": no model with state bytes and a perplexity or recall to"
                    + " draw");
        }
        leftOut.forEach(notes);
        return models;
    }

    /** {@code "state_bytes": {"512": 600883, "2048": 600883}}: context length to bytes, each positive. */
    private static Map<Long, Double> stateBytes(JsonEntry e) {
        Object v = e.fields().get("state_bytes");
        Map<Long, Double> out = new LinkedHashMap<>();
        if (v == null) {
            return out;
        }
        if (!(v instanceof Map<?, ?> m)) {
            throw e.invalid("state_bytes", "must be an object of context length to bytes");
        }
        for (Map.Entry<?, ?> c : m.entrySet()) {
            long context;
            try {
                context = Long.parseLong(String.valueOf(c.getKey()));
            } catch (NumberFormatException x) {
                throw e.invalid("state_bytes", "has the key \"" + JsonEntry.abbreviate(String.valueOf(c.getKey()))
                        + "\", not a context length");
            }
            if (!(c.getValue() instanceof Number n) || !(n.doubleValue() > 0) || context < 1) {
                throw e.invalid("state_bytes", "must map context lengths to positive byte counts, found "
                        + context + ": " + c.getValue());
            }
            out.put(context, n.doubleValue());
        }
        return out;
    }

    static void printTable(List<Model> models, PrintWriter out) {
        List<Long> contexts = contexts(models);
        int width = Math.max(16, models.stream().mapToInt(m -> m.name().length()).max().orElse(0) + 2);
        StringBuilder head = new StringBuilder(String.format(Locale.ROOT, "%-" + width + "s", "model"));
        contexts.forEach(c -> head.append(String.format(Locale.ROOT, " %16s", "state @ " + c)));
        head.append(String.format(Locale.ROOT, " %12s %10s", "perplexity", "recall"));
        out.println(head);
        for (Model m : models) {
            StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "%-" + width + "s", m.name()));
            for (Long c : contexts) {
                Double bytes = m.stateBytes().get(c);
                row.append(String.format(Locale.ROOT, " %16s", bytes == null ? "-"
                        : String.format(Locale.ROOT, "%,.0f", bytes)));
            }
            row.append(String.format(Locale.ROOT, " %12s %10s", value(m.perplexity(), "%.3f"),
                    value(m.recall(), "%.4f")));
            out.println(row);
        }
        out.flush();
    }

    private static String value(double v, String format) {
        return Double.isNaN(v) ? "-" : String.format(Locale.ROOT, format, v);
    }

    private static List<Long> contexts(List<Model> models) {
        return models.stream().flatMap(m -> m.stateBytes().keySet().stream()).distinct().sorted().toList();
    }

    static JFreeChart chart(List<Model> models, String title) {
        LogAxis state = Charts.style(new LogAxis("recurrent state per sequence (bytes, log scale)"));
        state.setBase(2);
        state.setBaseSymbol("2");
        state.setSmallestValue(1);
        state.setStandardTickUnits(NumberAxis.createIntegerTickUnits()); // ticks at whole powers of two
        state.setLowerMargin(0.06); // a model at either end keeps its marker and label inside the frame
        state.setUpperMargin(0.06);
        CombinedDomainXYPlot plot = new CombinedDomainXYPlot(state);
        plot.setGap(14);
        NumberAxis perplexity = Charts.style(new NumberAxis("validation perplexity"));
        perplexity.setAutoRangeIncludesZero(false);
        perplexity.setUpperMargin(0.15); // room for the labels above the points
        perplexity.setLowerMargin(0.1);
        XYPlot upper = panel(models, Model::perplexity, perplexity);
        plot.add(upper, 1);
        NumberAxis recall = Charts.style(new NumberAxis("in-context recall accuracy"));
        recall.setRange(-0.04, 1.04); // a model that recalls nothing stays off the frame
        recall.setTickUnit(new NumberTickUnit(0.2, Charts.format("0.0")));
        plot.add(panel(models, Model::recall, recall), 1);
        plot.setFixedLegendItems(upper.getLegendItems()); // one legend entry per model, not one per panel
        String contexts = String.join(", ", contexts(models).stream().map(String::valueOf).toList());
        return Charts.chart(title != null ? title : "Perplexity and recall against state size",
                "each model at " + contexts + " tokens of context (labelled where its state differs)", plot, true);
    }

    /** One panel: each model's points at its state sizes, labelled with the contexts where the state grows. */
    private static XYPlot panel(List<Model> models, Function<Model, Double> value, NumberAxis axis) {
        XYSeriesCollection data = new XYSeriesCollection();
        XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, true);
        Shape[] shapes = DefaultDrawingSupplier.createStandardSeriesShapes();
        List<List<String>> labels = new ArrayList<>();
        for (int i = 0; i < models.size(); i++) {
            Model m = models.get(i);
            XYSeries s = new XYSeries(m.name(), false, true);
            List<String> pointLabels = new ArrayList<>();
            double y = value.apply(m);
            if (!Double.isNaN(y)) {
                // one point per distinct state size, named by the contexts that have it
                Map<Double, List<Long>> byBytes = new LinkedHashMap<>();
                m.stateBytes().forEach((c, b) -> byBytes.computeIfAbsent(b, k -> new ArrayList<>()).add(c));
                boolean grows = byBytes.size() > 1;
                byBytes.forEach((bytes, cs) -> {
                    s.add(bytes.doubleValue(), y);
                    pointLabels.add(grows ? cs.stream().map(String::valueOf).reduce((a, b) -> a + ", " + b)
                            .orElse("") + " tok" : "");
                });
            }
            data.addSeries(s);
            labels.add(pointLabels);
            renderer.setSeriesPaint(i, Charts.color(i));
            renderer.setSeriesStroke(i, Charts.line(2f));
            // markers half as large again as the standard ones: a model that keeps one state size is one point
            renderer.setSeriesShape(i, AffineTransform.getScaleInstance(1.5, 1.5)
                    .createTransformedShape(shapes[i % shapes.length]));
        }
        renderer.setDefaultItemLabelGenerator((dataset, series, item) -> labels.get(series).get(item));
        renderer.setDefaultItemLabelsVisible(true);
        renderer.setDefaultItemLabelFont(new Font(Font.SANS_SERIF, Font.PLAIN, 11));
        renderer.setDefaultPositiveItemLabelPosition(new ItemLabelPosition(ItemLabelAnchor.OUTSIDE12,
                TextAnchor.BOTTOM_CENTER));
        XYPlot p = new XYPlot(data, null, axis, renderer);
        Charts.style(p);
        return p;
    }
}
