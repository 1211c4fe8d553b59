//! Every message type the actors exchange, in one place.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{Message, Recipient};
use bytes::Bytes;
use konsumer::group::{Assignment, TopicPartitions};
use konsumer::producer::{ProduceError, RecordMetadata};
use konsumer::protocol::{ApiKey, KafkaRequest, RequestKind, ResponseKind};
use konsumer::records::Record;
use konsumer::Error;

/// One request to one broker. Anything that answers `Call` can serve as a broker connection:
/// a [`BrokerConnection`](crate::BrokerConnection), or a mocked broker in tests.
#[derive(Debug)]
pub struct Call {
    api_key: ApiKey,
    request: RequestKind,
    /// Highest version to use; `None` = the highest both sides support.
    pub max_version: Option<i16>,
    /// Overrides the connection's request timeout for this call (e.g. a JoinGroup that may
    /// block for the whole rebalance timeout).
    pub timeout: Option<Duration>,
}

impl Call {
    pub fn new<R: KafkaRequest>(request: R) -> Self {
        Call {
            api_key: R::API,
            request: request.into(),
            max_version: None,
            timeout: None,
        }
    }
    /// A call from an untyped request, for code that relays requests (e.g. a mocked broker
    /// serving TCP clients). `api_key` must be the request's API.
    pub fn from_kind(api_key: ApiKey, request: RequestKind) -> Self {
        Call {
            api_key,
            request,
            max_version: None,
            timeout: None,
        }
    }
    pub fn with_max_version(mut self, version: i16) -> Self {
        self.max_version = Some(version);
        self
    }
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    pub fn api_key(&self) -> ApiKey {
        self.api_key
    }
    pub fn request(&self) -> &RequestKind {
        &self.request
    }
    pub fn into_request(self) -> RequestKind {
        self.request
    }
    /// Puts the request in the shape of `version`, once the connection has chosen it (see
    /// [`fit_to_version`](konsumer::protocol::fit_to_version)).
    pub fn fit_to_version(&mut self, version: i16) {
        konsumer::protocol::fit_to_version(&mut self.request, version);
    }
}

impl Message for Call {
    type Result = Result<Reply, Error>;
}

/// A broker's answer to a [`Call`], with the version both sides used.
#[derive(Debug, Clone)]
pub struct Reply {
    pub version: i16,
    pub response: ResponseKind,
}

impl Reply {
    /// The typed response for request type `R`. A mismatch is a protocol error: the connection
    /// answered another API than the one asked.
    pub fn into_typed<R: KafkaRequest>(self, broker: &str) -> Result<R::Response, Error> {
        R::response_from(self.response).ok_or_else(|| Error::Protocol {
            broker: broker.to_owned(),
            detail: format!("answer to {:?} was of another API", R::API),
        })
    }
}

/// Sends a typed request over any connection and returns the typed response.
pub async fn call<R: KafkaRequest>(
    connection: &Recipient<Call>,
    request: R,
) -> Result<R::Response, Error> {
    connection
        .send(Call::new(request))
        .await
        .map_err(|_| Error::Shutdown("broker connection".into()))??
        .into_typed::<R>("connection")
}

/// Which traffic a connection carries. Each purpose gets its own connection per broker, so that
/// a long-poll Fetch never sits in front of a Heartbeat (responses come back in order per
/// connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Metadata, admin and anything else.
    General,
    /// Group coordination: join, sync, leave, offset fetches and commits.
    Group,
    /// Heartbeats alone, so that one is never stuck behind a JoinGroup that blocks for the
    /// whole rebalance (a broker answers one connection's requests in order).
    Heartbeat,
    /// Fetch long polls.
    Fetch,
    /// Produce requests.
    Produce,
}

/// Where the [`Cluster`](crate::Cluster) sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any live broker (the least recently failed one the metadata lists).
    Any,
    /// A broker by node id.
    Broker(i32),
    /// The current leader of a partition.
    Leader { topic: String, partition: i32 },
    /// The controller (CreateTopics and other admin requests).
    Controller,
}

