//! `OffsetTracker` tests: each method and its edges by hand, then random operation sequences
//! checked step by step against a plain `BTreeSet` model.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

/// Checks the documented invariants of the internal state.
fn check_invariants(t: &OffsetTracker) {
    let offsets: Vec<i64> = t.entries.iter().map(|&(o, _)| o).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "entries not strictly increasing: {offsets:?}"
    );
    if let Some(&(last, _)) = t.entries.back() {
        assert!(
            last < t.position,
            "entry {last} not below position {}",
            t.position
        );
    }
    if let Some(&(_, done)) = t.entries.front() {
        assert!(!done, "front entry is done: {t:?}");
    }
    assert_eq!(t.open, t.entries.iter().filter(|&&(_, d)| !d).count());
    assert_eq!(t.is_idle(), t.open_count() == 0);
}

// ---------------------------------------------------------------------------------------------
// new / open / position / committable

#[test]
fn new_is_idle_at_start() {
    let t = OffsetTracker::new(42);
    assert_eq!(t.committable(), 42);
    assert_eq!(t.position(), 42);
    assert_eq!(t.open_count(), 0);
    assert!(t.is_idle());
    assert_eq!(OffsetTracker::with_capacity(42, 100), t);
}

#[test]
fn open_in_order_holds_committable_at_first_open() {
    let mut t = OffsetTracker::new(10);
    t.open(10).unwrap();
    t.open(11).unwrap();
    t.open(12).unwrap();
    assert_eq!(t.committable(), 10);
    assert_eq!(t.position(), 13);
    assert_eq!(t.open_count(), 3);
    assert!(!t.is_idle());
    check_invariants(&t);
}

#[test]
fn open_with_gaps_moves_position_past_the_gap() {
    let mut t = OffsetTracker::new(0);
    t.open(5).unwrap();
    assert_eq!(t.position(), 6);
    assert_eq!(t.committable(), 5);
    t.open(9).unwrap();
    assert_eq!(t.position(), 10);
    assert_eq!(t.done(5), Ok(true));
    assert_eq!(t.committable(), 9);
    assert_eq!(t.done(9), Ok(true));
    assert_eq!(t.committable(), 10);
    assert!(t.is_idle());
}

#[test]
fn open_below_position_is_rejected_and_changes_nothing() {
    let mut t = OffsetTracker::new(10);
    t.open(10).unwrap();
    let before = t.clone();
    assert_eq!(
        t.open(10),
        Err(OffsetError::NotIncreasing {
            offset: 10,
            position: 11
        })
    );
    assert_eq!(
        t.open(3),
        Err(OffsetError::NotIncreasing {
            offset: 3,
            position: 11
        })
    );
    assert_eq!(t, before);
    // Below the start, on a fresh tracker.
    let mut t = OffsetTracker::new(10);
    assert_eq!(
        t.open(9),
        Err(OffsetError::NotIncreasing {
            offset: 9,
            position: 10
        })
    );
}

#[test]
fn open_i64_max_is_rejected_because_its_successor_does_not_fit() {
    let mut t = OffsetTracker::new(i64::MAX - 1);
    t.open(i64::MAX - 1).unwrap();
    assert_eq!(t.position(), i64::MAX);
    let before = t.clone();
    assert_eq!(
        t.open(i64::MAX),
        Err(OffsetError::NotIncreasing {
            offset: i64::MAX,
            position: i64::MAX
        })
    );
    assert_eq!(t, before);
    assert_eq!(t.done(i64::MAX - 1), Ok(true));
    assert_eq!(t.committable(), i64::MAX);

    // Also from far below, on a fresh tracker.
    let mut t = OffsetTracker::new(0);
    assert_eq!(
        t.open(i64::MAX),
        Err(OffsetError::NotIncreasing {
            offset: i64::MAX,
            position: 0
        })
    );
    assert_eq!(t, OffsetTracker::new(0));
}

#[test]
fn i64_min_and_negative_offsets_are_plain_numbers() {
    let mut t = OffsetTracker::new(i64::MIN);
    t.open(i64::MIN).unwrap();
    t.open(-1).unwrap();
    t.open(i64::MAX - 1).unwrap();
    assert_eq!(t.committable(), i64::MIN);
    // done() must not overflow computing the distance from i64::MIN to a large offset.
    assert_eq!(t.done(i64::MAX - 1), Ok(true));
    assert_eq!(t.done(0), Err(OffsetError::NeverOpened { offset: 0 }));
    assert_eq!(
        t.done(i64::MAX),
        Err(OffsetError::NeverOpened { offset: i64::MAX })
    );
    assert_eq!(t.done(i64::MIN), Ok(true));
    assert_eq!(t.committable(), -1);
    assert_eq!(t.done(i64::MIN), Ok(false));
    assert_eq!(t.done(-1), Ok(true));
    assert_eq!(t.committable(), i64::MAX);
    assert!(t.is_idle());
    assert_eq!(t.done_up_to(i64::MAX), 0);
    assert_eq!(t.done_up_to(i64::MIN), 0);
    check_invariants(&t);
}

