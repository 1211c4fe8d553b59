//! The mocked cluster's data path, answered as a partition leader would: Fetch (leadership,
//! offsets out of range, whole stored batches cut by the size limits, KIP-74, the long poll)
//! and ListOffsets (earliest, latest, by timestamp), over the same connections a Fetcher uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Addr, Recipient};
use bytes::Bytes;
use konsumer::compression::Compression;
use konsumer::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use konsumer::kafka_protocol::messages::fetch_response::PartitionData;
use konsumer::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use konsumer::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use konsumer::kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ProduceRequest, TopicName,
};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::protocol::ApiKey;
use konsumer::records::{
    decode_all, decode_fetched, BatchBuilder, DecodeOptions, PartitionFetch, Record,
    RecordSetReader, NO_HEADERS,
};
use konsumer::{ClientConfig, KafkaCode};
use konsumer_actors::messages::{call, Call, ConnectionFor, Route};
use konsumer_actors::testkit::mock::KeyValue;
use konsumer_actors::testkit::{CapturedLog, MockCluster};
use konsumer_actors::{Cluster, Purpose, Target};

use crate::eventually;

/// Fetch v12 is the newest that names topics (v13+ use topic ids).
const FETCH_VERSION: i16 = 12;

fn mock() -> MockCluster {
    let mock = MockCluster::new();
    mock.add_broker(1, "mock-1", 9092)
        .add_broker(2, "mock-2", 9092)
        .add_topic("orders", &[1, 2, 1]);
    mock
}

async fn connect(mock: &MockCluster) -> Addr<Cluster> {
    let (log, _) = CapturedLog::new();
    let mut config = ClientConfig::new(["mock-1:9092"]);
    config.bootstrap_timeout = Duration::from_secs(2);
    Cluster::connect_with(Arc::new(config), log, mock.connector())
        .await
        .expect("bootstrap")
}

/// The cluster's fetch connection to broker `node`.
async fn fetch_connection(cluster: &Addr<Cluster>, node: i32) -> Recipient<Call> {
    let (id, connection) = cluster
        .send(ConnectionFor {
            target: Target::Broker(node),
            purpose: Purpose::Fetch,
        })
        .await
        .expect("cluster alive")
        .expect("a connection");
    assert_eq!(id, node);
    connection
}

/// What to fetch from one partition.
#[derive(Clone, Copy)]
struct Want {
    partition: i32,
    offset: i64,
    max_bytes: i32,
}

fn want(partition: i32, offset: i64) -> Want {
    Want {
        partition,
        offset,
        max_bytes: 1024 * 1024,
    }
}

/// A sessionless consumer fetch of `orders`, as a Fetcher sends it.
fn fetch_request(wants: &[Want], max_bytes: i32, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(
                wants
                    .iter()
                    .map(|w| {
                        FetchPartition::default()
                            .with_partition(w.partition)
                            .with_fetch_offset(w.offset)
                            .with_partition_max_bytes(w.max_bytes)
                    })
                    .collect(),
            )])
}

async fn fetch(connection: &Recipient<Call>, request: FetchRequest) -> FetchResponse {
    fetch_at(connection, request, FETCH_VERSION).await
}

async fn fetch_at(
    connection: &Recipient<Call>,
    request: FetchRequest,
    version: i16,
) -> FetchResponse {
    connection
        .send(Call::new(request).with_max_version(version))
        .await
        .expect("connection alive")
        .expect("fetch answered")
        .into_typed::<FetchRequest>("mock")
        .expect("a Fetch answer")
}

/// Fetches the given partitions of `orders` (no wait) and returns their answers in order.
async fn fetch_now(
    connection: &Recipient<Call>,
    wants: &[Want],
    max_bytes: i32,
) -> Vec<PartitionData> {
    let response = fetch(connection, fetch_request(wants, max_bytes, 0)).await;
    assert_eq!(response.responses.len(), 1);
    let partitions = response.responses[0].partitions.clone();
    assert_eq!(partitions.len(), wants.len());
    partitions
}

