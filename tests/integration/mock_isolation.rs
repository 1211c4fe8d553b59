//! read_committed end to end on mocked brokers: transactional batches and commit/abort markers
//! in a partition log, a Fetch answer cut at the last stable offset with its aborted-transactions
//! list, and a ConsumerService that delivers only committed and plain records — committing past
//! markers and aborted records — while read_uncommitted gets every data record.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler, Recipient};
use konsumer::consumer::ConsumerConfig;
use konsumer::group::GroupConfig;
use konsumer::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use konsumer::kafka_protocol::messages::fetch_response::PartitionData;
use konsumer::kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use konsumer::kafka_protocol::protocol::StrBytes;
use konsumer::protocol::{ApiKey, RequestKind};
use konsumer::records::{
    decode_fetched, AbortedTransaction, DecodeOptions, Isolation, PartitionFetch,
};
use konsumer::ClientConfig;
use konsumer_actors::messages::{Call, ConnectionFor};
use konsumer_actors::testkit::{CapturedLog, MockCluster};
use konsumer_actors::{
    Cluster, CommitNow, ConsumerEvent, ConsumerEvents, ConsumerService, HandlerRef, HandlerResult,
    KafkaBatch, Purpose, Shutdown, Target,
};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{eventually, fast_backoff};

const GROUP: &str = "isolation";
const TOPIC: &str = "payments";
/// A producer whose transaction commits.
const COMMITS: i64 = 1000;
/// A producer whose transactions abort.
const ABORTS: i64 = 2000;
/// A producer whose transaction is still open when consumption starts.
const OPEN: i64 = 3000;

fn mock() -> MockCluster {
    let mock = MockCluster::new();
    mock.add_broker(1, "mock-1", 9092).add_topic(TOPIC, &[1]);
    mock
}

/// Fills partition 0 with plain records, a committed transaction and an aborted one
/// interleaved with each other, and an open transaction followed by a plain record:
///
/// ```text
/// 0-1 plain | 2-3 committed | 4-5 aborted | 6 plain | 7 committed | 8 aborted
/// 9 COMMIT(COMMITS) | 10 ABORT(ABORTS) | 11-12 open | 13 plain      (LSO 11, end 14)
/// ```
///
/// The last records below the last stable offset are markers, so a commit reaches it only by
/// passing over them.
fn fill(mock: &MockCluster) {
    let plain = |values: &[&str]| {
        let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
        mock.append(TOPIC, 0, &records)
    };
    let txn = |producer: i64, values: &[&str]| {
        let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
        mock.append_transactional(TOPIC, 0, producer, &records)
    };
    assert_eq!(plain(&["plain-0", "plain-1"]), 0);
    assert_eq!(txn(COMMITS, &["committed-0", "committed-1"]), 2);
    assert_eq!(txn(ABORTS, &["aborted-0", "aborted-1"]), 4);
    assert_eq!(plain(&["plain-2"]), 6);
    assert_eq!(txn(COMMITS, &["committed-2"]), 7);
    assert_eq!(txn(ABORTS, &["aborted-2"]), 8);
    assert_eq!(mock.last_stable_offset(TOPIC, 0), 2, "COMMITS is open");
    assert_eq!(mock.end_transaction(TOPIC, 0, COMMITS, true), 9);
    assert_eq!(mock.last_stable_offset(TOPIC, 0), 4, "ABORTS is open");
    assert_eq!(mock.end_transaction(TOPIC, 0, ABORTS, false), 10);
    assert_eq!(txn(OPEN, &["open-0", "open-1"]), 11);
    assert_eq!(plain(&["plain-3"]), 13);
    assert_eq!(mock.log_end(TOPIC, 0), 14);
    assert_eq!(mock.last_stable_offset(TOPIC, 0), 11);
}

/// What read_committed may see of [`fill`]'s data: below the open transaction, without the
/// aborted records.
const COMMITTED_BELOW_OPEN: &[(i64, &str)] = &[
    (0, "plain-0"),
    (1, "plain-1"),
    (2, "committed-0"),
    (3, "committed-1"),
    (6, "plain-2"),
    (7, "committed-2"),
];

