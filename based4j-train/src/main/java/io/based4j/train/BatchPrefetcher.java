package io.based4j.train;

import io.based4j.train.data.WindowSampler;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Prepares the inputs and targets of micro-batch {@code i + 1} on a background thread while micro-batch {@code i}
 * trains, so that a GPU is not kept waiting for the host to read windows from the shards. Batches are a pure
 * function of their index ({@link WindowSampler}), so what is prepared ahead is exactly what would be prepared on
 * demand. Two buffers alternate: the one handed out for index {@code i} is only refilled for index {@code i + 2},
 * which starts once index {@code i + 1} is asked for, after the pass over index {@code i} has returned.
 */
final class BatchPrefetcher implements AutoCloseable {
    /** A micro-batch: {@code batch x seqLen} inputs and their next-token targets. */
    record Batch(int[] ids, int[] targets, int[] windows) {
    }

    private final WindowSampler sampler;
    private final int batch;
    private final int seqLen;
    private final Batch[] buffers = new Batch[2];
    private final ExecutorService thread = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "based4j batch prefetch");
        t.setDaemon(true);
        return t;
    });
    private Future<Batch> pending;
    private long pendingIndex = -1;

    BatchPrefetcher(WindowSampler sampler, int batch, int seqLen) {
        this.sampler = sampler;
        this.batch = batch;
        this.seqLen = seqLen;
        for (int i = 0; i < 2; i++) {
            buffers[i] = new Batch(new int[batch * seqLen], new int[batch * seqLen],
                    new int[batch * sampler.windowTokens()]);
        }
    }

    /** The micro-batch of {@code index} (the sampler's step), and the next one started in the background. */
    Batch next(long index) {
        Batch b;
        if (pending != null && pendingIndex == index) {
            b = join(pending);
        } else {
            if (pending != null) {
                join(pending); // out of sequence: the work ahead is not needed, but it may be filling our buffer
            }
            b = prepare(index, buffer(index));
        }
        long ahead = index + 1;
        Batch into = buffer(ahead);
        pending = thread.submit(() -> prepare(ahead, into));
        pendingIndex = ahead;
        return b;
    }

    private Batch buffer(long index) {
        return buffers[(int) (index & 1)];
    }

    private Batch prepare(long index, Batch into) {
        sampler.batch(index, batch, into.windows());
        Trainer.split(into.windows(), batch, seqLen, into.ids(), into.targets());
        return into;
    }

    private static Batch join(Future<Batch> f) {
        try {
            return f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while reading a batch", e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) {
                throw r;
            }
            throw new IllegalStateException("reading a batch failed: " + e.getCause(), e.getCause());
        }
    }

    @Override
    public void close() {
        thread.shutdownNow();
    }
}
