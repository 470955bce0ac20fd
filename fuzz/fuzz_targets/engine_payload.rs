//! Arbitrary bytes as a long-polling POST body through Palaver's
//! Engine.IO decoder (`palaver_sio::engine::packet::decode_payload`), and
//! each text record also as a WebSocket text frame (`decode_text`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use palaver_sio::engine::packet::{decode_payload, decode_text, encode_binary_record, Packet};

fuzz_target!(|data: &[u8]| {
    for packet in decode_payload(data) {
        // A binary record encodes back to a record that decodes to it.
        if let Ok(Packet::Binary(bytes)) = packet {
            let mut out = Vec::new();
            encode_binary_record(&mut out, &bytes);
            let again: Vec<_> = decode_payload(&out).collect();
            assert_eq!(again, vec![Ok(Packet::Binary(bytes))]);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_text(text);
    }
});