fn records_of(data: &PartitionData) -> Bytes {
    data.records.clone().unwrap_or_default()
}

fn offsets(records: &[Record]) -> Vec<i64> {
    records.iter().map(|r| r.offset).collect()
}

/// The (base offset, length) of each complete batch of a record set.
fn batches(set: Bytes) -> Vec<(i64, usize)> {
    let mut reader = RecordSetReader::new(set, DecodeOptions::default());
    let mut out = Vec::new();
    while let Some(batch) = reader.next_batch() {
        let batch = batch.expect("a valid batch");
        out.push((batch.header.base_offset, batch.raw().len()));
    }
    assert!(!reader.truncated(), "cut at a batch boundary");
    out
}

/// Appends `count` records with `size`-byte values, as one batch.
fn append_batch(mock: &MockCluster, partition: i32, count: usize, size: usize) -> i64 {
    let value = vec![b'v'; size];
    let records: Vec<KeyValue> = (0..count).map(|_| (None, Some(&value[..]))).collect();
    mock.append("orders", partition, &records)
}

#[actix::test]
async fn only_the_leader_serves_a_partition() {
    let mock = mock();
    let cluster = connect(&mock).await;
    let (one, two) = (
        fetch_connection(&cluster, 1).await,
        fetch_connection(&cluster, 2).await,
    );
    assert_eq!(mock.append("orders", 0, &[(None, Some(b"a"))]), 0);
    assert_eq!(mock.log_end("orders", 0), 1);

    let answer = &fetch_now(&one, &[want(0, 0)], 1 << 20).await[0];
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.high_watermark, 1);
    assert_eq!(answer.last_stable_offset, 1);
    assert_eq!(answer.log_start_offset, 0);
    let records = decode_all(records_of(answer), &DecodeOptions::default()).unwrap();
    assert_eq!(records[0].value(), Some(&b"a"[..]));

    // Broker 2 does not lead orders/0 — until an election moves it there.
    let answer = &fetch_now(&two, &[want(0, 0)], 1 << 20).await[0];
    assert_eq!(answer.error_code, KafkaCode::NotLeaderOrFollower.code());
    mock.move_leader("orders", 0, 2);
    let answer = &fetch_now(&one, &[want(0, 0)], 1 << 20).await[0];
    assert_eq!(answer.error_code, KafkaCode::NotLeaderOrFollower.code());
    assert_eq!(answer.high_watermark, -1);
    assert!(records_of(answer).is_empty());
    let answer = &fetch_now(&two, &[want(0, 0)], 1 << 20).await[0];
    assert_eq!(answer.error_code, 0);
    assert_eq!(
        decode_all(records_of(answer), &DecodeOptions::default()).unwrap(),
        records
    );

    // A partition the topic does not have.
    let answer = &fetch_now(&one, &[want(7, 0)], 1 << 20).await[0];
    assert_eq!(answer.error_code, KafkaCode::UnknownTopicOrPartition.code());

    // Routed to the leader, the cluster finds broker 2 after a refresh.
    let routed = cluster
        .send(Route {
            target: Target::Leader {
                topic: "orders".into(),
                partition: 0,
            },
            purpose: Purpose::Fetch,
            call: Call::new(fetch_request(&[want(0, 0)], 1 << 20, 0))
                .with_max_version(FETCH_VERSION),
        })
        .await
        .unwrap()
        .expect("answered");
    let routed = routed.into_typed::<FetchRequest>("mock").unwrap();
    let code = routed.responses[0].partitions[0].error_code;
    assert_eq!(
        code,
        KafkaCode::NotLeaderOrFollower.code(),
        "stale metadata"
    );
    eventually(Duration::from_secs(3), "broker 2 as the leader", || {
        let cluster = cluster.clone();
        async move {
            let routed = cluster
                .send(Route {
                    target: Target::Leader {
                        topic: "orders".into(),
                        partition: 0,
                    },
                    purpose: Purpose::Fetch,
                    call: Call::new(fetch_request(&[want(0, 0)], 1 << 20, 0))
                        .with_max_version(FETCH_VERSION),
                })
                .await
                .ok()?
                .ok()?
                .into_typed::<FetchRequest>("mock")
                .ok()?;
            (routed.responses[0].partitions[0].error_code == 0).then_some(())
        }
    })
    .await;
}

