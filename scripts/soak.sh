#!/usr/bin/env bash
# The no-loss suite's long mode (cli/tests/no_loss.rs, RELIABILITY.md): three `konsumer consume`
# processes on a local tansu broker; 1,000,000 records with a member killed (SIGKILL) every few
# seconds, and 200,000 records with members stopped (SIGTERM) and started again, with and
# without the sidechannel. Installs tansu first if needed (scripts/install-tansu.sh). One test at
# a time, so the figures are not skewed by the tests competing for the cores. Each test prints a
# `no-loss summary:` line (the figures of RELIABILITY.md); the run fails on a lost record.
#
#   bash scripts/soak.sh                  # all three tests (about 10 minutes on 2 cores)
#   bash scripts/soak.sh kill_9           # only the tests whose names contain `kill_9`
#   KONSUMER_NO_LOSS_SEED=42 bash scripts/soak.sh   # repeat a run's victims and pauses
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/lib.sh
use_tansu

start=$(date +%s)
KONSUMER_SOAK=1 cargo test -p konsumer-cli --test no_loss -- --nocapture --test-threads=1 "$@"
printf '\nsoak passed in %d s\n' "$(($(date +%s) - start))" >&2
