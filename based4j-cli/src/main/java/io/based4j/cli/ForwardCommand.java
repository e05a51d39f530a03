package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.checkpoint.Safetensors;
import io.based4j.json.Json;
import io.based4j.json.JsonException;
import io.based4j.model.BasedModel;
import io.based4j.model.Session;
import io.based4j.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "forward", mixinStandardHelpOptions = true,
        description = "Run the parallel form over sequences of token ids and write float32 logits "
                + "[batch, length, padded vocab] to a safetensors file.")
final class ForwardCommand implements Callable<Integer> {
    @Mixin
    ModelOptions modelOptions = new ModelOptions();

    @Option(names = "--ids", paramLabel = "FILE.json", required = true,
            description = "JSON array of equal-length arrays of token ids.")
    Path idsFile;

    @Option(names = "--out", paramLabel = "FILE.safetensors", required = true, description = "Where to write the logits.")
    Path out;

    @Override
    public Integer call() throws IOException {
        int[][] ids = readIds(idsFile);
        OutputFiles.checkWritable("--out", out);
        try (Backend backend = modelOptions.backend(); BasedModel model = modelOptions.load(backend)) {
            int batch = ids.length;
            int len = ids[0].length;
            int vocab = model.config().vocabSize();
            int[] packed = new int[batch * len];
            int[] slots = new int[batch];
            int[] lengths = new int[batch];
            for (int b = 0; b < batch; b++) {
                for (int t = 0; t < len; t++) {
                    int id = ids[b][t];
                    if (id >= vocab) {
                        throw new IllegalArgumentException(idsFile + ": sequence " + b + ", position " + t + ": token "
                                + id + " is outside this model's vocabulary of " + vocab + " tokens");
                    }
                    packed[b * len + t] = id;
                }
                slots[b] = b;
                lengths[b] = len;
            }
            Session session = model.newSession(batch, len);
            long t0 = System.nanoTime();
            float[] logits = backend.download(model.forward(session, session.batch(slots, lengths), packed, true, null));
            Progress.note(String.format("forward over %d x %d tokens in %.2f s", batch, len, (System.nanoTime() - t0) / 1e9));
            Map<String, Tensor> tensors = new LinkedHashMap<>();
            tensors.put("logits", Tensor.ofFloats(logits, batch, len, model.config().paddedVocabSize()));
            Safetensors.write(out, tensors, Map.of("producer", "based4j forward", "vocab_size", String.valueOf(vocab)));
            Progress.note("wrote " + out);
        }
        return 0;
    }

    /** Reads and checks the ids file: a non-empty array of equal-length, non-empty arrays of ids >= 0. */
    static int[][] readIds(Path file) throws IOException {
        String text;
        try {
            text = Files.readString(file);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("--ids " + file + ": no such file");
        }
        Object root;
        try {
            root = Json.parse(text);
        } catch (JsonException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage());
        }
        if (!(root instanceof List<?> rows) || rows.isEmpty()) {
            throw new IllegalArgumentException(file + ": expected a non-empty JSON array of arrays of token ids");
        }
        int[][] out = new int[rows.size()][];
        for (int b = 0; b < rows.size(); b++) {
            if (!(rows.get(b) instanceof List<?> row) || row.isEmpty()) {
                throw new IllegalArgumentException(file + ": element " + b + " is not a non-empty array of token ids");
            }
            out[b] = new int[row.size()];
            for (int t = 0; t < row.size(); t++) {
                if (!(row.get(t) instanceof Long l) || l < 0 || l > Integer.MAX_VALUE) {
                    throw new IllegalArgumentException(file + ": sequence " + b + ", position " + t + ": "
                            + row.get(t) + " is not a token id (a non-negative integer)");
                }
                out[b][t] = l.intValue();
            }
            if (out[b].length != out[0].length) {
                throw new IllegalArgumentException(file + ": sequence " + b + " has " + out[b].length
                        + " tokens but sequence 0 has " + out[0].length + "; all must have the same length");
            }
        }
        return out;
    }
}
