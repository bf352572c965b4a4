#!/usr/bin/env bash
# Installs anvil (Foundry's local Ethereum node) for the node gateway's
# Ethereum tests, from the npm package @foundry-rs/anvil-linux-amd64, into
# ${XDG_CACHE_HOME:-$HOME/.cache}/swap-engine/anvil, unless it is there.
#
#   eval "$(scripts/anvil.sh)"      # exports ANVIL_BIN
#   cargo test -p node-gateway --test anvil
#
# Idempotent. The tests start and stop their own anvil processes on free
# ports; this script starts none. Only the export line goes to standard
# output; progress goes to standard error.
set -euo pipefail

ANVIL_VERSION="${ANVIL_VERSION:-1.7.1}"   # the version the tests were run against
dir="${XDG_CACHE_HOME:-$HOME/.cache}/swap-engine/anvil"

log() { echo "anvil.sh: $*" >&2; }

find_bin() {
    find "$dir/node_modules/@foundry-rs/anvil-linux-amd64" -type f -name anvil 2>/dev/null | head -n1 || true
}

bin="$(find_bin)"
if [[ -z "$bin" ]]; then
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) ;;
        *) log "the npm package is for Linux x86-64; on $(uname -s)-$(uname -m) install anvil (foundryup) and export ANVIL_BIN yourself"; exit 1 ;;
    esac
    log "installing @foundry-rs/anvil-linux-amd64@$ANVIL_VERSION into $dir"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --silent \
        "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION" >&2
    bin="$(find_bin)"
    if [[ -z "$bin" ]]; then
        log "the package holds no anvil binary; see $dir/node_modules/@foundry-rs"
        exit 1
    fi
fi
chmod +x "$bin"
if ! "$bin" --version >/dev/null 2>&1; then
    log "$bin does not run"
    exit 1
fi
log "$("$bin" --version | head -n1) at $bin"
echo "export ANVIL_BIN=$bin"
