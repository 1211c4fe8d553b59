//! The Coordinator and Heartbeat actors against mocked brokers (no network): the two-step
//! join, every row of the group error table, commits and offset fetches, subscriptions,
//! static membership, and leaving.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use konsumer::group::{GroupConfig, TopicPartitions};
use konsumer::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use konsumer::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use konsumer::kafka_protocol::messages::{
    FindCoordinatorResponse, HeartbeatResponse, JoinGroupResponse, OffsetCommitResponse,
    OffsetFetchResponse, TopicName,
};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::protocol::{ApiKey, RequestKind, ResponseKind};
use konsumer::{Backoff, ClientConfig, Error, KafkaCode};
use konsumer_actors::messages::{
    Commit, CommitOffset, EventSink, FetchCommitted, GetMembership, GroupEvent, Subscribe,
};
use konsumer_actors::testkit::{CapturedLog, MockCluster};
use konsumer_actors::{Cluster, Coordinator};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::eventually;

const GROUP: &str = "g1";

fn mock() -> MockCluster {
    let mock = MockCluster::new();
    mock.add_broker(1, "mock-1", 9092)
        .add_broker(2, "mock-2", 9092)
        .add_topic("orders", &[1, 2, 1, 2])
        .add_topic("audit", &[2, 1]);
    mock
}

fn config(topics: &[&str]) -> GroupConfig {
    let mut config = GroupConfig::new(GROUP, topics.iter().copied())
        .with_assignors(&["range"])
        .expect("built-in");
    config.session_timeout = Duration::from_millis(1500);
    config.heartbeat_interval = Duration::from_millis(50);
    config.rebalance_timeout = Duration::from_secs(2);
    config.metadata_check_interval = Duration::from_millis(100);
    config.retry_backoff = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(40),
        multiplier: 2.0,
        jitter: 0.0,
    };
    config
}

struct Member {
    coordinator: Addr<Coordinator>,
    events: UnboundedReceiver<GroupEvent>,
    #[allow(dead_code)]
    log: CapturedLog,
}

async fn start(mock: &MockCluster, config: GroupConfig) -> Member {
    let (log, captured) = CapturedLog::new();
    let client = Arc::new(ClientConfig::new(["mock-1:9092"]));
    let cluster = Cluster::connect_with(client, log.clone(), mock.connector())
        .await
        .expect("bootstrap");
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let coordinator = Coordinator::new(cluster, config, EventSink::Channel(tx), log)
        .expect("valid config")
        .start();
    Member {
        coordinator,
        events,
        log: captured,
    }
}

/// A member that has joined (its first assignment is in), with the events seen so far.
async fn start_joined(mock: &MockCluster, config: GroupConfig) -> (Member, Vec<GroupEvent>) {
    let mut member = start(mock, config).await;
    let mut seen = Vec::new();
    member.assigned(&mut seen).await;
    (member, seen)
}

impl Member {
    /// The next event that `pick` accepts; earlier ones are collected into `skipped`.
    async fn until<T>(
        &mut self,
        what: &str,
        skipped: &mut Vec<GroupEvent>,
        mut pick: impl FnMut(&GroupEvent) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(left, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {skipped:#?}"))
                .expect("event channel open");
            if let Some(found) = pick(&event) {
                return found;
            }
            skipped.push(event);
        }
    }

    /// Waits for the next RebalanceOk and returns (generation, current partitions, committed).
    async fn assigned(&mut self, skipped: &mut Vec<GroupEvent>) -> (i32, TopicPartitions) {
        self.until("an assignment", skipped, |e| match e {
            GroupEvent::RebalanceOk {
                generation,
                current,
                ..
            } => Some((*generation, current.clone())),
            _ => None,
        })
        .await
    }
}

fn tp(pairs: &[(&str, &[i32])]) -> TopicPartitions {
    pairs
        .iter()
        .map(|(t, ps)| (t.to_string(), ps.to_vec()))
        .collect()
}

fn joins(mock: &MockCluster) -> Vec<String> {
    mock.received()
        .into_iter()
        .filter_map(|r| match r.request {
            RequestKind::JoinGroup(j) => Some(j.member_id.to_string()),
            _ => None,
        })
        .collect()
}

fn broker_error(code: KafkaCode) -> Error {
    Error::Broker {
        code,
        context: konsumer::Context::default(),
    }
}

fn io_error() -> Error {
    Error::Io {
        broker: "mock-1:9092".into(),
        kind: std::io::ErrorKind::ConnectionReset,
        reason: "connection reset by peer".into(),
    }
}

fn heartbeat_answer(code: KafkaCode) -> Result<ResponseKind, Error> {
    Ok(ResponseKind::Heartbeat(
        HeartbeatResponse::default().with_error_code(code.code()),
    ))
}

fn reported_errors(events: &[GroupEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::Error { error } | GroupEvent::RebalanceError { error, .. } => {
                Some(error.to_string())
            }
            _ => None,
        })
        .collect()
}

