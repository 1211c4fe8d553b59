//! The LZ4 frame format, walked and checked here before lz4_flex decodes it.
//!
//! lz4_flex's `FrameDecoder` is a streaming reader and treats running out of input at a block
//! boundary as a clean end of stream: any 4 bytes decode to nothing, a frame cut after a block or
//! without its end mark decodes to a prefix, and bytes after the first frame are ignored. A record
//! batch is exactly one frame, so [`check_frame`] walks the block structure first and rejects all
//! of those as corrupt; lz4_flex then checks the header fields, checksums and block contents.

use std::io::{Read, Write};

use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

use super::{
    corrupt, initialized_up_to, read_bounded, reserve_within, Compression, CompressionError,
};

const CODEC: Compression = Compression::Lz4;
/// 0x184D2204 little-endian. The legacy (0x184C2102) and skippable frame magics are rejected:
/// Kafka never writes them.
const MAGIC: [u8; 4] = [0x04, 0x22, 0x4D, 0x18];
/// Magic, FLG, BD, HC: the shortest frame header.
const MIN_HEADER_LEN: usize = 7;
/// Magic, FLG, BD, content size, dictionary id, HC.
const MAX_HEADER_LEN: usize = 19;
const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION_01: u8 = 0b0100_0000;
const FLG_BLOCK_CHECKSUMS: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_CONTENT_CHECKSUM: u8 = 0b0000_0100;
const FLG_DICTIONARY_ID: u8 = 0b0000_0001;
/// Set in a block size when the block is stored uncompressed.
const BLOCK_UNCOMPRESSED: u32 = 0x8000_0000;

/// Writes one frame of independent 64 KiB blocks, without content size: the frame the Java
/// client writes, which every Kafka consumer (and broker) version can read.
pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let info = FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent);
    let mut encoder = FrameEncoder::with_frame_info(info, out);
    encoder
        .write_all(input)
        .map_err(|e| compress_failed(e.to_string()))?;
    encoder
        .finish()
        .map(|_| ())
        .map_err(|e| compress_failed(e.to_string()))
}

/// Decodes one frame into `out`: the output is `out[..n]` for the `n` returned. What `out`
/// holds on entry is scratch, overwritten.
pub(super) fn decompress(
    input: &[u8],
    limit: usize,
    legacy_header_checksum: bool,
    out: &mut Vec<u8>,
) -> Result<usize, CompressionError> {
    let frame = check_frame(input)?;
    if let Some(decoded) =
        decode_independent_blocks(input, &frame, limit, legacy_header_checksum, out)
    {
        return decoded;
    }
    let hc_pos = frame.hc_pos;
    if legacy_header_checksum {
        if let Some(header) = fixed_legacy_header(input, hc_pos)? {
            let (header, rest) = (&header[..=hc_pos], &input[hc_pos + 1..]);
            return read_bounded(
                CODEC,
                FrameDecoder::new(header.chain(rest)),
                limit,
                out,
                None,
            );
        }
    }
    read_bounded(CODEC, FrameDecoder::new(input), limit, out, None)
}

/// What [`check_frame`] found: where the header checksum byte (HC) is, and how many blocks follow.
struct FrameShape {
    hc_pos: usize,
    blocks: usize,
}

/// Checks that `input` is exactly one LZ4 frame whose blocks and trailer are all present.
fn check_frame(input: &[u8]) -> Result<FrameShape, CompressionError> {
    if input.len() < MIN_HEADER_LEN {
        return Err(corrupt(
            CODEC,
            format!(
                "{} bytes are too short for an LZ4 frame header",
                input.len()
            ),
        ));
    }
    if input[..4] != MAGIC {
        return Err(corrupt(
            CODEC,
            format!("not an LZ4 frame: magic {:02x?}", &input[..4]),
        ));
    }
    let flg = input[4];
    if flg & FLG_VERSION_MASK != FLG_VERSION_01 {
        return Err(corrupt(
            CODEC,
            format!("unsupported LZ4 frame version bits in FLG {flg:#04x}"),
        ));
    }
    let mut hc_pos = 6;
    if flg & FLG_CONTENT_SIZE != 0 {
        hc_pos += 8;
    }
    if flg & FLG_DICTIONARY_ID != 0 {
        hc_pos += 4;
    }
    if input.len() <= hc_pos {
        return Err(corrupt(CODEC, "truncated LZ4 frame descriptor"));
    }
    let block_checksum_len = if flg & FLG_BLOCK_CHECKSUMS != 0 { 4 } else { 0 };
    let mut pos = hc_pos + 1;
    let mut blocks = 0;
    loop {
        let size = match input.get(pos..) {
            Some([a, b, c, d, ..]) => u32::from_le_bytes([*a, *b, *c, *d]),
            _ => return Err(corrupt(CODEC, "LZ4 frame ends without its end mark")),
        };
        pos += 4;
        if size == 0 {
            break;
        }
        blocks += 1;
        let stored_len = (size & !BLOCK_UNCOMPRESSED) as usize;
        pos = pos
            .checked_add(stored_len + block_checksum_len)
            .filter(|&end| end <= input.len())
            .ok_or_else(|| corrupt(CODEC, "truncated LZ4 block"))?;
    }
    if flg & FLG_CONTENT_CHECKSUM != 0 {
        pos += 4;
        if pos > input.len() {
            return Err(corrupt(CODEC, "truncated LZ4 content checksum"));
        }
    }
    if pos < input.len() {
        return Err(corrupt(
            CODEC,
            format!("{} bytes after the end of the LZ4 frame", input.len() - pos),
        ));
    }
    Ok(FrameShape { hc_pos, blocks })
}

