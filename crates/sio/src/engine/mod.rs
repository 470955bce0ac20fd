//! Engine.IO v4, server side: the handshake, WebSocket and HTTP
//! long-polling, the upgrade from one to the other, and heartbeats.
//!
//! Each session is driven by exactly one task: a WebSocket session by the
//! task that reads, writes and pings it in one `select!` (`ws.rs`); a
//! long-polling session by a heartbeat task while its GET and POST
//! requests run in the HTTP server's own tasks (`polling.rs`). What runs
//! on top (Socket.IO) sees messages through [`EngineHandler`] and sends
//! through the session's queue ([`Session::send`]).

mod heartbeat;
pub mod packet;
mod polling;
mod session;
mod ws;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use session::Transport;
pub use session::{CloseReason, Closed, Frame, Session, Sid};

/// Work a message started that must finish before the session's next
/// message is read (a Socket.IO handshake waiting for the database).
pub type Hold = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A message as it arrived: text borrowed from the frame, or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a str),
    Binary(Bytes),
}

/// What runs on top of Engine.IO.
pub trait EngineHandler: Send + Sync + Sized + 'static {
    /// Per-session state.
    type Conn: Send + Sync + 'static;

    /// State for a new session.
    fn conn(&self) -> Self::Conn;

    /// A message from the client. `Err` ends the session; a [`Hold`] is
    /// awaited before the session's next message is read.
    fn message(
        self: &Arc<Self>,
        session: &Arc<Session<Self::Conn>>,
        message: Message<'_>,
    ) -> Result<Option<Hold>, CloseReason>;

    /// False until the client has done what it must within the connect
    /// timeout (Socket.IO: connected to a namespace once).
    fn ready(&self, _session: &Session<Self::Conn>) -> bool {
        true
    }

    /// The session has ended; called once.
    fn closed(self: &Arc<Self>, session: &Arc<Session<Self::Conn>>, reason: CloseReason);
}

/// Engine.IO settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Largest WebSocket message and long-polling POST body, in bytes.
    pub max_payload: usize,
    /// Most bytes waiting to be sent to one session before it is closed
    /// as too slow.
    pub max_queue_bytes: usize,
    /// Longest wait for a WebSocket's upgrade to complete (`5`).
    pub upgrade_timeout: Duration,
    /// Longest wait for the layer above to be [`EngineHandler::ready`].
    pub connect_timeout: Option<Duration>,
    /// The WebSocket read buffer; idle connections are most connections,
    /// so it is small.
    pub ws_read_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            max_queue_bytes: 4 << 20,
            upgrade_timeout: Duration::from_secs(10),
            connect_timeout: Some(Duration::from_secs(45)),
            ws_read_buffer: 1024,
        }
    }
}

/// An Engine.IO server: hand it every request under its path.
pub struct Engine<H: EngineHandler> {
    inner: Arc<Inner<H>>,
}

impl<H: EngineHandler> Clone for Engine<H> {
    fn clone(&self) -> Self {
        Engine {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct Inner<H: EngineHandler> {
    pub(crate) config: Config,
    pub(crate) handler: Arc<H>,
    /// Long-polling sessions, the only ones a request finds by id.
    sessions: Mutex<HashMap<Sid, Arc<Session<H::Conn>>>>,
    pub(crate) closing: CancellationToken,
    tasks: TaskTracker,
}

/// The body of every answer.
pub type Body = Full<Bytes>;

/// Engine.IO's error codes, as its reference server sends them.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    UnknownTransport,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    UnsupportedVersion,
}

impl Refusal {
    fn answer(self) -> Response<Body> {
        let (code, message) = match self {
            Refusal::UnknownTransport => (0, "Transport unknown"),
            Refusal::UnknownSid => (1, "Session ID unknown"),
            Refusal::BadHandshakeMethod => (2, "Bad handshake method"),
            Refusal::BadRequest => (3, "Bad request"),
            Refusal::UnsupportedVersion => (5, "Unsupported protocol version"),
        };
        let body = format!(r#"{{"code":{code},"message":"{message}"}}"#);
        Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::new(Bytes::from(body)))
            .unwrap_or_default()
    }
}

/// The query parameters Engine.IO reads.
struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

fn query(q: &str) -> Query<'_> {
    let mut out = Query {
        eio: None,
        transport: None,
        sid: None,
    };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "EIO" => out.eio = Some(v),
            "transport" => out.transport = Some(v),
            "sid" => out.sid = Some(v),
            _ => {}
        }
    }
    out
}

