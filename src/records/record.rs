//! One decoded record: a view into the fetch buffer (or a batch's decompressed buffer).

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

use super::varint::Reader;

/// What a record's timestamp means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
    /// Magic-0 messages carry no timestamp; `timestamp` is -1.
    NoTimestamp,
}

/// Where a field lies in its record's buffer. `len == NULL` is a null field. Batches are at most
/// 2 GiB (their length is an i32), so u32 positions suffice.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    const NULL_LEN: u32 = u32::MAX;
    pub(crate) const NULL: Span = Span {
        start: 0,
        len: Span::NULL_LEN,
    };
    pub(crate) const EMPTY: Span = Span { start: 0, len: 0 };

    /// The caller guarantees `range` lies within a buffer of at most 2 GiB.
    #[inline]
    pub(crate) fn of(range: Range<usize>) -> Span {
        Span {
            start: range.start as u32,
            len: (range.end - range.start) as u32,
        }
    }

    #[inline]
    pub(crate) fn of_option(range: Option<Range<usize>>) -> Span {
        range.map_or(Span::NULL, Span::of)
    }

    #[inline]
    fn len_or_zero(self) -> usize {
        if self.len == Span::NULL_LEN {
            0
        } else {
            self.len as usize
        }
    }

    #[inline]
    fn range(self) -> Option<Range<usize>> {
        (self.len != Span::NULL_LEN)
            .then(|| self.start as usize..self.start as usize + self.len as usize)
    }
}

/// One Kafka record.
///
/// It holds one reference to the buffer it was decoded from (the fetch response, or its batch's
/// decompressed data) and the positions of its fields in it: reading a key or value is a slice,
/// and taking them as [`Bytes`] is a reference count, never a copy. One handle instead of one per
/// field keeps decoding at one atomic increment per record and the struct at 80 bytes.
#[derive(Clone)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    // Built by the decoders in this module tree: the spans lie within `buf`, and `headers` holds
    // exactly `header_count` headers that passed `validate_headers`.
    pub(crate) header_count: u32,
    pub(crate) buf: Bytes,
    pub(crate) key: Span,
    pub(crate) value: Span,
    pub(crate) headers: Span,
}

impl Record {
    /// The key, `None` when null.
    #[inline]
    pub fn key(&self) -> Option<&[u8]> {
        self.key.range().and_then(|r| self.buf.get(r))
    }

    /// The value, `None` when null (a tombstone on a compacted topic).
    #[inline]
    pub fn value(&self) -> Option<&[u8]> {
        self.value.range().and_then(|r| self.buf.get(r))
    }

    /// The length of the key plus the value, a null one counting 0: what buffer limits count.
    /// Cheaper than adding up `key()` and `value()`, which also make the slices.
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.key.len_or_zero() + self.value.len_or_zero()
    }

    /// The key as a shared [`Bytes`] (no copy).
    pub fn key_bytes(&self) -> Option<Bytes> {
        self.shared(self.key)
    }

    /// The value as a shared [`Bytes`] (no copy).
    pub fn value_bytes(&self) -> Option<Bytes> {
        self.shared(self.value)
    }

    fn shared(&self, span: Span) -> Option<Bytes> {
        let range = span.range()?;
        (range.end <= self.buf.len()).then(|| self.buf.slice(range))
    }

    /// The headers, read on demand: most consumers never look at them, so decoding them into a
    /// list per record would be an allocation per record for nothing.
    pub fn headers(&self) -> Headers<'_> {
        let raw = self
            .headers
            .range()
            .and_then(|r| self.buf.get(r))
            .unwrap_or(&[]);
        Headers {
            raw,
            count: self.header_count,
        }
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.offset == other.offset
            && self.timestamp == other.timestamp
            && self.timestamp_type == other.timestamp_type
            && self.key() == other.key()
            && self.value() == other.value()
            && self.headers() == other.headers()
    }
}
impl Eq for Record {}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("timestamp_type", &self.timestamp_type)
            .field("key", &self.key().map(Bytes::copy_from_slice))
            .field("value", &self.value().map(Bytes::copy_from_slice))
            .field("headers", &self.headers())
            .finish()
    }
}

/// Walks `count` headers in `buf[pos..end]`; Ok if they fill it exactly.
pub(crate) fn validate_headers(
    buf: &[u8],
    pos: usize,
    end: usize,
    count: i32,
) -> Result<u32, &'static str> {
    let count = u32::try_from(count).map_err(|_| "negative header count")?;
    let mut reader = Reader::new(buf.get(..end).ok_or("headers past the buffer")?, pos);
    for _ in 0..count {
        if reader
            .nullable_bytes("header key runs past its record")?
            .is_none()
        {
            return Err("null header key");
        }
        reader.nullable_bytes("header value runs past its record")?;
    }
    if reader.pos != end {
        return Err("record length does not match its fields");
    }
    Ok(count)
}

/// A record's headers, validated when the record was decoded, so reading them cannot fail.
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    raw: &'a [u8],
    count: u32,
}

/// One record header. Kafka defines the key as a string; it is kept as bytes and
/// [`Header::key_str`] reads it as UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl<'a> Header<'a> {
    /// The key as UTF-8 (`None` if a producer wrote invalid UTF-8).
    pub fn key_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.key).ok()
    }
}

impl<'a> Headers<'a> {
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> HeadersIter<'a> {
        HeadersIter {
            raw: self.raw,
            pos: 0,
            left: self.count,
        }
    }

    /// The value of the last header named `key` (Kafka allows repeats; the last one wins, as in
    /// the Java client's `lastHeader`). `Some(None)` is a header with a null value.
    pub fn last(&self, key: &str) -> Option<Option<&'a [u8]>> {
        self.iter()
            .filter(|h| h.key == key.as_bytes())
            .last()
            .map(|h| h.value)
    }
}

impl<'a> IntoIterator for Headers<'a> {
    type Item = Header<'a>;
    type IntoIter = HeadersIter<'a>;
    fn into_iter(self) -> HeadersIter<'a> {
        self.iter()
    }
}

impl PartialEq for Headers<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.iter().eq(other.iter())
    }
}
impl Eq for Headers<'_> {}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Reads validated headers one by one.
pub struct HeadersIter<'a> {
    raw: &'a [u8],
    pos: usize,
    left: u32,
}

impl<'a> Iterator for HeadersIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut reader = Reader::new(self.raw, self.pos);
        // Validated at decode time, so these reads succeed; stopping (rather than panicking) is
        // the fallback if that invariant were ever broken.
        let key = reader.nullable_bytes("").ok()??;
        let value = reader.nullable_bytes("").ok()?;
        self.pos = reader.pos;
        Some(Header {
            key: self.raw.get(key)?,
            value: match value {
                Some(range) => Some(self.raw.get(range)?),
                None => None,
            },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}
