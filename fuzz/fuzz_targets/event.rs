//! Arbitrary bytes through the server's decoding and validation of one
//! incoming frame and its binary attachments:
//! `palaver::realtime::decode::decode_input` (see there for the layout).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = palaver::realtime::decode::decode_input(data);
});
