//! The Socket.IO front door: namespace `/`, the authenticating handshake,
//! the event handlers and delivery, on Palaver's own Socket.IO layer
//! (`palaver-sio`).
//!
//! The handshake (token, account, connection limit) is decided before the
//! CONNECT is answered, and the session reads nothing else meanwhile, so
//! an event sent right after connecting always finds its socket set up.
//! Events arrive on the session's task in order: `message` is parsed and
//! queued for the writer there and then (so one socket's sends are
//! committed in the order sent); `read` and `typing`, which wait for the
//! database, are spawned.
//!
//! Delivery looks each recipient up in this node's [`Registry`] and
//! queues the same encoded frame on each of their sockets; in a cluster
//! the frame also goes to the recipient's channel on Redis ([`relay`]).

pub mod decode;
mod message;
mod presence;
mod read;
mod registry;
pub mod relay;
mod typing;

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use palaver_protocol::{events, Ack, ErrorBody, ErrorCode, Message};
use palaver_sio::socketio::{self, packet};
use palaver_sio::{Connect, DisconnectReason, Event, Frame, Handler};
use serde_json::value::RawValue;

use crate::app::App;
use crate::auth::TokenMark;
use crate::chat::{refusal, ChatError, Deliver, Sessions, Target, TokenState};
use crate::ids::UserId;
use crate::limits::TypingBucket;
use crate::metrics::Transport;
pub use registry::Registry;
pub use relay::Relay;

/// Binary attachments a packet may announce: Palaver's events have none.
pub const MAX_BINARY_ATTACHMENTS: usize = 4;

/// Most bytes waiting to be sent to one socket before it is disconnected
/// as too slow: a client may keep well over a thousand sends in flight
/// (each ack and delivery is a few hundred bytes).
pub const SOCKET_QUEUE_BYTES: usize = 4 << 20;

/// What Palaver keeps with each socket.
pub struct Conn {
    pub user: UserId,
    /// What its token is judged by when its user's tokens are revoked
    /// (v1.3).
    token: TokenMark,
    /// Made at the socket's first typing event: idle sockets hold none.
    typing: OnceLock<TypingBucket>,
}

/// A connected socket.
pub type Sock = palaver_sio::Socket<Conn>;

/// The Socket.IO server.
pub type Server = palaver_sio::Server<Hub>;

/// The handler behind every socket: cheap to clone.
#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

struct HubInner {
    app: App,
    registry: Registry,
    relay: Option<Relay>,
}

/// Palaver's Socket.IO settings.
pub fn config(max_frame_bytes: usize) -> socketio::Config {
    socketio::Config {
        engine: palaver_sio::engine::Config {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: max_frame_bytes,
            max_queue_bytes: SOCKET_QUEUE_BYTES,
            upgrade_timeout: Duration::from_secs(10),
            connect_timeout: Some(Duration::from_secs(45)),
            ws_read_buffer: 1024,
        },
        max_attachments: MAX_BINARY_ATTACHMENTS,
        max_attachment_bytes: max_frame_bytes,
    }
}

/// Builds the Socket.IO server for `app`; `relay` links it to the other
/// nodes of a cluster.
pub fn server(app: &App, relay: Option<Relay>) -> Server {
    let hub = Hub(Arc::new(HubInner {
        app: app.clone(),
        registry: Registry::default(),
        relay,
    }));
    if let Some(relay) = &hub.0.relay {
        relay.attach(&hub);
        app.chat.set_online_lookup(Arc::new(relay.clone()));
    }
    app.chat
        .set_deliverer(Arc::new(SystemDeliveries(Arc::downgrade(&hub.0))));
    app.chat
        .set_sessions(Arc::new(SystemDeliveries(Arc::downgrade(&hub.0))));
    palaver_sio::server(config(app.config.max_frame_bytes as usize), hub)
}

/// Delivers the chat's own messages (a group's system messages) to the
/// sockets, and ends those whose token is revoked; holds the hub weakly,
/// as the chat outlives nothing here.
struct SystemDeliveries(Weak<HubInner>);

impl Sessions for SystemDeliveries {
    fn has_sockets(&self, user: UserId) -> bool {
        self.0
            .upgrade()
            .is_some_and(|hub| hub.registry.count(user) > 0)
    }

    fn end_revoked(&self, user: UserId, state: &TokenState) {
        let Some(hub) = self.0.upgrade() else { return };
        hub.registry.each(user, |s| {
            if let Some(reason) = refusal(state, &s.data().token) {
                end_session(s, reason);
            }
        });
    }
}

