//! Every message type the actors exchange, in one place.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::{Message, Recipient};
use bytes::Bytes;
use konsumer::group::{Assignment, TopicPartitions};
use konsumer::producer::{ProduceError, RecordMetadata};
use konsumer::protocol::{ApiKey, KafkaRequest, RequestKind, ResponseKind};
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
