//! Scale: what many partitions and many members cost.
//!
//! **Idle partitions** (`--part idle`). One member assigned every partition of a topic — for
//! each count in `--partitions` (default 10 and 1,000) — on the test kit's replay broker
//! (`testkit::replay`), which runs in this process: it serves `--records-per-partition`
//! records (default 10) of 100 bytes per partition and holds an empty fetch for the fetch's
//! max wait (at most 1 s), as a broker does. Why the replay broker and not tansu or the
//! in-process mock: the client must run in a process of its own for its memory and CPU to be
//! its own, so the broker must be reachable over TCP by both clients, and it must cost
//! nothing while idle and answer a 1,000-partition fetch at once (tansu creates 1,000
//! partitions slowly and sleeps in every fetch; see BENCHMARKS.md). Each client runs in a
//! child process (this binary again, with `--child`):
//!
//! - **konsumer**: `ConsumerService` with a batch handler that checks offsets (range assignor,
//!   earliest reset, sidechannel off, `ConsumerConfig` defaults otherwise: fetch max wait
//!   500 ms);
//! - **rdkafka**: a `BaseConsumer` polled every 100 ms on the main thread (range,
//!   `auto.offset.reset=earliest`, librdkafka's defaults otherwise: fetch.wait.max.ms 500).
//!
//! Both: session timeout 6 s, heartbeat 1 s. The child reads its `VmRSS` (from
//! `/proc/self/status`) before it creates the client, again once it holds every partition and
//! has handled every record (each exactly once, in offset order, or the bench fails), waits
//! `--settle-seconds` (default 3), and then measures its CPU seconds (`/proc/self/stat`, all
//! threads) over `--idle-seconds` (default 10) of idling, and its RSS and thread count after.
//! The parent counts the Fetch requests it answered in that window and its own CPU (the
//! broker's: this process does nothing else meanwhile). Memory per partition
//! is the slope between the two partition counts, so the client's fixed cost cancels out.
//!
//! **Group formation** (`--part group`). `--members` (default 50) konsumer `ConsumerService`s
//! in this process join one group on a topic of `--group-partitions` partitions (default 100
//! and 200), all started at once, against the mocked cluster (`--group-broker mock`, in
//! process, with Kafka's join and sync barriers but no initial rebalance delay) and/or tansu
//! (`--group-broker tansu`). Measured: the time from starting the first member to a stable
//! assignment — every member in the same generation, every partition in exactly one member's
//! assignment, every member consuming its partitions — that then lasts `--stable-heartbeats`
//! heartbeat intervals (default 5) without a new generation. Heartbeat 1 s (`--heartbeat-ms`),
//! session timeout 10 s, rebalance timeout 20 s, range assignor.
//!
//! Run with `bash scripts/bench-scale.sh` (or `cargo bench --bench scale -- [options]`);
//! `--part idle` or `--part group` runs one half. Exits non-zero if a check fails.

mod latency_scale_support;

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Context, Handler};
use konsumer::compression::Compression;
use konsumer::consumer::{ConsumerConfig, OffsetReset};
use konsumer::group::GroupConfig;
use konsumer::kafka_protocol::messages::ApiKey;
use konsumer::ClientConfig;
use konsumer_actors::messages::GetMembership;
use konsumer_actors::testkit::tansu::{Storage, TansuBroker, TANSU_VERSION};
use konsumer_actors::testkit::{MockCluster, ReplayBroker, ReplayTopic};
use konsumer_actors::{
    Cluster, ConsumerService, GetCoordinator, GetPartitions, HandlerRef, HandlerResult, KafkaBatch,
    Shutdown,
};
use latency_scale_support::{
    cpu_seconds, emit, load_average, number, status_field, watch_stdin, ChildProc,
};
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

const VALUE_LEN: usize = 100;
const BATCH_RECORDS: usize = 128;
/// How long a child may take to hold every partition and handle every record.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a group may take to become stable.
const GROUP_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Clone, Debug)]
struct Settings {
    idle: bool,
    group: bool,
    clients: Vec<String>,
    partitions: Vec<i32>,
    records_per_partition: u64,
    settle_s: u64,
    idle_s: u64,
    wait_ms: u64,
    members: usize,
    group_partitions: Vec<i32>,
    heartbeat_ms: u64,
    stable_heartbeats: u32,
    group_brokers: Vec<String>,
}

fn list(arg: &str, text: &str) -> Result<Vec<u64>, String> {
    text.split(',').map(|v| number(arg, v.trim())).collect()
}

