//! The sticky assignors: "sticky" (Java's `StickyAssignor`, eager) and "cooperative-sticky"
//! (Java's `CooperativeStickyAssignor` and librdkafka's, KIP-429). Both make the promises of
//! Java's `AbstractStickyAssignor`:
//! - every partition of a subscribed topic goes to exactly one subscribed member;
//! - balance: when all members subscribe to the same topics, their counts differ by at most
//!   one; otherwise no member holds a partition that a member holding two or more fewer could
//!   take (Java's definition of "as balanced as possible");
//! - stickiness: as many partitions as balance allows stay with their previous owner.
//!
//! The algorithm is simpler than Java's, with the same guarantees:
//! 1. every partition keeps its previous owner, if that member is still here and still
//!    subscribed to the topic (a partition claimed by several members goes to the claim with
//!    the highest generation, Java's rule; between claims of the same generation the first
//!    member in member-id order wins, where Java drops all of them — either is deterministic,
//!    this one moves less);
//! 2. the other partitions, those with the fewest eligible members first, each go to the
//!    eligible member holding the fewest;
//! 3. while some member holds at least two more than a member that could take one of its
//!    partitions, the fullest such member hands one to the emptiest such taker: first only
//!    moves of partitions the giver did not own before, then any. Every move lowers the sum of
//!    squared counts, so this ends. With equal subscriptions a member holding a partition it
//!    did not own is never two above the emptiest, so the giver is always a fullest member,
//!    giving what it owned, down to the quota: it keeps min(its previous count, the floor).
//!
//! The cooperative variant then removes from each member every partition it did not own that
//! another member still owns (Java's `CooperativeStickyAssignor` adjustment, which Java's leader
//! also checks): the owner revokes it after this rebalance and the follow-up rebalance hands it
//! over, so no partition is ever consumed by two members at once.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::{BufMut, Bytes, BytesMut};

use super::assignor::RebalanceProtocol;
use super::empty_assignments;
use super::{normalize, Assignment, Assignor, Member, Subscription, TopicPartitions};

/// The eager sticky assignor. Its user data is Java's `StickyAssignorUserData` v1, the
/// member's last assignment and the generation it got it in, because an eager member revokes
/// everything before it joins and so sends no owned partitions: the user data is the only
/// record of what it had. (librdkafka has no eager "sticky"; it only offers
/// "cooperative-sticky".)
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

/// The cooperative sticky assignor.
///
/// User data: Java writes a bare int32, the generation of the member's last assignment
/// (`CooperativeStickyAssignorUserData` v0), and reads it only when the subscription carries no
/// generation (subscription version below 2). librdkafka writes the eager assignor's v1 layout
/// (previous assignment, generation) and never reads user data: it takes the owned partitions
/// and the generation from the subscription fields. konsumer writes Java's int32, the only
/// layout both peers read correctly (Java would take the topic count of librdkafka's layout for
/// a generation); when reading, it accepts all three layouts.
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeStickyAssignor;

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        "sticky"
    }

    /// None before the first assignment (generation -1 and nothing owned), as Java does.
    fn user_data(&self, owned: &TopicPartitions, generation: i32) -> Option<Bytes> {
        if owned.is_empty() && generation < 0 {
            return None;
        }
        Some(encode_user_data(owned, generation))
    }

    fn assign(
        &self,
        members: &[Member],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Assignment> {
        sticky_assign(members, partition_counts)
    }
}

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &'static str {
        "cooperative-sticky"
    }

    fn rebalance_protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Cooperative
    }

    /// Always written, -1 included, as Java does.
    fn user_data(&self, _owned: &TopicPartitions, generation: i32) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(&generation.to_be_bytes()))
    }

    fn assign(
        &self,
        members: &[Member],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Assignment> {
        let mut out = sticky_assign(members, partition_counts);
        withhold_transfers(members, &mut out);
        out
    }
}

/// Encodes Java's `StickyAssignorUserData` v1: `[topic: string, partitions: [int32]]`, then
/// `generation: int32`. A topic name too long for a protocol string (Kafka allows 249 bytes)
/// is left out rather than written corrupt.
pub(crate) fn encode_user_data(partitions: &TopicPartitions, generation: i32) -> Bytes {
    let topics: Vec<(&String, &Vec<i32>)> = partitions
        .iter()
        .filter(|(t, ps)| i16::try_from(t.len()).is_ok() && i32::try_from(ps.len()).is_ok())
        .collect();
    let mut b = BytesMut::new();
    b.put_i32(topics.len() as i32);
    for (topic, ps) in topics {
        b.put_i16(topic.len() as i16);
        b.put_slice(topic.as_bytes());
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(generation);
    b.freeze()
}

/// What sticky user data says: the previous assignment, and its generation if known.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct UserData {
    pub partitions: TopicPartitions,
    pub generation: Option<i32>,
}

