//! Presence: which users have a socket connected to this node.
//!
//! Many sockets of one user are one presence: a user comes online with the
//! first socket and goes offline when the last one has been gone for
//! [`GRACE`]. A reconnect within the grace period cancels the offline
//! change, so a flapping connection produces no presence events at all.
//! Counts are per process; with several nodes behind Redis, `realtime`
//! also counts the user's sockets on the other nodes before announcing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::ids::UserId;

/// How long a user's last socket must stay gone before they are offline.
pub const GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Entry {
    sockets: usize,
    /// Bumped on every change, so a pending offline check can tell whether
    /// anything happened since it was scheduled.
    generation: u64,
}

/// The per-process presence table.
#[derive(Default)]
pub struct Presence {
    users: Mutex<HashMap<UserId, Entry>>,
}

impl Presence {
    /// A socket of `user` connected; true when the user just came online
    /// (not merely reconnected within the grace period).
    pub fn connect(&self, user: UserId) -> bool {
        let mut users = self.users.lock().unwrap();
        let fresh = !users.contains_key(&user);
        let e = users.entry(user).or_default();
        e.sockets += 1;
        e.generation += 1;
        fresh
    }

    /// A socket of `user` left. When it was the last, returns the token to
    /// pass to [`settle_offline`](Self::settle_offline).
    pub fn disconnect(&self, user: UserId) -> Option<u64> {
        let mut users = self.users.lock().unwrap();
        let e = users.get_mut(&user)?;
        e.sockets = e.sockets.saturating_sub(1);
        e.generation += 1;
        (e.sockets == 0).then_some(e.generation)
    }

    /// Waits out the grace period; true when the user is still gone, in
    /// which case they are now offline.
    pub async fn settle_offline(&self, user: UserId, token: u64) -> bool {
        tokio::time::sleep(GRACE).await;
        let mut users = self.users.lock().unwrap();
        match users.get(&user) {
            Some(e) if e.sockets == 0 && e.generation == token => {
                users.remove(&user);
                true
            }
            _ => false,
        }
    }

    /// Online, or gone for less than the grace period.
    pub fn is_online(&self, user: UserId) -> bool {
        self.users.lock().unwrap().contains_key(&user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn user(n: i64) -> UserId {
        UserId::parse(n).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn many_sockets_are_one_presence_and_the_last_one_leaving_goes_offline() {
        let p = Arc::new(Presence::default());
        assert!(p.connect(user(7)), "first socket: online");
        assert!(!p.connect(user(7)), "second socket: no change");
        assert_eq!(p.disconnect(user(7)), None, "one socket left");
        let token = p.disconnect(user(7)).expect("last socket gone");
        assert!(p.is_online(user(7)), "still online during the grace period");
        assert!(p.settle_offline(user(7), token).await);
        assert!(!p.is_online(user(7)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_within_the_grace_period_produces_no_change() {
        let p = Arc::new(Presence::default());
        assert!(p.connect(user(7)));
        let token = p.disconnect(user(7)).unwrap();
        let pending = tokio::spawn({
            let p = p.clone();
            async move { p.settle_offline(user(7), token).await }
        });
        tokio::time::sleep(GRACE / 2).await;
        assert!(!p.connect(user(7)), "reconnected: not announced again");
        assert!(!pending.await.unwrap(), "the pending offline is cancelled");
        assert!(p.is_online(user(7)));
    }
}
