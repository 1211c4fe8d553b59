//! The no-loss proof of issue 7, with real member processes: three `konsumer consume` processes
//! in one group on a tansu broker, while `konsumer produce` adds records at a steady pace, are
//! stopped (SIGTERM) or killed (SIGKILL) and started again. See RELIABILITY.md for the figures.
//!
//! **The ledger.** Record `i` has the value `id-i` (and the key `k<i>`, which spreads the records
//! over the partitions). Every start of a member process writes its standard output to a file of
//! its own. At the end every file is read back, a killed process's torn last line ignored:
//! lost = produced ids never printed; duplicates = printings of an id beyond its first.
//!
//! **Dating the lines.** Every 50 ms the test notes the length of each running process's output
//! file and log. That dates every line to within a note, orders the printings of a duplicated
//! id, and tells, at a kill, which lines the process printed after its last possible commit: the
//! lines that end past the file length noted one commit interval (+ [`COMMIT_SLACK`]) before
//! the kill. Their number is the kill's bound.
//!
//! **Every duplicate needs an explanation.** Each printing of an id but its last lost its commit,
//! which is allowed in three cases only: its process was killed within a commit interval
//! (+ slack) of it; the id's next printer took the partition on (its log's `partition
//! starts` line) within a commit interval (+ slack) of it — a handover, two members holding the
//! partition at once, which tansu 0.6.0 allows ([`Report::handovers`]); or the group dropped its
//! process (a `releasing partitions lost=true` line: its session lapsed) within a commit
//! interval (+ slack) of it ([`Report::evictions`]). Any other duplicate fails the test, with
//! the offsets involved and the log of the process that printed them.
//! Each test ends with a one-line `no-loss summary:` on stderr (the figures of RELIABILITY.md).
//!
//! Sqlite storage: a partition that moves resumes inside a produced batch, which tansu's memory
//! engine cannot fetch from.
//!
//! CI mode by default; `KONSUMER_SOAK=1` runs the long mode (`scripts/soak.sh`).
//! `KONSUMER_NO_LOSS_SEED=N` repeats a run's choices of victims and pauses (each run prints its
//! seed). The member processes' files stay in `target/tmp/` when a test fails, or always with
//! `KONSUMER_NO_LOSS_KEEP=1`.

mod common;

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{konsumer, succeeded};
use konsumer_actors::testkit::tansu::{Storage, TansuBroker};

const MEMBERS: usize = 3;
const PARTITIONS: i32 = 6;
/// Short, so a kill leaves little unprinted work behind...
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// ... and a killed member's partitions move within seconds.
const SESSION_TIMEOUT: &str = "6s";
/// Added to the commit interval when deciding whether a printing's commit can have been made in
/// time: the batch being printed at the commit tick, the commit's round trip, the 50 ms
/// sampling, for a handover the new owner's sidechannel wait (300 ms) before its log says the
/// partition starts — and a margin for five processes sharing two busy cores. (Measured, a
/// kill's oldest duplicate is about 0.2 s old: the summary's `oldest-kill-duplicate`.)
const COMMIT_SLACK: Duration = Duration::from_secs(1);
/// How often the output files' lengths are noted.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The longest a member (or the group) may take to get going again after a change.
const RECOVERY_LIMIT: Duration = Duration::from_secs(45);
/// The longest a member may take to exit after SIGTERM (drain, commit, leave the group).
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// How much is produced, and how fast.
#[derive(Clone, Copy, Debug)]
struct Load {
    records: u64,
    chunk: u64,
    /// One chunk is produced per this period (less often when producing takes longer).
    pace: Duration,
}

fn soak() -> bool {
    std::env::var("KONSUMER_SOAK").is_ok_and(|v| v == "1")
}

fn mode() -> &'static str {
    if soak() {
        "long"
    } else {
        "ci"
    }
}

/// A small xorshift generator: victims and pauses vary between runs, yet a seed repeats a run.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Rng, u64) {
        let seed = std::env::var("KONSUMER_NO_LOSS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        (Rng(seed | 1), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = (high - low).as_millis() as u64;
        low + Duration::from_millis(self.below(span + 1))
    }
}

/// A directory for one test's output files, under `target/tmp`; removed unless the test fails
/// or `KONSUMER_NO_LOSS_KEEP=1` asks to keep it.
struct Workdir(PathBuf);

