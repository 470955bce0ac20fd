//! Presence events: a user's first socket connecting or last one leaving
//! (after the grace period, see `chat::presence`) is announced as
//! `presence` to the sockets of everyone who shares a conversation with
//! them; `last_seen` is stored at each change.

use palaver_protocol::{events, Presence};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::SocketIo;

use super::{sockets_left, sockets_of, user_room, Origin};
use crate::app::App;
use crate::store::UserId;

/// Called for every authenticated socket.
pub fn connected<A: Adapter>(app: &App, socket: &SocketRef<A>, user: UserId) {
    if app.chat.presence().connect(user) {
        let (app, socket) = (app.clone(), socket.clone());
        tokio::spawn(async move {
            // In a cluster the user may be online through another node.
            if app.chat.cluster().is_none() || sockets_of(&app, &socket, user).await <= 1 {
                announce(&app, Origin::Socket(&socket), user, true).await;
            }
        });
    }
}

/// Called when an authenticated socket goes away.
pub fn disconnected<A: Adapter>(app: &App, socket: &SocketRef<A>, user: UserId) {
    if let Some(token) = app.chat.presence().disconnect(user) {
        let (app, socket) = (app.clone(), socket.clone());
        tokio::spawn(async move {
            if app.chat.presence().settle_offline(user, token).await
                && sockets_left(&app, &socket, user).await == 0
            {
                announce(&app, Origin::Socket(&socket), user, false).await;
            }
        });
    }
}

/// Called for an authenticated socket that socketioxide dropped without a
/// disconnect (its client went away during the handshake): as
/// [`disconnected`], announced by the server since the socket is gone.
pub fn dropped<A: Adapter>(app: &App, io: &SocketIo<A>, user: UserId) {
    let Some(token) = app.chat.presence().disconnect(user) else {
        return;
    };
    // Dropped outside the runtime only at exit, when no one is listening.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (app, io) = (app.clone(), io.clone());
    runtime.spawn(async move {
        if app.chat.presence().settle_offline(user, token).await
            && sockets_left(&app, Origin::Server(&io), user).await == 0
        {
            announce(&app, Origin::Server(&io), user, false).await;
        }
    });
}

async fn announce<A: Adapter>(app: &App, from: Origin<'_, A>, user: UserId, online: bool) {
    let (contacts, at) = match app.chat.presence_changed(user).await {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(user, error = %e, "presence change not announced");
            return;
        }
    };
    if contacts.is_empty() {
        return;
    }
    let event = Presence {
        user_id: user,
        online,
        last_seen: Some(at),
    };
    let rooms: Vec<String> = contacts.iter().map(|&u| user_room(u)).collect();
    super::deliver(app, from, rooms, events::PRESENCE, &event).await;
}