// ---------------------------------------------------------------------------------------------
// open_range

#[test]
fn open_range_opens_all_and_counts() {
    let mut t = OffsetTracker::new(100);
    assert_eq!(t.open_range(100..110), Ok(10));
    assert_eq!(t.open_range([112, 115, 200]), Ok(3));
    assert_eq!(t.open_range(std::iter::empty()), Ok(0));
    assert_eq!(t.open_count(), 13);
    assert_eq!(t.position(), 201);
    assert_eq!(t.committable(), 100);
    check_invariants(&t);
}

#[test]
fn open_range_stops_at_first_error_keeping_earlier_ones() {
    let mut t = OffsetTracker::new(0);
    assert_eq!(
        t.open_range([0, 1, 5, 4, 6]),
        Err(OffsetError::NotIncreasing {
            offset: 4,
            position: 6
        })
    );
    assert_eq!(t.open_count(), 3);
    assert_eq!(t.position(), 6);
    assert_eq!(t.done(6), Err(OffsetError::NeverOpened { offset: 6 }));
    check_invariants(&t);
}

#[test]
fn open_range_does_not_trust_a_huge_size_hint() {
    /// Claims to be endless, yields two offsets.
    struct Liar(std::vec::IntoIter<i64>);
    impl Iterator for Liar {
        type Item = i64;
        fn next(&mut self) -> Option<i64> {
            self.0.next()
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (usize::MAX, None)
        }
    }
    let mut t = OffsetTracker::new(0);
    assert_eq!(t.open_range(Liar(vec![0, 1].into_iter())), Ok(2));
    assert_eq!(t.position(), 2);
    // A real range with a 2^63 hint, stopped at the first offset by the error.
    let mut t = OffsetTracker::new(5);
    assert_eq!(
        t.open_range(0..i64::MAX),
        Err(OffsetError::NotIncreasing {
            offset: 0,
            position: 5
        })
    );
}

// ---------------------------------------------------------------------------------------------
// skip_to

#[test]
fn skip_to_moves_idle_committable_forward() {
    let mut t = OffsetTracker::new(0);
    t.open(0).unwrap();
    t.done(0).unwrap();
    assert_eq!(t.committable(), 1);
    // A control batch at 1..=2: never delivered.
    t.skip_to(3);
    assert_eq!(t.position(), 3);
    assert_eq!(t.committable(), 3);
    assert_eq!(t.open_count(), 0);
    // The skipped offsets are now below committable: late acks, not errors.
    assert_eq!(t.done(1), Ok(false));
    assert_eq!(t.done(2), Ok(false));
    assert_eq!(t.done(3), Err(OffsetError::NeverOpened { offset: 3 }));
    t.open(3).unwrap();
    assert_eq!(t.committable(), 3);
}

#[test]
fn skip_to_never_moves_back_and_leaves_open_offsets_alone() {
    let mut t = OffsetTracker::new(0);
    t.open(0).unwrap();
    t.open(1).unwrap();
    t.skip_to(10);
    assert_eq!(t.position(), 10);
    assert_eq!(t.committable(), 0);
    assert_eq!(t.open_count(), 2);
    t.skip_to(5);
    assert_eq!(t.position(), 10);
    t.skip_to(i64::MIN);
    assert_eq!(t.position(), 10);
    // The skipped offsets 2..10 are in a gap above committable: never opened.
    assert_eq!(t.done(5), Err(OffsetError::NeverOpened { offset: 5 }));
    assert_eq!(
        t.open(9),
        Err(OffsetError::NotIncreasing {
            offset: 9,
            position: 10
        })
    );
    assert_eq!(t.done_all(&[1, 0]), Ok(2));
    assert_eq!(t.committable(), 10);
    t.skip_to(i64::MAX);
    assert_eq!(t.committable(), i64::MAX);
    assert_eq!(
        t.open(i64::MAX),
        Err(OffsetError::NotIncreasing {
            offset: i64::MAX,
            position: i64::MAX
        })
    );
    check_invariants(&t);
}

// ---------------------------------------------------------------------------------------------
// done

