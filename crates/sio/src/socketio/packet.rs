//! Socket.IO v5 packets, JSON encoding: `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`
//! inside an Engine.IO message (`4`). Decoding borrows from the text;
//! encoding writes whole Engine.IO text frames, so an encoded packet is
//! sent as it is to every recipient.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::engine::Frame;

/// A packet's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

/// A decoded packet header; `data` is the JSON after it, not yet parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub kind: Kind,
    /// Binary attachments that follow (binary packets only).
    pub attachments: usize,
    pub nsp: &'a str,
    pub ack: Option<u64>,
    pub data: &'a str,
}

/// Why a packet is refused; each ends the connection, as the protocol asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("invalid attachment count")]
    Attachments,
    #[error("{0} binary attachments announced, at most {1} accepted")]
    TooManyAttachments(usize, usize),
    #[error("ack id out of range (at most {})", u64::MAX)]
    AckIdRange,
    #[error("invalid payload: {0}")]
    Payload(&'static str),
}

/// Splits `text` (what followed Engine.IO's `4`) into its header and data.
pub fn decode(text: &str, max_attachments: usize) -> Result<Header<'_>, DecodeError> {
    let bytes = text.as_bytes();
    let kind = match *bytes.first().ok_or(DecodeError::Empty)? {
        b'0' => Kind::Connect,
        b'1' => Kind::Disconnect,
        b'2' => Kind::Event,
        b'3' => Kind::Ack,
        b'4' => Kind::ConnectError,
        b'5' => Kind::BinaryEvent,
        b'6' => Kind::BinaryAck,
        _ => {
            return Err(DecodeError::UnknownType(
                text.chars().next().unwrap_or_default(),
            ))
        }
    };
    let mut rest = &text[1..];
    let mut attachments = 0;
    if matches!(kind, Kind::BinaryEvent | Kind::BinaryAck) {
        let (count, after) = rest.split_once('-').ok_or(DecodeError::Attachments)?;
        if count.is_empty() || count.len() > 6 || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::Attachments);
        }
        attachments = count.parse().map_err(|_| DecodeError::Attachments)?;
        if attachments > max_attachments {
            return Err(DecodeError::TooManyAttachments(
                attachments,
                max_attachments,
            ));
        }
        rest = after;
    }
    let mut nsp = "/";
    if rest.starts_with('/') {
        match rest.find(',') {
            Some(i) => {
                nsp = &rest[..i];
                rest = &rest[i + 1..];
            }
            None => {
                nsp = rest;
                rest = "";
            }
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let mut ack = None;
    if digits > 0 {
        ack = Some(
            rest[..digits]
                .parse()
                .map_err(|_| DecodeError::AckIdRange)?,
        );
        rest = &rest[digits..];
    }
    Ok(Header {
        kind,
        attachments,
        nsp,
        ack,
        data: rest,
    })
}

/// An event's name and arguments, borrowed from the packet.
pub fn event_args(data: &str) -> Result<(std::borrow::Cow<'_, str>, Vec<&RawValue>), DecodeError> {
    let mut args: Vec<&RawValue> =
        serde_json::from_str(data).map_err(|_| DecodeError::Payload("not a JSON array"))?;
    if args.is_empty() {
        return Err(DecodeError::Payload("no event name"));
    }
    let name = args.remove(0);
    let name = match serde_json::from_str::<&str>(name.get()) {
        Ok(borrowed) => std::borrow::Cow::Borrowed(borrowed),
        Err(_) => std::borrow::Cow::Owned(
            serde_json::from_str::<String>(name.get())
                .map_err(|_| DecodeError::Payload("the event name is not a string"))?,
        ),
    };
    Ok((name, args))
}

/// A CONNECT's auth payload: none, or a JSON object.
pub fn connect_auth(data: &str) -> Result<Option<&RawValue>, DecodeError> {
    if data.is_empty() {
        return Ok(None);
    }
    let raw: &RawValue =
        serde_json::from_str(data).map_err(|_| DecodeError::Payload("invalid JSON"))?;
    if !raw.get().starts_with('{') {
        return Err(DecodeError::Payload("the auth payload is not an object"));
    }
    Ok(Some(raw))
}

/// Starts an Engine.IO text frame holding a Socket.IO packet.
fn start(kind: char, attachments: usize, nsp: &str, ack: Option<u64>, capacity: usize) -> String {
    let mut out = String::with_capacity(capacity + nsp.len() + 24);
    out.push('4');
    out.push(kind);
    if attachments > 0 {
        let _ = write!(out, "{attachments}-");
    }
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = ack {
        let _ = write!(out, "{id}");
    }
    out
}

fn frame(out: String) -> Frame {
    Frame::Text(Utf8Bytes::from(out))
}

/// Appends `value` as JSON. Serializing Palaver's and serde_json's own
/// types cannot fail; a type that can (a map with non-string keys) is
/// written as `null` rather than as broken JSON.
fn push_json<T: Serialize + ?Sized>(out: &mut String, value: &T) {
    match serde_json::to_string(value) {
        Ok(json) => out.push_str(&json),
        Err(_) => out.push_str("null"),
    }
}

/// `CONNECT` accepted: `{"sid": …}`.
pub fn connect_ok(nsp: &str, sid: &str) -> Frame {
    let mut out = start('0', 0, nsp, None, 32);
    let _ = write!(out, r#"{{"sid":"{sid}"}}"#);
    frame(out)
}

/// `CONNECT_ERROR` with `{"message": …}`.
pub fn connect_error(nsp: &str, message: &str) -> Frame {
    let mut out = start('4', 0, nsp, None, message.len() + 16);
    out.push_str(r#"{"message":"#);
    push_json(&mut out, message);
    out.push('}');
    frame(out)
}

/// `DISCONNECT` from the server.
pub fn disconnect(nsp: &str) -> Frame {
    frame(start('1', 0, nsp, None, 0))
}

/// `EVENT` `[name, data]`.
pub fn event<T: Serialize + ?Sized>(nsp: &str, name: &str, data: &T) -> Frame {
    let mut out = start('2', 0, nsp, None, 128);
    out.push('[');
    push_json(&mut out, name);
    out.push(',');
    push_json(&mut out, data);
    out.push(']');
    frame(out)
}

/// `EVENT` (or `BINARY_EVENT` when `attachments > 0`) `[name, args…]`.
pub fn event_raw(nsp: &str, name: &str, args: &[&RawValue], attachments: usize) -> Frame {
    let kind = if attachments > 0 { '5' } else { '2' };
    let mut out = start(kind, attachments, nsp, None, 64);
    out.push('[');
    push_json(&mut out, name);
    for arg in args {
        out.push(',');
        out.push_str(arg.get());
    }
    out.push(']');
    frame(out)
}

/// `ACK` `[data]`.
pub fn ack<T: Serialize + ?Sized>(nsp: &str, id: u64, data: &T) -> Frame {
    let mut out = start('3', 0, nsp, Some(id), 128);
    out.push('[');
    push_json(&mut out, data);
    out.push(']');
    frame(out)
}

/// `ACK` (or `BINARY_ACK`) `[args…]`.
pub fn ack_raw(nsp: &str, id: u64, args: &[&RawValue], attachments: usize) -> Frame {
    let kind = if attachments > 0 { '6' } else { '3' };
    let mut out = start(kind, attachments, nsp, Some(id), 64);
    out.push('[');
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(arg.get());
    }
    out.push(']');
    frame(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: Frame) -> String {
        match f {
            Frame::Text(t) => t.as_str().to_owned(),
            Frame::Binary(_) => panic!("binary"),
        }
    }

    #[test]
    fn headers_decode_in_every_shape() {
        let h = decode("0", 10).unwrap();
        assert_eq!(
            (h.kind, h.nsp, h.ack, h.data),
            (Kind::Connect, "/", None, "")
        );
        let h = decode(r#"0/custom,{"token":"abc"}"#, 10).unwrap();
        assert_eq!((h.nsp, h.data), ("/custom", r#"{"token":"abc"}"#));
        let h = decode("0/random", 10).unwrap();
        assert_eq!((h.nsp, h.data), ("/random", ""));
        let h = decode(r#"2456["message-with-ack",1]"#, 10).unwrap();
        assert_eq!(
            (h.kind, h.ack, h.data),
            (Kind::Event, Some(456), r#"["message-with-ack",1]"#)
        );
        let h = decode(r#"52-789["m",{"_placeholder":true,"num":0}]"#, 10).unwrap();
        assert_eq!(
            (h.kind, h.attachments, h.ack),
            (Kind::BinaryEvent, 2, Some(789))
        );
        let h = decode("1/custom,", 10).unwrap();
        assert_eq!((h.kind, h.nsp), (Kind::Disconnect, "/custom"));
        let h = decode(r#"3/admin,12["ok"]"#, 10).unwrap();
        assert_eq!(
            (h.kind, h.nsp, h.ack, h.data),
            (Kind::Ack, "/admin", Some(12), r#"["ok"]"#)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert_eq!(decode("", 10), Err(DecodeError::Empty));
        assert_eq!(decode("abc", 10), Err(DecodeError::UnknownType('a')));
        assert_eq!(decode("7", 10), Err(DecodeError::UnknownType('7')));
        assert_eq!(decode("5[]", 10), Err(DecodeError::Attachments));
        assert_eq!(decode("5x-[]", 10), Err(DecodeError::Attachments));
        assert_eq!(
            decode("511-[]", 10),
            Err(DecodeError::TooManyAttachments(11, 10))
        );
    }

    #[test]
    fn ack_ids_cover_u64_and_beyond_is_refused_not_ignored() {
        let h = decode("218446744073709551615[\"a\"]", 1).unwrap();
        assert_eq!(h.ack, Some(u64::MAX));
        assert_eq!(
            decode("218446744073709551616[\"a\"]", 1),
            Err(DecodeError::AckIdRange)
        );
    }

    #[test]
    fn event_arguments_borrow_from_the_packet() {
        let (name, args) = event_args(r#"["message",1,"2",{"3":[true]}]"#).unwrap();
        assert_eq!(name, "message");
        let args: Vec<_> = args.iter().map(|a| a.get()).collect();
        assert_eq!(args, vec!["1", r#""2""#, r#"{"3":[true]}"#]);
        let (name, _) = event_args(r#"["mes\"sage"]"#).unwrap();
        assert_eq!(name, "mes\"sage");
        assert!(event_args("{}").is_err());
        assert!(event_args("[]").is_err());
        assert!(event_args("[1]").is_err());
        assert!(event_args(r#"abc["m"]"#).is_err());
    }

    #[test]
    fn connect_auth_is_an_object_or_nothing() {
        assert!(connect_auth("").unwrap().is_none());
        assert_eq!(
            connect_auth(r#"{"token":"1"}"#).unwrap().unwrap().get(),
            r#"{"token":"1"}"#
        );
        assert!(connect_auth("[1]").is_err());
        assert!(connect_auth("{").is_err());
    }

    #[test]
    fn packets_encode_as_engine_io_text_frames() {
        assert_eq!(text(connect_ok("/", "abc")), r#"40{"sid":"abc"}"#);
        assert_eq!(
            text(connect_ok("/custom", "abc")),
            r#"40/custom,{"sid":"abc"}"#
        );
        assert_eq!(
            text(connect_error("/random", "Invalid namespace")),
            r#"44/random,{"message":"Invalid namespace"}"#
        );
        assert_eq!(text(disconnect("/")), "41");
        assert_eq!(
            text(event("/", "auth", &serde_json::json!({}))),
            r#"42["auth",{}]"#
        );
        assert_eq!(
            text(ack("/", 7, &serde_json::json!({"ok":true}))),
            r#"437[{"ok":true}]"#
        );
        let (_, args) = event_args(r#"["m",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(
            text(event_raw("/", "message-back", &args, 1)),
            r#"451-["message-back",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            text(ack_raw("/", 789, &args, 1)),
            r#"461-789[{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(text(ack_raw("/", 1, &[], 0)), "431[]");
    }
}
