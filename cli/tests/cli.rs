//! The `konsumer` binary, run as a user would, against a real broker (tansu) that each test
//! starts on a free loopback port. librdkafka (the `rdkafka` crate) is the independent peer:
//! it reads back what the CLI produced and commits the offsets that `group describe` shows.
//! `konsumer consume` is checked against the CLI's own producer and `group describe`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{konsumer, konsumer_env, succeeded, text};
use konsumer_actors::core::partitioner::partition_for_key;
use konsumer_actors::testkit::tansu::{free_port, Storage, TansuBroker};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

/// Panics unless the command exited with `code`; returns its stderr.
fn failed_with(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit code {code}:\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

type Read = BTreeMap<i32, Vec<(i64, Option<Vec<u8>>, Vec<u8>)>>;

/// Reads `count` records of `topic` (all `partitions`) from the beginning with librdkafka,
/// per partition as (offset, key, value) in the order read; then checks nothing more comes.
fn read_back(bootstrap: &str, topic: &str, partitions: i32, count: usize) -> Read {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("readback-{topic}"))
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .expect("an rdkafka consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("valid offset");
    }
    consumer.assign(&assignment).expect("assign");
    let mut read = Read::new();
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while total < count {
        assert!(
            Instant::now() < deadline,
            "librdkafka read {total} of {count} records of {topic}: {read:?}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap_or_else(|e| panic!("librdkafka consumer error: {e}"));
        read.entry(message.partition()).or_default().push((
            message.offset(),
            message.key().map(<[u8]>::to_vec),
            message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        ));
        total += 1;
    }
    assert!(
        consumer.poll(Duration::from_millis(500)).is_none(),
        "librdkafka read more than {count} records of {topic}"
    );
    read
}

/// Lines with and without keys, CRLF and LF endings, a tab inside a value, an empty value, and
/// a last line without a newline: every record arrives with its key and value, keyed ones on
/// the partition murmur2 picks, in input order within each partition. A second run pinned to
/// one partition, gzip-compressed, lands there in order.
#[test]
fn produced_lines_are_read_back_with_their_keys_and_values() {
    let broker = TansuBroker::start(Storage::Memory);
    broker.create_topic("lines", 3);
    let bootstrap = broker.bootstrap();

    // (key, value) per line, in input order.
    let mut expected: Vec<(Option<String>, String)> = Vec::new();
    let mut input = String::new();
    for i in 0..300 {
        let (key, value) = match i % 4 {
            0 => (Some(format!("key-{}", i % 17)), format!("value {i}")),
            1 => (None, format!("value {i} without key")),
            2 => (
                Some(format!("key-{}", i % 17)),
                format!("value {i}\twith a tab"),
            ),
            _ => (None, format!("value {i}")),
        };
        match &key {
            Some(k) => input.push_str(&format!("{k}\t{value}")),
            None => input.push_str(&value),
        }
        input.push_str(if i % 3 == 0 { "\r\n" } else { "\n" });
        expected.push((key, value));
    }
    input.push_str("empty-value\t\n");
    expected.push((Some("empty-value".into()), String::new()));
    input.push_str("last line, no newline");
    expected.push((None, "last line, no newline".into()));

    let output = konsumer(
        &["produce", "--brokers", &bootstrap, "--topic", "lines"],
        input.as_bytes(),
    );
    let stdout = succeeded(&output);
    assert!(
        stdout.starts_with(&format!(
            "produced {} record(s) to topic lines",
            expected.len()
        )),
        "{stdout}"
    );

    let pinned: Vec<String> = (0..50).map(|i| format!("pinned-{i:02}")).collect();
    let output = konsumer(
        &[
            "produce",
            "-b",
            &bootstrap,
            "-t",
            "lines",
            "--partition",
            "2",
            "--compression",
            "gzip",
        ],
        format!("{}\n", pinned.join("\n")).as_bytes(),
    );
    let stdout = succeeded(&output);
    assert_eq!(
        stdout.trim(),
        "produced 50 record(s) to topic lines (partition 2: 50)"
    );

    let read = read_back(&bootstrap, "lines", 3, expected.len() + pinned.len());
    let mut by_partition: BTreeMap<i32, Vec<(Option<String>, String)>> = BTreeMap::new();
    for (partition, records) in &read {
        for (i, (offset, key, value)) in records.iter().enumerate() {
            assert_eq!(
                *offset, i as i64,
                "offsets of partition {partition} count from 0"
            );
            let key = key.as_ref().map(|k| String::from_utf8(k.clone()).unwrap());
            let value = String::from_utf8(value.clone()).unwrap();
            by_partition
                .entry(*partition)
                .or_default()
                .push((key, value));
        }
    }
    // The pinned run came second: the tail of partition 2.
    let two = by_partition.get_mut(&2).expect("partition 2 has records");
    let tail = two.split_off(two.len() - pinned.len());
    let tail: Vec<String> = tail
        .into_iter()
        .map(|(key, value)| {
            assert_eq!(key, None);
            value
        })
        .collect();
    assert_eq!(tail, pinned);

    // The first run: every record once, keyed ones where murmur2 puts them, order kept within
    // each partition.
    let mut seen = 0;
    for (partition, records) in &by_partition {
        let positions: Vec<usize> = records
            .iter()
            .map(|record| {
                let position = expected
                    .iter()
                    .position(|e| e == record)
                    .unwrap_or_else(|| panic!("unexpected record {record:?}"));
                if let Some(key) = &record.0 {
                    assert_eq!(
                        partition_for_key(key.as_bytes(), 3),
                        *partition,
                        "{record:?}"
                    );
                }
                position
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} holds records out of input order: {positions:?}"
        );
        seen += records.len();
    }
    assert_eq!(seen, expected.len(), "each line exactly once");
}

/// A partition the topic does not have, and a topic that does not exist: exit code 1 and an
/// error that names the topic (and partition).
#[test]
fn undeliverable_records_fail_the_command_naming_topic_and_partition() {
    let broker = TansuBroker::start(Storage::Memory);
    broker.create_topic("three", 3);
    let bootstrap = broker.bootstrap();

    let output = konsumer(
        &["produce", "-b", &bootstrap, "-t", "three", "-p", "7"],
        b"a\nb\tc\n",
    );
    let stderr = failed_with(&output, 1);
    assert!(
        stderr.contains("2 of 2 record(s) to topic three were not acknowledged"),
        "{stderr}"
    );
    assert!(
        stderr.contains("topic three partition 7: 2 record(s)"),
        "{stderr}"
    );
    assert!(stderr.contains("UnknownTopicOrPartition"), "{stderr}");
    assert!(!text(&output.stdout).contains("produced"));

    let output = konsumer(&["produce", "-b", &bootstrap, "-t", "missing"], b"x\n");
    let stderr = failed_with(&output, 1);
    assert!(
        stderr.contains("to topic missing were not acknowledged"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown topic missing"), "{stderr}");
}

/// No broker at the address: exit 1 with the address in the message, within the timeout
/// given; a malformed address and an unknown codec are refused before any connection.
#[test]
fn unreachable_or_malformed_brokers_and_bad_flags_are_refused() {
    let address = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let output = konsumer(
        &["produce", "-b", &address, "-t", "t", "--timeout", "2s"],
        b"never sent\n",
    );
    let stderr = failed_with(&output, 1);
    assert!(
        stderr.starts_with(&format!("error: cannot connect to {address}:")),
        "{stderr}"
    );
    assert!(stderr.contains("no bootstrap broker answered"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let output = konsumer(
        &["group", "describe", "g", "-b", &address, "--timeout", "1s"],
        b"",
    );
    let stderr = failed_with(&output, 1);
    assert!(
        stderr.contains(&format!("cannot connect to {address}")),
        "{stderr}"
    );

    let output = konsumer(&["produce", "-b", "no-port-here", "-t", "t"], b"");
    let stderr = failed_with(&output, 1);
    assert!(
        stderr.contains("`no-port-here` is not host:port"),
        "{stderr}"
    );

    // Bad flags: clap's message and exit code 2.
    let output = konsumer(
        &[
            "produce",
            "-b",
            &address,
            "-t",
            "t",
            "--compression",
            "brotli",
        ],
        b"",
    );
    let stderr = failed_with(&output, 2);
    assert!(stderr.contains("invalid value 'brotli'"), "{stderr}");
    let output = konsumer(&["produce", "-t", "t"], b"");
    let stderr = failed_with(&output, 2);
    assert!(stderr.contains("--brokers"), "{stderr}");
}

/// The partition table of `group describe`: (topic, partition) -> [committed, end, lag].
fn partition_rows(stdout: &str) -> BTreeMap<(String, i32), [String; 3]> {
    let table = stdout
        .split("\nTOPIC ")
        .nth(1)
        .unwrap_or_else(|| panic!("no partition table in:\n{stdout}"));
    table
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 6, "{line:?}");
            let key = (cells[0].to_owned(), cells[1].parse().expect("partition"));
            (key, [cells[2], cells[3], cells[4]].map(str::to_owned))
        })
        .collect()
}

/// A header field of `group describe` (`STATE`, `MEMBERS`, ...).
fn field<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in:\n{stdout}"))
}

/// Offsets committed by a librdkafka member: describe shows each partition's committed offset,
/// its log end offset and the lag, exactly; `-` where nothing was committed. After the member
/// leaves, the group is empty and the offsets are still shown.
///
/// Memory storage, because tansu 0.6.0's sqlite engine cannot describe a group at all: every
/// DescribeGroups for a group it has stored fails inside the broker (its group record is JSON
/// encoded twice) and the connection is closed. The memory engine answers ListOffsets(latest)
/// with the base offset of the partition's last batch + 1, which is the true end offset only
/// when that batch holds one record; so each partition's last record is produced by a run of
/// its own, as a batch of one.
#[test]
fn describe_shows_members_committed_end_offsets_and_lag() {
    let broker = TansuBroker::start(Storage::Memory);
    broker.create_topic("orders", 3);
    let bootstrap = broker.bootstrap();
    for (partition, count) in [(0, 5), (1, 7), (2, 3)] {
        let partition = partition.to_string();
        let args = [
            "produce", "-b", &bootstrap, "-t", "orders", "-p", &partition,
        ];
        let lines: String = (1..count).map(|i| format!("k{i}\tv{i}\n")).collect();
        succeeded(&konsumer(&args, lines.as_bytes()));
        succeeded(&konsumer(&args, b"last\tof this partition\n"));
    }

    let group = "describe-me";
    let member: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", group)
        .set("client.id", "cli-test-member")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .expect("an rdkafka consumer");
    member.subscribe(&["orders"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    while member.assignment().map_or(0, |a| a.count()) < 3 {
        assert!(Instant::now() < deadline, "librdkafka got no assignment");
        if let Some(Err(error)) = member.poll(Duration::from_millis(100)) {
            panic!("librdkafka consumer error: {error}");
        }
    }
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("orders", 0, Offset::Offset(2))
        .unwrap();
    offsets
        .add_partition_offset("orders", 1, Offset::Offset(7))
        .unwrap();
    member
        .commit(&offsets, CommitMode::Sync)
        .expect("offsets committed");

    let expected_rows = BTreeMap::from([
        (("orders".to_owned(), 0), ["2", "5", "3"].map(str::to_owned)),
        (("orders".to_owned(), 1), ["7", "7", "0"].map(str::to_owned)),
        (("orders".to_owned(), 2), ["-", "3", "-"].map(str::to_owned)),
    ]);
    let output = konsumer(&["group", "describe", group, "-b", &bootstrap], b"");
    let stdout = succeeded(&output);
    assert_eq!(field(&stdout, "GROUP"), group, "{stdout}");
    assert_eq!(field(&stdout, "STATE"), "Stable", "{stdout}");
    assert_eq!(field(&stdout, "MEMBERS"), "1", "{stdout}");
    assert_eq!(field(&stdout, "TOTAL-LAG"), "3", "{stdout}");
    let members: Vec<&str> = stdout
        .split("MEMBER-ID  ")
        .nth(1)
        .expect("a member table")
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(members.len(), 1, "{stdout}");
    // Only the committed offsets of partitions 0 and 1 exist; partition 2 shows up because the
    // member holds it (a broker that reports assignments) or not at all (tansu 0.6.0 sends
    // empty assignment bytes in DescribeGroups).
    let rows = partition_rows(&stdout);
    for (key, row) in &rows {
        assert_eq!(expected_rows.get(key), Some(row), "{stdout}");
    }
    assert!(rows.contains_key(&("orders".to_owned(), 0)), "{stdout}");
    assert!(rows.contains_key(&("orders".to_owned(), 1)), "{stdout}");

    // The member leaves; the offsets stay.
    drop(member);
    let deadline = Instant::now() + Duration::from_secs(15);
    let stdout = loop {
        let stdout = succeeded(&konsumer(
            &["group", "describe", group, "-b", &bootstrap],
            b"",
        ));
        if field(&stdout, "MEMBERS") == "0" || Instant::now() > deadline {
            break stdout;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(field(&stdout, "MEMBERS"), "0", "{stdout}");
    assert_eq!(field(&stdout, "STATE"), "Empty", "{stdout}");
    let rows = partition_rows(&stdout);
    assert_eq!(rows.len(), 2, "{stdout}");
    for (key, row) in &rows {
        assert_eq!(expected_rows.get(key), Some(row), "{stdout}");
    }
}

/// A group that has never existed: exit 1, saying so.
#[test]
fn describing_an_unknown_group_fails() {
    let broker = TansuBroker::start(Storage::Sqlite);
    let output = konsumer(
        &[
            "group",
            "describe",
            "nobody-here",
            "-b",
            &broker.bootstrap(),
        ],
        b"",
    );
    let stderr = failed_with(&output, 1);
    assert_eq!(
        stderr.trim(),
        "error: consumer group \"nobody-here\" does not exist"
    );
}

// ---- konsumer consume ----

/// `konsumer ARGS` running in the background: its stdout lines and stderr are collected by
/// threads as they come. Killed (SIGKILL) if dropped while still running.
struct Running {
    child: std::process::Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_konsumer"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the konsumer binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let lines = stdout.clone();
        let text = stderr.clone();
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            }),
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    let mut text = text.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            }),
        ];
        Running {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGINT, as Ctrl-C sends it.
    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -INT failed");
    }

    /// Waits for the exit (at most `limit`) and for the readers to see end-of-file.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "konsumer did not exit within {limit:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().expect("output reader");
        }
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Keyed input lines `key-i<TAB>value-i` for `range`, and the line `konsumer consume` prints
/// for each, by (partition, offset): each partition's records get offsets from `first[p]` on,
/// in input order (the producer keeps a partition's order).
fn keyed_lines(
    topic: &str,
    partitions: i32,
    range: std::ops::Range<usize>,
    first: &mut BTreeMap<i32, i64>,
) -> (String, BTreeMap<(i32, i64), String>) {
    let mut input = String::new();
    let mut expected = BTreeMap::new();
    for i in range {
        let (key, value) = (format!("key-{i}"), format!("value {i}"));
        input.push_str(&format!("{key}\t{value}\n"));
        let partition = partition_for_key(key.as_bytes(), partitions);
        let offset = first.entry(partition).or_insert(0);
        expected.insert(
            (partition, *offset),
            format!("{topic}/{partition}/{offset}\t{key}\t{value}"),
        );
        *offset += 1;
    }
    (input, expected)
}

