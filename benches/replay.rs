//! The clients' own ceiling: konsumer's `ConsumerService` and librdkafka's `BaseConsumer` and
//! `StreamConsumer` (the `rdkafka` crate 0.39) reading the same topic from the replay broker
//! (`konsumer_actors::testkit::replay`), which answers each fetch with a slice of batches
//! encoded once in memory — so, unlike tansu in benches/consume.rs, the broker is not what
//! limits records/s.
//!
//! The replay broker runs in a child process (this binary with `--serve`), and so does each
//! client run (this binary with `--client NAME`; benches/common/mod.rs has the three clients'
//! loops and what is measured), so every client's CPU time and peak RSS are its own. The
//! broker holds N records (default 10^6) with JSON-like values of `--value-len` bytes (default
//! 100; `testkit::replay::replay_value`) and keys `key-{offset % 10000}` in 6 partitions, 128
//! records per batch (about 16 KiB at 100 bytes, a Java producer's default `batch.size`),
//! uncompressed unless `--compression` says otherwise. Each client, in turn (the order
//! alternating by round), reads all of it as the only member of a fresh group, from creating
//! the client until the N-th record is handled (the group join included; the time to the first
//! record is shown apart). All do the same per record: count it, check its offset is above the
//! last of its partition, add up its value's length and bytes; every run is checked against
//! what the broker holds. Printed per run and as medians: records/s, MB/s of values, time to
//! the first record, client CPU seconds per 10^6 records, peak RSS, broker CPU seconds per
//! 10^6; then, last, the ratios konsumer / each rdkafka client.
//!
//! Run with `bash scripts/bench-replay.sh` (or `cargo bench --bench replay -- [options]`):
//!
//! ```text
//! --records N              records in the topic (default 1000000, or $KONSUMER_BENCH_RECORDS)
//! --rounds N               runs of each client (default 3)
//! --clients L              comma-separated, in the first round's order
//!                          (default konsumer,rdkafka,rdkafka-stream)
//! --compression C          none (default), gzip, snappy, lz4, zstd
//! --value-len N            bytes per value (default 100)
//! --batch-records N        records per encoded batch (default 128)
//! --handler H              touch (default: as above) or count (records counted, values unread)
//! --max-batch N            konsumer: ConsumerConfig::max_batch_records (default 1000)
//! --max-in-flight N        konsumer: ConsumerConfig::max_in_flight (default 1)
//! --buffer-records N       konsumer: ConsumerConfig::buffer_max_records (default 20000)
//! --decode-threads N       konsumer: ConsumerConfig::decode_threads (default 2)
//! --no-check-crcs          konsumer: ConsumerConfig::check_crcs off (librdkafka's default)
//! --partition-max-bytes N  all: max.partition.fetch.bytes (default 1048576)
//! --fetch-max-wait-ms N    all: fetch.wait.max.ms (default 500; the broker answers at once
//!                          while there is data, so this only matters at the end)
//! --fetch-max-bytes N      all: fetch.max.bytes (default 52428800)
//! --rdkafka-set K=V        rdkafka clients: any other librdkafka property (repeatable)
//! --run-timeout-s N        a run taking longer fails the bench (default 120)
//! ```

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use common::{number, Expected, Settings, PARTITIONS};
use konsumer_actors::testkit::{ReplayBroker, ReplayTopic};

const TOPIC: &str = "bench-replay";
/// A run that takes longer than this is stuck: the bench fails instead of hanging.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The broker process and what it serves.
struct Served {
    child: Child,
    bootstrap: String,
    expected: Expected,
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
fn start_broker(settings: &Settings, batch_records: usize) -> Result<Served, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mut child = Command::new(exe)
        .args(["--serve", "--records", &settings.records.to_string()])
        .args(["--value-len", &settings.value_len.to_string()])
        .args(["--batch-records", &batch_records.to_string()])
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
    let said = || format!("broker said {line:?}");
    // ready ADDRESS COUNT,COUNT,... BYTE_SUM ENCODED_BYTES
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [ready, bootstrap, counts, sum, encoded] = fields[..] else {
        let _ = child.kill();
        return Err(said());
    };
    let parse = |s: &str| s.parse::<u64>().map_err(|_| said());
    let per_partition: Vec<u64> = counts.split(',').map(parse).collect::<Result<_, _>>()?;
    let per_partition = match per_partition.try_into() {
        Ok(counts) if ready == "ready" => counts,
        _ => {
            let _ = child.kill();
            return Err(said());
        }
    };
    Ok(Served {
        child,
        bootstrap: bootstrap.to_owned(),
        expected: Expected {
            per_partition,
            byte_sum: parse(sum)?,
        },
        encoded_bytes: parse(encoded)?,
    })
}

/// The `--serve` process: encodes the topic, serves it, says `ready`, and ends when its stdin
/// closes (the bench ended).
fn serve(settings: &Settings, batch_records: usize) -> Result<(), String> {
    let topic = ReplayTopic::generate(
        TOPIC,
        PARTITIONS as i32,
        settings.records,
        settings.value_len,
        batch_records,
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

fn main() -> ExitCode {
    let (mut serving, mut batch_records) = (false, 128usize);
    // No sidechannel: the replay broker does not serve CreateTopics.
    let mode = Settings::defaults(RUN_TIMEOUT, false).and_then(|settings| {
        settings.parse(|arg, value| match arg {
            "--serve" => {
                serving = true;
                Ok(true)
            }
            "--batch-records" => {
                batch_records = number(arg, &value()?)? as usize;
                match batch_records {
                    0 => Err("--batch-records may not be zero".into()),
                    _ => Ok(true),
                }
            }
            _ => Ok(false),
        })
    });
    common::main("replay", mode, |settings| {
        if serving {
            serve(&settings, batch_records)
        } else {
            bench(settings, batch_records)
        }
    })
}

fn bench(settings: Settings, batch_records: usize) -> Result<(), String> {
    let encoding = Instant::now();
    let served = start_broker(&settings, batch_records)?;
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!(
        "replay benchmark: {} records of {} bytes, {PARTITIONS} partitions, {batch_records} \
         records per batch, compression {} ({:.1} MB encoded, in {:.1} s); replay broker (pid \
         {}) at {}; {cores} cores",
        settings.records,
        settings.value_len,
        settings.compression.name(),
        served.encoded_bytes as f64 / 1e6,
        encoding.elapsed().as_secs_f64(),
        served.child.id(),
        served.bootstrap
    );
    common::run_rounds(
        &settings,
        &served.bootstrap,
        TOPIC,
        Some(served.child.id()),
        &served.expected,
    )
}