/// An LZ4 block cannot decode to more than about 255 times its size (a match length grows by
/// at most 255 per input byte).
const MAX_EXPANSION: usize = 255;
const FLG_INDEPENDENT_BLOCKS: u8 = 0b0010_0000;
const FLG_RESERVED: u8 = 0b0000_0010;
const BD_RESERVED: u8 = 0b1000_1111;

/// Decodes a frame of independent blocks (what the Java client, librdkafka and konsumer
/// write) block by block, straight into the output; `None` for frames it leaves to
/// `FrameDecoder` (linked blocks, dictionary ids).
///
/// Why by hand: `FrameDecoder` is a `Read` that decodes each block into a buffer of its own,
/// which `read_bounded` then copies through a chunk into a vector that doubles as it grows —
/// three or four copies of every byte, about as much CPU as the decoding itself on 1 KiB
/// records. Here each block decodes once, in place. Every check `FrameDecoder` makes is made
/// here too: reserved bits, block size, header, block and content checksums, content size,
/// and the output never grows past `limit`. The frame's structure was walked by
/// [`check_frame`] already.
fn decode_independent_blocks(
    input: &[u8],
    frame: &FrameShape,
    limit: usize,
    legacy_header_checksum: bool,
    out: &mut Vec<u8>,
) -> Option<Result<usize, CompressionError>> {
    let flg = input[4];
    if flg & FLG_INDEPENDENT_BLOCKS == 0 || flg & FLG_DICTIONARY_ID != 0 {
        return None;
    }
    Some(decode_checked_frame(
        input,
        frame,
        limit,
        legacy_header_checksum,
        out,
    ))
}

