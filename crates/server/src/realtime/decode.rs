//! One incoming WebSocket text frame, decoded and validated exactly as the
//! server does it, without a socket: Engine.IO packet → Socket.IO packet
//! (the common parser, with the server's default limits) → event
//! name → the typed payload of `message`, `read` or `typing` → the chat
//! input checks.
//!
//! The server itself never calls this; it exists so that the fuzz target
//! (`fuzz/fuzz_targets/event.rs`) and the test replaying its corpus
//! (`tests/fuzz_corpus.rs`) exercise the very code hostile input reaches.
//! Where a step lives inside a socket-bound handler, its socket-free part
//! is called from here.

use bytes::Bytes;
use engineioxide_core::{Packet as EnginePacket, ProtocolVersion};
use palaver_protocol::{events, ReadInput, SendMessage, TypingInput};
use socketioxide_core::packet::PacketData;
use socketioxide_core::parser::{Parse, ParseConfig, ParseError, ParserError, ParserState};
use socketioxide_core::Value;
use socketioxide_parser_common::CommonParser;

use super::message::explain_bad_message;
use super::{invalid_payload, MAX_BINARY_ATTACHMENTS};
use crate::chat::{ChatError, SendRequest, Target};
use crate::store::UserId;

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
            user: 1,
            max_message_chars: 4000,
        }
    }
}

/// What the server makes of a frame it accepts.
#[derive(Debug)]
pub enum Decoded {
    /// An Engine.IO packet that carries no Socket.IO packet (ping, pong,
    /// close, upgrade, noop, a base64 binary packet out of sequence).
    Engine(&'static str),
    /// A binary packet header waiting for more attachments than given.
    NeedsAttachments,
    /// A namespace CONNECT; `auth` as the connect middleware reads it.
    Connect {
        namespace: String,
        auth: Result<serde_json::Value, String>,
    },
    /// A namespace DISCONNECT.
    Disconnect { namespace: String },
    /// An ack of a server-emitted event.
    Ack { namespace: String, id: i64 },
    /// An event; `ack` is the id the answer goes to (none: unanswerable).
    Event {
        namespace: String,
        ack: Option<i64>,
        event: Event,
    },
}

/// An event's name and typed, validated payload: `Err` is exactly the
/// error the server acks with.
#[derive(Debug)]
pub enum Event {
    Message(Result<SendRequest, ChatError>),
    Read(Result<(Target, i64), ChatError>),
    Typing(Result<(Target, bool), ChatError>),
    /// Answered `invalid_payload` by the fallback handler.
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
    Engine(String),
    /// Not a Socket.IO packet, or its attachments are wrong.
    #[error("socket.io: {0}")]
    Packet(#[from] ParseError),
    /// An event whose first element is not a string.
    #[error("invalid event name")]
    EventName,
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
    let parser = CommonParser;
    let config = ParseConfig {
        max_incoming_binaries: MAX_BINARY_ATTACHMENTS,
        max_incoming_binary_buf_size: 64 * 1024,
        ..ParseConfig::default()
    };
    let state = ParserState::default();
    let packet = EnginePacket::parse(ProtocolVersion::V4, frame.to_owned())
        .map_err(|e| Rejected::Engine(e.to_string()))?;
    let message = match packet {
        EnginePacket::Message(m) => m,
        other => return Ok(Decoded::Engine(engine_name(&other))),
    };
    let mut decoded = parser.decode_str(&config, &state, message);
    for bin in attachments {
        match decoded {
            Err(ParseError::NeedsMoreBinaryData) => {}
            // An attachment nobody waits for: the server rejects it too.
            _ => decoded = Err(ParseError::UnexpectedBinaryPacket),
        }
        if matches!(decoded, Err(ParseError::UnexpectedBinaryPacket)) {
            break;
        }
        decoded = parser.decode_bin(&config, &state, Bytes::copy_from_slice(bin));
    }
    let packet = match decoded {
        Ok(p) => p,
        Err(ParseError::NeedsMoreBinaryData) => return Ok(Decoded::NeedsAttachments),
        Err(e) => return Err(e.into()),
    };
    let namespace = packet.ns.to_string();
    Ok(match packet.inner {
        PacketData::Connect(auth) => Decoded::Connect {
            namespace,
            auth: parser
                .decode_default::<serde_json::Value>(auth.as_ref())
                .map_err(|e| e.to_string()),
        },
        PacketData::Disconnect => Decoded::Disconnect { namespace },
        PacketData::EventAck(_, id) | PacketData::BinaryAck(_, id) => {
            Decoded::Ack { namespace, id }
        }
        PacketData::Event(mut data, ack) | PacketData::BinaryEvent(mut data, ack) => {
            let event = typed_event(parser, &mut data, ctx)?;
            Decoded::Event {
                namespace,
                ack,
                event,
            }
        }
        // The parser yields these only when it encodes.
        PacketData::ConnectError(_) => return Err(ParseError::InvalidPacketType.into()),
    })
}

fn engine_name(p: &EnginePacket) -> &'static str {
    match p {
        EnginePacket::Open(_) => "open",
        EnginePacket::Close => "close",
        EnginePacket::Ping => "ping",
        EnginePacket::Pong => "pong",
        EnginePacket::PingUpgrade => "ping probe",
        EnginePacket::PongUpgrade => "pong probe",
        EnginePacket::Message(_) => "message",
        EnginePacket::Upgrade => "upgrade",
        EnginePacket::Noop => "noop",
        EnginePacket::Binary(_) | EnginePacket::BinaryV3(_) => "binary",
    }
}

/// The event name (socketioxide's `recv_event`), then what the registered
/// handler does with the payload.
fn typed_event(
    parser: CommonParser,
    data: &mut Value,
    ctx: &DecodeContext,
) -> Result<Event, Rejected> {
    let name = parser
        .read_event(data)
        .map_err(|_| Rejected::EventName)?
        .to_owned();
    Ok(match name.as_str() {
        // `message::SendHandler`: TryData<SendMessage>, then SendRequest::parse.
        events::MESSAGE => {
            let raw: Result<SendMessage, ParserError> = parser.decode_value(data, true);
            let raw = raw.map_err(|_| {
                explain_bad_message(parser.decode_value::<serde_json::Value>(data, true))
            });
            Event::Message(
                raw.and_then(|raw| SendRequest::parse(raw, ctx.user, ctx.max_message_chars)),
            )
        }
        // `read::on_read` and `typing::on_typing` via `conversation_event`.
        events::READ => {
            let raw: Result<ReadInput, ParserError> = parser.decode_value(data, true);
            Event::Read(
                raw.map_err(|e| invalid_payload("read", e))
                    .and_then(|i| Ok((Target::parse(&i.conversation_type, i.receiver_id)?, i.seq))),
            )
        }
        events::TYPING => {
            let raw: Result<TypingInput, ParserError> = parser.decode_value(data, true);
            Event::Typing(raw.map_err(|e| invalid_payload("typing", e)).and_then(|i| {
                Ok((
                    Target::parse(&i.conversation_type, i.receiver_id)?,
                    i.typing,
                ))
            }))
        }
        _ => Event::Unknown(name),
    })
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
        assert!(matches!(decode("42["), Err(Rejected::EventName)));
        assert!(matches!(decode("4"), Err(Rejected::Packet(_))));
        assert!(matches!(decode("x"), Err(Rejected::Engine(_))));
        assert!(matches!(
            decode(&format!("42{}", "[".repeat(100_000))),
            Err(Rejected::EventName)
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
            decode(r#"4599999999-["message"]"#),
            Err(Rejected::Packet(ParseError::TooManyAttachments { .. }))
        ));
    }
}
