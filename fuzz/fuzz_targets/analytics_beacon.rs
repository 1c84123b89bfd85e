//! The analytics beacon's parser and checks (untrusted JSON from browsers),
//! the user-agent classifier and the access log's path classifier.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_control_plane::analytics::fuzzing::beacon(data);
});
