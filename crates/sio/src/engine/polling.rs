//! HTTP long-polling: the open request, the GET that waits for what the
//! server has to send, the POST that carries what the client sends, and
//! the session's heartbeat task. One GET and one POST at a time: a second
//! one of either closes the session, as Engine.IO's reference server does.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;

use super::heartbeat::{Beat, Heartbeat};
use super::packet::{self, Packet, SEPARATOR};
use super::{Body, CloseReason, EngineHandler, Frame, Inner, Message, Refusal, Session, Transport};

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=UTF-8")
        .body(Body::new(body.into()))
        .unwrap_or_default()
}

/// A GET without a session id: a new session, answered with its open packet.
pub(super) fn open<H: EngineHandler>(
    inner: &Arc<Inner<H>>,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let session = inner.new_session(peer, Transport::Polling);
    let open = inner.open_packet(&session, true);
    inner
        .lock_sessions()
        .insert(session.sid().clone(), session.clone());
    inner.spawn(heartbeat(inner.clone(), session));
    text(StatusCode::OK, open)
}

/// Gives the GET slot back however the request ends (the client may go
/// away while it waits).
struct Getting<'a, C>(&'a Session<C>);

impl<C> Drop for Getting<'_, C> {
    fn drop(&mut self) {
        self.0.lock().getting = false;
        // The heartbeat task may be waiting for this GET to end the session.
        self.0.control.notify_one();
    }
}

/// What a GET does next, decided under the session's lock.
enum Step {
    Answer(Response<Body>),
    /// Answer with what was queued before the end (if anything), then the
    /// session's last packet, and end it.
    Finish(CloseReason, Option<Vec<u8>>),
    Overlap,
    Wait,
}

/// A GET: everything queued, waiting until something is.
pub(super) async fn get<H: EngineHandler>(
    inner: &Arc<Inner<H>>,
    session: &Arc<Session<H::Conn>>,
) -> Response<Body> {
    let mut waited = false;
    let mut slot = None;
    loop {
        match next_step(session, waited) {
            Step::Answer(response) => return response,
            Step::Finish(reason, queued) => {
                inner.finish(session, reason);
                // What the server queued before closing (a last event, a
                // Socket.IO DISCONNECT) goes out with the close packet.
                if let Some(mut body) = queued {
                    body.push(SEPARATOR);
                    body.push(b'1');
                    return text(StatusCode::OK, body);
                }
                if !waited {
                    return Refusal::UnknownSid.answer();
                }
                // A waiting GET ends the session: with a noop if the
                // client closed it, else with the close packet.
                let last = if reason == CloseReason::ClientClose {
                    "6"
                } else {
                    "1"
                };
                return text(StatusCode::OK, last);
            }
            Step::Overlap => {
                session.close(CloseReason::Overlap);
                return Refusal::BadRequest.answer();
            }
            Step::Wait => {}
        }
        // Held until the GET is answered or dropped.
        slot.get_or_insert(Getting(session));
        session.wake.notified().await;
        waited = true;
    }
}

fn next_step<C>(session: &Session<C>, waited: bool) -> Step {
    let mut state = session.lock();
    if state.closed {
        return Step::Answer(Refusal::UnknownSid.answer());
    }
    if let Some(reason) = state.closing {
        let queued = (reason != CloseReason::ClientClose && !state.frames.is_empty())
            .then(|| drain(&mut state));
        return Step::Finish(reason, queued);
    }
    match state.transport {
        Transport::WebSocket => return Step::Answer(Refusal::BadRequest.answer()),
        // The client is probing a WebSocket: end its GET cleanly.
        Transport::Upgrading => return Step::Answer(text(StatusCode::OK, "6")),
        Transport::Polling => {}
    }
    if state.getting && !waited {
        return Step::Overlap;
    }
    if state.frames.is_empty() {
        state.getting = true;
        return Step::Wait;
    }
    Step::Answer(text(StatusCode::OK, drain(&mut state)))
}

/// Everything queued, as one polling payload.
fn drain(state: &mut super::session::State) -> Vec<u8> {
    let mut body = Vec::with_capacity(state.bytes + state.frames.len() * 2);
    for (i, frame) in state.frames.drain(..).enumerate() {
        if i > 0 {
            body.push(SEPARATOR);
        }
        match frame {
            Frame::Text(t) => body.extend_from_slice(t.as_bytes()),
            Frame::Binary(b) => packet::encode_binary_record(&mut body, &b),
        }
    }
    state.bytes = 0;
    body
}

