//! The record decoder on real producers' bytes.
//!
//! - Captured fixtures (`tests/fixtures/records/`, made by `scripts/capture-fixtures.sh`):
//!   librdkafka and kafka-python batches with every codec, and legacy magic 0/1 message sets.
//!   Every key, value, header, offset and timestamp must match the fixture's `.tsv`, which is
//!   parsed here independently of the generator.
//! - Live: librdkafka produces to a tansu broker with each codec, konsumer fetches the raw record
//!   set and decodes it — the same proof, on bytes made in this run.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use konsumer::records::{
    decode_fetched, DecodeOptions, FetchedRecords, Isolation, PartitionFetch, Record, TimestampType,
};
use konsumer::ClientConfig;
use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
use konsumer_actors::testkit::CapturedLog;
use konsumer_actors::Cluster;

use crate::peer_records::{expected_record, fetch_raw, produce_with_rdkafka};

/// A record as a fixture's `.tsv` line states it.
#[derive(Debug, PartialEq, Eq)]
struct Line {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn unhex(field: &str) -> Option<Vec<u8>> {
    if field == "-" {
        return None;
    }
    assert!(field.len().is_multiple_of(2), "odd hex field {field:?}");
    Some(
        (0..field.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&field[i..i + 2], 16).expect("hex"))
            .collect(),
    )
}

fn parse_tsv(text: &str) -> Vec<Line> {
    text.lines()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 5, "{line:?}");
            Line {
                offset: cols[0].parse().expect("offset"),
                timestamp: cols[1].parse().expect("timestamp"),
                key: unhex(cols[2]),
                value: unhex(cols[3]),
                headers: if cols[4].is_empty() {
                    Vec::new()
                } else {
                    cols[4]
                        .split(';')
                        .map(|h| {
                            let (name, value) = h.split_once('=').expect("name=value");
                            (name.to_owned(), unhex(value))
                        })
                        .collect()
                },
            }
        })
        .collect()
}

fn as_line(record: &Record) -> Line {
    Line {
        offset: record.offset,
        timestamp: record.timestamp,
        key: record.key().map(|b| b.to_vec()),
        value: record.value().map(|b| b.to_vec()),
        headers: record
            .headers()
            .iter()
            .map(|h| {
                (
                    h.key_str().expect("utf-8 header key").to_owned(),
                    h.value.map(|v| v.to_vec()),
                )
            })
            .collect(),
    }
}

fn decode(set: Bytes, fetch_offset: i64) -> FetchedRecords {
    decode_fetched(
        set,
        &PartitionFetch {
            topic: "fixture",
            partition: 0,
            fetch_offset,
            isolation: Isolation::ReadCommitted,
            aborted_transactions: &[],
        },
        &DecodeOptions::default(),
    )
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records")
}

#[test]
fn every_captured_fixture_decodes_to_its_expected_records() {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".bin").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 18, "{names:?}");
    for name in &names {
        let set = Bytes::from(std::fs::read(fixture_dir().join(format!("{name}.bin"))).unwrap());
        let expected =
            parse_tsv(&std::fs::read_to_string(fixture_dir().join(format!("{name}.tsv"))).unwrap());
        let got = decode(set.clone(), 0);
        assert_eq!(got.error, None, "{name}");
        assert!(!got.truncated, "{name}");
        let lines: Vec<Line> = got.records.iter().map(as_line).collect();
        assert_eq!(lines.len(), expected.len(), "{name}");
        for (line, want) in lines.iter().zip(&expected) {
            assert_eq!(line, want, "{name} offset {}", want.offset);
        }
        assert_eq!(got.next_offset, 40, "{name}");
        let kind = if name.contains("magic0") {
            TimestampType::NoTimestamp
        } else {
            TimestampType::CreateTime
        };
        assert!(
            got.records.iter().all(|r| r.timestamp_type == kind),
            "{name}"
        );

        // Resuming in the middle of a batch (or a compressed wrapper) skips what came before.
        let got = decode(set.clone(), 17);
        let offsets: Vec<i64> = got.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (17..40).collect::<Vec<_>>(), "{name}");

        // Cut anywhere inside the last batch: the complete ones still decode.
        let cut = decode(set.slice(..set.len() - 3), 0);
        assert!(cut.truncated && cut.error.is_none(), "{name}");
        assert!(cut.records.len() < 40 && cut.records.len() >= 30, "{name}");
        assert_eq!(
            cut.next_offset,
            cut.records.last().unwrap().offset + 1,
            "{name}"
        );
    }
}

#[test]
fn fixtures_cover_both_snappy_framings_and_the_old_lz4_checksum() {
    // Guards the fixtures themselves: if a regeneration ever lost these, the test above would
    // prove less than it claims.
    let bytes = |name: &str| std::fs::read(fixture_dir().join(name)).unwrap();
    let xerial = b"\x82SNAPPY\x00";
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&bytes("kafka-python-snappy.bin"), xerial));
    assert!(contains(&bytes("kafka-python-magic1-snappy.bin"), xerial));
    assert!(!contains(&bytes("librdkafka-snappy.bin"), xerial));
    // The magic-0 lz4 frames must not pass the standard decoder: they carry the broken
    // header checksum the legacy path tolerates.
    let magic0_lz4 = bytes("kafka-python-magic0-lz4.bin");
    let frame_at = magic0_lz4
        .windows(4)
        .position(|w| w == [0x04, 0x22, 0x4d, 0x18])
        .expect("an lz4 frame");
    let frame = &magic0_lz4[frame_at..];
    assert!(konsumer::compression::decompress(
        konsumer::compression::Compression::Lz4,
        frame,
        1 << 20
    )
    .is_err());
}

#[actix::test]
async fn librdkafka_batches_fetched_live_decode_exactly() {
    let broker = TansuBroker::start(Storage::Memory);
    let (log, _) = CapturedLog::new();
    let mut config = ClientConfig::new([broker.bootstrap()]);
    config.request_timeout = Duration::from_secs(10);
    let cluster = Cluster::connect(config, log).await.expect("bootstrap");
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("live-{codec}");
        broker.create_topic(&topic, 1);
        produce_with_rdkafka(&broker.bootstrap(), &topic, codec, 40).await;
        let set = fetch_raw(&cluster, &topic, 0, 0).await;
        let got = decode(set, 0);
        assert_eq!(got.error, None, "{codec}");
        assert_eq!(got.records.len(), 40, "{codec}");
        for (i, record) in got.records.iter().enumerate() {
            let want = expected_record(i);
            assert_eq!(record.offset, i as i64, "{codec}");
            assert_eq!(record.timestamp, want.timestamp, "{codec} {i}");
            assert_eq!(record.key(), want.key.as_deref(), "{codec} {i}");
            assert_eq!(record.value(), want.value.as_deref(), "{codec} {i}");
            let headers: Vec<(String, Option<Vec<u8>>)> = record
                .headers()
                .iter()
                .map(|h| (h.key_str().unwrap().to_owned(), h.value.map(|v| v.to_vec())))
                .collect();
            assert_eq!(headers, want.headers, "{codec} {i}");
        }
        assert_eq!(got.next_offset, 40);
    }
}
