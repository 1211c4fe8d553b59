//! Per-partition batch queues: open batch -> closed batches -> one in flight.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::ProducerConfig;
use crate::error::{Context, Error};
use crate::records::BatchBuilder;

/// Bytes a record adds to a batch beyond its key, value and header bytes, at most: the length,
/// attributes, timestamp delta, offset delta, key and value lengths and header count varints.
/// An upper bound, so a batch never exceeds `batch_size` by more than one record.
const RECORD_OVERHEAD: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
/// Bytes a header adds beyond its name and value, at most (two length varints).
const HEADER_OVERHEAD: usize = 10;
/// The RecordBatch v2 header.
const BATCH_HEADER: usize = 61;
/// Produce request overhead per partition and per topic beyond the record bytes, at most
/// (partition index, records length, topic name length, array lengths, tagged fields).
const PARTITION_OVERHEAD: usize = 16;
const TOPIC_OVERHEAD: usize = 16;
/// Request header and fixed fields, at most (plus the client id, which the connection adds).
const REQUEST_OVERHEAD: usize = 64;

/// What [`Accumulator::append`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The record's sequence number: increases by one per record taken, across partitions.
    pub seq: u64,
    /// The record started a new batch: the batch is due `linger` from now.
    pub new_batch: bool,
    /// A batch of this partition was closed (full): it can be sent now, and a sticky
    /// partitioner should move on.
    pub batch_closed: bool,
}

/// Records that failed for good, with why.
#[derive(Debug)]
pub struct Failed<T> {
    pub topic: Arc<str>,
    pub partition: i32,
    pub tokens: Vec<T>,
    pub error: Error,
}

/// What [`Accumulator::drain`] found.
#[derive(Debug)]
pub struct Drained<T> {
    /// Requests to send now, each to one broker and within `max_request_size`.
    pub requests: Vec<InFlightRequest<T>>,
    /// When to drain again if nothing else happens (a linger or a retry backoff ends, or a
    /// batch waiting for a leader expires).
    pub wake_at: Option<Instant>,
    /// Some batch is ready but its partition has no known leader: refresh the metadata.
    pub missing_leader: bool,
}

/// How a broker acknowledged a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Offset of the batch's first record; `None` with `acks=0`.
    pub base_offset: Option<i64>,
    /// Set when the topic stamps records with the broker's append time.
    pub log_append_time: Option<i64>,
}

/// One encoded batch on its way to (or back from) a broker, owning its records' tokens.
#[derive(Debug)]
pub struct InFlightBatch<T> {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Tokens of the batch's records, in offset order.
    pub tokens: Vec<T>,
    /// Record timestamps, in the same order.
    pub timestamps: Vec<i64>,
    records: Bytes,
    id: u64,
    created: Instant,
    attempts: u32,
    buffered: usize,
}

impl<T> InFlightBatch<T> {
    /// Send attempts so far, this one included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// The encoded (compressed) size.
    pub fn encoded_len(&self) -> usize {
        self.records.len()
    }
    /// The encoded batch, as the request carries it.
    pub fn records(&self) -> &Bytes {
        &self.records
    }
}

/// Batches for one broker, to go in one Produce request.
#[derive(Debug)]
pub struct InFlightRequest<T> {
    pub node: i32,
    pub batches: Vec<InFlightBatch<T>>,
}

