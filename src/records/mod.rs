//! Kafka record sets: RecordBatch v2 and the legacy MessageSet v0/v1, decoded without copying.
//!
//! A fetch response carries, per partition, a record set: a run of batches (magic 2) or legacy
//! messages (magic 0/1), possibly cut off in the middle of the last one. This module turns those
//! bytes into [`Record`]s and writes v2 batches for the producer and the sidechannel.
//!
//! Zero-copy: the fetch response arrives as one [`Bytes`] buffer; keys, values and header values of
//! an uncompressed batch are slices of it (a reference count, no copy). A compressed batch is
//! decompressed once into one buffer that all of its records slice. Decoding allocates per batch at
//! most that buffer, and per fetch one `Vec<Record>` — never per record.
//!
//! Layers, from the bottom:
//! - [`RecordSetReader`] walks a record set batch by batch, checking lengths and CRCs.
//! - [`Batch::decode_into`] decodes one batch's records into a caller's `Vec`.
//! - [`decode_fetched`] applies what a consumer needs on top: skip records below the fetch
//!   offset, drop control batches and aborted transactions (read_committed), compute the next
//!   offset to fetch, stop cleanly at a truncated tail.
//! - [`BatchBuilder`] encodes a v2 batch with any codec.
//!
//! Nothing here trusts the bytes: every length is checked before it is used, allocations are
//! bounded by the input size (or [`DecodeOptions::max_decompressed_bytes`]), and all arithmetic on
//! read values is checked or wrapping — bad input is a [`RecordsError`], never a panic.

mod batch;
mod encode;
mod error;
mod fetch;
mod legacy;
mod record;
#[cfg(test)]
mod tests;
mod varint;

pub use batch::{Batch, BatchHeader, ControlType, RecordSetReader};
pub use encode::{BatchBuilder, NewHeader, NO_HEADERS};
pub use error::{RecordsError, RecordsErrorKind};
pub use fetch::{
    compressed_record_size, decode_fetched, peek_next_offset, AbortedTransaction, FetchedRecords,
    Isolation, PartitionFetch, PeekedFetch,
};
pub use record::{Header, Headers, HeadersIter, Record, TimestampType};

use bytes::Bytes;

/// Limits and checks applied while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Check each batch's CRC (CRC32C for v2, CRC32 for legacy messages). On by default, as in
    /// the Java client: a corrupt batch must not reach a handler as if it were data.
    pub verify_crc: bool,
    /// The most bytes one compressed batch may decompress to. A batch that would exceed it is a
    /// [`RecordsErrorKind::Compression`] error (a decompression bomb, or a limit set too low).
    pub max_decompressed_bytes: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            verify_crc: true,
            // Brokers cap a batch at message.max.bytes (1 MiB by default) compressed; 128 MiB
            // leaves room for highly compressible data while bounding what garbage can cost.
            max_decompressed_bytes: 128 * 1024 * 1024,
        }
    }
}

impl DecodeOptions {
    /// The limit actually applied: records address their buffer with u32 positions, so no
    /// decompressed buffer may exceed 4 GiB whatever the configuration says.
    pub(crate) fn decompression_limit(&self) -> usize {
        self.max_decompressed_bytes.min(u32::MAX as usize)
    }
}

/// Decodes every record of every complete batch in `set` (no filtering), in order. A
/// convenience for tests and tools; consumers use [`decode_fetched`].
pub fn decode_all(set: Bytes, options: &DecodeOptions) -> Result<Vec<Record>, RecordsError> {
    let mut reader = RecordSetReader::new(set, options.clone());
    let mut records = Vec::new();
    while let Some(batch) = reader.next_batch() {
        batch?.decode_into(options, &mut records)?;
    }
    Ok(records)
}
