//! Walking a record set batch by batch, and decoding a v2 batch's records.

use bytes::Bytes;

use super::error::{RecordsError, RecordsErrorKind};
use super::legacy;
use super::record::{validate_headers, Record, Span, TimestampType};
use super::varint::{Bad, Reader};
use super::DecodeOptions;
use crate::compression::{self, Compression};

/// Bytes before a batch's `batch_length` field counts: base offset (8) and the length (4).
pub(crate) const LOG_OVERHEAD: usize = 12;
/// Size of a v2 batch header, up to and including the record count.
pub(crate) const V2_HEADER_SIZE: usize = 61;
/// Where the CRC-covered part of a v2 batch starts (the attributes field).
pub(crate) const V2_CRC_START: usize = 21;
/// The smallest possible record: seven one-byte varints/fields.
const MIN_RECORD_SIZE: usize = 7;

pub(crate) const ATTR_CODEC_MASK: i16 = 0x07;
pub(crate) const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
const ATTR_DELETE_HORIZON: i16 = 0x40;

/// A batch's header fields. For a legacy message (magic 0/1) the fields a message lacks are -1,
/// `base_offset` and [`BatchHeader::last_offset`] are both the message's offset (for a compressed
/// wrapper: the offset of its last inner record), and `record_count` is -1 when compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    /// The base timestamp: records add their delta to it. With the delete-horizon flag
    /// (KIP-534, set by the log cleaner) it is the delete horizon instead.
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// The codec named by the attributes; an unknown id is an error when records are decoded.
    pub fn compression(&self) -> Result<Compression, RecordsErrorKind> {
        Compression::from_id(self.attributes & ATTR_CODEC_MASK)
            .map_err(RecordsErrorKind::Compression)
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.magic == 0 {
            TimestampType::NoTimestamp
        } else if self.attributes & ATTR_LOG_APPEND_TIME != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.magic >= 2 && self.attributes & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.magic >= 2 && self.attributes & ATTR_CONTROL != 0
    }
    pub fn has_delete_horizon(&self) -> bool {
        self.magic >= 2 && self.attributes & ATTR_DELETE_HORIZON != 0
    }
    /// The offset of the batch's last record — also after compaction removed records, which is
    /// why a consumer resumes from `last_offset() + 1`, not from its last record's offset + 1.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }
}

/// The kind of a control record (the markers a transaction coordinator writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
    /// A type this client does not know (future Kafka versions); never delivered as data.
    Unknown(i16),
}

/// One complete batch (or legacy message) of a record set, checked but not yet decoded.
#[derive(Debug, Clone)]
pub struct Batch {
    pub header: BatchHeader,
    /// The whole batch, from its base offset field on.
    raw: Bytes,
    /// Where the batch starts in its record set (for error locations).
    position: usize,
}

impl Batch {
    /// Decodes every record of the batch, appending them to `out`.
    pub fn decode_into(
        &self,
        options: &DecodeOptions,
        out: &mut Vec<Record>,
    ) -> Result<(), RecordsError> {
        self.decode_from(options, i64::MIN, out)
    }

    /// Decodes the batch's records with offsets `>= min_offset` into `out` (records below it
    /// are still checked, but not kept).
    pub(crate) fn decode_from(
        &self,
        options: &DecodeOptions,
        min_offset: i64,
        out: &mut Vec<Record>,
    ) -> Result<(), RecordsError> {
        let first = out.len();
        let result = self.decode_unchecked(options, min_offset, out);
        if result.is_err() {
            // All or nothing: records decoded before the fault are dropped with the batch.
            out.truncate(first);
        }
        result
    }

    fn decode_unchecked(
        &self,
        options: &DecodeOptions,
        min_offset: i64,
        out: &mut Vec<Record>,
    ) -> Result<(), RecordsError> {
        if self.header.magic < 2 {
            return legacy::decode_message(&self.header, &self.raw, options, min_offset, out)
                .map_err(|(kind, at)| self.error(kind, at));
        }
        let codec = self
            .header
            .compression()
            .map_err(|kind| self.error(kind, V2_CRC_START))?;
        if codec == Compression::None {
            return decode_v2_records(&self.header, &self.raw, V2_HEADER_SIZE, min_offset, out)
                .map_err(|(bad, at)| self.error(RecordsErrorKind::Malformed(bad), at));
        }
        let inflated = compression::decompress_shared(
            codec,
            &self.raw[V2_HEADER_SIZE..],
            options.decompression_limit(),
        )
        .map_err(|e| self.error(RecordsErrorKind::Compression(e), V2_HEADER_SIZE))?;
        // Positions inside decompressed data mean nothing in the record set: report the start
        // of the compressed records instead.
        decode_v2_records(&self.header, &inflated, 0, min_offset, out)
            .map_err(|(bad, _)| self.error(RecordsErrorKind::Malformed(bad), V2_HEADER_SIZE))
    }