impl<T> InFlightRequest<T> {
    /// The Produce request carrying these batches, grouped by topic.
    pub fn request(&self, config: &ProducerConfig) -> ProduceRequest {
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for batch in &self.batches {
            let data = PartitionProduceData::default()
                .with_index(batch.partition)
                .with_records(Some(batch.records.clone()));
            match topics.iter_mut().find(|t| *t.name.0 == *batch.topic) {
                Some(topic) => topic.partition_data.push(data),
                None => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(batch.topic.to_string())))
                        .with_partition_data(vec![data]),
                ),
            }
        }
        ProduceRequest::default()
            .with_acks(config.acks.code())
            .with_timeout_ms(config.request_timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(topics)
    }

    /// Pairs each batch with what the broker said about it. `response` is `None` for `acks=0`
    /// (the broker does not answer). A partition the answer leaves out is a protocol error.
    #[allow(clippy::type_complexity)]
    pub fn outcomes(
        self,
        response: Option<&ProduceResponse>,
        broker: &str,
    ) -> Vec<(InFlightBatch<T>, Result<Delivered, Error>)> {
        let Some(response) = response else {
            let delivered = Delivered {
                base_offset: None,
                log_append_time: None,
            };
            return self
                .batches
                .into_iter()
                .map(|b| (b, Ok(delivered)))
                .collect();
        };
        self.batches
            .into_iter()
            .map(|batch| {
                let answer = response
                    .responses
                    .iter()
                    .filter(|t| *t.name.0 == *batch.topic)
                    .flat_map(|t| t.partition_responses.iter())
                    .find(|p| p.index == batch.partition);
                let outcome = match answer {
                    None => Err(Error::Protocol {
                        broker: broker.to_owned(),
                        detail: format!(
                            "Produce answer says nothing about {}/{}",
                            batch.topic, batch.partition
                        ),
                    }),
                    Some(p) => Error::check(p.error_code, || {
                        Context::broker(broker)
                            .with_api(ApiKey::Produce)
                            .with_topic(batch.topic.to_string())
                            .with_partition(batch.partition)
                    })
                    .map(|()| Delivered {
                        base_offset: Some(p.base_offset),
                        log_append_time: (p.log_append_time_ms >= 0)
                            .then_some(p.log_append_time_ms),
                    }),
                };
                (batch, outcome)
            })
            .collect()
    }
}

struct OpenBatch<T> {
    id: u64,
    created: Instant,
    builder: BatchBuilder,
    tokens: Vec<T>,
    timestamps: Vec<i64>,
    buffered: usize,
}

struct ClosedBatch<T> {
    id: u64,
    created: Instant,
    records: Bytes,
    tokens: Vec<T>,
    timestamps: Vec<i64>,
    buffered: usize,
    attempts: u32,
    last_error: Option<String>,
}

struct PartitionQueue<T> {
    open: Option<OpenBatch<T>>,
    closed: VecDeque<ClosedBatch<T>>,
    in_flight: bool,
    /// Set after a failed attempt: the front batch is not sent again before this.
    retry_at: Option<Instant>,
}

impl<T> Default for PartitionQueue<T> {
    fn default() -> Self {
        PartitionQueue {
            open: None,
            closed: VecDeque::new(),
            in_flight: false,
            retry_at: None,
        }
    }
}

/// Batches per partition, waiting to be sent or in flight. `T` is the caller's token for each
/// record (how to tell its sender the outcome); it comes back with the record's outcome.
pub struct Accumulator<T> {
    config: ProducerConfig,
    /// Topic -> queues indexed by partition number. Two levels, so that appending looks up a
    /// `&str` without building a key.
    topics: HashMap<Arc<str>, Vec<PartitionQueue<T>>>,
    next_seq: u64,
    /// Ids (first sequence number) of every batch not finished yet; the smallest tells
    /// [`flushed_up_to`](Self::flushed_up_to).
    unfinished: BTreeSet<u64>,
    buffered: usize,
    failures: Vec<Failed<T>>,
}

