//! ConsumerService: joins a group and feeds the assigned partitions to the user's handlers.
//!
//! It owns the pipeline of one member: the [`Coordinator`] (membership), a [`Fetcher`] per
//! leader broker (each on its own arbiter, so decoding uses another core), a
//! [`PartitionTracker`] per assigned partition, and the commit timer.
//!
//! - **Assignment** ([`GroupEvent::RebalanceOk`]): each claimed partition starts at the group's
//!   committed offset, else where `offset_reset` says (ListOffsets), and is announced
//!   ([`ConsumerEvent::PartitionStart`]).
//! - **Revocation** ([`Release`], asked by the Coordinator before it rejoins or leaves): the
//!   partitions stop being fetched, their trackers finish what is in flight (for at most the
//!   drain timeout), and their offsets go back to the Coordinator, which commits them while
//!   the generation still owns them.
//! - **Commits**: every `commit_interval`, the offsets that changed since the last commit.
//!   [`CommitNow`] commits at once.
//! - **Sidechannel** ([`Sidechannel`], unless `sidechannel_topic` is empty): released
//!   partitions' offsets are also handed over through the sidechannel topic before the
//!   member rejoins (and on each commit tick while a rebalance is under way); a claimed
//!   partition starts at the newer of its committed offset and the offset its previous owner
//!   handed over.
//! - **Leader moves**: a partition a Fetcher gives up is handed, after a metadata refresh, to
//!   the new leader's Fetcher at the offset it had reached. **Out of range**: the reset policy.
//! - **Shutdown** ([`Shutdown`]): leave the group (which releases, drains and commits
//!   everything first), stop the fetchers, then answer.
//! - **Supervision**: the service runs under an actix [`Supervisor`]. If its pipeline breaks
//!   behind its back (the Coordinator actor is gone without a shutdown), it stops; the
//!   supervisor restarts it, it drops what it held (uncommitted: the generation is unknown)
//!   and joins again from the committed offsets ([`ConsumerEvent::Restarted`]). After
//!   [`Shutdown`] it stays idle instead of stopping (a supervised actor that stops is restarted
//!   while anyone holds its address) and ends once the last address is dropped.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use konsumer::consumer::ConsumerConfig;
use konsumer::group::GroupConfig;
use konsumer::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use konsumer::kafka_protocol::messages::{ListOffsetsRequest, TopicName};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::producer::ProducerConfig;
use konsumer::protocol::ApiKey;
use konsumer::{ClientConfig, Context as ErrorContext, Error};
use slog::{info, o, warn, Logger};

use crate::cluster::Cluster;
use crate::coordinator::Coordinator;
use crate::fetcher::Fetcher;
use crate::hooks::{OffsetHooks, StartAt};
use crate::messages::{
    Close, Commit, CommitOffset, Drain, EventSink, FetchCommitted, FetchPartition, FetchTrouble,
    GetMetadata, GroupEvent, HandlerRef, MarkMetadata, PartitionFlow, PartitionOffsets,
    PartitionStopped, Pause, Purpose, Release, Route, Seek, StopFetching, Target, TroubleKind,
};
use crate::partition_tracker::PartitionTracker;
use crate::producer::Producer;
use crate::sidechannel::{PublishHandover, RebalanceBegins, Sidechannel, TakeOver, TakenOver};
use konsumer::sidechannel::HandoverKind;

