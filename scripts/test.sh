#!/usr/bin/env bash
# The test command (README.md): sets up everything the tests need on this
# machine, then runs the whole test suite.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p proto        # extra arguments go to `cargo test`
#
# It installs and starts PostgreSQL (scripts/pg.sh) and a Kafka-protocol
# broker (scripts/kafka.sh; tansu from crates.io, built once, ~12 minutes on
# 2 cores), exports TEST_DATABASE_URL and TEST_KAFKA_BROKERS, and runs
# `cargo test --workspace`. The browser tests get Debian's chromium and the
# npm package playwright-core from scripts/browser.sh (CHROMIUM_BIN,
# PLAYWRIGHT_CORE_DIR). Builds go to $CARGO_TARGET_DIR, by default a
# directory outside the clone that later runs reuse.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/swap-engine/target}"
mkdir -p "$CARGO_TARGET_DIR"
# A one-off test build gains nothing from incremental state, which only
# costs disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The shared target directory collects a set of test executables per clone
# path and per change; ones untouched for two days are stale (cargo relinks
# any it still needs), and dropping them keeps the disk from filling up.
if [ -d "$CARGO_TARGET_DIR/debug/deps" ]; then
    find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -mtime +2 -delete || true
    rm -rf "$CARGO_TARGET_DIR/debug/incremental"
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

echo "test.sh: PostgreSQL" >&2
eval "$(scripts/pg.sh)"
echo "test.sh: Kafka-protocol broker" >&2
eval "$(scripts/kafka.sh)"
eval "$(scripts/anvil.sh)"
echo "test.sh: Chromium and playwright-core for the browser tests" >&2
eval "$(scripts/browser.sh)"
export TEST_DATABASE_URL TEST_KAFKA_BROKERS

echo "test.sh: cargo test (target dir $CARGO_TARGET_DIR)" >&2
cargo test --workspace --locked --no-fail-fast "$@"
