//! In-memory knowledge the hot path needs: which users exist, who is in
//! which group, who has a block with whom, and each user's token state
//! ([`TokenStates`], v1.3).
//!
//! Users are never deleted, so a user seen once is cached for good. Group
//! rosters and block sets are cached until a change made through this node
//! invalidates them. A generation counter closes the race where a roster
//! read from the database just before a change would be cached just after
//! the change's invalidation. The maps are bounded: when full they are
//! simply cleared. Locks are `std::sync::Mutex` and are never held across
//! an `.await`.
//!
//! Where other nodes may change groups and blocks in the same database,
//! neither cache is trusted for longer than its max age without a check
//! ([`Directory::check_due`]): one read of the database's
//! [`CacheVersions`], which every change to blocks, or to groups' members,
//! writes anew. A version unchanged since the last check keeps every entry;
//! a changed one forgets the whole cache. So a change on another node is
//! seen within the max age, and a busy node pays one small query per max
//! age instead of reading each roster and block set again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use palaver_protocol::Role;

use crate::ids::{GroupId, UserId};
use crate::store::{CacheVersions, TokenState};

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
    map: HashMap<GroupId, Arc<Roster>>,
    generation: u64,
    /// The groups version at the last check.
    version: Option<String>,
}

/// Per user, everyone with a block between them either way (v1.2).
#[derive(Default)]
struct Blocks {
    map: HashMap<UserId, Arc<HashSet<UserId>>>,
    generation: u64,
    /// The blocks version at the last check.
    version: Option<String>,
}

/// The caches.
#[derive(Default)]
pub struct Directory {
    users: Mutex<HashSet<UserId>>,
    rosters: Mutex<Rosters>,
    blocks: Mutex<Blocks>,
    /// How long cached rosters are trusted after a check (`None`: until
    /// invalidated, never checked).
    max_age: Option<Duration>,
    /// How long cached block sets are trusted after a check (`None`: until
    /// invalidated, never checked).
    blocks_max_age: Option<Duration>,
    /// When the last check against the database's versions started
    /// (`None`: never; nothing cached before the first check survives it).
    checked: Mutex<Option<Instant>>,
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

    /// The group's cached roster, unless a check is due.
    pub fn roster(&self, group: GroupId) -> Option<Arc<Roster>> {
        if self.outdated(self.max_age) {
            return None;
        }
        self.rosters.lock().unwrap().map.get(&group).cloned()
    }

    /// Whether the last check is older than `max_age` (or there was none).
    fn outdated(&self, max_age: Option<Duration>) -> bool {
        max_age.is_some_and(|max| {
            self.checked
                .lock()
                .unwrap()
                .is_none_or(|at| at.elapsed() > max)
        })
    }

    /// Whether either cache needs a check against the database's versions
    /// before its entries are trusted again.
    pub fn check_due(&self) -> bool {
        self.outdated(self.max_age) || self.outdated(self.blocks_max_age)
    }

