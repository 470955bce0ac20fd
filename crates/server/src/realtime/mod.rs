//! The Socket.IO front door: namespace `/`, the authenticating connect
//! middleware, and the event handlers.
//!
//! Everything a socket needs is set up in the connect middleware, which
//! socketioxide runs *before* it answers the client's CONNECT: the user's
//! room is joined and the handlers are registered, so an event sent right
//! after connecting can never find the socket without its handlers (the
//! connect handler proper runs in a spawned task, after the CONNECT reply).
//!
//! Each user's sockets share the room `u:<id>`; delivery addresses rooms,
//! so routing cost does not depend on how many users are connected.

pub mod decode;
mod message;
mod presence;
mod read;
mod typing;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use palaver_protocol::{Ack, ErrorCode};
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::DisconnectReason;
use socketioxide::SocketIo;
use socketioxide_core::adapter::DefinedAdapter;

use crate::app::App;
use crate::chat::{ChatError, OnlineLookup};
use crate::cluster::{CALL_TIMEOUT, REQUEST_TIMEOUT};
use crate::store::UserId;

/// Binary attachments a packet may announce: Palaver's events have none.
pub const MAX_BINARY_ATTACHMENTS: usize = 4;

/// The authenticated user of a socket, kept in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct SocketUser(pub UserId);

/// The room holding every socket of `user`.
pub fn user_room(user: UserId) -> String {
    format!("u:{user}")
}

/// Registers the `/` namespace. With the Redis adapter, the returned
/// value is a future that subscribes the namespace and must be awaited.
pub fn register<A: Adapter + DefinedAdapter>(io: &SocketIo<A>, app: &App) -> A::InitRes {
    if app.chat.cluster().is_some() {
        app.chat
            .set_online_lookup(Arc::new(ClusterOnline { io: io.clone() }));
    }
    io.ns("/", on_connect::<A>.with(authenticate::<A>))
}

/// Where an event goes out from: a socket, which `to` leaves out (events
/// answer a socket), or the server itself (for a socket that is gone).
pub(crate) enum Origin<'a, A: Adapter> {
    Socket(&'a SocketRef<A>),
    Server(&'a SocketIo<A>),
}

impl<A: Adapter> Clone for Origin<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: Adapter> Copy for Origin<'_, A> {}

impl<'a, A: Adapter> From<&'a SocketRef<A>> for Origin<'a, A> {
    fn from(socket: &'a SocketRef<A>) -> Self {
        Origin::Socket(socket)
    }
}

impl<A: Adapter> Origin<'_, A> {
    /// Every socket in `rooms` but the origin's own.
    fn to(self, rooms: Vec<String>) -> BroadcastOperators<A> {
        match self {
            Origin::Socket(s) => s.to(rooms),
            Origin::Server(io) => io.to(rooms),
        }
    }

    /// The same on this node only.
    fn local_to(self, rooms: Vec<String>) -> BroadcastOperators<A> {
        match self {
            Origin::Socket(s) => s.local().to(rooms),
            Origin::Server(io) => io.local().to(rooms),
        }
    }

    /// Every socket in `room`.
    fn within(self, room: String) -> BroadcastOperators<A> {
        match self {
            Origin::Socket(s) => s.within(room),
            Origin::Server(io) => io.within(room),
        }
    }
}

/// Sends `event` to every socket in `rooms` except the sending socket
/// itself, on every node. When Redis is away (or does not answer in time)
/// it goes to this node's sockets only: clients catch up through history.
pub(crate) async fn deliver<'a, A: Adapter, T: serde::Serialize + ?Sized>(
    app: &App,
    from: impl Into<Origin<'a, A>>,
    rooms: Vec<String>,
    event: &str,
    data: &T,
) {
    let from = from.into();
    if let Some(cluster) = app.chat.cluster() {
        if cluster.is_up() {
            let everywhere = from.to(rooms.clone()).emit(event, data);
            match tokio::time::timeout(CALL_TIMEOUT, everywhere).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => tracing::debug!(error = %e, "cluster delivery failed"),
                Err(_) => tracing::debug!("cluster delivery timed out"),
            }
            cluster.set_up(false);
        }
        if let Err(e) = from.local_to(rooms).emit(event, data).await {
            tracing::debug!(error = %e, "local delivery failed");
        }
        return;
    }
    if let Err(e) = from.to(rooms).emit(event, data).await {
        tracing::debug!(error = %e, "delivery failed");
    }
}

