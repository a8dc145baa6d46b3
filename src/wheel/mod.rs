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
//! threaded through one vector of entries by index (the layout tokio-util's
//! `DelayQueue` uses), so insert and cancel touch a constant number of entries
//! and never `unsafe`; a 64-bit bitmap per level marks the non-empty slots,
//! and the next one is found with a rotate and `trailing_zeros`.
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
//! # Entry layout
//!
//! A [`TimerKey`] is an index into one `Vec` of entries, each:
//!
//! | field | bytes | holds |
//! | --- | --- | --- |
//! | `prev` | 4 | the previous entry's index; for a list's first entry, `HEAD` (bit 31) and the list's number (`level * 64 + slot`, or the pending list); `FREE` in a free entry |
//! | `next` | 4 | the next entry's index, `NIL` at the end; in a free entry, the next free one |
//! | `deadline` | 8 | absolute milliseconds, all 64 bits |
//! | `value` | `size_of::<Option<T>>()` | the caller's value; `None` marks a free entry |
//!
//! That is 24 bytes with the pool's value (an enum of three `u32` variants:
//! it and its `Option` take 8 bytes) or a `u32`, 32 with a `u64` (a test
//! holds these figures). It used to be 40 with the pool's value: the same
//! fields, a level and a slot byte, padding, and the tag of a `slab::Slab`.
//! Two things went:
//!
//! - **The level and slot.** Unlinking needs the list only to move its head,
//!   and only the first entry's `prev` is free to say which list that is; the
//!   second entry inherits it in the same move that relinks any other
//!   neighbour.
//! - **The slab's tag.** A free entry is one whose value is `None`; free
//!   entries are chained through `next`, last in first out, so the entry a
//!   cancel just emptied is the next one an insert fills, still in cache.
//!
//! Every operation touches one entry and its list neighbours, and only them:
//! cancel reads the value and links and writes the two neighbours; a cascade
//! reads `deadline` and `next`; insert writes everything. So the fields stay
//! together. A 16-byte hot part with the other 8 bytes in a parallel vector
//! made one of those operations touch a second, random cache line, and at a
//! million timers that cost more than the smaller stride saved. Data misses
//! in the compare benchmark's `wheel_1m` workload (cachegrind, 2 MiB last
//! level): 18.3 million with the deadline out of line, 17.9 million with the
//! value out of line, 15.4 million for this layout, 19.6 million for the
//! slab's.
//!
//! The full deadline stays in the entry: deadlines may be years ahead, more
//! than 32 bits of milliseconds, and a cascade re-places an entry from it.
//!
//! A large entry vector asks for transparent huge pages: at a million timers
//! it is 24 MiB, and about a quarter of a random access's cost was the page
//! walk. The vector grows by moving into a fresh one that is advised before
//! anything touches it (pages already touched stay small); below 4 MiB no
//! advice is given. In the compare benchmark's `wheel_1m`, three runs
//! interleaved with the previous build: 66–71 ns per operation against
//! 71–103.
//!
//! # Costs
//!
//! `insert` and `cancel` are O(1). `poll` is O(1) per returned entry plus
//! O(levels) per cascade; an entry cascades at most five times over its
//! life. Nothing is allocated once the vector of entries has room: a free
//! entry is reused before the vector grows.

mod level;
#[cfg(test)]
mod tests;

use level::Level;

/// Levels in the wheel.
const LEVELS: usize = 6;
/// Slots in a level.
const SLOTS_U32: u32 = 64;
/// Slots in a level, as an index.
const SLOTS: usize = SLOTS_U32 as usize;
/// The farthest a deadline is placed ahead of the current time; later ones
/// are placed here and cascade again.
const MAX_SPAN: u64 = (1 << (6 * LEVELS)) - 1;
/// "No entry" in a link.
const NIL: u32 = u32::MAX;
/// Set in `Entry::prev` of a list's first entry; the low bits then name the
/// list: `level * SLOTS + slot`, or `PENDING`. Entry indices stay below it.
const HEAD: u32 = 1 << 31;
/// The list of entries already due: after the `LEVELS * SLOTS` slot lists.
const PENDING: u32 = 6 * SLOTS_U32;
const _: () = assert!(PENDING as usize == LEVELS * SLOTS);
/// `Entry::prev` of a free entry.
const FREE: u32 = NIL;

