//! The sidechannel record: who owns a partition of a group, and which offset its owner has
//! really finished (the seeds' SidechannelTopic, extended with ownership claims).
//!
//! Why: once a rebalance has begun, a member's commit may come too late (its generation is
//! gone), and the next owner would re-read everything since the last commit. The handover
//! goes through a compacted topic instead, where the next owner reads it before starting.
//!
//! Why claims: a broker may hand a partition to its next owner before the previous owner has
//! noticed the rebalance (a zombie member whose session lapsed, or a broker without Kafka's
//! join barrier, such as tansu). Every owner therefore writes an [`HandoverKind::Owned`] record
//! before it delivers a partition's first record, and a [`HandoverKind::Released`] one once it
//! has stopped. A new owner that finds another member's claim still standing waits for that
//! member's release (bounded) instead of reading the same records at the same time; an owner
//! that finds a claim of a newer generation stands down ([`Verdict::Fenced`]).
//!
//! Layout (big-endian, hand-written because it is tiny, fixed and must never change meaning
//! between versions of konsumer that share a group):
//! - key: `i16 len, group, i16 len, topic, i32 partition` — one key per group partition, so
//!   compaction keeps each partition's newest record.
//! - value, version 1 (a release): `i8 1, i32 generation, i64 offset, i16 len, member id`.
//! - value, version 2: `i8 2, i8 kind (0 released, 1 owned), i32 generation, i64 offset,
//!   i16 len, member id`.
//!
//! Every record of a group goes to the sidechannel partition [`partition_of`] picks, so a
//! member reads one partition only; records of other groups sharing it are told apart by key.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::Error;
use crate::partitioner::partition_for_key;

const VERSION_RELEASE_ONLY: i8 = 1;
const VERSION: i8 = 2;

/// Whether the writer still holds the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandoverKind {
    /// The writer has stopped delivering the partition: `offset` is final.
    Released,
    /// The writer delivers the partition (a claim when it starts, progress during a
    /// rebalance): `offset` is done so far, and more may follow.
    Owned,
}

/// One partition's record: `offset` is the next record to consume (everything below it is
/// done), as the member `member_id` knew it in `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub generation: i32,
    pub offset: i64,
    pub member_id: String,
    pub kind: HandoverKind,
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
        let mut value = BytesMut::with_capacity(16 + self.member_id.len());
        value.put_i8(VERSION);
        value.put_i8(match self.kind {
            HandoverKind::Released => 0,
            HandoverKind::Owned => 1,
        });
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
        let kind = match v.get_i8() {
            VERSION_RELEASE_ONLY => HandoverKind::Released,
            VERSION => match v.has_remaining().then(|| v.get_i8()) {
                Some(0) => HandoverKind::Released,
                Some(1) => HandoverKind::Owned,
                Some(other) => return Err(bad(&format!("unknown kind {other}"))),
                None => return Err(bad("value lacks the kind")),
            },
            version => return Err(bad(&format!("unknown version {version}"))),
        };
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
            kind,
        })
    }
}

/// What a member may do with a partition it has been assigned, from the sidechannel records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Start; `handed` is the newest usable finished offset found (if any), to be weighed
    /// against the committed offset.
    Start { handed: Option<i64> },
    /// `owner` claimed the partition in `generation` and has not released it: it may still
    /// be delivering records. Wait for its release (bounded by the caller).
    Wait { owner: String, generation: i32 },
    /// `owner` claimed the partition in a newer generation than ours: our assignment is
    /// stale, so we must not deliver the partition.
    Fenced { owner: String, generation: i32 },
}

/// The sidechannel records of one group partition, as far as they have been read: the newest
/// record of each member, and each member's newest claim. Bounded by the members that ever
/// held the partition while this member lived.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    members: BTreeMap<String, MemberRecords>,
}

#[derive(Debug, Clone)]
struct MemberRecords {
    /// The member's newest records with their sidechannel offsets, oldest first: the last
    /// one says whether it still holds the partition; an earlier one may be the newest usable
    /// (a member's own release stays usable after its next claim).
    recent: Vec<(Handover, i64)>,
    /// The generation and sidechannel offset of its newest claim.
    last_claim: Option<(i32, i64)>,
}

