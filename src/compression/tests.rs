use super::*;
use proptest::prelude::*;

/// The text every known-good vector below compresses: 114 bytes.
fn payload() -> Vec<u8> {
    b"konsumer: a pure-Rust Kafka consumer. ".repeat(3)
}

fn hex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

// Known-good vectors written by other implementations. P is the payload above; Python 3.11 with
// the named PyPI packages in a throwaway venv.

// python3 -c 'import gzip; P=b"konsumer: a pure-Rust Kafka consumer. "*3; print(gzip.compress(P, mtime=0).hex())'
const GZIP_PY: &str =
    "1f8b0800000000000203cbcecf2b2ecd4d2db252485428282d4ad50d2a2d2e51f04e4ccb4e544886cae92964\
53511500bd3f133a72000000";

// Raw snappy from Google's C++ libsnappy (Debian libsnappy-dev) through python-snappy 0.6.1:
// python -c 'import snappy; P=b"konsumer: a pure-Rust Kafka consumer. "*3; print(snappy.compress(P).hex())'
const SNAPPY_RAW_LIBSNAPPY: &str =
    "72706b6f6e73756d65723a206120707572652d52757374204b61666b6120630d1c042e20fe26002e2600";

// Raw snappy built by hand from the format description: length 12, literal "abc", copy-1 of
// length 9 at offset 3 (tag (9-4)<<2|1 = 0x15) -> "abcabcabcabc".
const SNAPPY_RAW_BY_HAND: &str = "0c086162631503";

// Xerial framing as the Java client writes it: snappy-java 1.1.8.3 (Debian libsnappy-java),
// `new org.xerial.snappy.SnappyOutputStream(bytes).write(P); close()`, Kafka's SnappyFactory.
const SNAPPY_XERIAL_JAVA: &str = "82534e415050590000000001000000010000002a72706b6f6e73756d65723a20\
6120707572652d52757374204b61666b6120630d1c042e20fe26002e2600";

// Xerial framing from kafka-python (blocks from libsnappy), 64-byte blocks so it has two chunks:
// python -c 'import kafka.codec as c; P=b"konsumer: a pure-Rust Kafka consumer. "*3;
//   print(c.snappy_encode(P, xerial_compatible=True, xerial_blocksize=64).hex())'
const SNAPPY_XERIAL_KAFKA_PYTHON: &str =
    "82534e415050590000000001000000010000002740706b6f6e73756d65723a\
206120707572652d52757374204b61666b6120630d1c042e206626000000003032306120636f6e73756d65722e206b\
0d0a743a206120707572652d52757374204b61666b6120636f6e73756d65722e20";
/// Where the kafka-python vector's second chunk starts (16-byte header + 4 + 0x27).
const SNAPPY_XERIAL_KAFKA_PYTHON_SECOND_CHUNK: usize = 16 + 4 + 0x27;

// LZ4 frame from the C liblz4 (content size stored, independent blocks):
// python -c 'import lz4.frame; P=b"konsumer: a pure-Rust Kafka consumer. "*3; print(lz4.frame.compress(P).hex())'
const LZ4_PY: &str =
    "04224d1868407200000000000000ce2d000000f30e6b6f6e73756d65723a206120707572652d52757374\
204b61666b6120631c002f2e20260034506d65722e2000000000";

// LZ4 frame with linked blocks, block checksums and a content checksum:
// python -c 'import lz4.frame; P=b"konsumer: a pure-Rust Kafka consumer. "*3; print(lz4.frame.compress(P,
//   block_linked=True, content_checksum=True, block_checksum=True, store_size=False).hex())'
const LZ4_PY_CHECKSUMS: &str =
    "04224d187440bd2d000000f30e6b6f6e73756d65723a206120707572652d52757374\
204b61666b6120631c002f2e20260034506d65722e20a8ec483d00000000093da32a";

// LZ4 frame with Kafka 0.8/0.9's broken header checksum (HC 0x1a over magic + FLG + BD):
// python -c 'import kafka.codec as c; P=b"konsumer: a pure-Rust Kafka consumer. "*3;
//   print(c.lz4_encode_old_kafka(P).hex())'   (needs the xxhash package too)
const LZ4_OLD_KAFKA: &str = "04224d1860401a2d000000f30e6b6f6e73756d65723a206120707572652d52757374\
204b61666b6120631c002f2e20260034506d65722e2000000000";

// zstd one-shot, content size in the header:
// python -c 'import zstandard; P=b"konsumer: a pure-Rust Kafka consumer. "*3; print(zstandard.ZstdCompressor().compress(P).hex())'
const ZSTD_PY: &str = "28b52ffd2072450100f86b6f6e73756d65723a206120707572652d52757374204b61666b61\
20632e2002009914c2bd3b9d";

