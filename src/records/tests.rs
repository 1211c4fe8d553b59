//! Codec tests on batches built in the test: round trips (also against `kafka-protocol`'s own
//! encoder and decoder), fetch realities, and bad bytes. Batches written by real producers are
//! tested in `tests/records_fixtures.rs`.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::compression::{Compression, CompressionError};

fn options() -> DecodeOptions {
    DecodeOptions::default()
}

/// A record as the tests describe it, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    offset_delta: i32,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn spec(i: i32) -> Spec {
    Spec {
        offset_delta: i,
        timestamp: 1_700_000_000_000 + i64::from(i),
        key: (i % 4 != 1).then(|| format!("key-{i}").into_bytes()),
        value: (i % 5 != 2).then(|| format!("value-{i}-{}", "x".repeat(80)).into_bytes()),
        headers: if i % 3 == 0 {
            vec![
                ("trace".into(), Some(format!("t{i}").into_bytes())),
                ("null".into(), None),
            ]
        } else {
            vec![]
        },
    }
}

fn build(base_offset: i64, codec: Compression, specs: &[Spec]) -> Bytes {
    let mut builder = BatchBuilder::new(codec, None).base_offset(base_offset);
    for s in specs {
        builder.append_at(
            s.offset_delta,
            s.timestamp,
            s.key.as_deref(),
            s.value.as_deref(),
            &s.headers,
        );
    }
    builder.build().expect("batch builds")
}

fn specs(n: i32) -> Vec<Spec> {
    (0..n).map(spec).collect()
}

fn check_record(record: &Record, base_offset: i64, s: &Spec) {
    assert_eq!(record.offset, base_offset + i64::from(s.offset_delta));
    assert_eq!(record.timestamp, s.timestamp);
    assert_eq!(record.timestamp_type, TimestampType::CreateTime);
    assert_eq!(record.key(), s.key.as_deref());
    assert_eq!(record.value(), s.value.as_deref());
    let payload = s.key.as_ref().map_or(0, Vec::len) + s.value.as_ref().map_or(0, Vec::len);
    assert_eq!(record.payload_len(), payload, "null key or value counts 0");
    let headers: Vec<(String, Option<Vec<u8>>)> = record
        .headers()
        .iter()
        .map(|h| {
            (
                h.key_str().expect("utf-8 key").to_owned(),
                h.value.map(|v| v.to_vec()),
            )
        })
        .collect();
    assert_eq!(headers, s.headers);
}

fn concat(parts: &[&Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for p in parts {
        out.extend_from_slice(p);
    }
    out.freeze()
}

/// Rewrites a v2 batch's CRC after a test changed its bytes on purpose.
fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn fetch(fetch_offset: i64) -> PartitionFetch<'static> {
    PartitionFetch {
        topic: "orders",
        partition: 3,
        fetch_offset,
        isolation: Isolation::ReadUncommitted,
        aborted_transactions: &[],
    }
}

#[test]
fn every_codec_round_trips_every_field() {
    let specs = specs(25);
    for codec in Compression::ALL {
        let batch = build(1000, codec, &specs);
        let mut reader = RecordSetReader::new(batch.clone(), options());
        let decoded = reader.next_batch().expect("one batch").expect("valid");
        let h = &decoded.header;
        assert_eq!(h.base_offset, 1000);
        assert_eq!(h.magic, 2);
        assert_eq!(h.record_count, 25);
        assert_eq!(h.last_offset(), 1024);
        assert_eq!(h.compression(), Ok(codec));
        assert_eq!(h.first_timestamp, specs[0].timestamp);
        assert_eq!(h.max_timestamp, specs[24].timestamp);
        assert_eq!(h.producer_id, -1);
        assert!(!h.is_control() && !h.is_transactional());
        assert_eq!(h.batch_length as usize + 12, batch.len());
        assert!(reader.next_batch().is_none());
        assert!(!reader.truncated());

        let records = decode_all(batch, &options()).expect("decodes");
        assert_eq!(records.len(), 25, "{codec}");
        for (record, s) in records.iter().zip(&specs) {
            check_record(record, 1000, s);
        }
    }
}

