//! How records are fetched, handed to handlers and committed: the consumer pipeline's settings.
//!
//! Names follow the Java client where it has the setting (`fetch.max.wait.ms` ->
//! [`ConsumerConfig::fetch_max_wait`], ...). Validated before anything starts, each error naming
//! its field.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::Error;
use crate::records::Isolation;

/// Where a partition starts when the group has no committed offset for it, or when the
/// committed offset is no longer in the log (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The oldest record still in the log.
    Earliest,
    /// The end of the log: only records produced from now on. The Java client's default.
    #[default]
    Latest,
    /// No reset: the partition stops and the error is reported.
    None,
}

/// What happens to a record once its handler has failed it `retries + 1` times.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AfterRetries {
    /// Stop the partition and report: nothing after the record is delivered, and the committed
    /// offset never passes it. The safe default.
    #[default]
    Stop,
    /// Mark the record done anyway (logged and reported, never silent).
    Skip,
    /// Produce the record to this topic, with headers naming its origin and the error, and
    /// mark it done once the dead-letter topic has acknowledged it.
    DeadLetter { topic: String },
}

/// A handler failure policy, per topic or as the default.
#[derive(Debug, Clone, PartialEq)]
pub struct FailurePolicy {
    /// Redeliveries after the first failure.
    pub retries: u32,
    pub backoff: Backoff,
    pub then: AfterRetries,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            retries: 3,
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
                multiplier: 2.0,
                jitter: 0.2,
            },
            then: AfterRetries::Stop,
        }
    }
}