fn owned(expected: &[(i64, &str)]) -> Vec<(i64, String)> {
    expected
        .iter()
        .map(|(o, v)| (*o, (*v).to_owned()))
        .collect()
}

// --- the mocked broker's Fetch answers -------------------------------------------------------

async fn fetch_connection(mock: &MockCluster) -> Recipient<Call> {
    let (log, _) = CapturedLog::new();
    let cluster = Cluster::connect_with(
        Arc::new(ClientConfig::new(["mock-1:9092"])),
        log,
        mock.connector(),
    )
    .await
    .expect("bootstrap");
    let (_, connection) = cluster
        .send(ConnectionFor {
            target: Target::Broker(1),
            purpose: Purpose::Fetch,
        })
        .await
        .expect("cluster alive")
        .expect("a connection");
    connection
}

/// Fetches partition 0 from `offset` at once (no wait) with `isolation_level`.
async fn fetch(connection: &Recipient<Call>, offset: i64, isolation_level: i8) -> PartitionData {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_isolation_level(isolation_level)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let response = connection
        .send(Call::new(request).with_max_version(11))
        .await
        .expect("connection alive")
        .expect("fetch answered")
        .into_typed::<FetchRequest>("mock")
        .expect("a Fetch answer");
    let data = response.responses[0].partitions[0].clone();
    assert_eq!(data.error_code, 0);
    data
}

fn aborted_list(data: &PartitionData) -> Option<Vec<(i64, i64)>> {
    data.aborted_transactions.as_ref().map(|list| {
        list.iter()
            .map(|t| (t.producer_id.0, t.first_offset))
            .collect()
    })
}

/// Decodes an answer as the Fetcher does: (offset, value) of each delivered record, and the
/// next offset to fetch.
fn decode(data: &PartitionData, offset: i64, isolation: Isolation) -> (Vec<(i64, String)>, i64) {
    let aborted: Vec<AbortedTransaction> = data
        .aborted_transactions
        .iter()
        .flatten()
        .map(|t| AbortedTransaction {
            producer_id: t.producer_id.0,
            first_offset: t.first_offset,
        })
        .collect();
    let fetched = decode_fetched(
        data.records.clone().unwrap_or_default(),
        &PartitionFetch {
            topic: TOPIC,
            partition: 0,
            fetch_offset: offset,
            isolation,
            aborted_transactions: &aborted,
        },
        &DecodeOptions::default(),
    );
    assert!(fetched.error.is_none(), "{:?}", fetched.error);
    let records = fetched
        .records
        .iter()
        .map(|r| {
            let value = String::from_utf8_lossy(r.value().unwrap_or_default()).into_owned();
            (r.offset, value)
        })
        .collect();
    (records, fetched.next_offset)
}

#[actix::test]
async fn the_mock_cuts_read_committed_at_the_lso_and_lists_the_overlapping_aborts() {
    let mock = mock();
    fill(&mock);
    let connection = fetch_connection(&mock).await;

    // read_committed: the batches below the open transaction, and the aborted one among them.
    let data = fetch(&connection, 0, 1).await;
    assert_eq!(
        (data.high_watermark, data.last_stable_offset),
        (14, 11),
        "high watermark, last stable offset"
    );
    assert_eq!(aborted_list(&data), Some(vec![(ABORTS, 4)]));
    let (records, next) = decode(&data, 0, Isolation::ReadCommitted);
    assert_eq!(records, owned(COMMITTED_BELOW_OPEN));
    assert_eq!(next, 11, "the markers at 9 and 10 are passed over");

    // From inside the aborted range: still listed (its marker is ahead); the rest too.
    let data = fetch(&connection, 8, 1).await;
    assert_eq!(aborted_list(&data), Some(vec![(ABORTS, 4)]));
    let (records, next) = decode(&data, 8, Isolation::ReadCommitted);
    assert_eq!((records, next), (vec![], 11));

    // At the LSO: nothing to return yet, and no abort ends at or past 11.
    let data = fetch(&connection, 11, 1).await;
    assert_eq!(data.records.as_ref().map_or(0, |r| r.len()), 0);
    assert_eq!(aborted_list(&data), Some(vec![]));

    // read_uncommitted: everything to the high watermark, no aborted list.
    let data = fetch(&connection, 0, 0).await;
    assert_eq!(data.last_stable_offset, 11);
    assert_eq!(aborted_list(&data), None);
    let (records, next) = decode(&data, 0, Isolation::ReadUncommitted);
    let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13]);
    assert_eq!(next, 14);

    // The open transaction aborts: the LSO moves to the end, the abort is listed from 11.
    assert_eq!(mock.end_transaction(TOPIC, 0, OPEN, false), 14);
    let data = fetch(&connection, 11, 1).await;
    assert_eq!(data.last_stable_offset, 15);
    assert_eq!(aborted_list(&data), Some(vec![(OPEN, 11)]));
    let (records, next) = decode(&data, 11, Isolation::ReadCommitted);
    assert_eq!(records, vec![(13, "plain-3".to_owned())]);
    assert_eq!(next, 15);
    // Markers are not produced data.
    assert_eq!(mock.produced(TOPIC, 0).len(), 12);
}