/// Send `call` to `target` over the connection for `purpose`. A response whose partitions say
/// the metadata is stale (NotLeader, UnknownTopicOrPartition, ...) triggers an immediate
/// metadata refresh; the response itself is returned unchanged for the caller to retry.
#[derive(Debug)]
pub struct Route {
    pub target: Target,
    pub purpose: Purpose,
    pub call: Call,
}

impl Message for Route {
    type Result = Result<Reply, Error>;
}

/// The connection the cluster uses for `target` and `purpose` (to talk to it directly, e.g. a
/// Fetcher holding its leader's fetch connection).
#[derive(Debug, Clone)]
pub struct ConnectionFor {
    pub target: Target,
    pub purpose: Purpose,
}

impl Message for ConnectionFor {
    type Result = Result<(i32, Recipient<Call>), Error>;
}

/// The current metadata snapshot; with `refresh`, after fetching a new one.
#[derive(Debug, Clone, Copy)]
pub struct GetMetadata {
    pub refresh: bool,
}

impl Message for GetMetadata {
    type Result = Result<std::sync::Arc<crate::cluster::ClusterMetadata>, Error>;
}

/// Creates topics through the controller and waits until the metadata shows them with leaders.
#[derive(Debug, Clone)]
pub struct CreateTopics {
    pub topics: Vec<NewTopic>,
    pub timeout: Duration,
}

/// One topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic configs, e.g. `("cleanup.policy", "compact")`.
    pub configs: Vec<(String, String)>,
}

impl Message for CreateTopics {
    type Result = Result<(), Error>;
}

/// Stops an actor. Connections and the cluster fail every waiting request with
/// [`Error::Shutdown`]; the [`Producer`](crate::Producer) first delivers what it holds (as
/// [`Flush`]), then stops.
#[derive(Debug, Clone, Copy)]
pub struct Close;

impl Message for Close {
    type Result = ();
}

/// A record to produce. Built with [`ProducerRecord::new`] and its setters.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    pub topic: String,
    /// `None`: the producer's partitioner chooses (murmur2 of the key by default).
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch; `None`: the time the producer takes the record.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            ..ProducerRecord::default()
        }
    }
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
    pub fn header(mut self, name: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((name.into(), value));
        self
    }
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

/// Produces one record and answers once the broker has acknowledged it (with `acks=0`: once it
/// is written), or with why it failed.
#[derive(Debug)]
pub struct Produce(pub ProducerRecord);

impl Message for Produce {
    type Result = Result<RecordMetadata, ProduceError>;
}

/// Fire and forget: the record's outcome goes to `report_to` as a [`DeliveryReport`] carrying
/// `opaque`, exactly once (also when the record is refused at once, e.g. queue full).
#[derive(Debug)]
pub struct Enqueue {
    pub record: ProducerRecord,
    pub opaque: u64,
    pub report_to: ReportTo,
}

impl Message for Enqueue {
    type Result = ();
}

/// Where delivery reports go: an actor, or a channel for code outside actors.
#[derive(Debug, Clone)]
pub enum ReportTo {
    Recipient(Recipient<DeliveryReport>),
    Channel(tokio::sync::mpsc::UnboundedSender<DeliveryReport>),
}

impl ReportTo {
    pub fn report(&self, report: DeliveryReport) {
        match self {
            ReportTo::Recipient(recipient) => recipient.do_send(report),
            ReportTo::Channel(channel) => {
                let _ = channel.send(report);
            }
        }
    }
}

/// The outcome of an [`Enqueue`]d record.
#[derive(Debug, Clone)]
pub struct DeliveryReport {
    pub opaque: u64,
    pub result: Result<RecordMetadata, ProduceError>,
}

impl Message for DeliveryReport {
    type Result = ();
}

/// Answers once every record handed to the producer before it is finished (acknowledged or
/// failed); open batches are sent at once instead of waiting for their linger.
#[derive(Debug, Clone, Copy)]
pub struct Flush;

