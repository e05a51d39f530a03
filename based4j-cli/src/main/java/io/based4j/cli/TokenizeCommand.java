package io.based4j.cli;

import io.based4j.tokenizer.Gpt2Tokenizer;
import java.util.Arrays;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "tokenize", mixinStandardHelpOptions = true,
        description = "Print the GPT-2 token ids of a text (or the text of ids with --decode).")
final class TokenizeCommand implements Callable<Integer> {
    @Option(names = "--text", paramLabel = "TEXT", description = "Text to encode.")
    String text;

    @Option(names = "--decode", paramLabel = "IDS", description = "Ids to decode instead (e.g. 15496,995).")
    String decode;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        if ((text == null) == (decode == null)) {
            throw new UsageException("give exactly one of --text TEXT or --decode IDS");
        }
        Gpt2Tokenizer tok = Gpt2Tokenizer.load();
        if (text != null) {
            spec.commandLine().getOut().println(Arrays.stream(tok.encode(text)).mapToObj(Integer::toString)
                    .collect(Collectors.joining(" ")));
        } else {
            String decoded;
            try {
                decoded = tok.decode(Gpt2Tokenizer.parseIds(decode));
            } catch (IllegalArgumentException e) {
                throw new UsageException("--decode: " + e.getMessage()); // not an id, or one outside the vocabulary
            }
            spec.commandLine().getOut().println(decoded);
        }
        spec.commandLine().getOut().flush();
        return 0;
    }
}
