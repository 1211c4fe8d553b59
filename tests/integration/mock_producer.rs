//! The Producer actor against mocked brokers (no network): leader moves, unknown topics,
//! oversized records, broker rejections, retries until the delivery timeout, acks=0, flush and
//! close, partition choice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use bytes::Bytes;
use konsumer::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use konsumer::kafka_protocol::messages::{ProduceResponse, TopicName};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::partitioner::{partition_for_key, Partitioner};
use konsumer::producer::{Acks, ProduceError, ProducerConfig, RecordMetadata};
use konsumer::protocol::{ApiKey, RequestKind, ResponseKind};
use konsumer::{Backoff, ClientConfig, Error, KafkaCode};
use konsumer_actors::testkit::{CapturedLog, MockCluster};
use konsumer_actors::{Cluster, Enqueue, Producer, ProducerExt, ProducerRecord, ReportTo};

fn mock() -> MockCluster {
    let mock = MockCluster::new();
    mock.add_broker(1, "mock-1", 9092)
        .add_broker(2, "mock-2", 9092)
        .add_topic("orders", &[1, 2, 1]);
    mock
}

fn config() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(2),
        retry_backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            multiplier: 2.0,
            jitter: 0.0,
        },
        ..ProducerConfig::default()
    }
}

async fn start(mock: &MockCluster, config: ProducerConfig) -> (Addr<Producer>, CapturedLog) {
    let (log, captured) = CapturedLog::new();
    let client = Arc::new(ClientConfig::new(["mock-1:9092"]));
    let cluster = Cluster::connect_with(client, log.clone(), mock.connector())
        .await
        .expect("bootstrap");
    let producer = Producer::new(cluster, config, log).expect("valid config");
    (actix::Actor::start(producer), captured)
}

fn value_of(record: &konsumer::records::Record) -> String {
    String::from_utf8(record.value().unwrap_or_default().to_vec()).expect("utf-8 value")
}

/// Sends `values` to `topic`/`partition` in order (fire and forget) and collects the reports.
async fn enqueue_all(
    producer: &Addr<Producer>,
    topic: &str,
    partition: i32,
    values: &[String],
) -> Vec<Result<RecordMetadata, ProduceError>> {
    let (reports, mut received) = tokio::sync::mpsc::unbounded_channel();
    for (i, value) in values.iter().enumerate() {
        producer.do_send(Enqueue {
            record: ProducerRecord::new(topic)
                .partition(partition)
                .value(value.clone()),
            opaque: i as u64,
            report_to: ReportTo::Channel(reports.clone()),
        });
    }
    let mut results: Vec<Option<Result<RecordMetadata, ProduceError>>> =
        (0..values.len()).map(|_| None).collect();
    for _ in 0..values.len() {
        let report = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("a report for every record")
            .expect("channel open");
        let slot = &mut results[report.opaque as usize];
        assert!(slot.is_none(), "record {} reported twice", report.opaque);
        *slot = Some(report.result);
    }
    results.into_iter().map(|r| r.expect("reported")).collect()
}

#[actix::test]
async fn a_moved_leader_is_found_and_the_partition_keeps_its_order() {
    let mock = mock();
    let (producer, log) = start(&mock, config()).await;
    // The producer's metadata says broker 1 leads orders/0; it has moved to broker 2.
    mock.move_leader("orders", 0, 2);
    let values: Vec<String> = (0..50).map(|i| format!("v{i:03}")).collect();
    let results = enqueue_all(&producer, "orders", 0, &values).await;
    for (i, result) in results.iter().enumerate() {
        let metadata = result
            .as_ref()
            .unwrap_or_else(|e| panic!("record {i}: {e}"));
        assert_eq!(metadata.partition, 0);
        assert_eq!(metadata.offset, Some(i as i64), "record {i}");
    }
    let written: Vec<String> = mock.produced("orders", 0).iter().map(value_of).collect();
    assert_eq!(written, values, "written once each, in order");
    let produce_on = |node| {
        mock.received()
            .iter()
            .filter(|r| r.api == ApiKey::Produce && r.node_id == node)
            .count()
    };
    assert!(produce_on(1) >= 1, "first tried at the old leader");
    assert!(produce_on(2) >= 1, "then at the new one");
    assert!(
        mock.count(ApiKey::Metadata) >= 2,
        "NotLeader triggered a refresh"
    );
    producer.close().await;
    assert!(log.contains("producer stopped"));
}

