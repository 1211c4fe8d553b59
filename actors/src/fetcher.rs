//! Fetcher: fetches every partition one broker leads for this member, in one request at a time.
//!
//! One Fetcher per leader broker, on its own connection (`Purpose::Fetch`), so a long poll
//! never delays group traffic. Each round: every partition with room in its buffer (see
//! [`PartitionFlow`]) goes into one Fetch request; the answer is decoded per partition with the
//! core codec ([`decode_fetched`]) and handed to the partition's tracker as one [`Fetched`]
//! batch, and the next round starts at once — so the next records are fetched while handlers
//! work on the last ones. A partition whose buffer is full is left out until its tracker has
//! finished enough (backpressure: memory stays bounded, nothing is dropped).
//!
//! Fetching ahead: when an answer arrives, the next request goes out before the answer is
//! decoded, at the offsets its batch headers announce ([`peek_next_offset`]), so the broker
//! prepares the next answer while this one is decompressed. Only when every partition asked
//! came back with records in the v2 format: otherwise (a partition at the end of its log, an
//! error, an old message format) the next request waits for decoding as before, so that no
//! partition is left out of a long poll. A partition whose announced records would fill its
//! buffer waits for the round after. Should
//! decoding end elsewhere than announced (a corrupt batch), the answer fetched ahead for that
//! partition no longer matches its position and is dropped, as after a seek.
//!
//! Decoding side by side: an answer carrying at least [`DECODE_SHARE_MIN_BYTES`] of compressed
//! records per thread is decoded on up to `decode_threads` threads (see
//! [`decode_side_by_side`]): the Fetcher's own and scoped threads started for that answer.
//! Decompression is most of a consumer's CPU with compressed topics, and it was the one thread
//! that set the pace.
//!
//! Per-partition answers:
//! - NotLeader, UnknownTopicOrPartition, FencedLeaderEpoch and other leadership errors: the
//!   partition is dropped here and reported ([`TroubleKind::NotLeader`]) with the offset it had
//!   reached; the owner refreshes the metadata and gives it to the new leader's Fetcher at that
//!   offset, so nothing is lost or repeated.
//! - OffsetOutOfRange: dropped and reported ([`TroubleKind::OutOfRange`]) for the reset policy.
//! - records older than the topic's MaxMessageAge: not delivered; reported
//!   ([`TroubleKind::TooOld`]) so the owner jumps to the first recent record.
//! - undecodable data or any other error: dropped and reported ([`TroubleKind::Failed`]).
//!
//! A request that fails as a whole (connection lost, timeout) is retried after a backoff on a
//! fresh connection (a connection whose request timed out restarts itself). After
//! [`REROUTE_AFTER`] such failures in a row the broker may be gone for good, or no longer the
//! leader: every partition is handed back ([`TroubleKind::NotLeader`] with the last error) at
//! the offset it had reached, and the owner refreshes the metadata and routes each one anew.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use konsumer::consumer::{ConsumerConfig, DECODE_SHARE_MIN_BYTES};
use konsumer::kafka_protocol::messages::fetch_request::{
    FetchPartition as WirePartition, FetchTopic,
};
use konsumer::kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::records::{
    compressed_record_size, decode_fetched, peek_next_offset, AbortedTransaction, DecodeOptions,
    FetchedRecords, Isolation, PartitionFetch, PeekedFetch,
};
use konsumer::{Error, KafkaCode};
use slog::{info, warn, Logger};

use crate::cluster::Cluster;
use crate::messages::{
    Call, Close, ConnectionFor, FetchPartition, FetchTrouble, Fetched, PartitionFlow, Purpose,
    StopFetching, Target, TroubleKind,
};

/// Highest Fetch version used: v12+ is flexible and v13+ names topics by id only.
const FETCH_MAX_VERSION: i16 = 11;
/// How often a Fetcher whose partitions are all full looks again.
const FULL_RECHECK: Duration = Duration::from_millis(5);
/// Failed fetch requests in a row after which the partitions are routed anew.
pub const REROUTE_AFTER: u32 = 3;

type Key = (Arc<str>, i32);

/// One fetched partition.
struct Entry {
    offset: i64,
    epoch: u64,
    flow: Arc<PartitionFlow>,
    tracker: Recipient<Fetched>,
    /// Grows when a batch is larger than the configured partition limit and the broker is an
    /// old one that answers with nothing (KIP-74 brokers return it anyway).
    max_bytes: i32,
}

