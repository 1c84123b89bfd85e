#![no_main]
//! A whole MP4/MOV file: index it, then build every track's init segment and
//! first fragments (`vela_vod::fuzzing::mp4_index`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_vod::fuzzing::mp4_index(data);
});
