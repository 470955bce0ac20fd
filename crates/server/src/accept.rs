//! The accept loop: one hyper HTTP/1 connection per TCP connection, with
//! upgrades, serving the router (HTTP API and Socket.IO on one port).
//!
//! It replaces `axum::serve` for memory: an idle WebSocket is most of what
//! the server holds. hyper parses the URI and header values zero-copy out
//! of the connection's read buffer, so one kept slice pins the whole buffer
//! (8–16 KiB) of every upgraded connection. Palaver's Socket.IO layer keeps
//! nothing of the request but the peer's address, but axum's router keeps
//! a clone of the URI in `OriginalUri`, and socketioxide (before issue 22)
//! kept the whole head; each request head is therefore copied out of the
//! buffer here, before anything can keep a piece of it. Measured with
//! 15,000 idle Socket.IO connections on socketioxide (bench `idle`): 27.0
//! KiB per connection with `axum::serve`, 22.9 with this loop alone, 19.2
//! with the copy.
//! The rest is what `axum::serve` does: TCP_NODELAY, `ConnectInfo`, a
//! request-head timeout, and a graceful shutdown that stops accepting, lets
//! every HTTP connection finish its request and waits for them.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Uri};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// A listener on `addr` whose kernel queue holds `backlog` connections not
/// yet accepted. `TcpListener::bind` asks for 128, as the standard library
/// does: when a few hundred clients connect at once, the kernel drops the
/// handshakes past the queue and each of those clients tries again only
/// after a second.
pub fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // What `TcpListener::bind` does too: a restarted server can bind at
    // once, while its old connections are still in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, asks every HTTP connection to close after its current
/// request and waits for them. Upgraded (WebSocket) connections are no
/// longer hyper's: the caller closes them before `shutdown` resolves.
///
/// `header_timeout` is the longest a client may take to send a request
/// head, counted from when the server starts waiting for it (also on an
/// idle keep-alive connection): a connection that sends nothing, or a head
/// a few bytes at a time, is closed instead of holding a file descriptor
/// for ever. (hyper applies its own 30 s default only when given a timer,
/// which `http1::Builder::new` is not.)
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        connections.spawn(connection(
            tcp,
            remote,
            router.clone(),
            header_timeout,
            closing.clone(),
        ));
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
}

/// Serves one TCP connection until it closes or is upgraded.
async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    router: Router,
    header_timeout: Duration,
    closing: CancellationToken,
) {
    // Chat frames are small: without TCP_NODELAY, Nagle's algorithm and
    // delayed ACKs add tens of milliseconds to deliveries.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut req = owned_head(req);
        req.extensions_mut().insert(ConnectInfo(remote));
        router.clone().oneshot(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::trace!(error = %e, "connection failed");
    }
}

/// The request with its URI and header values copied out of hyper's read
/// buffer (names are already owned), so that keeping them does not keep
/// the buffer.
fn owned_head(req: Request<Incoming>) -> Request<Body> {
    let (mut head, body) = req.into_parts();
    if let Ok(uri) = Uri::try_from(head.uri.to_string()) {
        head.uri = uri;
    }
    for value in head.headers.values_mut() {
        if let Ok(mut owned) = HeaderValue::from_bytes(value.as_bytes()) {
            owned.set_sensitive(value.is_sensitive());
            *value = owned;
        }
    }
    Request::from_parts(head, Body::new(body))
}

/// What `axum::serve` does: a reset connection is the client's business;
/// anything else (out of file descriptors) is logged and waited out.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