impl Message for Flush {
    type Result = ();
}

// ---- Consumer groups: the Coordinator's messages and notifications ----

/// A committed offset with what the Java client commits alongside it. `offset` is the next
/// offset to read (the last processed one + 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffset {
    pub offset: i64,
    /// The leader epoch of the last record read (OffsetCommit v6+), for log truncation checks.
    pub leader_epoch: Option<i32>,
    /// Free text kept with the offset. Dropped (and the commit retried) if the broker says
    /// it is too large.
    pub metadata: Option<String>,
}

impl CommitOffset {
    pub fn new(offset: i64) -> Self {
        CommitOffset {
            offset,
            leader_epoch: None,
            metadata: None,
        }
    }
}

/// Offsets per (topic, partition).
pub type PartitionOffsets<T> = BTreeMap<(String, i32), T>;

/// Commits offsets with the member's current generation (bounded retries with backoff).
/// Fails when the member holds no generation (joining, or not a member).
#[derive(Debug, Clone)]
pub struct Commit {
    pub offsets: PartitionOffsets<CommitOffset>,
}

impl Message for Commit {
    type Result = Result<(), Error>;
}

/// The group's committed offsets for these partitions (`None`: nothing committed).
#[derive(Debug, Clone)]
pub struct FetchCommitted {
    pub partitions: TopicPartitions,
}

impl Message for FetchCommitted {
    type Result = Result<PartitionOffsets<Option<i64>>, Error>;
}

/// Adds topics to a live member's subscription: one rejoin for the whole batch.
#[derive(Debug, Clone)]
pub struct Subscribe {
    pub topics: Vec<String>,
}

impl Message for Subscribe {
    type Result = Result<(), Error>;
}

/// The member's current state.
#[derive(Debug, Clone, Copy)]
pub struct GetMembership;

impl Message for GetMembership {
    type Result = Membership;
}

/// A snapshot of one member's place in its group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub member_id: String,
    /// -1 while the member holds no generation.
    pub generation: i32,
    pub leader: bool,
    /// The assignor the group chose.
    pub protocol: Option<String>,
    /// The subscribed topics (explicit, added and pattern matches).
    pub topics: Vec<String>,
    pub assignment: Assignment,
}

/// What the Coordinator tells the user about the group (the seeds' notifications and errors).
#[derive(Debug, Clone)]
pub enum GroupEvent {
    /// The member is about to (re)join. `current`: what it holds now.
    RebalanceStart {
        reason: String,
        current: TopicPartitions,
    },
    /// The member no longer owns these partitions: consumption of them stops. Eager
    /// assignors give up everything before each join; cooperative ones only what moves,
    /// after the sync. `lost`: the member was dropped by the group (session timeout, unknown
    /// member), so the partitions may already be someone else's and commits will fail.
    Revoked {
        generation: i32,
        partitions: TopicPartitions,
        lost: bool,
    },
    /// The member holds a new assignment. `committed` has the group's committed offset for
    /// each claimed partition (`None`: nothing committed yet).
    RebalanceOk {
        generation: i32,
        member_id: String,
        leader: bool,
        protocol: String,
        assignment: Assignment,
        claimed: TopicPartitions,
        released: TopicPartitions,
        current: TopicPartitions,
        committed: PartitionOffsets<Option<i64>>,
    },
    /// A rebalance attempt failed; the member tries again after a backoff.
    RebalanceError {
        error: Error,
        current: TopicPartitions,
    },
    /// Offsets of partitions being given up (revoke, close) were committed with `generation`,
    /// the last one that owned them.
    Committed {
        generation: i32,
        offsets: PartitionOffsets<i64>,
    },
    /// An error outside rebalancing (heartbeat, commit, metadata) the member carries on after.
    Error { error: Error },
}

impl Message for GroupEvent {
    type Result = ();
}

/// Where group events go: an actor, or a channel for code outside actors.
#[derive(Debug, Clone)]
pub enum EventSink {
    Recipient(Recipient<GroupEvent>),
    Channel(tokio::sync::mpsc::UnboundedSender<GroupEvent>),
    /// Events are only logged.
    None,
}

