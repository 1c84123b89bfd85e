//! Depacketised H.264 pictures through the WHIP video assembler (Annex B
//! split, parameter sets, avcC building, keyframe gating and requests).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_webrtc::fuzzing::h264_pictures(data);
});
