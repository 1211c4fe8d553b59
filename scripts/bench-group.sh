#!/usr/bin/env bash
# Runs the rebalance latency benchmark (benches/group_join.rs): for konsumer's Coordinator and
# for librdkafka's consumer (rdkafka crate), the time from a second member starting to both
# members holding their partitions, on one local tansu broker, taking turns; prints each round,
# the medians and the ratio — the table in BENCHMARKS.md. Installs tansu first if needed.
#
#   bash scripts/bench-group.sh              # 5 rounds
#   bash scripts/bench-group.sh --rounds 9
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/lib.sh
use_tansu

cargo bench --bench group_join -- "$@"