/// Records kept per member and partition.
const RECENT_RECORDS: usize = 4;
/// Members kept per partition: those with the newest records. A member whose newest record
/// is older than those of this many others has had its claims taken over (each later owner
/// claimed in a newer generation) and its releases superseded; forgetting it bounds memory,
/// which matters because a member reads the whole uncompacted head of the sidechannel when it
/// starts (compaction never touches a topic's active segment).
const MEMBERS_KEPT: usize = 8;

impl MemberRecords {
    fn latest(&self) -> &(Handover, i64) {
        // Never empty: made with one record, and trimmed from the front only.
        &self.recent[self.recent.len() - 1]
    }
}

impl Ownership {
    /// Takes in a record read at sidechannel offset `at` (records arrive in log order).
    pub fn record(&mut self, handover: Handover, at: i64) {
        let claim = (handover.kind == HandoverKind::Owned).then_some((handover.generation, at));
        match self.members.get_mut(&handover.member_id) {
            Some(known) if known.latest().1 >= at => {}
            Some(known) => {
                known.last_claim = claim.or(known.last_claim);
                known.recent.push((handover, at));
                if known.recent.len() > RECENT_RECORDS {
                    known.recent.remove(0);
                }
            }
            None => {
                self.members.insert(
                    handover.member_id.clone(),
                    MemberRecords {
                        recent: vec![(handover, at)],
                        last_claim: claim,
                    },
                );
                if self.members.len() > MEMBERS_KEPT {
                    let oldest = self
                        .members
                        .iter()
                        .min_by_key(|(_, records)| records.latest().1)
                        .map(|(member, _)| member.clone());
                    if let Some(oldest) = oldest {
                        self.members.remove(&oldest);
                    }
                }
            }
        }
    }

    /// Members other than `me` whose newest record claims the partition, unless a third
    /// member claimed it later in a newer generation (that member took it over from them:
    /// waited for them or gave up on them): `(member, generation)`. Records from an earlier
    /// life of the group (see [`Horizon::is_relic`]) neither claim nor take over.
    fn standing_claims<'a>(
        &'a self,
        me: &'a str,
        generation: i32,
        horizon: Horizon,
    ) -> impl Iterator<Item = (&'a str, i32)> + 'a {
        self.members.iter().filter_map(move |(member, records)| {
            let (latest, at) = records.latest();
            if member == me
                || latest.kind != HandoverKind::Owned
                || horizon.is_relic(latest.generation, *at, generation)
            {
                return None;
            }
            let superseded = self.members.iter().any(|(other, r)| {
                other != member
                    && other != me
                    && r.last_claim.is_some_and(|(g, claimed_at)| {
                        claimed_at > *at
                            && g > latest.generation
                            && !horizon.is_relic(g, claimed_at, generation)
                    })
            });
            (!superseded).then_some((member.as_str(), latest.generation))
        })
    }

    /// What `me`, assigned the partition in `generation`, may do now, given where its view
    /// of the sidechannel begins (`horizon`). `gone` holds the members the caller has waited
    /// for long enough: they are presumed dead, so their claims are not waited for (their
    /// progress is used). It outlives one take-over, so a dead member is waited out once, not
    /// again in every generation that follows before a live member claims its partitions.
    ///
    /// A finished offset is usable if its writer held the partition in the generation just
    /// before, or wrote it during this rebalance (a broker may form several generations in
    /// one rebalance); anything older may predate a rewind and is ignored.
    pub fn verdict(
        &self,
        me: &str,
        generation: i32,
        horizon: Horizon,
        gone: &BTreeSet<String>,
    ) -> Verdict {
        let standing: Vec<(&str, i32)> = self.standing_claims(me, generation, horizon).collect();
        if let Some((owner, g)) = standing
            .iter()
            .filter(|(_, g)| *g > generation)
            .max_by_key(|(_, g)| *g)
        {
            return Verdict::Fenced {
                owner: (*owner).to_owned(),
                generation: *g,
            };
        }
        if let Some((owner, g)) = standing.iter().find(|(owner, _)| !gone.contains(*owner)) {
            return Verdict::Wait {
                owner: (*owner).to_owned(),
                generation: *g,
            };
        }
        let handed = self
            .members
            .values()
            .filter_map(|r| {
                r.recent
                    .iter()
                    .rev()
                    .find(|(h, at)| h.offset >= 0 && usable(h, *at, generation, horizon))
            })
            .max_by_key(|(h, at)| (h.generation, *at))
            .map(|(h, _)| h.offset);
        Verdict::Start { handed }
    }
}

