//! Prometheus metrics (`--metrics-listen`): what the server counts, and
//! the registry they are read from at `GET /metrics` (served by
//! `http/metrics.rs` on the metrics listener).
//!
//! One [`Metrics`] per server, not a process global, so that tests running
//! several servers in one process each read their own. Every series whose
//! labels come from a small fixed set (event names, error codes, limit
//! kinds) is resolved once here, so counting on the message path is one
//! atomic add, with no label hashing, lock or allocation; the histograms
//! take an uncontended mutex per observation (`prometheus-client` keeps
//! their buckets behind one). HTTP requests, whose route labels are only
//! known as they come, go through a label family (a read lock and a hash
//! per request).
//!
//! The database pool and the Redis link are read when scraped;
//! the process's own figures by the collector in `process.rs`.

mod http;
mod process;

pub use http::track_http;

use palaver_protocol::ErrorCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Where each error code's counter is: a match, so that a new code does
/// not compile until it has one.
fn code_index(code: ErrorCode) -> usize {
    match code {
        ErrorCode::InvalidPayload => 0,
        ErrorCode::Unauthorized => 1,
        ErrorCode::Forbidden => 2,
        ErrorCode::NotFound => 3,
        ErrorCode::Conflict => 4,
        ErrorCode::TooLarge => 5,
        ErrorCode::RateLimited => 6,
        ErrorCode::Unavailable => 7,
        ErrorCode::Internal => 8,
        ErrorCode::MethodNotAllowed => 9,
    }
}

/// Every error code, at its [`code_index`] (a unit test checks it).
const CODES: [ErrorCode; 10] = [
    ErrorCode::InvalidPayload,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::NotFound,
    ErrorCode::Conflict,
    ErrorCode::TooLarge,
    ErrorCode::RateLimited,
    ErrorCode::Unavailable,
    ErrorCode::Internal,
    ErrorCode::MethodNotAllowed,
];

/// Which front door answered with an error.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    SocketIo = 0,
    Http = 1,
}

/// What a rate-limit refusal was for (the `kind` label).
#[derive(Debug, Clone, Copy)]
pub enum LimitKind {
    Message = 0,
    Read,
    GroupChange,
    Register,
    Login,
    Connection,
    Typing,
}

const LIMIT_KINDS: [&str; 7] = [
    "message",
    "read",
    "group_change",
    "register",
    "login",
    "connection",
    "typing",
];

type Labels = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// Socket.IO events received, by name: the events of the protocol and
/// `unknown` for any other (a client's name never becomes a label).
#[derive(Debug, Clone)]
pub struct Events {
    pub message: Counter,
    pub edit: Counter,
    pub delete: Counter,
    pub react: Counter,
    pub read: Counter,
    pub typing: Counter,
    pub unknown: Counter,
}

/// Rate-limit refusals by kind; cheap to clone (the limits hold one).
/// `Default`: counters registered nowhere (unit tests of the limits).
#[derive(Debug, Clone, Default)]
pub struct Refusals([Counter; 7]);

impl Refusals {
    /// Counts one refusal of `kind`.
    pub fn count(&self, kind: LimitKind) {
        self.0[kind as usize].inc();
    }

    /// The counter of `kind`, for a limit that counts its own.
    pub fn of(&self, kind: LimitKind) -> Counter {
        self.0[kind as usize].clone()
    }
}

/// Messages between nodes through Redis: deliveries (one per recipient)
/// and announcements (roster and block changes). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClusterCounters {
    pub deliveries_published: Counter,
    pub deliveries_received: Counter,
    pub announcements_published: Counter,
    pub announcements_received: Counter,
    /// 1 while this node can reach Redis, 0 while not (registered only
    /// when `--redis-url` is set).
    pub up: Gauge,
}

/// Everything one server counts.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Socket.IO connections on this node.
    pub sockets: Gauge,
    /// Users with at least one socket on this node.
    pub users_online: Gauge,
    pub events: Events,
    /// Messages stored by the writer (an idempotent retry is not counted).
    pub messages_committed: Counter,
    /// Messages per committed batch.
    pub batch_size: Histogram,
    /// The batch's insert, from its start to its commit.
    pub commit_seconds: Histogram,
    /// From a send's (or edit's, delete's, react's) arrival to its ack
    /// being queued on the socket.
    pub ack_seconds: Histogram,
    /// Event frames queued on this node's sockets (one per socket).
    pub deliveries: Counter,
    errors: [[Counter; CODES.len()]; 2],
    http: Family<http::RequestLabels, Histogram, fn() -> Histogram>,
    db_in_use: Gauge,
    db_idle: Gauge,
    db_max: Gauge,
    pub cluster: ClusterCounters,
    pub refused: Refusals,
}

/// Buckets for durations from 0.1 ms to about 2.4 s.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.5, 12))
}

/// Buckets for HTTP requests, from 0.5 ms to about 12 s (a login hashes
/// for most of a second).
fn http_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.5, 12))
}

impl Metrics {
    /// A fresh set, every series registered; `redis` says whether this
    /// node runs in a cluster (`palaver_redis_up` exists only then).
    pub fn new(redis: bool) -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let r = root.sub_registry_with_prefix("palaver");

