//! Errors: Kafka's error codes as a typed enum, plus everything that can go wrong around them.
//!
//! Every error says where it happened ([`Context`]: broker, API, group, topic, partition, offset)
//! and whether retrying can help ([`Error::is_retriable`]). Errors are `Clone` because one broken
//! connection must fail every request that was waiting on it with the same cause.

use std::fmt;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// Kafka's error codes, with `is_retriable()` as Kafka's own protocol definition classifies them.
/// Re-exported from `kafka-protocol` rather than copied: it is generated from Kafka's sources.
pub use kafka_protocol::error::ResponseError as KafkaCode;

/// Where an error happened. Only the fields that apply are set; `Display` prints those.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub broker: Option<String>,
    pub api: Option<ApiKey>,
    pub group: Option<String>,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
}

impl Context {
    pub fn broker(broker: impl Into<String>) -> Self {
        Context {
            broker: Some(broker.into()),
            ..Context::default()
        }
    }
    pub fn with_api(mut self, api: ApiKey) -> Self {
        self.api = Some(api);
        self
    }
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
    pub fn with_offset(mut self, offset: i64) -> Self {
        self.offset = Some(offset);
        self
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut field = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            let r = write!(f, "{sep}{name}={value}");
            sep = " ";
            r
        };
        if let Some(v) = &self.api {
            field(f, "api", &format_args!("{v:?}"))?;
        }
        if let Some(v) = &self.broker {
            field(f, "broker", v)?;
        }
        if let Some(v) = &self.group {
            field(f, "group", v)?;
        }
        if let Some(v) = &self.topic {
            field(f, "topic", v)?;
        }
        if let Some(v) = &self.partition {
            field(f, "partition", v)?;
        }
        if let Some(v) = &self.offset {
            field(f, "offset", v)?;
        }
        if sep.is_empty() {
            f.write_str("no context")?;
        }
        Ok(())
    }
}

