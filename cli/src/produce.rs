//! `konsumer produce`: every line of standard input becomes one record.
//!
//! A line is `key<TAB>value` (split at the first tab; the value may hold more tabs), or a value
//! alone with no key when it has no tab. The line ending (`\n` or `\r\n`) is not part of the
//! record; an empty line is a record with an empty value. Bytes are taken as they are (no UTF-8
//! check).
//!
//! The records go through the Producer's throughput path: fire-and-forget [`Enqueue`]s whose
//! outcomes come back as [`DeliveryReport`]s on a channel, a [`Flush`] when the input ends, and
//! the command exits 0 only once every record has been acknowledged. A thread reads standard
//! input and hands over chunks of lines; at most [`MAX_OUTSTANDING_BYTES`] of records wait for
//! their acknowledgement at any time, so a large input never overruns the producer's buffer.
//! The first failed record stops the reading; the records already handed over are still waited
//! for, then every failure is summarized per partition and the exit code is 1.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read};
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use konsumer_actors::core::compression::Compression;
use konsumer_actors::core::producer::ProducerConfig;
use konsumer_actors::{
    DeliveryReport, Enqueue, Flush, Producer, ProducerExt, ProducerRecord, ReportTo,
};
use slog::{debug, Logger};
use tokio::sync::mpsc;

use crate::error::CliError;
use crate::{parse_duration, ConnectArgs};

/// Bytes of records (keys and values) handed to the producer and not yet acknowledged, at most.
const MAX_OUTSTANDING_BYTES: usize = 16 * 1024 * 1024;
/// A chunk of lines handed from the reading thread holds at most this many lines...
const CHUNK_LINES: usize = 1024;
/// ... and this many bytes.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Failure lines shown in the error, at most (one per partition and cause).
const MAX_FAILURE_LINES: usize = 10;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Topic to produce to.
    #[arg(short, long)]
    pub topic: String,

    /// Partition for every record. Without it, a keyed record goes to the partition the Java
    /// client's murmur2 hash of its key picks; records without a key are spread over batches.
    #[arg(short, long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,

    /// Compression of the record batches.
    #[arg(long, value_enum, default_value_t = Codec::None)]
    pub compression: Codec,

    /// How long a record may take to be acknowledged, retries included.
    #[arg(long, default_value = "120s", value_parser = parse_duration, value_name = "DURATION")]
    pub delivery_timeout: Duration,
}

/// The `--compression` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<Codec> for Compression {
    fn from(codec: Codec) -> Compression {
        match codec {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// One input line as a record: (key, value).
type Line = (Option<Bytes>, Bytes);

/// Splits one line (with or without its line ending) into key and value.
fn parse_line(line: &[u8]) -> Line {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match line.iter().position(|&b| b == b'\t') {
        Some(tab) => (
            Some(Bytes::copy_from_slice(&line[..tab])),
            Bytes::copy_from_slice(&line[tab + 1..]),
        ),
        None => (None, Bytes::copy_from_slice(line)),
    }
}

/// Reads `input` line by line and sends the lines in chunks. A chunk is sent when it is full or
/// when the next read could block (nothing buffered), so interactive input is not held back.
/// Stops when `chunks` is closed (the command stopped taking input).
fn read_lines(input: impl Read, chunks: mpsc::Sender<io::Result<Vec<Line>>>) {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0;
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                chunk.push(parse_line(&buffer));
                chunk_bytes += read;
            }
            Err(error) => {
                let _ = chunks.blocking_send(Err(error));
                return;
            }
        }
        if chunk.len() >= CHUNK_LINES || chunk_bytes >= CHUNK_BYTES || reader.buffer().is_empty() {
            if chunks
                .blocking_send(Ok(std::mem::take(&mut chunk)))
                .is_err()
            {
                return;
            }
            chunk_bytes = 0;
        }
    }
    if !chunk.is_empty() {
        let _ = chunks.blocking_send(Ok(chunk));
    }
}

