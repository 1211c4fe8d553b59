//! Sidechannel: hands the offsets a member really finished to the partitions' next owners
//! during a rebalance, through a compacted Kafka topic (the seeds' SidechannelTopic).
//!
//! Why, when the release step already commits before the member rejoins: that commit can
//! fail or come too late (the coordinator moved, the group went on without the member, a
//! broker error), and the next owner then re-reads everything since the last commit. The
//! handover record is written before the member sends its JoinGroup, so it is in the log
//! before the group can complete the rebalance that gives the partition away.
//!
//! - [`PublishHandover`]: one record per partition (core [`Handover`]: group, topic,
//!   partition, generation, offset, member id, and whether the member still owns it),
//!   to the group's sidechannel partition, acknowledged before the answer.
//! - [`TakeOver`]: before a member delivers newly assigned partitions. Reads the group's
//!   sidechannel partition and decides per partition with [`Ownership::verdict`]: start
//!   (from the newest usable finished offset), wait for a previous owner whose claim still
//!   stands (at most `owner_wait`: it may not have noticed the rebalance yet), or stand down
//!   because a newer generation claimed it. Then it claims the partitions it will start and
//!   reads again, so two members that decided at the same moment find each other: the older
//!   generation stands down (and releases), the newer waits for that release. A partition
//!   with no record at all waits at most `sidechannel_wait` for a late one.
//!
//! On opening, the actor reads the group's sidechannel partition from its beginning (the
//! topic is compacted: the newest record of each group partition is kept), because a claim
//! written before this member started may still stand. Older records count only as the core's
//! [`Horizon`] allows: a release from before the start only if its generation directly
//! precedes the one this member joins, and records of an earlier life of the group never.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use konsumer::consumer::ConsumerConfig;
use konsumer::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use konsumer::kafka_protocol::messages::{FetchRequest, TopicName};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::records::{decode_fetched, DecodeOptions, Isolation, PartitionFetch};
use konsumer::sidechannel::{partition_of, Handover, HandoverKind, Horizon, Ownership, Verdict};
use konsumer::{Context as ErrorContext, Error, KafkaCode};
use slog::{debug, info, warn, Logger};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::messages::{
    Call, Close, CreateTopics, GetMetadata, NewTopic, PartitionOffsets, ProducerRecord, Purpose,
    Route, Target,
};
use crate::producer::{Producer, ProducerExt};
use crate::service::list_offset;

/// Fetch versions up to 11 name topics (12+ use topic ids); the Fetcher caps the same way.
const FETCH_MAX_VERSION: i16 = 11;
/// How often a lookup reads the sidechannel again while a handover is missing.
const LOOKUP_POLL: Duration = Duration::from_millis(25);
/// How long creating the sidechannel topic may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading the records written before this member started may take. Compaction
/// keeps them few; if they cannot be read in time, the member starts without them (and so
/// cannot see claims standing from before it started).
const HISTORY_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes the offsets of partitions this member gives up; answers once acknowledged.
#[derive(Debug, Clone)]
pub struct PublishHandover {
    /// The generation in which the member owned the partitions.
    pub generation: i32,
    pub member_id: String,
    /// Per partition: the next offset to consume (everything below is done).
    pub offsets: PartitionOffsets<i64>,
    /// Released (stopped) or still owned (progress during a rebalance).
    pub kind: HandoverKind,
}

impl Message for PublishHandover {
    type Result = Result<(), Error>;
}

/// Takes over newly assigned partitions: decides, claims and verifies (see the module doc).
#[derive(Debug, Clone)]
pub struct TakeOver {
    /// The generation the asking member has just joined.
    pub generation: i32,
    pub member_id: String,
    /// The claimed partitions with their committed offsets (None: nothing committed).
    pub committed: PartitionOffsets<Option<i64>>,
    /// How long to wait for a previous owner whose claim still stands before presuming it
    /// dead: a live member learns of a rebalance within its session timeout.
    pub owner_wait: Duration,
}

/// What [`TakeOver`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TakenOver {
    /// Partitions to start, with the finished offset handed over by a previous owner (to be
    /// weighed against the committed one), if any.
    pub start: PartitionOffsets<Option<i64>>,
    /// Partitions a newer generation has claimed: not to be started.
    pub fenced: Vec<(String, i32)>,
}

impl Message for TakeOver {
    type Result = TakenOver;
}