/// Reads any sticky user data a peer writes: Java's cooperative int32 generation (exactly four
/// bytes), or the `StickyAssignorUserData` layout at v1 (with generation), else v0 (without),
/// as Java tries them. Bytes that fit none are ignored, as Java ignores them: the member is
/// treated as having no previous assignment.
pub(crate) fn decode_user_data(bytes: &[u8]) -> UserData {
    if let Ok(four) = <[u8; 4]>::try_from(bytes) {
        return UserData {
            partitions: TopicPartitions::new(),
            generation: Some(i32::from_be_bytes(four)),
        };
    }
    let read = |with_generation: bool| -> Option<UserData> {
        let mut r = Reader(bytes);
        let mut partitions = r.topic_partitions()?;
        let generation = if with_generation {
            Some(r.i32()?)
        } else {
            None
        };
        normalize(&mut partitions);
        Some(UserData {
            partitions,
            generation,
        })
    };
    read(true).or_else(|| read(false)).unwrap_or_default()
}

/// A reader for untrusted user data, after `protocol::Reader`: every length is checked
/// against the bytes left before anything is read or reserved, and nothing panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        let b = self.take(2)?;
        Some(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        let b = self.take(4)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        let raw = self.take(len)?;
        std::str::from_utf8(raw).ok().map(str::to_owned)
    }

    /// An array of elements of at least `min_size` bytes each; null reads as empty. The length
    /// is checked against the bytes left, so a corrupt length reserves nothing.
    fn array<T>(
        &mut self,
        min_size: usize,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        let len = self.i32()?;
        let Ok(len) = usize::try_from(len) else {
            return Some(Vec::new());
        };
        if len > self.0.len() / min_size {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            out.push(item(self)?);
        }
        Some(out)
    }

    fn topic_partitions(&mut self) -> Option<TopicPartitions> {
        let mut out = TopicPartitions::new();
        for (topic, ps) in self.array(6, |r| Some((r.string()?, r.array(4, |r| r.i32())?)))? {
            out.entry(topic).or_default().extend(ps);
        }
        Some(out)
    }
}

/// What a member held before this rebalance: its owned partitions (subscription v1+) when it
/// sends any, else what its user data says. The generation is the subscription's (v2+) when
/// known, else the user data's; -1 when neither says.
fn previous(subscription: &Subscription) -> (TopicPartitions, i32) {
    let user_data = subscription
        .user_data
        .as_deref()
        .map(decode_user_data)
        .unwrap_or_default();
    let known = |g: i32| (g >= 0).then_some(g);
    if subscription.owned_partitions.is_empty() {
        let generation = user_data
            .generation
            .and_then(known)
            .or(known(subscription.generation_id));
        (user_data.partitions, generation.unwrap_or(-1))
    } else {
        let generation = known(subscription.generation_id)
            .or(user_data.generation.and_then(known))
            .unwrap_or(-1);
        (subscription.owned_partitions.clone(), generation)
    }
}

/// One topic the assignment covers: it exists and somebody subscribes to it.
struct Topic<'a> {
    name: &'a str,
    count: usize,
    /// Index of partition 0 in the flat partition numbering.
    first: usize,
    /// Members subscribed to it, in member order.
    subscribers: Vec<usize>,
}

/// One member's partitions of one topic: `fresh` ones it did not own before, given away first,
/// and `kept` ones it did.
#[derive(Default)]
struct Held {
    fresh: Vec<usize>,
    kept: Vec<usize>,
}

