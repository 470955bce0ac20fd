//! Presence events: a user's first socket connecting or last one leaving
//! (after the grace period, see `chat::presence`) is announced as
//! `presence` to the sockets of everyone who shares a conversation with
//! them; `last_seen` is stored at each change.

use palaver_protocol::{events, Presence};

use super::{frame, Hub};
use crate::ids::UserId;

/// Called for every socket that connects.
pub(super) fn connected(hub: &Hub, user: UserId) {
    if hub.app().chat.presence().connect(user) {
        let hub = hub.clone();
        tokio::spawn(async move {
            // In a cluster the user may be online through another node.
            if hub.relay().is_none() || hub.sockets_of(user).await <= 1 {
                announce(&hub, user, true).await;
            }
        });
    }
}

/// Called for every socket that goes away.
pub(super) fn disconnected(hub: &Hub, user: UserId) {
    if let Some(token) = hub.app().chat.presence().disconnect(user) {
        let hub = hub.clone();
        tokio::spawn(async move {
            if hub.app().chat.presence().settle_offline(user, token).await
                && hub.sockets_of(user).await == 0
            {
                announce(&hub, user, false).await;
            }
        });
    }
}

async fn announce(hub: &Hub, user: UserId, online: bool) {
    let (contacts, at) = match hub.app().chat.presence_changed(user).await {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(user = user.get(), error = %e, "presence change not announced");
            return;
        }
    };
    if contacts.is_empty() {
        return;
    }
    let event = Presence {
        user_id: user.get(),
        online,
        last_seen: Some(at),
    };
    hub.deliver(&contacts, None, frame(events::PRESENCE, &event));
}
