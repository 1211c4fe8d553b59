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
//!   partition, generation, offset, member id), to the group's sidechannel partition,
//!   acknowledged before the answer.
//! - [`LookupHandover`]: reads the group's sidechannel partition until every asked partition has
//!   its handover from the previous generation (at most `sidechannel_wait`: a previous owner
//!   may not have noticed the rebalance yet) and answers those offsets. A handover counts if
//!   its writer owned the partition in the generation just before, or if it was written during
//!   this member's current rebalance ([`RebalanceBegins`]; a broker may form several
//!   generations in one rebalance). Anything else is stale: it may predate a rewind.
//!
//! The actor reads only from the end the partition had when the service started: a handover
//! from before this member existed cannot be meant for it.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use konsumer::consumer::ConsumerConfig;
use konsumer::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use konsumer::kafka_protocol::messages::{FetchRequest, TopicName};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::records::{decode_fetched, DecodeOptions, Isolation, PartitionFetch};
use konsumer::sidechannel::{partition_of, Handover};
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

/// Publishes the offsets of partitions this member gives up; answers once acknowledged.
#[derive(Debug, Clone)]
pub struct PublishHandover {
    /// The generation in which the member owned the partitions.
    pub generation: i32,
    pub member_id: String,
    /// Per partition: the next offset to consume (everything below is done).
    pub offsets: PartitionOffsets<i64>,
}

impl Message for PublishHandover {
    type Result = Result<(), Error>;
}

/// The offsets handed over for `partitions` by their owners in `generation - 1`.
#[derive(Debug, Clone)]
pub struct LookupHandover {
    /// The generation the asking member has just joined.
    pub generation: i32,
    pub partitions: Vec<(String, i32)>,
}

impl Message for LookupHandover {
    type Result = PartitionOffsets<i64>;
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
    /// The newest handover seen per partition of the group, with its sidechannel offset.
    seen: PartitionOffsets<(Handover, i64)>,
    /// The sidechannel's end when this member's current rebalance began: handovers written
    /// since belong to this rebalance, whatever generation their writer owned.
    round_start: Option<i64>,
    log: Logger,
}

impl Sidechannel {
    /// Creates the topic (compacted) if it is missing, finds the group's partition and its
    /// end, where reading starts.
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
        let position = list_offset(&cluster, &topic, partition, -1).await?;
        info!(log, "sidechannel open"; "topic" => &topic, "partition" => partition,
            "from" => position);
        Ok(Sidechannel {
            cluster,
            producer,
            group: group.to_owned(),
            topic,
            partition,
            wait: config.sidechannel_wait,
            position,
            seen: BTreeMap::new(),
            // A new member's first rebalance begins now.
            round_start: Some(position),
            log,
        })
    }
}

/// Keeps the newest handover per partition of `group`: the highest generation, the later
/// record on a tie.
fn remember(
    seen: &mut PartitionOffsets<(Handover, i64)>,
    group: &str,
    handover: Handover,
    at: i64,
) {
    if handover.group != group {
        return; // another group sharing the sidechannel partition
    }
    let key = (handover.topic.clone(), handover.partition);
    match seen.get(&key) {
        Some((known, _)) if known.generation > handover.generation => {}
        _ => {
            seen.insert(key, (handover, at));
        }
    }
}

/// Whether a handover (written at sidechannel offset `at`) may start a partition in
/// `generation`: written by the owner in the generation just before, or during this member's
/// current rebalance by an owner of an earlier one (brokers may form several generations in
/// one rebalance, tansu does). Anything else is stale: it may predate a rewind.
fn usable(handover: &Handover, at: i64, generation: i32, round_start: Option<i64>) -> bool {
    handover.generation < generation
        && (handover.generation == generation - 1 || round_start.is_some_and(|start| at >= start))
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

impl Handler<PublishHandover> for Sidechannel {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: PublishHandover, _: &mut Context<Self>) -> Self::Result {
        let records: Vec<ProducerRecord> = msg
            .offsets
            .into_iter()
            .map(|((topic, partition), offset)| {
                let handover = Handover {
                    group: self.group.clone(),
                    topic,
                    partition,
                    generation: msg.generation,
                    offset,
                    member_id: msg.member_id.clone(),
                };
                ProducerRecord {
                    topic: self.topic.clone(),
                    partition: Some(self.partition),
                    key: Some(handover.key()),
                    value: Some(handover.value()),
                    ..ProducerRecord::default()
                }
            })
            .collect();
        let producer = self.producer.clone();
        let log = self.log.clone();
        let (count, generation) = (records.len(), msg.generation);
        Box::pin(async move {
            let results = join_all(records.into_iter().map(|r| producer.produce(r))).await;
            if let Some(failed) = results.into_iter().find_map(Result::err) {
                warn!(log, "sidechannel publish failed"; "error" => %failed);
                return Err(*failed.error);
            }
            debug!(log, "handed over"; "partitions" => count, "generation" => generation);
            Ok(())
        })
    }
}

impl Handler<LookupHandover> for Sidechannel {
    type Result = ResponseActFuture<Self, PartitionOffsets<i64>>;

    /// Reads until every asked partition has its handover from the previous generation, or
    /// `sidechannel_wait` has passed: a previous owner that has not yet noticed the rebalance
    /// gets that long to drain and publish. A dead owner costs the whole wait once. In the
    /// group's first generation nobody owned anything before: no wait.
    fn handle(&mut self, msg: LookupHandover, _: &mut Context<Self>) -> Self::Result {
        let msg_generation = msg.generation;
        let deadline = Instant::now() + self.wait;
        let wait_for_all = msg.generation > 1;
        let cluster = self.cluster.clone();
        let (topic, partition, group) = (self.topic.clone(), self.partition, self.group.clone());
        let mut position = self.position;
        let mut seen = self.seen.clone();
        let round_start = self.round_start;
        let wanted = msg.partitions.clone();
        let asked = wanted.len();
        let log = self.log.clone();
        let work = async move {
            loop {
                let read = read_to_end(
                    cluster.clone(),
                    topic.clone(),
                    partition,
                    position,
                    deadline,
                );
                match tokio::time::timeout_at(deadline, read).await {
                    Ok(Ok((records, next))) => {
                        position = position.max(next);
                        for (offset, key, value) in records {
                            match Handover::decode(&key, &value, offset) {
                                Ok(handover) => remember(&mut seen, &group, handover, offset),
                                Err(error) => {
                                    warn!(log, "unreadable sidechannel record skipped";
                                        "error" => %error)
                                }
                            }
                        }
                    }
                    Ok(Err(error)) => warn!(log, "sidechannel read failed"; "error" => %error),
                    Err(_) => {}
                }
                let complete = wanted.iter().all(|key| {
                    seen.get(key)
                        .is_some_and(|(h, at)| usable(h, *at, msg_generation, round_start))
                });
                if complete || !wait_for_all || Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep_until((Instant::now() + LOOKUP_POLL).min(deadline)).await;
            }
            (seen, position)
        };
        Box::pin(work.into_actor(self).map(move |(seen, position), act, _| {
            act.position = act.position.max(position);
            for (_, (handover, at)) in seen {
                remember(&mut act.seen, &act.group, handover, at);
            }
            let found: PartitionOffsets<i64> = msg
                .partitions
                .into_iter()
                .filter_map(|key| {
                    let (handover, at) = act.seen.get(&key)?;
                    usable(handover, *at, msg.generation, act.round_start)
                        .then_some((key, handover.offset))
                })
                .collect();
            info!(act.log, "handovers found"; "generation" => msg.generation,
                "asked" => asked, "found" => found.len());
            found
        }))
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
