#![no_main]
//! A recording journal after a crash: the first 8 bytes are the media file's
//! length, the rest the journal. Recover, finish, index the finished file
//! (`vela_vod::fuzzing::recording_journal`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vela_vod::fuzzing::recording_journal(data);
});