#[test]
fn producer_fields_and_log_append_time() {
    let mut builder = BatchBuilder::new(Compression::Zstd, Some(3))
        .base_offset(7)
        .partition_leader_epoch(12)
        .producer(4242, 3, 100)
        .transactional(true)
        .log_append_time(1_800_000_000_000);
    builder.append(5, Some(b"a"), Some(b"1"), NO_HEADERS);
    builder.append(9, None, Some(b"2"), NO_HEADERS);
    let batch = builder.build().unwrap();
    let decoded = RecordSetReader::new(batch.clone(), options())
        .next_batch()
        .unwrap()
        .unwrap();
    let h = &decoded.header;
    assert_eq!(
        (
            h.partition_leader_epoch,
            h.producer_id,
            h.producer_epoch,
            h.base_sequence
        ),
        (12, 4242, 3, 100)
    );
    assert!(h.is_transactional());
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    let records = decode_all(batch, &options()).unwrap();
    // LogAppendTime: every record reads the broker's time, not the producer's.
    assert!(records
        .iter()
        .all(|r| r.timestamp == 1_800_000_000_000
            && r.timestamp_type == TimestampType::LogAppendTime));
    assert_eq!(records[1].offset, 8);
}

#[test]
fn uncompressed_records_slice_the_fetch_buffer() {
    let batch = build(0, Compression::None, &specs(10));
    let range = batch.as_ptr_range();
    let records = decode_all(batch.clone(), &options()).unwrap();
    for record in &records {
        for part in [record.key(), record.value()].into_iter().flatten() {
            assert!(range.contains(&part.as_ptr()), "not a slice of the input");
        }
        for part in [record.key_bytes(), record.value_bytes()]
            .into_iter()
            .flatten()
        {
            assert!(
                range.contains(&part.as_ptr()),
                "Bytes copied instead of shared"
            );
        }
        for header in record.headers().iter() {
            assert!(range.contains(&header.key.as_ptr()));
        }
    }
}

#[test]
fn compressed_batch_records_share_one_buffer() {
    let specs = specs(10);
    let batch = build(0, Compression::Lz4, &specs);
    let input = batch.as_ptr_range();
    let records = decode_all(batch.clone(), &options()).unwrap();
    let values: Vec<&[u8]> = records.iter().filter_map(|r| r.value()).collect();
    let lowest = values.iter().map(|v| v.as_ptr() as usize).min().unwrap();
    let highest = values
        .iter()
        .map(|v| v.as_ptr() as usize + v.len())
        .max()
        .unwrap();
    let raw_records_size: usize = batch.len() * 4; // generous bound of the decompressed size
    assert!(values.iter().all(|v| !input.contains(&v.as_ptr())));
    // All values sit inside one span no larger than the decompressed records: one buffer.
    assert!(
        highest - lowest < raw_records_size,
        "values are not one buffer"
    );
}

#[test]
fn a_truncated_trailing_batch_is_dropped_at_any_cut() {
    let a = build(0, Compression::None, &specs(5));
    let b = build(5, Compression::Gzip, &specs(5));
    let c = build(10, Compression::Snappy, &specs(5));
    let whole = concat(&[&a, &b, &c]);
    for cut in 1..c.len() {
        let set = whole.slice(..whole.len() - cut);
        let got = decode_fetched(set, &fetch(0), &options());
        assert_eq!(got.error, None, "cut {cut}");
        assert!(got.truncated, "cut {cut}");
        assert_eq!(got.records.len(), 10, "cut {cut}");
        assert_eq!(got.next_offset, 10, "cut {cut}");
        assert_eq!(got.batches, 2);
    }
    let got = decode_fetched(whole, &fetch(0), &options());
    assert!(!got.truncated);
    assert_eq!(got.records.len(), 15);
    assert_eq!(got.next_offset, 15);
}

