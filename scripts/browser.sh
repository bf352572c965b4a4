#!/usr/bin/env bash
# Installs what the browser tests need: Debian's chromium (apt) and the npm
# package playwright-core (no browser download of its own) into
# ${XDG_CACHE_HOME:-$HOME/.cache}/swap-engine/playwright, unless they are there.
#
#   eval "$(scripts/browser.sh)"    # exports CHROMIUM_BIN and PLAYWRIGHT_CORE_DIR
#   cargo test -p tests --test browser
#
# Idempotent. Only the export lines go to standard output; progress goes to
# standard error. Fails (exit 1) when the browser cannot be installed or does
# not start: the browser tests never skip silently.
set -euo pipefail

PLAYWRIGHT_VERSION="${PLAYWRIGHT_VERSION:-1.65.1}"   # the version the tests were run against
dir="${XDG_CACHE_HOME:-$HOME/.cache}/swap-engine/playwright"

log() { echo "browser.sh: $*" >&2; }

find_chromium() {
    for c in "${CHROMIUM_BIN:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        if [[ -n "$c" && -x "$c" ]]; then echo "$c"; return; fi
    done
}

chromium="$(find_chromium || true)"
if [[ -z "$chromium" ]]; then
    if [[ "$(id -u)" -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
    log "installing Debian's chromium (apt-get)"
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        chromium fonts-dejavu-core >&2
    chromium="$(find_chromium || true)"
    if [[ -z "$chromium" ]]; then
        log "chromium is not at /usr/bin/chromium after installing it"
        exit 1
    fi
fi
if ! "$chromium" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1; then
    log "$chromium does not run"
    exit 1
fi

if [[ ! -f "$dir/node_modules/playwright-core/package.json" ]]; then
    log "installing playwright-core@$PLAYWRIGHT_VERSION into $dir"
    mkdir -p "$dir"
    # No browser download: playwright-core ships none, the tests use Debian's.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$dir" --no-audit --no-fund --silent \
        "playwright-core@$PLAYWRIGHT_VERSION" >&2
fi
if ! node -e "require('$dir/node_modules/playwright-core')" >/dev/null 2>&1; then
    log "playwright-core in $dir does not load with $(node --version 2>/dev/null || echo 'no node')"
    exit 1
fi
log "$("$chromium" --version 2>/dev/null | head -n1) at $chromium; playwright-core $(node -p "require('$dir/node_modules/playwright-core/package.json').version")"
echo "export CHROMIUM_BIN=$chromium"
echo "export PLAYWRIGHT_CORE_DIR=$dir/node_modules/playwright-core"