impl EventSink {
    pub fn send(&self, event: GroupEvent) {
        match self {
            EventSink::Recipient(recipient) => recipient.do_send(event),
            EventSink::Channel(channel) => {
                let _ = channel.send(event);
            }
            EventSink::None => {}
        }
    }
}

/// A [`Heartbeat`](crate::Heartbeat) answer, for the Coordinator to act on. Sent for every
/// heartbeat, so the Coordinator also knows when the last one succeeded.
#[derive(Debug, Clone)]
pub struct HeartbeatOutcome {
    pub generation: i32,
    pub member_id: String,
    pub result: Result<(), Error>,
}

impl Message for HeartbeatOutcome {
    type Result = ();
}

/// Tells a Heartbeat which member id and generation to send from now on.
#[derive(Debug, Clone)]
pub struct HeartbeatAs {
    pub generation: i32,
    pub member_id: String,
}

impl Message for HeartbeatAs {
    type Result = ();
}

// ---- Consumption: what handlers receive and answer, and what the pipeline's actors exchange ----

/// Why a handler could not finish a record. Any `std::error::Error` converts into it, so a
/// handler can use `?`; [`HandlerError::new`] takes a plain message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    pub message: String,
    /// For a batch: the record that failed. Records before it count as done; only it and
    /// what follows are redelivered, and only it meets the policy's last word (skip,
    /// dead-letter). `None`: the whole delivery failed.
    pub offset: Option<i64>,
}

impl HandlerError {
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            offset: None,
        }
    }
    /// A batch failed at `offset`: the records before it are done.
    pub fn at(offset: i64, message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            offset: Some(offset),
        }
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(error: E) -> Self {
        HandlerError::new(error.to_string())
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a handler answers for a record or a batch: `Ok(())` = done (unless it was
/// [deferred](KafkaMessage::defer)), `Err` = failed, handled by the topic's failure policy.
pub type HandlerResult = Result<(), HandlerError>;

/// Where the answers for one delivery go, shared by the records of the delivery.
#[derive(Debug)]
pub(crate) struct AckTarget {
    pub(crate) tracker: Recipient<Acked>,
    /// The tracker's epoch when it delivered: acks from before a seek or a restart are ignored.
    pub(crate) epoch: u64,
    /// Offsets whose handler called `defer` (done only by their [`Ack`]).
    pub(crate) deferred: std::sync::Mutex<Vec<i64>>,
}

impl AckTarget {
    fn defer(self: &Arc<Self>, offsets: Vec<i64>) -> Ack {
        if let Ok(mut deferred) = self.deferred.lock() {
            deferred.extend_from_slice(&offsets);
        }
        Ack {
            target: Some(self.clone()),
            offsets,
        }
    }
}

/// One record, as a user's handler actor receives it. Keys, values and headers are slices of
/// the fetched buffer (no copy).
#[derive(Debug, Clone)]
pub struct KafkaMessage {
    pub topic: Arc<str>,
    pub partition: i32,
    pub record: Record,
    pub(crate) ack: Option<Arc<AckTarget>>,
}

impl KafkaMessage {
    /// A message that belongs to no tracker (for unit tests of handlers); `defer` on it gives an
    /// [`Ack`] that goes nowhere.
    pub fn detached(topic: &str, partition: i32, record: Record) -> Self {
        KafkaMessage {
            topic: topic.into(),
            partition,
            record,
            ack: None,
        }
    }
    pub fn offset(&self) -> i64 {
        self.record.offset
    }
    pub fn timestamp(&self) -> i64 {
        self.record.timestamp
    }
    pub fn key(&self) -> Option<&[u8]> {
        self.record.key()
    }
    pub fn value(&self) -> Option<&[u8]> {
        self.record.value()
    }
    pub fn headers(&self) -> konsumer::records::Headers<'_> {
        self.record.headers()
    }
    /// Takes over completion: the handler's `Ok` no longer marks this record done; the returned
    /// [`Ack`] does, from anywhere and in any order. An `Ack` dropped without an answer counts as
    /// a failure (so a lost ack can never be mistaken for a finished record).
    pub fn defer(&self) -> Ack {
        match &self.ack {
            Some(target) => target.defer(vec![self.record.offset]),
            None => Ack {
                target: None,
                offsets: vec![self.record.offset],
            },
        }
    }
}

impl Message for KafkaMessage {
    type Result = HandlerResult;
}

/// Consecutive records of one partition, in offset order, as a batch handler receives them.
#[derive(Debug, Clone)]
pub struct KafkaBatch {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Read like a slice: `for record in &batch.records`, `batch.records.len()`,
    /// `batch.records[0]`; [`Records::into_vec`] for an owned `Vec`.
    pub records: Records,
    pub(crate) ack: Option<Arc<AckTarget>>,
}

impl KafkaBatch {
    /// A batch that belongs to no tracker (for unit tests of handlers).
    pub fn detached(topic: &str, partition: i32, records: impl Into<Records>) -> Self {
        KafkaBatch {
            topic: topic.into(),
            partition,
            records: records.into(),
            ack: None,
        }
    }
    /// The batch's records one by one, as messages.
    pub fn messages(&self) -> impl Iterator<Item = KafkaMessage> + '_ {
        self.records.iter().map(|record| KafkaMessage {
            topic: self.topic.clone(),
            partition: self.partition,
            record: record.clone(),
            ack: self.ack.clone(),
        })
    }
    /// Takes over completion of the whole batch (see [`KafkaMessage::defer`]); the batch's
    /// messages can be deferred one by one instead through [`messages`](Self::messages).
    pub fn defer(&self) -> Ack {
        let offsets = self.records.iter().map(|r| r.offset).collect();
        match &self.ack {
            Some(target) => target.defer(offsets),
            None => Ack {
                target: None,
                offsets,
            },
        }
    }
}