#[test]
fn peeking_predicts_the_next_offset_decoding_finds() {
    let a = build(10, Compression::None, &specs(5));
    let b = build(15, Compression::Lz4, &specs(5));
    let gaps: Vec<Spec> = [0, 3, 9]
        .into_iter()
        .map(|d| Spec {
            offset_delta: d,
            ..spec(d)
        })
        .collect();
    let c = build(20, Compression::Zstd, &gaps);
    let whole = concat(&[&a, &b, &c]);
    for fetch_offset in [10, 12, 20, 29] {
        let decoded = decode_fetched(whole.clone(), &fetch(fetch_offset), &options());
        let peeked = peek_next_offset(&whole, fetch_offset).expect("peeked");
        assert_eq!(
            peeked.next_offset, decoded.next_offset,
            "from {fetch_offset}"
        );
        assert_eq!(peeked.next_offset, 30);
        assert_eq!(peeked.records, 13);
    }
    // A cut last batch is not counted, at any cut, as in decoding.
    for cut in 1..c.len() {
        let set = whole.slice(..whole.len() - cut);
        let peeked = peek_next_offset(&set, 10).expect("peeked");
        assert_eq!(peeked.next_offset, 20, "cut {cut}");
        assert_eq!(
            peeked.next_offset,
            decode_fetched(set, &fetch(10), &options()).next_offset
        );
    }
    // Nothing to go on: empty, only a cut batch, all below the fetch offset.
    assert_eq!(peek_next_offset(&[], 10), None);
    assert_eq!(peek_next_offset(&a[..a.len() - 1], 10), None);
    assert_eq!(peek_next_offset(&whole, 30), None);
    // A header that cannot be right: another magic, a negative length or offset delta.
    let mut bad = BytesMut::from(&a[..]);
    bad[16] = 1;
    assert_eq!(peek_next_offset(&bad, 10), None);
    let mut bad = BytesMut::from(&a[..]);
    bad[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(peek_next_offset(&bad, 10), None);
    let mut bad = BytesMut::from(&a[..]);
    bad[23..27].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(peek_next_offset(&bad, 10), None);
    let mut bad = BytesMut::from(&a[..]);
    bad[8..12].copy_from_slice(&10i32.to_be_bytes()); // shorter than its own header
    assert_eq!(peek_next_offset(&bad, 10), None);
}

#[test]
fn records_below_the_fetch_offset_are_skipped() {
    let a = build(10, Compression::None, &specs(10));
    let b = build(20, Compression::Zstd, &specs(10));
    let set = concat(&[&a, &b]);
    for fetch_offset in [10, 14, 19, 20, 23, 29] {
        let got = decode_fetched(set.clone(), &fetch(fetch_offset), &options());
        let offsets: Vec<i64> = got.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (fetch_offset..30).collect::<Vec<_>>());
        assert_eq!(got.next_offset, 30);
    }
    // Everything below: nothing delivered, but the position still moves past the batches.
    let got = decode_fetched(set, &fetch(30), &options());
    assert!(got.records.is_empty());
    assert_eq!(got.next_offset, 30);
}

#[test]
fn compaction_gaps_keep_offsets_and_advance_past_the_batch() {
    let specs: Vec<Spec> = [0, 3, 4, 9]
        .into_iter()
        .map(|d| Spec {
            offset_delta: d,
            ..spec(d)
        })
        .collect();
    let batch = build(100, Compression::Gzip, &specs);
    let got = decode_fetched(batch, &fetch(101), &options());
    let offsets: Vec<i64> = got.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![103, 104, 109]);
    assert_eq!(got.next_offset, 110);
}

fn txn_batch(base: i64, producer_id: i64, values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None, None)
        .base_offset(base)
        .producer(producer_id, 0, 0)
        .transactional(true);
    for v in values {
        builder.append(1, None, Some(v.as_bytes()), NO_HEADERS);
    }
    builder.build().unwrap()
}

fn marker(base: i64, producer_id: i64, kind: ControlType) -> Bytes {
    let mut raw = BytesMut::from(
        &BatchBuilder::control_marker(kind, producer_id, 0, 7, 1)
            .build()
            .unwrap()[..],
    );
    raw[..8].copy_from_slice(&base.to_be_bytes());
    fix_crc(&mut raw);
    raw.freeze()
}

