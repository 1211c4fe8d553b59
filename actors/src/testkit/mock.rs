//! A mocked Kafka cluster made of actors: no network, no broker process.
//!
//! [`MockCluster`] holds a topology (brokers, topics, leaders) shared by its [`MockBroker`]
//! actors. Each broker answers [`Call`]s the way a broker would: ApiVersions, Metadata and
//! CreateTopics from the topology, Produce by appending to in-memory partition logs (read them
//! with [`MockCluster::produced`]), Fetch and ListOffsets from those logs as a partition leader
//! does, the group APIs as Kafka's group coordinator does, join and sync barriers included
//! ([`coordinator`](super::coordinator)); anything else from responses the test scripted with
//! [`MockCluster::script`] (first in, first out, per API, optionally per broker; a scripted
//! answer also overrides the built-in ones). Every request is logged with the broker that
//! received it.
//!
//! A partition's log keeps the batches as they were written (compressed, transactional,
//! control or even corrupt — see [`MockCluster::append_raw`]), with only their base offset set
//! to where they landed, as a broker's log does. Like a leader's producer-state manager, it
//! follows transactions through the batch headers, whoever wrote them (Produce, `append_raw`,
//! or [`MockCluster::append_transactional`] and [`MockCluster::end_transaction`]): a
//! transactional data batch opens its producer's transaction, a commit or abort marker ends
//! it, and aborted ones are remembered (producer id, first offset, marker offset) as in
//! Kafka's transaction index. Fetch answers from it like a broker:
//! - only the partition's leader serves it (NotLeaderOrFollower elsewhere, see
//!   [`MockCluster::move_leader`]); an offset below 0 or past the log end is OffsetOutOfRange;
//! - whole stored batches, from the one holding the fetch offset (so the answer may start
//!   below it), cut at batch boundaries by `partition_max_bytes` and `max_bytes`, except that
//!   the first batch of the first non-empty partition always comes back whole (KIP-74);
//! - high watermark = log end, log start offset 0, last stable offset = the first offset of
//!   the oldest open transaction (the log end when none is open);
//! - read_uncommitted (isolation level 0) gets everything up to the high watermark and a null
//!   aborted-transactions list; read_committed (1) only whole batches below the last stable
//!   offset, and the aborted transactions that overlap what it gets (those whose marker is at
//!   or past the fetch offset and whose first offset is below the end of the returned data);
//! - a fetch with fewer than `min_bytes` to return (and no partition error) is held, as a
//!   broker's long poll, until records are appended or its `max_wait_ms` (at most 500 ms)
//!   has passed;
//! - Fetch v13+ names topics by id, which this mock does not give out: such topics are
//!   UnknownTopicId. Clients reading by name cap Fetch at v12.
//!
//! To keep the mock honest, each request is encoded at the version the connection would choose
//! (so a field the version lacks is an error, as on the wire), and each response goes through
//! encode + decode at that version.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use konsumer::compression::Compression;
use konsumer::kafka_protocol::messages::api_versions_response::ApiVersion;
use konsumer::kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use konsumer::kafka_protocol::messages::fetch_request::FetchPartition;
use konsumer::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use konsumer::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use konsumer::kafka_protocol::messages::{
    fetch_response, find_coordinator_response, list_offsets_response, offset_commit_response,
    offset_fetch_response, ApiVersionsResponse, BrokerId, CreateTopicsResponse, FetchRequest,
    FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse, ProducerId,
    TopicName,
};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::protocol::{
    decode_response, fit_to_version, ApiKey, ApiVersionTable, RequestKind, ResponseKind,
};
use konsumer::records::{
    decode_all, BatchBuilder, ControlType, DecodeOptions, Record, RecordSetReader, NO_HEADERS,
};
use konsumer::{Error, KafkaCode};

use super::coordinator::{Answer, GroupCoordinator, MockGroup, Timer};
use crate::cluster::Connector;
use crate::messages::{Call, Purpose, Reply};

/// One request a mocked broker received.
#[derive(Debug, Clone)]
pub struct Received {
    pub node_id: i32,
    pub api: ApiKey,
    pub version: i16,
    pub request: RequestKind,
}

/// A scripted answer: to the next request of `api` (on `node_id`, if set).
#[derive(Debug, Clone)]
struct Scripted {
    api: ApiKey,
    node_id: Option<i32>,
    answer: Result<ResponseKind, Error>,
}

#[derive(Debug, Default)]
struct State {
    brokers: BTreeMap<i32, (String, i32)>,
    controller: Option<i32>,
    /// Topic name -> leader of each partition (`-1` = no leader).
    topics: BTreeMap<String, Vec<i32>>,
    versions: Option<ApiVersionTable>,
    scripted: VecDeque<Scripted>,
    received: Vec<Received>,
    /// What Produce requests (and [`MockCluster::append`]) wrote, per topic and partition.
    logs: BTreeMap<(String, i32), PartitionLog>,
    /// Consumer groups the brokers coordinate (see [`coordinator`](super::coordinator)).
    coordinator: GroupCoordinator,
    /// One-shot answer delays per API (see [`MockCluster::delay`]).
    delays: Vec<(ApiKey, std::time::Duration)>,
}

