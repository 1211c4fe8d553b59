//! The consumption pipeline on a real broker (tansu): ConsumerService members fetch, hand
//! records to handler actors, and commit exactly what is done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, Context, Handler};
use konsumer::consumer::{ConsumerConfig, OffsetReset};
use konsumer::group::GroupConfig;
use konsumer::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use konsumer::kafka_protocol::messages::{GroupId, OffsetFetchRequest, TopicName};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::producer::ProducerConfig;
use konsumer::ClientConfig;
use konsumer_actors::messages::{Call, Route};
use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
use konsumer_actors::testkit::CapturedLog;
use konsumer_actors::{
    Cluster, CommitNow, ConsumerEvent, ConsumerEvents, ConsumerService, Enqueue, HandlerRef,
    HandlerResult, KafkaBatch, Producer, ProducerExt, ProducerRecord, Purpose, ReportTo, Shutdown,
    Target,
};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::eventually;
use crate::real_group::group_config;

/// One finished record: (member, partition, offset, value).
pub type Finished = (String, i32, i64, Vec<u8>);

/// Every record any handler finished, in handling order.
#[derive(Default)]
pub struct Ledger {
    pub handled: Mutex<Vec<Finished>>,
}

impl Ledger {
    /// Distinct (partition, offset) pairs handled.
    pub fn distinct(&self) -> BTreeSet<(i32, i64)> {
        let handled = self.handled.lock().expect("ledger lock");
        handled.iter().map(|(_, p, o, _)| (*p, *o)).collect()
    }
}

/// A batch handler that writes what it handles into the ledger.
pub struct Recorder {
    pub name: String,
    pub ledger: Arc<Ledger>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for Recorder {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        let mut handled = self.ledger.handled.lock().expect("ledger lock");
        for record in &batch.records {
            handled.push((
                self.name.clone(),
                batch.partition,
                record.offset,
                record.value().unwrap_or_default().to_vec(),
            ));
        }
        Ok(())
    }
}

/// A consuming member on its own arbiter (thread).
pub struct ConsumerMember {
    arbiter: Option<Arbiter>,
    pub service: Addr<ConsumerService>,
    pub events: UnboundedReceiver<ConsumerEvent>,
    /// Partitions the member consumes now, as its events told so far (see [`held`](Self::held)).
    held: BTreeSet<i32>,
    pub log: CapturedLog,
}

impl ConsumerMember {
    /// A member whose handler is a [`Recorder`] (batches) writing into `ledger`.
    pub async fn start(
        name: &str,
        bootstrap: String,
        group: GroupConfig,
        consumer: ConsumerConfig,
        ledger: Arc<Ledger>,
    ) -> ConsumerMember {
        let client = ClientConfig::new([bootstrap]);
        Self::start_client(name, client, group, consumer, ledger).await
    }

    /// As [`start`](Self::start), with a whole client configuration (TLS, SASL).
    pub async fn start_client(
        name: &str,
        client: ClientConfig,
        group: GroupConfig,
        consumer: ConsumerConfig,
        ledger: Arc<Ledger>,
    ) -> ConsumerMember {
        let member = name.to_owned();
        Self::start_with_client(client, group, consumer, move || {
            HandlerRef::batches(
                &Recorder {
                    name: member,
                    ledger,
                }
                .start(),
            )
        })
        .await
    }

    /// A member whose handler `make_handler` starts on the member's own thread.
    pub async fn start_with(
        bootstrap: String,
        group: GroupConfig,
        consumer: ConsumerConfig,
        make_handler: impl FnOnce() -> HandlerRef + Send + 'static,
    ) -> ConsumerMember {
        let client = ClientConfig::new([bootstrap]);
        Self::start_with_client(client, group, consumer, make_handler).await
    }

    /// As [`start_with`](Self::start_with), with a whole client configuration (TLS, SASL).
    pub async fn start_with_client(
        client: ClientConfig,
        group: GroupConfig,
        consumer: ConsumerConfig,
        make_handler: impl FnOnce() -> HandlerRef + Send + 'static,
    ) -> ConsumerMember {
        let arbiter = Arbiter::new();
        let (log, captured) = CapturedLog::new();
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        arbiter.spawn(async move {
            let service = ConsumerService::builder(client, group)
                .consumer_config(consumer)
                .handler(make_handler())
                .events(ConsumerEvents::Channel(events_tx))
                .logger(log)
                .start()
                .await
                .expect("service starts");
            let _ = started_tx.send(service);
        });
        let service = started.await.expect("member started");
        ConsumerMember {
            arbiter: Some(arbiter),
            service,
            events,
            held: BTreeSet::new(),
            log: captured,
        }
    }

