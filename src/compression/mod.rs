//! Kafka's compression codecs: gzip, snappy, lz4 and zstd, over the pure-Rust (and zstd's C)
//! implementations.
//!
//! Fetched payloads are untrusted, so every decoder here is bounded by a caller-given output limit
//! (a decompression bomb fails with [`CompressionError::TooLarge`] instead of exhausting memory)
//! and returns an error, never panics, on malformed input. The codecs' wire quirks live in the
//! submodules: xerial-framed snappy in `snappy`, the LZ4 frame checks and the broken magic-0
//! header checksum in `lz4`.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use bytes::Bytes;

mod lz4;
mod pool;
mod snappy;

#[cfg(test)]
mod tests;

/// Kafka's codec ids (attributes bits 0-2 of a batch / legacy message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None,
    /// Gzip (deflate in the gzip container).
    Gzip,
    /// Snappy: raw from librdkafka, xerial-framed from the Java client.
    Snappy,
    /// The LZ4 frame format.
    Lz4,
    /// Zstandard (Kafka 2.1+).
    Zstd,
}

impl Compression {
    /// Every codec, in id order, so tests and tools can cover them all.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec for the id found in a batch's attributes; ids 5-7 are unassigned.
    pub fn from_id(id: i16) -> Result<Compression, CompressionError> {
        match id {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            _ => Err(CompressionError::UnknownCodec(id)),
        }
    }

    /// The id written into a batch's attributes.
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The name Kafka's `compression.type` setting uses.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = CompressionError;

    /// Parses a `compression.type` value; case-insensitive as Kafka's own config parsing is.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|codec| codec.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| CompressionError::UnknownName(s.to_owned()))
    }
}

/// Why a payload could not be compressed or decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    /// A codec id outside 0..=4 in the attributes.
    #[error("unknown compression codec id {0}")]
    UnknownCodec(i16),
    /// A codec name no Kafka client knows.
    #[error("unknown compression codec name {0:?}")]
    UnknownName(String),
    /// The decompressed payload would exceed the caller's limit: the decompression bomb guard.
    #[error("{codec} payload decompresses to more than {limit} bytes")]
    TooLarge {
        /// The codec of the payload.
        codec: Compression,
        /// The limit it would have exceeded.
        limit: usize,
    },
    /// Malformed, truncated or checksum-failing compressed input.
    #[error("corrupt {codec} payload: {detail}")]
    Corrupt {
        /// The codec of the payload.
        codec: Compression,
        /// What was wrong, for the log.
        detail: String,
    },
    /// A compression level the codec does not have.
    #[error("invalid {codec} compression level {level}: {detail}")]
    InvalidLevel {
        /// The codec asked for.
        codec: Compression,
        /// The level asked for.
        level: i32,
        /// Which levels the codec accepts.
        detail: String,
    },
    /// The compressor itself failed (input beyond the codec's size limit).
    #[error("{codec} compression failed: {detail}")]
    Compress {
        /// The codec asked for.
        codec: Compression,
        /// The compressor's error.
        detail: String,
    },
}

/// Compress `input` with `codec`, appending to `out`. `level` None = codec default.
///
/// Gzip: levels 0..=9. Zstd: zstd's own range (negative "fast" levels up to 22). Snappy has no
/// levels and lz4_flex has only its fast mode, so `Some(level)` for them (and for `None`, which
/// does not compress) is [`CompressionError::InvalidLevel`] rather than a silently ignored setting.
/// `Compression::None` appends `input` unchanged.
pub fn compress(
    codec: Compression,
    level: Option<i32>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    match codec {
        Compression::None | Compression::Snappy | Compression::Lz4 => {
            if let Some(level) = level {
                let detail = match codec {
                    Compression::None => "no compression has no levels",
                    Compression::Snappy => "snappy has no compression levels",
                    _ => "lz4_flex has only its fast mode, no compression levels",
                };
                return Err(CompressionError::InvalidLevel {
                    codec,
                    level,
                    detail: detail.to_owned(),
                });
            }
        }
        Compression::Gzip | Compression::Zstd => {}
    }
    match codec {
        Compression::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => gzip_compress(level, input, out),
        Compression::Snappy => snappy::compress(input, out),
        Compression::Lz4 => lz4::compress(input, out),
        Compression::Zstd => zstd_compress(level, input, out),
    }
}

