//! Socket.IO v5 on top of the Engine.IO sessions: namespaces, the
//! CONNECT handshake with its auth payload, events, acks and binary
//! attachments. The application is a [`Handler`]; each connected
//! namespace of a session is a [`Socket`] it can keep and send to.
//!
//! Events are handed to the handler on the session's own task, in order,
//! synchronously: nothing is spawned per event. A handler that must wait
//! (for a database) hands the work on and answers later through the
//! socket it keeps. Only the CONNECT handshake is awaited in place, so
//! that an event sent right after connecting always finds the socket.

pub mod packet;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::engine::{self, CloseReason, Closed, EngineHandler, Frame, Hold, Message, Session, Sid};
use packet::Kind;

/// A CONNECT to a namespace, for the handler to accept or refuse.
#[derive(Debug)]
pub struct Connect<'a> {
    pub nsp: &'a str,
    /// The handshake's auth payload (a JSON object), if any.
    pub auth: Option<&'a RawValue>,
    /// Who opened the session.
    pub peer: SocketAddr,
}

/// An event from the client, borrowed from its packet.
#[derive(Debug)]
pub struct Event<'a> {
    pub name: Cow<'a, str>,
    pub args: Vec<&'a RawValue>,
    /// Binary attachments, in order (`{"_placeholder":true,"num":i}` in
    /// the arguments stands for the `i`th).
    pub attachments: Vec<Bytes>,
    /// The id to answer with [`Socket::ack`], if the client waits for one.
    pub ack: Option<u64>,
}

/// Why a socket left its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client left the namespace (a DISCONNECT packet).
    ClientDisconnect,
    /// The whole session ended.
    Closed(CloseReason),
}

/// The application on top of Socket.IO.
pub trait Handler: Send + Sync + 'static {
    /// What the application keeps with each socket (its user).
    type Data: Send + Sync + 'static;

    /// Whether `nsp` exists; a CONNECT to any other gets `Invalid namespace`.
    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/"
    }

    /// Accepts a CONNECT with the socket's data, or refuses it with the
    /// `connect_error` message. The session reads nothing else meanwhile.
    fn connect(&self, request: Connect<'_>) -> BoxFuture<'static, Result<Self::Data, String>>;

    /// The socket is connected and its CONNECT answered.
    fn connected(&self, _socket: &Socket<Self::Data>) {}

    /// An event. Must not block: answer now, or hand the work on.
    fn event(&self, socket: &Socket<Self::Data>, event: Event<'_>);

    /// The socket is gone; called once for every connected socket.
    fn disconnected(&self, socket: &Socket<Self::Data>, reason: DisconnectReason);
}

/// Socket.IO settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub engine: engine::Config,
    /// Most binary attachments one packet may announce.
    pub max_attachments: usize,
    /// Most bytes of attachments one packet may carry.
    pub max_attachment_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            engine: engine::Config::default(),
            max_attachments: 10,
            max_attachment_bytes: 1_000_000,
        }
    }
}

/// The Socket.IO layer: an [`EngineHandler`] over a [`Handler`].
pub struct SocketIo<H: Handler> {
    handler: H,
    max_attachments: usize,
    max_attachment_bytes: usize,
}

/// A Socket.IO server: serve it with [`engine::Engine::handle`].
pub type Server<H> = engine::Engine<SocketIo<H>>;

/// Builds a Socket.IO server.
pub fn server<H: Handler>(config: Config, handler: H) -> Server<H> {
    engine::Engine::new(
        config.engine,
        SocketIo {
            handler,
            max_attachments: config.max_attachments,
            max_attachment_bytes: config.max_attachment_bytes,
        },
    )
}

impl<H: Handler> SocketIo<H> {
    pub fn handler(&self) -> &H {
        &self.handler
    }
}

/// A binary packet waiting for its attachments.
struct Partial {
    kind: Kind,
    nsp: String,
    ack: Option<u64>,
    data: String,
    needed: usize,
    bytes: usize,
    parts: Vec<Bytes>,
}