/// The sidechannel of one group member. Made with [`Sidechannel::open`].
pub struct Sidechannel {
    cluster: Addr<Cluster>,
    producer: Addr<Producer>,
    group: String,
    topic: String,
    /// The sidechannel partition carrying this group's records.
    partition: i32,
    wait: Duration,
    /// The next sidechannel offset to read.
    position: i64,
    /// The records read so far, per partition of the group.
    seen: PartitionOffsets<Ownership>,
    /// The sidechannel's end when this member started (see [`Horizon`]).
    joined_at: i64,
    /// Members whose claims were waited for in vain: presumed dead (see [`Ownership::verdict`]).
    gone: BTreeSet<String>,
    /// The sidechannel's end when this member's current rebalance began: handovers written
    /// since belong to this rebalance, whatever generation their writer owned.
    round_start: Option<i64>,
    log: Logger,
}

impl Sidechannel {
    /// Creates the topic (compacted) if it is missing, finds the group's partition, and
    /// reads what it holds (see the module doc).
    pub async fn open(
        cluster: Addr<Cluster>,
        producer: Addr<Producer>,
        group: &str,
        config: &ConsumerConfig,
        log: Logger,
    ) -> Result<Sidechannel, Error> {
        let topic = config.sidechannel_topic.clone();
        let partitions = match partition_count(&cluster, &topic).await? {
            Some(count) => count,
            None => {
                create(&cluster, &topic, &log).await?;
                partition_count(&cluster, &topic)
                    .await?
                    .ok_or_else(|| Error::Broker {
                        code: KafkaCode::UnknownTopicOrPartition,
                        context: ErrorContext::default().with_topic(topic.clone()),
                    })?
            }
        };
        let partition = partition_of(group, partitions);
        let joined_at = list_offset(&cluster, &topic, partition, -1).await?;
        let earliest = list_offset(&cluster, &topic, partition, -2).await?;
        let mut seen = BTreeMap::new();
        let read = read_to_end(
            cluster.clone(),
            topic.clone(),
            partition,
            earliest,
            Instant::now() + HISTORY_TIMEOUT,
        );
        let position = match tokio::time::timeout(HISTORY_TIMEOUT, read).await {
            Ok(Ok((records, next))) if next >= joined_at => {
                take_in(&mut seen, group, &records, &log);
                next
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("not read to the end within {HISTORY_TIMEOUT:?}"),
                };
                warn!(log, "sidechannel records from before this member started not read; claims standing since then are not seen";
                    "error" => error, "from" => earliest, "to" => joined_at);
                joined_at
            }
        };
        info!(log, "sidechannel open"; "topic" => &topic, "partition" => partition,
            "read_from" => earliest, "started_at" => joined_at, "partitions_known" => seen.len());
        Ok(Sidechannel {
            cluster,
            producer,
            group: group.to_owned(),
            topic,
            partition,
            wait: config.sidechannel_wait,
            position,
            seen,
            joined_at,
            gone: BTreeSet::new(),
            // A new member's first rebalance begins now.
            round_start: Some(joined_at),
            log,
        })
    }
}

/// Takes in the records read, for `group`'s partitions only (other groups may share the
/// sidechannel partition); unreadable ones are logged and skipped.
fn take_in(
    seen: &mut PartitionOffsets<Ownership>,
    group: &str,
    records: &[(i64, Vec<u8>, Vec<u8>)],
    log: &Logger,
) {
    for (at, key, value) in records {
        match Handover::decode(key, value, *at) {
            Ok(handover) if handover.group == group => {
                let partition = (handover.topic.clone(), handover.partition);
                seen.entry(partition).or_default().record(handover, *at);
            }
            Ok(_) => {}
            Err(error) => warn!(log, "unreadable sidechannel record skipped"; "error" => %error),
        }
    }
}

async fn partition_count(cluster: &Addr<Cluster>, topic: &str) -> Result<Option<i32>, Error> {
    let metadata = cluster
        .send(GetMetadata { refresh: true })
        .await
        .map_err(|_| Error::Shutdown("cluster".into()))??;
    Ok(metadata
        .partition_count(topic)
        .filter(|n| *n > 0)
        .and_then(|n| i32::try_from(n).ok()))
}

