//! Test helpers for konsumer and its users (cargo feature `testkit`):
//! - [`mock`]: a mocked cluster of broker actors, for actor tests without a network;
//! - [`tansu`]: a real Kafka-compatible broker process on a free loopback port;
//! - [`proxy`]: a TCP proxy that resets, stalls and black-holes connections on command;
//! - [`replay`]: a Kafka-protocol server replaying pre-encoded batches, for client benchmarks;
//! - [`CapturedLog`]: a logger whose lines a test can assert on.
//!
//! # Testing your handler without a network
//!
//! Enable the feature for your tests only:
//!
//! ```toml
//! [dev-dependencies]
//! konsumer-actors = { version = "0.1", features = ["testkit"] }
//! ```
//!
//! ## The handler on its own
//!
//! A handler is an ordinary actor: start it and send it messages.
//! [`KafkaMessage::detached`](crate::KafkaMessage::detached) (and
//! [`KafkaBatch::detached`](crate::KafkaBatch::detached)) make a message that belongs to no
//! partition tracker; the handler's answer comes back to the test, and an
//! [`Ack`](crate::Ack) from [`defer`](crate::KafkaMessage::defer) goes nowhere. Records come
//! from the core's encoder and decoder, so they are exactly what a fetch would deliver:
//!
//! ```rust
//! use actix::{Actor, Context, Handler};
//! use konsumer_actors::core::compression::Compression;
//! use konsumer_actors::core::records::{
//!     decode_all, BatchBuilder, DecodeOptions, Record, NO_HEADERS,
//! };
//! use konsumer_actors::{HandlerResult, KafkaMessage};
//!
//! /// The handler under test: adds up numbers, fails on anything else.
//! struct Adder {
//!     total: i64,
//! }
//!
//! impl Actor for Adder {
//!     type Context = Context<Self>;
//! }
//!
//! impl Handler<KafkaMessage> for Adder {
//!     type Result = HandlerResult;
//!
//!     fn handle(&mut self, msg: KafkaMessage, _: &mut Context<Self>) -> HandlerResult {
//!         // Any std error converts into a HandlerError, so `?` works.
//!         let text = std::str::from_utf8(msg.value().unwrap_or_default())?;
//!         self.total += text.parse::<i64>()?;
//!         Ok(())
//!     }
//! }
//!
//! /// Records with these values, at offsets 0, 1, 2, ... (one encoded batch, decoded).
//! fn records(values: &[&str]) -> Vec<Record> {
//!     let mut batch = BatchBuilder::new(Compression::None, None);
//!     for value in values {
//!         batch.append(1_700_000_000_000, None, Some(value.as_bytes()), NO_HEADERS);
//!     }
//!     decode_all(batch.build().unwrap(), &DecodeOptions::default()).unwrap()
//! }
//!
//! actix::System::new().block_on(async {
//!     let adder = Adder { total: 0 }.start();
//!     let mut answers = Vec::new();
//!     for record in records(&["1", "2", "three"]) {
//!         let msg = KafkaMessage::detached("numbers", 0, record);
//!         answers.push(adder.send(msg).await.expect("the handler is alive"));
//!     }
//!     assert_eq!(answers[..2], [Ok(()), Ok(())]);
//!     let error = answers[2].clone().unwrap_err();
//!     assert!(error.message.contains("invalid digit"), "{error}");
//! });
//! ```
//!
//! ## The whole service against a mocked cluster
//!
//! [`MockCluster`] answers everything a consumer asks — metadata, fetches from partition logs
//! the test fills with [`append`](MockCluster::append), the group protocol, commits — in
//! process. Hand its [`connector`](MockCluster::connector) to
//! [`Cluster::connect_with`](crate::Cluster::connect_with) and the cluster to the service with
//! [`ServiceBuilder::cluster`](crate::ServiceBuilder::cluster); afterwards,
//! [`MockCluster::group`] shows what the group committed:
//!
//! ```rust
//! use std::collections::BTreeMap;
//! use std::sync::atomic::{AtomicI64, Ordering};
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//!
//! use actix::{Actor, Context, Handler};
//! use konsumer_actors::core::consumer::{ConsumerConfig, OffsetReset};
//! use konsumer_actors::core::group::GroupConfig;
//! use konsumer_actors::testkit::MockCluster;
//! use konsumer_actors::{
//!     ClientConfig, Cluster, ConsumerService, HandlerRef, HandlerResult, KafkaBatch, Shutdown,
//! };
//!
//! /// Adds up the numbers of whole batches into a total the test can read.
//! struct Adder {
//!     total: Arc<AtomicI64>,
//! }
//!
//! impl Actor for Adder {
//!     type Context = Context<Self>;
//! }
//!
//! impl Handler<KafkaBatch> for Adder {
//!     type Result = HandlerResult;
//!
//!     fn handle(&mut self, batch: KafkaBatch, _: &mut Context<Self>) -> HandlerResult {
//!         for record in &batch.records {
//!             let text = std::str::from_utf8(record.value().unwrap_or_default())?;
//!             self.total.fetch_add(text.parse::<i64>()?, Ordering::Relaxed);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! actix::System::new().block_on(async {
//!     // One mocked broker (node 1) leading both partitions of `numbers`, and three records.
//!     let mock = MockCluster::new();
//!     mock.add_broker(1, "mock", 9092).add_topic("numbers", &[1, 1]);
//!     mock.append("numbers", 0, &[(None, Some("1".as_bytes())), (None, Some("2".as_bytes()))]);
//!     mock.append("numbers", 1, &[(Some("key".as_bytes()), Some("3".as_bytes()))]);
//!
//!     let log = slog::Logger::root(slog::Discard, slog::o!());
//!     let client = ClientConfig::new(["mock:9092"]);
//!     let connector = mock.connector();
//!     let cluster = Cluster::connect_with(Arc::new(client.clone()), log.clone(), connector)
//!         .await
//!         .expect("the mocked cluster answers");
//!
//!     // Short timers keep the test fast.
//!     let mut group = GroupConfig::new("adders", ["numbers"]);
//!     group.session_timeout = Duration::from_secs(2);
//!     group.heartbeat_interval = Duration::from_millis(100);
//!     group.rebalance_timeout = Duration::from_secs(2);
//!     let consumer = ConsumerConfig {
//!         offset_reset: OffsetReset::Earliest,
//!         fetch_max_wait: Duration::from_millis(50),
//!         commit_interval: Duration::from_millis(50),
//!         ..ConsumerConfig::default()
//!     };
//!     let total = Arc::new(AtomicI64::new(0));
//!     let adder = Adder { total: total.clone() }.start();
//!     let service = ConsumerService::builder(client, group)
//!         .cluster(cluster)
//!         .consumer_config(consumer)
//!         .handler(HandlerRef::batches(&adder))
//!         .logger(log)
//!         .start()
//!         .await
//!         .expect("the service starts");
//!
//!     // Wait (bounded) for the handler to see every record...
//!     let deadline = Instant::now() + Duration::from_secs(10);
//!     while total.load(Ordering::Relaxed) < 6 {
//!         assert!(Instant::now() < deadline, "total is {}", total.load(Ordering::Relaxed));
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!     }
//!     // ... then shut down: the service drains, commits and leaves the group before it answers.
//!     service.send(Shutdown).await.expect("the service answers");
//!
//!     assert_eq!(total.load(Ordering::Relaxed), 6);
//!     let committed: BTreeMap<(String, i32), i64> = mock
//!         .group("adders")
//!         .expect("the group exists")
//!         .committed
//!         .into_iter()
//!         .map(|(partition, (offset, _metadata))| (partition, offset))
//!         .collect();
//!     // A committed offset is the next one to read: one past the last record handled.
//!     assert_eq!(committed[&("numbers".to_owned(), 0)], 2);
//!     assert_eq!(committed[&("numbers".to_owned(), 1)], 1);
//! });
//! ```
//!
//! In a test file, `#[actix::test] async fn ...` replaces `System::new().block_on`. More
//! tools on the mock: [`MockCluster::script`] makes a broker answer with an error (or any
//! response) to exercise failure paths, [`MockCluster::move_leader`] moves a partition,
//! [`MockCluster::produced`] reads what was produced (a dead-letter topic, say), and
//! [`CapturedLog`] lets a test assert on what was logged. `tests/integration/mock_consume.rs`
//! has many more examples: failure policies, deferred acks, seeks, panicking handlers.

pub mod coordinator;
pub mod listener;
pub mod log;
pub mod mock;
pub mod proxy;
pub mod replay;
pub mod sasl;
pub mod stunnel;
pub mod tansu;

pub use coordinator::MockGroup;
pub use log::CapturedLog;
pub use mock::{MockBroker, MockCluster};
pub use proxy::{Fault, FaultProxy, RandomFaults};
pub use replay::{ReplayBroker, ReplayTopic};
pub use sasl::{MockSasl, SaslAttempt};
pub use stunnel::{Issued, Stunnel, TestCa};