#[test]
fn control_batches_are_never_data_and_aborted_transactions_are_skipped() {
    // Producer 1 commits (offsets 0-1, marker 2), producer 2 aborts (3-4, marker 5), interleaved
    // plain data (6), producer 2 commits a second transaction (7, marker 8).
    let set = concat(&[
        &txn_batch(0, 1, &["c1", "c2"]),
        &marker(2, 1, ControlType::Commit),
        &txn_batch(3, 2, &["a1", "a2"]),
        &marker(5, 2, ControlType::Abort),
        &build(
            6,
            Compression::None,
            &[Spec {
                offset_delta: 0,
                timestamp: 1,
                key: None,
                value: Some(b"plain".to_vec()),
                headers: vec![],
            }],
        ),
        &txn_batch(7, 2, &["c3"]),
        &marker(8, 2, ControlType::Commit),
    ]);
    let values = |got: &FetchedRecords| -> Vec<String> {
        got.records
            .iter()
            .map(|r| String::from_utf8(r.value().unwrap().to_vec()).unwrap())
            .collect()
    };

    let uncommitted = decode_fetched(set.clone(), &fetch(0), &options());
    assert_eq!(
        values(&uncommitted),
        ["c1", "c2", "a1", "a2", "plain", "c3"]
    );
    assert_eq!(uncommitted.skipped_control_batches, 3);
    assert_eq!(uncommitted.next_offset, 9);

    let aborted = [AbortedTransaction {
        producer_id: 2,
        first_offset: 3,
    }];
    let committed = decode_fetched(
        set,
        &PartitionFetch {
            isolation: Isolation::ReadCommitted,
            aborted_transactions: &aborted,
            ..fetch(0)
        },
        &options(),
    );
    assert_eq!(values(&committed), ["c1", "c2", "plain", "c3"]);
    assert_eq!(committed.skipped_aborted_batches, 1);
    assert_eq!(committed.skipped_control_batches, 3);
    assert_eq!(committed.next_offset, 9);
    assert_eq!(committed.error, None);
}

#[test]
fn a_crc_mismatch_names_topic_partition_and_base_offset() {
    let good = build(40, Compression::None, &specs(3));
    let mut bad = BytesMut::from(&build(43, Compression::None, &specs(3))[..]);
    // A byte inside the first record's value (records start at byte 61).
    bad[91] ^= 0x55;
    let set = concat(&[&good, &bad.freeze()]);
    let got = decode_fetched(set.clone(), &fetch(40), &options());
    // The good batch before it is delivered; the position stops at the bad one.
    assert_eq!(got.records.len(), 3);
    assert_eq!(got.next_offset, 43);
    let error = got.error.expect("a CRC error");
    assert!(matches!(
        error.kind,
        RecordsErrorKind::CrcMismatch { magic: 2, .. }
    ));
    assert_eq!(error.base_offset, Some(43));
    assert_eq!(error.position, good.len());
    let text = crate::Error::from(error).to_string();
    assert!(
        text.contains("CRC mismatch")
            && text.contains("topic orders partition 3")
            && text.contains("base offset 43"),
        "{text}"
    );

    // With CRC checks off the flipped byte lands in a value and decodes.
    let lenient = DecodeOptions {
        verify_crc: false,
        ..options()
    };
    assert_eq!(decode_fetched(set, &fetch(40), &lenient).records.len(), 6);
}

#[test]
fn unknown_codec_ids_are_typed_errors() {
    for id in 5..=7i16 {
        let mut raw = BytesMut::from(&build(0, Compression::None, &specs(2))[..]);
        raw[21..23].copy_from_slice(&id.to_be_bytes());
        fix_crc(&mut raw);
        let got = decode_fetched(raw.freeze(), &fetch(0), &options());
        assert_eq!(
            got.error.map(|e| e.kind),
            Some(RecordsErrorKind::Compression(
                CompressionError::UnknownCodec(id)
            ))
        );
        assert!(got.records.is_empty());
    }
}