/// Where a member's view of the sidechannel begins, in sidechannel offsets.
///
/// Why a member reads records written before it started: a claim standing since then
/// belongs to an owner that may still be delivering the partition (a broker may assign it
/// before that owner has noticed the rebalance), and a new process must wait for it just as
/// a member that was there all along does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// The sidechannel's end when this member started: records below it were written
    /// before the member existed.
    pub joined_at: i64,
    /// The sidechannel's end when this member's current rebalance began (None: not known):
    /// records from then on are meant for it, whatever generation their writer owned.
    pub round_start: Option<i64>,
}

impl Horizon {
    /// A view that began at sidechannel offset `joined_at`, in its first rebalance.
    pub fn starting_at(joined_at: i64) -> Horizon {
        Horizon {
            joined_at,
            round_start: Some(joined_at),
        }
    }

    /// Whether a record of `their_generation`, written at `at`, is from an earlier life of
    /// the group and means nothing to a member of `generation`: written before this member
    /// existed, yet not older than the generation it has joined. A group's generations only
    /// grow while its state lives, and every generation from the member's first on was
    /// formed after it started; so such a record survived a reset of the group's state
    /// (deleted and recreated, or a coordinator that lost it), and must neither fence nor
    /// hold up the new life.
    pub fn is_relic(&self, their_generation: i32, at: i64, generation: i32) -> bool {
        at < self.joined_at && their_generation >= generation
    }
}

