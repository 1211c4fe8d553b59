#!/usr/bin/env bash
# Runs the scale benchmark (benches/scale.rs):
# - idle partitions: one konsumer member, then one librdkafka consumer (rdkafka crate), each in
#   a child process, assigned every partition of a 10- and a 1,000-partition topic on the test
#   kit's replay broker; prints RSS before and after, memory per partition, and CPU per second
#   while idle;
# - group formation: 50 konsumer members in one process join one group (100 and 200
#   partitions) on the mocked cluster; prints the time to a stable assignment.
# Installs tansu first if needed (only `--group-broker tansu` uses it).
#
#   bash scripts/bench-scale.sh                                  # both parts
#   bash scripts/bench-scale.sh --part group --group-broker mock,tansu
#   bash scripts/bench-scale.sh --partitions 10,200 --idle-seconds 3 --members 10   # smoke run
#
# Options: --part idle|group|both, --clients konsumer,rdkafka, --partitions 10,1000,
# --records-per-partition N, --settle-seconds N, --idle-seconds N, --fetch-max-wait-ms N,
# --members N, --group-partitions 100,200, --heartbeat-ms N, --stable-heartbeats N,
# --group-broker mock,tansu. Exits non-zero if a check fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/lib.sh
use_tansu

cargo bench --bench scale -- "$@"
