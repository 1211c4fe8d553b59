//! The sidechannel against mocked brokers: a member giving up partitions publishes what it
//! finished before it rejoins; the next owners start there even when the release commit
//! failed; stale generations and other groups' records are ignored.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler};
use konsumer::consumer::{ConsumerConfig, OffsetReset, DEFAULT_SIDECHANNEL_TOPIC};
use konsumer::group::GroupConfig;
use konsumer::kafka_protocol::messages::HeartbeatResponse;
use konsumer::producer::ProducerConfig;
use konsumer::protocol::{ApiKey, RequestKind, ResponseKind};
use konsumer::sidechannel::Handover;
use konsumer::sidechannel::HandoverKind;
use konsumer::{ClientConfig, Context as ErrorContext, Error, KafkaCode};
use konsumer_actors::messages::GroupEvent;
use konsumer_actors::sidechannel::{PublishHandover, RebalanceBegins, TakeOver};
use konsumer_actors::testkit::{CapturedLog, MockCluster};
use konsumer_actors::{
    Cluster, ConsumerEvents, ConsumerService, HandlerRef, HandlerResult, KafkaBatch, Producer,
    Shutdown, Sidechannel,
};

use crate::{eventually, fast_backoff};

const GROUP: &str = "handover";
const TOPIC: &str = "orders";

fn mock() -> MockCluster {
    let mock = MockCluster::new();
    mock.add_broker(1, "mock-1", 9092)
        .add_broker(2, "mock-2", 9092)
        .add_topic(TOPIC, &[1, 2, 1, 2]);
    mock
}

fn fill(mock: &MockCluster, count: usize) {
    for partition in 0..4 {
        let values: Vec<String> = (0..count).map(|i| format!("p{partition}-{i}")).collect();
        let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
        mock.append(TOPIC, partition, &records);
    }
}

fn group() -> GroupConfig {
    crate::mock_group(GROUP, TOPIC, Duration::from_millis(50))
}

fn consumer(sidechannel: bool) -> ConsumerConfig {
    ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(50),
        // No interval commit: only the release commit (made to fail) could move the offsets.
        commit_interval: Duration::from_secs(600),
        retry_backoff: fast_backoff(),
        sidechannel_topic: if sidechannel {
            DEFAULT_SIDECHANNEL_TOPIC.into()
        } else {
            String::new()
        },
        sidechannel_wait: Duration::from_millis(500),
        ..ConsumerConfig::default()
    }
}

/// Every (partition, offset) any member handled, in order.
type Seen = Arc<Mutex<Vec<(i32, i64)>>>;

struct Recorder(Seen);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for Recorder {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        let mut seen = self.0.lock().expect("lock");
        seen.extend(batch.records.iter().map(|r| (batch.partition, r.offset)));
        Ok(())
    }
}

async fn member(mock: &MockCluster, config: ConsumerConfig, seen: &Seen) -> Addr<ConsumerService> {
    let (log, _captured) = CapturedLog::new();
    let cluster = Cluster::connect_with(
        Arc::new(ClientConfig::new(["mock-1:9092"])),
        log.clone(),
        mock.connector(),
    )
    .await
    .expect("bootstrap");
    ConsumerService::builder(ClientConfig::new(["mock-1:9092"]), group())
        .cluster(cluster)
        .consumer_config(config)
        .handler(HandlerRef::batches(&Recorder(seen.clone()).start()))
        .events(ConsumerEvents::None)
        .logger(log)
        .start()
        .await
        .expect("service starts")
}

/// Waits (up to 10 s) until `n` distinct records have been handled.
async fn handled_distinct(seen: &Seen, n: usize) {
    eventually(
        Duration::from_secs(10),
        &format!("{n} distinct records"),
        || {
            let (_, distinct) = count(seen);
            async move { (distinct == n).then_some(()) }
        },
    )
    .await;
}