/// Decompress a record-batch payload, producing at most `limit` bytes.
///
/// More output than `limit` is [`CompressionError::TooLarge`]; the bound is enforced on the bytes
/// actually produced, never by trusting a size announced in the input, and the output buffer never
/// grows past `limit`. Malformed input of any shape is [`CompressionError::Corrupt`], never a
/// panic. Snappy accepts both raw snappy (librdkafka) and xerial framing (Java client,
/// kafka-python), told apart by the xerial magic; lz4 is the LZ4 frame format, exactly one frame.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let produced = decompress_into(codec, input, limit, false, &mut out)?;
    out.truncate(produced);
    Ok(out)
}

/// [`decompress`] into a buffer recycled from earlier batches, as `Bytes` that give the buffer
/// back when the last slice of it is dropped (see `pool`). What record decoding uses.
pub fn decompress_shared(
    codec: Compression,
    input: &[u8],
    limit: usize,
) -> Result<Bytes, CompressionError> {
    let mut out = pool::SHARED.take();
    match decompress_into(codec, input, limit, false, &mut out) {
        Ok(produced) => Ok(pool::SHARED.share(out, produced)),
        Err(error) => {
            pool::SHARED.give_back(out);
            Err(error)
        }
    }
}

/// [`decompress`] for legacy magic-0 messages, whose LZ4 frames may carry a broken header checksum.
///
/// Kafka 0.8/0.9 (and kafka-python for magic 0) computed the LZ4 frame header checksum over the
/// 4 magic bytes too, so such frames fail a conforming decoder. Either that broken checksum or the
/// correct one is accepted here; other codecs behave exactly as in [`decompress`].
pub fn decompress_legacy_v0(
    codec: Compression,
    input: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let produced = decompress_into(codec, input, limit, true, &mut out)?;
    out.truncate(produced);
    Ok(out)
}

/// Decompresses into `out`: the output is `out[..n]` for the `n` returned. What `out` holds on
/// entry is scratch (a recycled buffer's old bytes), overwritten.
fn decompress_into(
    codec: Compression,
    input: &[u8],
    limit: usize,
    legacy_lz4_checksum: bool,
    out: &mut Vec<u8>,
) -> Result<usize, CompressionError> {
    match codec {
        Compression::None if input.len() > limit => {
            Err(CompressionError::TooLarge { codec, limit })
        }
        Compression::None => {
            out.clear();
            out.extend_from_slice(input);
            Ok(input.len())
        }
        // Every compressor writes at least a header even for empty input, and some decoders
        // would read zero bytes as an empty stream: reject it here, uniformly.
        _ if input.is_empty() => Err(corrupt(codec, "empty compressed payload")),
        Compression::Gzip => {
            let expected = gzip_expected_size(input);
            read_bounded(
                codec,
                flate2::read::MultiGzDecoder::new(input),
                limit,
                out,
                expected,
            )
        }
        Compression::Snappy => snappy::decompress(input, limit, out),
        Compression::Lz4 => lz4::decompress(input, limit, legacy_lz4_checksum, out),
        Compression::Zstd => zstd_decompress(input, limit, out),
    }
}