#[actix::test]
async fn joins_in_two_steps_and_owns_every_partition() {
    let mock = mock();
    let mut member = start(&mock, config(&["orders", "audit"])).await;
    let mut seen = Vec::new();
    let (generation, current) = member.assigned(&mut seen).await;
    assert_eq!(generation, 1);
    assert_eq!(
        current,
        tp(&[("audit", &[0, 1]), ("orders", &[0, 1, 2, 3])])
    );
    // KIP-394: the first JoinGroup has no member id, the second the one the broker gave.
    let ids = joins(&mock);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], "");
    assert!(ids[1].starts_with("mock-member-"), "{ids:?}");
    let apis: Vec<ApiKey> = mock
        .received()
        .iter()
        .map(|r| r.api)
        .filter(|a| {
            !matches!(
                a,
                ApiKey::ApiVersions | ApiKey::Metadata | ApiKey::Heartbeat
            )
        })
        .collect();
    assert_eq!(
        apis,
        [
            ApiKey::FindCoordinator,
            ApiKey::JoinGroup,
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::OffsetFetch
        ]
    );
    let membership = member.coordinator.send(GetMembership).await.unwrap();
    assert!(membership.leader);
    assert_eq!(membership.protocol.as_deref(), Some("range"));
    assert_eq!(membership.member_id, ids[1]);
    // Heartbeats follow, with the member's id and generation.
    eventually(Duration::from_secs(5), "heartbeats", || async {
        (mock.count(ApiKey::Heartbeat) >= 3).then_some(())
    })
    .await;
    for r in mock.received() {
        if let RequestKind::Heartbeat(h) = r.request {
            assert_eq!(
                (h.member_id.as_str(), h.generation_id),
                (ids[1].as_str(), 1)
            );
        }
    }
    assert!(reported_errors(&seen).is_empty(), "{seen:#?}");
}

#[actix::test]
async fn coordinator_lookup_retries_until_one_is_available() {
    let mock = mock();
    let not_available = FindCoordinatorResponse::default()
        .with_error_code(KafkaCode::CoordinatorNotAvailable.code())
        .with_node_id(konsumer::kafka_protocol::messages::BrokerId(-1));
    mock.script(
        ApiKey::FindCoordinator,
        None,
        Ok(ResponseKind::FindCoordinator(not_available)),
    );
    mock.script(ApiKey::FindCoordinator, None, Err(io_error()));
    let (_member, seen) = start_joined(&mock, config(&["orders"])).await;
    assert_eq!(mock.count(ApiKey::FindCoordinator), 3);
    assert!(reported_errors(&seen).is_empty(), "{seen:#?}");
}

#[actix::test]
async fn join_answered_not_coordinator_finds_the_coordinator_again() {
    let mock = mock();
    mock.script(
        ApiKey::JoinGroup,
        None,
        Ok(ResponseKind::JoinGroup(
            JoinGroupResponse::default().with_error_code(KafkaCode::NotCoordinator.code()),
        )),
    );
    let (_member, seen) = start_joined(&mock, config(&["orders"])).await;
    assert_eq!(mock.count(ApiKey::FindCoordinator), 2);
    assert!(reported_errors(&seen).is_empty(), "{seen:#?}");
}

