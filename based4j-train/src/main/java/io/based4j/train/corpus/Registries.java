package io.based4j.train.corpus;

import java.net.URI;
import java.util.ArrayList;
import java.util.List;

/**
 * Where package files are downloaded from: Debian pool roots, tried in order (a package of a security update sits
 * in the security archive's {@code pool/updates/} until a point release copies it into the main archive's
 * {@code pool/}), and the npm registry's root.
 */
public record Registries(List<URI> debianPools, URI npm) {
    /** Debian's own mirror network and security archive, and the public npm registry. */
    public static final Registries DEFAULT = new Registries(
            List.of(URI.create("https://deb.debian.org/debian/pool/"),
                    URI.create("https://deb.debian.org/debian-security/pool/updates/")),
            URI.create("https://registry.npmjs.org/"));

    public Registries {
        debianPools = List.copyOf(debianPools);
        if (debianPools.isEmpty()) {
            throw new IllegalArgumentException("at least one Debian pool URL is needed");
        }
        for (URI u : debianPools) {
            check(u, "Debian pool");
        }
        check(npm, "npm registry");
    }

    private static void check(URI u, String what) {
        String scheme = u.getScheme();
        if (scheme == null || !(scheme.equals("http") || scheme.equals("https")) || u.getHost() == null) {
            throw new IllegalArgumentException(what + " URL " + u + " is not an http:// or https:// URL");
        }
    }

    /** The URLs to try for a package file, in order. */
    public List<URI> candidates(PackageFile f) {
        List<URI> out = new ArrayList<>();
        switch (f.registry()) {
            case DEBIAN -> debianPools.forEach(pool -> out.add(slash(pool).resolve(f.path())));
            case NPM -> out.add(slash(npm).resolve(f.path()));
        }
        return out;
    }

    /** The URL with a trailing '/', so that a relative path resolves beneath it. */
    private static URI slash(URI u) {
        String s = u.toString();
        return s.endsWith("/") ? u : URI.create(s + "/");
    }
}