/// A record for [`MockCluster::append`]: its key and value (`None` = null).
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// One partition's log: the batches as they were written, each at the offsets it was given,
/// and the transactions they make up.
#[derive(Debug, Default)]
struct PartitionLog {
    batches: Vec<StoredBatch>,
    /// The log end offset: the offset the next batch gets.
    end: i64,
    /// Transactions begun and not yet ended, by producer id.
    open: BTreeMap<i64, OpenTransaction>,
    /// Transactions ended by an abort marker, in marker order (Kafka's transaction index).
    aborted: Vec<AbortedTransaction>,
    /// Each producer's next sequence number here, so that helper-built batches look like a
    /// real producer's.
    sequences: BTreeMap<i64, i32>,
}

#[derive(Debug)]
struct StoredBatch {
    base_offset: i64,
    /// How many offsets the batch takes (its last offset delta + 1).
    offsets: i64,
    /// The whole batch, base offset field included (set to `base_offset`).
    bytes: Bytes,
    /// A control batch (transaction marker): no data for [`MockCluster::produced`].
    control: bool,
}

#[derive(Debug, Clone, Copy)]
struct OpenTransaction {
    /// Its first batch's base offset: the last stable offset cannot pass it.
    first_offset: i64,
    producer_epoch: i16,
}

/// What a read_committed fetch needs to drop an aborted transaction's records.
#[derive(Debug, Clone, Copy)]
struct AbortedTransaction {
    producer_id: i64,
    first_offset: i64,
    /// The abort marker's offset.
    last_offset: i64,
}

impl PartitionLog {
    /// Appends a batch at the log end, rewriting its base offset field (bytes 0..8, which the
    /// v2 CRC does not cover) when it is long enough to have one. Returns the base offset.
    fn append(&mut self, batch: Bytes, offsets: i64) -> i64 {
        let base_offset = self.end;
        let bytes = if batch.len() >= 8 {
            let mut rewritten = BytesMut::from(&batch[..]);
            rewritten[..8].copy_from_slice(&base_offset.to_be_bytes());
            rewritten.freeze()
        } else {
            batch
        };
        let offsets = offsets.max(0);
        let control = self.track(&bytes);
        self.batches.push(StoredBatch {
            base_offset,
            offsets,
            bytes,
            control,
        });
        self.end = self.end.saturating_add(offsets);
        base_offset
    }

    /// Follows transactions as a leader's producer-state manager does, from a batch about to
    /// be stored (its base offset already set): a transactional data batch opens its
    /// producer's transaction unless one is open, a commit or abort marker ends it (an abort
    /// is remembered for read_committed fetches). Bytes that are no valid batch change
    /// nothing. Returns whether the batch is a control batch.
    fn track(&mut self, bytes: &Bytes) -> bool {
        let options = DecodeOptions::default();
        let Some(Ok(batch)) = RecordSetReader::new(bytes.clone(), options.clone()).next_batch()
        else {
            return false;
        };
        let header = &batch.header;
        let producer_id = header.producer_id;
        if producer_id >= 0 && header.base_sequence >= 0 {
            let next = header
                .base_sequence
                .wrapping_add(header.last_offset_delta)
                .wrapping_add(1);
            self.sequences.insert(producer_id, next);
        }
        if producer_id < 0 || !header.is_transactional() {
            return header.is_control();
        }
        match batch.control_type(&options) {
            Ok(None) => {
                self.open.entry(producer_id).or_insert(OpenTransaction {
                    first_offset: header.base_offset,
                    producer_epoch: header.producer_epoch,
                });
            }
            Ok(Some(ControlType::Unknown(_))) | Err(_) => {}
            Ok(Some(marker)) => {
                // A marker with no open transaction ends an empty one, as in Kafka.
                let first_offset = self
                    .open
                    .remove(&producer_id)
                    .map_or(header.base_offset, |t| t.first_offset);
                if marker == ControlType::Abort {
                    self.aborted.push(AbortedTransaction {
                        producer_id,
                        first_offset,
                        last_offset: header.last_offset(),
                    });
                }
            }
        }
        header.is_control()
    }

    /// The first offset of the oldest open transaction, or the log end when none is open:
    /// read_committed consumers see nothing at or past it.
    fn last_stable_offset(&self) -> i64 {
        self.open
            .values()
            .map(|t| t.first_offset)
            .min()
            .unwrap_or(self.end)
    }

    /// The aborted transactions a fetch from `from` that returned data up to (not including)
    /// `to` must list: those whose span, first offset to abort marker, overlaps that range
    /// (as Kafka's `collectAbortedTransactions`).
    fn aborted_between(&self, from: i64, to: i64) -> Vec<fetch_response::AbortedTransaction> {
        self.aborted
            .iter()
            .filter(|t| t.last_offset >= from && t.first_offset < to)
            .map(|t| {
                fetch_response::AbortedTransaction::default()
                    .with_producer_id(ProducerId(t.producer_id))
                    .with_first_offset(t.first_offset)
            })
            .collect()
    }

    /// Every data record of every batch that decodes, in offset order (corrupt batches and
    /// transaction markers left out).
    fn records(&self) -> Vec<Record> {
        let options = DecodeOptions::default();
        self.batches
            .iter()
            .filter(|b| !b.control)
            .filter_map(|b| decode_all(b.bytes.clone(), &options).ok())
            .flatten()
            .collect()
    }
}