/// Settings of the consumer pipeline: fetching, buffering, delivery, commits.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    /// `fetch.max.wait.ms`: how long a broker holds a fetch while it has less than
    /// `fetch_min_bytes`.
    pub fetch_max_wait: Duration,
    /// `fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`: the most one fetch response may carry.
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`: the most one partition contributes to a fetch (a larger
    /// first batch is still returned, KIP-74).
    pub partition_max_bytes: i32,
    /// `isolation.level`.
    pub isolation: Isolation,
    /// Records fetched but not yet done, per partition, beyond which the partition is left out
    /// of fetches (backpressure: memory stays bounded while handlers are slow).
    pub buffer_max_records: usize,
    /// Bytes (keys + values) fetched but not yet handed to a handler, per partition, beyond
    /// which the partition is left out of fetches.
    pub buffer_max_bytes: usize,
    /// The most records in one batch handed to a batch handler.
    pub max_batch_records: usize,
    /// Deliveries awaiting their handler's answer, per partition. 1 keeps a partition's
    /// records strictly in order even across retries; more overlaps handler calls.
    pub max_in_flight: usize,
    /// `auto.commit.interval.ms`: how often finished offsets are committed (only those that
    /// changed). Commits also happen on revoke and on close.
    pub commit_interval: Duration,
    /// `auto.offset.reset`.
    pub offset_reset: OffsetReset,
    /// InOrderDone / MarkUpTo: a done record also completes every earlier record of its
    /// partition (for handlers that finish in order and ack only now and then).
    pub in_order_done: bool,
    /// The policy for handler failures on topics without their own.
    pub failure_policy: FailurePolicy,
    pub topic_failure_policies: BTreeMap<String, FailurePolicy>,
    /// MaxMessageAge per topic: a partition whose records are older than this when fetched
    /// jumps forward to the first record younger than it.
    pub max_message_age: BTreeMap<String, Duration>,
    /// How long a partition that is taken away (rebalance, close) may take to finish its
    /// in-flight records before its offset is committed anyway. `None`: the group's
    /// rebalance timeout.
    pub drain_timeout: Option<Duration>,
    /// Delay before fetching a partition again after a fetch error or a leader move.
    pub retry_backoff: Backoff,
    /// The compacted topic through which a member hands the offsets it really finished to the
    /// partitions' next owners during a rebalance (so they need not re-read from the last
    /// commit). Created if missing. Empty: no sidechannel.
    pub sidechannel_topic: String,
    /// How long a member starting a newly assigned partition waits, at most, to have read the
    /// sidechannel up to its end before it starts from the committed offset alone.
    pub sidechannel_wait: Duration,
    /// Threads that decode one large fetch answer's partitions side by side, the Fetcher's own
    /// included (each takes a share of at least [`DECODE_SHARE_MIN_BYTES`]). 1: the Fetcher
    /// decodes alone. Decompression is most of a consumer's CPU with compressed topics, and a
    /// broker's answer carries several partitions that decode independently.
    pub decode_threads: usize,
    /// Check each fetched record batch's CRC before its records are delivered (the Java
    /// client's and librdkafka's `check.crcs`). On by default, as in the Java client: a batch
    /// corrupted on disk or on the wire must stop its partition rather than reach a handler.
    /// Off saves about a tenth of the CPU with 1 KiB uncompressed records (CRC32C over every
    /// byte), for those who trust their brokers' own checks; librdkafka's default is off.
    pub check_crcs: bool,
}

/// The least bytes of one fetch answer's records worth a decoding thread of their own (see
/// [`ConsumerConfig::decode_threads`]): below it, starting the thread costs more than it saves.
pub const DECODE_SHARE_MIN_BYTES: usize = 512 * 1024;

/// The sidechannel topic's default name.
pub const DEFAULT_SIDECHANNEL_TOPIC: &str = "konsumer-sidechannel-offsets";

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            isolation: Isolation::ReadUncommitted,
            buffer_max_records: 20_000,
            buffer_max_bytes: 8 * 1024 * 1024,
            max_batch_records: 1_000,
            max_in_flight: 1,
            commit_interval: Duration::from_secs(5),
            offset_reset: OffsetReset::Latest,
            in_order_done: false,
            failure_policy: FailurePolicy::default(),
            topic_failure_policies: BTreeMap::new(),
            max_message_age: BTreeMap::new(),
            drain_timeout: None,
            retry_backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
                multiplier: 2.0,
                jitter: 0.2,
            },
            sidechannel_topic: DEFAULT_SIDECHANNEL_TOPIC.to_owned(),
            sidechannel_wait: Duration::from_millis(300),
            decode_threads: 2,
            check_crcs: true,
        }
    }
}

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ConsumerConfig {
    /// Whether offsets are handed over through the sidechannel topic.
    pub fn sidechannel_enabled(&self) -> bool {
        !self.sidechannel_topic.is_empty()
    }

    /// The failure policy for `topic`.
    pub fn policy_for(&self, topic: &str) -> &FailurePolicy {
        self.topic_failure_policies
            .get(topic)
            .unwrap_or(&self.failure_policy)
    }

    /// Checks every setting; the error names the field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &'static str, detail: &str| {
            Err(Error::Config {
                field,
                detail: detail.to_owned(),
            })
        };
        if self.fetch_min_bytes < 1 {
            return bad("fetch_min_bytes", "must be at least 1");
        }
        if self.partition_max_bytes < 1 {
            return bad("partition_max_bytes", "must be at least 1");
        }
        if self.fetch_max_bytes < self.partition_max_bytes {
            return bad(
                "fetch_max_bytes",
                "must be at least partition_max_bytes (one partition must fit)",
            );
        }
        if self.fetch_max_wait > Duration::from_secs(60) {
            return bad("fetch_max_wait", "must be at most 60 s");
        }
        if self.buffer_max_records == 0 {
            return bad("buffer_max_records", "must be at least 1");
        }
        if self.buffer_max_bytes == 0 {
            return bad("buffer_max_bytes", "must be at least 1");
        }
        if self.max_batch_records == 0 {
            return bad("max_batch_records", "must be at least 1");
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "must be at least 1");
        }
        if self.commit_interval.is_zero() {
            return bad("commit_interval", "must be more than 0");
        }
        let policies =
            std::iter::once(&self.failure_policy).chain(self.topic_failure_policies.values());
        for policy in policies {
            if let AfterRetries::DeadLetter { topic } = &policy.then {
                if topic.is_empty() {
                    return bad("failure_policy", "dead-letter topic name is empty");
                }
            }
        }
        if self.max_message_age.values().any(Duration::is_zero) {
            return bad("max_message_age", "an age must be more than 0");
        }
        if self.sidechannel_enabled() && !valid_topic_name(&self.sidechannel_topic) {
            return bad(
                "sidechannel_topic",
                "not a valid topic name (1-249 of a-z A-Z 0-9 . _ -; empty disables it)",
            );
        }
        if self.sidechannel_wait > Duration::from_secs(60) {
            return bad("sidechannel_wait", "must be at most 60 s");
        }
        if !(1..=64).contains(&self.decode_threads) {
            return bad("decode_threads", "must be 1 to 64");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert!(ConsumerConfig::default().validate().is_ok());
    }

    #[test]
    fn each_bad_setting_names_its_field() {
        type Spoil = Box<dyn Fn(&mut ConsumerConfig)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("fetch_min_bytes", Box::new(|c| c.fetch_min_bytes = 0)),
            (
                "partition_max_bytes",
                Box::new(|c| c.partition_max_bytes = 0),
            ),
            ("fetch_max_bytes", Box::new(|c| c.fetch_max_bytes = 10)),
            (
                "fetch_max_wait",
                Box::new(|c| c.fetch_max_wait = Duration::from_secs(61)),
            ),
            ("buffer_max_records", Box::new(|c| c.buffer_max_records = 0)),
            ("buffer_max_bytes", Box::new(|c| c.buffer_max_bytes = 0)),
            ("max_batch_records", Box::new(|c| c.max_batch_records = 0)),
            ("max_in_flight", Box::new(|c| c.max_in_flight = 0)),
            (
                "commit_interval",
                Box::new(|c| c.commit_interval = Duration::ZERO),
            ),
            (
                "failure_policy",
                Box::new(|c| {
                    c.topic_failure_policies.insert(
                        "t".into(),
                        FailurePolicy {
                            then: AfterRetries::DeadLetter { topic: "".into() },
                            ..FailurePolicy::default()
                        },
                    );
                }),
            ),
            (
                "max_message_age",
                Box::new(|c| {
                    c.max_message_age.insert("t".into(), Duration::ZERO);
                }),
            ),
            (
                "sidechannel_topic",
                Box::new(|c| c.sidechannel_topic = "no spaces".into()),
            ),
            (
                "sidechannel_wait",
                Box::new(|c| c.sidechannel_wait = Duration::from_secs(61)),
            ),
            ("decode_threads", Box::new(|c| c.decode_threads = 0)),
            ("decode_threads", Box::new(|c| c.decode_threads = 65)),
        ];
        for (field, spoil) in cases {
            let mut config = ConsumerConfig::default();
            spoil(&mut config);
            match config.validate() {
                Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn empty_sidechannel_topic_disables_it() {
        let mut config = ConsumerConfig::default();
        assert!(config.sidechannel_enabled());
        config.sidechannel_topic.clear();
        assert!(!config.sidechannel_enabled());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn topic_policy_overrides_the_default() {
        let mut config = ConsumerConfig::default();
        let skip = FailurePolicy {
            then: AfterRetries::Skip,
            ..FailurePolicy::default()
        };
        config
            .topic_failure_policies
            .insert("orders".into(), skip.clone());
        assert_eq!(config.policy_for("orders"), &skip);
        assert_eq!(config.policy_for("other"), &FailurePolicy::default());
    }
}
