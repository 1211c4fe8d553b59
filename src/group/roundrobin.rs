//! The round-robin assignor (Java's `RoundRobinAssignor`, librdkafka's "roundrobin"): every
//! (topic, partition) pair, topics in name order and partitions in number order, is dealt to the
//! members in turn; a member not subscribed to the partition's topic is skipped, and the turn
//! carries on from where the previous partition left it (it does not restart per topic).
//!
//! Members are taken in Java's `MemberInfo` order: static members (KIP-345) first, by
//! `group.instance.id`, then the others by member id. Ordering static members by their instance
//! id is what lets a restarted static member (new member id, same instance id) get back the same
//! partitions. With no static members this is plain member-id order, as librdkafka uses.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use super::empty_assignments;
use super::{Assignment, Assignor, Member};

#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

/// Java's `MemberInfo` ordering: two static members compare by instance id, a static member
/// comes before a dynamic one, two dynamic members compare by member id. Member ids break a tie
/// between equal instance ids so the order is total.
pub(crate) fn member_order(a: &Member, b: &Member) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(
        &self,
        members: &[Member],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Assignment> {
        let mut out = empty_assignments(members);
        let mut order: Vec<&Member> = members.iter().collect();
        order.sort_by(|a, b| member_order(a, b));
        // A member id listed twice would get two turns per round for one assignment entry; the
        // first listing is kept.
        order.dedup_by(|b, a| a.member_id == b.member_id);
        if order.is_empty() {
            return out;
        }
        let topics: Vec<HashSet<&str>> = order
            .iter()
            .map(|m| m.subscription.topics.iter().map(String::as_str).collect())
            .collect();
        // Index of the member whose turn it is; it survives from one topic to the next.
        let mut next = 0usize;
        for (topic, &count) in partition_counts {
            let subscribed: Vec<bool> = topics.iter().map(|t| t.contains(topic.as_str())).collect();
            // A topic nobody subscribes to would make the turn loop spin forever.
            if count <= 0 || !subscribed.contains(&true) {
                continue;
            }
            let mut partitions: Vec<Vec<i32>> = vec![Vec::new(); order.len()];
            for partition in 0..count {
                while !subscribed[next] {
                    next = (next + 1) % order.len();
                }
                partitions[next].push(partition);
                next = (next + 1) % order.len();
            }
            for (member, ps) in order.iter().zip(partitions) {
                if ps.is_empty() {
                    continue;
                }
                if let Some(assignment) = out.get_mut(&member.member_id) {
                    assignment.partitions.insert(topic.clone(), ps);
                }
            }
        }
        out
    }
}
