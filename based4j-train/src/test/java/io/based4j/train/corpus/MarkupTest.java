package io.based4j.train.corpus;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** The markup reductions: what goes, and that the words stay. */
class MarkupTest {
    @Test
    void tidyNormalizesLineEndsBlankRunsAndTheEnd() {
        assertEquals("a\n\nb\nc\n", Markup.tidy("\uFEFF\n\na  \r\n\n\n\nb\rc\t\n\n"));
        assertEquals("", Markup.tidy(" \n\n"));
    }

    @Test
    void restructuredTextKeepsProseAndSignatures() {
        String rst = """
                .. SPDX-License-Identifier: GPL-2.0
                .. _functools-label:

                ======================
                :mod:`functools` title
                ======================

                .. module:: functools
                   :synopsis: Higher-order functions.

                :Author: Someone

                Use :func:`~functools.cache` (see :ref:`the cache section <cache-label>`) or
                ``lru_cache(maxsize=None)``; read `the manual <https://example.org>`_ and **this**.

                .. decorator:: cache(user_function)

                   A cache.  For example::

                      @cache
                      def f(n): ...

                   .. versionadded:: 3.9

                .. toctree::
                   :maxdepth: 2

                   intro

                .. note::
                   Mind the gap.
                """;
        String expected = """
                functools title

                functools

                Author: Someone

                Use cache (see the cache section) or
                lru_cache(maxsize=None); read the manual and this.

                cache(user_function)

                   A cache.  For example:

                      @cache
                      def f(n): ...

                   New in version 3.9

                   intro

                Note:
                   Mind the gap.
                """;
        assertEquals(expected, Markup.rst(rst));
    }

    @Test
    void podKeepsHeadingsItemsAndTheTextOfFormattingCodes() {
        String pod = """
                =encoding utf8

                =head1 NAME

                perlintro - a brief introduction

                =over 4

                =item * B<bold> and I<italic> with C<< $a->{b} >> and
                L<perlsyn/"Compound Statements">, L<the docs|perldoc>, E<lt>tagE<gt>X<index>.

                =back

                =begin html

                <p>not text</p>

                =end html

                    verbatim C<code> stays as written

                =cut
                """;
        String expected = """
                NAME

                perlintro - a brief introduction

                * bold and italic with $a->{b} and
                perlsyn "Compound Statements", the docs, <tag>.

                    verbatim C<code> stays as written
                """;
        assertEquals(expected, Markup.pod(pod));
    }

    @Test
    void vimHelpDropsTagsMarkersAndTheModeline() {
        String help = """
                *usr_02.txt*\tFor Vim version 9.0.  Last change: 2021 Apr 24

                ==============================================================================
                *02.1*\tRunning Vim for the First Time

                See |usr_03.txt| and |:help|.  Type this: >

                \tgvim file.txt
                <
                EXAMPLES\t\t\t\t\t\t*examples* ~
                Text with a * star and a|pipe.

                 vim:tw=78:ts=8:noet:ft=help:norl:
                """;
        String expected = """
                For Vim version 9.0.  Last change: 2021 Apr 24

                Running Vim for the First Time

                See usr_03.txt and :help.  Type this:

                \tgvim file.txt

                EXAMPLES
                Text with a * star and a|pipe.
                """;
        assertEquals(expected, Markup.vimHelp(help));
    }

    @Test
    void gcideDropsSourceTagsAndPronunciationsAndKeepsTheDefinition() {
        String entry = """
                Affect \\Af*fect"\\, v. t. [imp. & p. p. {Affected}; p. pr. & vb.
                   n. {Affecting}.] [L. affectus; cf. F. affect[`e]. See {Fact}.]
                   1. To act upon; to produce an effect upon. [Obs.]
                      [1913 Webster]

                            As might affect the earth with cold heat. --Milton.
                      [1913 Webster] [PJC]
                   2. The [ae]sir and c[ae]sar; [=a]ble. [Webster 1913 Suppl.] Done.
                """;
        String expected = """
                Affect, v. t. [imp. & p. p. Affected; p. pr. & vb.
                   n. Affecting.] [L. affectus; cf. F. affecte. See Fact.]
                   1. To act upon; to produce an effect upon. [Obs.]

                            As might affect the earth with cold heat. --Milton.
                   2. The aesir and caesar; able. Done.
                """;
        assertEquals(expected, Markup.gcide(entry));
    }
}
