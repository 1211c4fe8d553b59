//! Connection faults between a group and its broker (tansu): three ConsumerService members reach
//! the broker only through a [`FaultProxy`] that resets, stalls and black-holes their
//! connections at random while records keep arriving. They must recover by themselves: nothing
//! lost, commits at the high-water marks, no member holding a partition without progress for
//! longer than the session timeout once the faults stop, and the supervised connection restarts
//! in the log. Beside it, the fixes the faults called for, one at a time: a dead connection is
//! replaced after one request timeout (busy or idle, short requests or a long JoinGroup), and a
//! Fetcher whose broker keeps failing hands its partitions back to be routed anew (on the
//! mocked cluster, which can move a leader without telling).
//!
//! Set `KONSUMER_FAULT_SEED` to replay a seed (the seed of each run is printed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter};
use konsumer::backoff::Backoff;
use konsumer::consumer::ConsumerConfig;
use konsumer::group::GroupConfig;
use konsumer::kafka_protocol::messages::MetadataRequest;
use konsumer::producer::ProducerConfig;
use konsumer::protocol::ApiKey;
use konsumer::{ClientConfig, Error};
use konsumer_actors::messages::{GroupEvent, Route};
use konsumer_actors::testkit::proxy::{Bypass, Fault, FaultProxy, RandomFaults};
use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
use konsumer_actors::testkit::{CapturedLog, MockCluster};
use konsumer_actors::{
    Call, Cluster, CommitNow, ConsumerEvent, ConsumerEvents, ConsumerService, DeliveryReport,
    Enqueue, HandlerRef, Producer, ProducerExt, ProducerRecord, Purpose, ReportTo, Shutdown,
    Target,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::eventually;
use crate::real_consume::{committed, consumer_config, Ledger, Recorder};
use crate::real_group::{group_config, SESSION_TIMEOUT};

const TOPIC: &str = "faulty";
const GROUP: &str = "faulty-group";
const PARTITIONS: i32 = 6;
/// Records are produced in steady chunks while the faults last and for a while after.
const FAULT_WINDOW: Duration = Duration::from_secs(10);
const AFTER_WINDOW: Duration = Duration::from_secs(6);
const CHUNK_EVERY: Duration = Duration::from_millis(400);
const CHUNK: u64 = 1_000;
/// The line the broker connection logs when its supervisor restarts it.
const RESTART_LINE: &str = "supervisor restarting broker connection";

/// Client settings for a faulty network: a request that gets no answer within 3 s (half the
/// session timeout) is given up with its connection, so a black hole costs at most that.
fn client_config(bootstrap: String) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
        reconnect_backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.2,
        },
        ..ClientConfig::new([bootstrap])
    }
}

fn group() -> GroupConfig {
    let mut group = group_config(GROUP, TOPIC, "roundrobin");
    // A JoinGroup swallowed by a black hole costs rebalance timeout + 5 s: keep it short.
    group.rebalance_timeout = Duration::from_secs(5);
    group
}

fn consumer() -> ConsumerConfig {
    ConsumerConfig {
        sidechannel_topic: String::new(),
        retry_backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.2,
        },
        ..consumer_config()
    }
}

/// A ConsumerService member on its own thread, connecting through the proxy with
/// [`client_config`] (`real_consume::ConsumerMember` connects with the default timeouts).
struct Member {
    name: String,
    arbiter: Option<Arbiter>,
    service: Addr<ConsumerService>,
    events: UnboundedReceiver<ConsumerEvent>,
    /// Partitions the member consumes now, and since when (as its events told so far).
    held: BTreeMap<i32, Instant>,
    /// When the member last started a partition.
    last_start: Option<Instant>,
    log: CapturedLog,
}

impl Member {
    async fn start(name: &str, bootstrap: String, ledger: Arc<Ledger>) -> Member {
        let arbiter = Arbiter::new();
        let (log, captured) = CapturedLog::new();
        let log = log.new(slog::o!("member" => name.to_owned()));
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let member = name.to_owned();
        arbiter.spawn(async move {
            let handler = Recorder {
                name: member,
                ledger,
            }
            .start();
            let service = ConsumerService::builder(client_config(bootstrap), group())
                .consumer_config(consumer())
                .handler(HandlerRef::batches(&handler))
                .events(ConsumerEvents::Channel(events_tx))
                .logger(log)
                .start()
                .await
                .expect("service starts");
            let _ = started_tx.send(service);
        });
        let service = started.await.expect("member started");
        Member {
            name: name.to_owned(),
            arbiter: Some(arbiter),
            service,
            events,
            held: BTreeMap::new(),
            last_start: None,
            log: captured,
        }
    }

