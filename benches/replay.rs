//! The clients' own ceiling: konsumer's `ConsumerService` and librdkafka's `BaseConsumer` (the
//! `rdkafka` crate 0.39) reading the same topic from the replay broker
//! (`konsumer_actors::testkit::replay`), which answers each fetch with a slice of batches
//! encoded once in memory — so, unlike tansu in benches/consume.rs, the broker is not what
//! limits records/s.
//!
//! The replay broker runs in a child process (this binary with `--serve`), so this process's
//! CPU time (`getrusage(RUSAGE_SELF)`, user + system, every thread) is the client's alone; the
//! broker's CPU is read from `/proc/<pid>/stat`. It holds N records (default 10^6) with
//! 100-byte JSON-like values and keys `key-{offset % 10000}` in 6 partitions, 128 records per
//! batch (about 16 KiB, a Java producer's default `batch.size`), uncompressed unless
//! `--compression` says otherwise. Each client, in turn (the order alternating by round), reads
//! all of it as the only member of a fresh group, from creating the client until the N-th
//! record is handled (the group join included; the time to the first record is shown apart):
//!
//! - **konsumer**: `ConsumerService` (range assignor, `OffsetReset::Earliest`, auto commit every
//!   5 s, no sidechannel, `ConsumerConfig` defaults otherwise) with one batch handler actor;
//! - **rdkafka**: a `BaseConsumer` polled in a loop on a thread of its own (range assignor,
//!   `auto.offset.reset=earliest`, librdkafka defaults otherwise).
//!
//! Both do the same per record: count it, check its offset is above the last of its partition,
//! add up its value's length and bytes; every run is checked against what the broker holds.
//! Printed per run and as medians: records/s, MB/s of values, client CPU seconds per 10^6
//! records, broker CPU seconds per 10^6; then the ratios konsumer / rdkafka.
//!
//! Run with `bash scripts/bench-replay.sh` (or `cargo bench --bench replay -- [options]`):
//!
//! ```text
//! --records N              records in the topic (default 1000000, or $KONSUMER_BENCH_RECORDS)
//! --rounds N               runs of each client (default 3)
//! --clients L              comma-separated, in the first round's order (default konsumer,rdkafka)
//! --compression C          none (default), gzip, snappy, lz4, zstd
//! --value-len N            bytes per value (default 100)
//! --batch-records N        records per encoded batch (default 128)
//! --partition-max-bytes N  both: max.partition.fetch.bytes (default 1048576)
//! --fetch-max-wait-ms N    both: fetch.wait.max.ms (default 500; the broker answers at once
//!                          while there is data, so this only matters at the end)
//! --rdkafka-set K=V        rdkafka: any other librdkafka property (repeatable), e.g. debug=fetch
//! ```

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Arbiter, Context, Handler};
use konsumer::compression::Compression;
use konsumer::consumer::{ConsumerConfig, OffsetReset};
use konsumer::group::GroupConfig;
use konsumer::ClientConfig;
use konsumer_actors::testkit::{ReplayBroker, ReplayTopic};
use konsumer_actors::{ConsumerService, HandlerRef, HandlerResult, KafkaBatch, Shutdown};
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

const TOPIC: &str = "bench-replay";
const PARTITIONS: usize = 6;
const ASSIGNOR: &str = "range";
/// A run that takes longer than this is stuck: the bench fails instead of hanging.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
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
    /// This process is the broker (`--serve`), not the bench.
    serve: bool,
    records: u64,
    rounds: u32,
    clients: Vec<Client>,
    compression: Compression,
    value_len: usize,
    batch_records: usize,
    partition_max_bytes: i32,
    fetch_max_wait: Duration,
    /// Extra librdkafka properties (`--rdkafka-set key=value`), applied last.
    rdkafka_extra: Vec<(String, String)>,
}

