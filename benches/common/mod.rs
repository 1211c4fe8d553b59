//! What the two consumer benches (benches/consume.rs against tansu, benches/replay.rs against
//! the replay broker) share: their options, the three clients' read loops, and the rounds that
//! run each client in a process of its own and compare them.
//!
//! Each run re-executes the bench binary as `--client NAME --bootstrap ADDR --topic T
//! --group G [--broker-pid P]` plus the read options. That child creates one client, reads the
//! whole topic as the only member of group G, and prints one `result key=value ...` line: its
//! tally of what it read, and its own clocks from creating the client until the N-th record was
//! handled — wall time, time to the first record, CPU (`getrusage(RUSAGE_SELF)`, user and
//! system, every thread) and peak RSS (`VmHWM`, see [`peak_rss_kib`]). One process per client
//! keeps each client's CPU and memory apart from the others' and from the bench's own (the
//! producer, the expected-value bookkeeping). The parent checks the tally against what the topic holds, prints
//! a line per run, the medians, and last the ratios konsumer / each rdkafka client.
//!
//! The clients, each doing the same work per record (count it, check its offset is above the
//! last one of its partition, add up its value's length and bytes, so every value byte is read):
//!
//! - `konsumer`: `ConsumerService` (range assignor, `OffsetReset::Earliest`, auto commit every
//!   5 s) with one batch handler actor, on an arbiter of its own as an application runs it;
//! - `rdkafka`: rdkafka 0.39's `BaseConsumer` polled in a loop on the main thread;
//! - `rdkafka-stream`: rdkafka's `StreamConsumer` on a current-thread tokio runtime, reading
//!   `consumer.stream()` in a loop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use actix::{Actor, Arbiter, Context, Handler};
use futures_util::StreamExt;
use konsumer::compression::Compression;
use konsumer::consumer::{ConsumerConfig, OffsetReset};
use konsumer::group::GroupConfig;
use konsumer::ClientConfig;
use konsumer_actors::{ConsumerService, HandlerRef, HandlerResult, KafkaBatch, Shutdown};
use rdkafka::config::{ClientConfig as RdConfig, FromClientConfig};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::Message;

/// Partitions of the benches' topic.
pub const PARTITIONS: usize = 6;
const ASSIGNOR: &str = "range";
/// Between runs, so the last client's process is gone and the broker quiet before the next.
const PAUSE: Duration = Duration::from_secs(1);
/// How long a child may take to close its client and exit after its last record.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Client {
    Konsumer,
    Rdkafka,
    RdkafkaStream,
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Client::Konsumer => "konsumer",
            Client::Rdkafka => "rdkafka",
            Client::RdkafkaStream => "rdkafka-stream",
        }
    }

    fn api(self) -> &'static str {
        match self {
            Client::Konsumer => "ConsumerService",
            Client::Rdkafka => "BaseConsumer",
            Client::RdkafkaStream => "StreamConsumer",
        }
    }

    fn parse(name: &str) -> Result<Client, String> {
        match name.trim() {
            "konsumer" => Ok(Client::Konsumer),
            "rdkafka" | "rdkafka-base" => Ok(Client::Rdkafka),
            "rdkafka-stream" => Ok(Client::RdkafkaStream),
            other => Err(format!("unknown client {other:?}")),
        }
    }
}

/// The options both benches take. The bench itself also passes the reading ones on to each
/// client process ([`Settings::client_args`]).
#[derive(Clone, Debug)]
pub struct Settings {
    pub records: u64,
    pub rounds: u32,
    /// In the first round's order; the order reverses every other round.
    pub clients: Vec<Client>,
    pub compression: Compression,
    pub value_len: usize,
    /// Read every value byte (true) or only count the records (`--handler count`).
    pub touch: bool,
    pub max_batch: usize,
    pub max_in_flight: usize,
    pub buffer_records: usize,
    pub decode_threads: usize,
    /// konsumer checks each batch's CRC (its default) or not (`--no-check-crcs`: what
    /// librdkafka does by default, `check.crcs=false`).
    pub check_crcs: bool,
    pub partition_max_bytes: i32,
    pub fetch_max_wait: Duration,
    pub fetch_max_bytes: i32,
    /// konsumer's sidechannel topic on (tansu creates it) or off (the replay broker has no
    /// CreateTopics).
    pub sidechannel: bool,
    /// A run that takes longer is stuck: the bench fails instead of hanging.
    pub run_timeout: Duration,
    /// Extra librdkafka properties (`--rdkafka-set key=value`), applied last.
    pub rdkafka_extra: Vec<(String, String)>,
}

