//! Consumer groups on a real broker (tansu): three konsumer members share a 12-partition
//! topic, each partition owned by exactly one; a member that dies without leaving is replaced
//! after the session timeout; one that closes is replaced at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter};
use konsumer::group::GroupConfig;
use konsumer::ClientConfig;
use konsumer_actors::messages::{Close, EventSink, GetMembership, GroupEvent, Membership};
use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
use konsumer_actors::testkit::CapturedLog;
use konsumer_actors::{Cluster, Coordinator};
use tokio::sync::mpsc::UnboundedReceiver;

pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// Group settings for tests: a short session (a dead member is noticed in 6 s), heartbeats
/// every second.
pub fn group_config(group: &str, topic: &str, assignor: &str) -> GroupConfig {
    let mut config = GroupConfig::new(group, [topic])
        .with_assignors(&[assignor])
        .expect("built-in assignor");
    config.session_timeout = SESSION_TIMEOUT;
    config.heartbeat_interval = Duration::from_millis(1000);
    config.rebalance_timeout = Duration::from_secs(20);
    config
}

/// A konsumer member on its own arbiter (thread), with its own cluster connections, so the
/// test can kill it the hard way: stopping the arbiter drops every actor without a LeaveGroup.
pub struct Member {
    pub name: String,
    arbiter: Option<Arbiter>,
    pub coordinator: Addr<Coordinator>,
    /// The member's group events (kept so the channel stays open).
    pub _events: UnboundedReceiver<GroupEvent>,
    pub log: CapturedLog,
}

impl Member {
    pub async fn start(name: &str, bootstrap: String, config: GroupConfig) -> Member {
        let arbiter = Arbiter::new();
        let (log, captured) = CapturedLog::new();
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let member_log = log.clone();
        arbiter.spawn(async move {
            let cluster = Cluster::connect(ClientConfig::new([bootstrap]), member_log.clone())
                .await
                .expect("bootstrap");
            let coordinator =
                Coordinator::new(cluster, config, EventSink::Channel(events_tx), member_log)
                    .expect("valid config")
                    .start();
            let _ = started_tx.send(coordinator);
        });
        let coordinator = started.await.expect("member started");
        Member {
            name: name.to_owned(),
            arbiter: Some(arbiter),
            coordinator,
            _events: events,
            log: captured,
        }
    }

    pub async fn membership(&self) -> Option<Membership> {
        self.coordinator.send(GetMembership).await.ok()
    }

    /// Stops the member's thread: no LeaveGroup, no more heartbeats.
    pub fn kill(&mut self) {
        if let Some(arbiter) = self.arbiter.take() {
            arbiter.stop();
        }
    }

    /// Leaves the group and stops.
    pub async fn close(&mut self) {
        let _ = self.coordinator.send(Close).await;
        self.kill();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `members` hold, between them, every partition of `topic` (0..partitions)
/// exactly once, all in the same generation; returns each member's partitions. On timeout,
/// panics with what each member held and the members' logs.
pub async fn wait_for_full_coverage(
    members: &[&Member],
    topic: &str,
    partitions: i32,
    within: Duration,
) -> BTreeMap<String, Vec<i32>> {
    let deadline = Instant::now() + within;
    loop {
        let mut snapshot = Vec::new();
        for m in members {
            snapshot.push((m.name.clone(), m.membership().await));
        }
        if let Some(owners) = coverage(&snapshot, topic, partitions) {
            return owners;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = members
                .iter()
                .map(|m| format!("--- {} ---\n{}", m.name, m.log.lines().join("\n")))
                .collect();
            panic!(
                "partitions of {topic} not covered exactly once within {within:?}: {snapshot:#?}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn coverage(
    snapshot: &[(String, Option<Membership>)],
    topic: &str,
    partitions: i32,
) -> Option<BTreeMap<String, Vec<i32>>> {
    let mut owners = BTreeMap::new();
    let mut seen = Vec::new();
    let mut generations = Vec::new();
    for (name, membership) in snapshot {
        let membership = membership.as_ref()?;
        if membership.generation < 0 {
            return None;
        }
        generations.push(membership.generation);
        let mine = membership
            .assignment
            .partitions
            .get(topic)
            .cloned()
            .unwrap_or_default();
        seen.extend(mine.iter().copied());
        owners.insert(name.clone(), mine);
    }
    seen.sort_unstable();
    let complete = seen == (0..partitions).collect::<Vec<_>>();
    let one_generation = generations.windows(2).all(|w| w[0] == w[1]);
    (complete && one_generation).then_some(owners)
}

#[actix::test]
async fn three_members_share_twelve_partitions_and_replace_dead_and_closed_ones() {
    let broker = TansuBroker::start(Storage::Memory);
    broker.create_topic("shared", 12);
    let config = || group_config("three", "shared", "roundrobin");
    let mut a = Member::start("a", broker.bootstrap(), config()).await;
    let b = Member::start("b", broker.bootstrap(), config()).await;
    let mut c = Member::start("c", broker.bootstrap(), config()).await;
    let owners = wait_for_full_coverage(&[&a, &b, &c], "shared", 12, Duration::from_secs(60)).await;
    for (name, partitions) in &owners {
        assert_eq!(
            partitions.len(),
            4,
            "{name} holds {partitions:?}: {owners:?}"
        );
    }

    // Killed without LeaveGroup: the others wait for its session to time out.
    let killed_at = Instant::now();
    c.kill();
    let owners = wait_for_full_coverage(&[&a, &b], "shared", 12, Duration::from_secs(60)).await;
    let took = killed_at.elapsed();
    assert!(
        took >= SESSION_TIMEOUT - Duration::from_secs(2),
        "partitions moved after {took:?}, before the dead member's session ran out"
    );
    assert_eq!(owners.values().map(Vec::len).collect::<Vec<_>>(), [6, 6]);

    // Closed: LeaveGroup, so the last member takes everything at once.
    let closed_at = Instant::now();
    a.close().await;
    let owners = wait_for_full_coverage(&[&b], "shared", 12, Duration::from_secs(60)).await;
    let took = closed_at.elapsed();
    assert!(
        took < SESSION_TIMEOUT - Duration::from_secs(2),
        "a graceful close took {took:?} to hand over, as long as a session timeout"
    );
    assert_eq!(owners["b"].len(), 12);
}
