//! Writing RecordBatch v2, for the producer and the sidechannel (and for tests that need batches
//! a real broker would never produce, such as transaction markers).

use bytes::Bytes;

use super::batch::{ControlType, V2_CRC_START, V2_HEADER_SIZE};
use super::error::{RecordsError, RecordsErrorKind};
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use crate::compression::{self, Compression};

/// A header to write: a key and an optional value (`None` is a null value).
pub type NewHeader<'a> = (&'a str, Option<&'a [u8]>);

/// No headers, typed for [`BatchBuilder::append`].
pub const NO_HEADERS: &[NewHeader<'static>] = &[];

/// Builds one v2 batch. Records are encoded as they are appended (one buffer for the whole batch);
/// compression and the CRC happen in [`BatchBuilder::build`].
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    level: Option<i32>,
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    log_append_time: Option<i64>,
    records: Vec<u8>,
    count: i32,
    first_timestamp: Option<i64>,
    max_timestamp: i64,
    last_offset_delta: i32,
}

impl BatchBuilder {
    /// A batch at base offset 0 (brokers assign offsets on append) with no producer id.
    /// `level` None is the codec's default; see [`compression::compress`] for the ranges.
    pub fn new(compression: Compression, level: Option<i32>) -> Self {
        BatchBuilder {
            compression,
            level,
            base_offset: 0,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            log_append_time: None,
            records: Vec::new(),
            count: 0,
            first_timestamp: None,
            max_timestamp: -1,
            last_offset_delta: -1,
        }
    }

    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Idempotent/transactional producer fields.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Marks the batch as stamped by the broker at `append_time` (what a broker writes for a
    /// topic with `message.timestamp.type=LogAppendTime`); every record then reads that time.
    pub fn log_append_time(mut self, append_time: i64) -> Self {
        self.log_append_time = Some(append_time);
        self
    }

    /// A transaction marker batch, as a transaction coordinator writes it.
    pub fn control_marker(
        marker: ControlType,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        timestamp: i64,
    ) -> Self {
        let kind: i16 = match marker {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
            ControlType::Unknown(kind) => kind,
        };
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&kind.to_be_bytes());
        let mut value = Vec::with_capacity(6);
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&coordinator_epoch.to_be_bytes());
        let mut builder = BatchBuilder::new(Compression::None, None)
            .producer(producer_id, producer_epoch, -1)
            .transactional(true);
        builder.control = true;
        builder.append(timestamp, Some(&key), Some(&value), NO_HEADERS);
        builder
    }

    /// Appends a record at the next offset; returns its offset delta.
    pub fn append<K, V>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(K, Option<V>)],
    ) -> i32
    where
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let delta = self.last_offset_delta.wrapping_add(1);
        self.append_at(delta, timestamp, key, value, headers);
        delta
    }

    /// Appends a record at `offset_delta`, which must be above the previous record's (gaps are
    /// what compaction leaves; tests use them).
    pub fn append_at<K, V>(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(K, Option<V>)],
    ) where
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        debug_assert!(
            offset_delta > self.last_offset_delta,
            "offsets must increase"
        );
        let first = *self.first_timestamp.get_or_insert(timestamp);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let timestamp_delta = timestamp.wrapping_sub(first);
        let field_len = |b: Option<&[u8]>| match b {
            None => 1,
            Some(b) => varint_len(b.len() as i32) + b.len(),
        };
        // The length prefix comes first, so compute the size instead of encoding twice.
        let mut length = 1 // attributes
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + field_len(key)
            + field_len(value)
            + varint_len(headers.len() as i32);
        for (name, value) in headers {
            length += field_len(Some(name.as_ref().as_bytes()));
            length += field_len(value.as_ref().map(|v| v.as_ref()));
        }
        let out = &mut self.records;
        out.reserve(length + 5);
        put_varint(out, length as i32);
        out.push(0); // record attributes: unused
        put_varlong(out, timestamp_delta);
        put_varint(out, offset_delta);
        put_bytes(out, key);
        put_bytes(out, value);
        put_varint(out, headers.len() as i32);
        for (name, value) in headers {
            put_bytes(out, Some(name.as_ref().as_bytes()));
            put_bytes(out, value.as_ref().map(|v| v.as_ref()));
        }
        self.count += 1;
        self.last_offset_delta = offset_delta;
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The batch's size before compression: what a producer compares with `batch.size`.
    pub fn uncompressed_size(&self) -> usize {
        V2_HEADER_SIZE + self.records.len()
    }

    /// Compresses the records, writes the header and the CRC.
    pub fn build(self) -> Result<Bytes, RecordsError> {
        let encode_error =
            |what| RecordsError::new(RecordsErrorKind::Encode(what), Some(self.base_offset), 0);
        if self.count == 0 {
            return Err(encode_error("a batch needs at least one record"));
        }
        let mut out = Vec::with_capacity(V2_HEADER_SIZE + self.records.len());
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // batch length, set below
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(2); // magic
        out.extend_from_slice(&0u32.to_be_bytes()); // CRC, set below
        let mut attributes = self.compression.id();
        if self.log_append_time.is_some() {
            attributes |= 0x08;
        }
        if self.transactional {
            attributes |= 0x10;
        }
        if self.control {
            attributes |= 0x20;
        }
        out.extend_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&self.last_offset_delta.to_be_bytes());
        let first_timestamp = self.first_timestamp.unwrap_or(-1);
        out.extend_from_slice(&first_timestamp.to_be_bytes());
        let max_timestamp = self.log_append_time.unwrap_or(self.max_timestamp);
        out.extend_from_slice(&max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        compression::compress(self.compression, self.level, &self.records, &mut out).map_err(
            |e| RecordsError::new(RecordsErrorKind::Compression(e), Some(self.base_offset), 0),
        )?;
        let batch_length =
            i32::try_from(out.len() - 12).map_err(|_| encode_error("batch larger than 2 GiB"))?;
        out[8..12].copy_from_slice(&batch_length.to_be_bytes());
        let crc = crc32c::crc32c(&out[V2_CRC_START..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(Bytes::from(out))
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
    }
}
