package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.junit.jupiter.api.Test;

/** The settings a benchmark's JSON records: based4j's system properties alone, by name, the launcher's own left out. */
class BenchRunTest {
    @Test
    void settingsAreTheBased4jPropertiesButTheHome() {
        Properties p = new Properties();
        p.setProperty("based4j.cuda.linearDeferVersion", "7");
        p.setProperty("based4j.cuda.linearDeferMinBlocks", "1");
        p.setProperty("based4j.home", "/opt/based4j");
        p.setProperty("based4j.stderr.fd", "11");
        p.setProperty("java.version", "25");
        p.setProperty("based4jx.other", "no");
        Map<String, String> settings = BenchRun.settings(p);
        assertEquals(List.of("based4j.cuda.linearDeferMinBlocks", "based4j.cuda.linearDeferVersion"),
                List.copyOf(settings.keySet()), "sorted by name");
        assertEquals("7", settings.get("based4j.cuda.linearDeferVersion"));
        assertEquals(Map.of(), BenchRun.settings(new Properties()));
    }

    /**
     * The commit a build was made from, in {@code --version} and so in every benchmark's JSON: a commit hash (with
     * "-dirty" where tracked files had changes) when built in a git checkout, as this one is where it has a .git.
     */
    @Test
    void theVersionNamesTheCommitOfTheBuild() {
        String commit = Main.Version.commit();
        boolean checkout = Files.exists(Path.of(System.getProperty("based4j.home"), ".git"));
        assertTrue(commit.matches(checkout ? "[0-9a-f]{12,40}(-dirty)?" : "[0-9a-f]{12,40}(-dirty)?|unknown"), commit);
        CliTest.Result r = CliTest.run("--version");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().strip().matches("based4j .+, commit " + commit + " \\(Java .+\\)"), r.out());
    }
}