impl Workdir {
    fn new(name: &str) -> Workdir {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "no_loss-{name}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        ));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Workdir(dir)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let keep = std::env::var("KONSUMER_NO_LOSS_KEEP").is_ok_and(|v| v == "1");
        if std::thread::panicking() || keep {
            eprintln!("member output kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

// ---- production ----

/// `konsumer produce` runs on a thread of its own, one chunk per `pace`.
struct Production {
    thread: Option<JoinHandle<()>>,
    records: u64,
}

impl Production {
    fn start(bootstrap: &str, topic: &str, load: Load) -> Production {
        let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut first = 0;
            let mut chunks = 0;
            while first < load.records {
                let end = (first + load.chunk).min(load.records);
                let input: String = (first..end).map(|i| format!("k{i}\tid-{i}\n")).collect();
                // Exit 0 only once every record is acknowledged: these ids are in the log.
                succeeded(&konsumer(
                    &["produce", "-b", &bootstrap, "-t", &topic],
                    input.as_bytes(),
                ));
                first = end;
                chunks += 1;
                let next = started + load.pace * chunks;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        Production {
            thread: Some(thread),
            records: load.records,
        }
    }

    /// Whether everything is produced; a failed production fails the test here.
    fn done(&mut self) -> bool {
        if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            if let Err(panic) = self.thread.take().expect("checked").join() {
                std::panic::resume_unwind(panic);
            }
        }
        self.thread.is_none()
    }
}

// ---- member processes ----

/// One start of a member: a `konsumer consume` process and its own output files.
struct Process {
    name: String,
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    /// (when, output length) each time the length was seen to change, oldest first.
    samples: Vec<(Instant, u64)>,
    /// The same for its stderr (the log), to put failures in the order of the log.
    err_samples: Vec<(Instant, u64)>,
    /// When the process was found gone (reaped).
    ended: Option<Instant>,
    /// When it was sent SIGKILL; `None` for a process stopped with SIGTERM.
    killed: Option<Instant>,
}

impl Process {
    fn output_len(&self) -> u64 {
        fs::metadata(&self.out).map_or(0, |m| m.len())
    }

    fn sample(&mut self) {
        let now = Instant::now();
        for (path, samples) in [
            (&self.out, &mut self.samples),
            (&self.err, &mut self.err_samples),
        ] {
            let len = fs::metadata(path).map_or(0, |m| m.len());
            if samples.last().map(|&(_, last)| last) != Some(len) {
                samples.push((now, len));
            }
        }
    }

    /// The output length noted last at or before `at` (0 if none was).
    fn length_at(&self, at: Instant) -> u64 {
        length_at(&self.samples, at)
    }

    /// The log lines written between `from` and `to`, as far as the samples tell.
    fn stderr_between(&self, from: Instant, to: Instant) -> String {
        let text = fs::read(&self.err).unwrap_or_default();
        let start = length_at(&self.err_samples, from) as usize;
        let end = self
            .err_samples
            .iter()
            .find(|(when, _)| *when >= to)
            .map_or(text.len(), |&(_, len)| len as usize);
        let start = text[..start.min(text.len())]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        String::from_utf8_lossy(&text[start..end.min(text.len())]).into_owned()
    }

    fn stderr_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.err).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// The length noted last at or before `at` (0 if none was).
fn length_at(samples: &[(Instant, u64)], at: Instant) -> u64 {
    samples
        .iter()
        .take_while(|(when, _)| *when <= at)
        .last()
        .map_or(0, |&(_, len)| len)
}

/// The group's member processes: `MEMBERS` slots, each running one process at a time.
struct Members {
    dir: PathBuf,
    args: Vec<String>,
    processes: Vec<Process>,
    /// Per slot, the index of its current process in `processes`.
    current: Vec<usize>,
    /// Failure messages give times from here.
    started: Instant,
}

impl Members {
    fn start(dir: &Path, args: Vec<String>) -> Members {
        let mut members = Members {
            dir: dir.to_owned(),
            args,
            processes: Vec::new(),
            current: Vec::new(),
            started: Instant::now(),
        };
        for slot in 0..MEMBERS {
            let index = members.spawn(slot);
            members.current.push(index);
        }
        members
    }

    /// Starts a process for `slot`, writing to new files; returns its index.
    fn spawn(&mut self, slot: usize) -> usize {
        let starts = self
            .processes
            .iter()
            .filter(|p| p.name.starts_with(&format!("m{slot}.")))
            .count();
        let name = format!("m{slot}.{starts}");
        let out = self.dir.join(format!("{name}.out"));
        let err = self.dir.join(format!("{name}.err"));
        let create = |path: &Path| {
            File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
        };
        let child = Command::new(env!("CARGO_BIN_EXE_konsumer"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(create(&out))
            .stderr(create(&err))
            .spawn()
            .expect("the konsumer binary starts");
        self.processes.push(Process {
            name,
            child: Some(child),
            out,
            err,
            samples: Vec::new(),
            err_samples: Vec::new(),
            ended: None,
            killed: None,
        });
        let index = self.processes.len() - 1;
        if let Some(current) = self.current.get_mut(slot) {
            *current = index;
        }
        index
    }

    fn current(&self, slot: usize) -> &Process {
        &self.processes[self.current[slot]]
    }

    /// Notes the output length of every running process.
    fn sample(&mut self) {
        for process in self.processes.iter_mut().filter(|p| p.child.is_some()) {
            process.sample();
        }
    }

    /// Fails the test if a member exited on its own.
    fn check_running(&mut self) {
        for index in 0..self.processes.len() {
            let process = &mut self.processes[index];
            let Some(child) = process.child.as_mut() else {
                continue;
            };
            if let Some(status) = child.try_wait().expect("try_wait") {
                let name = process.name.clone();
                panic!(
                    "member {name} exited on its own ({status}); its stderr ends:\n{}\n{}",
                    process.stderr_tail(30),
                    self.diagnostics()
                );
            }
        }
    }

    /// SIGKILL to the slot's process, then a new process in the slot at once.
    fn kill(&mut self, slot: usize) {
        let process = &mut self.processes[self.current[slot]];
        let mut child = process.child.take().expect("a running process");
        process.killed = Some(Instant::now());
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping a killed member");
        process.sample();
        process.ended = Some(Instant::now());
        self.spawn(slot);
    }

    /// SIGTERM to the slot's process; waits for it to exit 0 (drained, committed, left).
    fn stop(&mut self, slot: usize) {
        self.terminate(slot);
        self.wait_stopped(slot);
    }

    fn terminate(&self, slot: usize) {
        let process = self.current(slot);
        let pid = process.child.as_ref().expect("a running process").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(
            status.success(),
            "kill -TERM {pid} ({}) failed",
            process.name
        );
    }

    fn wait_stopped(&mut self, slot: usize) {
        let deadline = Instant::now() + STOP_LIMIT;
        let index = self.current[slot];
        loop {
            self.sample();
            let process = &mut self.processes[index];
            let child = process.child.as_mut().expect("a running process");
            if let Some(status) = child.try_wait().expect("try_wait") {
                process.child = None;
                process.sample();
                process.ended = Some(Instant::now());
                assert!(
                    status.success(),
                    "member {} ended with {status} after SIGTERM; its stderr ends:\n{}",
                    process.name,
                    process.stderr_tail(30)
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {} still runs {STOP_LIMIT:?} after SIGTERM; its stderr ends:\n{}",
                process.name,
                process.stderr_tail(30)
            );
            std::thread::sleep(SAMPLE_EVERY);
        }
    }

    /// SIGTERM to every member at once, then waits for each to exit 0.
    fn stop_all(&mut self) {
        for slot in 0..MEMBERS {
            self.terminate(slot);
        }
        for slot in 0..MEMBERS {
            self.wait_stopped(slot);
        }
    }

    /// The last lines of the current members' stderr, for failure messages.
    fn diagnostics(&self) -> String {
        let mut text = format!("member files in {}", self.dir.display());
        for slot in 0..MEMBERS {
            let process = self.current(slot);
            text.push_str(&format!(
                "\n--- {} stderr (last lines)\n{}",
                process.name,
                process.stderr_tail(15)
            ));
        }
        text
    }

    /// Samples and checks the members for `period`.
    fn watch(&mut self, period: Duration) {
        let until = Instant::now() + period;
        while Instant::now() < until {
            self.sample();
            self.check_running();
            std::thread::sleep(SAMPLE_EVERY);
        }
    }

    /// Waits until the slot's current process has printed something: it is in the group and
    /// consuming again. Once production is over its partitions may have nothing left to print:
    /// then [`finish`] checks that everything gets printed.
    fn wait_printing(&mut self, slot: usize, production: &mut Production) {
        let deadline = Instant::now() + RECOVERY_LIMIT;
        while self.current(slot).output_len() == 0 && !production.done() {
            assert!(
                Instant::now() < deadline,
                "member {} printed nothing within {RECOVERY_LIMIT:?} of its start\n{}",
                self.current(slot).name,
                self.diagnostics()
            );
            self.watch(SAMPLE_EVERY);
        }
    }

    fn restarts(&self) -> usize {
        self.processes.len() - MEMBERS
    }

    fn kills(&self) -> usize {
        self.processes.iter().filter(|p| p.killed.is_some()).count()
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for process in &mut self.processes {
            if let Some(child) = process.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

// ---- the ledger ----

/// One complete line of a member's output.
struct Line {
    id: u64,
    partition: i32,
    offset: i64,
    /// Byte offset just past the line in its file.
    end: u64,
}

/// The complete lines of an output file. A last line without its newline is torn (the process
/// was killed while writing it) and left out; only a killed process may have one.
fn read_output(process: &Process) -> Vec<Line> {
    let bytes = fs::read(&process.out)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", process.out.display()));
    let mut lines = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let Some(length) = bytes[start..].iter().position(|&b| b == b'\n') else {
            assert!(
                process.killed.is_some(),
                "{} ends in a torn line, yet it was stopped gracefully: {:?}",
                process.name,
                String::from_utf8_lossy(&bytes[start..])
            );
            break;
        };
        let end = start + length + 1;
        let text = std::str::from_utf8(&bytes[start..end - 1]).unwrap_or_default();
        lines.push(parse_line(text).unwrap_or_else(|| {
            panic!(
                "{} printed a line that is not `topic/partition/offset<TAB>k<ID><TAB>id-<ID>`: {text:?}",
                process.name
            )
        }));
        lines.last_mut().expect("just pushed").end = end as u64;
        start = end;
    }
    lines
}

fn parse_line(text: &str) -> Option<Line> {
    let mut fields = text.split('\t');
    let (place, key, value) = (fields.next()?, fields.next()?, fields.next()?);
    let mut place = place.rsplitn(3, '/');
    let offset = place.next()?.parse().ok()?;
    let partition = place.next()?.parse().ok()?;
    let id: u64 = value.strip_prefix("id-")?.parse().ok()?;
    (fields.next().is_none() && key == format!("k{id}")).then_some(Line {
        id,
        partition,
        offset,
        end: 0,
    })
}

/// How many distinct produced ids the output files hold so far.
fn distinct_printed(processes: &[Process], produced: u64) -> u64 {
    let mut seen = vec![false; produced as usize];
    let mut count = 0;
    for process in processes {
        let bytes = fs::read(&process.out).unwrap_or_default();
        // Not the part after the last newline: a line being written, or a torn one.
        let complete = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |end| end + 1);
        for line in bytes[..complete].split(|&b| b == b'\n') {
            let id = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.rsplit('\t').next())
                .and_then(|v| v.strip_prefix("id-"))
                .and_then(|v| v.parse::<usize>().ok());
            if let Some(id) = id.filter(|&id| id < seen.len()) {
                if !seen[id] {
                    seen[id] = true;
                    count += 1;
                }
            }
        }
    }
    count
}

/// A member taking a partition on, as its log says (`INFO partition starts offset=O
/// partition=P ...`, logged once the starting offset is known: committed or handed over).
struct Start {
    when: Instant,
    partition: i32,
    offset: i64,
}

/// The lines of a process's log that begin with `prefix` (the rest of each line), dated by
/// the samples of its length.
fn dated_log_lines(process: &Process, prefix: &str) -> Vec<(Instant, String)> {
    let text = fs::read(&process.err).unwrap_or_default();
    let ended = process.ended.expect("every process has ended");
    let mut samples = process.err_samples.iter().peekable();
    let mut found = Vec::new();
    let mut end = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        end += line.len() as u64;
        let line = String::from_utf8_lossy(line);
        let Some(rest) = line.strip_prefix(prefix) else {
            continue;
        };
        while samples.next_if(|(_, len)| *len < end).is_some() {}
        let when = samples.peek().map_or(ended, |(when, _)| *when);
        found.push((when, rest.to_owned()));
    }
    found
}

/// The value of `name=` among a log line's fields.
fn log_field(fields: &str, name: &str) -> Option<i64> {
    fields
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// The partition starts in a process's log, dated by the samples of its length.
fn partition_starts(process: &Process) -> Vec<Start> {
    dated_log_lines(process, "INFO partition starts ")
        .into_iter()
        .filter_map(|(when, fields)| {
            Some(Start {
                when,
                partition: log_field(&fields, "partition")? as i32,
                offset: log_field(&fields, "offset")?,
            })
        })
        .collect()
}

/// When the process lost its partitions because the group dropped it (its session lapsed: the
/// coordinator answered UnknownMemberId or IllegalGeneration), so it could not commit them.
fn evictions(process: &Process) -> Vec<Instant> {
    dated_log_lines(process, "INFO releasing partitions ")
        .into_iter()
        .filter(|(_, fields)| fields.split_whitespace().any(|kv| kv == "lost=true"))
        .map(|(when, _)| when)
        .collect()
}

/// What a kill cost: the lines the process printed after its last possible commit (the bound)
/// and the duplicates of them printed again by later members.
struct KillCost {
    name: String,
    printed: usize,
    bound: usize,
    duplicates: usize,
    /// How long before the kill its oldest duplicate was printed: the real cost in time.
    oldest: Duration,
}

struct Report {
    records: u64,
    printed: usize,
    lost: Vec<u64>,
    duplicates: usize,
    kills: Vec<KillCost>,
    /// Repeated printings (of a duplicated id, all but its last) outside the kill windows, but
    /// where the record's next printer took the partition on before this printing's commit was
    /// due (within a commit interval + slack of it): two members held the partition at once.
    /// Only the broker can cause that: tansu 0.6.0 answers a JoinGroup at once, and the new
    /// generation's assignment takes effect before the others have rejoined (and released).
    handovers: Vec<Repeat>,
    /// Repeated printings (outside the kill windows, not handovers) whose printer was dropped
    /// by the group within a commit interval + slack after printing them: it lost the
    /// partition before the commit was due, and a lost member may not commit. Like a kill,
    /// but the broker's doing (under the kill storm tansu lets sessions lapse).
    evictions: Vec<Repeat>,
    /// The other repeated printings: records whose commit never came, though neither a kill,
    /// an early handover nor an eviction explains it.
    unexplained: Vec<Repeat>,
}

/// A printing that was repeated later.
struct Repeat {
    partition: i32,
    offset: i64,
    /// Index of the process that printed it, and when.
    printer: usize,
    when: Instant,
    /// The next printing of the same record.
    again: (usize, Instant),
}

impl Report {
    fn bound(&self) -> usize {
        self.kills.iter().map(|k| k.bound).sum()
    }

    /// The oldest duplicate of any kill, in ms before its kill.
    fn oldest_kill_duplicate(&self) -> u128 {
        self.kills
            .iter()
            .map(|k| k.oldest.as_millis())
            .max()
            .unwrap_or(0)
    }

    /// `repeats` as runs of offsets per printer and partition, with the first printer's log
    /// around the first run: what a failure needs to be understood.
    fn explain(repeats: &[Repeat], members: &Members) -> String {
        let seconds = |at: Instant| at.duration_since(members.started).as_secs_f64();
        let name = |index: usize| members.processes[index].name.as_str();
        let mut text = String::new();
        let mut runs: Vec<(&Repeat, &Repeat, usize)> = Vec::new();
        for repeat in repeats {
            match runs.last_mut() {
                Some((first, last, count))
                    if first.printer == repeat.printer
                        && first.partition == repeat.partition
                        && last.offset + 1 == repeat.offset =>
                {
                    *last = repeat;
                    *count += 1;
                }
                _ => runs.push((repeat, repeat, 1)),
            }
        }
        for (first, last, count) in runs.iter().take(10) {
            text.push_str(&format!(
                "\n{} printed partition {} offsets {}..={} ({count}) at {:.2}s..{:.2}s; \
                 printed again by {} from {:.2}s",
                name(first.printer),
                first.partition,
                first.offset,
                last.offset,
                seconds(first.when),
                seconds(last.when),
                name(first.again.0),
                seconds(first.again.1),
            ));
        }
        if let Some((first, last, _)) = runs.first() {
            let process = &members.processes[first.printer];
            let from = first
                .when
                .checked_sub(Duration::from_secs(2))
                .unwrap_or(first.when);
            let to = last.again.1 + Duration::from_secs(1);
            text.push_str(&format!(
                "\n--- {}'s log from {:.2}s to {:.2}s\n{}",
                process.name,
                seconds(from),
                seconds(to),
                process.stderr_between(from, to)
            ));
        }
        text
    }

    fn summary(&self, test: &str, members: &Members, wall: Duration, seed: u64) -> String {
        format!(
            "no-loss summary: test={test} mode={} records={} kills={} restarts={} lost={} \
             duplicates={} (kills={} handovers={} evictions={} unexplained={}) duplicate-bound={} \
             oldest-kill-duplicate={}ms printed={} wall={:.1}s seed={seed}",
            mode(),
            self.records,
            members.kills(),
            members.restarts(),
            self.lost.len(),
            self.duplicates,
            self.kills.iter().map(|k| k.duplicates).sum::<usize>(),
            self.handovers.len(),
            self.evictions.len(),
            self.unexplained.len(),
            self.bound(),
            self.oldest_kill_duplicate(),
            self.printed,
            wall.as_secs_f64(),
        )
    }
}

/// Reads every output file and compares with the `records` produced (ids `0..records`).
fn tally(processes: &[Process], records: u64) -> Report {
    let mut count = vec![0u32; records as usize];
    // Where each id was seen: a record has one place in the log.
    let mut place: Vec<Option<(i32, i64)>> = vec![None; records as usize];
    let mut outputs = Vec::new();
    let mut printed = 0;
    for process in processes {
        let lines = read_output(process);
        for line in &lines {
            assert!(
                line.id < records,
                "{} printed id {}, which was never produced",
                process.name,
                line.id
            );
            let at = (line.partition, line.offset);
            match place[line.id as usize].replace(at) {
                Some(before) if before != at => panic!(
                    "id {} printed at partition/offset {before:?} and at {at:?} ({})",
                    line.id, process.name
                ),
                _ => {}
            }
            count[line.id as usize] += 1;
        }
        printed += lines.len();
        outputs.push(lines);
    }
    let lost: Vec<u64> = (0..records).filter(|&id| count[id as usize] == 0).collect();
    let duplicates: usize = count.iter().map(|&c| c.saturating_sub(1) as usize).sum();

    let starts: Vec<Vec<Start>> = processes.iter().map(partition_starts).collect();
    let evicted: Vec<Vec<Instant>> = processes.iter().map(evictions).collect();
    // The printings of each duplicated id: (when, process, inside the process's kill window).
    let mut printings: HashMap<u64, Vec<(Instant, usize, bool)>> = HashMap::new();
    let mut kills = Vec::new();
    for (index, (process, lines)) in processes.iter().zip(&outputs).enumerate() {
        let ended = process.ended.expect("every process has ended");
        // Lines past this length were printed after the last commit that can have been made.
        let window_start = process.killed.map(|at| {
            process.length_at(at.checked_sub(COMMIT_INTERVAL + COMMIT_SLACK).unwrap_or(at))
        });
        let mut samples = process.samples.iter().peekable();
        for line in lines {
            while samples.next_if(|(_, len)| *len < line.end).is_some() {}
            let when = samples.peek().map_or(ended, |(when, _)| *when);
            if count[line.id as usize] > 1 {
                let in_window = window_start.is_some_and(|start| line.end > start);
                printings
                    .entry(line.id)
                    .or_default()
                    .push((when, index, in_window));
            }
        }
        if let Some(start) = window_start {
            kills.push((
                index,
                KillCost {
                    name: process.name.clone(),
                    printed: lines.len(),
                    bound: lines.iter().filter(|l| l.end > start).count(),
                    duplicates: 0,
                    oldest: Duration::ZERO,
                },
            ));
        }
    }
    let (mut handovers, mut dropped, mut unexplained) = (Vec::new(), Vec::new(), Vec::new());
    for (id, mut list) in printings {
        list.sort_by_key(|&(when, index, _)| (when, index));
        // The last printing is the one whose commit held; each earlier one lost its commit:
        // explained by its printer's kill within a commit interval, or by the record's next
        // printer starting on it within a commit interval.
        for (i, &(when, index, in_window)) in list[..list.len() - 1].iter().enumerate() {
            if in_window {
                let cost = kills
                    .iter_mut()
                    .find(|(i, _)| *i == index)
                    .expect("a window belongs to a kill");
                cost.1.duplicates += 1;
                let killed = processes[index].killed.expect("a killed process");
                cost.1.oldest = cost.1.oldest.max(killed.saturating_duration_since(when));
                continue;
            }
            let (partition, offset) = place[id as usize].expect("printed");
            let (next_when, next) = (list[i + 1].0, list[i + 1].1);
            let repeat = Repeat {
                partition,
                offset,
                printer: index,
                when,
                again: (next, next_when),
            };
            // The next printer took the partition on (read its committed offset) before this
            // printing's commit was due.
            let early_start = starts[next]
                .iter()
                .rfind(|s| s.partition == partition && s.offset <= offset && s.when <= next_when)
                .is_some_and(|s| s.when <= when + COMMIT_INTERVAL + COMMIT_SLACK);
            // The printer lost the partition to the group before this printing's commit was
            // due (both dated by samples, so allow one sample's skew).
            let evicted_soon = evicted[index].iter().any(|&at| {
                at + SAMPLE_EVERY >= when && at <= when + COMMIT_INTERVAL + COMMIT_SLACK
            });
            if next != index && early_start {
                handovers.push(repeat);
            } else if evicted_soon {
                dropped.push(repeat);
            } else {
                unexplained.push(repeat);
            }
        }
    }
    for repeats in [&mut handovers, &mut dropped, &mut unexplained] {
        repeats.sort_by_key(|r| (r.printer, r.partition, r.offset));
    }
    Report {
        records,
        printed,
        lost,
        duplicates,
        kills: kills.into_iter().map(|(_, cost)| cost).collect(),
        handovers,
        evictions: dropped,
        unexplained,
    }
}

// ---- the scenarios ----

/// A broker with the topic, and the arguments of a member of the group.
fn setup(topic: &str, group: &str, extra: &[&str]) -> (TansuBroker, Vec<String>) {
    let broker = TansuBroker::start(Storage::Sqlite);
    broker.create_topic(topic, PARTITIONS);
    let interval = format!("{}ms", COMMIT_INTERVAL.as_millis());
    let mut args: Vec<String> = [
        "consume",
        "-b",
        &broker.bootstrap(),
        "-g",
        group,
        "-t",
        topic,
        "--from-beginning",
        "--commit-interval",
        &interval,
        "--session-timeout",
        SESSION_TIMEOUT,
        "-vv",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    (broker, args)
}

/// After production: waits until every id has been printed, then stops every member with
/// SIGTERM and reads the ledger.
fn finish(members: &mut Members, production: &Production) -> Report {
    let records = production.records;
    let deadline = Instant::now() + RECOVERY_LIMIT * 2;
    loop {
        let printed = distinct_printed(&members.processes, records);
        if printed == records {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {printed} of {records} records printed {:?} after the last was produced\n{}",
            RECOVERY_LIMIT * 2,
            members.diagnostics()
        );
        members.watch(Duration::from_secs(1));
    }
    members.stop_all();
    tally(&members.processes, records)
}

/// Asserts no record was lost, naming some of them if any were.
fn assert_nothing_lost(report: &Report, summary: &str) {
    assert!(
        report.lost.is_empty(),
        "{} of {} records never printed (first ids: {:?})\n{summary}",
        report.lost.len(),
        report.records,
        &report.lost[..report.lost.len().min(20)]
    );
}

/// Graceful rebalances: while records are produced, one member at a time (chosen at random) is
/// stopped with SIGTERM — it drains, commits and leaves — and started again after a pause of
/// up to 1.5 s; the next change comes once the new process prints. Nothing may be lost, and
/// every duplicate must be a handover (two members holding the partition at once, which
/// tansu 0.6.0 allows; see [`Report::handovers`]). Duplicates are counted in the summary line;
/// with `no_duplicates` there must be none.
///
/// Why the sidechannel can promise none: tansu gives a partition to its next owner before the
/// previous owner has been told of the rebalance (it learns at its next heartbeat). Every owner
/// claims a partition in the sidechannel before delivering it and releases it once stopped; a
/// new owner, including a process that has just started (it reads the claims written before
/// it), waits for a standing claim's release instead of reading alongside its owner.
fn graceful_rebalances(name: &str, sidechannel: &[&str], no_duplicates: bool) {
    let started = Instant::now();
    let (rng, seed) = Rng::seeded();
    let mut rng = rng;
    let topic = "ledger";
    let (broker, args) = setup(topic, &format!("{name}-group"), sidechannel);
    let workdir = Workdir::new(name);
    let mut members = Members::start(&workdir.0, args);
    let load = if soak() {
        Load {
            records: 200_000,
            chunk: 2_000,
            pace: Duration::from_millis(800),
        }
    } else {
        Load {
            records: 30_000,
            chunk: 1_000,
            pace: Duration::from_millis(1_000),
        }
    };
    let mut production = Production::start(&broker.bootstrap(), topic, load);
    // Every member consumes before the first change.
    for slot in 0..MEMBERS {
        members.wait_printing(slot, &mut production);
    }
    while !production.done() {
        members.watch(rng.between(Duration::from_millis(500), Duration::from_secs(2)));
        let slot = rng.below(MEMBERS as u64) as usize;
        members.stop(slot);
        members.watch(rng.between(Duration::ZERO, Duration::from_millis(1_500)));
        members.spawn(slot);
        members.wait_printing(slot, &mut production);
    }
    let report = finish(&mut members, &production);
    let summary = report.summary(name, &members, started.elapsed(), seed);
    eprintln!("{summary}");
    assert_nothing_lost(&report, &summary);
    assert!(
        members.restarts() >= 3,
        "too few restarts to prove anything\n{summary}"
    );
    assert!(
        report.unexplained.is_empty(),
        "{} printings were repeated, not within a commit interval of a handover or an eviction:{}\n{summary}",
        report.unexplained.len(),
        Report::explain(&report.unexplained, &members)
    );
    if no_duplicates {
        assert!(
            report.duplicates == 0,
            "{} printings repeated across graceful rebalances with the sidechannel:{}\n{summary}",
            report.duplicates,
            Report::explain(&report.handovers, &members)
        );
    }
    drop(broker);
}

/// With the sidechannel (the default topic): 0 lost (a handed-over offset that was too new
/// would show here) and 0 duplicates.
#[test]
fn graceful_rebalances_with_the_sidechannel_lose_nothing_and_repeat_nothing() {
    graceful_rebalances("graceful-sidechannel", &[], true);
}

/// Without the sidechannel: nothing lost; duplicates are reported in the summary line.
#[test]
fn graceful_rebalances_without_the_sidechannel_lose_nothing() {
    graceful_rebalances(
        "graceful-no-sidechannel",
        &["--sidechannel-topic", ""],
        false,
    );
}

/// kill -9: while records are produced, a member chosen at random is killed with SIGKILL every
/// few seconds (once the previous victim's successor prints) and started again at once. Nothing
/// is lost, and duplicates stay within what one commit interval allows: every duplicate is a
/// record that a killed process printed after its last possible commit (the last commit
/// interval + slack before the kill), or a handover (see [`Report::handovers`]). The figures
/// per kill (printed, printed after the last possible commit = the bound, printed again) go
/// to stderr with the summary line.
#[test]
fn kill_9_of_random_members_loses_nothing_and_repeats_only_the_last_commit_interval() {
    let started = Instant::now();
    let (rng, seed) = Rng::seeded();
    let mut rng = rng;
    let topic = "ledger";
    let (broker, args) = setup(topic, "kill-group", &[]);
    let workdir = Workdir::new("kill");
    let mut members = Members::start(&workdir.0, args);
    let load = if soak() {
        Load {
            records: 1_000_000,
            chunk: 4_000,
            pace: Duration::from_millis(1_000),
        }
    } else {
        Load {
            records: 50_000,
            chunk: 1_000,
            pace: Duration::from_millis(1_000),
        }
    };
    let mut production = Production::start(&broker.bootstrap(), topic, load);
    // Every member consumes before the first change.
    for slot in 0..MEMBERS {
        members.wait_printing(slot, &mut production);
    }
    while !production.done() {
        members.watch(rng.between(Duration::from_millis(500), Duration::from_secs(3)));
        let slot = rng.below(MEMBERS as u64) as usize;
        members.kill(slot);
        members.wait_printing(slot, &mut production);
    }
    let report = finish(&mut members, &production);
    let summary = report.summary("kill-9", &members, started.elapsed(), seed);
    for kill in &report.kills {
        eprintln!(
            "killed {}: printed {}, of them after its last possible commit {}, printed again {} \
             (the oldest {} ms before the kill)",
            kill.name,
            kill.printed,
            kill.bound,
            kill.duplicates,
            kill.oldest.as_millis()
        );
    }
    eprintln!("{summary}");
    assert_nothing_lost(&report, &summary);
    // A kill costs its partitions up to a session timeout (6 s) while their next owner waits
    // for the dead owner's claims, and the next kill waits for the restart to print: about
    // one kill per 8–12 s of production (250 s in the long mode).
    let minimum_kills = if soak() { 18 } else { 4 };
    assert!(
        members.kills() >= minimum_kills,
        "only {} kills; at least {minimum_kills} expected\n{summary}",
        members.kills()
    );
    assert!(
        report.unexplained.is_empty(),
        "{} printings were repeated though no kill, handover or eviction within a commit \
         interval explains them:{}\n{summary}",
        report.unexplained.len(),
        Report::explain(&report.unexplained, &members)
    );
    drop(broker);
}

/// The ledger's arithmetic on made-up output files, so that the tests above can fail: a lost
/// id, a killed process's last commit interval printed again (a kill's duplicates, within its
/// bound), a repeat by a member that took the partition on before the commit was due (a
/// handover), and one by a member that took it on much later (unexplained).
#[test]
fn the_ledger_finds_lost_repeated_and_unexplained_records() {
    let workdir = Workdir::new("ledger");
    let t = Instant::now() + Duration::from_secs(60);
    let line = |partition: i32, offset: i64, id: u64| {
        format!("ledger/{partition}/{offset}\tk{id}\tid-{id}\n")
    };
    // (partition, offset, id) printed; each entry of `at` dates the first n lines.
    let fake = |name: &str,
                printed: &[(i32, i64, u64)],
                at: &[(usize, Instant)],
                torn: &str,
                starts: &[(Instant, i32, i64)],
                killed: Option<Instant>,
                evicted: Option<Instant>| {
        let out = workdir.0.join(format!("{name}.out"));
        let err = workdir.0.join(format!("{name}.err"));
        let lines: Vec<String> = printed.iter().map(|&(p, o, id)| line(p, o, id)).collect();
        fs::write(&out, format!("{}{torn}", lines.concat())).unwrap();
        let mut log = String::from("INFO consuming topics=[\"ledger\"]\n");
        let mut err_samples = vec![(t - Duration::from_secs(30), log.len() as u64)];
        for &(when, partition, offset) in starts {
            log.push_str(&format!(
                "INFO partition starts offset={offset} partition={partition} topic=ledger\n"
            ));
            err_samples.push((when, log.len() as u64));
        }
        if let Some(when) = evicted {
            log.push_str("INFO releasing partitions lost=true count=1 group=g\n");
            err_samples.push((when, log.len() as u64));
        }
        fs::write(&err, &log).unwrap();
        let samples = at
            .iter()
            .map(|&(n, when)| (when, lines[..n].concat().len() as u64))
            .collect();
        Process {
            name: name.to_owned(),
            child: None,
            out,
            err,
            samples,
            err_samples,
            ended: Some(t + Duration::from_secs(30)),
            killed,
        }
    };
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    let processes = [
        // Killed at t; its lines 3..5 came within the last commit interval.
        fake(
            "a",
            &[(0, 0, 0), (0, 1, 1), (0, 2, 2), (0, 3, 3), (0, 4, 4)],
            &[(2, t - s(3)), (5, t - ms(200))],
            "ledger/0/5\tk5\tid-",
            &[(t - s(4), 0, 0)],
            Some(t),
            None,
        ),
        // Takes partition 0 on after the session timeout, from the last commit.
        fake(
            "b",
            &[
                (0, 2, 2),
                (0, 3, 3),
                (0, 4, 4),
                (0, 5, 5),
                (0, 6, 6),
                (0, 7, 7),
                (0, 8, 8),
            ],
            &[(7, t + s(7))],
            "",
            &[(t + ms(6500), 0, 2)],
            None,
            None,
        ),
        fake(
            "c",
            &[(1, 0, 9), (1, 1, 10)],
            &[(2, t + s(1))],
            "",
            &[(t, 1, 0)],
            None,
            None,
        ),
        // Takes partition 1 on 200 ms after c printed offset 0 (a handover), and again 19 s
        // later from offset 1, which c had long committed (unexplained).
        fake(
            "d",
            &[(1, 0, 9), (1, 1, 10), (1, 2, 11)],
            &[(1, t + ms(1500)), (3, t + ms(20500))],
            "",
            &[(t + ms(1200), 1, 0), (t + s(20), 1, 1)],
            None,
            None,
        ),
        // Dropped by the group 300 ms after printing partition 2's offset 0, before its commit
        // (an eviction); its offset 1, printed 5 s before the eviction, had been committed.
        fake(
            "e",
            &[(2, 1, 13), (2, 0, 12)],
            &[(1, t - s(5)), (2, t + s(1))],
            "",
            &[(t - s(6), 2, 1)],
            None,
            Some(t + ms(1300)),
        ),
        // Takes partition 2 on 10 s later (not a handover), from e's last commit... and also
        // repeats offset 1 (unexplained: e was dropped long after printing it).
        fake(
            "f",
            &[(2, 1, 13), (2, 0, 12)],
            &[(2, t + s(11))],
            "",
            &[(t + s(10), 2, 0)],
            None,
            None,
        ),
    ];
    let report = tally(&processes, 15);
    assert_eq!(report.printed, 21);
    assert_eq!(report.lost, [14]);
    assert_eq!(report.duplicates, 7);
    assert_eq!(report.kills.len(), 1);
    let kill = &report.kills[0];
    assert_eq!((kill.printed, kill.bound, kill.duplicates), (5, 3, 3));
    assert_eq!(
        kill.oldest,
        ms(200),
        "dated by the sample that first showed them"
    );
    let described = |repeats: &[Repeat]| -> Vec<(String, i32, i64, String)> {
        repeats
            .iter()
            .map(|r| {
                let name = |i: usize| processes[i].name.clone();
                (name(r.printer), r.partition, r.offset, name(r.again.0))
            })
            .collect()
    };
    assert_eq!(
        described(&report.handovers),
        [("c".to_owned(), 1, 0, "d".to_owned())]
    );
    assert_eq!(
        described(&report.evictions),
        [("e".to_owned(), 2, 0, "f".to_owned())]
    );
    assert_eq!(
        described(&report.unexplained),
        [
            ("c".to_owned(), 1, 1, "d".to_owned()),
            ("e".to_owned(), 2, 1, "f".to_owned())
        ]
    );
}