#[test]
fn done_out_of_order_advances_only_over_the_finished_prefix() {
    let mut t = OffsetTracker::new(0);
    t.open_range(0..5).unwrap();
    assert_eq!(t.done(3), Ok(true));
    assert_eq!(t.committable(), 0);
    assert_eq!(t.done(1), Ok(true));
    assert_eq!(t.committable(), 0);
    assert_eq!(t.done(0), Ok(true));
    // 0 and 1 done, 2 not: commit up to (excluding) 2.
    assert_eq!(t.committable(), 2);
    assert_eq!(t.open_count(), 2);
    assert_eq!(t.done(2), Ok(true));
    // 2 and 3 done, 4 open.
    assert_eq!(t.committable(), 4);
    assert_eq!(t.done(4), Ok(true));
    assert_eq!(t.committable(), 5);
    assert!(t.is_idle());
    // The done prefix is dropped eagerly: nothing is kept once idle.
    assert!(t.entries.is_empty());
}

#[test]
fn done_duplicates_and_late_acks_are_ok_false() {
    let mut t = OffsetTracker::new(0);
    t.open_range(0..4).unwrap();
    assert_eq!(t.done(2), Ok(true));
    let before = t.clone();
    // Already done, above committable.
    assert_eq!(t.done(2), Ok(false));
    assert_eq!(t, before);
    assert_eq!(t.done(0), Ok(true));
    let before = t.clone();
    // Below committable.
    assert_eq!(t.done(0), Ok(false));
    assert_eq!(t.done(-7), Ok(false));
    assert_eq!(t.done(i64::MIN), Ok(false));
    assert_eq!(t, before);
}

#[test]
fn done_never_opened() {
    let mut t = OffsetTracker::new(10);
    // Idle: anything at or past the position.
    assert_eq!(t.done(10), Err(OffsetError::NeverOpened { offset: 10 }));
    assert_eq!(t.done(9), Ok(false));
    t.open(10).unwrap();
    t.open(13).unwrap();
    let before = t.clone();
    // In the gap.
    assert_eq!(t.done(11), Err(OffsetError::NeverOpened { offset: 11 }));
    assert_eq!(t.done(12), Err(OffsetError::NeverOpened { offset: 12 }));
    // At and past the position.
    assert_eq!(t.done(14), Err(OffsetError::NeverOpened { offset: 14 }));
    assert_eq!(
        t.done(i64::MAX),
        Err(OffsetError::NeverOpened { offset: i64::MAX })
    );
    assert_eq!(t, before);
    // Once 10 is done, the gap is below committable: late, not an error.
    assert_eq!(t.done(10), Ok(true));
    assert_eq!(t.committable(), 13);
    assert_eq!(t.done(11), Ok(false));
}

#[test]
fn done_finds_entries_behind_gaps() {
    // Gaps defeat the `offset - front` index guess; binary search must still find them.
    let mut t = OffsetTracker::new(0);
    let opened = [0, 2, 3, 7, 8, 20, 21, 22, 100];
    t.open_range(opened).unwrap();
    for &o in opened.iter().rev() {
        assert_eq!(t.done(o), Ok(true), "offset {o}");
        check_invariants(&t);
    }
    assert_eq!(t.committable(), 101);
    assert!(t.is_idle());
}

#[test]
fn done_all_counts_newly_done_and_stops_at_first_error() {
    let mut t = OffsetTracker::new(0);
    t.open_range([0, 1, 2, 5, 6]).unwrap();
    assert_eq!(t.done_all(&[]), Ok(0));
    assert_eq!(t.done_all(&[1, 1, 2]), Ok(2));
    assert_eq!(t.committable(), 0);
    // 3 is in a gap above the committable offset: the error stops the batch before 0.
    assert_eq!(
        t.done_all(&[3, 0]),
        Err(OffsetError::NeverOpened { offset: 3 })
    );
    assert_eq!(t.committable(), 0);
    assert_eq!(t.open_count(), 3);
    // 0 is applied before the error at the position (7), 5 after it is not.
    assert_eq!(
        t.done_all(&[0, 7, 5]),
        Err(OffsetError::NeverOpened { offset: 7 })
    );
    assert_eq!(t.committable(), 5);
    assert_eq!(t.open_count(), 2);
    // With 0 done, the gap 3..5 is below the committable offset: late, not an error.
    assert_eq!(t.done_all(&[3, 6, 5, 0]), Ok(2));
    assert_eq!(t.committable(), 7);
}

// ---------------------------------------------------------------------------------------------
// done_up_to

