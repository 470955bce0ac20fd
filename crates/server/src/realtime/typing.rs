//! The `typing` event: relayed to the other participants, never stored.
//!
//! Each socket may send a burst of typing events and then a few a second
//! ([`TypingBucket`], in `limits`); beyond that it is answered
//! `rate_limited`, so a stuck client cannot flood a group. The server does
//! not time indicators out itself: clients repeat `typing: true` every few
//! seconds while the user types, and receivers treat an indicator not
//! repeated within 6 seconds as stopped (the rule is in the README for
//! client authors).

use palaver_protocol::{events, Ack, Typing, TypingInput};
use palaver_sio::Event;
use serde_json::value::RawValue;

use super::{answer, answer_error, conversation_payload, frame, Hub, Sock};
use crate::chat::{ChatError, Target};
use crate::limits::TypingBucket;

/// A `typing` payload: the conversation and whether the user types.
pub(crate) fn parse_typing(arg: Option<&RawValue>) -> Result<(Target, bool), ChatError> {
    let names: fn(&TypingInput) -> (&str, i64) = |i| (i.conversation_type.as_str(), i.receiver_id);
    let (input, target) = conversation_payload("typing", arg, names)?;
    Ok((target, input.typing))
}

pub(super) fn on_typing(hub: &Hub, socket: &Sock, event: Event<'_>) {
    let user = socket.data().user;
    let (target, typing) = match parse_typing(event.args.first().copied()) {
        Ok(parsed) => parsed,
        Err(e) => return answer_error(hub, socket, event.ack, e),
    };
    let bucket = socket.data().typing.get_or_init(TypingBucket::default);
    if let Err(e) = hub.app().limits.typing(bucket, user) {
        return answer_error(hub, socket, event.ack, e.into());
    }
    let (hub, socket, ack) = (hub.clone(), socket.clone(), event.ack);
    tokio::spawn(async move {
        match hub.app().chat.typing_recipients(user, target).await {
            Err(e) => answer_error(&hub, &socket, ack, e),
            Ok(others) => {
                answer(&socket, ack, &Ack::<()>::done());
                if others.is_empty() {
                    return;
                }
                let event = Typing {
                    conversation_type: target.conversation(user).kind(),
                    sender_id: user.get(),
                    receiver_id: target.receiver(),
                    typing,
                };
                hub.deliver(&others, Some(&socket), frame(events::TYPING, &event));
            }
        }
    });
}