/// Whether a record (written at sidechannel offset `at`) may start a partition in
/// `generation`: written in the generation just before, or during this member's current
/// rebalance by an owner of an earlier one. A record from before this member started counts
/// only under the first rule: a release older than that may predate an offset reset (which
/// needs the group empty, and so a new generation).
pub fn usable(handover: &Handover, at: i64, generation: i32, horizon: Horizon) -> bool {
    handover.generation < generation
        && (handover.generation == generation - 1
            || horizon
                .round_start
                .is_some_and(|start| at >= start && at >= horizon.joined_at))
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
            kind: HandoverKind::Owned,
        }
    }

    #[test]
    fn both_kinds_read_back_and_version_1_is_a_release() {
        let mut h = sample();
        for kind in [HandoverKind::Owned, HandoverKind::Released] {
            h.kind = kind;
            assert_eq!(Handover::decode(&h.key(), &h.value(), 0).expect("valid"), h);
        }
        // What konsumer wrote before claims existed: version 1, always a release.
        let mut v1 = BytesMut::new();
        v1.put_i8(1);
        v1.put_i32(12);
        v1.put_i64(40_000);
        put_str(&mut v1, "konsumer-1-3f2a");
        assert_eq!(
            Handover::decode(&h.key(), &v1, 0).expect("valid"),
            Handover {
                kind: HandoverKind::Released,
                ..sample()
            }
        );
    }

    fn rec(member: &str, generation: i32, offset: i64, kind: HandoverKind) -> Handover {
        Handover {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            generation,
            offset,
            member_id: member.into(),
            kind,
        }
    }

    fn log(records: &[(&str, i32, i64, HandoverKind)]) -> Ownership {
        let mut ownership = Ownership::default();
        for (at, (member, generation, offset, kind)) in records.iter().enumerate() {
            ownership.record(rec(member, *generation, *offset, *kind), at as i64 + 100);
        }
        ownership
    }

    use HandoverKind::{Owned, Released};

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    fn gone(members: &[&str]) -> BTreeSet<String> {
        members.iter().map(|m| (*m).to_owned()).collect()
    }

    /// A member that has been there since before every record (offset 0).
    fn round(round_start: Option<i64>) -> Horizon {
        Horizon {
            joined_at: 0,
            round_start,
        }
    }

    #[test]
    fn nothing_known_starts_at_the_committed_offset() {
        let empty = Ownership::default();
        assert_eq!(
            empty.verdict("me", 5, round(Some(0)), &none()),
            Verdict::Start { handed: None }
        );
    }

    #[test]
    fn a_release_of_the_previous_generation_is_where_to_start() {
        let o = log(&[("a", 4, 10, Owned), ("a", 4, 250, Released)]);
        assert_eq!(
            o.verdict("me", 5, round(None), &none()),
            Verdict::Start { handed: Some(250) }
        );
        // Older generations only count when written during this member's rebalance.
        assert_eq!(
            o.verdict("me", 7, round(None), &none()),
            Verdict::Start { handed: None }
        );
        assert_eq!(
            o.verdict("me", 7, round(Some(101)), &none()),
            Verdict::Start { handed: Some(250) }
        );
        assert_eq!(
            o.verdict("me", 7, round(Some(102)), &none()),
            Verdict::Start { handed: None }
        );
    }

    #[test]
    fn a_standing_claim_is_waited_for_until_its_owner_is_presumed_gone() {
        let o = log(&[("a", 4, 10, Owned), ("a", 4, 180, Owned)]);
        assert_eq!(
            o.verdict("me", 6, round(Some(0)), &none()),
            Verdict::Wait {
                owner: "a".into(),
                generation: 4
            }
        );
        // Presumed dead: its progress is the best there is.
        assert_eq!(
            o.verdict("me", 6, round(Some(0)), &gone(&["a"])),
            Verdict::Start { handed: Some(180) }
        );
        // Only the members presumed gone: another standing claim is still waited for.
        let mut two = o.clone();
        two.record(rec("b", 3, 300, Owned), 200);
        assert_eq!(
            two.verdict("me", 6, round(Some(0)), &gone(&["a"])),
            Verdict::Wait {
                owner: "b".into(),
                generation: 3
            }
        );
        // Its release ends the wait.
        let mut released = o.clone();
        released.record(rec("a", 4, 200, Released), 300);
        assert_eq!(
            released.verdict("me", 6, round(Some(0)), &none()),
            Verdict::Start { handed: Some(200) }
        );
    }

    #[test]
    fn a_claim_of_a_newer_generation_fences_the_stale_member() {
        let o = log(&[("a", 4, 10, Released), ("c", 8, 10, Owned)]);
        assert_eq!(
            o.verdict("me", 6, round(Some(0)), &none()),
            Verdict::Fenced {
                owner: "c".into(),
                generation: 8
            }
        );
        // Even once owners are presumed gone: fencing is never waited out.
        assert!(matches!(
            o.verdict("me", 6, round(Some(0)), &gone(&["c"])),
            Verdict::Fenced { .. }
        ));
    }

    #[test]
    fn racing_claims_resolve_to_one_owner() {
        // "r" (generation 4) and "me" (generation 6) both claimed after the same release.
        let o = log(&[
            ("z", 2, 50, Released),
            ("r", 4, 50, Owned),
            ("me", 6, 50, Owned),
        ]);
        assert!(matches!(
            o.verdict("r", 4, round(Some(0)), &none()),
            Verdict::Fenced { .. }
        ));
        assert_eq!(
            o.verdict("me", 6, round(Some(0)), &none()),
            Verdict::Wait {
                owner: "r".into(),
                generation: 4
            }
        );
        // "r" stands down and releases what it never delivered.
        let mut settled = o.clone();
        settled.record(rec("r", 4, 50, Released), 200);
        assert_eq!(
            settled.verdict("me", 6, round(Some(0)), &none()),
            Verdict::Start { handed: Some(50) }
        );
    }

    #[test]
    fn own_records_are_never_waited_for() {
        let o = log(&[("me", 3, 70, Owned)]);
        assert_eq!(
            o.verdict("me", 5, round(Some(0)), &none()),
            Verdict::Start { handed: Some(70) }
        );
    }

    #[test]
    fn a_claim_taken_over_in_a_newer_generation_is_no_longer_waited_for() {
        // "a" died holding the partition; "c" waited, gave up, claimed and released it.
        let o = log(&[
            ("a", 3, 10, Owned),
            ("c", 5, 10, Owned),
            ("c", 5, 90, Released),
        ]);
        assert_eq!(
            o.verdict("me", 6, round(Some(0)), &none()),
            Verdict::Start { handed: Some(90) }
        );
        // A later claim in an older generation takes nothing over.
        let o = log(&[
            ("a", 5, 10, Owned),
            ("c", 3, 10, Owned),
            ("c", 3, 10, Released),
        ]);
        assert!(matches!(
            o.verdict("me", 6, round(Some(0)), &none()),
            Verdict::Wait { .. }
        ));
    }

    #[test]
    fn a_members_own_release_stays_usable_after_its_next_claim() {
        // "me" released at 25 in generation 1 and has just claimed it again in generation 2.
        let o = log(&[
            ("me", 1, 0, Owned),
            ("me", 1, 25, Released),
            ("me", 2, 25, Owned),
        ]);
        assert_eq!(
            o.verdict("me", 2, round(None), &none()),
            Verdict::Start { handed: Some(25) }
        );
    }

    #[test]
    fn claims_written_before_the_member_started_are_waited_for() {
        // "a" claimed in generation 2 (sidechannel offsets 100, 101); "me" started at 102
        // and joined generation 3, which "a" has not noticed yet.
        let o = log(&[("z", 1, 40, Released), ("a", 2, 40, Owned)]);
        let fresh = Horizon::starting_at(102);
        assert_eq!(
            o.verdict("me", 3, fresh, &none()),
            Verdict::Wait {
                owner: "a".into(),
                generation: 2
            }
        );
        // Its release, read after the start, is where to start.
        let mut released = o.clone();
        released.record(rec("a", 2, 75, Released), 103);
        assert_eq!(
            released.verdict("me", 3, fresh, &none()),
            Verdict::Start { handed: Some(75) }
        );
    }

    #[test]
    fn records_from_before_the_member_started_count_only_from_the_previous_generation() {
        let o = log(&[("a", 4, 250, Released)]);
        // Generation 5 follows on directly: the release is usable.
        assert_eq!(
            o.verdict("me", 5, Horizon::starting_at(101), &none()),
            Verdict::Start { handed: Some(250) }
        );
        // A generation between (the group went empty, where offsets may be reset): not.
        assert_eq!(
            o.verdict("me", 6, Horizon::starting_at(101), &none()),
            Verdict::Start { handed: None }
        );
    }

    #[test]
    fn relics_of_an_earlier_life_of_the_group_neither_fence_nor_hold_up() {
        // The group's state was lost and its generations began again at 1; the old life
        // left a claim of generation 9 and one of generation 1 behind.
        let o = log(&[("old", 9, 500, Owned), ("older", 1, 300, Owned)]);
        let fresh = Horizon::starting_at(102);
        assert_eq!(
            o.verdict("me", 1, fresh, &none()),
            Verdict::Start { handed: None }
        );
        // The same claim written after the member started does fence it.
        assert!(matches!(
            o.verdict("me", 1, round(Some(0)), &none()),
            Verdict::Fenced { .. }
        ));
        // A relic claim takes nothing over: "a" (generation 2) is still waited for.
        let o = log(&[("a", 2, 40, Owned), ("old", 9, 40, Owned)]);
        assert_eq!(
            o.verdict("me", 3, Horizon::starting_at(102), &none()),
            Verdict::Wait {
                owner: "a".into(),
                generation: 2
            }
        );
    }

    #[test]
    fn only_the_members_with_the_newest_records_are_kept() {
        // Forty owners in turn, each claiming in its generation and releasing.
        let mut o = Ownership::default();
        for g in 1..=40 {
            let member = format!("m{g}");
            o.record(rec(&member, g, g as i64 * 10, Owned), g as i64 * 2);
            o.record(
                rec(&member, g, g as i64 * 10 + 5, Released),
                g as i64 * 2 + 1,
            );
        }
        assert_eq!(o.members.len(), MEMBERS_KEPT);
        assert!(o.members.contains_key("m40") && !o.members.contains_key("m32"));
        assert_eq!(
            o.verdict("me", 41, round(None), &none()),
            Verdict::Start { handed: Some(405) }
        );
        // A record of a forgotten member read late is forgotten again at once.
        o.record(rec("m1", 1, 15, Released), 3);
        assert!(!o.members.contains_key("m1"));
    }

    #[test]
    fn records_read_out_of_order_keep_the_newest() {
        let mut o = Ownership::default();
        o.record(rec("a", 4, 90, Released), 200);
        o.record(rec("a", 4, 10, Owned), 100);
        assert_eq!(
            o.verdict("me", 5, round(None), &none()),
            Verdict::Start { handed: Some(90) }
        );
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
            member in ".{0,60}", owned in any::<bool>()) {
            let h = Handover { group, topic, partition, generation, offset, member_id: member,
                kind: if owned { HandoverKind::Owned } else { HandoverKind::Released } };
            prop_assert_eq!(Handover::decode(&h.key(), &h.value(), 0).expect("valid"), h);
        }

        #[test]
        fn arbitrary_bytes_never_panic(key in proptest::collection::vec(any::<u8>(), 0..40),
            value in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Handover::decode(&key, &value, 0);
        }
    }
}
