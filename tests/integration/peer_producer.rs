//! konsumer's Producer against a real broker (tansu), read back by the peer: librdkafka's
//! consumer must see every record, in order per partition, byte for byte, on the partition the
//! Java client's murmur2 partitioner picks for its key.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use konsumer::compression::Compression;
use konsumer::partitioner::partition_for_key;
use konsumer::producer::{Acks, ProducerConfig};
use konsumer::ClientConfig;
use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
use konsumer_actors::testkit::CapturedLog;
use konsumer_actors::{Enqueue, Producer, ProducerExt, ProducerRecord, ReportTo};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;

/// Record `i`: every other record has a key (from a set of 5,000, so keys repeat); values are
/// about 100 bytes of text that compresses, but not to nothing.
fn record(i: u64) -> (Option<Bytes>, Bytes) {
    let key = i
        .is_multiple_of(2)
        .then(|| Bytes::from(format!("key-{}", (i * 7919) % 5000)));
    let noise = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16) % 1_000_000_007;
    let value = format!(
        "{i:010}|{noise:012}|{}",
        "konsumer-producer-proof-".repeat(3)
    );
    (key, Bytes::from(value))
}

/// The record number a value starts with.
fn number(value: &[u8]) -> u64 {
    std::str::from_utf8(&value[..10])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("value does not start with a record number: {value:?}"))
}

/// What the producer reported for each record: (partition, offset).
type Placement = HashMap<u64, (i32, i64)>;

