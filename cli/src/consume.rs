//! `konsumer consume`: one member of a consumer group that prints every record it is given,
//! one line each: `topic/partition/offset<TAB>key<TAB>value` (key and value as UTF-8, invalid
//! bytes replaced; an empty field for a null key or value).
//!
//! **Commits follow the output.** The records reach a batch handler, the [`Printer`], on an
//! arbiter (thread) of its own, so a slow reader of standard output never delays heartbeats.
//! It writes a batch's lines, flushes standard output, and only then answers `Ok`: the
//! partition's tracker marks the records done and the service commits them (every
//! `--commit-interval`, on a rebalance and on shutdown). A process killed at any moment has
//! committed nothing it did not write out, so the next member of the group starts at the first
//! record not printed: records may be printed twice, never lost. During a rebalance the offsets
//! of printed records also go to the sidechannel topic (`--sidechannel-topic`, empty to turn it
//! off), so a partition's next owner starts after them even when the commit came too late.
//!
//! **`--count N`.** The printer writes at most N records. Records it receives beyond them are
//! deferred ([`KafkaBatch::defer`]) and their [`Ack`]s held, unanswered, until the process
//! exits: an unanswered ack keeps the committable offset below its record (dropping it would
//! count as a failure and cause a redelivery), so the group's next member prints exactly the
//! records this one did not. Once N are printed the command shuts down; partitions with held
//! records finish draining after [`DRAIN_TIMEOUT_COUNT`], the rest at once.
//!
//! **Stopping.** SIGINT or SIGTERM, the count reached, or a closed standard output (`| head`):
//! a graceful [`Shutdown`] (finish what is being printed, commit, leave the group), exit 0. A
//! second signal during the shutdown exits at once (exit 1; what was printed since the last
//! commit is printed again by the next member). A partition that stops (undecodable data, an
//! offset out of range with no reset) is an error: shutdown, exit 1. Errors the consumer
//! carries on after (a failed commit, a failed rebalance attempt) are warnings on stderr.

use std::io::{self, Write};
use std::time::Duration;

use actix::prelude::*;
use clap::{Args, ValueEnum};
use konsumer_actors::core::consumer::{ConsumerConfig, OffsetReset, DEFAULT_SIDECHANNEL_TOPIC};
use konsumer_actors::core::group::GroupConfig;
use konsumer_actors::core::records::Record;
use konsumer_actors::messages::GroupEvent;
use konsumer_actors::{
    Ack, ConsumerEvent, ConsumerEvents, ConsumerService, HandlerRef, HandlerResult, KafkaBatch,
    Shutdown,
};
use slog::{debug, info, Logger};
use tokio::sync::mpsc;

use crate::error::CliError;
use crate::{parse_duration, ConnectArgs};

/// How long a partition that is taken away may take to finish the batch being printed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The same with `--count`: partitions holding records past the count never finish, so they
/// are given up after this (their offsets stay below the unprinted records).
const DRAIN_TIMEOUT_COUNT: Duration = Duration::from_secs(1);
/// Buffer of standard output; flushed after each batch.
const OUTPUT_BUFFER: usize = 64 * 1024;

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// The consumer group to join.
    #[arg(short, long)]
    pub group: String,

    /// Topic to consume; repeat the flag for more topics.
    #[arg(short, long = "topic", value_name = "TOPIC", required = true)]
    pub topics: Vec<String>,

    /// Partitions without a committed offset start at their oldest record (default: at the end
    /// of the log, so only records produced from now on are printed).
    #[arg(long)]
    pub from_beginning: bool,

    /// Exit after printing this many records. Records fetched beyond them are not committed.
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// How often the offsets of printed records are committed (also on rebalance and exit).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub commit_interval: Duration,

    /// Without a heartbeat for this long, the group gives this member's partitions to others.
    #[arg(long, default_value = "45s", value_parser = parse_duration, value_name = "DURATION")]
    pub session_timeout: Duration,

    /// How the group's partitions are divided among its members.
    #[arg(long, value_enum, default_value_t = Assignor::Roundrobin)]
    pub assignor: Assignor,

    /// Compacted topic through which members hand over the offsets they really finished when
    /// a rebalance moves partitions, so the next owner need not re-read since the last commit
    /// (created if missing). An empty name (`--sidechannel-topic ""`) disables it.
    #[arg(long, default_value = DEFAULT_SIDECHANNEL_TOPIC, value_name = "NAME")]
    pub sidechannel_topic: String,

    /// How long a member waits, at most, for the sidechannel before it starts a newly assigned
    /// partition from the committed offset alone [default: 300ms, the consumer's default].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub sidechannel_wait: Option<Duration>,
}