#[test]
fn done_up_to_marks_every_open_offset_at_or_below() {
    let mut t = OffsetTracker::new(0);
    t.open_range([0, 1, 2, 5, 6, 9]).unwrap();
    t.done(1).unwrap();
    t.done(6).unwrap();
    // 0, 2 and 5 become done (1 already was); 6 done, 9 open.
    assert_eq!(t.done_up_to(5), 3);
    assert_eq!(t.committable(), 9);
    assert_eq!(t.open_count(), 1);
    check_invariants(&t);
    // Nothing new at or below 8.
    assert_eq!(t.done_up_to(8), 0);
    assert_eq!(t.done_up_to(i64::MIN), 0);
    assert_eq!(t.committable(), 9);
    // Past the position is fine: only opened offsets are affected.
    assert_eq!(t.done_up_to(1_000), 1);
    assert_eq!(t.committable(), 10);
    assert_eq!(t.position(), 10);
    assert!(t.is_idle());
    assert_eq!(t.done_up_to(i64::MAX), 0);
}

#[test]
fn done_up_to_inside_a_gap_and_below_committable() {
    let mut t = OffsetTracker::new(0);
    t.open_range([3, 4, 10, 11]).unwrap();
    assert_eq!(t.done_up_to(2), 0);
    assert_eq!(t.committable(), 3);
    assert_eq!(t.done_up_to(7), 2);
    assert_eq!(t.committable(), 10);
    assert_eq!(t.done(11), Ok(true));
    assert_eq!(t.done_up_to(10), 1);
    assert_eq!(t.committable(), 12);
}

// ---------------------------------------------------------------------------------------------
// open_run / done_range

#[test]
fn open_run_opens_consecutive_offsets_like_open_range() {
    let mut t = OffsetTracker::new(10);
    assert_eq!(t.open_run(10, 0), Ok(0));
    assert_eq!(t, OffsetTracker::new(10));
    assert_eq!(t.open_run(12, 3), Ok(3));
    let mut u = OffsetTracker::new(10);
    u.open_range(12..15).unwrap();
    assert_eq!(t, u);
    assert_eq!(t.committable(), 12);
    assert_eq!(t.position(), 15);
    assert_eq!(t.open_count(), 3);
    check_invariants(&t);
    // Below the position: an error, nothing opened.
    let before = t.clone();
    assert_eq!(
        t.open_run(14, 2),
        Err(OffsetError::NotIncreasing {
            offset: 14,
            position: 15
        })
    );
    assert_eq!(t, before);
}

#[test]
fn open_run_up_to_i64_max_opens_what_fits_then_fails() {
    let mut t = OffsetTracker::new(i64::MAX - 3);
    assert_eq!(
        t.open_run(i64::MAX - 2, 5),
        Err(OffsetError::NotIncreasing {
            offset: i64::MAX,
            position: i64::MAX
        })
    );
    // MAX - 2 and MAX - 1 are open, as open() one by one would have left them.
    assert_eq!(t.open_count(), 2);
    assert_eq!(t.position(), i64::MAX);
    check_invariants(&t);
    let mut t = OffsetTracker::new(0);
    assert_eq!(
        t.open_run(i64::MAX, 1),
        Err(OffsetError::NotIncreasing {
            offset: i64::MAX,
            position: 0
        })
    );
    assert_eq!(t, OffsetTracker::new(0));
    // From i64::MIN: the room up to i64::MAX exceeds i64::MAX itself, and the offsets stay exact.
    let mut t = OffsetTracker::new(i64::MIN);
    assert_eq!(t.open_run(i64::MIN, 3), Ok(3));
    assert_eq!(t.position(), i64::MIN + 3);
}

#[test]
fn done_range_marks_the_open_offsets_in_the_range() {
    let mut t = OffsetTracker::new(0);
    t.open_range([0, 1, 2, 5, 6, 9, 10]).unwrap();
    t.done(6).unwrap();
    // Inside the window, not at the front: marked, kept until the front is done.
    assert_eq!(t.done_range(2, 6), 2);
    assert_eq!(t.committable(), 0);
    assert_eq!(t.open_count(), 4);
    check_invariants(&t);
    // Again: nothing new. Empty and gap-only ranges change nothing.
    let before = t.clone();
    assert_eq!(t.done_range(2, 6), 0);
    assert_eq!(t.done_range(6, 2), 0);
    assert_eq!(t.done_range(3, 4), 0);
    assert_eq!(t.done_range(11, i64::MAX), 0);
    assert_eq!(t.done_range(i64::MIN, -1), 0);
    assert_eq!(t, before);
    // From the front: the done prefix goes, up to the next open offset.
    assert_eq!(t.done_range(i64::MIN, 1), 2);
    assert_eq!(t.committable(), 9);
    check_invariants(&t);
    assert_eq!(t.done_range(9, i64::MAX), 2);
    assert!(t.is_idle());
    assert_eq!(t.committable(), 11);
    assert!(t.entries.is_empty());
}

// ---------------------------------------------------------------------------------------------
// reset

