//! What the consumer examples share: where to connect (arguments or environment), a logger
//! that prints to stderr, and printing the service's events. Not an example itself (Cargo only
//! takes `examples/*.rs` and `examples/*/main.rs`).

use std::fmt::{self, Write as _};
use std::io::Write as _;

use konsumer_actors::ConsumerEvent;
use slog::{Drain, Key, Level, OwnedKVList, Record, Serializer, KV};

/// Where an example connects and what it consumes.
pub struct Settings {
    /// Bootstrap brokers (`host:port`).
    pub brokers: Vec<String>,
    pub group: String,
    pub topic: String,
    /// Flags given on the command line (`--batches`, ...), from those the example accepts.
    #[allow(dead_code)] // not every example takes flags
    flags: Vec<String>,
}

impl Settings {
    /// `--brokers a:1,b:2 --group NAME --topic NAME` and the flags in `accepted`; each setting
    /// falls back to `KONSUMER_BROKERS`, `KONSUMER_GROUP`, `KONSUMER_TOPIC`, then to
    /// `127.0.0.1:9092`, `default_group` and `konsumer-example`. Exits with a usage line on a
    /// bad argument.
    pub fn from_args(default_group: &str, accepted: &[&str]) -> Settings {
        let env = |name: &str, default: &str| std::env::var(name).unwrap_or(default.to_owned());
        let mut brokers = env("KONSUMER_BROKERS", "127.0.0.1:9092");
        let mut group = env("KONSUMER_GROUP", default_group);
        let mut topic = env("KONSUMER_TOPIC", "konsumer-example");
        let mut flags = Vec::new();
        let usage = || -> ! {
            let name = std::env::args().next().unwrap_or_default();
            let extra: String = accepted.iter().map(|f| format!(" [{f}]")).collect();
            eprintln!(
                "usage: {name} [--brokers HOST:PORT,...] [--group NAME] [--topic NAME]{extra}"
            );
            std::process::exit(2);
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let slot = match arg.as_str() {
                "--brokers" => &mut brokers,
                "--group" => &mut group,
                "--topic" => &mut topic,
                flag if accepted.contains(&flag) => {
                    flags.push(arg);
                    continue;
                }
                _ => usage(),
            };
            *slot = args.next().unwrap_or_else(|| usage());
        }
        Settings {
            brokers: brokers.split(',').map(str::to_owned).collect(),
            group,
            topic,
            flags,
        }
    }

    /// Whether `flag` was given.
    #[allow(dead_code)] // not every example takes flags
    pub fn flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// A logger writing `LEVEL message key=value ...` lines at info level and above to stderr.
pub fn stderr_logger() -> slog::Logger {
    slog::Logger::root(Stderr, slog::o!())
}

struct Stderr;

struct Line(String);

impl Serializer for Line {
    fn emit_arguments(&mut self, key: Key, value: &fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

impl Drain for Stderr {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        if !record.level().is_at_least(Level::Info) {
            return Ok(());
        }
        let mut line = Line(format!(
            "{} {}",
            record.level().as_short_str(),
            record.msg()
        ));
        let _ = record.kv().serialize(record, &mut line);
        let _ = values.serialize(record, &mut line);
        line.0.push('\n');
        let _ = std::io::stderr().lock().write_all(line.0.as_bytes());
        Ok(())
    }
}

/// Prints the service's events that tell what the member does: partitions started and
/// stopped, commits, errors. (Group events are in the log already.)
pub fn print_event(event: &ConsumerEvent) {
    match event {
        ConsumerEvent::PartitionStart {
            topic,
            partition,
            offset,
        } => eprintln!("event: consuming {topic}/{partition} from offset {offset}"),
        ConsumerEvent::PartitionStopped {
            topic,
            partition,
            error,
        } => eprintln!("event: {topic}/{partition} stopped: {error}"),
        ConsumerEvent::Committed { offsets } => {
            let list: Vec<String> = offsets
                .iter()
                .map(|((topic, partition), offset)| format!("{topic}/{partition}={offset}"))
                .collect();
            eprintln!("event: committed {}", list.join(" "));
        }
        ConsumerEvent::Error(error) => eprintln!("event: error: {error}"),
        // Group events (joins, assignments, revocations) are in the log already.
        _ => {}
    }
}
