//! Start-up: every setting that names something outside the process is
//! checked before anything is written, and each failure is one line that
//! names the thing, the value given and what to do.

mod support;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use support::process::{free_port, palaver, Running};

/// The one line a failed start printed.
fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failed start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

fn sqlite(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("p.db").display())
}

#[test]
fn a_start_that_fails_on_redis_has_written_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = palaver()
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
        .arg(sqlite(dir.path()))
        .args(["--redis-url", &format!("redis://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let err = failure(&out);
    assert!(
        err.contains(&format!("cannot reach Redis at 127.0.0.1:{port}"))
            && err.contains("--redis-url"),
        "{err}"
    );
    assert!(!err.contains("Os {"), "no raw error structure: {err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "the database was created: {left:?}");
}

#[test]
fn start_up_errors_name_the_value_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no").join("such");
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec!["--database-url".into(), "palaver2.db".into()],
            vec!["did you mean sqlite://palaver2.db?".into()],
        ),
        (
            vec!["--database-url".into(), "oracle://x".into()],
            vec!["oracle://x".into(), "expected sqlite://".into()],
        ),
        (
            vec![
                "--database-url".into(),
                format!("sqlite://{}", missing.join("p.db").display()),
            ],
            vec![
                missing.join("p.db").display().to_string(),
                format!("{} does not exist", missing.display()),
            ],
        ),
        (
            vec!["--listen".into(), "localhost".into()],
            vec!["--listen".into(), "no port".into()],
        ),
    ];
    for (args, wanted) in cases {
        let mut cmd = palaver();
        cmd.arg("serve").args(&args);
        if !args.contains(&"--listen".to_string()) {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--database-url".to_string()) {
            cmd.arg("--database-url").arg(sqlite(dir.path()));
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{args:?} started");
        for w in wanted {
            assert!(stderr.contains(&w), "{args:?}: {w:?} not in {stderr}");
        }
    }
    assert!(
        !dir.path().join("p.db").exists(),
        "a refused start wrote nothing"
    );
}

fn healthy(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

#[test]
fn listen_takes_a_port_alone_or_a_host_name() {
    for form in ["port", "localhost:port"] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let listen = form.replace("port", &port.to_string());
        let _server = Running(
            palaver()
                .args(["serve", "--listen", &listen, "--database-url"])
                .arg(sqlite(dir.path()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let started = Instant::now();
        while !healthy(&format!("127.0.0.1:{port}")) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "--listen {listen} did not serve"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
