//! The shared application state handed to both front doors.

use std::sync::Arc;

use crate::auth::Tokens;
use crate::chat::Chat;
use crate::config::Config;
use crate::limits::Limits;
use crate::metrics::Metrics;

/// Cheap to clone: one `Arc` inside.
#[derive(Clone)]
pub struct App(Arc<Inner>);

pub struct Inner {
    pub chat: Chat,
    pub tokens: Tokens,
    pub config: Config,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    /// Set when a graceful shutdown starts (`/readyz` answers 503).
    shutting_down: std::sync::atomic::AtomicBool,
    /// Cleared while the database watch finds the database not answering
    /// (`/readyz` reads it instead of asking the pool at each probe).
    database_down: std::sync::atomic::AtomicBool,
}

impl App {
    /// A handle that does not keep the state alive (background tasks).
    pub fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.0)
    }

    /// The state again, if the server still holds it.
    pub fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<App> {
        weak.upgrade().map(App)
    }

    pub fn new(chat: Chat, tokens: Tokens, config: Config) -> Self {
        let limits = chat.limits().clone();
        let metrics = chat.metrics().clone();
        App(Arc::new(Inner {
            chat,
            tokens,
            config,
            limits,
            metrics,
            shutting_down: Default::default(),
            database_down: Default::default(),
        }))
    }

    /// Marks the server as shutting down: no longer ready for traffic.
    pub fn start_shutdown(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Records what the database watch found.
    pub fn set_database_up(&self, up: bool) {
        self.database_down
            .store(!up, std::sync::atomic::Ordering::Release);
    }

    /// Whether the database answered the watch's last ping.
    pub fn database_up(&self) -> bool {
        !self
            .database_down
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
    }
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