#[actix::test]
async fn offsets_outside_the_log_are_out_of_range() {
    let mock = mock();
    let cluster = connect(&mock).await;
    let one = fetch_connection(&cluster, 1).await;
    append_batch(&mock, 0, 3, 10);
    for offset in [-1, 4, 100] {
        let answer = &fetch_now(&one, &[want(0, offset)], 1 << 20).await[0];
        assert_eq!(
            answer.error_code,
            KafkaCode::OffsetOutOfRange.code(),
            "offset {offset}"
        );
    }
    // The log end itself is in range: nothing yet.
    let answer = &fetch_now(&one, &[want(0, 3)], 1 << 20).await[0];
    assert_eq!(answer.error_code, 0);
    assert!(records_of(answer).is_empty());
    assert_eq!(answer.high_watermark, 3);
    // An empty log: only offset 0 is in range.
    let answer = &fetch_now(&one, &[want(2, 0)], 1 << 20).await[0];
    assert_eq!((answer.error_code, answer.high_watermark), (0, 0));
    let answer = &fetch_now(&one, &[want(2, 1)], 1 << 20).await[0];
    assert_eq!(answer.error_code, KafkaCode::OffsetOutOfRange.code());
}

#[actix::test]
async fn an_oversized_first_batch_still_comes_back_whole() {
    let mock = mock();
    let cluster = connect(&mock).await;
    let one = fetch_connection(&cluster, 1).await;
    append_batch(&mock, 0, 2, 10_000); // one batch of ~20 KB
    append_batch(&mock, 0, 1, 10);
    append_batch(&mock, 2, 2, 10_000);
    let small = |partition| Want {
        partition,
        offset: 0,
        max_bytes: 100,
    };
    let answers = fetch_now(&one, &[small(0), small(2)], 100).await;
    // KIP-74: the first batch of the first non-empty partition, whatever the limits...
    let first = batches(records_of(&answers[0]));
    assert_eq!(first.len(), 1, "only the first batch");
    assert_eq!(first[0].0, 0);
    assert!(first[0].1 > 20_000);
    // ...and nothing more: the next partition's batch does not fit what is left.
    assert_eq!(answers[1].error_code, 0);
    assert!(records_of(&answers[1]).is_empty());
    // Started from the second partition, it is that one's first batch that comes back.
    let answers = fetch_now(&one, &[want(0, 3), small(2)], 100).await;
    assert!(records_of(&answers[0]).is_empty());
    assert_eq!(batches(records_of(&answers[1])).len(), 1);
}

#[actix::test]
async fn size_limits_cut_at_batch_boundaries() {
    let mock = mock();
    let cluster = connect(&mock).await;
    let one = fetch_connection(&cluster, 1).await;
    for _ in 0..5 {
        append_batch(&mock, 0, 2, 100);
        append_batch(&mock, 2, 2, 100);
    }
    let all = batches(records_of(
        &fetch_now(&one, &[want(0, 0)], 1 << 20).await[0],
    ));
    assert_eq!(all.len(), 5);
    assert_eq!(all.iter().map(|b| b.0).collect::<Vec<_>>(), [0, 2, 4, 6, 8]);
    let size = all[0].1;
    assert!(all.iter().all(|b| b.1 == size));

    // partition_max_bytes of two and a half batches: two whole batches.
    let limited = Want {
        max_bytes: (size * 5 / 2) as i32,
        ..want(0, 0)
    };
    let answer = &fetch_now(&one, &[limited], 1 << 20).await[0];
    assert_eq!(records_of(answer).len(), 2 * size);
    assert_eq!(batches(records_of(answer)), all[..2]);

    // max_bytes of four batches over two partitions: three from the first, one from the second.
    let answers = fetch_now(&one, &[want(0, 4), want(2, 0)], (size * 4) as i32).await;
    let first = batches(records_of(&answers[0]));
    let second = batches(records_of(&answers[1]));
    assert_eq!(first.iter().map(|b| b.0).collect::<Vec<_>>(), [4, 6, 8]);
    assert_eq!(second.iter().map(|b| b.0).collect::<Vec<_>>(), [0]);

    // Exactly one batch of room: one batch, not a partial second.
    let answer = &fetch_now(&one, &[want(0, 0)], size as i32 + 10).await[0];
    assert_eq!(batches(records_of(answer)).len(), 1);
}

