//! A hierarchical timer wheel: O(1) insert and cancel, deadlines in whole
//! milliseconds.
//!
//! # How it works
//!
//! Six levels of 64 slots. A slot of level `l` spans `64^l` ms, so level 0
//! has 1 ms slots covering 64 ms, level 1 has 64 ms slots covering 4 s, and
//! level 5 covers `64^6` ms (about 2.2 years):
//!
//! | level | slot | level spans |
//! | --- | --- | --- |
//! | 0 | 1 ms | 64 ms |
//! | 1 | 64 ms | 4.1 s |
//! | 2 | 4.1 s | 4.4 min |
//! | 3 | 4.4 min | 4.7 h |
//! | 4 | 4.7 h | 12.4 days |
//! | 5 | 12.4 days | 2.2 years |
//!
//! An entry goes to the lowest level whose current block holds its deadline:
//! the level is given by the highest bit in which the deadline differs from
//! the wheel's current time, six bits a level. So an entry due in 10 ms sits
//! in level 0, one due in 15 s in level 2. Each slot is a doubly linked list
//! threaded through a slab by index (the layout tokio-util's `DelayQueue`
//! uses), so insert and cancel touch a constant number of entries and never
//! `unsafe`; a 64-bit bitmap per level marks the non-empty slots, and the
//! next one is found with a rotate and `trailing_zeros`.
//!
//! When time reaches an upper-level slot, its entries *cascade*: each is
//! inserted again relative to the new time and lands in a lower level, until
//! it reaches level 0, where a slot is one millisecond. An entry is returned
//! only when the time has reached its own deadline, never its slot's start,
//! so nothing fires early; deadlines farther out than level 5 spans are
//! placed in its farthest slot and cascade again from there.
//!
//! Entries due at or before the current time wait in a separate `pending`
//! list, from which [`Wheel::poll`] returns them one by one.
//!
//! # Costs
//!
//! `insert` and `cancel` are O(1). `poll` is O(1) per returned entry plus
//! O(levels) per cascade; an entry cascades at most five times over its
//! life. An entry with a `u64` value is 32 bytes (a test holds it to that),
//! plus the slab's tag per slot, and nothing is allocated once the slab has
//! room.

mod level;
#[cfg(test)]
mod tests;

use slab::Slab;

use level::Level;

/// Levels in the wheel.
const LEVELS: usize = 6;
/// Slots in a level.
const SLOTS: usize = 64;
/// The farthest a deadline is placed ahead of the current time; later ones
/// are placed here and cascade again.
const MAX_SPAN: u64 = (1 << (6 * LEVELS)) - 1;
/// "No entry" in a link.
const NIL: u32 = u32::MAX;
/// `Entry::level` of an entry in the pending list.
const PENDING: u8 = u8::MAX;

/// Names a scheduled timer until it fires or is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey(u32);

struct Entry<T> {
    deadline: u64,
    value: T,
    prev: u32,
    next: u32,
    level: u8,
    slot: u8,
}

/// A hierarchical timer wheel holding values of type `T`. See the module
/// docs.
pub struct Wheel<T> {
    entries: Slab<Entry<T>>,
    levels: [Level; LEVELS],
    /// Entries already due, returned by `poll` first.
    pending: u32,
    /// The wheel's current time: every `poll` moves it forward.
    elapsed: u64,
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Wheel::new()
    }
}

impl<T> Wheel<T> {
    /// An empty wheel at time 0.
    #[must_use]
    pub fn new() -> Wheel<T> {
        Wheel::with_capacity(0)
    }

