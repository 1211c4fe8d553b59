#!/usr/bin/env bash
# THE test command: installs the tansu broker the integration tests use (once, into
# ~/.cache/konsumer) and stunnel (Debian's stunnel4, for the TLS tests) if missing, then
# formatting check, clippy with warnings denied, and every test.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() {
    local name="$1"
    shift
    local start end
    start=$(date +%s)
    printf '\n==> %s\n' "$name" >&2
    "$@"
    end=$(date +%s)
    printf '<== %s: %d s\n' "$name" "$((end - start))" >&2
}

total_start=$(date +%s)

source scripts/lib.sh
step "install tansu" use_tansu
step "install stunnel" use_stunnel

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets --all-features -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run" cargo nextest run --workspace --all-features --no-fail-fast
    step "cargo test --doc" cargo test --workspace --all-features --doc
else
    step "cargo test" cargo test --workspace --all-features
fi

printf '\nall steps passed in %d s\n' "$(($(date +%s) - total_start))" >&2
