package io.based4j.cli.plot;

import java.text.FieldPosition;
import java.text.NumberFormat;
import java.text.ParsePosition;
import java.util.Locale;

/**
 * Numbers in at most three significant digits, with a k, M or G suffix for large ones and a power of ten for small
 * ones: 990,560 is {@code 991k}, 6,187 {@code 6.19k}, 49,004 {@code 49k}, 0.00032 {@code 3.2e-4}.
 */
final class CompactFormat extends NumberFormat {
    static String of(double v) {
        double a = Math.abs(v);
        if (Double.isNaN(v)) {
            return "-";
        }
        if (a >= 1e9) {
            return digits(v / 1e9) + "G";
        }
        if (a >= 1e6) {
            return digits(v / 1e6) + "M";
        }
        if (a >= 1e3) {
            return digits(v / 1e3) + "k";
        }
        if (a > 0 && a < 0.01) {
            int exponent = (int) Math.floor(Math.log10(a));
            double mantissa = v / Math.pow(10, exponent);
            if (Math.abs(mantissa) >= 9.995) { // rounds up to the next power of ten
                mantissa /= 10;
                exponent++;
            }
            return digits(mantissa) + "e" + exponent;
        }
        return digits(v);
    }

    /** Three significant digits at most, without trailing zeros after the point (49.0 is {@code 49}). */
    private static String digits(double v) {
        double a = Math.abs(v);
        String pattern = a >= 99.95 || a == 0 ? "%.0f" : a >= 9.995 ? "%.1f" : a >= 0.9995 ? "%.2f" : "%.3g";
        String s = String.format(Locale.ROOT, pattern, v);
        return s.contains(".") && !s.contains("e") ? s.replaceAll("\\.?0+$", "") : s;
    }

    @Override
    public StringBuffer format(double number, StringBuffer toAppendTo, FieldPosition pos) {
        return toAppendTo.append(of(number));
    }

    @Override
    public StringBuffer format(long number, StringBuffer toAppendTo, FieldPosition pos) {
        return toAppendTo.append(of(number));
    }

    @Override
    public Number parse(String source, ParsePosition parsePosition) {
        throw new UnsupportedOperationException("a format for axis and bar labels only");
    }
}