#[actix::test]
async fn heartbeat_rebalance_in_progress_rejoins_without_reporting_an_error() {
    let mock = mock();
    let mut member = start(&mock, config(&["orders"])).await;
    let mut seen = Vec::new();
    let (first, _) = member.assigned(&mut seen).await;
    mock.script(
        ApiKey::Heartbeat,
        None,
        heartbeat_answer(KafkaCode::RebalanceInProgress),
    );
    let (second, current) = member.assigned(&mut seen).await;
    assert_eq!(second, first + 1);
    assert_eq!(current, tp(&[("orders", &[0, 1, 2, 3])]));
    // Same member id throughout: 1 empty + 2 with the id.
    let ids = joins(&mock);
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[1], ids[2]);
    assert!(reported_errors(&seen).is_empty(), "{seen:#?}");
    assert!(
        seen.iter().any(|e| matches!(e, GroupEvent::RebalanceStart { reason, .. } if reason.contains("RebalanceInProgress"))),
        "{seen:#?}"
    );
    // Eager (range): everything was revoked before the rejoin, not lost.
    assert!(
        seen.iter().any(|e| matches!(e, GroupEvent::Revoked { lost: false, partitions, .. } if partitions.len() == 1)),
        "{seen:#?}"
    );
}

#[actix::test]
async fn heartbeat_illegal_generation_loses_partitions_and_rejoins() {
    let mock = mock();
    let (mut member, mut seen) = start_joined(&mock, config(&["orders"])).await;
    mock.script(
        ApiKey::Heartbeat,
        None,
        heartbeat_answer(KafkaCode::IllegalGeneration),
    );
    member.assigned(&mut seen).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, GroupEvent::Revoked { lost: true, .. })),
        "{seen:#?}"
    );
    let ids = joins(&mock);
    assert_eq!(ids[1], ids[2], "member id kept: {ids:?}");
    assert!(reported_errors(&seen).is_empty(), "{seen:#?}");
}

#[actix::test]
async fn heartbeat_unknown_member_forgets_the_member_id() {
    let mock = mock();
    let (mut member, mut seen) = start_joined(&mock, config(&["orders"])).await;
    mock.script(
        ApiKey::Heartbeat,
        None,
        heartbeat_answer(KafkaCode::UnknownMemberId),
    );
    member.assigned(&mut seen).await;
    let ids = joins(&mock);
    // empty, id-1, then empty again, and the new id the coordinator hands out.
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids[2], "");
    assert_ne!(ids[3], ids[1]);
    assert!(
        seen.iter()
            .any(|e| matches!(e, GroupEvent::Revoked { lost: true, .. })),
        "{seen:#?}"
    );
    assert!(reported_errors(&seen).is_empty(), "{seen:#?}");
}

#[actix::test]
async fn heartbeat_not_coordinator_or_io_error_finds_the_coordinator_without_rejoining() {
    for answer in [
        heartbeat_answer(KafkaCode::NotCoordinator),
        heartbeat_answer(KafkaCode::CoordinatorNotAvailable),
        Err(io_error()),
    ] {
        let mock = mock();
        let mut member = start(&mock, config(&["orders"])).await;
        let mut seen = Vec::new();
        member.assigned(&mut seen).await;
        mock.script(ApiKey::Heartbeat, None, answer.clone());
        eventually(
            Duration::from_secs(5),
            "a second coordinator lookup",
            || async { (mock.count(ApiKey::FindCoordinator) == 2).then_some(()) },
        )
        .await;
        // Heartbeats resume with the same generation; no rejoin.
        let before = mock.count(ApiKey::Heartbeat);
        eventually(
            Duration::from_secs(5),
            "heartbeats after the lookup",
            || async { (mock.count(ApiKey::Heartbeat) >= before + 3).then_some(()) },
        )
        .await;
        assert_eq!(joins(&mock).len(), 2, "no rejoin after {answer:?}");
        let membership = member.coordinator.send(GetMembership).await.unwrap();
        assert_eq!(membership.generation, 1);
        assert_eq!(membership.assignment.len(), 4);
        assert!(reported_errors(&seen).is_empty(), "{seen:#?}");
    }
}