        let sockets = Gauge::default();
        r.register(
            "sockets_connected",
            "Socket.IO connections on this node",
            sockets.clone(),
        );
        let users_online = Gauge::default();
        r.register(
            "users_online",
            "Users with at least one Socket.IO connection on this node",
            users_online.clone(),
        );

        let events_family = Family::<Labels, Counter>::default();
        let event = |name| events_family.get_or_create_owned(&[("event", name)]);
        let events = Events {
            message: event("message"),
            edit: event("edit"),
            delete: event("delete"),
            react: event("react"),
            read: event("read"),
            typing: event("typing"),
            unknown: event("unknown"),
        };
        r.register(
            "socketio_events_received",
            "Socket.IO events received, by event name (unknown: any name the protocol lacks)",
            events_family,
        );

        let messages_committed = Counter::default();
        r.register(
            "messages_committed",
            "Messages stored by the writer (idempotent retries excluded)",
            messages_committed.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        r.register(
            "message_batch_size",
            "Messages per batch the writer commits",
            batch_size.clone(),
        );
        let commit_seconds = latency_buckets();
        r.register_with_unit(
            "message_commit_duration",
            "Time to insert and commit one batch of messages",
            Unit::Seconds,
            commit_seconds.clone(),
        );
        let ack_seconds = latency_buckets();
        r.register_with_unit(
            "message_ack_duration",
            "Time from a message, edit, delete or react arriving to its ack being queued",
            Unit::Seconds,
            ack_seconds.clone(),
        );
        let deliveries = Counter::default();
        r.register(
            "deliveries",
            "Event frames queued on this node's sockets, one per socket",
            deliveries.clone(),
        );

        let errors_family = Family::<Labels2, Counter>::default();
        let errors = [("transport", "socketio"), ("transport", "http")].map(|transport| {
            CODES.map(|code| {
                errors_family.get_or_create_owned(&[transport, ("code", code.as_str())])
            })
        });
        r.register(
            "error_answers",
            "Error answers by code: Socket.IO acks and HTTP error bodies",
            errors_family,
        );

        let http =
            Family::<http::RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                http_buckets,
            );
        r.register_with_unit(
            "http_request_duration",
            "HTTP API requests by method, route template and status",
            Unit::Seconds,
            http.clone(),
        );

        let pool = Family::<Labels, Gauge>::default();
        let db_in_use = pool.get_or_create_owned(&[("state", "in_use")]);
        let db_idle = pool.get_or_create_owned(&[("state", "idle")]);
        r.register(
            "db_connections",
            "Connections of the database pool, in use or idle (the writer's own excluded)",
            pool,
        );
        let db_max = Gauge::default();
        r.register(
            "db_connections_max",
            "Most connections the database pool opens (--db-max-connections)",
            db_max.clone(),
        );

        let published = Family::<Labels, Counter>::default();
        let received = Family::<Labels, Counter>::default();
        let cluster = ClusterCounters {
            deliveries_published: published.get_or_create_owned(&[("kind", "delivery")]),
            deliveries_received: received.get_or_create_owned(&[("kind", "delivery")]),
            announcements_published: published.get_or_create_owned(&[("kind", "announcement")]),
            announcements_received: received.get_or_create_owned(&[("kind", "announcement")]),
            up: Gauge::default(),
        };
        r.register(
            "cluster_messages_published",
            "Messages published to the other nodes through Redis",
            published,
        );
        r.register(
            "cluster_messages_received",
            "Messages received from the other nodes through Redis",
            received,
        );
        if redis {
            cluster.up.set(1);
            r.register(
                "redis_up",
                "1 while this node reaches Redis, 0 while not",
                cluster.up.clone(),
            );
        }

        let refusals = Family::<Labels, Counter>::default();
        let refused =
            Refusals(LIMIT_KINDS.map(|kind| refusals.get_or_create_owned(&[("kind", kind)])));
        r.register(
            "rate_limited",
            "Refusals by a rate or connection limit, by kind",
            refusals,
        );

        Metrics {
            registry: root,
            sockets,
            users_online,
            events,
            messages_committed,
            batch_size,
            commit_seconds,
            ack_seconds,
            deliveries,
            errors,
            http,
            db_in_use,
            db_idle,
            db_max,
            cluster,
            refused,
        }
    }

    /// Counts one error answer.
    pub fn error(&self, transport: Transport, code: ErrorCode) {
        self.errors[transport as usize][code_index(code)].inc();
    }

    /// The Socket.IO events counter for `name`.
    pub fn event(&self, name: &str) -> &Counter {
        use palaver_protocol::events;
        let e = &self.events;
        match name {
            events::MESSAGE => &e.message,
            events::EDIT => &e.edit,
            events::DELETE => &e.delete,
            events::REACT => &e.react,
            events::READ => &e.read,
            events::TYPING => &e.typing,
            _ => &e.unknown,
        }
    }

    /// The pool's state as the store reports it.
    pub fn set_pool(&self, in_use: u32, idle: u32, max: u32) {
        self.db_in_use.set(in_use.into());
        self.db_idle.set(idle.into());
        self.db_max.set(max.into());
    }

    /// The exposition in Prometheus's text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests;