    /// For a control batch, the type of its marker; `None` for a data batch.
    pub fn control_type(
        &self,
        options: &DecodeOptions,
    ) -> Result<Option<ControlType>, RecordsError> {
        if !self.header.is_control() {
            return Ok(None);
        }
        let mut records = Vec::with_capacity(1);
        self.decode_into(options, &mut records)?;
        let key = records.first().and_then(|r| r.key());
        match key {
            Some(key) if key.len() >= 4 => {
                let kind = i16::from_be_bytes([key[2], key[3]]);
                Ok(Some(match kind {
                    0 => ControlType::Abort,
                    1 => ControlType::Commit,
                    other => ControlType::Unknown(other),
                }))
            }
            _ => Err(self.error(
                RecordsErrorKind::Malformed("control batch without a control record key"),
                V2_HEADER_SIZE,
            )),
        }
    }

    /// The batch's bytes as they came in the record set.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    fn error(&self, kind: RecordsErrorKind, at: usize) -> RecordsError {
        RecordsError::new(kind, Some(self.header.base_offset), self.position + at)
    }
}

/// Walks a record set, yielding each complete batch after checking its length and CRC.
///
/// Stops at the first incomplete batch: brokers cut fetch responses at the size limit, so a
/// partial batch at the end is normal (see [`RecordSetReader::truncated`]). Stops after the first
/// error, which it yields once.
pub struct RecordSetReader {
    buf: Bytes,
    pos: usize,
    options: DecodeOptions,
    truncated: bool,
    done: bool,
}

impl RecordSetReader {
    pub fn new(buf: Bytes, options: DecodeOptions) -> Self {
        RecordSetReader {
            buf,
            pos: 0,
            options,
            truncated: false,
            done: false,
        }
    }

    /// Whether the record set ended in an incomplete batch (dropped; fetch it again from the
    /// next offset). Known once `next_batch` has returned `None`.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Byte position of the next batch in the record set.
    pub fn position(&self) -> usize {
        self.pos
    }

    #[allow(clippy::should_implement_trait)] // an Iterator impl follows; this name reads better
    pub fn next_batch(&mut self) -> Option<Result<Batch, RecordsError>> {
        if self.done {
            return None;
        }
        let result = self.read_batch();
        match &result {
            Some(Ok(_)) => {}
            Some(Err(_)) | None => self.done = true,
        }
        result
    }

    fn read_batch(&mut self) -> Option<Result<Batch, RecordsError>> {
        let start = self.pos;
        let data: &[u8] = &self.buf;
        let rest = data.len().saturating_sub(start);
        if rest == 0 {
            return None;
        }
        let mut reader = Reader::new(data, start);
        let (Ok(base_offset), Ok(batch_length)) = (reader.i64(""), reader.i32("")) else {
            self.truncated = true;
            return None;
        };
        let malformed = |what: Bad| {
            Some(Err(RecordsError::new(
                RecordsErrorKind::Malformed(what),
                Some(base_offset),
                start,
            )))
        };
        let Ok(length) = usize::try_from(batch_length) else {
            return malformed("negative batch length");
        };
        let Some(total) = length.checked_add(LOG_OVERHEAD) else {
            return malformed("batch length overflows");
        };
        if total > rest {
            self.truncated = true;
            return None;
        }
        if total < 17 {
            return malformed("batch too short to hold a magic byte");
        }
        let raw = self.buf.slice(start..start + total);
        let magic = raw[16] as i8;
        let header = match magic {
            2 => parse_v2_header(&raw, base_offset, batch_length),
            0 | 1 => legacy::parse_header(&raw, base_offset, batch_length, magic),
            other => Err((RecordsErrorKind::UnsupportedMagic(other), 16)),
        };
        let header = match header {
            Ok(header) => header,
            Err((kind, at)) => {
                return Some(Err(RecordsError::new(kind, Some(base_offset), start + at)))
            }
        };
        if self.options.verify_crc {
            let (covered, stored) = if magic == 2 {
                (&raw[V2_CRC_START..], header.crc)
            } else {
                (&raw[legacy::CRC_START..], header.crc)
            };
            let computed = if magic == 2 {
                crc32c::crc32c(covered)
            } else {
                crc32fast::hash(covered)
            };
            if computed != stored {
                return Some(Err(RecordsError::new(
                    RecordsErrorKind::CrcMismatch {
                        magic,
                        stored,
                        computed,
                    },
                    Some(base_offset),
                    start,
                )));
            }
        }
        self.pos = start + total;
        Some(Ok(Batch {
            header,
            raw,
            position: start,
        }))
    }
}

impl Iterator for RecordSetReader {
    type Item = Result<Batch, RecordsError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}

