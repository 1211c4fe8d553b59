//! Misbehaving peers: garbage, truncated frames, absurd length prefixes, nobody listening.
//! Each must give a typed error — never a panic, a hang or an unbounded allocation.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use konsumer::kafka_protocol::messages::api_versions_response::ApiVersion;
use konsumer::kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, ResponseHeader};
use konsumer::kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
use konsumer::{ClientConfig, Error};
use konsumer_actors::testkit::tansu::free_port;
use konsumer_actors::testkit::CapturedLog;
use konsumer_actors::{BrokerConnection, Call, Cluster};

/// Serves every connection on a thread with `script`; returns `127.0.0.1:port`.
fn fake_broker(script: fn(&mut TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || script(&mut stream));
        }
    });
    address
}

/// Reads one request frame; returns its (api version, correlation id).
fn read_request(stream: &mut TcpStream) -> Option<(i16, i32)> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).ok()?;
    let header = decode_request_header_from_buffer(&mut Bytes::from(body)).ok()?;
    Some((header.request_api_version, header.correlation_id))
}

/// Answers the ApiVersions request that opens every connection, like a real broker.
fn answer_api_versions(stream: &mut TcpStream) -> Option<()> {
    let (version, correlation_id) = read_request(stream)?;
    let mut frame = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut frame, 0)
        .ok()?;
    ApiVersionsResponse::default()
        .with_api_keys(vec![
            ApiVersion::default().with_api_key(18).with_max_version(3),
            ApiVersion::default().with_api_key(3).with_max_version(12),
        ])
        .encode(&mut frame, version)
        .ok()?;
    stream.write_all(&(frame.len() as i32).to_be_bytes()).ok()?;
    stream.write_all(&frame).ok()
}

fn connection_config() -> Arc<ClientConfig> {
    Arc::new(ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
        max_response_bytes: 16 * 1024 * 1024,
        ..ClientConfig::default()
    })
}

async fn metadata_via(address: &str) -> Result<(), Error> {
    let (log, _) = CapturedLog::new();
    let connection = BrokerConnection::start_supervised(address, connection_config(), &log);
    connection
        .send(Call::new(MetadataRequest::default()))
        .await
        .expect("connection actor alive")
        .map(|_| ())
}

#[actix::test]
async fn garbage_instead_of_api_versions_is_a_protocol_error() {
    let address = fake_broker(|s| {
        let _ = read_request(s);
        let _ = s.write_all(b"\x00\x00\x00\x08garbage!");
        std::thread::sleep(Duration::from_secs(5));
    });
    let err = metadata_via(&address).await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains(&address), "{err}");
}