/// A cluster of mocked brokers sharing one topology. Cheap to clone (shared state).
#[derive(Debug, Clone, Default)]
pub struct MockCluster {
    state: Arc<Mutex<State>>,
    /// Woken on every append and leadership change, for fetches held in a long poll.
    changed: Arc<Notify>,
}

impl MockCluster {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a broker reachable (through [`connector`](Self::connector)) at `host:port`. The
    /// first broker added becomes the controller.
    pub fn add_broker(&self, node_id: i32, host: &str, port: i32) -> &Self {
        let mut state = self.state();
        state.brokers.insert(node_id, (host.to_owned(), port));
        state.controller.get_or_insert(node_id);
        drop(state);
        self
    }

    /// Adds (or replaces) a topic; `leaders[i]` is the leader of partition `i`.
    pub fn add_topic(&self, name: &str, leaders: &[i32]) -> &Self {
        self.state()
            .topics
            .insert(name.to_owned(), leaders.to_vec());
        self.changed.notify_waiters();
        self
    }

    /// Moves a partition's leadership, as an election would.
    pub fn move_leader(&self, topic: &str, partition: i32, leader: i32) {
        if let Some(leaders) = self.state().topics.get_mut(topic) {
            if let Some(slot) = leaders.get_mut(partition as usize) {
                *slot = leader;
            }
        }
        self.changed.notify_waiters();
    }

    /// Restricts what the brokers claim in ApiVersions (default: every version
    /// `kafka-protocol` knows). Requests outside it fail as they would on such a broker.
    pub fn set_versions(&self, table: ApiVersionTable) {
        self.state().versions = Some(table);
    }

    /// The next request of `api` (on broker `node_id`, if given) gets `answer`.
    pub fn script(&self, api: ApiKey, node_id: Option<i32>, answer: Result<ResponseKind, Error>) {
        self.state().scripted.push_back(Scripted {
            api,
            node_id,
            answer,
        });
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state().received.clone()
    }

    /// The records produced (or appended) to a partition so far, in offset order (offsets
    /// from 0), decoded from the stored batches; batches that do not decode and transaction
    /// markers are left out (aborted records are not: they are in the log).
    pub fn produced(&self, topic: &str, partition: i32) -> Vec<Record> {
        self.state()
            .logs
            .get(&(topic.to_owned(), partition))
            .map(PartitionLog::records)
            .unwrap_or_default()
    }

