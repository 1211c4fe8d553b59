//! Coordinator: one member's life in a consumer group.
//!
//! The member moves through: find the group coordinator -> JoinGroup (KIP-394: a first join
//! without a member id is answered MEMBER_ID_REQUIRED with an id; join again at once with it)
//! -> the leader runs the assignor for everyone -> SyncGroup -> OffsetFetch for the partitions
//! it gained -> stable, with a [`Heartbeat`] beside it. Any of these can fail; what happens next
//! is decided by one table ([`konsumer::group::recovery()`]):
//!
//! | error                                     | next move                                     |
//! |-------------------------------------------|-----------------------------------------------|
//! | NotCoordinator, CoordinatorNotAvailable   | find the coordinator again (after a backoff)  |
//! | I/O error, timeout, connection closed     | the same (the connection reconnects itself)   |
//! | UnknownMemberId                           | forget the member id, partitions lost, rejoin |
//! | RebalanceInProgress, IllegalGeneration    | rejoin; logged at info, not reported          |
//! | CoordinatorLoadInProgress                 | retry after a backoff                         |
//! | anything else                             | reported as [`GroupEvent::Error`] / `RebalanceError`, retried after a pause |
//!
//! Retries back off (`GroupConfig::retry_backoff`); nothing loops without waiting.
//!
//! Only one step runs at a time (`busy`); requests to rejoin that arrive meanwhile (a
//! subscription change, a heartbeat saying the group rebalances) are remembered and served
//! when the step ends, so a batch of them costs one rejoin.
//!
//! Eager assignors: everything owned is revoked before each join. Cooperative assignors
//! (KIP-429): the member keeps its partitions through the join; after the sync it revokes
//! only what the leader gave to someone else, then joins once more so those can be handed
//! over.
//!
//! The Coordinator on its own is the seeds' "NoMessages" mode: it takes part in the group and
//! reports assignments ([`GroupEvent`]) without consuming anything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use konsumer::group::{
    decode_assignment, difference, encode_subscription, lead, recovery, Assignment, Assignor,
    GroupConfig, JoinedMember, RebalanceProtocol, Recovery, Subscription, TopicPartitions,
};
use konsumer::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use konsumer::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use konsumer::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use konsumer::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use konsumer::kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::protocol::ApiKey;
use konsumer::{Context as ErrorContext, Error, KafkaCode};
use regex::Regex;
use slog::{debug, info, warn, Logger};

use crate::cluster::{Cluster, ClusterMetadata};
use crate::heartbeat::Heartbeat;
use crate::messages::{
    Call, Close, Commit, CommitOffset, ConnectionFor, EventSink, FetchCommitted, GetMembership,
    GetMetadata, GroupEvent, HeartbeatAs, HeartbeatOutcome, Membership, PartitionOffsets, Purpose,
    Release, Reply, Route, Subscribe, Target,
};

/// The consumer protocol type every member of a consumer group announces.
const PROTOCOL_TYPE: &str = "consumer";
/// Highest OffsetCommit version used: v10+ names topics by id.
const OFFSET_COMMIT_MAX_VERSION: i16 = 9;
/// Highest OffsetFetch version used: v8+ batches groups in another request shape.
const OFFSET_FETCH_MAX_VERSION: i16 = 7;
/// Extra time a JoinGroup answer may take beyond the rebalance timeout.
const JOIN_GRACE: Duration = Duration::from_secs(5);

/// One member of one consumer group. Start it with [`Coordinator::new`] and `.start()`.
pub struct Coordinator {
    cluster: Addr<Cluster>,
    config: Arc<GroupConfig>,
    log: Logger,
    events: EventSink,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    /// Topics named explicitly (configured, or added with [`Subscribe`]).
    explicit: BTreeSet<String>,
    /// The subscription sent at the last join: explicit topics plus pattern matches.
    topics: BTreeSet<String>,
    /// Partition counts of the subscribed topics when the member last joined.
    counts: BTreeMap<String, i32>,
    member_id: String,
    generation: i32,
    leader: bool,
    protocol: Option<String>,
    /// What the member owns now, and the generation it got it in.
    owned: Assignment,
    owned_generation: i32,
    coordinator: Option<Coordinates>,
    heartbeat: Option<Addr<Heartbeat>>,
    last_heartbeat_ok: Instant,
    /// Why the member must (re)join; `None` while it is stable.
    rejoin: Option<String>,
    /// A step (find, join, or a backoff before one) is under way.
    busy: bool,
    /// Consecutive failures, for the backoff.
    failures: u32,
    closed: bool,
    /// Who lets go of revoked partitions (drains and answers offsets to commit); see
    /// [`Release`].
    release: Option<Recipient<Release>>,
    /// Revoked partitions not yet released through `release`, and whether they were lost.
    to_release: TopicPartitions,
    to_release_lost: bool,
    /// The generation that owned `to_release`: a lost member forgets its generation before
    /// the release step runs, yet its release (its sidechannel handover) must name it.
    to_release_generation: i32,
}

/// Where the group's coordinator is, and the connections to it.
#[derive(Clone)]
struct Coordinates {
    node: i32,
    group: Recipient<Call>,
    heartbeat: Recipient<Call>,
}