impl<T> Accumulator<T> {
    pub fn new(config: ProducerConfig) -> Self {
        Accumulator {
            config,
            topics: HashMap::new(),
            next_seq: 0,
            unfinished: BTreeSet::new(),
            buffered: 0,
            failures: Vec::new(),
        }
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// Bytes held in batches not finished yet (their uncompressed size).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Every record with a sequence number below this is finished (delivered or failed).
    pub fn flushed_up_to(&self) -> u64 {
        self.unfinished.first().copied().unwrap_or(self.next_seq)
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records that failed for good since the last call (batches that expired, or could not be
    /// encoded).
    pub fn take_failures(&mut self) -> Vec<Failed<T>> {
        std::mem::take(&mut self.failures)
    }

    /// Adds a record to its partition's open batch, closing the batch first if the record would
    /// push it past `batch_size`. A record that can never fit in a request, or that would
    /// exceed `max_buffered_bytes`, is refused with its token.
    #[allow(clippy::too_many_arguments)]
    pub fn append<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(K, Option<V>)],
        token: T,
        now: Instant,
    ) -> Result<Appended, (Error, T)> {
        let Ok(index) = usize::try_from(partition) else {
            let error = Error::Broker {
                code: crate::KafkaCode::UnknownTopicOrPartition,
                context: Context::default()
                    .with_topic(topic)
                    .with_partition(partition),
            };
            return Err((error, token));
        };
        let mut size = RECORD_OVERHEAD + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
        for (name, value) in headers {
            size += HEADER_OVERHEAD
                + name.as_ref().len()
                + value.as_ref().map_or(0, |v| v.as_ref().len());
        }
        let request_limit = self.config.max_request_size;
        let needed = size + BATCH_HEADER + PARTITION_OVERHEAD + TOPIC_OVERHEAD + REQUEST_OVERHEAD;
        if needed > request_limit {
            let error = Error::RecordTooLarge {
                size: needed,
                max: request_limit,
            };
            return Err((error, token));
        }
        if self.buffered + size > self.config.max_buffered_bytes {
            let error = Error::QueueFull {
                buffered: self.buffered,
                max: self.config.max_buffered_bytes,
            };
            return Err((error, token));
        }
        let queues = match self.topics.get_mut(topic) {
            Some(queues) => queues,
            None => self.topics.entry(Arc::from(topic)).or_default(),
        };
        if queues.len() <= index {
            queues.resize_with(index + 1, PartitionQueue::default);
        }
        let queue = &mut queues[index];
        let mut batch_closed = false;
        // Too full for this record: close the open batch and start another.
        if let Some(open) = &queue.open {
            if open.builder.uncompressed_size() + size > self.config.batch_size {
                close_open(
                    queue,
                    topic,
                    partition,
                    &mut self.failures,
                    &mut self.unfinished,
                    &mut self.buffered,
                );
                batch_closed = true;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let new_batch = queue.open.is_none();
        let open = queue.open.get_or_insert_with(|| {
            self.unfinished.insert(seq);
            OpenBatch {
                id: seq,
                created: now,
                builder: BatchBuilder::new(self.config.compression, self.config.compression_level),
                tokens: Vec::new(),
                timestamps: Vec::new(),
                buffered: 0,
            }
        });
        open.builder.append(timestamp, key, value, headers);
        open.tokens.push(token);
        open.timestamps.push(timestamp);
        open.buffered += size;
        self.buffered += size;
        if open.builder.uncompressed_size() >= self.config.batch_size {
            close_open(
                queue,
                topic,
                partition,
                &mut self.failures,
                &mut self.unfinished,
                &mut self.buffered,
            );
            batch_closed = true;
        }
        Ok(Appended {
            seq,
            new_batch,
            batch_closed,
        })
    }

    /// Takes every batch that is due and whose partition has nothing in flight, grouped into
    /// requests per leader. An open batch is due once it is `linger` old, or at once when
    /// `flush` is set. Batches that waited past the delivery timeout fail (see
    /// [`take_failures`](Self::take_failures)).
    pub fn drain(
        &mut self,
        now: Instant,
        flush: bool,
        mut leader_of: impl FnMut(&str, i32) -> Option<i32>,
    ) -> Drained<T> {
        let linger = self.config.linger;
        let delivery_timeout = self.config.delivery_timeout;
        let mut requests: Vec<(InFlightRequest<T>, usize)> = Vec::new();
        let mut wake_at: Option<Instant> = None;
        let mut wake = |at: Instant| {
            wake_at = Some(wake_at.map_or(at, |w: Instant| w.min(at)));
        };
        let mut missing_leader = false;
        for (topic, queues) in &mut self.topics {
            for (index, queue) in queues.iter_mut().enumerate() {
                let partition = index as i32;
                expire(
                    queue,
                    topic,
                    partition,
                    now,
                    delivery_timeout,
                    &mut self.failures,
                    &mut self.unfinished,
                    &mut self.buffered,
                );
                if queue.in_flight {
                    continue;
                }
                if let Some(at) = queue.retry_at {
                    if at > now {
                        wake(at);
                        continue;
                    }
                    queue.retry_at = None;
                }
                if queue.closed.is_empty() {
                    match &queue.open {
                        None => continue,
                        Some(open) if !flush && open.created + linger > now => {
                            wake(open.created + linger);
                            continue;
                        }
                        Some(_) => close_open(
                            queue,
                            topic,
                            partition,
                            &mut self.failures,
                            &mut self.unfinished,
                            &mut self.buffered,
                        ),
                    }
                }
                let Some(front) = queue.closed.front() else {
                    continue; // the batch could not be encoded and has failed
                };
                let Some(node) = leader_of(topic, partition) else {
                    missing_leader = true;
                    wake(front.created + delivery_timeout);
                    continue;
                };
                let size = front.records.len() + PARTITION_OVERHEAD + TOPIC_OVERHEAD;
                let Some(batch) = queue.closed.pop_front() else {
                    continue;
                };
                queue.in_flight = true;
                let batch = InFlightBatch {
                    topic: topic.clone(),
                    partition,
                    tokens: batch.tokens,
                    timestamps: batch.timestamps,
                    records: batch.records,
                    id: batch.id,
                    created: batch.created,
                    attempts: batch.attempts + 1,
                    buffered: batch.buffered,
                };
                let limit = self.config.max_request_size;
                match requests
                    .iter_mut()
                    .find(|(r, used)| r.node == node && used + size <= limit)
                {
                    Some((request, used)) => {
                        request.batches.push(batch);
                        *used += size;
                    }
                    None => requests.push((
                        InFlightRequest {
                            node,
                            batches: vec![batch],
                        },
                        REQUEST_OVERHEAD + size,
                    )),
                }
            }
        }
        Drained {
            requests: requests.into_iter().map(|(r, _)| r).collect(),
            wake_at,
            missing_leader,
        }
    }

    /// The batch was acknowledged: its partition may send the next one. Returns the tokens.
    pub fn complete(&mut self, batch: InFlightBatch<T>) -> (Vec<T>, Vec<i64>) {
        self.finish(&batch.topic, batch.partition, batch.id, batch.buffered);
        (batch.tokens, batch.timestamps)
    }

    /// The batch's attempt failed with `error`. A retriable error puts it back at the front of
    /// its partition's queue, to be sent again after a backoff (`random` in [0, 1) spreads it),
    /// unless the retries or the delivery timeout are used up. Otherwise its records fail.
    pub fn retry_or_fail(
        &mut self,
        batch: InFlightBatch<T>,
        error: Error,
        now: Instant,
        random: f64,
    ) -> Option<Failed<T>> {
        let elapsed = now.saturating_duration_since(batch.created);
        let retries_left = batch.attempts <= self.config.retries;
        let in_time = elapsed < self.config.delivery_timeout;
        if error.is_retriable() && retries_left && in_time {
            let delay = self
                .config
                .retry_backoff
                .delay(batch.attempts.saturating_sub(1), random);
            if let Some(queue) = self.queue_mut(&batch.topic, batch.partition) {
                queue.in_flight = false;
                queue.retry_at = Some(now + delay);
                queue.closed.push_front(ClosedBatch {
                    id: batch.id,
                    created: batch.created,
                    records: batch.records,
                    tokens: batch.tokens,
                    timestamps: batch.timestamps,
                    buffered: batch.buffered,
                    attempts: batch.attempts,
                    last_error: Some(error.to_string()),
                });
                return None;
            }
        }
        self.finish(&batch.topic, batch.partition, batch.id, batch.buffered);
        let error = if error.is_retriable() && !in_time {
            Error::DeliveryTimeout {
                after: elapsed,
                attempts: batch.attempts,
                last_error: Some(error.to_string()),
            }
        } else {
            error
        };
        Some(Failed {
            topic: batch.topic,
            partition: batch.partition,
            tokens: batch.tokens,
            error,
        })
    }

    /// Whether any batch is open, waiting, or in flight.
    pub fn is_empty(&self) -> bool {
        self.unfinished.is_empty()
    }

    /// Fails every batch that is not in flight (closing the producer without flushing).
    pub fn abort(&mut self, error: &Error) -> Vec<Failed<T>> {
        let mut failed = std::mem::take(&mut self.failures);
        for (topic, queues) in &mut self.topics {
            for (index, queue) in queues.iter_mut().enumerate() {
                let batches = queue
                    .open
                    .take()
                    .map(|o| (o.id, o.buffered, o.tokens))
                    .into_iter()
                    .chain(queue.closed.drain(..).map(|c| (c.id, c.buffered, c.tokens)));
                for (id, buffered, tokens) in batches {
                    self.unfinished.remove(&id);
                    self.buffered -= buffered;
                    failed.push(Failed {
                        topic: topic.clone(),
                        partition: index as i32,
                        tokens,
                        error: error.clone(),
                    });
                }
            }
        }
        failed.sort_by_key(|f| (f.topic.clone(), f.partition));
        failed
    }

    fn queue_mut(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionQueue<T>> {
        self.topics
            .get_mut(topic)
            .and_then(|q| q.get_mut(usize::try_from(partition).ok()?))
    }

    fn finish(&mut self, topic: &str, partition: i32, id: u64, buffered: usize) {
        if let Some(queue) = self.queue_mut(topic, partition) {
            queue.in_flight = false;
        }
        self.unfinished.remove(&id);
        self.buffered -= buffered;
    }
}

/// Encodes the open batch and queues it for sending. A batch that cannot be encoded fails
/// with its records.
fn close_open<T>(
    queue: &mut PartitionQueue<T>,
    topic: &str,
    partition: i32,
    failures: &mut Vec<Failed<T>>,
    unfinished: &mut BTreeSet<u64>,
    buffered: &mut usize,
) {
    let Some(open) = queue.open.take() else {
        return;
    };
    match open.builder.build() {
        Ok(records) => queue.closed.push_back(ClosedBatch {
            id: open.id,
            created: open.created,
            records,
            tokens: open.tokens,
            timestamps: open.timestamps,
            buffered: open.buffered,
            attempts: 0,
            last_error: None,
        }),
        Err(error) => {
            unfinished.remove(&open.id);
            *buffered -= open.buffered;
            failures.push(Failed {
                topic: Arc::from(topic),
                partition,
                tokens: open.tokens,
                error: Error::Records(Box::new(error.at(topic, partition))),
            });
        }
    }
}

/// Fails the batches of `queue` that are not in flight and older than the delivery timeout.
#[allow(clippy::too_many_arguments)]
fn expire<T>(
    queue: &mut PartitionQueue<T>,
    topic: &Arc<str>,
    partition: i32,
    now: Instant,
    delivery_timeout: Duration,
    failures: &mut Vec<Failed<T>>,
    unfinished: &mut BTreeSet<u64>,
    buffered: &mut usize,
) {
    let expired = |created: Instant| now.saturating_duration_since(created) >= delivery_timeout;
    // A batch in flight is not in `closed`: its answer (or its request timeout) decides.
    while let Some(front) = queue.closed.front() {
        if !expired(front.created) {
            break;
        }
        let Some(batch) = queue.closed.pop_front() else {
            break;
        };
        unfinished.remove(&batch.id);
        *buffered -= batch.buffered;
        failures.push(Failed {
            topic: topic.clone(),
            partition,
            tokens: batch.tokens,
            error: Error::DeliveryTimeout {
                after: now.saturating_duration_since(batch.created),
                attempts: batch.attempts,
                last_error: batch.last_error,
            },
        });
        queue.retry_at = None;
    }
    if queue.closed.is_empty() {
        if let Some(open) = &queue.open {
            if expired(open.created) {
                if let Some(open) = queue.open.take() {
                    unfinished.remove(&open.id);
                    *buffered -= open.buffered;
                    failures.push(Failed {
                        topic: topic.clone(),
                        partition,
                        tokens: open.tokens,
                        error: Error::DeliveryTimeout {
                            after: now.saturating_duration_since(open.created),
                            attempts: 0,
                            last_error: None,
                        },
                    });
                }
            }
        }
    }
}
