//! The domain: validate → store → fan out.
//!
//! Both front doors (HTTP in `http/`, Socket.IO in `realtime/`) call these
//! functions with already-parsed input ([`input`]) and an authenticated user
//! id; this module decides who may do what, talks to the [`Store`], and
//! hands committed messages back to the transport through [`Respond`]. It
//! knows nothing of HTTP or Socket.IO.
//!
//! This file is the face: [`Chat`], [`Chat::start`] and what the rest of
//! the crate may name. Behind it: `accounts` (users, logins, presence
//! look-ups), `credentials` (whether a token still holds, logging out,
//! passwords, disabled accounts), `groups` (groups and their members), `messages` (sends,
//! edits and deletes, history, read positions, conversations), `core` (what the request paths
//! and the writer share: the store and the roster cache), `queue` (what
//! the writer's queue carries), `writer` (the batching message writer),
//! `retry` (its one retry policy),
//! `changes` (who may edit or delete), and the helpers `coalesce`, `directory`,
//! `error`, [`input`] and [`presence`].

mod accounts;
mod changes;
mod coalesce;
mod core;
mod credentials;
mod directory;
mod error;
mod groups;
pub mod input;
mod messages;
mod operator;
pub mod presence;
mod queue;
mod retry;
mod writer;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

pub use self::core::{Deliver, OnlineLookup, Sessions, Settings, SHARED_ROSTER_MAX_AGE};
pub use crate::store::{CredentialChange, TokenState};
pub use credentials::refusal;
pub use directory::Roster;
pub use error::ChatError;
pub use groups::MAX_GROUP_MEMBERS;
pub use input::{
    ChangeRequest, GroupName, ListCursor, ListPage, Password, SendRequest, Target, Username,
};
pub use messages::{DEFAULT_PAGE, MAX_CONVERSATIONS, MAX_PAGE};
pub use queue::{GroupOp, Respond, Sent};

use crate::cluster::{Announcement, Cluster, BLOCKS_MAX_AGE, ROSTER_MAX_AGE};
use crate::limits::Limits;
use crate::store::{ConnectError, Store};
use accounts::Chores;
use directory::Directory;
use queue::Queued;

use self::core::Core;

/// Sends waiting for the writer, across all sockets. Beyond this a send is
/// refused with `unavailable` rather than queued without bound.
pub const SEND_QUEUE: usize = 16 * 1024;

/// The chat service; cheap to clone.
#[derive(Clone)]
pub struct Chat {
    core: Arc<Core>,
    sends: mpsc::Sender<Queued>,
    /// Batched user-row and `last_seen` writes.
    chores: Arc<Chores>,
    /// Set by [`Chat::drain`]: new sends are refused.
    closing: Arc<AtomicBool>,
}

/// Opens the writer's own store; polled on the writer's thread, so that its
/// connection belongs to the writer's runtime (`None`: the writer uses the
/// main store). See [`crate::store::connect_writer`].
pub type OpenWriterStore = BoxFuture<'static, Result<Option<Box<dyn Store>>, ConnectError>>;

impl Chat {
    /// Starts the service over `store`, and its writer on a thread of its
    /// own (a single-threaded runtime): with thousands of sockets the main
    /// runtime's queues delayed each of the writer's database round trips,
    /// and batches commit one at a time (BENCHMARKS.md, "The writer on its
    /// own thread"). Returns once the writer's store is open.
    pub async fn start(
        store: Box<dyn Store>,
        open_writer_store: OpenWriterStore,
        settings: Settings,
    ) -> Result<Self, ConnectError> {
        // On a database other nodes may share (MySQL/MariaDB, PostgreSQL;
        // with Redis or without) another node may change a group or a
        // block: the cached rosters and block sets are trusted for a max
        // age after each check of the database's versions of them (one
        // query, see `directory.rs`). In a cluster, other nodes also say
        // when they change one, and rosters are checked sooner.
        let shared = store.backend() != "sqlite" || settings.cluster.is_some();
        let max_age = match (&settings.cluster, shared) {
            (Some(_), _) => Some(ROSTER_MAX_AGE),
            (None, true) => Some(SHARED_ROSTER_MAX_AGE),
            (None, false) => None,
        };
        // In a cluster, where block changes are announced, block sets
        // alone would be checked once a minute.
        let blocks_max_age = match (&settings.cluster, shared) {
            (Some(_), _) => Some(BLOCKS_MAX_AGE),
            (None, true) => Some(SHARED_ROSTER_MAX_AGE),
            (None, false) => None,
        };
        let core = Arc::new(Core {
            shared,
            store,
            directory: Directory::new(max_age, blocks_max_age),
            presence: presence::Presence::default(),
            settings,
            online: std::sync::OnceLock::new(),
            deliverer: std::sync::OnceLock::new(),
            tokens: Default::default(),
            sessions: std::sync::OnceLock::new(),
        });
        credentials::spawn_watch(&core);
        let chores = Arc::new(Chores::start(&core));
        let (sends, rx) = mpsc::channel(SEND_QUEUE);
        let (opened, ready) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ConnectError::Writer)?;
        let writer_core = core.clone();
        std::thread::Builder::new()
            .name("palaver-writer".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match open_writer_store.await {
                        Ok(own) => {
                            let _ = opened.send(Ok(()));
                            writer::run(writer_core, own, rx).await;
                        }
                        Err(e) => {
                            let _ = opened.send(Err(e));
                        }
                    }
                })
            })
            .map_err(ConnectError::Writer)?;
        match ready.await {
            Ok(Ok(())) => Ok(Chat {
                core,
                sends,
                chores,
                closing: Arc::default(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError::Writer(std::io::Error::other(
                "the writer thread stopped while starting",
            ))),
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.core.store
    }

    /// Every rate limit of this node (the same the front doors ask).
    pub fn limits(&self) -> &Arc<Limits> {
        &self.core.settings.limits
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.core.settings.metrics
    }

    /// This node's link to the others, when it is one of several.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.core.settings.cluster.as_ref()
    }

    /// Drops what another node announced it changed: a roster, a pair's
    /// block sets, or (announcements may have been missed) all of them.
    pub fn forget(&self, announced: Announcement) {
        match announced {
            Announcement::Roster(g) => self.core.directory.invalidate_roster(g),
            Announcement::Blocks(a, b) => self.core.directory.invalidate_blocks(a, b),
            Announcement::All => self.core.directory.forget_all(),
        }
    }

    /// Sets how system messages reach the sockets (once).
    pub fn set_deliverer(&self, deliverer: Arc<dyn Deliver>) {
        let _ = self.core.deliverer.set(deliverer);
    }

    /// Sets how online-ness is looked up across nodes (once).
    pub fn set_online_lookup(&self, lookup: Arc<dyn OnlineLookup>) {
        let _ = self.core.online.set(lookup);
    }

    pub fn max_message_chars(&self) -> usize {
        self.core.settings.max_message_chars
    }
}
