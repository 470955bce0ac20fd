//! Arbitrary text as a Socket.IO packet (what follows Engine.IO's `4`)
//! through Palaver's Socket.IO decoder: the header
//! (`palaver_sio::socketio::packet::decode`), then what the server reads
//! from its data (event arguments, CONNECT auth).

#![no_main]

use libfuzzer_sys::fuzz_target;
use palaver_sio::socketio::packet::{connect_auth, decode, event_args, Kind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(header) = decode(text, 10) else {
        return;
    };
    assert!(header.attachments <= 10);
    match header.kind {
        Kind::Event | Kind::BinaryEvent => {
            let _ = event_args(header.data);
        }
        Kind::Connect => {
            let _ = connect_auth(header.data);
        }
        _ => {}
    }
});
