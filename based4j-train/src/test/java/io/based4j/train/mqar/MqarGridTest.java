package io.based4j.train.mqar;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The grids of an MQAR sweep: the paper's, the quick one, and grid files with their errors. */
class MqarGridTest {
    @TempDir
    Path tmp;

    @Test
    void theDefaultGridIsTheModelsOfMqarSpecAtThePapersFourRates() {
        MqarGrid g = MqarGrid.paper();
        List<MqarModel> based = g.models().stream().filter(m -> m.mixer().equals("based")).toList();
        assertEquals(9, based.size());
        for (int d : List.of(48, 64, 128)) {
            for (int f : List.of(8, 16, 24)) {
                assertTrue(based.contains(MqarModel.based(d, f)), "BASED d " + d + " f " + f);
            }
        }
        assertEquals(List.of(8, 16, 32, 64, 128, 256, 512, 1024), g.models().stream()
                .filter(m -> m.mixer().equals("sliding")).peek(m -> assertEquals(128, m.dModel()))
                .map(MqarModel::window).toList());
        assertEquals(List.of(MqarModel.attention(64), MqarModel.attention(128)), g.models().stream()
                .filter(m -> m.mixer().equals("attention")).toList());
        assertEquals(List.of(1e-3, 3.2e-3, 1e-2, 3.2e-2), g.lrs());
        assertEquals(32, g.epochs());
        assertEquals(MqarGenerator.paperTrain(), g.train());
        assertEquals(MqarGenerator.paperTest(), g.test());
        assertEquals(19 * 4, g.runs());
    }

    @Test
    void theQuickGridIsSmall() {
        MqarGrid q = MqarGrid.quick();
        assertEquals(8, q.runs());
        assertEquals(2, q.lrs().size());
        assertTrue(q.epochs() < MqarGrid.PAPER_EPOCHS);
        long examples = q.train().stream().mapToLong(MqarSlice::count).sum();
        assertEquals(30_000, examples);
        // the paper's seven test shapes, fewer examples of each
        assertEquals(MqarGenerator.paperTest().stream().map(s -> s.seqLen() + ":" + s.numKv()).toList(),
                q.test().stream().map(s -> s.seqLen() + ":" + s.numKv()).toList());
    }

    @Test
    void stateBytesFollowMqarSpec() {
        // E = 1 + f + f(f+1)/2 as MQAR-SPEC gives it
        assertEquals(45, MqarGenerator.taylorFeatures(8));
        assertEquals(153, MqarGenerator.taylorFeatures(16));
        assertEquals(325, MqarGenerator.taylorFeatures(24));
        assertEquals(4L * 65 * 45, MqarModel.based(64, 8).stateBytes());
        assertEquals(4L * 49 * 153, MqarModel.based(48, 16).stateBytes());
        assertEquals(4L * 129 * 325, MqarModel.based(128, 24).stateBytes());
        assertEquals(4L * 2 * 128 * 64, MqarModel.sliding(128, 64).stateBytes());
        assertEquals(4L * 2 * 128 * 1024, MqarModel.attention(128).stateBytes());
        // the paper's figure: BASED points at 2^13.5 .. 2^17.3, read off the figure to about a tenth (d 128, f 24 is
        // 2^17.36, hence 0.06); sliding window 2^13 .. 2^20 exactly, attention from 2^19
        double[][] basedPoints = {{64, 8, 13.5}, {128, 8, 14.5}, {64, 16, 15.3}, {128, 16, 16.3}, {128, 24, 17.3}};
        for (double[] p : basedPoints) {
            assertEquals(p[2], log2(MqarModel.based((int) p[0], (int) p[1]).stateBytes()), 0.06);
        }
        for (int i = 0; i < MqarGrid.PAPER_WINDOWS.size(); i++) {
            assertEquals(1L << (13 + i), MqarModel.sliding(128, MqarGrid.PAPER_WINDOWS.get(i)).stateBytes());
        }
        assertEquals(1L << 19, MqarModel.attention(64).stateBytes());
    }

    private static double log2(long x) {
        return Math.log(x) / Math.log(2);
    }