impl Settings {
    fn parse() -> Result<Settings, String> {
        let defaults = ConsumerConfig::default();
        let mut settings = Settings {
            serve: false,
            records: match std::env::var("KONSUMER_BENCH_RECORDS") {
                Ok(v) => number("KONSUMER_BENCH_RECORDS", &v)?,
                Err(_) => 1_000_000,
            },
            rounds: 3,
            clients: vec![Client::Konsumer, Client::Rdkafka],
            compression: Compression::None,
            value_len: 100,
            batch_records: 128,
            partition_max_bytes: defaults.partition_max_bytes,
            fetch_max_wait: defaults.fetch_max_wait,
            rdkafka_extra: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut text = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--serve" => settings.serve = true,
                "--records" => settings.records = number(&arg, &text(&arg)?)?,
                "--rounds" => settings.rounds = number(&arg, &text(&arg)?)? as u32,
                "--value-len" => settings.value_len = number(&arg, &text(&arg)?)? as usize,
                "--batch-records" => settings.batch_records = number(&arg, &text(&arg)?)? as usize,
                "--partition-max-bytes" => {
                    settings.partition_max_bytes = i32::try_from(number(&arg, &text(&arg)?)?)
                        .map_err(|_| "--partition-max-bytes is too large")?
                }
                "--fetch-max-wait-ms" => {
                    settings.fetch_max_wait = Duration::from_millis(number(&arg, &text(&arg)?)?)
                }
                "--rdkafka-set" => {
                    let pair = text(&arg)?;
                    let (key, value) = pair
                        .split_once('=')
                        .ok_or(format!("--rdkafka-set {pair:?}: expected key=value"))?;
                    settings.rdkafka_extra.push((key.into(), value.into()));
                }
                "--compression" => {
                    let name = text(&arg)?;
                    settings.compression = name
                        .parse()
                        .map_err(|_| format!("unknown codec {name:?}"))?;
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
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if settings.records == 0
            || settings.rounds == 0
            || settings.clients.is_empty()
            || settings.value_len == 0
            || settings.batch_records == 0
            || settings.partition_max_bytes <= 0
        {
            return Err("no number may be zero and the client list not empty".into());
        }
        Ok(settings)
    }

    fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            partition_max_bytes: self.partition_max_bytes,
            fetch_max_wait: self.fetch_max_wait,
            sidechannel_topic: String::new(),
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
    // The command name (field 2) may contain spaces: utime and stime are the 12th and 13th
    // fields after its closing ')'.
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
    fn now(broker_pid: u32) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            cpu: process_cpu(),
            broker_cpu: other_process_cpu(broker_pid),
        }
    }
}

/// What a client has seen: the same bookkeeping for both clients, per record.
#[derive(Clone, Debug)]
struct Tally {
    records: u64,
    value_bytes: u64,
    byte_sum: u64,
    per_partition: [i64; PARTITIONS],
    last_offset: [i64; PARTITIONS],
    /// Records whose offset was not above the last of their partition, or on no partition of
    /// the topic.
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

    /// Exactly what the broker holds, each record once, in offset order per partition.
    fn check(&self, client: Client, served: &Served) -> Result<(), String> {
        let fail = |what: String| Err(format!("{}: {what}", client.name()));
        if self.misplaced > 0 {
            return fail(format!("{} records out of order", self.misplaced));
        }
        if self.per_partition[..] != served.per_partition[..] {
            return fail(format!(
                "records per partition {:?}, served {:?}",
                self.per_partition, served.per_partition
            ));
        }
        if self.byte_sum != served.byte_sum {
            return fail(format!(
                "value byte sum {}, served {}",
                self.byte_sum, served.byte_sum
            ));
        }
        Ok(())
    }
}

/// The broker process and what it serves.
struct Served {
    child: Child,
    bootstrap: String,
    per_partition: Vec<i64>,
    byte_sum: u64,
    encoded_bytes: u64,
}

impl Drop for Served {
    fn drop(&mut self) {
        // Its stdin closes with us too, which also ends it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this binary as the broker and reads its `ready` line.
fn start_broker(settings: &Settings) -> Result<Served, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mut child = Command::new(exe)
        .args(["--serve", "--records", &settings.records.to_string()])
        .args(["--value-len", &settings.value_len.to_string()])
        .args(["--batch-records", &settings.batch_records.to_string()])
        .args(["--compression", settings.compression.name()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("broker process: {e}"))?;
    let stdout = child.stdout.take().ok_or("no broker stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("broker's ready line: {e}"))?;
    // ready ADDRESS COUNT,COUNT,... BYTE_SUM ENCODED_BYTES
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [ready, bootstrap, counts, sum, encoded] = fields[..] else {
        let _ = child.kill();
        return Err(format!("broker said {line:?}"));
    };
    let parse = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("broker said {line:?}"))
    };
    let per_partition = counts
        .split(',')
        .map(parse)
        .collect::<Result<Vec<_>, _>>()?;
    if ready != "ready" || per_partition.len() != PARTITIONS {
        return Err(format!("broker said {line:?}"));
    }
    Ok(Served {
        child,
        bootstrap: bootstrap.to_owned(),
        per_partition,
        byte_sum: parse(sum)? as u64,
        encoded_bytes: parse(encoded)? as u64,
    })
}

/// The `--serve` process: encodes the topic, serves it, says `ready`, and ends when its stdin
/// closes (the bench ended).
fn serve(settings: &Settings) -> Result<(), String> {
    let topic = ReplayTopic::generate(
        TOPIC,
        PARTITIONS as i32,
        settings.records,
        settings.value_len,
        settings.batch_records,
        settings.compression,
    )
    .map_err(|e| format!("encoding: {e}"))?;
    actix::System::new().block_on(async move {
        let (counts, sum, encoded) = (
            topic.record_counts(),
            topic.value_byte_sum(),
            topic.encoded_bytes(),
        );
        let broker = ReplayBroker::start(topic)
            .await
            .map_err(|e| format!("listen: {e}"))?;
        let counts: Vec<String> = counts.iter().map(i64::to_string).collect();
        println!(
            "ready {} {} {sum} {encoded}",
            broker.bootstrap(),
            counts.join(",")
        );
        let (closed_tx, closed) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            let _ = closed_tx.send(());
        });
        let _ = closed.await;
        Ok(())
    })
}

