//! Producer throughput: konsumer's `Producer` side by side with librdkafka's `FutureProducer`
//! (the `rdkafka` crate 0.39, librdkafka 2.12), against the same tansu broker, in one run.
//!
//! Both clients produce the same record set: N records (default 500,000) with 100-byte values and
//! keys `key-{i % 10000}`, spread by murmur2 over 6 partitions, acks=all, linger 5 ms, no
//! compression, each to a topic of its own. At most `window` records (default 200,000) are
//! outstanding at any time for either client: the sender waits for delivery outcomes before it
//! hands over more, so konsumer never hits its `max_buffered_bytes` (64 MiB).
//!
//! Measured per run, from the first record handed over until the last outcome arrives: wall-clock
//! records/s, this process's CPU seconds (user + system, every thread, from `/proc/self/stat`)
//! and the broker's (from `/proc/<tansu pid>/stat`). The clients take turns (konsumer, rdkafka,
//! konsumer awaited, and again) and the best run of each counts. The broker shares the machine's
//! cores and may limit records/s (DESIGN.md found it does for consuming), so compare the clients'
//! CPU per record as well. Results and analysis: BENCHMARKS.md.
//!
//! Run with `bash scripts/bench-produce.sh` (or `cargo bench --bench produce -- [options]`):
//!
//! ```text
//! --records N   records per run (default 500000, or $KONSUMER_BENCH_RECORDS)
//! --window N    most records outstanding at once (default 200000)
//! --rounds N    runs of each client (default 2)
//! --clients L   which clients, in turn, comma-separated (default konsumer,rdkafka,awaited;
//!               `awaited` is konsumer's awaited path: `ProducerExt::produce` futures)
//! ```
//!
//! Every offset the broker reports is checked at the end: per partition of each topic, the
//! records delivered must be exactly offsets 0..count, so every record was appended once.
//!
//! Exits non-zero if any record fails.

use std::fmt::Display;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use konsumer::producer::{Acks, ProduceError, ProducerConfig, RecordMetadata};
use konsumer::ClientConfig;
use konsumer_actors::testkit::tansu::{Storage, TansuBroker, TANSU_VERSION};
use konsumer_actors::{DeliveryReport, Enqueue, Producer, ProducerExt, ProducerRecord, ReportTo};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

const PARTITIONS: i32 = 6;
const VALUE_LEN: usize = 100;
const KEYS: u64 = 10_000;
const LINGER_MS: u64 = 5;
/// A run that takes longer than this is stuck: the bench fails instead of hanging.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

struct Settings {
    records: u64,
    window: usize,
    rounds: u32,
    clients: Vec<Client>,
}

impl Settings {
    fn parse() -> Result<Settings, String> {
        let mut settings = Settings {
            records: match std::env::var("KONSUMER_BENCH_RECORDS") {
                Ok(v) => number("KONSUMER_BENCH_RECORDS", &v)?,
                Err(_) => 500_000,
            },
            window: 200_000,
            rounds: 2,
            clients: vec![Client::Konsumer, Client::Rdkafka, Client::KonsumerAwaited],
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                let v = args.next().ok_or(format!("{name} needs a value"))?;
                number(name, &v)
            };
            match arg.as_str() {
                "--records" => settings.records = value("--records")?,
                "--window" => settings.window = value("--window")? as usize,
                "--rounds" => settings.rounds = value("--rounds")? as u32,
                "--clients" => {
                    let list = args.next().ok_or("--clients needs a value")?;
                    settings.clients = list
                        .split(',')
                        .map(|name| match name.trim() {
                            "konsumer" => Ok(Client::Konsumer),
                            "rdkafka" => Ok(Client::Rdkafka),
                            "awaited" => Ok(Client::KonsumerAwaited),
                            other => Err(format!("unknown client {other:?}")),
                        })
                        .collect::<Result<_, _>>()?;
                }
                // `cargo bench` passes --bench to every bench binary.
                "--bench" => {}
                other => match other.parse() {
                    Ok(n) => settings.records = n,
                    Err(_) => return Err(format!("unknown argument {other:?}")),
                },
            }
        }
        if settings.records == 0
            || settings.window == 0
            || settings.rounds == 0
            || settings.clients.is_empty()
        {
            return Err("records, window, rounds and clients must not be zero or empty".into());
        }
        Ok(settings)
    }
}