/// What a client process reads: where, which topic, as which group.
#[derive(Clone, Debug)]
pub struct Target {
    pub client: Client,
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    /// The broker's process, whose CPU the client samples at its start and end.
    pub broker_pid: Option<u32>,
}

/// How this process was started.
pub enum Mode {
    /// The bench: starts the broker and runs the rounds.
    Bench(Settings),
    /// One client's run (`--client NAME`), started by the bench.
    Client(Settings, Target),
}

pub fn number(name: &str, value: &str) -> Result<u64, String> {
    value
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{name}: {value:?} is not a number"))
}

impl Settings {
    /// The defaults: 10^6 records (or `$KONSUMER_BENCH_RECORDS`) of 100 bytes, 3 rounds, all
    /// three clients, `ConsumerConfig`'s fetch and batch settings.
    pub fn defaults(run_timeout: Duration, sidechannel: bool) -> Result<Settings, String> {
        let defaults = ConsumerConfig::default();
        Ok(Settings {
            records: match std::env::var("KONSUMER_BENCH_RECORDS") {
                Ok(v) => number("KONSUMER_BENCH_RECORDS", &v)?,
                Err(_) => 1_000_000,
            },
            rounds: 3,
            clients: vec![Client::Konsumer, Client::Rdkafka, Client::RdkafkaStream],
            compression: Compression::None,
            value_len: 100,
            touch: true,
            max_batch: defaults.max_batch_records,
            max_in_flight: defaults.max_in_flight,
            buffer_records: defaults.buffer_max_records,
            decode_threads: defaults.decode_threads,
            check_crcs: defaults.check_crcs,
            partition_max_bytes: defaults.partition_max_bytes,
            fetch_max_wait: defaults.fetch_max_wait,
            fetch_max_bytes: defaults.fetch_max_bytes,
            sidechannel,
            run_timeout,
            rdkafka_extra: Vec::new(),
        })
    }

