//! Arbitrary bytes as the parts of a request head that the origin parses
//! (file names, LL-HLS directives, Range, tokens, the cluster header, key
//! ids, DRM policy values), whichever listener brought the request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_origin::fuzzing::request(data);
});