#[test]
fn reset_forgets_everything() {
    let mut t = OffsetTracker::new(0);
    t.open_range(0..10).unwrap();
    t.done(5).unwrap();
    t.reset(3);
    assert_eq!(t, OffsetTracker::new(3));
    assert_eq!(t.committable(), 3);
    assert_eq!(t.position(), 3);
    assert!(t.is_idle());
    // Offsets opened before the reset are unknown now.
    assert_eq!(t.done(5), Err(OffsetError::NeverOpened { offset: 5 }));
    assert_eq!(t.done(2), Ok(false));
    // Rewound: offsets may be opened again.
    t.open(3).unwrap();
    t.open(4).unwrap();
    assert_eq!(t.done(4), Ok(true));
    assert_eq!(t.committable(), 3);
    // Forward seek.
    t.reset(1_000);
    assert_eq!(t.committable(), 1_000);
    assert_eq!(
        t.open(999),
        Err(OffsetError::NotIncreasing {
            offset: 999,
            position: 1_000
        })
    );
}

#[test]
fn errors_display() {
    assert_eq!(
        OffsetError::NeverOpened { offset: 7 }.to_string(),
        "offset 7 was never opened"
    );
    assert!(OffsetError::NotIncreasing {
        offset: 3,
        position: 5
    }
    .to_string()
    .contains("offset 3 cannot be opened at position 5"));
}

// ---------------------------------------------------------------------------------------------
// Model and property tests

/// The obvious answer, slow and plain: which offsets are open, which are done, and the position.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    open: BTreeSet<i64>,
    done: BTreeSet<i64>,
    position: i64,
}

impl Model {
    fn new(start: i64) -> Self {
        Model {
            open: BTreeSet::new(),
            done: BTreeSet::new(),
            position: start,
        }
    }

    fn committable(&self) -> i64 {
        self.open.first().copied().unwrap_or(self.position)
    }

    fn open(&mut self, offset: i64) -> Result<(), OffsetError> {
        if offset < self.position || offset == i64::MAX {
            return Err(OffsetError::NotIncreasing {
                offset,
                position: self.position,
            });
        }
        self.open.insert(offset);
        self.position = offset + 1;
        Ok(())
    }

    fn skip_to(&mut self, next: i64) {
        self.position = self.position.max(next);
    }

    fn done(&mut self, offset: i64) -> Result<bool, OffsetError> {
        if self.open.remove(&offset) {
            self.done.insert(offset);
            Ok(true)
        } else if offset < self.committable() || self.done.contains(&offset) {
            Ok(false)
        } else {
            Err(OffsetError::NeverOpened { offset })
        }
    }

    fn done_up_to(&mut self, offset: i64) -> usize {
        let finished: Vec<i64> = self.open.range(..=offset).copied().collect();
        for o in &finished {
            self.open.remove(o);
            self.done.insert(*o);
        }
        finished.len()
    }

    fn reset(&mut self, offset: i64) {
        *self = Model::new(offset);
    }

    /// `open` of each offset from `first` in turn, stopping at the first error.
    fn open_run(&mut self, first: i64, count: usize) -> Result<usize, OffsetError> {
        for i in 0..count {
            // Past i64::MAX nothing opens: the first error comes at i64::MAX at the latest.
            let offset = first.saturating_add(i as i64);
            self.open(offset)?;
        }
        Ok(count)
    }

    fn done_range(&mut self, first: i64, last: i64) -> usize {
        if first > last {
            return 0;
        }
        let finished: Vec<i64> = self.open.range(first..=last).copied().collect();
        for o in &finished {
            self.open.remove(o);
            self.done.insert(*o);
        }
        finished.len()
    }
}

