#!/usr/bin/env bash
# Demo: start a tansu broker (memory storage) on a free port, create topic `demo` with
# 6 partitions, and print the cluster's metadata as konsumer sees it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TANSU="$(bash scripts/install-tansu.sh | tail -n 1)"
export KONSUMER_TANSU="$TANSU"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000)))"

WORK="$(mktemp -d)"
BROKER_PID=""
cleanup() {
    if [ -n "$BROKER_PID" ]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "starting tansu on 127.0.0.1:$PORT (log: $WORK/broker.log)" >&2
bash scripts/start-broker.sh "$PORT" memory "$WORK" >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
for _ in $(seq 1 300); do
    port_open && break
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "tansu exited early:" >&2
        cat "$WORK/broker.log" >&2
        exit 1
    fi
    sleep 0.1
done
if ! port_open; then
    echo "tansu did not open port $PORT within 30 s:" >&2
    cat "$WORK/broker.log" >&2
    exit 1
fi

"$TANSU" topic create demo --partitions 6 --broker "tcp://127.0.0.1:$PORT" >&2

cargo run --quiet -p konsumer --example metadata -- "127.0.0.1:$PORT"
