//! Choosing a partition for a produced record, the way the Java client does.
//!
//! Keyed records go to `murmur2(key) & 0x7fffffff % partitions`: bit for bit the Java client's
//! default partitioner (and librdkafka's `murmur2_random`), so konsumer, Java and librdkafka
//! producers put the same key on the same partition — which is what keeps a key's records in
//! order across mixed producers. Records without a key are spread by a sticky partitioner
//! (KIP-480): one partition until its batch is full, then another, which makes fuller batches than
//! round-robin.

use std::collections::HashMap;

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`): MurmurHash2, 32-bit, seed
/// `0x9747b28c`, reading 4-byte blocks little-endian. Written out because no crate reproduces
/// this exact variant (seed and tail handling), and partition placement must match bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for `key` among `partitions`.
/// `partitions` must be positive.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Picks a partition for each record. Implement it to place records your own way; the producer
/// calls it only for records without an explicit partition.
pub trait Partitioner: Send {
    /// The partition for a record of `topic` with `key` (`None`: no key), among `partitions`
    /// (always positive). Must return a value in `0..partitions`.
    fn partition(&mut self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32;

    /// The batch a sticky partitioner was filling for `topic` is complete: choose another
    /// partition for the following records without a key. Does nothing by default.
    fn batch_full(&mut self, _topic: &str, _partitions: i32) {}
}

/// The default: murmur2 for keyed records (as the Java client), sticky for records without a key.
#[derive(Debug, Clone)]
pub struct DefaultPartitioner {
    sticky: HashMap<String, i32>,
    rng: XorShift,
}

impl DefaultPartitioner {
    /// `seed` makes the sticky choices reproducible (tests); any value works.
    pub fn new(seed: u64) -> Self {
        DefaultPartitioner {
            sticky: HashMap::new(),
            rng: XorShift::new(seed),
        }
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(&mut self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32 {
        match key {
            Some(key) => partition_for_key(key, partitions),
            None => {
                let current = self.sticky.get(topic).copied();
                match current {
                    Some(p) if p < partitions => p,
                    _ => {
                        let p = self.rng.below(partitions);
                        self.sticky.insert(topic.to_owned(), p);
                        p
                    }
                }
            }
        }
    }

    fn batch_full(&mut self, topic: &str, partitions: i32) {
        let previous = self.sticky.get(topic).copied();
        // A different partition when there is one, as KIP-480 asks.
        let mut next = self.rng.below(partitions);
        if partitions > 1 && Some(next) == previous {
            next = (next + 1 + self.rng.below(partitions - 1)) % partitions;
        }
        self.sticky.insert(topic.to_owned(), next);
    }
}

/// Every record to the next partition in turn, keyed or not (the Java client's
/// `RoundRobinPartitioner`).
#[derive(Debug, Clone, Default)]
pub struct RoundRobinPartitioner {
    next: HashMap<String, u32>,
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(&mut self, topic: &str, _key: Option<&[u8]>, partitions: i32) -> i32 {
        let counter = match self.next.get_mut(topic) {
            Some(counter) => counter,
            None => self.next.entry(topic.to_owned()).or_insert(0),
        };
        let p = (*counter % partitions.max(1) as u32) as i32;
        *counter = counter.wrapping_add(1);
        p
    }
}

/// A small xorshift generator: sticky partitioning needs cheap, not cryptographic, randomness,
/// and the core takes no dependency on a random source it cannot seed.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }
    fn below(&mut self, bound: i32) -> i32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound.max(1) as u64) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // The values of Kafka's own UtilsTest.testMurmur2, recomputed here from the published
        // algorithm with an independent Python implementation before being written down.
        for (key, hash) in [
            (&b"21"[..], -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
            (b"", 275_646_681),
            (b"\xff\xfe\x80\x00\x7f", -1_602_569_320),
        ] {
            assert_eq!(murmur2(key), hash, "{key:?}");
        }
        assert_eq!(partition_for_key(b"a-little-bit-longer-string", 6), 5);
        assert_eq!(partition_for_key(b"\xff\xfe\x80\x00\x7f", 6), 4);
    }

    #[test]
    fn keyless_records_stick_until_the_batch_is_full() {
        let mut p = DefaultPartitioner::new(7);
        let first = p.partition("t", None, 6);
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, 6), first);
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let before = p.partition("t", None, 6);
            p.batch_full("t", 6);
            let after = p.partition("t", None, 6);
            assert_ne!(before, after, "a full batch moves to another partition");
            seen.insert(after);
        }
        assert_eq!(seen.len(), 6, "every partition gets keyless batches");
        // Keys are not sticky.
        assert_eq!(
            p.partition("t", Some(b"abc"), 6),
            partition_for_key(b"abc", 6)
        );
        // A single partition is always it.
        p.batch_full("one", 1);
        assert_eq!(p.partition("one", None, 1), 0);
    }

    #[test]
    fn round_robin_cycles_per_topic() {
        let mut p = RoundRobinPartitioner::default();
        let a: Vec<i32> = (0..7).map(|_| p.partition("a", Some(b"k"), 3)).collect();
        assert_eq!(a, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(p.partition("b", None, 3), 0);
    }

    proptest! {
        #[test]
        fn partitions_are_always_in_range(key: Option<Vec<u8>>, partitions in 1i32..10_000, seed: u64) {
            let mut p = DefaultPartitioner::new(seed);
            let got = p.partition("t", key.as_deref(), partitions);
            prop_assert!((0..partitions).contains(&got));
            p.batch_full("t", partitions);
            let got = p.partition("t", key.as_deref(), partitions);
            prop_assert!((0..partitions).contains(&got));
            // Fewer partitions than the sticky one (a topic can't shrink, but metadata can lag).
            let got = p.partition("t", None, 1);
            prop_assert_eq!(got, 0);
        }
    }
}