#[actix::test]
async fn a_fetch_inside_a_batch_starts_at_that_batch() {
    let mock = mock();
    let cluster = connect(&mock).await;
    let one = fetch_connection(&cluster, 1).await;
    assert_eq!(append_batch(&mock, 0, 5, 10), 0);
    assert_eq!(append_batch(&mock, 0, 5, 10), 5);
    assert_eq!(mock.log_end("orders", 0), 10);

    let answer = &fetch_now(&one, &[want(0, 7)], 1 << 20).await[0];
    let set = records_of(answer);
    // The broker returns the batch holding offset 7, from its base...
    let all = decode_all(set.clone(), &DecodeOptions::default()).unwrap();
    assert_eq!(offsets(&all), [5, 6, 7, 8, 9]);
    // ...and the consumer skips what lies below the fetch offset.
    let fetched = decode_fetched(
        set,
        &PartitionFetch {
            topic: "orders",
            partition: 0,
            fetch_offset: 7,
            isolation: Default::default(),
            aborted_transactions: &[],
        },
        &DecodeOptions::default(),
    );
    assert_eq!(offsets(&fetched.records), [7, 8, 9]);
    assert_eq!(fetched.next_offset, 10);
    assert_eq!(
        offsets(&mock.produced("orders", 0)),
        (0..10).collect::<Vec<_>>()
    );

    // The same at the oldest version konsumer speaks and at the Fetcher's.
    let at_12 = records_of(&fetch_now(&one, &[want(0, 7)], 1 << 20).await[0]);
    for version in [4, 11] {
        let answer = fetch_at(&one, fetch_request(&[want(0, 7)], 1 << 20, 0), version).await;
        let answer = &answer.responses[0].partitions[0];
        assert_eq!(answer.high_watermark, 10, "v{version}");
        assert_eq!(records_of(answer), at_12, "v{version}");
    }
}

#[actix::test]
async fn produced_and_raw_compressed_batches_are_kept_as_written() {
    let mock = mock();
    let cluster = connect(&mock).await;
    let one = fetch_connection(&cluster, 1).await;
    mock.append("orders", 0, &[(Some(b"k"), Some(b"plain"))]);

    // An LZ4 batch appended raw lands at offset 1, bytes unchanged but the base offset.
    let mut lz4 = BatchBuilder::new(Compression::Lz4, None);
    for i in 0..3 {
        let value = format!("lz4-{i}");
        lz4.append(1_000 + i, None, Some(value.as_bytes()), NO_HEADERS);
    }
    let lz4 = lz4.build().unwrap();
    assert_eq!(mock.append_raw("orders", 0, lz4.clone(), 3), 1);

    // A gzip batch produced by a client lands at offset 4, as written.
    let mut gzip = BatchBuilder::new(Compression::Gzip, None);
    gzip.append(2_000, Some(b"g"), Some(b"gzip"), NO_HEADERS);
    let gzip = gzip.build().unwrap();
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(gzip.clone()))])]);
    let produced = call(&one, produce).await.expect("produced");
    let answer = &produced.responses[0].partition_responses[0];
    assert_eq!((answer.error_code, answer.base_offset), (0, 4));
    assert_eq!(mock.log_end("orders", 0), 5);

    let set = records_of(&fetch_now(&one, &[want(0, 2)], 1 << 20).await[0]);
    let mut reader = RecordSetReader::new(set.clone(), DecodeOptions::default());
    let mut stored = Vec::new();
    while let Some(batch) = reader.next_batch() {
        stored.push(batch.expect("CRC still valid"));
    }
    assert_eq!(stored.len(), 2, "from the batch holding offset 2");
    assert_eq!(stored[0].header.base_offset, 1);
    assert_eq!(stored[0].header.compression(), Ok(Compression::Lz4));
    assert_eq!(stored[0].raw()[8..], lz4[8..], "stored as written");
    assert_eq!(stored[1].header.base_offset, 4);
    assert_eq!(stored[1].header.compression(), Ok(Compression::Gzip));
    assert_eq!(stored[1].raw()[8..], gzip[8..]);

    let records = decode_all(set, &DecodeOptions::default()).unwrap();
    assert_eq!(offsets(&records), [1, 2, 3, 4]);
    assert_eq!(records[1].value(), Some(&b"lz4-1"[..]));
    assert_eq!(records[1].timestamp, 1_001);
    let values: Vec<_> = mock
        .produced("orders", 0)
        .iter()
        .map(|r| r.value().unwrap_or_default().to_vec())
        .collect();
    assert_eq!(
        values,
        [&b"plain"[..], b"lz4-0", b"lz4-1", b"lz4-2", b"gzip"]
    );
}