    /// The partitions the member holds now and since when, as its events tell.
    fn held(&mut self) -> &BTreeMap<i32, Instant> {
        while let Ok(event) = self.events.try_recv() {
            match event {
                ConsumerEvent::PartitionStart { partition, .. } => {
                    let now = Instant::now();
                    self.held.insert(partition, now);
                    self.last_start = Some(now);
                }
                ConsumerEvent::Group(GroupEvent::Revoked { partitions, .. }) => {
                    for p in partitions.values().flatten() {
                        self.held.remove(p);
                    }
                }
                _ => {}
            }
        }
        &self.held
    }

    fn restarts(&self) -> usize {
        self.log
            .lines()
            .iter()
            .filter(|l| l.contains(RESTART_LINE))
            .count()
    }

    async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(30), self.service.send(Shutdown)).await;
        if let Some(arbiter) = self.arbiter.take() {
            arbiter.stop();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(arbiter) = self.arbiter.take() {
            arbiter.stop();
        }
    }
}

/// Waits until every member holds some partitions and together they hold all of them.
async fn wait_until_settled(members: &mut [Member], within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let held: Vec<BTreeSet<i32>> = members
            .iter_mut()
            .map(|m| m.held().keys().copied().collect())
            .collect();
        let all: BTreeSet<i32> = held.iter().flatten().copied().collect();
        if all.len() == PARTITIONS as usize && held.iter().all(|h| !h.is_empty()) {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = members
                .iter()
                .map(|m| format!("--- {} ---\n{}", m.name, m.log.lines().join("\n")))
                .collect();
            panic!(
                "{what}: the group did not settle within {within:?}; held: {held:?}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Enqueues records with ids `ids` (value = key = the id, so they spread over partitions).
fn enqueue(
    producer: &Addr<Producer>,
    ids: std::ops::Range<u64>,
    reports: &UnboundedSender<DeliveryReport>,
) {
    for id in ids {
        let record = ProducerRecord::new(TOPIC)
            .key(id.to_string().into_bytes())
            .value(id.to_string().into_bytes());
        producer.do_send(Enqueue {
            record,
            opaque: id,
            report_to: ReportTo::Channel(reports.clone()),
        });
    }
}

/// Takes the delivery reports that arrived: each partition's end offset grows.
fn take_reports(
    reports: &mut UnboundedReceiver<DeliveryReport>,
    ends: &mut BTreeMap<i32, i64>,
) -> u64 {
    let mut taken = 0;
    while let Ok(report) = reports.try_recv() {
        let metadata = report
            .result
            .unwrap_or_else(|e| panic!("record {} failed: {e}", report.opaque));
        let offset = metadata.offset.expect("acks=all reports offsets");
        let end = ends.entry(metadata.partition).or_insert(0);
        *end = (*end).max(offset + 1);
        taken += 1;
    }
    taken
}

/// Follows the ledger: per partition, the distinct offsets handled, when that number last
/// grew and by whom, and when the partition was last caught up (nothing left to handle).
#[derive(Default)]
struct Watch {
    read: usize,
    seen: BTreeSet<(i32, i64)>,
    done: BTreeMap<i32, usize>,
    progress: BTreeMap<i32, (Instant, String)>,
    caught_up: BTreeMap<i32, Instant>,
}

impl Watch {
    fn sample(&mut self, ledger: &Ledger, ends: &BTreeMap<i32, i64>, now: Instant) {
        let handled = ledger.handled.lock().expect("ledger lock");
        for (member, partition, offset, _) in &handled[self.read..] {
            if self.seen.insert((*partition, *offset)) {
                *self.done.entry(*partition).or_insert(0) += 1;
                self.progress.insert(*partition, (now, member.clone()));
            }
        }
        self.read = handled.len();
        for (&partition, &end) in ends {
            if self.done.get(&partition).copied().unwrap_or(0) >= end as usize {
                self.caught_up.insert(partition, now);
            }
        }
    }

    /// How long `partition` has waited for progress, if it has records left: counted from
    /// its last progress, from when it was last caught up, or from `from`, the latest of them.
    fn wait(
        &self,
        partition: i32,
        ends: &BTreeMap<i32, i64>,
        from: Instant,
        now: Instant,
    ) -> Option<Duration> {
        let end = *ends.get(&partition)?;
        if self.done.get(&partition).copied().unwrap_or(0) >= end as usize {
            return None;
        }
        let progress = self.progress.get(&partition).map_or(from, |(at, _)| *at);
        let caught_up = self.caught_up.get(&partition).copied().unwrap_or(from);
        Some(now.duration_since(progress.max(caught_up).max(from)))
    }

    fn total(&self) -> usize {
        self.seen.len()
    }
}

#[actix::test]
async fn real_faults_members_recover_from_resets_stalls_and_black_holes_without_loss() {
    let began = Instant::now();
    let seed: u64 = std::env::var("KONSUMER_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            // A fresh seed each run (no RNG crate in this test binary): the clock's nanoseconds.
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("real_faults: seed {seed} (KONSUMER_FAULT_SEED={seed} replays the draws)");

    let proxy = FaultProxy::start().expect("the proxy starts");
    let broker = TansuBroker::start_advertising(Storage::Sqlite, proxy.port());
    proxy.set_target(broker.addr());
    broker.create_topic(TOPIC, PARTITIONS);

    // The producer feeds the test around the proxy: only the members are under test.
    let (producer_log, _producer_log) = CapturedLog::new();
    let direct = Arc::new(ClientConfig::new([broker.bootstrap()]));
    let bypass = Bypass::new(
        direct.clone(),
        producer_log.clone(),
        proxy.address(),
        broker.bootstrap(),
    );
    let cluster = Cluster::connect_with(direct, producer_log.clone(), Arc::new(bypass))
        .await
        .expect("the producer's cluster bootstraps");
    let producer = Producer::new(cluster, ProducerConfig::default(), producer_log)
        .expect("valid producer config")
        .start();
    let (reports_tx, mut reports) = tokio::sync::mpsc::unbounded_channel();

    let ledger = Arc::new(Ledger::default());
    let mut members = Vec::new();
    for name in ["a", "b", "c"] {
        members.push(Member::start(name, proxy.address(), ledger.clone()).await);
    }
    wait_until_settled(&mut members, Duration::from_secs(60), "before the faults").await;

    // Faults for FAULT_WINDOW, records for FAULT_WINDOW + AFTER_WINDOW; then every record must
    // be handled. Once the faults stop, no member may hold a partition with records left
    // without progress for longer than the session timeout, however its connections were left
    // (a black hole lasts until the member gives up on it). How long a partition waited while
    // nobody held it (a rebalance) is reported, not bounded: tansu 0.6's coordinator answers
    // each JoinGroup at once, without Kafka's barrier, so after a disturbance its groups may
    // go through several generations before they settle (see peer_group.rs).
    let mut plan = RandomFaults::new(seed, Duration::from_millis(300));
    plan.max_stall = Duration::from_secs(2);
    proxy.start_random(plan);
    let faults_began = Instant::now();
    let mut faults_stopped: Option<Instant> = None;
    let mut counts = proxy.counts();
    let mut produced = 0u64;
    let mut reported = 0u64;
    let mut next_chunk = faults_began;
    let mut ends = BTreeMap::new();
    let mut watch = Watch::default();
    let mut handled_when_stopped = 0;
    // The longest any partition with records left waited for progress after the faults (it
    // includes rebalances, when nobody holds it), and per member and partition the waits
    // beyond the session timeout of a member that held the partition meanwhile.
    let mut worst_partition_wait = Duration::ZERO;
    let mut worst_member_wait = Duration::ZERO;
    let mut stuck: BTreeMap<(String, i32), (Duration, Duration)> = BTreeMap::new();
    let deadline = faults_began + FAULT_WINDOW + AFTER_WINDOW + Duration::from_secs(25);
    loop {
        let now = Instant::now();
        if now >= next_chunk && now < faults_began + FAULT_WINDOW + AFTER_WINDOW {
            enqueue(&producer, produced..produced + CHUNK, &reports_tx);
            produced += CHUNK;
            next_chunk += CHUNK_EVERY;
        }
        if faults_stopped.is_none() && now >= faults_began + FAULT_WINDOW {
            proxy.stop_random();
            faults_stopped = Some(now);
            counts = proxy.counts();
            // In the echoed log, so what members did before and after can be told apart.
            eprintln!("real_faults: --- the faults stop here ({counts}) ---");
            handled_when_stopped = watch.total();
        }
        reported += take_reports(&mut reports, &mut ends);
        watch.sample(&ledger, &ends, now);
        if let Some(stopped) = faults_stopped {
            for &partition in ends.keys() {
                if let Some(wait) = watch.wait(partition, &ends, stopped, now) {
                    worst_partition_wait = worst_partition_wait.max(wait);
                }
            }
            for m in &mut members {
                let name = m.name.clone();
                for (&partition, &since) in m.held() {
                    let Some(wait) = watch.wait(partition, &ends, since.max(stopped), now) else {
                        continue;
                    };
                    worst_member_wait = worst_member_wait.max(wait);
                    if wait <= SESSION_TIMEOUT {
                        continue;
                    }
                    let after = now - stopped;
                    let worst = stuck.entry((name.clone(), partition)).or_insert_with(|| {
                        eprintln!(
                            "real_faults: --- {name} has held partition {partition} without \
                             progress for {wait:?}, {after:?} after the faults stopped ---"
                        );
                        (wait, after)
                    });
                    if wait > worst.0 {
                        *worst = (wait, after);
                    }
                }
            }
        }
        let producing = now < faults_began + FAULT_WINDOW + AFTER_WINDOW;
        if !producing && reported == produced && watch.total() >= produced as usize {
            break;
        }
        if now > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let faults_stopped = faults_stopped.expect("the faults stopped");
    let all_handled_after = faults_stopped.elapsed();
    let lost: Vec<(i32, i64)> = ends
        .iter()
        .flat_map(|(&p, &end)| (0..end).map(move |o| (p, o)))
        .filter(|k| !watch.seen.contains(k))
        .collect();
    let restarts = |members: &[Member]| -> Vec<(String, usize)> {
        members
            .iter()
            .map(|m| (m.name.clone(), m.restarts()))
            .collect()
    };
    let logs = |members: &[Member]| {
        members
            .iter()
            .map(|m| format!("--- {} ---\n{}", m.name, m.log.lines().join("\n")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    eprintln!(
        "real_faults: {produced} records produced ({reported} acknowledged); faults for {:?}: \
         {counts} ({} in all) over {} proxied connections; handled when the faults stopped: \
         {handled_when_stopped}; lost {}; every record handled {all_handled_after:?} after the \
         faults stopped; longest wait for progress after the faults: {worst_member_wait:?} by a \
         member holding the partition, {worst_partition_wait:?} in all (rebalances included); \
         connection restarts per member: {:?}",
        faults_stopped - faults_began,
        counts.total(),
        proxy.accepted(),
        lost.len(),
        restarts(&members),
    );
    assert_eq!(
        reported, produced,
        "the producer did not deliver everything"
    );
    let stuck: Vec<String> = stuck
        .iter()
        .map(|((member, partition), (wait, after))| {
            format!(
                "{member} held partition {partition} without progress for {wait:?}, until \
                 {after:?} after the faults stopped"
            )
        })
        .collect();
    assert!(
        stuck.is_empty(),
        "members stuck longer than the session timeout ({SESSION_TIMEOUT:?}) after the faults \
         stopped:\n{}\n{}",
        stuck.join("\n"),
        logs(&members)
    );
    assert!(
        lost.is_empty(),
        "{} records lost, the first: {:?}\n{}",
        lost.len(),
        &lost[..lost.len().min(10)],
        logs(&members)
    );
    // The faults really happened, and the members' connections were restarted for them.
    assert!(
        counts.resets > 0 && counts.stalls > 0 && counts.black_holes > 0,
        "faults: {counts}"
    );
    assert!(
        restarts(&members).iter().map(|(_, n)| n).sum::<usize>() > 0,
        "no supervised restart in any member's log"
    );

    // Every member is back at work (each started partitions since the faults stopped), and
    // the commits reach the high-water marks. Not "all settled at one instant": tansu 0.6
    // answers each JoinGroup at once, without Kafka's barrier, so a group it coordinates may
    // go through a few more generations (see peer_group.rs).
    let back = Instant::now() + Duration::from_secs(30);
    while members
        .iter_mut()
        .any(|m| m.held().is_empty() && m.last_start.is_none_or(|at| at < faults_stopped))
    {
        assert!(
            Instant::now() < back,
            "not every member came back to work after the faults: {:?}\n{}",
            members
                .iter()
                .map(|m| (
                    m.name.clone(),
                    m.last_start
                        .map(|at| at.saturating_duration_since(faults_stopped))
                ))
                .collect::<Vec<_>>(),
            logs(&members)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bootstrap = broker.bootstrap();
    let services: Vec<Addr<ConsumerService>> = members.iter().map(|m| m.service.clone()).collect();
    eventually(
        Duration::from_secs(30),
        "committed = high-water marks",
        || {
            let (bootstrap, ends, services) = (bootstrap.clone(), ends.clone(), services.clone());
            async move {
                // A commit refused mid-rebalance is retried on the next round.
                for service in &services {
                    let _ = service.send(CommitNow).await;
                }
                let committed = committed(&bootstrap, GROUP, TOPIC, PARTITIONS).await;
                (committed == ends).then_some(())
            }
        },
    )
    .await;
    for m in &mut members {
        m.shutdown().await;
    }
    producer.close().await;
    // Duplicates are allowed (a member that lost its partitions without committing leaves
    // them to be read again from the last commit); counted at the very end, re-reads included.
    let handled = ledger.handled.lock().expect("ledger").len();
    let duplicates = handled - ledger.distinct().len();
    eprintln!(
        "real_faults: seed {seed}: {produced} records, faults {counts}, lost 0, duplicates \
         {duplicates}, wall time {:?}",
        began.elapsed()
    );
}

/// The broker connection's answer to silence. A request on a black-holed connection fails
/// after its timeout and takes the connection with it (logged as a supervised restart), so the
/// next request goes out on a fresh connection and is answered; before, every later request
/// waited out its timeout on the same dead connection. A request allowed far longer (as a
/// JoinGroup is) fails within the request timeout too, through the probe written before it;
/// and an idle dead connection is replaced without any request having to fail on it.
#[actix::test]
async fn real_faults_a_black_holed_connection_is_replaced_after_one_request_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let proxy = FaultProxy::start().expect("the proxy starts");
    let broker = TansuBroker::start_advertising(Storage::Memory, proxy.port());
    proxy.set_target(broker.addr());
    let (log, captured) = CapturedLog::new();
    let config = ClientConfig {
        connect_timeout: TIMEOUT,
        request_timeout: TIMEOUT,
        ..ClientConfig::new([proxy.address()])
    };
    let cluster = Cluster::connect(config, log).await.expect("bootstrap");
    let metadata = |timeout: Option<Duration>| {
        let mut call = Call::new(MetadataRequest::default().with_topics(None));
        if let Some(timeout) = timeout {
            call = call.with_timeout(timeout);
        }
        cluster.send(Route {
            target: Target::Any,
            purpose: Purpose::General,
            call,
        })
    };
    let restarts = |why: &str| {
        captured
            .lines()
            .iter()
            .filter(|l| l.contains(RESTART_LINE) && l.contains(why))
            .count()
    };
    metadata(None).await.expect("alive").expect("answered");

    // Busy: the request in the black hole times out, the next one is answered.
    assert!(proxy.inject_all(Fault::BlackHole) >= 1);
    let started = Instant::now();
    let error = metadata(None)
        .await
        .expect("alive")
        .expect_err("a black hole answers nothing");
    assert!(matches!(error, Error::Timeout { .. }), "{error}");
    metadata(None)
        .await
        .expect("alive")
        .expect("the next request, on a fresh connection");
    assert!(
        started.elapsed() < 3 * TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        restarts("no answer to a Metadata request"),
        1,
        "{:?}",
        captured.lines()
    );

    // A long request (20 s allowed) on a connection that is already dead: found out by the
    // probe in one request timeout.
    assert!(proxy.inject_all(Fault::BlackHole) >= 1);
    let started = Instant::now();
    let error = metadata(Some(Duration::from_secs(20)))
        .await
        .expect("alive")
        .expect_err("a black hole answers nothing");
    assert!(
        matches!(&error, Error::Io { kind, .. } if *kind == std::io::ErrorKind::TimedOut),
        "{error}"
    );
    assert!(
        started.elapsed() < 3 * TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(restarts("no answer to a ApiVersions request"), 1);
    metadata(None)
        .await
        .expect("alive")
        .expect("answered again");

    // Idle: nothing is asked, yet the dead connection is replaced.
    let before = proxy.accepted();
    assert!(proxy.inject_all(Fault::BlackHole) >= 1);
    eventually(4 * TIMEOUT, "the idle dead connection replaced", || {
        let replaced = restarts("no answer to a ApiVersions request") == 2;
        async move { replaced.then_some(()) }
    })
    .await;
    eventually(TIMEOUT, "a new connection through the proxy", || {
        let reconnected = proxy.accepted() > before;
        async move { reconnected.then_some(()) }
    })
    .await;
    metadata(None)
        .await
        .expect("alive")
        .expect("answered at once");
}

/// A Fetcher whose broker fails every Fetch as a whole hands its partitions back after a few
/// failures in a row, and the service routes them anew from fresh metadata: here the
/// partition's leader moved while the old one kept failing without saying so, and fetching
/// resumes on the new leader where it stopped. Before, the Fetcher retried the old broker
/// forever.
#[actix::test]
async fn real_faults_a_fetcher_whose_broker_keeps_failing_routes_its_partitions_anew() {
    const TOPIC: &str = "rerouted";
    let mock = MockCluster::new();
    mock.add_broker(1, "mock-1", 9092)
        .add_broker(2, "mock-2", 9092)
        .add_topic(TOPIC, &[1]);
    let values: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    mock.append(TOPIC, 0, &records[..100]);

    let (log, captured) = CapturedLog::new();
    let client = ClientConfig::new(["mock-1:9092"]);
    let cluster = Cluster::connect_with(Arc::new(client.clone()), log.clone(), mock.connector())
        .await
        .expect("bootstrap");
    let mut group = GroupConfig::new("rerouting", [TOPIC]);
    group.session_timeout = Duration::from_secs(2);
    group.heartbeat_interval = Duration::from_millis(100);
    group.rebalance_timeout = Duration::from_secs(2);
    let fast = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        multiplier: 2.0,
        jitter: 0.0,
    };
    let consumer = ConsumerConfig {
        fetch_max_wait: Duration::from_millis(20),
        retry_backoff: fast,
        ..consumer()
    };
    let ledger = Arc::new(Ledger::default());
    let handler = Recorder {
        name: "only".into(),
        ledger: ledger.clone(),
    }
    .start();
    let service = ConsumerService::builder(client, group)
        .cluster(cluster)
        .consumer_config(consumer)
        .handler(HandlerRef::batches(&handler))
        .logger(log)
        .start()
        .await
        .expect("the service starts");
    let handled = |n: usize| {
        let ledger = ledger.clone();
        move || {
            let done = ledger.distinct().len() >= n;
            async move { done.then_some(()) }
        }
    };
    eventually(
        Duration::from_secs(10),
        "the first 100 records",
        handled(100),
    )
    .await;

    // Broker 1 now fails every Fetch (more failures scripted than the test can use up); once
    // the Fetcher has given up on it, the leadership moves to broker 2 (a partition moved while
    // its Fetch was waiting at broker 1 would be answered NotLeader, which reroutes anyway).
    for _ in 0..10_000 {
        let error = Error::Timeout {
            api: ApiKey::Fetch,
            broker: "mock-1:9092".into(),
            after: Duration::from_millis(1),
            last_error: None,
        };
        mock.script(ApiKey::Fetch, Some(1), Err(error));
    }
    let given_up = || {
        let seen = captured.contains("fetches keep failing; handing the partitions back");
        async move { seen.then_some(()) }
    };
    eventually(Duration::from_secs(5), "the Fetcher to give up", given_up).await;
    mock.move_leader(TOPIC, 0, 2);
    mock.append(TOPIC, 0, &records[100..]);
    eventually(
        Duration::from_secs(10),
        "the rest, from the new leader",
        handled(200),
    )
    .await;
    let distinct = ledger.distinct();
    assert_eq!(distinct, (0..200).map(|o| (0, o)).collect::<BTreeSet<_>>());
    let _ = service.send(Shutdown).await;
}
