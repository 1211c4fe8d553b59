use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;

use super::*;
use crate::records::{decode_all, DecodeOptions, NO_HEADERS};
use crate::KafkaCode;

const MS: Duration = Duration::from_millis(1);

fn config() -> ProducerConfig {
    ProducerConfig {
        linger: 10 * MS,
        batch_size: 1000,
        max_request_size: 4096,
        max_buffered_bytes: 1 << 20,
        delivery_timeout: Duration::from_secs(5),
        retry_backoff: crate::Backoff {
            initial: 100 * MS,
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.0,
        },
        ..ProducerConfig::default()
    }
}

fn append(
    acc: &mut Accumulator<u32>,
    topic: &str,
    partition: i32,
    id: u32,
    now: Instant,
) -> Appended {
    let value = format!("value-{id:06}");
    acc.append(
        topic,
        partition,
        i64::from(id),
        Some(b"k"),
        Some(value.as_bytes()),
        NO_HEADERS,
        id,
        now,
    )
    .unwrap_or_else(|(e, _)| panic!("append {id}: {e}"))
}

/// The record values a batch carries, decoded by the core decoder.
fn values(batch: &InFlightBatch<u32>) -> Vec<String> {
    let records = decode_all(batch_bytes(batch), &DecodeOptions::default()).unwrap();
    records
        .iter()
        .map(|r| String::from_utf8(r.value().unwrap().to_vec()).unwrap())
        .collect()
}

fn batch_bytes(batch: &InFlightBatch<u32>) -> bytes::Bytes {
    batch.records().clone()
}

fn leader_0(_: &str, _: i32) -> Option<i32> {
    Some(0)
}

/// Drains with every partition led by broker 0 and returns the last batch of the last request.
fn drain_one(acc: &mut Accumulator<u32>, now: Instant, flush: bool) -> InFlightBatch<u32> {
    let mut requests = acc.drain(now, flush, leader_0).requests;
    let mut request = requests.pop().expect("a request is due");
    request.batches.pop().expect("the request carries a batch")
}

#[test]
fn a_batch_waits_for_linger_then_goes_whole() {
    let mut acc = Accumulator::new(config());
    let t0 = Instant::now();
    assert!(append(&mut acc, "t", 0, 1, t0).new_batch);
    assert!(!append(&mut acc, "t", 0, 2, t0 + MS).new_batch);
    let early = acc.drain(t0 + 5 * MS, false, leader_0);
    assert!(early.requests.is_empty());
    assert_eq!(early.wake_at, Some(t0 + 10 * MS));
    let due = acc.drain(t0 + 10 * MS, false, leader_0);
    assert_eq!(due.requests.len(), 1);
    let batch = &due.requests[0].batches[0];
    assert_eq!(batch.tokens, vec![1, 2]);
    assert_eq!(batch.timestamps, vec![1, 2]);
    assert_eq!(values(batch), ["value-000001", "value-000002"]);
    assert_eq!(batch.attempts(), 1);
}

#[test]
fn flush_sends_open_batches_at_once() {
    let mut acc = Accumulator::new(config());
    let t0 = Instant::now();
    append(&mut acc, "t", 0, 1, t0);
    assert_eq!(acc.drain(t0, true, leader_0).requests.len(), 1);
}

#[test]
fn a_full_batch_closes_and_is_due_at_once() {
    let mut acc = Accumulator::new(config());
    let t0 = Instant::now();
    let mut closed_at = Vec::new();
    for id in 0..100 {
        if append(&mut acc, "t", 0, id, t0).batch_closed {
            closed_at.push(id);
        }
    }
    assert!(!closed_at.is_empty(), "1000-byte batches must fill");
    let drained = acc.drain(t0, false, leader_0);
    let batch = &drained.requests[0].batches[0];
    assert!(
        batch_bytes(batch).len() <= 1000,
        "{}",
        batch_bytes(batch).len()
    );
    // Ids run on without a gap from batch to batch.
    assert_eq!(
        batch.tokens,
        (0..batch.tokens.len() as u32).collect::<Vec<_>>()
    );
}