fn count(seen: &Seen) -> (usize, usize) {
    let seen = seen.lock().expect("lock");
    let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
    (seen.len(), distinct.len())
}

/// A, alone, handles 10 records per partition and commits nothing; B joins; A's release
/// commit fails. Returns (handled, distinct) once every record of a second round is handled,
/// and the mock's requests.
async fn second_member_joins_while_commits_fail(sidechannel: bool) -> (usize, usize, MockCluster) {
    let mock = mock();
    fill(&mock, 10);
    let seen: Seen = Arc::default();
    let a = member(&mock, consumer(sidechannel), &seen).await;
    handled_distinct(&seen, 40).await;
    let refused = || {
        Err(Error::Broker {
            code: KafkaCode::IllegalGeneration,
            context: ErrorContext::default().with_group(GROUP),
        })
    };
    mock.script(ApiKey::OffsetCommit, None, refused());
    let b = member(&mock, consumer(sidechannel), &seen).await;
    eventually(
        Duration::from_secs(10),
        "generation 2 with both members",
        || {
            let both = mock
                .group(GROUP)
                .is_some_and(|g| g.generation >= 2 && g.members.len() == 2);
            async move { both.then_some(()) }
        },
    )
    .await;
    fill(&mock, 5);
    eventually(Duration::from_secs(10), "the 20 new records", || {
        let seen = seen.clone();
        async move {
            let seen = seen.lock().expect("lock");
            let new = seen.iter().filter(|(_, o)| *o >= 10).count();
            (new >= 20).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.send(Shutdown).await.expect("A shuts down");
    b.send(Shutdown).await.expect("B shuts down");
    let (handled, distinct) = count(&seen);
    (handled, distinct, mock)
}

#[actix::test]
async fn next_owners_start_at_the_handover_when_the_release_commit_fails() {
    let (handled, distinct, mock) = second_member_joins_while_commits_fail(true).await;
    assert_eq!(distinct, 60);
    assert_eq!(handled, 60, "records handled twice despite the handover");
    // Order: the handover is produced before anyone syncs the new generation.
    let received = mock.received();
    let publish = received
        .iter()
        .position(|r| match &r.request {
            RequestKind::Produce(p) => p
                .topic_data
                .iter()
                .any(|t| t.name.0.as_str() == DEFAULT_SIDECHANNEL_TOPIC),
            _ => false,
        })
        .expect("a handover was produced");
    let sync = received
        .iter()
        .position(|r| matches!(&r.request, RequestKind::SyncGroup(s) if s.generation_id >= 2))
        .expect("generation 2 was synced");
    assert!(publish < sync, "handover at {publish}, sync at {sync}");
    let rejoin = received
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.request, RequestKind::JoinGroup(_)))
        .map(|(i, _)| i)
        .next_back()
        .expect("joins");
    assert!(
        publish < rejoin,
        "the last JoinGroup went out before the handover"
    );
}

#[actix::test]
async fn without_the_sidechannel_the_same_rebalance_reads_records_twice() {
    let (handled, distinct, mock) = second_member_joins_while_commits_fail(false).await;
    assert_eq!(distinct, 60);
    // Nothing committed, nothing handed over: every partition starts again at 0.
    assert_eq!(handled, 100, "expected the first 40 records twice");
    assert!(mock.log_end(DEFAULT_SIDECHANNEL_TOPIC, 0) <= 0);
}

/// Sidechannel actors of any group over one mocked cluster and producer, as members open them.
struct Channels {
    cluster: Addr<Cluster>,
    producer: Addr<Producer>,
    config: ConsumerConfig,
    log: slog::Logger,
}

impl Channels {
    async fn connect(mock: &MockCluster) -> (Channels, CapturedLog) {
        let (log, captured) = CapturedLog::new();
        let cluster = Cluster::connect_with(
            Arc::new(ClientConfig::new(["mock-1:9092"])),
            log.clone(),
            mock.connector(),
        )
        .await
        .expect("bootstrap");
        let producer = Producer::new(cluster.clone(), ProducerConfig::default(), log.clone())
            .expect("config")
            .start();
        let channels = Channels {
            cluster,
            producer,
            config: consumer(true),
            log,
        };
        (channels, captured)
    }

    async fn open(&self, group: &str) -> Addr<Sidechannel> {
        Sidechannel::open(
            self.cluster.clone(),
            self.producer.clone(),
            group,
            &self.config,
            self.log.clone(),
        )
        .await
        .expect("sidechannel opens")
        .start()
    }
}

/// Publishes `member`'s records of `kind` for (partition, offset) pairs of [`TOPIC`].
fn publish(
    side: &Addr<Sidechannel>,
    member: &str,
    generation: i32,
    kind: HandoverKind,
    offsets: &[(i32, i64)],
) -> actix::dev::Request<Sidechannel, PublishHandover> {
    side.send(PublishHandover {
        generation,
        member_id: member.to_owned(),
        offsets: offsets
            .iter()
            .map(|(p, o)| ((TOPIC.to_owned(), *p), *o))
            .collect(),
        kind,
    })
}

#[actix::test]
async fn take_overs_wait_for_standing_claims_and_use_only_fresh_records_of_their_own_group() {
    let mock = mock();
    let (channels, captured) = Channels::connect(&mock).await;
    let ours = channels.open(GROUP).await;
    let theirs = channels.open("another-group").await;
    // The topic was created (compacted) since it was missing.
    let created = mock.received().iter().any(|r| {
        matches!(&r.request, RequestKind::CreateTopics(c) if c.topics.iter().any(|t|
            t.name.0.as_str() == DEFAULT_SIDECHANNEL_TOPIC
                && t.configs.iter().any(|c| c.name.as_str() == "cleanup.policy"
                    && c.value.as_ref().is_some_and(|v| v.as_str() == "compact"))))
    });
    assert!(created, "{}", captured.lines().join("\n"));
    use HandoverKind::{Owned, Released};
    for (side, member, generation, kind, offsets) in [
        (&ours, "m4", 4, Released, &[(0, 100), (1, 110)][..]),
        (&ours, "m5", 5, Released, &[(0, 150)][..]),
        // Another group's record of the same partition, in a newer generation.
        (&theirs, "x", 5, Released, &[(1, 999)][..]),
    ] {
        publish(side, member, generation, kind, offsets)
            .await
            .expect("alive")
            .expect("published");
    }
    // A take-over by `member` in `generation` of `partitions`, nothing committed: the
    // handed-over offsets of the partitions to start, the fenced ones, and how long it took.
    let take = |member: &str, generation: i32, partitions: &[i32], owner_wait: Duration| {
        let msg = TakeOver {
            generation,
            member_id: member.to_owned(),
            committed: partitions
                .iter()
                .map(|p| ((TOPIC.to_owned(), *p), None))
                .collect(),
            owner_wait,
        };
        let ours = ours.clone();
        async move {
            let started = std::time::Instant::now();
            let taken = ours.send(msg).await.expect("alive");
            let start: BTreeMap<i32, Option<i64>> =
                taken.start.into_iter().map(|((_, p), h)| (p, h)).collect();
            let fenced: Vec<i32> = taken.fenced.into_iter().map(|(_, p)| p).collect();
            (start, fenced, started.elapsed())
        }
    };
    let long = Duration::from_secs(5);
    // Written during this member's rebalance (it began when the sidechannel opened), an
    // older generation's handover counts too: brokers may form several generations at once.
    let (start, fenced, _) = take("a", 7, &[0, 1], long).await;
    assert_eq!(start, [(0, Some(150)), (1, Some(110))].into());
    assert!(fenced.is_empty());
    // "a" claimed both before answering.
    let handovers = || {
        mock.produced(DEFAULT_SIDECHANNEL_TOPIC, 0)
            .iter()
            .filter_map(|r| {
                Handover::decode(
                    r.key().unwrap_or_default(),
                    r.value().unwrap_or_default(),
                    r.offset,
                )
                .ok()
            })
            .collect::<Vec<_>>()
    };
    let claims = |member: &str| {
        handovers()
            .into_iter()
            .filter(|h| h.member_id == member && h.kind == Owned)
            .map(|h| (h.partition, h.generation, h.offset))
            .collect::<Vec<_>>()
    };
    assert_eq!(claims("a"), [(0, 7, 150), (1, 7, 110)]);
    publish(&ours, "a", 7, Released, &[(0, 160), (1, 115)])
        .await
        .expect("alive")
        .expect("published");
    // A new rebalance: from now on, older records count only if their writer owned the
    // partition in the generation just before.
    ours.send(RebalanceBegins).await.expect("alive");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (start, _, _) = take("b", 9, &[0, 1], long).await;
    assert_eq!(start, [(0, None), (1, None)].into(), "stale releases used");
    let (start, _, _) = take("b", 8, &[0, 1], long).await;
    assert_eq!(start, [(0, Some(160)), (1, Some(115))].into());
    // "b" holds both now. "c" is given them in generation 10 before "b" has noticed: it
    // waits for b's release instead of reading alongside it.
    let release_late = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        publish(&ours, "b", 8, Released, &[(0, 170), (1, 171)]).await
    };
    let ((start, _, took), released) = tokio::join!(take("c", 10, &[0, 1], long), release_late);
    released.expect("alive").expect("published");
    assert_eq!(start, [(0, Some(170)), (1, Some(171))].into());
    assert!(
        took >= Duration::from_millis(300),
        "did not wait for b: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "waited on after b released: {took:?}"
    );
    publish(&ours, "c", 10, Released, &[(0, 175), (1, 176)])
        .await
        .expect("alive")
        .expect("published");
    // A claim of a newer generation fences an outdated member: partition 0 is not started.
    publish(&ours, "z", 20, Owned, &[(0, 175)])
        .await
        .expect("alive")
        .expect("published");
    let (start, fenced, _) = take("d", 11, &[0, 1], long).await;
    assert_eq!(start, [(1, Some(176))].into());
    assert_eq!(fenced, [0]);
    // "d" never releases partition 1: after `owner_wait` "e" presumes it gone and starts at
    // what d had claimed.
    let (start, fenced, took) = take("e", 12, &[1], Duration::from_millis(400)).await;
    assert_eq!(start, [(1, Some(176))].into());
    assert!(fenced.is_empty());
    assert!(
        took >= Duration::from_millis(400),
        "did not wait for d: {took:?}"
    );
    // Given partition 1 again in the next generation (the group moved on before e delivered
    // anything, say), e does not wait for d a second time: d is presumed gone for good.
    // (A long `owner_wait` here, so that waiting again could not pass for a slow machine.)
    let (start, _, took) = take("e", 13, &[1], long).await;
    assert_eq!(start, [(1, Some(176))].into());
    assert!(
        took < Duration::from_secs(1),
        "waited for d again: {took:?}"
    );
    // A partition nobody has written for: a previous owner that publishes late (it had not
    // noticed the rebalance yet) is waited for, up to sidechannel_wait (500 ms here).
    let publish_late = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        publish(&ours, "slow", 12, Released, &[(2, 270)]).await
    };
    let ((start, _, _), published) = tokio::join!(take("f", 13, &[2], long), publish_late);
    published.expect("alive").expect("published");
    assert_eq!(
        start,
        [(2, Some(270))].into(),
        "the late handover was not waited for"
    );
    // The group's first generation has no previous owner: no wait.
    let (start, _, took) = take("g", 1, &[3], long).await;
    assert_eq!(start, [(3, None)].into());
    assert!(
        took < Duration::from_millis(400),
        "waited {took:?} in the first generation"
    );
    // The other group's records were never taken for ours: every claim our members wrote
    // carries the offset they start at, and none is the other group's 999.
    let our_claims: Vec<i64> = handovers()
        .into_iter()
        .filter(|h| h.group == GROUP && h.kind == Owned)
        .map(|h| h.offset)
        .collect();
    assert!(!our_claims.is_empty());
    assert!(!our_claims.contains(&999), "{our_claims:?}");
}