fn number(name: &str, value: &str) -> Result<u64, String> {
    value
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{name}: {value:?} is not a number"))
}

/// The record set both clients produce: record `i` has key `keys[i % 10000]` and `value`.
struct Data {
    keys: Vec<Bytes>,
    value: Bytes,
}

impl Data {
    fn new() -> Data {
        let mut value = b"konsumer producer benchmark: ".repeat(4);
        value.resize(VALUE_LEN, b'.');
        Data {
            keys: (0..KEYS).map(|k| Bytes::from(format!("key-{k}"))).collect(),
            value: Bytes::from(value),
        }
    }

    fn key(&self, i: u64) -> &Bytes {
        &self.keys[(i % KEYS) as usize]
    }

    fn konsumer(&self, topic: &str, i: u64) -> ProducerRecord {
        ProducerRecord::new(topic)
            .key(self.key(i).clone())
            .value(self.value.clone())
    }
}

/// CPU seconds (user + system, all threads) a process has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str, ticks_per_second: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count the fields after its closing ')'.
    // utime and stime are fields 14 and 15 of the line, so the 12th and 13th after it.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / ticks_per_second)
}

/// `getconf CLK_TCK`: the unit of `/proc/PID/stat` times (100 on every common Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Wall clock, this process's CPU and the broker's, from `start` to `stop`.
struct Meter {
    ticks: f64,
    broker: String,
    started: Instant,
    cpu: f64,
    broker_cpu: Option<f64>,
}

impl Meter {
    fn start(broker_pid: Option<u32>, ticks: f64) -> Meter {
        let broker = broker_pid.map_or_else(String::new, |p| p.to_string());
        Meter {
            ticks,
            cpu: cpu_seconds("self", ticks).unwrap_or(f64::NAN),
            broker_cpu: cpu_seconds(&broker, ticks),
            broker,
            started: Instant::now(),
        }
    }

    fn stop(self) -> Measured {
        let elapsed = self.started.elapsed();
        let cpu = cpu_seconds("self", self.ticks).unwrap_or(f64::NAN) - self.cpu;
        let broker_cpu = match (self.broker_cpu, cpu_seconds(&self.broker, self.ticks)) {
            (Some(before), Some(after)) => after - before,
            _ => f64::NAN,
        };
        Measured {
            elapsed,
            cpu,
            broker_cpu,
        }
    }
}

struct Measured {
    elapsed: Duration,
    cpu: f64,
    broker_cpu: f64,
}

/// Where the broker put a topic's records: per partition, how many and the highest offset.
#[derive(Clone, Copy)]
struct Placement {
    count: [u64; PARTITIONS as usize],
    max_offset: [i64; PARTITIONS as usize],
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            count: [0; PARTITIONS as usize],
            max_offset: [-1; PARTITIONS as usize],
        }
    }
}

impl Placement {
    fn merge(&mut self, other: &Placement) {
        for p in 0..PARTITIONS as usize {
            self.count[p] += other.count[p];
            self.max_offset[p] = self.max_offset[p].max(other.max_offset[p]);
        }
    }

    /// Every offset from 0 up was reported once per record: nothing lost, nothing doubled.
    fn check(&self, client: Client) -> Result<(), String> {
        for p in 0..PARTITIONS as usize {
            if self.max_offset[p] + 1 != self.count[p] as i64 {
                return Err(format!(
                    "{}: partition {p} of {} holds offsets up to {} but {} records were \
                     reported there",
                    client.name(),
                    client.topic(),
                    self.max_offset[p],
                    self.count[p]
                ));
            }
        }
        Ok(())
    }
}

/// Delivery outcomes seen: failures are counted, and the first one kept to show.
#[derive(Default)]
struct Tally {
    delivered: u64,
    failed: u64,
    first_failure: Option<String>,
    placement: Placement,
}

