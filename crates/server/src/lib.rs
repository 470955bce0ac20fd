//! Palaver: a real-time chat server speaking Socket.IO and HTTP.
//!
//! # Layout
//! - [`config`]: flags, environment variables and the TOML file (`file.rs`).
//! - [`admin`]: the operator's commands (`palaver admin`, `migrate`,
//!   `config check`) on the configured database, through the domain.
//! - [`accept`]: the accept loop (hyper HTTP/1 with upgrades) serving both.
//! - [`app`]: the shared state handed to both front doors.
//! - [`ids`]: user and group ids (made only by parsing at the edge, or by the
//!   store from its rows), conversation keys and pages; every layer takes
//!   them from here, none from `store`.
//! - [`auth`]: JWT tokens (HS256) and Argon2id password hashes.
//! - [`http`]: the HTTP API; one file per resource, every route in `http::api`,
//!   which also describes each one in the OpenAPI document (`http/openapi.rs`);
//!   `http/metrics.rs` the metrics listener's one route.
//! - [`web`]: the web client's files at `/` (built from `web/` by `build.rs`).
//! - [`realtime`]: the Socket.IO front door on Palaver's own layer
//!   (`palaver-sio`): handshake, events and delivery; `registry.rs` this
//!   node's sockets by user, `relay.rs` the other nodes through Redis.
//! - [`chat`]: the domain — validate → store → fan out — behind both front doors;
//!   `mod.rs` the face, `accounts`, `groups`, `messages` one file each, `core`
//!   the store and the roster and block caches they and the `writer` share,
//!   `queue` what the writer's queue carries (so neither the request paths
//!   nor the writer import each other), `retry` the writer's one retry
//!   policy, `changes` who may edit, delete or react to a message,
//!   `credentials` which tokens still hold.
//! - [`store`]: the only place with SQL. `mod.rs` holds the storage traits
//!   (one per resource, [`store::Store`] over them) and the batch limit;
//!   `error.rs` classifies driver errors; `connect.rs` picks the backend
//!   (`sqlite.rs`, `mysql.rs`, `postgres.rs`: pool and migrations) from the
//!   URL; `sql/` is the one implementation (`dialect.rs`, `rows.rs` with
//!   how ids bind, `batch.rs`, and a file per resource); `seqs.rs` is the
//!   writer's memory of each conversation's last seq.
//! - [`limits`]: every rate limit — per node, cluster-wide, per socket — and
//!   connections per user; `login.rs` the failed-login back-off, `typing.rs`
//!   the per-socket typing bucket.
//! - [`cluster`]: running as one of several nodes (Redis).
//! - [`preflight`]: start-up checks that run before anything is changed.
//! - [`metrics`]: what the server counts for Prometheus, one registry per
//!   server, read at `/metrics` on `--metrics-listen` (never the public
//!   listener; the route is `http/metrics.rs`); `http.rs` the HTTP middleware, `process.rs` the `process_*`
//!   figures from `/proc`.
//!
//! The binary (`main.rs`) parses flags, sets up logging, binds the listener
//! (and the metrics listener) and calls [`run`]; tests call
//! [`Server::build`], [`Server::with_metrics`] and [`Server::serve`] on
//! port 0.

pub mod accept;
pub mod admin;
pub mod app;
pub mod auth;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod http;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod preflight;
pub mod realtime;
pub mod store;
pub mod web;

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

pub use accept::listen;
pub use app::App;
pub use config::Config;

/// Longest wait for queued sends at shutdown.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Time for sockets to flush their last answers before they are closed.
const FLUSH_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

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
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The domain over the configured database (migrations applied), its
/// token issuer, and the link to Redis when configured: what a server
/// serves, and what `palaver admin` acts through.
pub struct Opened {
    pub chat: chat::Chat,
    pub tokens: auth::Tokens,
    pub connected: Option<cluster::Connected>,
}

