//! The consumption pipeline (ConsumerService, Fetcher, PartitionTracker) against mocked
//! brokers: delivery and commits, failure policies, deferred acks, in-order-done, seek,
//! leader moves, offset resets, corrupt data, backpressure, and handler restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, Context, Handler};
use bytes::Bytes;
use konsumer::consumer::{AfterRetries, ConsumerConfig, FailurePolicy, OffsetReset};
use konsumer::group::GroupConfig;
use konsumer::producer::ProducerConfig;
use konsumer::protocol::RequestKind;
use konsumer::{ClientConfig, Error};
use konsumer_actors::testkit::{CapturedLog, MockCluster};
use konsumer_actors::{
    Ack, Cluster, CommitNow, ConsumerEvent, ConsumerEvents, ConsumerService, GetCoordinator,
    HandlerError, HandlerRef, HandlerResult, KafkaBatch, KafkaMessage, Producer, SeekPartition,
    ServiceBuilder, Shutdown, StartAt,
};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{eventually, fast_backoff};

const GROUP: &str = "pipeline";
const TOPIC: &str = "orders";

fn mock() -> MockCluster {
    let mock = MockCluster::new();
    mock.add_broker(1, "mock-1", 9092)
        .add_broker(2, "mock-2", 9092)
        .add_topic(TOPIC, &[1, 2, 1, 2]);
    mock
}

fn fill(mock: &MockCluster, partition: i32, count: usize) {
    let values: Vec<String> = (0..count).map(|i| format!("p{partition}-{i}")).collect();
    let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    mock.append(TOPIC, partition, &records);
}

fn group() -> GroupConfig {
    crate::mock_group(GROUP, TOPIC, Duration::from_millis(100))
}

fn consumer() -> ConsumerConfig {
    ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(50),
        commit_interval: Duration::from_millis(50),
        retry_backoff: fast_backoff(),
        failure_policy: FailurePolicy {
            retries: 2,
            backoff: fast_backoff(),
            then: AfterRetries::Stop,
        },
        ..ConsumerConfig::default()
    }
}

/// What a test handler saw: every delivery attempt of every record, in order.
#[derive(Default)]
struct Seen {
    attempts: Mutex<Vec<(i32, i64)>>,
    /// Deferred records' acks, held until the test answers them.
    acks: Mutex<Vec<Ack>>,
}

impl Seen {
    fn attempts(&self) -> Vec<(i32, i64)> {
        self.attempts.lock().expect("lock").clone()
    }
    fn distinct(&self) -> BTreeSet<(i32, i64)> {
        self.attempts().into_iter().collect()
    }
    /// The offsets of `partition`'s delivery attempts, in order.
    fn attempts_of(&self, partition: i32) -> Vec<i64> {
        let attempts = self.attempts();
        attempts
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .collect()
    }
}

/// A batch handler that fails the records `fail` names (partition, offset) every time.
struct Batches {
    seen: Arc<Seen>,
    fail: BTreeSet<(i32, i64)>,
}

impl Actor for Batches {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for Batches {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        let mut attempts = self.seen.attempts.lock().expect("lock");
        for record in &batch.records {
            attempts.push((batch.partition, record.offset));
            if self.fail.contains(&(batch.partition, record.offset)) {
                return Err(HandlerError::at(
                    record.offset,
                    format!("cannot handle {}", record.offset),
                ));
            }
        }
        Ok(())
    }
}

/// A per-record handler that defers every record and keeps its ack for the test.
struct Deferring {
    seen: Arc<Seen>,
}

impl Actor for Deferring {
    type Context = Context<Self>;
}

impl Handler<KafkaMessage> for Deferring {
    type Result = HandlerResult;

    fn handle(&mut self, msg: KafkaMessage, _: &mut Context<Self>) -> HandlerResult {
        self.seen
            .attempts
            .lock()
            .expect("lock")
            .push((msg.partition, msg.offset()));
        self.seen.acks.lock().expect("lock").push(msg.defer());
        Ok(())
    }
}

struct Service {
    addr: Addr<ConsumerService>,
    events: UnboundedReceiver<ConsumerEvent>,
    log: CapturedLog,
}

impl Service {
    /// Waits (up to 10 s) until some partition has stopped: the partitions that did.
    async fn first_stops(&mut self, what: &str) -> Vec<(i32, Error)> {
        eventually(Duration::from_secs(10), what, || {
            let stopped = self.stopped();
            async move { (!stopped.is_empty()).then_some(stopped) }
        })
        .await
    }

    fn stopped(&mut self) -> Vec<(i32, Error)> {
        let mut out = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            if let ConsumerEvent::PartitionStopped {
                partition, error, ..
            } = event
            {
                out.push((partition, error));
            }
        }
        out
    }
}

async fn start(
    mock: &MockCluster,
    consumer: ConsumerConfig,
    handler: HandlerRef,
    producer: bool,
) -> Service {
    start_with(mock, consumer, handler, producer, |b| b).await
}

/// `start`, with the builder shaped further by `shape` (hooks, ...).
async fn start_with(
    mock: &MockCluster,
    consumer: ConsumerConfig,
    handler: HandlerRef,
    producer: bool,
    shape: impl FnOnce(ServiceBuilder) -> ServiceBuilder,
) -> Service {
    let (log, captured) = CapturedLog::new();
    let client = Arc::new(ClientConfig::new(["mock-1:9092"]));
    let cluster = Cluster::connect_with(client, log.clone(), mock.connector())
        .await
        .expect("bootstrap");
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let mut builder = shape(
        ConsumerService::builder(ClientConfig::new(["mock-1:9092"]), group())
            .cluster(cluster.clone())
            .consumer_config(consumer)
            .handler(handler)
            .events(ConsumerEvents::Channel(tx))
            .logger(log.clone()),
    );
    if producer {
        let producer = Producer::new(cluster, ProducerConfig::default(), log)
            .expect("producer config")
            .start();
        builder = builder.producer(producer);
    }
    let addr = builder.start().await.expect("service starts");
    Service {
        addr,
        events,
        log: captured,
    }
}

