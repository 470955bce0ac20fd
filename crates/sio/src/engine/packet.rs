//! Engine.IO v4 packets: one per WebSocket message, several per
//! long-polling body joined by the record separator `0x1e`.
//!
//! A text packet is its type digit followed by its data (`4hello`); a
//! binary message is a binary WebSocket frame, or `b` + base64 inside a
//! polling body. Decoding borrows from the input: nothing is copied but a
//! polling body's base64 binaries.

use base64::Engine as _;
use bytes::Bytes;

/// The record separator between packets of a long-polling body.
pub const SEPARATOR: u8 = 0x1e;

/// An Engine.IO packet as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0`: never sent by a client.
    Open,
    /// `1`: the client closes the session.
    Close,
    /// `2`: a ping; clients send `2probe` during an upgrade only.
    Ping(&'a str),
    /// `3`: the answer to the server's ping (`3probe` never comes from a client).
    Pong(&'a str),
    /// `4`: a text message.
    Message(&'a str),
    /// A binary message.
    Binary(Bytes),
    /// `5`: completes an upgrade.
    Upgrade,
    /// `6`: nothing.
    Noop,
}

/// Why a packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("invalid base64 in a binary packet")]
    Base64,
    #[error("a text packet is not UTF-8")]
    NotUtf8,
}

/// Decodes one text packet (a WebSocket text message or one record of a
/// polling body, `b`-prefixed base64 included).
pub fn decode_text(text: &str) -> Result<Packet<'_>, DecodeError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(DecodeError::Empty)?;
    let data = chars.as_str();
    Ok(match kind {
        '0' => Packet::Open,
        '1' => Packet::Close,
        '2' => Packet::Ping(data),
        '3' => Packet::Pong(data),
        '4' => Packet::Message(data),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        'b' => Packet::Binary(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| DecodeError::Base64)?
                .into(),
        ),
        other => return Err(DecodeError::UnknownType(other)),
    })
}

/// Splits a long-polling body into its packets (empty records are errors).
pub fn decode_payload(body: &[u8]) -> impl Iterator<Item = Result<Packet<'_>, DecodeError>> {
    body.split(|b| *b == SEPARATOR).map(|record| {
        let text = std::str::from_utf8(record).map_err(|_| DecodeError::NotUtf8)?;
        decode_text(text)
    })
}

/// Appends `bytes` to a polling body as a `b`-prefixed base64 record.
pub fn encode_binary_record(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'b');
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_packet_type_decodes() {
        assert_eq!(decode_text("0"), Ok(Packet::Open));
        assert_eq!(decode_text("1"), Ok(Packet::Close));
        assert_eq!(decode_text("2probe"), Ok(Packet::Ping("probe")));
        assert_eq!(decode_text("3"), Ok(Packet::Pong("")));
        assert_eq!(decode_text("4hello é"), Ok(Packet::Message("hello é")));
        assert_eq!(decode_text("5"), Ok(Packet::Upgrade));
        assert_eq!(decode_text("6"), Ok(Packet::Noop));
    }

    #[test]
    fn a_base64_record_is_a_binary_packet() {
        assert_eq!(
            decode_text("bAQIDBA=="),
            Ok(Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])))
        );
        assert_eq!(decode_text("b!!"), Err(DecodeError::Base64));
    }

    #[test]
    fn unknown_and_empty_packets_are_errors() {
        assert_eq!(decode_text(""), Err(DecodeError::Empty));
        assert_eq!(decode_text("abc"), Err(DecodeError::UnknownType('a')));
        assert_eq!(decode_text("7"), Err(DecodeError::UnknownType('7')));
    }

    #[test]
    fn a_polling_body_splits_on_the_record_separator() {
        let body = b"4test1\x1e4test2\x1ebAQIDBA==";
        let packets: Vec<_> = decode_payload(body).collect();
        assert_eq!(
            packets,
            vec![
                Ok(Packet::Message("test1")),
                Ok(Packet::Message("test2")),
                Ok(Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
            ]
        );
        let bad: Vec<_> = decode_payload(b"4a\x1e\x1e4b").collect();
        assert_eq!(bad[1], Err(DecodeError::Empty));
        let not_utf8: Vec<_> = decode_payload(b"4\xff").collect();
        assert_eq!(not_utf8[0], Err(DecodeError::NotUtf8));
    }

    #[test]
    fn binary_records_round_trip() {
        let mut out = b"4x\x1e".to_vec();
        encode_binary_record(&mut out, &[1, 2, 3, 4]);
        assert_eq!(out, b"4x\x1ebAQIDBA==");
        let back: Vec<_> = decode_payload(&out).collect();
        assert_eq!(
            back[1],
            Ok(Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])))
        );
    }
}
