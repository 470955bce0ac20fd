//! The `read` event: move the reader's position forward, tell the others.
//! Each user may send a burst of them and then a few a second, over all
//! their sockets ([`crate::limits::READS_PER_SECOND`]); beyond that it is
//! answered `rate_limited`. It waits for the database, so it runs in a
//! task of its own.

use palaver_protocol::{events, Ack, ReadBody, ReadInput, ReadReceipt};
use palaver_sio::Event;
use serde_json::value::RawValue;

use super::{answer, answer_error, conversation_payload, frame, Hub, Sock};
use crate::chat::{ChatError, Target};

/// A `read` payload: the conversation and the seq read up to.
pub(crate) fn parse_read(arg: Option<&RawValue>) -> Result<(Target, i64), ChatError> {
    let names: fn(&ReadInput) -> (&str, i64) = |i| (i.conversation_type.as_str(), i.receiver_id);
    let (input, target) = conversation_payload("read", arg, names)?;
    Ok((target, input.seq))
}

pub(super) fn on_read(hub: &Hub, socket: &Sock, event: Event<'_>) {
    let user = socket.data().user;
    let parsed = parse_read(event.args.first().copied()).and_then(|read| {
        hub.app()
            .limits
            .read(user)
            .map(|()| read)
            .map_err(Into::into)
    });
    let (target, seq) = match parsed {
        Ok(read) => read,
        Err(e) => return answer_error(hub, socket, event.ack, e),
    };
    let (hub, socket, ack) = (hub.clone(), socket.clone(), event.ack);
    tokio::spawn(async move {
        match hub.app().chat.mark_read(user, target, seq).await {
            Err(e) => answer_error(&hub, &socket, ack, e),
            Ok((read_seq, tell)) => {
                answer(&socket, ack, &Ack::ok(ReadBody { read_seq }));
                if let Some(participants) = tell {
                    let receipt = ReadReceipt {
                        conversation_type: target.conversation(user).kind(),
                        reader_id: user.get(),
                        receiver_id: target.receiver(),
                        seq: read_seq,
                    };
                    hub.deliver(&participants, Some(&socket), frame(events::READ, &receipt));
                }
            }
        }
    });
}
