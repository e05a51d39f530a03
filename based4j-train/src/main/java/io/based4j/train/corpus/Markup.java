package io.based4j.train.corpus;

import java.util.Map;
import java.util.Set;
import java.util.function.Function;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Cheap reductions of documentation markup to readable text: a few patterns each, enough to drop what a reader
 * would not see (labels, directives, role and link syntax, formatting codes, tags) while keeping the words. They
 * do not parse the markup; unusual constructs pass through as they are.
 */
final class Markup {
    private Markup() {
    }

    // ---------------------------------------------------------------- plain text

    private static final Pattern TRAILING_SPACE = Pattern.compile("[ \\t]+(?=\\n)");
    private static final Pattern BLANK_RUN = Pattern.compile("\\n{3,}");

    /**
     * Unix line ends, no trailing blanks on a line, at most one empty line in a row, no empty lines at the start,
     * and exactly one line end at the end (an empty text stays empty).
     */
    static String tidy(String text) {
        String t = text.replace("\r\n", "\n").replace('\r', '\n');
        if (!t.isEmpty() && t.charAt(0) == '\uFEFF') {
            t = t.substring(1);
        }
        t = TRAILING_SPACE.matcher(t + "\n").replaceAll("");
        t = BLANK_RUN.matcher(t).replaceAll("\n\n").strip();
        return t.isEmpty() ? "" : t + "\n";
    }

    // ---------------------------------------------------------------- reStructuredText

    private static final Pattern RST_DIRECTIVE = Pattern.compile("^(\\s*)\\.\\.\\s+([\\w:.-]+)::\\s*(.*)$");
    private static final Pattern RST_COMMENT = Pattern.compile("^\\s*\\.\\.(\\s.*)?$");
    private static final Pattern RST_OPTION = Pattern.compile("^\\s+:[\\w -]+:(\\s.*)?$");
    private static final Pattern RST_ADORNMENT = Pattern.compile("^([=\\-~^\"'`#*+_:.<>])\\1{3,}\\s*$");
    private static final Pattern RST_ROLE = Pattern.compile(":(?:[\\w.+-]+:)+`([^`]+)`");
    private static final Pattern RST_LINK = Pattern.compile("`([^`<]*?)\\s*<[^>`]*>`_{0,2}");
    private static final Pattern RST_REF = Pattern.compile("`([^`]+)`_{1,2}(?!\\w)");
    private static final Pattern RST_LITERAL = Pattern.compile("``(.+?)``");
    private static final Pattern RST_INTERPRETED = Pattern.compile("`([^`]+)`");
    private static final Pattern RST_STRONG = Pattern.compile("\\*\\*(\\S|\\S.*?\\S)\\*\\*");
    private static final Pattern RST_FIELD = Pattern.compile("^(\\s*):([^:`]+):(\\s|$)");
    private static final Pattern RST_TARGET_TITLE = Pattern.compile("\\s*<[^>]*>$");

    /** Directives whose arguments are not prose (file names, languages, options): the whole line goes. */
    private static final Set<String> RST_SILENT = Set.of("include", "literalinclude", "toctree", "highlight",
            "index", "moduleauthor", "sectionauthor", "testsetup", "testcleanup", "testcode", "testoutput",
            "doctest", "code-block", "code", "sourcecode", "image", "figure", "only", "raw", "tabularcolumns",
            "kernel-doc", "kernel-abi", "kernel-feat", "kernel-include", "c:namespace", "c:namespace-push",
            "c:namespace-pop", "cssclass", "contents", "table", "list-table", "csv-table", "flat-table",
            "productionlist", "program", "currentmodule", "default-role", "role", "ifconfig", "impl-detail",
            "availability", "audit-event", "audit-event-table", "opcode", "pdbcommand", "rst-class", "class-type");

    /** Admonitions and version notes, as the words they stand for. */
    private static final Map<String, String> RST_WORDS = Map.ofEntries(
            Map.entry("note", "Note:"), Map.entry("warning", "Warning:"), Map.entry("caution", "Caution:"),
            Map.entry("important", "Important:"), Map.entry("tip", "Tip:"), Map.entry("hint", "Hint:"),
            Map.entry("attention", "Attention:"), Map.entry("danger", "Danger:"), Map.entry("error", "Error:"),
            Map.entry("seealso", "See also:"), Map.entry("versionadded", "New in version"),
            Map.entry("versionchanged", "Changed in version"), Map.entry("deprecated", "Deprecated since version"),
            Map.entry("deprecated-removed", "Deprecated since version"));