/// What the service tells the user: the group's events, and the life of each partition.
#[derive(Debug, Clone)]
pub enum ConsumerEvent {
    Group(GroupEvent),
    /// A partition is assigned and starts at `offset`.
    PartitionStart {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// A partition stopped (handler failure beyond its policy, undecodable data, offset out
    /// of range with no reset) or skipped records as its policy allows; see `error`.
    PartitionStopped {
        topic: String,
        partition: i32,
        error: Error,
    },
    /// Offsets were committed: on the commit interval, by [`CommitNow`], and for partitions
    /// given up (rebalance, shutdown).
    Committed {
        offsets: PartitionOffsets<i64>,
    },
    /// Something went wrong that the service carries on after (a failed commit, ...).
    Error(Error),
    /// The supervisor restarted the service: its partitions were dropped without a commit
    /// and it joins the group again.
    Restarted {
        reason: String,
    },
}

impl Message for ConsumerEvent {
    type Result = ();
}

/// Where [`ConsumerEvent`]s go.
#[derive(Debug, Clone, Default)]
pub enum ConsumerEvents {
    Recipient(Recipient<ConsumerEvent>),
    Channel(tokio::sync::mpsc::UnboundedSender<ConsumerEvent>),
    #[default]
    None,
}

impl ConsumerEvents {
    fn send(&self, event: ConsumerEvent) {
        match self {
            ConsumerEvents::Recipient(r) => r.do_send(event),
            ConsumerEvents::Channel(c) => {
                let _ = c.send(event);
            }
            ConsumerEvents::None => {}
        }
    }
}

/// Makes the handler of one partition (actor per partition). Called again when that handler's
/// actor is gone (it panicked or stopped): its unfinished records go to the new one (counted as
/// a failed attempt, so the failure policy bounds a record that kills every handler). A handler
/// started on its own `Arbiter` here should stop that arbiter in its `stopped()`: the service
/// does not know about it, and the thread would outlive the partition.
pub type HandlerFactory = Arc<dyn Fn(&str, i32) -> HandlerRef + Send + Sync>;

/// Which handler gets which partition.
#[derive(Clone, Default)]
pub struct Handlers {
    pub default: Option<HandlerRef>,
    pub per_topic: BTreeMap<String, HandlerRef>,
    pub factory: Option<HandlerFactory>,
}

impl Handlers {
    fn for_partition(&self, topic: &str, partition: i32) -> Option<HandlerRef> {
        if let Some(factory) = &self.factory {
            return Some(factory(topic, partition));
        }
        self.per_topic.get(topic).or(self.default.as_ref()).cloned()
    }
}

/// Builds and starts a [`ConsumerService`].
pub struct ServiceBuilder {
    client: ClientConfig,
    group: GroupConfig,
    consumer: ConsumerConfig,
    handlers: Handlers,
    events: ConsumerEvents,
    producer: Option<Addr<Producer>>,
    cluster: Option<Addr<Cluster>>,
    hooks: OffsetHooks,
    log: Logger,
}

impl ServiceBuilder {
    pub fn new(client: ClientConfig, group: GroupConfig) -> Self {
        ServiceBuilder {
            client,
            group,
            consumer: ConsumerConfig::default(),
            handlers: Handlers::default(),
            events: ConsumerEvents::None,
            producer: None,
            cluster: None,
            hooks: OffsetHooks::default(),
            log: Logger::root(slog::Discard, o!()),
        }
    }
    /// From settings read with serde (see [`ServiceSettings`](crate::ServiceSettings)),
    /// validated: the error names the first bad field.
    pub fn from_settings(settings: crate::settings::ServiceSettings) -> Result<Self, Error> {
        let (client, group, consumer) = settings.into_configs()?;
        Ok(ServiceBuilder::new(client, group).consumer_config(consumer))
    }
    pub fn consumer_config(mut self, config: ConsumerConfig) -> Self {
        self.consumer = config;
        self
    }
    /// The handler of every topic without its own.
    pub fn handler(mut self, handler: HandlerRef) -> Self {
        self.handlers.default = Some(handler);
        self
    }
    pub fn topic_handler(mut self, topic: impl Into<String>, handler: HandlerRef) -> Self {
        self.handlers.per_topic.insert(topic.into(), handler);
        self
    }
    /// One handler per partition, made by `factory` (and made again if it dies).
    pub fn handler_factory(
        mut self,
        factory: impl Fn(&str, i32) -> HandlerRef + Send + Sync + 'static,
    ) -> Self {
        self.handlers.factory = Some(Arc::new(factory));
        self
    }
    pub fn events(mut self, events: ConsumerEvents) -> Self {
        self.events = events;
        self
    }
    /// The producer for dead-letter topics.
    pub fn producer(mut self, producer: Addr<Producer>) -> Self {
        self.producer = Some(producer);
        self
    }
    /// Use an existing cluster connection (e.g. a mocked one) instead of connecting.
    pub fn cluster(mut self, cluster: Addr<Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }
    /// Where an assigned partition starts, given its committed offset (default: that offset,
    /// else `offset_reset`).
    pub fn starting_offset(
        mut self,
        hook: impl Fn(&str, i32, Option<i64>) -> StartAt + Send + Sync + 'static,
    ) -> Self {
        self.hooks.starting_offset = Some(Arc::new(hook));
        self
    }
    /// Where a partition goes when the broker answers OffsetOutOfRange for its position
    /// (default: `offset_reset`).
    pub fn on_offset_out_of_range(
        mut self,
        hook: impl Fn(&str, i32, i64) -> StartAt + Send + Sync + 'static,
    ) -> Self {
        self.hooks.out_of_range = Some(Arc::new(hook));
        self
    }
    /// Where a partition goes whose records are older than its topic's `max_message_age`;
    /// the hook gets the offset reached and the oldest timestamp wanted (default: the first
    /// record at or after that timestamp).
    pub fn on_max_message_age(
        mut self,
        hook: impl Fn(&str, i32, i64, i64) -> StartAt + Send + Sync + 'static,
    ) -> Self {
        self.hooks.max_message_age = Some(Arc::new(hook));
        self
    }
    pub fn logger(mut self, log: Logger) -> Self {
        self.log = log;
        self
    }

