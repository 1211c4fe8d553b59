//! Feeds arbitrary bytes to the record-set decoder the way a consumer would: every batch, both
//! isolation levels, CRC checks on and off (off lets the fuzzer get past the checksum into the
//! record parsing). Any panic, overflow or runaway allocation is a bug.
#![no_main]

use bytes::Bytes;
use konsumer::records::{
    decode_all, decode_fetched, AbortedTransaction, DecodeOptions, Isolation, PartitionFetch,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the options so one corpus explores all of them.
    let Some((&switches, set)) = data.split_first() else {
        return;
    };
    let options = DecodeOptions {
        verify_crc: switches & 1 != 0,
        max_decompressed_bytes: 1 << 20,
    };
    let isolation = if switches & 2 != 0 {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    let aborted = [AbortedTransaction {
        producer_id: i64::from(switches >> 2),
        first_offset: 0,
    }];
    let set = Bytes::copy_from_slice(set);
    let got = decode_fetched(
        set.clone(),
        &PartitionFetch {
            topic: "fuzz",
            partition: 0,
            fetch_offset: 0,
            isolation,
            aborted_transactions: &aborted,
        },
        &options,
    );
    assert!(got.records.iter().all(|r| r.offset >= 0));
    for record in &got.records {
        for header in record.headers().iter() {
            let _ = header.key_str();
        }
    }
    let _ = decode_all(set, &options);
});