/// Gives the POST slot back however the request ends.
struct Posting<'a, C>(&'a Session<C>);

impl<C> Drop for Posting<'_, C> {
    fn drop(&mut self) {
        self.0.lock().posting = false;
    }
}

/// A POST: the client's packets, handled in order before it is answered.
pub(super) async fn post<H, B>(
    inner: &Arc<Inner<H>>,
    session: &Arc<Session<H::Conn>>,
    req: Request<B>,
) -> Response<Body>
where
    H: EngineHandler,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let overlap = {
        let mut state = session.lock();
        if state.closed || state.closing.is_some() || state.transport == Transport::WebSocket {
            return Refusal::BadRequest.answer();
        }
        std::mem::replace(&mut state.posting, true)
    };
    if overlap {
        session.close(CloseReason::Overlap);
        return Refusal::BadRequest.answer();
    }
    let _slot = Posting(session);
    let body = match Limited::new(req.into_body(), inner.config.max_payload)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "payload too large");
        }
        Err(_) => return Refusal::BadRequest.answer(),
    };
    for packet in packet::decode_payload(&body) {
        let packet = match packet {
            Ok(packet) => packet,
            Err(e) => {
                tracing::debug!(sid = %session.sid(), error = %e, "bad polling packet");
                inner.finish(session, CloseReason::ParseError);
                return Refusal::BadRequest.answer();
            }
        };
        let message = match packet {
            Packet::Message(text) => Message::Text(text),
            Packet::Binary(bytes) => Message::Binary(bytes),
            Packet::Pong(_) => {
                session.lock().pong_at = Some(Instant::now());
                session.control.notify_one();
                continue;
            }
            Packet::Close => {
                session.close(CloseReason::ClientClose);
                break;
            }
            Packet::Ping(_) | Packet::Upgrade | Packet::Noop => continue,
            Packet::Open => {
                inner.finish(session, CloseReason::ParseError);
                return Refusal::BadRequest.answer();
            }
        };
        match inner.handler.message(session, message) {
            Ok(None) => {}
            Ok(Some(hold)) => hold.await,
            Err(reason) => {
                inner.finish(session, reason);
                return Refusal::BadRequest.answer();
            }
        }
    }
    text(StatusCode::OK, "ok")
}

/// How long a closing session keeps its last packets for the client's
/// next GET when none is waiting.
const FLUSH_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A long-polling session's one task: pings, the pong deadline, the
/// connect deadline, and the end of the session (unless a WebSocket takes
/// it over, which then does all of this itself).
async fn heartbeat<H: EngineHandler>(inner: Arc<Inner<H>>, session: Arc<Session<H::Conn>>) {
    let mut beat = Heartbeat::start(&inner.config);
    let sleep = tokio::time::sleep_until(beat.deadline());
    let mut sleep = std::pin::pin!(sleep);
    let mut shutting_down = false;
    // When a closing session with packets still queued (a last event, a
    // Socket.IO DISCONNECT) is finished without a GET to carry them.
    let mut flush_by: Option<Instant> = None;
    loop {
        {
            let state = session.lock();
            if state.closed || state.transport == Transport::WebSocket {
                return;
            }
            // A closing session is finished by its pending GET (which
            // answers it with what is queued and the close packet) or,
            // when there is none, here: at once if nothing is queued, else
            // once the client's next GET had time to come for it.
            if let Some(reason) = state.closing {
                if !state.getting {
                    let queued = !state.frames.is_empty() && reason != CloseReason::ClientClose;
                    let due = *flush_by.get_or_insert_with(|| Instant::now() + FLUSH_GRACE);
                    if !queued || Instant::now() >= due {
                        drop(state);
                        inner.finish(&session, reason);
                        return;
                    }
                }
            }
        }
        tokio::select! {
            () = async { tokio::time::sleep_until(flush_by.expect("guarded")).await }, if flush_by.is_some() => {}
            () = inner.closing.cancelled(), if !shutting_down => {
                shutting_down = true;
                session.close(CloseReason::Shutdown);
            }
            () = session.control.notified() => {}
            () = &mut sleep => {
                let pong = session.lock().pong_at;
                let ready = inner.handler.ready(&session);
                match beat.tick(Instant::now(), pong, ready) {
                    Ok(Beat::Ping) => {
                        let _ = session.send(Frame::PING);
                    }
                    Ok(Beat::Wait) => {}
                    Err(reason) => session.close(reason),
                }
                sleep.as_mut().reset(beat.deadline());
            }
        }
    }
}
