#!/usr/bin/env bash
# Regenerates the peer record fixtures in tests/fixtures/records/ (see the README there):
# record sets written by librdkafka and kafka-python, fetched raw from a tansu broker.
#
#   bash scripts/capture-fixtures.sh
#
# Installs tansu (once, into the cache), makes a Python venv with kafka-python and its codec
# packages under ${KONSUMER_CACHE:-$HOME/.cache/konsumer}/pyenv, then runs the ignored test
# `capture_record_fixtures`, which starts the broker, produces, fetches and writes the files.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CACHE="${KONSUMER_CACHE:-$HOME/.cache/konsumer}"
VENV="$CACHE/pyenv"
# kafka-python and the codec libraries it uses: python-snappy (xerial snappy), lz4 (frame),
# zstandard, and xxhash (the old, broken LZ4 header checksum of magic-0 messages).
PY_PACKAGES=(kafka-python python-snappy cramjam lz4 zstandard xxhash)

log() { printf 'capture-fixtures: %s\n' "$*" >&2; }

out="$(bash scripts/install-tansu.sh)"
KONSUMER_TANSU="$(printf '%s\n' "$out" | tail -n 1)"
export KONSUMER_TANSU
log "tansu: $KONSUMER_TANSU"

if [ ! -x "$VENV/bin/python" ]; then
    log "creating the Python venv $VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import kafka, snappy, lz4.frame, zstandard, xxhash' 2>/dev/null; then
    log "installing ${PY_PACKAGES[*]} into $VENV"
    "$VENV/bin/python" -m pip install --quiet "${PY_PACKAGES[@]}" >&2
fi
"$VENV/bin/python" -m pip list 2>/dev/null | grep -Ei '^(kafka-python|python-snappy|cramjam|lz4|zstandard|xxhash) ' >&2 || true

KONSUMER_CAPTURE_DIR=tests/fixtures/records \
    KONSUMER_PYTHON="$VENV/bin/python" \
    cargo test --test integration capture_record_fixtures -- --ignored --nocapture

log "fixtures:"
ls -l tests/fixtures/records >&2
du -sh tests/fixtures/records >&2