/// What a successful join + sync (+ offset fetch) produced.
struct Joined {
    member_id: String,
    generation: i32,
    leader: bool,
    protocol: String,
    assignment: Assignment,
    topics: BTreeSet<String>,
    counts: BTreeMap<String, i32>,
    committed: PartitionOffsets<Option<i64>>,
}

impl Coordinator {
    /// A member for `config.group_id`, using `cluster` for metadata and connections, reporting
    /// to `events`. Fails on an invalid configuration or a pattern that is not a regex.
    pub fn new(
        cluster: Addr<Cluster>,
        config: GroupConfig,
        events: EventSink,
        log: Logger,
    ) -> Result<Self, Error> {
        config.validate()?;
        let compile = |patterns: &[String]| -> Result<Vec<Regex>, Error> {
            patterns
                .iter()
                .map(|p| {
                    Regex::new(&format!("^(?:{p})$")).map_err(|e| Error::Config {
                        field: "subscription",
                        detail: format!("pattern `{p}` is not a regular expression: {e}"),
                    })
                })
                .collect()
        };
        let include = compile(&config.subscription.include)?;
        let exclude = compile(&config.subscription.exclude)?;
        let explicit: BTreeSet<String> = config.subscription.topics.iter().cloned().collect();
        let log = log.new(slog::o!("group" => config.group_id.clone()));
        Ok(Coordinator {
            cluster,
            log,
            events,
            include,
            exclude,
            topics: explicit.clone(),
            explicit,
            counts: BTreeMap::new(),
            member_id: String::new(),
            generation: -1,
            leader: false,
            protocol: None,
            owned: Assignment::default(),
            owned_generation: -1,
            coordinator: None,
            heartbeat: None,
            last_heartbeat_ok: Instant::now(),
            rejoin: Some("first join".into()),
            busy: false,
            failures: 0,
            closed: false,
            release: None,
            to_release: TopicPartitions::new(),
            to_release_lost: false,
            to_release_generation: -1,
            config: Arc::new(config),
        })
    }

    /// Revoked partitions are handed to `hook` before the member rejoins (or leaves): it stops
    /// consuming them and answers their final offsets, which the Coordinator commits with the
    /// generation that still owns them. Without a hook, revocation is only announced
    /// ([`GroupEvent::Revoked`]).
    pub fn with_release(mut self, hook: Recipient<Release>) -> Self {
        self.release = Some(hook);
        self
    }

    /// Hands the partitions revoked so far to the release hook and commits what it answers.
    /// Runs as the first part of the next step (join or leave), so the commit goes out with
    /// the old generation, before the group can give the partitions to someone else.
    fn release_step(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        let partitions = std::mem::take(&mut self.to_release);
        let lost = std::mem::replace(&mut self.to_release_lost, false);
        let hook = self.release.clone().filter(|_| !partitions.is_empty());
        let commit_with = match (&self.coordinator, lost || self.generation < 0) {
            (Some(c), false) if !self.member_id.is_empty() => Some((
                c.group.clone(),
                CommitRequest {
                    group_id: self.config.group_id.clone(),
                    generation: self.generation,
                    member_id: self.member_id.clone(),
                    group_instance_id: self.config.group_instance_id.clone(),
                    retention: self.config.offset_retention,
                },
            )),
            _ => None,
        };
        let wait = self.config.rebalance_timeout + JOIN_GRACE;
        let generation = std::mem::replace(&mut self.to_release_generation, -1);
        let config = self.config.clone();
        let log = self.log.clone();
        let events = self.events.clone();
        async move {
            let Some(hook) = hook else {
                return;
            };
            let release = Release {
                generation,
                partitions,
                lost,
            };
            let offsets = match tokio::time::timeout(wait, hook.send(release)).await {
                Ok(Ok(offsets)) => offsets,
                Ok(Err(_)) => {
                    warn!(
                        log,
                        "release hook is gone; nothing to commit for revoked partitions"
                    );
                    return;
                }
                Err(_) => {
                    warn!(log, "release hook did not answer in time"; "waited" => ?wait);
                    return;
                }
            };
            let Some((connection, request)) = commit_with else {
                return;
            };
            if offsets.is_empty() {
                return;
            }
            let count = offsets.len();
            let committed: PartitionOffsets<i64> =
                offsets.iter().map(|(k, c)| (k.clone(), c.offset)).collect();
            let generation = request.generation;
            // A dead group connection fails the commit at once or after its timeout; the
            // connection restarts itself, so try again (while the rebalance can still wait)
            // rather than leave the next owner to re-read from the last commit.
            let deadline = tokio::time::Instant::now() + wait;
            let mut attempt = 0;
            let result = loop {
                let result = commit_offsets(
                    connection.clone(),
                    request.clone(),
                    offsets.clone(),
                    config.clone(),
                )
                .await;
                match result {
                    Err(error)
                        if attempt + 1 < RELEASE_COMMIT_ATTEMPTS
                            && is_transport(&error)
                            && tokio::time::Instant::now() < deadline =>
                    {
                        warn!(log, "commit of revoked partitions failed; trying again";
                            "error" => %error, "attempt" => attempt + 1);
                        tokio::time::sleep(config.retry_backoff.delay(attempt, fastrand::f64()))
                            .await;
                        attempt += 1;
                    }
                    other => break other,
                }
            };
            match result {
                Ok(()) => {
                    info!(log, "committed revoked partitions"; "partitions" => count);
                    events.send(GroupEvent::Committed {
                        generation,
                        offsets: committed,
                    });
                }
                Err(error) => {
                    warn!(log, "commit of revoked partitions failed"; "error" => %error);
                    events.send(GroupEvent::Error { error });
                }
            }
        }
    }

