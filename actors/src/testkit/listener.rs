//! The mocked cluster over TCP: a [`MockCluster`] broker that real clients (librdkafka through
//! the `rdkafka` crate, or konsumer's own TCP connections) can reach on a loopback port.
//!
//! Each connection is served one request at a time, in order, as a Kafka broker does (it
//! reads the next request of a connection only after answering the previous one), so a
//! JoinGroup waiting at the coordinator's barrier holds back that connection's later requests
//! just as it would on a real broker. Requests are decoded with `kafka-protocol`, answered by
//! the same code that answers in-process [`Call`]s, and encoded back at the client's version.
//!
//! Besides the group APIs, the data path of a partition leader: Produce, ListOffsets and
//! Fetch (the stored batches, or an empty answer after the fetch's max wait, at most 500 ms;
//! see [`mock`](super::mock)). Advertise only what is served with [`MockCluster::set_versions`]
//! (see [`consumer_versions`]); a request the mock cannot answer closes its connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use konsumer::kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use konsumer::kafka_protocol::protocol::Decodable;
use konsumer::protocol::ApiVersionTable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::mock::MockCluster;
use super::sasl::{Gate, MockSasl, SaslSession};
use crate::messages::Call;

/// The APIs and versions the TCP mock serves to a consumer-group client such as librdkafka:
/// Fetch up to v12 (topic names, not ids), OffsetFetch up to v7 (one group per request).
pub fn consumer_versions() -> ApiVersionTable {
    let served: &[(ApiKey, i16)] = &[
        (
            ApiKey::ApiVersions,
            ApiKey::ApiVersions.valid_versions().max,
        ),
        (ApiKey::Metadata, 12),
        (ApiKey::FindCoordinator, 4),
        (ApiKey::JoinGroup, 9),
        (ApiKey::SyncGroup, 5),
        (ApiKey::Heartbeat, 4),
        (ApiKey::LeaveGroup, 5),
        (ApiKey::OffsetCommit, 8),
        (ApiKey::OffsetFetch, 7),
        (ApiKey::ListOffsets, 7),
        (ApiKey::Fetch, 12),
        (ApiKey::Produce, 9),
        (ApiKey::CreateTopics, 7),
        (ApiKey::SaslHandshake, 1),
        (ApiKey::SaslAuthenticate, 2),
    ];
    ApiVersionTable::from_ranges(served.iter().map(|(api, max)| {
        let min = api.valid_versions().min;
        (*api as i16, min, *max)
    }))
}

impl MockCluster {
    /// Adds broker `node_id` listening on a free port of 127.0.0.1 and serves it until the
    /// runtime stops. Returns its `host:port`. Must run inside an actix system.
    pub async fn serve_tcp(&self, node_id: i32) -> std::io::Result<String> {
        self.listen(node_id, None).await
    }

    /// As [`serve_tcp`](Self::serve_tcp), with a SASL listener: every connection must
    /// authenticate as one of `sasl`'s users before anything but ApiVersions is served.
    pub async fn serve_tcp_with_sasl(
        &self,
        node_id: i32,
        sasl: MockSasl,
    ) -> std::io::Result<String> {
        self.listen(node_id, Some(sasl)).await
    }

    async fn listen(&self, node_id: i32, sasl: Option<MockSasl>) -> std::io::Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        self.add_broker(node_id, "127.0.0.1", i32::from(port));
        let cluster = self.clone();
        actix::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let cluster = cluster.clone();
                let session = sasl.clone().map(SaslSession::new);
                actix::spawn(async move {
                    let _ = serve(cluster, node_id, stream, session).await;
                });
            }
        });
        Ok(format!("127.0.0.1:{port}"))
    }
}

/// Serves one connection until the client closes it or sends what the mock cannot answer.
async fn serve(
    cluster: MockCluster,
    node_id: i32,
    mut stream: TcpStream,
    mut sasl: Option<SaslSession>,
) -> Result<(), String> {
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).await.is_err() {
            return Ok(()); // closed
        }
        let size = i32::from_be_bytes(size);
        if !(0..=64 * 1024 * 1024).contains(&size) {
            return Err(format!("request frame of {size} bytes"));
        }
        let mut frame = vec![0u8; size as usize];
        stream
            .read_exact(&mut frame)
            .await
            .map_err(|e| e.to_string())?;
        let (api, version, correlation_id, request) = decode(Bytes::from(frame))?;
        let (response, close) = match sasl.as_mut().map(|s| s.gate(api, &request)) {
            None | Some(Gate::Pass) => (
                answer(&cluster, node_id, api, version, request).await?,
                false,
            ),
            Some(Gate::Answer { response, close }) => (*response, close),
            Some(Gate::Refuse(why)) => return Err(why),
        };
        let frame = encode(api, version, correlation_id, &response)?;
        stream.write_all(&frame).await.map_err(|e| e.to_string())?;
        if close {
            return Ok(());
        }
    }
}

/// A request frame's API, version, correlation id and body.
fn decode(mut frame: Bytes) -> Result<(ApiKey, i16, i32, RequestKind), String> {
    if frame.len() < 4 {
        return Err("request too short for a header".into());
    }
    let api = ApiKey::try_from(frame.clone().get_i16()).map_err(|_| "unknown API key")?;
    let version = frame.clone().slice(2..4).get_i16();
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| format!("{api:?} v{version} header: {e:#}"))?;
    let request = RequestKind::decode(api, &mut frame, version)
        .map_err(|e| format!("{api:?} v{version} request: {e:#}"))?;
    Ok((api, version, header.correlation_id, request))
}

async fn answer(
    cluster: &MockCluster,
    node_id: i32,
    api: ApiKey,
    version: i16,
    request: RequestKind,
) -> Result<ResponseKind, String> {
    // An empty Fetch is held there as a broker's long poll (up to its max wait, at most
    // 500 ms), as for in-process calls.
    let call = Call::from_kind(api, request).with_max_version(version);
    let reply = cluster
        .answer_call(node_id, call)
        .await
        .map_err(|e| format!("{api:?} v{version}: {e}"))?;
    if reply.version != version {
        return Err(format!(
            "{api:?}: client asked v{version}, mock answered v{}",
            reply.version
        ));
    }
    Ok(reply.response)
}

fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    out.put_i32(0); // size, set below
    out.put_i32(correlation_id);
    if api != ApiKey::ApiVersions && api.response_header_version(version) >= 1 {
        out.put_u8(0); // no tagged fields
    }
    response
        .encode(&mut out, version)
        .map_err(|e| format!("{api:?} v{version} response: {e:#}"))?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}
