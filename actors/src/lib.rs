//! konsumer-actors — the actix shell of konsumer, and what applications depend on.
//!
//! - [`broker::BrokerConnection`]: one supervised TCP connection to one broker, many requests in
//!   flight, restarted with backoff when it fails.
//! - [`cluster::Cluster`]: bootstrap, the metadata cache, and routing a request to the right
//!   broker over a connection per purpose.
//! - [`producer::Producer`]: batched, compressed produce to partition leaders, with retries
//!   that keep each partition's order.
//! - [`coordinator::Coordinator`] and [`heartbeat::Heartbeat`]: one member of a consumer group
//!   (find, join, assign as leader, sync, offsets, leave), with the error table in one place.
//! - [`service::ConsumerService`]: a group member that consumes — [`fetcher::Fetcher`]s per
//!   leader, a [`partition_tracker::PartitionTracker`] per partition feeding the user's
//!   handler actors ([`KafkaMessage`] / [`KafkaBatch`]), commits of exactly what is done.
//! - [`sidechannel::Sidechannel`]: hands finished offsets to a partition's next owner during
//!   a rebalance, through a compacted topic.
//! - [`hooks`]: the user's say in where partitions start and jump ([`StartAt`]).
//! - [`messages`]: every message the actors exchange.
//! - `testkit` (cargo feature): mocked brokers (in process, or served over TCP for real
//!   clients) with a group coordinator that keeps Kafka's barriers, and a real-broker (tansu)
//!   fixture.
//!
//! The sans-IO core is re-exported as [`core`], so one dependency is enough.

pub mod broker;
pub mod cluster;
pub mod coordinator;
pub mod fetcher;
pub mod heartbeat;
pub mod hooks;
pub mod messages;
pub mod partition_tracker;
pub mod producer;
pub mod service;
pub mod settings;
pub mod sidechannel;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;

pub use konsumer as core;
pub use konsumer::{ClientConfig, Context, Error, KafkaCode};

pub use broker::BrokerConnection;
pub use cluster::{Cluster, ClusterMetadata, Connector, TcpConnector};
pub use coordinator::Coordinator;
pub use fetcher::Fetcher;
pub use heartbeat::Heartbeat;
pub use hooks::{OffsetHooks, StartAt};
pub use messages::{
    Ack, Call, DeliveryReport, Enqueue, Flush, HandlerError, HandlerRef, HandlerResult, KafkaBatch,
    KafkaMessage, Produce, ProducerRecord, Purpose, Records, Reply, ReportTo, Target,
};
pub use partition_tracker::PartitionTracker;
pub use producer::{Producer, ProducerExt};
pub use service::{
    CommitNow, ConsumerEvent, ConsumerEvents, ConsumerService, GetCoordinator, GetPartitions,
    MarkPartitionMetadata, PausePartition, SeekPartition, ServiceBuilder, Shutdown,
};
pub use settings::{Password, PolicySettings, SaslSettings, ServiceSettings, TlsSettings};
pub use sidechannel::Sidechannel;