    fn group(&self) -> &str {
        &self.config.group_id
    }

    fn cooperative(&self) -> bool {
        self.config.assignors[0].rebalance_protocol() == RebalanceProtocol::Cooperative
    }

    /// Topics the member subscribes to, given the cluster's topics now.
    fn wanted_topics(&self, metadata: &ClusterMetadata) -> BTreeSet<String> {
        subscribed_topics(&self.explicit, &self.include, &self.exclude, metadata)
    }

    /// The next step, unless one is running: find the coordinator, (re)join, or keep
    /// heartbeating.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        if self.closed || self.busy {
            return;
        }
        if self.coordinator.is_none() {
            self.find_coordinator(ctx);
        } else if self.rejoin.is_some() {
            self.join(ctx);
        } else {
            self.ensure_heartbeat(ctx);
        }
    }

    /// Waits a backoff, then drives again.
    fn retry_later(&mut self, ctx: &mut Context<Self>) {
        let delay = self
            .config
            .retry_backoff
            .delay(self.failures, fastrand::f64());
        self.failures = self.failures.saturating_add(1);
        self.busy = true;
        ctx.run_later(delay, |act, ctx| {
            act.busy = false;
            act.drive(ctx);
        });
    }

    fn find_coordinator(&mut self, ctx: &mut Context<Self>) {
        self.busy = true;
        let cluster = self.cluster.clone();
        let group = self.config.group_id.clone();
        let work = async move {
            let metadata = cluster
                .send(GetMetadata { refresh: false })
                .await
                .map_err(|_| Error::Shutdown("cluster".into()))??;
            // Every known broker in turn until one answers.
            let mut nodes: Vec<i32> = metadata.brokers.keys().copied().collect();
            fastrand::shuffle(&mut nodes);
            let mut last = Error::UnknownBroker { node_id: -1 };
            for node in nodes {
                match find_coordinator_on(&cluster, node, &group).await {
                    Ok(coordinator) => return connect_coordinator(&cluster, coordinator).await,
                    Err(error) if error.kafka_code().is_some() => return Err(error),
                    Err(error) => last = error,
                }
            }
            Err(last)
        };
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            act.busy = false;
            if act.closed {
                return;
            }
            match result {
                Ok(coordinates) => {
                    info!(act.log, "group coordinator found"; "node" => coordinates.node);
                    act.coordinator = Some(coordinates);
                    act.failures = 0;
                    act.stop_heartbeat();
                    act.drive(ctx);
                }
                Err(error) => act.on_error(error, ctx),
            }
        }));
    }

    /// Starts a rebalance: announces it, gives up what eager rebalancing requires, then runs
    /// join + sync + offset fetch as one step.
    fn join(&mut self, ctx: &mut Context<Self>) {
        let Some(coordinator) = self.coordinator.clone() else {
            return;
        };
        self.busy = true;
        let reason = self.rejoin.clone().unwrap_or_default();
        info!(self.log, "joining group"; "reason" => &reason, "member_id" => &self.member_id,
            "generation" => self.generation);
        self.events.send(GroupEvent::RebalanceStart {
            reason,
            current: self.owned.partitions.clone(),
        });
        if !self.cooperative() && !self.owned.is_empty() {
            self.revoke(self.owned.partitions.clone(), false);
        }
        let input = JoinInput {
            cluster: self.cluster.clone(),
            connection: coordinator.group,
            config: self.config.clone(),
            explicit: self.explicit.clone(),
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            member_id: self.member_id.clone(),
            owned: self.owned.clone(),
            owned_generation: self.owned_generation,
            log: self.log.clone(),
        };
        let (learned_tx, mut learned_rx) = tokio::sync::oneshot::channel();
        let release = self.release_step();
        let work = async move {
            release.await;
            join_and_sync(input, learned_tx).await
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.busy = false;
            if act.closed {
                return;
            }
            // A member id learned from MEMBER_ID_REQUIRED is kept even if a later step failed.
            if let Ok(id) = learned_rx.try_recv() {
                act.member_id = id;
            }
            match result {
                Ok(joined) => act.joined(joined, ctx),
                Err(error) => act.on_error(error, ctx),
            }
        }));
    }

    fn joined(&mut self, joined: Joined, ctx: &mut Context<Self>) {
        let previous = self.owned.partitions.clone();
        let new = joined.assignment.partitions.clone();
        let claimed = difference(&new, &previous);
        let released = difference(&previous, &new);
        self.member_id = joined.member_id.clone();
        self.generation = joined.generation;
        self.leader = joined.leader;
        self.protocol = Some(joined.protocol.clone());
        self.topics = joined.topics;
        self.counts = joined.counts;
        self.failures = 0;
        self.rejoin = None;
        if !released.is_empty() {
            // Cooperative: only what moves to someone else; join again to hand it over.
            self.revoke(released.clone(), false);
            self.rejoin = Some("cooperative rebalance: partitions handed over".into());
        }
        self.owned = joined.assignment.clone();
        self.owned_generation = joined.generation;
        info!(self.log, "group joined"; "member_id" => &self.member_id,
            "generation" => self.generation, "leader" => self.leader,
            "protocol" => &joined.protocol, "partitions" => self.owned.len(),
            "claimed" => claimed.values().map(Vec::len).sum::<usize>(),
            "released" => released.values().map(Vec::len).sum::<usize>());
        self.events.send(GroupEvent::RebalanceOk {
            generation: joined.generation,
            member_id: joined.member_id,
            leader: joined.leader,
            protocol: joined.protocol,
            assignment: joined.assignment,
            claimed,
            released,
            current: new,
            committed: joined.committed,
        });
        self.last_heartbeat_ok = Instant::now();
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.do_send(HeartbeatAs {
                generation: self.generation,
                member_id: self.member_id.clone(),
            });
        }
        self.drive(ctx);
    }

    /// Tells the user the member no longer owns `partitions`.
    fn revoke(&mut self, partitions: TopicPartitions, lost: bool) {
        if partitions.is_empty() {
            return;
        }
        for (topic, ps) in &partitions {
            if let Some(owned) = self.owned.partitions.get_mut(topic) {
                owned.retain(|p| !ps.contains(p));
            }
        }
        self.owned.partitions.retain(|_, ps| !ps.is_empty());
        if self.release.is_some() {
            for (topic, ps) in &partitions {
                let entry = self.to_release.entry(topic.clone()).or_default();
                entry.extend(ps.iter().copied());
                entry.sort_unstable();
                entry.dedup();
            }
            self.to_release_lost |= lost;
            self.to_release_generation = self.to_release_generation.max(self.owned_generation);
        }
        self.events.send(GroupEvent::Revoked {
            generation: self.owned_generation,
            partitions,
            lost,
        });
    }

    /// The member was dropped by the group: what it held is gone.
    fn lose_everything(&mut self) {
        let all = self.owned.partitions.clone();
        self.revoke(all, true);
        self.generation = -1;
        self.owned_generation = -1;
    }

    fn ensure_heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.heartbeat.is_some() || self.generation < 0 {
            return;
        }
        let Some(coordinator) = &self.coordinator else {
            return;
        };
        let heartbeat = Heartbeat::new(
            coordinator.heartbeat.clone(),
            ctx.address().recipient(),
            self.config.group_id.clone(),
            self.config.group_instance_id.clone(),
            HeartbeatAs {
                generation: self.generation,
                member_id: self.member_id.clone(),
            },
            self.config.heartbeat_interval,
            self.config.session_timeout,
            self.log.clone(),
        );
        self.last_heartbeat_ok = Instant::now();
        self.heartbeat = Some(heartbeat.start());
    }

    fn stop_heartbeat(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.do_send(Close);
        }
    }

    /// The error table (see the module doc).
    fn on_error(&mut self, error: Error, ctx: &mut Context<Self>) {
        match recovery(&error) {
            Recovery::FindCoordinator => {
                info!(self.log, "looking for the group coordinator again"; "cause" => %error);
                self.coordinator = None;
                self.stop_heartbeat();
                self.retry_later(ctx);
            }
            Recovery::Rejoin => {
                info!(self.log, "rejoining the group"; "cause" => %error);
                if self.rejoin.is_none() {
                    self.rejoin = Some(error.to_string());
                }
                if error.kafka_code() == Some(KafkaCode::IllegalGeneration) {
                    self.lose_everything();
                }
                self.drive(ctx);
            }
            Recovery::ResetMember => {
                info!(self.log, "the coordinator forgot this member; joining as a new one";
                    "member_id" => &self.member_id, "cause" => %error);
                self.lose_everything();
                self.member_id.clear();
                self.stop_heartbeat();
                self.rejoin = Some(error.to_string());
                self.drive(ctx);
            }
            Recovery::Retry => {
                debug!(self.log, "retrying after a backoff"; "cause" => %error);
                self.retry_later(ctx);
            }
            Recovery::Report => {
                warn!(self.log, "group error"; "error" => %error);
                if self.rejoin.is_some() {
                    self.events.send(GroupEvent::RebalanceError {
                        error,
                        current: self.owned.partitions.clone(),
                    });
                } else {
                    self.events.send(GroupEvent::Error { error });
                }
                self.retry_later(ctx);
            }
        }
    }

    /// Checks the subscribed topics' partition counts (and pattern matches); a change makes
    /// the member rejoin so the leader can assign the new partitions.
    fn check_metadata(&mut self, ctx: &mut Context<Self>) {
        if self.closed || self.busy || self.rejoin.is_some() || self.generation < 0 {
            return;
        }
        let refresh = self.cluster.send(GetMetadata { refresh: true });
        ctx.spawn(refresh.into_actor(self).map(|result, act, ctx| {
            let metadata = match result {
                Ok(Ok(metadata)) => metadata,
                Ok(Err(error)) => {
                    act.events.send(GroupEvent::Error { error });
                    return;
                }
                Err(_) => return,
            };
            let topics = act.wanted_topics(&metadata);
            let counts = partition_counts(&metadata, &topics);
            if act.rejoin.is_none() && (topics != act.topics || counts != act.counts) {
                act.rejoin = Some(format!(
                    "subscription changed: topics {:?} -> {:?}, partitions {:?} -> {:?}",
                    act.topics, topics, act.counts, counts
                ));
                act.drive(ctx);
            }
        }));
    }

    fn membership(&self) -> Membership {
        Membership {
            member_id: self.member_id.clone(),
            generation: self.generation,
            leader: self.leader,
            protocol: self.protocol.clone(),
            topics: self.topics.iter().cloned().collect(),
            assignment: self.owned.clone(),
        }
    }

    /// The group connection, if the member holds a generation it may commit with.
    fn commit_target(&self) -> Result<Recipient<Call>, Error> {
        let context = || {
            ErrorContext::default()
                .with_api(ApiKey::OffsetCommit)
                .with_group(self.group())
        };
        if self.generation < 0 || self.member_id.is_empty() {
            return Err(Error::Broker {
                code: KafkaCode::UnknownMemberId,
                context: context(),
            });
        }
        if self.rejoin.is_some() && !self.cooperative() {
            return Err(Error::Broker {
                code: KafkaCode::RebalanceInProgress,
                context: context(),
            });
        }
        match &self.coordinator {
            Some(c) => Ok(c.group.clone()),
            None => Err(Error::Broker {
                code: KafkaCode::CoordinatorNotAvailable,
                context: context(),
            }),
        }
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.config.metadata_check_interval, |act, ctx| {
            act.check_metadata(ctx)
        });
        self.drive(ctx);
    }
}

