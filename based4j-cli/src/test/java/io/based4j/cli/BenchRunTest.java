package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
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
     * The commit a build was made from, in {@code --version} and so in every benchmark's JSON: the checkout's HEAD
     * (with "-dirty" where the build's sources had changes) where git answers in it, as the build asked it just
     * before these tests; "unknown" where it does not.
     */
    @Test
    void theVersionNamesTheCommitOfTheBuild() throws Exception {
        String commit = Main.Version.commit();
        String head = gitHead(Path.of(System.getProperty("based4j.home")));
        if (head == null) {
            assertEquals("unknown", commit);
        } else {
            assertTrue(commit.matches(head + "(-dirty)?"), commit + " against HEAD " + head);
        }
        CliTest.Result r = CliTest.run("--version");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().strip().matches("based4j .+, commit " + commit + " \\(Java .+\\)"), r.out());
    }

    /** {@code git rev-parse --short=12 HEAD} in dir, or null where git does not answer there. */
    private static String gitHead(Path dir) throws InterruptedException {
        try {
            Process p = new ProcessBuilder("git", "-C", dir.toString(), "rev-parse", "--short=12", "HEAD")
                    .redirectError(ProcessBuilder.Redirect.DISCARD).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
            return p.waitFor() == 0 && !out.isEmpty() ? out : null;
        } catch (IOException e) {
            return null;  // no git
        }
    }
}
