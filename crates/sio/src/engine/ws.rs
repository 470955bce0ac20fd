//! WebSocket sessions: the upgrade handshake, the probe that moves a
//! long-polling session over, and the one task that then reads, writes
//! and pings the session in a single `select!`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::heartbeat::{Beat, Heartbeat};
use super::packet::{self, Packet};
use super::{
    Body, CloseReason, EngineHandler, Frame, Hold, Inner, Message, Refusal, Session, Transport,
};

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Answers a WebSocket request: 101 and a task that takes the connection
/// over, or 400 when it is no WebSocket handshake or the session named
/// cannot be upgraded.
pub(super) fn accept<H: EngineHandler, B>(
    inner: &Arc<Inner<H>>,
    mut req: Request<B>,
    peer: SocketAddr,
    session: Option<Arc<Session<H::Conn>>>,
) -> Response<Body> {
    let headers = req.headers();
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let (Some(accept_key), true, true, true) =
        (key, upgrade, version, req.method() == http::Method::GET)
    else {
        return Refusal::BadRequest.answer();
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return Refusal::BadRequest.answer();
    };
    let mut upgrade = true;
    if let Some(session) = &session {
        let mut state = session.lock();
        if state.transport != Transport::Polling
            || state.ws_claimed
            || state.closing.is_some()
            || state.closed
        {
            // As the reference server does: the WebSocket opens and is
            // closed at once (the session it names is not its to take).
            upgrade = false;
        } else {
            state.ws_claimed = true;
        }
    }
    if upgrade {
        inner.spawn(run(inner.clone(), on_upgrade, peer, session));
    } else {
        inner.spawn(refuse(inner.clone(), on_upgrade));
    }
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key)
        .body(Body::default())
        .unwrap_or_default()
}

/// The upgraded connection as a server-side WebSocket with the engine's
/// limits (frames and messages at most `max_payload`).
async fn websocket<H: EngineHandler>(inner: &Inner<H>, upgraded: Upgraded) -> Ws {
    let max = inner.config.max_payload;
    let config = WebSocketConfig::default()
        .read_buffer_size(inner.config.ws_read_buffer)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await
}