impl Message for KafkaBatch {
    type Result = HandlerResult;
}

/// The records of a [`KafkaBatch`]: a read-only run of the records one fetch decoded, shared with
/// that fetch and with the tracker (which keeps them for redelivery). Handing a batch out thus
/// costs one reference count, where a `Vec<Record>` of its own would cost one per record.
///
/// It dereferences to `[Record]`, so slice methods, indexing and `for record in &records` work as
/// on a `Vec`. Holding it keeps the fetch's decoded records alive, as holding any one `Record`
/// already keeps the fetched bytes alive.
#[derive(Clone, Default)]
pub struct Records {
    shared: Arc<Vec<Record>>,
    /// The run within `shared`; always in bounds.
    start: usize,
    end: usize,
}

impl Records {
    /// All of `records`, without copying them.
    pub fn new(records: Vec<Record>) -> Self {
        let end = records.len();
        Records {
            shared: Arc::new(records),
            start: 0,
            end,
        }
    }

    /// `range` of the records (indices into this run), sharing them. Out-of-bounds ends are
    /// clamped, so this never panics.
    pub(crate) fn slice(&self, range: std::ops::Range<usize>) -> Records {
        let len = self.end - self.start;
        let end = range.end.min(len);
        let start = range.start.min(end);
        Records {
            shared: self.shared.clone(),
            start: self.start + start,
            end: self.start + end,
        }
    }

    /// The records as a `Vec` of their own: without copying when nothing else shares them,
    /// otherwise by cloning each record (one reference count each).
    pub fn into_vec(self) -> Vec<Record> {
        let whole = self.start == 0 && self.end == self.shared.len();
        match Arc::try_unwrap(self.shared) {
            Ok(records) if whole => records,
            Ok(records) => records[self.start..self.end].to_vec(),
            Err(shared) => shared[self.start..self.end].to_vec(),
        }
    }
}

impl std::ops::Deref for Records {
    type Target = [Record];

    #[inline]
    fn deref(&self) -> &[Record] {
        &self.shared[self.start..self.end]
    }
}

