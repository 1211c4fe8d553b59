//! A bounds-checked reader over untrusted bytes, and the zig-zag varints of record fields.
//!
//! Hand-written rather than `bytes::Buf`: `Buf` panics when it runs out of bytes, and decoding
//! needs positions (to slice the shared buffer and to report where data was bad), not consumption.

/// Why a read failed; the position is the reader's.
pub(crate) type Bad = &'static str;

/// Reads big-endian integers and varints from `buf`, starting at `pos`.
pub(crate) struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    #[cfg(test)]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: Bad) -> Result<[u8; N], Bad> {
        let end = self.pos.checked_add(N).ok_or(what)?;
        let bytes = self.buf.get(self.pos..end).ok_or(what)?;
        self.pos = end;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    #[inline]
    pub fn i8(&mut self, what: Bad) -> Result<i8, Bad> {
        Ok(i8::from_be_bytes(self.array(what)?))
    }
    #[inline]
    pub fn i16(&mut self, what: Bad) -> Result<i16, Bad> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }
    #[inline]
    pub fn i32(&mut self, what: Bad) -> Result<i32, Bad> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    #[inline]
    pub fn u32(&mut self, what: Bad) -> Result<u32, Bad> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    #[inline]
    pub fn i64(&mut self, what: Bad) -> Result<i64, Bad> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// Skips `len` bytes and returns where they start.
    #[inline]
    pub fn skip(&mut self, len: usize, what: Bad) -> Result<usize, Bad> {
        let start = self.pos;
        let end = start.checked_add(len).ok_or(what)?;
        if end > self.buf.len() {
            return Err(what);
        }
        self.pos = end;
        Ok(start)
    }

    /// A zig-zag varint of at most 5 bytes (Kafka's `varint`).
    #[inline]
    pub fn varint(&mut self, what: Bad) -> Result<i32, Bad> {
        let mut raw: u32 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self.buf.get(self.pos).ok_or(what)?;
            self.pos += 1;
            raw |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
            }
            shift += 7;
            if shift > 28 {
                return Err("varint longer than 5 bytes");
            }
        }
    }

    /// A zig-zag varint of at most 10 bytes (Kafka's `varlong`).
    #[inline]
    pub fn varlong(&mut self, what: Bad) -> Result<i64, Bad> {
        let mut raw: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self.buf.get(self.pos).ok_or(what)?;
            self.pos += 1;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
            shift += 7;
            if shift > 63 {
                return Err("varlong longer than 10 bytes");
            }
        }
    }

    /// A varint length followed by that many bytes; -1 means null. Returns the byte range.
    #[inline]
    pub fn nullable_bytes(&mut self, what: Bad) -> Result<Option<std::ops::Range<usize>>, Bad> {
        let len = self.varint(what)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| "negative length other than -1")?;
        let start = self.skip(len, what)?;
        Ok(Some(start..start + len))
    }
}

/// Appends `value` as a zig-zag varint.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i32) {
    let mut raw = ((value << 1) ^ (value >> 31)) as u32;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Appends `value` as a zig-zag varlong.
#[inline]
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// How many bytes `put_varint(value)` writes.
#[inline]
pub(crate) fn varint_len(value: i32) -> usize {
    let raw = ((value << 1) ^ (value >> 31)) as u32;
    (32 - (raw | 1).leading_zeros() as usize).div_ceil(7)
}

/// How many bytes `put_varlong(value)` writes.
#[inline]
pub(crate) fn varlong_len(value: i64) -> usize {
    let raw = ((value << 1) ^ (value >> 63)) as u64;
    (64 - (raw | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        // Zig-zag: 0 -> 0, -1 -> 1, 1 -> 2, -64 -> 127, 64 -> 128 (two bytes).
        for (value, bytes) in [
            (0, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
            (i32::MAX, vec![0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(varint_len(value), bytes.len(), "{value}");
            assert_eq!(Reader::new(&bytes, 0).varint("x"), Ok(value));
        }
    }

    #[test]
    fn overlong_and_truncated_varints_are_errors() {
        let six = [0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(Reader::new(&six, 0).varint("x").is_err());
        let eleven = [0x80; 11];
        assert!(Reader::new(&eleven, 0).varlong("x").is_err());
        assert_eq!(Reader::new(&[0x80], 0).varint("cut"), Err("cut"));
        assert_eq!(Reader::new(&[], 0).varlong("cut"), Err("cut"));
        // A length of -2 is not "null".
        assert!(Reader::new(&[0x03], 0).nullable_bytes("x").is_err());
        // A length past the end.
        assert!(Reader::new(&[0x08, 1, 2], 0).nullable_bytes("x").is_err());
    }

    proptest! {
        #[test]
        fn varints_round_trip(value: i32, long: i64) {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            prop_assert_eq!(out.len(), varint_len(value));
            let before = out.len();
            put_varlong(&mut out, long);
            prop_assert_eq!(out.len() - before, varlong_len(long));
            let mut reader = Reader::new(&out, 0);
            prop_assert_eq!(reader.varint("x"), Ok(value));
            prop_assert_eq!(reader.varlong("x"), Ok(long));
            prop_assert_eq!(reader.remaining(), 0);
        }
    }
}
