//! The replay broker (`testkit::replay`) serves a whole topic to konsumer's `ConsumerService`
//! over TCP: every record once, in offset order per partition, with the values it generated —
//! the proof that the consumer bench against it (benches/replay.rs) reads real data.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Context, Handler};
use konsumer::compression::Compression;
use konsumer::consumer::{ConsumerConfig, OffsetReset};
use konsumer::group::GroupConfig;
use konsumer::kafka_protocol::messages::ApiKey;
use konsumer::ClientConfig;
use konsumer_actors::testkit::replay::{replay_key, replay_value};
use konsumer_actors::testkit::{ReplayBroker, ReplayTopic};
use konsumer_actors::{ConsumerService, HandlerRef, HandlerResult, KafkaBatch, Shutdown};

use crate::eventually;

const TOPIC: &str = "replayed";
const PARTITIONS: i32 = 4;
const RECORDS: u64 = 20_000;
const VALUE_LEN: usize = 100;

/// What the handler saw, per partition: the offsets, in delivery order, and any record whose
/// key or value is not the one generated.
#[derive(Default)]
struct Seen {
    offsets: Vec<Vec<i64>>,
    wrong: Vec<(i32, i64)>,
}

struct Recorder {
    seen: Arc<Mutex<Seen>>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for Recorder {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        let mut seen = self.seen.lock().expect("no panic while holding the lock");
        let p = batch.partition;
        for record in &batch.records {
            let right = record.value() == Some(&replay_value(p, record.offset, VALUE_LEN)[..])
                && record.key() == Some(&replay_key(record.offset)[..]);
            if !right {
                seen.wrong.push((p, record.offset));
            }
            seen.offsets[p as usize].push(record.offset);
        }
        Ok(())
    }
}

async fn consume_all(compression: Compression) {
    let topic = ReplayTopic::generate(TOPIC, PARTITIONS, RECORDS, VALUE_LEN, 128, compression)
        .expect("the batches encode");
    let counts = topic.record_counts();
    let broker = ReplayBroker::start(topic).await.expect("a loopback port");

    let mut group = GroupConfig::new("replay-readers", [TOPIC]);
    group.session_timeout = Duration::from_secs(6);
    group.heartbeat_interval = Duration::from_millis(500);
    group.rebalance_timeout = Duration::from_secs(5);
    let consumer = ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(100),
        commit_interval: Duration::from_millis(200),
        // Small fetches: many requests, each answered from the middle of the log.
        partition_max_bytes: 16 * 1024,
        sidechannel_topic: String::new(),
        ..ConsumerConfig::default()
    };
    let seen = Arc::new(Mutex::new(Seen {
        offsets: vec![Vec::new(); PARTITIONS as usize],
        wrong: Vec::new(),
    }));
    let recorder = Recorder { seen: seen.clone() }.start();
    let service = ConsumerService::builder(ClientConfig::new([broker.bootstrap()]), group)
        .consumer_config(consumer)
        .handler(HandlerRef::batches(&recorder))
        .start()
        .await
        .expect("the service starts on the replay broker");

    let total = || {
        let seen = seen.lock().expect("no panic while holding the lock");
        seen.offsets.iter().map(Vec::len).sum::<usize>() as u64
    };
    eventually(Duration::from_secs(20), "every record handled", || async {
        (total() >= RECORDS).then_some(())
    })
    .await;
    service.send(Shutdown).await.expect("the service answers");

    let seen = seen.lock().expect("no panic while holding the lock");
    assert!(
        seen.wrong.is_empty(),
        "records not as generated: {:?}",
        seen.wrong
    );
    for (p, offsets) in seen.offsets.iter().enumerate() {
        let expected: Vec<i64> = (0..counts[p]).collect();
        assert!(
            *offsets == expected,
            "partition {p}: {} records, not 0..{} once each in order",
            offsets.len(),
            counts[p]
        );
    }
    assert!(
        broker.fetches() > RECORDS / 2_000,
        "{} fetches",
        broker.fetches()
    );
    // The group committed the log end of every partition on its way out.
    let committed = broker
        .cluster()
        .group("replay-readers")
        .expect("the group exists")
        .committed;
    for (p, &end) in counts.iter().enumerate() {
        let offset = committed.get(&(TOPIC.to_owned(), p as i32)).map(|c| c.0);
        assert_eq!(offset, Some(end), "partition {p} committed");
    }
    assert!(broker.cluster().count(ApiKey::JoinGroup) >= 1);
}

#[actix::test]
async fn replay_broker_serves_a_whole_topic_to_the_consumer_service() {
    consume_all(Compression::None).await;
}

#[actix::test]
async fn replay_broker_serves_compressed_batches() {
    consume_all(Compression::Lz4).await;
}
