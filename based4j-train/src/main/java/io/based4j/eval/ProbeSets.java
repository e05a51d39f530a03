package io.based4j.eval;

import io.based4j.json.Json;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Function;

/**
 * The built-in recall probes, made from {@link ProbeFacts} and shipped as JSONL resources ({@code probes/NAME.jsonl}
 * beside this class, in {@link RecallFile}'s format). Each comes in two variants: closed-book (the question alone:
 * what the model remembers from training) and in-context (a passage of {@value #PASSAGE} statements of the same kind,
 * shuffled, the asked one among them, comes first: the answer is in the context, the recall setting of the BASED
 * paper).
 * <ul>
 *   <li>{@code capitals}: "The capital of Ohio is" answered by "Columbus", for the fifty US states;</li>
 *   <li>{@code elements}: "The chemical element with the symbol Fe is" answered by "iron" and "The atomic number of
 *       iron is" answered by "26", for the 118 elements.</li>
 * </ul>
 * {@link #main} writes the files again from the facts; a test checks that the shipped files are exactly what it writes.
 */
public final class ProbeSets {
    /** Statements in an in-context passage (the asked one and others drawn at random). */
    public static final int PASSAGE = 8;
    /** Seed of the draws and shuffles of the in-context passages, fixed so the files are the same on every run. */
    private static final long SEED = 20240228L;

    /** The built-in tasks; task {@code T} runs the sets {@code T-closed-book} and {@code T-in-context}. */
    public static final List<String> TASKS = List.of("capitals", "elements");
    /** The two variants of every task, in the order they run. */
    public static final List<String> VARIANTS = List.of("closed-book", "in-context");

    private ProbeSets() {
    }

    /** One question about one fact, and the statement of that fact an in-context passage uses. */
    private record Fact(String id, String prompt, List<String> answers, String statement) {
    }

    /** The sets of a built-in task ({@code capitals} or {@code elements}), read from the shipped files. */
    public static List<RecallSet> task(String task) {
        if (!TASKS.contains(task)) {
            throw new IllegalArgumentException("no built-in task '" + task + "' (there are "
                    + String.join(", ", TASKS) + ")");
        }
        return VARIANTS.stream().map(v -> set(task + "-" + v)).toList();
    }

    /** The names of every built-in set, task by task. */
    public static List<String> setNames() {
        return TASKS.stream().flatMap(t -> VARIANTS.stream().map(v -> t + "-" + v)).toList();
    }

    /** A built-in set by name ({@code capitals-in-context}, ...), read from the shipped file. */
    public static RecallSet set(String name) {
        if (!setNames().contains(name)) {
            throw new IllegalArgumentException("no built-in set '" + name + "' (there are "
                    + String.join(", ", setNames()) + ")");
        }
        String resource = "probes/" + name + ".jsonl";
        try (InputStream in = ProbeSets.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalStateException("the built-in set " + resource + " is missing from this build");
            }
            return RecallFile.parse(name, "builtin:" + name, new String(in.readAllBytes(), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the built-in set " + resource, e);
        }
    }

    /** The JSONL text of a built-in set, made from the facts. */
    public static String generate(String name) {
        return switch (name) {
            case "capitals-closed-book" -> jsonl(capitals(), false);
            case "capitals-in-context" -> jsonl(capitals(), true);
            case "elements-closed-book" -> jsonl(elements(), false);
            case "elements-in-context" -> jsonl(elements(), true);
            default -> throw new IllegalArgumentException("no built-in set '" + name + "'");
        };
    }

    /** Writes every built-in set as {@code DIR/NAME.jsonl} (the shipped files: {@code src/main/resources/...}). */
    public static void main(String[] args) throws IOException {
        if (args.length != 1) {
            System.err.println("usage: ProbeSets DIR");
            System.exit(2);
        }
        Path dir = Path.of(args[0]);
        Files.createDirectories(dir);
        for (String name : setNames()) {
            Files.writeString(dir.resolve(name + ".jsonl"), generate(name));
        }
    }

    /** Groups of facts: an in-context passage draws its other statements from the asked fact's own group. */
    private static List<List<Fact>> capitals() {
        return List.of(ProbeFacts.CAPITALS.stream().map(c -> new Fact("capital:" + c.state(),
                "The capital of " + c.state() + " is", c.answers(),
                "The capital of " + c.state() + " is " + c.capital() + ".")).toList());
    }

    private static List<List<Fact>> elements() {
        Function<ProbeFacts.Element, Fact> symbol = e -> new Fact("symbol:" + e.symbol(),
                "The chemical element with the symbol " + e.symbol() + " is", e.names(),
                "The chemical element with the symbol " + e.symbol() + " is " + e.name() + ".");
        Function<ProbeFacts.Element, Fact> number = e -> new Fact("number:" + e.name(),
                "The atomic number of " + e.name() + " is", List.of(String.valueOf(e.number())),
                "The atomic number of " + e.name() + " is " + e.number() + ".");
        return List.of(ProbeFacts.ELEMENTS.stream().map(symbol).toList(),
                ProbeFacts.ELEMENTS.stream().map(number).toList());
    }

    private static String jsonl(List<List<Fact>> groups, boolean inContext) {
        Random random = new Random(SEED);
        StringBuilder sb = new StringBuilder();
        for (List<Fact> group : groups) {
            for (int i = 0; i < group.size(); i++) {
                Fact f = group.get(i);
                Map<String, Object> line = new LinkedHashMap<>();
                line.put("id", f.id());
                if (inContext) {
                    line.put("context", passage(group, i, random));
                }
                line.put("prompt", f.prompt());
                line.put("answers", f.answers());
                sb.append(Json.write(line)).append('\n');
            }
        }
        return sb.toString();
    }

    /** The asked statement and {@code PASSAGE - 1} others of its group, drawn without repeats, in shuffled order. */
    private static String passage(List<Fact> group, int asked, Random random) {
        List<Integer> others = new ArrayList<>();
        for (int j = 0; j < group.size(); j++) {
            if (j != asked) {
                others.add(j);
            }
        }
        List<Integer> chosen = new ArrayList<>(List.of(asked));
        for (int k = 0; k < PASSAGE - 1; k++) {
            chosen.add(others.remove(random.nextInt(others.size())));
        }
        for (int k = chosen.size() - 1; k > 0; k--) { // Fisher-Yates, spelled out so the order never depends on a library
            int j = random.nextInt(k + 1);
            chosen.set(k, chosen.set(j, chosen.get(k)));
        }
        return String.join(" ", chosen.stream().map(j -> group.get(j).statement()).toList());
    }
}