impl Handler<HeartbeatOutcome> for Coordinator {
    type Result = ();

    fn handle(&mut self, outcome: HeartbeatOutcome, ctx: &mut Context<Self>) {
        if outcome.generation != self.generation || outcome.member_id != self.member_id {
            return; // about an older generation
        }
        match outcome.result {
            Ok(()) => self.last_heartbeat_ok = Instant::now(),
            // While a step runs, it meets the same errors itself (a join expects
            // RebalanceInProgress); acting twice would start a second join.
            Err(_) if self.busy || self.rejoin.is_some() => {}
            Err(error) => {
                if self.last_heartbeat_ok.elapsed() > self.config.session_timeout {
                    warn!(self.log, "no successful heartbeat within the session timeout; the group has dropped this member";
                        "error" => %error);
                    self.lose_everything();
                }
                self.on_error(error, ctx);
            }
        }
    }
}

impl Handler<Subscribe> for Coordinator {
    type Result = Result<(), Error>;

    fn handle(&mut self, subscribe: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(empty) = subscribe.topics.iter().find(|t| t.is_empty()) {
            return Err(Error::Config {
                field: "subscription",
                detail: format!("empty topic name {empty:?}"),
            });
        }
        let added: Vec<String> = subscribe
            .topics
            .into_iter()
            .filter(|t| self.explicit.insert(t.clone()))
            .collect();
        if !added.is_empty() && added.iter().any(|t| !self.topics.contains(t)) {
            if self.rejoin.is_none() {
                self.rejoin = Some(format!("subscribed to {added:?}"));
            }
            self.drive(ctx);
        }
        Ok(())
    }
}

