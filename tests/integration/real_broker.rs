//! Against a real broker: tansu, started by each test on a free loopback port.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use konsumer::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use konsumer::kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, TopicName};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::protocol::{ApiKey, MINIMUM_VERSIONS};
use konsumer::{ClientConfig, Error};
use konsumer_actors::cluster::ClusterExt;
use konsumer_actors::messages::{call, CreateTopics, GetMetadata, NewTopic};
use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
use konsumer_actors::testkit::CapturedLog;
use konsumer_actors::{BrokerConnection, Call, Cluster, Purpose, Target};

fn config(broker: &TansuBroker) -> ClientConfig {
    let mut config = ClientConfig::new([broker.bootstrap()]);
    config.request_timeout = Duration::from_secs(10);
    config
}

#[actix::test]
async fn negotiates_creates_a_topic_and_sees_its_six_partitions() {
    let broker = TansuBroker::start(Storage::Memory);
    let (log, _) = CapturedLog::new();
    let cluster = Cluster::connect(config(&broker), log)
        .await
        .expect("bootstrap");

    // Negotiation: the broker's ApiVersions answer covers every API konsumer needs.
    let versions = cluster
        .request(Target::Any, Purpose::General, ApiVersionsRequest::default())
        .await
        .unwrap();
    assert_eq!(versions.error_code, 0);
    for (api, minimum, _) in MINIMUM_VERSIONS {
        if matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
            continue; // only on SASL listeners
        }
        let range = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == *api as i16)
            .unwrap_or_else(|| panic!("broker lacks {api:?}"));
        assert!(range.max_version >= *minimum, "{api:?}: {range:?}");
    }

    cluster
        .send(CreateTopics {
            topics: vec![NewTopic {
                name: "six".into(),
                partitions: 6,
                replication_factor: 1,
                configs: Vec::new(),
            }],
            timeout: Duration::from_secs(10),
        })
        .await
        .unwrap()
        .expect("topic created");
    let metadata = cluster
        .send(GetMetadata { refresh: true })
        .await
        .unwrap()
        .unwrap();
    let topic = &metadata.topics["six"];
    assert_eq!(topic.partitions.len(), 6);
    for (i, partition) in topic.partitions.iter().enumerate() {
        assert_eq!(partition.partition, i as i32);
        let leader = partition.leader.expect("every partition has a leader");
        assert!(
            metadata.brokers.contains_key(&leader),
            "leader {leader} is a known broker"
        );
    }
    assert_eq!(
        metadata.brokers.values().next().unwrap().address(),
        broker.bootstrap()
    );
}

#[actix::test]
async fn topics_made_by_the_fixture_show_up_in_metadata() {
    let broker = TansuBroker::start(Storage::Memory);
    broker.create_topic("from-cli", 3);
    let (log, _) = CapturedLog::new();
    let cluster = Cluster::connect(config(&broker), log).await.unwrap();
    let metadata = cluster
        .send(GetMetadata { refresh: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(metadata.partition_count("from-cli"), Some(3));
    assert!(matches!(
        metadata.leader("from-cli", 3),
        Err(Error::NoLeader { .. })
    ));
}

#[actix::test]
async fn supervised_connection_comes_back_after_broker_restart() {
    let mut broker = TansuBroker::start(Storage::Memory);
    let (log, captured) = CapturedLog::new();
    let mut config = config(&broker);
    config.reconnect_backoff.initial = Duration::from_millis(50);
    config.reconnect_backoff.max = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(30);
    let connection =
        BrokerConnection::start_supervised(broker.bootstrap(), Arc::new(config), &log).recipient();
    call(&connection, MetadataRequest::default())
        .await
        .expect("first request");

    broker.stop();
    // The connection notices the close and the supervisor restarts it; reconnects fail while
    // the broker is down.
    crate::eventually(Duration::from_secs(10), "the supervised restart", || {
        let seen = captured.contains("supervisor restarting broker connection");
        async move { seen.then_some(()) }
    })
    .await;

    broker.start_again();
    // Sent while reconnecting: waits for the connection (the documented policy) and succeeds.
    let response = call(&connection, MetadataRequest::default())
        .await
        .expect("request after the broker came back");
    assert_eq!(response.brokers.len(), 1);
    assert!(
        captured.contains("broker connection re-established after supervised restart"),
        "{:#?}",
        captured.lines()
    );
    assert!(captured.contains("broker connection failed; restarting it"));
}

#[actix::test]
async fn two_hundred_concurrent_requests_on_one_connection_get_their_own_answers() {
    let broker = TansuBroker::start(Storage::Memory);
    let (log, _) = CapturedLog::new();
    let connection =
        BrokerConnection::start_supervised(broker.bootstrap(), Arc::new(config(&broker)), &log);
    // Each request names a different topic; its answer must name the same one.
    let requests = (0..200).map(|i| {
        let name = format!("probe-{i}");
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))]))
            .with_allow_auto_topic_creation(false);
        let connection = connection.clone();
        async move {
            let reply = connection
                .send(Call::new(request).with_max_version(12))
                .await
                .unwrap()
                .unwrap();
            let response = reply.into_typed::<MetadataRequest>("tansu").unwrap();
            (name, response)
        }
    });
    let answers = join_all(requests).await;
    assert_eq!(answers.len(), 200);
    for (name, response) in answers {
        assert_eq!(response.topics.len(), 1, "{name}");
        let answered = response.topics[0].name.as_ref().map(|n| n.0.to_string());
        assert_eq!(answered.as_deref(), Some(name.as_str()));
    }
}