/// What has been handed over and what has come back.
#[derive(Default)]
struct Progress {
    sent: u64,
    acknowledged: u64,
    /// Size of each record not yet reported, by its opaque (its line number).
    outstanding: HashMap<u64, usize>,
    outstanding_bytes: usize,
    per_partition: BTreeMap<i32, u64>,
    failed: u64,
    /// Failed records per (partition, cause); partition `None`: none was chosen.
    failures: BTreeMap<(Option<i32>, String), u64>,
}

impl Progress {
    fn sent(&mut self, opaque: u64, size: usize) {
        self.sent += 1;
        self.outstanding.insert(opaque, size);
        self.outstanding_bytes += size;
    }

    fn report(&mut self, report: DeliveryReport) {
        if let Some(size) = self.outstanding.remove(&report.opaque) {
            self.outstanding_bytes -= size;
        }
        match report.result {
            Ok(metadata) => {
                self.acknowledged += 1;
                *self.per_partition.entry(metadata.partition).or_default() += 1;
            }
            Err(failure) => {
                self.failed += 1;
                let cause = (failure.partition, failure.error.to_string());
                *self.failures.entry(cause).or_default() += 1;
            }
        }
    }

    /// One line per (partition, cause), the most frequent first.
    fn failure_lines(&self, topic: &str) -> Vec<String> {
        let mut causes: Vec<_> = self.failures.iter().collect();
        causes.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let mut lines: Vec<String> = causes
            .iter()
            .take(MAX_FAILURE_LINES)
            .map(|((partition, cause), count)| {
                let place = match partition {
                    Some(p) => format!("topic {topic} partition {p}"),
                    None => format!("topic {topic} (no partition chosen)"),
                };
                format!("{place}: {count} record(s): {cause}")
            })
            .collect();
        if causes.len() > MAX_FAILURE_LINES {
            lines.push(format!(
                "... and {} more cause(s)",
                causes.len() - MAX_FAILURE_LINES
            ));
        }
        lines
    }
}

