//! The packager's input path: media events with arbitrary timestamps, flags,
//! track ids and sizes, and every manifest rendered after each change.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_packager::fuzzing::packager_events(data);
});
