#!/usr/bin/env bash
# Starts a local Kafka-protocol broker (tansu, from crates.io) for the event
# bus tests, installing it first if it is missing.
#
#   eval "$(scripts/kafka.sh)"      # exports TEST_KAFKA_BROKERS
#   cargo test -p infra --test bus
#
# Idempotent: a broker already listening on the port is reused. Data and logs
# live in ${SWAP_TEST_DIR:-/tmp/swap-test}/kafka (tansu.db, tansu.log, tansu.pid).
# Only the export line goes to standard output; progress goes to standard error.
# `scripts/kafka.sh stop` stops a broker this script started.
set -euo pipefail

HOST=127.0.0.1
PORT="${KAFKA_PORT:-9092}"
DIR="${SWAP_TEST_DIR:-/tmp/swap-test}/kafka"
TANSU_VERSION="${TANSU_VERSION:-0.6.0}"   # the version the bus tests were run against
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

log() { echo "kafka.sh: $*" >&2; }

port_open() {
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

if [[ "${1:-}" == "stop" ]]; then
    pid="$(cat "$DIR/tansu.pid" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        # tansu keeps its port open for a while after SIGTERM (answering
        # with errors): wait for the process itself to go.
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "broker $pid still running after 10 s, killing it"
            kill -9 "$pid"
        fi
        log "stopped broker $pid"
    else
        log "no broker started by this script is running"
    fi
    rm -f "$DIR/tansu.pid"
    exit 0
fi

if port_open; then
    log "a broker is already listening on $HOST:$PORT, reusing it"
    echo "export TEST_KAFKA_BROKERS=$HOST:$PORT"
    exit 0
fi

if ! command -v tansu >/dev/null 2>&1; then
    log "installing tansu (cargo install, about 12 minutes on 2 cores)"
    version_arg=()
    [[ -n "$TANSU_VERSION" ]] && version_arg=(--version "$TANSU_VERSION")
    cargo install tansu "${version_arg[@]}" --features dynostore,libsql --locked >&2
fi

mkdir -p "$DIR"
cd "$DIR"
log "starting tansu $(tansu --version 2>/dev/null | head -n1) in $DIR (log: $DIR/tansu.log)"
nohup tansu broker \
    --listener-url "tcp://$HOST:$PORT" \
    --advertised-listener-url "tcp://$HOST:$PORT" \
    --storage-engine "sqlite://tansu.db" \
    >>"$DIR/tansu.log" 2>&1 </dev/null &
echo $! >"$DIR/tansu.pid"

for _ in $(seq 1 300); do
    if port_open; then
        log "broker up on $HOST:$PORT (pid $(cat "$DIR/tansu.pid"))"
        echo "export TEST_KAFKA_BROKERS=$HOST:$PORT"
        exit 0
    fi
    if ! kill -0 "$(cat "$DIR/tansu.pid")" 2>/dev/null; then
        log "tansu exited while starting; last lines of $DIR/tansu.log:"
        tail -n 30 "$DIR/tansu.log" >&2
        exit 1
    fi
    sleep 0.1
done
log "tansu did not open $HOST:$PORT within 30 s; last lines of $DIR/tansu.log:"
tail -n 30 "$DIR/tansu.log" >&2
exit 1