/// One step of a random scenario. Offsets are chosen relative to the current state, so that
/// most steps hit the interesting cases (an open offset, a gap, just past the position).
#[derive(Debug, Clone)]
enum Op {
    /// Open `position + gap`.
    Open { gap: u8 },
    /// Open `position - back`: below the position, so an error (unless saturated at `i64::MIN`).
    OpenBelow { back: u8 },
    /// Skip `position + ahead`.
    Skip { ahead: u8 },
    /// Complete the `pick`-th open offset (mod how many are open).
    DoneOpen { pick: usize },
    /// Complete `committable + delta`: an open, done, gap, late or never-opened offset.
    DoneNear { delta: i8 },
    /// Complete an arbitrary offset.
    DoneAny { offset: i64 },
    /// Batch completion of the given picks among the open offsets, plus one near offset.
    DoneAll {
        picks: Vec<usize>,
        extra: Option<i8>,
    },
    /// In-order completion up to `committable + delta`.
    DoneUpTo { delta: i16 },
    /// Seek to `position + delta`.
    Reset { delta: i16 },
    /// Open `count` consecutive offsets from `position + gap` (or below it, when `gap < 0`).
    OpenRun { gap: i8, count: u8 },
    /// Range completion of `committable + delta ..= committable + delta + len`.
    DoneRange { delta: i8, len: u8 },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4).prop_map(|gap| Op::Open { gap }),
        1 => (1u8..4).prop_map(|back| Op::OpenBelow { back }),
        1 => (0u8..5).prop_map(|ahead| Op::Skip { ahead }),
        5 => any::<usize>().prop_map(|pick| Op::DoneOpen { pick }),
        3 => (-6i8..12).prop_map(|delta| Op::DoneNear { delta }),
        1 => any::<i64>().prop_map(|offset| Op::DoneAny { offset }),
        2 => (
            proptest::collection::vec(any::<usize>(), 0..6),
            proptest::option::of(-3i8..8)
        )
            .prop_map(|(picks, extra)| Op::DoneAll { picks, extra }),
        1 => (-4i16..20).prop_map(|delta| Op::DoneUpTo { delta }),
        1 => (-20i16..20).prop_map(|delta| Op::Reset { delta }),
        3 => (-2i8..4, 0u8..12).prop_map(|(gap, count)| Op::OpenRun { gap, count }),
        2 => (-4i8..12, 0u8..12).prop_map(|(delta, len)| Op::DoneRange { delta, len }),
    ]
}

/// Starts around zero and at both ends of `i64`, where arithmetic would overflow.
fn arb_start() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -5i64..100,
        1 => (i64::MAX - 60)..=i64::MAX,
        1 => i64::MIN..(i64::MIN + 60),
    ]
}

fn near(base: i64, delta: i64) -> i64 {
    base.saturating_add(delta)
}

fn pick_open(model: &Model, pick: usize) -> Option<i64> {
    (!model.open.is_empty()).then(|| *model.open.iter().nth(pick % model.open.len()).unwrap())
}

/// Applies `op` to both, asserting the results agree, and that `Ok(false)` changed nothing.
fn step(t: &mut OffsetTracker, m: &mut Model, op: &Op) {
    let before = t.clone();
    match *op {
        Op::Open { gap } => {
            let o = near(m.position, i64::from(gap));
            assert_eq!(t.open(o), m.open(o), "open({o})");
        }
        Op::OpenBelow { back } => {
            let o = m.position.saturating_sub(i64::from(back));
            assert_eq!(t.open(o), m.open(o), "open({o}) below");
        }
        Op::Skip { ahead } => {
            let o = near(m.position, i64::from(ahead));
            t.skip_to(o);
            m.skip_to(o);
        }
        Op::DoneOpen { pick } => {
            if let Some(o) = pick_open(m, pick) {
                assert_eq!(t.done(o), Ok(true), "done({o}) of an open offset");
                assert_eq!(m.done(o), Ok(true));
            }
        }
        Op::DoneNear { delta } => {
            let o = near(m.committable(), i64::from(delta));
            done_checked(t, m, o);
        }
        Op::DoneAny { offset } => done_checked(t, m, offset),
        Op::DoneAll { ref picks, extra } => {
            let mut batch: Vec<i64> = picks.iter().filter_map(|&p| pick_open(m, p)).collect();
            if let Some(d) = extra {
                batch.push(near(m.committable(), i64::from(d)));
            }
            // The model's answer: apply one by one, stop at the first error.
            let mut expected = Ok(0);
            for &o in &batch {
                match m.done(o) {
                    Ok(newly) => expected = expected.map(|n| n + usize::from(newly)),
                    Err(e) => {
                        expected = Err(e);
                        break;
                    }
                }
            }
            assert_eq!(t.done_all(&batch), expected, "done_all({batch:?})");
        }
        Op::DoneUpTo { delta } => {
            let o = near(m.committable(), i64::from(delta));
            let expected = m.done_up_to(o);
            assert_eq!(t.done_up_to(o), expected, "done_up_to({o})");
            if expected == 0 {
                assert_eq!(
                    *t, before,
                    "done_up_to({o}) with nothing to do changed state"
                );
            }
        }
        Op::Reset { delta } => {
            let o = near(m.position, i64::from(delta));
            t.reset(o);
            m.reset(o);
        }
        Op::OpenRun { gap, count } => {
            let first = near(m.position, i64::from(gap));
            let count = usize::from(count);
            assert_eq!(
                t.open_run(first, count),
                m.open_run(first, count),
                "open_run({first}, {count})"
            );
        }
        Op::DoneRange { delta, len } => {
            let first = near(m.committable(), i64::from(delta));
            let last = near(first, i64::from(len));
            let expected = m.done_range(first, last);
            assert_eq!(
                t.done_range(first, last),
                expected,
                "done_range({first}, {last})"
            );
            if expected == 0 {
                assert_eq!(*t, before, "done_range with nothing to do changed state");
            }
        }
    }
    agree(t, m);
}