#[test]
fn a_decompression_bomb_stops_at_the_limit() {
    let huge = vec![0u8; 4 << 20];
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut builder = BatchBuilder::new(codec, None);
        builder.append(0, None, Some(&huge), NO_HEADERS);
        let batch = builder.build().unwrap();
        assert!(batch.len() < 1 << 20, "{codec} compresses zeros");
        let small = DecodeOptions {
            max_decompressed_bytes: 1 << 20,
            ..options()
        };
        let got = decode_fetched(batch.clone(), &fetch(0), &small);
        assert!(
            matches!(
                got.error.as_ref().map(|e| &e.kind),
                Some(RecordsErrorKind::Compression(
                    CompressionError::TooLarge { .. }
                ))
            ),
            "{codec}: {:?}",
            got.error
        );
        assert_eq!(
            decode_fetched(batch, &fetch(0), &options()).records.len(),
            1
        );
    }
}

#[test]
fn wrong_counts_and_lengths_are_malformed_not_panics() {
    let good = build(0, Compression::None, &specs(3));
    // Record count larger than the records present.
    let mut more = BytesMut::from(&good[..]);
    more[57..61].copy_from_slice(&4i32.to_be_bytes());
    fix_crc(&mut more);
    // Record count smaller: bytes left over.
    let mut fewer = BytesMut::from(&good[..]);
    fewer[57..61].copy_from_slice(&2i32.to_be_bytes());
    fix_crc(&mut fewer);
    // Negative record count.
    let mut negative = BytesMut::from(&good[..]);
    negative[57..61].copy_from_slice(&(-1i32).to_be_bytes());
    fix_crc(&mut negative);
    // First record's length varint claims one byte more.
    let mut longer = BytesMut::from(&good[..]);
    longer[61] += 2;
    fix_crc(&mut longer);
    // A batch length below the v2 header size.
    let mut short = BytesMut::from(&good[..]);
    short[8..12].copy_from_slice(&20i32.to_be_bytes());
    // Magic 3.
    let mut magic = BytesMut::from(&good[..]);
    magic[16] = 3;
    for (name, raw) in [
        ("more", more),
        ("fewer", fewer),
        ("negative", negative),
        ("longer", longer),
        ("short", short),
        ("magic", magic),
    ] {
        let got = decode_fetched(raw.freeze(), &fetch(0), &options());
        let error = got.error.unwrap_or_else(|| panic!("{name}: no error"));
        assert!(
            matches!(
                error.kind,
                RecordsErrorKind::Malformed(_) | RecordsErrorKind::UnsupportedMagic(3)
            ),
            "{name}: {error}"
        );
        assert!(got.records.is_empty(), "{name}");
        assert_eq!(got.next_offset, 0, "{name}");
    }
}

#[test]
fn an_empty_batch_cannot_be_built() {
    let err = BatchBuilder::new(Compression::None, None)
        .build()
        .unwrap_err();
    assert!(matches!(err.kind, RecordsErrorKind::Encode(_)));
}

#[test]
fn compressed_sets_are_told_from_their_first_header() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let set = build(0, codec, &specs(3));
        assert!(compressed_record_size(&set).is_some(), "{codec}");
    }
    let plain = build(0, Compression::None, &specs(3));
    assert_eq!(compressed_record_size(&plain), None);
    let lz4 = build(0, Compression::Lz4, &specs(3));
    let length = u32::from_be_bytes(lz4[8..12].try_into().expect("4 bytes")) as usize;
    assert_eq!(compressed_record_size(&lz4), Some(length / 3));
    assert_eq!(
        compressed_record_size(&lz4[..60]),
        None,
        "cut before the count"
    );
    let legacy = legacy_wrapper(5, 1, Compression::Lz4, false, 3);
    assert_eq!(compressed_record_size(&legacy), None);
    assert_eq!(compressed_record_size(&[]), None);
    let mut other = lz4.to_vec();
    other[16] = 3;
    assert_eq!(compressed_record_size(&other), None, "an unknown magic");
}