// zstd streaming, no content size (as the Java client's ZstdOutputStream writes):
// python -c 'import zstandard; P=b"konsumer: a pure-Rust Kafka consumer. "*3;
//   c=zstandard.ZstdCompressor().compressobj(); print((c.compress(P)+c.flush()).hex())'
const ZSTD_PY_STREAM: &str =
    "28b52ffd0058450100f86b6f6e73756d65723a206120707572652d52757374204b61666b61\
20632e2002009914c2bd3b9d";

/// Up to 1 MB of partly compressible bytes: text runs and xorshift noise.
fn sample(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        match state % 3 {
            0 => out.extend_from_slice(b"topic-partition offset "),
            _ => out.extend_from_slice(&state.to_le_bytes()[..(state % 8) as usize]),
        }
    }
    out.truncate(len);
    out
}

fn compressed(codec: Compression, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    compress(codec, None, input, &mut out).expect("compress");
    out
}

fn is_too_large(result: &Result<Vec<u8>, CompressionError>) -> bool {
    matches!(result, Err(CompressionError::TooLarge { .. }))
}

fn is_corrupt(result: &Result<Vec<u8>, CompressionError>) -> bool {
    matches!(result, Err(CompressionError::Corrupt { .. }))
}

/// Records the largest single allocation a closure makes on this thread, so "without
/// allocating" claims can be tested. Delegates everything to the system allocator.
mod alloc_tracking {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Tracking;

    thread_local! {
        static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
    }

    fn note(size: usize) {
        let _ = LARGEST.try_with(|largest| {
            if let Some(seen) = largest.get() {
                largest.set(Some(seen.max(size)));
            }
        });
    }

    // SAFETY: every call is forwarded unchanged to `System`; `note` only touches a const
    // thread-local Cell, which never allocates.
    unsafe impl GlobalAlloc for Tracking {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc(layout)
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc_zeroed(layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            System.realloc(ptr, layout, new_size)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
    }

    pub fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        LARGEST.with(|largest| largest.set(Some(0)));
        let result = f();
        let largest = LARGEST.with(|largest| largest.replace(None)).unwrap_or(0);
        (result, largest)
    }
}

#[global_allocator]
static ALLOCATOR: alloc_tracking::Tracking = alloc_tracking::Tracking;
use alloc_tracking::largest_allocation_during;

// ---- ids and names -------------------------------------------------------------------------

#[test]
fn ids_and_names_round_trip() {
    for (id, codec) in Compression::ALL.into_iter().enumerate() {
        let id = i16::try_from(id).expect("small");
        assert_eq!(codec.id(), id);
        assert_eq!(Compression::from_id(id), Ok(codec));
        assert_eq!(codec.name().parse::<Compression>(), Ok(codec));
        assert_eq!(
            codec.name().to_uppercase().parse::<Compression>(),
            Ok(codec)
        );
        assert_eq!(codec.to_string(), codec.name());
    }
    let names: Vec<_> = Compression::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["none", "gzip", "snappy", "lz4", "zstd"]);
    assert_eq!("Lz4".parse::<Compression>(), Ok(Compression::Lz4));
    assert_eq!(Compression::default(), Compression::None);
}

#[test]
fn unknown_ids_and_names_are_errors() {
    for id in [5, 6, 7, -1, i16::MAX] {
        assert_eq!(
            Compression::from_id(id),
            Err(CompressionError::UnknownCodec(id))
        );
    }
    assert_eq!(
        CompressionError::UnknownCodec(7).to_string(),
        "unknown compression codec id 7"
    );
    assert_eq!(
        "brotli".parse::<Compression>(),
        Err(CompressionError::UnknownName("brotli".to_owned()))
    );
    assert!(" gzip".parse::<Compression>().is_err());
}

// ---- round trips ---------------------------------------------------------------------------

#[test]
fn round_trip_every_codec_and_level() {
    let levels: [(Compression, &[Option<i32>]); 5] = [
        (Compression::None, &[None]),
        (Compression::Gzip, &[None, Some(0), Some(1), Some(9)]),
        (Compression::Snappy, &[None]),
        (Compression::Lz4, &[None]),
        (Compression::Zstd, &[None, Some(-5), Some(1), Some(10)]),
    ];
    for input in [Vec::new(), payload(), sample(1_000_000)] {
        for (codec, levels) in levels {
            for &level in levels {
                let mut out = b"prefix".to_vec();
                compress(codec, level, &input, &mut out).expect("compress");
                assert_eq!(&out[..6], b"prefix", "{codec} {level:?} must append");
                let frame = &out[6..];
                let stores = codec == Compression::None || level == Some(0);
                if !stores && input.len() > 1000 {
                    assert!(
                        frame.len() < input.len(),
                        "{codec} {level:?} did not compress"
                    );
                }
                for decode in [decompress, decompress_legacy_v0] {
                    let back = decode(codec, frame, input.len()).expect("decompress");
                    assert!(
                        back == input,
                        "{codec} {level:?} round trip, {} bytes",
                        input.len()
                    );
                }
            }
        }
    }
}