    /// Appends one uncompressed batch of `(key, value)` records (timestamped now) to a
    /// partition's log, as if a producer had written it; returns the offset of its first
    /// record. No records: nothing is appended and the log end is returned. The partition
    /// need not be in the topology (fetches see it once it is).
    pub fn append(&self, topic: &str, partition: i32, records: &[KeyValue<'_>]) -> i64 {
        let now = now_ms();
        let mut batch = BatchBuilder::new(Compression::None, None);
        for (key, value) in records {
            batch.append(now, *key, *value, NO_HEADERS);
        }
        let count = batch.len() as i64;
        match batch.build() {
            Ok(bytes) => self.append_raw(topic, partition, bytes, count),
            Err(_) => self.log_end(topic, partition),
        }
    }

    /// Appends one uncompressed transactional batch of `(key, value)` records (timestamped
    /// now) from producer `producer_id`, as a transactional producer writes inside a
    /// transaction; returns the offset of its first record. The producer's transaction on this
    /// partition begins here unless one is open already; it lasts until
    /// [`end_transaction`](Self::end_transaction), and until then read_committed fetches stop
    /// at its first offset. The batch carries the open transaction's producer epoch (0 for a
    /// new one) and the producer's next sequence number. No records: nothing is appended and
    /// the log end is returned.
    pub fn append_transactional(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        records: &[KeyValue<'_>],
    ) -> i64 {
        let now = now_ms();
        let mut state = self.state();
        let log = state.logs.entry((topic.to_owned(), partition)).or_default();
        let epoch = log.open.get(&producer_id).map_or(0, |t| t.producer_epoch);
        let sequence = log.sequences.get(&producer_id).copied().unwrap_or(0);
        let mut batch = BatchBuilder::new(Compression::None, None)
            .producer(producer_id, epoch, sequence)
            .transactional(true);
        for (key, value) in records {
            batch.append(now, *key, *value, NO_HEADERS);
        }
        let count = batch.len() as i64;
        let Ok(bytes) = batch.build() else {
            return log.end;
        };
        let base_offset = log.append(bytes, count);
        drop(state);
        self.changed.notify_waiters();
        base_offset
    }

    /// Ends producer `producer_id`'s transaction on a partition by appending its marker (a
    /// control batch of one record, as a transaction coordinator writes it): a commit
    /// (`commit` true) makes its records visible to read_committed consumers, an abort makes
    /// them skipped. The last stable offset moves past the transaction. Returns the marker's
    /// offset. With no open transaction the marker still goes in (Kafka records it as an empty
    /// transaction).
    pub fn end_transaction(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        commit: bool,
    ) -> i64 {
        let marker = if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let mut state = self.state();
        let log = state.logs.entry((topic.to_owned(), partition)).or_default();
        let epoch = log.open.get(&producer_id).map_or(0, |t| t.producer_epoch);
        let batch = BatchBuilder::control_marker(marker, producer_id, epoch, 0, now_ms());
        let Ok(bytes) = batch.build() else {
            return log.end;
        };
        let offset = log.append(bytes, 1);
        drop(state);
        self.changed.notify_waiters();
        offset
    }

    /// A partition's last stable offset: the first offset of its oldest open transaction, or
    /// the log end when none is open.
    pub fn last_stable_offset(&self, topic: &str, partition: i32) -> i64 {
        self.state()
            .logs
            .get(&(topic.to_owned(), partition))
            .map_or(0, PartitionLog::last_stable_offset)
    }

    /// Appends `batch` to a partition's log as it is — a compressed batch, a transaction
    /// marker, or bytes that are no batch at all — taking `record_count` offsets (a v2 batch's
    /// last offset delta + 1). Its base offset field (the first 8 bytes, not covered by the v2
    /// CRC) is set to the log end when the bytes are that long. Returns that base offset.
    /// Fetches return the bytes as stored; [`produced`](Self::produced) skips what does not
    /// decode.
    pub fn append_raw(&self, topic: &str, partition: i32, batch: Bytes, record_count: i64) -> i64 {
        let base_offset = self
            .state()
            .logs
            .entry((topic.to_owned(), partition))
            .or_default()
            .append(batch, record_count);
        self.changed.notify_waiters();
        base_offset
    }

    /// A partition's log end offset: the offset the next record gets (0 for an empty log).
    pub fn log_end(&self, topic: &str, partition: i32) -> i64 {
        log_end(&self.state(), topic, partition)
    }

    /// The answer to the next request of `api` comes `delay` late (the request is logged
    /// when it arrives), as a JoinGroup waits on a broker while others join.
    pub fn delay(&self, api: ApiKey, delay: std::time::Duration) {
        self.state().delays.push((api, delay));
    }

    fn take_delay(&self, api: ApiKey) -> Option<std::time::Duration> {
        let mut state = self.state();
        let i = state.delays.iter().position(|(a, _)| *a == api)?;
        Some(state.delays.remove(i).1)
    }

    /// Commits `offset` for `group` as if a member had (no generation check): another member
    /// moving a partition on behind a test's back.
    pub fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        self.state()
            .coordinator
            .commit(group, topic, partition, offset, None);
    }

    /// The mocked coordinator's view of `group`.
    pub fn group(&self, group: &str) -> Option<MockGroup> {
        self.state().coordinator.snapshot(group)
    }

    /// How many requests of `api` the brokers have received.
    pub fn count(&self, api: ApiKey) -> usize {
        self.state()
            .received
            .iter()
            .filter(|r| r.api == api)
            .count()
    }

    /// A [`Connector`] whose connections are [`MockBroker`] actors of this cluster. An
    /// address no mocked broker has gives a connection that fails every call as unreachable.
    pub fn connector(&self) -> Arc<dyn Connector> {
        Arc::new(MockConnector {
            cluster: self.clone(),
        })
    }

    fn node_at(&self, address: &str) -> Option<i32> {
        self.state()
            .brokers
            .iter()
            .find(|(_, (host, port))| format!("{host}:{port}") == address)
            .map(|(id, _)| *id)
    }

    /// Logs the request and works out its answer: at once, or when a group barrier opens.
    fn respond(&self, node_id: i32, call: &Call) -> Result<Pending, Error> {
        let mut state = self.state();
        let broker = format!("mock broker {node_id}");
        let table = state
            .versions
            .clone()
            .unwrap_or_else(ApiVersionTable::everything);
        let api = call.api_key();
        let version = table.select(api, call.max_version, &broker)?;
        let mut request = call.request().clone();
        fit_to_version(&mut request, version);
        let request = &request;
        // What the wire would do: a field this version lacks is an encoding error.
        let mut scratch = BytesMut::new();
        request
            .encode(&mut scratch, version)
            .map_err(|e| Error::Encode {
                api,
                version,
                detail: format!("{e:#}"),
            })?;
        state.received.push(Received {
            node_id,
            api,
            version,
            request: request.clone(),
        });
        if matches!(request, RequestKind::Produce(p) if p.acks == 0) {
            // A broker sends nothing back for acks=0; the connection replies this way.
            return Ok(Pending {
                api,
                version,
                broker,
                answer: Box::pin(std::future::ready(Some(ResponseKind::Produce(
                    Default::default(),
                )))),
                timer: None,
                raw: true,
            });
        }
        let mut timer = None;
        let scripted = state
            .scripted
            .iter()
            .position(|s| s.api == api && s.node_id.is_none_or(|n| n == node_id))
            .and_then(|i| state.scripted.remove(i));
        let response = match scripted {
            Some(s) => s.answer?,
            None => match request {
                RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions(&table)),
                RequestKind::Metadata(req) => {
                    let names = req.topics.as_ref().map(|ts| {
                        ts.iter()
                            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                            .collect()
                    });
                    ResponseKind::Metadata(metadata(&state, names))
                }
                RequestKind::CreateTopics(req) => {
                    let mut results = Vec::new();
                    let brokers: Vec<i32> = state.brokers.keys().copied().collect();
                    for topic in &req.topics {
                        let name = topic.name.0.to_string();
                        let code = match state.topics.entry(name) {
                            Entry::Occupied(_) => KafkaCode::TopicAlreadyExists.code(),
                            Entry::Vacant(slot) => {
                                let leaders = (0..topic.num_partitions.max(1) as usize)
                                    .map(|p| {
                                        brokers.get(p % brokers.len().max(1)).copied().unwrap_or(-1)
                                    })
                                    .collect();
                                slot.insert(leaders);
                                0
                            }
                        };
                        results.push(
                            CreatableTopicResult::default()
                                .with_name(topic.name.clone())
                                .with_error_code(code),
                        );
                    }
                    ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results))
                }
                RequestKind::Produce(req) => {
                    let response = produce(&mut state, node_id, req);
                    self.changed.notify_waiters();
                    ResponseKind::Produce(response)
                }
                RequestKind::FindCoordinator(req) => {
                    ResponseKind::FindCoordinator(find_coordinator(&state, req))
                }
                RequestKind::JoinGroup(req) => {
                    let (answer, started) = state.coordinator.join(version, req);
                    timer = started;
                    match answer {
                        Answer::Now(r) => ResponseKind::JoinGroup(r),
                        Answer::Later(rx) => {
                            let wrap = ResponseKind::JoinGroup;
                            return Ok(Pending::later(api, version, broker, timer, rx, wrap));
                        }
                    }
                }
                RequestKind::SyncGroup(req) => match state.coordinator.sync(req) {
                    Answer::Now(r) => ResponseKind::SyncGroup(r),
                    Answer::Later(rx) => {
                        let wrap = ResponseKind::SyncGroup;
                        return Ok(Pending::later(api, version, broker, None, rx, wrap));
                    }
                },
                RequestKind::Heartbeat(req) => {
                    ResponseKind::Heartbeat(state.coordinator.heartbeat(req))
                }
                RequestKind::LeaveGroup(req) => {
                    let (response, started) = state.coordinator.leave(req);
                    timer = started;
                    ResponseKind::LeaveGroup(response)
                }
                RequestKind::OffsetCommit(req) => {
                    ResponseKind::OffsetCommit(offset_commit(&mut state, req))
                }
                RequestKind::ListOffsets(req) => {
                    ResponseKind::ListOffsets(list_offsets(&state, node_id, req))
                }
                RequestKind::Fetch(req) => {
                    let response = fetch(&state, node_id, version, req);
                    if fetch_satisfied(req, &response) {
                        ResponseKind::Fetch(response)
                    } else {
                        // Nothing (or less than min_bytes) to return yet: hold the answer as a
                        // broker's long poll does, so that a consumer does not spin.
                        let hold = Duration::from_millis(req.max_wait_ms.clamp(0, 500) as u64);
                        let deadline = tokio::time::Instant::now() + hold;
                        let poll = self
                            .clone()
                            .long_poll(node_id, version, req.clone(), deadline);
                        return Ok(Pending {
                            api,
                            version,
                            broker,
                            answer: Box::pin(poll),
                            timer: None,
                            raw: false,
                        });
                    }
                }
                RequestKind::OffsetFetch(req) => {
                    ResponseKind::OffsetFetch(offset_fetch(&state, req))
                }
                _ => {
                    return Err(Error::Protocol {
                        broker,
                        detail: format!("mock has no answer for {api:?}; script one"),
                    })
                }
            },
        };
        drop(state);
        Ok(Pending {
            api,
            version,
            broker,
            answer: Box::pin(std::future::ready(Some(response))),
            timer,
            raw: false,
        })
    }

    /// Answers `call` as broker `node_id`. The request is logged (and its answer decided, or
    /// its wait started) at once; the returned future waits for barriers, scripted delays, and
    /// a Fetch's long poll.
    pub(crate) fn answer_call(
        &self,
        node_id: i32,
        call: Call,
    ) -> impl std::future::Future<Output = Result<Reply, Error>> + 'static {
        let pending = self.respond(node_id, &call);
        let delay = self.take_delay(call.api_key());
        let cluster = self.clone();
        async move {
            let mut pending = pending?;
            if let Some(timer) = pending.timer.take() {
                cluster.arm(timer);
            }
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            pending.reply().await
        }
    }

    /// A held Fetch: answered as soon as it is satisfied (records appended, a leader moved
    /// away, a topic replaced) or at `deadline` with whatever there is.
    async fn long_poll(
        self,
        node_id: i32,
        version: i16,
        request: FetchRequest,
        deadline: tokio::time::Instant,
    ) -> Option<ResponseKind> {
        loop {
            // Registered before the state is read, so a change in between is not missed.
            let mut appended = std::pin::pin!(self.changed.notified());
            appended.as_mut().enable();
            let response = fetch(&self.state(), node_id, version, &request);
            if fetch_satisfied(&request, &response) || tokio::time::Instant::now() >= deadline {
                return Some(ResponseKind::Fetch(response));
            }
            let _ = tokio::time::timeout_at(deadline, appended).await;
        }
    }

    /// Starts the timer that ends a join barrier after the rebalance timeout.
    fn arm(&self, timer: Timer) {
        let cluster = self.clone();
        actix::spawn(async move {
            tokio::time::sleep(timer.after).await;
            cluster
                .state()
                .coordinator
                .rebalance_timed_out(&timer.group, timer.rebalance);
        });
    }
}

