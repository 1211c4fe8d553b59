//! A replay broker: a minimal Kafka-protocol server on a loopback port that serves one topic of
//! record batches encoded once, in memory, so a benchmark measures the client and not the
//! broker (a real broker reads, checks and copies its log on every fetch).
//!
//! Fetch and ListOffsets are answered here, from [`ReplayTopic`]: a partition's batches are
//! one contiguous [`Bytes`] with an index of batch starts, so a fetch is a binary search and a
//! slice of whole batches (no record is encoded or copied per request, except into the
//! response frame). A fetch with data is answered at once; one at the end of every partition
//! asked is held for its max wait (at most [`MAX_HOLD`]), since nothing is ever appended.
//! Everything else a consumer group needs — ApiVersions, Metadata (this server is node 1,
//! the only broker and every partition's leader), FindCoordinator, the group APIs,
//! OffsetFetch and OffsetCommit — is answered by a [`MockCluster`] behind it, as the TCP mock
//! ([`listener`](super::listener)) answers it. CreateTopics is not served, so a member's
//! sidechannel must be off (`ConsumerConfig::sidechannel_topic` empty); Produce is advertised
//! for librdkafka's sake (see [`replay_versions`]) but never changes the replayed topic.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use konsumer_actors::core::compression::Compression;
//! use konsumer_actors::testkit::replay::{ReplayBroker, ReplayTopic};
//!
//! // 60,000 records of 100 bytes in 6 partitions, 128 records per batch, uncompressed.
//! let topic = ReplayTopic::generate("replayed", 6, 60_000, 100, 128, Compression::None)
//!     .expect("the batches encode");
//! let broker = ReplayBroker::start(topic).await?; // inside an actix system
//! println!("bootstrap: {}", broker.bootstrap());
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use konsumer::compression::Compression;
use konsumer::kafka_protocol::messages::{
    fetch_response, list_offsets_response, ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, RequestHeader, RequestKind, ResponseKind,
};
use konsumer::kafka_protocol::protocol::Decodable;
use konsumer::protocol::ApiVersionTable;
use konsumer::records::{BatchBuilder, RecordsError, NO_HEADERS};
use konsumer::KafkaCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::mock::MockCluster;
use crate::messages::Call;

/// The replay broker's node id.
pub const NODE_ID: i32 = 1;

/// The longest an empty fetch is held: nothing will arrive, so this only paces an idle client.
pub const MAX_HOLD: Duration = Duration::from_secs(1);

/// The largest request frame read; a bigger one is malformed here and closes the connection.
const MAX_REQUEST: i32 = 16 * 1024 * 1024;

/// Timestamp of offset 0; record `o` of a partition has this plus `o` ms.
pub const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

/// One partition's batches, encoded once.
#[derive(Debug, Clone)]
struct ReplayPartition {
    /// Every batch, back to back.
    bytes: Bytes,
    /// Per batch: its base offset and where it starts in `bytes`, in offset order.
    index: Vec<(i64, usize)>,
    /// The log end offset: one past the last record.
    end: i64,
}

impl ReplayPartition {
    /// Whole batches from the one holding `offset`, as many as fit in `limit` bytes, at least
    /// one when `min_one` (KIP-74: an oversized first batch still comes back).
    fn slice(&self, offset: i64, limit: usize, min_one: bool) -> Bytes {
        if offset >= self.end || self.index.is_empty() {
            return Bytes::new();
        }
        // The last batch whose base offset is at or below `offset`.
        let first = self.index.partition_point(|(base, _)| *base <= offset);
        let first = first.saturating_sub(1);
        let start = self.index[first].1;
        let batch_end = |i: usize| self.index.get(i + 1).map_or(self.bytes.len(), |b| b.1);
        let mut end = start;
        for i in first..self.index.len() {
            let next = batch_end(i);
            if next - start > limit && !(end == start && min_one) {
                break;
            }
            end = next;
        }
        self.bytes.slice(start..end)
    }
}

/// A topic's partitions as encoded record batches, ready to be served.
#[derive(Debug, Clone)]
pub struct ReplayTopic {
    name: String,
    partitions: Vec<ReplayPartition>,
    value_byte_sum: u64,
}

