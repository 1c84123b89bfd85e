//! Differential: Vela's AES-NI CTR stream against the `ctr` crate's, over
//! arbitrary keys, IVs (counter carries included) and call splits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_drm::fuzzing::ctr_stream(data);
});
