//! One decoded record: a view into the fetch buffer (or a batch's decompressed buffer).

use std::fmt;

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

/// One Kafka record. Keys, values and headers share the buffer they were decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Headers,
}

/// A record's headers, kept encoded and read on demand: most consumers never look at them, so
/// decoding them into a list per record would be an allocation per record for nothing. They were
/// validated when the record was decoded, so reading them cannot fail.
#[derive(Clone, Default)]
pub struct Headers {
    raw: Bytes,
    count: u32,
}

/// One record header. Kafka defines the key as a string; it is kept as bytes (zero-copy) and
/// [`Header::key_str`] reads it as UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl Header {
    /// The key as UTF-8 (`None` if a producer wrote invalid UTF-8).
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.key).ok()
    }
}

impl Headers {
    /// `raw` must hold exactly `count` well-formed headers (checked by [`Headers::validate`]).
    pub(crate) fn from_validated(raw: Bytes, count: u32) -> Self {
        Headers { raw, count }
    }

    /// Walks `count` headers in `buf[pos..end]`; Ok if they fill it exactly.
    pub(crate) fn validate(
        buf: &[u8],
        pos: usize,
        end: usize,
        count: i32,
    ) -> Result<(), &'static str> {
        let count = u32::try_from(count).map_err(|_| "negative header count")?;
        let mut reader = Reader::new(&buf[..end], pos);
        for _ in 0..count {
            match reader.nullable_bytes("header key runs past its record")? {
                Some(_) => {}
                None => return Err("null header key"),
            }
            reader.nullable_bytes("header value runs past its record")?;
        }
        if reader.pos != end {
            return Err("record length does not match its fields");
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> HeadersIter<'_> {
        HeadersIter {
            headers: self,
            pos: 0,
            left: self.count,
        }
    }

    /// The value of the last header named `key` (Kafka allows repeats; the last one wins, as in
    /// the Java client's `lastHeader`). `Some(None)` is a header with a null value.
    pub fn last(&self, key: &str) -> Option<Option<Bytes>> {
        self.iter()
            .filter(|h| h.key.as_ref() == key.as_bytes())
            .last()
            .map(|h| h.value)
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.iter().eq(other.iter())
    }
}
impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Reads validated headers one by one.
pub struct HeadersIter<'a> {
    headers: &'a Headers,
    pos: usize,
    left: u32,
}

impl Iterator for HeadersIter<'_> {
    type Item = Header;

    fn next(&mut self) -> Option<Header> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let raw = &self.headers.raw;
        let mut reader = Reader::new(raw, self.pos);
        // Validated at decode time, so these reads succeed; stopping (rather than panicking) is
        // the fallback if that invariant were ever broken.
        let key = reader.nullable_bytes("").ok()??;
        let value = reader.nullable_bytes("").ok()?;
        self.pos = reader.pos;
        Some(Header {
            key: raw.slice(key),
            value: value.map(|range| raw.slice(range)),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}
