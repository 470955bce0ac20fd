//! Palaver: a real-time chat server speaking Socket.IO and HTTP.
//!
//! # Layout
//! - [`config`]: flags and environment variables.
//! - [`accept`]: the accept loop (hyper HTTP/1 with upgrades) serving both.
//! - [`app`]: the shared state handed to both front doors.
//! - [`auth`]: JWT tokens (HS256) and Argon2id password hashes.
//! - [`http`]: the HTTP API; one file per resource, every route in `http::router`.
//! - [`realtime`]: the Socket.IO namespace, handshake and events.
//! - [`chat`]: the domain — validate → store → fan out — behind both front doors;
//!   `mod.rs` the face, `accounts`, `groups`, `messages` one file each, `core`
//!   the store and roster cache they and the `writer` share.
//! - [`store`]: the only place with SQL. `mod.rs` holds the storage traits
//!   (one per resource, [`store::Store`] over them) and the batch limit;
//!   `error.rs` classifies driver errors; `connect.rs` picks the backend
//!   (`sqlite.rs`, `mysql.rs`, `postgres.rs`: pool and migrations) from the
//!   URL; `sql/` is the one implementation (`dialect.rs`, `rows.rs`,
//!   `batch.rs`, and a file per resource); `seqs.rs` is the writer's memory
//!   of each conversation's last seq.
//! - [`limits`]: every rate limit — per node, cluster-wide, per socket — and
//!   connections per user; `login.rs` the failed-login back-off, `typing.rs`
//!   the per-socket typing bucket.
//! - [`cluster`]: running as one of several nodes (Redis).
//! - [`preflight`]: start-up checks that run before anything is changed.
//!
//! The binary (`main.rs`) parses flags, sets up logging, binds the listener
//! and calls [`run`]; tests call [`Server::build`] and [`Server::serve`] on
//! port 0.

pub mod accept;
pub mod app;
pub mod auth;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod http;
pub mod limits;
pub mod preflight;
pub mod realtime;
pub mod store;

use std::future::Future;

