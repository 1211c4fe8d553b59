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
use konsumer::consumer::ConsumerConfig;
use konsumer::kafka_protocol::messages::fetch_request::{
    FetchPartition as WirePartition, FetchTopic,
};
use konsumer::kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::records::{
    decode_fetched, peek_next_offset, AbortedTransaction, DecodeOptions, Isolation, PartitionFetch,
    PeekedFetch,
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
        Fetcher {
            node,
            cluster,
            config,
            request_timeout,
            owner,
            log,
            decode: DecodeOptions::default(),
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
    fn take(
        &mut self,
        response: konsumer::kafka_protocol::messages::FetchResponse,
        asked: BTreeMap<Key, Asked>,
    ) {
        let isolation = self.config.isolation;
        for topic in response.responses {
            let name = topic.topic.0.as_str();
            for data in topic.partitions {
                let Some((key, sent)) =
                    asked.get_key_value(&(Arc::from(name), data.partition_index))
                else {
                    continue; // not asked: ignore
                };
                let Some(entry) = self.partitions.get_mut(key) else {
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
                            .with_topic(name)
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
                let aborted: Vec<AbortedTransaction> = data
                    .aborted_transactions
                    .iter()
                    .flatten()
                    .map(|t| AbortedTransaction {
                        producer_id: t.producer_id.0,
                        first_offset: t.first_offset,
                    })
                    .collect();
                let fetch = PartitionFetch {
                    topic: name,
                    partition: data.partition_index,
                    fetch_offset: sent.offset,
                    isolation,
                    aborted_transactions: &aborted,
                };
                let fetched =
                    decode_fetched(data.records.unwrap_or_default(), &fetch, &self.decode);
                if let (Some(age), Some(first)) = (
                    self.config.max_message_age.get(name),
                    fetched.records.first(),
                ) {
                    let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                    let since = now_ms().saturating_sub(age);
                    if first.timestamp < since {
                        // Lagging more than MaxMessageAge: the owner jumps ahead instead.
                        let key = key.clone();
                        self.give_up(key, TroubleKind::TooOld { since });
                        continue;
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
                        high_watermark: data.high_watermark,
                    });
                }
                if let Some(error) = fetched.error {
                    let key = key.clone();
                    self.give_up(key, TroubleKind::Failed(Error::Records(Box::new(error))));
                }
            }
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
