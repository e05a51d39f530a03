#!/usr/bin/env bash
# Installs what the server's end-to-end tests drive besides Java, where it is missing, from Debian's packages:
#   Node.js and npm   the official OpenAI client and Playwright, run by OpenAiClientTest and PlaygroundBrowserTest
#                     (their npm packages are pinned in based4j-serve/src/test/node and installed by the tests)
#   Chromium          the browser PlaygroundBrowserTest drives headless (/usr/bin/chromium)
# Run as root, or with sudo at hand. Does nothing where everything is there already.
set -euo pipefail

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
    echo "[test-tools] node $(node --version), npm $(npm --version) and $(/usr/bin/chromium --version 2>/dev/null | head -n 1) are there" >&2
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "[test-tools] error: installing ${missing[*]} needs root: run 'apt-get install ${missing[*]}' as root" >&2
        exit 1
    }
    SUDO=(sudo)
fi
command -v apt-get >/dev/null 2>&1 || {
    echo "[test-tools] error: no apt-get here; install ${missing[*]} (Node.js 20 or newer) by this system's means" >&2
    exit 1
}
echo "[test-tools] installing ${missing[*]} with apt-get" >&2
"${SUDO[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