// ---- legacy MessageSet, built by hand to the published format ----

fn legacy_message(
    offset: i64,
    magic: i8,
    attributes: u8,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Vec<u8> {
    let mut body = vec![magic as u8, attributes];
    if magic == 1 {
        body.extend_from_slice(&timestamp.to_be_bytes());
    }
    for field in [key, value] {
        match field {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                body.extend_from_slice(&(b.len() as i32).to_be_bytes());
                body.extend_from_slice(b);
            }
        }
    }
    let mut out = offset.to_be_bytes().to_vec();
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A compressed wrapper around `n` inner messages ending at absolute offset `last`.
fn legacy_wrapper(last: i64, magic: i8, codec: Compression, log_append: bool, n: i64) -> Vec<u8> {
    let mut inner = Vec::new();
    for i in 0..n {
        // Magic 1 inner offsets are relative; magic 0 inner offsets are absolute.
        let offset = if magic == 1 { i } else { last - n + 1 + i };
        inner.extend(legacy_message(
            offset,
            magic,
            0,
            100 + i,
            Some(format!("k{i}").as_bytes()),
            Some(format!("v{i}").as_bytes()),
        ));
    }
    let mut compressed = Vec::new();
    crate::compression::compress(codec, None, &inner, &mut compressed).unwrap();
    let attributes = codec.id() as u8 | if log_append { 0x08 } else { 0 };
    legacy_message(last, magic, attributes, 999, None, Some(&compressed))
}

#[test]
fn legacy_plain_messages_decode_with_their_timestamps() {
    let mut set = legacy_message(5, 0, 0, 0, Some(b"k0"), Some(b"v0"));
    set.extend(legacy_message(6, 1, 0, 1234, None, Some(b"v1")));
    set.extend(legacy_message(7, 1, 0x08, 4321, Some(b"k2"), None));
    let got = decode_fetched(Bytes::from(set), &fetch(5), &options());
    assert_eq!(got.error, None);
    let r = &got.records;
    assert_eq!(r.len(), 3);
    assert_eq!(
        (r[0].offset, r[0].timestamp, r[0].timestamp_type),
        (5, -1, TimestampType::NoTimestamp)
    );
    assert_eq!(r[0].key(), Some(&b"k0"[..]));
    assert_eq!(
        (r[1].timestamp, r[1].timestamp_type),
        (1234, TimestampType::CreateTime)
    );
    assert_eq!(r[1].key(), None);
    assert_eq!(
        (r[2].timestamp, r[2].timestamp_type),
        (4321, TimestampType::LogAppendTime)
    );
    assert_eq!(r[2].value(), None);
    assert!(r.iter().all(|r| r.headers().is_empty()));
    assert_eq!(got.next_offset, 8);
}

#[test]
fn legacy_compressed_wrappers_give_absolute_offsets() {
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
        for magic in [0i8, 1] {
            let mut set = legacy_wrapper(14, magic, codec, false, 5);
            set.extend(legacy_wrapper(19, magic, codec, magic == 1, 5));
            let got = decode_fetched(Bytes::from(set), &fetch(12), &options());
            assert_eq!(got.error, None, "{codec} magic {magic}");
            let offsets: Vec<i64> = got.records.iter().map(|r| r.offset).collect();
            assert_eq!(
                offsets,
                (12..20).collect::<Vec<_>>(),
                "{codec} magic {magic}"
            );
            assert_eq!(got.next_offset, 20);
            let first = &got.records[0];
            assert_eq!(first.key(), Some(&b"k2"[..]));
            if magic == 1 {
                assert_eq!(first.timestamp, 102);
                // The second wrapper is LogAppendTime: its records take the wrapper's time.
                let last = got.records.last().unwrap();
                assert_eq!(
                    (last.timestamp, last.timestamp_type),
                    (999, TimestampType::LogAppendTime)
                );
            } else {
                assert_eq!(first.timestamp_type, TimestampType::NoTimestamp);
            }
        }
    }
}

