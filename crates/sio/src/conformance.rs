//! The layer set up as the official protocol test suites expect
//! (`socketio/engine.io-protocol` and `socketio/socket.io-protocol`,
//! `test-suite/`): `pingInterval` 300 ms, `pingTimeout` 200 ms,
//! `maxPayload` 1,000,000, connect timeout 1,000 ms.
//!
//! - `/engine.io/`: a raw Engine.IO session echoing every message.
//! - `/socket.io/`: namespaces `/` and `/custom`, each emitting `auth` with
//!   the handshake's payload on connection, answering `message` with
//!   `message-back` and acknowledging `message-with-ack`, same arguments.
//!
//! Served by the server crate's `conformance` example and by this crate's
//! protocol tests.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::{self, CloseReason, Engine, EngineHandler, Frame, Hold, Message, Session};
use crate::socketio::{self, Connect, DisconnectReason, Event, Handler, Socket};
use futures_util::future::BoxFuture;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use tokio::net::TcpListener;

/// Echoes every Engine.IO message.
pub struct Echo;

impl EngineHandler for Echo {
    type Conn = ();

    fn conn(&self) {}

    fn message(
        self: &Arc<Self>,
        session: &Arc<Session<()>>,
        message: Message<'_>,
    ) -> Result<Option<Hold>, CloseReason> {
        let frame = match message {
            Message::Text(text) => Frame::Text(format!("4{text}").into()),
            Message::Binary(bytes) => Frame::Binary(bytes),
        };
        let _ = session.send(frame);
        Ok(None)
    }

    fn closed(self: &Arc<Self>, _session: &Arc<Session<()>>, _reason: CloseReason) {}
}

/// The test suite's Socket.IO server.
pub struct Suite;

impl Handler for Suite {
    /// The handshake's auth payload.
    type Data = Box<RawValue>;

    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/" || nsp == "/custom"
    }

    fn connect(&self, request: Connect<'_>) -> BoxFuture<'static, Result<Box<RawValue>, String>> {
        let auth = request
            .auth
            .map(|a| a.to_owned())
            .unwrap_or_else(|| RawValue::from_string("{}".into()).expect("valid JSON"));
        Box::pin(async move { Ok(auth) })
    }

    /// The suite reads the CONNECT reply and the `auth` event with one
    /// listener each, attached one after the other: two frames that
    /// arrive in one TCP read reach only the first. Node.js's server sends
    /// them an event-loop turn apart; this server sends `auth` a moment
    /// after the reply for the same reason.
    fn connected(&self, socket: &Socket<Box<RawValue>>) {
        let socket = socket.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = socket.emit("auth", socket.data());
        });
    }

    fn event(&self, socket: &Socket<Box<RawValue>>, event: Event<'_>) {
        match (&*event.name, event.ack) {
            ("message", _) => {
                let _ = socket.emit_raw("message-back", &event.args, event.attachments);
            }
            ("message-with-ack", Some(id)) => {
                let _ = socket.ack_raw(id, &event.args, event.attachments);
            }
            _ => {}
        }
    }

    fn disconnected(&self, _socket: &Socket<Box<RawValue>>, _reason: DisconnectReason) {}
}

pub fn engine_config() -> engine::Config {
    engine::Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        connect_timeout: Some(Duration::from_millis(1000)),
        ..engine::Config::default()
    }
}

/// Serves both endpoints on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let raw = Engine::new(
        engine::Config {
            connect_timeout: None,
            ..engine_config()
        },
        Echo,
    );
    let sio = socketio::server(
        socketio::Config {
            engine: engine_config(),
            ..socketio::Config::default()
        },
        Suite,
    );
    loop {
        let (tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (raw, sio) = (raw.clone(), sio.clone());
        let service = hyper::service::service_fn(move |req| {
            let (raw, sio) = (raw.clone(), sio.clone());
            async move {
                let path = req.uri().path();
                let response = if path == "/engine.io/" || path == "/engine.io" {
                    raw.handle(req, peer).await
                } else if path == "/socket.io/" || path == "/socket.io" {
                    sio.handle(req, peer).await
                } else {
                    hyper::Response::builder()
                        .status(404)
                        .body(engine::Body::default())
                        .expect("valid response")
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            let _ = conn.await;
        });
    }
}
