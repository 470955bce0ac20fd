//! In-memory knowledge the hot path needs: which users exist, who is in
//! which group, who has a block with whom, and each user's token state
//! ([`TokenStates`], v1.3).
//!
//! Users are never deleted, so a user seen once is cached for good. Group
//! rosters are cached until a membership change invalidates them. A
//! generation counter closes the race where a roster read from the database
//! just before a change would be cached just after the change's
//! invalidation. Both maps are bounded: when full they are simply cleared.
//! Locks are `std::sync::Mutex` and are never held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use palaver_protocol::Role;

use crate::ids::{GroupId, UserId};
use crate::store::TokenState;

const MAX_USERS: usize = 1_000_000;
const MAX_ROSTERS: usize = 100_000;
const MAX_BLOCK_SETS: usize = 100_000;

/// A group's members at one moment.
#[derive(Debug)]
pub struct Roster {
    roles: HashMap<UserId, Role>,
    /// Member ids in a stable order, for fan-out.
    ids: Vec<UserId>,
}

impl Roster {
    pub fn new(members: impl IntoIterator<Item = (UserId, Role)>) -> Self {
        let roles: HashMap<_, _> = members.into_iter().collect();
        let mut ids: Vec<_> = roles.keys().copied().collect();
        ids.sort_unstable();
        Roster { roles, ids }
    }

    pub fn role(&self, user: UserId) -> Option<Role> {
        self.roles.get(&user).copied()
    }

    pub fn ids(&self) -> &[UserId] {
        &self.ids
    }
}

#[derive(Default)]
struct Rosters {
    map: HashMap<GroupId, (Arc<Roster>, Instant)>,
    generation: u64,
}

/// Per user, everyone with a block between them either way (v1.2).
#[derive(Default)]
struct Blocks {
    map: HashMap<UserId, (Arc<HashSet<UserId>>, Instant)>,
    generation: u64,
}

/// The caches.
#[derive(Default)]
pub struct Directory {
    users: Mutex<HashSet<UserId>>,
    rosters: Mutex<Rosters>,
    blocks: Mutex<Blocks>,
    /// How long a cached roster is trusted (`None`: until invalidated).
    max_age: Option<Duration>,
    /// How long a cached block set is trusted (`None`: until invalidated).
    blocks_max_age: Option<Duration>,
}

impl Directory {
    pub fn new(max_age: Option<Duration>, blocks_max_age: Option<Duration>) -> Self {
        Directory {
            max_age,
            blocks_max_age,
            ..Directory::default()
        }
    }

    pub fn knows_user(&self, id: UserId) -> bool {
        self.users.lock().unwrap().contains(&id)
    }

    pub fn add_user(&self, id: UserId) {
        let mut users = self.users.lock().unwrap();
        if users.len() >= MAX_USERS {
            users.clear();
        }
        users.insert(id);
    }

    pub fn roster(&self, group: GroupId) -> Option<Arc<Roster>> {
        let r = self.rosters.lock().unwrap();
        let (roster, cached) = r.map.get(&group)?;
        match self.max_age {
            Some(max) if cached.elapsed() > max => None,
            _ => Some(roster.clone()),
        }
    }

    /// The generation to pass to [`put_roster`](Self::put_roster) for a
    /// roster about to be read from the database.
    pub fn roster_generation(&self) -> u64 {
        self.rosters.lock().unwrap().generation
    }

    /// Caches a roster read at `generation`, unless a change happened since.
    pub fn put_roster(&self, group: GroupId, roster: Arc<Roster>, generation: u64) {
        let mut r = self.rosters.lock().unwrap();
        if r.generation != generation {
            return;
        }
        if r.map.len() >= MAX_ROSTERS {
            r.map.clear();
        }
        r.map.insert(group, (roster, Instant::now()));
    }

    /// Forgets a group's roster after its membership changed.
    pub fn invalidate_roster(&self, group: GroupId) {
        let mut r = self.rosters.lock().unwrap();
        r.generation += 1;
        r.map.remove(&group);
    }

    /// Everyone with a block between them and `user`, if cached.
    pub fn blocks(&self, user: UserId) -> Option<Arc<HashSet<UserId>>> {
        let b = self.blocks.lock().unwrap();
        let (set, cached) = b.map.get(&user)?;
        match self.blocks_max_age {
            Some(max) if cached.elapsed() > max => None,
            _ => Some(set.clone()),
        }
    }

    /// The generation to pass to [`put_blocks`](Self::put_blocks).
    pub fn blocks_generation(&self) -> u64 {
        self.blocks.lock().unwrap().generation
    }

    /// Caches a block set read at `generation`, unless a block changed since.
    pub fn put_blocks(&self, user: UserId, set: Arc<HashSet<UserId>>, generation: u64) {
        let mut b = self.blocks.lock().unwrap();
        if b.generation != generation {
            return;
        }
        if b.map.len() >= MAX_BLOCK_SETS {
            b.map.clear();
        }
        b.map.insert(user, (set, Instant::now()));
    }