#[test]
fn shared_decoding_reuses_buffers_without_old_bytes_or_a_looser_limit() {
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let (large, small) = (sample(700_000), payload());
    for codec in codecs {
        let (large_frame, small_frame) = (compressed(codec, &large), compressed(codec, &small));
        // The large output goes back to the pool when dropped; the next decodes may get its
        // buffer, with room far beyond what they may produce.
        let first = decompress_shared(codec, &large_frame, 1 << 20).expect("large");
        assert!(first == large, "{codec}: large");
        drop(first);
        for _ in 0..3 {
            let back = decompress_shared(codec, &small_frame, small.len()).expect("small");
            assert_eq!(&back[..], &small[..], "{codec}: small after large");
            assert_eq!(
                decompress_shared(codec, &large_frame, large.len() - 1),
                Err(CompressionError::TooLarge {
                    codec,
                    limit: large.len() - 1
                }),
                "{codec}: the limit with a recycled buffer"
            );
        }
    }
}

#[test]
fn zstd_with_a_reused_context_keeps_the_limit_and_recovers_from_corruption() {
    let (first, second) = (sample(1000), sample(5000));
    let one = compressed(Compression::Zstd, &first);
    let two = [one.clone(), compressed(Compression::Zstd, &second)].concat();
    let both = [first.clone(), second].concat();
    // Room to spare in the buffer (as a recycled one has) must not loosen the limit.
    for limit in [1000, 5999] {
        let mut out = Vec::with_capacity(1 << 20);
        assert_eq!(
            decompress_into(Compression::Zstd, &two, limit, false, &mut out),
            Err(CompressionError::TooLarge {
                codec: Compression::Zstd,
                limit
            }),
            "limit {limit}"
        );
    }
    let mut out = Vec::with_capacity(1 << 20);
    let n = decompress_into(Compression::Zstd, &two, 6000, false, &mut out).expect("two frames");
    assert_eq!(&out[..n], &both[..]);
    // The thread's context is clean after a failure: a cut frame, a corrupt one, then a good one.
    let mut bad = one.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut out = Vec::new();
    assert!(decompress_into(
        Compression::Zstd,
        &one[..one.len() / 2],
        1 << 20,
        false,
        &mut out
    )
    .is_err());
    assert!(decompress_into(Compression::Zstd, &bad, 1 << 20, false, &mut out).is_err());
    let n = decompress_into(Compression::Zstd, &one, 1000, false, &mut out).expect("one frame");
    assert_eq!(&out[..n], &first[..]);
}

/// A zstd frame whose header announces `announced` bytes instead of what it holds.
fn zstd_frame_announcing(data: &[u8], announced: u64) -> Vec<u8> {
    let mut frame = compressed(Compression::Zstd, data);
    let descriptor = frame[4];
    let single_segment = descriptor & 0x20 != 0;
    let at = 5 + usize::from(!single_segment) + [0, 1, 2, 4][usize::from(descriptor & 3)];
    let width = [usize::from(single_segment), 2, 4, 8][usize::from(descriptor >> 6)];
    assert_eq!(width, 2, "a frame of {} bytes", data.len());
    let field = u16::try_from(announced - 256).expect("two-byte size field");
    frame[at..at + 2].copy_from_slice(&field.to_le_bytes());
    frame
}

#[test]
fn zstd_decodes_in_one_shot_only_a_single_frame_announcing_a_size_within_the_limit() {
    let data = sample(10_000);
    let one = compressed(Compression::Zstd, &data);
    assert_eq!(super::zstd_single_frame_size(&one, 10_000), Some(10_000));
    assert_eq!(
        super::zstd_single_frame_size(&one, 9_999),
        None,
        "over the limit"
    );
    let two = [one.clone(), one.clone()].concat();
    assert_eq!(
        super::zstd_single_frame_size(&two, 1 << 20),
        None,
        "two frames"
    );
    let stream = hex(ZSTD_PY_STREAM);
    assert_eq!(
        super::zstd_single_frame_size(&stream, 1 << 20),
        None,
        "no size"
    );
    assert_eq!(
        super::zstd_single_frame_size(&one[..one.len() - 1], 1 << 20),
        None,
        "cut"
    );
    let zeros = compressed(Compression::Zstd, &vec![0; 1 << 20]);
    assert!(zeros.len() * 255 < 1 << 20, "{} bytes", zeros.len());
    assert_eq!(
        super::zstd_single_frame_size(&zeros, 1 << 20),
        None,
        "expands too far"
    );
    assert_eq!(
        decompress(Compression::Zstd, &zeros, 1 << 20).expect("streams"),
        vec![0; 1 << 20]
    );
    // Both paths give the same output, with a recycled buffer's room and old bytes.
    for input in [&one[..], &two[..]] {
        let mut out = vec![0xAA; 1 << 20];
        let n =
            decompress_into(Compression::Zstd, input, 1 << 20, false, &mut out).expect("decodes");
        assert!(out[..n].chunks(data.len()).all(|chunk| chunk == data));
        assert_eq!(n, input.len() / one.len() * data.len());
    }
}

