//! Integration tests, in one binary to keep link time down.
//! - `mock_cluster`: the Cluster actor against mocked broker actors (no network).
//! - `mock_producer`: the Producer actor against mocked broker actors.
//! - `mock_group`: the Coordinator and Heartbeat actors against mocked broker actors.
//! - `mock_sidechannel`: offsets handed over through the sidechannel during a rebalance.
//! - `mock_sasl`: SASL PLAIN and SCRAM against the TCP mock's SASL listener.
//! - `mock_isolation`: read_committed and read_uncommitted over transactions on mocked brokers.
//! - `bad_input`: misbehaving TCP servers and unreachable brokers.
//! - `real_broker`: a real broker (tansu) started by the test itself.
//! - `real_group`: konsumer group members on tansu (coverage, dead and closed members).
//! - `real_security`: TLS (stunnel) + SASL SCRAM-SHA-512 on tansu, and each failure's error.
//! - `real_sidechannel`: the sidechannel on tansu (topic creation, handover on a join).
//! - `real_faults`: members behind a proxy that resets, stalls and black-holes connections.
//! - `peer_records`: record sets written by librdkafka and kafka-python, captured as fixtures.
//! - `peer_group`: konsumer and librdkafka members in the same groups, each side leading.
//! - `peer_partitioner`: keyed records placed as librdkafka's murmur2 partitioner places them.
//! - `peer_producer`: the Producer on tansu, read back by librdkafka's consumer.
//! - `replay_broker`: konsumer's ConsumerService reading a whole topic from the replay broker.
//! - `records_fixtures`: the record decoder on those fixtures and on librdkafka batches live.

mod bad_input;
mod mock_cluster;
mod mock_consume;
mod mock_fetch;
mod mock_group;
mod mock_isolation;
mod mock_producer;
mod mock_sasl;
mod mock_sidechannel;
mod peer_consume;
mod peer_group;
mod peer_partitioner;
mod peer_producer;
mod peer_records;
mod real_broker;
mod real_consume;
mod real_faults;
mod real_group;
mod real_security;
mod real_sidechannel;
mod records_fixtures;
mod replay_broker;

use std::future::Future;

use konsumer::group::GroupConfig;
use konsumer::Backoff;
use std::time::{Duration, Instant};

/// Polls `check` until it yields `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Retries after 5..20 ms, without jitter: mocked brokers answer at once.
pub fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

/// A range-assigned group on `topic` with timeouts short enough for mocked brokers.
pub fn mock_group(group: &str, topic: &str, heartbeat: Duration) -> GroupConfig {
    let mut config = GroupConfig::new(group, [topic])
        .with_assignors(&["range"])
        .expect("built-in");
    config.session_timeout = Duration::from_millis(1500);
    config.heartbeat_interval = heartbeat;
    config.rebalance_timeout = Duration::from_secs(2);
    config.retry_backoff = fast_backoff();
    config
}
