//! Rewriting arbitrary bytes as a clear fragment / init segment into a
//! protected one (cenc, cbcs), and parsing them as a ClearKey request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_drm::fuzzing::fragment(data);
});