/// Socket.IO's state of one session.
pub struct Conn<D> {
    sockets: Mutex<Sockets<D>>,
    partial: Mutex<Option<Box<Partial>>>,
    /// Connected to a namespace at least once (the connect timeout).
    joined: AtomicBool,
}

struct Sockets<D> {
    list: Vec<Socket<D>>,
    /// The session has ended: a socket connecting now is told at once.
    ended: bool,
}

impl<D> Conn<D> {
    fn sockets(&self) -> std::sync::MutexGuard<'_, Sockets<D>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn partial(&self) -> std::sync::MutexGuard<'_, Option<Box<Partial>>> {
        self.partial.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&self, nsp: &str) -> Option<Socket<D>> {
        self.sockets().list.iter().find(|s| s.nsp() == nsp).cloned()
    }
}

/// One connected namespace of a session; cheap to clone and keep.
pub struct Socket<D> {
    inner: Arc<SocketInner<D>>,
}

impl<D> Clone for Socket<D> {
    fn clone(&self) -> Self {
        Socket {
            inner: self.inner.clone(),
        }
    }
}

struct SocketInner<D> {
    id: Sid,
    /// `None` for `/`, the namespace nearly every socket is in.
    nsp: Option<Box<str>>,
    session: Arc<Session<Conn<D>>>,
    data: D,
    connected: AtomicBool,
}

impl<D> Socket<D> {
    /// The socket's id (not the session's).
    pub fn id(&self) -> &Sid {
        &self.inner.id
    }

    pub fn nsp(&self) -> &str {
        self.inner.nsp.as_deref().unwrap_or("/")
    }

    pub fn data(&self) -> &D {
        &self.inner.data
    }

    /// The address of the client.
    pub fn peer(&self) -> SocketAddr {
        self.inner.session.peer()
    }

    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire) && !self.inner.session.is_closing()
    }

    /// Queues a frame encoded with [`packet`] (a broadcast is encoded once
    /// and its frame sent to each recipient). A client too far behind is
    /// disconnected: [`Closed`].
    pub fn send(&self, frame: Frame) -> Result<(), Closed> {
        self.inner.session.send(frame)
    }

    /// Emits `event` with one argument.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), Closed> {
        self.send(packet::event(self.nsp(), event, data))
    }

    /// Answers the event whose ack id is `id` with one argument.
    pub fn ack<T: Serialize + ?Sized>(&self, id: u64, data: &T) -> Result<(), Closed> {
        self.send(packet::ack(self.nsp(), id, data))
    }

    /// Emits `event` with raw arguments and binary attachments.
    pub fn emit_raw(
        &self,
        event: &str,
        args: &[&RawValue],
        attachments: Vec<Bytes>,
    ) -> Result<(), Closed> {
        let head = packet::event_raw(self.nsp(), event, args, attachments.len());
        self.inner
            .session
            .send_all(std::iter::once(head).chain(attachments.into_iter().map(Frame::Binary)))
    }

    /// Answers with raw arguments and binary attachments.
    pub fn ack_raw(
        &self,
        id: u64,
        args: &[&RawValue],
        attachments: Vec<Bytes>,
    ) -> Result<(), Closed> {
        let head = packet::ack_raw(self.nsp(), id, args, attachments.len());
        self.inner
            .session
            .send_all(std::iter::once(head).chain(attachments.into_iter().map(Frame::Binary)))
    }

    /// Disconnects the socket from its namespace (a Socket.IO DISCONNECT:
    /// the client's `disconnect` reason is `io server disconnect`, and it
    /// does not reconnect by itself), then ends the session; what was
    /// queued before still goes out.
    pub fn disconnect(&self) {
        let _ = self.send(packet::disconnect(self.nsp()));
        self.close(CloseReason::ServerClose);
    }

    /// Ends the whole session (the client sees its transport close and
    /// reconnects).
    pub fn close(&self, reason: CloseReason) {
        self.inner.session.close(reason);
    }

    /// Whether two handles are the same socket.
    pub fn same(&self, other: &Socket<D>) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