impl AsRef<[Record]> for Records {
    fn as_ref(&self) -> &[Record] {
        self
    }
}

impl<'a> IntoIterator for &'a Records {
    type Item = &'a Record;
    type IntoIter = std::slice::Iter<'a, Record>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl From<Vec<Record>> for Records {
    fn from(records: Vec<Record>) -> Self {
        Records::new(records)
    }
}

impl FromIterator<Record> for Records {
    fn from_iter<I: IntoIterator<Item = Record>>(records: I) -> Self {
        Records::new(records.into_iter().collect())
    }
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Records {
    fn eq(&self, other: &Records) -> bool {
        **self == **other
    }
}

impl Eq for Records {}

impl PartialEq<[Record]> for Records {
    fn eq(&self, other: &[Record]) -> bool {
        **self == *other
    }
}

impl PartialEq<Vec<Record>> for Records {
    fn eq(&self, other: &Vec<Record>) -> bool {
        **self == **other
    }
}

/// Completes deferred records later: [`done`](Ack::done) or [`fail`](Ack::fail). Dropping it
/// unanswered fails the records ("ack dropped"), so the failure policy decides, never silence.
#[derive(Debug)]
pub struct Ack {
    target: Option<Arc<AckTarget>>,
    offsets: Vec<i64>,
}

impl Ack {
    /// The offsets this ack completes.
    pub fn offsets(&self) -> &[i64] {
        &self.offsets
    }
    pub fn done(mut self) {
        self.answer(Ok(()));
    }
    pub fn fail(mut self, error: HandlerError) {
        self.answer(Err(error));
    }
    fn answer(&mut self, result: HandlerResult) {
        if let Some(target) = self.target.take() {
            target.tracker.do_send(Acked {
                epoch: target.epoch,
                offsets: std::mem::take(&mut self.offsets),
                result,
            });
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if self.target.is_some() {
            self.answer(Err(HandlerError::new("ack dropped without an answer")));
        }
    }
}

/// A deferred answer reaching a [`PartitionTracker`](crate::PartitionTracker).
#[derive(Debug)]
pub struct Acked {
    pub(crate) epoch: u64,
    pub(crate) offsets: Vec<i64>,
    pub(crate) result: HandlerResult,
}

impl Message for Acked {
    type Result = ();
}

/// The user's handler for some partitions: one record per message, or batches.
#[derive(Clone)]
pub enum HandlerRef {
    Message(Recipient<KafkaMessage>),
    Batch(Recipient<KafkaBatch>),
}

impl std::fmt::Debug for HandlerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandlerRef::Message(_) => "HandlerRef::Message",
            HandlerRef::Batch(_) => "HandlerRef::Batch",
        })
    }
}

impl HandlerRef {
    /// An actor that implements `Handler<KafkaMessage>`.
    pub fn messages<A>(actor: &actix::Addr<A>) -> Self
    where
        A: actix::Actor + actix::Handler<KafkaMessage>,
        A::Context: actix::dev::ToEnvelope<A, KafkaMessage>,
    {
        HandlerRef::Message(actor.clone().recipient())
    }
    /// An actor that implements `Handler<KafkaBatch>`.
    pub fn batches<A>(actor: &actix::Addr<A>) -> Self
    where
        A: actix::Actor + actix::Handler<KafkaBatch>,
        A::Context: actix::dev::ToEnvelope<A, KafkaBatch>,
    {
        HandlerRef::Batch(actor.clone().recipient())
    }
}

/// Fetched-but-unfinished work of one partition, shared by its Fetcher (which adds) and its
/// tracker (which removes): the Fetcher leaves a partition out of the next fetch while it is
/// full. Atomics instead of messages, because the Fetcher checks it before every fetch.
#[derive(Debug, Default)]
pub struct PartitionFlow {
    /// Records fetched and not yet done.
    pub records: std::sync::atomic::AtomicUsize,
    /// Key + value bytes fetched and not yet handed to a handler.
    pub bytes: std::sync::atomic::AtomicUsize,
    /// The offset that may be committed (the tracker keeps it current).
    pub committable: std::sync::atomic::AtomicI64,
    /// Set while the partition is paused or stopped: not fetched.
    pub paused: std::sync::atomic::AtomicBool,
    /// Metadata committed with the partition's offsets ([`MarkMetadata`]).
    pub metadata: std::sync::Mutex<Option<String>>,
}