impl Settings {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Settings, String> {
        let mut s = Settings {
            idle: true,
            group: true,
            clients: vec!["konsumer".into(), "rdkafka".into()],
            partitions: vec![10, 1000],
            records_per_partition: 10,
            settle_s: 3,
            idle_s: 10,
            wait_ms: 500,
            members: 50,
            group_partitions: vec![100, 200],
            heartbeat_ms: 1000,
            stable_heartbeats: 5,
            group_brokers: vec!["mock".into()],
        };
        let count = |v: Vec<u64>| -> Result<Vec<i32>, String> {
            v.into_iter()
                .map(|n| i32::try_from(n).map_err(|_| "too many partitions".to_string()))
                .collect()
        };
        while let Some(arg) = args.next() {
            let mut text = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--part" => match text()?.as_str() {
                    "idle" => (s.idle, s.group) = (true, false),
                    "group" => (s.idle, s.group) = (false, true),
                    "both" => (s.idle, s.group) = (true, true),
                    other => return Err(format!("unknown part {other:?}")),
                },
                "--clients" => s.clients = text()?.split(',').map(str::to_owned).collect(),
                "--partitions" => s.partitions = count(list(&arg, &text()?)?)?,
                "--records-per-partition" => s.records_per_partition = number(&arg, &text()?)?,
                "--settle-seconds" => s.settle_s = number(&arg, &text()?)?,
                "--idle-seconds" => s.idle_s = number(&arg, &text()?)?,
                "--fetch-max-wait-ms" => s.wait_ms = number(&arg, &text()?)?,
                "--members" => s.members = number(&arg, &text()?)? as usize,
                "--group-partitions" => s.group_partitions = count(list(&arg, &text()?)?)?,
                "--heartbeat-ms" => s.heartbeat_ms = number(&arg, &text()?)?,
                "--stable-heartbeats" => s.stable_heartbeats = number(&arg, &text()?)? as u32,
                "--group-broker" => {
                    s.group_brokers = text()?.split(',').map(str::to_owned).collect()
                }
                "--bench" => {}
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if s.clients.iter().any(|c| c != "konsumer" && c != "rdkafka") {
            return Err(format!("clients {:?}: konsumer, rdkafka", s.clients));
        }
        if s.group_brokers.iter().any(|b| b != "mock" && b != "tansu") {
            return Err(format!("group brokers {:?}: mock, tansu", s.group_brokers));
        }
        if s.partitions
            .iter()
            .chain(&s.group_partitions)
            .any(|&p| p <= 0)
            || s.members == 0
            || s.idle_s == 0
            || s.heartbeat_ms == 0
        {
            return Err("partitions, members, idle seconds and heartbeat must not be zero".into());
        }
        Ok(s)
    }
}

fn group_config(group: &str, topic: &str, heartbeat: Duration, session: Duration) -> GroupConfig {
    let mut config = GroupConfig::new(group, [topic])
        .with_assignors(&["range"])
        .expect("built-in assignor");
    config.session_timeout = session;
    config.heartbeat_interval = heartbeat;
    config.rebalance_timeout = Duration::from_secs(20);
    config
}

// ---------------------------------------------------------------------------------------
// Idle partitions: the child.

/// Offsets seen per partition: each must be the next one (0, 1, 2, ...).
struct Offsets {
    next: Vec<i64>,
    total: u64,
    wrong: u64,
}

impl Offsets {
    fn new(partitions: i32) -> Offsets {
        Offsets {
            next: vec![0; partitions as usize],
            total: 0,
            wrong: 0,
        }
    }
    fn add(&mut self, partition: i32, offset: i64) {
        self.total += 1;
        match usize::try_from(partition)
            .ok()
            .and_then(|p| self.next.get_mut(p))
        {
            Some(next) if *next == offset => *next += 1,
            _ => self.wrong += 1,
        }
    }
}

struct Counter {
    offsets: Arc<Mutex<Offsets>>,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for Counter {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        let mut offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        for record in &batch.records {
            offsets.add(batch.partition, record.offset);
        }
        Ok(())
    }
}

struct IdleArgs {
    client: String,
    bootstrap: String,
    topic: String,
    partitions: i32,
    records_per_partition: u64,
    wait_ms: u64,
    settle_s: u64,
    idle_s: u64,
}