async fn produce_all(
    broker: &TansuBroker,
    topic: &str,
    codec: Compression,
    acks: Acks,
    count: u64,
) -> (Placement, Duration) {
    let (log, captured) = CapturedLog::new();
    let config = ProducerConfig {
        acks,
        compression: codec,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(ClientConfig::new([broker.bootstrap()]), config, log)
        .await
        .expect("producer connects");
    let (reports, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    for i in 0..count {
        let (key, value) = record(i);
        let mut record = ProducerRecord::new(topic).value(value);
        record.key = key;
        producer.do_send(Enqueue {
            record,
            opaque: i,
            report_to: ReportTo::Channel(reports.clone()),
        });
    }
    producer.flush().await;
    let elapsed = started.elapsed();
    drop(reports);
    let mut placement = Placement::new();
    while placement.len() < count as usize {
        let report = tokio::time::timeout(Duration::from_secs(30), delivered.recv())
            .await
            .expect("every record is reported")
            .expect("report channel open");
        let metadata = report
            .result
            .unwrap_or_else(|e| panic!("record {} failed: {e}", report.opaque));
        // acks=0: the broker does not say; -1 stands for unknown.
        let offset = match acks {
            Acks::None => metadata
                .offset
                .map_or(-1, |_| panic!("acks=0 has no offsets")),
            _ => metadata.offset.expect("acks=1 and acks=all report offsets"),
        };
        let before = placement.insert(report.opaque, (metadata.partition, offset));
        assert!(before.is_none(), "record {} reported twice", report.opaque);
    }
    producer.close().await;
    assert!(
        !captured.contains("broker connection failed"),
        "{topic}: a connection failed while producing"
    );
    (placement, elapsed)
}

/// Reads every partition of `topic` from the beginning with librdkafka until `count` records
/// have arrived; returns them per partition as (offset, key, value), in the order read.
#[allow(clippy::type_complexity)]
fn consume_with_rdkafka(
    bootstrap: &str,
    topic: &str,
    count: usize,
) -> BTreeMap<i32, Vec<(i64, Option<Vec<u8>>, Vec<u8>)>> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("readback-{topic}"))
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .expect("an rdkafka consumer from a valid configuration");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("valid offset");
    }
    consumer.assign(&assignment).expect("assign");
    let mut read: BTreeMap<i32, Vec<(i64, Option<Vec<u8>>, Vec<u8>)>> = BTreeMap::new();
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while total < count {
        assert!(
            Instant::now() < deadline,
            "librdkafka read {total} of {count} records of {topic}"
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
    // Nothing more than what was produced.
    let extra = consumer.poll(Duration::from_millis(500));
    assert!(
        extra.is_none(),
        "librdkafka read more than {count} records of {topic}"
    );
    read
}

/// 100,000 records per codec with acks=all: librdkafka reads back each one, at the offset and
/// partition the producer reported, in the order produced within each partition, with the same
/// key and value bytes; keyed records sit where murmur2 puts their key.
#[actix::test]
async fn librdkafka_reads_back_everything_konsumer_produced_with_each_codec() {
    let count: u64 = std::env::var("KONSUMER_PRODUCE_PROOF_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let broker = TansuBroker::start(Storage::Memory);
    for codec in Compression::ALL {
        let topic = format!("produced-{}", codec.name());
        broker.create_topic(&topic, PARTITIONS);
        let (placement, elapsed) = produce_all(&broker, &topic, codec, Acks::All, count).await;
        eprintln!(
            "{codec:?}: produced {count} records in {elapsed:?} ({:.0} records/s)",
            count as f64 / elapsed.as_secs_f64()
        );
        let bootstrap = broker.bootstrap();
        let topic_name = topic.clone();
        let read = tokio::task::spawn_blocking(move || {
            consume_with_rdkafka(&bootstrap, &topic_name, count as usize)
        })
        .await
        .expect("reader thread");
        let mut seen = 0;
        for (partition, records) in &read {
            let mut previous: Option<u64> = None;
            for (offset, key, value) in records {
                let i = number(value);
                let (expected_key, expected_value) = record(i);
                assert_eq!(
                    value.as_slice(),
                    &expected_value[..],
                    "{topic}: value of record {i}"
                );
                assert_eq!(
                    key.as_deref(),
                    expected_key.as_deref(),
                    "{topic}: key of record {i}"
                );
                assert_eq!(
                    placement.get(&i),
                    Some(&(*partition, *offset)),
                    "{topic}: record {i} read at {partition}/{offset}, reported elsewhere"
                );
                if let Some(key) = key {
                    assert_eq!(
                        partition_for_key(key, PARTITIONS),
                        *partition,
                        "{topic}: keyed record {i} on the wrong partition"
                    );
                }
                assert!(
                    previous.is_none_or(|p| p < i),
                    "{topic}/{partition}: record {i} after record {previous:?}"
                );
                previous = Some(i);
                seen += 1;
            }
        }
        assert_eq!(seen, count as usize, "{topic}: every record read once");
        assert_eq!(
            read.len(),
            PARTITIONS as usize,
            "{topic}: every partition used"
        );
    }
}

/// acks=1 and acks=0 on the real broker: everything arrives; with acks=0 the producer never
/// waits for an answer the broker does not send.
#[actix::test]
async fn acks_1_and_acks_0_deliver_everything() {
    let broker = TansuBroker::start(Storage::Memory);
    let count = 20_000;
    for (acks, topic) in [(Acks::Leader, "acks-1"), (Acks::None, "acks-0")] {
        broker.create_topic(topic, PARTITIONS);
        let (placement, _) = produce_all(&broker, topic, Compression::Lz4, acks, count).await;
        let bootstrap = broker.bootstrap();
        let read = tokio::task::spawn_blocking(move || {
            consume_with_rdkafka(&bootstrap, topic, count as usize)
        })
        .await
        .expect("reader thread");
        let mut seen = std::collections::HashSet::new();
        for (partition, records) in &read {
            for (offset, _, value) in records {
                let i = number(value);
                assert!(seen.insert(i), "{topic}: record {i} twice");
                let (reported_partition, reported_offset) = placement[&i];
                assert_eq!(reported_partition, *partition, "{topic}: record {i}");
                if acks == Acks::Leader {
                    assert_eq!(reported_offset, *offset, "{topic}: record {i}");
                }
            }
        }
        assert_eq!(seen.len(), count as usize, "{topic}");
    }
}
