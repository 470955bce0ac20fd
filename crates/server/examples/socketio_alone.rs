//! The Socket.IO transport alone, as Palaver sets it up: Palaver's accept
//! loop and socketioxide settings, and nothing else (no database, no
//! validation, no authentication). It is a yardstick for BENCHMARKS.md
//! ("The Socket.IO transport alone"): what socketioxide costs on the
//! machine, measured in the same run as
//! Palaver and the reference server, so that Palaver's figures can be read
//! against the ceiling of the layer it is built on.
//!
//! It speaks the reference server's dialect (`auth: {userId}`, no acks),
//! so `palaver-bench --target reference` drives it. Each socket joins its
//! user's room; a `message` goes to the room of its `receiverId` and back
//! to its sender, the echo standing in for Palaver's ack: both servers send
//! two frames per message, as Palaver does.
//!
//! ```text
//! cargo run --release -p palaver --example socketio_alone -- 127.0.0.1:3200
//! ```

use std::net::SocketAddr;

use serde_json::Value;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::SocketIo;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3200".into())
        .parse()?;
    let (layer, io) = palaver::transport(SocketIo::builder(), 65_536).build_layer();
    io.ns("/", async |s: SocketRef, Data(auth): Data<Value>| {
        let Some(user) = auth.get("userId").and_then(Value::as_i64) else {
            s.disconnect().ok();
            return;
        };
        s.join(user.to_string());
        s.on("message", async |s: SocketRef, Data(msg): Data<Value>| {
            if let Some(to) = msg.get("receiverId").and_then(Value::as_i64) {
                s.to(to.to_string()).emit("message", &msg).await.ok();
            }
            s.emit("message", &msg).ok();
        });
    });
    let listener = palaver::listen(addr, 4096)?;
    println!("socketio_alone listening on {addr}");
    let router = axum::Router::new().layer(layer);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    palaver::accept::serve(
        listener,
        router,
        std::time::Duration::from_secs(30),
        shutdown,
    )
    .await;
    Ok(())
}