/// (partition, offset) of a `consume` output line.
fn position(line: &str) -> (i32, i64) {
    let place = line.split('\t').next().unwrap_or_default();
    let mut parts = place.rsplitn(3, '/');
    let offset = parts.next().and_then(|o| o.parse().ok());
    let partition = parts.next().and_then(|p| p.parse().ok());
    match (partition, offset) {
        (Some(p), Some(o)) => (p, o),
        _ => panic!("not a consume line: {line:?}"),
    }
}

/// Checks that each partition's lines come in offset order; returns the lines by position,
/// panicking on a repeat.
fn by_position(lines: &[String]) -> BTreeMap<(i32, i64), String> {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for line in lines {
        let (partition, offset) = position(line);
        if let Some(previous) = last.insert(partition, offset) {
            assert!(
                offset > previous,
                "partition {partition}: {offset} after {previous}"
            );
        }
        assert!(
            out.insert((partition, offset), line.clone()).is_none(),
            "printed twice: {line:?}"
        );
    }
    out
}

/// 50 records produced by the CLI (keyed ones spread by murmur2; then, pinned to partition 0,
/// lines without a key, an empty value, and non-ASCII text) come back from `consume
/// --from-beginning --count 50` as exactly the expected lines, each partition in offset order,
/// and the command exits 0 on its own.
#[test]
fn consume_prints_every_record_as_a_line_and_stops_at_the_count() {
    let broker = TansuBroker::start(Storage::Memory);
    broker.create_topic("lines", 3);
    let bootstrap = broker.bootstrap();
    let mut next = BTreeMap::new();
    let (input, mut expected) = keyed_lines("lines", 3, 0..45, &mut next);
    succeeded(&konsumer(
        &["produce", "-b", &bootstrap, "-t", "lines"],
        input.as_bytes(),
    ));
    let pinned = ["no key 1", "no key 2", "k\t", "clé\tvaleur ünïcode", "last"];
    succeeded(&konsumer(
        &["produce", "-b", &bootstrap, "-t", "lines", "-p", "0"],
        format!("{}\n", pinned.join("\n")).as_bytes(),
    ));
    let zero = next.get(&0).copied().unwrap_or(0);
    for (i, line) in pinned.iter().enumerate() {
        let (key, value) = line.split_once('\t').unwrap_or(("", line));
        expected.insert(
            (0, zero + i as i64),
            format!("lines/0/{}\t{key}\t{value}", zero + i as i64),
        );
    }
    assert_eq!(expected.len(), 50);

    let started = Instant::now();
    let output = konsumer(
        &[
            "consume",
            "-b",
            &bootstrap,
            "-g",
            "printer",
            "-t",
            "lines",
            "--from-beginning",
            "--count",
            "50",
        ],
        b"",
    );
    let stdout = succeeded(&output);
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 50, "{stdout}");
    assert!(stdout.ends_with('\n'));
    assert_eq!(by_position(&lines), expected);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// Commits follow the output: `--count 20` prints 20 records and commits exactly those; a