#[actix::test]
async fn an_unknown_topic_fails_with_its_name_after_one_more_lookup() {
    let mock = mock();
    let (producer, _) = start(&mock, config()).await;
    let metadata_before = mock.count(ApiKey::Metadata);
    let error = producer
        .produce(ProducerRecord::new("no-such-topic").key("k1").value("v"))
        .await
        .unwrap_err();
    assert_eq!(&*error.topic, "no-such-topic");
    assert_eq!(error.partition, None);
    assert_eq!(error.key.as_deref(), Some(&b"k1"[..]));
    assert!(
        matches!(&*error.error, Error::UnknownTopic { topic } if topic == "no-such-topic"),
        "{error}"
    );
    assert!(mock.count(ApiKey::Metadata) > metadata_before);

    // A topic created after the producer started is found by that lookup.
    mock.add_topic("late", &[2]);
    let metadata = producer
        .produce(ProducerRecord::new("late").value("v"))
        .await
        .expect("delivered once the metadata knows the topic");
    assert_eq!((metadata.partition, metadata.offset), (0, Some(0)));
}

#[actix::test]
async fn an_oversized_record_fails_at_once_with_its_key() {
    let mock = mock();
    let (producer, _) = start(&mock, config()).await;
    let big = Bytes::from(vec![7u8; 2 * 1024 * 1024]);
    let error = producer
        .produce(
            ProducerRecord::new("orders")
                .key("big-one")
                .partition(1)
                .value(big),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(*error.error, Error::RecordTooLarge { max: 1_048_576, .. }),
        "{error}"
    );
    assert_eq!(error.partition, Some(1));
    assert!(error.to_string().contains("big-one"), "{error}");
    assert_eq!(mock.count(ApiKey::Produce), 0, "nothing was sent");
}

fn partition_error(topic: &str, partition: i32, code: KafkaCode) -> ResponseKind {
    ResponseKind::Produce(ProduceResponse::default().with_responses(
        vec![TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_responses(vec![PartitionProduceResponse::default()
                .with_index(partition)
                .with_error_code(code.code())])],
    ))
}