/// How many sockets `user` has: on every node in a cluster whose Redis
/// answers, else on this node.
async fn sockets_of<'a, A: Adapter>(
    app: &App,
    from: impl Into<Origin<'a, A>>,
    user: UserId,
) -> usize {
    count_sockets(app, from.into(), user).await.0
}

/// Attempts at counting a user's sockets on every node before a count
/// that some node did not answer in time is taken as it is.
const OFFLINE_COUNT_ATTEMPTS: u32 = 3;

/// How many sockets `user` has left, for deciding that they are offline:
/// a count that some node did not answer in time is tried again (a node
/// that is slow for a moment must not make a user on it look offline).
async fn sockets_left<'a, A: Adapter>(
    app: &App,
    from: impl Into<Origin<'a, A>>,
    user: UserId,
) -> usize {
    let from = from.into();
    let mut count = 0;
    for _ in 0..OFFLINE_COUNT_ATTEMPTS {
        let (n, complete) = count_sockets(app, from, user).await;
        if complete || n > 0 {
            return n;
        }
        count = n;
    }
    count
}

/// Counts `user`'s sockets; true when every node that should answer did.
/// The adapter's answer ends as soon as every other node has answered, or
/// at its request timeout with the nodes that did ([`REQUEST_TIMEOUT`]):
/// so an answer well within it is complete. Without Redis, or with Redis
/// away, the count is this node's sockets.
async fn count_sockets<A: Adapter>(app: &App, from: Origin<'_, A>, user: UserId) -> (usize, bool) {
    let room = user_room(user);
    let Some(cluster) = app.chat.cluster() else {
        return (from.within(room).local().sockets().len(), true);
    };
    if cluster.is_up() {
        let started = tokio::time::Instant::now();
        let all = from.within(room.clone()).fetch_sockets();
        if let Ok(Ok(sockets)) = tokio::time::timeout(REQUEST_TIMEOUT + CALL_TIMEOUT, all).await {
            return (sockets.len(), started.elapsed() < REQUEST_TIMEOUT * 9 / 10);
        }
    }
    (from.within(room).local().sockets().len(), false)
}

/// Online-ness over the cluster: a user is online if any node holds a
/// socket in their room.
struct ClusterOnline<A: Adapter> {
    io: SocketIo<A>,
}

/// Most users looked up across nodes for one answer (a conversation list
/// is at most 1,000 rows); the rest count as offline unless on this node.
const MAX_ONLINE_LOOKUPS: usize = 200;

impl<A: Adapter> OnlineLookup for ClusterOnline<A> {
    fn online(&self, users: Vec<UserId>) -> BoxFuture<'static, HashSet<UserId>> {
        let io = self.io.clone();
        Box::pin(async move {
            let lookups = users.into_iter().take(MAX_ONLINE_LOOKUPS).map(|u| {
                let all = io.within(user_room(u)).fetch_sockets();
                async move {
                    match tokio::time::timeout(CALL_TIMEOUT * 3, all).await {
                        Ok(Ok(sockets)) if !sockets.is_empty() => Some(u),
                        _ => None,
                    }
                }
            });
            futures_util::stream::iter(lookups)
                .buffer_unordered(16)
                .filter_map(std::future::ready)
                .collect()
                .await
        })
    }
}

/// Why a handshake was refused; its text is the `connect_error` message.
#[derive(Debug)]
struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The connection slot and the presence an authenticated socket holds on
/// this node, kept in its extensions; `on_disconnect` gives them back.
/// socketioxide drops a socket without calling `on_disconnect` when its
/// client went away while the connect middleware was still running (the
/// engine's disconnect found no socket yet, and the CONNECT reply could not
/// be sent): they are given back when the socket is dropped instead.
/// Without this, a user whose handshake was cut short stayed online for
/// good and lost one of their connection slots until a restart.
struct Held<A: Adapter> {
    app: App,
    io: SocketIo<A>,
    user: UserId,
    released: AtomicBool,
}

impl<A: Adapter> Held<A> {
    /// True the first time only.
    fn release(&self) -> bool {
        !self.released.swap(true, Ordering::AcqRel)
    }
}

impl<A: Adapter> Drop for Held<A> {
    fn drop(&mut self) {
        if self.release() {
            tracing::debug!(user = self.user, "socket dropped before it was connected");
            self.app.limits.disconnected(self.user);
            presence::dropped(&self.app, &self.io, self.user);
        }
    }
}

