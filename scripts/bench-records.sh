#!/usr/bin/env bash
# Runs the record-decoding benchmark (benches/records.rs) and prints, per codec, records/s and
# MB/s of konsumer's decoder and of kafka-protocol's on the same bytes, and their ratio — the
# table in BENCHMARKS.md. Extra arguments go to criterion (e.g. --measurement-time 10).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo bench --bench records -- "$@" 2>&1 | tee "$log" >&2

python3 - "$log" <<'PY'
import json, re, sys, pathlib

sizes = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+): record set (\d+) bytes on the wire, (\d+) bytes uncompressed", line)
    if m:
        sizes[m.group(1)] = (int(m.group(2)), int(m.group(3)))

RECORDS = 10_000
root = pathlib.Path("target/criterion")
def mean_ns(group, name):
    est = json.loads((root / group / name / "new" / "estimates.json").read_text())
    return est["mean"]["point_estimate"]

print(f"{'codec':8} {'wire KB':>8} {'konsumer rec/s':>15} {'MB/s':>7} "
      f"{'kafka-protocol rec/s':>21} {'MB/s':>7} {'ratio':>6}")
for codec, (wire, raw) in sizes.items():
    ours = mean_ns(f"decode-{codec}", "konsumer")
    theirs = mean_ns(f"decode-{codec}", "kafka-protocol")
    rate = lambda ns: RECORDS / (ns / 1e9)
    mbs = lambda ns: raw / (ns / 1e9) / 1e6
    print(f"{codec:8} {wire / 1000:8.0f} {rate(ours):15,.0f} {mbs(ours):7,.0f} "
          f"{rate(theirs):21,.0f} {mbs(theirs):7,.0f} {theirs / ours:5.2f}x")
print("MB/s counts the uncompressed record-set bytes (10,000 records of 100-byte values).")
PY
