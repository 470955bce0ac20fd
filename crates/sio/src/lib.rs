//! Palaver's Socket.IO server layer: Engine.IO v4 and Socket.IO v5, server
//! side, JSON encoding, on hyper and tokio-tungstenite.
//!
//! It exists because the general-purpose implementation cost more per
//! connection than the whole Node.js server Palaver replaces (see
//! `docs/decisions.md`). Each session is driven by one task; nothing is
//! spawned per event; a frame is encoded once however many sockets it
//! goes to; each session's outgoing queue is bounded in bytes, allocated
//! when the first frame waits in it (an idle session that never received
//! anything holds none), and shrunk back after a burst.
//!
//! # Layout
//! - [`engine`]: Engine.IO — `packet.rs` the codec, `session.rs` the
//!   session and its queue, `heartbeat.rs` pings and deadlines as plain
//!   state, `polling.rs` and `ws.rs` the two transports and the upgrade.
//! - [`socketio`]: Socket.IO — `packet.rs` the codec, `mod.rs` namespaces,
//!   the handshake, events and acks, and the [`socketio::Handler`] an
//!   application implements.
//! - [`conformance`]: the set-up the official protocol test suites expect.

pub mod conformance;
pub mod engine;
pub mod socketio;

pub use engine::{CloseReason, Closed, Engine, Frame, Sid};
pub use socketio::{server, Connect, DisconnectReason, Event, Handler, Server, Socket};
