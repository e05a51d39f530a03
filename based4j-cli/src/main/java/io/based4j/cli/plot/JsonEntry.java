package io.based4j.cli.plot;

import io.based4j.json.Json;
import java.util.Map;

/**
 * One JSON object of an input file and where it is ({@code "runs/a/metrics.jsonl: line 12"}), with typed access
 * to its fields: a field of the wrong type is an error naming the place, the field and what it holds. A field
 * that is {@code null} counts as absent (the JSON writer turns a NaN or an infinity into {@code null}).
 */
record JsonEntry(String where, Map<String, Object> fields) {
    boolean has(String key) {
        return fields.get(key) != null;
    }

    /** The number at {@code key}, or NaN when the field is absent. */
    double number(String key) {
        Object v = fields.get(key);
        if (v == null) {
            return Double.NaN;
        }
        if (v instanceof Number n) {
            return n.doubleValue();
        }
        throw wrongType(key, "a number", v);
    }

    /** The number at {@code key}, which must be there. */
    double requiredNumber(String key) {
        double v = number(key);
        if (Double.isNaN(v)) {
            throw missing(key, "a number");
        }
        return v;
    }

    /** The integer at {@code key}, or null when the field is absent. */
    Long integer(String key) {
        Object v = fields.get(key);
        if (v == null) {
            return null;
        }
        if (v instanceof Long l) {
            return l;
        }
        throw wrongType(key, "an integer", v);
    }

    /** The string at {@code key}, or null when the field is absent. */
    String string(String key) {
        Object v = fields.get(key);
        if (v == null) {
            return null;
        }
        if (v instanceof String s) {
            return s;
        }
        throw wrongType(key, "a string", v);
    }

    IllegalArgumentException missing(String key, String what) {
        return new IllegalArgumentException(where + ": no \"" + key + "\" (" + what + ")");
    }

    IllegalArgumentException invalid(String key, String problem) {
        return new IllegalArgumentException(where + ": \"" + key + "\" " + problem);
    }

    private IllegalArgumentException wrongType(String key, String what, Object v) {
        String shown = v instanceof String s ? "\"" + abbreviate(s) + "\"" : abbreviate(Json.write(v));
        return invalid(key, "must be " + what + ", found " + Json.typeName(v) + " " + shown);
    }

    static String abbreviate(String s) {
        return s.length() <= 60 ? s : s.substring(0, 60) + "...";
    }
}