#[test]
fn a_zstd_frame_announcing_a_false_size_is_corrupt_whatever_the_room() {
    let data = sample(10_000);
    for announced in [9_000, 11_000] {
        let frame = zstd_frame_announcing(&data, announced);
        for room in [0, 1 << 20] {
            let mut out = Vec::with_capacity(room);
            let result = decompress_into(Compression::Zstd, &frame, 1 << 20, false, &mut out);
            assert!(
                matches!(result, Err(CompressionError::Corrupt { .. })),
                "announcing {announced}, room {room}: {result:?}"
            );
        }
    }
    // The true size decodes: only the header was changed above.
    let frame = zstd_frame_announcing(&data, 10_000);
    assert_eq!(
        decompress(Compression::Zstd, &frame, 10_000).expect("true"),
        data
    );
}

#[test]
fn gzip_gets_the_room_its_trailer_announces_and_no_more_unless_it_needs_it() {
    let data = sample(13_000);
    let frame = compressed(Compression::Gzip, &data);
    let mut out = Vec::new();
    let n = decompress_into(Compression::Gzip, &frame, 1 << 20, false, &mut out).expect("gzip");
    assert_eq!(&out[..n], &data[..]);
    assert!(
        out.capacity() < 14_000,
        "room {} for 13,000 bytes",
        out.capacity()
    );
    // A trailer that lies (it is not checked before the end) changes the room, not the result.
    let at = frame.len() - 4;
    for announced in [0u32, 1, 12_999, 13_001, 70_000] {
        let mut lying = frame.clone();
        lying[at..].copy_from_slice(&announced.to_le_bytes());
        let mut out = Vec::new();
        let result = decompress_into(Compression::Gzip, &lying, 1 << 20, false, &mut out);
        assert!(
            matches!(result, Err(CompressionError::Corrupt { .. })),
            "announcing {announced}: {result:?}"
        );
    }
    // Two members: the trailer speaks for the last one only; all of both comes out, within
    // the limit, which a trailer announcing more than it cannot loosen.
    let two = [frame.clone(), compressed(Compression::Gzip, &data[..100])].concat();
    let n = decompress_into(Compression::Gzip, &two, 1 << 20, false, &mut out).expect("two");
    assert_eq!(n, 13_100);
    assert_eq!(&out[..n], &[&data[..], &data[..100]].concat()[..]);
    for limit in [13_099, 12_999, 100] {
        assert_eq!(
            decompress_into(Compression::Gzip, &two, limit, false, &mut Vec::new()),
            Err(CompressionError::TooLarge {
                codec: Compression::Gzip,
                limit
            }),
            "limit {limit}"
        );
    }
    assert_eq!(
        decompress(Compression::Gzip, &frame, 13_000).expect("exactly the limit"),
        data
    );
}

#[test]
fn extreme_zstd_levels_round_trip() {
    let input = payload();
    let levels = zstd::compression_level_range();
    for level in [*levels.start(), 22] {
        let mut out = Vec::new();
        compress(Compression::Zstd, Some(level), &input, &mut out).expect("compress");
        assert_eq!(decompress(Compression::Zstd, &out, 1000), Ok(input.clone()));
    }
}

#[test]
fn levels_a_codec_does_not_have_are_rejected() {
    let cases = [
        (Compression::Gzip, -1),
        (Compression::Gzip, 10),
        (Compression::Zstd, 23),
        (Compression::Zstd, i32::MIN),
        (Compression::Snappy, 1),
        (Compression::Lz4, 1),
        (Compression::Lz4, 0),
        (Compression::None, 1),
    ];
    for (codec, level) in cases {
        let mut out = Vec::new();
        match compress(codec, Some(level), b"abc", &mut out) {
            Err(CompressionError::InvalidLevel {
                codec: c,
                level: l,
                detail,
            }) => {
                assert_eq!((c, l), (codec, level));
                assert!(!detail.is_empty());
            }
            other => panic!("{codec} level {level}: {other:?}"),
        }
        assert!(out.is_empty(), "{codec}: nothing written on error");
    }
    let err = compress(Compression::Snappy, Some(3), b"", &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("no compression levels"), "{err}");
}

// ---- vectors from other implementations ----------------------------------------------------

#[test]
fn decodes_vectors_from_other_implementations() {
    let cases = [
        (Compression::Gzip, GZIP_PY),
        (Compression::Snappy, SNAPPY_RAW_LIBSNAPPY),
        (Compression::Snappy, SNAPPY_XERIAL_JAVA),
        (Compression::Snappy, SNAPPY_XERIAL_KAFKA_PYTHON),
        (Compression::Lz4, LZ4_PY),
        (Compression::Lz4, LZ4_PY_CHECKSUMS),
        (Compression::Zstd, ZSTD_PY),
        (Compression::Zstd, ZSTD_PY_STREAM),
    ];
    for (codec, vector) in cases {
        let input = hex(vector);
        for decode in [decompress, decompress_legacy_v0] {
            assert_eq!(
                decode(codec, &input, 114),
                Ok(payload()),
                "{codec} {vector}"
            );
            assert!(
                is_too_large(&decode(codec, &input, 113)),
                "{codec} {vector}"
            );
        }
    }
}

