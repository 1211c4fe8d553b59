//! SASL against the mocked broker served over TCP with a SASL listener (testkit `MockSasl`),
//! which runs the server side of PLAIN and SCRAM as a Kafka broker does: konsumer's
//! BrokerConnection authenticates on every (re)connect, reports refusals as typed errors that
//! carry no credentials, and backs off instead of retrying in a tight loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use konsumer::kafka_protocol::messages::MetadataRequest;
use konsumer::sasl::{SaslConfig, SaslMechanism};
use konsumer::{Backoff, ClientConfig, Error};
use konsumer_actors::messages::{Close, GetMetadata};
use konsumer_actors::testkit::listener::consumer_versions;
use konsumer_actors::testkit::{CapturedLog, Fault, FaultProxy, MockCluster, MockSasl};
use konsumer_actors::{BrokerConnection, Call, Cluster};

use crate::eventually;
use crate::real_consume::{consumer_config, ConsumerMember, Ledger};

const PASSWORD: &str = "correct-horse-battery-staple";

fn sasl(mechanism: SaslMechanism, password: &str) -> SaslConfig {
    SaslConfig::new(mechanism, "alice", password.into())
}

fn client(bootstrap: String, sasl: SaslConfig) -> ClientConfig {
    ClientConfig {
        sasl: Some(sasl),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        bootstrap_timeout: Duration::from_secs(5),
        ..ClientConfig::new([bootstrap])
    }
}

/// A mocked broker whose listener enables `enabled` and knows alice; returns its address.
async fn broker(enabled: &[SaslMechanism]) -> (MockCluster, MockSasl, String) {
    let mock = MockCluster::new();
    mock.set_versions(consumer_versions());
    let users = MockSasl::new(enabled).user("alice", PASSWORD);
    let bootstrap = mock
        .serve_tcp_with_sasl(1, users.clone())
        .await
        .expect("mock listens");
    mock.add_topic("events", &[1, 1, 1]);
    (mock, users, bootstrap)
}

#[actix::test]
async fn each_mechanism_authenticates_and_the_cluster_is_served() {
    for mechanism in SaslMechanism::ALL {
        let (_mock, users, bootstrap) = broker(&SaslMechanism::ALL).await;
        let (log, _captured) = CapturedLog::new();
        let cluster = Cluster::connect(client(bootstrap, sasl(mechanism, PASSWORD)), log)
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: {e}"));
        let metadata = cluster
            .send(GetMetadata { refresh: true })
            .await
            .expect("cluster alive")
            .unwrap_or_else(|e| panic!("{mechanism}: metadata: {e}"));
        assert!(metadata.topics.contains_key("events"), "{mechanism}");
        let attempts = users.attempts();
        assert!(!attempts.is_empty(), "{mechanism}: no authentication seen");
        for attempt in &attempts {
            assert_eq!(attempt.mechanism, mechanism);
            assert_eq!(attempt.user.as_deref(), Some("alice"));
            assert!(attempt.succeeded, "{mechanism}: {attempt:?}");
        }
        cluster.do_send(Close);
    }
}

#[actix::test]
async fn a_wrong_password_is_a_typed_error_without_the_password() {
    for mechanism in SaslMechanism::ALL {
        let (_mock, users, bootstrap) = broker(&SaslMechanism::ALL).await;
        let (log, captured) = CapturedLog::new();
        let wrong = "not-the-password-0451";
        let error = Cluster::connect(client(bootstrap, sasl(mechanism, wrong)), log)
            .await
            .expect_err("a wrong password must not connect");
        match &error {
            Error::Authentication {
                mechanism: named, ..
            } => assert_eq!(named, mechanism.name()),
            other => panic!("{mechanism}: expected an authentication error, got {other}"),
        }
        let text = error.to_string();
        assert!(text.contains("bad username or password"), "{text}");
        assert!(!error.is_retriable());
        for shown in [text, format!("{error:?}"), captured.lines().join("\n")] {
            assert!(!shown.contains(wrong), "the password leaked: {shown}");
            assert!(!shown.contains(PASSWORD), "a password leaked: {shown}");
        }
        assert!(users.attempts().iter().all(|a| !a.succeeded));
    }
}

#[actix::test]
async fn an_unknown_user_is_refused_like_a_wrong_password() {
    let (_mock, _users, bootstrap) = broker(&[SaslMechanism::ScramSha256]).await;
    let (log, _captured) = CapturedLog::new();
    let config = SaslConfig::new(SaslMechanism::ScramSha256, "mallory", PASSWORD.into());
    let error = Cluster::connect(client(bootstrap, config), log)
        .await
        .expect_err("an unknown user must not connect");
    assert!(
        matches!(error, Error::Authentication { .. }),
        "expected an authentication error, got {error}"
    );
}

