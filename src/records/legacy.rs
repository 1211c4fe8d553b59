//! The legacy MessageSet (magic 0 and 1): what Kafka wrote before 0.11, still returned for old
//! segments of long-lived topics.
//!
//! A message is `offset i64, size i32, crc u32, magic i8, attributes i8, [timestamp i64 if
//! magic 1], key (i32 length), value (i32 length)`. A compressed message is a wrapper whose value
//! is a whole compressed inner message set; for magic 1 the inner offsets are relative (0..n-1)
//! and the wrapper carries the absolute offset of the last inner message.

use std::ops::Range;

use bytes::Bytes;

use super::batch::{BatchHeader, ATTR_CODEC_MASK, ATTR_LOG_APPEND_TIME, LOG_OVERHEAD};
use super::error::RecordsErrorKind;
use super::record::{Record, Span, TimestampType};
use super::varint::{Bad, Reader};
use super::DecodeOptions;
use crate::compression::{self, Compression};

/// Where the CRC-covered part of a legacy message starts (the magic byte).
pub(crate) const CRC_START: usize = 16;

type Failure = (RecordsErrorKind, usize);

fn key_position(magic: i8) -> usize {
    if magic == 0 {
        18
    } else {
        26
    }
}

/// Reads a message's fixed fields into a [`BatchHeader`] (the message must be complete).
pub(crate) fn parse_header(
    raw: &[u8],
    offset: i64,
    size: i32,
    magic: i8,
) -> Result<BatchHeader, Failure> {
    // The fixed fields plus two length prefixes.
    if raw.len() < key_position(magic) + 8 {
        return Err((
            RecordsErrorKind::Malformed("message size smaller than a legacy message header"),
            8,
        ));
    }
    let mut r = Reader::new(raw, 12);
    let short = |bad: Bad| (RecordsErrorKind::Malformed(bad), 12);
    let crc = r.u32("legacy header cut short").map_err(short)?;
    let _magic = r.i8("legacy header cut short").map_err(short)?;
    let attributes = i16::from(r.i8("legacy header cut short").map_err(short)? as u8);
    let timestamp = if magic == 0 {
        -1
    } else {
        r.i64("legacy header cut short").map_err(short)?
    };
    let compressed = attributes & ATTR_CODEC_MASK != 0;
    Ok(BatchHeader {
        base_offset: offset,
        batch_length: size,
        partition_leader_epoch: -1,
        magic,
        crc,
        attributes,
        last_offset_delta: 0,
        first_timestamp: timestamp,
        max_timestamp: timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: if compressed { -1 } else { 1 },
    })
}

/// A legacy `bytes` field: i32 length, -1 for null.
fn bytes32(r: &mut Reader<'_>, what: Bad) -> Result<Option<Range<usize>>, Bad> {
    let len = r.i32(what)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| "negative length other than -1")?;
    let start = r.skip(len, what)?;
    Ok(Some(start..start + len))
}

type KeyValue = (Option<Range<usize>>, Option<Range<usize>>);

/// Key and value ranges of the message in `raw`, which they must fill exactly.
fn key_value(raw: &[u8], magic: i8) -> Result<KeyValue, Bad> {
    let mut r = Reader::new(raw, key_position(magic));
    let key = bytes32(&mut r, "message key runs past the message")?;
    let value = bytes32(&mut r, "message value runs past the message")?;
    if r.pos != raw.len() {
        return Err("message size does not match its fields");
    }
    Ok((key, value))
}