/// second member of the same group with `--count 30` prints exactly the other 30 (no gap, no
/// repeat, each partition continuing where the first stopped); a third prints nothing and
/// exits 0 on SIGINT. Sqlite storage: the second member resumes inside produced batches,
/// which tansu's memory engine cannot fetch from.
#[test]
fn consume_commits_only_what_it_printed() {
    let broker = TansuBroker::start(Storage::Sqlite);
    broker.create_topic("resume", 3);
    let bootstrap = broker.bootstrap();
    let (input, expected) = keyed_lines("resume", 3, 0..50, &mut BTreeMap::new());
    succeeded(&konsumer(
        &["produce", "-b", &bootstrap, "-t", "resume"],
        input.as_bytes(),
    ));
    let consume = |count: &str| {
        konsumer(
            &[
                "consume",
                "-b",
                &bootstrap,
                "-g",
                "resumer",
                "-t",
                "resume",
                "--from-beginning",
                "-n",
                count,
                "--session-timeout",
                "6s",
            ],
            b"",
        )
    };
    let first: Vec<String> = succeeded(&consume("20"))
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(first.len(), 20, "{first:?}");
    let second: Vec<String> = succeeded(&consume("30"))
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(second.len(), 30, "{second:?}");

    let first = by_position(&first);
    let second = by_position(&second);
    // Per partition the first run printed a prefix and the second the rest.
    for partition in 0..3 {
        let ends_at = first
            .keys()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| o + 1)
            .max()
            .unwrap_or(0);
        let resumes_at = second
            .keys()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .min();
        if let Some(resumed) = resumes_at {
            assert_eq!(resumed, ends_at, "partition {partition}: a gap or a repeat");
        }
    }
    let mut all = first.clone();
    for (position, line) in second {
        assert!(all.insert(position, line).is_none(), "printed twice");
    }
    assert_eq!(all, expected);

    // Everything is committed: a third member finds nothing, and stops cleanly on SIGINT.
    let mut third = Running::start(&[
        "consume",
        "-b",
        &bootstrap,
        "-g",
        "resumer",
        "-t",
        "resume",
        "--from-beginning",
        "--session-timeout",
        "6s",
        "-v",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while third.stderr().matches("partition starts").count() < 3 {
        assert!(
            Instant::now() < deadline,
            "the third member got no partitions:\n{}",
            third.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    third.interrupt();
    let status = third.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}:\n{}", third.stderr());
    assert_eq!(third.lines(), Vec::<String>::new());
    assert!(
        third.stderr().contains("left the group"),
        "{}",
        third.stderr()
    );
}

/// Two `konsumer consume` processes in one group split a topic's 4 partitions: together they
/// print each of 200 records exactly once, every partition by one of them only; `group
/// describe` then shows lag 0 everywhere; both exit 0 on SIGINT.
///
/// Memory storage, because tansu 0.6.0 cannot describe a group stored by its sqlite engine.
/// The members join before anything is produced (the memory engine cannot fetch from an offset
/// inside a batch, where a partition moved in a rebalance might resume), and each partition's
/// last record is produced alone (the memory engine's end offset is right only then).
#[test]
fn two_consumers_split_the_partitions_and_print_every_record_once() {
    let broker = TansuBroker::start(Storage::Memory);
    broker.create_topic("split", 4);
    let bootstrap = broker.bootstrap();
    let member = || {
        Running::start(&[
            "consume",
            "-b",
            &bootstrap,
            "-g",
            "splitters",
            "-t",
            "split",
            "--from-beginning",
            "--commit-interval",
            "200ms",
            "--session-timeout",
            "6s",
            "-v",
        ])
    };
    let mut members = [member(), member()];
    let describe = || {
        succeeded(&konsumer(
            &["group", "describe", "splitters", "-b", &bootstrap],
            b"",
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stdout = describe();
        if field(&stdout, "MEMBERS") == "2" && field(&stdout, "STATE") == "Stable" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle:\n{stdout}\n{}\n{}",
            members[0].stderr(),
            members[1].stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));

    let mut next = BTreeMap::new();
    let (input, mut expected) = keyed_lines("split", 4, 0..196, &mut next);
    succeeded(&konsumer(
        &["produce", "-b", &bootstrap, "-t", "split"],
        input.as_bytes(),
    ));
    for partition in 0..4 {
        let offset = next.get(&partition).copied().unwrap_or(0);
        let p = partition.to_string();
        succeeded(&konsumer(
            &["produce", "-b", &bootstrap, "-t", "split", "-p", &p],
            format!("last-{p}\tend of partition {p}\n").as_bytes(),
        ));
        expected.insert(
            (partition, offset),
            format!("split/{partition}/{offset}\tlast-{p}\tend of partition {p}"),
        );
    }
    assert_eq!(expected.len(), 200);

    let deadline = Instant::now() + Duration::from_secs(60);
    while members.iter().map(|m| m.lines().len()).sum::<usize>() < 200 {
        assert!(
            Instant::now() < deadline,
            "{} + {} of 200 records printed:\n{}\n{}",
            members[0].lines().len(),
            members[1].lines().len(),
            members[0].stderr(),
            members[1].stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The offsets catch up with the ends of the partitions. (A partition shows up once it has
    // a committed offset: tansu 0.6.0 describes members without their assignments.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let stdout = loop {
        let stdout = describe();
        let rows = partition_rows(&stdout);
        if rows.len() == 4 && rows.values().all(|[_, _, lag]| lag == "0") {
            break stdout;
        }
        assert!(Instant::now() < deadline, "lag stays:\n{stdout}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(field(&stdout, "MEMBERS"), "2", "{stdout}");
    assert_eq!(field(&stdout, "TOTAL-LAG"), "0", "{stdout}");
    let rows = partition_rows(&stdout);
    for ((topic, partition), [committed, end, lag]) in &rows {
        let count = next.get(partition).copied().unwrap_or(0) + 1;
        assert_eq!(topic, "split");
        assert_eq!(committed, &count.to_string(), "{stdout}");
        assert_eq!(end, &count.to_string(), "{stdout}");
        assert_eq!(lag, "0", "{stdout}");
    }

    for member in &members {
        member.interrupt();
    }
    let mut printed = Vec::new();
    for member in &mut members {
        let status = member.wait(Duration::from_secs(30));
        assert!(status.success(), "{status}:\n{}", member.stderr());
        assert!(
            member.stderr().contains("left the group"),
            "{}",
            member.stderr()
        );
        printed.push(by_position(&member.lines()));
    }

    // A split: both printed, no partition by both, and together everything once.
    let partitions = |p: &BTreeMap<(i32, i64), String>| {
        p.keys()
            .map(|(partition, _)| *partition)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (a, b) = (partitions(&printed[0]), partitions(&printed[1]));
    assert!(!a.is_empty() && !b.is_empty(), "no split: {a:?} / {b:?}");
    assert!(
        a.is_disjoint(&b),
        "a partition printed by both: {a:?} / {b:?}"
    );
    let mut all = printed[0].clone();
    for (position, line) in printed[1].clone() {
        assert!(all.insert(position, line).is_none(), "printed twice");
    }
    assert_eq!(all, expected);
}

/// The CLI through TLS (stunnel, throwaway CA) and SASL SCRAM-SHA-512 on tansu with
/// authentication on: `produce` then `consume` every record, the password taken from the
/// environment; a wrong password fails with an authentication error that does not show it.
#[test]
fn produce_and_consume_through_tls_and_scram_with_the_password_from_the_environment() {
    use konsumer_actors::testkit::{Stunnel, TestCa};
    let tls_port = free_port();
    let mut broker = TansuBroker::start_advertising(Storage::Sqlite, tls_port);
    broker.create_topic("secure-lines", 2);
    broker.create_user("cli-user", "cli-password-5521", "scram512");
    broker.require_authentication();
    let ca = TestCa::new("konsumer CLI test CA");
    let _stunnel = Stunnel::start(tls_port, broker.addr(), &ca.server(&["127.0.0.1"]), None);
    let ca_file = ca.write_cert(broker.dir());
    let ca_file = ca_file.to_str().expect("UTF-8 path");
    let bootstrap = format!("127.0.0.1:{tls_port}");
    let secure = |command: &str| {
        let mut args = vec![command, "-b", &bootstrap, "--tls-ca-file", ca_file];
        args.extend([
            "--sasl-mechanism",
            "SCRAM-SHA-512",
            "--sasl-username",
            "cli-user",
        ]);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let env = [("KONSUMER_SASL_PASSWORD", "cli-password-5521")];
    let mut produce = secure("produce");
    produce.extend(["-t", "secure-lines"].map(String::from));
    let produce: Vec<&str> = produce.iter().map(String::as_str).collect();
    let input: String = (0..40).map(|i| format!("k{i}\tv{i}\n")).collect();
    succeeded(&konsumer_env(&produce, input.as_bytes(), &env));

    let mut consume = secure("consume");
    consume.extend(
        [
            "-g",
            "secure-printer",
            "-t",
            "secure-lines",
            "--from-beginning",
            "--count",
            "40",
        ]
        .map(String::from),
    );
    let consume: Vec<&str> = consume.iter().map(String::as_str).collect();
    let stdout = succeeded(&konsumer_env(&consume, b"", &env));
    let mut values: Vec<&str> = stdout
        .lines()
        .map(|line| line.rsplit('\t').next().unwrap_or_default())
        .collect();
    values.sort_by_key(|v| v[1..].parse::<u32>().unwrap_or(u32::MAX));
    let expected: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected, "{stdout}");

    let wrong = [("KONSUMER_SASL_PASSWORD", "wrong-password-0007")];
    let stderr = failed_with(&konsumer_env(&produce, b"x\n", &wrong), 1);
    assert!(stderr.contains("bad username or password"), "{stderr}");
    assert!(!stderr.contains("wrong-password-0007"), "{stderr}");

    let stderr = failed_with(&konsumer_env(&produce, b"x\n", &[]), 1);
    assert!(
        stderr.contains("KONSUMER_SASL_PASSWORD is not set"),
        "{stderr}"
    );
}
