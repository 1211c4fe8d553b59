#!/usr/bin/env bash
# Runs the client-ceiling benchmark (benches/replay.rs): konsumer's ConsumerService and
# librdkafka's BaseConsumer (rdkafka crate) each read the same 10^6 records of 100 bytes
# (6 partitions, one member, a fresh group per run, taking turns) from the replay broker — the
# test kit's in-memory Kafka-protocol server that answers fetches with batches encoded once —
# so the clients, not the broker, set the pace. Prints records/s, MB/s and CPU seconds per
# 10^6 records of each, then the ratios: the "Client ceiling" table in BENCHMARKS.md. No tansu
# needed.
#
#   bash scripts/bench-replay.sh                         # 10^6 records, 3 rounds
#   bash scripts/bench-replay.sh --records 20000 --rounds 1   # a quick smoke run
#   bash scripts/bench-replay.sh --compression lz4
#
# Options: --records N (or $KONSUMER_BENCH_RECORDS), --rounds N, --clients konsumer,rdkafka,
# --compression none|gzip|snappy|lz4|zstd, --value-len N, --batch-records N,
# --partition-max-bytes N, --fetch-max-wait-ms N, --rdkafka-set key=value. Exits non-zero if a
# client misses, repeats or reorders a record, or a run is stuck.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo bench --bench replay -- "$@"
