//! End-to-end latency at a fixed rate: the time from a record being handed to the producer to
//! the consumer's handler seeing it, for konsumer's `ConsumerService` (message handler, and
//! batch handler) and librdkafka's `BaseConsumer` (the `rdkafka` crate 0.39, librdkafka 2.12),
//! each in a child process of its own, on the same broker, taking turns.
//!
//! One run, per client and per fetch max wait:
//!
//! 1. a fresh topic of `--partitions` partitions (default 6) on the broker, and a fresh group;
//! 2. the client starts in a child process (this binary again, with `--child`) and joins; when
//!    it holds every partition it says JOINED;
//! 3. one warm-up record goes to each partition; when the client has handled all of them it is
//!    caught up on every partition and says READY;
//! 4. this process's konsumer `Producer` (acks=all, linger `--linger-ms`, default 1 ms) sends
//!    `--rate` records/s (default 10,000) for `--seconds` (default 30), record `i` to partition
//!    `i % partitions`. Pacing is by schedule, not by sleeping a period: record `i` is due at
//!    `start + i / rate`, and the sender wakes (tokio's timer, 1 ms resolution) and sends every
//!    record that is due, so late wake-ups do not accumulate into a lower rate; records leave
//!    in bursts of about rate/1000. Each value carries its sequence number and its send time,
//!    nanoseconds since the UNIX epoch (CLOCK_REALTIME; producer and consumer are on the same
//!    machine), read just before the record is handed to the producer;
//! 5. the client's handler reads the clock for every record (a batch handler once per batch,
//!    when it is called) and keeps `now - send time`; it checks that every sequence number
//!    arrives exactly once (and counts records out of order within a partition). When it has
//!    all of them (or the parent says END) it reports p50/p90/p99/p99.9/max, the median of
//!    each third of the run (in send order: a broker that falls behind shows as a rising
//!    median) and its CPU seconds from READY to the last record. The parent also times each
//!    record's delivery report (send -> acknowledgement), the producer's and broker's share.
//!
//! The clients' settings are the same where they have the same meaning: range assignor,
//! session timeout 6 s, heartbeat 1 s, earliest reset, auto commit every 5 s, fetch.min.bytes
//! 1, fetch.wait.max.ms as given (`--fetch-max-wait-ms`, a list; default 500 and 10);
//! librdkafka's defaults otherwise; konsumer's `ConsumerConfig` defaults otherwise, with the
//! sidechannel off (librdkafka has none).
//!
//! `--broker tansu` (default): tansu 0.6.0, memory storage. tansu holds every fetch, even one
//! it has data for (about half of the max wait when 250 ms or more remain, else all of it), so
//! with a 500 ms wait latency is set by that sleep for any client. `--broker mock`: the test
//! kit's mocked cluster over TCP in this process, which answers a held fetch as soon as
//! records are appended, as Kafka does; it shows what the clients add.
//!
//! Run with `bash scripts/bench-latency.sh` (or `cargo bench --bench latency -- [options]`):
//!
//! ```text
//! --rate N                 records per second (default 10000)
//! --seconds N              how long to produce (default 30)
//! --partitions N           partitions of each run's topic (default 6)
//! --clients L              konsumer,konsumer-batch,rdkafka (default: all three, in that order)
//! --fetch-max-wait-ms L    comma-separated list, each client runs once per value (default 500,10)
//! --broker B               tansu (default) or mock
//! --linger-ms N            the producer's linger (default 1)
//! --value-len N            value bytes, at least 17 (default 100)
//! --rdkafka-set K=V        any other librdkafka property for the rdkafka client (repeatable)
//! ```
//!
//! Exits non-zero if a client misses or repeats a record, or a run is stuck.

mod latency_scale_support;

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler};
use bytes::{BufMut, Bytes, BytesMut};
use konsumer::consumer::{ConsumerConfig, OffsetReset};
use konsumer::group::GroupConfig;
use konsumer::producer::ProducerConfig;
use konsumer::ClientConfig;
use konsumer_actors::testkit::listener::consumer_versions;
use konsumer_actors::testkit::tansu::{Storage, TansuBroker, TANSU_VERSION};
use konsumer_actors::testkit::MockCluster;
use konsumer_actors::{
    ConsumerService, DeliveryReport, Enqueue, GetPartitions, HandlerRef, HandlerResult, KafkaBatch,
    KafkaMessage, Producer, ProducerExt, ProducerRecord, ReportTo, Shutdown,
};
use latency_scale_support::{
    cpu_seconds, emit, load_average, number, quantile, unix_nanos, watch_stdin, ChildProc, Msg,
};
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

