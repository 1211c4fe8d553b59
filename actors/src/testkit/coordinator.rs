//! The mocked brokers' group coordinator: Kafka's classic group protocol, kept small.
//!
//! What it keeps from a real coordinator, because clients depend on it:
//! - the **join barrier**: a JoinGroup is answered only when every known member has joined
//!   (or the rebalance timeout has passed; members that did not join are then removed);
//! - the **sync barrier**: followers' SyncGroup answers wait for the leader's assignments;
//! - KIP-394 (MEMBER_ID_REQUIRED for a first join at v4+), the leader staying the leader while
//!   it remains a member, the first protocol every member supports being chosen;
//! - heartbeats answered RebalanceInProgress while a rebalance is under way, IllegalGeneration
//!   for an old generation, UnknownMemberId for a stranger;
//! - LeaveGroup starting a rebalance for the members that stay; offsets committed per group.
//!
//! Left out: session expiry (a member that stops heartbeating stays until the next rebalance
//! timeout), static-member replacement, and the consumer protocol's new (KIP-848) APIs.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use konsumer::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use konsumer::kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::KafkaCode;
use tokio::sync::oneshot;

/// A snapshot of one group, for tests to inspect.
#[derive(Debug, Default, Clone)]
pub struct MockGroup {
    pub generation: i32,
    pub leader: Option<String>,
    /// Member id -> group instance id (static members).
    pub members: BTreeMap<String, Option<String>>,
    pub protocol: Option<String>,
    /// Committed offsets: (topic, partition) -> (offset, metadata).
    pub committed: BTreeMap<(String, i32), (i64, Option<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    #[default]
    Empty,
    /// Waiting for every member's JoinGroup.
    Joining,
    /// Joined; waiting for the leader's SyncGroup.
    Syncing,
    Stable,
}

#[derive(Debug)]
struct Member {
    group_instance_id: Option<String>,
    protocols: Vec<(String, Bytes)>,
    rebalance_timeout: Duration,
    assignment: Bytes,
    join: Option<oneshot::Sender<JoinGroupResponse>>,
    sync: Option<oneshot::Sender<SyncGroupResponse>>,
}

#[derive(Debug, Default)]
struct Group {
    phase: Phase,
    generation: i32,
    /// Counts rebalances, so a timer can tell whether the rebalance it guards is still on.
    rebalance: u64,
    leader: Option<String>,
    protocol: Option<String>,
    members: BTreeMap<String, Member>,
    committed: BTreeMap<(String, i32), (i64, Option<String>)>,
}

/// An answer now, or one that comes when a barrier opens.
pub(crate) enum Answer<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// A rebalance that needs a timer: when `after` has passed, call
/// [`GroupCoordinator::rebalance_timed_out`] with `group` and `rebalance`.
pub(crate) struct Timer {
    pub group: String,
    pub rebalance: u64,
    pub after: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct GroupCoordinator {
    groups: BTreeMap<String, Group>,
    next_member: u64,
}

impl GroupCoordinator {
    pub fn snapshot(&self, group: &str) -> Option<MockGroup> {
        let g = self.groups.get(group)?;
        Some(MockGroup {
            generation: g.generation,
            leader: g.leader.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| (id.clone(), m.group_instance_id.clone()))
                .collect(),
            protocol: g.protocol.clone(),
            committed: g.committed.clone(),
        })
    }

    pub fn join(
        &mut self,
        version: i16,
        req: &JoinGroupRequest,
    ) -> (Answer<JoinGroupResponse>, Option<Timer>) {
        let error = |code: KafkaCode| JoinGroupResponse::default().with_error_code(code.code());
        if req.member_id.is_empty() && version >= 4 {
            self.next_member += 1;
            let id = format!("mock-member-{}", self.next_member);
            let answer =
                error(KafkaCode::MemberIdRequired).with_member_id(StrBytes::from_string(id));
            return (Answer::Now(answer), None);
        }
        let member_id = if req.member_id.is_empty() {
            self.next_member += 1;
            format!("mock-member-{}", self.next_member)
        } else {
            req.member_id.to_string()
        };
        let group_name = req.group_id.0.to_string();
        let group = self.groups.entry(group_name.clone()).or_default();
        // Every member must share a protocol with the group.
        let protocols: Vec<(String, Bytes)> = req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();
        let shared = group.members.values().all(|m| {
            m.protocols
                .iter()
                .any(|(name, _)| protocols.iter().any(|(n, _)| n == name))
        });
        if protocols.is_empty() || !shared {
            return (
                Answer::Now(error(KafkaCode::InconsistentGroupProtocol)),
                None,
            );
        }
        let (tx, rx) = oneshot::channel();
        let rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64);
        let member = group.members.entry(member_id.clone()).or_insert(Member {
            group_instance_id: None,
            protocols: Vec::new(),
            rebalance_timeout,
            assignment: Bytes::new(),
            join: None,
            sync: None,
        });
        member.group_instance_id = req.group_instance_id.as_ref().map(|i| i.to_string());
        member.protocols = protocols;
        member.rebalance_timeout = rebalance_timeout;
        member.join = Some(tx);
        let timer = Self::prepare_rebalance(&group_name, group);
        Self::complete_join_if_ready(group);
        (Answer::Later(rx), timer)
    }