    /// Parses the command line over `self`. `own(arg, value)` is offered every option this
    /// module does not know first; it returns whether it took it (calling `value` for the
    /// option's value if it has one).
    pub fn parse(
        mut self,
        mut own: impl FnMut(&str, &mut dyn FnMut() -> Result<String, String>) -> Result<bool, String>,
    ) -> Result<Mode, String> {
        let mut target: Option<Target> = None;
        let (mut bootstrap, mut topic, mut group, mut broker_pid) = (None, None, None, None);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut text = || args.next().ok_or(format!("{arg} needs a value"));
            let int32 = |v: u64| i32::try_from(v).map_err(|_| format!("{arg} is too large"));
            match arg.as_str() {
                "--records" => self.records = number(&arg, &text()?)?,
                "--rounds" => self.rounds = number(&arg, &text()?)? as u32,
                "--value-len" => self.value_len = number(&arg, &text()?)? as usize,
                "--max-batch" => self.max_batch = number(&arg, &text()?)? as usize,
                "--max-in-flight" => self.max_in_flight = number(&arg, &text()?)? as usize,
                "--buffer-records" => self.buffer_records = number(&arg, &text()?)? as usize,
                "--decode-threads" => self.decode_threads = number(&arg, &text()?)? as usize,
                "--partition-max-bytes" => {
                    self.partition_max_bytes = int32(number(&arg, &text()?)?)?
                }
                "--fetch-max-bytes" => self.fetch_max_bytes = int32(number(&arg, &text()?)?)?,
                "--fetch-max-wait-ms" => {
                    self.fetch_max_wait = Duration::from_millis(number(&arg, &text()?)?)
                }
                "--run-timeout-s" => {
                    self.run_timeout = Duration::from_secs(number(&arg, &text()?)?)
                }
                "--no-sidechannel" => self.sidechannel = false,
                "--no-check-crcs" => self.check_crcs = false,
                "--rdkafka-set" => {
                    let pair = text()?;
                    let (key, value) = pair
                        .split_once('=')
                        .ok_or(format!("--rdkafka-set {pair:?}: expected key=value"))?;
                    self.rdkafka_extra.push((key.into(), value.into()));
                }
                "--compression" => {
                    let name = text()?;
                    self.compression = name
                        .parse()
                        .map_err(|_| format!("unknown codec {name:?}"))?;
                }
                "--handler" => {
                    self.touch = match text()?.as_str() {
                        "touch" => true,
                        "count" => false,
                        other => return Err(format!("unknown handler {other:?}")),
                    }
                }
                "--clients" => {
                    self.clients = Vec::new();
                    for name in text()?.split(',') {
                        let client = Client::parse(name)?;
                        if !self.clients.contains(&client) {
                            self.clients.push(client);
                        }
                    }
                }
                "--client" => {
                    target = Some(Target {
                        client: Client::parse(&text()?)?,
                        bootstrap: String::new(),
                        topic: String::new(),
                        group: String::new(),
                        broker_pid: None,
                    })
                }
                "--bootstrap" => bootstrap = Some(text()?),
                "--topic" => topic = Some(text()?),
                "--group" => group = Some(text()?),
                "--broker-pid" => broker_pid = Some(number(&arg, &text()?)? as u32),
                // `cargo bench` passes --bench to every bench binary.
                "--bench" => {}
                other => {
                    if !own(other, &mut text)? {
                        match number("records", other) {
                            Ok(n) => self.records = n,
                            Err(_) => return Err(format!("unknown argument {other:?}")),
                        }
                    }
                }
            }
        }
        if self.records == 0
            || self.rounds == 0
            || self.clients.is_empty()
            || self.value_len == 0
            || self.max_batch == 0
            || self.max_in_flight == 0
            || self.buffer_records == 0
            || self.decode_threads == 0
            || self.partition_max_bytes <= 0
            || self.fetch_max_bytes <= 0
        {
            return Err("no number may be zero and the client list not empty".into());
        }
        match target {
            None => Ok(Mode::Bench(self)),
            Some(mut target) => {
                let missing = |what: &str| format!("--client needs --{what}");
                target.bootstrap = bootstrap.ok_or_else(|| missing("bootstrap"))?;
                target.topic = topic.ok_or_else(|| missing("topic"))?;
                target.group = group.ok_or_else(|| missing("group"))?;
                target.broker_pid = broker_pid;
                Ok(Mode::Client(self, target))
            }
        }
    }

    /// The options a client process needs to read as this bench asks.
    fn client_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            ("--records", self.records.to_string()),
            ("--value-len", self.value_len.to_string()),
            (
                "--handler",
                (if self.touch { "touch" } else { "count" }).into(),
            ),
            ("--max-batch", self.max_batch.to_string()),
            ("--max-in-flight", self.max_in_flight.to_string()),
            ("--buffer-records", self.buffer_records.to_string()),
            ("--decode-threads", self.decode_threads.to_string()),
            (
                "--partition-max-bytes",
                self.partition_max_bytes.to_string(),
            ),
            ("--fetch-max-bytes", self.fetch_max_bytes.to_string()),
            (
                "--fetch-max-wait-ms",
                self.fetch_max_wait.as_millis().to_string(),
            ),
            ("--run-timeout-s", self.run_timeout.as_secs().to_string()),
        ]
        .into_iter()
        .flat_map(|(option, value)| [option.to_owned(), value])
        .collect();
        if !self.sidechannel {
            args.push("--no-sidechannel".into());
        }
        if !self.check_crcs {
            args.push("--no-check-crcs".into());
        }
        for (key, value) in &self.rdkafka_extra {
            args.push("--rdkafka-set".into());
            args.push(format!("{key}={value}"));
        }
        args
    }

    fn consumer_config(&self) -> ConsumerConfig {
        let mut config = ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            max_batch_records: self.max_batch,
            max_in_flight: self.max_in_flight,
            buffer_max_records: self.buffer_records,
            decode_threads: self.decode_threads,
            check_crcs: self.check_crcs,
            partition_max_bytes: self.partition_max_bytes,
            fetch_max_wait: self.fetch_max_wait,
            fetch_max_bytes: self.fetch_max_bytes,
            ..ConsumerConfig::default()
        };
        if !self.sidechannel {
            config.sidechannel_topic = String::new();
        }
        config
    }

    /// librdkafka's settings for both rdkafka clients: the same group timing, assignor, reset
    /// and fetch sizes as konsumer's.
    fn rdkafka_config(&self, target: &Target) -> RdConfig {
        let mut config = RdConfig::new();
        config
            .set("bootstrap.servers", &target.bootstrap)
            .set("group.id", &target.group)
            .set("partition.assignment.strategy", ASSIGNOR)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set(
                "max.partition.fetch.bytes",
                self.partition_max_bytes.to_string(),
            )
            .set(
                "fetch.wait.max.ms",
                self.fetch_max_wait.as_millis().to_string(),
            )
            .set("fetch.max.bytes", self.fetch_max_bytes.to_string());
        for (key, value) in &self.rdkafka_extra {
            config.set(key, value);
        }
        config
    }

    /// One line saying what the clients were asked to do.
    pub fn describe_clients(&self) -> String {
        let config = self.consumer_config();
        let mut line = format!(
            "handler: {}; konsumer: max_batch_records {}, max_in_flight {}, buffer_max_records \
             {}, decode_threads {}, check_crcs {}; all: max partition fetch bytes {}, fetch max bytes {}, fetch max wait {} ms; \
             each client in a process of its own",
            if self.touch {
                "count, check offsets, sum value lengths and bytes"
            } else {
                "count only"
            },
            config.max_batch_records,
            config.max_in_flight,
            config.buffer_max_records,
            config.decode_threads,
            config.check_crcs,
            config.partition_max_bytes,
            config.fetch_max_bytes,
            config.fetch_max_wait.as_millis()
        );
        if !self.rdkafka_extra.is_empty() {
            let extra: Vec<String> = self
                .rdkafka_extra
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            line.push_str(&format!("; rdkafka also: {}", extra.join(" ")));
        }
        line
    }
}

