//! The `message`, `edit` and `delete` events: parsed and queued for the
//! writer on the socket's own task, in the order the socket sent them, and
//! answered once committed.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use palaver_protocol::{
    events, Ack, ChangeInput, Message, Reaction, ReactionBody, SendMessage, SentBody,
};
use palaver_sio::Event;
use serde_json::value::RawValue;
use std::time::Instant;

use super::{answer, answer_error, conversation_payload, frame, Hub, Sock};
use crate::chat::{ChangeRequest, ChatError, Respond, SendRequest, Sent};
use crate::ids::UserId;

pub(super) fn on_send(hub: &Hub, socket: &Sock, event: Event<'_>) {
    let arrived = Instant::now();
    let app = hub.app();
    let user = socket.data().user;
    let parsed = parse_send(
        event.args.first().copied(),
        user,
        app.chat.max_message_chars(),
    )
    .and_then(|req| {
        app.limits
            .message_here(user)
            .map(|()| req)
            .map_err(ChatError::from)
    });
    match parsed {
        Ok(req) => app.chat.send(
            req,
            Box::new(SocketRespond {
                hub: hub.clone(),
                socket: socket.clone(),
                ack: event.ack,
                event: events::MESSAGE,
                arrived,
            }),
        ),
        Err(e) => answer_error(hub, socket, event.ack, e),
    }
}

/// `edit`, `delete` and `react` (v1.2): through the writer like a send,
/// counted against the same message rate.
pub(super) fn on_change(hub: &Hub, socket: &Sock, event: Event<'_>) {
    let arrived = Instant::now();
    let app = hub.app();
    let user = socket.data().user;
    let arg = event.args.first().copied();
    let parsed =
        parse_change(&event.name, arg, user, app.chat.max_message_chars()).and_then(|req| {
            app.limits
                .message_here(user)
                .map(|()| req)
                .map_err(ChatError::from)
        });
    match parsed {
        Ok(req) => app.chat.change(
            req,
            Box::new(SocketRespond {
                hub: hub.clone(),
                socket: socket.clone(),
                ack: event.ack,
                event: events::MESSAGE_UPDATED,
                arrived,
            }),
        ),
        Err(e) => answer_error(hub, socket, event.ack, e),
    }
}

/// An `edit`, `delete` or `react` payload as the writer takes it.
pub(crate) fn parse_change(
    name: &str,
    arg: Option<&RawValue>,
    user: UserId,
    max_chars: usize,
) -> Result<ChangeRequest, ChatError> {
    let names: fn(&ChangeInput) -> (&str, i64) = |i| (i.conversation_type.as_str(), i.receiver_id);
    let (input, _) = conversation_payload(name, arg, names)?;
    match name {
        events::EDIT => ChangeRequest::edit(input, user, max_chars),
        events::REACT => ChangeRequest::react(input, user),
        _ => ChangeRequest::delete(input, user),
    }
}

/// A `message` payload as the writer takes it, or the error it is
/// answered with.
pub(crate) fn parse_send(
    arg: Option<&RawValue>,
    user: UserId,
    max_chars: usize,
) -> Result<SendRequest, ChatError> {
    let Some(arg) = arg else {
        return Err(explain_bad_message(Err(())));
    };
    let raw: SendMessage = serde_json::from_str(arg.get())
        .map_err(|_| explain_bad_message(serde_json::from_str::<serde_json::Value>(arg.get())))?;
    SendRequest::parse(raw, user, max_chars)
}

/// The error for a `message` payload that did not parse, naming the wrong
/// field, from the same payload decoded generically.
fn explain_bad_message<E>(generic: Result<serde_json::Value, E>) -> ChatError {
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

/// Acks the sending socket and delivers `event` to every other socket of
/// every recipient.
struct SocketRespond {
    hub: Hub,
    socket: Sock,
    ack: Option<u64>,
    event: &'static str,
    /// When the event arrived (for `palaver_message_ack_duration_seconds`).
    arrived: Instant,
}

impl Respond for SocketRespond {
    fn respond(self: Box<Self>, outcome: Result<Sent, ChatError>) -> BoxFuture<'static, ()> {
        let SocketRespond {
            hub,
            socket,
            ack,
            event,
            arrived,
        } = *self;
        // The ack is queued next, whatever the outcome.
        hub.app()
            .metrics
            .ack_seconds
            .observe(arrived.elapsed().as_secs_f64());
        match outcome {
            Ok(Sent {
                reaction: Some(reaction),
                recipients,
                fresh,
                ..
            }) => {
                answer(
                    &socket,
                    ack,
                    &Ack::ok(ReactionBody::<&Reaction> {
                        reaction: &reaction,
                    }),
                );
                if fresh {
                    let frame = frame(events::REACTION, &reaction);
                    hub.deliver(&recipients, Some(&socket), frame);
                }
            }
            Ok(sent) => {
                // If the socket is gone the message is stored all the same,
                // and a retry with its clientMsgId returns it.
                answer(
                    &socket,
                    ack,
                    &Ack::ok(SentBody::<&Message> {
                        message: &sent.message,
                    }),
                );
                if sent.fresh {
                    let frame = frame(event, &*sent.message);
                    hub.deliver(&sent.recipients, Some(&socket), frame);
                }
            }
            Err(e) => answer_error(&hub, &socket, ack, e),
        }
        futures_util::future::ready(()).boxed()
    }
}
