//! What the protocol tests share: the conformance set-up served on port 0
//! (`palaver_sio::conformance`: pingInterval 300 ms, pingTimeout 200 ms,
//! maxPayload 1,000,000, connect timeout 1,000 ms) and typed clients for
//! its two transports, long-polling over plain HTTP and WebSocket.
//!
//! Every wait for something that should happen is bounded by [`WAIT`], so
//! a missing answer fails the test instead of hanging it.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The raw Engine.IO endpoint: every message is echoed.
pub const ENGINE: &str = "/engine.io/";
/// The Socket.IO endpoint: namespaces `/` and `/custom`.
pub const SOCKET: &str = "/socket.io/";

/// Longest wait for something that should happen (generous: the machine
/// may be loaded).
pub const WAIT: Duration = Duration::from_secs(3);

/// The conformance set-up's timings.
pub const PING_INTERVAL: Duration = Duration::from_millis(300);
pub const PING_TIMEOUT: Duration = Duration::from_millis(200);
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// A server under test and an HTTP client for it.
pub struct App {
    pub addr: SocketAddr,
    http: reqwest::Client,
}

/// Serves the conformance set-up on a port of its own.
pub async fn spawn_app() -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(palaver_sio::conformance::serve(listener));
    App::at(addr)
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// A 200 answer with `body`.
    pub fn ok(body: &str) -> Answer {
        Answer {
            status: 200,
            body: body.into(),
        }
    }

    /// Engine.IO's error code in a 400 answer's JSON body.
    pub fn code(&self) -> i64 {
        assert_eq!(self.status, 400, "not a refusal: {self:?}");
        let v: Value = serde_json::from_str(&self.body).expect("a JSON refusal");
        v["code"].as_i64().expect("a code")
    }
}

impl App {
    /// A client for a server already listening on `addr`.
    pub fn at(addr: SocketAddr) -> App {
        let http = reqwest::Client::builder()
            .no_proxy()
            // A fresh connection per request: a session's requests are
            // then as independent as a browser's concurrent ones.
            .pool_max_idle_per_host(0)
            .build()
            .expect("HTTP client");
        App { addr, http }
    }

    pub fn url(&self, path: &str, query: &str) -> String {
        format!("http://{}{path}?{query}", self.addr)
    }

    /// One request; panics if it gets no answer within [`WAIT`].
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &str,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut req = self.http.request(method, self.url(path, query));
        if let Some(body) = body {
            req = req.body(body);
        }
        let send = async {
            let res = req.send().await.expect("HTTP request");
            let status = res.status().as_u16();
            let body = res.text().await.expect("HTTP body");
            Answer { status, body }
        };
        tokio::time::timeout(WAIT, send)
            .await
            .unwrap_or_else(|_| panic!("no answer to {path}?{query} within {WAIT:?}"))
    }

    pub async fn get(&self, path: &str, query: &str) -> Answer {
        self.request(reqwest::Method::GET, path, query, None).await
    }

    /// Opens a long-polling session: its open packet's JSON.
    pub async fn open(&self, path: &str) -> Value {
        let answer = self.get(path, "EIO=4&transport=polling").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        open_packet(&answer.body)
    }

    /// A long-polling session opened on `path`.
    pub async fn polling(&self, path: &str) -> Polling<'_> {
        let open = self.open(path).await;
        let sid = open["sid"].as_str().expect("a sid").to_owned();
        Polling {
            app: self,
            path: path.to_owned(),
            sid,
        }
    }

    /// A WebSocket to `path` with `query`, the open packet (if any) unread.
    pub async fn ws_query(&self, path: &str, query: &str) -> Ws {
        let url = format!("ws://{}{path}?{query}", self.addr);
        let connect = tokio_tungstenite::connect_async(url);
        let (ws, _) = tokio::time::timeout(WAIT, connect)
            .await
            .expect("WebSocket handshake in time")
            .expect("WebSocket handshake");
        Ws { ws }
    }

    /// A new WebSocket session on `path`, its open packet unread.
    pub async fn ws(&self, path: &str) -> Ws {
        self.ws_query(path, "EIO=4&transport=websocket").await
    }

    /// The HTTP status a WebSocket handshake is refused with.
    pub async fn ws_refused(&self, path: &str, query: &str) -> u16 {
        let url = format!("ws://{}{path}?{query}", self.addr);
        let connect = tokio_tungstenite::connect_async(url);
        match tokio::time::timeout(WAIT, connect)
            .await
            .expect("an answer")
        {
            Err(tungstenite::Error::Http(res)) => res.status().as_u16(),
            Err(e) => panic!("refused without an HTTP answer: {e}"),
            Ok(_) => panic!("WebSocket to {path}?{query} accepted"),
        }
    }

    /// A Socket.IO session over WebSocket, open packet read, no namespace
    /// connected yet.
    pub async fn sio(&self) -> Ws {
        let mut ws = self.ws(SOCKET).await;
        open_packet(&ws.text().await);
        ws
    }
}