/// A request's answer, once the mock has decided it.
struct Pending {
    api: ApiKey,
    version: i16,
    broker: String,
    answer: Later,
    timer: Option<Timer>,
    /// Handed back as is (acks=0 has no wire form).
    raw: bool,
}

/// The answer to come: `None` if the coordinator dropped the request.
type Later = std::pin::Pin<Box<dyn std::future::Future<Output = Option<ResponseKind>> + Send>>;

impl Pending {
    fn later<T: Send + 'static>(
        api: ApiKey,
        version: i16,
        broker: String,
        timer: Option<Timer>,
        rx: oneshot::Receiver<T>,
        wrap: fn(T) -> ResponseKind,
    ) -> Self {
        Pending {
            api,
            version,
            broker,
            answer: Box::pin(async move { rx.await.ok().map(wrap) }),
            timer,
            raw: false,
        }
    }

    /// Waits for the answer, then passes it through the wire format and back at the
    /// negotiated version.
    async fn reply(self) -> Result<Reply, Error> {
        let (api, version, broker) = (self.api, self.version, self.broker);
        let response = self.answer.await.ok_or_else(|| Error::ConnectionClosed {
            broker: broker.clone(),
            detail: "(the mocked group coordinator dropped the request)".into(),
        })?;
        if self.raw {
            return Ok(Reply { version, response });
        }
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&0i32.to_be_bytes()); // correlation id (response header v0)
        if api != ApiKey::ApiVersions && api.response_header_version(version) >= 1 {
            frame.extend_from_slice(&[0]); // empty tagged fields (header v1)
        }
        response
            .encode(&mut frame, version)
            .map_err(|e| Error::Encode {
                api,
                version,
                detail: format!("mock response: {e:#}"),
            })?;
        let response = decode_response(api, version, frame.freeze(), &broker)?;
        Ok(Reply { version, response })
    }
}

