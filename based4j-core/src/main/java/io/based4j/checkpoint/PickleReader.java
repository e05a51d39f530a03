package io.based4j.checkpoint;

import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Decodes the subset of the Python pickle format (protocols 2 to 5) that PyTorch uses for a state dict. It
 * only builds data: strings, integers, floats, booleans, None (as {@code null}), bytes ({@code byte[]}), lists
 * ({@link ArrayList}), tuples (unmodifiable {@link List}s) and dicts ({@link LinkedHashMap}). Everything that
 * would run code in Python is delegated to a {@link Resolver}: naming a global, calling one (REDUCE) and
 * loading a persistent id. BUILD (setting an object's attributes) is ignored. Nothing is ever executed.
 */
final class PickleReader {
    /** Decides what globals, calls and persistent ids mean; throws to refuse them. */
    interface Resolver {
        /** The object a GLOBAL or STACK_GLOBAL opcode names. */
        Object global(String module, String name);

        /** The result of calling {@code callable} (an object {@link #global} returned) with {@code args}. */
        Object reduce(Object callable, List<Object> args);

        /** The object a BINPERSID opcode stands for. */
        Object persistentLoad(Object pid);
    }

    private static final int HIGHEST_PROTOCOL = 5;

    private final String source;
    private final byte[] data;
    private final Resolver resolver;
    private final List<Object> stack = new ArrayList<>();
    private final List<Integer> marks = new ArrayList<>();
    private final Map<Long, Object> memo = new HashMap<>();
    private int pos;

    /**
     * @param source names the pickle in error messages, e.g. {@code "pytorch_model.bin: data.pkl"}
     */
    PickleReader(String source, byte[] data, Resolver resolver) {
        this.source = source;
        this.data = data;
        this.resolver = resolver;
    }

    /** Decodes the pickle up to its STOP opcode and returns the object it describes. */
    Object load() {
        while (true) {
            int at = pos;
            int op = u8();
            switch (op) {
                case 0x80 -> { // PROTO
                    int protocol = u8();
                    if (protocol > HIGHEST_PROTOCOL) {
                        throw error(at, "unsupported pickle protocol " + protocol);
                    }
                }
                case 0x95 -> take(8); // FRAME: a length hint only
                case '.' -> { // STOP
                    Object result = pop(at);
                    if (!stack.isEmpty() || !marks.isEmpty()) {
                        throw error(at, "STOP leaves " + stack.size() + " values on the stack");
                    }
                    return result;
                }
                case '(' -> marks.add(stack.size()); // MARK
                case '0' -> pop(at); // POP
                case '1' -> popMark(at); // POP_MARK
                case '2' -> push(peek(at)); // DUP
                case 'N' -> push(null); // NONE
                case 0x88 -> push(Boolean.TRUE); // NEWTRUE
                case 0x89 -> push(Boolean.FALSE); // NEWFALSE
                case 'J' -> push((long) i32()); // BININT
                case 'K' -> push((long) u8()); // BININT1
                case 'M' -> push((long) u16()); // BININT2
                case 0x8a -> push(longFromBytes(take(u8()))); // LONG1
                case 0x8b -> push(longFromBytes(take(length(i32(), at)))); // LONG4
                case 'G' -> push(ByteBuffer.wrap(take(8)).getDouble()); // BINFLOAT, big-endian
                case 'X' -> push(utf8(take(length(Integer.toUnsignedLong(i32()), at)))); // BINUNICODE
                case 0x8c -> push(utf8(take(u8()))); // SHORT_BINUNICODE
                case 0x8d -> push(utf8(take(length(i64(), at)))); // BINUNICODE8
                case 'C' -> push(take(u8())); // SHORT_BINBYTES
                case 'B' -> push(take(length(Integer.toUnsignedLong(i32()), at))); // BINBYTES
                case 0x8e -> push(take(length(i64(), at))); // BINBYTES8
                case '}' -> push(new LinkedHashMap<>()); // EMPTY_DICT
                case ']' -> push(new ArrayList<>()); // EMPTY_LIST
                case ')' -> push(tuple()); // EMPTY_TUPLE
                case 't' -> push(tuple(popMark(at).toArray())); // TUPLE
                case 0x85 -> push(tuple(pop(at))); // TUPLE1
                case 0x86 -> { // TUPLE2
                    Object b = pop(at);
                    push(tuple(pop(at), b));
                }
                case 0x87 -> { // TUPLE3
                    Object c = pop(at);
                    Object b = pop(at);
                    push(tuple(pop(at), b, c));
                }
                case 'q' -> memo.put((long) u8(), peek(at)); // BINPUT
                case 'r' -> memo.put(Integer.toUnsignedLong(i32()), peek(at)); // LONG_BINPUT
                case 0x94 -> memo.put((long) memo.size(), peek(at)); // MEMOIZE
                case 'h' -> push(memoGet(u8(), at)); // BINGET
                case 'j' -> push(memoGet(Integer.toUnsignedLong(i32()), at)); // LONG_BINGET
                case 's' -> { // SETITEM
                    Object value = pop(at);
                    Object key = pop(at);
                    dict(peek(at), at).put(key, value);
                }
                case 'u' -> { // SETITEMS
                    List<Object> items = popMark(at);
                    if (items.size() % 2 != 0) {
                        throw error(at, "SETITEMS with an odd number of items");
                    }
                    Map<Object, Object> dict = dict(peek(at), at);
                    for (int i = 0; i < items.size(); i += 2) {
                        dict.put(items.get(i), items.get(i + 1));
                    }
                }
                case 'a' -> { // APPEND
                    Object value = pop(at);
                    list(peek(at), at).add(value);
                }
                case 'e' -> { // APPENDS
                    List<Object> items = popMark(at);
                    list(peek(at), at).addAll(items);
                }
                case 'c' -> push(resolver.global(line(at), line(at))); // GLOBAL
                case 0x93 -> { // STACK_GLOBAL
                    Object name = pop(at);
                    Object module = pop(at);
                    if (!(module instanceof String m) || !(name instanceof String n)) {
                        throw error(at, "STACK_GLOBAL needs two strings");
                    }
                    push(resolver.global(m, n));
                }
                case 'R' -> { // REDUCE
                    Object args = pop(at);
                    Object callable = pop(at);
                    if (!(args instanceof List<?> list)) {
                        throw error(at, "REDUCE arguments are not a tuple");
                    }
                    push(resolver.reduce(callable, Collections.unmodifiableList(list)));
                }
                case 'b' -> pop(at); // BUILD: attribute state of the object below; not needed for data
                case 'Q' -> push(resolver.persistentLoad(pop(at))); // BINPERSID
                default -> throw error(at, String.format("unsupported pickle opcode 0x%02x", op)
                        + (op >= 0x20 && op < 0x7f ? " ('" + (char) op + "')" : ""));
            }
        }
    }

    private CheckpointException error(int at, String what) {
        return new CheckpointException(source + ": " + what + " at byte " + at);
    }

    // ------------------------------------------------------------------ stack

    private void push(Object value) {
        stack.add(value);
    }

    private Object pop(int at) {
        int floor = marks.isEmpty() ? 0 : marks.getLast();
        if (stack.size() <= floor) {
            throw error(at, "pickle stack underflow");
        }
        return stack.removeLast();
    }

    private Object peek(int at) {
        int floor = marks.isEmpty() ? 0 : marks.getLast();
        if (stack.size() <= floor) {
            throw error(at, "pickle stack underflow");
        }
        return stack.getLast();
    }

    /** Removes and returns everything pushed since the last MARK. */
    private List<Object> popMark(int at) {
        if (marks.isEmpty()) {
            throw error(at, "no MARK on the pickle stack");
        }
        int mark = marks.removeLast();
        List<Object> items = new ArrayList<>(stack.subList(mark, stack.size()));
        stack.subList(mark, stack.size()).clear();
        return items;
    }

    private Object memoGet(long index, int at) {
        if (!memo.containsKey(index)) {
            throw error(at, "memo has no entry " + index);
        }
        return memo.get(index);
    }

    @SuppressWarnings("unchecked")
    private Map<Object, Object> dict(Object target, int at) {
        if (!(target instanceof LinkedHashMap<?, ?> map)) {
            throw error(at, "SETITEM on a " + typeName(target) + " instead of a dict");
        }
        return (Map<Object, Object>) map;
    }

    @SuppressWarnings("unchecked")
    private List<Object> list(Object target, int at) {
        if (!(target instanceof ArrayList<?> list)) {
            throw error(at, "APPEND on a " + typeName(target) + " instead of a list");
        }
        return (List<Object>) list;
    }

    private static List<Object> tuple(Object... items) {
        return Collections.unmodifiableList(Arrays.asList(items));
    }

    /** The Python type name of a decoded value ("dict", "list", "int", ...). */
    static String typeName(Object value) {
        return switch (value) {
            case null -> "None";
            case String _ -> "str";
            case Long _, BigInteger _ -> "int";
            case Double _ -> "float";
            case Boolean _ -> "bool";
            case byte[] _ -> "bytes";
            case Map<?, ?> _ -> "dict";
            case ArrayList<?> _ -> "list";
            case List<?> _ -> "tuple";
            default -> value.getClass().getSimpleName();
        };
    }

    // ------------------------------------------------------------------ input

    private int u8() {
        need(1);
        return data[pos++] & 0xff;
    }

    private int u16() {
        return u8() | u8() << 8;
    }

    private int i32() {
        return u16() | u16() << 16;
    }

    private long i64() {
        return Integer.toUnsignedLong(i32()) | (long) i32() << 32;
    }

    private byte[] take(int n) {
        need(n);
        byte[] bytes = Arrays.copyOfRange(data, pos, pos + n);
        pos += n;
        return bytes;
    }

    /** A length read from the pickle, checked against what is left of it. */
    private int length(long n, int at) {
        if (n < 0 || n > data.length - pos) {
            throw error(at, "length " + n + " runs past the end of the pickle (" + data.length + " bytes)");
        }
        return (int) n;
    }

    private void need(int n) {
        if (n > data.length - pos) {
            throw new CheckpointException(source + ": pickle ends unexpectedly at byte " + data.length
                    + " (truncated)");
        }
    }

    /** A newline-terminated line, as GLOBAL uses for module and name. */
    private String line(int at) {
        for (int i = pos; i < data.length; i++) {
            if (data[i] == '\n') {
                String s = new String(data, pos, i - pos, StandardCharsets.UTF_8);
                pos = i + 1;
                return s;
            }
        }
        throw error(at, "GLOBAL name is not terminated by a newline");
    }

    private static String utf8(byte[] bytes) {
        return new String(bytes, StandardCharsets.UTF_8);
    }

    /** A little-endian two's complement integer: a Long when it fits, else a BigInteger. */
    private static Object longFromBytes(byte[] littleEndian) {
        if (littleEndian.length == 0) {
            return 0L;
        }
        byte[] bigEndian = new byte[littleEndian.length];
        for (int i = 0; i < bigEndian.length; i++) {
            bigEndian[i] = littleEndian[littleEndian.length - 1 - i];
        }
        BigInteger value = new BigInteger(bigEndian);
        return value.bitLength() < Long.SIZE ? (Object) value.longValue() : value;
    }
}