/// Names a scheduled timer until it fires or is cancelled: its entry's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey(u32);

/// One timer, or a free place for one. See "Entry layout" in the module docs.
struct Entry<T> {
    /// The previous entry, or `HEAD | list` for a list's first entry, or
    /// `FREE`.
    prev: u32,
    /// The next entry (`NIL` at the end); in a free entry, the next free one.
    next: u32,
    /// Absolute milliseconds.
    deadline: u64,
    /// `None` in a free entry.
    value: Option<T>,
}

/// A hierarchical timer wheel holding values of type `T`. See the module
/// docs.
pub struct Wheel<T> {
    /// Every entry, live or free, by index.
    entries: Vec<Entry<T>>,
    /// First free entry (`NIL`: none), threaded through `Entry::next`.
    free: u32,
    /// Live entries.
    len: usize,
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
        let entries = Vec::with_capacity(n);
        crate::net::advise_huge_pages(&entries);
        Wheel {
            entries,
            free: NIL,
            len: 0,
            levels: std::array::from_fn(|l| Level::new(l as u32)),
            pending: NIL,
            elapsed: 0,
        }
    }

    /// Doubles the entry vector's capacity. A large entry vector is read at
    /// random, so the new one is advised to use huge pages before anything
    /// touches it (pages already touched stay small), and the entries are
    /// moved into it: the copy `Vec`'s own growth would make anyway.
    #[cold]
    fn grow(&mut self) {
        let capacity = self.entries.capacity().saturating_mul(2).max(16);
        let mut grown = Vec::with_capacity(capacity);
        crate::net::advise_huge_pages(&grown);
        grown.append(&mut self.entries);
        self.entries = grown;
    }

    /// Number of scheduled timers.
    #[cfg_attr(
        not(any(test, feature = "internals")),
        expect(dead_code, reason = "used by tests and benchmarks")
    )]
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is scheduled.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `value` for `deadline` (absolute milliseconds). A deadline
    /// at or before the wheel's time fires at the next `poll`. O(1)
    /// (amortized: the entries grow by doubling while none is free).
    #[expect(
        clippy::cast_possible_truncation,
        reason = "entries are bounded by the pool's slots and requests, far below 2^31"
    )]
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        // The free list is last in, first out: the entry a `cancel` just
        // emptied is reused while it is still in cache.
        let key = match self.entries.get_mut(self.free as usize) {
            Some(e) => {
                let key = self.free;
                self.free = e.next;
                e.deadline = deadline;
                e.value = Some(value);
                key
            }
            None => {
                let key = self.entries.len() as u32;
                debug_assert!(key < HEAD, "more than 2^31 timers");
                if self.entries.len() == self.entries.capacity() {
                    self.grow();
                }
                self.entries.push(Entry {
                    prev: NIL,
                    next: NIL,
                    deadline,
                    value: Some(value),
                });
                key
            }
        };
        self.len += 1;
        self.place(key);
        TimerKey(key)
    }

    /// Removes a scheduled timer and returns its value. O(1). `None` if the
    /// key names no timer (it fired or was cancelled, and its entry is free).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let Some(value) = self
            .entries
            .get_mut(key.0 as usize)
            .and_then(|e| e.value.take())
        else {
            debug_assert!(false, "cancel of unknown timer {key:?}");
            return None;
        };
        self.unlink(key.0);
        self.release(key.0);
        Some(value)
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
        if self.len == 0 {
            // Nothing scheduled (the steady hit path): no level to scan.
            self.elapsed = now;
            return None;
        }
        loop {
            if self.pending != NIL {
                let key = self.pending;
                let fired = self
                    .entries
                    .get_mut(key as usize)
                    .and_then(|e| Some((e.deadline, e.value.take()?)));
                self.unlink(key);
                self.release(key);
                return fired;
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
        let list = level * SLOTS_U32 + slot;
        let mut key = self.head(list);
        self.set_head(list, NIL);
        while let Some(e) = self.entries.get(key as usize) {
            let next = e.next;
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
        let Some(deadline) = self.entries.get(key as usize).map(|e| e.deadline) else {
            return;
        };
        if deadline <= self.elapsed {
            self.push(key, PENDING);
            return;
        }
        let when = deadline.min(self.elapsed + MAX_SPAN);
        // The highest bit where `when` and the current time differ picks the
        // level; bit 5 at least, so level 0 for anything within 63 ms.
        let masked = (self.elapsed ^ when) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros();
        let level = (significant / 6).min(LEVELS as u32 - 1);
        let slot = ((when >> (6 * level)) % SLOTS as u64) as u32;
        self.push(key, level * SLOTS_U32 + slot);
    }

    /// First entry of a list: `level * SLOTS + slot`, or `PENDING`.
    fn head(&self, list: u32) -> u32 {
        match self.levels.get(list as usize / SLOTS) {
            Some(level) => level.head(list % SLOTS_U32),
            None => self.pending,
        }
    }

    fn set_head(&mut self, list: u32, head: u32) {
        match self.levels.get_mut(list as usize / SLOTS) {
            Some(level) => level.set_head(list % SLOTS_U32, head),
            None => self.pending = head,
        }
    }

    /// Pushes the unlinked entry `key` at the front of `list`.
    fn push(&mut self, key: u32, list: u32) {
        let old = self.head(list);
        if let Some(e) = self.entries.get_mut(key as usize) {
            e.prev = HEAD | list;
            e.next = old;
        }
        if let Some(o) = self.entries.get_mut(old as usize) {
            o.prev = key;
        }
        self.set_head(list, key);
    }

    /// Takes `key` out of whatever list holds it. A first entry's `prev`
    /// names its list, and passes to its successor with the same move that
    /// relinks any other entry.
    fn unlink(&mut self, key: u32) {
        let Some((prev, next)) = self.entries.get(key as usize).map(|e| (e.prev, e.next)) else {
            return;
        };
        if prev & HEAD != 0 {
            self.set_head(prev & !HEAD, next);
        } else if let Some(p) = self.entries.get_mut(prev as usize) {
            p.next = next;
        }
        if let Some(n) = self.entries.get_mut(next as usize) {
            n.prev = prev;
        }
    }

    /// Puts an unlinked entry, whose value is taken, on the free list.
    fn release(&mut self, key: u32) {
        if let Some(e) = self.entries.get_mut(key as usize) {
            e.prev = FREE;
            e.next = self.free;
            self.free = key;
            self.len -= 1;
        }
    }

    /// Recounts from scratch: every entry is in the list its first entry's
    /// link names, links agree both ways, bitmaps match non-empty slots,
    /// placement is consistent with the current time, free entries hold no
    /// value and are all on the free list.
    #[cfg(test)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "levels are below 6, slots below 64"
    )]
    pub(crate) fn check_invariants(&self) {
        let mut seen = 0;
        let mut walk = |list: u32| {
            let mut prev = HEAD | list;
            let mut key = self.head(list);
            while key != NIL {
                let e = &self.entries[key as usize];
                assert_eq!(e.prev, prev, "entry {key} back link (list {list})");
                assert!(e.value.is_some(), "entry {key} has no value");
                if list == PENDING {
                    assert!(e.deadline <= self.elapsed, "pending entry {key} not due");
                } else {
                    assert!(e.deadline > self.elapsed, "entry {key} due but not pending");
                }
                prev = key;
                key = e.next;
                seen += 1;
                assert!(seen <= self.len, "list cycle");
            }
        };
        walk(PENDING);
        for (l, level) in self.levels.iter().enumerate() {
            for s in 0..SLOTS {
                let head = level.head(s as u32);
                assert_eq!(
                    level.occupied() & (1 << s) != 0,
                    head != NIL,
                    "level {l} slot {s} bitmap"
                );
                walk((l * SLOTS + s) as u32);
            }
        }
        assert_eq!(seen, self.len, "entries outside any list");
        let mut free = 0;
        let mut key = self.free;
        while key != NIL {
            let e = &self.entries[key as usize];
            assert_eq!(e.prev, FREE, "free entry {key} marked");
            assert!(e.value.is_none(), "free entry {key} has a value");
            free += 1;
            assert!(free <= self.entries.len(), "free list cycle");
            key = e.next;
        }
        assert_eq!(
            free + self.len,
            self.entries.len(),
            "entries neither live nor free"
        );
    }
}
