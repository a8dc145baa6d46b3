//! The answer cache: what a name resolved to, kept for as long as its TTL
//! allows, in bounded space.
//!
//! # What is kept, and for how long
//!
//! One entry per name *as the caller asked for it* (after the search list
//! was walked): the final [`Addresses`], or `NxDomain`/`NoData`. A lookup
//! of the same name (in any case) within the lifetime is answered from
//! here. Lifetimes, decided by [`TtlPolicy`]:
//!
//! - positive: the smallest TTL of the RRsets that made the answer (CNAMEs
//!   on the way included), clamped to `[ttl_floor, ttl_cap]`. When one
//!   family had no address, the entry also lives no longer than that
//!   family's negative lifetime, so the missing family is asked for again
//!   as often as a negative answer would be;
//! - negative (RFC 2308 §5): the smaller of the SOA record's TTL and its
//!   MINIMUM field, capped at `negative_cap`. A negative answer without an
//!   SOA is not cached (RFC 2308 §5: SHOULD NOT);
//! - server failures and timeouts are never cached.
//!
//! An entry added at `t` with lifetime `L` answers lookups at `t + L - 1` and
//! not at `t + L`. Expiry is lazy: an expired entry is dropped when a lookup
//! finds it or when eviction reaches it, so the cache sets no timers.
//!
//! # Bound and eviction
//!
//! At most `capacity` entries; a new one then evicts the least recently
//! used (LRU, an intrusive list through the slab). LRU rather than "expires
//! soonest": the names a pool keeps connecting to are hit on every
//! allocation and stay, while CDNs give hot names short TTLs (20 to 60 s),
//! which "expires soonest" would evict first, in favour of a name used once
//! with a day-long TTL. LRU is also O(1), where "expires soonest" needs a
//! heap. `capacity` 0 disables the cache.
//!
//! # Costs
//!
//! A hit hashes the lowercased name (into a stack buffer), probes the table,
//! relinks two list nodes and copies a 162-byte value out: O(1), no
//! allocation. Inserting allocates the name once.

use hashbrown::{DefaultHashBuilder, HashTable};
use slab::Slab;

use super::addresses::Addresses;
use super::error::ResolveError;
use super::name::{hash_name, same_name};
use crate::time::Millis;

/// What the cache holds for a name: addresses, or `NxDomain`/`NoData`.
pub(crate) type Cached = Result<Addresses, ResolveError>;

/// Clamps for cache lifetimes, in milliseconds. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TtlPolicy {
    /// Shortest lifetime of a positive answer (a TTL of 0 included).
    pub(crate) ttl_floor: Millis,
    /// Longest lifetime of a positive answer.
    pub(crate) ttl_cap: Millis,
    /// Longest lifetime of a negative answer.
    pub(crate) negative_cap: Millis,
}

impl Default for TtlPolicy {
    /// A 1 s floor, so a TTL of 0 does not cost a round trip per
    /// connection; a 1 h cap, so a long-lived pool notices an address
    /// change within the hour whatever the zone says; a 30 s negative cap.
    fn default() -> Self {
        TtlPolicy {
            ttl_floor: 1_000,
            ttl_cap: 3_600_000,
            negative_cap: 30_000,
        }
    }
}

impl TtlPolicy {
    /// Lifetime of a positive answer whose records' smallest TTL is
    /// `ttl_s` seconds.
    pub(crate) fn positive(&self, ttl_s: u32) -> Millis {
        (u64::from(ttl_s) * 1000).clamp(self.ttl_floor, self.ttl_cap.max(self.ttl_floor))
    }

    /// Lifetime of a negative answer whose SOA allows `ttl_s` seconds
    /// (`min(SOA TTL, SOA MINIMUM)`); 0 when there was no SOA.
    pub(crate) fn negative(&self, ttl_s: Option<u32>) -> Millis {
        ttl_s.map_or(0, |t| (u64::from(t) * 1000).min(self.negative_cap))
    }
}

/// "No entry" in a link.
const NIL: u32 = u32::MAX;

struct Entry {
    /// Lowercase, as asked (a trailing dot kept: it changes the meaning).
    name: Box<str>,
    /// First time the entry no longer answers.
    expires: Millis,
    value: Cached,
    /// Towards the most recently used.
    prev: u32,
    /// Towards the least recently used.
    next: u32,
}

/// The answer cache. See the module docs.
pub(crate) struct Cache {
    capacity: usize,
    hasher: DefaultHashBuilder,
    index: HashTable<u32>,
    entries: Slab<Entry>,
    /// Most recently used.
    head: u32,
    /// Least recently used: evicted first.
    tail: u32,
}