#[test]
fn legacy_crc_mismatch_and_bad_wrappers_are_typed_errors() {
    let mut set = legacy_message(0, 1, 0, 1, Some(b"k"), Some(b"v"));
    let last = set.len() - 1;
    set[last] ^= 1;
    let got = decode_fetched(Bytes::from(set), &fetch(0), &options());
    assert!(matches!(
        got.error.map(|e| e.kind),
        Some(RecordsErrorKind::CrcMismatch { magic: 1, .. })
    ));

    // A gzip wrapper whose value is not gzip.
    let set = legacy_message(3, 1, 1, 1, None, Some(b"not gzip at all"));
    let got = decode_fetched(Bytes::from(set), &fetch(0), &options());
    assert!(matches!(
        got.error.map(|e| e.kind),
        Some(RecordsErrorKind::Compression(_))
    ));

    // A compressed wrapper inside a compressed wrapper.
    let nested = legacy_wrapper(4, 1, Compression::Gzip, false, 2);
    let mut compressed = Vec::new();
    crate::compression::compress(Compression::Gzip, None, &nested, &mut compressed).unwrap();
    let set = legacy_message(4, 1, 1, 1, None, Some(&compressed));
    let got = decode_fetched(Bytes::from(set), &fetch(0), &options());
    assert!(matches!(
        got.error.map(|e| e.kind),
        Some(RecordsErrorKind::Malformed(_))
    ));
}

// ---- against kafka-protocol's own implementation ----

fn kp_codec(codec: Compression) -> kafka_protocol::records::Compression {
    use kafka_protocol::records::Compression as K;
    match codec {
        Compression::None => K::None,
        Compression::Gzip => K::Gzip,
        Compression::Snappy => K::Snappy,
        Compression::Lz4 => K::Lz4,
        Compression::Zstd => K::Zstd,
    }
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..200);
    (
        1..4i32,
        -1_000_000i64..1_000_000,
        proptest::option::of(bytes.clone()),
        proptest::option::of(bytes.clone()),
        proptest::collection::vec(("[a-z]{1,8}", proptest::option::of(bytes)), 0..4),
    )
        .prop_map(|(gap, timestamp, key, value, headers)| Spec {
            offset_delta: gap,
            timestamp: 1_700_000_000_000 + timestamp,
            key,
            value,
            headers,
        })
}