/// Everything konsumer reports as a failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The broker answered with a Kafka error code.
    #[error("broker error {code:?} (code {}): {code} [{context}]", code.code())]
    Broker { code: KafkaCode, context: Context },

    /// A TCP connection (or the ApiVersions exchange that opens it) could not be established.
    #[error("cannot connect to broker {broker}: {reason}")]
    Connect { broker: String, reason: String },

    /// Reading from or writing to an established connection failed.
    #[error("I/O error on the connection to broker {broker}: {reason}")]
    Io {
        broker: String,
        kind: std::io::ErrorKind,
        reason: String,
    },

    /// The broker closed the connection while requests were waiting.
    #[error("broker {broker} closed the connection {detail}")]
    ConnectionClosed { broker: String, detail: String },

    /// No answer within the request timeout (time spent waiting for a connection counts).
    #[error("{api:?} request to broker {broker} timed out after {after:?}{}",
        last_error.as_ref().map(|e| format!(" (last connection error: {e})")).unwrap_or_default())]
    Timeout {
        api: ApiKey,
        broker: String,
        after: Duration,
        last_error: Option<String>,
    },

    /// The broker sent bytes that are not a valid Kafka response (garbage, an unknown
    /// correlation id, a frame too short to hold a header). The connection is dropped.
    #[error("protocol violation by broker {broker}: {detail}")]
    Protocol { broker: String, detail: String },

    /// SASL authentication was refused or could not be completed: a bad username or password,
    /// or a server that could not prove it knows the credentials (SCRAM). Never retried in a
    /// tight loop: the connection backs off. Carries no credentials.
    #[error("SASL {mechanism} authentication with broker {broker} failed: {detail}")]
    Authentication {
        broker: String,
        mechanism: String,
        detail: String,
    },

    /// The broker does not enable the configured SASL mechanism.
    #[error("broker {broker} does not offer SASL mechanism {wanted}; it offers: {}",
        if offered.is_empty() { "none".to_string() } else { offered.join(", ") })]
    SaslMechanismUnsupported {
        broker: String,
        wanted: String,
        offered: Vec<String>,
    },

    /// The TLS handshake failed, or one side speaks TLS and the other does not; `reason` says
    /// which (unknown CA, name mismatch, expired certificate, plaintext listener, ...).
    #[error("TLS with broker {broker} failed: {reason}")]
    Tls { broker: String, reason: String },

    /// A response length prefix larger than the configured limit (or negative): refused before
    /// allocating anything for it.
    #[error("broker {broker} announced a response of {size} bytes; the limit is {max} bytes")]
    FrameTooLarge {
        broker: String,
        size: i64,
        max: usize,
    },

    /// The broker and konsumer have no version of this API in common.
    #[error("broker {broker} cannot serve {api:?}: it supports {}, konsumer needs {}..{}",
        broker_range.map(|(a, b)| format!("versions {a}..{b}")).unwrap_or_else(|| "no version of it".into()),
        konsumer_range.0, konsumer_range.1)]
    UnsupportedVersion {
        api: ApiKey,
        broker: String,
        broker_range: Option<(i16, i16)>,
        konsumer_range: (i16, i16),
    },

    /// A request could not be encoded (e.g. a field set that the chosen version lacks).
    #[error("cannot encode {api:?} v{version} request: {detail}")]
    Encode {
        api: ApiKey,
        version: i16,
        detail: String,
    },

    /// A response frame could not be decoded as the API and version that was asked.
    #[error("cannot decode {api:?} v{version} response from broker {broker}: {detail}")]
    Decode {
        api: ApiKey,
        version: i16,
        broker: String,
        detail: String,
    },

    /// None of the bootstrap brokers answered.
    #[error("no bootstrap broker answered within {after:?} (tried {}); last error: {last}", tried.join(", "))]
    Bootstrap {
        tried: Vec<String>,
        after: Duration,
        last: String,
    },

    /// The cluster metadata has no usable leader for a partition (yet).
    #[error("no leader known for {topic}/{partition}")]
    NoLeader { topic: String, partition: i32 },

    /// The metadata names no such topic.
    #[error("unknown topic {topic}")]
    UnknownTopic { topic: String },

    /// A broker id that the metadata does not list.
    #[error("unknown broker id {node_id}")]
    UnknownBroker { node_id: i32 },

    /// A configuration value is invalid.
    #[error("invalid configuration `{field}`: {detail}")]
    Config { field: &'static str, detail: String },

    /// The component is shutting down (or has stopped) and cannot take the request.
    #[error("{0} is shut down")]
    Shutdown(String),

    /// A record that can never be sent: its encoded size exceeds what one request may carry
    /// (`max_request_size`), or the broker refused its batch as too large.
    #[error("record of {size} bytes is larger than the limit of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },

    /// The producer already buffers as much as it may (`max_buffered_bytes`): the record was
    /// not taken. Try again once earlier records are delivered (or raise the limit).
    #[error("producer buffer is full: {buffered} bytes waiting, limit {max} bytes")]
    QueueFull { buffered: usize, max: usize },

    /// A produced record was not acknowledged within the delivery timeout, across `attempts`
    /// send attempts (0: it never found a leader to be sent to).
    #[error("record not delivered within {after:?} after {attempts} attempt(s){}",
        last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    DeliveryTimeout {
        after: Duration,
        attempts: u32,
        last_error: Option<String>,
    },

    /// A group member's protocol bytes (subscription or assignment) that cannot be read or
    /// written: says which group and which member.
    #[error("group {group}: member {member}: {detail}")]
    GroupProtocol {
        group: String,
        member: String,
        detail: String,
    },

    /// Fetched record data that cannot be decoded (corrupt, truncated inside a batch, bad
    /// compression), or a batch that cannot be encoded. Says which topic, partition and batch.
    #[error("{0}")]
    Records(Box<crate::records::RecordsError>),

    /// A user's handler failed a record (after the retries its policy allows), or its actor
    /// is gone. Says which topic, partition and offset.
    #[error("handler failed {topic}/{partition} at offset {offset} after {attempts} attempt(s): {detail}")]
    Handler {
        topic: String,
        partition: i32,
        offset: i64,
        attempts: u32,
        detail: String,
    },
}