fn decode_checked_frame(
    input: &[u8],
    frame: &FrameShape,
    limit: usize,
    legacy_header_checksum: bool,
    out: &mut Vec<u8>,
) -> Result<usize, CompressionError> {
    let hc_pos = frame.hc_pos;
    let (flg, bd) = (input[4], input[5]);
    if flg & FLG_RESERVED != 0 || bd & BD_RESERVED != 0 {
        return Err(corrupt(
            CODEC,
            "reserved bits set in the LZ4 frame descriptor",
        ));
    }
    let block_max = match (bd >> 4) & 0b111 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        other => {
            return Err(corrupt(
                CODEC,
                format!("unsupported LZ4 block maximum size id {other}"),
            ))
        }
    };
    let hc = input[hc_pos];
    let legacy_ok = legacy_header_checksum && hc == header_checksum(&input[..hc_pos]);
    if hc != header_checksum(&input[4..hc_pos]) && !legacy_ok {
        return Err(corrupt(CODEC, "LZ4 frame header checksum mismatch"));
    }
    let content_size = (flg & FLG_CONTENT_SIZE != 0).then(|| {
        let mut size = [0u8; 8];
        size.copy_from_slice(&input[6..14]);
        u64::from_le_bytes(size)
    });
    if let Some(size) = content_size {
        if size > limit as u64 {
            return Err(CompressionError::TooLarge {
                codec: CODEC,
                limit,
            });
        }
    }
    let block_checksums = flg & FLG_BLOCK_CHECKSUMS != 0;
    // Room for the whole output at once, so it is never moved while it grows: an announced
    // content size (within the limit) is trusted for that, else every block is taken to be
    // full, but never more than LZ4's largest possible expansion of the input (about 255×).
    // What is really produced is checked against the announced size at the end.
    let expected = content_size.map_or_else(
        || (frame.blocks.saturating_mul(block_max)).min(input.len().saturating_mul(MAX_EXPANSION)),
        |s| s as usize,
    );
    let expected = expected.min(limit);
    if expected > out.len() {
        reserve_within(out, expected - out.len(), limit);
    }
    let mut produced = 0;
    let mut pos = hc_pos + 1;
    loop {
        // check_frame guarantees every size word and block below is in bounds.
        let word = u32::from_le_bytes([input[pos], input[pos + 1], input[pos + 2], input[pos + 3]]);
        pos += 4;
        if word == 0 {
            break;
        }
        let stored_len = (word & !BLOCK_UNCOMPRESSED) as usize;
        if stored_len > block_max {
            return Err(corrupt(
                CODEC,
                "LZ4 block larger than the frame's block size",
            ));
        }
        let block = &input[pos..pos + stored_len];
        pos += stored_len;
        if block_checksums {
            let stored =
                u32::from_le_bytes([input[pos], input[pos + 1], input[pos + 2], input[pos + 3]]);
            pos += 4;
            if xxh32(block) != stored {
                return Err(corrupt(CODEC, "LZ4 block checksum mismatch"));
            }
        }
        let start = produced;
        if word & BLOCK_UNCOMPRESSED != 0 {
            if start + block.len() > limit {
                return Err(CompressionError::TooLarge {
                    codec: CODEC,
                    limit,
                });
            }
            let end = start + block.len();
            initialized_up_to(out, end, limit);
            out[start..end].copy_from_slice(block);
            produced = end;
            continue;
        }
        let end = start + block_max.min(limit - start);
        initialized_up_to(out, end, limit);
        match decode_block(block, &mut out[start..end]) {
            Ok(written) => produced = start + written,
            Err(e) => {
                // Near the limit a valid block may only be out of room: decode it aside to
                // tell a bomb from a corrupt block.
                let mut aside = vec![0u8; block_max];
                return Err(match decode_block(block, &mut aside) {
                    Ok(_) if end - start < block_max => CompressionError::TooLarge {
                        codec: CODEC,
                        limit,
                    },
                    _ => corrupt(CODEC, format!("LZ4 block: {e}")),
                });
            }
        }
    }
    if flg & FLG_CONTENT_CHECKSUM != 0 {
        let stored =
            u32::from_le_bytes([input[pos], input[pos + 1], input[pos + 2], input[pos + 3]]);
        if xxh32(&out[..produced]) != stored {
            return Err(corrupt(CODEC, "LZ4 content checksum mismatch"));
        }
    }
    if let Some(size) = content_size {
        if size != produced as u64 {
            return Err(corrupt(
                CODEC,
                format!("LZ4 frame announced {size} bytes and held {produced}"),
            ));
        }
    }
    Ok(produced)
}

/// Decodes one LZ4 block into `out`, never writing past its end: the bytes written.
fn decode_block(block: &[u8], out: &mut [u8]) -> Result<usize, String> {
    lz4_flex::block::decompress_into(block, out).map_err(|e| e.to_string())
}

/// If the frame carries Kafka 0.8/0.9's broken header checksum, xxh32 over magic + descriptor
/// instead of the descriptor alone, returns a copy of the header with the correct one.
/// Otherwise (correct or simply wrong) the frame goes to lz4_flex as it is, to be judged there.
fn fixed_legacy_header(
    input: &[u8],
    hc_pos: usize,
) -> Result<Option<[u8; MAX_HEADER_LEN]>, CompressionError> {
    let (Some(with_magic), Some(&hc)) = (input.get(..hc_pos), input.get(hc_pos)) else {
        return Err(corrupt(CODEC, "truncated LZ4 frame descriptor"));
    };
    if hc != header_checksum(with_magic) {
        return Ok(None);
    }
    let mut header = [0u8; MAX_HEADER_LEN];
    let copy = header
        .get_mut(..=hc_pos)
        .ok_or_else(|| corrupt(CODEC, "LZ4 frame descriptor too long"))?;
    copy.copy_from_slice(&input[..=hc_pos]);
    copy[hc_pos] = header_checksum(&with_magic[MAGIC.len()..]);
    Ok(Some(header))
}

/// The frame format's HC byte: the second byte of xxh32 (seed 0) of the given header bytes.
pub(super) fn header_checksum(bytes: &[u8]) -> u8 {
    (xxh32(bytes) >> 8) as u8
}

/// xxh32 with seed 0. twox-hash is the crate lz4_flex itself uses, so it costs no extra build.
pub(super) fn xxh32(data: &[u8]) -> u32 {
    twox_hash::XxHash32::oneshot(0, data)
}

fn compress_failed(detail: String) -> CompressionError {
    CompressionError::Compress {
        codec: CODEC,
        detail,
    }
}