/// konsumer's handler: the tally, and the moment the N-th record is handled.
struct Counter {
    target: u64,
    broker_pid: u32,
    tally: Tally,
    first_record: Option<Instant>,
    done: Option<tokio::sync::oneshot::Sender<(Instant, Snapshot, Tally)>>,
    seen: Arc<AtomicU64>,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for Counter {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        self.first_record.get_or_insert_with(Instant::now);
        for record in &batch.records {
            self.tally
                .add(batch.partition, record.offset, record.value());
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

struct Bench {
    settings: Settings,
    bootstrap: String,
    broker_pid: u32,
}

impl Bench {
    async fn run(&self, client: Client, round: u32) -> Result<Run, String> {
        let group = format!("bench-replay-{}-{round}", client.name());
        match client {
            Client::Konsumer => self.konsumer(group).await,
            Client::Rdkafka => self.rdkafka(group).await,
        }
    }

    /// One member on an arbiter of its own, as an application runs it.
    async fn konsumer(&self, group: String) -> Result<Run, String> {
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Counter {
            target: self.settings.records,
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
        let target = self.settings.records;
        let partition_max_bytes = self.settings.partition_max_bytes;
        let fetch_max_wait = self.settings.fetch_max_wait.as_millis();
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
                    .set("fetch.wait.max.ms", fetch_max_wait.to_string());
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
                            tally.add(message.partition(), message.offset(), message.payload());
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
            eprintln!("replay bench: {error}");
            return ExitCode::from(2);
        }
    };
    let outcome = if settings.serve {
        serve(&settings)
    } else {
        actix::System::new().block_on(bench(settings))
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("replay bench FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(settings: Settings) -> Result<(), String> {
    let n = settings.records;
    let encoding = Instant::now();
    let served = start_broker(&settings)?;
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!(
        "replay benchmark: {n} records of {} bytes, {PARTITIONS} partitions, {} records per \
         batch, compression {} ({:.1} MB encoded, in {:.1} s); replay broker (pid {}) at {}; \
         {cores} cores",
        settings.value_len,
        settings.batch_records,
        settings.compression.name(),
        served.encoded_bytes as f64 / 1e6,
        encoding.elapsed().as_secs_f64(),
        served.child.id(),
        served.bootstrap
    );
    println!(
        "both: max partition fetch bytes {}, fetch max wait {} ms; handler: count, check \
         offsets, sum value lengths and bytes",
        settings.partition_max_bytes,
        settings.fetch_max_wait.as_millis()
    );
    let bench = Bench {
        bootstrap: served.bootstrap.clone(),
        broker_pid: served.child.id(),
        settings,
    };
    let settings = &bench.settings;
    println!(
        "{:>3}  {:<9} {:>10} {:>7} {:>8} {:>9} {:>13} {:>8} {:>11} {:>14}",
        "run",
        "client",
        "records/s",
        "MB/s",
        "wall s",
        "1st rec s",
        "after 1st r/s",
        "CPU s",
        "CPU s/10^6",
        "broker s/10^6"
    );
    let per_million = |seconds: f64| seconds / n as f64 * 1e6;
    let mb = |records_per_s: f64| records_per_s * settings.value_len as f64 / 1e6;
    let mut runs: Vec<(Client, Run)> = Vec::new();
    for round in 1..=settings.rounds {
        let mut order = settings.clients.clone();
        if round % 2 == 0 {
            order.reverse();
        }
        for client in order {
            tokio::time::sleep(PAUSE).await;
            let run = bench.run(client, round).await?;
            run.tally.check(client, &served)?;
            let rate = n as f64 / run.wall();
            println!(
                "{round:>3}  {:<9} {:>10.0} {:>7.1} {:>8.2} {:>9.2} {:>13.0} {:>8.2} {:>11.2} \
                 {:>14.2}",
                client.name(),
                rate,
                mb(rate),
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
    println!("records checked: every client saw each record once, in offset order");
    println!();
    println!(
        "median of {} runs (records/s and MB/s of values: from creating the client to the last \
         record; after 1st: from the first record to the last):",
        settings.rounds
    );
    println!(
        "     {:<9} {:>10} {:>7} {:>13} {:>30} {:>14}",
        "client",
        "records/s",
        "MB/s",
        "after 1st r/s",
        "client CPU s per 10^6 records",
        "broker s/10^6"
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
            "     {:<9} {:>10.0} {:>7.1} {:>13.0} {:>30.2} {:>14.2}",
            client.name(),
            rate,
            mb(rate),
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
    drop(served);
    Ok(())
}
