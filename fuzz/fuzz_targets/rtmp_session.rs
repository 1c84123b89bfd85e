//! Arbitrary bytes into the RTMP session core: raw, after a valid handshake,
//! or while publishing (first byte selects, and how reads are cut).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_ingest::fuzzing::rtmp_session(data);
});
