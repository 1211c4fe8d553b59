//! Encodings of the consumer protocol, and the range assignor.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::Error;

fn tp(pairs: &[(&str, &[i32])]) -> TopicPartitions {
    pairs
        .iter()
        .map(|(t, ps)| (t.to_string(), ps.to_vec()))
        .collect()
}

#[test]
fn subscription_round_trips_at_every_version_with_the_fields_it_has() {
    let full = Subscription {
        topics: vec!["a".into(), "b".into()],
        user_data: Some(Bytes::from_static(b"\x00\x01ud")),
        owned_partitions: tp(&[("a", &[0, 2]), ("b", &[1])]),
        generation_id: 7,
        rack_id: Some("r1".into()),
    };
    for version in 0..=3 {
        let bytes = encode_subscription(&full, version).unwrap();
        assert_eq!(&bytes[..2], &version.to_be_bytes());
        let (read_version, back) = decode_subscription(&bytes).unwrap();
        assert_eq!(read_version, version);
        let mut expected = full.clone();
        if version < 1 {
            expected.owned_partitions.clear();
        }
        if version < 2 {
            expected.generation_id = -1;
        }
        if version < 3 {
            expected.rack_id = None;
        }
        assert_eq!(back, expected, "version {version}");
    }
}

/// Bytes laid out by hand, as librdkafka writes a v0 subscription (no owned partitions),
/// with a null user data.
#[test]
fn decodes_hand_written_v0_subscription_and_null_user_data() {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(2);
    for t in ["orders", "audit"] {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1); // null user data
    let (v, s) = decode_subscription(&b.freeze()).unwrap();
    assert_eq!(v, 0);
    assert_eq!(s.topics, ["orders", "audit"]);
    assert_eq!(s.user_data, None);
    assert_eq!(s.generation_id, -1);
}

/// A future version (say 9) is read as the newest known one; its extra trailing fields are
/// ignored, as the Java client does.
#[test]
fn newer_versions_are_read_as_the_newest_known() {
    let s = Subscription {
        topics: vec!["t".into()],
        generation_id: 3,
        rack_id: Some("r".into()),
        ..Subscription::default()
    };
    let v3 = encode_subscription(&s, 3).unwrap();
    let mut b = BytesMut::new();
    b.put_i16(9);
    b.put_slice(&v3[2..]);
    b.put_slice(b"future fields");
    let (v, back) = decode_subscription(&b.freeze()).unwrap();
    assert_eq!(v, 9);
    assert_eq!(back, s);

    let a = Assignment {
        partitions: tp(&[("t", &[1, 3])]),
        user_data: None,
    };
    let enc = encode_assignment(&a, 0).unwrap();
    let mut b = BytesMut::new();
    b.put_i16(5);
    b.put_slice(&enc[2..]);
    b.put_i32(42);
    assert_eq!(decode_assignment(&b.freeze()).unwrap(), a);
}

#[test]
fn empty_assignment_bytes_mean_nothing_assigned() {
    assert_eq!(
        decode_assignment(&Bytes::new()).unwrap(),
        Assignment::default()
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for bytes in [
        &b"\x00"[..],
        &b"\xff\xff"[..],
        &b"\x00\x00\x00\x00\x00\x05ab"[..],
        &b"\x00\x01\x7f\xff\xff\xff"[..],
    ] {
        let bytes = Bytes::copy_from_slice(bytes);
        assert!(decode_subscription(&bytes).is_err(), "{bytes:?}");
        if !bytes.is_empty() {
            assert!(decode_assignment(&bytes).is_err(), "{bytes:?}");
        }
    }
}

#[test]
fn lead_names_the_member_whose_metadata_is_corrupt() {
    let good = encode_subscription(
        &Subscription {
            topics: vec!["t".into()],
            ..Subscription::default()
        },
        3,
    )
    .unwrap();
    let joined = vec![
        JoinedMember {
            member_id: "m-good".into(),
            group_instance_id: None,
            metadata: good,
        },
        JoinedMember {
            member_id: "m-bad".into(),
            group_instance_id: None,
            metadata: Bytes::from_static(b"\x00\x00\x00"),
        },
    ];
    match lead(&RangeAssignor, "g1", &joined, |_| Some(4)) {
        Err(Error::GroupProtocol { group, member, .. }) => {
            assert_eq!((group.as_str(), member.as_str()), ("g1", "m-bad"))
        }
        other => panic!("expected a GroupProtocol error, got {other:?}"),
    }
}

#[test]
fn range_gives_contiguous_runs_extra_to_the_first_members() {
    let member = |id: &str, topics: &[&str]| Member {
        member_id: id.into(),
        group_instance_id: None,
        subscription: Subscription {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            ..Subscription::default()
        },
    };
    let members = [
        member("m1", &["t1", "t2"]),
        member("m2", &["t1"]),
        member("m3", &["t1", "t2"]),
    ];
    let counts = BTreeMap::from([("t1".to_string(), 7), ("t2".to_string(), 1)]);
    let out = RangeAssignor.assign(&members, &counts);
    assert_eq!(
        out["m1"].partitions,
        tp(&[("t1", &[0, 1, 2]), ("t2", &[0])])
    );
    assert_eq!(out["m2"].partitions, tp(&[("t1", &[3, 4])]));
    assert_eq!(out["m3"].partitions, tp(&[("t1", &[5, 6])]));
}

fn arb_partitions() -> impl Strategy<Value = TopicPartitions> {
    prop::collection::btree_map("[a-z]{1,8}", prop::collection::vec(0..1000i32, 1..8), 0..4)
        .prop_map(|mut m| {
            normalize(&mut m);
            m
        })
}

proptest! {
    #[test]
    fn any_subscription_round_trips_at_v3(
        topics in prop::collection::vec("[a-zA-Z0-9._-]{1,20}", 0..5),
        user_data in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        owned in arb_partitions(),
        generation_id in any::<i32>(),
        rack_id in prop::option::of("[a-z0-9]{0,6}"),
    ) {
        let s = Subscription {
            topics,
            user_data: user_data.map(Bytes::from),
            owned_partitions: owned,
            generation_id,
            rack_id,
        };
        let (_, back) = decode_subscription(&encode_subscription(&s, 3).unwrap()).unwrap();
        prop_assert_eq!(back, s);
    }

    #[test]
    fn any_assignment_round_trips(
        partitions in arb_partitions(),
        user_data in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        version in 0i16..=3,
    ) {
        let a = Assignment { partitions, user_data: user_data.map(Bytes::from) };
        prop_assert_eq!(decode_assignment(&encode_assignment(&a, version).unwrap()).unwrap(), a);
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let bytes = Bytes::from(bytes);
        let _ = decode_subscription(&bytes);
        let _ = decode_assignment(&bytes);
    }
}
