//! Shared by benches/latency.rs and benches/scale.rs: each client under test runs in a child
//! process (the bench binary started again with `--child ...`), so its memory and CPU are its
//! own and one client's threads never share an address space with the other's or the broker's.
//!
//! The child talks to the parent in lines on its standard output: a line starting with `@@ `
//! is a message (`@@ TAG key=value ...`), anything else is passed through to the parent's
//! stderr. The parent talks to the child in lines on the child's standard input (`END`).

#![allow(dead_code)] // each bench uses its own part of this module

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Nanoseconds since the UNIX epoch (CLOCK_REALTIME): comparable between processes of one
/// machine, which is what a send time carried inside a record needs.
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// CPU seconds (user + system, all threads) process `pid` has used: for `"self"` from
/// `getrusage` (microseconds; the kernel accounts them precisely), for another process from
/// `/proc/PID/stat` (clock ticks, 10 ms); `None` if it is gone.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    if pid == "self" {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the `rusage` it is given; it is read only on success.
        let usage = unsafe {
            if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
                return None;
            }
            usage.assume_init()
        };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        return Some(seconds(usage.ru_utime) + seconds(usage.ru_stime));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a constant of the running system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks / per_second.max(1) as f64)
}

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`) or a count (`Threads`).
pub fn status_field(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Sends one message line to the parent.
pub fn emit(tag: &str, fields: &[(&str, String)]) {
    let mut line = format!("@@ {tag}");
    for (key, value) in fields {
        line.push_str(&format!(" {key}={value}"));
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A message from a child: its tag and fields.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: String,
    pub fields: BTreeMap<String, String>,
}

impl Msg {
    pub fn get(&self, key: &str) -> Result<&str, String> {
        self.fields
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("{} message without {key}", self.tag))
    }
    pub fn num(&self, key: &str) -> Result<f64, String> {
        let text = self.get(key)?;
        text.parse()
            .map_err(|_| format!("{} {key}={text:?} is not a number", self.tag))
    }
}

fn parse_msg(line: &str) -> Option<Msg> {
    let mut words = line.strip_prefix("@@ ")?.split_whitespace();
    let tag = words.next()?.to_owned();
    let fields = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some(Msg { tag, fields })
}

/// A running child: its messages arrive on a channel filled by a reader thread.
pub struct ChildProc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    messages: tokio::sync::mpsc::UnboundedReceiver<Msg>,
}

impl ChildProc {
    /// Starts this bench binary again with `--child` and `args`.
    pub fn spawn(name: &str, args: &[String]) -> Result<ChildProc, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .arg("--child")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{name}: cannot start the child process: {e}"))?;
        let stdout = child.stdout.take().ok_or("child without stdout")?;
        let (tx, messages) = tokio::sync::mpsc::unbounded_channel();
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match parse_msg(&line) {
                    Some(msg) => {
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    None => eprintln!("[{label}] {line}"),
                }
            }
        });
        Ok(ChildProc {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            messages,
        })
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The next message tagged `tag` (others are skipped), waiting at most `timeout`; async,
    /// so the parent's actix system (a broker, a producer) runs meanwhile, and without polling,
    /// so the wait costs the parent no CPU.
    pub async fn expect(&mut self, tag: &str, timeout: Duration) -> Result<Msg, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some(msg)) if msg.tag == tag => return Ok(msg),
                Ok(Some(msg)) if msg.tag == "FAILED" => {
                    let why = msg.fields.get("why").map_or("failed", String::as_str);
                    return Err(format!("{}: {why}", self.name));
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Err(format!("{}: exited before {tag}", self.name)),
                Err(_) => return Err(format!("{}: no {tag} within {timeout:?}", self.name)),
            }
        }
    }

    /// Tells the child a line (e.g. `END`).
    pub fn tell(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // Closing stdin asks the child to finish; a child that does not within 10 s is killed.
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a child: a thread that reads the parent's lines; `true` in the flag once `END` came or
/// the parent closed the pipe.
pub fn watch_stdin() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ended.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() != "END" => continue,
                _ => break,
            }
        }
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    ended
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn number(name: &str, value: &str) -> Result<u64, String> {
    value
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{name}: {value:?} is not a number"))
}

/// The machine's load averages (1, 5, 15 minutes), for the record of a run.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The `main` of both benches: `--child ARGS` runs `child` (reporting a failure to the parent
/// as a `FAILED` message); anything else is parsed by `parse` (exit code 2 on a bad argument)
/// and run by `bench` on an actix system.
pub fn bench_main<S, Fut>(
    name: &str,
    child: impl FnOnce(&[String]) -> Result<(), String>,
    parse: impl FnOnce(std::vec::IntoIter<String>) -> Result<S, String>,
    bench: impl FnOnce(S) -> Fut,
) -> ExitCode
where
    Fut: Future<Output = Result<(), String>>,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return match child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                emit("FAILED", &[("why", why.replace(char::is_whitespace, "_"))]);
                ExitCode::FAILURE
            }
        };
    }
    let settings = match parse(args.into_iter()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{name} bench: {error}");
            return ExitCode::from(2);
        }
    };
    match actix::System::new().block_on(bench(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name} bench FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}