/// Value layout: sequence number (u64, big-endian), send time (u64 ns), kind, padding.
const HEADER_LEN: usize = 17;
const KIND_MEASURED: u8 = 0;
const KIND_WARM_UP: u8 = 1;
/// How long a child may take to join, or to handle the warm-up records.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// After the last record is sent: how long the client may take to report on its own before
/// it is told to stop, and then to report.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// A client that has every record keeps listening this long for repeats before it reports.
const LINGER_FOR_REPEATS: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    Konsumer,
    KonsumerBatch,
    Rdkafka,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Konsumer => "konsumer",
            Client::KonsumerBatch => "konsumer-batch",
            Client::Rdkafka => "rdkafka",
        }
    }
    fn parse(name: &str) -> Result<Client, String> {
        [Client::Konsumer, Client::KonsumerBatch, Client::Rdkafka]
            .into_iter()
            .find(|c| c.name() == name.trim())
            .ok_or(format!("unknown client {name:?}"))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BrokerKind {
    Tansu,
    Mock,
}

#[derive(Clone, Debug)]
struct Settings {
    rate: u64,
    seconds: u64,
    partitions: i32,
    clients: Vec<Client>,
    waits_ms: Vec<u64>,
    broker: BrokerKind,
    linger_ms: u64,
    value_len: usize,
    rdkafka_extra: Vec<(String, String)>,
}

impl Settings {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Settings, String> {
        let mut s = Settings {
            rate: 10_000,
            seconds: 30,
            partitions: 6,
            clients: vec![Client::Konsumer, Client::KonsumerBatch, Client::Rdkafka],
            waits_ms: vec![500, 10],
            broker: BrokerKind::Tansu,
            linger_ms: 1,
            value_len: 100,
            rdkafka_extra: Vec::new(),
        };
        while let Some(arg) = args.next() {
            let mut text = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--rate" => s.rate = number(&arg, &text()?)?,
                "--seconds" => s.seconds = number(&arg, &text()?)?,
                "--partitions" => {
                    s.partitions = i32::try_from(number(&arg, &text()?)?).map_err(|_| "too many")?
                }
                "--linger-ms" => s.linger_ms = number(&arg, &text()?)?,
                "--value-len" => s.value_len = number(&arg, &text()?)? as usize,
                "--clients" => {
                    s.clients = text()?
                        .split(',')
                        .map(Client::parse)
                        .collect::<Result<_, _>>()?
                }
                "--fetch-max-wait-ms" => {
                    s.waits_ms = text()?
                        .split(',')
                        .map(|w| number(&arg, w.trim()))
                        .collect::<Result<_, _>>()?
                }
                "--broker" => {
                    s.broker = match text()?.as_str() {
                        "tansu" => BrokerKind::Tansu,
                        "mock" => BrokerKind::Mock,
                        other => return Err(format!("unknown broker {other:?}")),
                    }
                }
                "--rdkafka-set" => {
                    let pair = text()?;
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or(format!("--rdkafka-set {pair:?}: expected key=value"))?;
                    s.rdkafka_extra.push((k.into(), v.into()));
                }
                // `cargo bench` passes --bench to every bench binary.
                "--bench" => {}
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if s.rate == 0
            || s.seconds == 0
            || s.partitions <= 0
            || s.clients.is_empty()
            || s.waits_ms.is_empty()
        {
            return Err("rate, seconds, partitions, clients and waits must not be zero".into());
        }
        if s.value_len < HEADER_LEN {
            return Err(format!("--value-len must be at least {HEADER_LEN}"));
        }
        Ok(s)
    }

    fn records(&self) -> u64 {
        self.rate * self.seconds
    }
}

// ---------------------------------------------------------------------------------------
// The child: one client, recording latencies.

/// What a client has seen: every measured record once, and its latency.
struct Seen {
    expect: u64,
    got: Vec<bool>,
    distinct: u64,
    repeats: u64,
    /// Records that are not this run's (a short value, a sequence number out of range).
    foreign: u64,
    /// Records whose sequence number is not above the last one of their partition.
    out_of_order: u64,
    last_seq: Vec<Option<u64>>,
    warmed: BTreeSet<i32>,
    /// Nanoseconds from send to handler, by sequence number (kept for distinct records).
    latencies: Vec<u64>,
    /// When the last distinct record came, and the CPU seconds then.
    completed: Option<(Instant, f64)>,
}

impl Seen {
    fn new(expect: u64, partitions: i32) -> Seen {
        Seen {
            expect,
            got: vec![false; expect as usize],
            distinct: 0,
            repeats: 0,
            foreign: 0,
            out_of_order: 0,
            last_seq: vec![None; partitions as usize],
            warmed: BTreeSet::new(),
            latencies: vec![0; expect as usize],
            completed: None,
        }
    }

    #[inline]
    fn record(&mut self, partition: i32, value: Option<&[u8]>, now_ns: u64) {
        let Some(v) = value.filter(|v| v.len() >= HEADER_LEN) else {
            self.foreign += 1;
            return;
        };
        let word = |at: usize| u64::from_be_bytes(v[at..at + 8].try_into().unwrap_or_default());
        let (seq, sent) = (word(0), word(8));
        if v[16] == KIND_WARM_UP {
            self.warmed.insert(partition);
            return;
        }
        let slot = usize::try_from(partition)
            .ok()
            .and_then(|p| self.last_seq.get_mut(p));
        let (Some(last), true) = (slot, seq < self.expect) else {
            self.foreign += 1;
            return;
        };
        if last.is_some_and(|l| seq <= l) {
            self.out_of_order += 1;
        }
        *last = Some(seq);
        if std::mem::replace(&mut self.got[seq as usize], true) {
            self.repeats += 1;
            return;
        }
        self.distinct += 1;
        self.latencies[seq as usize] = now_ns.saturating_sub(sent);
        if self.distinct == self.expect {
            self.completed = Some((Instant::now(), cpu_seconds("self").unwrap_or(f64::NAN)));
        }
    }

    /// The RESULT message; `cpu_at_ready` is the CPU seconds when READY was said.
    fn report(&mut self, cpu_at_ready: f64) {
        let us = |ns: u64| format!("{:.1}", ns as f64 / 1e3);
        // The median of each third of the run, in send order: shows a broker falling behind.
        let len = self.latencies.len();
        let median_of = |range: std::ops::Range<usize>| {
            let mut part: Vec<u64> = range
                .filter(|&i| self.got[i])
                .map(|i| self.latencies[i])
                .collect();
            part.sort_unstable();
            us(quantile(&part, 0.5))
        };
        let thirds: Vec<String> = (0..3)
            .map(|t| median_of(t * len / 3..(t + 1) * len / 3))
            .collect();
        let mut all: Vec<u64> = (0..self.latencies.len())
            .filter(|&i| self.got[i])
            .map(|i| self.latencies[i])
            .collect();
        all.sort_unstable();
        let q = |f: f64| us(quantile(&all, f));
        let mean = all.iter().map(|&l| l as f64).sum::<f64>() / all.len().max(1) as f64;
        let cpu_end = self
            .completed
            .map_or_else(|| cpu_seconds("self").unwrap_or(f64::NAN), |c| c.1);
        emit(
            "RESULT",
            &[
                ("distinct", self.distinct.to_string()),
                ("repeats", self.repeats.to_string()),
                ("missing", (self.expect - self.distinct).to_string()),
                ("foreign", self.foreign.to_string()),
                ("out_of_order", self.out_of_order.to_string()),
                ("p50_us", q(0.5)),
                ("p90_us", q(0.9)),
                ("p99_us", q(0.99)),
                ("p999_us", q(0.999)),
                ("max_us", q(1.0)),
                ("mean_us", format!("{:.1}", mean / 1e3)),
                ("cpu_s", format!("{:.3}", cpu_end - cpu_at_ready)),
                ("p50_thirds_us", thirds.join("/")),
            ],
        );
    }
}

/// What the parent tells a child (its command line after `--child`).
struct ChildArgs {
    client: Client,
    bootstrap: String,
    topic: String,
    group: String,
    partitions: i32,
    expect: u64,
    wait_ms: u64,
    rdkafka_extra: Vec<(String, String)>,
}

impl ChildArgs {
    fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            self.client.name().to_owned(),
            self.bootstrap.clone(),
            self.topic.clone(),
            self.group.clone(),
            self.partitions.to_string(),
            self.expect.to_string(),
            self.wait_ms.to_string(),
        ];
        args.extend(self.rdkafka_extra.iter().map(|(k, v)| format!("{k}={v}")));
        args
    }

    fn parse(args: &[String]) -> Result<ChildArgs, String> {
        let [client, bootstrap, topic, group, partitions, expect, wait, extra @ ..] = args else {
            return Err(format!("child arguments {args:?}"));
        };
        Ok(ChildArgs {
            client: Client::parse(client)?,
            bootstrap: bootstrap.clone(),
            topic: topic.clone(),
            group: group.clone(),
            partitions: number("partitions", partitions)? as i32,
            expect: number("expect", expect)?,
            wait_ms: number("wait", wait)?,
            rdkafka_extra: extra
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
    }
}

/// konsumer's handler: both kinds, the same bookkeeping.
struct Recorder {
    seen: Arc<Mutex<Seen>>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<KafkaMessage> for Recorder {
    type Result = HandlerResult;

    fn handle(&mut self, msg: KafkaMessage, _: &mut Context<Self>) -> HandlerResult {
        let now = unix_nanos();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.record(msg.partition, msg.value(), now);
        Ok(())
    }
}

impl Handler<KafkaBatch> for Recorder {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        let now = unix_nanos();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for record in &batch.records {
            seen.record(batch.partition, record.value(), now);
        }
        Ok(())
    }
}

fn group_config(group: &str, topic: &str) -> GroupConfig {
    let mut config = GroupConfig::new(group, [topic])
        .with_assignors(&["range"])
        .expect("built-in assignor");
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_secs(1);
    config.rebalance_timeout = Duration::from_secs(20);
    config
}

/// The child's phases, for either client: JOINED, READY, then RESULT once every record came
/// (and [`LINGER_FOR_REPEATS`] passed) or the parent said END.
struct Phases {
    joined: bool,
    cpu_at_ready: Option<f64>,
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl Phases {
    /// Moves on as far as `seen` allows; `true` when the result has been reported.
    fn step(&mut self, holds_all: impl FnOnce() -> bool, seen: &mut Seen, partitions: i32) -> bool {
        if !self.joined {
            if holds_all() {
                self.joined = true;
                emit("JOINED", &[]);
            }
            return false;
        }
        let Some(cpu_at_ready) = self.cpu_at_ready else {
            if seen.warmed.len() == partitions as usize {
                self.cpu_at_ready = Some(cpu_seconds("self").unwrap_or(f64::NAN));
                emit("READY", &[]);
            }
            return false;
        };
        let ended = self.ended.load(std::sync::atomic::Ordering::SeqCst);
        let lingered = seen
            .completed
            .is_some_and(|(at, _)| at.elapsed() >= LINGER_FOR_REPEATS);
        if ended || lingered {
            seen.report(cpu_at_ready);
            return true;
        }
        false
    }
}

fn child_main(args: &[String]) -> Result<(), String> {
    let args = ChildArgs::parse(args)?;
    let seen = Seen::new(args.expect, args.partitions);
    let phases = Phases {
        joined: false,
        cpu_at_ready: None,
        ended: watch_stdin(),
    };
    match args.client {
        Client::Rdkafka => rdkafka_child(&args, seen, phases),
        _ => actix::System::new().block_on(konsumer_child(&args, seen, phases)),
    }
}

async fn konsumer_child(args: &ChildArgs, seen: Seen, mut phases: Phases) -> Result<(), String> {
    let seen = Arc::new(Mutex::new(seen));
    let recorder = Recorder { seen: seen.clone() }.start();
    let handler = match args.client {
        Client::KonsumerBatch => HandlerRef::batches(&recorder),
        _ => HandlerRef::messages(&recorder),
    };
    let consumer = ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(args.wait_ms),
        sidechannel_topic: String::new(),
        ..ConsumerConfig::default()
    };
    let service = ConsumerService::builder(
        ClientConfig::new([args.bootstrap.clone()]),
        group_config(&args.group, &args.topic),
    )
    .consumer_config(consumer)
    .handler(handler)
    .start()
    .await
    .map_err(|e| format!("konsumer: service: {e}"))?;
    loop {
        let held = if phases.joined {
            0
        } else {
            service.send(GetPartitions).await.map_or(0, |p| p.len())
        };
        let done = {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            phases.step(
                || held == args.partitions as usize,
                &mut seen,
                args.partitions,
            )
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), service.send(Shutdown)).await;
    Ok(())
}

fn rdkafka_child(args: &ChildArgs, mut seen: Seen, mut phases: Phases) -> Result<(), String> {
    let mut config = RdConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("fetch.min.bytes", "1")
        .set("fetch.wait.max.ms", args.wait_ms.to_string());
    for (key, value) in &args.rdkafka_extra {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("rdkafka: consumer: {e}"))?;
    consumer
        .subscribe(&[&args.topic])
        .map_err(|e| format!("rdkafka: subscribe: {e}"))?;
    loop {
        match consumer.poll(Duration::from_millis(5)) {
            Some(Ok(message)) => seen.record(message.partition(), message.payload(), unix_nanos()),
            Some(Err(e)) => return Err(format!("rdkafka: poll: {e}")),
            None => {}
        }
        let holds_all = || {
            consumer
                .assignment()
                .is_ok_and(|a| a.count() == args.partitions as usize)
        };
        if phases.step(holds_all, &mut seen, args.partitions) {
            break;
        }
    }
    // Dropping closes the consumer: final commit, LeaveGroup.
    drop(consumer);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The parent: broker, producer, runs.

enum Broker {
    Tansu(TansuBroker),
    Mock(MockCluster, String),
}

impl Broker {
    fn bootstrap(&self) -> String {
        match self {
            Broker::Tansu(b) => b.bootstrap(),
            Broker::Mock(_, address) => address.clone(),
        }
    }
    fn create_topic(&self, topic: &str, partitions: i32) {
        match self {
            Broker::Tansu(b) => b.create_topic(topic, partitions),
            Broker::Mock(m, _) => {
                m.add_topic(topic, &vec![1; partitions as usize]);
            }
        }
    }
    fn describe(&self) -> String {
        match self {
            Broker::Tansu(b) => format!("tansu {TANSU_VERSION} (memory) at {}", b.bootstrap()),
            Broker::Mock(_, address) => {
                format!("the test kit's mocked cluster over TCP at {address}")
            }
        }
    }
}

/// One run's figures, from the child's RESULT and the sender.
struct Run {
    client: Client,
    wait_ms: u64,
    result: Msg,
    /// The sender's lag behind schedule: mean and max, in ms.
    lag_mean_ms: f64,
    lag_max_ms: f64,
    /// Records per second actually sent, first to last.
    sent_rate: f64,
    /// Send -> delivery report: p50, p99, max, in ms.
    acks: [f64; 3],
}

fn value(seq: u64, sent: u64, kind: u8, len: usize) -> Bytes {
    let mut v = BytesMut::with_capacity(len);
    v.put_u64(seq);
    v.put_u64(sent);
    v.put_u8(kind);
    v.resize(len, b' ');
    v.freeze()
}

struct Sender {
    producer: actix::Addr<Producer>,
    reports: tokio::sync::mpsc::UnboundedSender<DeliveryReport>,
    outcomes: tokio::sync::mpsc::UnboundedReceiver<DeliveryReport>,
    outstanding: u64,
    failed: Option<String>,
    /// Send -> delivery report, ns, per measured record: the producer's and broker's share.
    acks: Vec<u64>,
}

impl Sender {
    /// `sent` (the send time in the value, 0 for a warm-up record) times the acknowledgement.
    fn send(&mut self, topic: &str, partition: i32, value: Bytes, sent: u64) {
        self.producer.do_send(Enqueue {
            record: ProducerRecord::new(topic).partition(partition).value(value),
            opaque: sent,
            report_to: ReportTo::Channel(self.reports.clone()),
        });
        self.outstanding += 1;
    }

    fn take_reports(&mut self) {
        while let Ok(report) = self.outcomes.try_recv() {
            self.outstanding -= 1;
            if report.opaque > 0 {
                self.acks.push(unix_nanos().saturating_sub(report.opaque));
            }
            if let Err(e) = report.result {
                self.failed.get_or_insert(e.to_string());
            }
        }
    }

    /// Waits for every outstanding delivery report; an error if any record failed.
    async fn settle(&mut self) -> Result<(), String> {
        self.producer.flush().await;
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.outstanding > 0 && Instant::now() < deadline {
            self.take_reports();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        match (self.outstanding, self.failed.take()) {
            (0, None) => Ok(()),
            (n, None) => Err(format!("{n} records without a delivery report")),
            (_, Some(e)) => Err(format!("producing failed: {e}")),
        }
    }
}

async fn one_run(
    settings: &Settings,
    broker: &Broker,
    sender: &mut Sender,
    client: Client,
    wait_ms: u64,
    nonce: &str,
) -> Result<Run, String> {
    let topic = format!("latency-{}-{wait_ms}-{nonce}", client.name());
    broker.create_topic(&topic, settings.partitions);
    let n = settings.records();
    let args = ChildArgs {
        client,
        bootstrap: broker.bootstrap(),
        topic: topic.clone(),
        group: format!("{topic}-group"),
        partitions: settings.partitions,
        expect: n,
        wait_ms,
        rdkafka_extra: settings.rdkafka_extra.clone(),
    };
    let mut child = ChildProc::spawn(client.name(), &args.to_args())?;
    child.expect("JOINED", START_TIMEOUT).await?;
    for p in 0..settings.partitions {
        let warm_up = value(0, unix_nanos(), KIND_WARM_UP, settings.value_len);
        sender.send(&topic, p, warm_up, 0);
    }
    sender.settle().await?;
    child.expect("READY", START_TIMEOUT).await?;
    sender.acks.clear();

    // Paced by schedule: record i is due at start + i / rate.
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let (mut lag_sum, mut lag_max) = (0f64, Duration::ZERO);
    let mut first_sent = None;
    for i in 0..n {
        let due = start
            + Duration::from_nanos(
                (u128::from(i) * 1_000_000_000 / u128::from(settings.rate)) as u64,
            );
        if tokio::time::Instant::now() < due {
            sender.take_reports();
            tokio::time::sleep_until(due).await;
        }
        let now = tokio::time::Instant::now();
        let lag = now.saturating_duration_since(due);
        lag_sum += lag.as_secs_f64();
        lag_max = lag_max.max(lag);
        first_sent.get_or_insert(now);
        let partition = (i % settings.partitions as u64) as i32;
        let sent = unix_nanos();
        let value = value(i, sent, KIND_MEASURED, settings.value_len);
        sender.send(&topic, partition, value, sent);
    }
    let sent_for = first_sent.map_or(0.0, |f| f.elapsed().as_secs_f64());
    sender.settle().await?;
    sender.acks.sort_unstable();
    let ack_ms = |q: f64| quantile(&sender.acks, q) as f64 / 1e6;
    let acks = [ack_ms(0.5), ack_ms(0.99), ack_ms(1.0)];
    let result = match child.expect("RESULT", DRAIN_TIMEOUT).await {
        Ok(result) => result,
        Err(_) => {
            child.tell("END");
            child.expect("RESULT", DRAIN_TIMEOUT).await?
        }
    };
    Ok(Run {
        client,
        wait_ms,
        result,
        lag_mean_ms: lag_sum / n as f64 * 1e3,
        lag_max_ms: lag_max.as_secs_f64() * 1e3,
        sent_rate: n as f64 / sent_for.max(1e-9),
        acks,
    })
}

async fn bench(settings: Settings) -> Result<(), String> {
    let broker = match settings.broker {
        BrokerKind::Tansu => Broker::Tansu(TansuBroker::start(Storage::Memory)),
        BrokerKind::Mock => {
            let mock = MockCluster::new();
            mock.set_versions(consumer_versions());
            let address = mock
                .serve_tcp(1)
                .await
                .map_err(|e| format!("mock broker: {e}"))?;
            Broker::Mock(mock, address)
        }
    };
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!(
        "latency benchmark: {} records/s for {} s ({} records of {} bytes) over {} partitions, \
         producer linger {} ms, acks=all; {}; {cores} cores; load average {}",
        settings.rate,
        settings.seconds,
        settings.records(),
        settings.value_len,
        settings.partitions,
        settings.linger_ms,
        broker.describe(),
        load_average()
    );
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let config = ProducerConfig {
        linger: Duration::from_millis(settings.linger_ms),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(ClientConfig::new([broker.bootstrap()]), config, log)
        .await
        .map_err(|e| format!("producer: {e}"))?;
    let (reports, outcomes) = tokio::sync::mpsc::unbounded_channel();
    let mut sender = Sender {
        producer,
        reports,
        outcomes,
        outstanding: 0,
        failed: None,
        acks: Vec::new(),
    };
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        unix_nanos() / 1_000_000 % 1_000_000_000
    );
    println!(
        "{:<15} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>9}",
        "client",
        "wait ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "mean ms",
        "CPU s",
        "lag ms",
        "load"
    );
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for &wait_ms in &settings.waits_ms {
        for &client in &settings.clients {
            let run = one_run(&settings, &broker, &mut sender, client, wait_ms, &nonce).await?;
            let r = &run.result;
            let ms = |key: &str| r.num(key).map(|us| us / 1e3);
            println!(
                "{:<15} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8.2} {:>7.2} {:>9}",
                client.name(),
                wait_ms,
                ms("p50_us")?,
                ms("p90_us")?,
                ms("p99_us")?,
                ms("p999_us")?,
                ms("max_us")?,
                ms("mean_us")?,
                r.num("cpu_s")?,
                run.lag_max_ms,
                load_average().split(' ').next().unwrap_or("?"),
            );
            let (distinct, repeats) = (r.num("distinct")? as u64, r.num("repeats")? as u64);
            if distinct != settings.records() || repeats != 0 || r.num("foreign")? != 0.0 {
                failures.push(format!(
                    "{} (wait {wait_ms} ms): {distinct} of {} records, {repeats} repeated, {} \
                     foreign",
                    client.name(),
                    settings.records(),
                    r.get("foreign")?
                ));
            }
            println!(
                "    {} of {} records once each ({} repeats, {} out of order); sent at {:.0}/s, \
                 mean lag behind schedule {:.3} ms; p50 by thirds of the run {} us; producer acks p50 {:.2} ms, p99 {:.2} ms, \
                 max {:.2} ms",
                distinct,
                settings.records(),
                repeats,
                r.get("out_of_order")?,
                run.sent_rate,
                run.lag_mean_ms,
                r.get("p50_thirds_us")?,
                run.acks[0],
                run.acks[1],
                run.acks[2]
            );
            runs.push(run);
        }
    }
    sender.producer.close().await;
    println!();
    for &wait_ms in &settings.waits_ms {
        let of = |client: Client| {
            runs.iter()
                .find(|r| r.client == client && r.wait_ms == wait_ms)
        };
        let Some(theirs) = of(Client::Rdkafka) else {
            continue;
        };
        for ours in [Client::Konsumer, Client::KonsumerBatch] {
            let Some(run) = of(ours) else { continue };
            let ratio = |key: &str| -> Result<f64, String> {
                Ok(run.result.num(key)? / theirs.result.num(key)?)
            };
            println!(
                "wait {wait_ms} ms, {} / rdkafka: p50 {:.2}x, p99 {:.2}x, p99.9 {:.2}x, max {:.2}x, \
                 CPU {:.2}x (lower is better)",
                ours.name(),
                ratio("p50_us")?,
                ratio("p99_us")?,
                ratio("p999_us")?,
                ratio("max_us")?,
                ratio("cpu_s")?
            );
        }
    }
    drop(broker);
    if failures.is_empty() {
        println!("records checked: every client handled every record exactly once");
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

fn main() -> ExitCode {
    latency_scale_support::bench_main("latency", child_main, Settings::parse, bench)
}
