//! The sidechannel record: a member giving up a partition during a rebalance tells the next
//! owner which offset it has really finished (the seeds' SidechannelTopic).
//!
//! Why: once a rebalance has begun, a member's commit may come too late (its generation is
//! gone), and the next owner would re-read everything since the last commit. The handover
//! goes through a compacted topic instead, where the next owner reads it before starting.
//!
//! Layout (big-endian, hand-written because it is tiny, fixed and must never change meaning
//! between versions of konsumer that share a group):
//! - key: `i16 len, group, i16 len, topic, i32 partition` — one key per group partition, so
//!   compaction keeps each partition's newest handover.
//! - value: `i8 version (1), i32 generation, i64 offset, i16 len, member id`.
//!
//! Every record of a group goes to the sidechannel partition [`partition_of`] picks, so a
//! member reads one partition only; records of other groups sharing it are told apart by key.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::Error;
use crate::partitioner::partition_for_key;

const VERSION: i8 = 1;

/// One partition handed over: `offset` is the next record to consume (everything below it is
/// done), as the member `member_id` knew it in `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub generation: i32,
    pub offset: i64,
    pub member_id: String,
}

/// The sidechannel partition that carries `group`'s records (murmur2 of the group id, as the
/// default partitioner places a key).
pub fn partition_of(group: &str, partitions: i32) -> i32 {
    partition_for_key(group.as_bytes(), partitions.max(1))
}

impl Handover {
    pub fn key(&self) -> Bytes {
        let mut key = BytesMut::with_capacity(8 + self.group.len() + self.topic.len());
        put_str(&mut key, &self.group);
        put_str(&mut key, &self.topic);
        key.put_i32(self.partition);
        key.freeze()
    }

    pub fn value(&self) -> Bytes {
        let mut value = BytesMut::with_capacity(15 + self.member_id.len());
        value.put_i8(VERSION);
        value.put_i32(self.generation);
        value.put_i64(self.offset);
        put_str(&mut value, &self.member_id);
        value.freeze()
    }

    /// Reads a record of the sidechannel topic found at `at` (its offset, for the error).
    /// A record of an unknown version or a torn one is an error naming where it was.
    pub fn decode(key: &[u8], value: &[u8], at: i64) -> Result<Handover, Error> {
        let bad = |detail: &str| Error::Protocol {
            broker: "sidechannel".into(),
            detail: format!("record at offset {at}: {detail}"),
        };
        let mut k = key;
        let group = get_str(&mut k).ok_or_else(|| bad("key lacks the group"))?;
        let topic = get_str(&mut k).ok_or_else(|| bad("key lacks the topic"))?;
        if k.remaining() != 4 {
            return Err(bad("key lacks the partition"));
        }
        let partition = k.get_i32();
        let mut v = value;
        if v.remaining() < 1 {
            return Err(bad("empty value"));
        }
        let version = v.get_i8();
        if version != VERSION {
            return Err(bad(&format!("unknown version {version}")));
        }
        if v.remaining() < 12 {
            return Err(bad("value too short"));
        }
        let generation = v.get_i32();
        let offset = v.get_i64();
        let member_id = get_str(&mut v).ok_or_else(|| bad("value lacks the member id"))?;
        if v.has_remaining() {
            return Err(bad("trailing bytes in the value"));
        }
        Ok(Handover {
            group,
            topic,
            partition,
            generation,
            offset,
            member_id,
        })
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    // Names longer than i16::MAX are not valid group ids or topics; cut rather than wrap.
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    buf.put_i16(bytes.len() as i16);
    buf.put_slice(bytes);
}

fn get_str(buf: &mut &[u8]) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(buf.get_i16()).ok()?;
    if buf.remaining() < len {
        return None;
    }
    let s = String::from_utf8(buf[..len].to_vec()).ok()?;
    buf.advance(len);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Handover {
        Handover {
            group: "billing".into(),
            topic: "orders".into(),
            partition: 7,
            generation: 12,
            offset: 40_000,
            member_id: "konsumer-1-3f2a".into(),
        }
    }

    #[test]
    fn a_handover_reads_back_as_written() {
        let h = sample();
        assert_eq!(Handover::decode(&h.key(), &h.value(), 0).expect("valid"), h);
    }

    #[test]
    fn bad_records_are_errors_that_say_where() {
        let h = sample();
        let value = h.value();
        let cases: Vec<(Bytes, Bytes)> = vec![
            (h.key().slice(..h.key().len() - 1), value.clone()),
            (h.key(), Bytes::new()),
            (h.key(), value.slice(..10)),
            (h.key(), {
                let mut v = BytesMut::from(&value[..]);
                v[0] = 9;
                v.freeze()
            }),
            (h.key(), {
                let mut v = BytesMut::from(&value[..]);
                v.put_u8(0);
                v.freeze()
            }),
        ];
        for (key, value) in cases {
            match Handover::decode(&key, &value, 31) {
                Err(Error::Protocol { detail, .. }) => assert!(detail.contains("offset 31")),
                other => panic!("expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_group_always_lands_on_the_same_partition() {
        let p = partition_of("billing", 50);
        assert!((0..50).contains(&p));
        assert_eq!(partition_of("billing", 50), p);
        assert_eq!(partition_of("billing", 1), 0);
        assert_eq!(partition_of("billing", 0), 0);
    }

    proptest! {
        #[test]
        fn any_handover_round_trips(group in ".{0,40}", topic in "[a-z._-]{1,40}",
            partition in any::<i32>(), generation in any::<i32>(), offset in any::<i64>(),
            member in ".{0,60}") {
            let h = Handover { group, topic, partition, generation, offset, member_id: member };
            prop_assert_eq!(Handover::decode(&h.key(), &h.value(), 0).expect("valid"), h);
        }

        #[test]
        fn arbitrary_bytes_never_panic(key in proptest::collection::vec(any::<u8>(), 0..40),
            value in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Handover::decode(&key, &value, 0);
        }
    }
}