/// `getrusage(RUSAGE_SELF)`: this process's user and system CPU seconds (every thread), and
/// its `ru_maxrss` in KiB.
fn own_usage() -> (f64, f64, u64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, which points to
    // one; the value is read only when it reports success.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return (f64::NAN, f64::NAN, 0);
        }
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        seconds(usage.ru_utime),
        seconds(usage.ru_stime),
        u64::try_from(usage.ru_maxrss).unwrap_or(0),
    )
}

/// This process's peak resident set in KiB: `VmHWM` from `/proc/self/status`, which belongs
/// to the address space made at exec. Linux carries the parent's peak into a spawned child's
/// `ru_maxrss` (the exec keeps the larger of the two), so after a bench that produced 10^6
/// records `ru_maxrss` would show the parent's memory, not the client's; it is the fallback only.
fn peak_rss_kib(ru_maxrss: u64) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(ru_maxrss)
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

/// The clocks at one moment, in a client process.
#[derive(Clone, Copy, Debug)]
struct Snapshot {
    at: Instant,
    user: f64,
    system: f64,
    max_rss_kib: u64,
    broker_cpu: Option<f64>,
}

impl Snapshot {
    fn now(broker_pid: Option<u32>) -> Snapshot {
        let (user, system, ru_maxrss) = own_usage();
        Snapshot {
            at: Instant::now(),
            user,
            system,
            max_rss_kib: peak_rss_kib(ru_maxrss),
            broker_cpu: broker_pid.and_then(other_process_cpu),
        }
    }
}

/// What a client has seen: the same bookkeeping for every client, per record.
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
    /// One record's work: the whole of it with `touch`, else only the count.
    #[inline]
    fn add(&mut self, touch: bool, partition: i32, offset: i64, value: Option<&[u8]>) {
        self.records += 1;
        if !touch {
            return;
        }
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

    /// Exactly the records the topic holds, each once, in offset order per partition (only the
    /// count with `--handler count`).
    fn check(&self, settings: &Settings, expected: &Expected) -> Result<(), String> {
        let n = expected.per_partition.iter().sum::<u64>();
        if !settings.touch {
            if self.records != n {
                return Err(format!("{} records, expected {n}", self.records));
            }
            return Ok(());
        }
        if self.misplaced > 0 {
            return Err(format!(
                "{} records out of order or on an unknown partition",
                self.misplaced
            ));
        }
        if self.per_partition != expected.per_partition {
            return Err(format!(
                "records per partition {:?}, expected {:?}",
                self.per_partition, expected.per_partition
            ));
        }
        let value_bytes = n * settings.value_len as u64;
        if self.value_bytes != value_bytes || self.byte_sum != expected.byte_sum {
            return Err(format!(
                "{} value bytes (sum {}), expected {value_bytes} (sum {})",
                self.value_bytes, self.byte_sum, expected.byte_sum
            ));
        }
        Ok(())
    }
}

/// What the topic holds, for checking what each client read.
pub struct Expected {
    pub per_partition: [u64; PARTITIONS],
    /// The sum of every value byte of every record.
    pub byte_sum: u64,
}

