#!/usr/bin/env python3
"""Writes konsumer's peer record fixtures with kafka-python.

Run by the ignored test `capture_record_fixtures` (tests/integration/peer_records.rs), through
`scripts/capture-fixtures.sh`, with the venv that script makes. Two commands:

  produce --bootstrap HOST:PORT --topic T --codec C [--api-version X.Y.Z] [-n 40]
      Produces the generated records to partition 0 of T with KafkaProducer (acks=all),
      flushing every 10 records so that the partition holds several batches.
      Without --api-version the producer asks the broker and writes RecordBatch v2.
      With --api-version 0.8.2 (magic 0) or 0.10.1 (magic 1) it writes a legacy MessageSet.

  legacy --magic {0,1} --codec C --out FILE [-n 40]
      Writes, without a broker, the legacy MessageSet that a 0.10-era broker would return in a
      fetch of those records: see tests/fixtures/records/README.md for exactly how.

The record generator must stay identical to `expected_record` in peer_records.rs.
Prints one JSON line on stdout describing what it did; diagnostics go to stderr.
"""

import argparse
import json
import struct
import sys
import zlib

BATCH = 10
BASE_TIMESTAMP = 1_700_000_000_000

# KafkaProducer.send() refuses a record whose key and value are both None (record 38). The
# protocol allows it, so the value goes in as this sentinel and the value serializer turns it
# into a null value on the wire.
NULL_VALUE = object()


def expected_record(i):
    """Record i of every fixture: (key, value, headers, timestamp_ms).

    Header values here are never None: kafka-python's KafkaProducer.send() accepts only bytes
    header values, so the "empty" header carries b"" where librdkafka sends a null value.
    """
    key = None if i % 7 == 3 else f"key-{i}".encode()
    value = None if i % 11 == 5 else (f"value-{i}-" + "abcdefghij" * 9).encode()
    if i % 3 == 0:
        headers = [("trace", f"t-{i}".encode()), ("empty", b"")]
    elif i % 3 == 1:
        headers = [("trace", f"t-{i}".encode())]
    else:
        headers = []
    return key, value, headers, BASE_TIMESTAMP + i * 1000


def _value_serializer():
    from kafka.serializer import Serializer

    class NullableValue(Serializer):
        def serialize(self, topic, headers, data):
            return None if data is NULL_VALUE else data

    return NullableValue()


def produce(args):
    from kafka import KafkaProducer
    from kafka import __version__ as kafka_python_version

    config = dict(
        bootstrap_servers=[args.bootstrap],
        acks="all",
        enable_idempotence=False,
        compression_type=None if args.codec == "none" else args.codec,
        # Batches are cut by the explicit flush() every BATCH records, not by size or time.
        linger_ms=60_000,
        batch_size=1 << 20,
        retries=0,
        request_timeout_ms=10_000,
        client_id="konsumer-fixtures",
        value_serializer=_value_serializer(),
    )
    if args.api_version:
        config["api_version"] = tuple(int(p) for p in args.api_version.split("."))
    producer = KafkaProducer(**config)
    magic = producer.max_usable_produce_magic(producer.config["api_version"])
    futures = []
    for i in range(args.n):
        key, value, headers, timestamp = expected_record(i)
        if magic < 2:
            headers = None  # a legacy MessageSet cannot carry headers
        futures.append(
            producer.send(
                args.topic,
                key=key,
                value=NULL_VALUE if value is None else value,
                headers=headers,
                partition=0,
                timestamp_ms=timestamp,
            )
        )
        if (i + 1) % BATCH == 0:
            producer.flush(timeout=30)
    producer.flush(timeout=30)
    offsets = [f.get(timeout=30).offset for f in futures]
    producer.close(timeout=10)
    print(
        json.dumps(
            {
                "producer": "kafka-python",
                "version": kafka_python_version,
                "api_version": ".".join(map(str, producer.config["api_version"])),
                "magic": magic,
                "codec": args.codec,
                "offsets": offsets,
            }
        )
    )


CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3}


def legacy(args):
    """A fetched legacy MessageSet, built offline with kafka-python's own builder.

    Uncompressed: one message per record, offsets 0..n-1 (magic 1: the record's CreateTime).
    Compressed: one wrapper message per BATCH records, as kafka-python would send them, with the
    offsets a 0.10-era broker writes before storing (and so returns in a fetch):
      - magic 0: inner offsets are absolute (the broker recompresses with absolute offsets);
      - magic 1: inner offsets are relative 0..9 (in-place assignment), and the wrapper carries the
        max inner timestamp (CreateTime), its CRC recomputed;
      - both: the wrapper's offset is the absolute offset of its last inner message (outside CRC).
    """
    from kafka import __version__ as kafka_python_version
    from kafka.record.legacy_records import LegacyRecordBatchBuilder

    codec = CODECS[args.codec]
    out = bytearray()
    if codec == 0:
        builder = LegacyRecordBatchBuilder(args.magic, 0, batch_size=1 << 30)
        for i in range(args.n):
            key, value, _headers, timestamp = expected_record(i)
            if builder.append(i, timestamp, key, value) is None:
                raise SystemExit("the legacy builder refused a record")
        out += builder.build()
        wrappers = 0
    else:
        wrappers = 0
        for start in range(0, args.n, BATCH):
            end = min(start + BATCH, args.n)
            builder = LegacyRecordBatchBuilder(args.magic, codec, batch_size=1 << 30)
            for i in range(start, end):
                key, value, _headers, timestamp = expected_record(i)
                inner_offset = i if args.magic == 0 else i - start
                if builder.append(inner_offset, timestamp, key, value) is None:
                    raise SystemExit("the legacy builder refused a record")
            wrapper = bytearray(builder.build())
            # offset i64 | length i32 | crc u32 | magic i8 | attributes i8 | [timestamp i64] | ...
            struct.pack_into(">q", wrapper, 0, end - 1)
            if args.magic == 1:
                max_timestamp = max(expected_record(i)[3] for i in range(start, end))
                struct.pack_into(">q", wrapper, 18, max_timestamp)
                struct.pack_into(">I", wrapper, 12, zlib.crc32(bytes(wrapper[16:])) & 0xFFFFFFFF)
            (length,) = struct.unpack_from(">i", wrapper, 8)
            if length + 12 != len(wrapper):
                raise SystemExit(f"wrapper length {length} + 12 != {len(wrapper)}")
            out += wrapper
            wrappers += 1
    with open(args.out, "wb") as f:
        f.write(out)
    print(
        json.dumps(
            {
                "producer": "kafka-python",
                "version": kafka_python_version,
                "magic": args.magic,
                "codec": args.codec,
                "bytes": len(out),
                "wrappers": wrappers,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--codec", required=True, choices=["none", "gzip", "snappy", "lz4", "zstd"])
    p.add_argument("--api-version")
    p.add_argument("-n", type=int, default=40)
    p.set_defaults(run=produce)
    p = sub.add_parser("legacy")
    p.add_argument("--magic", type=int, required=True, choices=[0, 1])
    p.add_argument("--codec", required=True, choices=sorted(CODECS))
    p.add_argument("--out", required=True)
    p.add_argument("-n", type=int, default=40)
    p.set_defaults(run=legacy)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