impl Tally {
    /// One record's outcome: its partition and offset, or why it failed.
    fn add<E: Display>(&mut self, outcome: Result<(i32, i64), E>) {
        match outcome {
            Ok((partition, offset)) => {
                self.delivered += 1;
                match usize::try_from(partition) {
                    Ok(p) if p < PARTITIONS as usize => {
                        self.placement.count[p] += 1;
                        self.placement.max_offset[p] = self.placement.max_offset[p].max(offset);
                    }
                    _ => self.fail(format!("delivered to partition {partition}")),
                }
            }
            Err(error) => self.fail(error),
        }
    }

    fn fail(&mut self, error: impl Display) {
        self.failed += 1;
        self.first_failure.get_or_insert_with(|| error.to_string());
    }

    fn check(&self, client: Client, expected: u64) -> Result<(), String> {
        if self.failed > 0 || self.delivered != expected {
            return Err(format!(
                "{}: {} of {expected} records delivered, {} failed; first failure: {}",
                client.name(),
                self.delivered,
                self.failed,
                self.first_failure.as_deref().unwrap_or("none")
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    /// konsumer, fire and forget: `Enqueue` with delivery reports on a channel.
    Konsumer,
    /// librdkafka's `FutureProducer`.
    Rdkafka,
    /// konsumer, awaited: `ProducerExt::produce(record)` futures.
    KonsumerAwaited,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Konsumer => "konsumer",
            Client::Rdkafka => "rdkafka",
            Client::KonsumerAwaited => "konsumer (awaited)",
        }
    }

    fn topic(self) -> &'static str {
        match self {
            Client::Konsumer => "bench-konsumer",
            Client::Rdkafka => "bench-rdkafka",
            Client::KonsumerAwaited => "bench-konsumer-awaited",
        }
    }
}

struct Bench<'a> {
    settings: &'a Settings,
    data: &'a Data,
    bootstrap: String,
    broker_pid: Option<u32>,
    ticks: f64,
}