/// Why: committing an unchanged offset again at a revoke could undo a newer commit of a member
/// that held the partition at the same time (a broker without Kafka's generation checks).
#[actix::test]
async fn a_revoke_commits_only_partitions_that_made_progress() {
    let mock = mock();
    // Records in partitions 0 and 1 only: 2 and 3 start at 0 and never move.
    for partition in 0..2 {
        let values: Vec<String> = (0..10).map(|i| format!("p{partition}-{i}")).collect();
        let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
        mock.append(TOPIC, partition, &records);
    }
    let seen: Seen = Arc::default();
    let a = member(&mock, consumer(true), &seen).await;
    eventually(Duration::from_secs(10), "A handles 20 records", || {
        let (_, distinct) = count(&seen);
        async move { (distinct == 20).then_some(()) }
    })
    .await;
    // B joins (A gives partitions up at the revoke), then both leave (a revoke of the rest).
    let b = member(&mock, consumer(true), &seen).await;
    eventually(Duration::from_secs(10), "generation 2 with both", || {
        let both = mock
            .group(GROUP)
            .is_some_and(|g| g.generation >= 2 && g.members.len() == 2);
        async move { both.then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.send(Shutdown).await.expect("A shuts down");
    b.send(Shutdown).await.expect("B shuts down");
    let committed: Vec<(i32, i64)> = mock
        .received()
        .into_iter()
        .filter_map(|r| match r.request {
            RequestKind::OffsetCommit(c) => Some(c),
            _ => None,
        })
        .flat_map(|c| c.topics.into_iter().flat_map(|t| t.partitions))
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert!(
        committed.contains(&(0, 10)) && committed.contains(&(1, 10)),
        "progress not committed: {committed:?}"
    );
    assert!(
        committed.iter().all(|(p, _)| *p < 2),
        "unchanged partitions committed: {committed:?}"
    );
}

/// Why: a member whose session lapsed may be found out only at its next heartbeat, after the
/// group gave its partitions away; their next owners wait for its release (its claim still
/// stands), which must name the generation it owned them in, or they wait it out in vain.
#[actix::test]
async fn a_member_the_coordinator_forgot_releases_what_it_finished_in_its_old_generation() {
    let mock = mock();
    fill(&mock, 10);
    let seen: Seen = Arc::default();
    let service = member(&mock, consumer(true), &seen).await;
    handled_distinct(&seen, 40).await;
    let first_member = mock
        .group(GROUP)
        .and_then(|g| g.members.keys().next().cloned())
        .expect("a member");
    mock.script(
        ApiKey::Heartbeat,
        None,
        Ok(ResponseKind::Heartbeat(
            HeartbeatResponse::default().with_error_code(KafkaCode::UnknownMemberId.code()),
        )),
    );
    let released = eventually(Duration::from_secs(10), "releases of generation 1", || {
        let released: BTreeMap<i32, Handover> = mock
            .produced(DEFAULT_SIDECHANNEL_TOPIC, 0)
            .iter()
            .filter_map(|r| {
                Handover::decode(
                    r.key().unwrap_or_default(),
                    r.value().unwrap_or_default(),
                    r.offset,
                )
                .ok()
            })
            .filter(|h| h.kind == HandoverKind::Released)
            .map(|h| (h.partition, h))
            .collect();
        async move { (released.len() == 4).then_some(released) }
    })
    .await;
    for handover in released.values() {
        assert_eq!(
            (handover.generation, handover.offset, &handover.member_id),
            (1, 10, &first_member),
            "{released:?}"
        );
    }
    service.send(Shutdown).await.expect("shuts down");
}

/// Why: a process that has just started may be given a partition whose owner (another
/// process) has not noticed the rebalance yet; only the claim that owner wrote before the
/// new process existed says so.
#[actix::test]
async fn a_new_member_sees_claims_written_before_it_started_and_nothing_stale() {
    let mock = mock();
    let (channels, captured) = Channels::connect(&mock).await;
    use HandoverKind::{Owned, Released};
    // The group's life so far, written through a member that was there.
    let old = channels.open(GROUP).await;
    let reset = channels.open("reset-group").await;
    for (side, member, generation, kind, offsets) in [
        // "a" holds partition 0 since generation 2.
        (&old, "a", 2, Owned, &[(0, 40)][..]),
        // Partition 1 was released two generations back, partition 2 just before.
        (&old, "y", 1, Released, &[(1, 60)][..]),
        (&old, "y", 2, Released, &[(2, 80)][..]),
        // A group whose state was lost: its old life reached generation 9.
        (&reset, "gone", 9, Owned, &[(0, 500)][..]),
    ] {
        publish(side, member, generation, kind, offsets)
            .await
            .expect("alive")
            .expect("published");
    }
    // A new process starts and is given all three in generation 3 before "a" has noticed.
    let new = channels.open(GROUP).await;
    let take = TakeOver {
        generation: 3,
        member_id: "n".into(),
        committed: [0, 1, 2]
            .iter()
            .map(|p| ((TOPIC.to_owned(), *p), None))
            .collect(),
        owner_wait: Duration::from_secs(5),
    };
    // Later than sidechannel_wait (500 ms): only a's claim makes the new member wait so long.
    let release_late = async {
        tokio::time::sleep(Duration::from_millis(900)).await;
        publish(&old, "a", 2, Released, &[(0, 45)]).await
    };
    let started = std::time::Instant::now();
    let (taken, released) = tokio::join!(new.send(take), release_late);
    let took = started.elapsed();
    released.expect("alive").expect("published");
    let start: BTreeMap<i32, Option<i64>> = taken
        .expect("alive")
        .start
        .into_iter()
        .map(|((_, p), h)| (p, h))
        .collect();
    let lines = captured.lines().join("\n");
    // Partition 0 waited for a's release; partition 1's release is too old to trust (the
    // group may have gone empty and had its offsets reset since); partition 2's is fresh.
    assert_eq!(
        start,
        [(0, Some(45)), (1, None), (2, Some(80))].into(),
        "{lines}"
    );
    assert!(
        took >= Duration::from_millis(300),
        "did not wait for a: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "waited on after a released: {took:?}"
    );
    // The reset group begins again at generation 1: the old life's claim of generation 9
    // neither fences its new member nor holds it up.
    let fresh = channels.open("reset-group").await;
    let started = std::time::Instant::now();
    let taken = fresh
        .send(TakeOver {
            generation: 1,
            member_id: "first".into(),
            committed: [((TOPIC.to_owned(), 0), None)].into(),
            owner_wait: Duration::from_secs(5),
        })
        .await
        .expect("alive");
    assert_eq!(
        taken.start,
        [((TOPIC.to_owned(), 0), None)].into(),
        "{lines}"
    );
    assert!(taken.fenced.is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[actix::test]
async fn progress_during_a_rebalance_goes_to_the_sidechannel_on_each_commit_tick() {
    let mock = mock();
    fill(&mock, 10);
    let seen: Seen = Arc::default();
    let config = ConsumerConfig {
        commit_interval: Duration::from_millis(50),
        ..consumer(true)
    };
    let service = member(&mock, config, &seen).await;
    handled_distinct(&seen, 40).await;
    let handed_over = || -> Vec<Handover> {
        mock.produced(DEFAULT_SIDECHANNEL_TOPIC, 0)
            .iter()
            .map(|r| {
                Handover::decode(
                    r.key().unwrap_or_default(),
                    r.value().unwrap_or_default(),
                    r.offset,
                )
                .expect("a handover record")
            })
            .collect()
    };
    // The claims of the four partitions, made before their first record was delivered
    // (offset -1: nothing committed or handed over yet, the reset policy decides).
    let claims = handed_over();
    assert_eq!(claims.len(), 4, "{claims:?}");
    assert!(claims
        .iter()
        .all(|h| h.kind == HandoverKind::Owned && h.offset == -1 && h.generation == 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handed_over().len(), 4, "published outside a rebalance");
    // A rebalance begins (as the Coordinator announces it) and records keep being finished.
    service.do_send(GroupEvent::RebalanceStart {
        reason: "test".into(),
        current: Default::default(),
    });
    fill(&mock, 5);
    let handovers = eventually(Duration::from_secs(10), "handovers at 15", || {
        let all = handed_over();
        async move {
            let at_15: BTreeMap<i32, &Handover> = all
                .iter()
                .filter(|h| h.offset == 15 && h.group == GROUP)
                .map(|h| (h.partition, h))
                .collect();
            (at_15.len() == 4).then(|| all.clone())
        }
    })
    .await;
    assert!(
        handovers
            .iter()
            .all(|h| h.generation == 1 && !h.member_id.is_empty() && h.kind == HandoverKind::Owned),
        "progress is published as still owned: {handovers:?}"
    );
    service.send(Shutdown).await.expect("shuts down");
}

#[actix::test]
async fn graceful_rebalances_on_a_broker_with_kafkas_join_barrier_handle_every_record_once() {
    let mock = mock();
    let seen: Seen = Arc::default();
    let config = || ConsumerConfig {
        commit_interval: Duration::from_millis(100),
        ..consumer(true)
    };
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(member(&mock, config(), &seen).await);
    }
    // Records keep coming while members leave and join again, one at a time.
    let producing = {
        let mock = mock.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                fill(&mock, 25);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let slot = round % members.len();
        members[slot].send(Shutdown).await.expect("shuts down");
        members[slot] = member(&mock, config(), &seen).await;
    }
    producing.await.expect("producer task");
    let total = 40 * 25 * 4;
    eventually(Duration::from_secs(20), "every record handled", || {
        let (_, distinct) = count(&seen);
        async move { (distinct == total).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (handled, distinct) = count(&seen);
    assert_eq!(distinct, total, "records lost");
    assert_eq!(handled, total, "{} records handled twice", handled - total);
    for member in members {
        member.send(Shutdown).await.expect("shuts down");
    }
}

#[actix::test]
async fn a_take_over_that_waited_for_an_owner_starts_from_the_commits_made_meanwhile() {
    let mock = mock();
    fill(&mock, 100);
    mock.commit(GROUP, TOPIC, 0, 10);
    // The assignment comes late, so "ghost" can claim partition 0 after the member started, in
    // the generation the member will join (the mock's first), as a broker that handed one
    // partition to two members would have it. Ghost never releases.
    let (channels, _captured) = Channels::connect(&mock).await;
    let side = channels.open(GROUP).await;
    mock.delay(ApiKey::SyncGroup, Duration::from_millis(1000));
    let seen: Seen = Arc::default();
    let member = member(&mock, consumer(true), &seen).await;
    publish(&side, "ghost", 1, HandoverKind::Owned, &[(0, 10)])
        .await
        .expect("alive")
        .expect("published");
    // While the member waits for ghost's release (up to the 1.5 s session timeout), ghost
    // commits its progress.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    mock.commit(GROUP, TOPIC, 0, 60);
    let first = eventually(Duration::from_secs(10), "partition 0 delivered", || {
        let first = seen
            .lock()
            .expect("lock")
            .iter()
            .find(|(p, _)| *p == 0)
            .map(|(_, o)| *o);
        async move { first }
    })
    .await;
    assert_eq!(
        first, 60,
        "started from the commit read at the join, not the one made while it waited"
    );
    member.send(Shutdown).await.expect("shutdown answers");
}