    /// Moves the group into a rebalance (if not in one): pending syncs fail, and a timer
    /// guards the join barrier.
    fn prepare_rebalance(name: &str, group: &mut Group) -> Option<Timer> {
        if group.phase == Phase::Joining {
            return None;
        }
        for member in group.members.values_mut() {
            if let Some(sync) = member.sync.take() {
                let _ = sync.send(
                    SyncGroupResponse::default()
                        .with_error_code(KafkaCode::RebalanceInProgress.code()),
                );
            }
        }
        group.phase = Phase::Joining;
        group.rebalance += 1;
        let after = group
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(1));
        Some(Timer {
            group: name.to_owned(),
            rebalance: group.rebalance,
            after,
        })
    }

    /// The join barrier: when every member has a JoinGroup waiting, a new generation starts
    /// and they are all answered (the leader with every member's metadata).
    fn complete_join_if_ready(group: &mut Group) {
        if group.phase != Phase::Joining
            || group.members.is_empty()
            || group.members.values().any(|m| m.join.is_none())
        {
            return;
        }
        // The first protocol of the first member that every member supports.
        let Some(protocol) = group.members.values().next().and_then(|first| {
            first
                .protocols
                .iter()
                .map(|(name, _)| name.clone())
                .find(|name| {
                    group
                        .members
                        .values()
                        .all(|m| m.protocols.iter().any(|(n, _)| n == name))
                })
        }) else {
            for member in group.members.values_mut() {
                if let Some(join) = member.join.take() {
                    let _ = join.send(
                        JoinGroupResponse::default()
                            .with_error_code(KafkaCode::InconsistentGroupProtocol.code()),
                    );
                }
            }
            group.phase = Phase::Empty;
            return;
        };
        group.generation += 1;
        if group
            .leader
            .as_ref()
            .is_none_or(|l| !group.members.contains_key(l))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.protocol = Some(protocol.clone());
        group.phase = Phase::Syncing;
        let leader = group.leader.clone().unwrap_or_default();
        let everyone: Vec<JoinGroupResponseMember> = group
            .members
            .iter()
            .map(|(id, m)| {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                JoinGroupResponseMember::default()
                    .with_member_id(StrBytes::from_string(id.clone()))
                    .with_group_instance_id(m.group_instance_id.clone().map(StrBytes::from_string))
                    .with_metadata(metadata)
            })
            .collect();
        for (id, member) in group.members.iter_mut() {
            member.assignment = Bytes::new();
            if let Some(join) = member.join.take() {
                let members = if *id == leader {
                    everyone.clone()
                } else {
                    Vec::new()
                };
                let _ = join.send(
                    JoinGroupResponse::default()
                        .with_generation_id(group.generation)
                        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                        .with_protocol_name(Some(StrBytes::from_string(protocol.clone())))
                        .with_leader(StrBytes::from_string(leader.clone()))
                        .with_member_id(StrBytes::from_string(id.clone()))
                        .with_members(members),
                );
            }
        }
    }

    /// The rebalance timeout passed: members that did not rejoin are removed, the others get
    /// their generation.
    pub fn rebalance_timed_out(&mut self, group: &str, rebalance: u64) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        if g.rebalance != rebalance || g.phase != Phase::Joining {
            return;
        }
        g.members.retain(|_, m| m.join.is_some());
        Self::complete_join_if_ready(g);
    }

    pub fn sync(&mut self, req: &SyncGroupRequest) -> Answer<SyncGroupResponse> {
        let error = |code: KafkaCode| SyncGroupResponse::default().with_error_code(code.code());
        let Some(group) = self.groups.get_mut(req.group_id.0.as_str()) else {
            return Answer::Now(error(KafkaCode::UnknownMemberId));
        };
        let member_id = req.member_id.to_string();
        if !group.members.contains_key(&member_id) {
            return Answer::Now(error(KafkaCode::UnknownMemberId));
        }
        if group.phase == Phase::Joining {
            return Answer::Now(error(KafkaCode::RebalanceInProgress));
        }
        if req.generation_id != group.generation {
            return Answer::Now(error(KafkaCode::IllegalGeneration));
        }
        let answer = |assignment: Bytes, protocol: &Option<String>| {
            SyncGroupResponse::default()
                .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                .with_protocol_name(protocol.clone().map(StrBytes::from_string))
                .with_assignment(assignment)
        };
        if group.phase == Phase::Stable {
            let assignment = group.members[&member_id].assignment.clone();
            return Answer::Now(answer(assignment, &group.protocol));
        }
        if group.leader.as_deref() == Some(member_id.as_str()) {
            for a in &req.assignments {
                if let Some(m) = group.members.get_mut(a.member_id.as_str()) {
                    m.assignment = a.assignment.clone();
                }
            }
            group.phase = Phase::Stable;
            let protocol = group.protocol.clone();
            for (id, m) in group.members.iter_mut() {
                if *id != member_id {
                    if let Some(sync) = m.sync.take() {
                        let _ = sync.send(answer(m.assignment.clone(), &protocol));
                    }
                }
            }
            let mine = group.members[&member_id].assignment.clone();
            return Answer::Now(answer(mine, &protocol));
        }
        let (tx, rx) = oneshot::channel();
        if let Some(m) = group.members.get_mut(&member_id) {
            m.sync = Some(tx);
        }
        Answer::Later(rx)
    }

    pub fn heartbeat(&self, req: &HeartbeatRequest) -> HeartbeatResponse {
        let code = match self.groups.get(req.group_id.0.as_str()) {
            Some(g) if g.members.contains_key(req.member_id.as_str()) => {
                if g.phase == Phase::Joining {
                    KafkaCode::RebalanceInProgress.code()
                } else if g.generation != req.generation_id {
                    KafkaCode::IllegalGeneration.code()
                } else {
                    0
                }
            }
            _ => KafkaCode::UnknownMemberId.code(),
        };
        HeartbeatResponse::default().with_error_code(code)
    }

    pub fn leave(&mut self, req: &LeaveGroupRequest) -> (LeaveGroupResponse, Option<Timer>) {
        let leaving: Vec<String> = if req.members.is_empty() {
            vec![req.member_id.to_string()]
        } else {
            req.members
                .iter()
                .map(|m| m.member_id.to_string())
                .collect()
        };
        let name = req.group_id.0.to_string();
        let mut timer = None;
        if let Some(group) = self.groups.get_mut(&name) {
            let before = group.members.len();
            group.members.retain(|id, _| !leaving.contains(id));
            if group.members.len() != before {
                if group.members.is_empty() {
                    group.phase = Phase::Empty;
                } else {
                    timer = Self::prepare_rebalance(&name, group);
                    Self::complete_join_if_ready(group);
                }
            }
        }
        (LeaveGroupResponse::default(), timer)
    }

    /// The error an OffsetCommit from `member` in `generation` gets: 0 when it may commit.
    pub fn commit_check(&self, group: &str, member: &str, generation: i32) -> i16 {
        match self.groups.get(group) {
            Some(g) if g.members.contains_key(member) => {
                if g.phase == Phase::Joining {
                    KafkaCode::RebalanceInProgress.code()
                } else if g.generation != generation {
                    KafkaCode::IllegalGeneration.code()
                } else {
                    0
                }
            }
            _ => KafkaCode::UnknownMemberId.code(),
        }
    }

    pub fn commit(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        metadata: Option<String>,
    ) {
        self.groups
            .entry(group.to_owned())
            .or_default()
            .committed
            .insert((topic.to_owned(), partition), (offset, metadata));
    }

    pub fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Option<(i64, Option<String>)> {
        self.groups
            .get(group)?
            .committed
            .get(&(topic.to_owned(), partition))
            .cloned()
    }
}