/// `done(o)` on both; `Ok(false)` and errors must leave the tracker exactly as it was.
fn done_checked(t: &mut OffsetTracker, m: &mut Model, o: i64) {
    let before = t.clone();
    let got = t.done(o);
    assert_eq!(got, m.done(o), "done({o})");
    if got != Ok(true) {
        assert_eq!(*t, before, "done({o}) -> {got:?} changed state");
    }
}

fn agree(t: &OffsetTracker, m: &Model) {
    check_invariants(t);
    assert_eq!(
        t.committable(),
        m.committable(),
        "committable; model {m:?}, tracker {t:?}"
    );
    assert_eq!(t.position(), m.position, "position");
    assert_eq!(t.open_count(), m.open.len(), "open_count");
    assert_eq!(t.is_idle(), m.open.is_empty(), "is_idle");
    if let Some(&lowest) = m.open.first() {
        assert!(
            t.committable() <= lowest,
            "committable past an unfinished offset"
        );
    } else {
        assert_eq!(
            t.committable(),
            t.position(),
            "idle but committable != position"
        );
    }
    // The window holds open offsets and done ones above the lowest open one, nothing else.
    let kept = m.open.len() + m.done.range(m.committable()..).count();
    assert_eq!(t.entries.len(), kept, "entries not pruned");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// (1) Random gaps, skips, completion orders, batches and resets: after every step the
    /// tracker gives exactly the model's answers, and never commits past unfinished work.
    #[test]
    fn matches_model_step_by_step(
        start in arb_start(),
        ops in proptest::collection::vec(arb_op(), 0..200),
    ) {
        let mut t = OffsetTracker::new(start);
        let mut m = Model::new(start);
        agree(&t, &m);
        for op in &ops {
            step(&mut t, &mut m, op);
        }
    }
}

/// Opened offsets with random gaps from `start`, staying below `i64::MAX`.
fn gapped(start: i64, gaps: &[u8]) -> Vec<i64> {
    let mut next = start;
    let mut out = Vec::with_capacity(gaps.len());
    for &g in gaps {
        let o = next.saturating_add(i64::from(g));
        if o == i64::MAX {
            break;
        }
        out.push(o);
        next = o + 1;
    }
    out
}