/// One client run, as its process measured it.
#[derive(Clone, Debug)]
struct Measured {
    tally: Tally,
    /// Seconds from creating the client to handling the N-th record.
    wall: f64,
    /// Seconds from creating the client to the first record.
    to_first: f64,
    user: f64,
    system: f64,
    /// Before the client was created (the bench binary alone) and at the N-th record.
    rss_start_kib: u64,
    rss_peak_kib: u64,
    /// The broker's CPU seconds over the same span (NaN when not known).
    broker_cpu: f64,
}

impl Measured {
    fn new(start: Snapshot, first_record: Option<Instant>, end: Snapshot, tally: Tally) -> Self {
        Measured {
            tally,
            wall: (end.at - start.at).as_secs_f64(),
            to_first: (first_record.unwrap_or(end.at) - start.at).as_secs_f64(),
            user: end.user - start.user,
            system: end.system - start.system,
            rss_start_kib: start.max_rss_kib,
            rss_peak_kib: end.max_rss_kib,
            broker_cpu: match (start.broker_cpu, end.broker_cpu) {
                (Some(a), Some(b)) => b - a,
                _ => f64::NAN,
            },
        }
    }

    /// The child's one line for its parent.
    fn to_line(&self) -> String {
        let t = &self.tally;
        let counts: Vec<String> = t.per_partition.iter().map(u64::to_string).collect();
        let offsets: Vec<String> = t.last_offset.iter().map(i64::to_string).collect();
        format!(
            "result records={} value_bytes={} byte_sum={} per_partition={} last_offset={} \
             misplaced={} wall={} to_first={} user={} system={} rss_start_kib={} \
             rss_peak_kib={} broker_cpu={}",
            t.records,
            t.value_bytes,
            t.byte_sum,
            counts.join(","),
            offsets.join(","),
            t.misplaced,
            self.wall,
            self.to_first,
            self.user,
            self.system,
            self.rss_start_kib,
            self.rss_peak_kib,
            self.broker_cpu
        )
    }

    /// Reads a `result` line back; `None` when it is not one.
    fn from_line(line: &str) -> Result<Option<Measured>, String> {
        let Some(rest) = line.strip_prefix("result ") else {
            return Ok(None);
        };
        let fields: HashMap<&str, &str> = rest
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .collect();
        let bad = || format!("client said {line:?}");
        let field = |key: &str| fields.get(key).copied().ok_or_else(bad);
        let int = |key: &str| field(key)?.parse::<u64>().map_err(|_| bad());
        let float = |key: &str| field(key)?.parse::<f64>().map_err(|_| bad());
        fn array<T: std::str::FromStr>(text: &str) -> Option<[T; PARTITIONS]> {
            let values: Vec<T> = text
                .split(',')
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            values.try_into().ok()
        }
        Ok(Some(Measured {
            tally: Tally {
                records: int("records")?,
                value_bytes: int("value_bytes")?,
                byte_sum: int("byte_sum")?,
                per_partition: array(field("per_partition")?).ok_or_else(bad)?,
                last_offset: array(field("last_offset")?).ok_or_else(bad)?,
                misplaced: int("misplaced")?,
            },
            wall: float("wall")?,
            to_first: float("to_first")?,
            user: float("user")?,
            system: float("system")?,
            rss_start_kib: int("rss_start_kib")?,
            rss_peak_kib: int("rss_peak_kib")?,
            broker_cpu: float("broker_cpu")?,
        }))
    }
}

