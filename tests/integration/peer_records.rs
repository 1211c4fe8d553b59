//! Record sets written by real producers (librdkafka, kafka-python), fetched raw from a real
//! broker (tansu, memory storage), kept as fixtures in `tests/fixtures/records/` with the records
//! they must decode to. See that folder's README.md.
//!
//! `capture_record_fixtures` (ignored) writes the fixtures; `scripts/capture-fixtures.sh` runs it.
//! The helpers here (`expected_record`, `produce_with_rdkafka`, `fetch_raw`) serve other tests too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use actix::Addr;
use bytes::Bytes;
use futures_util::future::join_all;
use konsumer::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use konsumer::kafka_protocol::messages::{FetchRequest, TopicName};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::ClientConfig;
use konsumer_actors::messages::{GetMetadata, Route};
use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
use konsumer_actors::testkit::CapturedLog;
use konsumer_actors::{Call, Cluster, Purpose, Target};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Records per fixture.
const RECORDS: usize = 40;
/// Records per produced batch (and per legacy wrapper message).
const BATCH: usize = 10;
/// CreateTime of record 0, in ms; record i is `i` seconds later.
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;
/// Fetch v13 names topics by id instead of by name, and tansu 0.6.0 answers a v12 Fetch with a
/// top-level tagged field 0 (NodeEndpoints, valid from v16) that kafka-protocol refuses to decode
/// at v12. v11 is the newest version without tagged fields.
const FETCH_MAX_VERSION: i16 = 11;
/// Large enough for every fixture in one response.
const FETCH_MAX_BYTES: i32 = 16 * 1024 * 1024;
/// The magic-2 (RecordBatch) codecs of the fixtures, as both producers name them.
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
/// The legacy MessageSet codecs (zstd needs magic 2).
const LEGACY_CODECS: [&str; 4] = ["none", "gzip", "snappy", "lz4"];

/// One record as the generator makes it; what a decoder must give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpectedRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// In order; a `None` value is a null header value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// CreateTime in ms (-1 for magic 0, which has no timestamps).
    pub timestamp: i64,
}

/// Record `i` of every fixture, as librdkafka sends it: the `empty` header of every third record
/// has a null value. (kafka-python cannot send a null header value and writes empty bytes; legacy
/// messages have no headers: see [`Writer::expected`].) Same generator as
/// `scripts/produce_fixtures.py`.
pub(crate) fn expected_record(i: usize) -> ExpectedRecord {
    let key = (i % 7 != 3).then(|| format!("key-{i}").into_bytes());
    let value = (i % 11 != 5).then(|| format!("value-{i}-{}", "abcdefghij".repeat(9)).into_bytes());
    let trace = ("trace".to_owned(), Some(format!("t-{i}").into_bytes()));
    let headers = match i % 3 {
        0 => vec![trace, ("empty".to_owned(), None)],
        1 => vec![trace],
        _ => Vec::new(),
    };
    ExpectedRecord {
        key,
        value,
        headers,
        timestamp: BASE_TIMESTAMP + i as i64 * 1000,
    }
}

/// Produces records `0..n` of the generator to partition 0 of `topic` with librdkafka (acks=all,
/// `compression.codec` = `codec`), in batches of 10: each group of 10 is delivered before the
/// next is queued, and `batch.num.messages=10` sends a group as soon as it is complete.
///
/// # Panics
/// If the producer cannot be made or a record is not delivered.
pub(crate) async fn produce_with_rdkafka(bootstrap: &str, topic: &str, codec: &str, n: usize) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "konsumer-fixtures")
        .set("acks", "all")
        .set("compression.codec", codec)
        .set("batch.num.messages", BATCH.to_string())
        .set("linger.ms", "1000")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("an rdkafka producer from a valid configuration");
    let mut first = None;
    for start in (0..n).step_by(BATCH) {
        let records: Vec<ExpectedRecord> =
            (start..n.min(start + BATCH)).map(expected_record).collect();
        let sends = records.iter().map(|record| {
            let mut message = FutureRecord::<[u8], [u8]>::to(topic)
                .partition(0)
                .timestamp(record.timestamp);
            if let Some(key) = &record.key {
                message = message.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_slice());
            }
            if !record.headers.is_empty() {
                let headers = record.headers.iter().fold(
                    OwnedHeaders::new_with_capacity(record.headers.len()),
                    |headers, (key, value)| {
                        headers.insert(Header {
                            key,
                            value: value.as_deref(),
                        })
                    },
                );
                message = message.headers(headers);
            }
            producer.send(message, Duration::from_secs(10))
        });
        for (i, delivered) in (start..).zip(join_all(sends).await) {
            let delivery = delivered
                .unwrap_or_else(|(e, _)| panic!("librdkafka could not deliver record {i}: {e}"));
            assert_eq!(delivery.partition, 0, "record {i}");
            // Offsets follow the generator's order (from wherever the partition was).
            let first = *first.get_or_insert(delivery.offset - i as i64);
            assert_eq!(delivery.offset, first + i as i64, "record {i}");
        }
    }
}

