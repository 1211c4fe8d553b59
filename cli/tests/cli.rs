//! The `konsumer` binary, run as a user would, against a real broker (tansu) that each test
//! starts on a free loopback port. librdkafka (the `rdkafka` crate) is the independent peer:
//! it reads back what the CLI produced and commits the offsets that `group describe` shows.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use konsumer_actors::core::partitioner::partition_for_key;
use konsumer_actors::testkit::tansu::{free_port, Storage, TansuBroker};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

/// Runs `konsumer ARGS` with `stdin` as its standard input; panics if it runs over a minute.
fn konsumer(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_konsumer"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the konsumer binary starts");
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    // Written from another thread, so a full pipe cannot deadlock with the output reads.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output().expect("waiting for konsumer");
        let _ = done_tx.send(());
        output
    });
    if done_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        panic!("konsumer {args:?} did not finish within 60 s");
    }
    writer.join().expect("stdin writer");
    waiter.join().expect("output reader")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Panics with the command's output unless it exited 0; returns its stdout.
fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "konsumer failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

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