thread_local! {
    /// One zstd decompression context per decoding thread, reused batch after batch.
    static ZSTD_CONTEXT: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// zstd with one context per thread, reused batch after batch.
///
/// Why by hand: `zstd::stream::read::Decoder::with_buffer` creates a context for every batch
/// (`ZSTD_createDCtx` was 6% of the client's CPU with 1 KiB records). A payload that is one
/// frame announcing a size within `limit` (what librdkafka and konsumer write) is decoded in
/// one shot straight into the output: streaming decodes into zstd's window buffer and copies
/// from there, which cost 5% of the client's CPU. zstd checks that the frame decodes to
/// exactly the size it announced, so the output stays within `limit`. Anything else (no
/// announced size, several frames, a size over the limit, an error) streams, bounded by
/// `read_bounded`, which also gives an error its kind.
fn zstd_decompress(
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<usize, CompressionError> {
    const CODEC: Compression = Compression::Zstd;
    ZSTD_CONTEXT.with(|slot| {
        let mut slot = slot.borrow_mut();
        let context =
            match slot.as_mut() {
                Some(context) => context,
                None => slot.insert(zstd::zstd_safe::DCtx::try_create().ok_or_else(|| {
                    corrupt(CODEC, "zstd decoder setup: no decompression context")
                })?),
            };
        if let Some(size) = zstd_single_frame_size(input, limit) {
            out.clear();
            out.reserve(size);
            if let Ok(produced) = context.decompress(out, input) {
                return Ok(produced);
            }
        }
        // with_context resets the context's session: nothing of a failed batch carries over.
        let decoder = zstd::stream::read::Decoder::with_context(input, context);
        read_bounded(CODEC, decoder, limit, out, None)
    })
}

/// Largest announced zstd size, per input byte, that is reserved up front. zstd can expand
/// far more (a 3-byte block header can stand for a 128 KiB run), so this bounds only what a
/// lying header makes us reserve before the frame proves it wrong; larger frames stream.
const ZSTD_ONE_SHOT_MAX_EXPANSION: usize = 255;

/// The size `input` announces, when it is exactly one zstd frame announcing at most `limit`
/// (and at most [`ZSTD_ONE_SHOT_MAX_EXPANSION`] times its own size).
fn zstd_single_frame_size(input: &[u8], limit: usize) -> Option<usize> {
    let size = zstd::zstd_safe::get_frame_content_size(input).ok()??;
    let bound = limit.min(input.len().saturating_mul(ZSTD_ONE_SHOT_MAX_EXPANSION));
    let size = usize::try_from(size).ok().filter(|&size| size <= bound)?;
    let frame = zstd::zstd_safe::find_frame_compressed_size(input).ok()?;
    (frame == input.len()).then_some(size)
}

/// The size a gzip payload's last member says it holds (ISIZE, its last 4 bytes: the size
/// modulo 2^32), as a hint for [`read_bounded`], within deflate's largest expansion (1032 to 1).
fn gzip_expected_size(input: &[u8]) -> Option<usize> {
    let trailer: [u8; 4] = input
        .len()
        .checked_sub(4)
        .and_then(|at| input.get(at..))?
        .try_into()
        .ok()?;
    let size = usize::try_from(u32::from_le_bytes(trailer)).ok()?;
    (size <= input.len().saturating_mul(1032)).then_some(size)
}

fn gzip_compress(
    level: Option<i32>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let codec = Compression::Gzip;
    let level = match level {
        None => flate2::Compression::default(),
        Some(level) => match u32::try_from(level) {
            Ok(l @ 0..=9) => flate2::Compression::new(l),
            _ => {
                return Err(CompressionError::InvalidLevel {
                    codec,
                    level,
                    detail: "gzip levels are 0 (store) to 9 (smallest)".to_owned(),
                })
            }
        },
    };
    let mut encoder = flate2::write::GzEncoder::new(out, level);
    encoder
        .write_all(input)
        .and_then(|()| encoder.try_finish())
        .map_err(|e| compress_failed(codec, e))
}

fn zstd_compress(
    level: Option<i32>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let codec = Compression::Zstd;
    let levels = zstd::compression_level_range();
    let level_or_default = level.unwrap_or(zstd::DEFAULT_COMPRESSION_LEVEL);
    if !levels.contains(&level_or_default) {
        return Err(CompressionError::InvalidLevel {
            codec,
            level: level_or_default,
            detail: format!("zstd levels are {}..={}", levels.start(), levels.end()),
        });
    }
    // The one-shot API records the content size in the frame header, which lets decoders
    // (librdkafka among them) size their output exactly.
    let compressed =
        zstd::bulk::compress(input, level_or_default).map_err(|e| compress_failed(codec, e))?;
    out.extend_from_slice(&compressed);
    Ok(())
}

/// Bytes of room a streaming decoder is given per read.
const READ_STEP: usize = 64 * 1024;

/// Reads `reader` to its end into `out`'s scratch (see `decompress_into`), never past `limit`:
/// the decompression bomb guard for the streaming decoders, counting what they actually
/// produce. The decoder writes straight into the output (no intermediate chunk), and a
/// recycled buffer's bytes are overwritten rather than zeroed first. The bytes produced.
fn read_bounded<R: Read>(
    codec: Compression,
    mut reader: R,
    limit: usize,
    out: &mut Vec<u8>,
    expected: Option<usize>,
) -> Result<usize, CompressionError> {
    // With an expected size (from the input itself, so untrusted), the first reads get just
    // that much room, and a one-byte probe tells the end from more output, which then goes on
    // in READ_STEP steps. Why: a decompressed batch pins its whole buffer while its records
    // wait for their handler, and a READ_STEP of room for a batch of small records pinned 5
    // times their bytes (peak RSS 112 MiB with 100-byte gzip records, against 31 for
    // librdkafka).
    let mut room_to = expected.map_or(0, |expected| expected.min(limit));
    let mut produced = 0;
    loop {
        if produced > 0 && produced == room_to && produced < limit {
            let mut probe = [0u8; 1];
            match reader.read(&mut probe) {
                Ok(0) => return Ok(produced),
                Ok(_) => {
                    initialized_up_to(out, produced + 1, limit);
                    out[produced] = probe[0];
                    produced += 1;
                    room_to = 0;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(corrupt(codec, e.to_string())),
            }
        }
        if produced == limit {
            // At the limit: any further byte makes the output too large.
            let mut probe = [0u8; 1];
            return match reader.read(&mut probe) {
                Ok(0) => Ok(produced),
                Ok(_) => Err(CompressionError::TooLarge { codec, limit }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(corrupt(codec, e.to_string())),
            };
        }
        let end = if produced < room_to {
            room_to
        } else {
            produced + READ_STEP.min(limit - produced)
        };
        initialized_up_to(out, end, limit);
        let n = match reader.read(&mut out[produced..end]) {
            Ok(0) => return Ok(produced),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(codec, e.to_string())),
        };
        if n > end - produced {
            return Err(corrupt(
                codec,
                "decoder reported more bytes than it was given room for",
            ));
        }
        produced += n;
    }
}

/// Makes `out[..end]` initialized memory to decode into. Bytes already there (left by an earlier
/// batch in a recycled buffer) are overwritten, not zeroed first: zeroing cost as much CPU as a
/// tenth of the LZ4 decoding. The caller guarantees `end <= limit`.
fn initialized_up_to(out: &mut Vec<u8>, end: usize, limit: usize) {
    if out.len() < end {
        reserve_within(out, end - out.len(), limit);
        out.resize(end, 0);
    }
}

/// Makes room for `additional` more bytes, growing geometrically like `Vec` would but never
/// reserving past `limit`. The caller guarantees `out.len() + additional <= limit`.
fn reserve_within(out: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = out.len().saturating_add(additional);
    if needed > out.capacity() {
        let target = out
            .capacity()
            .saturating_mul(2)
            .max(needed)
            .min(limit)
            .max(needed);
        out.reserve_exact(target - out.len());
    }
}

fn corrupt(codec: Compression, detail: impl Into<String>) -> CompressionError {
    CompressionError::Corrupt {
        codec,
        detail: detail.into(),
    }
}

fn compress_failed(codec: Compression, error: impl fmt::Display) -> CompressionError {
    CompressionError::Compress {
        codec,
        detail: error.to_string(),
    }
}
