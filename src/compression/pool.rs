//! Recycled buffers for decompressed batches.
//!
//! A decompressed batch lives until its last record is dropped, usually on another thread (the
//! handler's) than the one that decoded it (the Fetcher's). Allocating a fresh buffer for every
//! batch made glibc map, trim and fault in its memory again and again: on the replay bench with
//! 1 KiB lz4 records that was most of the client's system CPU. Here the buffer goes back to a
//! small pool when its last record is dropped, and the next batch decodes into memory that is
//! already mapped. Written by hand because it is a few lines over `Bytes::from_owner`; a general
//! pool crate would add a dependency for no gain.

use std::sync::Mutex;

use bytes::Bytes;

/// Buffers of larger capacity are freed, not kept: rare, and too costly to hold idle.
const MAX_KEPT_CAPACITY: usize = 4 << 20;
/// The most idle memory the shared pool holds, summed over its buffers' capacities.
const MAX_KEPT_BYTES: usize = 16 << 20;

/// The pool every decoder in the process shares.
pub(crate) static SHARED: Pool = Pool::new(MAX_KEPT_BYTES, MAX_KEPT_CAPACITY);

/// Idle buffers, most recently returned last (reused first, while still in cache).
pub(crate) struct Pool {
    idle: Mutex<Idle>,
    max_bytes: usize,
    max_capacity: usize,
}

struct Idle {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl Pool {
    pub(crate) const fn new(max_bytes: usize, max_capacity: usize) -> Pool {
        Pool {
            idle: Mutex::new(Idle {
                buffers: Vec::new(),
                bytes: 0,
            }),
            max_bytes,
            max_capacity,
        }
    }

    /// A buffer returned earlier if there is one (its old bytes still in it: scratch to be
    /// overwritten, so decoders need not zero it), else an empty one.
    pub(crate) fn take(&self) -> Vec<u8> {
        let Ok(mut idle) = self.idle.lock() else {
            return Vec::new();
        };
        match idle.buffers.pop() {
            Some(buffer) => {
                idle.bytes -= buffer.capacity();
                buffer
            }
            None => Vec::new(),
        }
    }

    /// Keeps `buffer` for a later [`Pool::take`], unless it is too large or the pool is full.
    pub(crate) fn give_back(&self, buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity == 0 || capacity > self.max_capacity {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        if idle.bytes + capacity <= self.max_bytes {
            idle.bytes += capacity;
            idle.buffers.push(buffer);
        }
    }

    /// `buffer[..len]` as `Bytes` that give the buffer back to this pool when the last slice of
    /// it is dropped.
    pub(crate) fn share(&'static self, buffer: Vec<u8>, len: usize) -> Bytes {
        // A decoder reports at most what it wrote; never past the end all the same.
        let len = len.min(buffer.len());
        Bytes::from_owner(Returned {
            buffer,
            len,
            pool: self,
        })
    }

    #[cfg(test)]
    pub(crate) fn idle(&self) -> (usize, usize) {
        let idle = self.idle.lock().expect("pool lock");
        (idle.buffers.len(), idle.bytes)
    }
}

/// The owner behind a shared buffer's `Bytes`.
struct Returned {
    buffer: Vec<u8>,
    len: usize,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        static POOL: Pool = Pool::new(1 << 20, 1 << 16);
        let mut buffer = POOL.take();
        buffer.extend_from_slice(&[1, 2, 3, 4]);
        let address = buffer.as_ptr();
        let shared = POOL.share(buffer, 4);
        let slice = shared.slice(1..3);
        drop(shared);
        assert_eq!(&slice[..], &[2, 3]);
        assert_eq!(POOL.idle().0, 0, "given back while a slice was alive");
        drop(slice);
        assert_eq!(POOL.idle().0, 1);
        let again = POOL.take();
        assert_eq!(again.as_ptr(), address, "not the same memory");
        assert_eq!(POOL.idle(), (0, 0));
    }

    #[test]
    fn large_buffers_and_buffers_beyond_the_budget_are_freed() {
        static POOL: Pool = Pool::new(3000, 2000);
        POOL.give_back(Vec::with_capacity(2001));
        assert_eq!(POOL.idle(), (0, 0));
        POOL.give_back(Vec::with_capacity(2000));
        POOL.give_back(Vec::with_capacity(1000));
        POOL.give_back(Vec::with_capacity(1000)); // would make 4000
        POOL.give_back(Vec::new());
        assert_eq!(POOL.idle(), (2, 3000));
        assert!(POOL.take().capacity() >= 1000);
        assert_eq!(POOL.idle().0, 1);
    }
}