    /** reStructuredText (Sphinx and kernel-doc flavours) reduced to its text. */
    static String rst(String text) {
        StringBuilder out = new StringBuilder(text.length());
        boolean inDirectiveOptions = false;
        for (String line : tidy(text).split("\n", -1)) {
            Matcher d = RST_DIRECTIVE.matcher(line);
            if (d.matches()) {
                String name = d.group(2);
                String args = d.group(3).strip();
                inDirectiveOptions = true;
                if (RST_SILENT.contains(name) || name.equals("SPDX-License-Identifier")) {
                    continue;
                }
                String word = RST_WORDS.get(name);
                String kept = word == null ? args : args.isEmpty() ? word : word + " " + args;
                if (!kept.isEmpty()) {
                    out.append(d.group(1)).append(inline(kept)).append('\n');
                }
                continue;
            }
            if (inDirectiveOptions && RST_OPTION.matcher(line).matches()) {
                continue;
            }
            inDirectiveOptions = false;
            if (RST_COMMENT.matcher(line).matches() || RST_ADORNMENT.matcher(line).matches()) {
                continue;
            }
            String l = inline(line);
            l = RST_FIELD.matcher(l).replaceFirst("$1$2:$3");
            if (l.endsWith("::")) {
                String before = l.substring(0, l.length() - 2);
                l = before.isBlank() || before.endsWith(" ") ? before.stripTrailing() : before + ":";
            }
            out.append(l).append('\n');
        }
        return tidy(out.toString());
    }

    private static String inline(String line) {
        if (line.indexOf('`') < 0 && line.indexOf('*') < 0) {
            return line;
        }
        String l = replace(RST_ROLE, line, m -> {
            String t = m.group(1);
            if (t.endsWith(">") && t.contains("<")) {
                String title = RST_TARGET_TITLE.matcher(t).replaceFirst("");
                t = title.isEmpty() ? t.substring(t.lastIndexOf('<') + 1, t.length() - 1) : title;
            }
            if (t.startsWith("~")) {
                t = t.substring(t.lastIndexOf('.') + 1); // Sphinx shows the last component only
            }
            return t.startsWith("!") ? t.substring(1) : t;
        });
        l = replace(RST_LITERAL, l, m -> m.group(1));
        l = replace(RST_LINK, l, m -> m.group(1));
        l = replace(RST_REF, l, m -> m.group(1));
        l = replace(RST_INTERPRETED, l, m -> m.group(1));
        return replace(RST_STRONG, l, m -> m.group(1));
    }

    // ---------------------------------------------------------------- POD

    private static final Pattern POD_HEADING = Pattern.compile("^=head\\d\\s+(.*)$");
    private static final Pattern POD_ITEM = Pattern.compile("^=item\\s*(.*)$");
    private static final Pattern POD_COMMAND = Pattern.compile("^=[a-zA-Z]\\w*.*$");
    private static final Pattern POD_CODE_DOUBLE = Pattern.compile("[BCEFIJLSXZ]<{2,}\\s+(.*?)\\s+>{2,}",
            Pattern.DOTALL);
    private static final Pattern POD_CODE = Pattern.compile("([BCEFIJLSXZ])<([^<>]*)>");
    private static final Map<String, String> POD_ESCAPES = Map.of("lt", "<", "gt", ">", "verbar", "|", "sol", "/",
            "quot", "\"", "amp", "&", "apos", "'", "nbsp", " ");

    /**
     * Perl's POD: headings and items as lines, other commands dropped, formatting codes (which may span lines)
     * reduced to their text outside verbatim (indented) paragraphs.
     */
    static String pod(String text) {
        StringBuilder out = new StringBuilder(text.length());
        boolean skipping = false; // inside =begin ... =end of a non-text format
        for (String line : tidy(text).split("\n", -1)) {
            if (line.startsWith("=begin")) {
                skipping = true;
                continue;
            }
            if (line.startsWith("=end")) {
                skipping = false;
                continue;
            }
            if (skipping) {
                continue;
            }
            Matcher h = POD_HEADING.matcher(line);
            Matcher it = POD_ITEM.matcher(line);
            if (h.matches()) {
                out.append(h.group(1)).append('\n');
            } else if (it.matches()) {
                out.append(it.group(1)).append('\n');
            } else if (!POD_COMMAND.matcher(line).matches()) {
                out.append(line).append('\n');
            }
        }
        StringBuilder reduced = new StringBuilder(out.length());
        for (String para : tidy(out.toString()).split("\n\n")) {
            boolean verbatim = !para.isEmpty() && Character.isWhitespace(para.charAt(0));
            reduced.append(verbatim ? para : podCodes(para)).append("\n\n");
        }
        return tidy(reduced.toString());
    }

    private static String podCodes(String line) {
        if (line.indexOf('<') < 0) {
            return line;
        }
        String l = line;
        for (int round = 0; round < 8; round++) { // codes nest; a few rounds undo any real nesting
            String before = l;
            l = replace(POD_CODE_DOUBLE, l, m -> m.group(1));
            l = replace(POD_CODE, l, m -> podCode(m.group(1).charAt(0), m.group(2)));
            if (l.equals(before)) {
                break;
            }
        }
        return l;
    }

    private static String podCode(char code, String body) {
        return switch (code) {
            case 'E' -> POD_ESCAPES.getOrDefault(body, body.matches("\\d{1,6}")
                    && Character.isValidCodePoint(Integer.parseInt(body)) ? Character.toString(Integer.parseInt(body))
                    : "E<" + body + ">");
            case 'X', 'Z' -> "";
            case 'L' -> {
                int bar = body.indexOf('|');
                String t = bar >= 0 ? body.substring(0, bar) : body;
                yield t.startsWith("/") ? t.substring(1) : t.replace("/\"", " \"");
            }
            default -> body;
        };
    }

