package io.based4j.cuda;

import io.based4j.backend.TokenBatch;

/** Groups of a call's sequences as calls of their own: to compare a call's results with its parts'. */
final class CallParts {
    private CallParts() {
    }

    /** The sequences at places {@code group} of {@code call}, in that order, as a call of their own. */
    static TokenBatch batch(TokenBatch call, int[] group) {
        int n = group.length;
        int[] slots = new int[n];
        int[] starts = new int[n];
        int[] lengths = new int[n];
        for (int j = 0; j < n; j++) {
            slots[j] = call.slot(group[j]);
            starts[j] = call.start(group[j]);
            lengths[j] = call.length(group[j]);
        }
        return new TokenBatch(slots, starts, lengths);
    }

    /** The rows ({@code width} values each) of the group's sequences in {@code values}, the call's rows. */
    static float[] rows(TokenBatch call, int[] group, float[] values, int width) {
        int[] offsets = call.offsets();
        int rows = 0;
        for (int i : group) {
            rows += call.length(i);
        }
        float[] out = new float[rows * width];
        int at = 0;
        for (int i : group) {
            System.arraycopy(values, offsets[i] * width, out, at * width, call.length(i) * width);
            at += call.length(i);
        }
        return out;
    }

    /** Puts the rows of the group's own call back where its sequences lie in the call's rows {@code into}. */
    static void scatter(TokenBatch call, int[] group, float[] groupRows, int width, float[] into) {
        int[] offsets = call.offsets();
        int at = 0;
        for (int i : group) {
            System.arraycopy(groupRows, at * width, into, offsets[i] * width, call.length(i) * width);
            at += call.length(i);
        }
    }
}
