package io.based4j.backend;

import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.StringJoiner;

/**
 * Where a backend's time goes, op by op: {@link #wrap} gives a {@link TrainingBackend} that, while {@link #start
 * recording}, puts a mark of the backend's {@link OpClock} before and after every call, and {@link #stop} sums the
 * time between each call's two marks per op and shape (the shapes of its buffer and weight arguments). On a GPU the
 * marks are events on the backend's stream, so the times are the device's own, in the order the ops ran, and the
 * ops are queued as they are without the profile. Each call is {@linkplain OpClock#hold held} while the host queues
 * it, so that its time is the device's work alone, not the host's time queuing small ops (which the device would
 * otherwise spend waiting inside the call); a call that itself waits for the device lets its hold go after a bounded
 * wait, which then counts in its time.
 *
 * <p>Not thread-safe: for one caller at a time, as the backends are.
 */
public final class OpProfile {
    /** One op and shape: how often it ran and for how long in all. */
    public record Row(String op, String shapes, int calls, double millis) {
    }

    private record Call(String op, String shapes, long from, long to) {
    }

    private final OpClock clock;
    private final List<Call> calls = new ArrayList<>();
    private boolean recording;

    private OpProfile(OpClock clock) {
        this.clock = clock;
    }

    /**
     * {@code backend} seen through a profile: the returned backend forwards every call to it, timing the calls
     * between {@link #start} and {@link #stop} of {@code profile[0]}, which this sets.
     */
    public static TrainingBackend wrap(TrainingBackend backend, OpProfile[] profile) {
        OpProfile p = new OpProfile(backend.clock());
        profile[0] = p;
        InvocationHandler h = (proxy, method, args) -> p.call(backend, method, args);
        return (TrainingBackend) Proxy.newProxyInstance(TrainingBackend.class.getClassLoader(),
                new Class<?>[] {TrainingBackend.class}, h);
    }

    /** Starts timing calls (and the backend's kernels, where it can), forgetting any earlier ones. */
    public void start() {
        discard();
        kernels = List.of();
        clock.timeKernels(true);
        recording = true;
    }

    /**
     * The backend's own kernels over the calls of the last {@link #start}-{@link #stop}: name, calls and
     * milliseconds, the longest first (empty where the backend times no kernels). Library routines (matrix
     * products) and copies are in the calls' times only.
     */
    public List<Row> kernels() {
        return kernels;
    }

    private List<Row> kernels = List.of();

    /** Stops timing; returns the timed calls summed per op and shape, the longest first (waits for the device). */
    public List<Row> stop() {
        recording = false;
        try {
            kernels = clock.kernelTimes();
        } finally {
            clock.timeKernels(false);
        }
        Map<String, double[]> sums = new LinkedHashMap<>();
        Map<String, String[]> names = new LinkedHashMap<>();
        for (Call c : calls) {
            String key = c.op + " " + c.shapes;
            double[] s = sums.computeIfAbsent(key, k -> new double[2]);
            s[0]++;
            s[1] += clock.millis(c.from, c.to);
            names.putIfAbsent(key, new String[] {c.op, c.shapes});
        }
        discard();
        List<Row> rows = new ArrayList<>();
        sums.forEach((k, s) -> rows.add(new Row(names.get(k)[0], names.get(k)[1], (int) s[0], s[1])));
        rows.sort(Comparator.comparingDouble(Row::millis).reversed());
        return rows;
    }

    private void discard() {
        for (Call c : calls) {
            clock.release(c.from);
            clock.release(c.to);
        }
        calls.clear();
    }

    private Object call(TrainingBackend target, Method method, Object[] args) throws Throwable {
        if (recording && method.getName().equals("stepRecorder") && method.getParameterCount() == 0) {
            return null;  // a profile times op by op: recorded steps would hide the ops
        }
        if (!recording || method.getDeclaringClass() == Object.class) {
            return invoke(target, method, args);
        }
        long hold = clock.hold();
        long from = clock.mark();
        Object result;
        try {
            result = invoke(target, method, args);
        } finally {
            long to;
            try {
                to = clock.mark();
            } finally {
                clock.go(hold);  // whatever happened, the stream is not left waiting on this call
            }
            calls.add(new Call(method.getName(), shapes(args), from, to));
        }
        return result;
    }

    private static Object invoke(Object target, Method method, Object[] args) throws Throwable {
        try {
            return method.invoke(target, args);
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
    }

    /** The shapes of the buffer and weight arguments, e.g. {@code "16384x1024 [4096, 1024]"}. */
    static String shapes(Object[] args) {
        StringJoiner j = new StringJoiner(" ");
        if (args != null) {
            for (Object a : args) {
                if (a instanceof Backend.Buffer b) {
                    j.add(b.rows() + "x" + b.cols());
                } else if (a instanceof Backend.Weight w) {
                    j.add(Arrays.toString(w.shape()));
                }
            }
        }
        return j.toString();
    }
}