impl Bench<'_> {
    async fn run(&self, client: Client) -> Result<(Measured, Tally), String> {
        let running = async {
            match client {
                Client::Konsumer => self.konsumer().await,
                Client::Rdkafka => self.rdkafka().await,
                Client::KonsumerAwaited => self.konsumer_awaited().await,
            }
        };
        tokio::time::timeout(RUN_TIMEOUT, running)
            .await
            .map_err(|_| format!("{}: not done after {RUN_TIMEOUT:?}", client.name()))?
    }

    async fn connect_konsumer(&self) -> Result<actix::Addr<Producer>, String> {
        let config = ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(LINGER_MS),
            ..ProducerConfig::default()
        };
        let log = slog::Logger::root(slog::Discard, slog::o!());
        Producer::connect(ClientConfig::new([self.bootstrap.clone()]), config, log)
            .await
            .map_err(|e| format!("konsumer producer: {e}"))
    }

    async fn konsumer(&self) -> Result<(Measured, Tally), String> {
        let client = Client::Konsumer;
        let (n, window) = (self.settings.records, self.settings.window);
        let producer = self.connect_konsumer().await?;
        let (reports, mut outcomes) = tokio::sync::mpsc::unbounded_channel::<DeliveryReport>();
        let mut tally = Tally::default();
        let mut outstanding = 0;
        let meter = Meter::start(self.broker_pid, self.ticks);
        for i in 0..n {
            if outstanding >= window {
                // Wait for one outcome, then take whatever else has arrived.
                let report = outcomes.recv().await.ok_or("report channel closed")?;
                tally.add(placed(report.result));
                outstanding -= 1;
                while let Ok(report) = outcomes.try_recv() {
                    tally.add(placed(report.result));
                    outstanding -= 1;
                }
            }
            producer.do_send(Enqueue {
                record: self.data.konsumer(client.topic(), i),
                opaque: i,
                report_to: ReportTo::Channel(reports.clone()),
            });
            outstanding += 1;
        }
        while outstanding > 0 {
            let report = outcomes.recv().await.ok_or("report channel closed")?;
            tally.add(placed(report.result));
            outstanding -= 1;
        }
        producer.flush().await;
        let measured = meter.stop();
        producer.close().await;
        tally.check(client, n)?;
        Ok((measured, tally))
    }

    async fn konsumer_awaited(&self) -> Result<(Measured, Tally), String> {
        let client = Client::KonsumerAwaited;
        let (n, window) = (self.settings.records, self.settings.window);
        let producer = self.connect_konsumer().await?;
        let mut pending = FuturesUnordered::new();
        let mut tally = Tally::default();
        let meter = Meter::start(self.broker_pid, self.ticks);
        for i in 0..n {
            if pending.len() >= window {
                if let Some(answer) = pending.next().await {
                    tally.add(placed(answered(answer)));
                }
            }
            pending.push(producer.produce(self.data.konsumer(client.topic(), i)));
        }
        while let Some(answer) = pending.next().await {
            tally.add(placed(answered(answer)));
        }
        let measured = meter.stop();
        producer.close().await;
        tally.check(client, n)?;
        Ok((measured, tally))
    }

    async fn rdkafka(&self) -> Result<(Measured, Tally), String> {
        let client = Client::Rdkafka;
        let (n, window) = (self.settings.records, self.settings.window);
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("acks", "all")
            .set("linger.ms", LINGER_MS.to_string())
            .set("compression.codec", "none")
            // The Java client's partitioner, as konsumer's default: the same spread of keys.
            .set("partitioner", "murmur2_random")
            .set(
                "queue.buffering.max.messages",
                (window + 1000).max(100_000).to_string(),
            )
            .set("message.timeout.ms", "120000")
            .create()
            .map_err(|e| format!("rdkafka producer: {e}"))?;
        let mut pending = FuturesUnordered::new();
        let mut tally = Tally::default();
        let meter = Meter::start(self.broker_pid, self.ticks);
        for i in 0..n {
            if pending.len() >= window {
                if let Some(answer) = pending.next().await {
                    tally.add(delivered(answer));
                }
            }
            let mut record = FutureRecord::to(client.topic())
                .key(&self.data.key(i)[..])
                .payload(&self.data.value[..]);
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's queue is full: wait for an outcome, then try again.
                        record = back;
                        match pending.next().await {
                            Some(answer) => tally.add(delivered(answer)),
                            None => tokio::time::sleep(Duration::from_millis(1)).await,
                        }
                    }
                    Err((error, _)) => return Err(format!("rdkafka: record {i}: {error}")),
                }
            }
        }
        while let Some(answer) = pending.next().await {
            tally.add(delivered(answer));
        }
        producer
            .flush(Timeout::After(Duration::from_secs(60)))
            .map_err(|e| format!("rdkafka flush: {e}"))?;
        let measured = meter.stop();
        drop(producer);
        tally.check(client, n)?;
        Ok((measured, tally))
    }
}

/// The outcome of a konsumer record, as partition and offset.
fn placed<E: Display>(result: Result<RecordMetadata, E>) -> Result<(i32, i64), String> {
    match result {
        Ok(RecordMetadata {
            partition,
            offset: Some(offset),
            ..
        }) => Ok((partition, offset)),
        Ok(_) => Err("acknowledged without an offset".into()),
        Err(error) => Err(error.to_string()),
    }
}

fn delivered(
    answer: <DeliveryFuture as std::future::Future>::Output,
) -> Result<(i32, i64), String> {
    match answer {
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((error, _))) => Err(error.to_string()),
        Err(_) => Err("delivery future canceled".into()),
    }
}

/// One client's best run: the highest records/s and, separately, the least CPU per record.
struct Best {
    client: Client,
    rate: f64,
    cpu_per_million: f64,
    broker_per_million: f64,
}