/// Opens the WebSocket and closes it.
async fn refuse<H: EngineHandler>(inner: Arc<Inner<H>>, on_upgrade: OnUpgrade) {
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    let mut ws = websocket(&inner, upgraded).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

async fn run<H: EngineHandler>(
    inner: Arc<Inner<H>>,
    on_upgrade: OnUpgrade,
    peer: SocketAddr,
    upgrading: Option<Arc<Session<H::Conn>>>,
) {
    let Ok(upgraded) = on_upgrade.await else {
        if let Some(session) = upgrading {
            session.lock().ws_claimed = false;
        }
        return;
    };
    let mut ws = websocket(&inner, upgraded).await;
    let session = match upgrading {
        None => {
            let session = inner.new_session(peer, Transport::WebSocket);
            let open = inner.open_packet(&session, false);
            if ws.send(WsMessage::Text(open.into())).await.is_err() {
                return;
            }
            session
        }
        Some(session) => {
            if probe(&inner, &mut ws, &session).await.is_err() {
                {
                    let mut state = session.lock();
                    state.ws_claimed = false;
                    if state.transport == Transport::Upgrading {
                        state.transport = Transport::Polling;
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return;
            }
            session
        }
    };
    drive(&inner, ws, session).await;
}

/// The upgrade of a long-polling session: `2probe` answered `3probe`
/// (any waiting GET is then answered with a noop), then `5`. Anything else,
/// or no `5` within the upgrade timeout, fails it and the session carries
/// on polling.
async fn probe<H: EngineHandler>(
    inner: &Arc<Inner<H>>,
    ws: &mut Ws,
    session: &Arc<Session<H::Conn>>,
) -> Result<(), ()> {
    let deadline = Instant::now() + inner.config.upgrade_timeout;
    let mut probed = false;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next()).await;
        let Ok(Some(Ok(message))) = next else {
            return Err(());
        };
        let WsMessage::Text(text) = message else {
            if matches!(message, WsMessage::Ping(_) | WsMessage::Pong(_)) {
                continue;
            }
            return Err(());
        };
        match text.as_str() {
            "2probe" => {
                ws.send(WsMessage::Text(Utf8Bytes::from_static("3probe")))
                    .await
                    .map_err(drop)?;
                let mut state = session.lock();
                if state.closed || state.closing.is_some() {
                    return Err(());
                }
                state.transport = Transport::Upgrading;
                drop(state);
                probed = true;
                session.wake.notify_one();
            }
            "5" if probed => {
                let mut state = session.lock();
                if state.closed || state.closing.is_some() {
                    return Err(());
                }
                state.transport = Transport::WebSocket;
                drop(state);
                // It stays findable so that later requests naming it are
                // refused as the protocol says, until it ends.
                session.control.notify_one();
                return Ok(());
            }
            _ => return Err(()),
        }
    }
}

/// Longest a write may take before the client counts as gone.
fn write_timeout<H: EngineHandler>(inner: &Inner<H>) -> Duration {
    inner.config.ping_interval + inner.config.ping_timeout
}

/// The session's one task from here on.
async fn drive<H: EngineHandler>(
    inner: &Arc<Inner<H>>,
    mut ws: Ws,
    session: Arc<Session<H::Conn>>,
) {
    let mut beat = Heartbeat::start(&inner.config);
    let sleep = tokio::time::sleep_until(beat.deadline());
    let mut sleep = std::pin::pin!(sleep);
    let mut hold: Option<Hold> = None;
    let mut shutting_down = false;
    let reason = loop {
        match tokio::time::timeout(write_timeout(inner), write_out(&mut ws, &session)).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => break reason,
            Err(_) => break CloseReason::TooSlow,
        }
        if let Some(reason) = session.lock().closing {
            break reason;
        }
        tokio::select! {
            biased;
            () = inner.closing.cancelled(), if !shutting_down => {
                shutting_down = true;
                session.close(CloseReason::Shutdown);
            }
            () = async { hold.as_mut().expect("guarded by is_some").await }, if hold.is_some() => {
                hold = None;
            }
            message = ws.next(), if hold.is_none() => {
                match incoming(inner, &session, &mut beat, message) {
                    Ok(next) => hold = next,
                    Err(reason) => session.close(reason),
                }
                sleep.as_mut().reset(beat.deadline());
            }
            () = session.wake.notified() => {}
            () = &mut sleep => {
                match beat.tick(Instant::now(), None, inner.handler.ready(&session)) {
                    Ok(Beat::Ping) => {
                        let _ = session.send(Frame::PING);
                    }
                    Ok(Beat::Wait) => {}
                    Err(reason) => session.close(reason),
                }
                sleep.as_mut().reset(beat.deadline());
            }
        }
    };
    // What was queued before the end (a last answer) still goes out.
    let _ = tokio::time::timeout(Duration::from_millis(500), write_out(&mut ws, &session)).await;
    inner.finish(&session, reason);
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// Writes everything queued, then flushes: one write for the lot.
async fn write_out<C>(ws: &mut Ws, session: &Session<C>) -> Result<(), CloseReason> {
    let mut wrote = false;
    while let Some(frame) = session.pop() {
        let message = match frame {
            Frame::Text(t) => WsMessage::Text(t),
            Frame::Binary(b) => WsMessage::Binary(b),
        };
        ws.feed(message)
            .await
            .map_err(|_| CloseReason::TransportError)?;
        wrote = true;
    }
    if wrote {
        ws.flush().await.map_err(|_| CloseReason::TransportError)?;
    }
    Ok(())
}

/// One WebSocket message from the client.
fn incoming<H: EngineHandler>(
    inner: &Arc<Inner<H>>,
    session: &Arc<Session<H::Conn>>,
    beat: &mut Heartbeat,
    message: Option<Result<WsMessage, tungstenite::Error>>,
) -> Result<Option<Hold>, CloseReason> {
    let message = match message {
        None | Some(Err(tungstenite::Error::ConnectionClosed)) => {
            return Err(CloseReason::ClientClose)
        }
        Some(Err(tungstenite::Error::Capacity(e))) => {
            tracing::debug!(sid = %session.sid(), error = %e, "frame over the limit");
            return Err(CloseReason::ParseError);
        }
        Some(Err(_)) => return Err(CloseReason::TransportError),
        Some(Ok(message)) => message,
    };
    match message {
        WsMessage::Text(text) => match packet::decode_text(text.as_str()) {
            Ok(Packet::Message(m)) => inner.handler.message(session, Message::Text(m)),
            Ok(Packet::Binary(b)) => inner.handler.message(session, Message::Binary(b)),
            Ok(Packet::Pong(_)) => {
                beat.pong(Instant::now());
                Ok(None)
            }
            Ok(Packet::Close) => Err(CloseReason::ClientClose),
            Ok(Packet::Ping(_) | Packet::Upgrade | Packet::Noop) => Ok(None),
            Ok(Packet::Open) | Err(_) => Err(CloseReason::ParseError),
        },
        WsMessage::Binary(b) => inner.handler.message(session, Message::Binary(b)),
        WsMessage::Close(_) => Err(CloseReason::ClientClose),
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Ok(None),
    }
}