fn arb_gapped() -> impl Strategy<Value = (i64, Vec<i64>)> {
    (arb_start(), proptest::collection::vec(0u8..5, 0..120))
        .prop_map(|(start, gaps)| (start, gapped(start, &gaps)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (2) Completing everything, in any order, leaves the tracker idle with
    /// committable == position == one past the last opened offset, and the window empty.
    #[test]
    fn all_done_commits_the_position(
        (start, opened, order) in arb_gapped().prop_flat_map(|(start, opened)| {
            let order = Just(opened.clone()).prop_shuffle();
            (Just(start), Just(opened), order)
        }),
        skip in 0u8..3,
    ) {
        let mut t = OffsetTracker::new(start);
        let mut m = Model::new(start);
        prop_assert_eq!(t.open_range(opened.iter().copied()), Ok(opened.len()));
        for &o in &opened {
            m.open(o).unwrap();
        }
        let end = near(t.position(), i64::from(skip));
        t.skip_to(end);
        m.skip_to(end);
        for &o in &order {
            prop_assert_eq!(t.done(o), Ok(true));
            m.done(o).unwrap();
            agree(&t, &m);
        }
        prop_assert!(t.is_idle());
        prop_assert_eq!(t.committable(), t.position());
        let expected = opened.last().map_or(start, |&l| l + 1).max(end);
        prop_assert_eq!(t.position(), expected);
        prop_assert!(t.entries.is_empty());
    }

    /// (3) done_up_to, mixed with out-of-order done(), marks exactly the open offsets at or
    /// below its argument, as the model does.
    #[test]
    fn done_up_to_matches_model(
        (start, opened) in arb_gapped(),
        steps in proptest::collection::vec((any::<bool>(), any::<usize>(), -2i16..8), 0..60),
    ) {
        let mut t = OffsetTracker::new(start);
        let mut m = Model::new(start);
        t.open_range(opened.iter().copied()).unwrap();
        for &o in &opened {
            m.open(o).unwrap();
        }
        for &(up_to, pick, delta) in &steps {
            if up_to {
                let o = near(m.committable(), i64::from(delta));
                prop_assert_eq!(t.done_up_to(o), m.done_up_to(o));
                prop_assert!(m.open.range(..=o).next().is_none());
            } else if let Some(o) = pick_open(&m, pick) {
                prop_assert_eq!(t.done(o), Ok(true));
                m.done(o).unwrap();
            }
            agree(&t, &m);
        }
    }

    /// (4) Acknowledging again — everything done so far, in any order, plus offsets below the
    /// committable — returns Ok(false) every time and leaves the tracker exactly as it was.
    #[test]
    fn duplicate_and_late_acks_change_nothing(
        (start, opened) in arb_gapped(),
        finished in proptest::collection::vec(any::<bool>(), 120),
        below in proptest::collection::vec(1u16..500, 0..10),
    ) {
        let mut t = OffsetTracker::new(start);
        t.open_range(opened.iter().copied()).unwrap();
        let mut acked = Vec::new();
        for (&o, &f) in opened.iter().zip(&finished) {
            if f {
                prop_assert_eq!(t.done(o), Ok(true));
                acked.push(o);
            }
        }
        let snapshot = t.clone();
        acked.reverse();
        for &o in &acked {
            prop_assert_eq!(t.done(o), Ok(false), "duplicate ack of {}", o);
        }
        prop_assert_eq!(t.done_all(&acked), Ok(0));
        for &b in &below {
            let o = t.committable().saturating_sub(i64::from(b));
            if o < t.committable() {
                prop_assert_eq!(t.done(o), Ok(false), "late ack of {}", o);
            }
        }
        prop_assert_eq!(&t, &snapshot);
    }

    /// (5) After reset the tracker behaves exactly like a new one at that offset, whatever it
    /// held before.
    #[test]
    fn reset_then_reuse_is_like_new(
        start in arb_start(),
        before in proptest::collection::vec(arb_op(), 0..80),
        delta in -50i16..50,
        after in proptest::collection::vec(arb_op(), 0..80),
    ) {
        let mut t = OffsetTracker::new(start);
        let mut m = Model::new(start);
        for op in &before {
            step(&mut t, &mut m, op);
        }
        let at = near(t.position(), i64::from(delta));
        t.reset(at);
        prop_assert_eq!(&t, &OffsetTracker::new(at));

        let mut fresh = OffsetTracker::new(at);
        let mut m = Model::new(at);
        let mut m2 = Model::new(at);
        for op in &after {
            step(&mut t, &mut m, op);
            step(&mut fresh, &mut m2, op);
            prop_assert_eq!(&t, &fresh);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (6) open_run(first, count) leaves the tracker exactly as open() of each offset in turn
    /// (open_range over first..), with the same answer, from any state, also where the run
    /// reaches i64::MAX.
    #[test]
    fn open_run_equals_opening_one_by_one(
        start in arb_start(),
        before in proptest::collection::vec(arb_op(), 0..40),
        gap in -3i64..5,
        count in 0usize..300,
    ) {
        let mut t = OffsetTracker::new(start);
        let mut m = Model::new(start);
        for op in &before {
            step(&mut t, &mut m, op);
        }
        let first = near(t.position(), gap);
        let mut one_by_one = t.clone();
        let mut expected = Ok(0);
        for i in 0..count {
            match one_by_one.open(first.saturating_add(i as i64)) {
                Ok(()) => expected = expected.map(|n| n + 1),
                Err(e) => {
                    expected = Err(e);
                    break;
                }
            }
        }
        prop_assert_eq!(t.open_run(first, count), expected);
        prop_assert_eq!(&t, &one_by_one);
        check_invariants(&t);
    }

    /// (7) done_range(first, last) leaves the tracker exactly as done() of each opened offset
    /// in the range, in order, and counts the same: over gaps, done and open offsets, from any
    /// state.
    #[test]
    fn done_range_equals_done_one_by_one(
        (start, opened) in arb_gapped(),
        finished in proptest::collection::vec(any::<bool>(), 120),
        lo in -3i64..130,
        len in -2i64..130,
    ) {
        let mut t = OffsetTracker::new(start);
        t.open_range(opened.iter().copied()).unwrap();
        for (&o, &f) in opened.iter().zip(&finished) {
            if f {
                t.done(o).unwrap();
            }
        }
        let first = near(start, lo);
        let last = near(first, len);
        let mut one_by_one = t.clone();
        let mut newly = 0;
        for &o in opened.iter().filter(|&&o| first <= o && o <= last) {
            newly += usize::from(one_by_one.done(o).unwrap());
        }
        prop_assert_eq!(t.done_range(first, last), newly);
        prop_assert_eq!(&t, &one_by_one);
        check_invariants(&t);
    }
}
