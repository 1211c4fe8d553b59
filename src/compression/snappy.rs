//! Snappy as Kafka clients write it: raw snappy (librdkafka) or xerial framing (the Java client's
//! snappy-java `SnappyOutputStream`, kafka-python).
//!
//! Xerial framing is an 8-byte magic `82 'SNAPPY' 00`, a version and a compatible-version (i32 BE
//! each), then chunks of `i32 BE length` + one raw snappy block. A raw snappy stream can never
//! start with that magic (its first element after the length varint would be a copy, which is
//! invalid at position 0), so the magic alone tells the two apart.

use super::{corrupt, initialized_up_to, Compression, CompressionError};

const CODEC: Compression = Compression::Snappy;
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, version and compatible version.
const XERIAL_HEADER_LEN: usize = 16;

/// Writes raw snappy: what librdkafka writes and every consumer (Java's included) reads.
pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let max = snap::raw::max_compress_len(input.len());
    if max == 0 {
        return Err(CompressionError::Compress {
            codec: CODEC,
            detail: format!("{} bytes exceed snappy's input limit", input.len()),
        });
    }
    let start = out.len();
    out.resize(start + max, 0);
    match snap::raw::Encoder::new().compress(input, &mut out[start..]) {
        Ok(written) => {
            out.truncate(start + written);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(CompressionError::Compress {
                codec: CODEC,
                detail: e.to_string(),
            })
        }
    }
}

/// Decodes into `out`'s scratch (see `decompress_into`): the bytes produced.
pub(super) fn decompress(
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<usize, CompressionError> {
    let mut produced = 0;
    if input.starts_with(&XERIAL_MAGIC) {
        // The versions are not checked: there has only ever been version 1, and snappy-java
        // itself does not reject others.
        let mut rest = input
            .get(XERIAL_HEADER_LEN..)
            .ok_or_else(|| corrupt(CODEC, "truncated xerial snappy header"))?;
        while !rest.is_empty() {
            let (length, tail) = match rest {
                [a, b, c, d, tail @ ..] => (i32::from_be_bytes([*a, *b, *c, *d]), tail),
                _ => {
                    return Err(corrupt(
                        CODEC,
                        format!(
                            "{} stray bytes where a xerial chunk length belongs",
                            rest.len()
                        ),
                    ))
                }
            };
            let length = usize::try_from(length)
                .map_err(|_| corrupt(CODEC, format!("negative xerial chunk length {length}")))?;
            if length > tail.len() {
                return Err(corrupt(
                    CODEC,
                    format!(
                        "xerial chunk of {length} bytes but only {} bytes remain",
                        tail.len()
                    ),
                ));
            }
            let (chunk, next) = tail.split_at(length);
            produced = raw_into(chunk, limit, out, produced)?;
            rest = next;
        }
    } else {
        produced = raw_into(input, limit, out, produced)?;
    }
    Ok(produced)
}

/// Decodes one raw snappy block into `out` after its first `produced` bytes, checking its
/// announced length against what is left of `limit` before making room; snap then checks the
/// block produces exactly that length. The bytes produced in all.
fn raw_into(
    block: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
    produced: usize,
) -> Result<usize, CompressionError> {
    let room = limit.saturating_sub(produced);
    let length = match snap::raw::decompress_len(block) {
        Ok(length) => length,
        // Beyond snappy's 4 GiB format limit: a bomb if over our limit, garbage otherwise.
        Err(snap::Error::TooBig { given, .. }) if given > room as u64 => {
            return Err(CompressionError::TooLarge {
                codec: CODEC,
                limit,
            })
        }
        Err(e) => return Err(corrupt(CODEC, e.to_string())),
    };
    if length > room {
        return Err(CompressionError::TooLarge {
            codec: CODEC,
            limit,
        });
    }
    let end = produced + length;
    initialized_up_to(out, end, limit);
    match snap::raw::Decoder::new().decompress(block, &mut out[produced..end]) {
        Ok(written) => Ok(produced + written),
        Err(e) => Err(corrupt(CODEC, e.to_string())),
    }
}
