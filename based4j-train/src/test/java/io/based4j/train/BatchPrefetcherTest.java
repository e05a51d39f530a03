package io.based4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import io.based4j.train.data.TokenDataset;
import io.based4j.train.data.WindowSampler;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Batches read ahead on the background thread are exactly the batches read on demand, in or out of sequence. */
class BatchPrefetcherTest {
    @TempDir
    Path tmp;

    @Test
    void prefetchedBatchesEqualBatchesReadOnDemand() {
        Path data = TrainFixtures.randomData(tmp.resolve("data"), 5000);
        int batch = 3;
        int seqLen = 17;
        try (TokenDataset ds = TokenDataset.open(data, "train");
             BatchPrefetcher prefetcher = new BatchPrefetcher(new WindowSampler(ds, seqLen + 1, 7), batch, seqLen)) {
            WindowSampler direct = new WindowSampler(ds, seqLen + 1, 7);
            // in sequence (the trainer's way), then a jump back and a jump ahead (as after a resume)
            for (long index : new long[] {0, 1, 2, 3, 4, 2, 3, 40, 41}) {
                BatchPrefetcher.Batch got = prefetcher.next(index);
                int[] windows = new int[batch * (seqLen + 1)];
                int[] ids = new int[batch * seqLen];
                int[] targets = new int[batch * seqLen];
                direct.batch(index, batch, windows);
                Trainer.split(windows, batch, seqLen, ids, targets);
                assertArrayEquals(ids, got.ids(), "inputs of micro-batch " + index);
                assertArrayEquals(targets, got.targets(), "targets of micro-batch " + index);
            }
        }
    }
}
