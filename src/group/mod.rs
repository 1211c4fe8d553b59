//! Consumer groups, the client side of the "consumer" protocol type: what a member tells the
//! coordinator in JoinGroup (its [`Subscription`]), what the leader hands back in SyncGroup (each
//! member's [`Assignment`]), and the [`Assignor`]s that compute those assignments.
//!
//! Kafka brokers never look inside these bytes; members read each other's. So the encodings
//! here must match what the Java client and librdkafka write, every version of them
//! ([`protocol`]), and the assignors must make the same promises as theirs under the same
//! protocol names, or a mixed group breaks.

pub mod assignor;
pub mod config;
pub mod protocol;
mod range;
pub mod recovery;
mod roundrobin;
mod sticky;

use std::collections::BTreeMap;

use bytes::Bytes;

pub use assignor::{builtin, lead, Assignor, JoinedMember, RebalanceProtocol};
pub use config::{GroupConfig, TopicSubscription};
pub use protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription,
};
pub use range::RangeAssignor;
pub use recovery::{recovery, Recovery};
pub use roundrobin::RoundRobinAssignor;
pub use sticky::{CooperativeStickyAssignor, StickyAssignor};

/// Topic name -> partition numbers, sorted and without duplicates where konsumer builds it.
pub type TopicPartitions = BTreeMap<String, Vec<i32>>;

/// What one member asks for when it joins: the consumer protocol's member metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Topics the member wants to consume.
    pub topics: Vec<String>,
    /// Assignor-specific bytes (the eager sticky assignor keeps the previous assignment here).
    pub user_data: Option<Bytes>,
    /// Partitions the member holds right now (version 1+; cooperative rebalancing needs it).
    pub owned_partitions: TopicPartitions,
    /// The generation in which the member got `owned_partitions`; -1 when unknown (version 2+).
    pub generation_id: i32,
    /// The member's rack, for rack-aware assignment (version 3+).
    pub rack_id: Option<String>,
}

impl Default for Subscription {
    /// No topics, nothing owned, generation unknown (-1).
    fn default() -> Self {
        Subscription {
            topics: Vec::new(),
            user_data: None,
            owned_partitions: TopicPartitions::new(),
            generation_id: -1,
            rack_id: None,
        }
    }
}

/// What the leader gives one member: the consumer protocol's member assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub partitions: TopicPartitions,
    pub user_data: Option<Bytes>,
}

impl Assignment {
    /// How many partitions the assignment holds.
    pub fn len(&self) -> usize {
        self.partitions.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every (topic, partition) pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32)> {
        self.partitions
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.as_str(), *p)))
    }
}

/// One member as the leader sees it in the JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    /// Set for static members (KIP-345).
    pub group_instance_id: Option<String>,
    pub subscription: Subscription,
}

/// Puts each topic's partitions in order and removes duplicates and empty topics, so two
/// partition sets compare equal when they hold the same partitions.
pub fn normalize(partitions: &mut TopicPartitions) {
    partitions.retain(|_, ps| {
        ps.sort_unstable();
        ps.dedup();
        !ps.is_empty()
    });
}

/// An empty assignment for every member: what an assignor starts from, so that every member
/// gets an answer, even one that receives nothing.
pub fn empty_assignments(members: &[Member]) -> BTreeMap<String, Assignment> {
    members
        .iter()
        .map(|m| (m.member_id.clone(), Assignment::default()))
        .collect()
}

/// The partitions in `a` that are not in `b`.
pub fn difference(a: &TopicPartitions, b: &TopicPartitions) -> TopicPartitions {
    let mut out = TopicPartitions::new();
    for (topic, ps) in a {
        let other = b.get(topic);
        let left: Vec<i32> = ps
            .iter()
            .copied()
            .filter(|p| other.is_none_or(|o| !o.contains(p)))
            .collect();
        if !left.is_empty() {
            out.insert(topic.clone(), left);
        }
    }
    out
}

#[cfg(test)]
mod assignor_tests;
#[cfg(test)]
mod tests;
