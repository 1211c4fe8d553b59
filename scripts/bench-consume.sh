#!/usr/bin/env bash
# Runs the consumer throughput benchmark (benches/consume.rs): konsumer's ConsumerService and
# librdkafka's BaseConsumer and StreamConsumer (rdkafka crate) each read the same 10^6 records
# of 100 bytes from one local tansu broker (6 partitions, one member, a fresh group per run),
# taking turns, each in a process of its own; prints records/s, MB/s, CPU seconds per 10^6
# records and peak RSS of each, then the ratios konsumer / each rdkafka client — the "Consumer"
# tables in BENCHMARKS.md. Installs tansu first if needed (scripts/install-tansu.sh).
#
#   bash scripts/bench-consume.sh                            # 10^6 records, 3 rounds
#   bash scripts/bench-consume.sh --fetch-max-wait-ms 10     # tansu holds each fetch less
#   bash scripts/bench-consume.sh --value-len 1024 --compression lz4
#   bash scripts/bench-consume.sh --records 20000 --rounds 1 # a quick smoke run
#
# Options (after the script name): --records N (or $KONSUMER_BENCH_RECORDS), --rounds N,
# --clients konsumer,rdkafka,rdkafka-stream, --value-len N,
# --compression none|gzip|snappy|lz4|zstd, --handler touch|count, --max-batch N,
# --max-in-flight N, --buffer-records N, --decode-threads N, --no-check-crcs, --partition-max-bytes N, --fetch-max-bytes N,
# --fetch-max-wait-ms N, --rdkafka-set key=value, --run-timeout-s N. Exits non-zero if a client
# misses, repeats or reorders a record, or a run is stuck.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/lib.sh
use_tansu

cargo bench --bench consume -- "$@"