    /// An empty wheel with room for `n` timers before it allocates.
    #[must_use]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "level indices are below LEVELS (6)"
    )]
    pub fn with_capacity(n: usize) -> Wheel<T> {
        Wheel {
            entries: Slab::with_capacity(n),
            levels: std::array::from_fn(|l| Level::new(l as u32)),
            pending: NIL,
            elapsed: 0,
        }
    }

    /// Number of scheduled timers.
    #[cfg_attr(
        not(any(test, feature = "internals")),
        expect(dead_code, reason = "used by tests and benchmarks")
    )]
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is scheduled.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Schedules `value` for `deadline` (absolute milliseconds). A deadline
    /// at or before the wheel's time fires at the next `poll`. O(1).
    #[expect(
        clippy::cast_possible_truncation,
        reason = "entries are bounded by the pool's slots and requests, far below 2^32"
    )]
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let key = self.entries.insert(Entry {
            deadline,
            value,
            prev: NIL,
            next: NIL,
            level: 0,
            slot: 0,
        }) as u32;
        self.place(key);
        TimerKey(key)
    }

    /// Removes a scheduled timer and returns its value. O(1). `None` if the
    /// key names no timer (it fired or was cancelled, and its slot is free).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        if !self.entries.contains(key.0 as usize) {
            debug_assert!(false, "cancel of unknown timer {key:?}");
            return None;
        }
        self.unlink(key.0);
        self.entries.try_remove(key.0 as usize).map(|e| e.value)
    }

    /// When the next timer is due, or a lower bound of it: the start of the
    /// earliest occupied slot. After `poll(now)` has returned `None` it is
    /// later than `now`, so a caller that sleeps until it never spins.
    #[must_use]
    pub fn next_deadline(&self) -> Option<u64> {
        if self.pending != NIL {
            return Some(self.elapsed);
        }
        self.next_expiration().map(|e| e.deadline)
    }

    /// Moves the wheel's time to `now` and returns one timer due at or before
    /// it, with its deadline; call until `None`. Time never goes backwards:
    /// an earlier `now` is taken as the current time.
    pub fn poll(&mut self, now: u64) -> Option<(u64, T)> {
        let now = now.max(self.elapsed);
        loop {
            if self.pending != NIL {
                let key = self.pending;
                self.unlink(key);
                return self
                    .entries
                    .try_remove(key as usize)
                    .map(|e| (e.deadline, e.value));
            }
            match self.next_expiration() {
                Some(exp) if exp.deadline <= now => {
                    self.elapsed = exp.deadline;
                    self.cascade(exp.level, exp.slot);
                }
                _ => {
                    self.elapsed = now;
                    return None;
                }
            }
        }
    }

    fn next_expiration(&self) -> Option<level::Expiration> {
        // A lower level's slots all come before any slot of a higher level:
        // the higher one holds only deadlines outside the lower's block.
        self.levels
            .iter()
            .find_map(|l| l.next_expiration(self.elapsed))
    }

    /// Empties a slot the time has reached, placing each entry again: due
    /// ones go to `pending`, the rest to lower levels.
    fn cascade(&mut self, level: u32, slot: u32) {
        let mut key = self.levels[level as usize].head(slot);
        self.levels[level as usize].set_head(slot, NIL);
        while key != NIL {
            let Some(entry) = self.entries.get_mut(key as usize) else {
                break;
            };
            let next = entry.next;
            entry.prev = NIL;
            entry.next = NIL;
            self.place(key);
            key = next;
        }
    }

    /// Links an unlinked entry into the list its deadline calls for.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a level is below 6 and a slot below 64"
    )]
    fn place(&mut self, key: u32) {
        let Some(entry) = self.entries.get(key as usize) else {
            return;
        };
        let deadline = entry.deadline;
        if deadline <= self.elapsed {
            self.push(key, PENDING, 0);
            return;
        }
        let when = deadline.min(self.elapsed + MAX_SPAN);
        // The highest bit where `when` and the current time differ picks the
        // level; bit 5 at least, so level 0 for anything within 63 ms.
        let masked = (self.elapsed ^ when) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros();
        let level = (significant / 6).min(LEVELS as u32 - 1);
        let slot = ((when >> (6 * level)) % SLOTS as u64) as u8;
        self.push(key, level as u8, slot);
    }

    fn head(&self, level: u8, slot: u8) -> u32 {
        if level == PENDING {
            self.pending
        } else {
            self.levels[level as usize].head(u32::from(slot))
        }
    }

    fn set_head(&mut self, level: u8, slot: u8, head: u32) {
        if level == PENDING {
            self.pending = head;
        } else {
            self.levels[level as usize].set_head(u32::from(slot), head);
        }
    }

    /// Pushes `key` at the front of a list.
    fn push(&mut self, key: u32, level: u8, slot: u8) {
        let old = self.head(level, slot);
        if let Some(e) = self.entries.get_mut(key as usize) {
            e.level = level;
            e.slot = slot;
            e.prev = NIL;
            e.next = old;
        }
        if let Some(o) = self.entries.get_mut(old as usize) {
            o.prev = key;
        }
        self.set_head(level, slot, key);
    }

    /// Takes `key` out of whatever list holds it.
    fn unlink(&mut self, key: u32) {
        let Some(e) = self.entries.get(key as usize) else {
            return;
        };
        let (prev, next, level, slot) = (e.prev, e.next, e.level, e.slot);
        match self.entries.get_mut(prev as usize) {
            Some(p) if prev != NIL => p.next = next,
            _ => self.set_head(level, slot, next),
        }
        if let Some(n) = self.entries.get_mut(next as usize) {
            n.prev = prev;
        }
    }

    /// Recounts from scratch: every entry is in the list its fields name,
    /// links agree both ways, bitmaps match non-empty slots, placement is
    /// consistent with the current time.
    #[cfg(test)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "levels are below 6, slots below 64"
    )]
    pub(crate) fn check_invariants(&self) {
        let mut seen = 0;
        let mut walk = |head: u32, level: u8, slot: u8| {
            let mut prev = NIL;
            let mut key = head;
            while key != NIL {
                let e = &self.entries[key as usize];
                assert_eq!(
                    (e.level, e.slot),
                    (level, slot),
                    "entry {key} in the wrong list"
                );
                assert_eq!(e.prev, prev, "entry {key} back link");
                if level == PENDING {
                    assert!(e.deadline <= self.elapsed, "pending entry {key} not due");
                } else {
                    assert!(e.deadline > self.elapsed, "entry {key} due but not pending");
                }
                prev = key;
                key = e.next;
                seen += 1;
                assert!(seen <= self.entries.len(), "list cycle");
            }
        };
        walk(self.pending, PENDING, 0);
        for (l, level) in self.levels.iter().enumerate() {
            for s in 0..SLOTS {
                let head = level.head(s as u32);
                assert_eq!(
                    level.occupied() & (1 << s) != 0,
                    head != NIL,
                    "level {l} slot {s} bitmap"
                );
                walk(head, l as u8, s as u8);
            }
        }
        assert_eq!(seen, self.entries.len(), "entries outside any list");
    }
}