#[actix::test]
async fn a_broker_rejection_reaches_the_caller_with_topic_partition_and_key() {
    let mock = mock();
    let (producer, _) = start(&mock, config()).await;
    mock.script(
        ApiKey::Produce,
        Some(2),
        Ok(partition_error(
            "orders",
            1,
            KafkaCode::TopicAuthorizationFailed,
        )),
    );
    let error = producer
        .produce(
            ProducerRecord::new("orders")
                .partition(1)
                .key("customer-9")
                .value("x"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.error.kafka_code(),
        Some(KafkaCode::TopicAuthorizationFailed)
    );
    assert_eq!((&*error.topic, error.partition), ("orders", Some(1)));
    let text = error.to_string();
    assert!(text.contains("customer-9"), "{text}");
    assert!(text.contains("partition=1"), "{text}");
    assert_eq!(
        mock.count(ApiKey::Produce),
        1,
        "not retried: authorization will not change"
    );
    // The partition goes on with the next record.
    let next = producer
        .produce(ProducerRecord::new("orders").partition(1).value("y"))
        .await
        .expect("next record delivered");
    assert_eq!(next.offset, Some(0));
}

#[actix::test]
async fn retriable_errors_are_retried_until_the_delivery_timeout() {
    let mock = mock();
    let (producer, _) = start(
        &mock,
        ProducerConfig {
            delivery_timeout: Duration::from_millis(600),
            ..config()
        },
    )
    .await;
    for _ in 0..200 {
        mock.script(
            ApiKey::Produce,
            Some(1),
            Ok(partition_error("orders", 2, KafkaCode::NotEnoughReplicas)),
        );
    }
    let started = Instant::now();
    let error = producer
        .produce(ProducerRecord::new("orders").partition(2).value("x"))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    match &*error.error {
        Error::DeliveryTimeout {
            attempts,
            last_error,
            ..
        } => {
            assert!(*attempts >= 3, "retried: {attempts} attempts");
            let last = last_error.as_deref().unwrap_or_default();
            assert!(last.contains("NotEnoughReplicas"), "{last}");
        }
        other => panic!("expected a delivery timeout, got {other}"),
    }
    assert!(
        waited >= Duration::from_millis(550) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(mock.count(ApiKey::Produce) >= 3);
}

#[actix::test]
async fn retries_stop_after_the_configured_count() {
    let mock = mock();
    let (producer, _) = start(
        &mock,
        ProducerConfig {
            retries: 2,
            ..config()
        },
    )
    .await;
    for _ in 0..10 {
        mock.script(
            ApiKey::Produce,
            Some(1),
            Ok(partition_error("orders", 0, KafkaCode::RequestTimedOut)),
        );
    }
    let error = producer
        .produce(ProducerRecord::new("orders").partition(0).value("x"))
        .await
        .unwrap_err();
    assert_eq!(error.error.kafka_code(), Some(KafkaCode::RequestTimedOut));
    assert_eq!(
        mock.count(ApiKey::Produce),
        3,
        "one attempt and two retries"
    );
}

#[actix::test]
async fn acks_0_sends_once_and_reports_no_offset() {
    let mock = mock();
    let (producer, _) = start(
        &mock,
        ProducerConfig {
            acks: Acks::None,
            ..config()
        },
    )
    .await;
    let metadata = producer
        .produce(ProducerRecord::new("orders").partition(0).value("x"))
        .await
        .expect("written");
    assert_eq!(metadata.offset, None);
    let produce: Vec<_> = mock
        .received()
        .into_iter()
        .filter(|r| r.api == ApiKey::Produce)
        .collect();
    assert_eq!(produce.len(), 1);
    match &produce[0].request {
        RequestKind::Produce(request) => assert_eq!(request.acks, 0),
        other => panic!("{other:?}"),
    }
}

#[actix::test]
async fn flush_sends_lingering_batches_and_close_refuses_later_records() {
    let mock = mock();
    let (producer, log) = start(
        &mock,
        ProducerConfig {
            linger: Duration::from_secs(60),
            ..config()
        },
    )
    .await;
    let (reports, mut received) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..10 {
        producer.do_send(Enqueue {
            record: ProducerRecord::new("orders")
                .partition(i % 3)
                .value(format!("{i}")),
            opaque: i as u64,
            report_to: ReportTo::Channel(reports.clone()),
        });
    }
    let started = Instant::now();
    producer.flush().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "flush did not wait for the linger"
    );
    let mut delivered = 0;
    while let Ok(report) = received.try_recv() {
        report.result.expect("delivered");
        delivered += 1;
    }
    assert_eq!(
        delivered, 10,
        "flush answered after every record was finished"
    );

    producer.do_send(Enqueue {
        record: ProducerRecord::new("orders").partition(0).value("last"),
        opaque: 99,
        report_to: ReportTo::Channel(reports.clone()),
    });
    producer.close().await;
    let report = received.recv().await.expect("the last record is reported");
    assert_eq!(report.opaque, 99);
    report
        .result
        .expect("close delivers what was taken before it");
    let error = producer
        .produce(ProducerRecord::new("orders").value("after close"))
        .await
        .unwrap_err();
    assert!(matches!(*error.error, Error::Shutdown(_)), "{error}");
    assert!(log.contains("producer stopped"));
}

/// Always picks partition 2.
struct Fixed;

impl Partitioner for Fixed {
    fn partition(&mut self, _topic: &str, _key: Option<&[u8]>, _partitions: i32) -> i32 {
        2
    }
}

#[actix::test]
async fn partitions_come_from_the_record_the_key_or_a_custom_partitioner() {
    let mock = mock();
    let (producer, _) = start(&mock, config()).await;
    for key in ["a", "b", "customer-17", "zz-top"] {
        let metadata = producer
            .produce(ProducerRecord::new("orders").key(key).value("v"))
            .await
            .expect("delivered");
        assert_eq!(
            metadata.partition,
            partition_for_key(key.as_bytes(), 3),
            "{key}"
        );
    }
    let explicit = producer
        .produce(
            ProducerRecord::new("orders")
                .key("a")
                .partition(1)
                .value("v"),
        )
        .await
        .expect("delivered");
    assert_eq!(
        explicit.partition, 1,
        "an explicit partition wins over the key"
    );
    let error = producer
        .produce(ProducerRecord::new("orders").partition(3).value("v"))
        .await
        .unwrap_err();
    assert_eq!(
        error.error.kafka_code(),
        Some(KafkaCode::UnknownTopicOrPartition)
    );
    assert_eq!(error.partition, Some(3));

    let mock = self::mock();
    let (log, _) = CapturedLog::new();
    let client = Arc::new(ClientConfig::new(["mock-1:9092"]));
    let cluster = Cluster::connect_with(client, log.clone(), mock.connector())
        .await
        .expect("bootstrap");
    let custom = actix::Actor::start(
        Producer::new(cluster, config(), log)
            .expect("valid")
            .with_partitioner(Fixed),
    );
    let metadata = custom
        .produce(ProducerRecord::new("orders").key("a").value("v"))
        .await
        .expect("delivered");
    assert_eq!(metadata.partition, 2);
}

#[actix::test]
async fn records_without_a_key_stick_to_a_partition_until_its_batch_is_full() {
    let mock = mock();
    let (producer, _) = start(
        &mock,
        ProducerConfig {
            batch_size: 2_000,
            ..config()
        },
    )
    .await;
    let (reports, mut received) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..300u64 {
        producer.do_send(Enqueue {
            record: ProducerRecord::new("orders").value(format!("{i:040}")),
            opaque: i,
            report_to: ReportTo::Channel(reports.clone()),
        });
    }
    let mut partitions = vec![0; 300];
    for _ in 0..300 {
        let report = received.recv().await.expect("report");
        partitions[report.opaque as usize] = report.result.expect("delivered").partition;
    }
    let switches = partitions.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches >= 3,
        "sticky partitioner moves on: {switches} switches"
    );
    assert!(
        switches <= 300 / 20,
        "but not per record (a batch holds ~30 records): {switches} switches"
    );
    let mut used = partitions.clone();
    used.sort();
    used.dedup();
    assert!(used.len() >= 2, "{used:?}");
}