#[actix::test]
async fn two_gib_length_prefix_is_refused_before_allocating() {
    let address = fake_broker(|s| {
        let _ = read_request(s);
        let _ = s.write_all(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]);
        std::thread::sleep(Duration::from_secs(5));
    });
    let err = metadata_via(&address).await.unwrap_err();
    match err {
        Error::FrameTooLarge { size, max, .. } => {
            assert_eq!(size, i32::MAX as i64);
            assert_eq!(max, 16 * 1024 * 1024);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
}

#[actix::test]
async fn two_gib_length_prefix_on_an_open_connection_fails_the_request() {
    let address = fake_broker(|s| {
        let _ = answer_api_versions(s);
        let _ = read_request(s);
        let _ = s.write_all(&[0x7f, 0xff, 0xff, 0xff]);
        std::thread::sleep(Duration::from_secs(5));
    });
    let err = metadata_via(&address).await.unwrap_err();
    assert!(matches!(err, Error::FrameTooLarge { .. }), "{err:?}");
}

#[actix::test]
async fn broker_closing_mid_frame_fails_the_request() {
    let address = fake_broker(|s| {
        let _ = answer_api_versions(s);
        let _ = read_request(s);
        let _ = s.write_all(&[0, 0, 0, 100, 0, 0, 0, 1, 9, 9]); // 6 of 100 bytes, then close
    });
    let err = metadata_via(&address).await.unwrap_err();
    match &err {
        Error::ConnectionClosed { detail, .. } => {
            assert!(
                detail.contains("6 of 104") || detail.contains("middle"),
                "{detail}"
            )
        }
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
    assert!(err.is_retriable());
}

#[actix::test]
async fn response_with_unknown_correlation_id_is_a_protocol_error() {
    let address = fake_broker(|s| {
        let _ = answer_api_versions(s);
        let _ = read_request(s);
        let _ = s.write_all(&[0, 0, 0, 5, 0x12, 0x34, 0x56, 0x78, 0]);
        std::thread::sleep(Duration::from_secs(5));
    });
    let err = metadata_via(&address).await.unwrap_err();
    match &err {
        Error::Protocol { detail, .. } => assert!(detail.contains("305419896"), "{detail}"),
        other => panic!("expected Protocol, got {other:?}"),
    }
}

#[actix::test]
async fn undecodable_body_is_a_decode_error_for_that_request() {
    let address = fake_broker(|s| {
        let _ = answer_api_versions(s);
        let (_, correlation_id) = read_request(s).unwrap();
        let mut frame = vec![0, 0, 0, 6];
        frame.extend_from_slice(&correlation_id.to_be_bytes());
        frame.extend_from_slice(&[0xff, 0xff]);
        let _ = s.write_all(&frame);
        std::thread::sleep(Duration::from_secs(5));
    });
    let err = metadata_via(&address).await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}

#[actix::test]
async fn request_waits_for_reconnect_then_times_out_naming_the_cause() {
    // Nothing listens on this port: the request waits (the documented policy) and then fails
    // with a timeout that says why the connection could not be made.
    let address = format!("127.0.0.1:{}", free_port());
    let (log, captured) = CapturedLog::new();
    let config = ClientConfig {
        request_timeout: Duration::from_millis(600),
        ..ClientConfig::default()
    };
    let connection = BrokerConnection::start_supervised(&address, Arc::new(config), &log);
    let started = Instant::now();
    let err = connection
        .send(Call::new(MetadataRequest::default()))
        .await
        .unwrap()
        .unwrap_err();
    let waited = started.elapsed();
    match &err {
        Error::Timeout {
            last_error: Some(cause),
            ..
        } => {
            assert!(cause.contains("refused"), "{cause}")
        }
        other => panic!("expected Timeout with a cause, got {other:?}"),
    }
    assert!(waited >= Duration::from_millis(550), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert!(captured.contains("supervisor restarting broker connection"));
}

#[actix::test]
async fn unreachable_bootstrap_is_a_typed_error_within_the_timeout() {
    let dead = [
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let mut config = ClientConfig::new(dead.iter().cloned());
    config.bootstrap_timeout = Duration::from_secs(1);
    let (log, _) = CapturedLog::new();
    let started = Instant::now();
    let err = Cluster::connect(config, log).await.unwrap_err();
    let waited = started.elapsed();
    match &err {
        Error::Bootstrap { tried, last, .. } => {
            assert_eq!(tried, &dead.to_vec());
            assert!(last.contains("refused"), "{last}");
        }
        other => panic!("expected Bootstrap, got {other:?}"),
    }
    assert!(waited < Duration::from_secs(3), "took {waited:?}");
}

#[actix::test]
async fn invalid_config_is_refused_before_connecting() {
    let (log, _) = CapturedLog::new();
    let err = Cluster::connect(ClientConfig::new(["no-port-here"]), log)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                field: "bootstrap",
                ..
            }
        ),
        "{err:?}"
    );
}

/// With acks=0 a broker sends nothing back: the call completes once the request is written,
/// and the connection stays in step for the requests after it, also when the broker answers
/// the acks=0 request after all.
#[actix::test]
async fn produce_with_acks_0_completes_when_written_without_an_answer() {
    use konsumer::kafka_protocol::messages::{MetadataResponse, ProduceRequest};
    use std::sync::atomic::{AtomicI32, Ordering};
    static PRODUCE_SEEN: AtomicI32 = AtomicI32::new(-1);
    let address = fake_broker(|s| {
        let Some((version, correlation_id)) = read_request(s) else {
            return;
        };
        let mut frame = BytesMut::new();
        let _ = ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut frame, 0);
        let _ = ApiVersionsResponse::default()
            .with_api_keys(vec![
                ApiVersion::default().with_api_key(18).with_max_version(3),
                ApiVersion::default().with_api_key(3).with_max_version(9),
                ApiVersion::default()
                    .with_api_key(0)
                    .with_min_version(3)
                    .with_max_version(9),
            ])
            .encode(&mut frame, version);
        let _ = s.write_all(&(frame.len() as i32).to_be_bytes());
        let _ = s.write_all(&frame);
        // The produce request: no answer.
        let Some((_, produce_id)) = read_request(s) else {
            return;
        };
        PRODUCE_SEEN.store(produce_id, Ordering::SeqCst);
        // Some brokers (tansu 0.6) answer it anyway: that must not break the connection.
        let mut frame = produce_id.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        let _ = s.write_all(&(frame.len() as i32).to_be_bytes());
        let _ = s.write_all(&frame);
        // The metadata request after it gets its answer.
        let Some((version, correlation_id)) = read_request(s) else {
            return;
        };
        let mut frame = BytesMut::new();
        let _ = ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut frame, 1);
        let _ = MetadataResponse::default().encode(&mut frame, version);
        let _ = s.write_all(&(frame.len() as i32).to_be_bytes());
        let _ = s.write_all(&frame);
        std::thread::sleep(Duration::from_secs(5));
    });
    let (log, _) = CapturedLog::new();
    let connection = BrokerConnection::start_supervised(&address, connection_config(), &log);
    let started = Instant::now();
    let reply = connection
        .send(Call::new(ProduceRequest::default().with_acks(0)))
        .await
        .expect("connection actor alive")
        .expect("acks=0 produce completes");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "did not wait for an answer"
    );
    match reply.response {
        konsumer::protocol::ResponseKind::Produce(r) => assert!(r.responses.is_empty()),
        other => panic!("expected a Produce reply, got {other:?}"),
    }
    connection
        .send(Call::new(MetadataRequest::default()))
        .await
        .expect("connection actor alive")
        .expect("the next request is answered on the same connection");
    assert!(
        PRODUCE_SEEN.load(Ordering::SeqCst) >= 0,
        "broker got the produce request"
    );
}