impl Handler<GetMembership> for Coordinator {
    type Result = MessageResult<GetMembership>;

    fn handle(&mut self, _: GetMembership, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.membership())
    }
}

impl Handler<Commit> for Coordinator {
    type Result = ResponseActFuture<Self, Result<(), Error>>;

    fn handle(&mut self, commit: Commit, _: &mut Context<Self>) -> Self::Result {
        let connection = match self.commit_target() {
            Ok(c) => c,
            Err(error) => return Box::pin(fut::ready(Err(error))),
        };
        let request = CommitRequest {
            group_id: self.config.group_id.clone(),
            generation: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
            retention: self.config.offset_retention,
        };
        let config = self.config.clone();
        let work = commit_offsets(connection, request, commit.offsets, config);
        Box::pin(work.into_actor(self).map(|result, act, ctx| {
            if let Err(error) = &result {
                // The table decides about the membership too (coordinator moved, member gone);
                // the caller gets the error either way.
                if matches!(
                    recovery(error),
                    Recovery::FindCoordinator | Recovery::ResetMember | Recovery::Rejoin
                ) && !act.busy
                {
                    act.on_error(error.clone(), ctx);
                }
            }
            result
        }))
    }
}

impl Handler<FetchCommitted> for Coordinator {
    type Result = ResponseFuture<Result<PartitionOffsets<Option<i64>>, Error>>;