#[actix::test]
async fn bad_configuration_is_refused_naming_the_field() {
    let mock = mock();
    let (log, _) = CapturedLog::new();
    let client = Arc::new(ClientConfig::new(["mock-1:9092"]));
    let cluster = Cluster::connect_with(client, log.clone(), mock.connector())
        .await
        .expect("bootstrap");
    let bad = ProducerConfig {
        compression: konsumer::compression::Compression::Zstd,
        compression_level: Some(99),
        ..config()
    };
    match Producer::new(cluster, bad, log) {
        Err(Error::Config { field, .. }) => assert_eq!(field, "compression_level"),
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("zstd level 99 accepted"),
    }
}

#[actix::test]
async fn a_request_that_times_out_is_sent_again() {
    let mock = mock();
    let (producer, _) = start(&mock, config()).await;
    mock.script(
        ApiKey::Produce,
        Some(1),
        Err(Error::Timeout {
            api: ApiKey::Produce,
            broker: "mock-1:9092".into(),
            after: Duration::from_secs(30),
            last_error: None,
        }),
    );
    let metadata = producer
        .produce(ProducerRecord::new("orders").partition(0).value("x"))
        .await
        .expect("delivered on the second attempt");
    assert_eq!(metadata.offset, Some(0));
    assert_eq!(mock.count(ApiKey::Produce), 2);
    assert_eq!(mock.produced("orders", 0).len(), 1);
}
