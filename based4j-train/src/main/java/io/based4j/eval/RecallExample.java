package io.based4j.eval;

import java.util.List;

/**
 * One recall question: the model reads {@link #input()} (the context, then the prompt) and its greedy continuation is
 * scored against the accepted answers.
 *
 * @param line the example's line in its file (1-based), so results and errors point back to it
 * @param id the example's {@code id} field as text, or null when it has none
 * @param context the passage the answer may be found in; empty for a closed-book question
 * @param prompt the question or the text to continue
 * @param answers the accepted answers (at least one, none empty)
 */
public record RecallExample(int line, String id, String context, String prompt, List<String> answers) {
    public RecallExample {
        answers = List.copyOf(answers);
        if (prompt.isEmpty() || answers.isEmpty() || answers.stream().anyMatch(String::isEmpty)) {
            throw new IllegalArgumentException("a recall example needs a prompt and non-empty answers");
        }
    }

    /**
     * What the model reads: the context and the prompt joined by one space, or by nothing where the context is empty,
     * already ends in whitespace, or the prompt starts with whitespace.
     */
    public String input() {
        if (context.isEmpty() || Character.isWhitespace(context.charAt(context.length() - 1))
                || Character.isWhitespace(prompt.charAt(0))) {
            return context + prompt;
        }
        return context + " " + prompt;
    }

    /**
     * Whether any accepted answer appears in {@code output}, ignoring case: the "contains" score of the BASED paper's
     * recall tasks.
     */
    public static boolean contains(String output, List<String> answers) {
        for (String answer : answers) {
            for (int i = 0; i + answer.length() <= output.length(); i++) {
                if (output.regionMatches(true, i, answer, 0, answer.length())) {
                    return true;
                }
            }
        }
        return false;
    }
}