/// The sticky algorithm shared by both variants (see the module comment). Members and topics
/// become indices and each partition a number (`first` of its topic + partition), so the
/// balancing loop works on vectors; ties always go to the lower member id, so the result
/// depends only on the input.
fn sticky_assign(
    members: &[Member],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out = empty_assignments(members);
    let mut order: Vec<&Member> = members.iter().collect();
    order.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    order.dedup_by(|b, a| a.member_id == b.member_id);
    let n = order.len();

    let mut topics: Vec<Topic> = Vec::new();
    let mut topic_index: HashMap<&str, usize> = HashMap::new();
    for (name, &count) in partition_counts {
        if let Ok(count @ 1..) = usize::try_from(count) {
            topic_index.insert(name, topics.len());
            topics.push(Topic {
                name,
                count,
                first: 0,
                subscribers: Vec::new(),
            });
        }
    }
    let nt = topics.len();
    // subscribed[m * nt + t]: member m subscribes to topic t.
    let mut subscribed = vec![false; n * nt];
    for (m, member) in order.iter().enumerate() {
        for name in &member.subscription.topics {
            if let Some(&t) = topic_index.get(name.as_str()) {
                if !subscribed[m * nt + t] {
                    subscribed[m * nt + t] = true;
                    topics[t].subscribers.push(m);
                }
            }
        }
    }
    let mut total = 0;
    for topic in &mut topics {
        topic.first = total;
        if !topic.subscribers.is_empty() {
            total += topic.count;
        }
    }
    let topic_of = {
        let mut v = Vec::with_capacity(total);
        for (t, topic) in topics.iter().enumerate() {
            if !topic.subscribers.is_empty() {
                v.extend(std::iter::repeat_n(t, topic.count));
            }
        }
        v
    };

    // Step 1: the previous owner of each partition, by claim. A claim counts only if the
    // member still subscribes to the topic and the partition still exists.
    let mut owner: Vec<Option<(usize, i32)>> = vec![None; total];
    for (m, member) in order.iter().enumerate() {
        let (partitions, generation) = previous(&member.subscription);
        for (name, ps) in &partitions {
            let Some(&t) = topic_index.get(name.as_str()) else {
                continue;
            };
            if !subscribed[m * nt + t] {
                continue;
            }
            for &p in ps {
                let Ok(p) = usize::try_from(p) else { continue };
                if p >= topics[t].count {
                    continue;
                }
                let slot = &mut owner[topics[t].first + p];
                match slot {
                    Some((_, g)) if *g >= generation => {}
                    _ => *slot = Some((m, generation)),
                }
            }
        }
    }

    let mut held: Vec<BTreeMap<usize, Held>> = (0..n).map(|_| BTreeMap::new()).collect();
    let mut count = vec![0usize; n];
    let mut unassigned = Vec::new();
    for (pid, claim) in owner.iter().enumerate() {
        match claim {
            Some((m, _)) => {
                held[*m].entry(topic_of[pid]).or_default().kept.push(pid);
                count[*m] += 1;
            }
            None => unassigned.push(pid),
        }
    }

    // Step 2: the rest, most constrained first, each to the emptiest eligible member.
    unassigned.sort_by_key(|&pid| (topics[topic_of[pid]].subscribers.len(), pid));
    for pid in unassigned {
        let t = topic_of[pid];
        let mut best = topics[t].subscribers[0];
        for &m in &topics[t].subscribers[1..] {
            if count[m] < count[best] {
                best = m;
            }
        }
        held[best].entry(t).or_default().fresh.push(pid);
        count[best] += 1;
    }

    // Step 3: while some member holds two more than a member that could take one of its
    // partitions, the fullest such member gives one to the emptiest such taker. Moves of
    // partitions nobody owned before come first (tier 0): with unequal subscriptions they
    // can often restore balance alone, which keeps owned partitions in place and lets a
    // cooperative group settle in the rebalance after the revocations. Only then may an owned
    // partition move (tier 1). A member that cannot give in a tier is `stuck` there until a
    // count changes in a way that could free it: it takes a partition (a new topic, a higher
    // count), or a member it could give to drops.
    let mut fresh = vec![0usize; n];
    for (m, topics_held) in held.iter().enumerate() {
        fresh[m] = topics_held.values().map(|h| h.fresh.len()).sum();
    }
    let mut stuck = [vec![false; n], vec![false; n]];
    'moves: loop {
        for (tier, fresh_only) in [(0, true), (1, false)] {
            loop {
                let mut giver: Option<usize> = None;
                for m in 0..n {
                    if stuck[tier][m] || count[m] < 2 || (fresh_only && fresh[m] == 0) {
                        continue;
                    }
                    if giver.is_none_or(|g| count[m] > count[g]) {
                        giver = Some(m);
                    }
                }
                let Some(a) = giver else { break };
                let prefer = if fresh_only || fresh[a] > 0 {
                    Prefer::Fresh { only: fresh_only }
                } else {
                    Prefer::Any
                };
                let Some((b, t)) = taker(a, prefer, &count, &held, &subscribed, nt) else {
                    stuck[tier][a] = true;
                    continue;
                };
                let Some(from) = held[a].get_mut(&t) else {
                    stuck[tier][a] = true;
                    continue;
                };
                let pid = match from.fresh.pop() {
                    Some(pid) => {
                        fresh[a] -= 1;
                        pid
                    }
                    None => match from.kept.pop() {
                        Some(pid) => pid,
                        None => {
                            stuck[tier][a] = true;
                            continue;
                        }
                    },
                };
                if from.fresh.is_empty() && from.kept.is_empty() {
                    held[a].remove(&t);
                }
                held[b].entry(t).or_default().fresh.push(pid);
                fresh[b] += 1;
                count[a] -= 1;
                count[b] += 1;
                for flags in &mut stuck {
                    flags[b] = false;
                    for (m, flag) in flags.iter_mut().enumerate() {
                        if count[m] >= count[a] + 2 {
                            *flag = false;
                        }
                    }
                }
                continue 'moves;
            }
        }
        break;
    }

    for (m, member) in order.iter().enumerate() {
        let Some(assignment) = out.get_mut(&member.member_id) else {
            continue;
        };
        for (&t, h) in &held[m] {
            let mut ps: Vec<i32> = h
                .fresh
                .iter()
                .chain(&h.kept)
                .filter_map(|&pid| i32::try_from(pid - topics[t].first).ok())
                .collect();
            ps.sort_unstable();
            assignment.partitions.insert(topics[t].name.to_owned(), ps);
        }
    }
    out
}