impl Error {
    /// Whether the same operation may succeed if tried again (after a backoff, and after a
    /// metadata refresh for the leader-related cases).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Broker { code, .. } => code.is_retriable(),
            Error::Connect { .. }
            | Error::Io { .. }
            | Error::ConnectionClosed { .. }
            | Error::Timeout { .. }
            | Error::NoLeader { .. }
            | Error::UnknownBroker { .. } => true,
            Error::Protocol { .. }
            | Error::Authentication { .. }
            | Error::SaslMechanismUnsupported { .. }
            | Error::Tls { .. }
            | Error::FrameTooLarge { .. }
            | Error::UnsupportedVersion { .. }
            | Error::Encode { .. }
            | Error::Decode { .. }
            | Error::Bootstrap { .. }
            | Error::UnknownTopic { .. }
            | Error::Config { .. }
            | Error::Shutdown(_)
            | Error::RecordTooLarge { .. }
            | Error::QueueFull { .. }
            | Error::DeliveryTimeout { .. }
            | Error::GroupProtocol { .. }
            | Error::Records(_)
            | Error::Handler { .. } => false,
        }
    }

    /// Turns a Kafka error code into `Ok(())` (code 0) or a typed error with its context.
    pub fn check(code: i16, context: impl FnOnce() -> Context) -> Result<(), Error> {
        match KafkaCode::try_from_code(code) {
            None => Ok(()),
            Some(code) => Err(Error::Broker {
                code,
                context: context(),
            }),
        }
    }

    /// The Kafka error code, when the broker sent one.
    pub fn kafka_code(&self) -> Option<KafkaCode> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Kafka codes meaning "your metadata is stale": the partition moved, or the topic changed.
/// A client that sees one refreshes metadata before retrying.
pub fn is_stale_metadata(code: KafkaCode) -> bool {
    matches!(
        code,
        KafkaCode::NotLeaderOrFollower
            | KafkaCode::UnknownTopicOrPartition
            | KafkaCode::LeaderNotAvailable
            | KafkaCode::ReplicaNotAvailable
            | KafkaCode::FencedLeaderEpoch
            | KafkaCode::UnknownLeaderEpoch
            | KafkaCode::KafkaStorageError
            | KafkaCode::UnknownTopicId
            | KafkaCode::InconsistentTopicId
            | KafkaCode::NotController
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_typed_errors_with_retriability() {
        assert!(Error::check(0, Context::default).is_ok());
        let not_leader = Error::check(6, || {
            Context::broker("127.0.0.1:9092")
                .with_api(ApiKey::Fetch)
                .with_topic("orders")
                .with_partition(3)
        })
        .unwrap_err();
        assert_eq!(
            not_leader.kafka_code(),
            Some(KafkaCode::NotLeaderOrFollower)
        );
        assert!(not_leader.is_retriable());
        let text = not_leader.to_string();
        assert!(text.contains("NotLeaderOrFollower"), "{text}");
        assert!(text.contains("code 6"), "{text}");
        assert!(
            text.contains("api=Fetch broker=127.0.0.1:9092 topic=orders partition=3"),
            "{text}"
        );

        let authz = Error::check(29, Context::default).unwrap_err();
        assert_eq!(
            authz.kafka_code(),
            Some(KafkaCode::TopicAuthorizationFailed)
        );
        assert!(!authz.is_retriable());

        let unknown = Error::check(30_000, Context::default).unwrap_err();
        assert_eq!(unknown.kafka_code(), Some(KafkaCode::Unknown(30_000)));
        assert!(!unknown.is_retriable());
        assert!(unknown.to_string().contains("no context"));
    }

    #[test]
    fn transport_errors_are_retriable_and_protocol_errors_are_not() {
        let io = Error::Io {
            broker: "b".into(),
            kind: std::io::ErrorKind::ConnectionReset,
            reason: "reset".into(),
        };
        assert!(io.is_retriable());
        let timeout = Error::Timeout {
            api: ApiKey::Metadata,
            broker: "b:1".into(),
            after: Duration::from_millis(250),
            last_error: Some("connection refused".into()),
        };
        assert!(timeout.is_retriable());
        assert!(timeout.to_string().contains("connection refused"));
        let garbage = Error::Protocol {
            broker: "b".into(),
            detail: "x".into(),
        };
        assert!(!garbage.is_retriable());
        let old = Error::UnsupportedVersion {
            api: ApiKey::Fetch,
            broker: "b:1".into(),
            broker_range: Some((0, 3)),
            konsumer_range: (4, 17),
        };
        assert!(!old.is_retriable());
        let text = old.to_string();
        assert!(
            text.contains("Fetch") && text.contains("0..3") && text.contains("4..17"),
            "{text}"
        );
    }

    #[test]
    fn stale_metadata_codes() {
        assert!(is_stale_metadata(KafkaCode::NotLeaderOrFollower));
        assert!(is_stale_metadata(KafkaCode::UnknownTopicOrPartition));
        assert!(!is_stale_metadata(KafkaCode::OffsetOutOfRange));
        assert!(!is_stale_metadata(KafkaCode::RebalanceInProgress));
    }
}