impl IdleArgs {
    fn to_args(&self) -> Vec<String> {
        vec![
            self.client.clone(),
            self.bootstrap.clone(),
            self.topic.clone(),
            self.partitions.to_string(),
            self.records_per_partition.to_string(),
            self.wait_ms.to_string(),
            self.settle_s.to_string(),
            self.idle_s.to_string(),
        ]
    }
    fn parse(args: &[String]) -> Result<IdleArgs, String> {
        let [client, bootstrap, topic, partitions, records, wait, settle, idle] = args else {
            return Err(format!("child arguments {args:?}"));
        };
        Ok(IdleArgs {
            client: client.clone(),
            bootstrap: bootstrap.clone(),
            topic: topic.clone(),
            partitions: number("partitions", partitions)? as i32,
            records_per_partition: number("records", records)?,
            wait_ms: number("wait", wait)?,
            settle_s: number("settle", settle)?,
            idle_s: number("idle", idle)?,
        })
    }
}

/// The child's clock: caught up, settled, idle window; says CAUGHT_UP, IDLE_START, RESULT.
struct IdleClock {
    rss_before_kb: u64,
    started: Instant,
    caught_up: Option<(Instant, u64)>,
    idle_from: Option<(Instant, f64)>,
    settle: Duration,
    idle: Duration,
}

impl IdleClock {
    fn new(args: &IdleArgs) -> IdleClock {
        IdleClock {
            rss_before_kb: status_field("self", "VmRSS").unwrap_or(0),
            started: Instant::now(),
            caught_up: None,
            idle_from: None,
            settle: Duration::from_secs(args.settle_s),
            idle: Duration::from_secs(args.idle_s),
        }
    }

    /// `true` once the result has been reported; an error if catching up takes too long.
    fn step(
        &mut self,
        caught_up: impl FnOnce() -> bool,
        offsets: &Offsets,
    ) -> Result<bool, String> {
        let Some((at, rss_caught_up_kb)) = self.caught_up else {
            if caught_up() {
                let rss = status_field("self", "VmRSS").unwrap_or(0);
                self.caught_up = Some((Instant::now(), rss));
                emit("CAUGHT_UP", &[]);
            } else if self.started.elapsed() > CATCH_UP_TIMEOUT {
                return Err(format!(
                    "not caught up after {CATCH_UP_TIMEOUT:?}: {} records handled",
                    offsets.total
                ));
            }
            return Ok(false);
        };
        let Some((from, cpu_from)) = self.idle_from else {
            if at.elapsed() >= self.settle {
                self.idle_from = Some((Instant::now(), cpu_seconds("self").unwrap_or(f64::NAN)));
                emit("IDLE_START", &[]);
            }
            return Ok(false);
        };
        if from.elapsed() < self.idle {
            return Ok(false);
        }
        let cpu = cpu_seconds("self").unwrap_or(f64::NAN) - cpu_from;
        let field = |f: &str| status_field("self", f).unwrap_or(0).to_string();
        emit(
            "RESULT",
            &[
                ("rss_before_kb", self.rss_before_kb.to_string()),
                ("rss_caught_up_kb", rss_caught_up_kb.to_string()),
                ("rss_idle_kb", field("VmRSS")),
                ("hwm_kb", field("VmHWM")),
                ("threads", field("Threads")),
                (
                    "catch_up_s",
                    format!("{:.3}", (at - self.started).as_secs_f64()),
                ),
                ("idle_s", format!("{:.3}", from.elapsed().as_secs_f64())),
                ("idle_cpu_s", format!("{cpu:.4}")),
                ("records", offsets.total.to_string()),
                ("wrong", offsets.wrong.to_string()),
            ],
        );
        Ok(true)
    }
}

fn idle_child(args: &[String]) -> Result<(), String> {
    let args = IdleArgs::parse(args)?;
    let clock = IdleClock::new(&args);
    let stop = watch_stdin();
    let expect = args.partitions as u64 * args.records_per_partition;
    let result = if args.client == "rdkafka" {
        idle_rdkafka(&args, clock, expect)
    } else {
        actix::System::new().block_on(idle_konsumer(&args, clock, expect))
    };
    // Wait for the parent to have read the result (it closes our stdin) before exiting.
    while result.is_ok() && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    result
}

