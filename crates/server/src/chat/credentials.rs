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
use crate::auth::{self, TokenMark, Verified};
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

/// Most users whose sockets wait to be re-checked again (a database
/// outage); beyond, the cache's age limit still bounds what requests see.
const MAX_RETRIES: usize = 10_000;

/// How often the log and expired revocations are pruned, and how long log
/// entries are kept.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const KEEP_CHANGES: Duration = Duration::from_secs(24 * 3600);

/// The message that ends a socket or refuses a request of a revoked token.
pub const TOKEN_REVOKED: &str = "token revoked";
/// The same for a disabled account.
pub const ACCOUNT_DISABLED: &str = "account disabled";

/// Why `state` refuses a token, if it does. A token Palaver issued is
/// revoked when issued at an earlier generation; one an application
/// minted (no generation) when issued before the second of the last
/// revocation began: one it mints in that same second is refused too,
/// and must be minted again.
pub fn refusal(state: &TokenState, token: &TokenMark) -> Option<&'static str> {
    let older = match token.generation() {
        Some(generation) => generation < state.generation,
        None => (token.issued_at() as i64).saturating_mul(1000) < state.revoked_at_ms,
    };
    if state.disabled {
        Some(ACCOUNT_DISABLED)
    } else if older
        || token
            .jti()
            .is_some_and(|j| state.revoked.binary_search(&j).is_ok())
    {
        Some(TOKEN_REVOKED)
    } else {
        None
    }
}

/// Reads and caches the token states of the users whose handshakes and
/// requests wait together, in two queries; answers each (`None`: no such
/// user yet, nothing cached).
pub(super) async fn load_token_states(
    core: Arc<Core>,
    users: Vec<UserId>,
) -> Vec<Result<Option<Arc<TokenState>>, ChatError>> {
    let mut distinct = users.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let mark = core.tokens.mark();
    let read = match core.store.token_states(&distinct, now_ms()).await {
        Ok(read) => read,
        Err(e) => {
            let e = ChatError::from(e);
            return users.iter().map(|_| Err(e.clone())).collect();
        }
    };
    let mut states = std::collections::HashMap::with_capacity(read.len());
    for (user, state) in read {
        let state = shared(state);
        core.tokens.put(user, state.clone(), mark);
        states.insert(user, state);
    }
    users.iter().map(|u| Ok(states.get(u).cloned())).collect()
}

/// Almost every user has never logged out or been disabled: they share
/// one state, so each costs the cache only its map entry.
fn shared(state: TokenState) -> Arc<TokenState> {
    static UNTOUCHED: std::sync::LazyLock<Arc<TokenState>> =
        std::sync::LazyLock::new(|| Arc::new(TokenState::default()));
    if state == TokenState::default() {
        UNTOUCHED.clone()
    } else {
        Arc::new(state)
    }
}

impl Core {
    /// `user`'s token state, read afresh and cached; `None` for an
    /// unknown user.
    async fn token_state(&self, user: UserId) -> Result<Option<Arc<TokenState>>, ChatError> {
        let mark = self.tokens.mark();
        let Some(state) = self.store.token_state(user, now_ms()).await? else {
            return Ok(None);
        };
        let state = shared(state);
        self.tokens.put(user, state.clone(), mark);
        Ok(Some(state))
    }

    /// Applies a change of `user`'s credentials on this node: drops the
    /// cached state and ends the sockets it revokes. False when the state
    /// could not be read to re-check the sockets (the watch tries again).
    async fn credentials_changed(&self, user: UserId) -> bool {
        self.tokens.forget(user);
        let Some(sessions) = self.sessions.get() else {
            return true;
        };
        if !sessions.has_sockets(user) {
            return true;
        }
        match self.token_state(user).await {
            Ok(Some(state)) => sessions.end_revoked(user, &state),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(user = user.get(), error = %e, "cannot re-check the sockets of a user whose credentials changed; trying again");
                return false;
            }
        }
        true
    }
}

