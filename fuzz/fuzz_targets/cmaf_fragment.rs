//! Reading a CMAF fragment back into samples (the Smooth re-boxing path).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_packager::fuzzing::read_fragment(data);
});
