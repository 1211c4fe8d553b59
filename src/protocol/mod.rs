//! Framing over the `kafka-protocol` structs.
//!
//! - [`frame`]: the 4-byte length prefix, with a size limit checked before allocation.
//! - [`codec`]: request header + body encoding, response header + body decoding, with the header
//!   version each API/version needs (flexible versions use request header v2 / response header
//!   v1; an ApiVersions response header is always v0).
//! - [`versions`]: ApiVersions negotiation and the minimum versions konsumer needs.
//! - [`requests`]: typed requests ([`KafkaRequest`]) mapped to and from `kafka-protocol`'s enums.
//! - [`stale`]: the partition errors in a response that mean "refresh your metadata".

pub mod codec;
pub mod frame;
pub mod requests;
pub mod stale;
pub mod versions;

pub use codec::{decode_response, encode_request, peek_correlation_id, ApiVersionsProbe};
pub use frame::{FrameDecoder, FrameError};
pub use requests::{fit_to_version, KafkaRequest};
pub use versions::{ApiVersionTable, MINIMUM_VERSIONS};

pub use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
