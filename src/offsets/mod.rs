//! Which offset of a partition may be committed, when records are handled out of order.
//!
//! Records of one partition reach the handler in increasing offset order, but handlers finish
//! them in any order (a batch handler replies at once, an `Ack` kept for later may arrive long
//! after younger records are done). Kafka stores one number per partition: the *next* offset to
//! read. Committing past a record that is still being handled would lose it after a crash or a
//! rebalance, so the committable offset is the lowest offset that was handed out and is not done
//! yet — or, when nothing is in flight, one past the last offset handed out or skipped.
//!
//! [`OffsetTracker`] does that arithmetic for one partition. It is on the hot path (one
//! [`open`](OffsetTracker::open) per record or [`open_run`](OffsetTracker::open_run) per gapless
//! batch, one [`done`](OffsetTracker::done) per record or [`done_range`](OffsetTracker::done_range)
//! per batch), so it keeps only the in-flight window: a sorted deque of `(offset, done)` entries that
//! starts at the lowest offset not done, and drops the done prefix as soon as it forms. Memory is
//! therefore bounded by the window the partition tracker lets out, not by the partition's size.
//!
//! Offsets are plain `i64` arithmetic here: negative values (Kafka's sentinels) are accepted and
//! treated like any other number; nothing panics on any input.

use std::collections::VecDeque;

#[cfg(test)]
mod tests;

/// The most entries [`OffsetTracker::open_range`] reserves up front from a size hint.
const MAX_RESERVE: usize = 1 << 16;

/// A misuse of [`OffsetTracker`]: the caller and the tracker disagree about what was delivered.
///
/// Both mean a bug upstream (a fetcher that went backwards, an `Ack` for a record of another
/// partition or an older assignment), so they are reported rather than silently absorbed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetError {
    /// open() with an offset below the position (offsets must increase).
    ///
    /// Also returned for `i64::MAX` itself: the offset after it cannot be represented, so it can
    /// never be opened (Kafka offsets never get there).
    #[error("offset {offset} cannot be opened at position {position}: offsets must increase (and stay below i64::MAX)")]
    NotIncreasing { offset: i64, position: i64 },
    /// done() for an offset that was never opened and is not below the committable offset.
    #[error("offset {offset} was never opened")]
    NeverOpened { offset: i64 },
}

/// Tracks the records of one partition from delivery to completion and answers which offset may
/// be committed.
///
/// Invariants (relied on by every method, checked by the tests):
/// - `entries` is sorted by offset, strictly increasing, and every offset in it is `< position`;
/// - the front entry, if any, is not done — so the committable offset is simply the front's
///   offset, or `position` when the deque is empty;
/// - `open` is the number of entries not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetTracker {
    /// Opened offsets from the lowest not-done one on, with whether each is done.
    entries: VecDeque<(i64, bool)>,
    /// One past the last opened or skipped offset: the next offset the fetcher will deliver.
    position: i64,
    /// Entries not done yet.
    open: usize,
}

impl OffsetTracker {
    /// A tracker for a partition whose next offset to deliver (and to commit) is `start`.
    pub fn new(start: i64) -> Self {
        Self::with_capacity(start, 0)
    }

    /// Like [`new`](Self::new), with room for `capacity` in-flight records, so the hot path does
    /// not reallocate while the window first fills up.
    pub fn with_capacity(start: i64, capacity: usize) -> Self {
        Self {
            entries: VecDeque::with_capacity(capacity),
            position: start,
            open: 0,
        }
    }

    /// Records that `offset` was delivered to the handler. Offsets must increase; gaps are
    /// allowed (compaction removes records, control batches occupy offsets but are not
    /// delivered), and the offsets in a gap are treated as skipped.
    ///
    /// Fails with [`OffsetError::NotIncreasing`] if `offset < position()`, or if `offset` is
    /// `i64::MAX` (its successor does not fit); the tracker is unchanged then.
    pub fn open(&mut self, offset: i64) -> Result<(), OffsetError> {
        match offset.checked_add(1) {
            Some(next) if offset >= self.position => {
                self.entries.push_back((offset, false));
                self.position = next;
                self.open += 1;
                Ok(())
            }
            _ => Err(OffsetError::NotIncreasing {
                offset,
                position: self.position,
            }),
        }
    }