    /// Validates everything, connects, and starts the service (which joins the group).
    pub async fn start(self) -> Result<Addr<ConsumerService>, Error> {
        self.consumer.validate()?;
        self.group.validate()?;
        if self.handlers.default.is_none()
            && self.handlers.per_topic.is_empty()
            && self.handlers.factory.is_none()
        {
            return Err(Error::Config {
                field: "handler",
                detail: "no handler registered (a default, per topic, or a factory)".into(),
            });
        }
        let dead_letters = std::iter::once(&self.consumer.failure_policy)
            .chain(self.consumer.topic_failure_policies.values())
            .any(|p| matches!(p.then, konsumer::consumer::AfterRetries::DeadLetter { .. }));
        if dead_letters && self.producer.is_none() {
            return Err(Error::Config {
                field: "failure_policy",
                detail: "a dead-letter policy needs a producer (ServiceBuilder::producer)".into(),
            });
        }
        let cluster = match self.cluster {
            Some(cluster) => cluster,
            None => Cluster::connect(self.client.clone(), self.log.clone()).await?,
        };
        let log = self.log.new(o!("group" => self.group.group_id.clone()));
        let request_timeout = self.client.request_timeout;
        let group = self.group;
        let consumer = Arc::new(self.consumer);
        let handlers = self.handlers;
        let events = self.events;
        let producer = self.producer;
        let hooks = self.hooks;
        let sidechannel = if consumer.sidechannel_enabled() {
            let side_producer = match &producer {
                Some(p) => p.clone(),
                None => {
                    Producer::new(cluster.clone(), ProducerConfig::default(), log.clone())?.start()
                }
            };
            let opened = Sidechannel::open(
                cluster.clone(),
                side_producer,
                &group.group_id,
                &consumer,
                log.new(o!("sidechannel" => consumer.sidechannel_topic.clone())),
            )
            .await;
            match opened {
                Ok(side) => Some(side.start()),
                Err(error) => {
                    // Not fatal: without it a moved partition re-reads from its last commit.
                    warn!(log, "no sidechannel: partitions handed over re-read from the last commit";
                        "error" => %error);
                    events.send(ConsumerEvent::Error(error));
                    None
                }
            }
        } else {
            None
        };
        // The Coordinator adds the group to its own log lines.
        let coordinator_log = self.log.clone();
        // Refuse a bad subscription here; the service makes its Coordinator when it starts
        // (and again after a restart), with its own address for events and releases.
        Coordinator::new(
            cluster.clone(),
            group.clone(),
            EventSink::None,
            coordinator_log.clone(),
        )?;
        let drain_timeout = consumer.drain_timeout.unwrap_or(group.rebalance_timeout);
        let service = ConsumerService {
            cluster,
            coordinator: None,
            group: group.clone(),
            coordinator_log,
            consumer,
            request_timeout,
            drain_timeout,
            handlers,
            events,
            producer,
            hooks,
            sidechannel,
            member_id: String::new(),
            generation: -1,
            rebalancing: false,
            log,
            fetchers: BTreeMap::new(),
            partitions: BTreeMap::new(),
            committed: BTreeMap::new(),
            committing: false,
            next_epoch: 1,
            shutting_down: false,
            closing: false,
            finished: false,
            ticker: None,
        };
        Ok(Supervisor::start(move |_| service))
    }
}

/// The longest a release waits for its handover to be acknowledged.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// One assigned partition.
struct Owned {
    tracker: Addr<PartitionTracker>,
    flow: Arc<PartitionFlow>,
    /// The Fetcher's broker, while one fetches it.
    node: Option<i32>,
    epoch: u64,
}

impl Owned {
    /// `offset` with the metadata the partition was marked with.
    fn commit_offset(&self, offset: i64) -> CommitOffset {
        CommitOffset {
            offset,
            leader_epoch: None,
            metadata: self.flow.metadata.lock().ok().and_then(|m| m.clone()),
        }
    }
}

struct FetcherSlot {
    addr: Addr<Fetcher>,
    arbiter: Arbiter,
}

/// One consumer-group member with its pipeline. Build it with [`ServiceBuilder`].
pub struct ConsumerService {
    cluster: Addr<Cluster>,
    /// Made when the service starts (and restarts).
    coordinator: Option<Addr<Coordinator>>,
    group: GroupConfig,
    coordinator_log: Logger,
    consumer: Arc<ConsumerConfig>,
    request_timeout: Duration,
    drain_timeout: Duration,
    handlers: Handlers,
    events: ConsumerEvents,
    producer: Option<Addr<Producer>>,
    hooks: OffsetHooks,
    sidechannel: Option<Addr<Sidechannel>>,
    /// The member id and generation of the last completed rebalance.
    member_id: String,
    generation: i32,
    /// Between RebalanceStart and RebalanceOk.
    rebalancing: bool,
    log: Logger,
    fetchers: BTreeMap<i32, FetcherSlot>,
    partitions: BTreeMap<(String, i32), Owned>,
    /// The last committed offset per owned partition.
    committed: BTreeMap<(String, i32), i64>,
    committing: bool,
    next_epoch: u64,
    /// The group has been left: no partition starts any more.
    shutting_down: bool,
    /// A [`Shutdown`] is under way: the Coordinator stopping is expected.
    closing: bool,
    /// Shut down: the service idles until its last address is dropped.
    finished: bool,
    /// The commit and health tick.
    ticker: Option<SpawnHandle>,
}

impl ConsumerService {
    pub fn builder(client: ClientConfig, group: GroupConfig) -> ServiceBuilder {
        ServiceBuilder::new(client, group)
    }

    fn start_coordinator(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address();
        match Coordinator::new(
            self.cluster.clone(),
            self.group.clone(),
            EventSink::Recipient(me.clone().recipient()),
            self.coordinator_log.clone(),
        ) {
            Ok(coordinator) => {
                self.coordinator = Some(coordinator.with_release(me.recipient()).start());
            }
            // Checked when the service was built, so this does not happen; if it did, the
            // service idles and says why rather than restarting in a loop.
            Err(error) => {
                warn!(self.log, "cannot make the group coordinator"; "error" => %error);
                self.finished = true;
                self.events.send(ConsumerEvent::Error(error));
            }
        }
    }

    /// Restarts the service (through its supervisor) if its Coordinator is gone without a
    /// shutdown: without it there is no membership, no commit and no rebalance.
    fn check_pipeline(&mut self, ctx: &mut Context<Self>) {
        if self.closing || self.finished {
            return;
        }
        if let Some(coordinator) = &self.coordinator {
            if !coordinator.connected() {
                warn!(
                    self.log,
                    "the group coordinator actor is gone; restarting the service"
                );
                ctx.stop();
            }
        }
    }

    fn epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    fn fetcher(&mut self, node: i32, ctx: &mut Context<Self>) -> Addr<Fetcher> {
        if let Some(slot) = self.fetchers.get(&node) {
            if slot.addr.connected() {
                return slot.addr.clone();
            }
        }
        let arbiter = Arbiter::new();
        let fetcher = Fetcher::new(
            node,
            self.cluster.clone(),
            self.consumer.clone(),
            self.request_timeout,
            ctx.address().recipient(),
            self.log.new(o!("fetcher" => node)),
        );
        let addr = Fetcher::start_in_arbiter(&arbiter.handle(), |_| fetcher);
        self.fetchers.insert(
            node,
            FetcherSlot {
                addr: addr.clone(),
                arbiter,
            },
        );
        addr
    }