#[test]
fn decodes_hand_built_raw_snappy() {
    let input = hex(SNAPPY_RAW_BY_HAND);
    assert_eq!(input, [0x0c, 0x08, b'a', b'b', b'c', 0x15, 0x03]);
    assert_eq!(
        decompress(Compression::Snappy, &input, 12),
        Ok(b"abcabcabcabc".to_vec())
    );
}

#[test]
fn broken_lz4_header_checksum_only_in_legacy_v0() {
    let old = hex(LZ4_OLD_KAFKA);
    assert_eq!(
        decompress_legacy_v0(Compression::Lz4, &old, 114),
        Ok(payload())
    );
    let strict = decompress(Compression::Lz4, &old, 114);
    assert!(is_corrupt(&strict), "{strict:?}");

    // The same frame with the correct HC is accepted by both.
    let mut fixed = old.clone();
    fixed[6] = lz4::header_checksum(&old[4..6]);
    assert_ne!(fixed[6], old[6]);
    assert_eq!(decompress(Compression::Lz4, &fixed, 114), Ok(payload()));
    assert_eq!(
        decompress_legacy_v0(Compression::Lz4, &fixed, 114),
        Ok(payload())
    );

    // A checksum that is neither is still rejected.
    for hc in 0..=255u8 {
        if hc == old[6] || hc == fixed[6] {
            continue;
        }
        let mut wrong = old.clone();
        wrong[6] = hc;
        assert!(is_corrupt(&decompress_legacy_v0(
            Compression::Lz4,
            &wrong,
            114
        )));
    }

    // With a content size in the descriptor the broken HC covers 14 bytes.
    let modern = hex(LZ4_PY);
    let mut broken = modern.clone();
    broken[14] = lz4::header_checksum(&modern[..14]);
    assert_ne!(broken[14], modern[14]);
    assert!(is_corrupt(&decompress(Compression::Lz4, &broken, 114)));
    assert_eq!(
        decompress_legacy_v0(Compression::Lz4, &broken, 114),
        Ok(payload())
    );
}

#[test]
fn xxh32_matches_python_xxhash() {
    // python -c 'import xxhash; print(hex(xxhash.xxh32(b"konsumer").intdigest()))' etc.
    assert_eq!(lz4::xxh32(b""), 0x02cc_5d05);
    assert_eq!(lz4::xxh32(b"konsumer"), 0xca10_e9b7);
    let header_sized: Vec<u8> = (0..19).collect();
    assert_eq!(lz4::xxh32(&header_sized), 0x1bd0_703f);
}

// ---- decompression bombs ---------------------------------------------------------------------

#[test]
fn a_mebibyte_of_zeros_is_bounded_by_the_limit() {
    let zeros = vec![0u8; 1 << 20];
    for codec in Compression::ALL {
        let bomb = compressed(codec, &zeros);
        for decode in [decompress, decompress_legacy_v0] {
            let small = decode(codec, &bomb, 1000);
            assert_eq!(
                small,
                Err(CompressionError::TooLarge { codec, limit: 1000 }),
                "{codec}"
            );
            assert!(
                is_too_large(&decode(codec, &bomb, (1 << 20) - 1)),
                "{codec}"
            );
            let exact = decode(codec, &bomb, 1 << 20).expect("exact limit");
            assert!(exact == zeros, "{codec}");
            assert!(exact.capacity() <= 1 << 20, "{codec} over-allocated");
        }
        // At a limit that is no power of two, growth by doubling must still stop at the limit.
        let odd = sample(1_000_003);
        let exact = decompress(codec, &compressed(codec, &odd), odd.len()).expect("exact");
        assert!(exact == odd, "{codec}");
        assert!(exact.capacity() <= odd.len(), "{codec} over-allocated");
    }
}

#[test]
fn raw_snappy_announcing_4_gib_is_too_large_without_allocating() {
    let announcements: [&[u8]; 3] = [
        &[0xff, 0xff, 0xff, 0xff, 0x0f], // 2^32 - 1, snappy's maximum
        &[0x80, 0x80, 0x80, 0x80, 0x10], // 2^32, beyond the format
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], // 2^56 - 1, overlong varint
    ];
    for announced in announcements {
        let mut input = announced.to_vec();
        input.extend_from_slice(&[0x00, b'x']);
        let (result, largest) =
            largest_allocation_during(|| decompress(Compression::Snappy, &input, 1000));
        assert!(
            is_too_large(&result) || (announced.len() > 5 && is_corrupt(&result)),
            "{announced:02x?}: {result:?}"
        );
        assert!(largest < 4096, "{announced:02x?} allocated {largest} bytes");
    }
    // Beyond snappy's 4 GiB limit is garbage, not a bomb, when the limit is larger still.
    let (result, largest) = largest_allocation_during(|| {
        decompress(
            Compression::Snappy,
            &[0x80, 0x80, 0x80, 0x80, 0x10, 0],
            usize::MAX,
        )
    });
    assert!(is_corrupt(&result), "{result:?}");
    assert!(largest < 4096, "allocated {largest} bytes");
}