/// The `--assignor` values: konsumer's built-in assignors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Assignor {
    Range,
    Roundrobin,
    Sticky,
    CooperativeSticky,
}

impl Assignor {
    fn protocol_name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::Roundrobin => "roundrobin",
            Assignor::Sticky => "sticky",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }
}

impl ConsumeArgs {
    fn group_config(&self) -> Result<GroupConfig, konsumer_actors::Error> {
        let mut group = GroupConfig::new(self.group.clone(), self.topics.iter().cloned())
            .with_assignors(&[self.assignor.protocol_name()])?;
        group.session_timeout = self.session_timeout;
        group.heartbeat_interval = group.heartbeat_interval.min(self.session_timeout / 3);
        Ok(group)
    }

    fn consumer_config(&self) -> ConsumerConfig {
        let defaults = ConsumerConfig::default();
        ConsumerConfig {
            offset_reset: if self.from_beginning {
                OffsetReset::Earliest
            } else {
                OffsetReset::Latest
            },
            commit_interval: self.commit_interval,
            drain_timeout: Some(if self.count.is_some() {
                DRAIN_TIMEOUT_COUNT
            } else {
                DRAIN_TIMEOUT
            }),
            sidechannel_topic: self.sidechannel_topic.clone(),
            sidechannel_wait: self.sidechannel_wait.unwrap_or(defaults.sidechannel_wait),
            ..defaults
        }
    }
}

/// Why the printer stopped printing.
#[derive(Debug)]
enum Stopped {
    /// `--count` records are out.
    CountReached,
    /// Writing to standard output failed.
    Output(io::Error),
}

/// The batch handler: writes each batch's lines, flushes, then answers `Ok` (see the module
/// doc). Once it has stopped printing (count reached, output failed) it defers every record it
/// receives and holds the acks, so none of them is committed or redelivered to this process.
struct Printer {
    out: Box<dyn Write + Send>,
    /// Records still to print under `--count`.
    remaining: Option<u64>,
    stopped: bool,
    /// Acks of records received and not printed: held until the process exits.
    held: Vec<Ack>,
    notify: mpsc::UnboundedSender<Stopped>,
    line: Vec<u8>,
}

impl Printer {
    fn new(
        out: Box<dyn Write + Send>,
        count: Option<u64>,
        notify: mpsc::UnboundedSender<Stopped>,
    ) -> Self {
        Printer {
            out,
            remaining: count,
            stopped: false,
            held: Vec::new(),
            notify,
            line: Vec::new(),
        }
    }

    /// Writes `records` and flushes.
    fn print(&mut self, topic: &str, partition: i32, records: &[Record]) -> io::Result<()> {
        for record in records {
            self.line.clear();
            format_line(
                &mut self.line,
                topic,
                partition,
                record.offset,
                record.key(),
                record.value(),
            );
            self.out.write_all(&self.line)?;
        }
        self.out.flush()
    }
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for Printer {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        if self.stopped {
            self.held.push(batch.defer());
            return Ok(());
        }
        let take = match self.remaining {
            Some(remaining) => batch
                .records
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX)),
            None => batch.records.len(),
        };
        if let Err(error) = self.print(&batch.topic, batch.partition, &batch.records[..take]) {
            // Some lines may be out, but none is committed: the next member prints them again.
            self.stopped = true;
            self.held.push(batch.defer());
            let _ = self.notify.send(Stopped::Output(error));
            return Ok(());
        }
        if take < batch.records.len() {
            self.held
                .extend(batch.messages().skip(take).map(|message| message.defer()));
        }
        if let Some(remaining) = &mut self.remaining {
            *remaining -= take as u64;
            if *remaining == 0 {
                self.stopped = true;
                let _ = self.notify.send(Stopped::CountReached);
            }
        }
        // Done: the printed records (the deferred ones wait for their acks).
        Ok(())
    }
}