/// Decodes one top-level message (plain, or a compressed wrapper) into `out`.
pub(crate) fn decode_message(
    header: &BatchHeader,
    raw: &Bytes,
    options: &DecodeOptions,
    min_offset: i64,
    out: &mut Vec<Record>,
) -> Result<(), Failure> {
    let key_at = key_position(header.magic);
    let (key, value) =
        key_value(raw, header.magic).map_err(|bad| (RecordsErrorKind::Malformed(bad), key_at))?;
    let codec = header.compression().map_err(|kind| (kind, CRC_START + 1))?;
    if codec == Compression::None {
        if header.base_offset >= min_offset {
            out.push(Record {
                offset: header.base_offset,
                timestamp: header.first_timestamp,
                timestamp_type: header.timestamp_type(),
                header_count: 0,
                buf: raw.clone(),
                key: Span::of_option(key),
                value: Span::of_option(value),
                headers: Span::EMPTY,
            });
        }
        return Ok(());
    }

    let value = value.ok_or((
        RecordsErrorKind::Malformed("compressed message without a value"),
        key_at,
    ))?;
    let value_at = value.start;
    let limit = options.decompression_limit();
    let inflated = if header.magic == 0 {
        // Magic-0 LZ4 was written with a wrong frame header checksum; this variant accepts it.
        compression::decompress_legacy_v0(codec, &raw[value], limit)
    } else {
        compression::decompress(codec, &raw[value], limit)
    }
    .map_err(|e| (RecordsErrorKind::Compression(e), value_at))?;
    let inner = Bytes::from(inflated);
    let first = out.len();
    decode_inner(header, &inner, options, out)
        .map_err(|kind| (kind, value_at))
        .inspect_err(|_| out.truncate(first))?;

    // Magic 1 wrappers hold relative inner offsets; the wrapper's offset is the last one's.
    if header.magic >= 1 {
        if let Some(last_relative) = out.last().map(|r| r.offset) {
            let shift = header.base_offset.wrapping_sub(last_relative);
            for record in &mut out[first..] {
                record.offset = record.offset.wrapping_add(shift);
            }
        }
    }
    if out[first..].iter().any(|r| r.offset < min_offset) {
        let mut keep = first;
        for i in first..out.len() {
            if out[i].offset >= min_offset {
                out.swap(keep, i);
                keep += 1;
            }
        }
        out.truncate(keep);
    }
    Ok(())
}

/// Decodes the uncompressed messages of a wrapper's inner set (offsets as written).
fn decode_inner(
    wrapper: &BatchHeader,
    inner: &Bytes,
    options: &DecodeOptions,
    out: &mut Vec<Record>,
) -> Result<(), RecordsErrorKind> {
    let data: &[u8] = inner;
    let bad = RecordsErrorKind::Malformed;
    let mut pos = 0;
    while pos < data.len() {
        let mut r = Reader::new(data, pos);
        let offset = r.i64("inner message cut short").map_err(bad)?;
        let size = r.i32("inner message cut short").map_err(bad)?;
        let size = usize::try_from(size).map_err(|_| bad("negative inner message size"))?;
        let end = pos
            .checked_add(LOG_OVERHEAD)
            .and_then(|p| p.checked_add(size))
            .filter(|&end| end <= data.len())
            .ok_or(bad("inner message runs past its wrapper"))?;
        let message = &data[pos..end];
        if message.len() < 17 {
            return Err(bad("inner message too short to hold a magic byte"));
        }
        let magic = message[16] as i8;
        if magic != 0 && magic != 1 {
            return Err(RecordsErrorKind::UnsupportedMagic(magic));
        }
        let header = parse_header(message, offset, size as i32, magic).map_err(|(kind, _)| kind)?;
        if options.verify_crc {
            let computed = crc32fast::hash(&message[CRC_START..]);
            if computed != header.crc {
                return Err(RecordsErrorKind::CrcMismatch {
                    magic,
                    stored: header.crc,
                    computed,
                });
            }
        }
        if header.attributes & ATTR_CODEC_MASK != 0 {
            return Err(bad("compressed message inside a compressed message"));
        }
        let (key, value) = key_value(message, magic).map_err(bad)?;
        let (timestamp, timestamp_type) = if magic == 0 {
            (-1, TimestampType::NoTimestamp)
        } else if wrapper.attributes & ATTR_LOG_APPEND_TIME != 0 {
            (wrapper.first_timestamp, TimestampType::LogAppendTime)
        } else {
            (header.first_timestamp, header.timestamp_type())
        };
        out.push(Record {
            offset,
            timestamp,
            timestamp_type,
            header_count: 0,
            buf: inner.clone(),
            key: Span::of_option(key.map(|r| r.start + pos..r.end + pos)),
            value: Span::of_option(value.map(|r| r.start + pos..r.end + pos)),
            headers: Span::EMPTY,
        });
        pos = end;
    }
    Ok(())
}