impl PartitionFlow {
    pub fn has_room(&self, max_records: usize, max_bytes: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        !self.paused.load(Relaxed)
            && self.records.load(Relaxed) < max_records
            && self.bytes.load(Relaxed) < max_bytes
    }
    pub(crate) fn add(&self, records: usize, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.records.fetch_add(records, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
    pub(crate) fn remove_records(&self, records: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self
            .records
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(records)));
    }
    pub(crate) fn remove_bytes(&self, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self
            .bytes
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(bytes)));
    }
}

/// What records count for in [`PartitionFlow::bytes`]: their keys and values.
pub(crate) fn records_bytes(records: &[Record]) -> usize {
    records.iter().map(Record::payload_len).sum()
}

/// Records a Fetcher hands to a partition's tracker. `next_offset`: where the next fetch
/// starts (past skipped control batches too), so the tracker knows which offsets will never
/// come.
#[derive(Debug)]
pub struct Fetched {
    pub epoch: u64,
    pub records: Vec<Record>,
    pub bytes: usize,
    pub next_offset: i64,
    pub high_watermark: i64,
}

impl Message for Fetched {
    type Result = ();
}

/// Tells a Fetcher to fetch a partition from `offset`, handing records to `tracker` stamped
/// with `epoch` (a new epoch after a seek makes the tracker drop records of the old position).
#[derive(Debug)]
pub struct FetchPartition {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub epoch: u64,
    pub flow: Arc<PartitionFlow>,
    pub tracker: Recipient<Fetched>,
}

impl Message for FetchPartition {
    type Result = ();
}

/// Tells a Fetcher to stop fetching a partition; answers where it would have fetched next
/// (`None` if it did not fetch it).
#[derive(Debug, Clone)]
pub struct StopFetching {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl Message for StopFetching {
    type Result = Option<i64>;
}

/// A Fetcher gave up a partition: the owner decides what comes next.
#[derive(Debug)]
pub struct FetchTrouble {
    pub node: i32,
    pub topic: Arc<str>,
    pub partition: i32,
    pub epoch: u64,
    /// Where fetching stopped: the next offset not yet handed to the tracker.
    pub next_offset: i64,
    pub kind: TroubleKind,
}

#[derive(Debug, Clone)]
pub enum TroubleKind {
    /// The broker is no longer the leader (or does not know the partition): refresh the
    /// metadata and fetch from the new leader at `next_offset`.
    NotLeader(Error),
    /// `next_offset` is not in the log (deleted by retention, or truncated).
    OutOfRange,
    /// The records at `next_offset` are older than the topic's MaxMessageAge: the partition
    /// jumps to the first record written at or after `since` (milliseconds since the epoch).
    TooOld { since: i64 },
    /// Data that cannot be decoded, or an error retrying cannot fix.
    Failed(Error),
}

impl Message for FetchTrouble {
    type Result = ();
}

/// Finish what is in flight (for at most `timeout`), then answer the offset to commit and stop.
/// Sent to a [`PartitionTracker`](crate::PartitionTracker) whose partition is taken away.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub timeout: Duration,
}

impl Message for Drain {
    type Result = CommitOffset;
}

/// Rewind (or skip ahead) a partition to `offset`: everything fetched or in flight is
/// forgotten; `epoch` is the new fetch epoch.
#[derive(Debug, Clone, Copy)]
pub struct Seek {
    pub offset: i64,
    pub epoch: u64,
}

impl Message for Seek {
    type Result = ();
}

