//! A small Socket.IO v5 (Engine.IO v4) client over WebSocket.
//!
//! It speaks exactly what Palaver's clients speak: the handshake with an
//! `auth` payload, events with and without acks, ping/pong. The integration
//! tests use it to drive a real server, and the load generator uses it to
//! open thousands of connections from one process (optionally bound to a
//! chosen local address, so that many source addresses can be used).
//! It is deliberately minimal: namespace `/` only, text packets only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Ws;

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the namespace connection (`connect_error`);
    /// the payload's `message`.
    #[error("connection refused: {0}")]
    Refused(String),
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("timed out")]
    Timeout,
    #[error("connection closed")]
    Closed,
}

/// tungstenite's read buffer per connection. Its default (128 KiB) is
/// zeroed before every `read`: with thousands of connections each reading a
/// frame or two at a time, that `memset` was half of the load generator's
/// CPU (perf, 10,000 users). 8 KiB still takes dozens of frames per read.
const READ_BUFFER: usize = 8 * 1024;

/// Receives raw `42…` event frames instead of parsed events (the load
/// generator uses this to avoid parsing every delivery into a `Value`).
pub type RawHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// Connection options.
#[derive(Clone, Default)]
pub struct Options {
    /// Handshake `auth` payload, e.g. `{"token": "..."}`.
    pub auth: Option<Value>,
    /// Bind the TCP socket to this local address before connecting.
    pub local_ip: Option<IpAddr>,
    /// Extra query string appended to the Engine.IO URL.
    pub query: Option<String>,
    /// When set, event frames go to this handler, unparsed.
    pub raw_events: Option<RawHandler>,
}

/// What to do with an ack's first argument.
type AckCallback = Box<dyn FnOnce(Value) + Send>;
type AckMap = Arc<Mutex<HashMap<u64, AckCallback>>>;

/// A connected Socket.IO client.
pub struct Client {
    out: mpsc::UnboundedSender<Ws>,
    acks: AckMap,
    next_ack: AtomicU64,
    events: mpsc::UnboundedReceiver<(String, Value)>,
    /// The namespace socket id the server gave us.
    pub sid: String,
}

impl Client {
    /// Connects to `addr` (host:port) with a handshake `auth` payload.
    pub async fn connect(addr: SocketAddr, auth: Option<Value>) -> Result<Client, Error> {
        Self::connect_with(
            addr,
            Options {
                auth,
                ..Default::default()
            },
        )
        .await
    }

