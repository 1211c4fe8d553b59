//! The sidechannel on tansu: the topic is created, handovers go through it, and a member
//! joining mid-stream takes over partitions at the offsets handed over, reading nothing twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use konsumer::consumer::{ConsumerConfig, DEFAULT_SIDECHANNEL_TOPIC};
use konsumer::producer::ProducerConfig;
use konsumer::sidechannel::partition_of;
use konsumer::sidechannel::HandoverKind;
use konsumer::ClientConfig;
use konsumer_actors::messages::GetMetadata;
use konsumer_actors::service::list_offset;
use konsumer_actors::sidechannel::{PublishHandover, TakeOver};
use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
use konsumer_actors::testkit::CapturedLog;
use konsumer_actors::{Cluster, Producer, Sidechannel};

use crate::eventually;
use crate::real_consume::{
    consumer_config, produce_numbers, wait_until_started, ConsumerMember, Ledger,
};
use crate::real_group::group_config;

#[actix::test]
async fn the_sidechannel_topic_is_created_and_handovers_round_trip() {
    let broker = TansuBroker::start(Storage::Memory);
    let (log, captured) = CapturedLog::new();
    let cluster = Cluster::connect(ClientConfig::new([broker.bootstrap()]), log.clone())
        .await
        .expect("bootstrap");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default(), log.clone())
        .expect("config")
        .start();
    let config = ConsumerConfig::default();
    let side = Sidechannel::open(cluster.clone(), producer, "billing", &config, log)
        .await
        .unwrap_or_else(|e| panic!("sidechannel opens: {e}\n{}", captured.lines().join("\n")))
        .start();
    let metadata = cluster
        .send(GetMetadata { refresh: true })
        .await
        .expect("cluster")
        .expect("metadata");
    assert!(
        metadata.partition_count(DEFAULT_SIDECHANNEL_TOPIC) >= Some(1),
        "the sidechannel topic was not created"
    );
    let offsets: BTreeMap<(String, i32), i64> = [
        (("orders".to_owned(), 0), 120),
        (("orders".to_owned(), 3), 45),
    ]
    .into();
    side.send(PublishHandover {
        generation: 7,
        member_id: "m-1".into(),
        offsets: offsets.clone(),
        kind: HandoverKind::Released,
    })
    .await
    .expect("alive")
    .expect("published");
    let taken = side
        .send(TakeOver {
            generation: 8,
            member_id: "m-2".into(),
            committed: [
                ("orders".into(), 0),
                ("orders".into(), 3),
                ("orders".into(), 5),
            ]
            .into_iter()
            .map(|k| (k, None))
            .collect(),
            owner_wait: Duration::from_secs(5),
        })
        .await
        .expect("alive");
    let found: BTreeMap<(String, i32), i64> = taken
        .start
        .iter()
        .filter_map(|(k, h)| Some((k.clone(), (*h)?)))
        .collect();
    assert_eq!(found, offsets);
    assert_eq!(
        taken.start.len(),
        3,
        "every partition is started: {taken:?}"
    );
    assert!(taken.fenced.is_empty());
}

#[actix::test]
async fn a_member_joining_mid_stream_takes_over_at_the_handover_and_reads_nothing_twice() {
    // sqlite: partitions move after records exist (tansu's memory engine cannot fetch from
    // the middle of a batch).
    let broker = TansuBroker::start(Storage::Sqlite);
    let topic = "handover";
    broker.create_topic(topic, 4);
    let ledger = Arc::new(Ledger::default());
    let group = || {
        let mut g = group_config("handover-group", topic, "range");
        g.rebalance_timeout = Duration::from_secs(10);
        g
    };
    let config = ConsumerConfig {
        // No interval commit: what the next owner starts at comes from the release.
        commit_interval: Duration::from_secs(600),
        sidechannel_wait: Duration::from_secs(2),
        ..consumer_config()
    };
    let mut a = ConsumerMember::start(
        "a",
        broker.bootstrap(),
        group(),
        config.clone(),
        ledger.clone(),
    )
    .await;
    wait_until_started(&mut [&mut a], 4).await;
    produce_numbers(&broker.bootstrap(), topic, 2_000).await;
    eventually(Duration::from_secs(30), "a handles 2,000 records", || {
        let n = ledger.distinct().len();
        async move { (n == 2_000).then_some(()) }
    })
    .await;
    let mut b =
        ConsumerMember::start("b", broker.bootstrap(), group(), config, ledger.clone()).await;
    wait_until_started(&mut [&mut a, &mut b], 4).await;
    let second = produce_numbers(&broker.bootstrap(), topic, 2_000).await;
    let total: i64 = second.values().sum();
    assert_eq!(total, 4_000);
    eventually(Duration::from_secs(30), "4,000 records handled", || {
        let n = ledger.distinct().len() as i64;
        async move { (n == total).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let handled = ledger.handled.lock().expect("ledger").len();
    assert_eq!(handled, 4_000, "records handled twice across the handover");
    // The handovers went through the sidechannel and the new owners read them.
    let (log, _captured) = CapturedLog::new();
    let cluster = Cluster::connect(ClientConfig::new([broker.bootstrap()]), log)
        .await
        .expect("bootstrap");
    let metadata = cluster
        .send(GetMetadata { refresh: true })
        .await
        .expect("cluster")
        .expect("metadata");
    let count = metadata
        .partition_count(DEFAULT_SIDECHANNEL_TOPIC)
        .expect("sidechannel topic exists");
    let partition = partition_of("handover-group", count as i32);
    let end = list_offset(&cluster, DEFAULT_SIDECHANNEL_TOPIC, partition, -1)
        .await
        .expect("list offsets");
    assert!(end >= 4, "only {end} handover records");
    // The new owners used the handovers (tansu forms two generations in this rebalance: the
    // handovers come from generation 0, the new assignment is generation 2).
    let lines: Vec<String> = a.log.lines().into_iter().chain(b.log.lines()).collect();
    let used = lines
        .iter()
        .filter(|l| l.contains("partitions taken over") && !l.contains("handed_over=0"))
        .count();
    assert!(used >= 1, "no handover was used:\n{}", lines.join("\n"));
    a.shutdown().await;
    b.shutdown().await;
}