    /// Starts consuming newly assigned partitions where the starting-offset hook says
    /// (default: the committed offset, else the reset policy), after the sidechannel's
    /// take-over (newer handed-over offsets, previous owners' releases, claims).
    fn claim(
        &mut self,
        generation: i32,
        committed: PartitionOffsets<Option<i64>>,
        ctx: &mut Context<Self>,
    ) {
        let cluster = self.cluster.clone();
        let hooks = self.hooks.clone();
        let config = self.consumer.clone();
        let sidechannel = self.sidechannel.clone();
        let member_id = self.member_id.clone();
        let claimant = member_id.clone();
        let owner_wait = self.group.session_timeout;
        let quick = self.consumer.sidechannel_wait;
        let coordinator = self.coordinator.clone();
        let log = self.log.clone();
        let work = async move {
            // Without a sidechannel (or with it gone): every partition starts, nothing handed.
            let untouched = || TakenOver {
                start: committed.keys().map(|k| (k.clone(), None)).collect(),
                fenced: Vec::new(),
            };
            let asked = std::time::Instant::now();
            let taken = match &sidechannel {
                Some(side) if !committed.is_empty() => side
                    .send(TakeOver {
                        generation,
                        member_id,
                        committed: committed.clone(),
                        owner_wait,
                    })
                    .await
                    .unwrap_or_else(|_| untouched()),
                _ => untouched(),
            };
            // A take-over that waited for a previous owner (longer than a late release could
            // take) may have let that owner commit meanwhile: read the commits again, so the
            // partitions do not start from what was committed at the join.
            let mut committed = committed;
            if asked.elapsed() > quick {
                if let Some(coordinator) = &coordinator {
                    let mut partitions = konsumer::group::TopicPartitions::new();
                    for (topic, partition) in taken.start.keys() {
                        partitions
                            .entry(topic.clone())
                            .or_default()
                            .push(*partition);
                    }
                    match coordinator.send(FetchCommitted { partitions }).await {
                        Ok(Ok(fresh)) => {
                            for (key, offset) in fresh {
                                let known = committed.entry(key).or_insert(None);
                                if offset > *known {
                                    *known = offset;
                                }
                            }
                        }
                        Ok(Err(error)) => warn!(log, "commits not read again after the take-over";
                            "error" => %error),
                        Err(_) => {}
                    }
                }
            }
            let mut starts = Vec::new();
            for ((topic, partition), handed) in taken.start {
                let committed = committed
                    .get(&(topic.clone(), partition))
                    .copied()
                    .flatten()
                    .filter(|o| *o >= 0);
                let newest = match (committed, handed) {
                    (Some(c), Some(h)) if h > c => {
                        info!(log, "starting after the previous owner's handover";
                            "topic" => &topic, "partition" => partition,
                            "committed" => c, "handed_over" => h);
                        Some(h)
                    }
                    (None, Some(h)) => Some(h),
                    (c, _) => c,
                };
                let at = hooks.start(&config, &topic, partition, newest);
                let start = resolve(&cluster, &topic, partition, at).await;
                starts.push((topic, partition, start));
            }
            starts
        };
        ctx.spawn(work.into_actor(self).map(move |starts, act, ctx| {
            if act.generation != generation || act.rebalancing || act.shutting_down {
                // The group moved on while the take-over waited: these partitions may be
                // someone else's now. Withdraw the claims so their next owner need not wait.
                let withdrawn: PartitionOffsets<i64> = starts
                    .iter()
                    .filter_map(|(t, p, start)| Some(((t.clone(), *p), *start.as_ref().ok()?)))
                    .collect();
                info!(act.log, "take-over outdated: partitions not started";
                    "generation" => generation, "now" => act.generation,
                    "count" => starts.len());
                if let (Some(side), false) = (&act.sidechannel, withdrawn.is_empty()) {
                    side.do_send(PublishHandover {
                        generation,
                        member_id: claimant,
                        offsets: withdrawn,
                        kind: HandoverKind::Released,
                    });
                }
                return;
            }
            for (topic, partition, start) in starts {
                match start {
                    Ok(offset) => act.start_partition(topic, partition, offset, ctx),
                    Err(error) => act.events.send(ConsumerEvent::PartitionStopped {
                        topic,
                        partition,
                        error,
                    }),
                }
            }
        }));
    }

    fn start_partition(
        &mut self,
        topic: String,
        partition: i32,
        offset: i64,
        ctx: &mut Context<Self>,
    ) {
        if self.shutting_down || self.partitions.contains_key(&(topic.clone(), partition)) {
            return;
        }
        let Some(handler) = self.handlers.for_partition(&topic, partition) else {
            self.events.send(ConsumerEvent::PartitionStopped {
                topic: topic.clone(),
                partition,
                error: Error::Config {
                    field: "handler",
                    detail: format!("no handler registered for topic {topic}"),
                },
            });
            return;
        };
        let epoch = self.epoch();
        let flow = Arc::new(PartitionFlow::default());
        let name: Arc<str> = Arc::from(topic.as_str());
        let tracker = PartitionTracker::new(
            name,
            partition,
            offset,
            epoch,
            self.consumer.clone(),
            handler,
            flow.clone(),
            ctx.address().recipient(),
            self.producer.clone(),
            self.log
                .new(o!("topic" => topic.clone(), "partition" => partition)),
        )
        .with_factory(self.handlers.factory.clone())
        .start();
        info!(self.log, "partition starts"; "topic" => &topic, "partition" => partition,
            "offset" => offset);
        self.committed.insert((topic.clone(), partition), offset);
        self.partitions.insert(
            (topic.clone(), partition),
            Owned {
                tracker,
                flow,
                node: None,
                epoch,
            },
        );
        self.events.send(ConsumerEvent::PartitionStart {
            topic: topic.clone(),
            partition,
            offset,
        });
        self.route(topic, partition, offset, Duration::ZERO, ctx);
    }

