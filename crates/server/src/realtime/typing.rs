//! The `typing` event: relayed to the other participants, never stored.
//!
//! Each socket may send a burst of [`BURST`] typing events and then
//! [`PER_SECOND`] a second; beyond that it is answered `rate_limited`, so a
//! stuck client cannot flood a group. The server does not time indicators
//! out itself: clients repeat `typing: true` every few seconds while the
//! user types, and receivers treat an indicator not repeated within 6
//! seconds as stopped (the rule is in the README for client authors).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use palaver_protocol::{events, Ack, Typing, TypingInput};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};

use super::{answer_error, conversation_event, user_room};
use crate::app::App;
use crate::chat::ChatError;

/// Typing events a socket may send at once.
pub const BURST: f64 = 10.0;
/// Typing events per second a socket may sustain.
pub const PER_SECOND: f64 = 5.0;

/// A token bucket, one per socket (kept in the socket's extensions).
#[derive(Clone)]
pub struct TypingBucket(Arc<Mutex<(f64, Instant)>>);

impl Default for TypingBucket {
    fn default() -> Self {
        TypingBucket(Arc::new(Mutex::new((BURST, Instant::now()))))
    }
}

impl TypingBucket {
    fn take(&self) -> bool {
        let mut b = self.0.lock().unwrap();
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * PER_SECOND).min(BURST);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

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
    if !bucket.take() {
        tracing::info!(kind = "typing", key = user, "rate limited");
        return answer_error(
            ack,
            ChatError::rate_limited(
                format_args!("at most {PER_SECOND} typing events a second"),
                std::time::Duration::from_secs_f64(1.0 / PER_SECOND),
            ),
        );
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