/// The JSON of an Engine.IO open packet (`0{…}`).
pub fn open_packet(text: &str) -> Value {
    let json = text
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("not an open packet: {text:?}"));
    serde_json::from_str(json).expect("open packet JSON")
}

/// One long-polling session.
pub struct Polling<'a> {
    app: &'a App,
    path: String,
    pub sid: String,
}

impl Polling<'_> {
    fn query(&self) -> String {
        format!("EIO=4&transport=polling&sid={}", self.sid)
    }

    pub async fn get(&self) -> Answer {
        self.app.get(&self.path, &self.query()).await
    }

    pub async fn post(&self, body: impl Into<Vec<u8>>) -> Answer {
        let q = self.query();
        self.app
            .request(reqwest::Method::POST, &self.path, &q, Some(body.into()))
            .await
    }

    /// Posts what must be accepted.
    pub async fn send(&self, body: impl Into<Vec<u8>>) {
        assert_eq!(self.post(body).await, Answer::ok("ok"));
    }

    /// A WebSocket naming this session, to upgrade it.
    pub async fn websocket(&self) -> Ws {
        let query = format!("EIO=4&transport=websocket&sid={}", self.sid);
        self.app.ws_query(&self.path, &query).await
    }

    /// Polls what must come, answered 200.
    pub async fn recv(&self) -> String {
        let answer = self.get().await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body
    }
}

/// What a WebSocket brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Closed,
}

/// A WebSocket client.
pub struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("WebSocket send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::binary(bytes))
            .await
            .expect("WebSocket send");
    }

    /// The next message as it comes, pings included.
    pub async fn next_raw(&mut self) -> Got {
        let deadline = Instant::now() + WAIT;
        let got = self.next_raw_by(deadline).await;
        got.unwrap_or_else(|| panic!("nothing within {WAIT:?}"))
    }

    async fn next_raw_by(&mut self, deadline: Instant) -> Option<Got> {
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            return Some(match next {
                Some(Ok(Message::Text(t))) => Got::Text(t.as_str().to_owned()),
                Some(Ok(Message::Binary(b))) => Got::Binary(b.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => Got::Closed,
            });
        }
    }

    /// The next message, Engine.IO pings answered and skipped (pings
    /// alone do not stretch the wait beyond [`WAIT`]).
    pub async fn next(&mut self) -> Got {
        let got = self.next_by(Instant::now() + WAIT).await;
        got.unwrap_or_else(|| panic!("nothing but pings within {WAIT:?}"))
    }

    async fn next_by(&mut self, deadline: Instant) -> Option<Got> {
        loop {
            match self.next_raw_by(deadline).await? {
                Got::Text(t) if t == "2" => {
                    // The server may be closing: a failed pong is no error.
                    let _ = self.ws.send(Message::text("3")).await;
                }
                got => return Some(got),
            }
        }
    }

    /// The next text message; panics on anything else.
    pub async fn text(&mut self) -> String {
        match self.next().await {
            Got::Text(t) => t,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next binary message; panics on anything else.
    pub async fn binary(&mut self) -> Vec<u8> {
        match self.next().await {
            Got::Binary(b) => b,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    /// Waits for the server to close the WebSocket, answering pings (so
    /// the close is never a ping timeout): what came before it.
    pub async fn closed(&mut self) -> Vec<Got> {
        let deadline = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            match self.next_by(deadline).await {
                Some(Got::Closed) => return before,
                Some(got) => before.push(got),
                None => panic!("still open after {WAIT:?}, having sent {before:?}"),
            }
        }
    }

    /// Connects to `nsp` with `auth` (a JSON object, if any): the socket
    /// id of the `{sid}` reply, after the `auth` event that follows it
    /// has come back with the same payload.
    pub async fn connect(&mut self, nsp: &str, auth: Option<&str>) -> String {
        let prefix = nsp_prefix(nsp);
        self.send(&format!("40{prefix}{}", auth.unwrap_or("")))
            .await;
        let reply = self.text().await;
        let json = reply
            .strip_prefix(&format!("40{prefix}"))
            .unwrap_or_else(|| panic!("not a CONNECT reply for {nsp}: {reply:?}"));
        let reply: Value = serde_json::from_str(json).expect("CONNECT reply JSON");
        let sid = reply["sid"].as_str().expect("a sid").to_owned();
        let event = self.text().await;
        let args = event
            .strip_prefix(&format!("42{prefix}"))
            .unwrap_or_else(|| panic!("not an event on {nsp}: {event:?}"));
        let args: Value = serde_json::from_str(args).expect("event JSON");
        let auth: Value = serde_json::from_str(auth.unwrap_or("{}")).expect("auth JSON");
        assert_eq!(args, serde_json::json!(["auth", auth]));
        sid
    }
}

/// What follows a Socket.IO packet's type for `nsp`: nothing for `/`.
pub fn nsp_prefix(nsp: &str) -> String {
    if nsp == "/" {
        String::new()
    } else {
        format!("{nsp},")
    }
}