    /// Finds the partition's leader (after `delay`) and has its Fetcher fetch from `offset`.
    fn route(
        &mut self,
        topic: String,
        partition: i32,
        offset: i64,
        delay: Duration,
        ctx: &mut Context<Self>,
    ) {
        let cluster = self.cluster.clone();
        let refresh = !delay.is_zero();
        let t = topic.clone();
        let work = async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let metadata = cluster
                .send(GetMetadata { refresh })
                .await
                .map_err(|_| Error::Shutdown("cluster".into()))??;
            metadata.leader(&t, partition)
        };
        ctx.spawn(work.into_actor(self).map(move |leader, act, ctx| {
            let key = (topic.clone(), partition);
            let Some(owned) = act.partitions.get(&key) else {
                return; // revoked meanwhile
            };
            if owned.node.is_some() {
                return;
            }
            match leader {
                Ok(node) => {
                    let (epoch, flow, tracker) =
                        (owned.epoch, owned.flow.clone(), owned.tracker.clone());
                    let fetcher = act.fetcher(node, ctx);
                    if let Some(owned) = act.partitions.get_mut(&key) {
                        owned.node = Some(node);
                    }
                    fetcher.do_send(FetchPartition {
                        topic: Arc::from(topic.as_str()),
                        partition,
                        offset,
                        epoch,
                        flow,
                        tracker: tracker.recipient(),
                    });
                }
                Err(error) => {
                    warn!(act.log, "no leader for partition yet"; "topic" => &topic,
                        "partition" => partition, "error" => %error);
                    let delay = act.consumer.retry_backoff.delay(1, fastrand::f64());
                    act.route(topic, partition, offset, delay, ctx);
                }
            }
        }));
    }

    /// Commits the offsets that changed since the last commit.
    fn commit(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.shutting_down || self.finished {
            return;
        }
        if self.rebalancing {
            self.hand_over_progress();
        }
        self.committing = true;
        let work = self.commit_changed().map(|result, act: &mut Self, _| {
            act.committing = false;
            if let Err(error) = result {
                info!(act.log, "commit failed; retried at the next interval"; "error" => %error);
                act.events.send(ConsumerEvent::Error(error));
            }
        });
        ctx.spawn(work);
    }

    /// Commits each owned partition whose committable offset changed since its last commit,
    /// then remembers and announces what was committed.
    fn commit_changed(&mut self) -> impl ActorFuture<Self, Output = Result<(), Error>> {
        let mut offsets = PartitionOffsets::new();
        for (key, owned) in &self.partitions {
            let offset = owned.flow.committable.load(Ordering::Relaxed);
            if self.committed.get(key) != Some(&offset) {
                offsets.insert(key.clone(), owned.commit_offset(offset));
            }
        }
        let coordinator = self.coordinator.clone();
        let sent = offsets.clone();
        async move {
            if offsets.is_empty() {
                return Ok(());
            }
            let Some(coordinator) = coordinator else {
                return Err(Error::Shutdown("coordinator".into()));
            };
            coordinator
                .send(Commit { offsets })
                .await
                .map_err(|_| Error::Shutdown("coordinator".into()))?
        }
        .into_actor(self)
        .map(|result, act, _| {
            if result.is_ok() && !sent.is_empty() {
                let mut done = PartitionOffsets::new();
                for (key, commit) in sent {
                    // Only for partitions still owned (a release may have come between).
                    if let Some(last) = act.committed.get_mut(&key) {
                        *last = commit.offset;
                        done.insert(key, commit.offset);
                    }
                }
                act.events.send(ConsumerEvent::Committed { offsets: done });
            }
            result
        })
    }

    /// While a rebalance is under way a commit may be refused: the offsets that changed go
    /// to the sidechannel as well, for whoever gets the partitions next (as the seed does
    /// while its JoinGroup is pending).
    fn hand_over_progress(&self) {
        let Some(side) = &self.sidechannel else {
            return;
        };
        if self.member_id.is_empty() || self.generation < 0 {
            return;
        }
        let offsets: PartitionOffsets<i64> = self
            .partitions
            .iter()
            .map(|(key, owned)| (key, owned.flow.committable.load(Ordering::Relaxed)))
            .filter(|(key, offset)| self.committed.get(*key) != Some(offset))
            .map(|(key, offset)| (key.clone(), offset))
            .collect();
        if !offsets.is_empty() {
            // Still owned: the next owner waits for the release all the same.
            side.do_send(PublishHandover {
                generation: self.generation,
                member_id: self.member_id.clone(),
                offsets,
                kind: HandoverKind::Owned,
            });
        }
    }

    fn stop_fetchers(&mut self) {
        for (_, slot) in std::mem::take(&mut self.fetchers) {
            slot.addr.do_send(Close);
            slot.arbiter.stop();
        }
    }
}