/// One Fetch of `topic`/`partition` from offset `from`: the raw record set bytes the broker
/// returned (empty if none). Refreshes the cluster's metadata first if it does not know the
/// partition's leader yet (a topic created after connecting).
///
/// # Panics
/// If the request fails or the broker answers with an error code.
pub(crate) async fn fetch_raw(
    cluster: &Addr<Cluster>,
    topic: &str,
    partition: i32,
    from: i64,
) -> Bytes {
    fetch_raw_versioned(cluster, topic, partition, from).await.0
}

/// [`fetch_raw`], and the Fetch version the connection used.
async fn fetch_raw_versioned(
    cluster: &Addr<Cluster>,
    topic: &str,
    partition: i32,
    from: i64,
) -> (Bytes, i16) {
    let metadata = cluster
        .send(GetMetadata { refresh: false })
        .await
        .expect("the cluster actor is running")
        .expect("metadata");
    if metadata.leader(topic, partition).is_err() {
        let metadata = cluster
            .send(GetMetadata { refresh: true })
            .await
            .expect("the cluster actor is running")
            .expect("refreshed metadata");
        metadata
            .leader(topic, partition)
            .unwrap_or_else(|e| panic!("no leader for {topic}/{partition}: {e}"));
    }

    let request = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_isolation_level(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(from)
                .with_partition_max_bytes(FETCH_MAX_BYTES)])]);
    let route = Route {
        target: Target::Leader {
            topic: topic.to_owned(),
            partition,
        },
        purpose: Purpose::Fetch,
        call: Call::new(request).with_max_version(FETCH_MAX_VERSION),
    };
    let reply = cluster
        .send(route)
        .await
        .expect("the cluster actor is running")
        .unwrap_or_else(|e| panic!("fetch of {topic}/{partition} at {from} failed: {e}"));
    let version = reply.version;
    let response = reply
        .into_typed::<FetchRequest>("tansu")
        .expect("a Fetch response to a Fetch request");
    assert_eq!(response.error_code, 0, "fetch error code");
    let data = response
        .responses
        .iter()
        .filter(|t| t.topic.0.as_str() == topic)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
        .unwrap_or_else(|| panic!("the fetch response lacks {topic}/{partition}: {response:?}"));
    assert_eq!(
        data.error_code, 0,
        "fetch error code for {topic}/{partition}"
    );
    (data.records.clone().unwrap_or_default(), version)
}

/// One top-level entry of a record set: a RecordBatch (magic 2) or a legacy message (magic 0/1,
/// for a compressed wrapper the offset of its last inner message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    start: usize,
    len: usize,
    magic: i8,
    last_offset: i64,
}

