//! One Engine.IO session: its outgoing queue and its transport state,
//! shared by whichever task drives it (the WebSocket task, or the
//! long-polling session's heartbeat task and its requests) and by every
//! handle that sends to it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A session id: 20 random URL-safe characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sid([u8; 20]);

impl Sid {
    /// A fresh random id (120 bits).
    pub fn random() -> Sid {
        use rand::Rng;
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut rng = rand::thread_rng();
        let mut id = [0u8; 20];
        for b in &mut id {
            *b = ALPHABET[rng.gen_range(0..64)];
        }
        Sid(id)
    }

    /// Parses a client-sent id: `None` unless it has this shape.
    pub fn parse(s: &str) -> Option<Sid> {
        let bytes: [u8; 20] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .then_some(Sid(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One outgoing Engine.IO message. Text frames are whole Engine.IO
/// packets (`4` + Socket.IO packet); the bytes are shared, so a broadcast
/// encoded once costs each recipient a reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl Frame {
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) const PING: Frame = Frame::Text(Utf8Bytes::from_static("2"));
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close packet or closed its WebSocket.
    ClientClose,
    /// The transport failed (connection reset, bad frame).
    TransportError,
    /// No pong within `pingTimeout` of a ping.
    PingTimeout,
    /// A packet that does not parse; the protocol allows no recovery.
    ParseError,
    /// Two long-polling GETs (or POSTs) at once.
    Overlap,
    /// More bytes waiting to be sent than the queue holds.
    TooSlow,
    /// The server closes the session (a handler asked, or it refused the
    /// Socket.IO handshake in a way that ends the session).
    ServerClose,
    /// The server is shutting down.
    Shutdown,
    /// The client never completed a Socket.IO handshake in time.
    ConnectTimeout,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "client close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::Overlap => "overlapping requests",
            CloseReason::TooSlow => "client too slow: outgoing queue full",
            CloseReason::ServerClose => "server close",
            CloseReason::Shutdown => "server shutting down",
            CloseReason::ConnectTimeout => "connect timeout",
        }
    }
}

/// Which transport carries the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Polling,
    /// A WebSocket has claimed the session and is probing.
    Upgrading,
    WebSocket,
}

/// What the session's tasks share under one lock.
pub(crate) struct State {
    pub(crate) frames: VecDeque<Frame>,
    pub(crate) bytes: usize,
    pub(crate) transport: Transport,
    /// Set once; the driving task then ends the session.
    pub(crate) closing: Option<CloseReason>,
    /// Set when the driving task has ended it: every request is refused.
    pub(crate) closed: bool,
    /// A long-polling GET is waiting.
    pub(crate) getting: bool,
    /// A long-polling POST is being read.
    pub(crate) posting: bool,
    /// A WebSocket has been accepted to take this long-polling session over.
    pub(crate) ws_claimed: bool,
    /// When the last pong came (long-polling: the heartbeat task reads it).
    pub(crate) pong_at: Option<Instant>,
}

/// An Engine.IO session, with the per-session state `C` of whatever
/// runs on top of it (Socket.IO's namespaces).
pub struct Session<C> {
    sid: Sid,
    peer: SocketAddr,
    limit: usize,
    pub(crate) state: Mutex<State>,
    /// Wakes whoever writes the session out (the WebSocket task or a
    /// waiting GET).
    pub(crate) wake: Notify,
    /// Wakes the long-polling heartbeat task (close, upgrade).
    pub(crate) control: Notify,
    conn: C,
}

/// The queue is full or the session is closing: nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session closed")]
pub struct Closed;

