//! WHIP PATCH bodies: trickle ICE SDP fragments.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_webrtc::fuzzing::trickle_fragment(data);
});
