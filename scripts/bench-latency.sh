#!/usr/bin/env bash
# Runs the end-to-end latency benchmark (benches/latency.rs): a producer sends a fixed
# 10,000 records/s for 30 s to one local tansu broker, and konsumer's ConsumerService (message
# handler, then batch handler) and librdkafka's BaseConsumer (rdkafka crate), each in a child
# process of its own and taking turns, measure produce -> handler latency for every record;
# prints p50/p90/p99/p99.9/max per client and fetch max wait, then the ratios. Installs tansu
# first if needed (scripts/install-tansu.sh).
#
#   bash scripts/bench-latency.sh                                  # 10,000/s, 30 s, waits 500 and 10 ms
#   bash scripts/bench-latency.sh --broker mock                    # a broker that answers fetches on append
#   bash scripts/bench-latency.sh --seconds 3 --rate 2000          # a quick smoke run
#
# Options: --rate N, --seconds N, --partitions N, --clients konsumer,konsumer-batch,rdkafka,
# --fetch-max-wait-ms 500,10, --broker tansu|mock, --linger-ms N, --value-len N,
# --rdkafka-set key=value. Exits non-zero if a client misses or repeats a record, or a run is
# stuck.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/lib.sh
use_tansu

cargo bench --bench latency -- "$@"