    /// Opens each offset in turn; see [`open`](Self::open). Returns how many were opened.
    ///
    /// Stops at the first error and returns it; the offsets before it stay opened, so the caller
    /// must treat the partition as broken (or [`reset`](Self::reset) it) rather than retry.
    pub fn open_range(
        &mut self,
        offsets: impl IntoIterator<Item = i64>,
    ) -> Result<usize, OffsetError> {
        let offsets = offsets.into_iter();
        // Reserve once for a batch, but never trust a size hint with memory: `0..i64::MAX`
        // hints 2^63 and would abort on allocation instead of failing at the end of the range.
        self.entries.reserve(offsets.size_hint().0.min(MAX_RESERVE));
        let mut n = 0;
        for offset in offsets {
            self.open(offset)?;
            n += 1;
        }
        Ok(n)
    }

    /// Opens the `count` consecutive offsets `first, first + 1, ..`, as `open_range(first..)`
    /// would, in one call: a fetched run without gaps is the usual case, and this costs a push per
    /// offset instead of a checked call per offset. Returns how many were opened.
    ///
    /// Errors exactly as the per-offset calls would: [`OffsetError::NotIncreasing`] if
    /// `first < position()` (nothing opened), or at `i64::MAX` once the offsets below it are
    /// opened.
    pub fn open_run(&mut self, first: i64, count: usize) -> Result<usize, OffsetError> {
        if count == 0 {
            return Ok(0);
        }
        if first < self.position {
            return Err(OffsetError::NotIncreasing {
                offset: first,
                position: self.position,
            });
        }
        // Offsets below i64::MAX can be opened; that is `i64::MAX - first` of them from `first`.
        let room = usize::try_from(i64::MAX.abs_diff(first)).unwrap_or(usize::MAX);
        let n = count.min(room);
        if n > 0 {
            self.entries.reserve(n.min(MAX_RESERVE));
            // first + n <= i64::MAX: the sum is in range, though `n` alone may not fit an i64
            // (from a negative `first`), hence wrapping arithmetic, which is exact here.
            let end = first.wrapping_add(n as i64);
            self.entries
                .extend((first..end).map(|offset| (offset, false)));
            self.position = end;
            self.open += n;
        }
        if n < count {
            return Err(OffsetError::NotIncreasing {
                offset: i64::MAX,
                position: self.position,
            });
        }
        Ok(n)
    }

    /// Declares that no offset below `next` that was not opened will ever be (control batches,
    /// aborted transactions, a fetch that ended past compacted records), so that an idle
    /// partition can commit past them. Never moves the position back; does not touch offsets
    /// that are open.
    pub fn skip_to(&mut self, next: i64) {
        self.position = self.position.max(next);
    }

    /// Marks `offset` as done.
    ///
    /// - `Ok(true)`: it was open and is now done (the committable offset may have advanced);
    /// - `Ok(false)`: it was already done, or it is below the committable offset — a duplicate
    ///   or late acknowledgement, harmless, and nothing changes;
    /// - `Err(NeverOpened)`: it is at or above the committable offset and was never opened (at or
    ///   past the position, or in a gap) — an acknowledgement for a record this tracker never
    ///   handed out.
    pub fn done(&mut self, offset: i64) -> Result<bool, OffsetError> {
        let Some(&(front, _)) = self.entries.front() else {
            // Nothing open: committable == position.
            return if offset < self.position {
                Ok(false)
            } else {
                Err(OffsetError::NeverOpened { offset })
            };
        };
        if offset < front {
            return Ok(false);
        }
        if offset >= self.position {
            return Err(OffsetError::NeverOpened { offset });
        }
        let index = match self.find(front, offset) {
            Some(index) => index,
            None => return Err(OffsetError::NeverOpened { offset }),
        };
        let entry = &mut self.entries[index].1;
        if *entry {
            return Ok(false);
        }
        *entry = true;
        self.open -= 1;
        if index == 0 {
            self.pop_done_prefix();
        }
        Ok(true)
    }