async fn idle_konsumer(args: &IdleArgs, mut clock: IdleClock, expect: u64) -> Result<(), String> {
    let offsets = Arc::new(Mutex::new(Offsets::new(args.partitions)));
    let counter = Counter {
        offsets: offsets.clone(),
    }
    .start();
    let consumer = ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(args.wait_ms),
        sidechannel_topic: String::new(),
        ..ConsumerConfig::default()
    };
    let group = format!("{}-{}", args.topic, args.client);
    let service = ConsumerService::builder(
        ClientConfig::new([args.bootstrap.clone()]),
        group_config(
            &group,
            &args.topic,
            Duration::from_secs(1),
            Duration::from_secs(6),
        ),
    )
    .consumer_config(consumer)
    .handler(HandlerRef::batches(&counter))
    .start()
    .await
    .map_err(|e| format!("konsumer: service: {e}"))?;
    let outcome = loop {
        let held = if clock.caught_up.is_none() {
            service.send(GetPartitions).await.map_or(0, |p| p.len())
        } else {
            0
        };
        let step = {
            let offsets = offsets.lock().unwrap_or_else(|e| e.into_inner());
            let done = || held == args.partitions as usize && offsets.total >= expect;
            clock.step(done, &offsets)
        };
        match step {
            Ok(false) => {}
            other => break other.map(|_| ()),
        }
        // Checked every 100 ms, as the rdkafka child polls: both wake the process as often.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), service.send(Shutdown)).await;
    outcome
}

