//! konsumer — the sans-IO core of an actor-model Kafka consumer-group framework.
//!
//! This crate holds everything that can be decided without a socket or a clock: request framing
//! over the `kafka-protocol` structs, API version negotiation, Kafka error codes as typed errors,
//! client configuration and retry backoff. The actix shell (`konsumer-actors`) drives it; keeping
//! I/O out of here lets the logic be tested exhaustively and benchmarked without a broker.

pub mod backoff;
pub mod compression;
pub mod config;
pub mod consumer;
pub mod error;
pub mod group;
pub mod offsets;
pub mod partitioner;
pub mod producer;
pub mod protocol;
pub mod records;
pub mod sasl;
pub mod sidechannel;

pub use backoff::Backoff;
pub use config::{ClientConfig, TlsConfig};
pub use error::{Context, Error, KafkaCode};

/// The `kafka-protocol` crate, re-exported so users and the shell name one version of it.
pub use kafka_protocol;
