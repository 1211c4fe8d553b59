//! A slog drain that keeps every record as a line of text, so tests can assert on what the log
//! shows (a restart, a refresh), and echoes it to stderr for when a test fails.

use std::fmt;
use std::sync::{Arc, Mutex};

use slog::{Drain, Key, OwnedKVList, Record, Serializer, KV};

/// Captured log lines: `LEVEL message key=value ...`.
#[derive(Clone, Default)]
pub struct CapturedLog {
    lines: Arc<Mutex<Vec<String>>>,
}

impl CapturedLog {
    /// A logger writing into a fresh capture.
    pub fn new() -> (slog::Logger, CapturedLog) {
        let captured = CapturedLog::default();
        let logger = slog::Logger::root(captured.clone().fuse(), slog::o!());
        (logger, captured)
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether any line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }
}

struct Line(String);

impl Serializer for Line {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments) -> slog::Result {
        use fmt::Write;
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for CapturedLog {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut line = Line(format!(
            "{} {}",
            record.level().as_short_str(),
            record.msg()
        ));
        let _ = record.kv().serialize(record, &mut line);
        let _ = values.serialize(record, &mut line);
        eprintln!("{}", line.0);
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.0);
        Ok(())
    }
}
