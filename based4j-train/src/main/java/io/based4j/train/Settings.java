package io.based4j.train;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * One section of a JSON or YAML settings file, read field by field with errors that name the file and the field
 * ({@code "run.yaml: optimizer.lr must be a number > 0, got 'fast'"}). Fields nobody asked for are reported by
 * {@link #finish()}, so a misspelt key is an error rather than a silent default.
 */
public final class Settings {
    private final String source;
    private final String path;
    private final Map<String, Object> values;
    private final Set<String> used = new LinkedHashSet<>();

    public Settings(String source, String path, Map<String, Object> values) {
        this.source = source;
        this.path = path;
        this.values = values == null ? Map.of() : values;
    }

    /** A settings error that names where it is. */
    public static final class SettingsException extends IllegalArgumentException {
        public SettingsException(String message) {
            super(message);
        }
    }

    private String name(String key) {
        return path.isEmpty() ? key : path + "." + key;
    }

    /** An error saying that field {@code key} must be {@code need} but is {@code got}. */
    public SettingsException error(String key, String need, Object got) {
        return new SettingsException(source + ": " + name(key) + " must be " + need + ", got '" + shorten(got) + "'");
    }

    /** The file these settings come from. */
    public String source() {
        return source;
    }

    /** An error about these settings as a whole, naming their file. */
    public SettingsException problem(String what) {
        return new SettingsException(source + ": " + what);
    }

    /** Longest value quoted in a message; a longer one is cut, so that an error stays one readable line. */
    static final int MAX_QUOTED_CHARS = 60;

    /** {@code value} as text for a message: one line, at most {@link #MAX_QUOTED_CHARS} characters. */
    static String shorten(Object value) {
        String text = String.valueOf(value).replaceAll("\\s+", " ");
        return text.length() <= MAX_QUOTED_CHARS ? text : text.substring(0, MAX_QUOTED_CHARS) + "...";
    }

    public boolean has(String key) {
        return values.containsKey(key) && values.get(key) != null;
    }

    private Object get(String key) {
        used.add(key);
        return values.get(key);
    }

    /**
     * A field's value, null when it is absent; a field written with no value ({@code steps:} in YAML, null in JSON)
     * is refused rather than taken as absent, so that a value left out by mistake does not silently become the
     * default.
     */
    private Object value(String key) {
        Object v = get(key);
        if (v == null && values.containsKey(key)) {
            throw new SettingsException(source + ": " + name(key) + " has no value (give one, or leave the field out"
                    + " for the default)");
        }
        return v;
    }

    @SuppressWarnings("unchecked")
    public Settings section(String key) {
        Object v = get(key);
        if (v != null && !(v instanceof Map)) {
            throw error(key, "a section (a map of fields)", v);
        }
        return new Settings(source, name(key), (Map<String, Object>) v);
    }

    private static Double number(Object v) {
        if (v instanceof Number n) {
            return n.doubleValue();
        }
        if (v instanceof String s) {
            // YAML 1.1 reads 1e-3 (no dot) as a string
            try {
                return Double.parseDouble(s.trim());
            } catch (NumberFormatException e) {
                return null;
            }
        }
        return null;
    }

    public double number(String key, double dflt, double min, double max) {
        Object v = value(key);
        if (v == null) {
            return dflt;
        }
        Double x = number(v);
        if (x == null || !(x >= min && x <= max)) {
            throw error(key, "a number in [" + min + ", " + max + "]", v);
        }
        return x;
    }

    public long integer(String key, long dflt, long min, long max) {
        Object v = value(key);
        if (v == null) {
            return dflt;
        }
        Long x = integer(v, min, max);
        if (x == null) {
            throw error(key, "an integer in [" + min + ", " + max + "]", v);
        }
        return x;
    }

    /** {@code v} as an integer in [min, max], or null when it is not one. */
    private static Long integer(Object v, long min, long max) {
        if (v instanceof Long || v instanceof Integer || v instanceof BigInteger) {
            // exact: a double holds integers only up to 2^53 (seeds use all 64 bits)
            BigInteger b = v instanceof BigInteger big ? big : BigInteger.valueOf(((Number) v).longValue());
            if (b.compareTo(BigInteger.valueOf(min)) < 0 || b.compareTo(BigInteger.valueOf(max)) > 0) {
                return null;
            }
            return b.longValue();
        }
        Double x = number(v);
        if (x == null || x != Math.rint(x) || x < min || x > max) {
            return null;
        }
        return x.longValue();
    }

    /** An integer or a non-empty list of integers, each in [min, max] (the values a grid tries); null when absent. */
    public List<Long> integers(String key, long min, long max) {
        Object v = value(key);
        if (v == null) {
            return null;
        }
        List<?> items = v instanceof List<?> list ? list : List.of(v);
        List<Long> out = new ArrayList<>();
        for (Object o : items) {
            Long x = integer(o, min, max);
            if (x == null) {
                break;
            }
            out.add(x);
        }
        if (items.isEmpty() || out.size() < items.size()) {
            throw error(key, "an integer or a list of integers in [" + min + ", " + max + "]", v);
        }
        return out;
    }

    public int integer(String key, int dflt, int min, int max) {
        return (int) integer(key, (long) dflt, (long) min, (long) max);
    }

    public String string(String key, String dflt) {
        Object v = value(key);
        if (v == null) {
            return dflt;
        }
        if (!(v instanceof String s) || s.isEmpty()) {
            throw error(key, "a non-empty string", v);
        }
        return s;
    }

    public boolean bool(String key, boolean dflt) {
        Object v = value(key);
        if (v == null) {
            return dflt;
        }
        if (!(v instanceof Boolean b)) {
            throw error(key, "true or false", v);
        }
        return b;
    }

    public List<String> strings(String key) {
        Object v = value(key);
        if (v == null) {
            return null;
        }
        List<String> out = new ArrayList<>();
        if (v instanceof List<?> list) {
            for (Object o : list) {
                if (!(o instanceof String s)) {
                    throw error(key, "a list of strings", v);
                }
                out.add(s);
            }
            return out;
        }
        throw error(key, "a list of strings", v);
    }

    public List<Double> numbers(String key) {
        Object v = value(key);
        if (v == null) {
            return null;
        }
        List<Double> out = new ArrayList<>();
        if (v instanceof List<?> list) {
            for (Object o : list) {
                Double x = number(o);
                if (x == null) {
                    throw error(key, "a list of numbers", v);
                }
                out.add(x);
            }
            return out;
        }
        throw error(key, "a list of numbers", v);
    }

    /** A list of sections (maps of fields), named {@code key[0]}, {@code key[1]}, ...; null when absent. */
    @SuppressWarnings("unchecked")
    public List<Settings> sections(String key) {
        Object v = value(key);
        if (v == null) {
            return null;
        }
        if (!(v instanceof List<?> list)) {
            throw error(key, "a list of sections (maps of fields)", v);
        }
        List<Settings> out = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            String item = key + "[" + i + "]";
            if (!(list.get(i) instanceof Map<?, ?> m)) {
                throw error(item, "a section (a map of fields)", list.get(i));
            }
            out.add(new Settings(source, name(item), (Map<String, Object>) m));
        }
        return out;
    }

    /** A raw map value (for embedded model configurations). */
    @SuppressWarnings("unchecked")
    public Map<String, Object> map(String key) {
        Object v = value(key);
        if (v == null) {
            return null;
        }
        if (!(v instanceof Map)) {
            throw error(key, "a map", v);
        }
        return new LinkedHashMap<>((Map<String, Object>) v);
    }

    /** Fails naming any field that was never read. */
    public void finish() {
        List<String> unknown = new ArrayList<>();
        for (String k : values.keySet()) {
            if (!used.contains(k)) {
                unknown.add(name(k));
            }
        }
        if (!unknown.isEmpty()) {
            throw new SettingsException(source + ": unknown setting" + (unknown.size() > 1 ? "s " : " ")
                    + String.join(", ", unknown));
        }
    }
}