/// Fetches the partitions one broker leads. See the module doc.
pub struct Fetcher {
    node: i32,
    cluster: Addr<Cluster>,
    config: Arc<ConsumerConfig>,
    request_timeout: Duration,
    owner: Recipient<FetchTrouble>,
    log: Logger,
    decode: DecodeOptions,
    partitions: BTreeMap<Key, Entry>,
    connection: Option<Recipient<Call>>,
    in_flight: bool,
    /// A recheck timer is armed (all partitions full, or a backoff).
    waiting: bool,
    failures: u32,
    closed: bool,
}

/// A request sent ahead: the next offsets peeked from the answer being decoded, and what
/// that answer's request asked.
#[derive(Clone, Copy)]
struct Ahead<'a> {
    peeked: &'a BTreeMap<Key, PeekedFetch>,
    decoding: &'a BTreeMap<Key, Asked>,
}

/// What one request asked for each partition.
struct Asked {
    offset: i64,
    epoch: u64,
}

impl Fetcher {
    pub fn new(
        node: i32,
        cluster: Addr<Cluster>,
        config: Arc<ConsumerConfig>,
        request_timeout: Duration,
        owner: Recipient<FetchTrouble>,
        log: Logger,
    ) -> Self {
        let decode = DecodeOptions {
            verify_crc: config.check_crcs,
            ..DecodeOptions::default()
        };
        Fetcher {
            node,
            cluster,
            config,
            request_timeout,
            owner,
            log,
            decode,
            partitions: BTreeMap::new(),
            connection: None,
            in_flight: false,
            waiting: false,
            failures: 0,
            closed: false,
        }
    }

    /// Starts a fetch round unless one is running or a timer will start it.
    fn poll(&mut self, ctx: &mut Context<Self>) {
        self.fetch(None, ctx);
    }

    /// Sends the next request before `response` (the answer to `asked`) is decoded: see the
    /// module doc. Partitions whose next offset the batch headers do not tell wait.
    fn fetch_ahead(
        &mut self,
        response: &FetchResponse,
        asked: &BTreeMap<Key, Asked>,
        ctx: &mut Context<Self>,
    ) {
        let mut peeked: BTreeMap<Key, PeekedFetch> = BTreeMap::new();
        for topic in &response.responses {
            for data in &topic.partitions {
                if data.error_code != 0 {
                    continue;
                }
                let key = (Arc::from(topic.topic.0.as_str()), data.partition_index);
                let (Some(sent), Some(entry)) = (asked.get(&key), self.partitions.get(&key)) else {
                    continue;
                };
                if entry.epoch != sent.epoch || entry.offset != sent.offset {
                    continue;
                }
                let set = data.records.as_deref().unwrap_or_default();
                if let Some(next) = peek_next_offset(set, sent.offset) {
                    peeked.insert(key, next);
                }
            }
        }
        // Only when every partition asked came back with records: a partition left out of the
        // request fetched ahead would miss records arriving while that request waits (up to
        // the fetch wait), where a request with it returns as soon as they come.
        if !peeked.is_empty() && peeked.len() == asked.len() {
            let ahead = Ahead {
                peeked: &peeked,
                decoding: asked,
            };
            self.fetch(Some(ahead), ctx);
        }
    }