/// Which of the giver's topics `taker` may pick.
#[derive(Clone, Copy)]
enum Prefer {
    /// One where the giver holds a partition it did not own before; with `only`, no other.
    Fresh { only: bool },
    /// Any: the giver holds no such partition, so the first eligible topic will do.
    Any,
}

/// The member `a` should give a partition to, and the topic to give from: the emptiest member
/// (lowest id on ties) holding at most `count[a] - 2` and subscribed to a topic `a` holds, as
/// `prefer` allows.
fn taker(
    a: usize,
    prefer: Prefer,
    count: &[usize],
    held: &[BTreeMap<usize, Held>],
    subscribed: &[bool],
    nt: usize,
) -> Option<(usize, usize)> {
    let limit = count[a].checked_sub(2)?;
    let mut candidates: Vec<usize> = (0..count.len())
        .filter(|&b| b != a && count[b] <= limit)
        .collect();
    candidates.sort_by_key(|&b| (count[b], b));
    for b in candidates {
        let mut pick = None;
        for (&t, h) in &held[a] {
            if !subscribed[b * nt + t] {
                continue;
            }
            match prefer {
                Prefer::Any => {
                    pick = Some(t);
                    break;
                }
                Prefer::Fresh { .. } if !h.fresh.is_empty() => {
                    pick = Some(t);
                    break;
                }
                Prefer::Fresh { only: false } => {
                    pick.get_or_insert(t);
                }
                Prefer::Fresh { only: true } => {}
            }
        }
        if let Some(t) = pick {
            return Some((b, t));
        }
    }
    None
}

/// KIP-429's rule: a partition may not be handed to a member while another member still owns
/// it. Each such partition is left out of its new owner's assignment; the owner, not finding it
/// in its own, revokes it, and the rebalance that follows assigns it. Ownership here is the raw
/// owned partitions of every member, whatever their generation, because that is what each
/// member acts on and what Java's leader validates the assignment against.
fn withhold_transfers(members: &[Member], out: &mut BTreeMap<String, Assignment>) {
    let mut owned_by: HashMap<&str, HashSet<(&str, i32)>> = HashMap::new();
    let mut owned_by_anyone: HashSet<(&str, i32)> = HashSet::new();
    for member in members {
        let mine = owned_by.entry(member.member_id.as_str()).or_default();
        for (topic, ps) in &member.subscription.owned_partitions {
            for &p in ps {
                mine.insert((topic.as_str(), p));
                owned_by_anyone.insert((topic.as_str(), p));
            }
        }
    }
    for (member_id, assignment) in out.iter_mut() {
        let mine = owned_by.get(member_id.as_str());
        for (topic, ps) in assignment.partitions.iter_mut() {
            ps.retain(|&p| {
                let key = (topic.as_str(), p);
                mine.is_some_and(|o| o.contains(&key)) || !owned_by_anyone.contains(&key)
            });
        }
        normalize(&mut assignment.partitions);
    }
}