/// The 16-byte xerial header followed by the given chunks, each length-prefixed.
fn xerial(chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = hex("82534e41505059000000000100000001");
    for chunk in chunks {
        out.extend_from_slice(&i32::try_from(chunk.len()).expect("small").to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[test]
fn xerial_bombs_are_too_large_without_allocating() {
    // One chunk announcing 4 GiB - 1.
    let input = xerial(&[&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, b'x']]);
    let (result, largest) =
        largest_allocation_during(|| decompress(Compression::Snappy, &input, 1 << 20));
    assert!(is_too_large(&result), "{result:?}");
    assert!(largest < 4096, "allocated {largest} bytes");

    // Many chunks that are each under the limit but not together.
    let block = compressed(Compression::Snappy, &[0u8; 32 * 1024]);
    let input = xerial(&[block.as_slice(); 32]);
    assert_eq!(
        decompress(Compression::Snappy, &input, 1 << 20),
        Ok(vec![0u8; 1 << 20])
    );
    let (result, largest) =
        largest_allocation_during(|| decompress(Compression::Snappy, &input, 100 * 1024));
    assert!(is_too_large(&result), "{result:?}");
    assert!(largest <= 100 * 1024, "allocated {largest} bytes");

    let input = hex(SNAPPY_XERIAL_KAFKA_PYTHON);
    assert!(is_too_large(&decompress(Compression::Snappy, &input, 100)));
}

#[test]
fn malformed_xerial_framing_is_corrupt() {
    let block = compressed(Compression::Snappy, b"abc");
    // A chunk length past the end of the input.
    let mut long = xerial(&[&block]);
    long[16..20].copy_from_slice(&1000i32.to_be_bytes());
    // A negative chunk length.
    let mut negative = xerial(&[&block]);
    negative[16..20].copy_from_slice(&(-1i32).to_be_bytes());
    // A length prefix cut short.
    let mut stray = xerial(&[&block]);
    stray.extend_from_slice(&[0, 0]);
    // A chunk that is no snappy block.
    let empty_chunk = xerial(&[&[]]);
    let garbage_chunk = xerial(&[&[0x05, 0xff]]);
    for input in [
        long,
        negative,
        stray,
        empty_chunk,
        garbage_chunk,
        hex("82534e415050590000000001"),
    ] {
        let result = decompress(Compression::Snappy, &input, 1 << 20);
        assert!(is_corrupt(&result), "{input:02x?}: {result:?}");
    }
    // Header only: an empty stream, as snappy-java reads it.
    assert_eq!(
        decompress(Compression::Snappy, &xerial(&[]), 10),
        Ok(Vec::new())
    );
}

#[test]
fn xerial_truncated_inside_a_chunk_is_corrupt() {
    let input = hex(SNAPPY_XERIAL_KAFKA_PYTHON);
    for cut in 0..input.len() {
        // A generous limit: cut inside the magic, the input is read as raw snappy announcing
        // 10626 bytes, which must then fail as corrupt, not merely as too large.
        let result = decompress(Compression::Snappy, &input[..cut], 1 << 20);
        match cut {
            // Cut at the chunk boundaries: the framing has no end mark, so a prefix of chunks
            // is a valid (shorter) stream.
            16 => assert_eq!(result, Ok(Vec::new())),
            SNAPPY_XERIAL_KAFKA_PYTHON_SECOND_CHUNK => {
                assert_eq!(result.map(|v| v.len()), Ok(64));
            }
            _ => assert!(is_corrupt(&result), "cut at {cut}: {result:?}"),
        }
    }
}

// ---- corrupt and truncated input ------------------------------------------------------------

#[test]
fn every_truncation_is_an_error() {
    let input = sample(3000);
    for codec in Compression::ALL {
        if codec == Compression::None {
            continue;
        }
        let frame = compressed(codec, &input);
        for cut in 0..frame.len() {
            for decode in [decompress, decompress_legacy_v0] {
                let result = decode(codec, &frame[..cut], 1 << 20);
                assert!(is_corrupt(&result), "{codec} cut at {cut}: {result:?}");
            }
        }
    }
}

#[test]
fn trailing_garbage_is_an_error() {
    let input = sample(3000);
    for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let mut frame = compressed(codec, &input);
        frame.extend_from_slice(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09");
        let result = decompress(codec, &frame, 1 << 20);
        assert!(is_corrupt(&result), "{codec}: {result:?}");
    }
}

#[test]
fn garbage_is_an_error_for_every_codec() {
    let garbage: [&[u8]; 5] = [
        b"",
        b"abcd",
        b"this is not compressed at all",
        &[0xff; 64],
        &[0x00; 64],
    ];
    for codec in Compression::ALL {
        if codec == Compression::None {
            continue;
        }
        for input in garbage {
            for decode in [decompress, decompress_legacy_v0] {
                let result = decode(codec, input, 1 << 20);
                assert!(result.is_err(), "{codec} {input:02x?}: {result:?}");
            }
        }
    }
}

/// Inputs aimed at lz4_flex's soft spots: where it would read a truncated header with
/// `read_exact(..).unwrap()`, block-size codes it does not know, and the inputs it accepts as a
/// clean (empty or partial) stream.
#[test]
fn lz4_frames_lz4_flex_would_mishandle_are_corrupt() {
    let valid = hex(LZ4_PY);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        // lz4_flex alone decodes any 4 bytes to an empty stream.
        ("magic only", valid[..4].to_vec()),
        ("other 4 bytes", b"abcd".to_vec()),
        // FLG announces a content size the input does not have (the unwrap site).
        ("content size cut", hex("04224d18684000000000")),
        ("descriptor without HC", valid[..14].to_vec()),
        ("legacy frame magic", hex("02214c18080000000000000000")),
        ("skippable frame", hex("504d2a1804000000deadbeef")),
        ("version 00", hex("04224d18004000000000")),
        // Dictionaries are unsupported by lz4_flex and never used by Kafka.
        ("dictionary id", {
            let mut f = hex("04224d18614000000000");
            f.push(lz4::header_checksum(&f[4..10]));
            f.extend_from_slice(&[0, 0, 0, 0]);
            f
        }),
    ];
    for bd in [0x00u8, 0x10, 0x20, 0x30, 0x80, 0x41] {
        let mut f = hex("04224d1860");
        f.push(bd);
        f.push(lz4::header_checksum(&[0x60, bd]));
        f.extend_from_slice(&[0, 0, 0, 0]);
        cases.push(("block size code", f));
    }
    // lz4_flex alone returns the first block of a frame cut at a block boundary.
    let multi_block = compressed(Compression::Lz4, &sample(200_000));
    let first_block = u32::from_le_bytes(multi_block[7..11].try_into().expect("4 bytes"));
    let boundary = 11 + (first_block & 0x7fff_ffff) as usize;
    assert!(boundary < multi_block.len() - 4);
    cases.push(("cut at a block boundary", multi_block[..boundary].to_vec()));
    cases.push(("no end mark", multi_block[..multi_block.len() - 4].to_vec()));
    // lz4_flex alone stops after the first frame and ignores the rest.
    let mut two_frames = valid.clone();
    two_frames.extend_from_slice(&valid);
    cases.push(("two frames", two_frames));
    // A block size with the uncompressed bit larger than the frame's block maximum.
    cases.push(("oversized stored block", {
        let mut f = hex("04224d186040");
        f.push(lz4::header_checksum(&[0x60, 0x40]));
        f.extend_from_slice(&(0x8000_0000u32 | 70_000).to_le_bytes());
        f.extend_from_slice(&vec![0u8; 70_000]);
        f.extend_from_slice(&[0, 0, 0, 0]);
        f
    }));

    for (what, input) in cases {
        for decode in [decompress, decompress_legacy_v0] {
            let result = decode(Compression::Lz4, &input, 1 << 20);
            assert!(is_corrupt(&result), "{what}: {result:?}");
        }
    }
}

/// Frames of independent blocks decode block by block in `lz4` (no `FrameDecoder`); every
/// frame option must read back as lz4_flex's own decoder reads it, and every checksum, size
/// and reserved bit must still be checked on that path.
fn lz4_frame(
    input: &[u8],
    block_size: lz4_flex::frame::BlockSize,
    block_checksums: bool,
    content_checksum: bool,
    content_size: bool,
) -> Vec<u8> {
    use std::io::Write;
    let info = lz4_flex::frame::FrameInfo::new()
        .block_size(block_size)
        .block_mode(lz4_flex::frame::BlockMode::Independent)
        .block_checksums(block_checksums)
        .content_checksum(content_checksum)
        .content_size(content_size.then_some(input.len() as u64));
    let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
    encoder.write_all(input).expect("in memory");
    encoder.finish().expect("in memory")
}

fn lz4_flex_reads(frame: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    lz4_flex::frame::FrameDecoder::new(frame)
        .read_to_end(&mut out)
        .expect("lz4_flex reads its own frame");
    out
}

#[test]
fn independent_block_frames_decode_as_lz4_flex_reads_them() {
    use lz4_flex::frame::BlockSize;
    let data = sample(300_000);
    for block_size in [BlockSize::Max64KB, BlockSize::Max256KB, BlockSize::Max1MB] {
        for flags in 0..8u8 {
            let (bc, cc, cs) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
            let frame = lz4_frame(&data, block_size, bc, cc, cs);
            let what =
                format!("{block_size:?} block checksums {bc} content checksum {cc} size {cs}");
            assert_eq!(lz4_flex_reads(&frame), data, "{what}");
            assert_eq!(
                decompress(Compression::Lz4, &frame, 1 << 20).as_deref(),
                Ok(&data[..]),
                "{what}"
            );
            assert!(
                is_too_large(&decompress(Compression::Lz4, &frame, data.len() - 1)),
                "{what}"
            );
        }
    }
    // Incompressible data is stored in uncompressed blocks.
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let frame = lz4_frame(&noise, BlockSize::Max64KB, true, true, false);
    assert_eq!(
        decompress(Compression::Lz4, &frame, 1 << 20),
        Ok(noise.clone())
    );
    assert!(is_too_large(&decompress(
        Compression::Lz4,
        &frame,
        noise.len() - 1
    )));
}

#[test]
fn independent_block_frames_still_check_everything() {
    use lz4_flex::frame::BlockSize;
    let data = sample(150_000);
    let flip = |frame: &[u8], at: usize| {
        let mut f = frame.to_vec();
        f[at] ^= 0x01;
        f
    };
    let both = lz4_frame(&data, BlockSize::Max64KB, true, true, true);
    let header_len = 4 + 2 + 8 + 1;
    let first_block = u32::from_le_bytes(both[header_len..header_len + 4].try_into().expect("4"));
    let first_block_end = header_len + 4 + (first_block & 0x7fff_ffff) as usize;
    let cases = [
        ("header checksum", flip(&both, header_len - 1)),
        ("content size", flip(&both, 6)),
        ("content size with its header checksum", {
            let mut f = flip(&both, 6);
            f[header_len - 1] = lz4::header_checksum(&f[4..header_len - 1]);
            f
        }),
        ("block checksum", flip(&both, first_block_end)),
        ("block contents", flip(&both, first_block_end - 1)),
        ("content checksum", flip(&both, both.len() - 1)),
        ("reserved FLG bit", {
            let mut f = both.clone();
            f[4] |= 0b10;
            f[header_len - 1] = lz4::header_checksum(&f[4..header_len - 1]);
            f
        }),
        ("reserved BD bit", {
            let mut f = both.clone();
            f[5] |= 0b1;
            f[header_len - 1] = lz4::header_checksum(&f[4..header_len - 1]);
            f
        }),
    ];
    for (what, frame) in cases {
        let result = decompress(Compression::Lz4, &frame, 1 << 20);
        assert!(is_corrupt(&result), "{what}: {:?}", result.map(|v| v.len()));
    }
}

#[test]
fn empty_payloads_decode_only_for_none() {
    assert_eq!(decompress(Compression::None, b"", 0), Ok(Vec::new()));
    assert_eq!(
        decompress(Compression::None, b"abc", 3),
        Ok(b"abc".to_vec())
    );
    assert!(is_too_large(&decompress(Compression::None, b"abc", 2)));
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        assert!(is_corrupt(&decompress(codec, b"", 10)), "{codec}");
    }
}

