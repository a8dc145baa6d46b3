//! Pool policies beyond the original's limits: bounded wait queues,
//! connection lifetimes and use counts, idle caps per key, expiry jitter.
//!
//! Each is a check at one transition, O(1):
//!
//! | policy | checked when | effect |
//! | --- | --- | --- |
//! | `max_pending_per_key`, `max_pending` | a request must wait | it fails at once: `queue`, `EAGAIN` |
//! | `max_lifetime` | a slot is released; its idle timer | closed (`Lifetime`) instead of pooled |
//! | `max_uses` | a slot is released | closed (`Uses`) instead of pooled |
//! | `max_idle_per_key` | a slot goes idle | the key's least recently used idle slot closes (`IdleOverflow`) |
//! | `purge` | a slot is released | closed (`Purged`) instead of pooled |
//! | `jitter` | a keep-alive or lifetime deadline is set | shortened by a draw in `[0, jitter]` |

use super::key::key_blocked;
use super::{Pool, RequestState, request_queue};
use crate::error::ConnectError;
use crate::lifecycle::{Change, CloseReason};
use crate::time::Millis;

/// xorshift64*: a few instructions per draw, no allocation, and good
/// enough to spread expiry times (nothing here needs to be unpredictable).
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        // Zero is xorshift's one fixed point.
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `d` shortened by a uniform draw in `[0, jitter]`, and never below
    /// 1 ms (a zero keep-alive would close a socket the moment it idles).
    pub(super) fn shorten(&mut self, d: Millis, jitter: Millis) -> Millis {
        if jitter == 0 {
            return d;
        }
        let cut = self.next() % jitter.saturating_add(1);
        d.saturating_sub(cut).max(1)
    }
}

impl<C> Pool<C> {
    /// Why a slot coming free must not be pooled again, if it must not.
    pub(super) fn retire_reason(&self, slot: u32, now: Millis) -> Option<CloseReason> {
        let s = self.slots.get(slot as usize)?;
        if let Some(reason) = s.retire {
            Some(reason)
        } else if self.limits.max_uses.is_some_and(|max| s.uses >= max) {
            Some(CloseReason::Uses)
        } else if s.retire_at.is_some_and(|at| now >= at) {
            Some(CloseReason::Lifetime)
        } else {
            None
        }
    }

    /// Closes `key`'s least recently used idle slot while it has more than
    /// `max_idle_per_key`.
    pub(super) fn bound_idle(&mut self, key: u32) {
        let Some(max) = self.limits.max_idle_per_key else {
            return;
        };
        while let Some(k) = self.keys.get(key as usize) {
            if k.idle.len() <= max {
                return;
            }
            let Some(oldest) = k.idle.back() else { return };
            self.close_slot(oldest, CloseReason::IdleOverflow);
        }
    }

    /// Fails request `r` at once if it was left waiting in a queue that is
    /// over its bound.
    pub(super) fn bound_queue(&mut self, key: u32, r: u32) {
        let waiting = self
            .requests
            .get(r as usize)
            .is_some_and(|req| matches!(req.state, RequestState::Waiting));
        if !waiting {
            return;
        }
        let key_len = self.keys.get(key as usize).map_or(0, |k| k.waiting.len());
        let over = self
            .limits
            .max_pending_per_key
            .is_some_and(|max| key_len > max)
            || self
                .limits
                .max_pending
                .is_some_and(|max| self.waiting > max);
        if over {
            self.dequeue(key, r);
            self.counters.queue_overflows += 1;
            self.fail(r, ConnectError::queue_full());
            // It may have been the key's only waiter, blocked on max_open.
            if self
                .keys
                .get(key as usize)
                .is_some_and(|k| k.waiting.is_empty())
            {
                self.open_blocked.remove(&mut self.keys, key, key_blocked);
            }
        }
    }

