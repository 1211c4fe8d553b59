//! Kafka's framing: every request and response is a big-endian `i32` length, then that many bytes.

use bytes::{Buf, Bytes, BytesMut};

/// A framing failure. The stream cannot be resynchronised after one, so the connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {size} is larger than the limit of {max} bytes")]
    TooLarge { size: i64, max: usize },
    #[error("negative frame length {size}")]
    Negative { size: i64 },
    #[error("stream ended inside a frame ({have} of {want} bytes received)")]
    Truncated { have: usize, want: usize },
}

/// Splits a byte stream into frames. A length prefix is checked against `max_frame` before any
/// room is reserved for it, so a hostile 2 GiB prefix costs nothing; a frame announced larger
/// than `WHOLE_FRAME_LIMIT` (16 MiB) grows only with the bytes actually received, so a lying
/// prefix can make it reserve at most that much.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame: usize,
}

/// Bytes reserved ahead of a partly received frame: enough for large fetch responses to arrive
/// in few reads, small enough that a lying length prefix cannot make us allocate much.
const READ_AHEAD: usize = 64 * 1024;

/// Frames up to this size (every fetch answer at the default `fetch_max_bytes` of a few
/// partitions) are given their whole room as soon as their length is known.
const WHOLE_FRAME_LIMIT: usize = 16 << 20;

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { max_frame }
    }

    /// Takes the next whole frame (without its length prefix) off the front of `buf`, if one has
    /// fully arrived.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let size = i64::from((&buf[..4]).get_i32());
        if size < 0 {
            return Err(FrameError::Negative { size });
        }
        if size as u64 > self.max_frame as u64 {
            return Err(FrameError::TooLarge {
                size,
                max: self.max_frame,
            });
        }
        let want = 4 + size as usize;
        if buf.len() < want {
            let missing = want - buf.len();
            // A frame of up to WHOLE_FRAME_LIMIT gets its room at once: growing it by read-ahead
            // steps copied a 6 MiB fetch answer about once more and left the allocator
            // mapping, trimming and faulting in memory for every answer (measured: about half of
            // the client's system CPU with 1 KiB lz4 records). Larger frames still grow only
            // as their bytes arrive.
            buf.reserve(if missing <= WHOLE_FRAME_LIMIT {
                missing
            } else {
                missing.min(READ_AHEAD)
            });
            return Ok(None);
        }
        let mut frame = buf.split_to(want);
        frame.advance(4);
        Ok(Some(frame.freeze()))
    }

    /// Called when the stream has ended: leftover bytes mean the peer stopped mid-frame.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            None => {
                let want = if buf.len() >= 4 {
                    4 + (&buf[..4]).get_i32() as usize
                } else {
                    4
                };
                Err(FrameError::Truncated {
                    have: buf.len(),
                    want,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_arriving_in_pieces() {
        let mut d = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 3, b'a']);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"bc");
        buf.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(Bytes::from_static(b"abc"))
        );
        assert_eq!(d.decode(&mut buf).unwrap(), Some(Bytes::new()));
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"z");
        assert_eq!(d.decode(&mut buf).unwrap(), Some(Bytes::from_static(b"z")));
        assert!(buf.is_empty());
    }

    #[test]
    fn huge_prefix_is_refused_without_allocating() {
        let mut d = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        let cap_before = buf.capacity();
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::TooLarge {
                size: i32::MAX as i64,
                max: 1 << 20
            })
        );
        assert_eq!(buf.capacity(), cap_before);
        let mut neg = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert_eq!(d.decode(&mut neg), Err(FrameError::Negative { size: -2 }));
    }

    #[test]
    fn partial_frame_reserves_bounded_room() {
        let mut d = FrameDecoder::new(512 << 20);
        let mut buf = BytesMut::from(&[0x10, 0, 0, 0, 1, 2][..]); // 256 MiB announced
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() <= 6 + READ_AHEAD + 64);
    }

    #[test]
    fn a_frame_within_the_whole_frame_limit_gets_its_room_once() {
        let size = 6 << 20; // a fetch answer of six full partitions
        let mut d = FrameDecoder::new(512 << 20);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(size as i32).to_be_bytes());
        buf.extend_from_slice(&[7; 1000]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() >= 4 + size);
        let room = buf.as_ptr();
        let chunk = [7u8; 64 * 1024];
        while buf.len() < 4 + size {
            assert_eq!(d.decode(&mut buf).unwrap(), None);
            let n = chunk.len().min(4 + size - buf.len());
            buf.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(room, buf.as_ptr(), "the frame was moved while it arrived");
        assert_eq!(d.decode(&mut buf).unwrap().map(|f| f.len()), Some(size));
    }

    #[test]
    fn eof_inside_a_frame_is_an_error() {
        let mut d = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&[0, 0, 0, 9, 1, 2][..]);
        assert_eq!(
            d.decode_eof(&mut buf),
            Err(FrameError::Truncated { have: 6, want: 13 })
        );
        let mut empty = BytesMut::new();
        assert_eq!(d.decode_eof(&mut empty), Ok(None));
        let mut two = BytesMut::from(&[0, 0][..]);
        assert_eq!(
            d.decode_eof(&mut two),
            Err(FrameError::Truncated { have: 2, want: 4 })
        );
    }
}