/// The offset `at` names (ListOffsets to the leader for all but an explicit offset).
/// [`StartAt::Stop`] is an OffsetOutOfRange error: there is no position to consume from.
async fn resolve(
    cluster: &Addr<Cluster>,
    topic: &str,
    partition: i32,
    at: StartAt,
) -> Result<i64, Error> {
    match at {
        StartAt::Offset(offset) if offset >= 0 => Ok(offset),
        StartAt::Offset(offset) => Err(Error::Config {
            field: "starting offset",
            detail: format!("a hook chose offset {offset} for {topic}/{partition}"),
        }),
        StartAt::Earliest => list_offset(cluster, topic, partition, -2).await,
        StartAt::Latest => list_offset(cluster, topic, partition, -1).await,
        // The first record at or after the timestamp; none (-1): the log end.
        StartAt::Timestamp(at) => match list_offset(cluster, topic, partition, at).await? {
            -1 => list_offset(cluster, topic, partition, -1).await,
            offset => Ok(offset),
        },
        StartAt::Stop => Err(Error::Broker {
            code: konsumer::KafkaCode::OffsetOutOfRange,
            context: ErrorContext::default()
                .with_api(ApiKey::ListOffsets)
                .with_topic(topic)
                .with_partition(partition),
        }),
    }
}

/// ListOffsets for one partition: -2 earliest, -1 latest, else the first offset at or after the
/// timestamp.
pub async fn list_offset(
    cluster: &Addr<Cluster>,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<i64, Error> {
    let context = || {
        ErrorContext::default()
            .with_api(ApiKey::ListOffsets)
            .with_topic(topic)
            .with_partition(partition)
    };
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    let mut last = None;
    for attempt in 0..5u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
        let reply = cluster
            .send(Route {
                target: Target::Leader {
                    topic: topic.to_owned(),
                    partition,
                },
                purpose: Purpose::General,
                call: crate::messages::Call::new(request.clone()),
            })
            .await
            .map_err(|_| Error::Shutdown("cluster".into()))?;
        let response = match reply.and_then(|r| r.into_typed::<ListOffsetsRequest>("list offsets"))
        {
            Ok(r) => r,
            Err(error) if error.is_retriable() => {
                last = Some(error);
                continue;
            }
            Err(error) => return Err(error),
        };
        let answer = response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition);
        let Some(answer) = answer else {
            return Err(Error::Protocol {
                broker: "leader".into(),
                detail: format!("ListOffsets answer lacks {topic}/{partition}"),
            });
        };
        match Error::check(answer.error_code, context) {
            Ok(()) => {
                return Ok(answer.offset);
            }
            Err(error) if error.is_retriable() => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or(Error::NoLeader {
        topic: topic.to_owned(),
        partition,
    }))
}

impl Actor for ConsumerService {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        ctx.set_mailbox_capacity(1024);
        self.ticker = Some(ctx.run_interval(self.consumer.commit_interval, |act, ctx| {
            act.check_pipeline(ctx);
            act.commit(ctx);
        }));
        if self.coordinator.is_none() {
            self.start_coordinator(ctx);
        }
    }
}

impl Supervised for ConsumerService {
    /// Drops everything the broken pipeline held: fetchers stop, trackers stop at once, and
    /// nothing is committed (the member's generation is unknown, so the partitions may be
    /// someone else's already). `started` then joins the group again.
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.stop_fetchers();
        for (_, owned) in std::mem::take(&mut self.partitions) {
            owned.flow.paused.store(true, Ordering::Relaxed);
            owned.tracker.do_send(Drain {
                timeout: Duration::ZERO,
            });
        }
        self.committed.clear();
        self.committing = false;
        self.ticker = None;
        if let Some(coordinator) = self.coordinator.take() {
            coordinator.do_send(Close);
        }
        let reason = "the group coordinator actor was gone".to_owned();
        info!(self.log, "service restarted by its supervisor"; "reason" => &reason);
        self.events.send(ConsumerEvent::Restarted { reason });
    }
}

impl Handler<GroupEvent> for ConsumerService {
    type Result = ();

    fn handle(&mut self, event: GroupEvent, ctx: &mut Context<Self>) {
        if let GroupEvent::RebalanceStart { .. } = &event {
            self.rebalancing = true;
            if let Some(side) = &self.sidechannel {
                side.do_send(RebalanceBegins);
            }
        }
        if let GroupEvent::RebalanceOk {
            committed,
            generation,
            member_id,
            ..
        } = &event
        {
            self.rebalancing = false;
            self.generation = *generation;
            self.member_id = member_id.clone();
            // `committed` holds every claimed partition (None = nothing committed).
            let claimed: PartitionOffsets<Option<i64>> = committed
                .iter()
                .filter(|(key, _)| !self.partitions.contains_key(*key))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            self.claim(*generation, claimed, ctx);
        }
        if let GroupEvent::Committed { offsets, .. } = event {
            // Revoked or closing partitions, committed by the Coordinator.
            self.events.send(ConsumerEvent::Committed { offsets });
            return;
        }
        self.events.send(ConsumerEvent::Group(event));
    }
}

impl Handler<Release> for ConsumerService {
    type Result = ResponseActFuture<Self, PartitionOffsets<CommitOffset>>;