fn idle_rdkafka(args: &IdleArgs, mut clock: IdleClock, expect: u64) -> Result<(), String> {
    let consumer: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", format!("{}-{}", args.topic, args.client))
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", args.wait_ms.to_string())
        .create()
        .map_err(|e| format!("rdkafka: consumer: {e}"))?;
    consumer
        .subscribe(&[&args.topic])
        .map_err(|e| format!("rdkafka: subscribe: {e}"))?;
    let mut offsets = Offsets::new(args.partitions);
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => offsets.add(message.partition(), message.offset()),
            Some(Err(e)) => return Err(format!("rdkafka: poll: {e}")),
            None => {}
        }
        let holds_all = || {
            offsets.total >= expect
                && consumer
                    .assignment()
                    .is_ok_and(|a| a.count() == args.partitions as usize)
        };
        if clock.step(holds_all, &offsets)? {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Idle partitions: the parent.

struct IdleRun {
    client: String,
    partitions: i32,
    rss_before_kb: f64,
    rss_idle_kb: f64,
    idle_cpu_per_s: f64,
    fetches_per_s: f64,
    broker_cpu_per_s: f64,
}

async fn idle_part(settings: &Settings) -> Result<Vec<IdleRun>, String> {
    let mut runs = Vec::new();
    println!(
        "idle partitions: one member holding every partition of a topic on the replay broker \
         (in this process), {} records of {VALUE_LEN} bytes per partition, fetch max wait {} ms; \
         settle {} s, idle window {} s; load average {}",
        settings.records_per_partition,
        settings.wait_ms,
        settings.settle_s,
        settings.idle_s,
        load_average()
    );
    println!(
        "{:<9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>9} {:>11} {:>10} {:>12} {:>6}",
        "client",
        "partitions",
        "catch-up s",
        "RSS 0 MB",
        "RSS idle",
        "peak MB",
        "threads",
        "CPU ms/s",
        "fetches/s",
        "broker ms/s",
        "records",
        "load"
    );
    for &partitions in &settings.partitions {
        let records = partitions as u64 * settings.records_per_partition;
        let topic_name = format!("scale-{partitions}");
        let topic = ReplayTopic::generate(
            &topic_name,
            partitions,
            records,
            VALUE_LEN,
            BATCH_RECORDS,
            Compression::None,
        )
        .map_err(|e| format!("replay topic: {e}"))?;
        let broker = ReplayBroker::start(topic)
            .await
            .map_err(|e| format!("replay broker: {e}"))?;
        for client in &settings.clients {
            let args = IdleArgs {
                client: client.clone(),
                bootstrap: broker.bootstrap(),
                topic: topic_name.clone(),
                partitions,
                records_per_partition: settings.records_per_partition,
                wait_ms: settings.wait_ms,
                settle_s: settings.settle_s,
                idle_s: settings.idle_s,
            };
            let mut child = ChildProc::spawn(client, &args.to_args())?;
            child.expect("CAUGHT_UP", CATCH_UP_TIMEOUT).await?;
            let window = Duration::from_secs(settings.settle_s + settings.idle_s + 60);
            child.expect("IDLE_START", window).await?;
            let (fetches0, cpu0) = (broker.fetches(), cpu_seconds("self").unwrap_or(f64::NAN));
            let result = child.expect("RESULT", window).await?;
            let (fetches1, cpu1) = (broker.fetches(), cpu_seconds("self").unwrap_or(f64::NAN));
            drop(child); // closes its stdin: it shuts the client down and exits
            let idle_s = result.num("idle_s")?;
            let (got, wrong) = (result.num("records")? as u64, result.num("wrong")? as u64);
            if got != records || wrong != 0 {
                return Err(format!(
                    "{client}, {partitions} partitions: {got} records handled of {records}, \
                     {wrong} not the next offset of their partition"
                ));
            }
            let mb = |key: &str| result.num(key).map(|kb| kb / 1024.0);
            let run = IdleRun {
                client: client.clone(),
                partitions,
                rss_before_kb: result.num("rss_before_kb")?,
                rss_idle_kb: result.num("rss_idle_kb")?,
                idle_cpu_per_s: result.num("idle_cpu_s")? / idle_s,
                fetches_per_s: (fetches1 - fetches0) as f64 / idle_s,
                broker_cpu_per_s: (cpu1 - cpu0) / idle_s,
            };
            println!(
                "{:<9} {:>10} {:>10.2} {:>10.1} {:>10.1} {:>10.1} {:>8} {:>9.2} {:>11.2} {:>10.2} {:>12} {:>6}",
                client,
                partitions,
                result.num("catch_up_s")?,
                mb("rss_before_kb")?,
                mb("rss_idle_kb")?,
                mb("hwm_kb")?,
                result.get("threads")?,
                run.idle_cpu_per_s * 1e3,
                run.fetches_per_s,
                run.broker_cpu_per_s * 1e3,
                got,
                load_average().split(' ').next().unwrap_or("?")
            );
            runs.push(run);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    println!();
    if let (Some(&few), Some(&many)) = (settings.partitions.first(), settings.partitions.last()) {
        if many > few {
            for client in &settings.clients {
                let of = |p: i32| {
                    runs.iter()
                        .find(|r| r.client == *client && r.partitions == p)
                };
                let (Some(a), Some(b)) = (of(few), of(many)) else {
                    continue;
                };
                let extra = f64::from(many - few);
                println!(
                    "{client}: per partition (slope {few} -> {many}): {:.1} KB RSS while idle, \
                     {:.3} ms CPU per second; growth over the start: {:.1} MB at {few}, {:.1} MB \
                     at {many}",
                    (b.rss_idle_kb - a.rss_idle_kb) / extra,
                    (b.idle_cpu_per_s - a.idle_cpu_per_s) * 1e3 / extra,
                    (a.rss_idle_kb - a.rss_before_kb) / 1024.0,
                    (b.rss_idle_kb - b.rss_before_kb) / 1024.0,
                );
            }
        }
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------------------
// Group formation.

/// A member that counts what it gets (nothing is produced to the group's topic).
struct Sink {
    records: Arc<AtomicU64>,
}

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for Sink {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        self.records
            .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// One look at every member: `Some(generation)` if the group is stable as defined above.
async fn stable_generation(members: &[Addr<ConsumerService>], partitions: i32) -> Option<i32> {
    let mut generation = None;
    let mut owned = BTreeSet::new();
    for member in members {
        let coordinator = member.send(GetCoordinator).await.ok()??;
        let membership = coordinator.send(GetMembership).await.ok()?;
        if membership.generation < 0 || generation.is_some_and(|g| g != membership.generation) {
            return None;
        }
        generation = Some(membership.generation);
        let mut mine = 0;
        for (topic, list) in &membership.assignment.partitions {
            for &p in list {
                mine += 1;
                if !owned.insert((topic.clone(), p)) {
                    return None; // owned twice
                }
            }
        }
        let consuming = member.send(GetPartitions).await.ok()?;
        if consuming.len() != mine {
            return None;
        }
    }
    (owned.len() == partitions as usize).then_some(generation?)
}

struct GroupRun {
    partitions: i32,
    to_stable: Duration,
    generation: i32,
    joins: Option<usize>,
    cpu_s: f64,
}

async fn group_run(
    settings: &Settings,
    broker_kind: &str,
    partitions: i32,
    tansu: Option<&TansuBroker>,
) -> Result<GroupRun, String> {
    let topic = format!("scale-group-{partitions}");
    let group = format!("{topic}-{broker_kind}-{}", std::process::id());
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let mock = MockCluster::new();
    let client = match tansu {
        Some(t) => {
            t.create_topic(&topic, partitions);
            ClientConfig::new([t.bootstrap()])
        }
        None => {
            mock.add_broker(1, "mock", 9092)
                .add_topic(&topic, &vec![1; partitions as usize]);
            ClientConfig::new(["mock:9092"])
        }
    };
    let heartbeat = Duration::from_millis(settings.heartbeat_ms);
    let consumer = ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        sidechannel_topic: String::new(),
        ..ConsumerConfig::default()
    };
    let records = Arc::new(AtomicU64::new(0));
    let sink = Sink {
        records: records.clone(),
    }
    .start();
    let (started, cpu0) = (Instant::now(), cpu_seconds("self").unwrap_or(f64::NAN));
    let mut members = Vec::new();
    for _ in 0..settings.members {
        let mut builder = ConsumerService::builder(
            client.clone(),
            group_config(&group, &topic, heartbeat, Duration::from_secs(10)),
        )
        .consumer_config(consumer.clone())
        .handler(HandlerRef::batches(&sink))
        .logger(log.clone());
        if tansu.is_none() {
            let cluster =
                Cluster::connect_with(Arc::new(client.clone()), log.clone(), mock.connector())
                    .await
                    .map_err(|e| format!("mock cluster: {e}"))?;
            builder = builder.cluster(cluster);
        }
        members.push(builder.start().await.map_err(|e| format!("member: {e}"))?);
    }
    let confirm = heartbeat * settings.stable_heartbeats;
    // (generation, first seen stable at, CPU then)
    let mut candidate: Option<(i32, Instant, f64)> = None;
    let outcome = loop {
        let now = stable_generation(&members, partitions).await;
        match (now, candidate) {
            (Some(g), Some((held, since, _))) if g == held => {
                if since.elapsed() >= confirm {
                    break Ok(candidate);
                }
            }
            (Some(g), _) => {
                candidate = Some((g, Instant::now(), cpu_seconds("self").unwrap_or(f64::NAN)))
            }
            (None, _) => candidate = None,
        }
        if started.elapsed() > GROUP_TIMEOUT {
            break Err(format!(
                "{} members on {broker_kind}, {partitions} partitions: not stable within \
                 {GROUP_TIMEOUT:?}",
                settings.members
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let joins = tansu.is_none().then(|| mock.count(ApiKey::JoinGroup));
    // Every member leaves at once.
    let leaving = members
        .iter()
        .map(|m| tokio::time::timeout(Duration::from_secs(30), m.send(Shutdown)));
    futures_util::future::join_all(leaving).await;
    let (generation, at, cpu) = outcome?.ok_or("no stable generation")?;
    Ok(GroupRun {
        partitions,
        to_stable: at - started,
        generation,
        joins,
        cpu_s: cpu - cpu0,
    })
}

async fn group_part(settings: &Settings) -> Result<(), String> {
    println!(
        "group formation: {} konsumer members in one process, started at once; heartbeat {} ms, \
         session 10 s, rebalance timeout 20 s, range; stable = same generation, every partition \
         owned once and consumed, for {} heartbeats; load average {}",
        settings.members,
        settings.heartbeat_ms,
        settings.stable_heartbeats,
        load_average()
    );
    println!(
        "{:<22} {:>10} {:>14} {:>11} {:>12} {:>13} {:>6}",
        "broker", "partitions", "to stable s", "generation", "JoinGroups", "CPU s", "load"
    );
    for broker_kind in &settings.group_brokers {
        let tansu = (broker_kind == "tansu").then(|| TansuBroker::start(Storage::Memory));
        for &partitions in &settings.group_partitions {
            let run = group_run(settings, broker_kind, partitions, tansu.as_ref()).await;
            let run = match run {
                Ok(run) => run,
                Err(e) if broker_kind == "tansu" => {
                    // Reported, not fatal: tansu's join protocol is known to differ.
                    println!("{broker_kind}: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let label = match broker_kind.as_str() {
                "tansu" => format!("tansu {TANSU_VERSION} (memory)"),
                _ => "mock (in process)".to_owned(),
            };
            println!(
                "{:<22} {:>10} {:>14.2} {:>11} {:>12} {:>13.2} {:>6}",
                label,
                run.partitions,
                run.to_stable.as_secs_f64(),
                run.generation,
                run.joins.map_or("-".into(), |j| j.to_string()),
                run.cpu_s,
                load_average().split(' ').next().unwrap_or("?")
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(())
}

async fn bench(settings: Settings) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!("scale benchmark; {cores} cores");
    if settings.idle {
        idle_part(&settings).await?;
        println!();
    }
    if settings.group {
        group_part(&settings).await?;
    }
    Ok(())
}

fn main() -> ExitCode {
    latency_scale_support::bench_main("scale", idle_child, Settings::parse, bench)
}