    /// Puts waiting request `r` in `key`'s queue: at the back, or at the
    /// front when it lost a slot it had been given.
    pub(super) fn enqueue(&mut self, key: u32, r: u32, front: bool) {
        let Some(k) = self.keys.get_mut(key as usize) else {
            return;
        };
        if front {
            k.waiting.push_front(&mut self.requests, r, request_queue);
        } else {
            k.waiting.push_back(&mut self.requests, r, request_queue);
        }
        self.waiting += 1;
    }

    /// Takes request `r` out of `key`'s queue.
    pub(super) fn dequeue(&mut self, key: u32, r: u32) {
        let Some(k) = self.keys.get_mut(key as usize) else {
            return;
        };
        if k.waiting.remove(&mut self.requests, r, request_queue) {
            debug_assert!(self.waiting > 0, "waiting count underflow");
            self.waiting = self.waiting.saturating_sub(1);
        }
    }

    /// A slot of `key` stopped connecting.
    pub(super) fn not_connecting(&mut self, key: u32) {
        if let Some(k) = self.keys.get_mut(key as usize) {
            debug_assert!(k.connecting > 0, "key {key} connecting underflow");
            k.connecting = k.connecting.saturating_sub(1);
        }
        debug_assert!(self.connecting > 0, "connecting underflow");
        self.connecting = self.connecting.saturating_sub(1);
    }

    /// Queues a lifecycle event for `slot`, if the caller asked for them.
    pub(super) fn note(&mut self, slot: u32, change: Change) {
        if !self.limits.lifecycle_events {
            return;
        }
        let Some(s) = self.slots.get(slot as usize) else {
            return;
        };
        let Some(k) = self.keys.get(s.key as usize) else {
            return;
        };
        let id = super::SlotId {
            index: slot,
            generation: s.generation,
        };
        self.lifecycle.push((id, k.target.socket_addr(), change));
    }

    /// Closes `target`'s idle slots and marks its busy ones to be closed
    /// when they come free. Returns how many were closed and marked. O(slots).
    /// `clock` is called only if the freed capacity may serve a waiter
    /// (see `decision_time`).
    pub(crate) fn purge(
        &mut self,
        target: &crate::request::Target,
        now: Millis,
        clock: impl FnOnce() -> Millis,
    ) -> (usize, usize) {
        // Requests without a bind address were keyed with the default one.
        let unix = matches!(target.host, crate::request::Host::Unix(_));
        let key = match (target.bind, self.limits.bind_address) {
            (None, Some(bind)) if !unix => {
                let mut keyed = target.clone();
                keyed.bind = Some(bind);
                self.find_key(&keyed)
            }
            _ => self.find_key(target),
        };
        let Some(key) = key else {
            return (0, 0);
        };
        self.stop_warming_key(key);
        let now = self.decision_time(key, now, clock);
        let mut closed = 0;
        while let Some(slot) = self.keys.get(key as usize).and_then(|k| k.idle.front()) {
            self.close_slot(slot, CloseReason::Purged);
            closed += 1;
        }
        let mut marked = 0;
        for (_, s) in self.slots.iter_mut().filter(|(_, s)| s.key == key) {
            s.retire = Some(CloseReason::Purged);
            marked += 1;
        }
        self.after_release(key, now);
        (closed, marked)
    }

    /// The driver found `slot`'s address gone from its host name's
    /// refreshed answer. Idle, it is closed now; reserved for a hit not yet
    /// delivered, it is closed and the request served again; connecting
    /// or lent, it is marked to be closed instead of pooled when it comes
    /// free (a mark made earlier, by `purge`, keeps its reason). O(1).
    pub(crate) fn handle_address_gone(&mut self, slot: super::SlotId, now: Millis) {
        let Some(s) = self.slot_mut(slot) else { return };
        match s.state {
            super::SlotState::Idle | super::SlotState::Reserved { .. } => {
                self.handle_dead(slot, CloseReason::AddressGone, now);
            }
            super::SlotState::Connecting { .. } | super::SlotState::Lent => {
                s.retire.get_or_insert(CloseReason::AddressGone);
            }
        }
    }
}