/// A guess at how many records a record set holds, from its v2 batch headers alone, so the
/// caller can size its `Vec` once: growing a vector of a few thousand records by doubling copies
/// it over and over, which showed up as a third of the decode time. Bounded by the set's size, so
/// garbage cannot make it allocate much.
pub(crate) fn record_count_hint(set: &[u8]) -> usize {
    let mut pos = 0usize;
    let mut total = 0usize;
    while let Some(header) = pos
        .checked_add(V2_HEADER_SIZE)
        .and_then(|end| set.get(pos..end))
    {
        let length = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        let count = if header[16] == 2 {
            i32::from_be_bytes([header[57], header[58], header[59], header[60]])
        } else {
            1
        };
        total = total.saturating_add(usize::try_from(count).unwrap_or(0));
        pos = pos.saturating_add(length).saturating_add(LOG_OVERHEAD);
    }
    total.min(set.len() / 4)
}

pub(super) fn parse_v2_header(
    raw: &[u8],
    base_offset: i64,
    batch_length: i32,
) -> Result<BatchHeader, (RecordsErrorKind, usize)> {
    if raw.len() < V2_HEADER_SIZE {
        return Err((
            RecordsErrorKind::Malformed("batch length smaller than a v2 batch header"),
            8,
        ));
    }
    let mut r = Reader::new(raw, LOG_OVERHEAD);
    let bad = |what| (RecordsErrorKind::Malformed(what), LOG_OVERHEAD);
    let short = "v2 batch header cut short";
    let partition_leader_epoch = r.i32(short).map_err(bad)?;
    let magic = r.i8(short).map_err(bad)?;
    let crc = r.u32(short).map_err(bad)?;
    let attributes = r.i16(short).map_err(bad)?;
    let last_offset_delta = r.i32(short).map_err(bad)?;
    let first_timestamp = r.i64(short).map_err(bad)?;
    let max_timestamp = r.i64(short).map_err(bad)?;
    let producer_id = r.i64(short).map_err(bad)?;
    let producer_epoch = r.i16(short).map_err(bad)?;
    let base_sequence = r.i32(short).map_err(bad)?;
    let record_count = r.i32(short).map_err(bad)?;
    if record_count < 0 {
        return Err((
            RecordsErrorKind::Malformed("negative record count"),
            V2_HEADER_SIZE - 4,
        ));
    }
    Ok(BatchHeader {
        base_offset,
        batch_length,
        partition_leader_epoch,
        magic,
        crc,
        attributes,
        last_offset_delta,
        first_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        record_count,
    })
}

/// The hot loop: decodes `header.record_count` records from `buf[start..]`, which they must fill
/// exactly. Keys, values and headers are slices of `buf`. Errors carry the position in `buf`.
fn decode_v2_records(
    header: &BatchHeader,
    buf: &Bytes,
    start: usize,
    min_offset: i64,
    out: &mut Vec<Record>,
) -> Result<(), (Bad, usize)> {
    let data: &[u8] = buf;
    let count = header.record_count as usize;
    // Trust the count only as far as the bytes could hold that many records.
    out.reserve(count.min(data.len().saturating_sub(start) / MIN_RECORD_SIZE));
    let timestamp_type = header.timestamp_type();
    let log_append_time = timestamp_type == TimestampType::LogAppendTime;
    let mut reader = Reader::new(data, start);
    for _ in 0..count {
        let at = reader.pos;
        let length = reader
            .varint("record count larger than the records in the batch")
            .map_err(|bad| (bad, at))?;
        let length = usize::try_from(length).map_err(|_| ("negative record length", at))?;
        let record_start = reader.pos;
        let record_end = record_start
            .checked_add(length)
            .filter(|&end| end <= data.len())
            .ok_or(("record runs past the end of its batch", at))?;
        let mut r = Reader::new(&data[..record_end], record_start);
        let past = "record fields run past the record's length";
        let fields = (|| {
            let _attributes = r.i8(past)?;
            let timestamp_delta = r.varlong(past)?;
            let offset_delta = r.varint(past)?;
            let key = r.nullable_bytes(past)?;
            let value = r.nullable_bytes(past)?;
            let header_count = r.varint(past)?;
            Ok((timestamp_delta, offset_delta, key, value, header_count))
        })();
        let (timestamp_delta, offset_delta, key, value, header_count) =
            fields.map_err(|bad| (bad, at))?;
        let (headers, header_count) = if header_count == 0 {
            if r.pos != record_end {
                return Err(("record length does not match its fields", at));
            }
            (Span::EMPTY, 0)
        } else {
            let count =
                validate_headers(data, r.pos, record_end, header_count).map_err(|bad| (bad, at))?;
            (Span::of(r.pos..record_end), count)
        };
        reader.pos = record_end;
        let offset = header.base_offset.wrapping_add(i64::from(offset_delta));
        if offset < min_offset {
            continue;
        }
        out.push(Record {
            offset,
            timestamp: if log_append_time {
                header.max_timestamp
            } else {
                header.first_timestamp.wrapping_add(timestamp_delta)
            },
            timestamp_type,
            header_count,
            buf: buf.clone(),
            key: Span::of_option(key),
            value: Span::of_option(value),
            headers,
        });
    }
    if reader.pos != data.len() {
        return Err(("bytes left after the batch's last record", reader.pos));
    }
    Ok(())
}