/// Record `offset` of `partition`'s value: `len` bytes of JSON-like text (varied as real
/// events are, so compression sees a realistic ratio), extended by [`pad_json_like`] or cut to
/// `len`. A test checks what it received against this.
pub fn replay_value(partition: i32, offset: i64, len: usize) -> Vec<u8> {
    let i = offset.unsigned_abs();
    let mut v = format!(
        r#"{{"p":{partition},"o":{offset},"user":"u{:05}","amount":{}.{:02},"currency":"EUR","ts":{}"#,
        (i * 7919) % 100_000,
        (i * 31) % 10_000,
        i % 100,
        BASE_TIMESTAMP.unsigned_abs() + i,
    )
    .into_bytes();
    pad_json_like(&mut v, len, (u64::from(partition.unsigned_abs()) << 40) ^ i);
    v
}

/// Brings `value` to exactly `len` bytes: cut, or extended with JSON-like `,"fNN":N` fields
/// drawn from a hash of `seed` and their position and closed with `}` (when it fits), so a
/// long value compresses about as a real event does rather than to almost nothing, as padding
/// with one repeated byte would.
pub fn pad_json_like(value: &mut Vec<u8>, len: usize, seed: u64) {
    use std::io::Write;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while value.len() + 1 < len {
        // xorshift64*: cheap, and varied enough for a compressor.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let h = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 16;
        let _ = write!(value, r#","f{:02}":{}"#, h % 32, (h >> 6) % 1_000);
    }
    value.truncate(len.saturating_sub(1));
    value.push(b'}');
    value.truncate(len);
}

/// Record `offset` of `partition`'s key (10,000 distinct keys per partition).
pub fn replay_key(offset: i64) -> Vec<u8> {
    format!("key-{}", offset % 10_000).into_bytes()
}

impl ReplayTopic {
    /// `records` records spread round robin over `partitions` partitions (record `i` is at
    /// offset `i / partitions` of partition `i % partitions`), with keys [`replay_key`] and
    /// values [`replay_value`] of `value_len` bytes, in batches of `batch_records` records
    /// compressed with `compression`.
    pub fn generate(
        name: &str,
        partitions: i32,
        records: u64,
        value_len: usize,
        batch_records: usize,
        compression: Compression,
    ) -> Result<ReplayTopic, RecordsError> {
        let count = partitions.max(1);
        let batch_records = batch_records.max(1) as i64;
        let mut value_byte_sum = 0u64;
        let mut built = Vec::new();
        for partition in 0..count {
            let n = (records / count as u64
                + u64::from((partition as u64) < records % count as u64))
                as i64;
            let mut bytes = BytesMut::new();
            let mut index = Vec::new();
            let mut base = 0i64;
            while base < n {
                let mut batch = BatchBuilder::new(compression, None).base_offset(base);
                for offset in base..(base + batch_records).min(n) {
                    let value = replay_value(partition, offset, value_len);
                    value_byte_sum += value.iter().map(|&b| u64::from(b)).sum::<u64>();
                    batch.append(
                        BASE_TIMESTAMP + offset,
                        Some(&replay_key(offset)),
                        Some(&value),
                        NO_HEADERS,
                    );
                }
                index.push((base, bytes.len()));
                bytes.extend_from_slice(&batch.build()?);
                base = (base + batch_records).min(n);
            }
            built.push(ReplayPartition {
                bytes: bytes.freeze(),
                index,
                end: n,
            });
        }
        Ok(ReplayTopic {
            name: name.to_owned(),
            partitions: built,
            value_byte_sum,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records per partition (each partition's log end offset).
    pub fn record_counts(&self) -> Vec<i64> {
        self.partitions.iter().map(|p| p.end).collect()
    }

    /// The sum of every value byte of every record: a reader that adds them up proves it read
    /// each value whole.
    pub fn value_byte_sum(&self) -> u64 {
        self.value_byte_sum
    }

    /// Bytes of encoded batches, over all partitions.
    pub fn encoded_bytes(&self) -> usize {
        self.partitions.iter().map(|p| p.bytes.len()).sum()
    }

    fn partition(&self, topic: &str, partition: i32) -> Option<&ReplayPartition> {
        if topic != self.name {
            return None;
        }
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.partitions.get(p))
    }
}

/// The APIs served: what a consumer group member needs.
pub fn replay_versions() -> ApiVersionTable {
    let served: &[(ApiKey, i16, i16)] = &[
        (
            ApiKey::ApiVersions,
            0,
            ApiKey::ApiVersions.valid_versions().max,
        ),
        (ApiKey::Metadata, 0, 12),
        (ApiKey::FindCoordinator, 0, 4),
        (ApiKey::JoinGroup, 0, 9),
        (ApiKey::SyncGroup, 0, 5),
        (ApiKey::Heartbeat, 0, 4),
        (ApiKey::LeaveGroup, 0, 5),
        (ApiKey::OffsetCommit, 0, 8),
        (ApiKey::OffsetFetch, 0, 7),
        // v1+: v0's answer is a list of old-style offsets.
        (ApiKey::ListOffsets, 1, 7),
        // v4+: record batches; up to v12, topics by name.
        (ApiKey::Fetch, 4, 12),
        // librdkafka enables record batches (its MsgVer2 feature) only if Produce v3+ is
        // there too, and fetches nothing without them. A Produce goes to the mock's logs,
        // never into the replayed topic.
        (ApiKey::Produce, 3, 9),
    ];
    ApiVersionTable::from_ranges(served.iter().map(|(api, min, max)| {
        let min = (*min).max(api.valid_versions().min);
        (*api as i16, min, *max)
    }))
}

/// A running replay broker; serves until the actix system it was started in stops.
#[derive(Debug, Clone)]
pub struct ReplayBroker {
    address: String,
    cluster: MockCluster,
    topic: Arc<ReplayTopic>,
    versions: Arc<ApiVersionTable>,
    fetches: Arc<AtomicU64>,
}

impl ReplayBroker {
    /// Serves `topic` on a free port of 127.0.0.1. Must run inside an actix system.
    pub async fn start(topic: ReplayTopic) -> std::io::Result<ReplayBroker> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let cluster = MockCluster::new();
        cluster.add_broker(NODE_ID, "127.0.0.1", i32::from(port));
        cluster.add_topic(&topic.name, &vec![NODE_ID; topic.partitions.len()]);
        cluster.set_versions(replay_versions());
        let broker = ReplayBroker {
            address: format!("127.0.0.1:{port}"),
            cluster,
            topic: Arc::new(topic),
            versions: Arc::new(replay_versions()),
            fetches: Arc::new(AtomicU64::new(0)),
        };
        let server = broker.clone();
        actix::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                actix::spawn(async move {
                    // A failed connection is the client's to notice; the broker goes on.
                    let _ = server.serve(stream).await;
                });
            }
        });
        Ok(broker)
    }

    /// `host:port` for a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.address.clone()
    }

    /// The mocked cluster answering the group APIs: [`MockCluster::group`] shows commits.
    pub fn cluster(&self) -> &MockCluster {
        &self.cluster
    }

    pub fn topic(&self) -> &ReplayTopic {
        &self.topic
    }

    /// Fetch requests answered so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// One connection, one request at a time in order (as a Kafka broker serves it), until
    /// the client closes it or sends something malformed or unserved.
    async fn serve(&self, mut stream: TcpStream) -> Result<(), String> {
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        loop {
            let mut size = [0u8; 4];
            if stream.read_exact(&mut size).await.is_err() {
                return Ok(()); // closed
            }
            let size = i32::from_be_bytes(size);
            if !(4..=MAX_REQUEST).contains(&size) {
                return Err(format!("request frame of {size} bytes"));
            }
            let mut frame = vec![0u8; size as usize];
            stream
                .read_exact(&mut frame)
                .await
                .map_err(|e| e.to_string())?;
            let answer = self.answer(Bytes::from(frame)).await?;
            stream.write_all(&answer).await.map_err(|e| e.to_string())?;
        }
    }

    async fn answer(&self, mut frame: Bytes) -> Result<Bytes, String> {
        if frame.len() < 4 {
            return Err("request too short for a header".into());
        }
        let api = ApiKey::try_from(frame.clone().get_i16()).map_err(|_| "unknown API key")?;
        let version = frame.clone().slice(2..4).get_i16();
        // ApiVersions is answered at any version (an unsupported one gets the v0 error answer).
        let served = match self.versions.broker_range(api) {
            _ if api == ApiKey::ApiVersions => true,
            Some((min, max)) => (min..=max).contains(&version),
            None => false,
        };
        if !served {
            return Err(format!("{api:?} v{version} is not served"));
        }
        let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
            .map_err(|e| format!("{api:?} v{version} header: {e:#}"))?;
        let request = RequestKind::decode(api, &mut frame, version)
            .map_err(|e| format!("{api:?} v{version} request: {e:#}"))?;
        let response = match request {
            RequestKind::Fetch(request) => {
                self.fetches.fetch_add(1, Ordering::Relaxed);
                ResponseKind::Fetch(self.fetch(&request).await)
            }
            RequestKind::ListOffsets(request) => {
                ResponseKind::ListOffsets(self.list_offsets(&request))
            }
            request => {
                let call = Call::from_kind(api, request).with_max_version(version);
                let reply = self
                    .cluster
                    .answer_call(NODE_ID, call)
                    .await
                    .map_err(|e| format!("{api:?} v{version}: {e}"))?;
                if reply.version != version {
                    return Err(format!(
                        "{api:?}: client asked v{version}, mock answered v{}",
                        reply.version
                    ));
                }
                reply.response
            }
        };
        let mut out = BytesMut::new();
        out.put_i32(0); // size, set below
        out.put_i32(header.correlation_id);
        if api != ApiKey::ApiVersions && api.response_header_version(version) >= 1 {
            out.put_u8(0); // no tagged fields
        }
        response
            .encode(&mut out, version)
            .map_err(|e| format!("{api:?} v{version} response: {e:#}"))?;
        let size = i32::try_from(out.len() - 4).map_err(|_| "response over 2 GiB")?;
        out[..4].copy_from_slice(&size.to_be_bytes());
        Ok(out.freeze())
    }

    /// Whole batches from each partition's fetch offset, within the partition's and the
    /// request's byte limits; held for the max wait only when no partition has any.
    async fn fetch(&self, request: &FetchRequest) -> FetchResponse {
        let mut remaining = usize::try_from(request.max_bytes).unwrap_or(0);
        let mut min_one = true;
        let mut any = false;
        let responses = request
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let answer = fetch_response::PartitionData::default()
                            .with_partition_index(p.partition);
                        let Some(log) = self.topic.partition(&topic.topic.0, p.partition) else {
                            return answer
                                .with_error_code(KafkaCode::UnknownTopicOrPartition.code())
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1);
                        };
                        let answer = answer
                            .with_high_watermark(log.end)
                            .with_last_stable_offset(log.end)
                            .with_log_start_offset(0);
                        if p.fetch_offset < 0 || p.fetch_offset > log.end {
                            return answer.with_error_code(KafkaCode::OffsetOutOfRange.code());
                        }
                        let limit = usize::try_from(p.partition_max_bytes)
                            .unwrap_or(0)
                            .min(remaining);
                        let records = log.slice(p.fetch_offset, limit, min_one);
                        if !records.is_empty() {
                            min_one = false;
                            any = true;
                            remaining = remaining.saturating_sub(records.len());
                        }
                        answer.with_records(Some(records))
                    })
                    .collect();
                fetch_response::FetchableTopicResponse::default()
                    .with_topic(topic.topic.clone())
                    .with_partitions(partitions)
            })
            .collect();
        if !any {
            let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
            tokio::time::sleep(wait.min(MAX_HOLD)).await;
        }
        FetchResponse::default().with_responses(responses)
    }

    /// Earliest (-2) is 0; latest (-1) and max timestamp (-3) the log end (max timestamp:
    /// its last record); a timestamp the first record at or after it (record `o` has
    /// [`BASE_TIMESTAMP`] + `o`), or -1 past the end.
    fn list_offsets(&self, request: &ListOffsetsRequest) -> ListOffsetsResponse {
        let topics = request
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let answer = list_offsets_response::ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_timestamp(-1)
                            .with_offset(-1);
                        let Some(log) = self.topic.partition(&topic.name.0, p.partition_index)
                        else {
                            return answer
                                .with_error_code(KafkaCode::UnknownTopicOrPartition.code());
                        };
                        let (offset, timestamp) = match p.timestamp {
                            -2 => (0, -1),
                            -1 => (log.end, -1),
                            -3 if log.end > 0 => (log.end - 1, BASE_TIMESTAMP + log.end - 1),
                            -3 => (-1, -1),
                            t => {
                                let o = t.saturating_sub(BASE_TIMESTAMP).max(0);
                                if o < log.end {
                                    (o, BASE_TIMESTAMP + o)
                                } else {
                                    (-1, -1)
                                }
                            }
                        };
                        answer.with_offset(offset).with_timestamp(timestamp)
                    })
                    .collect();
                list_offsets_response::ListOffsetsTopicResponse::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsumer::records::{decode_all, DecodeOptions};

    fn offsets(bytes: Bytes) -> Vec<i64> {
        decode_all(bytes, &DecodeOptions::default())
            .expect("the slice is whole batches")
            .iter()
            .map(|r| r.offset)
            .collect()
    }

    #[test]
    fn replay_slices_whole_batches_from_the_fetch_offset() {
        let topic = ReplayTopic::generate("t", 2, 2_001, 100, 100, Compression::None).unwrap();
        assert_eq!(topic.record_counts(), [1001, 1000]);
        let p0 = topic.partition("t", 0).unwrap();
        assert_eq!(p0.index.len(), 11);
        // From the middle of the third batch: it starts at 200; a limit of one byte still
        // returns that batch whole (min one), and no more.
        assert_eq!(
            offsets(p0.slice(250, 1, true)),
            (200..300).collect::<Vec<_>>()
        );
        assert!(p0.slice(250, 1, false).is_empty());
        // Unlimited: everything from batch 200 to the end, the last batch of one record.
        assert_eq!(
            offsets(p0.slice(250, usize::MAX, false)),
            (200..1001).collect::<Vec<_>>()
        );
        // Two batches fit in exactly their size.
        let two = p0.index[4].1 - p0.index[2].1;
        assert_eq!(p0.slice(200, two, false).len(), two);
        assert!(p0.slice(1001, usize::MAX, true).is_empty());
        assert!(topic.partition("t", 2).is_none());
        assert!(topic.partition("u", 0).is_none());
    }

    #[test]
    fn replay_values_decode_as_generated() {
        let topic = ReplayTopic::generate("t", 3, 30, 100, 4, Compression::Lz4).unwrap();
        let p1 = topic.partition("t", 1).unwrap();
        let records = decode_all(p1.bytes.clone(), &DecodeOptions::default()).unwrap();
        assert_eq!(records.len(), 10);
        for (o, record) in records.iter().enumerate() {
            let o = o as i64;
            assert_eq!(record.offset, o);
            assert_eq!(record.value(), Some(&replay_value(1, o, 100)[..]));
            assert_eq!(record.key(), Some(&replay_key(o)[..]));
            assert_eq!(record.timestamp, BASE_TIMESTAMP + o);
        }
    }

    #[test]
    fn padded_values_have_the_asked_length_and_vary() {
        for len in [0, 1, 5, 60, 100, 1024] {
            let v = replay_value(2, 77, len);
            assert_eq!(v.len(), len);
            if len > 0 {
                assert_eq!(v.last(), Some(&b'}'));
            }
        }
        let (a, b) = (replay_value(0, 1, 1024), replay_value(0, 2, 1024));
        // The fields after the common prefix differ from one record to the next.
        assert_ne!(a[200..], b[200..]);
        assert_eq!(replay_value(0, 1, 1024)[..59], replay_value(0, 1, 60)[..59]);
    }
}
