//! The producer's decisions, without I/O: which records form a batch, when a batch is due, which
//! batches go in one request to which broker, and what a broker's answer means for each record.
//!
//! The actix `Producer` actor (konsumer-actors) owns an [`Accumulator`] and calls it in this
//! order: [`Accumulator::append`] for each record; [`Accumulator::drain`] when a batch filled up
//! or the wake-up time it returned has come; for each [`InFlightRequest`] it sends, once the
//! answer (or the failure) is known, [`InFlightRequest::outcomes`], then
//! [`Accumulator::complete`] or [`Accumulator::retry_or_fail`] per batch; and
//! [`Accumulator::take_failures`] after each step. Time is always passed in.
//!
//! Ordering: a partition has at most one batch in flight. A batch that must be retried goes back
//! to the front of its partition's queue, so a partition's records are written in the order they
//! were appended even across retries (without needing idempotent-producer sequence numbers).

mod accumulator;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::backoff::Backoff;
use crate::compression::Compression;
use crate::error::Error;

pub use accumulator::{
    Accumulator, Appended, Delivered, Drained, Failed, InFlightBatch, InFlightRequest,
};

/// How many replicas must have a record before the broker acknowledges it (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// `acks=0`: the broker sends no answer; a record counts as delivered once it is written to
    /// the connection, and its offset is unknown.
    None,
    /// `acks=1`: the leader has written it.
    Leader,
    /// `acks=all` (-1): every in-sync replica has it. The Java client's default since Kafka 3.0.
    #[default]
    All,
}

impl Acks {
    /// The value of the Produce request's `acks` field.
    pub fn code(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Producer settings. Names follow the Java client's (`linger.ms`, `batch.size`, ...); the
/// defaults follow librdkafka's where the two differ, because they favour throughput.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent (`linger.ms`).
    pub linger: Duration,
    /// A batch is sent as soon as its uncompressed size reaches this (`batch.size`).
    pub batch_size: usize,
    /// Largest Produce request, and so the largest record (`max.request.size`).
    pub max_request_size: usize,
    pub compression: Compression,
    /// Codec level; `None` is the codec's default. See [`crate::compression::compress`].
    pub compression_level: Option<i32>,
    /// How long a Produce request may take (`request.timeout.ms`): sent as the request's
    /// `timeout_ms` (the broker's wait for replication with `acks=all`) and the time the
    /// producer waits for the answer before it counts the attempt as failed.
    pub request_timeout: Duration,
    /// A record not acknowledged this long after it was handed over fails with
    /// [`Error::DeliveryTimeout`] (`delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Retries of a batch after a retriable error (`retries`); the delivery timeout bounds them
    /// as well.
    pub retries: u32,
    /// Delay before each retry of a batch (`retry.backoff.ms` .. `retry.backoff.max.ms`).
    pub retry_backoff: Backoff,
    /// Bytes the producer may hold in batches not yet acknowledged (`buffer.memory`); a record
    /// beyond it fails at once with [`Error::QueueFull`].
    pub max_buffered_bytes: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 1_000_000,
            max_request_size: 1_048_576,
            compression: Compression::None,
            compression_level: None,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            retries: u32::MAX,
            retry_backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
                multiplier: 2.0,
                jitter: 0.2,
            },
            max_buffered_bytes: 64 * 1024 * 1024,
        }
    }
}

impl ProducerConfig {
    /// Checks every field; the error names the field and what is wrong with it.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, detail: String| Err(Error::Config { field, detail });
        if self.batch_size == 0 {
            return bad("batch_size", "must be greater than zero".into());
        }
        if self.max_request_size < 1024 || self.max_request_size > i32::MAX as usize {
            return bad(
                "max_request_size",
                format!("{} is outside 1 KiB..2 GiB", self.max_request_size),
            );
        }
        if self.max_buffered_bytes < self.max_request_size {
            return bad(
                "max_buffered_bytes",
                format!(
                    "{} is smaller than max_request_size ({}): the largest record could never be taken",
                    self.max_buffered_bytes, self.max_request_size
                ),
            );
        }
        if self.request_timeout.is_zero() || self.request_timeout.as_millis() > i32::MAX as u128 {
            return bad(
                "request_timeout",
                "must be between 1 ms and i32::MAX ms".into(),
            );
        }
        if self.delivery_timeout.is_zero() {
            return bad("delivery_timeout", "must be greater than zero".into());
        }
        let b = &self.retry_backoff;
        if b.initial.is_zero() || b.initial > b.max {
            return bad(
                "retry_backoff",
                format!("need 0 < initial <= max, got {:?}..{:?}", b.initial, b.max),
            );
        }
        if b.multiplier < 1.0 || !(0.0..1.0).contains(&b.jitter) {
            return bad(
                "retry_backoff",
                "multiplier must be >= 1 and jitter in [0, 1)".into(),
            );
        }
        // Checks the level against the codec's range once, here, instead of on every batch.
        crate::compression::compress(
            self.compression,
            self.compression_level,
            b"",
            &mut Vec::new(),
        )
        .map_err(|e| Error::Config {
            field: "compression_level",
            detail: e.to_string(),
        })?;
        Ok(())
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: Arc<str>,
    pub partition: i32,
    /// `None` with `acks=0`: the broker does not say.
    pub offset: Option<i64>,
    /// The record's timestamp: the one it was sent with, or the broker's append time when the
    /// topic uses `LogAppendTime`.
    pub timestamp: i64,
}

/// A record that could not be produced, with the reason and the record's identity.
#[derive(Debug, Clone)]
pub struct ProduceError {
    pub topic: Arc<str>,
    /// `None` when the record failed before a partition was chosen (e.g. an unknown topic).
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    /// Boxed: keeps `Result<RecordMetadata, ProduceError>` small on the success path.
    pub error: Box<Error>,
}

impl fmt::Display for ProduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot produce to topic {}", self.topic)?;
        if let Some(partition) = self.partition {
            write!(f, " partition {partition}")?;
        }
        match &self.key {
            None => write!(f, " (no key)")?,
            Some(key) => {
                // Keys are bytes; show them as text when they are, shortened.
                let shown = String::from_utf8_lossy(&key[..key.len().min(64)]);
                let more = if key.len() > 64 { "…" } else { "" };
                write!(f, " (key {shown:?}{more})")?
            }
        }
        write!(f, ": {}", self.error)
    }
}

impl std::error::Error for ProduceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
