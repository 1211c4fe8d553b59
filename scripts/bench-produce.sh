#!/usr/bin/env bash
# Runs the producer throughput benchmark (benches/produce.rs): konsumer's Producer and
# librdkafka's FutureProducer (rdkafka crate) produce the same 100-byte records to one local tansu
# broker, taking turns; prints records/s and CPU seconds per 10^6 records of each, then the
# ratios — the table in BENCHMARKS.md. Installs tansu first if needed (scripts/install-tansu.sh).
#
#   bash scripts/bench-produce.sh                          # 500,000 records per run, 2 rounds
#   bash scripts/bench-produce.sh --records 2000000 --rounds 3
#
# Options (after the script name): --records N (or $KONSUMER_BENCH_RECORDS), --window N,
# --rounds N, --clients konsumer,rdkafka,awaited. Exits non-zero if any record fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/lib.sh
use_tansu

cargo bench --bench produce -- "$@"
