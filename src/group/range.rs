//! The range assignor (Java's `RangeAssignor`, librdkafka's "range"): per topic, the members
//! subscribed to it (static members first by instance id, then by member id, as Java orders
//! them) each get a contiguous run of partitions; the first
//! `partitions % members` members get one extra.

use std::collections::BTreeMap;

use super::empty_assignments;
use super::roundrobin::member_order;
use super::{Assignment, Assignor, Member};

#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(
        &self,
        members: &[Member],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Assignment> {
        let mut out = empty_assignments(members);
        for (topic, &count) in partition_counts {
            // Java's member order: static members by instance id first, then by member id.
            let mut subscribers: Vec<&Member> = members
                .iter()
                .filter(|m| m.subscription.topics.iter().any(|t| t == topic))
                .collect();
            subscribers.sort_by(|a, b| member_order(a, b));
            if subscribers.is_empty() || count <= 0 {
                continue;
            }
            let n = subscribers.len() as i32;
            let (per_member, extra) = (count / n, count % n);
            for (i, member) in subscribers.iter().enumerate() {
                let i = i as i32;
                let start = per_member * i + i.min(extra);
                let len = per_member + i32::from(i < extra);
                if len == 0 {
                    continue;
                }
                if let Some(assignment) = out.get_mut(&member.member_id) {
                    assignment
                        .partitions
                        .insert(topic.clone(), (start..start + len).collect());
                }
            }
        }
        out
    }
}
