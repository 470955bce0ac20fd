//! The Socket.IO layer alone, as Palaver sets it up: Palaver's accept loop
//! and `palaver-sio` with Palaver's settings, and nothing else (no
//! database, no validation, no authentication). It is a yardstick for
//! BENCHMARKS.md ("The Socket.IO layer alone"): what the layer costs on
//! the machine, measured in the same run as Palaver and the reference
//! server, so that Palaver's figures can be read against the ceiling of
//! the layer it is built on.
//!
//! It speaks the reference server's dialect (`auth: {userId}`, no acks),
//! so `palaver-bench --target reference` drives it. Each socket is
//! registered under its user; a `message` goes to the sockets of its
//! `receiverId` and back to its sender, the echo standing in for Palaver's
//! ack: both servers send two frames per message, as Palaver does.
//!
//! ```text
//! cargo run --release -p palaver --example socketio_alone -- 127.0.0.1:3200
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::RwLock;

use futures_util::future::BoxFuture;
use palaver_sio::socketio::packet;
use palaver_sio::{Connect, DisconnectReason, Event, Handler, Socket};
use serde_json::Value;

/// Sockets by user, as Palaver's registry keeps them.
#[derive(Default)]
struct Alone {
    users: RwLock<HashMap<i64, Vec<Socket<i64>>>>,
}

impl Handler for Alone {
    type Data = i64;

    fn connect(&self, request: Connect<'_>) -> BoxFuture<'static, Result<i64, String>> {
        let user = request
            .auth
            .and_then(|a| serde_json::from_str::<Value>(a.get()).ok())
            .and_then(|a| a.get("userId").and_then(Value::as_i64));
        Box::pin(async move { user.ok_or_else(|| "userId missing".to_string()) })
    }

    fn connected(&self, socket: &Socket<i64>) {
        let mut users = self.users.write().unwrap();
        users
            .entry(*socket.data())
            .or_default()
            .push(socket.clone());
    }

    fn event(&self, socket: &Socket<i64>, event: Event<'_>) {
        if event.name != "message" {
            return;
        }
        let Some(arg) = event.args.first() else {
            return;
        };
        let frame = packet::event_raw("/", "message", &[arg], 0);
        let to = serde_json::from_str::<Value>(arg.get())
            .ok()
            .and_then(|m| m.get("receiverId").and_then(Value::as_i64));
        if let Some(to) = to {
            if let Some(list) = self.users.read().unwrap().get(&to) {
                for s in list {
                    let _ = s.send(frame.clone());
                }
            }
        }
        let _ = socket.send(frame);
    }

    fn disconnected(&self, socket: &Socket<i64>, _reason: DisconnectReason) {
        let mut users = self.users.write().unwrap();
        if let Some(list) = users.get_mut(socket.data()) {
            list.retain(|s| !s.same(socket));
            if list.is_empty() {
                users.remove(socket.data());
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3200".into())
        .parse()?;
    let sockets = palaver_sio::server(palaver::realtime::config(65_536), Alone::default());
    let handler =
        move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
              req: axum::extract::Request| {
            let sockets = sockets.clone();
            async move { sockets.handle(req, peer).await.map(axum::body::Body::new) }
        };
    let router = axum::Router::new().route("/socket.io/", axum::routing::any(handler));
    let listener = palaver::listen(addr, 4096)?;
    println!("socketio_alone listening on {addr}");
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
