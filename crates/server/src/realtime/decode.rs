//! One incoming WebSocket text frame, decoded and validated exactly as the
//! server does it, without a socket: Engine.IO packet → Socket.IO packet
//! (`palaver-sio`'s codecs, with the server's limits) → event name → the
//! typed payload of `message`, `edit`, `delete`, `read` or `typing` → the chat input checks.
//!
//! The server itself never calls this; it exists so that the fuzz target
//! (`fuzz/fuzz_targets/event.rs`) and the test replaying its corpus
//! (`tests/fuzz_corpus.rs`) exercise the very functions hostile input
//! reaches.

use palaver_protocol::events;
use palaver_sio::engine::packet::{self as engine, Packet as EnginePacket};
use palaver_sio::socketio::packet::{self, Kind};

use super::message::{parse_change, parse_send};
use super::read::parse_read;
use super::typing::parse_typing;
use super::MAX_BINARY_ATTACHMENTS;
use crate::chat::{ChangeRequest, ChatError, SendRequest, Target};
use crate::ids::UserId;

/// Who is deemed to send the decoded frame, and the limits that apply.
#[derive(Debug, Clone, Copy)]
pub struct DecodeContext {
    /// The authenticated user of the socket.
    pub user: UserId,
    /// `--max-message-chars`.
    pub max_message_chars: usize,
}

impl Default for DecodeContext {
    /// User 1 and the default `--max-message-chars` (4000).
    fn default() -> Self {
        DecodeContext {
            user: UserId::parse(1).expect("1 is an id"),
            max_message_chars: 4000,
        }
    }
}