    /// Graceful: drain, commit, leave.
    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(60), self.service.send(Shutdown)).await;
        self.kill();
    }

    /// The hard way: the thread stops, nothing is committed or left.
    pub fn kill(&mut self) {
        if let Some(arbiter) = self.arbiter.take() {
            arbiter.stop();
        }
    }

    /// The partitions the member holds now: started and not revoked since (reads the events
    /// that arrived meanwhile).
    pub fn held(&mut self) -> &BTreeSet<i32> {
        while let Ok(event) = self.events.try_recv() {
            match event {
                ConsumerEvent::PartitionStart { partition, .. } => {
                    self.held.insert(partition);
                }
                ConsumerEvent::Group(konsumer_actors::messages::GroupEvent::Revoked {
                    partitions,
                    ..
                }) => {
                    for p in partitions.values().flatten() {
                        self.held.remove(p);
                    }
                }
                _ => {}
            }
        }
        &self.held
    }
}

impl Drop for ConsumerMember {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        commit_interval: Duration::from_millis(500),
        fetch_max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    }
}

/// Produces `count` records `0..count` (value = the number) to `topic`, keyed so they spread
/// over the partitions; returns each partition's end offset (the high-water mark).
pub async fn produce_numbers(bootstrap: &str, topic: &str, count: u64) -> BTreeMap<i32, i64> {
    produce_numbers_with(ClientConfig::new([bootstrap.to_owned()]), topic, count).await
}

/// As [`produce_numbers`], with a whole client configuration (TLS, SASL).
pub async fn produce_numbers_with(
    client: ClientConfig,
    topic: &str,
    count: u64,
) -> BTreeMap<i32, i64> {
    let (log, _captured) = CapturedLog::new();
    let producer = Producer::connect(client, ProducerConfig::default(), log)
        .await
        .expect("producer connects");
    let (reports, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..count {
        let record = ProducerRecord::new(topic)
            .key(i.to_string().into_bytes())
            .value(i.to_string().into_bytes());
        producer.do_send(Enqueue {
            record,
            opaque: i,
            report_to: ReportTo::Channel(reports.clone()),
        });
    }
    producer.flush().await;
    drop(reports);
    let mut ends = BTreeMap::new();
    for _ in 0..count {
        let report = tokio::time::timeout(Duration::from_secs(60), delivered.recv())
            .await
            .expect("every record is reported")
            .expect("report channel open");
        let metadata = report
            .result
            .unwrap_or_else(|e| panic!("record {} failed: {e}", report.opaque));
        let offset = metadata.offset.expect("acks=all reports offsets");
        let end = ends.entry(metadata.partition).or_insert(0);
        *end = (*end).max(offset + 1);
    }
    producer.close().await;
    ends
}

/// The group's committed offsets for `topic` (OffsetFetch; tansu is one broker, so it is the
/// coordinator).
pub async fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let client = ClientConfig::new([bootstrap.to_owned()]);
    committed_with(client, group, topic, partitions).await
}

/// As [`committed`], with a whole client configuration (TLS, SASL).
pub async fn committed_with(
    client: ClientConfig,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let (log, _captured) = CapturedLog::new();
    let cluster = Cluster::connect(client, log).await.expect("bootstrap");
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_indexes((0..partitions).collect())]));
    let reply = cluster
        .send(Route {
            target: Target::Any,
            purpose: Purpose::Group,
            call: Call::new(request).with_max_version(7),
        })
        .await
        .expect("cluster alive")
        .expect("OffsetFetch answered")
        .into_typed::<OffsetFetchRequest>("test")
        .expect("an OffsetFetch answer");
    assert_eq!(reply.error_code, 0, "OffsetFetch error");
    reply
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.committed_offset))
        .collect()
}