    /// Sends one fetch request. With `ahead` (the peeked next offsets and what the answer being
    /// decoded asked), partitions in that answer are fetched from their peeked offsets, or
    /// left for the next round.
    fn fetch(&mut self, ahead: Option<Ahead<'_>>, ctx: &mut Context<Self>) {
        if self.closed || self.in_flight || self.waiting || self.partitions.is_empty() {
            return;
        }
        if !self.owner.connected() {
            // The service is gone without closing us (its thread was stopped): so are we, with
            // the arbiter the service started for us.
            self.closed = true;
            ctx.stop();
            Arbiter::current().stop();
            return;
        }
        let (max_records, max_bytes) =
            (self.config.buffer_max_records, self.config.buffer_max_bytes);
        let mut topics: Vec<FetchTopic> = Vec::new();
        let mut asked: BTreeMap<Key, Asked> = BTreeMap::new();
        for (key, entry) in &self.partitions {
            let (offset, coming) = match ahead {
                None => (entry.offset, 0),
                Some(ahead) => match ahead.peeked.get(key) {
                    Some(next) => (next.next_offset, next.records),
                    None if ahead.decoding.contains_key(key) => continue,
                    None => (entry.offset, 0),
                },
            };
            // Records still being decoded count against the buffer as if already in it.
            if !entry
                .flow
                .has_room(max_records.saturating_sub(coming), max_bytes)
            {
                continue;
            }
            let (topic, partition) = key;
            let wire = WirePartition::default()
                .with_partition(*partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(entry.max_bytes);
            match topics.last_mut() {
                Some(t) if t.topic.0.as_str() == &**topic => t.partitions.push(wire),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(vec![wire]),
                ),
            }
            asked.insert(
                (topic.clone(), *partition),
                Asked {
                    offset,
                    epoch: entry.epoch,
                },
            );
        }
        if asked.is_empty() && ahead.is_some() {
            return; // the round after decoding decides
        }
        if asked.is_empty() {
            // Every partition is full: look again shortly (handlers are working).
            self.wait(FULL_RECHECK, ctx);
            return;
        }
        let request = FetchRequest::default()
            .with_max_wait_ms(duration_ms(self.config.fetch_max_wait))
            .with_min_bytes(self.config.fetch_min_bytes)
            .with_max_bytes(self.config.fetch_max_bytes)
            .with_isolation_level(match self.config.isolation {
                Isolation::ReadUncommitted => 0,
                Isolation::ReadCommitted => 1,
            })
            .with_topics(topics);
        let call = Call::new(request)
            .with_max_version(FETCH_MAX_VERSION)
            .with_timeout(self.request_timeout + self.config.fetch_max_wait);
        self.in_flight = true;
        let connection = self.connection.clone();
        let cluster = self.cluster.clone();
        let node = self.node;
        let work = async move {
            let connection = match connection {
                Some(c) => c,
                None => {
                    cluster
                        .send(ConnectionFor {
                            target: Target::Broker(node),
                            purpose: Purpose::Fetch,
                        })
                        .await
                        .map_err(|_| Error::Shutdown("cluster".into()))??
                        .1
                }
            };
            let reply = connection
                .send(call)
                .await
                .map_err(|_| Error::Shutdown("broker connection".into()))?;
            Ok::<_, Error>((connection, reply?))
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.in_flight = false;
            if act.closed {
                return;
            }
            match result.and_then(|(connection, reply)| {
                act.connection = Some(connection);
                reply.into_typed::<FetchRequest>("fetch")
            }) {
                Ok(response) => {
                    if let Err(error) = Error::check(response.error_code, || {
                        konsumer::Context::default().with_api(konsumer::protocol::ApiKey::Fetch)
                    }) {
                        warn!(act.log, "fetch failed"; "node" => act.node, "error" => %error);
                        act.failed(error, ctx);
                        return;
                    }
                    act.failures = 0;
                    act.fetch_ahead(&response, &asked, ctx);
                    act.take(response, asked);
                    act.poll(ctx);
                }
                Err(error) => {
                    info!(act.log, "fetch request failed"; "node" => act.node, "error" => %error,
                        "failures_in_a_row" => act.failures + 1);
                    act.connection = None;
                    act.failed(error, ctx);
                }
            }
        }));
    }

    fn wait(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        self.waiting = true;
        ctx.run_later(delay, |act, ctx| {
            act.waiting = false;
            act.poll(ctx);
        });
    }

    /// A request failed as a whole: try again after a backoff, or, after [`REROUTE_AFTER`]
    /// failures in a row, hand every partition back to be routed anew.
    fn failed(&mut self, error: Error, ctx: &mut Context<Self>) {
        if self.failures + 1 < REROUTE_AFTER {
            self.back_off(ctx);
            return;
        }
        warn!(self.log, "fetches keep failing; handing the partitions back to be routed anew";
            "node" => self.node, "failures_in_a_row" => self.failures + 1, "error" => %error,
            "partitions" => self.partitions.len());
        self.failures = 0;
        let keys: Vec<Key> = self.partitions.keys().cloned().collect();
        for key in keys {
            self.give_up(key, TroubleKind::NotLeader(error.clone()));
        }
    }

    fn back_off(&mut self, ctx: &mut Context<Self>) {
        let delay = self
            .config
            .retry_backoff
            .delay(self.failures, fastrand::f64());
        self.failures = self.failures.saturating_add(1);
        self.wait(delay, ctx);
    }

    /// Hands each partition's records to its tracker; drops and reports partitions in trouble.
    /// First every partition's answer is checked, then the records of those that are fine are
    /// decoded (on several threads when there are many: [`decode_side_by_side`]) and each is
    /// handed over as soon as it is decoded.
    fn take(
        &mut self,
        response: konsumer::kafka_protocol::messages::FetchResponse,
        asked: BTreeMap<Key, Asked>,
    ) {
        let mut jobs: Vec<DecodeJob> = Vec::new();
        for topic in response.responses {
            let name: Arc<str> = Arc::from(topic.topic.0.as_str());
            for data in topic.partitions {
                let Some((key, sent)) = asked.get_key_value(&(name.clone(), data.partition_index))
                else {
                    continue; // not asked: ignore
                };
                let Some(entry) = self.partitions.get(key) else {
                    continue; // stopped meanwhile
                };
                if entry.epoch != sent.epoch || entry.offset != sent.offset {
                    continue; // moved (seek) meanwhile: this answer is for the old position
                }
                if data.error_code != 0 {
                    let code = KafkaCode::try_from_code(data.error_code);
                    let error = Error::Broker {
                        code: code.unwrap_or(KafkaCode::UnknownServerError),
                        context: konsumer::Context::broker(format!("node {}", self.node))
                            .with_api(konsumer::protocol::ApiKey::Fetch)
                            .with_topic(&*name)
                            .with_partition(data.partition_index)
                            .with_offset(sent.offset),
                    };
                    let kind = match code {
                        Some(KafkaCode::OffsetOutOfRange) => TroubleKind::OutOfRange,
                        Some(
                            KafkaCode::NotLeaderOrFollower
                            | KafkaCode::UnknownTopicOrPartition
                            | KafkaCode::FencedLeaderEpoch
                            | KafkaCode::UnknownLeaderEpoch
                            | KafkaCode::LeaderNotAvailable
                            | KafkaCode::ReplicaNotAvailable
                            | KafkaCode::KafkaStorageError
                            | KafkaCode::OffsetNotAvailable
                            | KafkaCode::NotCoordinator,
                        ) => TroubleKind::NotLeader(error),
                        _ => TroubleKind::Failed(error),
                    };
                    let key = key.clone();
                    self.give_up(key, kind);
                    continue;
                }
                let aborted_transactions = data
                    .aborted_transactions
                    .iter()
                    .flatten()
                    .map(|t| AbortedTransaction {
                        producer_id: t.producer_id.0,
                        first_offset: t.first_offset,
                    })
                    .collect();
                jobs.push(DecodeJob {
                    key: key.clone(),
                    epoch: sent.epoch,
                    fetch_offset: sent.offset,
                    set: data.records.unwrap_or_default(),
                    aborted_transactions,
                    high_watermark: data.high_watermark,
                });
            }
        }
        let options = self.decode.clone();
        decode_side_by_side(
            &jobs,
            self.config.isolation,
            &options,
            self.config.decode_threads,
            |job, fetched| self.hand_over(job, fetched),
        );
    }

    /// Hands one partition's decoded records to its tracker, or reports its trouble.
    fn hand_over(&mut self, job: &DecodeJob, fetched: FetchedRecords) {
        let key = &job.key;
        let Some(entry) = self.partitions.get_mut(key) else {
            return;
        };
        if entry.epoch != job.epoch || entry.offset != job.fetch_offset {
            return; // a partition the answer lists twice: only its first part is taken
        }
        if let (Some(age), Some(first)) = (
            self.config.max_message_age.get(&*key.0),
            fetched.records.first(),
        ) {
            let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            let since = now_ms().saturating_sub(age);
            if first.timestamp < since {
                // Lagging more than MaxMessageAge: the owner jumps ahead instead.
                self.give_up(key.clone(), TroubleKind::TooOld { since });
                return;
            }
        }
        if fetched.truncated && fetched.batches == 0 && fetched.error.is_none() {
            // The next batch is larger than we asked for (a pre-KIP-74 broker).
            entry.max_bytes = entry
                .max_bytes
                .saturating_mul(2)
                .min(self.config.fetch_max_bytes);
        }
        if !fetched.records.is_empty() || fetched.next_offset > entry.offset {
            let bytes = crate::messages::records_bytes(&fetched.records);
            entry.flow.add(fetched.records.len(), bytes);
            entry.offset = fetched.next_offset;
            entry.tracker.do_send(Fetched {
                epoch: entry.epoch,
                records: fetched.records,
                bytes,
                next_offset: fetched.next_offset,
                high_watermark: job.high_watermark,
            });
        }
        if let Some(error) = fetched.error {
            self.give_up(
                key.clone(),
                TroubleKind::Failed(Error::Records(Box::new(error))),
            );
        }
    }

    fn give_up(&mut self, key: Key, kind: TroubleKind) {
        let Some(entry) = self.partitions.remove(&key) else {
            return;
        };
        warn!(self.log, "partition left the fetcher"; "node" => self.node, "topic" => &*key.0,
            "partition" => key.1, "offset" => entry.offset, "cause" => ?kind);
        self.owner.do_send(FetchTrouble {
            node: self.node,
            topic: key.0,
            partition: key.1,
            epoch: entry.epoch,
            next_offset: entry.offset,
            kind,
        });
    }
}

