//! Replays the corpora of the layer's fuzz targets (`fuzz/corpus/engine_payload`
//! and `fuzz/corpus/socketio_packet`, plus any crash artifacts) through the
//! same decoders and checks, so every input the fuzzer kept stays harmless
//! in an ordinary `cargo test`, without nightly or libFuzzer.

use std::path::{Path, PathBuf};

use palaver_sio::engine::packet::{decode_payload, decode_text, encode_binary_record, Packet};
use palaver_sio::socketio::packet::{connect_auth, decode, event_args, Kind};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files = Vec::new();
    for dir in [
        fuzz.join("corpus").join(target),
        fuzz.join("artifacts").join(target),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files
}

#[test]
fn every_engine_payload_input_decodes_without_panicking() {
    let files = inputs("engine_payload");
    assert!(!files.is_empty(), "no engine_payload corpus");
    let mut messages = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let run = std::panic::catch_unwind(|| {
            let mut found = 0;
            for packet in decode_payload(&data) {
                match packet {
                    Ok(Packet::Binary(bytes)) => {
                        let mut out = Vec::new();
                        encode_binary_record(&mut out, &bytes);
                        let again: Vec<_> = decode_payload(&out).collect();
                        assert_eq!(again, vec![Ok(Packet::Binary(bytes))]);
                    }
                    Ok(Packet::Message(_)) => found += 1,
                    _ => {}
                }
            }
            if let Ok(text) = std::str::from_utf8(&data) {
                let _ = decode_text(text);
            }
            found
        });
        messages += run.unwrap_or_else(|_| panic!("{} panicked", path.display()));
    }
    assert!(messages > 0, "no corpus input held a message packet");
}

#[test]
fn every_socketio_packet_input_decodes_without_panicking() {
    let files = inputs("socketio_packet");
    assert!(!files.is_empty(), "no socketio_packet corpus");
    let mut events = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let run = std::panic::catch_unwind(|| {
            let Ok(text) = std::str::from_utf8(&data) else {
                return 0;
            };
            let Ok(header) = decode(text, 10) else {
                return 0;
            };
            assert!(header.attachments <= 10);
            match header.kind {
                Kind::Event | Kind::BinaryEvent => usize::from(event_args(header.data).is_ok()),
                Kind::Connect => {
                    let _ = connect_auth(header.data);
                    0
                }
                _ => 0,
            }
        });
        events += run.unwrap_or_else(|_| panic!("{} panicked", path.display()));
    }
    assert!(events > 0, "no corpus input decoded to an event");
}