impl Deliver for SystemDeliveries {
    fn message(&self, users: &[UserId], message: &Message) {
        if let Some(hub) = self.0.upgrade() {
            Hub(hub).deliver(users, None, frame(events::MESSAGE, message));
        }
    }
}

impl Hub {
    pub fn app(&self) -> &App {
        &self.0.app
    }

    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    pub fn relay(&self) -> Option<&Relay> {
        self.0.relay.as_ref()
    }

    /// Queues `frame` on every socket of every user in `users` but
    /// `except` (the socket an event came from), on every node.
    pub fn deliver(&self, users: &[UserId], except: Option<&Sock>, frame: Frame) {
        self.deliver_here(users, except, &frame);
        if let Some(relay) = &self.0.relay {
            relay.publish(users, frame);
        }
    }

    /// The same, on this node only.
    pub fn deliver_here(&self, users: &[UserId], except: Option<&Sock>, frame: &Frame) {
        let mut queued = 0;
        for &user in users {
            self.0.registry.each(user, |s| {
                if except.is_none_or(|e| !e.same(s)) {
                    // A socket too far behind is disconnected by its queue;
                    // its client catches up through history.
                    if s.send(frame.clone()).is_ok() {
                        queued += 1;
                    }
                }
            });
        }
        if queued > 0 {
            self.0.app.metrics.deliveries.inc_by(queued);
        }
    }

    /// How many sockets `user` has on every node (this node's when Redis
    /// cannot answer).
    pub async fn sockets_of(&self, user: UserId) -> usize {
        if let Some(relay) = &self.0.relay {
            if let Some(n) = relay.connections(user).await {
                return n;
            }
        }
        self.0.registry.count(user)
    }

    /// Accepts a token, or says why not (the `connect_error` message).
    async fn authenticate(&self, token: Option<String>) -> Result<Conn, String> {
        let app = &self.0.app;
        let Some(token) = token else {
            return Err("unauthorized: missing token".into());
        };
        let token = app
            .tokens
            .verify_claims(&token)
            .map_err(|e| format!("unauthorized: {e}"))?;
        if let Err(e) = app.chat.check_token(token.user, &token.mark).await {
            return Err(e.to_string());
        }
        let user = token.user;
        if let Err(e) = app.chat.ensure_user(user).await {
            return Err(format!("{}: {e}", e.code()));
        }
        let everywhere = match &self.0.relay {
            Some(relay) => relay.connections(user).await,
            None => None,
        };
        // Counted last, with nothing awaited after it: every count is
        // paired with one `disconnected`.
        if let Err(e) = app.limits.connect(user, everywhere) {
            let e = ChatError::from(e);
            return Err(format!("{}: {e}", e.code()));
        }
        Ok(Conn {
            user,
            token: token.mark,
            typing: OnceLock::new(),
        })
    }
}

impl Hub {
    /// Checks a just-registered socket's token again: a revocation that
    /// landed between the handshake's check and the registration found no
    /// socket to end. From this node's cache when it holds the user (the
    /// handshake filled it), else (a change dropped it) from the database.
    fn recheck_token(&self, socket: &Sock) {
        let (user, token) = (socket.data().user, socket.data().token);
        match self.0.app.chat.cached_refusal(user, &token) {
            Some(None) => {}
            Some(Some(reason)) => end_session(socket, reason),
            None => {
                let (chat, socket) = (self.0.app.chat.clone(), socket.clone());
                tokio::spawn(async move {
                    if let Err(ChatError::Unauthorized(message)) =
                        chat.check_token(user, &token).await
                    {
                        end_session(&socket, message.trim_start_matches("unauthorized: "));
                    }
                });
            }
        }
    }
}

/// The token of a handshake's auth payload.
fn token_of(auth: Option<&RawValue>) -> Option<String> {
    let auth: serde_json::Value = serde_json::from_str(auth?.get()).ok()?;
    auth.get("token")?.as_str().map(str::to_owned)
}

impl Handler for Hub {
    type Data = Conn;

