//! The `read` event: move the reader's position forward, tell the others.
//! Each user may send a burst of them and then a few a second, over all
//! their sockets ([`crate::limits::READS_PER_SECOND`]); beyond that it is
//! answered `rate_limited`.

use palaver_protocol::{events, Ack, ReadBody, ReadInput, ReadReceipt};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};

use super::{answer_error, conversation_event, user_room};
use crate::app::App;

pub async fn on_read<A: Adapter>(
    socket: SocketRef<A>,
    State(app): State<App>,
    TryData(data): TryData<ReadInput>,
    ack: AckSender<A>,
) {
    let names = |i: &ReadInput| (i.conversation_type.clone(), i.receiver_id);
    let (user, input, target) = match conversation_event(&socket, "read", data, names) {
        Ok(parts) => parts,
        Err(e) => return answer_error(ack, e),
    };
    if let Err(e) = app.limits.read(user) {
        return answer_error(ack, e.into());
    }
    match app.chat.mark_read(user, target, input.seq).await {
        Err(e) => answer_error(ack, e),
        Ok((read_seq, tell)) => {
            let _ = ack.send(&Ack::ok(ReadBody { read_seq }));
            if let Some(participants) = tell {
                let receipt = ReadReceipt {
                    conversation_type: target.conversation(user).kind(),
                    reader_id: user,
                    receiver_id: target.receiver(),
                    seq: read_seq,
                };
                let rooms: Vec<String> = participants.iter().map(|&u| user_room(u)).collect();
                super::deliver(&app, &socket, rooms, events::READ, &receipt).await;
            }
        }
    }
}