    /// Forgets the block sets of both users of a block that changed.
    pub fn invalidate_blocks(&self, a: UserId, b: UserId) {
        let mut blocks = self.blocks.lock().unwrap();
        blocks.generation += 1;
        blocks.map.remove(&a);
        blocks.map.remove(&b);
    }

    /// Forgets every roster and block set (changes may have been missed).
    pub fn forget_all(&self) {
        self.forget_rosters();
        let mut b = self.blocks.lock().unwrap();
        b.generation += 1;
        b.map.clear();
    }

    /// Forgets every roster (changes may have been missed).
    pub fn forget_rosters(&self) {
        let mut r = self.rosters.lock().unwrap();
        r.generation += 1;
        r.map.clear();
    }
}

/// Most users whose token state a node keeps; beyond, the cache starts
/// over (each state is read again on its user's next request).
pub const CACHED_STATES: usize = 65_536;

/// Longest a node trusts a cached token state. Every change reaches the
/// nodes through the change log within a second; this bounds how long a
/// change the log did not bring (a read that failed, a row committed far
/// out of order) can go unseen by requests and handshakes.
pub const TOKEN_STATE_MAX_AGE: Duration = Duration::from_secs(60);

/// The token states this node has read, by user, with when (seconds
/// since the cache was made: four bytes, not an `Instant`'s sixteen).
pub struct TokenStates {
    states: Mutex<HashMap<UserId, (Arc<TokenState>, u32)>>,
    /// Bumped by every [`TokenStates::forget`]: a state read before it
    /// may be stale and is not kept.
    forgotten: AtomicU64,
    born: Instant,
}

impl Default for TokenStates {
    fn default() -> Self {
        TokenStates {
            states: Mutex::default(),
            forgotten: AtomicU64::new(0),
            born: Instant::now(),
        }
    }
}

impl TokenStates {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, (Arc<TokenState>, u32)>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u32 {
        u32::try_from(self.born.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// The cached state, unless older than [`TOKEN_STATE_MAX_AGE`].
    pub fn get(&self, user: UserId) -> Option<Arc<TokenState>> {
        let now = self.now();
        let states = self.lock();
        let (state, read) = states.get(&user)?;
        (u64::from(now - read) < TOKEN_STATE_MAX_AGE.as_secs()).then(|| state.clone())
    }

    pub fn mark(&self) -> u64 {
        self.forgotten.load(Ordering::Acquire)
    }

    /// Keeps `state`, read after [`TokenStates::mark`] answered `mark`.
    pub fn put(&self, user: UserId, state: Arc<TokenState>, mark: u64) {
        let now = self.now();
        let mut states = self.lock();
        if self.forgotten.load(Ordering::Acquire) != mark {
            return;
        }
        if states.len() >= CACHED_STATES {
            states.clear();
        }
        states.insert(user, (state, now));
    }

    pub fn forget(&self, user: UserId) {
        let mut states = self.lock();
        self.forgotten.fetch_add(1, Ordering::AcqRel);
        states.remove(&user);
    }

    /// Keeps `state` as if read `age` ago (tests).
    #[cfg(test)]
    fn put_aged(&self, user: UserId, state: Arc<TokenState>, age: Duration) {
        let read = self
            .now()
            .saturating_sub(u32::try_from(age.as_secs()).unwrap());
        self.lock().insert(user, (state, read));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(generation: i64) -> TokenState {
        TokenState {
            generation,
            ..TokenState::default()
        }
    }

    #[test]
    fn a_token_state_is_trusted_for_a_minute_at_most() {
        let born = Instant::now() - Duration::from_secs(600);
        let states = TokenStates {
            born,
            ..TokenStates::default()
        };
        let (fresh, stale) = (UserId::parse(1).unwrap(), UserId::parse(2).unwrap());
        states.put_aged(fresh, Arc::new(state(4)), Duration::from_secs(59));
        states.put_aged(stale, Arc::new(state(4)), TOKEN_STATE_MAX_AGE);
        assert_eq!(states.get(fresh).map(|s| s.generation), Some(4));
        assert!(states.get(stale).is_none(), "read a minute ago");
    }

    #[test]
    fn the_token_state_cache_starts_over_when_full() {
        let states = TokenStates::default();
        let mark = states.mark();
        for id in 1..=CACHED_STATES as i64 {
            states.put(UserId::parse(id).unwrap(), Arc::new(state(0)), mark);
        }
        assert_eq!(states.len(), CACHED_STATES, "full, nothing dropped yet");
        let one_more = UserId::parse(CACHED_STATES as i64 + 1).unwrap();
        states.put(one_more, Arc::new(state(0)), mark);
        assert_eq!(states.len(), 1);
        assert!(states.get(one_more).is_some());
    }

    #[test]
    fn a_state_read_before_a_change_is_not_kept() {
        let states = TokenStates::default();
        let user = UserId::parse(7).unwrap();
        let mark = states.mark();
        states.forget(user);
        states.put(user, Arc::new(state(1)), mark);
        assert!(states.get(user).is_none(), "read before the change");
        let mark = states.mark();
        states.put(user, Arc::new(state(1)), mark);
        assert_eq!(states.get(user).unwrap().generation, 1);
    }
}
