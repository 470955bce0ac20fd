//! The `message` event: parse, queue for the writer in arrival order, and
//! answer once committed.
//!
//! socketioxide spawns a task per event for async handlers, so two events
//! from one socket could reach the writer out of order. [`SendHandler`]
//! therefore implements `MessageHandler` directly: its `call` runs
//! synchronously in the socket's packet order, parses the payload and
//! enqueues the send before the next packet is looked at.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use palaver_protocol::{events, Ack, Message, SendMessage, SentBody};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::{FromMessageParts, MessageHandler};
use socketioxide::socket::Socket;
use socketioxide_core::Value;

use super::{answer_error, user_room};
use crate::app::App;
use crate::chat::{ChatError, Respond, SendRequest, Sent};
use crate::store::UserId;

/// Handler for `message`; see the module docs. One per socket, made when
/// the socket is authenticated, so it carries the socket's user (looking
/// it up in the socket's extensions on every message was 1.5 % of the
/// server's CPU with 10,000 users; BENCHMARKS.md, "Where the time goes").
pub struct SendHandler {
    app: App,
    user: UserId,
}

impl SendHandler {
    pub fn new(app: App, user: UserId) -> Self {
        SendHandler { app, user }
    }
}

/// Marker type distinguishing this handler from socketioxide's blanket impls.
pub struct Ordered;

impl<A: Adapter> MessageHandler<A, Ordered> for SendHandler {
    fn call(&self, s: Arc<Socket<A>>, mut v: Value, ack_id: Option<i64>) {
        let Ok(ack) = AckSender::<A>::from_message_parts(&s, &mut v, &ack_id);
        let Ok(TryData(data)) = TryData::<SendMessage>::from_message_parts(&s, &mut v, &ack_id);
        let data = data.map_err(|_| explain_bad_payload(&s, &mut v, &ack_id));
        let user = self.user;
        let max = self.app.chat.max_message_chars();
        let parsed = data
            .and_then(|raw| SendRequest::parse(raw, user, max))
            .and_then(|req| {
                self.app
                    .limits
                    .message_here(user)
                    .map(|()| req)
                    .map_err(ChatError::from)
            });
        match parsed {
            Ok(req) => self.app.chat.send(
                req,
                Box::new(SocketRespond {
                    app: self.app.clone(),
                    socket: SocketRef::from(s),
                    ack,
                }),
            ),
            Err(e) => answer_error(ack, e),
        }
    }
}

/// Decodes a payload that failed to parse again, generically, to say which
/// field is wrong (the fast path's error names only a line and column of
/// the packet).
fn explain_bad_payload<A: Adapter>(
    s: &Arc<Socket<A>>,
    v: &mut Value,
    ack_id: &Option<i64>,
) -> ChatError {
    let Ok(TryData(generic)) = TryData::<serde_json::Value>::from_message_parts(s, v, ack_id);
    explain_bad_message(generic)
}

/// The error for a `message` payload that did not parse, naming the wrong
/// field, from the same payload decoded generically.
pub(super) fn explain_bad_message<E>(generic: Result<serde_json::Value, E>) -> ChatError {
    let reason = match generic {
        Ok(value) if value.is_object() => {
            match serde_path_to_error::deserialize::<_, SendMessage>(value) {
                Ok(_) => "unreadable payload".to_string(),
                Err(e) if e.path().iter().next().is_none() => e.inner().to_string(),
                Err(e) => format!("{}: {}", e.path(), e.inner()),
            }
        }
        Ok(_) | Err(_) => "the payload must be an object".to_string(),
    };
    ChatError::invalid(format!("invalid message payload: {reason}"))
}

/// Acks the sending socket and delivers to every other socket of every
/// recipient (`socket.to(..)` excludes the sending socket itself).
struct SocketRespond<A: Adapter> {
    app: App,
    socket: SocketRef<A>,
    ack: AckSender<A>,
}

impl<A: Adapter> Respond for SocketRespond<A> {
    fn respond(self: Box<Self>, outcome: Result<Sent, ChatError>) -> BoxFuture<'static, ()> {
        let SocketRespond { app, socket, ack } = *self;
        match outcome {
            Ok(sent) => {
                if let Err(e) = ack.send(&Ack::ok(SentBody::<&Message> {
                    message: &sent.message,
                })) {
                    // The socket is gone or its queue is full; the message is
                    // stored, and a retry with its clientMsgId returns it.
                    tracing::debug!(error = %e, "ack not sent");
                }
                if !sent.fresh {
                    return futures_util::future::ready(()).boxed();
                }
                let rooms: Vec<String> = sent.recipients.iter().map(|&u| user_room(u)).collect();
                async move {
                    super::deliver(&app, &socket, rooms, events::MESSAGE, &*sent.message).await;
                }
                .boxed()
            }
            Err(e) => {
                answer_error(ack, e);
                futures_util::future::ready(()).boxed()
            }
        }
    }
}
