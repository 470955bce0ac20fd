//! Credentials (v1.3): whether a token still holds, logging out (one token
//! or all), changing a password, disabling an account; and the watch over
//! the change log that applies such changes made by any node (or
//! `palaver admin`) here within a second, along with the group changes
//! `palaver admin` makes.
//!
//! Every token carries its user's token generation at issue; a change
//! bumps the generation in the database and appends to a log of changes.
//! Each node keeps the users' token states it has read (`TokenStates`,
//! with the other caches in `directory.rs`),
//! so a request or a handshake costs no query, and polls the log every
//! [`WATCH_EVERY`]: for each change it drops the cached state and ends
//! that user's sockets here whose token no longer holds
//! (`Sessions::end_revoked`). Events on an open socket are never
//! re-checked: the socket is ended instead.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use palaver_protocol::User;

use super::core::{now_ms, Core, Sessions};
use super::{Chat, ChatError, Password};
use crate::auth::{self, Verified};
use crate::ids::UserId;
use crate::store::{CredentialChange, LoggedChange, TokenState};

/// How often each node reads the log of credential changes.
pub const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Log entries read per query.
const WATCH_PAGE: u32 = 1000;

/// Positions of the log below the last one seen that are read again: a
/// change whose transaction took its position earlier but committed later
/// than others is still seen.
const REORDER_WINDOW: i64 = 64;

/// How often the log and expired revocations are pruned, and how long log
/// entries are kept.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const KEEP_CHANGES: Duration = Duration::from_secs(24 * 3600);

/// The message that ends a socket or refuses a request of a revoked token.
pub const TOKEN_REVOKED: &str = "token revoked";
/// The same for a disabled account.
pub const ACCOUNT_DISABLED: &str = "account disabled";

/// Why `state` refuses a token of `generation` with id `jti`, if it does.
pub fn refusal(state: &TokenState, generation: i64, jti: Option<i64>) -> Option<&'static str> {
    if state.disabled {
        Some(ACCOUNT_DISABLED)
    } else if generation < state.generation
        || jti.is_some_and(|j| state.revoked.binary_search(&j).is_ok())
    {
        Some(TOKEN_REVOKED)
    } else {
        None
    }
}

impl Core {
    /// `user`'s token state (cached), `None` for an unknown user.
    async fn token_state(&self, user: UserId) -> Result<Option<Arc<TokenState>>, ChatError> {
        if let Some(state) = self.tokens.get(user) {
            return Ok(Some(state));
        }
        let mark = self.tokens.mark();
        let Some(state) = self.store.token_state(user, now_ms()).await? else {
            return Ok(None);
        };
        // Almost every user has never logged out or been disabled: they
        // share one state, so each costs the cache only its map entry.
        static UNTOUCHED: std::sync::LazyLock<Arc<TokenState>> =
            std::sync::LazyLock::new(|| Arc::new(TokenState::default()));
        let state = if state == TokenState::default() {
            UNTOUCHED.clone()
        } else {
            Arc::new(state)
        };
        self.tokens.put(user, state.clone(), mark);
        Ok(Some(state))
    }

    /// Applies a change of `user`'s credentials on this node: drops the
    /// cached state and ends the sockets it revokes.
    async fn credentials_changed(&self, user: UserId) {
        self.tokens.forget(user);
        let Some(sessions) = self.sessions.get() else {
            return;
        };
        if !sessions.has_sockets(user) {
            return;
        }
        match self.token_state(user).await {
            Ok(Some(state)) => sessions.end_revoked(user, &state),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(user = user.get(), error = %e, "cannot re-check the sockets of a user whose credentials changed");
            }
        }
    }
}

impl Chat {
    /// Whether a token that verified still holds: not revoked, its
    /// account not disabled. A user that does not exist yet (named by an
    /// application's token) has nothing revoked.
    pub async fn check_token(&self, token: &Verified) -> Result<(), ChatError> {
        let Some(state) = self.core.token_state(token.user).await? else {
            return Ok(());
        };
        match refusal(&state, token.generation, token.jti) {
            Some(reason) => Err(ChatError::Unauthorized(format!("unauthorized: {reason}"))),
            None => Ok(()),
        }
    }

    /// The generation to issue `user` a token at, read afresh; refuses a
    /// disabled account.
    pub async fn token_generation(&self, user: UserId) -> Result<i64, ChatError> {
        let state = self
            .core
            .store
            .token_state(user, now_ms())
            .await?
            .ok_or_else(|| ChatError::no_such_user(user))?;
        if state.disabled {
            return Err(ChatError::Forbidden("this account is disabled".into()));
        }
        Ok(state.generation)
    }

    /// Whether `user`'s account is disabled, read afresh.
    pub async fn account_disabled(&self, user: UserId) -> Result<bool, ChatError> {
        let state = self.core.store.token_state(user, now_ms()).await?;
        Ok(state.ok_or_else(|| ChatError::no_such_user(user))?.disabled)
    }

