package io.based4j.cli;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.function.Consumer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** The {@code based4j} command. */
@Command(name = "based4j", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "Run BASED linear-attention language models (and attention baselines) on the CPU.",
        subcommands = {GenerateCommand.class, ForwardCommand.class, TokenizeCommand.class, InfoCommand.class,
                TrainCommand.class, MqarCommand.class, DataCommand.class, ServeCommand.class,
                BenchCommand.class, PlotCommand.class, EvalCommand.class, ExportCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    @Option(names = "--debug", scope = CommandLine.ScopeType.INHERIT,
            description = "Print stack traces of errors.")
    boolean debug;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    /**
     * The program's entry point: whatever goes wrong, including an {@link Error} in any thread, the user sees one
     * line {@code based4j: error: ...} (and a stack trace only with {@code --debug}) and the exit code 1.
     */
    public static void main(String[] args) {
        boolean debug = debugRequested(args);
        PrintWriter out = new PrintWriter(System.out, true);
        PrintWriter err = new PrintWriter(System.err, true);
        Thread.setDefaultUncaughtExceptionHandler((thread, e) -> {
            report(err, e, debug);
            System.exit(1);
        });
        int code;
        try {
            code = run(args, out, err);
        } catch (Throwable e) {
            code = report(err, e, debug);
        }
        out.flush();
        System.exit(code);
    }

    /** Runs the command line; returns the exit code (0 ok, 1 error, 2 bad usage). Never throws. */
    public static int run(String[] args, PrintWriter out, PrintWriter err) {
        return run(args, out, err, commandLine -> { });
    }

    /** {@link #run(String[], PrintWriter, PrintWriter)} after {@code extend} has been given the command line. */
    static int run(String[] args, PrintWriter out, PrintWriter err, Consumer<CommandLine> extend) {
        boolean debug = debugRequested(args);
        try {
            CommandLine cl = new CommandLine(new Main());
            extend.accept(cl);
            cl.setOut(out);
            cl.setErr(err);
            cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
                if (ex instanceof UsageException) {
                    commandLine.getErr().println("based4j: error: " + ex.getMessage());
                    commandLine.getErr().println("Try '" + commandLine.getCommandSpec().qualifiedName()
                            + " --help' for usage.");
                    commandLine.getErr().flush();
                    return 2;
                }
                return report(commandLine.getErr(), ex, debug);
            });
            cl.setParameterExceptionHandler((ex, a) -> {
                CommandLine c = ex.getCommandLine();
                c.getErr().println("based4j: error: " + ex.getMessage());
                c.getErr().println("Try '" + c.getCommandSpec().qualifiedName() + " --help' for usage.");
                c.getErr().flush();
                return 2;
            });
            // Errors (out of memory, stack overflow) pass through picocli's handlers: they end here
            return cl.execute(args);
        } catch (Throwable e) {
            return report(err, e, debug);
        }
    }

    /** Whether {@code --debug} (stack traces of errors) is among the arguments. */
    static boolean debugRequested(String[] args) {
        for (String a : args) {
            if (a.equals("--")) {
                return false;
            }
            if (a.equals("--debug")) {
                return true;
            }
        }
        return false;
    }

    /** Prints {@code e} as one error line (and its stack trace with {@code debug}); returns the exit code 1. */
    static int report(PrintWriter err, Throwable e, boolean debug) {
        try {
            err.println("based4j: error: " + Errors.describe(e));
            if (debug) {
                e.printStackTrace(err);
            }
            err.flush();
        } catch (Throwable reporting) {
            // nothing more can be said (the error stream is gone, or memory is exhausted): the exit code remains
        }
        return 1;
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"based4j " + build() + ", commit " + commit() + " (Java " + Runtime.version() + ")"};
        }

        /**
         * The commit the build was made from (scripts/build-commit.sh: "-dirty" where tracked files had uncommitted
         * changes), or "unknown" where it was not made in a git checkout.
         */
        static String commit() {
            try (InputStream in = Main.class.getResourceAsStream("commit.txt")) {
                String c = in == null ? "" : new String(in.readAllBytes(), StandardCharsets.UTF_8).strip();
                return c.isEmpty() ? "unknown" : c;
            } catch (IOException e) {
                return "unknown";
            }
        }

        /** The build's version from its jar, or "development build" where the classes run from no packaged jar. */
        static String build() {
            String v = Main.class.getPackage().getImplementationVersion();
            return v == null ? "development build" : v;
        }
    }
}
