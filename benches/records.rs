//! Record-set decoding: konsumer's decoder side by side with `kafka-protocol`'s own, on the same
//! bytes — a fetched record set of 10,000 records of 100-byte values in batches of 500, as a
//! producer with default-ish batching writes them, uncompressed and with each codec.
//!
//! Both decoders check every batch CRC and produce every record's offset, timestamp, key, value
//! and headers. Run with `bash scripts/bench-records.sh`, which also prints records/s, MB/s and
//! the ratios recorded in BENCHMARKS.md.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use konsumer::compression::Compression;
use konsumer::records::{decode_fetched, BatchBuilder, DecodeOptions, PartitionFetch, NO_HEADERS};

const RECORDS: usize = 10_000;
const PER_BATCH: usize = 500;

/// A 100-byte JSON-ish value, varied the way real events vary (ids, amounts, times).
fn value(i: usize) -> Vec<u8> {
    let mut v = format!(
        r#"{{"id":{i},"user":"u{:05}","amount":{}.{:02},"currency":"EUR","ts":{}}}"#,
        (i * 7919) % 100_000,
        (i * 31) % 10_000,
        i % 100,
        1_700_000_000_000u64 + i as u64 * 13,
    )
    .into_bytes();
    v.resize(100, b' ');
    v
}

/// The record set and its uncompressed size in bytes (what MB/s is measured against).
fn record_set(codec: Compression) -> (Bytes, usize) {
    let mut set = BytesMut::new();
    let mut uncompressed = 0;
    for first in (0..RECORDS).step_by(PER_BATCH) {
        let mut builder = BatchBuilder::new(codec, None).base_offset(first as i64);
        for i in first..first + PER_BATCH {
            let key = format!("user-{:05}", (i * 7919) % 100_000);
            builder.append(
                1_700_000_000_000 + i as i64,
                Some(key.as_bytes()),
                Some(&value(i)),
                NO_HEADERS,
            );
        }
        uncompressed += builder.uncompressed_size();
        set.extend_from_slice(&builder.build().expect("batch"));
    }
    (set.freeze(), uncompressed)
}

fn decode(c: &mut Criterion) {
    let options = DecodeOptions::default();
    let fetch = PartitionFetch {
        topic: "bench",
        partition: 0,
        fetch_offset: 0,
        isolation: Default::default(),
        aborted_transactions: &[],
    };
    for codec in Compression::ALL {
        let (set, uncompressed) = record_set(codec);
        // Both must see the same records before they are timed.
        let ours = decode_fetched(set.clone(), &fetch, &options);
        assert_eq!(ours.records.len(), RECORDS);
        assert!(ours.error.is_none());
        let theirs = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut set.clone())
            .expect("kafka-protocol decodes");
        assert_eq!(
            theirs.iter().map(|s| s.records.len()).sum::<usize>(),
            RECORDS
        );
        eprintln!(
            "{codec}: record set {} bytes on the wire, {uncompressed} bytes uncompressed",
            set.len()
        );

        let mut group = c.benchmark_group(format!("decode-{codec}"));
        group.throughput(Throughput::Elements(RECORDS as u64));
        group.bench_function("konsumer", |b| {
            b.iter(|| {
                let got = decode_fetched(black_box(set.clone()), &fetch, &options);
                black_box(got.records.len())
            })
        });
        group.bench_function("kafka-protocol", |b| {
            b.iter(|| {
                let mut buf = black_box(set.clone());
                let got = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf)
                    .expect("decodes");
                black_box(got.len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