// ---- property tests --------------------------------------------------------------------------

/// Headers that get arbitrary bytes past each decoder's first check.
fn codec_prefix() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(hex("1f8b0800000000000003")),
        Just(hex("82534e41505059000000000100000001")),
        // Valid descriptors (independent blocks; block and content checksums), correct HC.
        Just(hex("04224d18604082")),
        Just(hex("04224d186470b9")),
        // The broken magic-0 HC.
        Just(hex("04224d1860401a")),
        Just(hex("04224d1868400000000000000000")),
        Just(hex("28b52ffd")),
    ]
}

fn codec() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}

fn assert_bounded(codec: Compression, input: &[u8], limit: usize) {
    for decode in [decompress, decompress_legacy_v0] {
        if let Ok(out) = decode(codec, input, limit) {
            assert!(out.len() <= limit, "{codec}: {} > {limit}", out.len());
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_or_exceed_the_limit(
        prefix in codec_prefix(),
        tail in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..24),
            prop::collection::vec(any::<u8>(), 0..600),
        ],
        limit in 0usize..4096,
    ) {
        let mut input = prefix;
        input.extend_from_slice(&tail);
        for codec in Compression::ALL {
            assert_bounded(codec, &input, limit);
        }
    }

    #[test]
    fn mutated_frames_never_panic_or_exceed_the_limit(
        codec in codec(),
        data in prop::collection::vec(prop::sample::select(b"kafka\x00\xff".to_vec()), 0..3000),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        limit in 0usize..4000,
    ) {
        let mut frame = compressed(codec, &data);
        for (at, byte) in mutations {
            if !frame.is_empty() {
                let at = at.index(frame.len());
                frame[at] = byte;
            }
        }
        assert_bounded(codec, &frame, limit);
        let cut = cut.index(frame.len() + 1);
        assert_bounded(codec, &frame[..cut], limit);
    }

    #[test]
    fn arbitrary_data_round_trips(
        codec in codec(),
        data in prop::collection::vec(any::<u8>(), 0..5000),
    ) {
        let frame = compressed(codec, &data);
        prop_assert_eq!(decompress(codec, &frame, data.len()), Ok(data.clone()));
        prop_assert_eq!(decompress_legacy_v0(codec, &frame, data.len()), Ok(data));
    }
}
