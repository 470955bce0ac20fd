//! Replays the fuzz corpus (`fuzz/corpus/event`) and any crash artifacts
//! (`fuzz/artifacts/event`) through the decoding the fuzz target drives,
//! so that every input the fuzzer kept stays harmless in an ordinary
//! `cargo test`, without nightly or libFuzzer.

use std::path::{Path, PathBuf};

use palaver::realtime::decode::{decode_input, Decoded, Rejected};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_corpus_input_decodes_without_panicking() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let corpus = inputs(&fuzz.join("corpus/event"));
    let artifacts = inputs(&fuzz.join("artifacts/event"));
    assert!(
        !corpus.is_empty(),
        "no corpus files in {}",
        fuzz.join("corpus/event").display()
    );
    let (mut accepted, mut rejected, mut events) = (0, 0, 0);
    for path in corpus.iter().chain(&artifacts) {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| decode_input(&data))
            .unwrap_or_else(|_| panic!("decoding {} panicked", path.display()));
        match outcome {
            Ok(Decoded::Event { .. }) => {
                accepted += 1;
                events += 1;
            }
            Ok(_) => accepted += 1,
            Err(
                Rejected::Utf8 | Rejected::Engine(_) | Rejected::Packet(_) | Rejected::EventName(_),
            ) => rejected += 1,
        }
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "fuzz_corpus: files={} (corpus {}, artifacts {}) accepted={accepted} (events {events}) rejected={rejected}",
        corpus.len() + artifacts.len(),
        corpus.len(),
        artifacts.len()
    );
    // The seeds include valid events: a decoder that rejected everything
    // would make this replay meaningless.
    assert!(events > 0, "no corpus input decoded to an event");
}