fn parse_error(session_sid: &Sid, e: impl std::fmt::Display) -> CloseReason {
    tracing::debug!(sid = %session_sid, error = %e, "invalid Socket.IO packet");
    CloseReason::ParseError
}

impl<H: Handler> EngineHandler for SocketIo<H> {
    type Conn = Conn<H::Data>;

    fn conn(&self) -> Self::Conn {
        Conn {
            sockets: Mutex::new(Sockets {
                list: Vec::new(),
                ended: false,
            }),
            partial: Mutex::new(None),
            joined: AtomicBool::new(false),
        }
    }

    fn message(
        self: &Arc<Self>,
        session: &Arc<Session<Self::Conn>>,
        message: Message<'_>,
    ) -> Result<Option<Hold>, CloseReason> {
        let conn = session.conn();
        let text = match message {
            Message::Binary(bytes) => return self.attachment(session, bytes),
            Message::Text(text) => text,
        };
        if conn.partial().is_some() {
            return Err(parse_error(
                session.sid(),
                "text while attachments are awaited",
            ));
        }
        let header = packet::decode(text, self.max_attachments)
            .map_err(|e| parse_error(session.sid(), e))?;
        match header.kind {
            Kind::Connect => self.connect(session, &header),
            Kind::Disconnect => {
                let socket = {
                    let mut sockets = conn.sockets();
                    let i = sockets.list.iter().position(|s| s.nsp() == header.nsp);
                    i.map(|i| sockets.list.remove(i))
                };
                if let Some(socket) = socket {
                    socket.inner.connected.store(false, Ordering::Release);
                    self.handler
                        .disconnected(&socket, DisconnectReason::ClientDisconnect);
                }
                Ok(None)
            }
            Kind::Event | Kind::Ack | Kind::BinaryEvent | Kind::BinaryAck
                if header.attachments == 0 =>
            {
                self.dispatch(
                    session,
                    header.kind,
                    header.nsp,
                    header.ack,
                    header.data,
                    Vec::new(),
                )
            }
            Kind::BinaryEvent | Kind::BinaryAck => {
                *conn.partial() = Some(Box::new(Partial {
                    kind: header.kind,
                    nsp: header.nsp.to_owned(),
                    ack: header.ack,
                    data: header.data.to_owned(),
                    needed: header.attachments,
                    bytes: 0,
                    parts: Vec::with_capacity(header.attachments),
                }));
                Ok(None)
            }
            Kind::Event | Kind::Ack | Kind::ConnectError => {
                Err(parse_error(session.sid(), "CONNECT_ERROR from a client"))
            }
        }
    }

    fn ready(&self, session: &Session<Self::Conn>) -> bool {
        session.conn().joined.load(Ordering::Acquire)
    }

    fn closed(self: &Arc<Self>, session: &Arc<Session<Self::Conn>>, reason: CloseReason) {
        let conn = session.conn();
        conn.partial().take();
        let sockets = {
            let mut sockets = conn.sockets();
            sockets.ended = true;
            std::mem::take(&mut sockets.list)
        };
        for socket in sockets {
            socket.inner.connected.store(false, Ordering::Release);
            self.handler
                .disconnected(&socket, DisconnectReason::Closed(reason));
        }
    }
}