#[actix::test]
async fn corrupt_bytes_are_served_as_stored() {
    let mock = mock();
    let cluster = connect(&mock).await;
    let one = fetch_connection(&cluster, 1).await;
    let good = append_batch(&mock, 0, 1, 10);
    let mut bad = BatchBuilder::new(Compression::None, None);
    bad.append(1, None, Some(b"flipped"), NO_HEADERS);
    let mut bad = bad.build().unwrap().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff; // the CRC no longer matches
    assert_eq!(mock.append_raw("orders", 0, Bytes::from(bad), 1), good + 1);
    assert_eq!(mock.log_end("orders", 0), 2);

    let set = records_of(&fetch_now(&one, &[want(0, 1)], 1 << 20).await[0]);
    assert!(decode_all(set, &DecodeOptions::default()).is_err());
    assert_eq!(
        mock.produced("orders", 0).len(),
        1,
        "the corrupt batch left out"
    );
}

#[actix::test]
async fn read_committed_gets_an_empty_aborted_list_and_the_log_end_as_lso() {
    let mock = mock();
    let cluster = connect(&mock).await;
    let one = fetch_connection(&cluster, 1).await;
    append_batch(&mock, 0, 2, 10);
    let committed = fetch_request(&[want(0, 0)], 1 << 20, 0).with_isolation_level(1);
    let answer = &fetch(&one, committed).await.responses[0].partitions[0];
    assert_eq!(answer.aborted_transactions, Some(vec![]));
    assert_eq!(answer.last_stable_offset, 2);
    let uncommitted = fetch_request(&[want(0, 0)], 1 << 20, 0);
    let answer = &fetch(&one, uncommitted).await.responses[0].partitions[0];
    assert_eq!(answer.aborted_transactions, None);
}

fn list_offsets(partition: i32, timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])])
}

