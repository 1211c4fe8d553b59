//! Consumer throughput: konsumer's `ConsumerService` side by side with librdkafka's consumer
//! (the `rdkafka` crate 0.39, librdkafka 2.12), reading the same records from the same tansu
//! broker, in one run.
//!
//! Once per run of the bench, N records (default 10^6) with 100-byte JSON-like values (varied as
//! in benches/records.rs) and keys `key-{i % 10000}` are produced by konsumer's `Producer`
//! (`Enqueue`, acks=all, no compression unless `--compression` says otherwise) to one topic of 6
//! partitions. Then, for each round, each client reads all of them from the beginning as the only
//! member of a fresh group:
//!
//! - **konsumer**: `ConsumerService` (range assignor, `OffsetReset::Earliest`, auto commit every
//!   5 s, `ConsumerConfig` defaults otherwise) with one batch handler actor;
//! - **rdkafka**: a `BaseConsumer` polled in a loop on a thread of its own (range assignor,
//!   `auto.offset.reset=earliest`, `enable.auto.commit=true`, librdkafka defaults otherwise).
//!
//! Both do the same work per record: count it, check its offset is above the last one of its
//! partition, add its value's length and the sum of its value's bytes (so every byte is read).
//! The clients take turns, and the order alternates from round to round.
//!
//! Measured per run, from creating the client (so the group join is included) until the N-th
//! record has been handled: wall-clock records/s, and this process's CPU seconds (user + system,
//! every thread, `getrusage(RUSAGE_SELF)`) — the broker is another process, so that is the client
//! alone. The broker's CPU (from `/proc/<pid>/stat`) is shown too. tansu, not the client, limits
//! records/s (see below), so compare the clients by CPU per record. The time to the first record
//! is shown so the join can be told apart from the reading, and so is the rate from the first
//! record to the last. Each client's median over the rounds is printed, then the ratios
//! konsumer / rdkafka. Results: BENCHMARKS.md.
//!
//! tansu 0.6.0 holds every Fetch, even one it has data for, for about half of `fetch max wait`
//! when that is 250 ms or more (else all of it), and answers at most 5 MiB; so with the clients'
//! default 500 ms wait, records/s is set by the broker's sleeps, not by its CPU.
//! `--fetch-max-wait-ms 10` lets the clients' own speed show.
//!
//! Run with `bash scripts/bench-consume.sh` (or `cargo bench --bench consume -- [options]`):
//!
//! ```text
//! --records N              records produced and read per run (default 1000000, or
//!                          $KONSUMER_BENCH_RECORDS)
//! --rounds N               runs of each client (default 3)
//! --clients L              comma-separated, in the first round's order (default konsumer,rdkafka)
//! --compression C          the producer's codec: none (default), gzip, snappy, lz4, zstd
//! --handler H              touch (default: as above) or count (records.len() only, values unread)
//! --max-batch N            konsumer: ConsumerConfig::max_batch_records (default 1000)
//! --max-in-flight N        konsumer: ConsumerConfig::max_in_flight (default 1)
//! --buffer-records N       konsumer: ConsumerConfig::buffer_max_records (default 20000)
//! --partition-max-bytes N  both: max.partition.fetch.bytes (default 1048576)
//! --fetch-max-wait-ms N    both: fetch.wait.max.ms (default 500)
//! --fetch-max-bytes N      both: fetch.max.bytes (default 52428800)
//! --rdkafka-set K=V        rdkafka: any other librdkafka property (repeatable)
//! ```
//!
//! Every record is checked: each client must see exactly the records produced to each partition,
//! in offset order. Exits non-zero if any check fails or a run is stuck.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Arbiter, Context, Handler};
use bytes::Bytes;
use konsumer::compression::Compression;
use konsumer::consumer::{ConsumerConfig, OffsetReset};
use konsumer::group::GroupConfig;
use konsumer::producer::{ProducerConfig, RecordMetadata};
use konsumer::ClientConfig;
use konsumer_actors::testkit::tansu::{Storage, TansuBroker, TANSU_VERSION};
use konsumer_actors::{
    ConsumerService, DeliveryReport, Enqueue, HandlerRef, HandlerResult, KafkaBatch, Producer,
    ProducerExt, ProducerRecord, ReportTo, Shutdown,
};
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