impl<H: Handler> SocketIo<H> {
    fn connect(
        self: &Arc<Self>,
        session: &Arc<Session<Conn<H::Data>>>,
        header: &packet::Header<'_>,
    ) -> Result<Option<Hold>, CloseReason> {
        let auth = packet::connect_auth(header.data).map_err(|e| parse_error(session.sid(), e))?;
        let nsp = header.nsp;
        if !self.handler.has_namespace(nsp) {
            let _ = session.send(packet::connect_error(nsp, "Invalid namespace"));
            return Ok(None);
        }
        if session.conn().find(nsp).is_some() {
            tracing::debug!(sid = %session.sid(), nsp, "CONNECT to a namespace already connected");
            return Ok(None);
        }
        let accepted = self.handler.connect(Connect {
            nsp,
            auth,
            peer: session.peer(),
        });
        let this = self.clone();
        let session = session.clone();
        let nsp: Option<Box<str>> = (nsp != "/").then(|| nsp.into());
        Ok(Some(Box::pin(async move {
            let nsp_str = nsp.as_deref().unwrap_or("/").to_owned();
            match accepted.await {
                Ok(data) => this.join(&session, nsp, data),
                Err(message) => {
                    let _ = session.send(packet::connect_error(&nsp_str, &message));
                }
            }
        })))
    }

    /// Adds an accepted socket to its session and answers its CONNECT.
    fn join(&self, session: &Arc<Session<Conn<H::Data>>>, nsp: Option<Box<str>>, data: H::Data) {
        let socket = Socket {
            inner: Arc::new(SocketInner {
                id: Sid::random(),
                nsp,
                session: session.clone(),
                data,
                connected: AtomicBool::new(true),
            }),
        };
        let conn = session.conn();
        {
            let mut sockets = conn.sockets();
            if !sockets.ended {
                sockets.list.push(socket.clone());
                conn.joined.store(true, Ordering::Release);
                let _ = session.send(packet::connect_ok(socket.nsp(), socket.id().as_str()));
                drop(sockets);
                self.handler.connected(&socket);
                return;
            }
        }
        // The session ended while the handshake was being decided.
        socket.inner.connected.store(false, Ordering::Release);
        let reason = session
            .close_reason()
            .unwrap_or(CloseReason::TransportError);
        self.handler
            .disconnected(&socket, DisconnectReason::Closed(reason));
    }

    /// A binary attachment of the packet being assembled.
    fn attachment(
        self: &Arc<Self>,
        session: &Arc<Session<Conn<H::Data>>>,
        bytes: Bytes,
    ) -> Result<Option<Hold>, CloseReason> {
        let conn = session.conn();
        let mut partial = conn.partial().take().ok_or_else(|| {
            parse_error(
                session.sid(),
                "a binary message without a packet announcing it",
            )
        })?;
        partial.bytes += bytes.len();
        if partial.bytes > self.max_attachment_bytes {
            return Err(parse_error(session.sid(), "attachments over the limit"));
        }
        partial.parts.push(bytes);
        if partial.parts.len() < partial.needed {
            *conn.partial() = Some(partial);
            return Ok(None);
        }
        let Partial {
            kind,
            nsp,
            ack,
            data,
            parts,
            ..
        } = *partial;
        self.dispatch(session, kind, &nsp, ack, &data, parts)
    }

    /// A complete EVENT or ACK.
    fn dispatch(
        &self,
        session: &Arc<Session<Conn<H::Data>>>,
        kind: Kind,
        nsp: &str,
        ack: Option<u64>,
        data: &str,
        attachments: Vec<Bytes>,
    ) -> Result<Option<Hold>, CloseReason> {
        if matches!(kind, Kind::Ack | Kind::BinaryAck) {
            // The server never asks clients for acks.
            serde_json::from_str::<Vec<&RawValue>>(data)
                .map_err(|e| parse_error(session.sid(), e))?;
            return Ok(None);
        }
        let (name, args) = packet::event_args(data).map_err(|e| parse_error(session.sid(), e))?;
        let Some(socket) = session.conn().find(nsp) else {
            // It could not be answered: the session ends instead, so that
            // no event is ever met with silence.
            return Err(parse_error(
                session.sid(),
                "an event for a namespace not connected",
            ));
        };
        self.handler.event(
            &socket,
            Event {
                name,
                args,
                attachments,
                ack,
            },
        );
        Ok(None)
    }
}
