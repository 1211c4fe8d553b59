//! The [`Assignor`] trait (the seeds' "Partitioner": prepare the join metadata, partition as
//! the leader, read the sync), [`lead`], which runs an assignor on the raw JoinGroup member
//! list, and the built-in assignors by protocol name.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use bytes::Bytes;

use super::protocol::{decode_subscription, encode_assignment, ASSIGNMENT_VERSION};
use super::{Assignment, Member, TopicPartitions};
use crate::error::Error;

/// How a group moves partitions between members during a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    /// Every member gives up everything before the join, and starts over from the sync.
    Eager,
    /// KIP-429: members keep what they own through the join; only partitions that move are
    /// revoked, after the sync, followed by one more rebalance that hands them over.
    Cooperative,
}

/// A partition assignment strategy, named in JoinGroup's protocol list. Members that share a
/// name must compute compatible assignments, so a built-in assignor behaves like the Java and
/// librdkafka assignor of the same name.
pub trait Assignor: Send + Sync + Debug {
    /// The protocol name sent in JoinGroup ("range", "roundrobin", "sticky",
    /// "cooperative-sticky", or a custom one).
    fn name(&self) -> &'static str;

    /// Eager unless the strategy is cooperative.
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }

    /// User data this member puts in its subscription, given what it owns now and the
    /// generation it got that in (-1: none yet).
    fn user_data(&self, _owned: &TopicPartitions, _generation: i32) -> Option<Bytes> {
        None
    }

    /// Run by the group leader. `members` is sorted by member id; `partition_counts` holds
    /// every subscribed topic that exists, with its partition count. The answer has an entry
    /// for every member (possibly empty), and assigns each partition of a topic to at most one
    /// member, and only to a member subscribed to that topic.
    fn assign(
        &self,
        members: &[Member],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Assignment>;
}

/// The built-in assignor with protocol name `name`.
pub fn builtin(name: &str) -> Option<Arc<dyn Assignor>> {
    match name {
        "range" => Some(Arc::new(super::RangeAssignor)),
        "roundrobin" => Some(Arc::new(super::RoundRobinAssignor)),
        "sticky" => Some(Arc::new(super::StickyAssignor)),
        "cooperative-sticky" => Some(Arc::new(super::CooperativeStickyAssignor)),
        _ => None,
    }
}

/// One member as JoinGroup lists it to the leader: ids and raw metadata bytes.
#[derive(Debug, Clone)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The leader's work between JoinGroup and SyncGroup: decode every member's subscription, run
/// `assignor`, encode each member's assignment. `partition_counts(topic)` says how many
/// partitions a subscribed topic has (`None`: the topic does not exist; it is left out).
/// A member whose metadata does not decode fails the whole assignment with an error naming
/// it: assigning around it would leave its partitions unowned without anybody noticing.
pub fn lead(
    assignor: &dyn Assignor,
    group: &str,
    joined: &[JoinedMember],
    partition_counts: impl Fn(&str) -> Option<i32>,
) -> Result<Vec<(String, Bytes)>, Error> {
    let mut members = Vec::with_capacity(joined.len());
    for member in joined {
        let (_, subscription) =
            decode_subscription(&member.metadata).map_err(|detail| Error::GroupProtocol {
                group: group.to_owned(),
                member: member.member_id.clone(),
                detail,
            })?;
        members.push(Member {
            member_id: member.member_id.clone(),
            group_instance_id: member.group_instance_id.clone(),
            subscription,
        });
    }
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    let mut counts = BTreeMap::new();
    for member in &members {
        for topic in &member.subscription.topics {
            if let Some(count) = partition_counts(topic) {
                counts.insert(topic.clone(), count);
            }
        }
    }
    let mut assignments = assignor.assign(&members, &counts);
    members
        .iter()
        .map(|member| {
            let assignment = assignments.remove(&member.member_id).unwrap_or_default();
            let bytes = encode_assignment(&assignment, ASSIGNMENT_VERSION).map_err(|detail| {
                Error::GroupProtocol {
                    group: group.to_owned(),
                    member: member.member_id.clone(),
                    detail,
                }
            })?;
            Ok((member.member_id.clone(), bytes))
        })
        .collect()
}
