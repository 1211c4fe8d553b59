#!/usr/bin/env bash
# Runs the client-ceiling benchmark (benches/replay.rs): konsumer's ConsumerService and
# librdkafka's BaseConsumer and StreamConsumer (rdkafka crate) each read the same 10^6 records
# of 100 bytes (6 partitions, one member, a fresh group per run, taking turns, each in a
# process of its own) from the replay broker — the test kit's in-memory Kafka-protocol server
# that answers fetches with batches encoded once — so the clients, not the broker, set the
# pace. Prints records/s, MB/s, CPU seconds per 10^6 records and peak RSS of each, then the
# ratios konsumer / each rdkafka client: the "Client ceiling" tables in BENCHMARKS.md. No
# tansu needed.
#
#   bash scripts/bench-replay.sh                              # 10^6 records, 3 rounds
#   bash scripts/bench-replay.sh --records 20000 --rounds 1   # a quick smoke run
#   bash scripts/bench-replay.sh --value-len 1024 --compression lz4
#
# Options: --records N (or $KONSUMER_BENCH_RECORDS), --rounds N,
# --clients konsumer,rdkafka,rdkafka-stream, --compression none|gzip|snappy|lz4|zstd,
# --value-len N, --batch-records N, --handler touch|count, --max-batch N, --max-in-flight N,
# --buffer-records N, --decode-threads N, --no-check-crcs, --partition-max-bytes N, --fetch-max-bytes N, --fetch-max-wait-ms N,
# --rdkafka-set key=value, --run-timeout-s N. Exits non-zero if a client misses, repeats or
# reorders a record, or a run is stuck.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo bench --bench replay -- "$@"