use axum::Router;
use socketioxide::{ParserConfig, SocketIo, SocketIoBuilder};
use socketioxide_redis::{FredAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tokio::net::TcpListener;

pub use accept::listen;
pub use app::App;
pub use config::Config;

/// Longest wait for queued sends at shutdown.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Time for sockets to flush their last answers before they are closed.
const FLUSH_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// Packets queued for one socket before socketioxide drops them.
const SOCKET_QUEUE: usize = 4096;

/// Settings key of the generated JWT secret.
const JWT_SECRET_KEY: &str = "jwt_secret";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    #[error(transparent)]
    Database(#[from] store::ConnectError),
    #[error("cannot read the JWT secret from the database: {0}")]
    Secret(#[source] store::StoreError),
    #[error(transparent)]
    Redis(#[from] cluster::ClusterError),
    #[error("cannot set up the Redis adapter: {0}")]
    Adapter(String),
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Closes every Socket.IO connection (whatever the adapter).
type Closer = Box<dyn FnOnce() -> futures_util::future::BoxFuture<'static, ()> + Send>;

/// A built server, ready to serve on a listener.
pub struct Server {
    app: App,
    router: Router,
    close_sockets: Closer,
}

impl Server {
    /// Connects to the database, applies migrations and builds the routes.
    pub async fn build(config: Config) -> Result<Server, StartError> {
        // Everything outside the process is checked before anything is
        // written: Redis before the database, whose connect applies the
        // migrations (and may then store a generated secret).
        preflight::check_database_url(&config.database_url)?;
        if let Some(url) = &config.redis_url {
            preflight::check_redis(url).await?;
        }
        let connected = match &config.redis_url {
            Some(url) => Some(cluster::connect(url, &config.redis_prefix).await?),
            None => None,
        };
        let pool = store::PoolOptions {
            max_connections: config.db_max_connections,
            acquire_timeout: config.db_acquire_timeout(),
        };
        let store = store::connect(&config.database_url, &pool).await?;
        let secret = match &config.jwt_secret {
            Some(s) => s.clone(),
            None => store
                .setting_or_insert(JWT_SECRET_KEY, &auth::random_secret())
                .await
                .map_err(StartError::Secret)?,
        };
        let tokens = auth::Tokens::new(secret.as_bytes(), config.token_ttl());
        let writer_url = config.database_url.clone();
        let writer_timeout = config.db_acquire_timeout();
        let cluster = connected.as_ref().map(|c| c.cluster.clone());
        let chat = chat::Chat::start(
            store,
            Box::pin(async move { store::connect_writer(&writer_url, writer_timeout).await }),
            chat::Settings {
                max_message_chars: config.max_message_chars as usize,
                batch_interval: std::time::Duration::from_millis(config.batch_interval_ms.into()),
                cluster: cluster.clone(),
                limits: std::sync::Arc::new(limits::Limits::new(&config, cluster)),
            },
        )
        .await?;
        let app = App::new(chat, tokens, config);

        let api = http::router(app.clone());
        let (api, close_sockets) = match connected {
            None => {
                let (layer, io) = socket_io(SocketIo::builder(), &app).build_layer();
                realtime::register(&io, &app);
                (api.layer(layer), closer(io))
            }
            Some(connected) => {
                let chat = app.chat.clone();
                connected.spawn_tasks(move |group| chat.forget_roster(group));
                let adapter = RedisAdapterCtr::new_with_fred_config(
                    connected.adapter.clone(),
                    RedisAdapterConfig::new()
                        .with_prefix(app.config.redis_prefix.clone())
                        .with_request_timeout(cluster::REQUEST_TIMEOUT)
                        .with_stream_buffer(cluster::PUBSUB_BUFFER),
                )
                .await
                .map_err(|e| StartError::Adapter(e.to_string()))?;
                let builder = SocketIo::builder().with_adapter::<FredAdapter<_>>(adapter);
                let (layer, io) = socket_io(builder, &app).build_layer();
                realtime::register(&io, &app)
                    .await
                    .map_err(|e| StartError::Adapter(e.to_string()))?;
                (api.layer(layer), closer(io))
            }
        };
        // Outermost first: CORS answers preflights, the origin check
        // refuses other origins before the API or the Socket.IO handshake.
        let mut router = api.layer(axum::middleware::from_fn_with_state(
            app.clone(),
            http::origin::check,
        ));
        if let Some(cors) = http::origin::cors(&app.config.allowed_origins) {
            router = router.layer(cors);
        }
        limits::Limits::spawn_sweeper(std::sync::Arc::downgrade(&app.limits));
        spawn_database_watch(app.clone());
        Ok(Server {
            app,
            router,
            close_sockets,
        })
    }

    /// The storage backend's name.
    pub fn backend(&self) -> &'static str {
        self.app.chat.store().backend()
    }

    /// The shared state (tests use it to mint tokens).
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Serves HTTP and Socket.IO on `listener` until `shutdown` resolves,
    /// then closes every socket and waits for connections to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let Server {
            router,
            close_sockets,
            app,
        } = self;
        let header_timeout = std::time::Duration::from_secs(app.config.header_timeout_secs.into());
        accept::serve(listener, router, header_timeout, async move {
            shutdown.await;
            // Answer every send already queued (after its commit), then
            // disconnect the sockets; bounded, so a dead database
            // cannot hold the process up.
            if tokio::time::timeout(DRAIN_TIMEOUT, app.chat.drain())
                .await
                .is_err()
            {
                tracing::warn!("shutdown: sends still pending after {DRAIN_TIMEOUT:?}");
            }
            // Let each socket's writer flush the answers just queued.
            tokio::time::sleep(FLUSH_PAUSE).await;
            close_sockets().await;
        })
        .await;
        Ok(())
    }
}

/// How often the database is pinged to log its state changes.
const DATABASE_WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Logs the database going away and coming back, once each (requests
/// meanwhile are answered `unavailable` without a line each). Stops when
/// the server's state is dropped.
fn spawn_database_watch(app: App) {
    let weak = app.downgrade();
    drop(app);
    tokio::spawn(async move {
        let mut up = true;
        let mut tick = tokio::time::interval(DATABASE_WATCH_EVERY);
        loop {
            tick.tick().await;
            let Some(app) = App::upgrade(&weak) else {
                return;
            };
            let store = app.chat.store();
            let ok = matches!(
                tokio::time::timeout(DATABASE_WATCH_EVERY, store.ping()).await,
                Ok(Ok(()))
            );
            if ok != up {
                up = ok;
                if ok {
                    tracing::info!(backend = store.backend(), "database available again");
                } else {
                    tracing::warn!(
                        backend = store.backend(),
                        "database unavailable: sends and requests are answered `unavailable` until it is back"
                    );
                }
            }
        }
    });
}

/// Palaver's Socket.IO settings, whatever the adapter.
fn socket_io<A: socketioxide::adapter::Adapter>(
    builder: SocketIoBuilder<A>,
    app: &App,
) -> SocketIoBuilder<A> {
    transport(
        builder.with_state(app.clone()),
        app.config.max_frame_bytes as usize,
    )
}

/// Palaver's Socket.IO transport settings (public so that the benchmark's
/// `socketio_alone` example measures the same transport without the rest).
///
/// A 1 KiB WebSocket read buffer (default 4 KiB) per connection: chat
/// frames are small and idle connections are most connections. The
/// per-socket outgoing queue is deep (default 128 packets): socketioxide
/// drops a packet, acks included, when it is full, and a client pipelining
/// hundreds of sends gets an ack and a delivery for each. Its memory is
/// allocated as it fills, not up front.
///
/// Input is bounded by `max_frame_bytes` (--max-frame-bytes): a WebSocket
/// message or frame beyond it, or a long-polling body beyond it, closes
/// that connection before it is buffered (engineioxide's `max_payload`
/// covers polling only; the WebSocket limits are separate and default to
/// 64 MiB / 16 MiB). Palaver's events carry no binary attachments, so a
/// packet announcing many is refused early.
pub fn transport<A: socketioxide::adapter::Adapter>(
    builder: SocketIoBuilder<A>,
    max_frame_bytes: usize,
) -> SocketIoBuilder<A> {
    let parser = ParserConfig::common()
        .max_incoming_binaries(realtime::MAX_BINARY_ATTACHMENTS)
        .max_incoming_binary_buf_size(max_frame_bytes)
        .packet_completion_timeout(std::time::Duration::from_secs(10));
    builder
        .with_parser(parser)
        .ws_read_buffer_size(1024)
        .max_buffer_size(SOCKET_QUEUE)
        .max_payload(max_frame_bytes as u64)
        .ws_max_message_size(max_frame_bytes)
        .ws_max_frame_size(max_frame_bytes)
}

/// Closes this node's connections. Clients see their transport close, as
/// when a node goes away, and reconnect (to another node).
///
/// socketioxide's `close` detaches its namespaces before it closes the
/// transports, so the sockets' disconnect handlers never run and each
/// socket and its namespace keep each other alive: the users stayed
/// online, and the sockets' state (the whole server, databases included)
/// was never freed. Each socket is therefore disconnected once its
/// transport is closed; the disconnect packet this queues goes nowhere.
/// (A socket whose outgoing queue is already full refuses even that and
/// stays as it was; only a process that outlives its server would notice.)
fn closer<A: socketioxide::adapter::Adapter>(io: SocketIo<A>) -> Closer {
    Box::new(move || {
        Box::pin(async move {
            let sockets = io.sockets();
            io.close().await;
            for socket in sockets {
                let _ = socket.disconnect();
            }
        })
    })
}

/// Builds and serves: what `palaver serve` does.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    // Content is counted in characters; JSON may spend 6 bytes on one.
    let largest = u64::from(config.max_message_chars) * 6 + 200;
    if largest > u64::from(config.max_frame_bytes) {
        tracing::warn!(
            max_frame_bytes = config.max_frame_bytes,
            max_message_chars = config.max_message_chars,
            "a message of the longest content may not fit in a frame; \
             raise --max-frame-bytes to at least {largest}"
        );
    }
    let server = Server::build(config).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        backend = server.backend(),
        "palaver listening"
    );
    server.serve(listener, shutdown).await
}