    fn handle(&mut self, release: Release, _: &mut Context<Self>) -> Self::Result {
        let mut drains = Vec::new();
        for (topic, partitions) in &release.partitions {
            for &partition in partitions {
                let key = (topic.clone(), partition);
                let Some(owned) = self.partitions.remove(&key) else {
                    continue;
                };
                let last_committed = self.committed.remove(&key);
                owned.flow.paused.store(true, Ordering::Relaxed);
                if let Some(node) = owned.node {
                    if let Some(slot) = self.fetchers.get(&node) {
                        slot.addr.do_send(StopFetching {
                            topic: Arc::from(topic.as_str()),
                            partition,
                        });
                    }
                }
                let timeout = if release.lost {
                    Duration::ZERO
                } else {
                    self.drain_timeout
                };
                let tracker = owned.tracker.clone();
                drains.push(async move {
                    let offset = tracker.send(Drain { timeout }).await.ok();
                    (key, offset, last_committed)
                });
            }
        }
        info!(self.log, "releasing partitions"; "count" => drains.len(), "lost" => release.lost);
        // Published even by a lost member: whoever took the partitions over waits for it.
        let handover = self
            .sidechannel
            .clone()
            .filter(|_| release.generation >= 0 && !self.member_id.is_empty())
            .map(|side| (side, self.member_id.clone(), release.generation));
        let log = self.log.clone();
        let work = async move {
            let drained = join_all(drains).await;
            let offsets: PartitionOffsets<CommitOffset> = drained
                .iter()
                .filter_map(|(key, offset, _)| Some((key.clone(), offset.clone()?)))
                .collect();
            if let Some((side, member_id, generation)) = handover {
                if !offsets.is_empty() {
                    // Before the answer, so before the Coordinator rejoins.
                    let publish = side.send(PublishHandover {
                        generation,
                        member_id,
                        offsets: offsets.iter().map(|(k, c)| (k.clone(), c.offset)).collect(),
                        kind: HandoverKind::Released,
                    });
                    match tokio::time::timeout(HANDOVER_TIMEOUT, publish).await {
                        Ok(Ok(Ok(()))) => {}
                        Ok(Ok(Err(error))) => {
                            warn!(log, "handover not published"; "error" => %error)
                        }
                        Ok(Err(_)) => warn!(log, "handover not published: sidechannel gone"),
                        Err(_) => warn!(log, "handover not published in time";
                            "waited" => ?HANDOVER_TIMEOUT),
                    }
                }
            }
            // Only progress is committed (as on the commit ticks): committing an unchanged
            // offset again could undo a newer commit by a member that held the partition at
            // the same time, which a broker without Kafka's generation checks allows.
            drained
                .into_iter()
                .filter_map(|(key, offset, last)| {
                    let offset = offset?;
                    (last != Some(offset.offset)).then_some((key, offset))
                })
                .collect()
        };
        Box::pin(work.into_actor(self))
    }
}

impl Handler<FetchTrouble> for ConsumerService {
    type Result = ();

    fn handle(&mut self, trouble: FetchTrouble, ctx: &mut Context<Self>) {
        let key = (trouble.topic.to_string(), trouble.partition);
        let Some(owned) = self.partitions.get_mut(&key) else {
            return;
        };
        if owned.epoch != trouble.epoch || owned.node != Some(trouble.node) {
            return; // about an older position or fetcher
        }
        owned.node = None;
        match trouble.kind {
            TroubleKind::NotLeader(_) => {
                let delay = self.consumer.retry_backoff.delay(0, fastrand::f64());
                self.route(
                    key.0,
                    key.1,
                    trouble.next_offset,
                    delay.max(Duration::from_millis(1)),
                    ctx,
                );
            }
            TroubleKind::OutOfRange | TroubleKind::TooOld { .. } => {
                let cluster = self.cluster.clone();
                let (topic, partition) = key.clone();
                let at = match trouble.kind {
                    TroubleKind::TooOld { since } => {
                        self.hooks
                            .too_old(&topic, partition, trouble.next_offset, since)
                    }
                    _ => self.hooks.out_of_range(
                        &self.consumer,
                        &topic,
                        partition,
                        trouble.next_offset,
                    ),
                };
                let work = async move { resolve(&cluster, &topic, partition, at).await };
                ctx.spawn(
                    work.into_actor(self)
                        .map(move |result, act, ctx| match result {
                            Ok(offset) => {
                                warn!(act.log, "partition jumps"; "why" => ?trouble.kind, "topic" => &key.0,
                                "partition" => key.1, "from" => trouble.next_offset,
                                "to" => offset);
                                let epoch = act.epoch();
                                let Some(owned) = act.partitions.get_mut(&key) else {
                                    return;
                                };
                                owned.epoch = epoch;
                                owned.tracker.do_send(Seek { offset, epoch });
                                act.route(key.0, key.1, offset, Duration::ZERO, ctx);
                            }
                            Err(error) => act.events.send(ConsumerEvent::PartitionStopped {
                                topic: key.0,
                                partition: key.1,
                                error,
                            }),
                        }),
                );
            }
            TroubleKind::Failed(error) => {
                owned.flow.paused.store(true, Ordering::Relaxed);
                self.events.send(ConsumerEvent::PartitionStopped {
                    topic: key.0,
                    partition: key.1,
                    error,
                });
            }
        }
    }
}

impl Handler<PartitionStopped> for ConsumerService {
    type Result = ();

    fn handle(&mut self, stopped: PartitionStopped, _: &mut Context<Self>) {
        self.events.send(ConsumerEvent::PartitionStopped {
            topic: stopped.topic.to_string(),
            partition: stopped.partition,
            error: stopped.error,
        });
    }
}

/// Commits the finished offsets now (instead of at the next interval); answers once done.
#[derive(Debug, Clone, Copy)]
pub struct CommitNow;

impl Message for CommitNow {
    type Result = Result<(), Error>;
}