#[actix::test]
async fn other_errors_are_reported_with_context_then_retried_after_a_pause() {
    let mock = mock();
    mock.script(
        ApiKey::JoinGroup,
        None,
        Ok(ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(KafkaCode::GroupAuthorizationFailed.code()),
        )),
    );
    let mut member = start(&mock, config(&["orders"])).await;
    let mut seen = Vec::new();
    let error = member
        .until("a rebalance error", &mut seen, |e| match e {
            GroupEvent::RebalanceError { error, .. } => Some(error.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        error.kafka_code(),
        Some(KafkaCode::GroupAuthorizationFailed)
    );
    let text = error.to_string();
    assert!(
        text.contains("group=g1") && text.contains("JoinGroup"),
        "{text}"
    );
    // After the pause, it joins.
    member.assigned(&mut seen).await;
    // A heartbeat error of that kind goes to the errors stream; the member carries on.
    mock.script(
        ApiKey::Heartbeat,
        None,
        heartbeat_answer(KafkaCode::GroupAuthorizationFailed),
    );
    let error = member
        .until("a reported error", &mut seen, |e| match e {
            GroupEvent::Error { error } => Some(error.clone()),
            _ => None,
        })
        .await;
    assert!(error.to_string().contains("Heartbeat"), "{error}");
    assert_eq!(joins(&mock).len(), 3);
}

#[actix::test]
async fn heartbeats_go_on_during_a_long_join() {
    let mock = mock();
    let (mut member, mut seen) = start_joined(&mock, config(&["orders"])).await;
    // The next JoinGroup blocks for 1.5 s, as a broker does while it waits for other members.
    mock.delay(ApiKey::JoinGroup, Duration::from_millis(1500));
    mock.script(
        ApiKey::Heartbeat,
        None,
        heartbeat_answer(KafkaCode::RebalanceInProgress),
    );
    eventually(Duration::from_secs(5), "the rejoin to start", || async {
        (joins(&mock).len() == 3).then_some(())
    })
    .await;
    let during = mock.count(ApiKey::Heartbeat);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later = mock.count(ApiKey::Heartbeat);
    assert!(
        later >= during + 5,
        "heartbeats stalled during the join: {during} -> {later}"
    );
    member.assigned(&mut seen).await;
    assert!(reported_errors(&seen).is_empty(), "{seen:#?}");
}

#[actix::test]
async fn offsets_are_fetched_on_assignment_retrying_while_they_load() {
    let mock = mock();
    // First life: commit offsets.
    let (member, _seen) = start_joined(&mock, config(&["orders"])).await;
    let offsets = [
        (("orders".to_string(), 0), CommitOffset::new(42)),
        (("orders".to_string(), 3), CommitOffset::new(7)),
    ]
    .into_iter()
    .collect();
    member
        .coordinator
        .send(Commit { offsets })
        .await
        .unwrap()
        .expect("commit");
    member
        .coordinator
        .send(konsumer_actors::messages::Close)
        .await
        .unwrap();
    // Second life: the first OffsetFetch finds the offsets still loading.
    let loading =
        OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![OffsetFetchResponsePartition::default()
                .with_partition_index(0)
                .with_error_code(KafkaCode::CoordinatorLoadInProgress.code())])]);
    mock.script(
        ApiKey::OffsetFetch,
        None,
        Ok(ResponseKind::OffsetFetch(loading)),
    );
    let mut member = start(&mock, config(&["orders"])).await;
    let mut seen = Vec::new();
    let committed = member
        .until("an assignment", &mut seen, |e| match e {
            GroupEvent::RebalanceOk { committed, .. } => Some(committed.clone()),
            _ => None,
        })
        .await;
    assert_eq!(committed[&("orders".to_string(), 0)], Some(42));
    assert_eq!(committed[&("orders".to_string(), 1)], None);
    assert_eq!(committed[&("orders".to_string(), 3)], Some(7));
    assert_eq!(mock.count(ApiKey::OffsetFetch), 3); // first life, loading, loaded
    let fetched = member
        .coordinator
        .send(FetchCommitted {
            partitions: tp(&[("orders", &[0, 2])]),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetched[&("orders".to_string(), 0)], Some(42));
    assert_eq!(fetched[&("orders".to_string(), 2)], None);
}

