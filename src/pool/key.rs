//! Pool keys: one per [`Target`] with any slot or request, found by hash.
//!
//! A key holds its idle list (most recently used first), its FIFO wait
//! queue and its counts. It exists only while it has a slot or a request, so
//! the index never grows with targets that are no longer used.

use std::hash::BuildHasher;
use std::rc::Rc;

use super::Pool;
use super::list::{Link, List};
use crate::request::Target;
use crate::time::Millis;

pub(super) struct KeyState {
    /// Shared with every outcome of the key: an outcome carries a pointer,
    /// not a copy of the target's strings.
    pub(super) target: Rc<Target>,
    /// Connecting, reserved and lent slots.
    pub(super) busy: usize,
    /// Of the busy slots, those connecting.
    pub(super) connecting: usize,
    pub(super) idle: List,
    pub(super) waiting: List,
    /// Requests of this key without a delivered outcome.
    pub(super) requests: usize,
    /// In the pool's `open_blocked` list.
    pub(super) blocked: Link,
    /// Idle connections kept ready ([`Pool::keep_warm`]); 0: none.
    pub(super) min_idle: usize,
    /// The wait before warm connects are tried again after one failed; 0
    /// while they succeed.
    pub(super) warm_backoff: Millis,
    /// That retry, while it is pending.
    pub(super) warm_timer: Option<crate::wheel::TimerKey>,
}

pub(super) fn key_blocked(k: &mut KeyState) -> &mut Link {
    &mut k.blocked
}

impl<C> Pool<C> {
    /// The key of `target`, if it has one.
    pub(super) fn find_key(&self, target: &Target) -> Option<u32> {
        self.probe_key(target).ok()
    }

    /// The key of `target` from the index, or the target's hash.
    fn probe_key(&self, target: &Target) -> Result<u32, u64> {
        let hash = self.hasher.hash_one(target);
        let keys = &self.keys;
        self.key_index
            .find(hash, |&k| {
                keys.get(k as usize).is_some_and(|s| *s.target == *target)
            })
            .copied()
            .ok_or(hash)
    }

    /// The key of `target`, or the target's hash to make one with
    /// [`insert_key`](Pool::insert_key). The target is only read: on the
    /// hit path it is never moved. The key used last is tried first: a
    /// comparison instead of hashing, for a caller that asks for one
    /// upstream many times.
    pub(super) fn lookup_key(&mut self, target: &Target) -> Result<u32, u64> {
        let last = self.last_key;
        if self
            .keys
            .get(last as usize)
            .is_some_and(|k| *k.target == *target)
        {
            return Ok(last);
        }
        let k = self.probe_key(target)?;
        self.last_key = k;
        Ok(k)
    }

    /// A new key for `target`, whose hash [`lookup_key`](Pool::lookup_key)
    /// returned: the target moves into it.
    pub(super) fn insert_key(&mut self, hash: u64, target: Target) -> u32 {
        let k = super::index32(self.keys.insert(KeyState {
            target: Rc::new(target),
            busy: 0,
            connecting: 0,
            idle: List::default(),
            waiting: List::default(),
            requests: 0,
            blocked: Link::UNLINKED,
            min_idle: 0,
            warm_backoff: 0,
            warm_timer: None,
        }));
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.key_index
            .insert_unique(hash, k, |&i| match keys.get(i as usize) {
                Some(s) => hasher.hash_one(&s.target),
                None => 0,
            });
        self.last_key = k;
        k
    }

    /// A request of `key` left the pool (delivered or deallocated).
    pub(super) fn request_gone(&mut self, key: u32) {
        if let Some(k) = self.keys.get_mut(key as usize) {
            debug_assert!(k.requests > 0, "key {key} request count underflow");
            k.requests = k.requests.saturating_sub(1);
        }
        self.maybe_remove_key(key);
    }

    /// Drops a key that has no slot, no waiter and no undelivered request.
    #[inline]
    pub(super) fn maybe_remove_key(&mut self, key: u32) {
        let Some(k) = self.keys.get(key as usize) else {
            return;
        };
        if k.busy > 0 || !k.idle.is_empty() || k.requests > 0 || k.min_idle > 0 {
            return;
        }
        let hash = self.hasher.hash_one(&k.target);
        if let Ok(entry) = self.key_index.find_entry(hash, |&i| i == key) {
            entry.remove();
        }
        self.open_blocked.remove(&mut self.keys, key, key_blocked);
        self.keys.remove(key as usize);
    }
}