/// `topic/partition/offset<TAB>key<TAB>value<LF>`, key and value as lossy UTF-8, empty if null.
fn format_line(
    line: &mut Vec<u8>,
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let _ = write!(line, "{topic}/{partition}/{offset}\t");
    if let Some(key) = key {
        line.extend_from_slice(String::from_utf8_lossy(key).as_bytes());
    }
    line.push(b'\t');
    if let Some(value) = value {
        line.extend_from_slice(String::from_utf8_lossy(value).as_bytes());
    }
    line.push(b'\n');
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere), installed before anything starts so that a signal
/// never kills the process the hard way.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(args: ConsumeArgs, log: Logger) -> Result<(), CliError> {
    let mut signals = Signals::install().map_err(CliError::Signals)?;
    let group = args.group_config().map_err(CliError::Consumer)?;
    let consumer = args.consumer_config();
    group.validate().map_err(CliError::Consumer)?;
    consumer.validate().map_err(CliError::Consumer)?;
    let drain_timeout = consumer.drain_timeout.unwrap_or(DRAIN_TIMEOUT);

    let (stopped_tx, mut stopped) = mpsc::unbounded_channel();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let count = args.count;
    let printer_arbiter = Arbiter::new();
    let printer = Printer::start_in_arbiter(&printer_arbiter.handle(), move |_| {
        let out = io::BufWriter::with_capacity(OUTPUT_BUFFER, io::stdout());
        Printer::new(Box::new(out), count, stopped_tx)
    });

    let start = async {
        let cluster = args.connect.cluster(&log).await?;
        let client = (args.connect.client_config()).map_err(|e| args.connect.connect_error(e))?;
        ConsumerService::builder(client, group)
            .cluster(cluster)
            .consumer_config(consumer)
            .handler(HandlerRef::batches(&printer))
            .events(ConsumerEvents::Channel(events_tx))
            .logger(log.clone())
            .start()
            .await
            .map_err(CliError::Consumer)
    };
    let service = tokio::select! {
        started = start => started?,
        () = signals.recv() => {
            info!(log, "interrupted while starting");
            return Ok(());
        }
    };
    info!(log, "consuming"; "group" => &args.group, "topics" => ?args.topics);

    // Consume until told to stop; `outcome` is what the command answers after the shutdown.
    let outcome = loop {
        tokio::select! {
            () = signals.recv() => {
                info!(log, "signal received; shutting down");
                break Ok(());
            }
            Some(why) = stopped.recv() => match why {
                Stopped::CountReached => {
                    info!(log, "count reached; shutting down");
                    break Ok(());
                }
                Stopped::Output(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                    info!(log, "standard output closed; shutting down");
                    break Ok(());
                }
                Stopped::Output(error) => break Err(CliError::Stdout(error)),
            },
            Some(event) = events.recv() => {
                if let Some(error) = on_event(event, &log) {
                    break Err(error);
                }
            }
        }
    };

    // Finish what is being printed, commit, leave the group. Bounded: a broker that stopped
    // answering must not keep the command alive forever.
    let limit = drain_timeout + 2 * args.connect.timeout;
    let shutdown = tokio::time::timeout(limit, service.send(Shutdown));
    let result = tokio::select! {
        done = shutdown => match done {
            Ok(_) => outcome,
            Err(_) => Err(CliError::ShutdownTimeout(limit)),
        },
        () = signals.recv() => Err(CliError::Interrupted),
    };
    // Only now may the held acks go (to trackers that are gone).
    printer_arbiter.stop();
    result
}

