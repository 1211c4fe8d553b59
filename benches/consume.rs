//! Consumer throughput against a real broker: konsumer's `ConsumerService` side by side with
//! librdkafka's `BaseConsumer` and `StreamConsumer` (the `rdkafka` crate 0.39, librdkafka
//! 2.12), reading the same records from the same tansu broker, in one run.
//!
//! Once per run of the bench, N records (default 10^6) with JSON-like values of `--value-len`
//! bytes (default 100; varied as in benches/records.rs, extended with varied `"fNN":N` fields
//! as the replay broker's are) and keys `key-{i % 10000}` are produced by konsumer's `Producer`
//! (`Enqueue`, acks=all, no compression unless `--compression` says otherwise) to one topic of
//! 6 partitions. Then, for each round, each client reads all of them from the beginning as the
//! only member of a fresh group, in a process of its own (this binary again, `--client NAME`;
//! benches/common/mod.rs has the three clients' loops and what is measured). The clients take
//! turns, and the order alternates from round to round.
//!
//! Measured per run by the client's process, from creating the client (so the group join is
//! included) until the N-th record has been handled: records/s, MB/s of values, its CPU
//! seconds per 10^6 records (user + system, every thread, `getrusage(RUSAGE_SELF)`), its peak
//! RSS, the time to the first record, and the broker's CPU (`/proc/<pid>/stat`). Each client's
//! median over the rounds is printed, then, last, the ratios konsumer / each rdkafka client.
//! Results: BENCHMARKS.md.
//!
//! tansu 0.6.0 holds every Fetch, even one it has data for, for about half of `fetch max wait`
//! when that is 250 ms or more (else all of it), and answers at most 5 MiB; so with the clients'
//! default 500 ms wait, records/s is set by the broker's sleeps, not by the clients: compare
//! them by CPU per record, or see benches/replay.rs for their ceiling.
//! `--fetch-max-wait-ms 10` lets the clients' own speed show more.
//!
//! Run with `bash scripts/bench-consume.sh` (or `cargo bench --bench consume -- [options]`):
//!
//! ```text
//! --records N              records produced and read per run (default 1000000, or
//!                          $KONSUMER_BENCH_RECORDS)
//! --rounds N               runs of each client (default 3)
//! --clients L              comma-separated, in the first round's order
//!                          (default konsumer,rdkafka,rdkafka-stream)
//! --value-len N            bytes per value (default 100)
//! --compression C          the producer's codec: none (default), gzip, snappy, lz4, zstd
//! --handler H              touch (default: as above) or count (records counted, values unread)
//! --max-batch N            konsumer: ConsumerConfig::max_batch_records (default 1000)
//! --max-in-flight N        konsumer: ConsumerConfig::max_in_flight (default 1)
//! --buffer-records N       konsumer: ConsumerConfig::buffer_max_records (default 20000)
//! --decode-threads N       konsumer: ConsumerConfig::decode_threads (default 2)
//! --no-check-crcs          konsumer: ConsumerConfig::check_crcs off (librdkafka's default)
//! --partition-max-bytes N  all: max.partition.fetch.bytes (default 1048576)
//! --fetch-max-wait-ms N    all: fetch.wait.max.ms (default 500)
//! --fetch-max-bytes N      all: fetch.max.bytes (default 52428800)
//! --rdkafka-set K=V        rdkafka clients: any other librdkafka property (repeatable)
//! --run-timeout-s N        a run taking longer fails the bench (default 600)
//! ```
//!
//! Every record is checked: each client must see exactly the records produced to each partition,
//! in offset order, with every value byte. Exits non-zero if any check fails or a run is stuck.

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Expected, Settings, PARTITIONS};
use konsumer::producer::{ProducerConfig, RecordMetadata};
use konsumer::ClientConfig;
use konsumer_actors::testkit::replay::pad_json_like;
use konsumer_actors::testkit::tansu::{Storage, TansuBroker, TANSU_VERSION};
use konsumer_actors::{DeliveryReport, Enqueue, Producer, ProducerExt, ProducerRecord, ReportTo};

const TOPIC: &str = "bench-consume";
const KEYS: u64 = 10_000;
/// Value bytes the producer may have outstanding (below its 64 MiB `max_buffered_bytes`).
const PRODUCE_WINDOW_BYTES: u64 = 20_000_000;
/// A run that takes longer than this is stuck: the bench fails instead of hanging.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Record `i`'s JSON-like value, varied the way real events vary (as in benches/records.rs),
/// so compressed runs see a realistic ratio; extended with varied fields (or cut) to `len`
/// bytes as the replay broker's values are.
fn value(i: u64, len: usize) -> Bytes {
    let mut v = format!(
        r#"{{"id":{i},"user":"u{:05}","amount":{}.{:02},"currency":"EUR","ts":{}"#,
        (i * 7919) % 100_000,
        (i * 31) % 10_000,
        i % 100,
        1_700_000_000_000u64 + i * 13,
    )
    .into_bytes();
    pad_json_like(&mut v, len, i);
    Bytes::from(v)
}

/// Produces the records once, windowed like benches/produce.rs; returns where they went.
async fn produce(bootstrap: &str, settings: &Settings) -> Result<Expected, String> {
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let config = ProducerConfig {
        compression: settings.compression,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(ClientConfig::new([bootstrap.to_owned()]), config, log)
        .await
        .map_err(|e| format!("producer: {e}"))?;
    let keys: Vec<Bytes> = (0..KEYS).map(|k| Bytes::from(format!("key-{k}"))).collect();
    let window = (PRODUCE_WINDOW_BYTES / settings.value_len as u64).clamp(1, 200_000);
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
        if outstanding >= window {
            take(next_report(&mut outcomes).await?);
            outstanding -= 1;
            while let Ok(report) = outcomes.try_recv() {
                take(report);
                outstanding -= 1;
            }
        }
        let value = value(i, settings.value_len);
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
    Ok(Expected {
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

fn main() -> ExitCode {
    let mode = Settings::defaults(RUN_TIMEOUT, true).and_then(|s| s.parse(|_, _| Ok(false)));
    common::main("consume", mode, bench)
}

fn bench(settings: Settings) -> Result<(), String> {
    let broker = TansuBroker::start(Storage::Memory);
    broker.create_topic(TOPIC, PARTITIONS as i32);
    let n = settings.records;
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!(
        "consumer benchmark: {n} records of {} bytes, keys key-0..key-{}, {PARTITIONS} \
         partitions, compression {}; tansu {TANSU_VERSION} (memory, pid {}) at {}; {cores} cores",
        settings.value_len,
        KEYS - 1,
        settings.compression.name(),
        broker.pid().map_or("?".to_string(), |p| p.to_string()),
        broker.bootstrap()
    );
    let produce_started = Instant::now();
    let expected = actix::System::new().block_on(produce(&broker.bootstrap(), &settings))?;
    println!(
        "produced in {:.1} s by konsumer's Producer; records per partition {:?}",
        produce_started.elapsed().as_secs_f64(),
        expected.per_partition
    );
    common::run_rounds(
        &settings,
        &broker.bootstrap(),
        TOPIC,
        broker.pid(),
        &expected,
    )?;
    drop(broker);
    Ok(())
}
