//! FLV video and audio tag bodies (first byte: video/audio and NAL length size).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_ingest::fuzzing::flv_tag(data);
});