/// A bench's `main`: the client process's run when started with `--client`, else `bench`;
/// exit code 2 for a bad command line, 1 for a failed bench.
pub fn main(
    name: &str,
    mode: Result<Mode, String>,
    bench: impl FnOnce(Settings) -> Result<(), String>,
) -> ExitCode {
    let outcome = match mode {
        Ok(Mode::Client(settings, target)) => return client_main(settings, target),
        Ok(Mode::Bench(settings)) => bench(settings),
        Err(error) => {
            eprintln!("{name} bench: {error}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name} bench FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The `--client` process: one client's run, its `result` line on stdout.
fn client_main(settings: Settings, target: Target) -> ExitCode {
    let outcome = match target.client {
        Client::Konsumer => konsumer(&settings, &target),
        Client::Rdkafka => rdkafka_base(&settings, &target),
        Client::RdkafkaStream => rdkafka_stream(&settings, &target),
    };
    match outcome {
        Ok(measured) => {
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{}", measured.to_line()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}: writing the result: {e}", target.client.name());
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("{}: {error}", target.client.name());
            ExitCode::FAILURE
        }
    }
}

/// konsumer's handler: the tally, and the moment the N-th record is handled.
struct Counter {
    target: u64,
    touch: bool,
    broker_pid: Option<u32>,
    tally: Tally,
    first_record: Option<Instant>,
    done: Option<tokio::sync::oneshot::Sender<(Option<Instant>, Snapshot, Tally)>>,
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
            for record in batch.records.iter() {
                self.tally
                    .add(true, batch.partition, record.offset, record.value());
            }
        } else {
            self.tally.records += batch.records.len() as u64;
        }
        self.seen.store(self.tally.records, Ordering::Relaxed);
        if self.tally.records >= self.target {
            if let Some(done) = self.done.take() {
                let end = Snapshot::now(self.broker_pid);
                let _ = done.send((self.first_record, end, self.tally.clone()));
            }
        }
        Ok(())
    }
}

fn group_config(group: &str, topic: &str) -> GroupConfig {
    let mut config = GroupConfig::new(group, [topic])
        .with_assignors(&[ASSIGNOR])
        .expect("built-in assignor");
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_secs(1);
    config.rebalance_timeout = Duration::from_secs(20);
    config
}

/// One `ConsumerService` member on an arbiter of its own (its Fetcher gets another), as an
/// application runs it; this thread only waits for the handler's word.
fn konsumer(settings: &Settings, target: &Target) -> Result<Measured, String> {
    actix::System::new().block_on(async {
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Counter {
            target: settings.records,
            touch: settings.touch,
            broker_pid: target.broker_pid,
            tally: Tally::default(),
            first_record: None,
            done: Some(done_tx),
            seen: seen.clone(),
        };
        let client = ClientConfig::new([target.bootstrap.clone()]);
        let group = group_config(&target.group, &target.topic);
        let consumer = settings.consumer_config();
        let start = Snapshot::now(target.broker_pid);
        let arbiter = Arbiter::new();
        arbiter.spawn(async move {
            let counter = counter.start();
            let service = ConsumerService::builder(client, group)
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
                .map_err(|e| format!("service: {e}"))?;
            let finished = tokio::time::timeout(settings.run_timeout, done).await;
            // Close the member whatever happened: drain, commit, leave.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, service.send(Shutdown)).await;
            match finished {
                Ok(Ok((first_record, end, tally))) => {
                    Ok(Measured::new(start, first_record, end, tally))
                }
                Ok(Err(_)) => Err("the handler went away".to_string()),
                Err(_) => Err(stuck(seen.load(Ordering::Relaxed), settings)),
            }
        }
        .await;
        arbiter.stop();
        let _ = arbiter.join();
        outcome
    })
}

/// What an rdkafka loop keeps: the tally, and when the first record came.
#[derive(Default)]
struct Reading {
    tally: Tally,
    first_record: Option<Instant>,
}

impl Reading {
    /// One message's work, the same as konsumer's handler does per record.
    #[inline]
    fn take<M: Message>(&mut self, touch: bool, message: &M) {
        self.first_record.get_or_insert_with(Instant::now);
        self.tally.add(
            touch,
            message.partition(),
            message.offset(),
            message.payload(),
        );
    }

    /// The run's figures: the clocks now, then the consumer closed (final commit, LeaveGroup).
    fn finish<C>(self, start: Snapshot, target: &Target, consumer: C) -> Measured {
        let end = Snapshot::now(target.broker_pid);
        drop(consumer);
        Measured::new(start, self.first_record, end, self.tally)
    }
}

/// A stuck run's message.
fn stuck(seen: u64, settings: &Settings) -> String {
    format!(
        "{seen} of {} records after {:?}",
        settings.records, settings.run_timeout
    )
}

/// An rdkafka consumer of either kind, made and subscribed to the topic.
fn subscribed<C: FromClientConfig + Consumer>(
    settings: &Settings,
    target: &Target,
) -> Result<C, String> {
    let consumer: C = settings
        .rdkafka_config(target)
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    consumer
        .subscribe(&[target.topic.as_str()])
        .map_err(|e| format!("subscribe: {e}"))?;
    Ok(consumer)
}

/// A `BaseConsumer` polled in a loop on this thread.
fn rdkafka_base(settings: &Settings, target: &Target) -> Result<Measured, String> {
    let start = Snapshot::now(target.broker_pid);
    let consumer: BaseConsumer = subscribed(settings, target)?;
    let mut reading = Reading::default();
    let deadline = Instant::now() + settings.run_timeout;
    while reading.tally.records < settings.records {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => reading.take(settings.touch, &message),
            Some(Err(e)) => return Err(format!("poll: {e}")),
            None if Instant::now() > deadline => {
                return Err(stuck(reading.tally.records, settings))
            }
            None => {}
        }
    }
    Ok(reading.finish(start, target, consumer))
}

/// A `StreamConsumer` read through `stream()` by one task on a current-thread tokio runtime
/// (librdkafka's own threads fetch and decode either way).
fn rdkafka_stream(settings: &Settings, target: &Target) -> Result<Measured, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        let start = Snapshot::now(target.broker_pid);
        // Made inside the runtime: it spawns a wake-up task on it.
        let consumer: StreamConsumer = subscribed(settings, target)?;
        let mut reading = Reading::default();
        let read = async {
            let mut stream = consumer.stream();
            while reading.tally.records < settings.records {
                match stream.next().await {
                    Some(Ok(message)) => reading.take(settings.touch, &message),
                    Some(Err(e)) => return Err(format!("stream: {e}")),
                    None => return Err("the stream ended".to_string()),
                }
            }
            Ok(())
        };
        // Bound to a name so the timeout (and its borrow of `reading`) is gone before the match.
        let outcome = tokio::time::timeout(settings.run_timeout, read).await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(stuck(reading.tally.records, settings)),
        }
        Ok(reading.finish(start, target, consumer))
    })
}

