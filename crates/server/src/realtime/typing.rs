//! The `typing` event: relayed to the other participants, never stored.
//!
//! Each socket may send a burst of typing events and then a few a second
//! ([`TypingBucket`], in `limits`); beyond that it is answered
//! `rate_limited`, so a stuck client cannot flood a group. The server does not time indicators
//! out itself: clients repeat `typing: true` every few seconds while the
//! user types, and receivers treat an indicator not repeated within 6
//! seconds as stopped (the rule is in the README for client authors).

use palaver_protocol::{events, Ack, Typing, TypingInput};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};

use super::{answer_error, conversation_event, user_room};
use crate::app::App;
use crate::limits::TypingBucket;

pub async fn on_typing<A: Adapter>(
    socket: SocketRef<A>,
    State(app): State<App>,
    TryData(data): TryData<TypingInput>,
    ack: AckSender<A>,
) {
    let names = |i: &TypingInput| (i.conversation_type.clone(), i.receiver_id);
    let (user, input, target) = match conversation_event(&socket, "typing", data, names) {
        Ok(parts) => parts,
        Err(e) => return answer_error(ack, e),
    };
    // Made at a socket's first typing event, so idle connections hold none.
    let bucket = socket.extensions.get::<TypingBucket>().unwrap_or_else(|| {
        let fresh = TypingBucket::default();
        socket.extensions.insert(fresh.clone());
        fresh
    });
    if let Err(e) = bucket.take(user) {
        return answer_error(ack, e.into());
    }
    match app.chat.typing_recipients(user, target).await {
        Err(e) => answer_error(ack, e),
        Ok(others) => {
            let _ = ack.send(&Ack::<()>::done());
            if others.is_empty() {
                return;
            }
            let event = Typing {
                conversation_type: target.conversation(user).kind(),
                sender_id: user,
                receiver_id: target.receiver(),
                typing: input.typing,
            };
            let rooms: Vec<String> = others.iter().map(|&u| user_room(u)).collect();
            super::deliver(&app, &socket, rooms, events::TYPING, &event).await;
        }
    }
}
