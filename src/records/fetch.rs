//! From one partition's fetched record set to the records a consumer should see.

use bytes::Bytes;

use super::batch::{
    parse_v2_header, record_count_hint, ControlType, RecordSetReader, LOG_OVERHEAD, V2_HEADER_SIZE,
};
use super::error::RecordsError;
use super::record::Record;
use super::DecodeOptions;
use crate::compression::Compression;

/// Kafka's isolation levels for fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Everything up to the high-water mark, aborted transactions included.
    #[default]
    ReadUncommitted,
    /// Up to the last stable offset, without records of aborted transactions.
    ReadCommitted,
}

/// An entry of a fetch response's aborted-transactions list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// What was asked for one partition, as needed to interpret the answer.
#[derive(Debug, Clone, Copy)]
pub struct PartitionFetch<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// The fetch request's offset: records below it (the broker returns whole batches) are
    /// skipped.
    pub fetch_offset: i64,
    pub isolation: Isolation,
    /// From the fetch response; only used with [`Isolation::ReadCommitted`].
    pub aborted_transactions: &'a [AbortedTransaction],
}

/// The outcome of decoding one partition's record set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchedRecords {
    /// Data records at or above the fetch offset, in offset order.
    pub records: Vec<Record>,
    /// Where the next fetch starts: one past the last complete batch that was read, whether its
    /// records were delivered or skipped (control markers, aborted transactions, compacted gaps).
    /// The fetch offset itself when no complete batch came back.
    pub next_offset: i64,
    /// The set ended in an incomplete batch, which was dropped (normal: the broker cuts responses
    /// at the size limit). Truncated with no complete batch at all means the fetch size is too
    /// small for the next batch.
    pub truncated: bool,
    /// Complete batches read (including skipped ones).
    pub batches: usize,
    pub skipped_control_batches: usize,
    pub skipped_aborted_batches: usize,
    /// A batch that could not be decoded. Everything before it is in `records` and counted in
    /// `next_offset`, so fetching again reaches the same batch: the caller decides (stop the
    /// partition, report, or skip past it on purpose).
    pub error: Option<RecordsError>,
}

/// Decodes a partition's record set the way a consumer must: see [`FetchedRecords`].
pub fn decode_fetched(
    set: Bytes,
    fetch: &PartitionFetch<'_>,
    options: &DecodeOptions,
) -> FetchedRecords {
    let mut result = FetchedRecords {
        records: Vec::with_capacity(record_count_hint(&set)),
        next_offset: fetch.fetch_offset,
        ..FetchedRecords::default()
    };
    let mut reader = RecordSetReader::new(set, options.clone());
    let read_committed = fetch.isolation == Isolation::ReadCommitted;
    let mut aborted = Vec::new();
    if read_committed && !fetch.aborted_transactions.is_empty() {
        aborted.extend_from_slice(fetch.aborted_transactions);
        aborted.sort_by_key(|t| t.first_offset);
    }
    let mut next_aborted = 0;
    // Producers whose transaction is open and known to be aborted at this point of the log.
    let mut aborting: Vec<i64> = Vec::new();

    while let Some(batch) = reader.next_batch() {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                result.error = Some(e.at(fetch.topic, fetch.partition));
                break;
            }
        };
        result.batches += 1;
        let header = &batch.header;
        let after = header.last_offset().wrapping_add(1);

        if read_committed && header.producer_id >= 0 {
            while let Some(t) = aborted.get(next_aborted) {
                if t.first_offset > header.last_offset() {
                    break;
                }
                if !aborting.contains(&t.producer_id) {
                    aborting.push(t.producer_id);
                }
                next_aborted += 1;
            }
            if header.is_control() {
                match batch.control_type(options) {
                    Ok(Some(ControlType::Abort)) => {
                        aborting.retain(|&id| id != header.producer_id);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        result.error = Some(e.at(fetch.topic, fetch.partition));
                        break;
                    }
                }
            } else if header.is_transactional() && aborting.contains(&header.producer_id) {
                result.skipped_aborted_batches += 1;
                result.next_offset = result.next_offset.max(after);
                continue;
            }
        }
        if header.is_control() {
            result.skipped_control_batches += 1;
            result.next_offset = result.next_offset.max(after);
            continue;
        }
        if header.last_offset() >= fetch.fetch_offset {
            if let Err(e) = batch.decode_from(options, fetch.fetch_offset, &mut result.records) {
                result.error = Some(e.at(fetch.topic, fetch.partition));
                break;
            }
        }
        result.next_offset = result.next_offset.max(after);
    }
    result.truncated = reader.truncated();
    result
}

/// What the batch headers of a record set say, read without decoding or checking the batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeekedFetch {
    /// Where the next fetch would start if every complete batch decodes: what
    /// [`decode_fetched`] then reports as `next_offset`.
    pub next_offset: i64,
    /// The records the complete batches hold, as their headers say.
    pub records: usize,
}

/// The compressed bytes per record of a set's first batch, when that is a compressed v2 batch
/// (from its header alone). Decompressing is most of what decoding such a set costs when the
/// records are large, and parsing them when they are small: this tells which.
pub fn compressed_record_size(set: &[u8]) -> Option<usize> {
    let raw = set.get(..V2_HEADER_SIZE)?;
    let base_offset = i64::from_be_bytes(raw[..8].try_into().ok()?);
    let batch_length = i32::from_be_bytes(raw[8..12].try_into().ok()?);
    let header = parse_v2_header(raw, base_offset, batch_length).ok()?;
    if header.magic != 2 || header.compression().ok()? == Compression::None {
        return None;
    }
    let length = usize::try_from(header.batch_length).ok()?;
    Some(length / usize::try_from(header.record_count).ok()?.max(1))
}

/// The next fetch offset of a partition's record set, from its batch headers alone, so the
/// next fetch can be sent before this one is decoded (decoding 1 KiB lz4 records takes longer
/// than the fetch round trip). `None` when there is nothing to go on: no complete batch, a
/// batch that is not magic v2, or a header that cannot be right. It is a prediction: the caller
/// must still compare it with what decoding finds, as a corrupt batch stops decoding early.
pub fn peek_next_offset(set: &[u8], fetch_offset: i64) -> Option<PeekedFetch> {
    let mut pos = 0usize;
    let mut peeked = PeekedFetch {
        next_offset: fetch_offset,
        records: 0,
    };
    while let Some(header) = set.get(pos..pos.checked_add(V2_HEADER_SIZE)?) {
        let base = i64::from_be_bytes(header[..8].try_into().ok()?);
        let length = usize::try_from(i32::from_be_bytes(header[8..12].try_into().ok()?)).ok()?;
        let end = pos.checked_add(LOG_OVERHEAD)?.checked_add(length)?;
        if header[16] != 2 || end < pos + V2_HEADER_SIZE {
            return None;
        }
        if end > set.len() {
            break; // the broker cut the last batch: not counted, as in decoding
        }
        let delta = i32::from_be_bytes(header[23..27].try_into().ok()?);
        let count = i32::from_be_bytes(header[57..61].try_into().ok()?);
        let (Ok(delta), Ok(count)) = (u32::try_from(delta), usize::try_from(count)) else {
            return None;
        };
        let after = base.checked_add(i64::from(delta))?.checked_add(1)?;
        peeked.next_offset = peeked.next_offset.max(after);
        peeked.records = peeked.records.saturating_add(count);
        pos = end;
    }
    (peeked.next_offset > fetch_offset).then_some(peeked)
}