impl Cache {
    /// An empty cache of at most `capacity` names (below 2^31).
    pub(crate) fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
            hasher: DefaultHashBuilder::default(),
            index: HashTable::new(),
            entries: Slab::new(),
            head: NIL,
            tail: NIL,
        }
    }

    /// Names cached, expired ones not yet dropped included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The answer for `name` if cached and not expired at `now`; marks it
    /// most recently used. An expired entry is dropped. No allocation.
    #[cfg(test)]
    pub(crate) fn get(&mut self, name: &str, now: Millis) -> Option<Cached> {
        self.get_entry(name, now).map(|(value, _)| value)
    }

    /// [`get`](Self::get), with the time the entry expires.
    pub(crate) fn get_entry(&mut self, name: &str, now: Millis) -> Option<(Cached, Millis)> {
        let hash = hash_name(&self.hasher, name);
        let entries = &self.entries;
        let &index = self.index.find(hash, |&i| {
            entries
                .get(i as usize)
                .is_some_and(|e| same_name(&e.name, name))
        })?;
        let e = self.entries.get(index as usize)?;
        if now >= e.expires {
            self.remove(index);
            return None;
        }
        let (value, expires) = (e.value, e.expires);
        self.unlink(index);
        self.push_front(index);
        Some((value, expires))
    }

    /// Caches `value` for `name` until `expires` (exclusive), replacing an
    /// older entry for the name. Nothing is cached if `expires` is not after
    /// `now` or the capacity is 0. A full cache first evicts its least
    /// recently used entry.
    pub(crate) fn insert(&mut self, name: &str, value: Cached, expires: Millis, now: Millis) {
        if expires <= now || self.capacity == 0 {
            return;
        }
        let hash = hash_name(&self.hasher, name);
        let entries = &self.entries;
        let found = self
            .index
            .find(hash, |&i| {
                entries
                    .get(i as usize)
                    .is_some_and(|e| same_name(&e.name, name))
            })
            .copied();
        if let Some(index) = found {
            if let Some(e) = self.entries.get_mut(index as usize) {
                e.value = value;
                e.expires = expires;
            }
            self.unlink(index);
            self.push_front(index);
            return;
        }
        if self.entries.len() >= self.capacity {
            self.remove(self.tail);
        }
        let index = self.entries.insert(Entry {
            name: name.to_ascii_lowercase().into_boxed_str(),
            expires,
            value,
            prev: NIL,
            next: NIL,
        });
        let Ok(index) = u32::try_from(index) else {
            // Past 2^32 entries: refused rather than mislinked.
            self.entries.remove(index);
            return;
        };
        let (hasher, entries) = (&self.hasher, &self.entries);
        self.index.insert_unique(hash, index, |&i| {
            entries
                .get(i as usize)
                .map_or(0, |e| hash_name(hasher, &e.name))
        });
        self.push_front(index);
    }

    fn remove(&mut self, index: u32) {
        let Some(e) = self.entries.get(index as usize) else {
            return;
        };
        let hash = hash_name(&self.hasher, &e.name);
        if let Ok(found) = self.index.find_entry(hash, |&i| i == index) {
            found.remove();
        }
        self.unlink(index);
        self.entries.remove(index as usize);
    }

    fn push_front(&mut self, index: u32) {
        let old = self.head;
        if let Some(e) = self.entries.get_mut(index as usize) {
            e.prev = NIL;
            e.next = old;
        }
        match self.entries.get_mut(old as usize) {
            Some(o) => o.prev = index,
            None => self.tail = index,
        }
        self.head = index;
    }

    fn unlink(&mut self, index: u32) {
        let Some(e) = self.entries.get(index as usize) else {
            return;
        };
        let (prev, next) = (e.prev, e.next);
        match self.entries.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.entries.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    /// Recounts from scratch: the LRU list holds every entry once, both
    /// ways; the index finds every entry by name; the bound holds.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        assert!(
            self.entries.len() <= self.capacity,
            "{} entries over capacity {}",
            self.entries.len(),
            self.capacity
        );
        assert_eq!(self.index.len(), self.entries.len(), "index size");
        let mut seen = 0;
        let mut prev = NIL;
        let mut at = self.head;
        while at != NIL {
            let e = &self.entries[at as usize];
            assert_eq!(e.prev, prev, "entry {at} back link");
            prev = at;
            at = e.next;
            seen += 1;
            assert!(seen <= self.entries.len(), "LRU list cycle");
        }
        assert_eq!(prev, self.tail, "tail");
        assert_eq!(seen, self.entries.len(), "entries outside the LRU list");
        for (i, e) in &self.entries {
            let hash = hash_name(&self.hasher, &e.name);
            assert_eq!(
                self.index.find(hash, |&j| j as usize == i),
                Some(&u32::try_from(i).unwrap_or(NIL)),
                "entry {i} ({}) not indexed",
                e.name
            );
        }
    }

    /// The names from most to least recently used.
    #[cfg(test)]
    pub(crate) fn names_by_recency(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = self.head;
        while let Some(e) = self.entries.get(at as usize) {
            out.push(e.name.to_string());
            at = e.next;
        }
        out
    }
}