    /// Records a check that read `versions` and started at `started`: a
    /// cache whose version changed since the last check (or that was never
    /// checked) forgets every entry, as does a read in flight meanwhile.
    pub fn checked(&self, started: Instant, versions: CacheVersions) {
        let first = {
            let mut checked = self.checked.lock().unwrap();
            let first = checked.is_none();
            *checked = Some(checked.map_or(started, |at| at.max(started)));
            first
        };
        {
            let mut r = self.rosters.lock().unwrap();
            if first || r.version != versions.groups {
                r.generation += 1;
                r.map.clear();
                r.version = versions.groups;
            }
        }
        let mut b = self.blocks.lock().unwrap();
        if first || b.version != versions.blocks {
            b.generation += 1;
            b.map.clear();
            b.version = versions.blocks;
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
        r.map.insert(group, roster);
    }

    /// Forgets a group's roster after its membership changed.
    pub fn invalidate_roster(&self, group: GroupId) {
        let mut r = self.rosters.lock().unwrap();
        r.generation += 1;
        r.map.remove(&group);
    }

    /// Everyone with a block between them and `user`, if cached and no
    /// check is due.
    pub fn blocks(&self, user: UserId) -> Option<Arc<HashSet<UserId>>> {
        if self.outdated(self.blocks_max_age) {
            return None;
        }
        self.blocks.lock().unwrap().map.get(&user).cloned()
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
        b.map.insert(user, set);
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

    const AGE: Duration = Duration::from_secs(5);

    fn versions(blocks: Option<&str>, groups: Option<&str>) -> CacheVersions {
        CacheVersions {
            blocks: blocks.map(str::to_string),
            groups: groups.map(str::to_string),
        }
    }

    /// A directory with group 1's roster and user 1's block set cached
    /// after a first check that read `checked`.
    fn filled(checked: &CacheVersions) -> (Directory, GroupId, UserId) {
        let d = Directory::new(Some(AGE), Some(AGE));
        d.checked(Instant::now(), checked.clone());
        let (g, u) = (GroupId::parse(1).unwrap(), UserId::parse(1).unwrap());
        let roster = Roster::new([(u, Role::Owner)]);
        d.put_roster(g, Arc::new(roster), d.roster_generation());
        d.put_blocks(u, Arc::default(), d.blocks_generation());
        (d, g, u)
    }

    #[test]
    fn an_unchanged_version_keeps_every_entry_for_another_max_age() {
        let v = versions(Some("b1"), None);
        let (d, g, u) = filled(&v);
        assert!(!d.check_due());
        d.checked(Instant::now(), v);
        assert!(d.roster(g).is_some() && d.blocks(u).is_some());
    }

    #[test]
    fn entries_are_not_trusted_once_a_check_is_due() {
        let d = Directory::new(Some(AGE), Some(AGE));
        let g = GroupId::parse(1).unwrap();
        assert!(d.check_due(), "never checked");
        d.checked(
            Instant::now() - AGE - Duration::from_millis(1),
            versions(None, None),
        );
        d.put_roster(g, Arc::new(Roster::new([])), d.roster_generation());
        assert!(d.check_due());
        assert!(
            d.roster(g).is_none(),
            "the last check is older than the max age"
        );
        d.checked(Instant::now(), versions(None, None));
        assert!(
            d.roster(g).is_some(),
            "an unchanged version trusts it again"
        );
    }

    #[test]
    fn a_check_is_due_once_either_cache_is_outdated() {
        // In a cluster rosters are trusted 0.8 s after a check, block sets
        // a minute.
        for (rosters, blocks) in [(Duration::ZERO, AGE), (AGE, Duration::ZERO)] {
            let d = Directory::new(Some(rosters), Some(blocks));
            d.checked(Instant::now(), versions(None, None));
            std::thread::sleep(Duration::from_millis(1));
            assert!(d.check_due(), "rosters {rosters:?}, blocks {blocks:?}");
        }
    }

    #[test]
    fn a_changed_version_forgets_that_cache_and_only_that_one() {
        let (d, g, u) = filled(&versions(Some("b1"), Some("g1")));
        d.checked(Instant::now(), versions(Some("b1"), Some("g2")));
        assert!(d.roster(g).is_none(), "groups changed elsewhere");
        assert!(d.blocks(u).is_some(), "blocks did not");
        let (d, g, u) = filled(&versions(None, Some("g1")));
        d.checked(Instant::now(), versions(Some("b1"), Some("g1")));
        assert!(d.blocks(u).is_none(), "the first block anywhere");
        assert!(d.roster(g).is_some());
    }

    #[test]
    fn the_first_check_forgets_what_was_cached_before_it() {
        let d = Directory::new(Some(AGE), Some(AGE));
        let u = UserId::parse(1).unwrap();
        d.put_blocks(u, Arc::default(), d.blocks_generation());
        d.checked(Instant::now(), versions(None, None));
        assert!(d.blocks(u).is_none());
    }

    #[test]
    fn a_read_in_flight_when_a_change_is_found_is_not_kept() {
        let (d, g, u) = filled(&versions(None, None));
        let (roster_gen, blocks_gen) = (d.roster_generation(), d.blocks_generation());
        d.checked(Instant::now(), versions(Some("b"), Some("g")));
        d.put_roster(g, Arc::new(Roster::new([])), roster_gen);
        d.put_blocks(u, Arc::default(), blocks_gen);
        assert!(d.roster(g).is_none() && d.blocks(u).is_none());
    }

    #[test]
    fn without_a_max_age_nothing_is_ever_checked() {
        let d = Directory::new(None, None);
        let g = GroupId::parse(1).unwrap();
        d.put_roster(g, Arc::new(Roster::new([])), d.roster_generation());
        assert!(!d.check_due());
        assert!(d.roster(g).is_some());
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