/// Waits until the members have started, between them, every partition, each member some.
/// Every member holding some means the group has settled (on tansu's memory engine a partition
/// that moves after records exist may resume mid-batch, which it cannot serve).
pub async fn wait_until_started(members: &mut [&mut ConsumerMember], partitions: usize) {
    eventually(Duration::from_secs(60), "every partition started", || {
        let held: Vec<usize> = members.iter_mut().map(|m| m.held().len()).collect();
        let done = held.iter().sum::<usize>() == partitions && held.iter().all(|&n| n > 0);
        async move { done.then_some(()) }
    })
    .await;
}

#[actix::test]
async fn three_members_consume_200k_records_in_order_and_commit_the_high_water_marks() {
    let broker = TansuBroker::start(Storage::Memory);
    let topic = "pipeline";
    broker.create_topic(topic, 12);
    let ledger = Arc::new(Ledger::default());
    let group = || {
        let mut g = group_config("pipeline-group", topic, "roundrobin");
        g.rebalance_timeout = Duration::from_secs(10);
        g
    };
    let mut a = ConsumerMember::start(
        "a",
        broker.bootstrap(),
        group(),
        consumer_config(),
        ledger.clone(),
    )
    .await;
    let mut b = ConsumerMember::start(
        "b",
        broker.bootstrap(),
        group(),
        consumer_config(),
        ledger.clone(),
    )
    .await;
    // "c" does not check batch CRCs (`check_crcs: false`, librdkafka's default): its share
    // must come out exactly as the others' do.
    let mut c = ConsumerMember::start(
        "c",
        broker.bootstrap(),
        group(),
        ConsumerConfig {
            check_crcs: false,
            ..consumer_config()
        },
        ledger.clone(),
    )
    .await;
    wait_until_started(&mut [&mut a, &mut b, &mut c], 12).await;

    const COUNT: u64 = 200_000;
    let ends = produce_numbers(&broker.bootstrap(), topic, COUNT).await;
    assert_eq!(ends.values().sum::<i64>(), COUNT as i64);

    eventually(Duration::from_secs(120), "every record handled", || {
        let n = ledger.distinct().len();
        async move { (n >= COUNT as usize).then_some(()) }
    })
    .await;

    // Every record exactly once, and each partition's records in offset order.
    let handled = ledger.handled.lock().expect("ledger").clone();
    assert_eq!(
        handled.len(),
        COUNT as usize,
        "some records were handled twice"
    );
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut values = BTreeSet::new();
    for (member, partition, offset, value) in &handled {
        if let Some(previous) = last.insert(*partition, *offset) {
            assert!(
                offset > &previous,
                "{member}: partition {partition} went from {previous} to {offset}"
            );
        }
        values.insert(String::from_utf8(value.clone()).expect("utf-8"));
    }
    assert_eq!(values.len(), COUNT as usize);
    assert!(
        handled.iter().any(|(member, ..)| member == "c"),
        "c, which does not check CRCs, handled nothing"
    );

    // Commits catch up with the high-water marks.
    for m in [&a, &b, &c] {
        m.service
            .send(CommitNow)
            .await
            .expect("alive")
            .expect("commit");
    }
    let bootstrap = broker.bootstrap();
    eventually(
        Duration::from_secs(30),
        "committed = high-water marks",
        || {
            let (bootstrap, ends) = (bootstrap.clone(), ends.clone());
            async move {
                let committed = committed(&bootstrap, "pipeline-group", topic, 12).await;
                (committed == ends).then_some(())
            }
        },
    )
    .await;
    for m in [&mut a, &mut b, &mut c] {
        m.shutdown().await;
    }
}

/// A per-record handler that finishes records out of order: each one is deferred, finished by
/// a task after a random delay, and only then written to the ledger and acked.
pub struct Shuffler {
    pub name: String,
    pub ledger: Arc<Ledger>,
}

impl Actor for Shuffler {
    type Context = Context<Self>;
}

impl Handler<konsumer_actors::KafkaMessage> for Shuffler {
    type Result = HandlerResult;

