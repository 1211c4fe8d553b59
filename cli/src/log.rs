//! The logger: nothing at all by default, text lines on stderr with `-v` (info), `-vv` (debug)
//! or `-vvv` (trace). A small drain of its own, to keep the dependency tree to `slog` alone.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use slog::{Discard, Drain, Key, Level, Logger, OwnedKVList, Record, Serializer, KV};

/// The logger for `-v` given `verbosity` times.
pub fn logger(verbosity: u8) -> Logger {
    let level = match verbosity {
        0 => return Logger::root(Discard, slog::o!()),
        1 => Level::Info,
        2 => Level::Debug,
        _ => Level::Trace,
    };
    Logger::root(Stderr { level }, slog::o!())
}

/// Writes `LEVEL message key=value ...` lines to stderr, one `write` per line.
struct Stderr {
    level: Level,
}

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
        if !record.level().is_at_least(self.level) {
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
        // A closed stderr is no reason to fail the command.
        let _ = std::io::stderr().lock().write_all(line.0.as_bytes());
        Ok(())
    }
}
