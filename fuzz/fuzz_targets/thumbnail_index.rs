//! Arbitrary bytes, cut into pieces, as the thumbnailer's fragmented-MP4
//! index (init segment + fragments of one video track).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_transcode::fuzzing::fmp4_index(data);
});
