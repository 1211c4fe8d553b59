//! The Cluster actor against a MockCluster: bootstrap, metadata, routing, stale-metadata refresh.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use konsumer::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use konsumer::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use konsumer::kafka_protocol::messages::{
    FetchRequest, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::protocol::{ApiKey, ApiVersionTable, ResponseKind};
use konsumer::{ClientConfig, Error, KafkaCode};
use konsumer_actors::cluster::ClusterExt;
use konsumer_actors::messages::{call, ConnectionFor, CreateTopics, GetMetadata, NewTopic};
use konsumer_actors::testkit::{CapturedLog, MockCluster};
use konsumer_actors::{Cluster, ClusterMetadata, Purpose, Target};

use crate::eventually;

fn mock() -> MockCluster {
    let mock = MockCluster::new();
    mock.add_broker(1, "mock-1", 9092)
        .add_broker(2, "mock-2", 9092)
        .add_topic("orders", &[1, 2, 1]);
    mock
}

fn config(bootstrap: &[&str]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::new(bootstrap.iter().copied());
    config.bootstrap_timeout = Duration::from_secs(2);
    Arc::new(config)
}

/// A Cluster bootstrapped from broker 1 of `mock`, with its log.
async fn connect(mock: &MockCluster) -> (Addr<Cluster>, CapturedLog) {
    let (log, captured) = CapturedLog::new();
    let cluster = Cluster::connect_with(config(&["mock-1:9092"]), log, mock.connector())
        .await
        .expect("bootstrap");
    (cluster, captured)
}

async fn current_metadata(cluster: &Addr<Cluster>) -> Arc<ClusterMetadata> {
    cluster
        .send(GetMetadata { refresh: false })
        .await
        .expect("cluster alive")
        .expect("metadata")
}

fn list_offsets(topic: &str, partition: i32) -> ListOffsetsRequest {
    ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(partition)
            .with_timestamp(-1)])])
}

fn list_offsets_answer(topic: &str, partition: i32, error: i16, offset: i64) -> ResponseKind {
    ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(vec![
        ListOffsetsTopicResponse::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![ListOffsetsPartitionResponse::default()
                .with_partition_index(partition)
                .with_error_code(error)
                .with_offset(offset)]),
    ]))
}