const TOPIC: &str = "bench-consume";
const PARTITIONS: usize = 6;
const VALUE_LEN: usize = 100;
const KEYS: u64 = 10_000;
const ASSIGNOR: &str = "range";
/// Records the producer may have outstanding (stays below its 64 MiB `max_buffered_bytes`).
const PRODUCE_WINDOW: u64 = 200_000;
/// A run that takes longer than this is stuck: the bench fails instead of hanging.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// Between runs, so the last client's threads have gone quiet before the next is measured.
const PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    Konsumer,
    Rdkafka,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Konsumer => "konsumer",
            Client::Rdkafka => "rdkafka",
        }
    }
}

#[derive(Clone)]
struct Settings {
    records: u64,
    rounds: u32,
    clients: Vec<Client>,
    compression: Compression,
    /// Read every value byte (true) or only count the records.
    touch: bool,
    max_batch: usize,
    max_in_flight: usize,
    buffer_records: usize,
    partition_max_bytes: i32,
    fetch_max_wait: Duration,
    fetch_max_bytes: i32,
    /// Extra librdkafka properties (`--rdkafka-set key=value`), applied last.
    rdkafka_extra: Vec<(String, String)>,
}

impl Settings {
    fn parse() -> Result<Settings, String> {
        let defaults = ConsumerConfig::default();
        let mut settings = Settings {
            records: match std::env::var("KONSUMER_BENCH_RECORDS") {
                Ok(v) => number("KONSUMER_BENCH_RECORDS", &v)?,
                Err(_) => 1_000_000,
            },
            rounds: 3,
            clients: vec![Client::Konsumer, Client::Rdkafka],
            compression: Compression::None,
            touch: true,
            max_batch: defaults.max_batch_records,
            max_in_flight: defaults.max_in_flight,
            buffer_records: defaults.buffer_max_records,
            partition_max_bytes: defaults.partition_max_bytes,
            fetch_max_wait: defaults.fetch_max_wait,
            fetch_max_bytes: defaults.fetch_max_bytes,
            rdkafka_extra: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut text = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--records" => settings.records = number(&arg, &text(&arg)?)?,
                "--rounds" => settings.rounds = number(&arg, &text(&arg)?)? as u32,
                "--max-batch" => settings.max_batch = number(&arg, &text(&arg)?)? as usize,
                "--max-in-flight" => settings.max_in_flight = number(&arg, &text(&arg)?)? as usize,
                "--buffer-records" => {
                    settings.buffer_records = number(&arg, &text(&arg)?)? as usize
                }
                "--partition-max-bytes" => {
                    settings.partition_max_bytes = i32::try_from(number(&arg, &text(&arg)?)?)
                        .map_err(|_| "--partition-max-bytes is too large")?
                }
                "--fetch-max-bytes" => {
                    settings.fetch_max_bytes = i32::try_from(number(&arg, &text(&arg)?)?)
                        .map_err(|_| "--fetch-max-bytes is too large")?
                }
                "--rdkafka-set" => {
                    let pair = text(&arg)?;
                    let (key, value) = pair
                        .split_once('=')
                        .ok_or(format!("--rdkafka-set {pair:?}: expected key=value"))?;
                    settings.rdkafka_extra.push((key.into(), value.into()));
                }
                "--fetch-max-wait-ms" => {
                    settings.fetch_max_wait = Duration::from_millis(number(&arg, &text(&arg)?)?)
                }
                "--compression" => {
                    let name = text(&arg)?;
                    settings.compression = name
                        .parse()
                        .map_err(|_| format!("unknown codec {name:?}"))?;
                }
                "--handler" => {
                    settings.touch = match text(&arg)?.as_str() {
                        "touch" => true,
                        "count" => false,
                        other => return Err(format!("unknown handler {other:?}")),
                    }
                }
                "--clients" => {
                    settings.clients = text(&arg)?
                        .split(',')
                        .map(|name| match name.trim() {
                            "konsumer" => Ok(Client::Konsumer),
                            "rdkafka" => Ok(Client::Rdkafka),
                            other => Err(format!("unknown client {other:?}")),
                        })
                        .collect::<Result<_, _>>()?;
                    settings.clients.dedup();
                }
                // `cargo bench` passes --bench to every bench binary.
                "--bench" => {}
                other => match number("records", other) {
                    Ok(n) => settings.records = n,
                    Err(_) => return Err(format!("unknown argument {other:?}")),
                },
            }
        }
        if settings.records == 0
            || settings.rounds == 0
            || settings.clients.is_empty()
            || settings.max_batch == 0
            || settings.max_in_flight == 0
            || settings.buffer_records == 0
            || settings.partition_max_bytes <= 0
        {
            return Err("no number may be zero and the client list not empty".into());
        }
        Ok(settings)
    }

    fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            max_batch_records: self.max_batch,
            max_in_flight: self.max_in_flight,
            buffer_max_records: self.buffer_records,
            partition_max_bytes: self.partition_max_bytes,
            fetch_max_wait: self.fetch_max_wait,
            fetch_max_bytes: self.fetch_max_bytes,
            ..ConsumerConfig::default()
        }
    }
}

