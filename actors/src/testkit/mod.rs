//! Test helpers for konsumer and its users (cargo feature `testkit`):
//! - [`mock`]: a mocked cluster of broker actors, for actor tests without a network;
//! - [`tansu`]: a real Kafka-compatible broker process on a free loopback port.

pub mod coordinator;
pub mod listener;
pub mod log;
pub mod mock;
pub mod tansu;

pub use coordinator::MockGroup;
pub use log::CapturedLog;
pub use mock::{MockBroker, MockCluster};