/// Creates the sidechannel topic, compacted, with the broker's default partitions and
/// replication; a broker that wants them spelt out (old CreateTopics versions) gets 1 and 1.
async fn create(cluster: &Addr<Cluster>, topic: &str, log: &Logger) -> Result<(), Error> {
    let attempt = |partitions: i32, replication_factor: i16| CreateTopics {
        topics: vec![NewTopic {
            name: topic.to_owned(),
            partitions,
            replication_factor,
            configs: vec![("cleanup.policy".into(), "compact".into())],
        }],
        timeout: CREATE_TIMEOUT,
    };
    let send = |msg: CreateTopics| async move {
        match cluster.send(msg).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.kafka_code() == Some(KafkaCode::TopicAlreadyExists) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Shutdown("cluster".into())),
        }
    };
    info!(log, "creating the sidechannel topic"; "topic" => topic);
    match send(attempt(-1, -1)).await {
        Ok(()) => Ok(()),
        Err(error) => {
            debug!(log, "broker defaults refused; creating with 1 partition";
                "error" => %error);
            send(attempt(1, 1)).await
        }
    }
}

/// Reads `topic`/`partition` from `from` up to the end it has now, until `deadline`:
/// the records and the offset to read from next.
async fn read_to_end(
    cluster: Addr<Cluster>,
    topic: String,
    partition: i32,
    from: i64,
    deadline: Instant,
) -> Result<(Vec<(i64, Vec<u8>, Vec<u8>)>, i64), Error> {
    let end = list_offset(&cluster, &topic, partition, -1).await?;
    let mut position = from;
    let mut out = Vec::new();
    while position < end && Instant::now() < deadline {
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(4 * 1024 * 1024)
            .with_isolation_level(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(position)
                    .with_partition_max_bytes(1024 * 1024)])]);
        let call = Call::new(request).with_max_version(FETCH_MAX_VERSION);
        let reply = cluster
            .send(Route {
                target: Target::Leader {
                    topic: topic.clone(),
                    partition,
                },
                purpose: Purpose::General,
                call,
            })
            .await
            .map_err(|_| Error::Shutdown("cluster".into()))??;
        let response = reply.into_typed::<FetchRequest>("sidechannel fetch")?;
        let data = response
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| Error::Protocol {
                broker: "sidechannel".into(),
                detail: format!("Fetch answer lacks {topic}/{partition}"),
            })?;
        Error::check(data.error_code, || {
            ErrorContext::default()
                .with_api(konsumer::protocol::ApiKey::Fetch)
                .with_topic(topic.clone())
                .with_partition(partition)
        })?;
        let fetch = PartitionFetch {
            topic: &topic,
            partition,
            fetch_offset: position,
            isolation: Isolation::ReadUncommitted,
            aborted_transactions: &[],
        };
        let fetched = decode_fetched(
            data.records.unwrap_or_default(),
            &fetch,
            &DecodeOptions::default(),
        );
        if let Some(error) = fetched.error {
            return Err(Error::Records(Box::new(error)));
        }
        for record in &fetched.records {
            if let (Some(key), Some(value)) = (record.key(), record.value()) {
                out.push((record.offset, key.to_vec(), value.to_vec()));
            }
        }
        if fetched.next_offset <= position {
            // Nothing complete yet (the end moved under us, or a slow broker): look again.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        position = position.max(fetched.next_offset);
    }
    Ok((out, position))
}

impl Actor for Sidechannel {
    type Context = Context<Self>;
}

/// What a take-over's future needs of the actor: where the group's records go.
#[derive(Clone)]
struct Channel {
    cluster: Addr<Cluster>,
    producer: Addr<Producer>,
    group: String,
    topic: String,
    partition: i32,
    log: Logger,
}

impl Channel {
    /// Writes one record per partition and waits for every acknowledgement.
    async fn publish(
        &self,
        generation: i32,
        member_id: &str,
        offsets: PartitionOffsets<i64>,
        kind: HandoverKind,
    ) -> Result<(), Error> {
        let count = offsets.len();
        let records = offsets.into_iter().map(|((topic, partition), offset)| {
            let handover = Handover {
                group: self.group.clone(),
                topic,
                partition,
                generation,
                offset,
                member_id: member_id.to_owned(),
                kind,
            };
            ProducerRecord {
                topic: self.topic.clone(),
                partition: Some(self.partition),
                key: Some(handover.key()),
                value: Some(handover.value()),
                ..ProducerRecord::default()
            }
        });
        let results = join_all(records.map(|r| self.producer.produce(r))).await;
        if let Some(failed) = results.into_iter().find_map(Result::err) {
            warn!(self.log, "sidechannel publish failed"; "error" => %failed);
            return Err(*failed.error);
        }
        debug!(self.log, "sidechannel records written"; "partitions" => count,
            "generation" => generation, "kind" => ?kind);
        Ok(())
    }