fn number(name: &str, value: &str) -> Result<u64, String> {
    value
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{name}: {value:?} is not a number"))
}

/// CPU seconds this process has used so far (user + system, every thread): the client alone,
/// since the broker is another process.
fn process_cpu() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, which points to
    // one; the value is read only when it reports success.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return f64::NAN;
        }
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/PID/stat`.
fn other_process_cpu(pid: u32) -> Option<f64> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        t if t > 0 => t as f64,
        _ => 100.0,
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count the fields after its closing ')'.
    // utime and stime are fields 14 and 15 of the line, so the 12th and 13th after it.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / ticks)
}

/// The clocks at one moment: wall, this process's CPU, the broker's CPU.
#[derive(Clone, Copy, Debug)]
struct Snapshot {
    at: Instant,
    cpu: f64,
    broker_cpu: Option<f64>,
}

impl Snapshot {
    fn now(broker_pid: Option<u32>) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            cpu: process_cpu(),
            broker_cpu: broker_pid.and_then(other_process_cpu),
        }
    }
}

/// What a client has seen: the same bookkeeping for both clients, per record.
#[derive(Clone, Debug)]
struct Tally {
    records: u64,
    value_bytes: u64,
    /// The sum of every value byte: makes the handler read each value.
    byte_sum: u64,
    per_partition: [u64; PARTITIONS],
    last_offset: [i64; PARTITIONS],
    /// Records whose offset was not above the last one of their partition, or whose partition
    /// is not one of the topic's.
    misplaced: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            records: 0,
            value_bytes: 0,
            byte_sum: 0,
            per_partition: [0; PARTITIONS],
            last_offset: [-1; PARTITIONS],
            misplaced: 0,
        }
    }
}

impl Tally {
    #[inline]
    fn add(&mut self, partition: i32, offset: i64, value: Option<&[u8]>) {
        self.records += 1;
        let value = value.unwrap_or_default();
        self.value_bytes += value.len() as u64;
        self.byte_sum += value.iter().map(|&b| u64::from(b)).sum::<u64>();
        match usize::try_from(partition) {
            Ok(p) if p < PARTITIONS && offset > self.last_offset[p] => {
                self.per_partition[p] += 1;
                self.last_offset[p] = offset;
            }
            _ => self.misplaced += 1,
        }
    }

    /// Exactly the records produced, each once, in offset order per partition.
    fn check(&self, client: Client, produced: &Produced) -> Result<(), String> {
        let fail = |what: String| Err(format!("{}: {what}", client.name()));
        if self.misplaced > 0 {
            return fail(format!(
                "{} records out of order or on an unknown partition",
                self.misplaced
            ));
        }
        if self.per_partition != produced.per_partition {
            return fail(format!(
                "records per partition {:?}, produced {:?}",
                self.per_partition, produced.per_partition
            ));
        }
        let n = produced.per_partition.iter().sum::<u64>();
        if self.value_bytes != n * VALUE_LEN as u64 || self.byte_sum != produced.byte_sum {
            return fail(format!(
                "{} value bytes (sum {}), expected {} (sum {})",
                self.value_bytes,
                self.byte_sum,
                n * VALUE_LEN as u64,
                produced.byte_sum
            ));
        }
        Ok(())
    }
}

/// What the producer put on the topic.
struct Produced {
    per_partition: [u64; PARTITIONS],
    /// The sum of every value byte of every record.
    byte_sum: u64,
}

/// One run of one client.
struct Run {
    start: Snapshot,
    first_record: Instant,
    end: Snapshot,
    tally: Tally,
}

impl Run {
    fn wall(&self) -> f64 {
        (self.end.at - self.start.at).as_secs_f64()
    }
    fn to_first(&self) -> f64 {
        (self.first_record - self.start.at).as_secs_f64()
    }
    fn cpu(&self) -> f64 {
        self.end.cpu - self.start.cpu
    }
    fn broker_cpu(&self) -> f64 {
        match (self.start.broker_cpu, self.end.broker_cpu) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        }
    }
}

/// Record `i`'s 100-byte JSON-like value, varied the way real events vary (as in
/// benches/records.rs), so compressed runs see a realistic ratio.
fn value(i: u64) -> Bytes {
    let mut v = format!(
        r#"{{"id":{i},"user":"u{:05}","amount":{}.{:02},"currency":"EUR","ts":{}}}"#,
        (i * 7919) % 100_000,
        (i * 31) % 10_000,
        i % 100,
        1_700_000_000_000u64 + i * 13,
    )
    .into_bytes();
    v.resize(VALUE_LEN, b' ');
    Bytes::from(v)
}

/// Produces the records once, windowed like benches/produce.rs; returns where they went.
async fn produce(bootstrap: &str, settings: &Settings) -> Result<Produced, String> {
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let config = ProducerConfig {
        compression: settings.compression,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(ClientConfig::new([bootstrap.to_owned()]), config, log)
        .await
        .map_err(|e| format!("producer: {e}"))?;
    let keys: Vec<Bytes> = (0..KEYS).map(|k| Bytes::from(format!("key-{k}"))).collect();
    let mut byte_sum = 0;
    let (reports, mut outcomes) = tokio::sync::mpsc::unbounded_channel::<DeliveryReport>();
    let mut per_partition = [0u64; PARTITIONS];
    let mut failed: Option<String> = None;
    let mut take = |report: DeliveryReport| match report.result {
        Ok(RecordMetadata { partition, .. })
            if usize::try_from(partition).is_ok_and(|p| p < PARTITIONS) =>
        {
            per_partition[partition as usize] += 1;
        }
        Ok(other) => {
            failed.get_or_insert(format!("delivered to partition {}", other.partition));
        }
        Err(e) => {
            failed.get_or_insert(e.to_string());
        }
    };
    let mut outstanding = 0;
    for i in 0..settings.records {
        if outstanding >= PRODUCE_WINDOW {
            take(next_report(&mut outcomes).await?);
            outstanding -= 1;
            while let Ok(report) = outcomes.try_recv() {
                take(report);
                outstanding -= 1;
            }
        }
        let value = value(i);
        byte_sum += value.iter().map(|&b| u64::from(b)).sum::<u64>();
        producer.do_send(Enqueue {
            record: ProducerRecord::new(TOPIC)
                .key(keys[(i % KEYS) as usize].clone())
                .value(value),
            opaque: i,
            report_to: ReportTo::Channel(reports.clone()),
        });
        outstanding += 1;
    }
    producer.flush().await;
    while outstanding > 0 {
        take(next_report(&mut outcomes).await?);
        outstanding -= 1;
    }
    producer.close().await;
    if let Some(error) = failed {
        return Err(format!("producing failed: {error}"));
    }
    Ok(Produced {
        per_partition,
        byte_sum,
    })
}

/// The next delivery report; a stuck producer fails the bench instead of hanging it.
async fn next_report(
    outcomes: &mut tokio::sync::mpsc::UnboundedReceiver<DeliveryReport>,
) -> Result<DeliveryReport, String> {
    tokio::time::timeout(Duration::from_secs(120), outcomes.recv())
        .await
        .map_err(|_| "no delivery report for 120 s".to_string())?
        .ok_or_else(|| "report channel closed".to_string())
}

/// konsumer's handler: the tally, and the moment the N-th record is handled.
struct Counter {
    target: u64,
    touch: bool,
    broker_pid: Option<u32>,
    tally: Tally,
    first_record: Option<Instant>,
    done: Option<tokio::sync::oneshot::Sender<(Instant, Snapshot, Tally)>>,
    /// Records seen, readable from outside (for a stuck run's message).
    seen: Arc<AtomicU64>,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for Counter {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        self.first_record.get_or_insert_with(Instant::now);
        if self.touch {
            for record in &batch.records {
                self.tally
                    .add(batch.partition, record.offset, record.value());
            }
        } else {
            self.tally.records += batch.records.len() as u64;
        }
        self.seen.store(self.tally.records, Ordering::Relaxed);
        if self.tally.records >= self.target {
            if let Some(done) = self.done.take() {
                let end = Snapshot::now(self.broker_pid);
                let first = self.first_record.unwrap_or(end.at);
                let _ = done.send((first, end, self.tally.clone()));
            }
        }
        Ok(())
    }
}

fn group_config(group: &str) -> GroupConfig {
    let mut config = GroupConfig::new(group, [TOPIC])
        .with_assignors(&[ASSIGNOR])
        .expect("built-in assignor");
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_secs(1);
    config.rebalance_timeout = Duration::from_secs(20);
    config
}

struct Bench {
    settings: Settings,
    bootstrap: String,
    broker_pid: Option<u32>,
    /// Makes group ids unique to this process, so no run meets another's commits.
    nonce: String,
}

impl Bench {
    async fn run(&self, client: Client, round: u32) -> Result<Run, String> {
        let group = format!("bench-consume-{}-{}-{round}", client.name(), self.nonce);
        match client {
            Client::Konsumer => self.konsumer(group).await,
            Client::Rdkafka => self.rdkafka(group).await,
        }
    }

    /// One member on an arbiter of its own (its Fetcher gets another), as an application runs it.
    async fn konsumer(&self, group: String) -> Result<Run, String> {
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Counter {
            target: self.settings.records,
            touch: self.settings.touch,
            broker_pid: self.broker_pid,
            tally: Tally::default(),
            first_record: None,
            done: Some(done_tx),
            seen: seen.clone(),
        };
        let (bootstrap, consumer) = (self.bootstrap.clone(), self.settings.consumer_config());
        let start = Snapshot::now(self.broker_pid);
        let arbiter = Arbiter::new();
        arbiter.spawn(async move {
            let counter = counter.start();
            let service =
                ConsumerService::builder(ClientConfig::new([bootstrap]), group_config(&group))
                    .consumer_config(consumer)
                    .handler(HandlerRef::batches(&counter))
                    .start()
                    .await;
            let _ = started_tx.send(service);
        });
        let outcome = async {
            let service = started
                .await
                .map_err(|_| "the member's arbiter stopped".to_string())?
                .map_err(|e| format!("konsumer: service: {e}"))?;
            let finished = tokio::time::timeout(RUN_TIMEOUT, done).await;
            // Close the member whatever happened: drain, commit, leave.
            let _ = tokio::time::timeout(Duration::from_secs(30), service.send(Shutdown)).await;
            match finished {
                Ok(Ok((first_record, end, tally))) => Ok(Run {
                    start,
                    first_record,
                    end,
                    tally,
                }),
                Ok(Err(_)) => Err("konsumer: the handler went away".to_string()),
                Err(_) => Err(format!(
                    "konsumer: {} of {} records after {RUN_TIMEOUT:?}",
                    seen.load(Ordering::Relaxed),
                    self.settings.records
                )),
            }
        }
        .await;
        arbiter.stop();
        let _ = arbiter.join();
        outcome
    }

    /// A `BaseConsumer` polled on a thread of its own.
    async fn rdkafka(&self, group: String) -> Result<Run, String> {
        let (bootstrap, broker_pid) = (self.bootstrap.clone(), self.broker_pid);
        let (target, touch) = (self.settings.records, self.settings.touch);
        let partition_max_bytes = self.settings.partition_max_bytes;
        let fetch_max_wait = self.settings.fetch_max_wait.as_millis();
        let fetch_max_bytes = self.settings.fetch_max_bytes;
        let extra = self.settings.rdkafka_extra.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let start = Snapshot::now(broker_pid);
            let run = || -> Result<Run, String> {
                let mut config = RdConfig::new();
                config
                    .set("bootstrap.servers", &bootstrap)
                    .set("group.id", &group)
                    .set("partition.assignment.strategy", ASSIGNOR)
                    .set("session.timeout.ms", "6000")
                    .set("heartbeat.interval.ms", "1000")
                    .set("auto.offset.reset", "earliest")
                    .set("enable.auto.commit", "true")
                    .set("max.partition.fetch.bytes", partition_max_bytes.to_string())
                    .set("fetch.wait.max.ms", fetch_max_wait.to_string())
                    .set("fetch.max.bytes", fetch_max_bytes.to_string());
                for (key, value) in &extra {
                    config.set(key, value);
                }
                let consumer: BaseConsumer = config
                    .create()
                    .map_err(|e| format!("rdkafka: consumer: {e}"))?;
                consumer
                    .subscribe(&[TOPIC])
                    .map_err(|e| format!("rdkafka: subscribe: {e}"))?;
                let mut tally = Tally::default();
                let mut first_record = None;
                let deadline = Instant::now() + RUN_TIMEOUT;
                while tally.records < target {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(message)) => {
                            first_record.get_or_insert_with(Instant::now);
                            if touch {
                                tally.add(message.partition(), message.offset(), message.payload());
                            } else {
                                tally.records += 1;
                            }
                        }
                        Some(Err(e)) => return Err(format!("rdkafka: poll: {e}")),
                        None if Instant::now() > deadline => {
                            return Err(format!(
                                "rdkafka: {} of {target} records after {RUN_TIMEOUT:?}",
                                tally.records
                            ))
                        }
                        None => {}
                    }
                }
                let end = Snapshot::now(broker_pid);
                // Dropping closes the consumer: final commit, LeaveGroup.
                drop(consumer);
                Ok(Run {
                    start,
                    first_record: first_record.unwrap_or(end.at),
                    end,
                    tally,
                })
            };
            let _ = tx.send(run());
        });
        rx.await
            .map_err(|_| "rdkafka: the consumer thread panicked".to_string())?
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn main() -> ExitCode {
    let settings = match Settings::parse() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("consume bench: {error}");
            return ExitCode::from(2);
        }
    };
    match actix::System::new().block_on(bench(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("consume bench FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(settings: Settings) -> Result<(), String> {
    let broker = TansuBroker::start(Storage::Memory);
    broker.create_topic(TOPIC, PARTITIONS as i32);
    let n = settings.records;
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!(
        "consumer benchmark: {n} records of {VALUE_LEN} bytes, keys key-0..key-{}, \
         {PARTITIONS} partitions, compression {}; tansu {TANSU_VERSION} (memory) at {}; \
         {cores} cores",
        KEYS - 1,
        settings.compression.name(),
        broker.bootstrap()
    );
    let produce_started = Instant::now();
    let produced = produce(&broker.bootstrap(), &settings).await?;
    println!(
        "produced in {:.1} s by konsumer's Producer; records per partition {:?}",
        produce_started.elapsed().as_secs_f64(),
        produced.per_partition
    );
    let config = settings.consumer_config();
    println!(
        "handler: {}; konsumer: max_batch_records {}, max_in_flight {}, buffer_max_records {}; \
         both: max partition fetch bytes {}, fetch max bytes {}, fetch max wait {} ms",
        if settings.touch {
            "count, check offsets, sum value lengths and bytes"
        } else {
            "count only"
        },
        config.max_batch_records,
        config.max_in_flight,
        config.buffer_max_records,
        config.partition_max_bytes,
        config.fetch_max_bytes,
        config.fetch_max_wait.as_millis()
    );
    if !settings.rdkafka_extra.is_empty() {
        let extra: Vec<String> = settings
            .rdkafka_extra
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("rdkafka also: {}", extra.join(" "));
    }
    let bench = Bench {
        bootstrap: broker.bootstrap(),
        broker_pid: broker.pid(),
        nonce: format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        ),
        settings,
    };
    let settings = &bench.settings;
    println!(
        "{:>3}  {:<9} {:>10} {:>8} {:>9} {:>13} {:>8} {:>11} {:>14}",
        "run",
        "client",
        "records/s",
        "wall s",
        "1st rec s",
        "after 1st r/s",
        "CPU s",
        "CPU s/10^6",
        "broker s/10^6"
    );
    let per_million = |seconds: f64| seconds / n as f64 * 1e6;
    let mut runs: Vec<(Client, Run)> = Vec::new();
    for round in 1..=settings.rounds {
        let mut order = settings.clients.clone();
        if round % 2 == 0 {
            order.reverse();
        }
        for client in order {
            tokio::time::sleep(PAUSE).await;
            let run = bench.run(client, round).await?;
            if settings.touch {
                run.tally.check(client, &produced)?;
            } else if run.tally.records != n {
                return Err(format!(
                    "{}: {} records, expected {n}",
                    client.name(),
                    run.tally.records
                ));
            }
            println!(
                "{round:>3}  {:<9} {:>10.0} {:>8.2} {:>9.2} {:>13.0} {:>8.2} {:>11.2} {:>14.2}",
                client.name(),
                n as f64 / run.wall(),
                run.wall(),
                run.to_first(),
                n as f64 / (run.wall() - run.to_first()),
                run.cpu(),
                per_million(run.cpu()),
                per_million(run.broker_cpu()),
            );
            runs.push((client, run));
        }
    }
    if settings.touch {
        println!("records checked: every client saw each produced record once, in offset order");
    }
    println!();
    println!(
        "median of {} runs (records/s: from creating the client to the last record; after 1st: \
         from the first record to the last):",
        settings.rounds
    );
    println!(
        "     {:<9} {:>10} {:>13} {:>30} {:>14}",
        "client", "records/s", "after 1st r/s", "client CPU s per 10^6 records", "broker s/10^6"
    );
    let summary = |client: Client| {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|(c, _)| *c == client)
            .map(|(_, r)| r)
            .collect();
        let of = |f: &dyn Fn(&Run) -> f64| median(mine.iter().map(|r| f(r)).collect());
        [
            of(&|r| n as f64 / r.wall()),
            of(&|r| n as f64 / (r.wall() - r.to_first())),
            of(&|r| per_million(r.cpu())),
            of(&|r| per_million(r.broker_cpu())),
        ]
    };
    for &client in &settings.clients {
        let [rate, steady, cpu, broker_cpu] = summary(client);
        println!(
            "     {:<9} {:>10.0} {:>13.0} {:>30.2} {:>14.2}",
            client.name(),
            rate,
            steady,
            cpu,
            broker_cpu
        );
    }
    if settings.clients.len() == 2 {
        let (ours, theirs) = (summary(Client::Konsumer), summary(Client::Rdkafka));
        println!();
        println!(
            "konsumer / rdkafka: records/s {:.2}x, after the first record {:.2}x (higher is \
             better); CPU per record {:.2}x (lower is better)",
            ours[0] / theirs[0],
            ours[1] / theirs[1],
            ours[2] / theirs[2]
        );
    }
    drop(broker);
    Ok(())
}