#[test]
fn one_batch_in_flight_per_partition_and_order_survives_a_retry() {
    let mut acc = Accumulator::new(config());
    let t0 = Instant::now();
    for id in 0..200 {
        append(&mut acc, "t", 0, id, t0);
    }
    let mut first = acc.drain(t0 + 20 * MS, false, leader_0).requests;
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].batches.len(),
        1,
        "one batch per partition per request"
    );
    let batch = first.pop().unwrap().batches.pop().unwrap();
    let first_tokens = batch.tokens.clone();
    assert!(
        acc.drain(t0 + 20 * MS, false, leader_0).requests.is_empty(),
        "partition busy"
    );

    let not_leader = Error::Broker {
        code: KafkaCode::NotLeaderOrFollower,
        context: Default::default(),
    };
    let t1 = t0 + 30 * MS;
    assert!(acc.retry_or_fail(batch, not_leader, t1, 0.5).is_none());
    let waiting = acc.drain(t1 + 50 * MS, false, leader_0);
    assert!(waiting.requests.is_empty(), "backoff not over");
    assert_eq!(waiting.wake_at, Some(t1 + 100 * MS));

    let mut delivered = Vec::new();
    let mut now = t1 + 100 * MS;
    loop {
        let drained = acc.drain(now, false, leader_0);
        let Some(mut request) = drained.requests.into_iter().next() else {
            break;
        };
        let batch = request.batches.pop().unwrap();
        if delivered.is_empty() {
            assert_eq!(batch.tokens, first_tokens, "the retried batch goes first");
            assert_eq!(batch.attempts(), 2);
        }
        let (tokens, _) = acc.complete(batch);
        delivered.extend(tokens);
        now += MS;
    }
    assert_eq!(delivered, (0..200).collect::<Vec<_>>());
    assert!(acc.is_empty());
    assert_eq!(acc.buffered_bytes(), 0);
}

#[test]
fn a_non_retriable_error_fails_the_batch_with_its_tokens() {
    let mut acc = Accumulator::new(config());
    let t0 = Instant::now();
    append(&mut acc, "t", 3, 7, t0);
    let batch = drain_one(&mut acc, t0, true);
    let denied = Error::Broker {
        code: KafkaCode::TopicAuthorizationFailed,
        context: Default::default(),
    };
    let failed = acc.retry_or_fail(batch, denied, t0, 0.0).unwrap();
    assert_eq!(
        (&*failed.topic, failed.partition, failed.tokens),
        ("t", 3, vec![7])
    );
    assert_eq!(
        failed.error.kafka_code(),
        Some(KafkaCode::TopicAuthorizationFailed)
    );
    assert!(acc.is_empty());
}

