#!/usr/bin/env bash
# Install the tansu broker (Kafka-compatible, used by konsumer's tests) into a cache directory
# outside the project, once. Idempotent: a working install is reused.
#
#   scripts/install-tansu.sh        -> last line of stdout is the path of the tansu binary
#
# Environment: KONSUMER_CACHE (default: $HOME/.cache/konsumer).
# Progress goes to stderr; stdout carries only the binary path.
set -euo pipefail

TANSU_VERSION="0.6.0"
CACHE="${KONSUMER_CACHE:-$HOME/.cache/konsumer}"
ROOT="$CACHE/tansu-$TANSU_VERSION"
BIN="$ROOT/bin/tansu"
BUILD_DIR="$CACHE/tansu-$TANSU_VERSION-build"

log() { printf 'install-tansu: %s\n' "$*" >&2; }

works() {
    [ -x "$BIN" ] && { "$BIN" --version >/dev/null 2>&1 || "$BIN" --help >/dev/null 2>&1; }
}

# Another install into the same root (e.g. a parallel run of this script) may be under way:
# wait for it instead of starting a second build that would fight over the same directory.
wait_for_other_install() {
    local waited=0
    while pgrep -f "cargo install tansu .*--root $ROOT" >/dev/null 2>&1; do
        if [ "$waited" -eq 0 ]; then
            log "another 'cargo install tansu' into $ROOT is running; waiting for it"
        fi
        sleep 5
        waited=$((waited + 5))
    done
}

wait_for_other_install

if works; then
    log "tansu $TANSU_VERSION already installed"
    printf '%s\n' "$BIN"
    exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found on PATH: install Rust (https://rustup.rs) first"
    exit 1
fi

log "installing tansu $TANSU_VERSION into $ROOT (about 7-15 minutes the first time)"
mkdir -p "$ROOT"
start=$(date +%s)
# A target dir of its own under the cache: never touches the project's target/.
CARGO_TARGET_DIR="$BUILD_DIR" cargo install tansu \
    --version "$TANSU_VERSION" --locked --features dynostore,libsql \
    --root "$ROOT" 1>&2

if ! works; then
    log "install finished but $BIN does not run"
    exit 1
fi
rm -rf "$BUILD_DIR"
log "installed in $(($(date +%s) - start)) s"
printf '%s\n' "$BIN"