    /// Reads from `position` to the end (until `deadline`), taking the records into `seen`
    /// and `read` (the raw records, for the actor's own view afterwards).
    async fn read(
        &self,
        position: &mut i64,
        seen: &mut PartitionOffsets<Ownership>,
        read: &mut Vec<(i64, Vec<u8>, Vec<u8>)>,
        deadline: Instant,
    ) {
        let fetch = read_to_end(
            self.cluster.clone(),
            self.topic.clone(),
            self.partition,
            *position,
            deadline,
        );
        match tokio::time::timeout_at(deadline, fetch).await {
            Ok(Ok((records, next))) => {
                *position = (*position).max(next);
                take_in(seen, &self.group, &records, &self.log);
                read.extend(records);
            }
            Ok(Err(error)) => warn!(self.log, "sidechannel read failed"; "error" => %error),
            Err(_) => {}
        }
    }
}

impl Sidechannel {
    fn channel(&self) -> Channel {
        Channel {
            cluster: self.cluster.clone(),
            producer: self.producer.clone(),
            group: self.group.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            log: self.log.clone(),
        }
    }
}

impl Handler<PublishHandover> for Sidechannel {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: PublishHandover, _: &mut Context<Self>) -> Self::Result {
        let channel = self.channel();
        Box::pin(async move {
            channel
                .publish(msg.generation, &msg.member_id, msg.offsets, msg.kind)
                .await
        })
    }
}

/// How a partition stands during a take-over.
enum Standing {
    /// Still to be decided: waiting for a previous owner (or, before the claim, a late
    /// handover).
    Pending,
    Start(Option<i64>),
    Fenced,
}

impl Handler<TakeOver> for Sidechannel {
    type Result = ResponseActFuture<Self, TakenOver>;

