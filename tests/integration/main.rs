//! Integration tests, in one binary to keep link time down.
//! - `mock_cluster`: the Cluster actor against mocked broker actors (no network).
//! - `bad_input`: misbehaving TCP servers and unreachable brokers.
//! - `real_broker`: a real broker (tansu) started by the test itself.

mod bad_input;
mod mock_cluster;
mod real_broker;

use std::future::Future;
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