impl<C> Session<C> {
    pub(crate) fn new(peer: SocketAddr, limit: usize, transport: Transport, conn: C) -> Self {
        Session {
            sid: Sid::random(),
            peer,
            limit,
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                transport,
                closing: None,
                closed: false,
                getting: false,
                posting: false,
                ws_claimed: false,
                pong_at: None,
            }),
            wake: Notify::new(),
            control: Notify::new(),
            conn,
        }
    }

    pub fn sid(&self) -> &Sid {
        &self.sid
    }

    /// The client's address (the TCP peer of the request that opened it).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The state of the layer above.
    pub fn conn(&self) -> &C {
        &self.conn
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frames` to be sent in order, all or none. A client that has
    /// fallen so far behind that they would not fit is disconnected: a
    /// frame (an ack perhaps) is never dropped while the session lives.
    pub fn send_all(&self, frames: impl IntoIterator<Item = Frame>) -> Result<(), Closed> {
        let mut state = self.lock();
        if state.closing.is_some() {
            return Err(Closed);
        }
        let start = state.frames.len();
        for frame in frames {
            state.bytes += frame.len();
            state.frames.push_back(frame);
        }
        if state.bytes > self.limit {
            state.frames.truncate(start);
            state.bytes = state.frames.iter().map(Frame::len).sum();
            state.closing = Some(CloseReason::TooSlow);
            drop(state);
            self.wake_all();
            return Err(Closed);
        }
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// Queues one frame (see [`Session::send_all`]).
    pub fn send(&self, frame: Frame) -> Result<(), Closed> {
        self.send_all(std::iter::once(frame))
    }

    /// Asks the session to end; the task driving it closes the transport
    /// and tells the layer above. The first reason counts.
    pub fn close(&self, reason: CloseReason) {
        let mut state = self.lock();
        if state.closing.is_none() {
            state.closing = Some(reason);
        }
        drop(state);
        self.wake_all();
    }

    pub fn is_closing(&self) -> bool {
        self.lock().closing.is_some()
    }

    /// Why the session is ending, once it is.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.lock().closing
    }

    pub(crate) fn wake_all(&self) {
        self.wake.notify_one();
        self.control.notify_one();
    }

    /// The next queued frame, if any.
    pub(crate) fn pop(&self) -> Option<Frame> {
        let mut state = self.lock();
        let frame = state.frames.pop_front()?;
        state.bytes -= frame.len();
        if state.frames.is_empty() && state.frames.capacity() > 64 {
            // A burst does not keep its memory while the session idles.
            state.frames = VecDeque::new();
        }
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(limit: usize) -> Session<()> {
        Session::new(
            "127.0.0.1:1".parse().unwrap(),
            limit,
            Transport::WebSocket,
            (),
        )
    }

    fn text(s: &'static str) -> Frame {
        Frame::Text(Utf8Bytes::from_static(s))
    }

    #[test]
    fn sids_are_random_and_parse_back() {
        let a = Sid::random();
        assert_ne!(a, Sid::random());
        assert_eq!(Sid::parse(a.as_str()), Some(a));
        assert_eq!(Sid::parse("short"), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAAA!"), None);
    }

    #[test]
    fn frames_come_out_in_order_and_the_count_of_bytes_follows() {
        let s = session(100);
        s.send(text("41")).unwrap();
        s.send_all([text("42[]"), text("43")]).unwrap();
        assert_eq!(s.lock().bytes, 8);
        assert_eq!(s.pop(), Some(text("41")));
        assert_eq!(s.pop(), Some(text("42[]")));
        assert_eq!(s.pop(), Some(text("43")));
        assert_eq!(s.pop(), None);
        assert_eq!(s.lock().bytes, 0);
    }

    #[test]
    fn a_full_queue_closes_the_session_and_keeps_what_was_queued() {
        let s = session(10);
        s.send(text("4aaaaaaaa")).unwrap();
        assert_eq!(s.send_all([text("4b"), text("4c")]), Err(Closed));
        assert_eq!(s.lock().closing, Some(CloseReason::TooSlow));
        assert_eq!(s.lock().frames.len(), 1);
        assert_eq!(s.lock().bytes, 9);
        assert_eq!(s.send(text("4")), Err(Closed));
    }

    #[test]
    fn exactly_the_limit_fits() {
        let s = session(4);
        s.send_all([text("4a"), text("4b")]).unwrap();
        assert!(!s.is_closing());
    }

    #[test]
    fn the_first_close_reason_counts() {
        let s = session(10);
        s.close(CloseReason::PingTimeout);
        s.close(CloseReason::ClientClose);
        assert_eq!(s.lock().closing, Some(CloseReason::PingTimeout));
    }
}