    /// Decides, claims, verifies (see the module doc). Waits: for a standing claim at most
    /// `owner_wait` (once before the claim, once after it for a claim that raced ours); for
    /// a partition with nothing usable at most `sidechannel_wait`, and only before the claim
    /// and after the group's first generation (before it nobody owned anything).
    fn handle(&mut self, msg: TakeOver, _: &mut Context<Self>) -> Self::Result {
        let channel = self.channel();
        let mut position = self.position;
        let mut seen = self.seen.clone();
        let mut gone = self.gone.clone();
        let horizon = Horizon {
            joined_at: self.joined_at,
            round_start: self.round_start,
        };
        let late_wait = self.wait;
        let work = async move {
            let TakeOver {
                generation,
                member_id,
                committed,
                owner_wait,
            } = msg;
            let planned = |key: &(String, i32), handed: Option<i64>| {
                let committed = committed.get(key).copied().flatten().filter(|o| *o >= 0);
                committed.max(handed).unwrap_or(-1)
            };
            let began = Instant::now();
            let mut owner_deadline = began + owner_wait;
            let late_deadline = began + late_wait;
            let mut read = Vec::new();
            let mut standing: PartitionOffsets<Standing> = committed
                .keys()
                .map(|key| (key.clone(), Standing::Pending))
                .collect();
            let mut waited_for: PartitionOffsets<String> = PartitionOffsets::new();
            let mut claimed = false;
            loop {
                let read_deadline =
                    owner_deadline.max(late_deadline).max(Instant::now()) + LOOKUP_POLL;
                channel
                    .read(&mut position, &mut seen, &mut read, read_deadline)
                    .await;
                let now = Instant::now();
                let owners_gone = now >= owner_deadline;
                let mut pending = false;
                for (key, state) in standing.iter_mut() {
                    if matches!(state, Standing::Fenced) {
                        continue;
                    }
                    let verdict = |gone: &BTreeSet<String>| {
                        seen.get(key).map_or(Verdict::Start { handed: None }, |o| {
                            o.verdict(&member_id, generation, horizon, gone)
                        })
                    };
                    let mut verdict_now = verdict(&gone);
                    // Waited long enough: every owner still waited for is presumed dead.
                    while let (true, Verdict::Wait { owner, .. }) = (owners_gone, &verdict_now) {
                        warn!(channel.log, "previous owner never released the partition; presumed gone";
                            "topic" => &key.0, "partition" => key.1, "owner" => owner,
                            "waited" => ?now.duration_since(began));
                        waited_for.remove(key);
                        gone.insert(owner.clone());
                        verdict_now = verdict(&gone);
                    }
                    let verdict = verdict_now;
                    *state = match verdict {
                        Verdict::Fenced {
                            owner,
                            generation: theirs,
                        } => {
                            warn!(channel.log, "partition claimed by a newer generation: not started";
                                "topic" => &key.0, "partition" => key.1, "owner" => owner,
                                "their_generation" => theirs, "generation" => generation);
                            Standing::Fenced
                        }
                        Verdict::Wait {
                            owner,
                            generation: theirs,
                        } => {
                            if waited_for.insert(key.clone(), owner.clone()).is_none() {
                                info!(channel.log, "previous owner still holds the partition; waiting for its release";
                                    "topic" => &key.0, "partition" => key.1, "owner" => owner,
                                    "their_generation" => theirs);
                            }
                            pending = true;
                            Standing::Pending
                        }
                        Verdict::Start { handed: None }
                            if !claimed && generation > 1 && now < late_deadline =>
                        {
                            pending = true;
                            Standing::Pending
                        }
                        Verdict::Start { handed } => Standing::Start(handed),
                    };
                }
                if pending {
                    let wake = (now + LOOKUP_POLL).min(owner_deadline.max(now));
                    tokio::time::sleep_until(wake.max(now + Duration::from_millis(1))).await;
                    continue;
                }
                if claimed {
                    break;
                }
                // Claim before the first record is delivered, then read again: a member that
                // decided at the same moment shows up now.
                let claims: PartitionOffsets<i64> = standing
                    .iter()
                    .filter_map(|(key, state)| match state {
                        Standing::Start(handed) => Some((key.clone(), planned(key, *handed))),
                        _ => None,
                    })
                    .collect();
                if claims.is_empty() {
                    break;
                }
                if let Err(error) = channel
                    .publish(generation, &member_id, claims, HandoverKind::Owned)
                    .await
                {
                    warn!(channel.log, "partitions not claimed in the sidechannel; starting anyway";
                        "error" => %error);
                }
                claimed = true;
                owner_deadline = Instant::now() + owner_wait;
            }
            // A claim that turned out to be fenced is withdrawn: its next owner need not wait.
            let withdrawn: PartitionOffsets<i64> = standing
                .iter()
                .filter(|(_, state)| claimed && matches!(state, Standing::Fenced))
                .map(|(key, _)| (key.clone(), planned(key, None)))
                .collect();
            if !withdrawn.is_empty() {
                if let Err(error) = channel
                    .publish(generation, &member_id, withdrawn, HandoverKind::Released)
                    .await
                {
                    warn!(channel.log, "fenced claims not withdrawn"; "error" => %error);
                }
            }
            let mut taken = TakenOver::default();
            for (key, state) in standing {
                match state {
                    Standing::Start(handed) => {
                        taken.start.insert(key, handed);
                    }
                    Standing::Fenced => taken.fenced.push(key),
                    Standing::Pending => {}
                }
            }
            (taken, read, position, gone, began.elapsed())
        };
        Box::pin(
            work.into_actor(self)
                .map(move |(taken, read, position, gone, took), act, _| {
                    act.position = act.position.max(position);
                    act.gone.extend(gone);
                    take_in(&mut act.seen, &act.group, &read, &act.log);
                    let handed = taken.start.values().filter(|h| h.is_some()).count();
                    info!(act.log, "partitions taken over"; "start" => taken.start.len(),
                        "handed_over" => handed, "fenced" => taken.fenced.len(),
                        "took" => ?took);
                    taken
                }),
        )
    }
}

/// This member's rebalance begins: handovers written from now on are meant for it.
#[derive(Debug, Clone, Copy)]
pub struct RebalanceBegins;

impl Message for RebalanceBegins {
    type Result = ();
}

impl Handler<RebalanceBegins> for Sidechannel {
    type Result = ();

    fn handle(&mut self, _: RebalanceBegins, ctx: &mut Context<Self>) {
        // Until the end is known only generation - 1 counts (the strict rule).
        self.round_start = None;
        let (cluster, topic, partition) =
            (self.cluster.clone(), self.topic.clone(), self.partition);
        let work = async move { list_offset(&cluster, &topic, partition, -1).await };
        ctx.spawn(work.into_actor(self).map(|end, act, _| match end {
            Ok(end) => act.round_start = Some(end),
            Err(error) => warn!(act.log, "sidechannel end unknown; only the previous generation's handovers count";
                "error" => %error),
        }));
    }
}

impl Handler<Close> for Sidechannel {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