    fn handle(&mut self, fetch: FetchCommitted, _: &mut Context<Self>) -> Self::Result {
        let Some(coordinator) = &self.coordinator else {
            let error = Error::Broker {
                code: KafkaCode::CoordinatorNotAvailable,
                context: ErrorContext::default()
                    .with_api(ApiKey::OffsetFetch)
                    .with_group(self.group()),
            };
            return Box::pin(async move { Err(error) });
        };
        Box::pin(fetch_committed(
            coordinator.group.clone(),
            self.config.clone(),
            fetch.partitions,
        ))
    }
}

impl Handler<Close> for Coordinator {
    type Result = ResponseActFuture<Self, ()>;

    /// Gives up every partition, leaves the group (a static member stays, as KIP-345 asks: its
    /// partitions wait for it until the session timeout), and stops.
    fn handle(&mut self, _: Close, _: &mut Context<Self>) -> Self::Result {
        self.closed = true;
        self.stop_heartbeat();
        let all = self.owned.partitions.clone();
        self.revoke(all, false);
        let release = self.release_step();
        let leave = match (&self.coordinator, self.config.group_instance_id.is_some()) {
            (Some(c), false) if !self.member_id.is_empty() => Some((
                c.group.clone(),
                LeaveGroupRequest::default()
                    .with_group_id(group_id(self.group()))
                    .with_member_id(StrBytes::from_string(self.member_id.clone())),
            )),
            _ => None,
        };
        let log = self.log.clone();
        Box::pin(
            async move {
                release.await;
                if let Some((connection, request)) = leave {
                    match connection.send(Call::new(request)).await {
                        Ok(Ok(reply)) => match reply.into_typed::<LeaveGroupRequest>("leave") {
                            Ok(r) if r.error_code == 0 => info!(log, "left the group"),
                            Ok(r) => {
                                warn!(log, "LeaveGroup answered"; "error_code" => r.error_code)
                            }
                            Err(e) => warn!(log, "LeaveGroup failed"; "error" => %e),
                        },
                        Ok(Err(e)) => warn!(log, "LeaveGroup failed"; "error" => %e),
                        Err(_) => warn!(log, "LeaveGroup failed: connection gone"),
                    }
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}

// ---- The steps, as futures that own what they need (the actor stays free meanwhile) ----

/// Attempts at committing released partitions when the connection fails under the commit.
const RELEASE_COMMIT_ATTEMPTS: u32 = 3;

/// The connection failed (not the broker refusing): worth another try on a fresh one.
fn is_transport(error: &Error) -> bool {
    matches!(
        error,
        Error::Connect { .. }
            | Error::Io { .. }
            | Error::ConnectionClosed { .. }
            | Error::Timeout { .. }
    )
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_owned()))
}

fn group_context(group: &str, api: ApiKey) -> ErrorContext {
    ErrorContext::default().with_api(api).with_group(group)
}

async fn send(connection: &Recipient<Call>, call: Call) -> Result<Reply, Error> {
    connection
        .send(call)
        .await
        .map_err(|_| Error::Shutdown("group connection".into()))?
}

/// Asks broker `node` which broker coordinates `group`.
async fn find_coordinator_on(
    cluster: &Addr<Cluster>,
    node: i32,
    group: &str,
) -> Result<i32, Error> {
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_owned()))
        .with_key_type(0);
    let reply = cluster
        .send(Route {
            target: Target::Broker(node),
            purpose: Purpose::General,
            call: Call::new(request),
        })
        .await
        .map_err(|_| Error::Shutdown("cluster".into()))??;
    let response = reply.into_typed::<FindCoordinatorRequest>("find coordinator")?;
    let context = || group_context(group, ApiKey::FindCoordinator);
    // v4+ answers per key; older versions at the top level.
    let (code, coordinator) = match response.coordinators.first() {
        Some(c) => (c.error_code, c.node_id.0),
        None => (response.error_code, response.node_id.0),
    };
    Error::check(code, context)?;
    if coordinator < 0 {
        return Err(Error::Broker {
            code: KafkaCode::CoordinatorNotAvailable,
            context: context(),
        });
    }
    Ok(coordinator)
}

async fn connect_coordinator(cluster: &Addr<Cluster>, node: i32) -> Result<Coordinates, Error> {
    let connection = |purpose| ConnectionFor {
        target: Target::Broker(node),
        purpose,
    };
    let shut = |_| Error::Shutdown("cluster".into());
    let (_, group) = cluster
        .send(connection(Purpose::Group))
        .await
        .map_err(shut)??;
    let (_, heartbeat) = cluster
        .send(connection(Purpose::Heartbeat))
        .await
        .map_err(shut)??;
    Ok(Coordinates {
        node,
        group,
        heartbeat,
    })
}

/// The explicit topics, plus every non-internal topic of the cluster whose whole name matches an
/// `include` pattern and no `exclude` pattern.
fn subscribed_topics(
    explicit: &BTreeSet<String>,
    include: &[Regex],
    exclude: &[Regex],
    metadata: &ClusterMetadata,
) -> BTreeSet<String> {
    let mut topics = explicit.clone();
    if !include.is_empty() {
        topics.extend(
            metadata
                .topics
                .values()
                .filter(|t| !t.is_internal)
                .map(|t| &t.name)
                .filter(|name| include.iter().any(|r| r.is_match(name)))
                .filter(|name| !exclude.iter().any(|r| r.is_match(name)))
                .cloned(),
        );
    }
    topics
}