/// Handles one event of the consumer; an error that ends the command is returned.
fn on_event(event: ConsumerEvent, log: &Logger) -> Option<CliError> {
    match event {
        ConsumerEvent::PartitionStopped {
            topic,
            partition,
            error,
        } => {
            return Some(CliError::PartitionStopped {
                topic,
                partition,
                source: error,
            })
        }
        ConsumerEvent::Error(error)
        | ConsumerEvent::Group(GroupEvent::Error { error })
        | ConsumerEvent::Group(GroupEvent::RebalanceError { error, .. }) => {
            eprintln!("warning: {error}");
        }
        ConsumerEvent::PartitionStart {
            topic,
            partition,
            offset,
        } => debug!(log, "partition assigned"; "topic" => topic, "partition" => partition,
            "offset" => offset),
        ConsumerEvent::Committed { offsets } => {
            debug!(log, "committed"; "offsets" => ?offsets);
        }
        ConsumerEvent::Restarted { reason } => eprintln!("warning: consumer restarted: {reason}"),
        ConsumerEvent::Group(event) => debug!(log, "group event"; "event" => ?event),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use clap::Parser;
    use konsumer_actors::core::compression::Compression;
    use konsumer_actors::core::records::{decode_all, BatchBuilder, DecodeOptions, NO_HEADERS};
    use std::sync::{Arc, Mutex};

    fn line(key: Option<&[u8]>, value: Option<&[u8]>) -> String {
        let mut out = Vec::new();
        format_line(&mut out, "orders", 3, 42, key, value);
        String::from_utf8(out).expect("lossy output is UTF-8")
    }

    #[test]
    fn a_line_is_topic_partition_offset_key_and_value() {
        assert_eq!(
            line(Some(b"k1"), Some(b"v1")),
            "orders/3/42\tk1\tv1\n".to_owned()
        );
        assert_eq!(line(None, Some(b"v")), "orders/3/42\t\tv\n");
        assert_eq!(line(Some(b"k"), None), "orders/3/42\tk\t\n");
        assert_eq!(line(None, None), "orders/3/42\t\t\n");
        assert_eq!(
            line(Some(b"bad \xff key"), Some("héllo".as_bytes())),
            "orders/3/42\tbad \u{fffd} key\théllo\n"
        );
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Failing;

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn batch(first: i64, count: usize) -> KafkaBatch {
        let mut builder = BatchBuilder::new(Compression::None, None).base_offset(first);
        for i in 0..count {
            let value = format!("v{}", first + i as i64);
            builder.append(0, None, Some(value.as_bytes()), NO_HEADERS);
        }
        let bytes: Bytes = builder.build().expect("a batch");
        let records = decode_all(bytes, &DecodeOptions::default()).expect("decodes");
        KafkaBatch::detached("t", 0, records)
    }

    #[actix::test]
    async fn the_count_splits_a_batch_and_later_records_are_held() {
        let out = Shared::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let printer = Printer::new(Box::new(out.clone()), Some(5), tx).start();
        assert_eq!(printer.send(batch(0, 3)).await.unwrap(), Ok(()));
        assert!(rx.try_recv().is_err(), "not yet");
        assert_eq!(printer.send(batch(3, 4)).await.unwrap(), Ok(()));
        assert!(matches!(rx.recv().await, Some(Stopped::CountReached)));
        assert_eq!(printer.send(batch(7, 2)).await.unwrap(), Ok(()));
        let printed = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..5).map(|o| format!("t/0/{o}\t\tv{o}\n")).collect();
        assert_eq!(printed, expected);
        assert!(rx.try_recv().is_err(), "reported once");
    }

    #[actix::test]
    async fn without_a_count_everything_is_printed() {
        let out = Shared::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let printer = Printer::new(Box::new(out.clone()), None, tx).start();
        for first in [0, 1000, 2000] {
            assert_eq!(printer.send(batch(first, 1000)).await.unwrap(), Ok(()));
        }
        let printed = out.0.lock().unwrap().clone();
        assert_eq!(printed.iter().filter(|b| **b == b'\n').count(), 3000);
        assert!(rx.try_recv().is_err());
    }

    #[actix::test]
    async fn a_failed_write_stops_printing_and_is_reported() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let printer = Printer::new(Box::new(Failing), None, tx).start();
        assert_eq!(printer.send(batch(0, 2)).await.unwrap(), Ok(()));
        match rx.recv().await {
            Some(Stopped::Output(error)) => assert_eq!(error.kind(), io::ErrorKind::BrokenPipe),
            other => panic!("{other:?}"),
        }
    }

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    #[test]
    fn flags_become_group_and_consumer_settings() {
        let parsed = Wrapper::try_parse_from([
            "consume",
            "-b",
            "h:1",
            "-g",
            "g1",
            "-t",
            "a",
            "--topic",
            "b",
            "--from-beginning",
            "-n",
            "20",
            "--session-timeout",
            "6s",
        ])
        .unwrap()
        .args;
        assert_eq!(parsed.topics, ["a", "b"]);
        assert_eq!(parsed.count, Some(20));
        let group = parsed.group_config().unwrap();
        assert_eq!(group.group_id, "g1");
        assert_eq!(group.heartbeat_interval, Duration::from_secs(2));
        group.validate().unwrap();
        let consumer = parsed.consumer_config();
        assert_eq!(consumer.offset_reset, OffsetReset::Earliest);
        assert_eq!(consumer.drain_timeout, Some(DRAIN_TIMEOUT_COUNT));

        let latest = Wrapper::try_parse_from(["consume", "-b", "h:1", "-g", "g", "-t", "a"])
            .unwrap()
            .args;
        let defaults = latest.consumer_config();
        assert_eq!(defaults.offset_reset, OffsetReset::Latest);
        assert_eq!(defaults.commit_interval, Duration::from_secs(1));
        assert_eq!(defaults.sidechannel_topic, DEFAULT_SIDECHANNEL_TOPIC);
        assert!(defaults.sidechannel_enabled());
        // The help text of --sidechannel-wait names this default.
        assert_eq!(defaults.sidechannel_wait, Duration::from_millis(300));
        assert!(Wrapper::try_parse_from(["consume", "-b", "h:1", "-g", "g"]).is_err());

        let handover = |extra: &[&str]| {
            let mut argv = vec!["consume", "-b", "h:1", "-g", "g", "-t", "a"];
            argv.extend_from_slice(extra);
            Wrapper::try_parse_from(argv).map(|w| w.args.consumer_config())
        };
        let set = handover(&[
            "--commit-interval",
            "500ms",
            "--sidechannel-topic",
            "offsets.handover",
            "--sidechannel-wait",
            "1.5s",
        ])
        .unwrap();
        assert_eq!(set.commit_interval, Duration::from_millis(500));
        assert_eq!(set.sidechannel_topic, "offsets.handover");
        assert_eq!(set.sidechannel_wait, Duration::from_millis(1500));
        set.validate().unwrap();
        let off = handover(&["--sidechannel-topic", ""]).unwrap();
        assert!(!off.sidechannel_enabled(), "an empty name disables it");
        off.validate().unwrap();
        // A name Kafka refuses is caught before anything connects.
        assert!(handover(&["--sidechannel-topic", "no spaces"])
            .unwrap()
            .validate()
            .is_err());
        assert!(handover(&["--sidechannel-wait", "soon"]).is_err());
        assert!(
            Wrapper::try_parse_from(["consume", "-b", "h:1", "-g", "g", "-t", "a", "-n", "0"])
                .is_err()
        );
    }
}