#[actix::test]
async fn commit_carries_the_generation_and_drops_metadata_the_broker_finds_too_large() {
    let mock = mock();
    let (member, _seen) = start_joined(&mock, config(&["orders"])).await;
    let too_large =
        OffsetCommitResponse::default().with_topics(vec![OffsetCommitResponseTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![OffsetCommitResponsePartition::default()
                .with_partition_index(1)
                .with_error_code(KafkaCode::OffsetMetadataTooLarge.code())])]);
    mock.script(
        ApiKey::OffsetCommit,
        None,
        Ok(ResponseKind::OffsetCommit(too_large)),
    );
    mock.script(
        ApiKey::OffsetCommit,
        None,
        Err(broker_error(KafkaCode::CoordinatorLoadInProgress)),
    );
    let offsets = [(
        ("orders".to_string(), 1),
        CommitOffset {
            offset: 100,
            leader_epoch: Some(3),
            metadata: Some("x".repeat(5000)),
        },
    )]
    .into_iter()
    .collect();
    member
        .coordinator
        .send(Commit { offsets })
        .await
        .unwrap()
        .expect("commit after retries");
    let commits: Vec<_> = mock
        .received()
        .into_iter()
        .filter_map(|r| match r.request {
            RequestKind::OffsetCommit(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(commits.len(), 3);
    let membership = member.coordinator.send(GetMembership).await.unwrap();
    for c in &commits {
        assert_eq!(c.generation_id_or_member_epoch, membership.generation);
        assert_eq!(c.member_id.as_str(), membership.member_id);
    }
    assert!(commits[0].topics[0].partitions[0]
        .committed_metadata
        .is_some());
    assert!(commits[1].topics[0].partitions[0]
        .committed_metadata
        .is_none());
    assert_eq!(
        mock.group(GROUP).unwrap().committed[&("orders".to_string(), 1)],
        (100, None)
    );
}

#[actix::test]
async fn commit_without_membership_is_refused() {
    let mock = mock();
    // Never answers FindCoordinator usefully: the member stays unjoined.
    for _ in 0..1000 {
        mock.script(
            ApiKey::FindCoordinator,
            None,
            Err(broker_error(KafkaCode::GroupAuthorizationFailed)),
        );
    }
    let member = start(&mock, config(&["orders"])).await;
    let offsets = [(("orders".to_string(), 0), CommitOffset::new(1))]
        .into_iter()
        .collect();
    let error = member
        .coordinator
        .send(Commit { offsets })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kafka_code(), Some(KafkaCode::UnknownMemberId));
    assert!(error.to_string().contains("group=g1"), "{error}");
}

#[actix::test]
async fn subscribing_to_several_topics_rejoins_once() {
    let mock = mock();
    mock.add_topic("billing", &[1]);
    let (mut member, mut seen) = start_joined(&mock, config(&["orders"])).await;
    member
        .coordinator
        .send(Subscribe {
            topics: vec!["audit".into(), "billing".into()],
        })
        .await
        .unwrap()
        .unwrap();
    let (_, current) = member.assigned(&mut seen).await;
    assert_eq!(
        current,
        tp(&[
            ("audit", &[0, 1]),
            ("billing", &[0]),
            ("orders", &[0, 1, 2, 3])
        ])
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(joins(&mock).len(), 3, "one rejoin for the batch");
}

#[actix::test]
async fn new_partitions_and_pattern_matches_make_the_member_rejoin() {
    let mock = mock();
    let mut config = config(&[]);
    config.subscription.topics.clear();
    config.subscription.include = vec!["or.*".into(), "aud.*".into()];
    config.subscription.exclude = vec![".*-dlq".into()];
    mock.add_topic("orders-dlq", &[1]);
    let mut member = start(&mock, config).await;
    let mut seen = Vec::new();
    let (_, current) = member.assigned(&mut seen).await;
    assert_eq!(
        current,
        tp(&[("audit", &[0, 1]), ("orders", &[0, 1, 2, 3])])
    );
    // A partition added to a subscribed topic.
    mock.add_topic("audit", &[2, 1, 1]);
    let (_, current) = member.assigned(&mut seen).await;
    assert_eq!(current["audit"], [0, 1, 2]);
    // A new topic matching the pattern.
    mock.add_topic("orders-eu", &[2]);
    let (_, current) = member.assigned(&mut seen).await;
    assert_eq!(current["orders-eu"], [0]);
    assert!(!current.contains_key("orders-dlq"));
    let membership = member.coordinator.send(GetMembership).await.unwrap();
    assert_eq!(membership.topics, ["audit", "orders", "orders-eu"]);
}

#[actix::test]
async fn close_leaves_the_group_and_revokes_everything() {
    let mock = mock();
    let (mut member, mut seen) = start_joined(&mock, config(&["orders"])).await;
    let id = member
        .coordinator
        .send(GetMembership)
        .await
        .unwrap()
        .member_id;
    member
        .coordinator
        .send(konsumer_actors::messages::Close)
        .await
        .unwrap();
    let revoked = member
        .until("the final revoke", &mut seen, |e| match e {
            GroupEvent::Revoked {
                partitions, lost, ..
            } => Some((partitions.clone(), *lost)),
            _ => None,
        })
        .await;
    assert_eq!(revoked, (tp(&[("orders", &[0, 1, 2, 3])]), false));
    let leaves: Vec<String> = mock
        .received()
        .into_iter()
        .filter_map(|r| match r.request {
            RequestKind::LeaveGroup(l) => Some(
                l.members
                    .first()
                    .map(|m| m.member_id.to_string())
                    .unwrap_or(l.member_id.to_string()),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(leaves, [id]);
    assert!(
        member.coordinator.send(GetMembership).await.is_err(),
        "stopped"
    );
}

#[actix::test]
async fn static_member_sends_its_instance_id_and_does_not_leave() {
    let mock = mock();
    let mut config = config(&["orders"]);
    config.group_instance_id = Some("host-7".into());
    let mut member = start(&mock, config).await;
    let mut seen = Vec::new();
    member.assigned(&mut seen).await;
    eventually(Duration::from_secs(5), "a heartbeat", || async {
        (mock.count(ApiKey::Heartbeat) >= 1).then_some(())
    })
    .await;
    member
        .coordinator
        .send(konsumer_actors::messages::Close)
        .await
        .unwrap();
    assert_eq!(
        mock.count(ApiKey::LeaveGroup),
        0,
        "static members do not leave"
    );
    let mut saw = (false, false, false);
    for r in mock.received() {
        match r.request {
            RequestKind::JoinGroup(j) => {
                assert_eq!(j.group_instance_id.as_deref(), Some("host-7"));
                saw.0 = true;
            }
            RequestKind::SyncGroup(s) => {
                assert_eq!(s.group_instance_id.as_deref(), Some("host-7"));
                saw.1 = true;
            }
            RequestKind::Heartbeat(h) => {
                assert_eq!(h.group_instance_id.as_deref(), Some("host-7"));
                saw.2 = true;
            }
            _ => {}
        }
    }
    assert_eq!(saw, (true, true, true));
    let group = mock.group(GROUP).unwrap();
    let instances: Vec<Option<String>> = group.members.into_values().collect();
    assert_eq!(
        instances,
        [Some("host-7".to_string())],
        "still a member after close"
    );
}

#[actix::test]
async fn bad_settings_name_their_field() {
    let field_of = |c: GroupConfig| match c.validate() {
        Err(Error::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    let mut c = config(&["orders"]);
    c.heartbeat_interval = Duration::from_millis(600);
    assert_eq!(field_of(c), "heartbeat_interval");
    let mut c = config(&["orders"]);
    c.session_timeout = Duration::ZERO;
    assert_eq!(field_of(c), "session_timeout");
    assert_eq!(field_of(config(&[])), "subscription");
    let mut c = config(&["orders"]);
    c.group_id.clear();
    assert_eq!(field_of(c), "group_id");
    assert!(matches!(
        GroupConfig::new(GROUP, ["t"]).with_assignors(&["fastest"]),
        Err(Error::Config {
            field: "assignors",
            ..
        })
    ));
    let mock = mock();
    let (log, _) = CapturedLog::new();
    let cluster = Cluster::connect_with(
        Arc::new(ClientConfig::new(["mock-1:9092"])),
        log.clone(),
        mock.connector(),
    )
    .await
    .unwrap();
    let mut c = config(&[]);
    c.subscription.include = vec!["orders(".into()];
    match Coordinator::new(cluster, c, EventSink::None, log) {
        Err(Error::Config { field, detail }) => {
            assert_eq!(field, "subscription");
            assert!(detail.contains("orders("), "{detail}");
        }
        other => panic!("expected a config error, got {:?}", other.err()),
    }
}

#[actix::test]
async fn the_next_heartbeat_waits_for_the_previous_answer() {
    let mock = mock();
    let (_member, _seen) = start_joined(&mock, config(&["orders"])).await;
    // Five slow answers of 300 ms each: at a 50 ms interval, a client that did not wait
    // would send about 30 heartbeats in 1.5 s; one that waits sends at most 5 or 6.
    for _ in 0..5 {
        mock.delay(ApiKey::Heartbeat, Duration::from_millis(300));
    }
    let before = mock.count(ApiKey::Heartbeat);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = mock.count(ApiKey::Heartbeat) - before;
    assert!((3..=7).contains(&sent), "{sent} heartbeats in 1.5 s");
}

#[actix::test]
async fn a_failing_step_backs_off_instead_of_spinning() {
    let mock = mock();
    for _ in 0..1000 {
        mock.script(
            ApiKey::FindCoordinator,
            None,
            Err(broker_error(KafkaCode::GroupAuthorizationFailed)),
        );
    }
    let mut member = start(&mock, config(&["orders"])).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Backoff 10, 20, 40, 40, ... ms: about a dozen attempts, not hundreds.
    let attempts = mock.count(ApiKey::FindCoordinator);
    assert!((5..=25).contains(&attempts), "{attempts} lookups in 500 ms");
    let mut seen = Vec::new();
    let error = member
        .until("a reported error", &mut seen, |e| match e {
            GroupEvent::RebalanceError { error, .. } => Some(error.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        error.kafka_code(),
        Some(KafkaCode::GroupAuthorizationFailed)
    );
}

#[actix::test]
async fn commit_retention_is_sent_only_to_versions_that_have_it() {
    for (max_version, expected) in [(4i16, 3_600_000i64), (9, -1)] {
        let mock = mock();
        let table = konsumer::protocol::ApiVersionTable::from_ranges(ApiKey::iter().map(|k| {
            let r = k.valid_versions();
            let max = if k == ApiKey::OffsetCommit {
                max_version
            } else {
                r.max
            };
            (k as i16, r.min, max)
        }));
        mock.set_versions(table);
        let mut config = config(&["orders"]);
        config.offset_retention = Some(Duration::from_secs(3600));
        let mut member = start(&mock, config).await;
        let mut seen = Vec::new();
        member.assigned(&mut seen).await;
        let offsets = [(("orders".to_string(), 2), CommitOffset::new(5))]
            .into_iter()
            .collect();
        member
            .coordinator
            .send(Commit { offsets })
            .await
            .unwrap()
            .expect("commit");
        let sent: Vec<(i16, i64)> = mock
            .received()
            .into_iter()
            .filter_map(|r| match r.request {
                RequestKind::OffsetCommit(c) => Some((r.version, c.retention_time_ms)),
                _ => None,
            })
            .collect();
        assert_eq!(sent, [(max_version, expected)]);
    }
}

/// What every member of a group said, in the order it arrived (one task per member forwards
/// its events here with the member's index).
struct Timeline {
    events: Arc<std::sync::Mutex<Vec<(usize, GroupEvent)>>>,
}

impl Timeline {
    fn new() -> Self {
        Timeline {
            events: Arc::new(std::sync::Mutex::new(Vec::new())),
        }
    }

    fn follow(&self, index: usize, mut events: UnboundedReceiver<GroupEvent>) {
        let all = self.events.clone();
        actix::spawn(async move {
            while let Some(event) = events.recv().await {
                all.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((index, event));
            }
        });
    }

    fn take(&self) -> Vec<(usize, GroupEvent)> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Each member's (generation, partitions of `topic`) when all hold one generation and every
/// partition exactly once.
async fn settled(
    members: &[Addr<Coordinator>],
    topic: &str,
    partitions: i32,
) -> Option<Vec<(i32, Vec<i32>)>> {
    let mut out = Vec::new();
    let mut all = Vec::new();
    for m in members {
        let s = m.send(GetMembership).await.ok()?;
        if s.generation < 0 {
            return None;
        }
        let mine = s
            .assignment
            .partitions
            .get(topic)
            .cloned()
            .unwrap_or_default();
        all.extend(mine.iter().copied());
        out.push((s.generation, mine));
    }
    all.sort_unstable();
    let one_generation = out.windows(2).all(|w| w[0].0 == w[1].0);
    (one_generation && all == (0..partitions).collect::<Vec<_>>()).then_some(out)
}

/// With the mocked coordinator's join and sync barriers (Kafka's semantics), groups of
/// konsumer members converge with every assignor and then stay put; a member joining later
/// takes its share; with cooperative-sticky, members keep what they keep (only moved
/// partitions are revoked) and no partition is claimed before its old owner revoked it.
#[actix::test]
async fn groups_converge_and_stay_put_with_every_assignor() {
    for assignor in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
        let mock = MockCluster::new();
        mock.add_broker(1, "mock-1", 9092)
            .add_topic("events", &[1; 12]);
        let timeline = Timeline::new();
        let mut members = Vec::new();
        let config = || {
            let mut c = config(&["events"]);
            c.assignors = GroupConfig::new(GROUP, ["events"])
                .with_assignors(&[assignor])
                .expect("built-in")
                .assignors;
            c
        };
        for i in 0..3 {
            let member = start(&mock, config()).await;
            timeline.follow(i, member.events);
            members.push(member.coordinator);
        }
        let first = eventually(Duration::from_secs(10), "three members settled", || async {
            settled(&members, "events", 12).await
        })
        .await;
        assert!(
            first.iter().all(|(_, ps)| ps.len() == 4),
            "{assignor}: {first:?}"
        );
        // Stays put: 30 heartbeat intervals later, the same generation.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let still = settled(&members, "events", 12).await;
        assert_eq!(
            still.as_ref(),
            Some(&first),
            "{assignor}: the group moved on its own"
        );
        timeline.take();

        // A fourth member: each gets 3.
        let fourth = start(&mock, config()).await;
        timeline.follow(3, fourth.events);
        members.push(fourth.coordinator);
        let second = eventually(Duration::from_secs(10), "four members settled", || async {
            settled(&members, "events", 12)
                .await
                .filter(|s| s.iter().all(|(_, ps)| ps.len() == 3))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            settled(&members, "events", 12).await.as_ref(),
            Some(&second),
            "{assignor}: the group moved on its own"
        );
        let events = timeline.take();
        let revoked: usize = events
            .iter()
            .map(|(_, e)| match e {
                GroupEvent::Revoked { partitions, .. } => partitions.values().map(Vec::len).sum(),
                _ => 0,
            })
            .sum();
        if assignor == "cooperative-sticky" {
            // Only the three partitions that moved to the new member were revoked.
            assert_eq!(revoked, 3, "{events:#?}");
            // No partition was claimed while another member still held it.
            let mut owner: BTreeMap<i32, usize> = first
                .iter()
                .enumerate()
                .flat_map(|(i, (_, ps))| ps.iter().map(move |p| (*p, i)))
                .collect();
            for (member, event) in &events {
                match event {
                    GroupEvent::Revoked { partitions, .. } => {
                        for p in partitions.get("events").into_iter().flatten() {
                            assert_eq!(owner.remove(p), Some(*member), "{events:#?}");
                        }
                    }
                    GroupEvent::RebalanceOk { claimed, .. } => {
                        for p in claimed.get("events").into_iter().flatten() {
                            assert_eq!(
                                owner.insert(*p, *member),
                                None,
                                "partition {p} claimed by member {member} before it was revoked: {events:#?}"
                            );
                        }
                    }
                    _ => {}
                }
            }
        } else {
            // Eager: the three old members gave up everything before rejoining.
            assert_eq!(revoked, 12, "{assignor}");
        }
        for m in &members {
            m.send(konsumer_actors::messages::Close).await.unwrap();
        }
    }
}