fn partition_counts(
    metadata: &ClusterMetadata,
    topics: &BTreeSet<String>,
) -> BTreeMap<String, i32> {
    topics
        .iter()
        .filter_map(|t| {
            let info = metadata.topics.get(t)?;
            if info.error.is_some() || info.partitions.is_empty() {
                return None;
            }
            Some((t.clone(), info.partitions.len() as i32))
        })
        .collect()
}

struct JoinInput {
    cluster: Addr<Cluster>,
    connection: Recipient<Call>,
    config: Arc<GroupConfig>,
    explicit: BTreeSet<String>,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    member_id: String,
    owned: Assignment,
    owned_generation: i32,
    log: Logger,
}

/// JoinGroup (twice when the coordinator hands out a member id first), the leader's
/// assignment, SyncGroup, then the committed offsets of the partitions gained.
async fn join_and_sync(
    input: JoinInput,
    learned_member_id: tokio::sync::oneshot::Sender<String>,
) -> Result<Joined, Error> {
    let config = &input.config;
    let group = config.group_id.as_str();
    let metadata = input
        .cluster
        .send(GetMetadata { refresh: true })
        .await
        .map_err(|_| Error::Shutdown("cluster".into()))??;
    let topics = subscribed_topics(&input.explicit, &input.include, &input.exclude, &metadata);
    let counts = partition_counts(&metadata, &topics);
    let mut protocols = Vec::with_capacity(config.assignors.len());
    for assignor in &config.assignors {
        let subscription = Subscription {
            topics: topics.iter().cloned().collect(),
            user_data: assignor.user_data(&input.owned.partitions, input.owned_generation),
            owned_partitions: input.owned.partitions.clone(),
            generation_id: input.owned_generation,
            rack_id: config.rack_id.clone(),
        };
        let metadata =
            encode_subscription(&subscription, 3).map_err(|detail| Error::GroupProtocol {
                group: group.to_owned(),
                member: input.member_id.clone(),
                detail,
            })?;
        protocols.push(
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(assignor.name()))
                .with_metadata(metadata),
        );
    }
    let mut member_id = input.member_id.clone();
    let mut learned = Some(learned_member_id);
    let response = loop {
        let request = JoinGroupRequest::default()
            .with_group_id(group_id(group))
            .with_session_timeout_ms(config.session_timeout.as_millis() as i32)
            .with_rebalance_timeout_ms(config.rebalance_timeout.as_millis() as i32)
            .with_member_id(StrBytes::from_string(member_id.clone()))
            .with_group_instance_id(config.group_instance_id.clone().map(StrBytes::from_string))
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(protocols.clone());
        let call = Call::new(request).with_timeout(config.rebalance_timeout + JOIN_GRACE);
        let response = send(&input.connection, call)
            .await?
            .into_typed::<JoinGroupRequest>("join")?;
        if response.error_code == KafkaCode::MemberIdRequired.code() && member_id.is_empty() {
            // KIP-394: the coordinator names us; join again at once with that id.
            member_id = response.member_id.to_string();
            debug!(input.log, "coordinator assigned a member id"; "member_id" => &member_id);
            if let Some(tx) = learned.take() {
                let _ = tx.send(member_id.clone());
            }
            continue;
        }
        Error::check(response.error_code, || {
            group_context(group, ApiKey::JoinGroup)
        })?;
        break response;
    };
    let member_id = response.member_id.to_string();
    let generation = response.generation_id;
    let leader = response.leader == response.member_id;
    let protocol = response
        .protocol_name
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let assignor: &Arc<dyn Assignor> = config
        .assignors
        .iter()
        .find(|a| a.name() == protocol)
        .ok_or_else(|| Error::GroupProtocol {
            group: group.to_owned(),
            member: member_id.clone(),
            detail: format!(
                "the group chose protocol `{protocol}`, which this member did not offer"
            ),
        })?;
    let assignments = if leader {
        // The leader needs partition counts for every member's topics, not just its own.
        let metadata = input
            .cluster
            .send(GetMetadata { refresh: false })
            .await
            .map_err(|_| Error::Shutdown("cluster".into()))??;
        let joined: Vec<JoinedMember> = response
            .members
            .iter()
            .map(|m| JoinedMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                metadata: m.metadata.clone(),
            })
            .collect();
        let plan = lead(assignor.as_ref(), group, &joined, |topic| {
            metadata
                .partition_count(topic)
                .filter(|n| *n > 0)
                .map(|n| n as i32)
        })?;
        info!(input.log, "assigned partitions as the group leader";
            "members" => joined.len(), "protocol" => &protocol, "generation" => generation);
        plan.into_iter()
            .map(|(member, assignment)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(assignment)
            })
            .collect()
    } else {
        Vec::new()
    };
    let request = SyncGroupRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member_id.clone()))
        .with_group_instance_id(config.group_instance_id.clone().map(StrBytes::from_string))
        .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
        .with_protocol_name(Some(StrBytes::from_string(protocol.clone())))
        .with_assignments(assignments);
    let call = Call::new(request).with_timeout(config.rebalance_timeout + JOIN_GRACE);
    let response = send(&input.connection, call)
        .await?
        .into_typed::<SyncGroupRequest>("sync")?;
    Error::check(response.error_code, || {
        group_context(group, ApiKey::SyncGroup)
    })?;
    let assignment =
        decode_assignment(&response.assignment).map_err(|detail| Error::GroupProtocol {
            group: group.to_owned(),
            member: member_id.clone(),
            detail: format!("assignment from the leader: {detail}"),
        })?;
    let claimed = difference(&assignment.partitions, &input.owned.partitions);
    let committed = if claimed.is_empty() {
        PartitionOffsets::new()
    } else {
        fetch_committed(input.connection.clone(), input.config.clone(), claimed).await?
    };
    Ok(Joined {
        member_id,
        generation,
        leader,
        protocol,
        assignment,
        topics,
        counts,
        committed,
    })
}

