package io.based4j.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** The windows perplexity is computed over: every token but the first scored once, with the context promised. */
class WindowsTest {
    @Test
    void everyTokenButTheFirstIsScoredOnceWithTheContextTheStridePromises() {
        for (int n : new int[] {2, 3, 7, 16, 17, 100}) {
            for (int seqLen : new int[] {1, 2, 5, 16}) {
                for (int stride = 1; stride <= seqLen; stride++) {
                    int[] scored = new int[n];
                    for (Windows.Window w : Windows.plan(n, seqLen, stride)) {
                        assertTrue(w.length() <= seqLen && w.firstScored() >= 0 && w.scored() >= 1, w.toString());
                        assertTrue(w.start() + w.length() < n, "the token after the window is a target: " + w);
                        for (int r = w.firstScored(); r < w.length(); r++) {
                            long target = w.start() + r + 1;
                            scored[(int) target]++;
                            long context = target - w.start();
                            // the first window's targets see everything before them; later ones seqLen - stride or more
                            assertTrue(w.start() == 0 ? context == target : context >= seqLen - stride + 1,
                                    "target " + target + " of " + w + " (n " + n + ", seq-len " + seqLen + ", stride "
                                            + stride + ")");
                        }
                    }
                    assertEquals(0, scored[0]);
                    for (int t = 1; t < n; t++) {
                        assertEquals(1, scored[t], "token " + t + " (n " + n + ", seq-len " + seqLen + ", stride "
                                + stride + ")");
                    }
                }
            }
        }
    }

    @Test
    void windowsOfTheFullStrideDoNotOverlap() {
        // 10 tokens in windows of 4: tokens [0,4) predict 1..4, [4,8) predict 5..8; the last, short of targets,
        // still reads 4 tokens of context: [5,9) of which only row 3 is scored (it predicts 9)
        assertEquals(List.of(new Windows.Window(0, 4, 0), new Windows.Window(4, 4, 0), new Windows.Window(5, 4, 3)),
                Windows.plan(10, 4, 4));
        // stride 2: after the first window, each reads the 4 tokens before its last target and scores 2
        assertEquals(List.of(new Windows.Window(0, 4, 0), new Windows.Window(2, 4, 2), new Windows.Window(4, 4, 2),
                new Windows.Window(5, 4, 3)), Windows.plan(10, 4, 2));
    }

    @Test
    void fewerThanTwoTokensGiveNoWindowAndBadSizesAreRefused() {
        assertEquals(List.of(), Windows.plan(0, 4, 4));
        assertEquals(List.of(), Windows.plan(1, 4, 4));
        assertThrows(IllegalArgumentException.class, () -> Windows.plan(10, 4, 5));
        assertThrows(IllegalArgumentException.class, () -> Windows.plan(10, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> Windows.plan(10, 4, 0));
    }
}