/// One partition's records from an answer, to be decoded.
struct DecodeJob {
    key: Key,
    epoch: u64,
    fetch_offset: i64,
    set: Bytes,
    aborted_transactions: Vec<AbortedTransaction>,
    high_watermark: i64,
}

/// Decodes every job's records and gives each to `each` as soon as it may. With `threads` > 1
/// and at least [`DECODE_SHARE_MIN_BYTES`] of compressed records per thread, the jobs are cut
/// into runs of about equal bytes; the first run is decoded here, one job after the other, the
/// others each on a scoped thread of its own, and handed to `each` when the first run is done
/// (should a thread fail to start, its run is decoded here). Each job is handed over once.
///
/// Why threads started per answer rather than a pool: they live only while an answer of
/// megabytes is decoded (a few milliseconds of work against tens of microseconds to start),
/// they need no shutdown, and they can borrow the answer.
fn decode_side_by_side<'j>(
    jobs: &'j [DecodeJob],
    isolation: Isolation,
    options: &DecodeOptions,
    threads: usize,
    mut each: impl FnMut(&'j DecodeJob, FetchedRecords),
) {
    let decode = |job: &DecodeJob| {
        let fetch = PartitionFetch {
            topic: &job.key.0,
            partition: job.key.1,
            fetch_offset: job.fetch_offset,
            isolation,
            aborted_transactions: &job.aborted_transactions,
        };
        decode_fetched(job.set.clone(), &fetch, options)
    };
    let runs = runs_of_equal_bytes(jobs, threads);
    let Some((first, others)) = runs.split_first().filter(|_| runs.len() > 1) else {
        jobs.iter().for_each(|job| each(job, decode(job)));
        return;
    };
    std::thread::scope(|scope| {
        let decode = &decode;
        let started: Vec<_> = others
            .iter()
            .map(|run| {
                let spawned = std::thread::Builder::new()
                    .name("konsumer-decode".into())
                    .spawn_scoped(scope, move || run.iter().map(decode).collect::<Vec<_>>());
                (run, spawned)
            })
            .collect();
        first.iter().for_each(|job| each(job, decode(job)));
        for (run, spawned) in started {
            match spawned {
                Ok(thread) => match thread.join() {
                    Ok(decoded) => run.iter().zip(decoded).for_each(|(job, d)| each(job, d)),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(_) => run.iter().for_each(|job| each(job, decode(job))),
            }
        }
    });
}

/// Compressed bytes per record from which a set is worth decoding on another thread.
const SIDE_BY_SIDE_MIN_RECORD_SIZE: usize = 256;

/// `jobs` cut into at most `threads` consecutive runs of about equal compressed bytes, each of
/// at least [`DECODE_SHARE_MIN_BYTES`] (so one run when the answer is small). Only compressed
/// sets of at least [`SIDE_BY_SIDE_MIN_RECORD_SIZE`] compressed bytes per record weigh: the
/// others cost more in parsing records than in decompressing, and parsed records cross to
/// another core's cache. Measured on the replay bench: 1 KiB values (312-563 compressed bytes
/// per record) gained 12-17% records/s at less CPU; 100-byte records, uncompressed or lz4
/// (43 bytes per record), took 10-30% more CPU and 30 MiB more memory side by side.
fn runs_of_equal_bytes(jobs: &[DecodeJob], threads: usize) -> Vec<&[DecodeJob]> {
    let weights: Vec<usize> = jobs
        .iter()
        .map(|job| match compressed_record_size(&job.set) {
            Some(size) if size >= SIDE_BY_SIDE_MIN_RECORD_SIZE => job.set.len(),
            _ => 0,
        })
        .collect();
    let total: usize = weights.iter().sum();
    let threads = threads
        .min(jobs.len())
        .min(total / DECODE_SHARE_MIN_BYTES)
        .max(1);
    let mut runs = Vec::with_capacity(threads);
    let (mut start, mut done) = (0, 0);
    for (i, weight) in weights.iter().enumerate() {
        done += weight;
        // Cut once this run reaches its share of the total.
        if runs.len() + 1 < threads && done * threads >= total * (runs.len() + 1) {
            runs.push(&jobs[start..=i]);
            start = i + 1;
        }
    }
    if start < jobs.len() || runs.is_empty() {
        runs.push(&jobs[start..]);
    }
    runs
}

/// Wall-clock milliseconds, as Kafka timestamps are.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration_ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

impl Actor for Fetcher {
    type Context = Context<Self>;
}

impl Handler<FetchPartition> for Fetcher {
    type Result = ();

    fn handle(&mut self, msg: FetchPartition, ctx: &mut Context<Self>) {
        self.partitions.insert(
            (msg.topic, msg.partition),
            Entry {
                offset: msg.offset,
                epoch: msg.epoch,
                flow: msg.flow,
                tracker: msg.tracker,
                max_bytes: self.config.partition_max_bytes,
            },
        );
        self.poll(ctx);
    }
}

impl Handler<StopFetching> for Fetcher {
    type Result = Option<i64>;

    fn handle(&mut self, msg: StopFetching, _: &mut Context<Self>) -> Option<i64> {
        self.partitions
            .remove(&(msg.topic, msg.partition))
            .map(|entry| entry.offset)
    }
}

impl Handler<Close> for Fetcher {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        self.closed = true;
        self.partitions.clear();
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use konsumer::compression::Compression;
    use konsumer::records::{BatchBuilder, NO_HEADERS};

    /// A job of `len` bytes that look like a compressed batch (magic 2, lz4).
    fn sized(partition: i32, len: usize) -> DecodeJob {
        let mut set = vec![0; len];
        if len > 61 {
            (set[16], set[22], set[60]) = (2, 3, 1); // v2, lz4, one record
            set[8..12].copy_from_slice(&u32::try_from(len).expect("small").to_be_bytes());
        }
        DecodeJob {
            key: (Arc::from("t"), partition),
            epoch: 0,
            fetch_offset: 0,
            set: Bytes::from(set),
            aborted_transactions: Vec::new(),
            high_watermark: 0,
        }
    }

    fn shares(jobs: &[DecodeJob], threads: usize) -> Vec<usize> {
        runs_of_equal_bytes(jobs, threads)
            .iter()
            .map(|run| run.len())
            .collect()
    }

    #[test]
    fn an_answer_is_cut_into_runs_of_about_equal_bytes_each_worth_a_thread() {
        let min = DECODE_SHARE_MIN_BYTES;
        let six: Vec<DecodeJob> = (0..6).map(|p| sized(p, min)).collect();
        assert_eq!(shares(&six, 1), [6]);
        assert_eq!(shares(&six, 2), [3, 3]);
        assert_eq!(shares(&six, 3), [2, 2, 2]);
        assert_eq!(shares(&six, 6), [1; 6]);
        assert_eq!(shares(&six, 64), [1; 6], "no more runs than partitions");
        // Too few bytes for more than one thread, or for as many as asked.
        let small: Vec<DecodeJob> = (0..6).map(|p| sized(p, min / 6)).collect();
        assert_eq!(shares(&small, 4), [6]);
        let three: Vec<DecodeJob> = (0..6).map(|p| sized(p, min / 2)).collect();
        assert_eq!(shares(&three, 6), [2, 2, 2]);
        // Uneven partitions: the cut follows the bytes, not the count.
        let uneven = [sized(0, min), sized(1, min), sized(2, 2 * min), sized(3, 0)];
        assert_eq!(shares(&uneven, 2), [2, 2]);
        assert_eq!(shares(&[], 4), [0]);
        // Uncompressed sets weigh nothing: one rides along with the next compressed one.
        let mut mixed: Vec<DecodeJob> = (0..4).map(|p| sized(p, min)).collect();
        let plain = partition(4, 12, Compression::None);
        assert!(plain.set.len() >= 2 * min);
        mixed.insert(1, plain);
        assert_eq!(shares(&mixed, 8), [1, 2, 1, 1]);
        let plain: Vec<DecodeJob> = (0..6).map(|p| partition(p, 8, Compression::None)).collect();
        assert_eq!(shares(&plain, 6), [6]);
        // Small compressed records weigh nothing either: parsing them is most of the work.
        let mut small_records: Vec<DecodeJob> = (0..6).map(|p| sized(p, 2 * min)).collect();
        for job in &mut small_records {
            let mut set = job.set.to_vec();
            set[57..61]
                .copy_from_slice(&u32::try_from(2 * min / 255).expect("small").to_be_bytes());
            job.set = Bytes::from(set);
        }
        assert_eq!(shares(&small_records, 6), [6]);
    }

    /// A partition's set: `batches` batches of 100 records of 1 KiB values from offset 0.
    fn partition(partition: i32, batches: i64, compression: Compression) -> DecodeJob {
        let mut set = BytesMut::new();
        for batch in 0..batches {
            let mut builder = BatchBuilder::new(compression, None).base_offset(batch * 100);
            for offset in batch * 100..(batch + 1) * 100 {
                // xorshift noise: compressed sets stay about as large as the values.
                let mut state = (offset as u64 + 1) * 0x9E37_79B9 + partition as u64;
                let value: Vec<u8> = (0..1024)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect();
                builder.append(offset, Some(b"k"), Some(&value), NO_HEADERS);
            }
            set.extend_from_slice(&builder.build().expect("batch"));
        }
        DecodeJob {
            set: set.freeze(),
            ..sized(partition, 0)
        }
    }

    #[test]
    fn decoding_side_by_side_gives_what_decoding_alone_gives() {
        let options = DecodeOptions::default();
        let mut jobs: Vec<DecodeJob> = (0..6).map(|p| partition(p, 8, Compression::Lz4)).collect();
        assert!(jobs
            .iter()
            .all(|job| job.set.len() >= DECODE_SHARE_MIN_BYTES));
        jobs.push(partition(6, 3, Compression::None));
        // Mid-batch fetch offset, a cut final batch, a corrupt batch.
        jobs[1].fetch_offset = 250;
        let whole = jobs[2].set.len();
        jobs[2].set = jobs[2].set.slice(..whole - 100);
        let mut corrupt = jobs[3].set.to_vec();
        corrupt[whole / 2 + 1000] ^= 0xff; // in a record of the fifth batch
        jobs[3].set = Bytes::from(corrupt);
        let decoded = |threads| {
            let mut decoded = Vec::new();
            decode_side_by_side(
                &jobs,
                Isolation::ReadUncommitted,
                &options,
                threads,
                |job, d| decoded.push((job.key.1, d)),
            );
            decoded.sort_by_key(|(partition, _)| *partition);
            assert!(decoded.iter().map(|(p, _)| *p).eq(0..7), "each job once");
            decoded.into_iter().map(|(_, d)| d).collect::<Vec<_>>()
        };
        let alone = decoded(1);
        assert_eq!(alone.len(), jobs.len());
        assert_eq!(alone[0].records.len(), 800);
        assert_eq!(alone[1].records.first().map(|r| r.offset), Some(250));
        assert!(alone[2].truncated && alone[2].next_offset == 700);
        assert!(alone[3].error.is_some());
        assert_eq!(alone[6].records.len(), 300);
        for threads in [2, 3, 7, 64] {
            assert!(runs_of_equal_bytes(&jobs, threads).len() > 1);
            let side_by_side = decoded(threads);
            assert_eq!(side_by_side, alone, "{threads} threads");
        }
    }
}