    /// Connects with full options.
    pub async fn connect_with(addr: SocketAddr, opts: Options) -> Result<Client, Error> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = opts.local_ip {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        if let Some(q) = &opts.query {
            url.push('&');
            url.push_str(q);
        }
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;

        // Engine.IO open packet, then the Socket.IO CONNECT.
        let open = next_text(&mut ws).await?;
        if !open.starts_with('0') {
            return Err(Error::Protocol(format!(
                "expected open packet, got {open:?}"
            )));
        }
        let connect = match &opts.auth {
            Some(auth) => format!("40{auth}"),
            None => "40".to_string(),
        };
        ws.send(Ws::text(connect)).await?;
        // Events may precede the CONNECT reply (the server can deliver to
        // a socket it has set up before answering); like the official
        // client, keep them for after the connection is established.
        let mut early = Vec::new();
        let sid = loop {
            let text = next_text(&mut ws).await?;
            if text == "2" {
                ws.send(Ws::text("3")).await?;
                continue;
            }
            if let Some(body) = text.strip_prefix("40") {
                let v: Value = serde_json::from_str(body)
                    .map_err(|e| Error::Protocol(format!("bad CONNECT payload: {e}")))?;
                break v["sid"].as_str().unwrap_or_default().to_string();
            }
            if text.starts_with("42") {
                early.push(text);
                continue;
            }
            if let Some(body) = text.strip_prefix("44") {
                let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                let msg = v["message"].as_str().unwrap_or(body).to_string();
                return Err(Error::Refused(msg));
            }
            return Err(Error::Protocol(format!("unexpected packet {text:?}")));
        };

        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Ws>();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let acks: AckMap = Arc::default();
        let raw = opts.raw_events.clone();
        for text in early {
            dispatch(&text, &out, &acks, &ev_tx, raw.as_ref());
        }

        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                let close = matches!(msg, Ws::Close(_));
                if sink.send(msg).await.is_err() || close {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader_acks = acks.clone();
        let pong = out.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Ws::Text(text) = msg else {
                    if matches!(msg, Ws::Close(_)) {
                        break;
                    }
                    continue;
                };
                dispatch(text.as_str(), &pong, &reader_acks, &ev_tx, raw.as_ref());
            }
            // Dropping the ack senders wakes every waiter with `Closed`.
            reader_acks.lock().unwrap().clear();
            let _ = ev_tx.send(("disconnect".into(), Value::Null));
        });

        Ok(Client {
            out,
            acks,
            next_ack: AtomicU64::new(0),
            events,
            sid,
        })
    }

    /// Emits `event` with one argument and waits for the ack's first argument.
    pub async fn emit_ack(&self, event: &str, data: &Value) -> Result<Value, Error> {
        self.emit_ack_timeout(event, data, Duration::from_secs(10))
            .await
    }

    /// Like [`emit_ack`](Self::emit_ack) with a chosen timeout.
    pub async fn emit_ack_timeout(
        &self,
        event: &str,
        data: &Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let rx = self.emit_ack_deferred(event, data)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Emits with an ack id and returns the receiver of the ack without
    /// waiting, so that many emits can be in flight at once.
    pub fn emit_ack_deferred(
        &self,
        event: &str,
        data: &Value,
    ) -> Result<oneshot::Receiver<Value>, Error> {
        let (tx, rx) = oneshot::channel();
        let payload = serde_json::to_string(&(event, data)).expect("json");
        self.emit_raw_with_ack(&payload, move |v| {
            let _ = tx.send(v);
        })?;
        Ok(rx)
    }

    /// Emits an already encoded `[event, data]` array and calls `on_ack`
    /// with the ack's first argument when it arrives.
    pub fn emit_raw_with_ack(
        &self,
        encoded: &str,
        on_ack: impl FnOnce(Value) + Send + 'static,
    ) -> Result<(), Error> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        self.acks.lock().unwrap().insert(id, Box::new(on_ack));
        self.send_raw(format!("42{id}{encoded}"))
    }

    /// Emits without asking for an ack.
    pub fn emit(&self, event: &str, data: &Value) -> Result<(), Error> {
        let payload = serde_json::to_string(&(event, data)).expect("json");
        self.send_raw(format!("42{payload}"))
    }

    /// Sends a raw Engine.IO text packet (for protocol tests).
    pub fn send_raw(&self, text: impl Into<String>) -> Result<(), Error> {
        self.out
            .send(Ws::text(text.into()))
            .map_err(|_| Error::Closed)
    }

    /// The next server → client event (`(name, first argument)`), or `None`
    /// once the connection is closed.
    pub async fn next_event(&mut self) -> Option<(String, Value)> {
        self.events.recv().await
    }

    /// The next event within `timeout`.
    pub async fn next_event_timeout(&mut self, timeout: Duration) -> Option<(String, Value)> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// An event already received, if any, without waiting.
    pub fn try_next_event(&mut self) -> Option<(String, Value)> {
        self.events.try_recv().ok()
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.out.send(Ws::Close(None));
    }
}

async fn next_text<S>(ws: &mut S) -> Result<String, Error>
where
    S: futures_util::Stream<Item = Result<Ws, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Err(_) => return Err(Error::Timeout),
            Ok(None) => return Err(Error::Closed),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(Ws::Text(t)))) => return Ok(t.to_string()),
            Ok(Some(Ok(Ws::Close(_)))) => return Err(Error::Closed),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn dispatch(
    text: &str,
    out: &mpsc::UnboundedSender<Ws>,
    acks: &AckMap,
    events: &mpsc::UnboundedSender<(String, Value)>,
    raw: Option<&RawHandler>,
) {
    match text.as_bytes().first() {
        Some(b'2') => {
            let _ = out.send(Ws::text("3"));
        }
        Some(b'4') => {
            let sio = &text[1..];
            match sio.as_bytes().first() {
                Some(b'2') if raw.is_some() => {
                    if let Some(handler) = raw {
                        handler(text);
                    }
                }
                Some(b'2') => {
                    let body = skip_ack_id(&sio[1..]).1;
                    if let Ok(Value::Array(mut args)) = serde_json::from_str(body) {
                        if args.is_empty() {
                            return;
                        }
                        let name = args.remove(0);
                        let first = args.into_iter().next().unwrap_or(Value::Null);
                        let _ = events.send((name.as_str().unwrap_or_default().to_string(), first));
                    }
                }
                Some(b'3') => {
                    let (id, body) = skip_ack_id(&sio[1..]);
                    let Some(id) = id else { return };
                    let first = match serde_json::from_str(body) {
                        Ok(Value::Array(args)) => args.into_iter().next().unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                    let callback = acks.lock().unwrap().remove(&id);
                    if let Some(callback) = callback {
                        callback(first);
                    }
                }
                Some(b'1') => {
                    let _ = events.send(("disconnect".into(), Value::Null));
                }
                _ => {}
            }
        }
        _ => {}
    }
}

fn skip_ack_id(s: &str) -> (Option<u64>, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        (None, s)
    } else {
        (s[..end].parse().ok(), &s[end..])
    }
}
