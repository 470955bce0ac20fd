//! This node's sockets by user: what a delivery looks up. Sharded, so a
//! delivery takes one shard's read lock for each recipient and never a
//! lock over every connection.

use std::collections::HashMap;
use std::sync::RwLock;

use super::Sock;
use crate::ids::UserId;

const SHARDS: usize = 64;

/// One shard: users and their sockets.
type Shard = RwLock<HashMap<UserId, Vec<Sock>>>;

/// Each user's sockets on this node.
pub struct Registry {
    shards: Box<[Shard]>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl Registry {
    fn shard(&self, user: UserId) -> &Shard {
        // Fibonacci hashing: consecutive ids land on different shards.
        let h = (user.get() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        &self.shards[h as usize % SHARDS]
    }

    /// Adds `socket` of `user`; returns how many `user` has here now.
    pub fn add(&self, user: UserId, socket: Sock) -> usize {
        let mut shard = self.shard(user).write().unwrap_or_else(|e| e.into_inner());
        let list = shard.entry(user).or_insert_with(|| Vec::with_capacity(1));
        list.push(socket);
        list.len()
    }

    /// Removes `socket` of `user`; returns how many `user` has left here.
    pub fn remove(&self, user: UserId, socket: &Sock) -> usize {
        let mut shard = self.shard(user).write().unwrap_or_else(|e| e.into_inner());
        let Some(list) = shard.get_mut(&user) else {
            return 0;
        };
        list.retain(|s| !s.same(socket));
        let left = list.len();
        if left == 0 {
            shard.remove(&user);
        }
        left
    }

    /// How many sockets `user` has here.
    pub fn count(&self, user: UserId) -> usize {
        let shard = self.shard(user).read().unwrap_or_else(|e| e.into_inner());
        shard.get(&user).map_or(0, Vec::len)
    }

    /// Runs `f` on each of `user`'s sockets here.
    pub fn each(&self, user: UserId, mut f: impl FnMut(&Sock)) {
        let shard = self.shard(user).read().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = shard.get(&user) {
            list.iter().for_each(&mut f);
        }
    }

    /// Every user with a socket here and how many.
    pub fn users(&self) -> Vec<(UserId, usize)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            out.extend(shard.iter().map(|(u, l)| (*u, l.len())));
        }
        out
    }
}