#[actix::test]
async fn list_offsets_finds_earliest_latest_and_by_timestamp() {
    let mock = mock();
    let cluster = connect(&mock).await;
    let (one, two) = (
        fetch_connection(&cluster, 1).await,
        fetch_connection(&cluster, 2).await,
    );
    let batch = |compression, timestamps: &[i64]| {
        let mut batch = BatchBuilder::new(compression, None);
        for t in timestamps {
            batch.append(*t, None, Some(b"x"), NO_HEADERS);
        }
        batch.build().unwrap()
    };
    mock.append_raw(
        "orders",
        0,
        batch(Compression::None, &[1_000, 2_000, 3_000]),
        3,
    );
    mock.append_raw("orders", 0, batch(Compression::Lz4, &[4_000, 5_000]), 2);

    let lookup = |timestamp| {
        let one = one.clone();
        async move {
            let answer = call(&one, list_offsets(0, timestamp)).await.unwrap();
            let p = &answer.topics[0].partitions[0];
            assert_eq!(p.error_code, 0, "timestamp {timestamp}");
            (p.offset, p.timestamp)
        }
    };
    assert_eq!(lookup(-2).await.0, 0, "earliest");
    assert_eq!(lookup(-1).await.0, 5, "latest");
    assert_eq!(lookup(0).await, (0, 1_000));
    assert_eq!(lookup(2_000).await, (1, 2_000));
    assert_eq!(lookup(2_500).await, (2, 3_000));
    assert_eq!(
        lookup(3_001).await,
        (3, 4_000),
        "inside the compressed batch"
    );
    assert_eq!(lookup(5_000).await, (4, 5_000));
    // Later than every record: no offset, as Kafka answers.
    assert_eq!(lookup(5_001).await, (-1, -1));
    assert_eq!(lookup(-3).await, (4, 5_000), "max timestamp");

    // Only the leader answers.
    let answer = call(&two, list_offsets(0, -1)).await.unwrap();
    let code = answer.topics[0].partitions[0].error_code;
    assert_eq!(code, KafkaCode::NotLeaderOrFollower.code());
    let answer = call(&one, list_offsets(9, -1)).await.unwrap();
    let code = answer.topics[0].partitions[0].error_code;
    assert_eq!(code, KafkaCode::UnknownTopicOrPartition.code());
}

#[actix::test]
async fn an_empty_fetch_is_held_for_its_max_wait() {
    let mock = mock();
    let cluster = connect(&mock).await;
    let one = fetch_connection(&cluster, 1).await;
    append_batch(&mock, 0, 1, 10);
    let started = Instant::now();
    let answer = fetch(&one, fetch_request(&[want(0, 1)], 1 << 20, 200)).await;
    let elapsed = started.elapsed();
    let answer = &answer.responses[0].partitions[0];
    assert_eq!(answer.error_code, 0);
    assert!(records_of(answer).is_empty());
    assert!(elapsed >= Duration::from_millis(160), "held {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "held {elapsed:?}");

    // With records to return, at once (a generous bound: other builds share the machine).
    let started = Instant::now();
    fetch(&one, fetch_request(&[want(0, 0)], 1 << 20, 5_000)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[actix::test]
async fn a_held_fetch_answers_when_records_arrive() {
    let mock = mock();
    let cluster = connect(&mock).await;
    let one = fetch_connection(&cluster, 1).await;
    let waiting = actix::spawn({
        let one = one.clone();
        async move { fetch(&one, fetch_request(&[want(0, 0)], 1 << 20, 10_000)).await }
    });
    eventually(Duration::from_secs(3), "the fetch at the broker", || {
        let mock = mock.clone();
        async move { (mock.count(ApiKey::Fetch) == 1).then_some(()) }
    })
    .await;
    mock.append("orders", 0, &[(None, Some(b"late"))]);
    let answer = waiting.await.expect("fetch task");
    let records = decode_all(
        records_of(&answer.responses[0].partitions[0]),
        &DecodeOptions::default(),
    )
    .unwrap();
    assert_eq!(records.len(), 1, "the held fetch saw the append");
    assert_eq!(records[0].value(), Some(&b"late"[..]));

    // A leader moving away ends the wait with the error.
    let waiting = actix::spawn({
        let one = one.clone();
        async move { fetch(&one, fetch_request(&[want(0, 1)], 1 << 20, 10_000)).await }
    });
    eventually(
        Duration::from_secs(3),
        "the second fetch at the broker",
        || {
            let mock = mock.clone();
            async move { (mock.count(ApiKey::Fetch) == 2).then_some(()) }
        },
    )
    .await;
    mock.move_leader("orders", 0, 2);
    let answer = waiting.await.expect("fetch task");
    let code = answer.responses[0].partitions[0].error_code;
    assert_eq!(code, KafkaCode::NotLeaderOrFollower.code());
}