/// What the server makes of a frame it accepts.
#[derive(Debug)]
pub enum Decoded {
    /// An Engine.IO packet that carries no Socket.IO packet (ping, pong,
    /// close, upgrade, noop, binary).
    Engine(&'static str),
    /// A binary packet header waiting for more attachments than given.
    NeedsAttachments,
    /// A namespace CONNECT with its auth payload (JSON text), if any.
    Connect {
        namespace: String,
        auth: Option<String>,
    },
    /// A namespace DISCONNECT.
    Disconnect { namespace: String },
    /// An ack of a server-emitted event.
    Ack { namespace: String, id: Option<u64> },
    /// An event; `ack` is the id the answer goes to (none: unanswerable).
    Event {
        namespace: String,
        ack: Option<u64>,
        event: Event,
    },
}

/// An event's name and typed, validated payload: `Err` is exactly the
/// error the server acks with.
#[derive(Debug)]
pub enum Event {
    Message(Result<SendRequest, ChatError>),
    /// `edit`, `delete` or `react` (v1.2).
    Change(Result<ChangeRequest, ChatError>),
    Read(Result<(Target, i64), ChatError>),
    Typing(Result<(Target, bool), ChatError>),
    /// Answered `invalid_payload`.
    Unknown(String),
}

/// Why a frame is refused; the server closes that connection for each.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// Not a valid UTF-8 text frame (WebSocket text frames must be).
    #[error("invalid utf-8")]
    Utf8,
    /// Not an Engine.IO packet.
    #[error("engine.io: {0}")]
    Engine(#[from] engine::DecodeError),
    /// Not a Socket.IO packet, or its attachments are wrong.
    #[error("socket.io: {0}")]
    Packet(#[from] packet::DecodeError),
    /// An event that is no array starting with its name.
    #[error("invalid event: {0}")]
    EventName(packet::DecodeError),
}

/// Decodes a fuzz input (a corpus file): the text frame, then each binary
/// attachment introduced by a NUL byte (`42...\0att0\0att1`), so that a
/// plain text file is one frame. Used by the fuzz target and the corpus
/// replay test alike.
pub fn decode_input(data: &[u8]) -> Result<Decoded, Rejected> {
    let mut parts = data.split(|&b| b == 0);
    let frame = parts.next().unwrap_or_default();
    let attachments: Vec<&[u8]> = parts.collect();
    decode_event(frame, &attachments, &DecodeContext::default())
}

/// Decodes one text frame followed by `attachments` (binary frames), as
/// received on one WebSocket connection.
pub fn decode_event(
    frame: &[u8],
    attachments: &[&[u8]],
    ctx: &DecodeContext,
) -> Result<Decoded, Rejected> {
    let frame = std::str::from_utf8(frame).map_err(|_| Rejected::Utf8)?;
    let message = match engine::decode_text(frame)? {
        EnginePacket::Message(m) => m,
        other => return Ok(Decoded::Engine(engine_name(&other))),
    };
    let header = packet::decode(message, MAX_BINARY_ATTACHMENTS)?;
    let namespace = header.nsp.to_string();
    if attachments.len() > header.attachments {
        // An attachment nobody waits for: the server closes the connection.
        return Err(packet::DecodeError::Payload(
            "a binary message without a packet announcing it",
        )
        .into());
    }
    if attachments.len() < header.attachments {
        return Ok(Decoded::NeedsAttachments);
    }
    Ok(match header.kind {
        Kind::Connect => Decoded::Connect {
            namespace,
            auth: packet::connect_auth(header.data)?.map(|a| a.get().to_owned()),
        },
        Kind::Disconnect => Decoded::Disconnect { namespace },
        Kind::Ack | Kind::BinaryAck => Decoded::Ack {
            namespace,
            id: header.ack,
        },
        Kind::Event | Kind::BinaryEvent => {
            let (name, args) = packet::event_args(header.data).map_err(Rejected::EventName)?;
            let arg = args.first().copied();
            let event = match &*name {
                events::MESSAGE => Event::Message(parse_send(arg, ctx.user, ctx.max_message_chars)),
                events::EDIT | events::DELETE | events::REACT => {
                    Event::Change(parse_change(&name, arg, ctx.user, ctx.max_message_chars))
                }
                events::READ => Event::Read(parse_read(arg)),
                events::TYPING => Event::Typing(parse_typing(arg)),
                other => Event::Unknown(other.to_string()),
            };
            Decoded::Event {
                namespace,
                ack: header.ack,
                event,
            }
        }
        Kind::ConnectError => {
            return Err(packet::DecodeError::Payload("CONNECT_ERROR from a client").into())
        }
    })
}

fn engine_name(p: &EnginePacket<'_>) -> &'static str {
    match p {
        EnginePacket::Open => "open",
        EnginePacket::Close => "close",
        EnginePacket::Ping(_) => "ping",
        EnginePacket::Pong(_) => "pong",
        EnginePacket::Message(_) => "message",
        EnginePacket::Binary(_) => "binary",
        EnginePacket::Upgrade => "upgrade",
        EnginePacket::Noop => "noop",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(frame: &str) -> Result<Decoded, Rejected> {
        decode_event(frame.as_bytes(), &[], &DecodeContext::default())
    }

    #[test]
    fn a_valid_message_event_decodes_to_a_send_request() {
        let d = decode(
            r#"421["message",{"conversationType":"private","receiverId":2,"content":"hi"}]"#,
        );
        match d {
            Ok(Decoded::Event {
                ack: Some(1),
                event: Event::Message(Ok(req)),
                ..
            }) => assert_eq!(req.content, "hi"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_payloads_are_error_answers_and_bad_packets_are_rejections() {
        assert!(matches!(
            decode(r#"42["read",{"conversationType":"x","receiverId":2,"seq":1}]"#),
            Ok(Decoded::Event {
                event: Event::Read(Err(ChatError::InvalidPayload(_))),
                ..
            })
        ));
        assert!(matches!(
            decode(r#"42["typing",[]]"#),
            Ok(Decoded::Event {
                event: Event::Typing(Err(_)),
                ..
            })
        ));
        assert!(matches!(decode("42["), Err(Rejected::EventName(_))));
        assert!(matches!(decode("4"), Err(Rejected::Packet(_))));
        assert!(matches!(decode("x"), Err(Rejected::Engine(_))));
        assert!(matches!(
            decode(&format!("42{}", "[".repeat(100_000))),
            Err(Rejected::EventName(_))
        ));
        assert!(matches!(
            decode_event(b"42\xff", &[], &DecodeContext::default()),
            Err(Rejected::Utf8)
        ));
    }

    #[test]
    fn binary_events_wait_for_their_attachments() {
        let header = r#"451-["message",{"_placeholder":true,"num":0}]"#;
        assert!(matches!(decode(header), Ok(Decoded::NeedsAttachments)));
        let d = decode_event(header.as_bytes(), &[b"\x01"], &DecodeContext::default());
        assert!(
            matches!(
                d,
                Ok(Decoded::Event {
                    event: Event::Message(Err(ChatError::InvalidPayload(_))),
                    ..
                })
            ),
            "{d:?}"
        );
        assert!(matches!(
            decode(r#"4599999-["message"]"#),
            Err(Rejected::Packet(packet::DecodeError::TooManyAttachments(
                ..
            )))
        ));
    }
}