// --- a ConsumerService on the same data ------------------------------------------------------

/// Every record a handler received, as (offset, value), in delivery order.
#[derive(Default)]
struct Seen(Mutex<Vec<(i64, String)>>);

impl Seen {
    fn records(&self) -> Vec<(i64, String)> {
        self.0.lock().expect("lock").clone()
    }
}

struct Collect(Arc<Seen>);

impl Actor for Collect {
    type Context = Context<Self>;
}

impl Handler<KafkaBatch> for Collect {
    type Result = HandlerResult;

    fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
        let mut seen = self.0 .0.lock().expect("lock");
        for record in &batch.records {
            let value = String::from_utf8_lossy(record.value().unwrap_or_default()).into_owned();
            seen.push((record.offset, value));
        }
        Ok(())
    }
}

struct Service {
    addr: Addr<ConsumerService>,
    events: UnboundedReceiver<ConsumerEvent>,
    log: CapturedLog,
}

impl Service {
    /// The offsets of partition 0 in the Committed events so far.
    fn committed_events(&mut self) -> Vec<i64> {
        let mut out = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            match event {
                ConsumerEvent::Committed { offsets } => {
                    out.extend(offsets.get(&(TOPIC.to_owned(), 0)).copied());
                }
                ConsumerEvent::PartitionStopped { error, .. } => {
                    panic!("partition stopped: {error}")
                }
                _ => {}
            }
        }
        out
    }

    /// Commits now until the group's committed offset of partition 0 is `expected`.
    async fn commit_until(&self, mock: &MockCluster, expected: i64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let _ = self.addr.send(CommitNow).await;
            let now = committed(mock);
            if now == Some(expected) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "committed {now:?}, expected {expected}\n{}",
                self.log.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn committed(mock: &MockCluster) -> Option<i64> {
    mock.group(GROUP)?
        .committed
        .get(&(TOPIC.to_owned(), 0))
        .map(|c| c.0)
}

fn group() -> GroupConfig {
    crate::mock_group(GROUP, TOPIC, Duration::from_millis(100))
}

/// Commits only on [`CommitNow`] (a long interval), so every Committed event is the test's.
fn consumer(isolation: Isolation) -> ConsumerConfig {
    ConsumerConfig {
        isolation,
        offset_reset: konsumer::consumer::OffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(50),
        commit_interval: Duration::from_secs(3600),
        retry_backoff: fast_backoff(),
        sidechannel_topic: String::new(),
        ..ConsumerConfig::default()
    }
}

async fn start(mock: &MockCluster, isolation: Isolation, seen: &Arc<Seen>) -> Service {
    let (log, captured) = CapturedLog::new();
    let client = Arc::new(ClientConfig::new(["mock-1:9092"]));
    let cluster = Cluster::connect_with(client, log.clone(), mock.connector())
        .await
        .expect("bootstrap");
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let addr = ConsumerService::builder(ClientConfig::new(["mock-1:9092"]), group())
        .cluster(cluster)
        .consumer_config(consumer(isolation))
        .handler(HandlerRef::batches(&Collect(seen.clone()).start()))
        .events(ConsumerEvents::Channel(tx))
        .logger(log)
        .start()
        .await
        .expect("service starts");
    Service {
        addr,
        events,
        log: captured,
    }
}

async fn wait_for(seen: &Seen, count: usize, what: &str) {
    eventually(Duration::from_secs(10), what, || {
        let n = seen.records().len();
        async move { (n >= count).then_some(()) }
    })
    .await;
}

/// Every Fetch the mock received asked for `level`.
fn fetched_with(mock: &MockCluster, level: i8) -> bool {
    let fetches: Vec<i8> = mock
        .received()
        .into_iter()
        .filter(|r| r.api == ApiKey::Fetch)
        .filter_map(|r| match r.request {
            RequestKind::Fetch(f) => Some(f.isolation_level),
            _ => None,
        })
        .collect();
    !fetches.is_empty() && fetches.iter().all(|l| *l == level)
}

#[actix::test]
async fn read_committed_delivers_committed_and_plain_records_below_the_open_transaction() {
    let mock = mock();
    fill(&mock);
    let seen = Arc::new(Seen::default());
    let mut service = start(&mock, Isolation::ReadCommitted, &seen).await;

    wait_for(&seen, COMMITTED_BELOW_OPEN.len(), "the committed records").await;
    // The commit passes over the aborted record at 8 and the markers at 9 and 10, to the LSO.
    service.commit_until(&mock, 11).await;
    // The open transaction holds everything at and after 11 back, plain-3 included.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.records(), owned(COMMITTED_BELOW_OPEN));
    service
        .addr
        .send(CommitNow)
        .await
        .expect("alive")
        .expect("commits");
    assert_eq!(
        committed(&mock),
        Some(11),
        "committed into the open transaction"
    );
    let events = service.committed_events();
    assert_eq!(events.last(), Some(&11), "Committed events: {events:?}");
    assert!(
        events.iter().all(|o| *o <= 11),
        "Committed events: {events:?}"
    );

    // The open transaction commits; then another aborts, and a plain record follows.
    assert_eq!(mock.end_transaction(TOPIC, 0, OPEN, true), 14);
    let aborted = mock.append_transactional(TOPIC, 0, ABORTS, &[(None, Some(b"aborted-3"))]);
    assert_eq!(aborted, 15);
    assert_eq!(mock.end_transaction(TOPIC, 0, ABORTS, false), 16);
    assert_eq!(mock.append(TOPIC, 0, &[(None, Some(b"plain-4"))]), 17);

    let mut expected = owned(COMMITTED_BELOW_OPEN);
    expected.extend(owned(&[
        (11, "open-0"),
        (12, "open-1"),
        (13, "plain-3"),
        (17, "plain-4"),
    ]));
    wait_for(&seen, expected.len(), "the rest").await;
    service.commit_until(&mock, 18).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen.records(),
        expected,
        "in order, each once, nothing aborted"
    );
    assert_eq!(service.committed_events().last(), Some(&18));
    assert!(
        fetched_with(&mock, 1),
        "the Fetcher did not ask for read_committed"
    );
    service.addr.send(Shutdown).await.expect("shutdown answers");
}

#[actix::test]
async fn read_uncommitted_delivers_every_data_record_and_no_markers() {
    let mock = mock();
    fill(&mock);
    let seen = Arc::new(Seen::default());
    let mut service = start(&mock, Isolation::ReadUncommitted, &seen).await;

    let expected = owned(&[
        (0, "plain-0"),
        (1, "plain-1"),
        (2, "committed-0"),
        (3, "committed-1"),
        (4, "aborted-0"),
        (5, "aborted-1"),
        (6, "plain-2"),
        (7, "committed-2"),
        (8, "aborted-2"),
        (11, "open-0"),
        (12, "open-1"),
        (13, "plain-3"),
    ]);
    wait_for(&seen, expected.len(), "every data record").await;
    // The markers at 9 and 10 are passed over on the way to the log end.
    service.commit_until(&mock, 14).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.records(), expected);
    assert_eq!(service.committed_events().last(), Some(&14));
    assert!(
        fetched_with(&mock, 0),
        "the Fetcher did not ask for read_uncommitted"
    );
    service.addr.send(Shutdown).await.expect("shutdown answers");
}