    /// Marks each offset done in turn; see [`done`](Self::done). Returns how many became newly
    /// done (duplicates and late acks are not counted).
    ///
    /// Stops at the first error and returns it; the offsets before it stay done.
    pub fn done_all(&mut self, offsets: &[i64]) -> Result<usize, OffsetError> {
        let mut n = 0;
        for &offset in offsets {
            n += usize::from(self.done(offset)?);
        }
        Ok(n)
    }

    /// In-order completion (the handler says "everything up to here"): every open offset
    /// `<= offset` becomes done. Returns how many became done. Offsets never opened are simply
    /// not affected, so any `offset` is accepted.
    pub fn done_up_to(&mut self, offset: i64) -> usize {
        self.done_range(i64::MIN, offset)
    }

    /// Every open offset in `first..=last` becomes done, as [`done`](Self::done) on each of them
    /// would do: a batch answered as a whole is one call, not one per record. Returns how many
    /// became done. Offsets in the range that were never opened (gaps) or are done already are
    /// not affected, so any range is accepted; an empty one (`first > last`) changes nothing.
    pub fn done_range(&mut self, first: i64, last: i64) -> usize {
        if first == last {
            // One record (a message handler's delivery): done() finds it without a search.
            return usize::from(self.done(first) == Ok(true));
        }
        let start = self.entries.partition_point(|&(o, _)| o < first);
        let end = self.entries.partition_point(|&(o, _)| o <= last);
        if start >= end {
            return 0;
        }
        // With no entry done yet (in-order completion, the usual case) every one in the range is
        // open, and nothing needs counting.
        let none_done = self.open == self.entries.len();
        let newly = if start == 0 {
            // From the front: it all becomes a done prefix, so it is dropped whole.
            let drained = self.entries.drain(..end);
            if none_done {
                end
            } else {
                drained.filter(|&(_, done)| !done).count()
            }
        } else {
            let mut newly = 0;
            for (_, done) in self.entries.range_mut(start..end) {
                newly += usize::from(!*done);
                *done = true;
            }
            newly
        };
        self.open -= newly;
        self.pop_done_prefix();
        newly
    }

    /// The offset that may be committed: the lowest offset opened and not done, or the position
    /// when nothing is open. Kafka commits the next offset to read, and this is that offset.
    #[inline]
    pub fn committable(&self) -> i64 {
        match self.entries.front() {
            Some(&(offset, _)) => offset,
            None => self.position,
        }
    }

    /// One past the last offset opened or skipped: the next offset expected from the fetcher.
    #[inline]
    pub fn position(&self) -> i64 {
        self.position
    }

    /// How many offsets are opened and not done yet: the in-flight count, for backpressure.
    #[inline]
    pub fn open_count(&self) -> usize {
        self.open
    }

    /// Whether nothing is in flight: a revoked partition may be released, and
    /// [`committable`](Self::committable) equals [`position`](Self::position).
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.open == 0
    }

    /// Starts over at `offset` (a seek, a rewind after an out-of-range error, a new assignment):
    /// forgets every open and done offset. Keeps the allocation for reuse.
    pub fn reset(&mut self, offset: i64) {
        self.entries.clear();
        self.position = offset;
        self.open = 0;
    }

    /// The index of `offset` in `entries`, whose front is `front <= offset`.
    ///
    /// Without gaps the entries are consecutive, so the index is `offset - front`: that is tried
    /// first, and binary search is the fallback when compaction or skips left holes.
    #[inline]
    fn find(&self, front: i64, offset: i64) -> Option<usize> {
        let guess = offset
            .checked_sub(front)
            .and_then(|d| usize::try_from(d).ok());
        if let Some(i) = guess {
            if let Some(&(o, _)) = self.entries.get(i) {
                if o == offset {
                    return Some(i);
                }
            }
        }
        self.entries.binary_search_by_key(&offset, |&(o, _)| o).ok()
    }

    /// Restores the invariant that the front entry is not done.
    #[inline]
    fn pop_done_prefix(&mut self) {
        while let Some(&(_, true)) = self.entries.front() {
            self.entries.pop_front();
        }
    }
}