fn main() -> ExitCode {
    let settings = match Settings::parse() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("produce bench: {error}");
            return ExitCode::from(2);
        }
    };
    match actix::System::new().block_on(bench(&settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("produce bench FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(settings: &Settings) -> Result<(), String> {
    let mut clients: Vec<Client> = Vec::new();
    for client in &settings.clients {
        if !clients.contains(client) {
            clients.push(*client);
        }
    }
    let broker = TansuBroker::start(Storage::Memory);
    for client in &clients {
        broker.create_topic(client.topic(), PARTITIONS);
    }
    let data = Data::new();
    let bench = Bench {
        settings,
        data: &data,
        bootstrap: broker.bootstrap(),
        broker_pid: broker.pid(),
        ticks: clock_ticks(),
    };
    let n = settings.records;
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!(
        "producer benchmark: {n} records of {VALUE_LEN} bytes per run, keys key-0..key-{}, \
         {PARTITIONS} partitions, acks=all, linger {LINGER_MS} ms, no compression, at most {} \
         records outstanding; tansu {TANSU_VERSION} (memory) at {}; {cores} cores",
        KEYS - 1,
        settings.window,
        bench.bootstrap
    );
    println!(
        "{:>3}  {:<19} {:>10} {:>8} {:>8} {:>12} {:>14}",
        "run", "client", "records/s", "wall s", "CPU s", "CPU s/10^6", "broker s/10^6"
    );
    let per_million = |seconds: f64| seconds / n as f64 * 1e6;
    let mut best: Vec<Best> = Vec::new();
    let mut placements = vec![Placement::default(); clients.len()];
    for round in 1..=settings.rounds {
        for &client in &clients {
            let (measured, tally) = bench.run(client).await?;
            placements[clients.iter().position(|c| *c == client).unwrap_or(0)]
                .merge(&tally.placement);
            let rate = n as f64 / measured.elapsed.as_secs_f64();
            println!(
                "{round:>3}  {:<19} {:>10.0} {:>8.2} {:>8.2} {:>12.2} {:>14.2}",
                client.name(),
                rate,
                measured.elapsed.as_secs_f64(),
                measured.cpu,
                per_million(measured.cpu),
                per_million(measured.broker_cpu),
            );
            let run = Best {
                client,
                rate,
                cpu_per_million: per_million(measured.cpu),
                broker_per_million: per_million(measured.broker_cpu),
            };
            match best.iter_mut().find(|b| b.client == client) {
                None => best.push(run),
                Some(b) => {
                    b.rate = b.rate.max(run.rate);
                    b.cpu_per_million = b.cpu_per_million.min(run.cpu_per_million);
                    b.broker_per_million = b.broker_per_million.min(run.broker_per_million);
                }
            }
        }
    }
    for (client, placement) in clients.iter().zip(&placements) {
        placement.check(*client)?;
    }
    // The same keys and the same murmur2 partitioner: every client fills the partitions alike.
    if placements.windows(2).any(|w| w[0].count != w[1].count) {
        let counts: Vec<_> = placements.iter().map(|p| p.count).collect();
        return Err(format!(
            "clients spread the records differently: {counts:?}"
        ));
    }
    println!(
        "offsets checked: per partition, 0..count each reported once; records per partition \
         (every client alike): {:?}",
        placements[0].count
    );
    println!();
    println!(
        "best of {} runs (records/s: highest; CPU: lowest):",
        settings.rounds
    );
    println!(
        "     {:<19} {:>10} {:>30} {:>14}",
        "client", "records/s", "client CPU s per 10^6 records", "broker s/10^6"
    );
    for b in &best {
        println!(
            "     {:<19} {:>10.0} {:>30.2} {:>14.2}",
            b.client.name(),
            b.rate,
            b.cpu_per_million,
            b.broker_per_million
        );
    }
    let find = |client| best.iter().find(|b| b.client == client);
    if let Some(theirs) = find(Client::Rdkafka) {
        println!();
        for ours in [Client::Konsumer, Client::KonsumerAwaited]
            .iter()
            .filter_map(|c| find(*c))
        {
            println!(
                "{} / rdkafka: records/s {:.2}x (higher is better), CPU per record {:.2}x \
                 (lower is better)",
                ours.client.name(),
                ours.rate / theirs.rate,
                ours.cpu_per_million / theirs.cpu_per_million
            );
        }
    }
    drop(broker);
    Ok(())
}

/// The answer to `ProducerExt::produce`, with the error as text.
fn answered(answer: Result<RecordMetadata, ProduceError>) -> Result<RecordMetadata, String> {
    answer.map_err(|e| e.to_string())
}