/// OffsetFetch for `partitions`, retrying while the coordinator loads offsets.
async fn fetch_committed(
    connection: Recipient<Call>,
    config: Arc<GroupConfig>,
    partitions: TopicPartitions,
) -> Result<PartitionOffsets<Option<i64>>, Error> {
    let group = config.group_id.as_str();
    let topics = partitions
        .iter()
        .map(|(topic, ps)| {
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_partition_indexes(ps.clone())
        })
        .collect();
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(Some(topics));
    let mut attempt = 0;
    loop {
        let call = Call::new(request.clone()).with_max_version(OFFSET_FETCH_MAX_VERSION);
        let result: Result<_, Error> = async {
            let response = send(&connection, call)
                .await?
                .into_typed::<OffsetFetchRequest>("offset fetch")?;
            Error::check(response.error_code, || {
                group_context(group, ApiKey::OffsetFetch)
            })?;
            let mut out = PartitionOffsets::new();
            for topic in &response.topics {
                for p in &topic.partitions {
                    Error::check(p.error_code, || {
                        group_context(group, ApiKey::OffsetFetch)
                            .with_topic(topic.name.0.as_str())
                            .with_partition(p.partition_index)
                    })?;
                    let offset = (p.committed_offset >= 0).then_some(p.committed_offset);
                    out.insert((topic.name.0.to_string(), p.partition_index), offset);
                }
            }
            Ok(out)
        }
        .await;
        match result {
            Err(error)
                if attempt + 1 < config.offset_retries
                    && matches!(
                        error.kafka_code(),
                        Some(
                            KafkaCode::CoordinatorLoadInProgress | KafkaCode::UnstableOffsetCommit
                        )
                    ) =>
            {
                tokio::time::sleep(config.retry_backoff.delay(attempt, fastrand::f64())).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[derive(Clone)]
struct CommitRequest {
    group_id: String,
    generation: i32,
    member_id: String,
    group_instance_id: Option<String>,
    retention: Option<Duration>,
}

/// OffsetCommit with the member's generation. Retries (bounded) what may pass: the
/// coordinator loading, a timeout; on OFFSET_METADATA_TOO_LARGE, commits again without the
/// metadata text. Errors that concern the membership are returned for the Coordinator.
async fn commit_offsets(
    connection: Recipient<Call>,
    who: CommitRequest,
    offsets: PartitionOffsets<CommitOffset>,
    config: Arc<GroupConfig>,
) -> Result<(), Error> {
    let group = who.group_id.as_str();
    let mut with_metadata = true;
    let mut attempt = 0;
    loop {
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), commit) in &offsets {
            topics.entry(topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(commit.offset)
                    .with_committed_leader_epoch(commit.leader_epoch.unwrap_or(-1))
                    .with_committed_metadata(if with_metadata {
                        commit.metadata.clone().map(StrBytes::from_string)
                    } else {
                        None
                    }),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(who.generation)
            .with_member_id(StrBytes::from_string(who.member_id.clone()))
            .with_group_instance_id(who.group_instance_id.clone().map(StrBytes::from_string))
            .with_retention_time_ms(who.retention.map_or(-1, |r| r.as_millis() as i64))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let call = Call::new(request).with_max_version(OFFSET_COMMIT_MAX_VERSION);
        let result: Result<(), Error> = async {
            let response = send(&connection, call)
                .await?
                .into_typed::<OffsetCommitRequest>("offset commit")?;
            for topic in &response.topics {
                for p in &topic.partitions {
                    Error::check(p.error_code, || {
                        group_context(group, ApiKey::OffsetCommit)
                            .with_topic(topic.name.0.as_str())
                            .with_partition(p.partition_index)
                    })?;
                }
            }
            Ok(())
        }
        .await;
        match result {
            Err(error)
                if with_metadata
                    && error.kafka_code() == Some(KafkaCode::OffsetMetadataTooLarge) =>
            {
                with_metadata = false;
            }
            Err(error)
                if attempt + 1 < config.offset_retries
                    && matches!(
                        error.kafka_code(),
                        Some(KafkaCode::CoordinatorLoadInProgress | KafkaCode::RequestTimedOut)
                    ) =>
            {
                tokio::time::sleep(config.retry_backoff.delay(attempt, fastrand::f64())).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