/// Appends each partition's batches to its log, as a leader would: an unknown partition or a
/// broker that is not the leader gets the error a broker sends; records that do not decode
/// are a CorruptMessage answer, a batch that is not v2 or whose record count disagrees with
/// its offsets an InvalidRecord one.
fn produce(state: &mut State, node_id: i32, request: &ProduceRequest) -> ProduceResponse {
    let mut topics = Vec::new();
    for topic in &request.topic_data {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::new();
        for data in &topic.partition_data {
            let leader = state
                .topics
                .get(&name)
                .and_then(|leaders| leaders.get(usize::try_from(data.index).ok()?).copied());
            let answer = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_log_append_time_ms(-1);
            let answer = match leader {
                None => answer.with_error_code(KafkaCode::UnknownTopicOrPartition.code()),
                Some(leader) if leader != node_id => {
                    answer.with_error_code(KafkaCode::NotLeaderOrFollower.code())
                }
                Some(_) => {
                    let bytes = data.records.clone().unwrap_or_default();
                    match split_batches(bytes) {
                        Err(code) => answer.with_error_code(code.code()),
                        Ok(batches) => {
                            let log = state.logs.entry((name.clone(), data.index)).or_default();
                            let base = log.end;
                            for (batch, offsets) in batches {
                                log.append(batch, offsets);
                            }
                            answer.with_base_offset(base)
                        }
                    }
                }
            };
            partitions.push(answer);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(partitions),
        );
    }
    ProduceResponse::default().with_responses(topics)
}

/// A produced record set's batches, each with the number of offsets it takes, once every
/// record has been checked to decode. A truncated tail is dropped.
fn split_batches(set: Bytes) -> Result<Vec<(Bytes, i64)>, KafkaCode> {
    let options = DecodeOptions::default();
    let mut reader = RecordSetReader::new(set, options.clone());
    let mut batches = Vec::new();
    let mut records = Vec::new();
    while let Some(batch) = reader.next_batch() {
        let batch = batch.map_err(|_| KafkaCode::CorruptMessage)?;
        if batch.header.magic != 2 {
            return Err(KafkaCode::InvalidRecord);
        }
        records.clear();
        batch
            .decode_into(&options, &mut records)
            .map_err(|_| KafkaCode::CorruptMessage)?;
        let offsets = i64::from(batch.header.last_offset_delta) + 1;
        if i64::from(batch.header.record_count) != offsets || records.len() as i64 != offsets {
            return Err(KafkaCode::InvalidRecord);
        }
        batches.push((batch.raw().clone(), offsets));
    }
    Ok(batches)
}

/// The coordinator of every group is the controller (the first broker added).
fn find_coordinator(state: &State, req: &FindCoordinatorRequest) -> FindCoordinatorResponse {
    let node = state.controller.unwrap_or(-1);
    let (host, port) = state.brokers.get(&node).cloned().unwrap_or_default();
    let host = StrBytes::from_string(host);
    let mut response = FindCoordinatorResponse::default()
        .with_node_id(BrokerId(node))
        .with_host(host.clone())
        .with_port(port);
    if !req.coordinator_keys.is_empty() {
        response = FindCoordinatorResponse::default().with_coordinators(
            req.coordinator_keys
                .iter()
                .map(|key| {
                    find_coordinator_response::Coordinator::default()
                        .with_key(key.clone())
                        .with_node_id(BrokerId(node))
                        .with_host(host.clone())
                        .with_port(port)
                })
                .collect(),
        );
    }
    response
}