    fn connect(&self, request: Connect<'_>) -> BoxFuture<'static, Result<Conn, String>> {
        let token = token_of(request.auth);
        let peer = request.peer;
        let hub = self.clone();
        Box::pin(async move {
            let result = hub.authenticate(token).await;
            if let Err(reason) = &result {
                // The reason, never the token.
                tracing::info!(%peer, %reason, "handshake refused");
            }
            result
        })
    }

    fn connected(&self, socket: &Sock) {
        let _span = socket_span(socket).entered();
        let user = socket.data().user;
        let here = self.0.registry.add(user, socket.clone());
        let metrics = &self.0.app.metrics;
        metrics.sockets.inc();
        if here == 1 {
            metrics.users_online.inc();
        }
        if let Some(relay) = &self.0.relay {
            relay.count_changed(user, here);
        }
        tracing::debug!(sid = %socket.id(), user = user.get(), "socket connected");
        self.recheck_token(socket);
        presence::connected(self, user);
    }

    fn event(&self, socket: &Sock, event: Event<'_>) {
        let _span = socket_span(socket).entered();
        self.0.app.metrics.event(&event.name).inc();
        match &*event.name {
            events::MESSAGE => message::on_send(self, socket, event),
            events::EDIT | events::DELETE | events::REACT => {
                message::on_change(self, socket, event)
            }
            events::READ => read::on_read(self, socket, event),
            events::TYPING => typing::on_typing(self, socket, event),
            other => {
                let mut name: String = other.chars().take(64).collect();
                if name.len() < other.len() {
                    name.push('…');
                }
                answer_error(
                    self,
                    socket,
                    event.ack,
                    ChatError::invalid(format!("unknown event {name:?}")),
                );
            }
        }
    }

    fn disconnected(&self, socket: &Sock, reason: DisconnectReason) {
        let _span = socket_span(socket).entered();
        let user = socket.data().user;
        tracing::debug!(sid = %socket.id(), user = user.get(), ?reason, "socket disconnected");
        let left = self.0.registry.remove(user, socket);
        let metrics = &self.0.app.metrics;
        metrics.sockets.dec();
        if left == 0 {
            metrics.users_online.dec();
        }
        if let Some(relay) = &self.0.relay {
            relay.count_changed(user, left);
        }
        self.0.app.limits.disconnected(user);
        presence::disconnected(self, user);
    }
}

/// The span of what one socket does: its session id and user, so that
/// one user's trouble can be followed through the logs.
fn socket_span(socket: &Sock) -> tracing::Span {
    tracing::info_span!("socket", sid = %socket.id(), user = socket.data().user.get())
}

/// Ends a socket whose token no longer holds: `session_ended` with the
/// reason, then a Socket.IO DISCONNECT (v1.3).
fn end_session(socket: &Sock, reason: &str) {
    tracing::info!(sid = %socket.id(), user = socket.data().user.get(), reason, "socket ended: its token no longer holds");
    let body = ErrorBody {
        code: ErrorCode::Unauthorized,
        message: format!("unauthorized: {reason}"),
    };
    let _ = socket.emit(events::SESSION_ENDED, &body);
    socket.disconnect();
}

/// Answers an event, if the client asked for an answer.
fn answer<T: serde::Serialize>(socket: &Sock, ack: Option<u64>, body: &T) {
    if let Some(id) = ack {
        // A socket that is gone or too far behind is being closed.
        let _ = socket.ack(id, body);
    }
}

/// Answers an event with an error (counted whether or not the client
/// asked for an answer).
fn answer_error(hub: &Hub, socket: &Sock, ack: Option<u64>, e: ChatError) {
    hub.app().metrics.error(Transport::SocketIo, e.code());
    answer(socket, ack, &Ack::<()>::err(e.code(), e.to_string()));
}

/// An event's frame for delivery, encoded once.
fn frame<T: serde::Serialize + ?Sized>(event: &str, data: &T) -> Frame {
    packet::event("/", event, data)
}

/// The typed payload of a conversation event (`read`, `typing`): its first
/// argument, and the conversation it names.
pub(crate) fn conversation_payload<T: serde::de::DeserializeOwned>(
    event: &str,
    arg: Option<&RawValue>,
    names: fn(&T) -> (&str, i64),
) -> Result<(T, Target), ChatError> {
    let arg = arg.ok_or_else(|| ChatError::invalid(format!("invalid {event} payload: missing")))?;
    let input: T = serde_json::from_str(arg.get()).map_err(|e| invalid_payload(event, e))?;
    let (kind, receiver) = names(&input);
    let target = Target::parse(kind, receiver)?;
    Ok((input, target))
}

/// The error for a payload that did not parse.
fn invalid_payload(event: &str, e: impl std::fmt::Display) -> ChatError {
    let reason = e.to_string();
    // serde_json appends a position inside the packet, meaningless to clients.
    let reason = reason.split(" at line ").next().unwrap_or(&reason);
    ChatError::invalid(format!("invalid {event} payload: {reason}"))
}