#[actix::test]
async fn bootstraps_and_caches_metadata() {
    let mock = mock();
    let (cluster, _) = connect(&mock).await;
    let metadata = current_metadata(&cluster).await;
    assert_eq!(metadata.brokers.len(), 2);
    assert_eq!(metadata.brokers[&2].address(), "mock-2:9092");
    assert_eq!(metadata.controller_id, Some(1));
    assert_eq!(metadata.cluster_id.as_deref(), Some("mock-cluster"));
    assert_eq!(metadata.partition_count("orders"), Some(3));
    assert_eq!(metadata.leader("orders", 1).unwrap(), 2);
    assert!(matches!(
        metadata.leader("orders", 7),
        Err(Error::NoLeader { .. })
    ));
    assert!(matches!(
        metadata.leader("nope", 0),
        Err(Error::UnknownTopic { .. })
    ));
    assert_eq!(mock.count(ApiKey::Metadata), 1);

    // A connection of its own for fetches from the leader of orders/1 (broker 2).
    let (node, fetch_connection) = cluster
        .send(ConnectionFor {
            target: Target::Leader {
                topic: "orders".into(),
                partition: 1,
            },
            purpose: Purpose::Fetch,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node, 2);
    mock.script(
        ApiKey::ListOffsets,
        None,
        Ok(list_offsets_answer("orders", 1, 0, 7)),
    );
    let answer = call(&fetch_connection, list_offsets("orders", 1))
        .await
        .unwrap();
    assert_eq!(answer.topics[0].partitions[0].offset, 7);
    assert_eq!(mock.received().last().map(|r| r.node_id), Some(2));
}

#[actix::test]
async fn bootstrap_skips_an_address_with_no_broker() {
    let mock = mock();
    let (log, _) = CapturedLog::new();
    let cluster = Cluster::connect_with(config(&["gone:1", "mock-2:9092"]), log, mock.connector())
        .await
        .expect("second bootstrap address answers");
    let metadata = current_metadata(&cluster).await;
    assert_eq!(metadata.brokers.len(), 2);
    assert_eq!(mock.received()[0].node_id, 2);
}

#[actix::test]
async fn not_leader_answer_refreshes_metadata_and_next_request_goes_to_new_leader() {
    let mock = mock();
    let (cluster, captured) = connect(&mock).await;
    let before = current_metadata(&cluster).await;
    assert_eq!(before.leader("orders", 0).unwrap(), 1);

    // Broker 1 lost leadership of orders/0 to broker 2; our metadata does not know yet.
    mock.move_leader("orders", 0, 2);
    mock.script(
        ApiKey::ListOffsets,
        Some(1),
        Ok(list_offsets_answer(
            "orders",
            0,
            KafkaCode::NotLeaderOrFollower.code(),
            -1,
        )),
    );
    mock.script(
        ApiKey::ListOffsets,
        Some(2),
        Ok(list_offsets_answer("orders", 0, 0, 42)),
    );

    let leader = Target::Leader {
        topic: "orders".into(),
        partition: 0,
    };
    let first = cluster
        .request(leader.clone(), Purpose::General, list_offsets("orders", 0))
        .await
        .expect("the broker answered (with a partition error)");
    assert_eq!(first.topics[0].partitions[0].error_code, 6);

    let generation = before.generation;
    let after = eventually(Duration::from_secs(3), "a metadata refresh", || {
        let cluster = cluster.clone();
        async move {
            let m = cluster
                .send(GetMetadata { refresh: false })
                .await
                .ok()?
                .ok()?;
            (m.generation > generation).then_some(m)
        }
    })
    .await;
    assert_eq!(after.leader("orders", 0).unwrap(), 2);
    assert_eq!(mock.count(ApiKey::Metadata), 2);
    assert!(
        captured.contains("metadata is stale"),
        "{:?}",
        captured.lines()
    );

    let second = cluster
        .request(leader, Purpose::General, list_offsets("orders", 0))
        .await
        .unwrap();
    assert_eq!(second.topics[0].partitions[0].offset, 42);
    let routed: Vec<i32> = mock
        .received()
        .iter()
        .filter(|r| r.api == ApiKey::ListOffsets)
        .map(|r| r.node_id)
        .collect();
    assert_eq!(routed, vec![1, 2]);
}

#[actix::test]
async fn broker_too_old_for_an_api_gives_an_error_naming_it() {
    let mock = mock();
    // A broker whose Fetch stops at v3, below konsumer's minimum of v4.
    mock.set_versions(ApiVersionTable::from_ranges([
        (3, 0, 12),
        (1, 0, 3),
        (18, 0, 3),
    ]));
    let (cluster, _) = connect(&mock).await;
    let err = cluster
        .request(Target::Broker(1), Purpose::Fetch, FetchRequest::default())
        .await
        .unwrap_err();
    match &err {
        Error::UnsupportedVersion {
            api, broker_range, ..
        } => {
            assert_eq!(*api, ApiKey::Fetch);
            assert_eq!(*broker_range, Some((0, 3)));
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    assert!(!err.is_retriable());
}

#[actix::test]
async fn create_topics_waits_until_leaders_are_known() {
    let mock = mock();
    let (cluster, _) = connect(&mock).await;
    let create = |name: &str| CreateTopics {
        topics: vec![NewTopic {
            name: name.into(),
            partitions: 4,
            replication_factor: 1,
            configs: Vec::new(),
        }],
        timeout: Duration::from_secs(2),
    };
    cluster
        .send(create("events"))
        .await
        .unwrap()
        .expect("created");
    let metadata = current_metadata(&cluster).await;
    assert_eq!(metadata.partition_count("events"), Some(4));
    assert!(metadata.topics["events"]
        .partitions
        .iter()
        .all(|p| p.leader.is_some()));
    // The controller is where CreateTopics goes.
    let to = mock
        .received()
        .into_iter()
        .find(|r| r.api == ApiKey::CreateTopics)
        .unwrap();
    assert_eq!(to.node_id, 1);

    let again = cluster.send(create("events")).await.unwrap().unwrap_err();
    assert_eq!(again.kafka_code(), Some(KafkaCode::TopicAlreadyExists));
    assert!(again.to_string().contains("topic=events"), "{again}");
}