/// Pause (`true`) or resume (`false`) delivering and fetching a partition.
#[derive(Debug, Clone, Copy)]
pub struct Pause(pub bool);

impl Message for Pause {
    type Result = ();
}

/// Metadata committed with the partition's next offsets.
#[derive(Debug, Clone)]
pub struct MarkMetadata(pub Option<String>);

impl Message for MarkMetadata {
    type Result = ();
}

/// A partition's tracker stopped delivering: a handler failed beyond its policy, or its
/// handler actor is gone. The committed offset stays below the failed record.
#[derive(Debug, Clone)]
pub struct PartitionStopped {
    pub topic: Arc<str>,
    pub partition: i32,
    pub error: Error,
}

impl Message for PartitionStopped {
    type Result = ();
}

/// From the Coordinator to whoever consumes the partitions: these are being taken away; stop
/// fetching them, let in-flight records finish (for at most the drain timeout), and answer the
/// offsets to commit. The Coordinator commits them with the generation that still owns them
/// (unless `lost`: then the group has moved on and a commit would fail) before it rejoins —
/// so the next owner starts exactly where this member stopped.
#[derive(Debug, Clone)]
pub struct Release {
    pub generation: i32,
    pub partitions: TopicPartitions,
    pub lost: bool,
}

impl Message for Release {
    type Result = PartitionOffsets<CommitOffset>;
}

#[cfg(test)]
mod tests {
    use konsumer::compression::Compression;
    use konsumer::records::{decode_all, BatchBuilder, DecodeOptions, NO_HEADERS};

    use super::*;

    fn records(n: usize) -> Vec<Record> {
        let mut builder = BatchBuilder::new(Compression::None, None).base_offset(10);
        for i in 0..n {
            builder.append(0, None, Some(format!("v{i}").as_bytes()), NO_HEADERS);
        }
        decode_all(builder.build().expect("a batch"), &DecodeOptions::default()).expect("decodes")
    }

    fn offsets(records: &[Record]) -> Vec<i64> {
        records.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn records_read_like_the_vec_they_share() {
        let all = records(5);
        let shared = Records::new(all.clone());
        assert_eq!(shared.len(), 5);
        assert_eq!(shared, all);
        assert_eq!(shared[4].value(), Some(&b"v4"[..]));
        assert_eq!(offsets(&shared), vec![10, 11, 12, 13, 14]);
        let mut seen = 0;
        for record in &shared {
            assert_eq!(record.offset, 10 + seen);
            seen += 1;
        }
        assert_eq!(seen, 5);
        assert_eq!(format!("{shared:?}"), format!("{all:?}"));
        assert!(Records::default().is_empty());
        assert_eq!(all.iter().cloned().collect::<Records>(), shared);
    }

    #[test]
    fn slices_share_and_clamp() {
        let shared = Records::new(records(5));
        let middle = shared.slice(1..4);
        assert_eq!(offsets(&middle), vec![11, 12, 13]);
        // A slice of a slice counts from its own start.
        assert_eq!(offsets(&middle.slice(1..2)), vec![12]);
        // Out of bounds: clamped, never a panic.
        assert_eq!(offsets(&middle.slice(2..99)), vec![13]);
        assert!(middle.slice(7..9).is_empty());
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = middle.slice(3..1);
        assert!(backwards.is_empty());
        // No record was copied: both views point into one vector.
        assert!(std::ptr::eq(&shared[1], &middle[0]));
    }

    #[test]
    fn into_vec_takes_the_vector_when_it_can_and_copies_otherwise() {
        let all = records(4);
        let first = all.as_ptr();
        let alone = Records::new(all);
        let owned = alone.into_vec();
        assert_eq!(owned.as_ptr(), first, "sole owner, whole run: no copy");

        let shared = Records::new(records(4));
        let part = shared.slice(1..3);
        assert_eq!(offsets(&part.clone().into_vec()), vec![11, 12]);
        drop(shared);
        // Now the only owner, but of a part: the part is copied out.
        assert_eq!(offsets(&part.into_vec()), vec![11, 12]);
    }
}
