//! The sidechannel against mocked brokers: a member giving up partitions publishes what it
//! finished before it rejoins; the next owners start there even when the release commit
//! failed; stale generations and other groups' records are ignored.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler};
use konsumer::consumer::{ConsumerConfig, OffsetReset, DEFAULT_SIDECHANNEL_TOPIC};
use konsumer::group::GroupConfig;
use konsumer::producer::ProducerConfig;
use konsumer::protocol::{ApiKey, RequestKind};
use konsumer::sidechannel::Handover;
use konsumer::{ClientConfig, Context as ErrorContext, Error, KafkaCode};
use konsumer_actors::messages::GroupEvent;
use konsumer_actors::sidechannel::{LookupHandover, PublishHandover, RebalanceBegins};
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
    eventually(Duration::from_secs(10), "A handles 40 records", || {
        let (_, distinct) = count(&seen);
        async move { (distinct == 40).then_some(()) }
    })
    .await;
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

#[actix::test]
async fn lookups_take_only_the_previous_generation_of_their_own_group() {
    let mock = mock();
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
    let config = consumer(true);
    let open = |group: &'static str| {
        let (cluster, producer, config, log) = (
            cluster.clone(),
            producer.clone(),
            config.clone(),
            log.clone(),
        );
        async move {
            Sidechannel::open(cluster, producer, group, &config, log)
                .await
                .expect("sidechannel opens")
                .start()
        }
    };
    let ours = open(GROUP).await;
    let theirs = open("another-group").await;
    // The topic was created (compacted) since it was missing.
    let created = mock.received().iter().any(|r| {
        matches!(&r.request, RequestKind::CreateTopics(c) if c.topics.iter().any(|t|
            t.name.0.as_str() == DEFAULT_SIDECHANNEL_TOPIC
                && t.configs.iter().any(|c| c.name.as_str() == "cleanup.policy"
                    && c.value.as_ref().is_some_and(|v| v.as_str() == "compact"))))
    });
    assert!(created, "{}", captured.lines().join("\n"));
    let publish = |side: &Addr<Sidechannel>, generation: i32, offsets: &[(i32, i64)]| {
        side.send(PublishHandover {
            generation,
            member_id: format!("member-{generation}"),
            offsets: offsets
                .iter()
                .map(|(p, o)| ((TOPIC.to_owned(), *p), *o))
                .collect(),
        })
    };
    publish(&ours, 4, &[(0, 100), (1, 110)])
        .await
        .expect("alive")
        .expect("published");
    publish(&ours, 5, &[(0, 150)])
        .await
        .expect("alive")
        .expect("published");
    // Another group's handover of the same partition, in a newer generation.
    publish(&theirs, 5, &[(1, 999)])
        .await
        .expect("alive")
        .expect("published");
    let lookup = |generation: i32| {
        ours.send(LookupHandover {
            generation,
            partitions: vec![(TOPIC.to_owned(), 0), (TOPIC.to_owned(), 1)],
        })
    };
    // Written during this member's rebalance (it began when the sidechannel opened), an
    // older generation's handover counts too: brokers may form several generations at once.
    let found = lookup(7).await.expect("alive");
    let expected: BTreeMap<(String, i32), i64> =
        [((TOPIC.to_owned(), 0), 150), ((TOPIC.to_owned(), 1), 110)].into();
    assert_eq!(found, expected);
    // A new rebalance begins: from now on, records written before count only if their writer
    // owned the partition in the generation just before.
    ours.send(RebalanceBegins).await.expect("alive");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let found = lookup(6).await.expect("alive");
    let expected: BTreeMap<(String, i32), i64> = [((TOPIC.to_owned(), 0), 150)].into();
    assert_eq!(
        found, expected,
        "generation 5's handover of partition 0 only"
    );
    let found = lookup(5).await.expect("alive");
    // Partition 0's newest record is from generation 5: not generation 4's any more.
    let expected: BTreeMap<(String, i32), i64> = [((TOPIC.to_owned(), 1), 110)].into();
    assert_eq!(found, expected);
    assert!(
        lookup(9).await.expect("alive").is_empty(),
        "stale handovers used"
    );
    // Written in this rebalance by an owner of generation 4: counts for generation 9.
    publish(&ours, 4, &[(1, 130)])
        .await
        .expect("alive")
        .expect("published");
    let found = lookup(9).await.expect("alive");
    let expected: BTreeMap<(String, i32), i64> = [((TOPIC.to_owned(), 1), 130)].into();
    assert_eq!(found, expected);
    // A previous owner that publishes late (it had not noticed the rebalance yet) is waited
    // for, up to sidechannel_wait (500 ms here).
    let late = lookup(7);
    let publisher = ours.clone();
    let publish_late = async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        publisher
            .send(PublishHandover {
                generation: 6,
                member_id: "slow".into(),
                offsets: [((TOPIC.to_owned(), 0), 170), ((TOPIC.to_owned(), 1), 171)].into(),
            })
            .await
    };
    let (found, published) = tokio::join!(late, publish_late);
    published.expect("alive").expect("published");
    let expected: BTreeMap<(String, i32), i64> =
        [((TOPIC.to_owned(), 0), 170), ((TOPIC.to_owned(), 1), 171)].into();
    assert_eq!(
        found.expect("alive"),
        expected,
        "the late handover was not waited for"
    );
    // The group's first generation has no previous owner: no wait.
    let started = std::time::Instant::now();
    assert!(lookup(1).await.expect("alive").is_empty());
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "waited {:?} in the first generation",
        started.elapsed()
    );
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
    eventually(Duration::from_secs(10), "40 records", || {
        let (_, distinct) = count(&seen);
        async move { (distinct == 40).then_some(()) }
    })
    .await;
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
    assert!(handed_over().is_empty(), "handed over outside a rebalance");
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
            .all(|h| h.generation == 1 && !h.member_id.is_empty()),
        "{handovers:?}"
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