/// The complete entries at the head of `set`, from their headers alone (no CRC check, no
/// decompression): base offset i64 at byte 0, length i32 at 8 (bytes after it), magic at 16,
/// and for magic 2 the last offset delta i32 at 23. A truncated last entry is left out.
fn walk(set: &[u8]) -> Vec<Entry> {
    /// The smallest entries: a legacy message with null key and value (offset, length, CRC,
    /// magic, attributes, key and value lengths), and a RecordBatch v2 header.
    const MIN_LEGACY: usize = 26;
    const MIN_BATCH: usize = 61;
    let mut entries = Vec::new();
    let mut start = 0;
    loop {
        let rest = &set[start..];
        let be_i64 = |at: usize| {
            rest.get(at..at + 8)
                .map(|b| i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        };
        let be_i32 = |at: usize| {
            rest.get(at..at + 4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (Some(offset), Some(length), Some(&magic)) = (be_i64(0), be_i32(8), rest.get(16))
        else {
            break;
        };
        let magic = magic as i8;
        let Ok(len) = usize::try_from(length).map(|length| 12 + length) else {
            break;
        };
        let smallest = if magic == 2 { MIN_BATCH } else { MIN_LEGACY };
        if len < smallest || len > rest.len() {
            break; // corrupt, or the truncated last entry of a response
        }
        let last_offset = match magic {
            2 => be_i32(23).map_or(offset, |delta| offset + i64::from(delta)),
            _ => offset,
        };
        entries.push(Entry {
            start,
            len,
            magic,
            last_offset,
        });
        start += len;
    }
    entries
}

/// What a capture fetched: the record set for offsets `0..n`, whole entries only.
struct Fetched {
    set: Vec<u8>,
    entries: Vec<Entry>,
    fetches: usize,
    version: i16,
}

/// Fetches partition 0 of `topic` from offset 0 until it has every record of `0..n`, fetching
/// again from the next offset when a response stops short. Entries that end before the
/// requested offset are skipped.
async fn fetch_all(cluster: &Addr<Cluster>, topic: &str, n: usize) -> Fetched {
    let n = n as i64;
    let mut fetched = Fetched {
        set: Vec::new(),
        entries: Vec::new(),
        fetches: 0,
        version: 0,
    };
    let mut next = 0;
    while next < n {
        assert!(
            fetched.fetches < 50,
            "{topic}: only offsets below {next} after {} fetches",
            fetched.fetches
        );
        let (chunk, version) = fetch_raw_versioned(cluster, topic, 0, next).await;
        fetched.fetches += 1;
        fetched.version = version;
        let before = next;
        for entry in walk(&chunk) {
            if entry.last_offset < next {
                continue;
            }
            fetched.entries.push(Entry {
                start: fetched.set.len(),
                ..entry
            });
            fetched
                .set
                .extend_from_slice(&chunk[entry.start..entry.start + entry.len]);
            next = entry.last_offset + 1;
        }
        if next == before {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        next, n,
        "{topic}: the partition holds more than {n} records"
    );
    fetched
}

/// Who wrote a fixture, which decides how the generator's records look on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// RecordBatch v2 with null header values.
    Librdkafka,
    /// RecordBatch v2; null header values become empty bytes.
    KafkaPython,
    /// Legacy MessageSet magic 0 or 1: no headers; magic 0 has no timestamp (-1).
    KafkaPythonLegacy(i8),
}

impl Writer {
    /// The magic byte of every entry this writer's fixtures hold.
    fn magic(self) -> i8 {
        match self {
            Writer::Librdkafka | Writer::KafkaPython => 2,
            Writer::KafkaPythonLegacy(magic) => magic,
        }
    }

    fn expected(self, i: usize) -> ExpectedRecord {
        let mut record = expected_record(i);
        match self {
            Writer::Librdkafka => {}
            Writer::KafkaPython => {
                for (_, value) in &mut record.headers {
                    value.get_or_insert_with(Vec::new);
                }
            }
            Writer::KafkaPythonLegacy(magic) => {
                record.headers.clear();
                if magic == 0 {
                    record.timestamp = -1;
                }
            }
        }
        record
    }

    /// The expected-records file: `offset\ttimestamp\tkey\tvalue\theaders` per record.
    fn tsv(self, n: usize) -> String {
        (0..n)
            .map(|i| {
                let record = self.expected(i);
                let headers: Vec<String> = record
                    .headers
                    .iter()
                    .map(|(name, value)| format!("{name}={}", hex_or_dash(value.as_deref())))
                    .collect();
                format!(
                    "{i}\t{}\t{}\t{}\t{}\n",
                    record.timestamp,
                    hex_or_dash(record.key.as_deref()),
                    hex_or_dash(record.value.as_deref()),
                    headers.join(";")
                )
            })
            .collect()
    }
}

/// Every fixture: its file name (without extension) and who wrote it.
fn fixtures() -> Vec<(String, Writer)> {
    let mut all = Vec::new();
    for codec in CODECS {
        all.push((format!("librdkafka-{codec}"), Writer::Librdkafka));
    }
    for codec in CODECS {
        all.push((format!("kafka-python-{codec}"), Writer::KafkaPython));
    }
    for magic in [0, 1] {
        for codec in LEGACY_CODECS {
            all.push((
                format!("kafka-python-magic{magic}-{codec}"),
                Writer::KafkaPythonLegacy(magic),
            ));
        }
    }
    all
}

fn hex_or_dash(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "-".to_owned(),
        Some(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Runs `scripts/produce_fixtures.py` with `$KONSUMER_PYTHON` (default `python3`) off the
/// async runtime: its stdout (one JSON line) on success, else its status and stderr.
async fn python(args: Vec<String>) -> Result<String, String> {
    let interpreter = std::env::var("KONSUMER_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/produce_fixtures.py");
    let shown = format!("{interpreter} {} {}", script.display(), args.join(" "));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&interpreter).arg(&script).args(&args).output()
    })
    .await
    .expect("the blocking task ran")
    .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!(
            "`{shown}` failed ({}):\n{}",
            output.status,
            tail.join("\n")
        ))
    }
}