/// Verifies `auth.token`, then sets the socket up (see the module docs).
/// A refusal is logged with its reason and the peer's address, never the
/// token.
async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    state: State<App>,
    auth: TryData<Value>,
) -> Result<(), Refusal> {
    let peer = socket
        .req_parts()
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let result = set_up(socket, io, state, auth).await;
    if let Err(refusal) = &result {
        match peer {
            Some(peer) => tracing::info!(%peer, reason = %refusal, "handshake refused"),
            None => tracing::info!(reason = %refusal, "handshake refused"),
        }
    }
    result
}

async fn set_up<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    State(app): State<App>,
    TryData(auth): TryData<Value>,
) -> Result<(), Refusal> {
    let token = auth
        .ok()
        .and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned));
    let Some(token) = token else {
        return Err(Refusal("unauthorized: missing token".into()));
    };
    let user = app
        .tokens
        .verify(&token)
        .map_err(|e| Refusal(format!("unauthorized: {e}")))?;
    if let Err(e) = app.chat.ensure_user(user).await {
        return Err(Refusal(format!("{}: {e}", e.code())));
    }
    // Counted last: nothing below fails, and `on_disconnect` uncounts.
    let everywhere = sockets_of(&app, &socket, user);
    if let Err(e) = app.limits.connect(user, everywhere).await {
        let e = ChatError::from(e);
        return Err(Refusal(format!("{}: {e}", e.code())));
    }
    socket.extensions.insert(Arc::new(Held {
        app: app.clone(),
        io,
        user,
        released: AtomicBool::new(false),
    }));
    socket.extensions.insert(SocketUser(user));
    socket.join(user_room(user));
    socket.on(
        palaver_protocol::events::MESSAGE,
        message::SendHandler::new(app.clone(), user),
    );
    socket.on(palaver_protocol::events::READ, read::on_read::<A>);
    socket.on(palaver_protocol::events::TYPING, typing::on_typing::<A>);
    socket.on_fallback(unknown_event::<A>);
    socket.on_disconnect(on_disconnect::<A>);
    presence::connected(&app, &socket, user);
    Ok(())
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    if let Some(SocketUser(user)) = socket.extensions.get::<SocketUser>() {
        tracing::debug!(sid = %socket.id, user, "socket connected");
    }
}

async fn on_disconnect<A: Adapter>(
    socket: SocketRef<A>,
    State(app): State<App>,
    reason: DisconnectReason,
) {
    if let Some(held) = socket.extensions.get::<Arc<Held<A>>>() {
        tracing::debug!(sid = %socket.id, user = held.user, ?reason, "socket disconnected");
        if held.release() {
            app.limits.disconnected(held.user);
            presence::disconnected(&app, &socket, held.user);
        }
    }
}

/// Answers an event with an error ack.
fn answer_error<A: Adapter>(ack: AckSender<A>, e: ChatError) {
    let _ = ack.send(&Ack::<()>::err(e.code(), e.to_string()));
}

/// What every conversation event (`read`, `typing`) starts from: the
/// socket's user, the typed payload and the conversation it names.
fn conversation_event<A: Adapter, T>(
    socket: &SocketRef<A>,
    event: &str,
    data: Result<T, socketioxide::ParserError>,
    names: impl Fn(&T) -> (String, i64),
) -> Result<(UserId, T, crate::chat::Target), ChatError> {
    let Some(SocketUser(user)) = socket.extensions.get::<SocketUser>() else {
        return Err(ChatError::Unauthorized("unauthorized".into()));
    };
    let input = data.map_err(|e| invalid_payload(event, e))?;
    let (kind, receiver) = names(&input);
    let target = crate::chat::Target::parse(&kind, receiver)?;
    Ok((user, input, target))
}

/// The error for a payload that did not parse.
fn invalid_payload(event: &str, e: impl std::fmt::Display) -> ChatError {
    let reason = e.to_string();
    // serde_json appends a position inside the packet, meaningless to clients.
    let reason = reason.split(" at line ").next().unwrap_or(&reason);
    ChatError::invalid(format!("invalid {event} payload: {reason}"))
}

/// Every event is answered: an unknown one gets an `invalid_payload` ack.
async fn unknown_event<A: Adapter>(Event(event): Event, ack: AckSender<A>) {
    let mut name: String = event.chars().take(64).collect();
    if name.len() < event.len() {
        name.push('…');
    }
    let _ = ack.send(&Ack::<()>::err(
        ErrorCode::InvalidPayload,
        format!("unknown event {name:?}"),
    ));
}