/// Checks what lies outside the process, connects to Redis and the
/// database (applying migrations), and starts the domain.
pub async fn open(config: &Config) -> Result<Opened, StartError> {
    // Everything outside the process is checked before anything is
    // written: Redis before the database, whose connect applies the
    // migrations (and may then store a generated secret).
    preflight::check_database_url(&config.database_url)?;
    if let Some(url) = &config.redis_url {
        preflight::check_redis(url).await?;
    }
    let metrics = std::sync::Arc::new(metrics::Metrics::new(config.redis_url.is_some()));
    let connected = match &config.redis_url {
        Some(url) => {
            Some(cluster::connect(url, &config.redis_prefix, metrics.cluster.clone()).await?)
        }
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
            delete_window: (config.delete_window_secs > 0)
                .then(|| std::time::Duration::from_secs(config.delete_window_secs.into())),
            cluster: cluster.clone(),
            limits: std::sync::Arc::new(limits::Limits::new(
                config,
                cluster,
                metrics.refused.clone(),
            )),
            metrics,
        },
    )
    .await?;
    Ok(Opened {
        chat,
        tokens,
        connected,
    })
}

/// A built server, ready to serve on a listener.
pub struct Server {
    app: App,
    router: Router,
    sockets: realtime::Server,
    /// Where `GET /metrics` is served, if anywhere.
    metrics: Option<TcpListener>,
}

impl Server {
    /// Connects to the database, applies migrations and builds the routes.
    pub async fn build(config: Config) -> Result<Server, StartError> {
        preflight::check_metrics_listen(config.listen, config.metrics_listen)?;
        let Opened {
            chat,
            tokens,
            connected,
        } = open(&config).await?;
        let app = App::new(chat, tokens, config);

        let relay = connected.map(|connected| {
            let chat = app.chat.clone();
            connected.spawn_tasks(move |announced| chat.forget(announced));
            realtime::Relay::start(
                connected.cluster.clone(),
                connected.deliveries.clone(),
                &app.config.redis_prefix,
            )
        });
        let sockets = realtime::server(&app, relay);
        let api = socket_io_routes(http::router(app.clone()), &sockets);
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
            sockets,
            metrics: None,
        })
    }

    /// Serves the metrics (`GET /metrics`, nothing else) on `listener`
    /// too, from [`Server::serve`] until it returns.
    pub fn with_metrics(mut self, listener: TcpListener) -> Self {
        self.metrics = Some(listener);
        self
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
            sockets,
            app,
            metrics,
        } = self;
        let header_timeout = std::time::Duration::from_secs(app.config.header_timeout_secs.into());
        let stop_metrics = tokio_util::sync::CancellationToken::new();
        let metrics = metrics.map(|listener| {
            tokio::spawn(accept::serve(
                listener,
                http::metrics_router(app.clone()),
                header_timeout,
                stop_metrics.clone().cancelled_owned(),
            ))
        });
        accept::serve(listener, router, header_timeout, async move {
            shutdown.await;
            // Not ready from here on; keep serving meanwhile so that a
            // load balancer polling `/readyz` moves traffic away first.
            app.start_shutdown();
            let delay = std::time::Duration::from_secs(app.config.shutdown_delay_secs.into());
            if !delay.is_zero() {
                tracing::info!(
                    ?delay,
                    "shutdown: /readyz answers 503; still serving meanwhile"
                );
                tokio::time::sleep(delay).await;
            }
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
            sockets.shutdown().await;
        })
        .await;
        stop_metrics.cancel();
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
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
            app.set_database_up(ok);
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

/// Adds the Socket.IO endpoint to `api`, outside the API's own layers
/// (its body limits are `--max-frame-bytes`, applied by the layer itself).
/// The origin check and CORS, added after, cover it too.
fn socket_io_routes(api: Router, sockets: &realtime::Server) -> Router {
    let sockets = sockets.clone();
    let handler = move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
        std::net::SocketAddr,
    >,
                        req: axum::extract::Request| {
        let sockets = sockets.clone();
        async move { sockets.handle(req, peer).await.map(axum::body::Body::new) }
    };
    api.route("/socket.io/", axum::routing::any(handler.clone()))
        .route("/socket.io", axum::routing::any(handler))
}

/// Builds and serves: what `palaver serve` does; `metrics` is the
/// `--metrics-listen` listener, if one is set.
pub async fn run(
    config: Config,
    listener: TcpListener,
    metrics: Option<TcpListener>,
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
    let mut server = Server::build(config).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        backend = server.backend(),
        "palaver listening"
    );
    if let Some(metrics) = metrics {
        tracing::info!(addr = %metrics.local_addr()?, "metrics at /metrics");
        server = server.with_metrics(metrics);
    }
    server.serve(listener, shutdown).await
}