/// A client process, ended if the bench fails or ends before it does.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs one client in a process of its own: this binary again, with `--client`.
fn run_client(settings: &Settings, target: &Target) -> Result<Measured, String> {
    let name = target.client.name();
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mut command = Command::new(exe);
    command
        .args(settings.client_args())
        .args(["--client", name, "--bootstrap", &target.bootstrap])
        .args(["--topic", &target.topic, "--group", &target.group]);
    if let Some(pid) = target.broker_pid {
        command.args(["--broker-pid", &pid.to_string()]);
    }
    let mut child = ChildGuard(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{name}: client process: {e}"))?,
    );
    let stdout = child.0.stdout.take().ok_or("no client stdout")?;
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The child enforces the run timeout itself; this is for one that hangs anyway.
    let limit = settings.run_timeout + CLOSE_TIMEOUT * 2;
    let deadline = Instant::now() + limit;
    let measured = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => match Measured::from_line(&line) {
                Ok(Some(measured)) => break measured,
                Ok(None) => eprintln!("{name}: {line}"),
                Err(e) => return Err(format!("{name}: {e}")),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("{name}: no result after {limit:?}"))
            }
            // Its stdout closed without a result: it failed (and said why on stderr).
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.0.wait().map_err(|e| format!("{name}: {e}"))?;
                return Err(format!(
                    "{name}: client process ended ({status}) without a result"
                ));
            }
        }
    };
    let closing = Instant::now();
    loop {
        match child.0.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(measured),
            Ok(Some(status)) => return Err(format!("{name}: client process ended: {status}")),
            Ok(None) if closing.elapsed() > CLOSE_TIMEOUT => {
                return Err(format!(
                    "{name}: client did not close within {CLOSE_TIMEOUT:?} of its last record"
                ))
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
}

/// The 1, 5 and 15 minute load averages, so a result says how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The figures a run is judged by, in the order of the summary's columns.
#[derive(Clone, Copy)]
struct Figures {
    records_per_s: f64,
    mb_per_s: f64,
    after_first: f64,
    to_first: f64,
    cpu_per_million: f64,
    rss_peak_mib: f64,
    broker_per_million: f64,
}

impl Figures {
    fn of(run: &Measured, settings: &Settings) -> Figures {
        let n = settings.records as f64;
        let per_million = |seconds: f64| seconds / n * 1e6;
        Figures {
            records_per_s: n / run.wall,
            mb_per_s: n * settings.value_len as f64 / run.wall / 1e6,
            after_first: n / (run.wall - run.to_first),
            to_first: run.to_first,
            cpu_per_million: per_million(run.user + run.system),
            rss_peak_mib: run.rss_peak_kib as f64 / 1024.0,
            broker_per_million: per_million(run.broker_cpu),
        }
    }

    fn median(all: &[Figures]) -> Figures {
        let of = |f: fn(&Figures) -> f64| median(all.iter().map(f).collect());
        Figures {
            records_per_s: of(|f| f.records_per_s),
            mb_per_s: of(|f| f.mb_per_s),
            after_first: of(|f| f.after_first),
            to_first: of(|f| f.to_first),
            cpu_per_million: of(|f| f.cpu_per_million),
            rss_peak_mib: of(|f| f.rss_peak_mib),
            broker_per_million: of(|f| f.broker_per_million),
        }
    }

    fn row(&self) -> String {
        format!(
            "{:>10.0} {:>7.1} {:>13.0} {:>9.3} {:>10.3} {:>9.1} {:>13.3}",
            self.records_per_s,
            self.mb_per_s,
            self.after_first,
            self.to_first,
            self.cpu_per_million,
            self.rss_peak_mib,
            self.broker_per_million
        )
    }
}

const HEADER: &str = " records/s    MB/s after 1st r/s 1st rec s CPU s/10^6  RSS MiB broker s/10^6";

/// Every round: each client in a process of its own, in turn (the order reversing every other
/// round), each checked against `expected`; then the medians and, last, the ratios
/// konsumer / each rdkafka client.
pub fn run_rounds(
    settings: &Settings,
    bootstrap: &str,
    topic: &str,
    broker_pid: Option<u32>,
    expected: &Expected,
) -> Result<(), String> {
    // Group ids unique to this bench run, so no run meets another's commits.
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    println!("{}", settings.describe_clients());
    println!("load average at the start: {}", load_average());
    println!(
        "{:>3}  {:<14} {HEADER} {:>7} {:>7}",
        "run", "client", "user s", "sys s"
    );
    let mut runs: Vec<(Client, Measured)> = Vec::new();
    for round in 1..=settings.rounds {
        let mut order = settings.clients.clone();
        if round % 2 == 0 {
            order.reverse();
        }
        for client in order {
            std::thread::sleep(PAUSE);
            let target = Target {
                client,
                bootstrap: bootstrap.to_owned(),
                topic: topic.to_owned(),
                group: format!("bench-{topic}-{}-{round}-{nonce}", client.name()),
                broker_pid,
            };
            let run = run_client(settings, &target)?;
            run.tally
                .check(settings, expected)
                .map_err(|e| format!("{}: {e}", client.name()))?;
            println!(
                "{round:>3}  {:<14} {} {:>7.3} {:>7.3}",
                client.name(),
                Figures::of(&run, settings).row(),
                run.user,
                run.system
            );
            runs.push((client, run));
        }
    }
    if settings.touch {
        println!("records checked: every client saw each record once, in offset order");
    }
    println!(
        "load average at the end: {} (other work on the machine makes records/s noisy)",
        load_average()
    );
    let rss_start = median(
        runs.iter()
            .map(|(_, r)| r.rss_start_kib as f64 / 1024.0)
            .collect(),
    );
    println!(
        "a client process's RSS before its client is created (the bench binary alone): {rss_start:.1} MiB"
    );
    println!();
    println!(
        "median of {} runs (records/s, MB/s of values: from creating the client to the N-th \
         record; after 1st: from the first record; CPU: the client process's user + system; \
         RSS: its peak):",
        settings.rounds
    );
    println!("     {:<30} {HEADER}", "client");
    let summary = |client: Client| {
        let mine: Vec<Figures> = runs
            .iter()
            .filter(|(c, _)| *c == client)
            .map(|(_, r)| Figures::of(r, settings))
            .collect();
        Figures::median(&mine)
    };
    for &client in &settings.clients {
        let label = format!("{} ({})", client.name(), client.api());
        println!("     {label:<30} {}", summary(client).row());
    }
    if settings.clients.contains(&Client::Konsumer) {
        let ours = summary(Client::Konsumer);
        let others = settings.clients.iter().filter(|&&c| c != Client::Konsumer);
        let lines: Vec<String> = others
            .map(|&client| {
                let theirs = summary(client);
                format!(
                    "konsumer / {} ({}): records/s {:.2}x, MB/s {:.2}x, after the first record \
                     {:.2}x (higher is better); CPU per record {:.2}x, peak RSS {:.2}x (lower \
                     is better)",
                    client.name(),
                    client.api(),
                    ours.records_per_s / theirs.records_per_s,
                    ours.mb_per_s / theirs.mb_per_s,
                    ours.after_first / theirs.after_first,
                    ours.cpu_per_million / theirs.cpu_per_million,
                    ours.rss_peak_mib / theirs.rss_peak_mib
                )
            })
            .collect();
        if !lines.is_empty() {
            println!();
            for line in lines {
                println!("{line}");
            }
        }
    }
    Ok(())
}