fn arb_batch() -> impl Strategy<Value = (i64, usize, Vec<Spec>)> {
    (
        0i64..1 << 40,
        0usize..5,
        proptest::collection::vec(arb_spec(), 1..30),
    )
        .prop_map(|(base, codec, mut specs)| {
            // Turn the random gaps into increasing offset deltas starting at 0.
            let mut delta = -1;
            for s in &mut specs {
                delta += if delta < 0 { 1 } else { s.offset_delta };
                s.offset_delta = delta;
            }
            (base, codec, specs)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn encode_then_decode_is_identity((base, codec, specs) in arb_batch()) {
        let codec = Compression::ALL[codec];
        let batch = build(base, codec, &specs);
        let records = decode_all(batch, &options()).unwrap();
        prop_assert_eq!(records.len(), specs.len());
        for (record, s) in records.iter().zip(&specs) {
            check_record(record, base, s);
        }
    }

    #[test]
    fn kafka_protocol_reads_what_we_write((base, codec, specs) in arb_batch()) {
        let codec = Compression::ALL[codec];
        let mut batch = build(base, codec, &specs);
        let theirs = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch).unwrap();
        prop_assert_eq!(theirs.records.len(), specs.len());
        for (record, s) in theirs.records.iter().zip(&specs) {
            prop_assert_eq!(record.offset, base + i64::from(s.offset_delta));
            prop_assert_eq!(record.timestamp, s.timestamp);
            prop_assert_eq!(record.key.as_deref(), s.key.as_deref());
            prop_assert_eq!(record.value.as_deref(), s.value.as_deref());
        }
    }

    #[test]
    fn we_read_what_kafka_protocol_writes((base, codec, specs) in arb_batch()) {
        use kafka_protocol::records as kp;
        let codec = Compression::ALL[codec];
        let theirs: Vec<kp::Record> = specs.iter().map(|s| kp::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kp::TimestampType::Creation,
            offset: base + i64::from(s.offset_delta),
            sequence: -1,
            timestamp: s.timestamp,
            key: s.key.clone().map(Bytes::from),
            value: s.value.clone().map(Bytes::from),
            // kafka-protocol keeps headers in a map: one value per name.
            headers: s.headers.iter().map(|(k, v)| (
                kafka_protocol::protocol::StrBytes::from_string(k.clone()),
                v.clone().map(Bytes::from),
            )).collect(),
        }).collect();
        let mut buf = BytesMut::new();
        kp::RecordBatchEncoder::encode(&mut buf, &theirs, &kp::RecordEncodeOptions {
            version: 2,
            compression: kp_codec(codec),
        }).unwrap();
        let records = decode_all(buf.freeze(), &options()).unwrap();
        prop_assert_eq!(records.len(), theirs.len());
        for (ours, theirs) in records.iter().zip(&theirs) {
            prop_assert_eq!(ours.offset, theirs.offset);
            prop_assert_eq!(ours.timestamp, theirs.timestamp);
            prop_assert_eq!(ours.key(), theirs.key.as_deref());
            prop_assert_eq!(ours.value(), theirs.value.as_deref());
            let headers: Vec<(String, Option<&[u8]>)> = ours.headers().iter()
                .map(|h| (h.key_str().unwrap().to_owned(), h.value)).collect();
            let expected: Vec<(String, Option<&[u8]>)> = theirs.headers.iter()
                .map(|(k, v)| (k.to_string(), v.as_deref())).collect();
            prop_assert_eq!(headers, expected);
        }
    }
}

// ---- arbitrary and mutated bytes: never a panic ----

fn all_kinds_of_sets() -> Vec<Bytes> {
    let mut sets = Vec::new();
    for codec in Compression::ALL {
        sets.push(build(3, codec, &specs(6)));
    }
    sets.push(txn_batch(0, 9, &["x", "y"]));
    sets.push(marker(2, 9, ControlType::Abort));
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
        for magic in [0, 1] {
            sets.push(Bytes::from(legacy_wrapper(9, magic, codec, false, 4)));
        }
    }
    sets.push(Bytes::from(legacy_message(
        1,
        1,
        0,
        5,
        Some(b"k"),
        Some(b"v"),
    )));
    sets
}

fn decode_everything(set: Bytes, verify_crc: bool) {
    let options = DecodeOptions {
        verify_crc,
        max_decompressed_bytes: 1 << 16,
    };
    let aborted = [AbortedTransaction {
        producer_id: 9,
        first_offset: 0,
    }];
    for isolation in [Isolation::ReadUncommitted, Isolation::ReadCommitted] {
        let got = decode_fetched(
            set.clone(),
            &PartitionFetch {
                isolation,
                aborted_transactions: &aborted,
                ..fetch(0)
            },
            &options,
        );
        // Whatever the bytes, the result keeps the consumer's invariants.
        assert!(
            got.records.iter().all(|r| r.offset >= 0),
            "record below the fetch offset"
        );
        assert!(got.next_offset >= 0, "position moved backwards");
        for record in &got.records {
            let _ = record.headers().iter().count();
        }
    }
    let _ = decode_all(set, &options);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_everything(Bytes::from(bytes), false);
    }

    #[test]
    fn mutated_batches_never_panic(
        which in 0usize..17,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let sets = all_kinds_of_sets();
        let mut raw = sets[which % sets.len()].to_vec();
        for (at, xor) in flips {
            let i = at.index(raw.len());
            raw[i] ^= xor;
        }
        if let Some(cut) = cut {
            raw.truncate(cut.index(raw.len() + 1));
        }
        // CRCs off, or the mutations would stop at the checksum.
        decode_everything(Bytes::from(raw.clone()), false);
        decode_everything(Bytes::from(raw), true);
    }
}