#[test]
fn retries_are_bounded_by_count_and_by_delivery_timeout() {
    let mut acc = Accumulator::new(ProducerConfig {
        retries: 1,
        ..config()
    });
    let t0 = Instant::now();
    append(&mut acc, "t", 0, 1, t0);
    let timeout = || Error::Timeout {
        api: crate::protocol::ApiKey::Produce,
        broker: "b:1".into(),
        after: MS,
        last_error: None,
    };
    let batch = drain_one(&mut acc, t0, true);
    assert!(acc.retry_or_fail(batch, timeout(), t0, 0.0).is_none());
    let batch = drain_one(&mut acc, t0 + Duration::from_secs(1), false);
    let failed = acc
        .retry_or_fail(batch, timeout(), t0 + Duration::from_secs(1), 0.0)
        .unwrap();
    assert!(
        matches!(failed.error, Error::Timeout { .. }),
        "{}",
        failed.error
    );

    let mut acc = Accumulator::new(config());
    append(&mut acc, "t", 0, 2, t0);
    let batch = drain_one(&mut acc, t0, true);
    let failed = acc
        .retry_or_fail(batch, timeout(), t0 + Duration::from_secs(6), 0.0)
        .unwrap();
    match failed.error {
        Error::DeliveryTimeout {
            attempts,
            last_error,
            ..
        } => {
            assert_eq!(attempts, 1);
            assert!(last_error.unwrap().contains("timed out"));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn batches_without_a_leader_wait_then_expire() {
    let mut acc = Accumulator::new(config());
    let t0 = Instant::now();
    append(&mut acc, "t", 0, 1, t0);
    let drained = acc.drain(t0 + 20 * MS, false, |_, _| None);
    assert!(drained.requests.is_empty());
    assert!(drained.missing_leader);
    assert_eq!(drained.wake_at, Some(t0 + Duration::from_secs(5)));
    assert!(acc.take_failures().is_empty());
    acc.drain(t0 + Duration::from_secs(5), false, |_, _| None);
    let failed = acc.take_failures();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].tokens, vec![1]);
    assert!(
        matches!(failed[0].error, Error::DeliveryTimeout { attempts: 0, .. }),
        "{}",
        failed[0].error
    );
    assert!(acc.is_empty());
}

#[test]
fn too_large_and_queue_full_are_refused_at_once() {
    let mut acc = Accumulator::new(ProducerConfig {
        max_buffered_bytes: 8192,
        ..config()
    });
    let now = Instant::now();
    let big = vec![0u8; 5000];
    let (error, token) = acc
        .append("t", 0, 0, None, Some(&big[..]), NO_HEADERS, 9u32, now)
        .unwrap_err();
    assert_eq!(token, 9);
    assert!(
        matches!(error, Error::RecordTooLarge { max: 4096, .. }),
        "{error}"
    );
    let fits = vec![0u8; 3000];
    acc.append("t", 0, 0, None, Some(&fits[..]), NO_HEADERS, 1, now)
        .unwrap();
    acc.append("t", 1, 0, None, Some(&fits[..]), NO_HEADERS, 2, now)
        .unwrap();
    let (error, _) = acc
        .append("t", 2, 0, None, Some(&fits[..]), NO_HEADERS, 3, now)
        .unwrap_err();
    assert!(
        matches!(error, Error::QueueFull { max: 8192, .. }),
        "{error}"
    );
    let (error, _) = acc
        .append("t", -1, 0, None, Some(b"x"), NO_HEADERS, 4, now)
        .unwrap_err();
    assert_eq!(error.kafka_code(), Some(KafkaCode::UnknownTopicOrPartition));
}

#[test]
fn requests_group_partitions_per_leader_within_the_request_limit() {
    let mut acc = Accumulator::new(config());
    let t0 = Instant::now();
    for partition in 0..6 {
        // ~900 bytes per partition: four fit in a 4096-byte request, not five.
        for id in 0..30 {
            append(&mut acc, "t", partition, partition as u32 * 100 + id, t0);
        }
    }
    append(&mut acc, "u", 0, 999, t0);
    let drained = acc.drain(t0, true, |topic, partition| {
        Some(if topic == "u" { 1 } else { partition % 2 })
    });
    let mut per_node: HashMap<i32, Vec<(String, i32)>> = HashMap::new();
    for request in &drained.requests {
        let size: usize = request.batches.iter().map(|b| b.encoded_len()).sum();
        assert!(size <= 4096, "request of {size} bytes");
        for batch in &request.batches {
            per_node
                .entry(request.node)
                .or_default()
                .push((batch.topic.to_string(), batch.partition));
        }
    }
    assert_eq!(per_node[&0].len(), 3);
    assert_eq!(per_node[&1].len(), 4);
    assert!(per_node[&1].contains(&("u".into(), 0)));
    let produce = drained.requests[0].request(&config());
    assert_eq!(produce.acks, -1);
    assert_eq!(produce.timeout_ms, 30_000);
}

fn response(entries: &[(&str, i32, i16, i64)]) -> ProduceResponse {
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    for (topic, partition, code, offset) in entries {
        let p = PartitionProduceResponse::default()
            .with_index(*partition)
            .with_error_code(*code)
            .with_base_offset(*offset)
            .with_log_append_time_ms(-1);
        match topics.iter_mut().find(|t| &*t.name.0 == *topic) {
            Some(t) => t.partition_responses.push(p),
            None => topics.push(
                TopicProduceResponse::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_responses(vec![p]),
            ),
        }
    }
    ProduceResponse::default().with_responses(topics)
}

#[test]
fn outcomes_pair_each_batch_with_its_partition_answer() {
    let mut acc = Accumulator::new(config());
    let t0 = Instant::now();
    for partition in 0..3 {
        append(&mut acc, "t", partition, partition as u32, t0);
    }
    let request = acc.drain(t0, true, leader_0).requests.pop().unwrap();
    assert_eq!(request.batches.len(), 3);
    let answer = response(&[
        ("t", 0, 0, 41),
        ("t", 1, KafkaCode::NotLeaderOrFollower.code(), -1),
    ]);
    let mut outcomes = request.outcomes(Some(&answer), "b:9");
    outcomes.sort_by_key(|(b, _)| b.partition);
    assert_eq!(
        outcomes[0].1.as_ref().unwrap(),
        &Delivered {
            base_offset: Some(41),
            log_append_time: None
        }
    );
    let not_leader = outcomes[1].1.as_ref().unwrap_err();
    assert_eq!(
        not_leader.kafka_code(),
        Some(KafkaCode::NotLeaderOrFollower)
    );
    let text = not_leader.to_string();
    assert!(
        text.contains("api=Produce broker=b:9 topic=t partition=1"),
        "{text}"
    );
    let missing = outcomes[2].1.as_ref().unwrap_err();
    assert!(matches!(missing, Error::Protocol { .. }), "{missing}");
    assert!(missing.to_string().contains("t/2"), "{missing}");

    append(&mut acc, "t", 5, 5, t0);
    let request = acc.drain(t0, true, leader_0).requests.pop().unwrap();
    let outcomes = request.outcomes(None, "b:9");
    assert_eq!(outcomes[0].1.as_ref().unwrap().base_offset, None);
}

#[test]
fn flushed_up_to_moves_past_finished_records_only() {
    let mut acc = Accumulator::new(config());
    let t0 = Instant::now();
    append(&mut acc, "t", 0, 0, t0);
    append(&mut acc, "t", 1, 1, t0);
    assert_eq!(acc.flushed_up_to(), 0);
    let mut requests = acc.drain(t0, true, leader_0).requests;
    let mut batches: Vec<_> = requests.pop().unwrap().batches;
    batches.sort_by_key(|b| b.partition);
    let second = batches.pop().unwrap();
    acc.complete(second);
    assert_eq!(acc.flushed_up_to(), 0, "record 0 is still in flight");
    acc.complete(batches.pop().unwrap());
    assert_eq!(acc.flushed_up_to(), 2);
}

#[test]
fn abort_fails_what_is_not_in_flight() {
    let mut acc = Accumulator::new(config());
    let t0 = Instant::now();
    append(&mut acc, "t", 0, 0, t0);
    let in_flight = acc.drain(t0, true, leader_0).requests;
    append(&mut acc, "t", 0, 1, t0);
    append(&mut acc, "t", 1, 2, t0);
    let failed = acc.abort(&Error::Shutdown("producer".into()));
    let tokens: Vec<u32> = failed.iter().flat_map(|f| f.tokens.clone()).collect();
    assert_eq!(tokens, vec![1, 2]);
    assert!(!acc.is_empty(), "the in-flight batch still decides");
    acc.complete(in_flight.into_iter().next().unwrap().batches.pop().unwrap());
    assert!(acc.is_empty());
}

#[test]
fn config_validation_names_the_field() {
    ProducerConfig::default().validate().unwrap();
    let field_of = |c: ProducerConfig| match c.validate() {
        Err(Error::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(
        field_of(ProducerConfig {
            batch_size: 0,
            ..Default::default()
        }),
        "batch_size"
    );
    assert_eq!(
        field_of(ProducerConfig {
            compression: crate::compression::Compression::Gzip,
            compression_level: Some(42),
            ..Default::default()
        }),
        "compression_level"
    );
    assert_eq!(
        field_of(ProducerConfig {
            max_buffered_bytes: 1024,
            ..Default::default()
        }),
        "max_buffered_bytes"
    );
}

#[test]
fn produce_error_names_topic_partition_and_key() {
    let error = ProduceError {
        topic: "orders".into(),
        partition: Some(4),
        key: Some(bytes::Bytes::from_static(b"customer-17")),
        error: Box::new(Error::RecordTooLarge {
            size: 2_000_000,
            max: 1_048_576,
        }),
    };
    let text = error.to_string();
    assert!(text.contains("topic orders partition 4"), "{text}");
    assert!(text.contains("customer-17"), "{text}");
    assert!(text.contains("2000000"), "{text}");
}

proptest! {
    /// Whatever the interleaving of appends, drains, acknowledgements and retriable failures,
    /// every record finishes exactly once and each partition delivers in append order.
    #[test]
    fn every_record_is_delivered_once_in_partition_order(
        steps in proptest::collection::vec((0u8..4, 0i32..4, 0u16..300), 1..300),
    ) {
        let mut acc = Accumulator::new(ProducerConfig {
            batch_size: 300,
            retries: u32::MAX,
            delivery_timeout: Duration::from_secs(3600),
            ..config()
        });
        let t0 = Instant::now();
        let mut now = t0;
        let mut next_id = 0u32;
        let mut appended: HashMap<i32, Vec<u32>> = HashMap::new();
        let mut delivered: HashMap<i32, Vec<u32>> = HashMap::new();
        let mut in_flight: Vec<InFlightBatch<u32>> = Vec::new();
        let mut finish = |acc: &mut Accumulator<u32>, batch: InFlightBatch<u32>, fail: bool, now| {
            let partition = batch.partition;
            if fail {
                let error = Error::Broker { code: KafkaCode::NotLeaderOrFollower, context: Default::default() };
                assert!(acc.retry_or_fail(batch, error, now, 0.5).is_none());
            } else {
                let (tokens, _) = acc.complete(batch);
                delivered.entry(partition).or_default().extend(tokens);
            }
        };
        for (action, partition, size) in steps {
            now += MS;
            match action {
                0 | 1 => {
                    let value = vec![b'v'; size as usize];
                    acc.append("t", partition, 0, None, Some(&value[..]), NO_HEADERS, next_id, now).unwrap();
                    appended.entry(partition).or_default().push(next_id);
                    next_id += 1;
                }
                2 => {
                    let drained = acc.drain(now, false, leader_0);
                    in_flight.extend(drained.requests.into_iter().flat_map(|r| r.batches));
                }
                _ => {
                    if !in_flight.is_empty() {
                        let batch = in_flight.remove(size as usize % in_flight.len());
                        finish(&mut acc, batch, size % 3 == 0, now);
                    }
                }
            }
        }
        // Settle: everything is delivered eventually.
        for _ in 0..10_000 {
            now += Duration::from_secs(2);
            let drained = acc.drain(now, true, leader_0);
            in_flight.extend(drained.requests.into_iter().flat_map(|r| r.batches));
            for batch in std::mem::take(&mut in_flight) {
                finish(&mut acc, batch, false, now);
            }
            if acc.is_empty() {
                break;
            }
        }
        prop_assert!(acc.is_empty());
        prop_assert_eq!(acc.buffered_bytes(), 0);
        prop_assert!(acc.take_failures().is_empty());
        prop_assert_eq!(delivered, appended);
    }
}