impl<H: EngineHandler> Engine<H> {
    pub fn new(config: Config, handler: H) -> Self {
        Engine {
            inner: Arc::new(Inner {
                config,
                handler: Arc::new(handler),
                sessions: Mutex::new(HashMap::new()),
                closing: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn handler(&self) -> &Arc<H> {
        &self.inner.handler
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Answers one Engine.IO request from `peer`.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let q = query(req.uri().query().unwrap_or(""));
        if q.eio != Some("4") {
            return Refusal::UnsupportedVersion.answer();
        }
        let websocket = match q.transport {
            Some("polling") => false,
            Some("websocket") => true,
            _ => return Refusal::UnknownTransport.answer(),
        };
        let session = match q.sid {
            None => None,
            Some(sid) => match Sid::parse(sid).and_then(|sid| self.inner.find(&sid)) {
                Some(session) => Some(session),
                None => return Refusal::UnknownSid.answer(),
            },
        };
        if websocket {
            return ws::accept(&self.inner, req, peer, session);
        }
        match (req.method(), session) {
            (&Method::GET, None) => polling::open(&self.inner, peer),
            (&Method::GET, Some(session)) => polling::get(&self.inner, &session).await,
            (&Method::POST, Some(session)) => polling::post(&self.inner, &session, req).await,
            (_, None) => Refusal::BadHandshakeMethod.answer(),
            _ => Refusal::BadRequest.answer(),
        }
    }

    /// Closes every session (clients see their transport close) and waits
    /// for their tasks to end.
    pub async fn shutdown(&self) {
        self.inner.closing.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Sessions open on long-polling (for tests and metrics).
    pub fn polling_sessions(&self) -> usize {
        self.inner.lock_sessions().len()
    }
}

impl<H: EngineHandler> Inner<H> {
    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Sid, Arc<Session<H::Conn>>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&self, sid: &Sid) -> Option<Arc<Session<H::Conn>>> {
        self.lock_sessions().get(sid).cloned()
    }

    fn new_session(&self, peer: SocketAddr, transport: Transport) -> Arc<Session<H::Conn>> {
        Arc::new(Session::new(
            peer,
            self.config.max_queue_bytes,
            transport,
            self.handler.conn(),
        ))
    }

    /// The open packet for `session`.
    fn open_packet(&self, session: &Session<H::Conn>, upgrades: bool) -> String {
        format!(
            r#"0{{"sid":"{}","upgrades":[{}],"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            session.sid(),
            if upgrades { r#""websocket""# } else { "" },
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload,
        )
    }

    /// Ends `session` once: later requests are refused, the layer above is
    /// told. Whoever notices the end first calls it.
    pub(crate) fn finish(self: &Arc<Self>, session: &Arc<Session<H::Conn>>, reason: CloseReason) {
        let reason = {
            let mut state = session.lock();
            if state.closed {
                return;
            }
            state.closed = true;
            state.frames = Default::default();
            state.bytes = 0;
            *state.closing.get_or_insert(reason)
        };
        self.lock_sessions().remove(session.sid());
        session.wake_all();
        tracing::trace!(sid = %session.sid(), reason = reason.as_str(), "session closed");
        self.handler.closed(session, reason);
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        self.tasks.spawn(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_version_transport_and_sid() {
        let q = query("EIO=4&transport=polling&t=N8hyd6w&sid=abc");
        assert_eq!(q.eio, Some("4"));
        assert_eq!(q.transport, Some("polling"));
        assert_eq!(q.sid, Some("abc"));
        let q = query("");
        assert!(q.eio.is_none() && q.transport.is_none() && q.sid.is_none());
    }
}