/// `produce_fixtures.py produce`: the generated records to `topic` with kafka-python, as RecordBatch
/// v2, or as a legacy MessageSet when `api_version` names an old broker.
async fn python_produce(
    bootstrap: &str,
    topic: &str,
    codec: &str,
    api_version: Option<&str>,
) -> Result<String, String> {
    let mut args: Vec<String> = [
        "produce",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--codec",
        codec,
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(version) = api_version {
        args.extend(["--api-version".to_owned(), version.to_owned()]);
    }
    python(args).await
}

fn capture_dir() -> PathBuf {
    let dir = std::env::var_os("KONSUMER_CAPTURE_DIR")
        .expect("set KONSUMER_CAPTURE_DIR (scripts/capture-fixtures.sh does)");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Writes `<name>.bin` and `<name>.tsv`; returns a line for the summary.
fn write_fixture(dir: &Path, name: &str, writer: Writer, set: &[u8], how: &str) -> String {
    let entries = walk(set);
    assert_eq!(
        entries.iter().map(|e| e.len).sum::<usize>(),
        set.len(),
        "{name}: the entries cover the whole record set"
    );
    let bin = dir.join(format!("{name}.bin"));
    std::fs::write(&bin, set).unwrap_or_else(|e| panic!("writing {}: {e}", bin.display()));
    let tsv = dir.join(format!("{name}.tsv"));
    std::fs::write(&tsv, writer.tsv(RECORDS))
        .unwrap_or_else(|e| panic!("writing {}: {e}", tsv.display()));
    let magics: Vec<String> = entries.iter().map(|e| e.magic.to_string()).collect();
    let last_offsets: Vec<String> = entries.iter().map(|e| e.last_offset.to_string()).collect();
    format!(
        "{name}: {} bytes, {} entries (magic {}; last offsets {}), {how}",
        set.len(),
        entries.len(),
        magics.join(","),
        last_offsets.join(",")
    )
}

#[actix::test]
#[ignore = "writes tests/fixtures/records; run by scripts/capture-fixtures.sh"]
async fn capture_record_fixtures() {
    let dir = capture_dir();
    let broker = TansuBroker::start(Storage::Memory);
    let bootstrap = broker.bootstrap();
    let (log, _) = CapturedLog::new();
    let mut config = ClientConfig::new([bootstrap.clone()]);
    config.request_timeout = Duration::from_secs(10);
    let cluster = Cluster::connect(config, log).await.expect("bootstrap");
    let mut summary = vec![format!(
        "librdkafka {}; broker tansu (memory storage) at {bootstrap}",
        rdkafka::util::get_rdkafka_version().1
    )];

    for codec in CODECS {
        let name = format!("librdkafka-{codec}");
        broker.create_topic(&name, 1);
        produce_with_rdkafka(&bootstrap, &name, codec, RECORDS).await;
        let fetched = fetch_all(&cluster, &name, RECORDS).await;
        assert!(fetched.entries.iter().all(|e| e.magic == 2), "{name}");
        let how = format!("{} fetch(es) at v{}", fetched.fetches, fetched.version);
        summary.push(write_fixture(
            &dir,
            &name,
            Writer::Librdkafka,
            &fetched.set,
            &how,
        ));
    }

    for codec in CODECS {
        let name = format!("kafka-python-{codec}");
        broker.create_topic(&name, 1);
        let produced = python_produce(&bootstrap, &name, codec, None)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let fetched = fetch_all(&cluster, &name, RECORDS).await;
        assert!(fetched.entries.iter().all(|e| e.magic == 2), "{name}");
        let how = format!(
            "{} fetch(es) at v{}; producer said {produced}",
            fetched.fetches, fetched.version
        );
        summary.push(write_fixture(
            &dir,
            &name,
            Writer::KafkaPython,
            &fetched.set,
            &how,
        ));
    }

    // Legacy MessageSets: produced to the broker if it takes them and serves them back as they
    // are, else (tansu 0.6.0) built offline with kafka-python's own legacy builder.
    for (magic, api_version) in [(0i8, "0.8.2"), (1, "0.10.1")] {
        for codec in LEGACY_CODECS {
            let name = format!("kafka-python-magic{magic}-{codec}");
            broker.create_topic(&name, 1);
            let produced = python_produce(&bootstrap, &name, codec, Some(api_version)).await;
            let refused = match produced {
                Ok(said) => {
                    let fetched = fetch_all(&cluster, &name, RECORDS).await;
                    if fetched.entries.iter().all(|e| e.magic == magic) {
                        let how = format!(
                            "produced with api_version {api_version}, {} fetch(es) at v{}; \
                             producer said {said}",
                            fetched.fetches, fetched.version
                        );
                        let writer = Writer::KafkaPythonLegacy(magic);
                        summary.push(write_fixture(&dir, &name, writer, &fetched.set, &how));
                        continue;
                    }
                    format!(
                        "accepted, but served back as magic {:?}",
                        fetched.entries.iter().map(|e| e.magic).collect::<Vec<_>>()
                    )
                }
                Err(e) => e.lines().last().unwrap_or_default().to_owned(),
            };
            let bin = dir.join(format!("{name}.bin"));
            let built = python(vec![
                "legacy".into(),
                "--magic".into(),
                magic.to_string(),
                "--codec".into(),
                codec.into(),
                "--out".into(),
                bin.display().to_string(),
            ])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let set = std::fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
            let how = format!(
                "OFFLINE (broker refused api_version {api_version}: {refused}); builder said \
                 {built}"
            );
            let writer = Writer::KafkaPythonLegacy(magic);
            summary.push(write_fixture(&dir, &name, writer, &set, &how));
        }
    }

    println!("captured into {}:", dir.display());
    for line in summary {
        println!("  {line}");
    }
}

/// The committed fixtures are all there, whole, and their expected records are the generator's:
/// so the Rust generator, the Python one and the files cannot drift apart unnoticed.
#[test]
fn record_fixtures_are_complete_and_match_the_generator() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records");
    for (name, writer) in fixtures() {
        let bin = dir.join(format!("{name}.bin"));
        let set = std::fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let entries = walk(&set);
        assert_eq!(
            entries.iter().map(|e| e.len).sum::<usize>(),
            set.len(),
            "{name}: whole entries only"
        );
        assert!(entries.len() > 1, "{name}: more than one batch");
        assert!(
            entries.iter().all(|e| e.magic == writer.magic()),
            "{name}: magic {}",
            writer.magic()
        );
        let last = entries.last().map(|e| e.last_offset);
        assert_eq!(
            last,
            Some(RECORDS as i64 - 1),
            "{name}: offsets 0..{RECORDS}"
        );
        assert!(set.len() < 64 * 1024, "{name}: small");

        let tsv = dir.join(format!("{name}.tsv"));
        let expected =
            std::fs::read_to_string(&tsv).unwrap_or_else(|e| panic!("{}: {e}", tsv.display()));
        assert!(
            expected == writer.tsv(RECORDS),
            "{name}.tsv differs from the generator"
        );
    }
}

/// The header walk the capture relies on: whole entries only, the smallest legacy message
/// counted, a truncated tail left out.
#[test]
fn walk_keeps_whole_entries_only() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records");
    let batches = std::fs::read(dir.join("librdkafka-none.bin")).expect("librdkafka-none.bin");
    let whole = walk(&batches);
    assert_eq!(whole.len(), 4);
    let cut = walk(&batches[..batches.len() - 5]);
    assert_eq!(cut, whole[..3]);
    assert!(walk(&batches[..60]).is_empty());

    // Record 38 has a null key and a null value: a 26-byte magic-0 message.
    let messages =
        std::fs::read(dir.join("kafka-python-magic0-none.bin")).expect("magic0-none.bin");
    let entries = walk(&messages);
    assert_eq!(entries.len(), 40);
    assert_eq!(entries[38].len, 26);
    assert_eq!(walk(&messages[..entries[38].start + 25]).len(), 38);
}