pub async fn run(args: ProduceArgs, log: Logger) -> Result<(), CliError> {
    let config = ProducerConfig {
        compression: args.compression.into(),
        request_timeout: args.connect.timeout,
        delivery_timeout: args.delivery_timeout,
        ..ProducerConfig::default()
    };
    config.validate().map_err(CliError::Producer)?;
    let client = (args.connect.client_config()).map_err(|e| args.connect.connect_error(e))?;
    let producer = Producer::connect(client, config, log.clone())
        .await
        .map_err(|e| args.connect.connect_error(e))?;

    let (chunks_tx, mut chunks) = mpsc::channel(4);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_lines(io::stdin(), chunks_tx))
        .map_err(CliError::Stdin)?;
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let report_to = ReportTo::Channel(reports_tx);

    let mut progress = Progress::default();
    let mut reading = true;
    let mut read_error = None;
    loop {
        if reading && (progress.failed > 0 || read_error.is_some()) {
            // Stop at the first failure; what was handed over is still waited for.
            reading = false;
            producer.do_send(Flush);
        }
        if !reading && progress.outstanding.is_empty() {
            break;
        }
        let take_more = reading && progress.outstanding_bytes < MAX_OUTSTANDING_BYTES;
        tokio::select! {
            chunk = chunks.recv(), if take_more => match chunk {
                Some(Ok(lines)) => {
                    for (key, value) in lines {
                        let opaque = progress.sent;
                        let size = key.as_ref().map_or(0, Bytes::len) + value.len();
                        let mut record = ProducerRecord::new(args.topic.as_str()).value(value);
                        record.key = key;
                        record.partition = args.partition;
                        progress.sent(opaque, size);
                        producer.do_send(Enqueue {
                            record,
                            opaque,
                            report_to: report_to.clone(),
                        });
                    }
                }
                Some(Err(error)) => read_error = Some(error),
                None => {
                    debug!(log, "end of input"; "records" => progress.sent);
                    reading = false;
                    producer.do_send(Flush);
                }
            },
            Some(report) = reports.recv() => progress.report(report),
            else => break,
        }
    }
    producer.close().await;

    if progress.failed > 0 {
        return Err(CliError::Delivery {
            failed: progress.failed,
            total: progress.sent,
            details: progress.failure_lines(&args.topic),
            topic: args.topic,
        });
    }
    if let Some(error) = read_error {
        return Err(CliError::Stdin(error));
    }
    let partitions: Vec<String> = progress
        .per_partition
        .iter()
        .map(|(partition, count)| format!("partition {partition}: {count}"))
        .collect();
    let placed = if partitions.is_empty() {
        String::new()
    } else {
        format!(" ({})", partitions.join(", "))
    };
    println!(
        "produced {} record(s) to topic {}{placed}",
        progress.acknowledged, args.topic
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: Option<&str>, value: &str) -> Line {
        (
            key.map(|k| Bytes::from(k.to_owned())),
            Bytes::from(value.to_owned()),
        )
    }

    #[test]
    fn a_tab_separates_key_and_value() {
        assert_eq!(parse_line(b"k1\tv1\n"), line(Some("k1"), "v1"));
        assert_eq!(
            parse_line(b"k1\tv\twith\ttabs\n"),
            line(Some("k1"), "v\twith\ttabs")
        );
        assert_eq!(parse_line(b"\tvalue\n"), line(Some(""), "value"));
        assert_eq!(parse_line(b"key\t\n"), line(Some("key"), ""));
    }

    #[test]
    fn a_line_without_a_tab_is_a_value_without_key() {
        assert_eq!(parse_line(b"just a value\n"), line(None, "just a value"));
        assert_eq!(parse_line(b"\n"), line(None, ""));
        assert_eq!(
            parse_line(b"no newline at the end"),
            line(None, "no newline at the end")
        );
    }

    #[test]
    fn line_endings_are_stripped_once() {
        assert_eq!(parse_line(b"k\tv\r\n"), line(Some("k"), "v"));
        assert_eq!(parse_line(b"v\r\n"), line(None, "v"));
        // Only the line ending: a carriage return inside the value stays.
        assert_eq!(parse_line(b"v\r\r\n"), line(None, "v\r"));
    }

    #[test]
    fn every_line_arrives_in_order_whatever_the_chunking() {
        let mut input = Vec::new();
        for i in 0..3000 {
            if i % 2 == 0 {
                input.extend_from_slice(format!("key-{i}\tvalue-{i}\r\n").as_bytes());
            } else {
                input.extend_from_slice(format!("value-{i}\n").as_bytes());
            }
        }
        input.extend_from_slice(b"last line without newline");
        let (tx, mut rx) = mpsc::channel(1);
        let reader = std::thread::spawn(move || read_lines(&input[..], tx));
        let mut lines = Vec::new();
        while let Some(chunk) = rx.blocking_recv() {
            let chunk = chunk.expect("reading a slice cannot fail");
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK_LINES);
            lines.extend(chunk);
        }
        reader.join().unwrap();
        assert_eq!(lines.len(), 3001);
        assert_eq!(lines[0], line(Some("key-0"), "value-0"));
        assert_eq!(lines[1], line(None, "value-1"));
        assert_eq!(lines[2998], line(Some("key-2998"), "value-2998"));
        assert_eq!(lines[3000], line(None, "last line without newline"));
    }

    #[test]
    fn failures_are_summarized_per_partition_and_cause() {
        let mut progress = Progress::default();
        let error = |partition| konsumer_actors::core::producer::ProduceError {
            topic: "orders".into(),
            partition,
            key: None,
            error: Box::new(konsumer_actors::Error::UnknownTopic {
                topic: "orders".into(),
            }),
        };
        for (opaque, partition) in [(0, Some(9)), (1, Some(9)), (2, None)] {
            progress.sent(opaque, 10);
            progress.report(DeliveryReport {
                opaque,
                result: Err(error(partition)),
            });
        }
        assert_eq!(progress.failed, 3);
        assert_eq!(progress.outstanding_bytes, 0);
        assert_eq!(
            progress.failure_lines("orders"),
            [
                "topic orders partition 9: 2 record(s): unknown topic orders",
                "topic orders (no partition chosen): 1 record(s): unknown topic orders",
            ]
        );
    }
}
