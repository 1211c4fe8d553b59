//! The one error type of record decoding and encoding, saying what went wrong and where.

use std::fmt;

use crate::compression::CompressionError;

/// What was wrong with a record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsErrorKind {
    /// The stored checksum does not match the bytes: the batch was corrupted on disk or in flight.
    CrcMismatch {
        magic: i8,
        stored: u32,
        computed: u32,
    },
    /// A magic byte other than 0, 1 or 2.
    UnsupportedMagic(i8),
    /// The codec id is unknown, the compressed data is corrupt, or it is larger than the limit.
    Compression(CompressionError),
    /// A length, count or varint that does not fit the bytes around it.
    Malformed(&'static str),
    /// A batch that cannot be written (empty, or larger than the format allows).
    Encode(&'static str),
}

impl fmt::Display for RecordsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordsErrorKind::CrcMismatch {
                magic,
                stored,
                computed,
            } => write!(
                f,
                "CRC mismatch in a magic-{magic} batch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            RecordsErrorKind::UnsupportedMagic(magic) => {
                write!(f, "unsupported record format: magic byte {magic}")
            }
            RecordsErrorKind::Compression(e) => write!(f, "{e}"),
            RecordsErrorKind::Malformed(what) => write!(f, "malformed record data: {what}"),
            RecordsErrorKind::Encode(what) => write!(f, "cannot encode the batch: {what}"),
        }
    }
}

/// A record set that cannot be decoded (or a batch that cannot be encoded), with its location:
/// topic and partition when known, the batch's base offset when its header was readable, and the
/// byte position in the record set where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsError {
    pub kind: RecordsErrorKind,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub base_offset: Option<i64>,
    pub position: usize,
}

impl RecordsError {
    pub(crate) fn new(kind: RecordsErrorKind, base_offset: Option<i64>, position: usize) -> Self {
        RecordsError {
            kind,
            topic: None,
            partition: None,
            base_offset,
            position,
        }
    }

    /// Names the partition the record set came from.
    pub fn at(mut self, topic: &str, partition: i32) -> Self {
        self.topic = Some(topic.to_owned());
        self.partition = Some(partition);
        self
    }
}

impl fmt::Display for RecordsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.kind)?;
        if let (Some(topic), Some(partition)) = (&self.topic, self.partition) {
            write!(f, "topic {topic} partition {partition}, ")?;
        }
        if let Some(base) = self.base_offset {
            write!(f, "batch at base offset {base}, ")?;
        }
        write!(f, "byte {} of the record set)", self.position)
    }
}

impl std::error::Error for RecordsError {}

impl From<RecordsError> for crate::Error {
    fn from(e: RecordsError) -> Self {
        crate::Error::Records(Box::new(e))
    }
}