impl Handler<CommitNow> for ConsumerService {
    type Result = ResponseActFuture<Self, Result<(), Error>>;

    fn handle(&mut self, _: CommitNow, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.commit_changed())
    }
}

/// Moves a partition to `offset` (rewind or skip ahead): what is in flight is forgotten.
#[derive(Debug, Clone)]
pub struct SeekPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Message for SeekPartition {
    type Result = Result<(), Error>;
}

impl Handler<SeekPartition> for ConsumerService {
    type Result = Result<(), Error>;

    fn handle(&mut self, seek: SeekPartition, ctx: &mut Context<Self>) -> Self::Result {
        let key = (seek.topic.clone(), seek.partition);
        let epoch = self.epoch();
        let Some(owned) = self.partitions.get_mut(&key) else {
            return Err(not_owned(&seek.topic, seek.partition));
        };
        owned.epoch = epoch;
        owned.tracker.do_send(Seek {
            offset: seek.offset,
            epoch,
        });
        if let Some(node) = owned.node.take() {
            if let Some(slot) = self.fetchers.get(&node) {
                slot.addr.do_send(StopFetching {
                    topic: Arc::from(seek.topic.as_str()),
                    partition: seek.partition,
                });
            }
        }
        self.route(seek.topic, seek.partition, seek.offset, Duration::ZERO, ctx);
        Ok(())
    }
}

fn not_owned(topic: &str, partition: i32) -> Error {
    Error::Broker {
        code: konsumer::KafkaCode::UnknownTopicOrPartition,
        context: ErrorContext::default()
            .with_topic(topic)
            .with_partition(partition),
    }
}

/// Pauses (`paused: true`) or resumes a partition: no delivery, no fetching meanwhile.
#[derive(Debug, Clone)]
pub struct PausePartition {
    pub topic: String,
    pub partition: i32,
    pub paused: bool,
}

impl Message for PausePartition {
    type Result = Result<(), Error>;
}

impl Handler<PausePartition> for ConsumerService {
    type Result = Result<(), Error>;

    fn handle(&mut self, msg: PausePartition, _: &mut Context<Self>) -> Self::Result {
        let owned = self
            .partitions
            .get(&(msg.topic.clone(), msg.partition))
            .ok_or_else(|| not_owned(&msg.topic, msg.partition))?;
        owned.tracker.do_send(Pause(msg.paused));
        Ok(())
    }
}

/// Metadata committed with a partition's next offsets.
#[derive(Debug, Clone)]
pub struct MarkPartitionMetadata {
    pub topic: String,
    pub partition: i32,
    pub metadata: Option<String>,
}

impl Message for MarkPartitionMetadata {
    type Result = Result<(), Error>;
}

impl Handler<MarkPartitionMetadata> for ConsumerService {
    type Result = Result<(), Error>;

    fn handle(&mut self, msg: MarkPartitionMetadata, _: &mut Context<Self>) -> Self::Result {
        let owned = self
            .partitions
            .get(&(msg.topic.clone(), msg.partition))
            .ok_or_else(|| not_owned(&msg.topic, msg.partition))?;
        owned.tracker.do_send(MarkMetadata(msg.metadata));
        Ok(())
    }
}

/// The partitions this member consumes now, with their committable offsets.
#[derive(Debug, Clone, Copy)]
pub struct GetPartitions;

impl Message for GetPartitions {
    type Result = PartitionOffsets<i64>;
}

impl Handler<GetPartitions> for ConsumerService {
    type Result = MessageResult<GetPartitions>;

    fn handle(&mut self, _: GetPartitions, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.partitions
                .iter()
                .map(|(k, o)| (k.clone(), o.flow.committable.load(Ordering::Relaxed)))
                .collect(),
        )
    }
}

/// The service's Coordinator (group membership, e.g. for
/// [`GetMembership`](crate::messages::GetMembership)); `None` after a shutdown.
#[derive(Debug, Clone, Copy)]
pub struct GetCoordinator;

impl Message for GetCoordinator {
    type Result = Option<Addr<Coordinator>>;
}

impl Handler<GetCoordinator> for ConsumerService {
    type Result = Option<Addr<Coordinator>>;

    fn handle(&mut self, _: GetCoordinator, _: &mut Context<Self>) -> Self::Result {
        self.coordinator.clone()
    }
}

/// Stops fetching, lets in-flight records finish, commits, leaves the group, then answers.
#[derive(Debug, Clone, Copy)]
pub struct Shutdown;

impl Message for Shutdown {
    type Result = ();
}

impl Handler<Shutdown> for ConsumerService {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        if self.finished {
            return Box::pin(actix::fut::ready(()));
        }
        info!(self.log, "shutting down");
        self.closing = true;
        let coordinator = self.coordinator.clone();
        Box::pin(
            async move {
                // The Coordinator releases everything through us (drain + commit), then leaves.
                if let Some(coordinator) = coordinator {
                    let _ = coordinator.send(Close).await;
                }
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                act.shutting_down = true;
                act.finished = true;
                act.stop_fetchers();
                for (_, owned) in std::mem::take(&mut act.partitions) {
                    owned.tracker.do_send(Drain {
                        timeout: Duration::ZERO,
                    });
                }
                act.coordinator = None;
                if let Some(side) = act.sidechannel.take() {
                    side.do_send(Close);
                }
                // Not `ctx.stop()`: the supervisor would restart the service. Without its
                // tick it ends by itself once the last address is dropped.
                if let Some(ticker) = act.ticker.take() {
                    ctx.cancel_future(ticker);
                }
                info!(act.log, "shut down");
            }),
        )
    }
}