fn offset_commit(state: &mut State, req: &OffsetCommitRequest) -> OffsetCommitResponse {
    let group = req.group_id.0.as_str();
    let code =
        state
            .coordinator
            .commit_check(group, &req.member_id, req.generation_id_or_member_epoch);
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    if code == 0 {
                        state.coordinator.commit(
                            group,
                            &topic.name.0,
                            p.partition_index,
                            p.committed_offset,
                            p.committed_metadata.as_ref().map(|m| m.to_string()),
                        );
                    }
                    offset_commit_response::OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

fn offset_fetch(state: &State, req: &OffsetFetchRequest) -> OffsetFetchResponse {
    let group = req.group_id.0.as_str();
    let topics = req
        .topics
        .iter()
        .flatten()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|p| {
                    let committed = state.coordinator.committed(group, &topic.name.0, *p);
                    let committed = committed.as_ref();
                    offset_fetch_response::OffsetFetchResponsePartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(committed.map_or(-1, |c| c.0))
                        .with_metadata(
                            committed
                                .and_then(|c| c.1.clone())
                                .map(StrBytes::from_string),
                        )
                })
                .collect();
            offset_fetch_response::OffsetFetchResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// What a partition's leader answers: earliest (-2) is 0, latest (-1) the log end, max
/// timestamp (-3) the first record with the highest timestamp; any other timestamp the first
/// record whose timestamp is at least it, or offset -1 when there is none (as Kafka answers).
fn list_offsets(state: &State, node_id: i32, req: &ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = list_offsets_response::ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    if let Err(code) = check_leader(state, node_id, &name, p.partition_index) {
                        return answer.with_error_code(code.code());
                    }
                    let (offset, timestamp) = match p.timestamp {
                        -2 => (0, -1),
                        -1 => (log_end(state, &name, p.partition_index), -1),
                        target => {
                            let records = state
                                .logs
                                .get(&(name.clone(), p.partition_index))
                                .map(PartitionLog::records)
                                .unwrap_or_default();
                            let found = if target == -3 {
                                // The first of the highest timestamps.
                                records.iter().rev().max_by_key(|r| r.timestamp)
                            } else {
                                records.iter().find(|r| r.timestamp >= target)
                            };
                            found.map_or((-1, -1), |r| (r.offset, r.timestamp))
                        }
                    };
                    answer.with_offset(offset).with_timestamp(timestamp)
                })
                .collect();
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Kafka's answer to a fetch (see the module documentation for what is kept).
fn fetch(state: &State, node_id: i32, version: i16, req: &FetchRequest) -> FetchResponse {
    let mut budget = FetchBudget {
        remaining: i64::from(req.max_bytes.max(0)),
        min_one: true,
    };
    let read_committed = req.isolation_level == 1;
    let responses = req
        .topics
        .iter()
        .map(|topic| {
            // Fetch v13+ names topics by id; this mock gives out none.
            let name = (version <= 12).then(|| topic.topic.0.to_string());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| match &name {
                    None => failed_fetch(p.partition, KafkaCode::UnknownTopicId),
                    Some(name) => {
                        fetch_partition(state, node_id, name, p, read_committed, &mut budget)
                    }
                })
                .collect();
            let answer = fetch_response::FetchableTopicResponse::default();
            let answer = if version <= 12 {
                answer.with_topic(topic.topic.clone())
            } else {
                answer.with_topic_id(topic.topic_id)
            };
            answer.with_partitions(partitions)
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}

/// What is left of a fetch's `max_bytes`, and whether the next non-empty partition is the
/// first (whose first batch comes back whatever its size: KIP-74).
struct FetchBudget {
    remaining: i64,
    min_one: bool,
}

fn fetch_partition(
    state: &State,
    node_id: i32,
    topic: &str,
    p: &FetchPartition,
    read_committed: bool,
    budget: &mut FetchBudget,
) -> fetch_response::PartitionData {
    if let Err(code) = check_leader(state, node_id, topic, p.partition) {
        return failed_fetch(p.partition, code);
    }
    let log = state.logs.get(&(topic.to_owned(), p.partition));
    let end = log.map_or(0, |log| log.end);
    let stable = log.map_or(0, PartitionLog::last_stable_offset);
    // Kafka checks the fetch offset against the log end whatever the isolation level.
    if p.fetch_offset < 0 || p.fetch_offset > end {
        return failed_fetch(p.partition, KafkaCode::OffsetOutOfRange);
    }
    // read_committed sees whole batches below the last stable offset (an open transaction's
    // first batch starts at it), so undecided records never leave the broker.
    let visible = if read_committed { stable } else { end };
    let limit = i64::from(p.partition_max_bytes.max(0)).min(budget.remaining);
    let mut records = BytesMut::new();
    // One past the last offset returned.
    let mut upto = p.fetch_offset;
    let from_fetch_offset = log
        .into_iter()
        .flat_map(|log| &log.batches)
        .skip_while(|b| b.base_offset.saturating_add(b.offsets) <= p.fetch_offset)
        .take_while(|b| b.base_offset.saturating_add(b.offsets) <= visible);
    for batch in from_fetch_offset {
        let fits = (records.len() + batch.bytes.len()) as i64 <= limit;
        if !(fits || records.is_empty() && budget.min_one) {
            break;
        }
        records.extend_from_slice(&batch.bytes);
        upto = batch.base_offset.saturating_add(batch.offsets);
    }
    if !records.is_empty() {
        budget.min_one = false;
        budget.remaining = (budget.remaining - records.len() as i64).max(0);
    }
    let aborted = read_committed.then(|| {
        log.map(|log| log.aborted_between(p.fetch_offset, upto))
            .unwrap_or_default()
    });
    fetch_response::PartitionData::default()
        .with_partition_index(p.partition)
        .with_high_watermark(end)
        .with_last_stable_offset(stable)
        .with_log_start_offset(0)
        .with_aborted_transactions(aborted)
        .with_records(Some(records.freeze()))
}

/// A partition's fetch error, with the unknown offsets a broker sends along with it.
fn failed_fetch(partition: i32, code: KafkaCode) -> fetch_response::PartitionData {
    fetch_response::PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(code.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_aborted_transactions(None)
        .with_records(Some(Bytes::new()))
}

/// Whether a broker would answer this fetch now: an error to report, at least `min_bytes` of
/// records (so a `min_bytes` of 0 is answered at once, as by Kafka), no partition asked for,
/// or no wait allowed.
fn fetch_satisfied(req: &FetchRequest, response: &FetchResponse) -> bool {
    let partitions = || response.responses.iter().flat_map(|t| &t.partitions);
    let bytes: usize = partitions()
        .map(|p| p.records.as_ref().map_or(0, Bytes::len))
        .sum();
    req.max_wait_ms <= 0
        || partitions().next().is_none()
        || response.error_code != 0
        || partitions().any(|p| p.error_code != 0)
        || bytes as i64 >= i64::from(req.min_bytes)
}

/// Whether `node_id` leads the partition: UnknownTopicOrPartition or NotLeaderOrFollower if not.
fn check_leader(state: &State, node_id: i32, topic: &str, partition: i32) -> Result<(), KafkaCode> {
    let leader = state
        .topics
        .get(topic)
        .and_then(|leaders| leaders.get(usize::try_from(partition).ok()?));
    match leader {
        None => Err(KafkaCode::UnknownTopicOrPartition),
        Some(leader) if *leader != node_id => Err(KafkaCode::NotLeaderOrFollower),
        Some(_) => Ok(()),
    }
}

/// Wall-clock milliseconds, as record timestamps are.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn log_end(state: &State, topic: &str, partition: i32) -> i64 {
    state
        .logs
        .get(&(topic.to_owned(), partition))
        .map_or(0, |log| log.end)
}

fn api_versions(table: &ApiVersionTable) -> ApiVersionsResponse {
    let keys = ApiKey::iter()
        .filter_map(|k| {
            table.broker_range(k).map(|(min, max)| {
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(keys)
}

fn metadata(state: &State, names: Option<Vec<String>>) -> MetadataResponse {
    let brokers = state
        .brokers
        .iter()
        .map(|(id, (host, port))| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(*id))
                .with_host(StrBytes::from_string(host.clone()))
                .with_port(*port)
        })
        .collect();
    let wanted: Vec<String> = names.unwrap_or_else(|| state.topics.keys().cloned().collect());
    let topics = wanted
        .into_iter()
        .map(|name| {
            let topic = MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
            match state.topics.get(&name) {
                None => topic.with_error_code(KafkaCode::UnknownTopicOrPartition.code()),
                Some(leaders) => topic.with_partitions(
                    leaders
                        .iter()
                        .enumerate()
                        .map(|(i, leader)| {
                            let partition = MetadataResponsePartition::default()
                                .with_partition_index(i as i32)
                                .with_leader_id(BrokerId(*leader))
                                .with_replica_nodes(vec![BrokerId(*leader)])
                                .with_isr_nodes(vec![BrokerId(*leader)]);
                            if *leader < 0 {
                                partition.with_error_code(KafkaCode::LeaderNotAvailable.code())
                            } else {
                                partition
                            }
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_controller_id(BrokerId(state.controller.unwrap_or(-1)))
        .with_cluster_id(Some(StrBytes::from_static_str("mock-cluster")))
        .with_topics(topics)
}

/// One mocked broker (or an unreachable address, when `node_id` is `None`).
pub struct MockBroker {
    cluster: MockCluster,
    node_id: Option<i32>,
    address: String,
}

impl Actor for MockBroker {
    type Context = Context<Self>;
}

impl Handler<Call> for MockBroker {
    type Result = ResponseFuture<Result<Reply, Error>>;

    fn handle(&mut self, call: Call, _: &mut Context<Self>) -> Self::Result {
        match self.node_id {
            Some(node_id) => Box::pin(self.cluster.answer_call(node_id, call)),
            None => {
                let error = Error::Connect {
                    broker: self.address.clone(),
                    reason: "no mocked broker at this address".into(),
                };
                Box::pin(async move { Err(error) })
            }
        }
    }
}

struct MockConnector {
    cluster: MockCluster,
}

impl Connector for MockConnector {
    fn connect(&self, address: &str, _purpose: Purpose) -> Recipient<Call> {
        MockBroker {
            node_id: self.cluster.node_at(address),
            cluster: self.cluster.clone(),
            address: address.to_owned(),
        }
        .start()
        .recipient()
    }
}