#[actix::test]
async fn an_unsupported_mechanism_names_what_the_broker_offers() {
    let (_mock, users, bootstrap) = broker(&[SaslMechanism::ScramSha512]).await;
    let (log, _captured) = CapturedLog::new();
    let error = Cluster::connect(client(bootstrap, sasl(SaslMechanism::Plain, PASSWORD)), log)
        .await
        .expect_err("PLAIN is not enabled");
    match &error {
        Error::SaslMechanismUnsupported {
            wanted, offered, ..
        } => {
            assert_eq!(wanted, "PLAIN");
            assert_eq!(offered, &["SCRAM-SHA-512".to_string()]);
        }
        other => panic!("expected an unsupported-mechanism error, got {other}"),
    }
    assert!(error.to_string().contains("it offers: SCRAM-SHA-512"));
    assert!(users.attempts().is_empty(), "no credentials were sent");
}

/// A connection refused for its credentials fails its callers at once (not after the request
/// timeout) and tries again only after its backoff: a handful of attempts in a second, not
/// hundreds.
#[actix::test]
async fn authentication_failures_fail_fast_and_back_off() {
    let (_mock, users, bootstrap) = broker(&[SaslMechanism::ScramSha256]).await;
    let (log, _captured) = CapturedLog::new();
    let mut config = client(bootstrap.clone(), sasl(SaslMechanism::ScramSha256, "wrong"));
    config.request_timeout = Duration::from_secs(20);
    config.reconnect_backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        multiplier: 2.0,
        jitter: 0.0,
    };
    let connection = BrokerConnection::start_supervised(bootstrap, Arc::new(config), &log);
    let started = Instant::now();
    let mut failures = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let asked = Instant::now();
        let answer = connection
            .send(Call::new(MetadataRequest::default()))
            .await
            .expect("connection alive");
        match answer {
            Err(Error::Authentication { .. }) => failures += 1,
            Err(Error::Timeout { last_error, .. }) => {
                panic!("waited for the request timeout; last error {last_error:?}")
            }
            other => panic!("expected an authentication error, got {other:?}"),
        }
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "a caller waited {:?} for a refusal",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failures >= 10, "only {failures} answers in 1.5 s");
    // Backoff 100, 200, 400, 800 ms (+ the first attempt): at most 5 attempts in 1.5 s.
    let attempts = users.attempts().len();
    assert!(
        (2..=6).contains(&attempts),
        "{attempts} authentication attempts in 1.5 s"
    );
}

/// A supervised connection that is cut reconnects and authenticates again before it serves
/// anything.
#[actix::test]
async fn a_restarted_connection_authenticates_again() {
    let (_mock, users, bootstrap) = broker(&[SaslMechanism::ScramSha512]).await;
    let proxy = FaultProxy::to(bootstrap.parse().expect("address")).expect("proxy");
    let (log, captured) = CapturedLog::new();
    let mut config = client(proxy.address(), sasl(SaslMechanism::ScramSha512, PASSWORD));
    config.reconnect_backoff = crate::fast_backoff();
    let connection = BrokerConnection::start_supervised(proxy.address(), Arc::new(config), &log);
    let metadata = || connection.send(Call::new(MetadataRequest::default()).with_max_version(12));
    metadata().await.expect("alive").expect("first metadata");
    assert_eq!(users.attempts().len(), 1);
    assert!(proxy.inject_all(Fault::Reset) > 0, "no connection to cut");
    eventually(Duration::from_secs(10), "a second authentication", || {
        let attempts = users.attempts();
        async move { (attempts.len() >= 2).then_some(()) }
    })
    .await;
    metadata()
        .await
        .expect("alive")
        .expect("metadata after the restart");
    assert!(users.attempts().iter().all(|a| a.succeeded));
    assert!(
        captured
            .lines()
            .iter()
            .any(|l| l.contains("supervisor restarting broker connection")),
        "the restart is logged"
    );
}

/// A whole consumer group member (Cluster, Coordinator, Fetchers, commits) through a
/// SCRAM-SHA-256 listener: every record handled once, offsets committed.
#[actix::test]
async fn a_consumer_group_member_consumes_through_scram_sha_256() {
    let (mock, users, bootstrap) = broker(&[SaslMechanism::ScramSha256]).await;
    for partition in 0..3 {
        let values: Vec<String> = (0..50).map(|i| format!("{partition}-{i}")).collect();
        let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
        mock.append("events", partition, &records);
    }
    let config = client(bootstrap, sasl(SaslMechanism::ScramSha256, PASSWORD));
    let ledger = Arc::new(Ledger::default());
    let mut group = crate::mock_group("sasl-group", "events", Duration::from_millis(200));
    group.session_timeout = Duration::from_secs(6);
    let member =
        ConsumerMember::start_client("m1", config, group, consumer_config(), ledger.clone()).await;
    eventually(Duration::from_secs(20), "150 records", || {
        let count = ledger.distinct().len();
        async move { (count == 150).then_some(()) }
    })
    .await;
    assert_eq!(ledger.handled.lock().unwrap().len(), 150, "no record twice");
    assert!(
        users.attempts().len() >= 2,
        "coordinator and fetch connections"
    );
    assert!(users.attempts().iter().all(|a| a.succeeded));
    drop(member);
}
