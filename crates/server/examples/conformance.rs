//! The Socket.IO layer set up as the official protocol test suites expect
//! (see `palaver_sio::conformance`).
//!
//! `cargo run --release --example conformance -- --listen 127.0.0.1:3000`

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = "127.0.0.1:3000".parse().expect("valid address");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| std::io::Error::other("--listen needs HOST:PORT"))?;
            }
            other => return Err(std::io::Error::other(format!("unknown argument {other}"))),
        }
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("conformance server on {}", listener.local_addr()?);
    palaver_sio::conformance::serve(listener).await
}
