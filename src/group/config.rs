//! Group membership settings, validated before a member joins.

use std::sync::Arc;
use std::time::Duration;

use super::assignor::{builtin, Assignor};
use crate::backoff::Backoff;
use crate::error::Error;

/// Which topics a member consumes: a fixed list, and/or every topic whose name matches one of
/// `include` and none of `exclude` (regular expressions matched against the whole name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSubscription {
    pub topics: Vec<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl TopicSubscription {
    pub fn topics<S: Into<String>>(topics: impl IntoIterator<Item = S>) -> Self {
        TopicSubscription {
            topics: topics.into_iter().map(Into::into).collect(),
            ..TopicSubscription::default()
        }
    }
}

/// How a member takes part in its consumer group. Names follow the Java client's settings.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.id`.
    pub group_id: String,
    pub subscription: TopicSubscription,
    /// `session.timeout.ms`: without a heartbeat for this long, the coordinator drops the
    /// member and gives its partitions to others.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms`: how long the coordinator waits for every member to rejoin
    /// during a rebalance, and so how long a member may take to give up its partitions.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms`: at most a third of the session timeout, so two heartbeats
    /// can be lost without the member being dropped.
    pub heartbeat_interval: Duration,
    /// `partition.assignment.strategy`, in order of preference; the group uses the first one
    /// every member supports. Default: roundrobin, as the seeds (sarama-cluster, kiel).
    pub assignors: Vec<Arc<dyn Assignor>>,
    /// `group.instance.id` (KIP-345): a static member keeps its partitions across a restart
    /// within the session timeout and does not leave the group on close.
    pub group_instance_id: Option<String>,
    /// `client.rack`, sent in the subscription for rack-aware assignors.
    pub rack_id: Option<String>,
    /// Delay between retries of failed group requests (coordinator lookup, join, commit).
    pub retry_backoff: Backoff,
    /// How often subscribed topics are checked for new partitions (and patterns for new
    /// topics); a change makes the member rejoin. `metadata.max.age.ms` in the Java client.
    pub metadata_check_interval: Duration,
    /// How long committed offsets are kept (OffsetCommit v2-v4 only; newer brokers use
    /// their own `offsets.retention.minutes`). `None`: the broker's default.
    pub offset_retention: Option<Duration>,
    /// Attempts per OffsetCommit or OffsetFetch before the error is reported.
    pub offset_retries: u32,
}

impl GroupConfig {
    /// Defaults for `group_id` consuming `topics`.
    pub fn new<S: Into<String>>(
        group_id: impl Into<String>,
        topics: impl IntoIterator<Item = S>,
    ) -> Self {
        GroupConfig {
            group_id: group_id.into(),
            subscription: TopicSubscription::topics(topics),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![Arc::new(super::RoundRobinAssignor)],
            group_instance_id: None,
            rack_id: None,
            retry_backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
                multiplier: 2.0,
                jitter: 0.2,
            },
            metadata_check_interval: Duration::from_secs(30),
            offset_retention: None,
            offset_retries: 5,
        }
    }

    /// Uses the built-in assignors with these protocol names, in this order of preference.
    pub fn with_assignors(mut self, names: &[&str]) -> Result<Self, Error> {
        let mut assignors = Vec::new();
        for name in names {
            assignors.push(builtin(name).ok_or_else(|| Error::Config {
                field: "assignors",
                detail: format!(
                    "no built-in assignor `{name}` (range, roundrobin, sticky, cooperative-sticky)"
                ),
            })?);
        }
        self.assignors = assignors;
        Ok(self)
    }

    /// Checks every field; the error names the field and what is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, detail: String| Err(Error::Config { field, detail });
        if self.group_id.is_empty() {
            return bad("group_id", "must not be empty".into());
        }
        let s = &self.subscription;
        if s.topics.is_empty() && s.include.is_empty() {
            return bad(
                "subscription",
                "name at least one topic or one include pattern".into(),
            );
        }
        if let Some(t) = s.topics.iter().find(|t| t.is_empty()) {
            return bad("subscription", format!("empty topic name in {t:?}"));
        }
        for (field, value) in [
            ("session_timeout", self.session_timeout),
            ("rebalance_timeout", self.rebalance_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("metadata_check_interval", self.metadata_check_interval),
        ] {
            if value.is_zero() {
                return bad(field, "must be greater than zero".into());
            }
            if value.as_millis() > i32::MAX as u128 {
                return bad(
                    field,
                    format!("{value:?} does not fit Kafka's i32 milliseconds"),
                );
            }
        }
        if self.heartbeat_interval * 3 > self.session_timeout {
            return bad(
                "heartbeat_interval",
                format!(
                    "{:?} is more than a third of session_timeout {:?}: a member would be dropped after one lost heartbeat",
                    self.heartbeat_interval, self.session_timeout
                ),
            );
        }
        if self.assignors.is_empty() {
            return bad("assignors", "at least one is needed".into());
        }
        let mut names: Vec<&str> = self.assignors.iter().map(|a| a.name()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return bad(
                "assignors",
                format!("a protocol name appears twice in {names:?}"),
            );
        }
        let protocols: Vec<_> = self
            .assignors
            .iter()
            .map(|a| a.rebalance_protocol())
            .collect();
        if protocols.windows(2).any(|w| w[0] != w[1]) {
            return bad(
                "assignors",
                "eager and cooperative assignors cannot be mixed in one member".into(),
            );
        }
        if self.group_instance_id.as_deref() == Some("") {
            return bad("group_instance_id", "must not be empty when set".into());
        }
        let b = &self.retry_backoff;
        if b.initial.is_zero()
            || b.initial > b.max
            || b.multiplier < 1.0
            || !(0.0..1.0).contains(&b.jitter)
        {
            return bad(
                "retry_backoff",
                format!("need 0 < initial <= max, multiplier >= 1, jitter in [0, 1), got {b:?}"),
            );
        }
        if self.offset_retries == 0 {
            return bad("offset_retries", "at least one attempt is needed".into());
        }
        Ok(())
    }
}