    /// Logs one token out: it fails from now on, everywhere.
    pub async fn logout(&self, token: &Verified) -> Result<(), ChatError> {
        let jti = token.jti.ok_or_else(|| {
            ChatError::invalid(
                "this token has no id (`jti`) to log out alone: log out everywhere with POST /api/auth/logout-all",
            )
        })?;
        let expires_at_ms =
            i64::try_from(token.expires_at.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.core
            .store
            .revoke_token(token.user, jti, expires_at_ms, now_ms())
            .await?;
        self.core.credentials_changed(token.user).await;
        Ok(())
    }

    /// Applies `change` to `user`'s credentials, revoking every token
    /// issued before; the new token generation.
    pub async fn change_credentials(
        &self,
        user: UserId,
        change: &CredentialChange,
    ) -> Result<i64, ChatError> {
        let generation = self
            .core
            .store
            .change_credentials(user, change, now_ms())
            .await?
            .ok_or_else(|| ChatError::no_such_user(user))?;
        self.core.credentials_changed(user).await;
        Ok(generation)
    }

    /// Sets a new password given the current one; every earlier token is
    /// revoked. The user and the new token generation.
    pub async fn change_password(
        &self,
        user: UserId,
        current: &str,
        new: Password,
    ) -> Result<(User, i64), ChatError> {
        let hash = self
            .core
            .store
            .password_hash(user)
            .await?
            .ok_or_else(|| ChatError::no_such_user(user))?;
        if !auth::verify_password(hash, current.to_string()).await {
            return Err(ChatError::Forbidden("the current password is wrong".into()));
        }
        let hash = auth::hash_password(new.as_str().to_string()).await;
        let generation = self
            .change_credentials(user, &CredentialChange::Password(hash))
            .await?;
        Ok((self.user(user).await?, generation))
    }

    /// Sets how revoked sockets are ended (once).
    pub fn set_sessions(&self, sessions: Arc<dyn Sessions>) {
        let _ = self.core.sessions.set(sessions);
    }
}

/// Starts the watch over the change log; it stops when the chat service is
/// dropped.
pub(super) fn spawn_watch(core: &Arc<Core>) {
    let weak = Arc::downgrade(core);
    tokio::spawn(async move {
        let mut last = match weak.upgrade() {
            Some(core) => core.store.last_logged_change().await.unwrap_or(0),
            None => return,
        };
        let mut seen = BTreeSet::new();
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let Some(core) = weak.upgrade() else { return };
            while watch_once(&core, &mut last, &mut seen).await {}
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = tokio::time::Instant::now();
                let now = now_ms();
                let before = now - KEEP_CHANGES.as_millis() as i64;
                if let Err(e) = core.store.prune_credentials(before, now).await {
                    tracing::debug!(error = %e, "cannot prune the change log");
                }
            }
        }
    });
}

/// Reads one page of the log and applies what was not seen; whether a
/// full page came back (read again at once).
async fn watch_once(core: &Core, last: &mut i64, seen: &mut BTreeSet<i64>) -> bool {
    let changes = match core
        .store
        .logged_changes(*last - REORDER_WINDOW, WATCH_PAGE)
        .await
    {
        Ok(changes) => changes,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the change log");
            return false;
        }
    };
    let full = changes.len() == WATCH_PAGE as usize;
    let mut users = Vec::new();
    for (position, change) in changes {
        if seen.insert(position) {
            match change {
                LoggedChange::Credentials(user) => users.push(user),
                LoggedChange::Roster(group) => core.directory.invalidate_roster(group),
            }
        }
        *last = (*last).max(position);
    }
    // Positions below the window are never read again.
    *seen = seen.split_off(&(*last - REORDER_WINDOW));
    users.sort_unstable();
    users.dedup();
    for user in users {
        core.credentials_changed(user).await;
    }
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(generation: i64, disabled: bool, revoked: Vec<i64>) -> TokenState {
        TokenState {
            generation,
            disabled,
            revoked,
        }
    }

    #[test]
    fn a_token_holds_unless_older_than_the_generation_logged_out_or_disabled() {
        let s = state(2, false, vec![5, 9]);
        assert_eq!(refusal(&s, 2, None), None);
        assert_eq!(refusal(&s, 3, Some(7)), None, "a later generation holds");
        assert_eq!(refusal(&s, 1, None), Some(TOKEN_REVOKED));
        assert_eq!(refusal(&s, 2, Some(9)), Some(TOKEN_REVOKED));
        assert_eq!(refusal(&s, 2, Some(5)), Some(TOKEN_REVOKED));
        assert_eq!(refusal(&s, 2, Some(6)), None);
        let d = state(0, true, vec![]);
        assert_eq!(refusal(&d, 5, None), Some(ACCOUNT_DISABLED));
    }
}