fn committed(mock: &MockCluster) -> BTreeMap<i32, i64> {
    mock.group(GROUP)
        .map(|g| {
            g.committed
                .iter()
                .filter(|((t, _), _)| t == TOPIC)
                .map(|((_, p), (o, _))| (*p, *o))
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_committed(mock: &MockCluster, expected: BTreeMap<i32, i64>, log: &CapturedLog) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = committed(mock);
        if now == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "committed {now:?}, expected {expected:?}\n{}",
            log.lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends `count` records timestamped two hours ago to partition 0 (offsets from 0); returns
/// the first one's timestamp.
fn append_old(mock: &MockCluster, count: i64) -> i64 {
    let old = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 2 * 3600 * 1000;
    let mut batch =
        konsumer::records::BatchBuilder::new(konsumer::compression::Compression::None, None)
            .base_offset(0);
    let no_headers: &[(&str, Option<&[u8]>)] = &[];
    for i in 0..count {
        batch.append(
            old + i,
            None,
            Some(format!("old-{i}").as_bytes()),
            no_headers,
        );
    }
    mock.append_raw(TOPIC, 0, batch.build().expect("batch"), count);
    old
}

/// One uncompressed batch holding `values` (timestamp 1, no keys, no headers), encoded.
fn batch_of(values: &[&str]) -> Bytes {
    let mut batch =
        konsumer::records::BatchBuilder::new(konsumer::compression::Compression::None, None);
    for value in values {
        batch.append(
            1,
            None,
            Some(value.as_bytes()),
            konsumer::records::NO_HEADERS,
        );
    }
    batch.build().expect("batch")
}

/// Moves `partition` of the test topic to `offset`.
async fn seek(service: &Service, partition: i32, offset: i64) {
    service
        .addr
        .send(SeekPartition {
            topic: TOPIC.into(),
            partition,
            offset,
        })
        .await
        .expect("alive")
        .expect("owned");
}

/// Waits until the handler has seen `count` delivery attempts.
async fn wait_attempts(seen: &Arc<Seen>, count: usize, what: &str) {
    eventually(Duration::from_secs(10), what, || {
        let n = seen.attempts().len();
        async move { (n == count).then_some(()) }
    })
    .await;
}

fn batches(seen: &Arc<Seen>, fail: &[(i32, i64)]) -> HandlerRef {
    HandlerRef::batches(
        &Batches {
            seen: seen.clone(),
            fail: fail.iter().copied().collect(),
        }
        .start(),
    )
}

#[actix::test]
async fn every_record_reaches_the_handler_in_order_and_the_log_ends_are_committed() {
    let mock = mock();
    for p in 0..4 {
        fill(&mock, p, 50);
        fill(&mock, p, 25);
    }
    let seen = Arc::new(Seen::default());
    let mut service = start(&mock, consumer(), batches(&seen, &[]), false).await;
    eventually(Duration::from_secs(10), "all 300 records", || {
        let n = seen.distinct().len();
        async move { (n == 300).then_some(()) }
    })
    .await;
    let attempts = seen.attempts();
    assert_eq!(attempts.len(), 300, "a record was delivered twice");
    for p in 0..4 {
        let offsets: Vec<i64> = attempts
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        assert_eq!(offsets, (0..75).collect::<Vec<_>>(), "partition {p}");
    }
    wait_committed(&mock, (0..4).map(|p| (p, 75)).collect(), &service.log).await;
    // New records keep flowing to the running service.
    fill(&mock, 2, 5);
    wait_committed(
        &mock,
        [(0, 75), (1, 75), (2, 80), (3, 75)].into_iter().collect(),
        &service.log,
    )
    .await;
    assert!(service.stopped().is_empty());
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn a_record_that_keeps_failing_is_retried_then_stops_its_partition_below_it() {
    let mock = mock();
    for p in 0..4 {
        fill(&mock, p, 10);
    }
    let seen = Arc::new(Seen::default());
    let mut service = start(&mock, consumer(), batches(&seen, &[(1, 4)]), false).await;
    let stopped = service.first_stops("partition 1 stops").await;
    match &stopped[..] {
        [(
            1,
            Error::Handler {
                topic,
                partition: 1,
                offset: 4,
                attempts: 3,
                detail,
            },
        )] => {
            assert_eq!(topic, TOPIC);
            assert!(detail.contains("cannot handle 4"), "{detail}");
        }
        other => panic!("unexpected stops: {other:?}"),
    }
    // First delivery plus two retries, each starting at offset 4 (the records before it were
    // done on the first try).
    assert_eq!(seen.attempts().iter().filter(|a| **a == (1, 3)).count(), 1);
    let tries = seen.attempts().iter().filter(|a| **a == (1, 4)).count();
    assert_eq!(tries, 3);
    // Partition 1 commits up to the failed record, never past it; the others finish.
    wait_committed(
        &mock,
        [(0, 10), (1, 4), (2, 10), (3, 10)].into_iter().collect(),
        &service.log,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(committed(&mock).get(&1), Some(&4));
    service.addr.send(Shutdown).await.expect("shutdown answers");
    assert_eq!(
        committed(&mock).get(&1),
        Some(&4),
        "shutdown committed past the failure"
    );
}

#[actix::test]
async fn the_skip_policy_passes_a_failing_record_and_says_so() {
    let mock = mock();
    fill(&mock, 0, 10);
    let seen = Arc::new(Seen::default());
    let mut config = consumer();
    config.topic_failure_policies.insert(
        TOPIC.into(),
        FailurePolicy {
            retries: 1,
            backoff: fast_backoff(),
            then: AfterRetries::Skip,
        },
    );
    let mut service = start(&mock, config, batches(&seen, &[(0, 3)]), false).await;
    wait_committed(&mock, [(0, 10)].into_iter().collect(), &service.log).await;
    let reported = service.stopped();
    assert!(
        matches!(
            &reported[..],
            [(
                0,
                Error::Handler {
                    offset: 3,
                    attempts: 2,
                    ..
                }
            )]
        ),
        "the skip was not reported: {reported:?}"
    );
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn the_dead_letter_policy_produces_the_record_with_its_origin_then_moves_on() {
    let mock = mock();
    mock.add_topic("orders.dlq", &[1]);
    fill(&mock, 0, 6);
    let seen = Arc::new(Seen::default());
    let mut config = consumer();
    config.failure_policy = FailurePolicy {
        retries: 0,
        backoff: fast_backoff(),
        then: AfterRetries::DeadLetter {
            topic: "orders.dlq".into(),
        },
    };
    let service = start(&mock, config, batches(&seen, &[(0, 2)]), true).await;
    wait_committed(&mock, [(0, 6)].into_iter().collect(), &service.log).await;
    let dead = mock.produced("orders.dlq", 0);
    assert_eq!(dead.len(), 1, "{}", service.log.lines().join("\n"));
    let record = &dead[0];
    assert_eq!(record.value(), Some(&b"p0-2"[..]));
    // The mock re-encodes without headers only for the old path; stored batches keep them.
    let header = |name: &str| record.headers().last(name).flatten().map(<[u8]>::to_vec);
    assert_eq!(header("konsumer.origin.topic"), Some(b"orders".to_vec()));
    assert_eq!(header("konsumer.origin.partition"), Some(b"0".to_vec()));
    assert_eq!(header("konsumer.origin.offset"), Some(b"2".to_vec()));
    let error = header("konsumer.error").expect("error header");
    assert!(String::from_utf8_lossy(&error).contains("cannot handle 2"));
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn deferred_acks_in_any_order_commit_only_the_contiguous_done_run() {
    let mock = mock();
    fill(&mock, 0, 10);
    let seen = Arc::new(Seen::default());
    let config = ConsumerConfig {
        max_in_flight: 100,
        ..consumer()
    };
    let handler = HandlerRef::messages(&Deferring { seen: seen.clone() }.start());
    let service = start(&mock, config, handler, false).await;
    eventually(Duration::from_secs(10), "10 records delivered", || {
        let n = seen.acks.lock().map(|a| a.len()).unwrap_or(0);
        async move { (n == 10).then_some(()) }
    })
    .await;
    let mut acks: BTreeMap<i64, Ack> = std::mem::take(&mut *seen.acks.lock().expect("lock"))
        .into_iter()
        .map(|a| (a.offsets()[0], a))
        .collect();
    // Finish 9, 7, 5, 3, 1: nothing is contiguous from 0.
    for offset in [9, 7, 5, 3, 1] {
        acks.remove(&offset).expect("ack").done();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        service.addr.send(CommitNow).await.expect("alive").ok(),
        Some(())
    );
    assert_eq!(committed(&mock).get(&0).copied().unwrap_or(0), 0);
    // 0 and 2 done: 0..=3 is contiguous.
    acks.remove(&2).expect("ack").done();
    acks.remove(&0).expect("ack").done();
    wait_committed(&mock, [(0, 4)].into_iter().collect(), &service.log).await;
    // A dropped ack is a failure: redelivered, never counted as done.
    drop(acks.remove(&4));
    eventually(Duration::from_secs(5), "offset 4 redelivered", || {
        let n = seen.attempts().iter().filter(|a| **a == (0, 4)).count();
        async move { (n == 2).then_some(()) }
    })
    .await;
    for (_, ack) in acks {
        ack.done();
    }
    for ack in std::mem::take(&mut *seen.acks.lock().expect("lock")) {
        ack.done();
    }
    wait_committed(&mock, [(0, 10)].into_iter().collect(), &service.log).await;
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

/// A batch handler that defers every batch whole and keeps its ack for the test.
struct DeferringBatches {
    seen: Arc<Seen>,
}

impl Actor for DeferringBatches {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for DeferringBatches {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        let mut attempts = self.seen.attempts.lock().expect("lock");
        attempts.extend(batch.records.iter().map(|r| (batch.partition, r.offset)));
        self.seen.acks.lock().expect("lock").push(batch.defer());
        Ok(())
    }
}

#[actix::test]
async fn deferred_batches_acked_out_of_order_commit_only_the_contiguous_run() {
    let mock = mock();
    fill(&mock, 0, 12);
    let seen = Arc::new(Seen::default());
    let config = ConsumerConfig {
        max_batch_records: 3,
        max_in_flight: 100,
        ..consumer()
    };
    let handler = HandlerRef::batches(&DeferringBatches { seen: seen.clone() }.start());
    let service = start(&mock, config, handler, false).await;
    let take_acks = |count: usize| {
        let seen = seen.clone();
        async move {
            eventually(Duration::from_secs(10), "batches deferred", || {
                let n = seen.acks.lock().map(|a| a.len()).unwrap_or(0);
                async move { (n == count).then_some(()) }
            })
            .await;
            std::mem::take(&mut *seen.acks.lock().expect("lock"))
                .into_iter()
                .map(|a| (a.offsets()[0], a))
                .collect::<BTreeMap<i64, Ack>>()
        }
    };
    let mut acks = take_acks(4).await;
    assert_eq!(
        acks.values()
            .map(|a| a.offsets().to_vec())
            .collect::<Vec<_>>(),
        (0..4)
            .map(|b| (3 * b..3 * b + 3).collect::<Vec<i64>>())
            .collect::<Vec<_>>()
    );
    // The third and the second batch are done: both above the open first one.
    acks.remove(&6).expect("ack").done();
    acks.remove(&3).expect("ack").done();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        service.addr.send(CommitNow).await.expect("alive").ok(),
        Some(())
    );
    assert_eq!(committed(&mock).get(&0).copied().unwrap_or(0), 0);
    // The first batch fails: it comes again, and once done, the run reaches the last batch.
    acks.remove(&0)
        .expect("ack")
        .fail(HandlerError::new("not yet"));
    let again = take_acks(1).await;
    assert_eq!(again.keys().copied().collect::<Vec<_>>(), vec![0]);
    for (_, ack) in again {
        ack.done();
    }
    wait_committed(&mock, [(0, 9)].into_iter().collect(), &service.log).await;
    acks.remove(&9).expect("ack").done();
    wait_committed(&mock, [(0, 12)].into_iter().collect(), &service.log).await;
    let mut expected: Vec<(i32, i64)> = (0..12).map(|o| (0, o)).collect();
    expected.extend((0..3).map(|o| (0, o)));
    assert_eq!(seen.attempts(), expected);
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

/// A batch handler that fails a batch at each record of `fail` the first time it sees it.
struct FailingOnce {
    seen: Arc<Seen>,
    fail: BTreeSet<i64>,
}

impl Actor for FailingOnce {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for FailingOnce {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        let mut attempts = self.seen.attempts.lock().expect("lock");
        for record in &batch.records {
            attempts.push((batch.partition, record.offset));
            if self.fail.remove(&record.offset) {
                return Err(HandlerError::at(record.offset, "once"));
            }
        }
        Ok(())
    }
}

#[actix::test]
async fn a_compacted_batch_with_gaps_is_delivered_retried_and_committed_past_its_end() {
    let mock = mock();
    // Offsets 0..10, of which compaction kept 0, 1, 2, 5, 6 and 9; then 10 and 11.
    let mut batch =
        konsumer::records::BatchBuilder::new(konsumer::compression::Compression::None, None);
    let no_headers: &[(&str, Option<&[u8]>)] = &[];
    for delta in [0, 1, 2, 5, 6, 9] {
        batch.append_at(delta, 1, None, Some(b"kept"), no_headers);
    }
    mock.append_raw(TOPIC, 0, batch.build().expect("batch"), 10);
    fill(&mock, 0, 2);
    let kept = [0, 1, 2, 5, 6, 9, 10, 11];
    let seen = Arc::new(Seen::default());
    let config = ConsumerConfig {
        max_batch_records: 4,
        ..consumer()
    };
    let handler = HandlerRef::batches(
        &FailingOnce {
            seen: seen.clone(),
            fail: [6].into_iter().collect(),
        }
        .start(),
    );
    let mut service = start(&mock, config, handler, false).await;
    wait_committed(&mock, [(0, 12)].into_iter().collect(), &service.log).await;
    let attempts = seen.attempts();
    for offset in kept {
        let n = attempts.iter().filter(|a| **a == (0, offset)).count();
        // Records before the failed one are done; it is tried again.
        let expected = if offset < 6 {
            1
        } else if offset == 6 {
            2
        } else {
            n.max(1)
        };
        assert_eq!(n, expected, "attempts of offset {offset}: {attempts:?}");
    }
    assert!(
        attempts.iter().all(|(_, o)| kept.contains(o)),
        "a gap was delivered: {attempts:?}"
    );
    assert!(service.stopped().is_empty());
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn in_order_done_lets_one_ack_cover_every_earlier_record() {
    let mock = mock();
    fill(&mock, 0, 10);
    let seen = Arc::new(Seen::default());
    let config = ConsumerConfig {
        max_in_flight: 100,
        in_order_done: true,
        ..consumer()
    };
    let handler = HandlerRef::messages(&Deferring { seen: seen.clone() }.start());
    let service = start(&mock, config, handler, false).await;
    eventually(Duration::from_secs(10), "10 records delivered", || {
        let n = seen.acks.lock().map(|a| a.len()).unwrap_or(0);
        async move { (n == 10).then_some(()) }
    })
    .await;
    let mut acks: Vec<Ack> = std::mem::take(&mut *seen.acks.lock().expect("lock"));
    let seventh = acks.remove(7);
    seventh.done();
    wait_committed(&mock, [(0, 8)].into_iter().collect(), &service.log).await;
    // The covered records' own acks are late duplicates: harmless.
    for ack in acks {
        ack.done();
    }
    wait_committed(&mock, [(0, 10)].into_iter().collect(), &service.log).await;
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn seek_redelivers_from_the_new_offset_and_out_of_range_resets_as_configured() {
    let mock = mock();
    fill(&mock, 0, 20);
    let seen = Arc::new(Seen::default());
    let service = start(&mock, consumer(), batches(&seen, &[]), false).await;
    wait_attempts(&seen, 20, "20 records").await;
    seek(&service, 0, 15).await;
    wait_attempts(&seen, 25, "15..20 again").await;
    assert_eq!(
        seen.attempts()[20..]
            .iter()
            .map(|a| a.1)
            .collect::<Vec<_>>(),
        vec![15, 16, 17, 18, 19]
    );
    // Past the end of the log: OffsetOutOfRange, reset to the earliest (the policy here).
    seek(&service, 0, 1_000).await;
    wait_attempts(&seen, 45, "reset to 0 and read again").await;
    assert_eq!(seen.attempts()[25].1, 0);
    assert!(service.log.contains("partition jumps"));
    assert!(service.log.contains("OutOfRange"));
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn a_leader_move_continues_at_the_same_offset_on_the_new_leader() {
    let mock = mock();
    fill(&mock, 0, 10);
    let seen = Arc::new(Seen::default());
    let service = start(&mock, consumer(), batches(&seen, &[]), false).await;
    wait_attempts(&seen, 10, "first 10").await;
    mock.move_leader(TOPIC, 0, 2);
    fill(&mock, 0, 10);
    eventually(
        Duration::from_secs(10),
        "next 10 from the new leader",
        || {
            let n = seen.attempts().len();
            async move { (n >= 20).then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let offsets: Vec<i64> = seen.attempts().iter().map(|a| a.1).collect();
    assert_eq!(
        offsets,
        (0..20).collect::<Vec<_>>(),
        "lost or repeated records"
    );
    assert!(service.log.contains("partition left the fetcher"));
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn a_corrupt_batch_stops_its_partition_after_the_good_records_before_it() {
    let mock = mock();
    fill(&mock, 0, 5);
    // A batch header that claims 3 records, followed by garbage.
    let mut garbage = vec![0u8; 8];
    garbage.extend_from_slice(&61i32.to_be_bytes());
    garbage.extend_from_slice(&[0xAB; 61]);
    mock.append_raw(TOPIC, 0, Bytes::from(garbage), 3);
    let seen = Arc::new(Seen::default());
    let mut service = start(&mock, consumer(), batches(&seen, &[]), false).await;
    let stopped = service.first_stops("partition 0 stops").await;
    match &stopped[..] {
        [(0, Error::Records(e))] => {
            let text = e.to_string();
            assert!(text.contains(TOPIC) && text.contains('0'), "{text}");
        }
        other => panic!("unexpected: {other:?}"),
    }
    assert_eq!(seen.distinct().len(), 5);
    wait_committed(&mock, [(0, 5)].into_iter().collect(), &service.log).await;
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

/// Why: `check_crcs` is the Java client's and librdkafka's `check.crcs`. Checked (the default),
/// a batch whose CRC does not match stops its partition; unchecked, its records are delivered.
#[actix::test]
async fn check_crcs_decides_whether_a_batch_with_a_wrong_crc_is_delivered() {
    let mock = mock();
    fill(&mock, 0, 5);
    // Offsets 5 to 7: a sound batch whose stored CRC (bytes 17 to 20 of a v2 batch) is wrong.
    let mut batch = batch_of(&["x", "y", "z"]).to_vec();
    batch[17] ^= 0xff;
    mock.append_raw(TOPIC, 0, Bytes::from(batch), 3);
    fill(&mock, 0, 5);
    let seen = Arc::new(Seen::default());
    let mut service = start(&mock, consumer(), batches(&seen, &[]), false).await;
    let stopped = service.first_stops("partition 0 stops").await;
    match &stopped[..] {
        [(0, Error::Records(e))] => assert!(e.to_string().contains("CRC mismatch"), "{e}"),
        other => panic!("unexpected: {other:?}"),
    }
    wait_committed(&mock, [(0, 5)].into_iter().collect(), &service.log).await;
    assert_eq!(seen.attempts_of(0), (0..5).collect::<Vec<_>>());
    service.addr.send(Shutdown).await.expect("shutdown answers");
    // The same group without the check resumes at 5 and reads the batch and what follows.
    let seen = Arc::new(Seen::default());
    let config = ConsumerConfig {
        check_crcs: false,
        ..consumer()
    };
    let mut service = start(&mock, config, batches(&seen, &[]), false).await;
    wait_committed(&mock, [(0, 13)].into_iter().collect(), &service.log).await;
    assert_eq!(seen.attempts_of(0), (5..13).collect::<Vec<_>>());
    let stops = service.stopped();
    assert!(stops.is_empty(), "{stops:?}");
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

/// The offsets each Fetch the mock received asked for `partition`, in order.
fn fetch_offsets(mock: &MockCluster, partition: i32) -> Vec<i64> {
    mock.received()
        .into_iter()
        .filter_map(|r| match r.request {
            RequestKind::Fetch(f) => Some(f),
            _ => None,
        })
        .flat_map(|f| f.topics)
        .flat_map(|t| t.partitions)
        .filter(|p| p.partition == partition)
        .map(|p| p.fetch_offset)
        .collect()
}

#[actix::test]
async fn an_answer_fetched_ahead_past_a_corrupt_batch_is_dropped() {
    let mock = mock();
    // Partitions 0 and 2 (broker 1): 0 holds 5 good records, a batch of 3 whose header is
    // sound but whose records fail their CRC, then 5 good records; 2 holds 5 good records.
    fill(&mock, 0, 5);
    let mut corrupt = batch_of(&["x", "y", "z"]).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    mock.append_raw(TOPIC, 0, Bytes::from(corrupt), 3);
    fill(&mock, 0, 5);
    fill(&mock, 2, 5);
    let seen = Arc::new(Seen::default());
    let mut service = start(&mock, consumer(), batches(&seen, &[]), false).await;
    let stopped = service.first_stops("partition 0 stops").await;
    assert!(
        matches!(&stopped[..], [(0, Error::Records(_))]),
        "{stopped:?}"
    );
    eventually(Duration::from_secs(10), "partition 2 delivered", || {
        let n = seen.distinct().iter().filter(|(p, _)| *p == 2).count();
        async move { (n == 5).then_some(()) }
    })
    .await;
    // The batch headers announced offset 13, so the next request asked for it before the
    // answer was decoded; decoding stopped at offset 5, and that answer was dropped.
    assert!(
        fetch_offsets(&mock, 0).contains(&13),
        "no fetch ahead: {:?}",
        fetch_offsets(&mock, 0)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.attempts_of(0), (0..5).collect::<Vec<_>>());
    wait_committed(&mock, [(0, 5), (2, 5)].into_iter().collect(), &service.log).await;
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn a_partition_an_answer_lists_twice_is_delivered_once() {
    use konsumer::kafka_protocol::messages::fetch_response::{
        FetchableTopicResponse, PartitionData,
    };
    use konsumer::kafka_protocol::messages::{FetchResponse, TopicName};
    use konsumer::kafka_protocol::protocol::StrBytes;
    let mock = mock();
    fill(&mock, 0, 5);
    // Broker 1's first answer lists partition 0 twice, each time with its 5 records: a broker's
    // error. The Fetcher takes only the first.
    let set = batch_of(&["a", "b", "c", "d", "e"]);
    let part = || {
        PartitionData::default()
            .with_partition_index(0)
            .with_high_watermark(5)
            .with_last_stable_offset(5)
            .with_records(Some(set.clone()))
    };
    let answer = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partitions(vec![part(), part()])]);
    mock.script(
        konsumer::protocol::ApiKey::Fetch,
        Some(1),
        Ok(konsumer::protocol::ResponseKind::Fetch(answer)),
    );
    let seen = Arc::new(Seen::default());
    // No sidechannel: its reads would be broker 1's first fetch.
    let config = ConsumerConfig {
        sidechannel_topic: String::new(),
        ..consumer()
    };
    let service = start(&mock, config, batches(&seen, &[]), false).await;
    wait_committed(&mock, [(0, 5)].into_iter().collect(), &service.log).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.attempts_of(0), (0..5).collect::<Vec<_>>());
    // Had the second copy reached the tracker, its offset bookkeeping would have refused the
    // repeated offsets and stopped the partition (after the first copy was committed, so the
    // assertions above would not see it).
    assert!(
        !service.log.contains("partition stopped"),
        "{}",
        service.log.lines().join("\n")
    );
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn a_full_partition_buffer_stops_fetching_until_records_are_done() {
    let mock = mock();
    for _ in 0..50 {
        fill(&mock, 0, 20); // 1,000 records in batches of 20
    }
    let seen = Arc::new(Seen::default());
    let config = ConsumerConfig {
        max_in_flight: 10_000,
        buffer_max_records: 100,
        partition_max_bytes: 512, // about one batch per fetch
        ..consumer()
    };
    let handler = HandlerRef::messages(&Deferring { seen: seen.clone() }.start());
    let service = start(&mock, config, handler, false).await;
    eventually(Duration::from_secs(10), "the buffer fills", || {
        let n = seen.attempts().len();
        async move { (n >= 100).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = seen.attempts().len();
    assert!(
        held <= 100 + 20,
        "{held} records fetched while the handler finished none (limit 100 + one fetch)"
    );
    // Finishing them lets the rest through.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.distinct().len() < 1_000 {
        for ack in std::mem::take(&mut *seen.acks.lock().expect("lock")) {
            ack.done();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stalled at {}",
            seen.distinct().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for ack in std::mem::take(&mut *seen.acks.lock().expect("lock")) {
        ack.done();
    }
    wait_committed(&mock, [(0, 1_000)].into_iter().collect(), &service.log).await;
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

/// Panics on the first delivery of offset 3 (once per test), to kill its arbiter.
struct Fragile {
    seen: Arc<Seen>,
    panicked: Arc<Mutex<bool>>,
}

impl Actor for Fragile {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for Fragile {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        for record in &batch.records {
            if record.offset == 3 {
                let mut panicked = self.panicked.lock().expect("lock");
                if !*panicked {
                    *panicked = true;
                    drop(panicked);
                    panic!("handler bug at offset 3 (on purpose)");
                }
            }
            self.seen
                .attempts
                .lock()
                .expect("lock")
                .push((batch.partition, record.offset));
        }
        Ok(())
    }
}

#[actix::test]
async fn a_panicking_per_partition_handler_is_replaced_and_gets_its_records_again() {
    let mock = mock();
    fill(&mock, 0, 3);
    fill(&mock, 0, 3);
    let seen = Arc::new(Seen::default());
    let panicked = Arc::new(Mutex::new(false));
    let (log, captured) = CapturedLog::new();
    let client = Arc::new(ClientConfig::new(["mock-1:9092"]));
    let cluster = Cluster::connect_with(client, log.clone(), mock.connector())
        .await
        .expect("bootstrap");
    let (seen_f, panicked_f) = (seen.clone(), panicked.clone());
    let service = ConsumerService::builder(ClientConfig::new(["mock-1:9092"]), group())
        .cluster(cluster)
        .consumer_config(consumer())
        .handler_factory(move |_, _| {
            // Each handler on its own arbiter: a panic ends that thread only.
            let actor = Fragile {
                seen: seen_f.clone(),
                panicked: panicked_f.clone(),
            };
            let addr = Fragile::start_in_arbiter(&Arbiter::new().handle(), |_| actor);
            HandlerRef::batches(&addr)
        })
        .logger(log)
        .start()
        .await
        .expect("service starts");
    eventually(
        Duration::from_secs(10),
        "all 6 records of partition 0",
        || {
            let n = seen.distinct().iter().filter(|(p, _)| *p == 0).count();
            async move { (n == 6).then_some(()) }
        },
    )
    .await;
    assert!(
        *panicked.lock().expect("lock"),
        "the handler never panicked"
    );
    assert!(captured.contains("handler actor is gone; starting a new one"));
    wait_committed(&mock, [(0, 6)].into_iter().collect(), &captured).await;
    service.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn a_partition_lagging_more_than_its_max_message_age_jumps_to_recent_records() {
    let mock = mock();
    // Ten records from two hours ago, then five from now.
    append_old(&mock, 10);
    fill(&mock, 0, 5);
    let seen = Arc::new(Seen::default());
    let mut config = consumer();
    config
        .max_message_age
        .insert(TOPIC.into(), Duration::from_secs(3600));
    let service = start(&mock, config, batches(&seen, &[]), false).await;
    eventually(Duration::from_secs(10), "the five recent records", || {
        let n = seen.attempts().len();
        async move { (n >= 5).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let offsets: Vec<i64> = seen.attempts().iter().map(|a| a.1).collect();
    assert_eq!(
        offsets,
        vec![10, 11, 12, 13, 14],
        "old records were delivered"
    );
    wait_committed(&mock, [(0, 15)].into_iter().collect(), &service.log).await;
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

/// Panics on every delivery of offset 3: a poison record.
struct Doomed;

impl Actor for Doomed {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        Arbiter::current().stop();
    }
}

impl Handler<KafkaBatch> for Doomed {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        if batch.records.iter().any(|r| r.offset == 3) {
            panic!("poison record at offset 3 (on purpose)");
        }
        Ok(())
    }
}

#[actix::test]
async fn a_record_that_kills_every_handler_meets_the_failure_policy_instead_of_looping() {
    let mock = mock();
    fill(&mock, 0, 6);
    let made = Arc::new(Mutex::new(0u32));
    let (log, captured) = CapturedLog::new();
    let client = Arc::new(ClientConfig::new(["mock-1:9092"]));
    let cluster = Cluster::connect_with(client, log.clone(), mock.connector())
        .await
        .expect("bootstrap");
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let counter = made.clone();
    let service = ConsumerService::builder(ClientConfig::new(["mock-1:9092"]), group())
        .cluster(cluster)
        .consumer_config(consumer())
        .handler_factory(move |_, _| {
            *counter.lock().expect("lock") += 1;
            HandlerRef::batches(&Doomed::start_in_arbiter(&Arbiter::new().handle(), |_| {
                Doomed
            }))
        })
        .events(ConsumerEvents::Channel(tx))
        .logger(log)
        .start()
        .await
        .expect("service starts");
    let stopped = eventually(Duration::from_secs(10), "partition 0 stops", || {
        let mut found = None;
        while let Ok(event) = events.try_recv() {
            if let ConsumerEvent::PartitionStopped {
                partition: 0,
                error,
                ..
            } = event
            {
                found = Some(error);
            }
        }
        async move { found }
    })
    .await;
    assert!(
        matches!(stopped, Error::Handler { attempts: 3, .. }),
        "{stopped:?}\n{}",
        captured.lines().join("\n")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One handler per partition at the start, plus one per death of partition 0's handler.
    let made = *made.lock().expect("lock");
    assert_eq!(made, 4 + 3, "handlers made");
    service.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn pause_holds_a_partition_and_marked_metadata_is_committed_with_its_offset() {
    let mock = mock();
    fill(&mock, 0, 5);
    let seen = Arc::new(Seen::default());
    let service = start(&mock, consumer(), batches(&seen, &[]), false).await;
    wait_attempts(&seen, 5, "first 5").await;
    service
        .addr
        .send(konsumer_actors::PausePartition {
            topic: TOPIC.into(),
            partition: 0,
            paused: true,
        })
        .await
        .expect("alive")
        .expect("owned");
    service
        .addr
        .send(konsumer_actors::MarkPartitionMetadata {
            topic: TOPIC.into(),
            partition: 0,
            metadata: Some("checkpoint-7".into()),
        })
        .await
        .expect("alive")
        .expect("owned");
    tokio::time::sleep(Duration::from_millis(50)).await;
    fill(&mock, 0, 5);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(seen.attempts().len(), 5, "a paused partition was delivered");
    service
        .addr
        .send(konsumer_actors::PausePartition {
            topic: TOPIC.into(),
            partition: 0,
            paused: false,
        })
        .await
        .expect("alive")
        .expect("owned");
    wait_attempts(&seen, 10, "the next 5 after resume").await;
    wait_committed(&mock, [(0, 10)].into_iter().collect(), &service.log).await;
    let group = mock.group(GROUP).expect("group");
    assert_eq!(
        group.committed.get(&(TOPIC.to_owned(), 0)),
        Some(&(10, Some("checkpoint-7".to_owned())))
    );
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn offsets_committed_on_shutdown_are_announced_as_committed() {
    let mock = mock();
    for p in 0..4 {
        fill(&mock, p, 10);
    }
    let seen = Arc::new(Seen::default());
    // No interval commit before the shutdown: only the Coordinator's release commit remains.
    let config = ConsumerConfig {
        commit_interval: Duration::from_secs(600),
        ..consumer()
    };
    let mut service = start(&mock, config, batches(&seen, &[]), false).await;
    eventually(Duration::from_secs(10), "all 40 records", || {
        let n = seen.distinct().len();
        async move { (n == 40).then_some(()) }
    })
    .await;
    assert!(committed(&mock).is_empty(), "committed before the shutdown");
    service.addr.send(Shutdown).await.expect("shutdown answers");
    let expected: BTreeMap<i32, i64> = (0..4).map(|p| (p, 10)).collect();
    assert_eq!(committed(&mock), expected);
    let mut announced = BTreeMap::new();
    while let Ok(event) = service.events.try_recv() {
        if let ConsumerEvent::Committed { offsets } = event {
            announced.extend(offsets.into_iter().map(|((_, p), o)| (p, o)));
        }
    }
    assert_eq!(announced, expected, "the release commit was not announced");
    // Shut down is final: the supervisor does not bring the member back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let members = mock.group(GROUP).map(|g| g.members.len());
    assert_eq!(members, Some(0), "the member came back after its shutdown");
    while let Ok(event) = service.events.try_recv() {
        assert!(
            !matches!(event, ConsumerEvent::Restarted { .. }),
            "restarted after shutdown"
        );
    }
}

#[actix::test]
async fn a_service_whose_coordinator_is_gone_is_restarted_by_its_supervisor_and_goes_on() {
    let mock = mock();
    for p in 0..4 {
        fill(&mock, p, 10);
    }
    let seen = Arc::new(Seen::default());
    let mut service = start(&mock, consumer(), batches(&seen, &[]), false).await;
    eventually(Duration::from_secs(10), "the first 40 records", || {
        let n = seen.distinct().len();
        async move { (n == 40).then_some(()) }
    })
    .await;
    // The Coordinator stops behind the service's back.
    let coordinator = service
        .addr
        .send(GetCoordinator)
        .await
        .expect("service answers")
        .expect("a coordinator");
    coordinator
        .send(konsumer_actors::messages::Close)
        .await
        .expect("coordinator closes");
    let reason = eventually(Duration::from_secs(5), "a restart event", || {
        let event = service.events.try_recv().ok();
        async move {
            match event {
                Some(ConsumerEvent::Restarted { reason }) => Some(reason),
                _ => None,
            }
        }
    })
    .await;
    assert!(reason.contains("coordinator"), "{reason}");
    assert!(service
        .log
        .lines()
        .iter()
        .any(|l| l.contains("restarted by its supervisor")));
    // The restarted member joins again and consumes what comes next, from the commits.
    for p in 0..4 {
        fill(&mock, p, 5);
    }
    wait_committed(&mock, (0..4).map(|p| (p, 15)).collect(), &service.log).await;
    assert_eq!(seen.distinct().len(), 60);
    let fresh = service.addr.send(GetCoordinator).await.expect("answers");
    assert!(fresh.is_some_and(|c| c.connected()), "no new coordinator");
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn starting_offset_and_out_of_range_hooks_decide_where_partitions_start_and_jump() {
    let mock = mock();
    for p in 0..2 {
        fill(&mock, p, 20);
    }
    let seen = Arc::new(Seen::default());
    let asked = Arc::new(Mutex::new(Vec::new()));
    let asked_start = asked.clone();
    let asked_range = asked.clone();
    let mut service = start_with(&mock, consumer(), batches(&seen, &[]), false, |b| {
        b.starting_offset(move |topic, partition, committed| {
            asked_start
                .lock()
                .expect("lock")
                .push(format!("start {topic}/{partition} {committed:?}"));
            match partition {
                1 => StartAt::Offset(7),
                2 => StartAt::Latest,
                3 => StartAt::Stop,
                _ => StartAt::Earliest,
            }
        })
        .on_offset_out_of_range(move |topic, partition, offset| {
            asked_range
                .lock()
                .expect("lock")
                .push(format!("range {topic}/{partition} {offset}"));
            StartAt::Offset(12)
        })
    })
    .await;
    wait_attempts(&seen, 33, "20 + 13 records").await;
    let of = |p: i32| -> Vec<i64> {
        seen.attempts()
            .iter()
            .filter(|a| a.0 == p)
            .map(|a| a.1)
            .collect()
    };
    assert_eq!(of(0), (0..20).collect::<Vec<_>>());
    assert_eq!(of(1), (7..20).collect::<Vec<_>>(), "hook chose offset 7");
    // Partition 3 was told to stop: reported, never consumed.
    let stopped = service.stopped();
    assert!(
        stopped.iter().any(|(p, _)| *p == 3),
        "partition 3 not reported: {stopped:?}"
    );
    // Partition 2 started at the log end: a new record arrives, nothing older.
    fill(&mock, 2, 1);
    eventually(
        Duration::from_secs(10),
        "the new record of partition 2",
        || {
            let n = seen.attempts().len();
            async move { (n == 34).then_some(()) }
        },
    )
    .await;
    assert_eq!(of(2), vec![0]);
    // Past the end: the out-of-range hook names offset 12.
    seek(&service, 0, 1_000).await;
    wait_attempts(&seen, 42, "12..20 again").await;
    assert_eq!(of(0)[20..], (12..20).collect::<Vec<_>>());
    let asked = asked.lock().expect("lock").clone();
    for p in 0..4 {
        assert!(
            asked.contains(&format!("start {TOPIC}/{p} None")),
            "{asked:?}"
        );
    }
    assert!(
        asked.contains(&format!("range {TOPIC}/0 1000")),
        "{asked:?}"
    );
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn a_max_message_age_hook_can_stop_a_lagging_partition_instead_of_jumping() {
    let mock = mock();
    let old = append_old(&mock, 5);
    fill(&mock, 0, 5);
    let seen = Arc::new(Seen::default());
    let mut config = consumer();
    config
        .max_message_age
        .insert(TOPIC.into(), Duration::from_secs(3600));
    let asked = Arc::new(Mutex::new(None));
    let asked_hook = asked.clone();
    let mut service = start_with(&mock, config, batches(&seen, &[]), false, |b| {
        b.on_max_message_age(move |_, partition, offset, since| {
            *asked_hook.lock().expect("lock") = Some((partition, offset, since));
            StartAt::Stop
        })
    })
    .await;
    let stopped = eventually(Duration::from_secs(10), "partition 0 stopped", || {
        let stopped = service.stopped();
        async move { stopped.into_iter().find(|(p, _)| *p == 0) }
    })
    .await;
    assert!(matches!(stopped.1, Error::Broker { .. }), "{:?}", stopped.1);
    let (partition, offset, since) = asked.lock().expect("lock").expect("hook asked");
    assert_eq!((partition, offset), (0, 0));
    assert!(since > old, "since {since} is not after the old records");
    assert!(seen.attempts().is_empty(), "old records were delivered");
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn a_release_commit_that_meets_a_broken_connection_is_tried_again() {
    let mock = mock();
    for p in 0..4 {
        fill(&mock, p, 10);
    }
    let seen = Arc::new(Seen::default());
    let config = ConsumerConfig {
        commit_interval: Duration::from_secs(600),
        ..consumer()
    };
    let service = start(&mock, config, batches(&seen, &[]), false).await;
    eventually(Duration::from_secs(10), "all 40 records", || {
        let n = seen.distinct().len();
        async move { (n == 40).then_some(()) }
    })
    .await;
    let reset = || Error::Io {
        broker: "mock-1:9092".into(),
        kind: std::io::ErrorKind::ConnectionReset,
        reason: "connection reset by peer".into(),
    };
    mock.script(konsumer::protocol::ApiKey::OffsetCommit, None, Err(reset()));
    service.addr.send(Shutdown).await.expect("shutdown answers");
    assert_eq!(committed(&mock), (0..4).map(|p| (p, 10)).collect());
    assert!(service.log.contains("trying again"));
}
