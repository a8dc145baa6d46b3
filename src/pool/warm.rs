//! A warm pool: connections opened before anyone asks, so that a burst
//! does not pay connects and handshakes (Envoy's preconnect, HAProxy's
//! `pool-low-conn`).
//!
//! Two calls, both per key: [`Pool::preconnect`] opens up to `n` idle
//! connections once; [`Pool::keep_warm`] sets a minimum of idle
//! connections that the pool keeps as they are taken, expire or die. A
//! warm connect is a connect for nobody: it idles when it completes, and
//! gives no outcome (lifecycle events and counters report it). Warming
//! never takes a place a request needs: it runs only for a key with no
//! waiter, within `max_per_host`, and only into free places under
//! `max_open`, never evicting (so two warm keys at `max_open` cannot take
//! places from each other in turn). Connects that fail back off, doubling
//! from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`], reset by the next success.
//! Top-ups run once per tick ([`Pool::top_up_warm`]), never on a checkout:
//! a connection taken from a warm key is replaced by the next tick.

use super::{Pool, TimerOwner};
use crate::request::Target;
use crate::time::Millis;

/// The first wait after a warm key's connect failed.
pub(crate) const FIRST_BACKOFF: Millis = 100;
/// The longest.
pub(crate) const MAX_BACKOFF: Millis = 30_000;

impl<C> Pool<C> {
    /// Opens connections for `target` until it has `n` idle or connecting,
    /// within the limits; returns how many connects started. No outcome
    /// comes of them.
    pub(crate) fn preconnect(&mut self, mut target: Target, n: usize, now: Millis) -> usize {
        if self.shut_down || n == 0 {
            return 0;
        }
        self.bind_default(&mut target);
        let key = match self.lookup_key(&target) {
            Ok(key) => key,
            Err(hash) => self.insert_key(hash, target),
        };
        let started = self.warm_up_to(key, n, now);
        self.maybe_remove_key(key);
        started
    }

    /// Keeps at least `min_idle` idle connections for `target` from now on
    /// (0: stops), and starts what is missing now.
    pub(crate) fn keep_warm(&mut self, mut target: Target, min_idle: usize, now: Millis) {
        if self.shut_down {
            return;
        }
        self.bind_default(&mut target);
        let key = match self.lookup_key(&target) {
            Ok(key) => key,
            Err(_) if min_idle == 0 => return,
            Err(hash) => self.insert_key(hash, target),
        };
        let Some(k) = self.keys.get_mut(key as usize) else {
            return;
        };
        k.min_idle = min_idle;
        if min_idle == 0 {
            self.stop_warming_key(key);
            self.maybe_remove_key(key);
            return;
        }
        if !self.warm_keys.contains(&key) {
            self.warm_keys.push(key);
        }
        self.top_up(key, now);
    }

    /// Tops up every warm key: the driver calls it once per tick.
    pub(crate) fn top_up_warm(&mut self, now: Millis) {
        for i in 0..self.warm_keys.len() {
            if let Some(&key) = self.warm_keys.get(i) {
                self.top_up(key, now);
            }
        }
    }

    /// Whether any key is kept warm (the driver skips the call otherwise).
    pub(crate) fn has_warm_keys(&self) -> bool {
        !self.warm_keys.is_empty()
    }

    fn top_up(&mut self, key: u32, now: Millis) {
        let Some(k) = self.keys.get(key as usize) else {
            return;
        };
        if k.warm_timer.is_none() {
            self.warm_up_to(key, k.min_idle, now);
        }
    }

    /// Starts warm connects until `key` has `n` idle or connecting, as far
    /// as its waiters and the limits allow.
    fn warm_up_to(&mut self, key: u32, n: usize, now: Millis) -> usize {
        let mut started = 0;
        loop {
            let Some(k) = self.keys.get(key as usize) else {
                return started;
            };
            let ready = k.idle.len() + k.connecting;
            if self.shut_down
                || ready >= n
                || !k.waiting.is_empty()
                || k.busy + k.idle.len() >= self.limits.max_per_host
                || self.open >= self.limits.max_open
            {
                return started;
            }
            let Some(slot) = self.open_slot(key, None) else {
                return started;
            };
            // A connect for nobody is bounded by the request timeout.
            let deadline = now.saturating_add(self.limits.timeout);
            let timer = self.wheel.insert(deadline, TimerOwner::Slot(slot));
            if let Some(s) = self.slots.get_mut(slot as usize) {
                s.timer = Some(timer);
            }
            started += 1;
        }
    }

    /// A connect of `key` failed or timed out: a warm key waits before
    /// trying again, twice as long as last time.
    pub(super) fn warm_failed(&mut self, key: u32, now: Millis) {
        let Some(k) = self.keys.get_mut(key as usize) else {
            return;
        };
        if k.min_idle == 0 || k.warm_timer.is_some() {
            return;
        }
        k.warm_backoff = (k.warm_backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
        let at = now.saturating_add(k.warm_backoff);
        let timer = self.wheel.insert(at, TimerOwner::Warm(key));
        if let Some(k) = self.keys.get_mut(key as usize) {
            k.warm_timer = Some(timer);
        }
    }

    /// A connect of `key` completed: its warm backoff starts over.
    pub(super) fn warm_succeeded(&mut self, key: u32) {
        if let Some(k) = self.keys.get_mut(key as usize) {
            k.warm_backoff = 0;
        }
    }

    /// A warm key's backoff ran out.
    pub(super) fn warm_retry(&mut self, key: u32, now: Millis) {
        if let Some(k) = self.keys.get_mut(key as usize) {
            k.warm_timer = None;
        }
        self.top_up(key, now);
    }

    /// `purge` and `shutdown`: the key is no longer kept warm.
    pub(super) fn stop_warming_key(&mut self, key: u32) {
        let timer = self.keys.get_mut(key as usize).and_then(|k| {
            k.min_idle = 0;
            k.warm_backoff = 0;
            k.warm_timer.take()
        });
        self.cancel_timer(timer);
        self.warm_keys.retain(|&k| k != key);
    }

    pub(super) fn stop_warming(&mut self) {
        while let Some(&key) = self.warm_keys.last() {
            self.stop_warming_key(key);
        }
    }
}