    fn handle(
        &mut self,
        msg: konsumer_actors::KafkaMessage,
        _: &mut Context<Self>,
    ) -> HandlerResult {
        let ack = msg.defer();
        let ledger = self.ledger.clone();
        let name = self.name.clone();
        actix::spawn(async move {
            tokio::time::sleep(Duration::from_micros(fastrand_delay())).await;
            if let Ok(mut handled) = ledger.handled.lock() {
                handled.push((
                    name,
                    msg.partition,
                    msg.offset(),
                    msg.value().unwrap_or_default().to_vec(),
                ));
            }
            ack.done();
        });
        Ok(())
    }
}

/// 0-3 ms, from the clock's low bits (no rand dependency in the test binary).
fn fastrand_delay() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos % 3000)
}

async fn start_shuffler(
    name: &str,
    bootstrap: String,
    group: GroupConfig,
    consumer: ConsumerConfig,
    ledger: Arc<Ledger>,
) -> ConsumerMember {
    let member = name.to_owned();
    ConsumerMember::start_with(bootstrap, group, consumer, move || {
        HandlerRef::messages(
            &Shuffler {
                name: member,
                ledger,
            }
            .start(),
        )
    })
    .await
}

#[actix::test]
async fn out_of_order_acks_never_commit_past_an_unfinished_record_across_a_crash() {
    let broker = TansuBroker::start(Storage::Sqlite);
    let topic = "shuffled";
    broker.create_topic(topic, 4);
    const COUNT: u64 = 20_000;
    let ends = produce_numbers(&broker.bootstrap(), topic, COUNT).await;
    let ledger = Arc::new(Ledger::default());
    let group = || group_config("shuffled-group", topic, "range");
    let consumer = || ConsumerConfig {
        max_in_flight: 200,
        commit_interval: Duration::from_millis(50),
        ..consumer_config()
    };
    let mut first = start_shuffler(
        "first",
        broker.bootstrap(),
        group(),
        consumer(),
        ledger.clone(),
    )
    .await;
    // Crash mid-stream: no drain, no final commit.
    eventually(Duration::from_secs(60), "a third handled", || {
        let n = ledger.distinct().len();
        async move { (n >= COUNT as usize / 3).then_some(()) }
    })
    .await;
    first.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let finished = ledger.distinct();
    let committed_at_crash = committed(&broker.bootstrap(), "shuffled-group", topic, 4).await;
    assert!(
        committed_at_crash.values().any(|&o| o > 0),
        "nothing was committed before the crash: {committed_at_crash:?}"
    );
    for (&partition, &offset) in &committed_at_crash {
        for below in 0..offset {
            assert!(
                finished.contains(&(partition, below)),
                "partition {partition}: committed {offset}, but {below} was never finished"
            );
        }
    }
    // Out of order for real: some record finished while an earlier one was still open.
    let handled = ledger.handled.lock().expect("ledger").clone();
    let mut max_seen: BTreeMap<i32, i64> = BTreeMap::new();
    let mut overtakes = 0;
    for (_, partition, offset, _) in &handled {
        let max = max_seen.entry(*partition).or_insert(-1);
        if *offset < *max {
            overtakes += 1;
        }
        *max = (*max).max(*offset);
    }
    assert!(overtakes > 0, "records were finished strictly in order");

    // A restarted member resumes at the committed offsets and finishes the rest.
    let mut second = start_shuffler(
        "second",
        broker.bootstrap(),
        group(),
        consumer(),
        ledger.clone(),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ledger.distinct().len() < COUNT as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {COUNT} records finished; the restarted member's log:\n{}",
            ledger.distinct().len(),
            second.log.lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let handled = ledger.handled.lock().expect("ledger").clone();
    let redone = handled
        .iter()
        .filter(|(member, p, o, _)| {
            member == "second" && committed_at_crash.get(p).is_some_and(|c| o < c)
        })
        .count();
    assert_eq!(
        redone, 0,
        "the restarted member redid records below the committed offsets"
    );
    second
        .service
        .send(CommitNow)
        .await
        .expect("alive")
        .expect("commit");
    let bootstrap = broker.bootstrap();
    eventually(
        Duration::from_secs(30),
        "committed = high-water marks",
        || {
            let (bootstrap, ends) = (bootstrap.clone(), ends.clone());
            async move {
                let committed = committed(&bootstrap, "shuffled-group", topic, 4).await;
                (committed == ends).then_some(())
            }
        },
    )
    .await;
    second.shutdown().await;
}
