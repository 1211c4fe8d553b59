#!/usr/bin/env bash
# Start a tansu broker in the foreground on 127.0.0.1:PORT.
#
#   scripts/start-broker.sh PORT [memory|sqlite] [DATA_DIR]
#
# memory (default): nothing is kept. sqlite: the database is DATA_DIR/tansu.db and survives a
# restart. tansu resolves a sqlite:// URL relative to its working directory (even one written
# with an absolute path), so the broker runs inside DATA_DIR (default: the current directory).
#
# Binary: $KONSUMER_TANSU, else the cached install (scripts/install-tansu.sh), else `tansu` on PATH.
set -euo pipefail

usage() {
    echo "usage: $0 PORT [memory|sqlite] [DATA_DIR]" >&2
    exit 2
}

[ $# -ge 1 ] && [ $# -le 3 ] || usage
PORT="$1"
STORAGE="${2:-memory}"
DATA_DIR="${3:-.}"
case "$PORT" in '' | *[!0-9]*) usage ;; esac

case "$STORAGE" in
    memory) ENGINE="memory://tansu/" ;;
    sqlite) ENGINE="sqlite://tansu.db" ;;
    *) usage ;;
esac

CACHE="${KONSUMER_CACHE:-$HOME/.cache/konsumer}"
if [ -n "${KONSUMER_TANSU:-}" ]; then
    TANSU="$KONSUMER_TANSU"
elif [ -x "$CACHE/tansu-0.6.0/bin/tansu" ]; then
    TANSU="$CACHE/tansu-0.6.0/bin/tansu"
elif command -v tansu >/dev/null 2>&1; then
    TANSU="$(command -v tansu)"
else
    echo "tansu not found: run scripts/install-tansu.sh (or scripts/test.sh, which installs it)" >&2
    exit 1
fi

mkdir -p "$DATA_DIR"
cd "$DATA_DIR"

# tansu reads these from the environment (and from a .env file); the flags below win over them,
# but a stray schema registry or OTLP endpoint from the caller's environment would change behaviour.
unset SCHEMA_REGISTRY OTEL_EXPORTER_OTLP_ENDPOINT

exec "$TANSU" broker \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    --storage-engine "$ENGINE"