impl Chat {
    /// Whether a token that verified still holds: not revoked, its
    /// account not disabled. A user that does not exist yet (named by an
    /// application's token) has nothing revoked.
    pub async fn check_token(&self, user: UserId, token: &TokenMark) -> Result<(), ChatError> {
        let state = match self.core.tokens.get(user) {
            Some(state) => Some(state),
            // Read with the other handshakes and requests waiting now: a
            // reconnect storm costs a few queries, not one per socket.
            None => self.chores.token_states.submit(user).await?,
        };
        let Some(state) = state else {
            return Ok(());
        };
        match refusal(&state, token) {
            Some(reason) => Err(ChatError::Unauthorized(format!("unauthorized: {reason}"))),
            None => Ok(()),
        }
    }

    /// Whether this node's cached state of `user` refuses `token`: `None`
    /// when nothing is cached (a change dropped it since it was read).
    /// For the check right after a socket is registered, which closes the
    /// window between the handshake's check and the registration, where
    /// a change would find no socket to end.
    pub fn cached_refusal(&self, user: UserId, token: &TokenMark) -> Option<Option<&'static str>> {
        self.core
            .tokens
            .get(user)
            .map(|state| refusal(&state, token))
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
        let jti = token.mark.jti().ok_or_else(|| {
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
        let _ = self.core.credentials_changed(token.user).await;
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
        let _ = self.core.credentials_changed(user).await;
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
        let mut retry = Vec::new();
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let Some(core) = weak.upgrade() else { return };
            // Users whose sockets could not be re-checked last time first.
            for user in std::mem::take(&mut retry) {
                if !core.credentials_changed(user).await {
                    retry.push(user);
                }
            }
            while watch_once(&core, &mut last, &mut seen, &mut retry).await {}
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
async fn watch_once(
    core: &Core,
    last: &mut i64,
    seen: &mut BTreeSet<i64>,
    retry: &mut Vec<UserId>,
) -> bool {
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
        if !core.credentials_changed(user).await
            && !retry.contains(&user)
            && retry.len() < MAX_RETRIES
        {
            retry.push(user);
        }
    }
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(generation: i64, revoked_at_ms: i64, disabled: bool, revoked: Vec<i64>) -> TokenState {
        TokenState {
            generation,
            revoked_at_ms,
            disabled,
            revoked,
        }
    }

    fn issued(generation: i64, jti: Option<i64>) -> TokenMark {
        TokenMark::new(Some(generation), 1_000, jti)
    }

    #[test]
    fn a_token_holds_unless_older_than_the_generation_logged_out_or_disabled() {
        let s = state(2, 5_000_000, false, vec![5, 9]);
        assert_eq!(refusal(&s, &issued(2, None)), None);
        assert_eq!(
            refusal(&s, &issued(3, Some(7))),
            None,
            "a later generation holds"
        );
        assert_eq!(refusal(&s, &issued(1, None)), Some(TOKEN_REVOKED));
        assert_eq!(refusal(&s, &issued(2, Some(9))), Some(TOKEN_REVOKED));
        assert_eq!(refusal(&s, &issued(2, Some(5))), Some(TOKEN_REVOKED));
        assert_eq!(refusal(&s, &issued(2, Some(6))), None);
        let d = state(0, 0, true, vec![]);
        assert_eq!(refusal(&d, &issued(5, None)), Some(ACCOUNT_DISABLED));
    }

    #[test]
    fn a_minted_token_is_judged_by_when_it_was_issued() {
        // The last revocation at 5,000.5 s.
        let s = state(3, 5_000_500, false, vec![]);
        let minted = |iat| TokenMark::new(None, iat, None);
        assert_eq!(refusal(&s, &minted(4_999)), Some(TOKEN_REVOKED));
        assert_eq!(
            refusal(&s, &minted(5_000)),
            Some(TOKEN_REVOKED),
            "the same second"
        );
        assert_eq!(refusal(&s, &minted(5_001)), None, "minted after it");
        // A revocation exactly at a second's start: that second's tokens
        // may have come after it, and hold.
        let on_the_second = state(3, 5_001_000, false, vec![]);
        assert_eq!(refusal(&on_the_second, &minted(5_001)), None);
        assert_eq!(refusal(&on_the_second, &minted(5_000)), Some(TOKEN_REVOKED));
        assert_eq!(
            refusal(&state(0, 0, false, vec![]), &minted(0)),
            None,
            "never revoked"
        );
    }
}