    @Test
    void aGridFileListsEveryCombinationOfItsEntries() throws IOException {
        Path file = tmp.resolve("grid.yaml");
        Files.writeString(file, """
                lrs: [1e-3, 0.01]
                epochs: 3
                train: 64:4:100
                models:
                  - {mixer: based, d_model: [32, 64], feature_dim: [4, 8]}
                  - mixer: sliding
                    d_model: 64
                    window: [8, 16]
                  - {mixer: attention, d_model: 32}
                """);
        MqarGrid g = MqarGrid.read(file);
        assertEquals(List.of(MqarModel.based(32, 4), MqarModel.based(32, 8), MqarModel.based(64, 4),
                MqarModel.based(64, 8), MqarModel.sliding(64, 8), MqarModel.sliding(64, 16), MqarModel.attention(32)),
                g.models());
        assertEquals(List.of(1e-3, 1e-2), g.lrs());
        assertEquals(3, g.epochs());
        assertEquals(List.of(new MqarSlice(64, 4, 100)), g.train());
        assertEquals(MqarGenerator.paperTest(), g.test(), "test: the paper's when not given");

        Path json = tmp.resolve("grid.json");
        Files.writeString(json, "{\"models\": [{\"mixer\": \"attention\", \"d_model\": [64, 128]}]}");
        MqarGrid j = MqarGrid.read(json);
        assertEquals(List.of(MqarModel.attention(64), MqarModel.attention(128)), j.models());
        assertEquals(MqarGrid.PAPER_LRS, j.lrs());
        assertEquals(MqarGrid.PAPER_EPOCHS, j.epochs());
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', quoteCharacter = '"', value = {
        "models: [{mixer: mamba, d_model: 64}]                                | models[0].mixer must be one of based, sliding, attention, got 'mamba'",
        "models: [{d_model: 64}]                                              | models[0].mixer must be one of",
        "models: [{mixer: attention}]                                         | models[0].d_model must be an integer or a list of integers",
        "models: [{mixer: based, d_model: 64}]                                | models[0].feature_dim must be",
        "models: [{mixer: sliding, d_model: 64, window: 0}]                   | models[0].window must be an integer or a list of integers in [1, ",
        "models: [{mixer: based, d_model: [64, x], feature_dim: 8}]           | models[0].d_model must be an integer or a list",
        "models: [{mixer: attention, d_model: 64, feature_dim: 8}]            | unknown setting models[0].feature_dim",
        "models: [{mixer: attention, d_model: [64, 64]}]                      | attention d64 is listed twice",
        "models: []                                                           | models is missing or empty",
        "lrs: [1e-3]                                                          | models is missing or empty",
        "{lrs: [0], models: [{mixer: attention, d_model: 64}]}                | lrs: learning rate 0.0 is out of range",
        "{lrs: [1e-3, 1e-3], models: [{mixer: attention, d_model: 64}]}       | lrs: learning rate 0.001 is listed twice",
        "{lrs: 1e-3, models: [{mixer: attention, d_model: 64}]}               | lrs must be a list of numbers",
        "{epochs: 0, models: [{mixer: attention, d_model: 64}]}               | epochs must be an integer in [1, ",
        "{train: '64:4', models: [{mixer: attention, d_model: 64}]}           | train: '64:4' is not L:KV:COUNT",
        "{test: '63:4:10', models: [{mixer: attention, d_model: 64}]}         | test: MQAR (seq_len=63",
        "{model: [{mixer: attention, d_model: 64}]}                           | models is missing",
        "{models: [{mixer: attention, d_model: 64}], extra: 1}                | unknown setting extra",
        "models: {mixer: attention}                                           | models must be a list of sections",
        "models: [attention]                                                  | models[0] must be a section",
        "[1, 2]                                                               | expected a map with models",
        "'models: [unclosed'                                                  | is not valid YAML",
    })
    void aWrongGridFileIsOneLineNamingTheFileAndField(String text, String message) throws IOException {
        Path file = tmp.resolve("grid.yaml");
        Files.writeString(file, text.startsWith("'") ? text.substring(1, text.length() - 1) : text);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MqarGrid.read(file));
        assertTrue(e.getMessage().startsWith(file.toString()) || e.getMessage().startsWith("MQAR grid " + file),
                e.getMessage());
        assertTrue(e.getMessage().contains(message.strip()), e.getMessage());
        assertEquals(1, e.getMessage().lines().count(), e.getMessage());
    }

    @Test
    void learningRatesFromTheCommandLine() {
        assertEquals(List.of(1e-3, 3.2e-3), MqarGrid.parseLrs("--lrs", "1e-3, 3.2e-3"));
        for (String bad : List.of("", "1e-3,", "x", "-1e-3", "1", "NaN", "1e-3,1e-3")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> MqarGrid.parseLrs("--lrs", bad));
            assertTrue(e.getMessage().startsWith("--lrs: "), e.getMessage());
        }
    }

    @Test
    void optionsReplaceTheGridsSettings() {
        MqarGrid q = MqarGrid.quick().with(List.of(1e-2), 1, List.of(new MqarSlice(16, 2, 8)), null);
        assertEquals(List.of(1e-2), q.lrs());
        assertEquals(1, q.epochs());
        assertEquals(List.of(new MqarSlice(16, 2, 8)), q.train());
        assertEquals(MqarGrid.quick().test(), q.test());
        assertEquals(MqarGrid.quick().models(), q.models());
    }
}
