//! The consumer protocol's member metadata and assignment bytes: a big-endian `i16` version,
//! then the fields of Kafka's `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment`
//! schemas at that version. The structs come from `kafka-protocol`; this module adds the version
//! prefix and the compatibility rules the Java client applies:
//! - a version newer than konsumer knows is read as the newest known one (later versions only
//!   append fields, so the known prefix is still right; trailing bytes are ignored);
//! - an empty assignment (a member the leader gave nothing, or left out) is an empty
//!   assignment, not an error.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    consumer_protocol_assignment, consumer_protocol_subscription, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::{normalize, Assignment, Subscription, TopicPartitions};

/// Newest subscription version konsumer reads and writes (rack id).
pub const SUBSCRIPTION_VERSION: i16 = 3;
/// Newest assignment version konsumer reads and writes (versions 1-3 equal version 0).
pub const ASSIGNMENT_VERSION: i16 = 3;

/// Encodes a subscription at `version` (0..=3). Fields the version lacks are left out: owned
/// partitions before 1, generation before 2, rack before 3.
pub fn encode_subscription(subscription: &Subscription, version: i16) -> Result<Bytes, String> {
    let version = version.clamp(0, SUBSCRIPTION_VERSION);
    let owned = subscription
        .owned_partitions
        .iter()
        .map(|(topic, partitions)| {
            consumer_protocol_subscription::TopicPartition::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions.clone())
        })
        .collect();
    let body = ConsumerProtocolSubscription::default()
        .with_topics(
            subscription
                .topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_user_data(subscription.user_data.clone())
        .with_owned_partitions(owned)
        .with_generation_id(subscription.generation_id)
        .with_rack_id(subscription.rack_id.clone().map(StrBytes::from_string));
    encode_versioned(&body, version)
}

/// Decodes member metadata as any client writes it. Fields older versions lack get their
/// defaults (no owned partitions, generation -1, no rack).
pub fn decode_subscription(bytes: &Bytes) -> Result<(i16, Subscription), String> {
    let mut r = Reader::new(bytes, "subscription");
    let version = r.version()?;
    let topics = r.array(|r| r.string())?;
    let user_data = r.bytes()?;
    let owned_partitions = if version >= 1 {
        r.topic_partitions()?
    } else {
        TopicPartitions::new()
    };
    let generation_id = if version >= 2 { r.i32()? } else { -1 };
    let rack_id = if version >= 3 {
        r.nullable_string()?
    } else {
        None
    };
    Ok((
        version,
        Subscription {
            topics,
            user_data,
            owned_partitions,
            generation_id,
            rack_id,
        },
    ))
}

/// Encodes an assignment at `version` (0..=3; all four are laid out alike).
pub fn encode_assignment(assignment: &Assignment, version: i16) -> Result<Bytes, String> {
    let version = version.clamp(0, ASSIGNMENT_VERSION);
    let body = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            assignment
                .partitions
                .iter()
                .map(|(topic, partitions)| {
                    consumer_protocol_assignment::TopicPartition::default()
                        .with_topic(topic_name(topic))
                        .with_partitions(partitions.clone())
                })
                .collect(),
        )
        .with_user_data(assignment.user_data.clone());
    encode_versioned(&body, version)
}

/// Decodes a SyncGroup assignment. Zero bytes mean "nothing assigned".
pub fn decode_assignment(bytes: &Bytes) -> Result<Assignment, String> {
    if bytes.is_empty() {
        return Ok(Assignment::default());
    }
    let mut r = Reader::new(bytes, "assignment");
    r.version()?;
    let partitions = r.topic_partitions()?;
    let user_data = r.bytes()?;
    Ok(Assignment {
        partitions,
        user_data,
    })
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn encode_versioned<T: Encodable>(body: &T, version: i16) -> Result<Bytes, String> {
    let size = body
        .compute_size(version)
        .map_err(|e| format!("cannot size v{version}: {e:#}"))?;
    let mut buf = BytesMut::with_capacity(2 + size);
    buf.extend_from_slice(&version.to_be_bytes());
    body.encode(&mut buf, version)
        .map_err(|e| format!("cannot encode v{version}: {e:#}"))?;
    Ok(buf.freeze())
}

/// Reads the consumer protocol by hand rather than with `kafka-protocol`'s decoder, because
/// that one reserves memory for an array from its length field before reading it: a corrupt
/// member's metadata claiming 2^31 elements aborts the process on allocation. Here every
/// length is checked against the bytes that remain first. (Encoding still uses
/// `kafka-protocol`; the round-trip tests hold the two together.)
struct Reader<'a> {
    buf: &'a [u8],
    whole: &'a Bytes,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a Bytes, what: &'static str) -> Self {
        Reader {
            buf: bytes,
            whole: bytes,
            what,
        }
    }

    fn fail(&self, detail: impl std::fmt::Display) -> String {
        let at = self.whole.len() - self.buf.len();
        format!("{} is malformed at byte {at}: {detail}", self.what)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(self.fail(format_args!(
                "needs {n} more byte(s), {} left",
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn version(&mut self) -> Result<i16, String> {
        let version = self.i16()?;
        if version < 0 {
            return Err(self.fail(format_args!("negative version {version}")));
        }
        Ok(version)
    }

    fn nullable_string(&mut self) -> Result<Option<String>, String> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let raw = self.take(len as usize)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(Some(s.to_owned())),
            Err(e) => Err(self.fail(format_args!("string is not UTF-8: {e}"))),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.nullable_string()?
            .ok_or_else(|| self.fail("null where a string is required"))
    }

    fn bytes(&mut self) -> Result<Option<Bytes>, String> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        let start = self.whole.len() - self.buf.len();
        self.take(len as usize)?;
        Ok(Some(self.whole.slice(start..start + len as usize)))
    }

    /// An array whose elements take at least one byte each, so a length above the bytes left
    /// is corrupt; null (-1) reads as empty.
    fn array<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Vec::new());
        }
        if len as usize > self.buf.len() {
            return Err(self.fail(format_args!(
                "array of {len} elements in {} bytes",
                self.buf.len()
            )));
        }
        (0..len).map(|_| item(self)).collect()
    }

    fn topic_partitions(&mut self) -> Result<TopicPartitions, String> {
        let mut out = TopicPartitions::new();
        for (topic, partitions) in self.array(|r| Ok((r.string()?, r.array(|r| r.i32())?)))? {
            out.entry(topic).or_default().extend(partitions);
        }
        normalize(&mut out);
        Ok(out)
    }
}