    // ---------------------------------------------------------------- Vim help

    private static final Pattern VIM_TAG = Pattern.compile("(?<=^|\\s)\\*[^\\s*|\"]+\\*(?=\\s|$)");
    private static final Pattern VIM_LEADING_TAGS = Pattern.compile("^(\\*[^\\s*|\"]+\\*\\s*)+");
    private static final Pattern VIM_LINK = Pattern.compile("\\|([^\\s|]+)\\|");
    private static final Pattern VIM_CODE_START = Pattern.compile("(^|\\s)>$");
    private static final Pattern VIM_CODE_END = Pattern.compile("^<(?=\\s|$)");
    private static final Pattern VIM_HEADER = Pattern.compile("\\s~$");
    private static final Pattern VIM_MODELINE = Pattern.compile("\\s*vim:[\\w=:]+:?\\s*$");
    private static final Pattern VIM_RULE = Pattern.compile("^[=-]{10,}\\s*$");

    /** Vim help: tags dropped, links and header marks reduced, code-block markers and the modeline dropped. */
    static String vimHelp(String text) {
        StringBuilder out = new StringBuilder(text.length());
        for (String line : tidy(text).split("\n", -1)) {
            if (VIM_RULE.matcher(line).matches()) {
                continue;
            }
            String l = VIM_LEADING_TAGS.matcher(line).replaceFirst("");
            l = VIM_TAG.matcher(l).replaceAll("");
            l = VIM_LINK.matcher(l).replaceAll("$1");
            l = VIM_CODE_START.matcher(l).replaceFirst("$1");
            l = VIM_CODE_END.matcher(l).replaceFirst("");
            l = VIM_HEADER.matcher(l).replaceFirst("");
            l = VIM_MODELINE.matcher(l).replaceFirst("");
            out.append(l).append('\n');
        }
        return tidy(out.toString());
    }

    // ---------------------------------------------------------------- GCIDE (dictd format)

    private static final Pattern GCIDE_SOURCE_LINE = Pattern.compile(
            "(?m)^[ \\t]*(?:\\[[^\\]\\n]*(?:Webster|WordNet|PJC|Century|RDH|\\bAS\\b)[^\\]\\n]*\\][ \\t]*)+\\n");
    private static final Pattern GCIDE_SOURCE_TAG = Pattern.compile(
            "[ \\t]*\\[[^\\[\\]\\n]*(?:Webster|WordNet|PJC|Century Dict)[^\\[\\]\\n]*\\]");
    private static final Pattern GCIDE_PRONUNCIATION = Pattern.compile("[ \\t]*\\\\[^\\\\\\n]*\\\\");
    private static final Pattern GCIDE_BRACES = Pattern.compile("\\{([^{}\\n]*)\\}");
    private static final Pattern GCIDE_ACCENTED = Pattern.compile("\\[[=~.'\"`^-]([a-zA-Z]{1,2})\\]|\\[([a-zA-Z]{1,2})\\^\\]");
    private static final Map<String, String> GCIDE_LETTERS = Map.of("[ae]", "ae", "[AE]", "AE", "[oe]", "oe",
            "[OE]", "OE", "[eth]", "th", "[thorn]", "th", "[imac]", "i", "[aum]", "a", "[asl]", "a", "[ymac]", "y");
    private static final Pattern GCIDE_NAMED = Pattern.compile("\\[(?:ae|AE|oe|OE|eth|thorn|imac|aum|asl|ymac)\\]");

    /**
     * An entry of the GCIDE dictionary: source tags ({@code [1913 Webster]}) and pronunciations
     * ({@code \Af*fect"\}) dropped, cross-reference braces removed, accented-letter codes ({@code [=a]}) written
     * as the plain letter.
     */
    static String gcide(String entry) {
        String t = GCIDE_SOURCE_LINE.matcher(entry + "\n").replaceAll("");
        t = GCIDE_SOURCE_TAG.matcher(t).replaceAll("");
        t = GCIDE_PRONUNCIATION.matcher(t).replaceAll("");
        t = GCIDE_BRACES.matcher(t).replaceAll("$1");
        t = replace(GCIDE_ACCENTED, t, m -> m.group(1) != null ? m.group(1) : m.group(2));
        t = replace(GCIDE_NAMED, t, m -> GCIDE_LETTERS.get(m.group()));
        return tidy(t);
    }

    // ---------------------------------------------------------------- helpers

    private static String replace(Pattern p, String s, Function<Matcher, String> f) {
        Matcher m = p.matcher(s);
        if (!m.find()) {
            return s;
        }
        StringBuilder sb = new StringBuilder(s.length());
        do {
            m.appendReplacement(sb, Matcher.quoteReplacement(f.apply(m)));
        } while (m.find());
        m.appendTail(sb);
        return sb.toString();
    }
}
