//! The sans-I/O pool: every rule and deadline of the keep-alive pool, with no
//! sockets and no clock.
//!
//! # How it works
//!
//! The pool tracks *slots* (one per socket, from connect to close), *requests*
//! (from `allocate` to their outcome) and *keys* (one per [`Target`] with any
//! slot or request). A slot moves through
//!
//! ```text
//!             connect ok                 outcome drained          returned, clean
//! Connecting ───────────▶ Reserved(r) ───────────────▶ Lent ───────────────────▶ Idle
//!     │    ▲ deallocate:                  ▲    │ dead before delivery:              │
//!     │    └ orphan, idles when done      │    └ closed, r is served again          │
//!     │                                   └────────────── reused (MRU) ──────────────┘
//!     └─ fail / timeout ─▶ closed      Idle ─ keep-alive expiry, peer close, eviction ─▶ closed
//! ```
//!
//! and a request is `Waiting` (in its key's FIFO queue), `Connecting` (owns a
//! connecting slot), `Reserved` (a slot is set aside for it) or `Failed`; the
//! last two wait in the `ready` queue until the driver drains them with
//! [`Pool::poll_outcome`]. Reservation, not delivery, is what `allocate` does
//! for a cache hit: the driver first processes readiness, so an idle socket
//! whose peer closed before the outcome was delivered is replaced, never
//! handed out.
//!
//! Inputs are the `allocate`/`deallocate`/`handle_*`/`shutdown` methods, each
//! taking `now` in milliseconds. Outputs are drained: socket work with
//! [`Pool::poll_command`], outcomes with [`Pool::poll_outcome`], and the next
//! deadline with [`Pool::poll_timeout`]. [`Pool::handle_timeout`] is safe to
//! call at any time, spuriously included.
//!
//! # Limits
//!
//! `busy(k)` counts a key's connecting, reserved and lent slots and never
//! exceeds `max_per_host`; `open` counts every slot and never exceeds
//! `max_open`. New sockets are made only for a key with no idle socket, so a
//! key's idle plus busy slots stay within `max_per_host` too. A request that
//! cannot be served waits in its key's FIFO queue. When the head of a queue
//! waits only because `open == max_open`, the key joins the `open_blocked`
//! FIFO; any freed capacity or newly idle socket wakes the first such key,
//! which closes the least recently used idle socket (of another key: a key
//! with waiters never has idle sockets) to make room.
//!
//! # Costs
//!
//! Every operation is O(1) in the number of keys, slots, requests and timers
//! (lists are intrusive, timers live in a hierarchical wheel), except
//! `shutdown`, which is linear. After warm-up nothing allocates but a new
//! key: one `Rc` for its [`Target`], which outcomes share (so a target whose
//! key is dropped and made again, e.g. with every connection closed after
//! use, costs one small allocation per request).

mod command;
#[cfg(test)]
mod invariants;
mod key;
mod limits;
mod list;
#[cfg(test)]
mod model;
mod outbox;
mod policy;
mod stats;
#[cfg(test)]
mod tests;
mod timers;
mod warm;

use std::collections::VecDeque;
use std::rc::Rc;

use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;
use slab::Slab;

use crate::error::{AllocateError, ConnectError, Error};
pub(crate) use crate::index::index32;
use crate::lifecycle::{Change, CloseReason};
use crate::request::FromCache;
use crate::request::{Host, Request, RequestId, Target};
use crate::stats::Counters;
use crate::time::{MAX_DELAY_MS, Millis, millis_ceil};
use crate::wheel::{TimerKey, Wheel};
pub(crate) use command::{CheckedOut, Checkout, Command, Phase, PoolOutcome, SlotId};
use key::{KeyState, key_blocked};
pub(crate) use limits::Limits;
use list::{Link, List};
use outbox::Outbox;

/// Generations use 30 bits; see `Pool::generation`.
pub(crate) const GENERATION_MASK: u32 = u32::MAX >> 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Connecting for `request`; `None` after the request was deallocated
    /// (the slot idles when the connect succeeds).
    Connecting {
        request: Option<u32>,
    },
    Idle,
    Reserved {
        request: u32,
    },
    Lent,
}

struct Slot {
    key: u32,
    generation: u32,
    state: SlotState,
    /// Keep-alive (or lifetime) expiry while idle; connect deadline while an
    /// orphan.
    timer: Option<TimerKey>,
    /// What the idle timer ends: keep-alive or lifetime.
    idle_end: CloseReason,
    /// When the idle timer is due (`Millis::MAX` while none is set): kept
    /// past the timer's cancel, so a hit delivered after it can tell.
    idle_deadline: Millis,
    /// When the connect completed.
    connected_at: Millis,
    /// When it last went idle.
    idle_since: Millis,
    /// Past this (`max_lifetime`, jittered) it is not pooled again.
    retire_at: Option<Millis>,
    /// Times handed out.
    uses: u32,
    /// Closed instead of pooled when it comes free, for this reason: named
    /// by `purge`, or its address left its name's answer.
    retire: Option<CloseReason>,
    /// In the key's idle list (most recently used first).
    key_idle: Link,
    /// In the pool's idle list (least recently used first).
    lru: Link,
    /// In `unstamped`: idle, its expiry not set yet.
    stamp: Link,
}

impl Slot {
    /// Why an idle slot must not be handed out at `now`, if it must not:
    /// its life or its idle timer ran out (judged here too, as the timer may
    /// not have fired yet).
    fn expired_idle(&self, now: Millis) -> Option<CloseReason> {
        if self.retire_at.is_some_and(|at| now >= at) {
            Some(CloseReason::Lifetime)
        } else if now > self.idle_deadline {
            Some(self.idle_end)
        } else {
            None
        }
    }

    /// The slot goes to the caller at `now`: one use more, and what the
    /// checkout reports (`pooled`: it was idle before, so it idled).
    fn lend(&mut self, now: Millis, pooled: bool) -> Checkout {
        self.state = SlotState::Lent;
        self.idle_deadline = Millis::MAX;
        self.uses = self.uses.saturating_add(1);
        Checkout {
            uses: self.uses,
            age: now.saturating_sub(self.connected_at),
            idle: if pooled {
                now.saturating_sub(self.idle_since)
            } else {
                0
            },
        }
    }
}

fn slot_key_idle(s: &mut Slot) -> &mut Link {
    &mut s.key_idle
}
fn slot_lru(s: &mut Slot) -> &mut Link {
    &mut s.lru
}
fn slot_stamp(s: &mut Slot) -> &mut Link {
    &mut s.stamp
}

enum RequestState {
    Waiting,
    Connecting {
        slot: u32,
    },
    Reserved {
        slot: u32,
        from_cache: Option<FromCache>,
    },
    Failed(ConnectError),
}

struct RequestEntry<C> {
    generation: u32,
    key: u32,
    context: C,
    state: RequestState,
    /// The request's timeout, for a deadline set after `allocate`.
    timeout: Millis,
    /// `Millis::MAX` for a cache hit, which has none until it must wait.
    deadline: Millis,
    timer: Option<TimerKey>,
    /// Left waiting by `allocate`: a later cache hit is `Deferred`.
    waited: bool,
    /// [`Request::fresh`]: served by a connect, never from the pool.
    fresh: bool,
    /// In the key's wait queue.
    queue: Link,
}

fn request_queue<C>(r: &mut RequestEntry<C>) -> &mut Link {
    &mut r.queue
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerOwner {
    Request(u32),
    Slot(u32),
    /// A caller's timer, by its index in `caller_timers`.
    Caller(u32),
    /// A warm key's retry after failed connects, by key index.
    Warm(u32),
}

/// The pool state machine. See the module docs.
pub(crate) struct Pool<C> {
    limits: Limits,
    hasher: DefaultHashBuilder,
    key_index: HashTable<u32>,
    /// The key `lookup_key` found or made last (maybe since removed: it is
    /// only ever compared by target).
    last_key: u32,
    keys: Slab<KeyState>,
    slots: Slab<Slot>,
    requests: Slab<RequestEntry<C>>,
    wheel: Wheel<TimerOwner>,
    /// Every slot: connecting, reserved, lent and idle.
    open: usize,
    idle_lru: List,
    /// Idle slots whose expiry timer waits for the next `stamp_idle`: a slot
    /// reused before then never touches the wheel.
    unstamped: List,
    open_blocked: List,
    /// Keys with a minimum of idle connections ([`Pool::keep_warm`]).
    warm_keys: Vec<u32>,
    commands: VecDeque<Command>,
    ready: Outbox<RequestId>,
    /// The caller's live timers; see `timers.rs`.
    caller_timers: Slab<timers::CallerTimer>,
    /// Caller timers fired and not yet drained.
    expired: VecDeque<(crate::timer::TimerId, u64)>,
    /// Connecting slots, over all keys.
    connecting: usize,
    /// Waiting requests, over all keys.
    waiting: usize,
    counters: Counters,
    /// Lifecycle changes for the driver, when `limits.lifecycle_events`.
    lifecycle: Outbox<(SlotId, std::net::SocketAddr, Change)>,
    /// Draws expiry jitter.
    rng: policy::Rng,
    next_generation: u32,
    /// Tells this pool's request ids from other pools'.
    pool_id: u32,
    shut_down: bool,
}

/// A seed for expiry jitter that differs between pools and runs: the hash
/// of a fresh hasher (hashbrown's default is randomly keyed).
fn hasher_seed() -> u64 {
    use std::hash::BuildHasher;
    DefaultHashBuilder::default().hash_one(0x6b65_6570_616c_6976_u64)
}

/// Source of pool ids, unique in the process (until 2^32 pools were made).
static NEXT_POOL_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

impl<C> Pool<C> {
    pub(crate) fn new(limits: Limits) -> Self {
        Pool {
            limits,
            hasher: DefaultHashBuilder::default(),
            key_index: HashTable::new(),
            last_key: 0,
            keys: Slab::new(),
            slots: Slab::new(),
            requests: Slab::new(),
            wheel: Wheel::new(),
            open: 0,
            idle_lru: List::default(),
            unstamped: List::default(),
            open_blocked: List::default(),
            warm_keys: Vec::new(),
            commands: VecDeque::new(),
            ready: Outbox::with_capacity(0),
            caller_timers: Slab::new(),
            // Sized so that a loop's first timers and lifecycle events do
            // not allocate in the middle of its steady state.
            expired: VecDeque::with_capacity(64),
            connecting: 0,
            waiting: 0,
            counters: Counters::default(),
            lifecycle: Outbox::with_capacity(if limits.lifecycle_events { 256 } else { 0 }),
            rng: policy::Rng::new(hasher_seed()),
            next_generation: 0,
            pool_id: NEXT_POOL_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            shut_down: false,
        }
    }

    // ----- inputs ------------------------------------------------------

    /// Takes a request. Its outcome is queued for `poll_outcome`, never
    /// returned here.
    ///
    /// `now` is the driver's time of its last tick; `clock` reads the time
    /// afresh, and is called only for a request that must wait or connect,
    /// whose deadline must count from this moment (a cache hit has none).
    #[inline]
    /// Why `request` is refused, if it is; else its timeout.
    pub(crate) fn admit<D>(&self, request: &Request<D>) -> Result<Millis, Error> {
        let invalid = |reason| Err(Error::InvalidRequest { reason });
        if self.shut_down {
            return Err(Error::ShutDown);
        }
        if request.target.scheme.is_empty() {
            return invalid("scheme is empty");
        }
        if request
            .target
            .host
            .addr()
            .is_some_and(|ip| ip.to_canonical().is_unspecified())
        {
            // Linux would connect 0.0.0.0 or :: to loopback: a proxy handed
            // a bad upstream address would end up talking to itself.
            return invalid("addr is unspecified (0.0.0.0 or ::)");
        }
        let unix = matches!(request.target.host, Host::Unix(_));
        if unix && request.target.bind.is_some() {
            return invalid("a unix socket target takes no bind address");
        }
        if request.target.port == 0 && !unix {
            return invalid("port is 0");
        }
        let timeout = match request.timeout {
            Some(d) => millis_ceil(d),
            None => self.limits.timeout,
        };
        if timeout > MAX_DELAY_MS {
            return invalid("timeout is over 10 years");
        }
        if self.requests.len() >= u32::MAX as usize / 2 {
            return invalid("too many pending requests");
        }
        Ok(timeout)
    }

    /// Gives `target` the configured bind address if it names none. That
    /// address is an IP one: never for a Unix path.
    fn bind_default(&self, target: &mut Target) {
        if target.bind.is_none() && !matches!(target.host, Host::Unix(_)) {
            target.bind = self.limits.bind_address;
        }
    }

    pub(crate) fn allocate(
        &mut self,
        mut request: Request<C>,
        now: Millis,
        clock: impl FnOnce() -> Millis,
    ) -> Result<RequestId, AllocateError<C>> {
        let timeout = match self.admit(&request) {
            Ok(timeout) => timeout,
            Err(error) => {
                return Err(AllocateError {
                    error,
                    request: Box::new(request),
                });
            }
        };
        if self.limits.bind_address.is_some() {
            self.bind_default(&mut request.target);
        }
        // The target moves into a new key, or is dropped where it lies; the
        // outcome shares the key's.
        let key = match self.lookup_key(&request.target) {
            Ok(key) => key,
            Err(hash) => self.insert_key(hash, request.target),
        };
        let context = request.context;
        let generation = self.generation();
        let index = index32(self.requests.insert(RequestEntry {
            generation,
            key,
            context,
            state: RequestState::Waiting,
            timeout,
            // Set below once it is known to need one.
            deadline: Millis::MAX,
            timer: None,
            waited: false,
            fresh: request.fresh,
            queue: Link::UNLINKED,
        }));
        if let Some(k) = self.keys.get_mut(key as usize) {
            k.requests += 1;
            // The cache hit, served at once: nobody waits ahead of it (FIFO
            // holds) and an idle slot is there. What `dispatch` would do for
            // it, without the queue round trip.
            if k.waiting.is_empty() && !request.fresh {
                if let Some(slot) = self.take_idle(key) {
                    self.reserve_slot(index, slot, Some(FromCache::Immediate));
                    return Ok(self.request_id(index, generation));
                }
            }
        }
        self.enqueue(key, index, false);
        self.dispatch(key, now);
        self.bound_queue(key, index);
        // Only a request that must wait or connect needs its timeout: a
        // cache hit is decided already, and skips a wheel insert + cancel.
        if let Some(r) = self.requests.get_mut(index as usize) {
            r.waited = matches!(r.state, RequestState::Waiting);
            if matches!(
                r.state,
                RequestState::Waiting | RequestState::Connecting { .. }
            ) {
                // The clock is rounded up (see the driver); a zero timeout
                // must still expire at the very next timer check.
                let now = clock();
                r.deadline = if timeout == 0 {
                    now.saturating_sub(1)
                } else {
                    now.saturating_add(timeout)
                };
                r.timer = Some(self.wheel.insert(r.deadline, TimerOwner::Request(index)));
            }
        }
        Ok(self.request_id(index, generation))
    }

    /// [`Reactor::checkout_now`](crate::Reactor::checkout_now)'s decision:
    /// the key's warmest idle connection, lent now, when nobody waits ahead
    /// and the request is not [fresh](Request::fresh); else the request is
    /// allocated as usual.
    ///
    /// A candidate is judged by the clock (`clock`, read once, only when
    /// there is a candidate): past its keep-alive or its lifetime it is
    /// closed and the next one judged. `dead` is the driver's word on the
    /// socket (a peek, when the last tick could not read all readiness);
    /// a dead one is closed the same way.
    pub(crate) fn checkout_now(
        &mut self,
        mut request: Request<C>,
        now: Millis,
        clock: impl FnOnce() -> Millis,
        mut dead: impl FnMut(SlotId) -> Option<CloseReason>,
    ) -> Result<CheckedOut<C>, AllocateError<C>> {
        let mut clock = Some(clock);
        let mut decided = None;
        if self.limits.bind_address.is_some() {
            self.bind_default(&mut request.target);
        }
        let key = (!request.fresh && self.admit(&request).is_ok())
            .then(|| self.lookup_key(&request.target).ok())
            .flatten();
        while let Some(key) = key {
            let Some(k) = self.keys.get(key as usize) else {
                break;
            };
            if !k.waiting.is_empty() {
                break;
            }
            let Some(candidate) = k.idle.front() else {
                break;
            };
            let target = Rc::clone(&k.target);
            let t = *decided.get_or_insert_with(|| clock.take().map_or(now, |c| c()));
            let Some(s) = self.slots.get(candidate as usize) else {
                break;
            };
            let id = SlotId {
                index: candidate,
                generation: s.generation,
            };
            let reason = s.expired_idle(t).or_else(|| dead(id));
            if let Some(reason) = reason {
                self.close_slot(candidate, reason);
                continue;
            }
            let Some(slot) = self.take_idle(key) else {
                break;
            };
            debug_assert_eq!(slot, candidate);
            let Some(s) = self.slots.get_mut(slot as usize) else {
                break;
            };
            let checkout = s.lend(t, true);
            self.counters.immediate += 1;
            return Ok(CheckedOut::Lent {
                slot: id,
                checkout,
                target,
                context: request.context,
            });
        }
        let at = move || decided.unwrap_or_else(|| clock.take().map_or(now, |c| c()));
        self.allocate(request, now, at).map(CheckedOut::Pending)
    }

    fn request_id(&self, index: u32, generation: u32) -> RequestId {
        RequestId {
            reactor: self.pool_id,
            index,
            generation,
        }
    }

    /// Cancels a pending request and gives its context back. No outcome is
    /// ever delivered for it. A connect under way finishes and idles.
    ///
    /// `now` is the driver's time of its last tick; `clock` reads the time
    /// afresh, and is called only if the key's waiters are judged (see
    /// `decision_time`).
    pub(crate) fn deallocate(
        &mut self,
        id: RequestId,
        now: Millis,
        clock: impl FnOnce() -> Millis,
    ) -> Result<C, Error> {
        if !self.is_pending(id) {
            return Err(Error::UnknownRequest(id));
        }
        let index = id.index;
        // Unlink from the wait queue while the entry is still in the slab.
        let queued_in = self
            .requests
            .get(index as usize)
            .and_then(|r| matches!(r.state, RequestState::Waiting).then_some(r.key));
        if let Some(key) = queued_in {
            self.dequeue(key, index);
        }
        let Some(r) = self.requests.try_remove(index as usize) else {
            return Err(Error::UnknownRequest(id));
        };
        self.cancel_timer(r.timer);
        let key = r.key;
        // A hit's slot released here may go to a waiter.
        let now = self.decision_time(key, now, clock);
        match r.state {
            RequestState::Waiting => self.dispatch(key, now),
            RequestState::Connecting { slot } => {
                let timer = self.wheel.insert(r.deadline, TimerOwner::Slot(slot));
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    s.state = SlotState::Connecting { request: None };
                    s.timer = Some(timer);
                }
            }
            RequestState::Reserved { slot, .. } => self.release(slot, key, now),
            RequestState::Failed(_) => {}
        }
        self.request_gone(key);
        Ok(r.context)
    }

    /// The socket of a connecting slot is connected.
    pub(crate) fn handle_connected(&mut self, slot: SlotId, now: Millis) {
        let (max_lifetime, jitter) = (self.limits.max_lifetime, self.limits.jitter);
        let retire_at = max_lifetime.map(|life| now.saturating_add(self.rng.shorten(life, jitter)));
        let Some(s) = self.slot_mut(slot) else { return };
        let SlotState::Connecting { request } = s.state else {
            debug_assert!(false, "connected slot {slot:?} is {:?}", s.state);
            return;
        };
        let key = s.key;
        let timer = s.timer.take();
        s.connected_at = now;
        s.retire_at = retire_at;
        // Busy and no longer connecting, whatever comes next: reserved for
        // its request, or released (pooled, handed to a waiter, or closed
        // when purged or past its life, which must not count the end of
        // its connect a second time).
        s.state = SlotState::Lent;
        self.cancel_timer(timer);
        self.not_connecting(key);
        self.counters.connected += 1;
        self.warm_succeeded(key);
        self.note(slot.index, Change::Opened);
        match request {
            Some(r) if !self.is_past_deadline(r, now) => self.reserve_slot(r, slot.index, None),
            Some(r) => {
                // The deadline passed first: the request times out, and the
                // connection that completed late is pooled, not wasted.
                self.fail(r, ConnectError::timed_out());
                self.release(slot.index, key, now);
            }
            None => self.release(slot.index, key, now),
        }
    }

    /// The socket of a connecting slot failed to connect (or could not be
    /// made). The slot is closed; its request, if any, fails with `error`.
    pub(crate) fn handle_connect_failed(&mut self, slot: SlotId, error: ConnectError, now: Millis) {
        let Some(s) = self.slot_mut(slot) else { return };
        let SlotState::Connecting { request } = s.state else {
            debug_assert!(false, "failed slot {slot:?} is {:?}", s.state);
            return;
        };
        let key = s.key;
        self.close_slot(slot.index, CloseReason::ConnectFailed);
        if let Some(r) = request {
            self.fail(r, error);
        }
        self.warm_failed(key, now);
        self.after_release(key, now);
    }

    /// An idle or reserved slot's socket is dead: the peer closed it
    /// (`PeerClosed`) or sent data nobody asked for (`StrayData`). It is
    /// closed; a request it was reserved for is served again, first in its
    /// key's queue.
    pub(crate) fn handle_dead(&mut self, slot: SlotId, reason: CloseReason, now: Millis) {
        let Some(s) = self.slot_mut(slot) else { return };
        let key = s.key;
        match s.state {
            SlotState::Idle => {
                self.close_slot(slot.index, reason);
                self.after_release(key, now);
            }
            SlotState::Reserved { request } => {
                self.close_slot(slot.index, reason);
                self.requeue_front(request, now);
                self.after_release(key, now);
            }
            state => debug_assert!(false, "handle_dead on {slot:?} in {state:?}"),
        }
    }

    /// A lent connection came back. A reusable one idles (or goes straight to
    /// the key's first waiter); otherwise, or after shutdown, it is closed.
    ///
    /// `now` is the driver's time of its last tick; `clock` reads the time
    /// afresh, and is called only if the key has waiters (see
    /// `decision_time`): a return with nobody waiting reads no clock.
    #[inline]
    pub(crate) fn handle_returned(
        &mut self,
        slot: SlotId,
        reusable: bool,
        now: Millis,
        clock: impl FnOnce() -> Millis,
    ) {
        let Some(s) = self.slot_mut(slot) else { return };
        if s.state != SlotState::Lent {
            debug_assert!(false, "returned slot {slot:?} is {:?}", s.state);
            return;
        }
        let key = s.key;
        let now = self.decision_time(key, now, clock);
        if reusable && !self.shut_down {
            self.release(slot.index, key, now);
        } else {
            let reason = if self.shut_down {
                CloseReason::Shutdown
            } else {
                CloseReason::ReturnedUnusable
            };
            self.close_slot(slot.index, reason);
            self.after_release(key, now);
        }
    }

    /// Fires every deadline at or before `now`: request timeouts, keep-alive
    /// expiry, orphan connect deadlines, caller timers. Safe to call at any
    /// time.
    #[cfg(test)]
    pub(crate) fn handle_timeout(&mut self, now: Millis) {
        self.handle_timeout_bounded(now, usize::MAX);
    }

    /// Fires at most `budget` deadlines at or before `now`, earliest first,
    /// and says whether it fired that many (so more may be due: the next
    /// call should not wait). Bounds the work of one tick.
    pub(crate) fn handle_timeout_bounded(&mut self, now: Millis, budget: usize) -> bool {
        let mut fired = 0;
        while fired < budget {
            let Some((_, owner)) = self.wheel.poll(now) else {
                return false;
            };
            fired += 1;
            match owner {
                TimerOwner::Request(index) => self.request_timed_out(index, now),
                TimerOwner::Slot(index) => self.slot_timed_out(index, now),
                TimerOwner::Caller(index) => self.caller_timer_fired(index),
                TimerOwner::Warm(key) => self.warm_retry(key, now),
            }
        }
        true
    }

    /// Closes idle sockets, fails every pending request with `shutdown`/
    /// `ECANCELED`, and refuses later requests. Lent slots are closed when
    /// returned.
    pub(crate) fn shutdown(&mut self) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        self.stop_warming();
        let pending: Vec<u32> = self
            .requests
            .iter()
            .filter(|(_, r)| !matches!(r.state, RequestState::Failed(_)))
            .map(|(i, _)| index32(i))
            .collect();
        for index in pending {
            let Some(r) = self.requests.get_mut(index as usize) else {
                continue;
            };
            let key = r.key;
            let state = std::mem::replace(&mut r.state, RequestState::Waiting);
            match state {
                RequestState::Waiting => self.dequeue(key, index),
                RequestState::Connecting { slot } | RequestState::Reserved { slot, .. } => {
                    self.close_slot(slot, CloseReason::Shutdown);
                }
                RequestState::Failed(_) => {}
            }
            self.fail(index, ConnectError::cancelled());
        }
        let rest: Vec<u32> = self
            .slots
            .iter()
            .filter(|(_, s)| s.state != SlotState::Lent)
            .map(|(i, _)| index32(i))
            .collect();
        for index in rest {
            self.close_slot(index, CloseReason::Shutdown);
        }
        while self
            .open_blocked
            .pop_front(&mut self.keys, key_blocked)
            .is_some()
        {}
        let keys: Vec<u32> = self.keys.iter().map(|(i, _)| index32(i)).collect();
        for key in keys {
            self.maybe_remove_key(key);
        }
    }

    // ----- outputs -----------------------------------------------------

    /// Next socket command, if any. Drain after every input.
    pub(crate) fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// Whether `poll_command` has something.
    #[inline]
    pub(crate) fn has_commands(&self) -> bool {
        !self.commands.is_empty()
    }

    /// Next decided request, if any. A delivered slot becomes `Lent`; `now`
    /// dates its checkout.
    #[inline]
    pub(crate) fn poll_outcome(&mut self, now: Millis) -> Option<PoolOutcome<C>> {
        while let Some(id) = self.ready.pop() {
            // The ids queued are all ours; an entry whose generation moved on
            // was deallocated, one neither reserved nor failed is stale (its
            // reserved socket died and it went back to its queue).
            let decided = self.requests.get(id.index as usize).is_some_and(|r| {
                r.generation == id.generation
                    && matches!(
                        r.state,
                        RequestState::Reserved { .. } | RequestState::Failed(_)
                    )
            });
            if !decided {
                continue;
            }
            if let Some((slot, reason)) = self.expired_hit(id.index, now) {
                // Calls between ticks judge with the last tick's time, so a
                // hit decided after a long gap may hold a connection whose
                // keep-alive or life ran out meanwhile: replaced, as a dead
                // one would be, never handed out.
                self.handle_dead(slot, reason, now);
                continue;
            }
            let Some(r) = self.requests.try_remove(id.index as usize) else {
                continue;
            };
            // Before `request_gone`, which may drop the key.
            let Some(target) = self.keys.get(r.key as usize).map(|k| Rc::clone(&k.target)) else {
                debug_assert!(false, "request {id:?} outlived its key");
                continue;
            };
            self.request_gone(r.key);
            let outcome = match r.state {
                RequestState::Reserved { slot, from_cache } => {
                    let Some(s) = self.slots.get_mut(slot as usize) else {
                        continue;
                    };
                    let checkout = s.lend(now, from_cache.is_some());
                    let slot = SlotId {
                        index: slot,
                        generation: s.generation,
                    };
                    match from_cache {
                        Some(FromCache::Immediate) => self.counters.immediate += 1,
                        Some(FromCache::Deferred) => self.counters.deferred += 1,
                        None => {}
                    }
                    PoolOutcome::Deliver {
                        id,
                        slot,
                        checkout,
                        from_cache,
                        target,
                        context: r.context,
                    }
                }
                RequestState::Failed(error) => PoolOutcome::Fail {
                    id,
                    target,
                    context: r.context,
                    error,
                },
                RequestState::Waiting | RequestState::Connecting { .. } => continue,
            };
            return Some(outcome);
        }
        None
    }

    /// The pooled slots reserved for requests whose outcome `poll_outcome`
    /// has not given out yet (cache hits, immediate or deferred), into `out`
    /// (cleared first). For a driver that must check them before delivery.
    pub(crate) fn undelivered_hits(&self, out: &mut Vec<SlotId>) {
        out.clear();
        for id in self.ready.pending() {
            let Some(r) = self.requests.get(id.index as usize) else {
                continue;
            };
            let RequestState::Reserved {
                slot,
                from_cache: Some(_),
            } = r.state
            else {
                continue;
            };
            if r.generation != id.generation {
                continue;
            }
            if let Some(s) = self.slots.get(slot as usize) {
                out.push(SlotId {
                    index: slot,
                    generation: s.generation,
                });
            }
        }
    }

    /// For a request holding a pooled slot (a cache hit), the slot and why,
    /// if by `now` (this tick's time, rounded up) its life or its idle timer
    /// has run out: it must not be handed out.
    fn expired_hit(&self, r: u32, now: Millis) -> Option<(SlotId, CloseReason)> {
        let RequestState::Reserved {
            slot,
            from_cache: Some(_),
        } = self.requests.get(r as usize)?.state
        else {
            return None;
        };
        let s = self.slots.get(slot as usize)?;
        let reason = s.expired_idle(now)?;
        let id = SlotId {
            index: slot,
            generation: s.generation,
        };
        Some((id, reason))
    }

    /// Whether `poll_outcome` has something (or stale entries) to look at.
    pub(crate) fn has_outcomes(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Whether the caller has something to be told without a wait: an
    /// outcome, or a lifecycle change (a `free` that closed or parked a
    /// connection queues one between ticks).
    pub(crate) fn has_news(&self) -> bool {
        !self.ready.is_empty() || !self.lifecycle.is_empty()
    }

    /// The next deadline, or a lower bound of it; `None` if there is none.
    pub(crate) fn poll_timeout(&self) -> Option<Millis> {
        self.wheel.next_deadline()
    }

    // ----- queries -----------------------------------------------------

    /// The phase of a live slot, `None` for an unknown or stale id.
    pub(crate) fn phase(&self, slot: SlotId) -> Option<Phase> {
        let s = self.slots.get(slot.index as usize)?;
        if s.generation != slot.generation {
            return None;
        }
        Some(match s.state {
            SlotState::Connecting { .. } => Phase::Connecting,
            SlotState::Idle => Phase::Idle,
            SlotState::Reserved { .. } => Phase::Reserved,
            SlotState::Lent => Phase::Lent,
        })
    }

    /// Whether a live slot is connecting for no request (its request was
    /// deallocated): once connected it is pooled, not delivered.
    pub(crate) fn is_orphan(&self, slot: SlotId) -> bool {
        self.slots.get(slot.index as usize).is_some_and(|s| {
            s.generation == slot.generation && s.state == SlotState::Connecting { request: None }
        })
    }

    /// The target a live slot connects to.
    pub(crate) fn target(&self, slot: SlotId) -> Option<&Target> {
        let s = self
            .slots
            .get(slot.index as usize)
            .filter(|s| s.generation == slot.generation)?;
        self.keys.get(s.key as usize).map(|k| &*k.target)
    }

    /// The live slot at `index`, whatever its generation.
    pub(crate) fn slot_at(&self, index: u32) -> Option<SlotId> {
        let s = self.slots.get(index as usize)?;
        Some(SlotId {
            index,
            generation: s.generation,
        })
    }

    /// Whether `id` names a request that has not had its outcome.
    pub(crate) fn is_pending(&self, id: RequestId) -> bool {
        // Another pool's ids share index and generation sequences with ours:
        // only the pool id tells them apart.
        id.reactor == self.pool_id
            && self
                .requests
                .get(id.index as usize)
                .is_some_and(|r| r.generation == id.generation)
    }

    /// Whether `shutdown` was called.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// Number of idle slots.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle_lru.len()
    }

    /// Number of slots of any phase.
    pub(crate) fn open_count(&self) -> usize {
        self.open
    }

    /// Number of requests without an outcome yet.
    pub(crate) fn pending_count(&self) -> usize {
        self.requests.len()
    }

    // ----- transitions -------------------------------------------------

    /// Serves `key`'s waiters in FIFO order for as long as the limits allow.
    fn dispatch(&mut self, key: u32, now: Millis) {
        loop {
            let Some(k) = self.keys.get(key as usize) else {
                return;
            };
            let Some(head) = k.waiting.front() else { break };
            if self.is_overdue(head, now) {
                // Its timer has not fired yet, but its deadline has passed:
                // the timeout wins over a slot freed just now.
                self.dequeue(key, head);
                self.fail(head, ConnectError::timed_out());
                continue;
            }
            let fresh = self.requests.get(head as usize).is_some_and(|r| r.fresh);
            if let Some(slot) = if fresh { None } else { self.take_idle(key) } {
                let waited = self.requests.get(head as usize).is_some_and(|r| r.waited);
                let from_cache = if waited {
                    FromCache::Deferred
                } else {
                    FromCache::Immediate
                };
                self.dequeue(key, head);
                self.reserve_slot(head, slot, Some(from_cache));
                continue;
            }
            let Some(k) = self.keys.get(key as usize) else {
                return;
            };
            if k.busy >= self.limits.max_per_host {
                // Waits for one of its own slots, not for max_open.
                self.open_blocked.remove(&mut self.keys, key, key_blocked);
                return;
            }
            if fresh && k.busy + k.idle.len() >= self.limits.max_per_host {
                // Its key's place is taken by an idle connection it must not
                // use: the oldest one makes room.
                if let Some(oldest) = k.idle.back() {
                    self.close_slot(oldest, CloseReason::Evicted);
                }
                continue;
            }
            if self.open >= self.limits.max_open {
                match self.idle_lru.front() {
                    Some(victim) => {
                        let victim_key = self.slots.get(victim as usize).map(|s| s.key);
                        debug_assert!(
                            fresh || victim_key != Some(key),
                            "a key whose head waiter takes from the pool has no idle"
                        );
                        self.close_slot(victim, CloseReason::Evicted);
                        if let Some(vk) = victim_key {
                            self.maybe_remove_key(vk);
                        }
                    }
                    None => {
                        if !k.blocked.is_linked() {
                            self.open_blocked
                                .push_back(&mut self.keys, key, key_blocked);
                        }
                        return;
                    }
                }
            }
            self.connect(key, head);
        }
        self.open_blocked.remove(&mut self.keys, key, key_blocked);
    }

    /// Takes `key`'s most recently used idle slot out of the idle lists and
    /// makes it busy, its expiry timer cancelled; `None` if it has none.
    fn take_idle(&mut self, key: u32) -> Option<u32> {
        let k = self.keys.get_mut(key as usize)?;
        let slot = k.idle.pop_front(&mut self.slots, slot_key_idle)?;
        k.busy += 1;
        self.idle_lru.remove(&mut self.slots, slot, slot_lru);
        self.unstamped.remove(&mut self.slots, slot, slot_stamp);
        if let Some(s) = self.slots.get_mut(slot as usize) {
            let timer = s.timer.take();
            self.cancel_timer(timer);
        }
        Some(slot)
    }

    /// After a slot of `key` stopped being busy or a slot closed: serve the
    /// key's own waiters first, then keys blocked on `max_open`.
    fn after_release(&mut self, key: u32, now: Millis) {
        self.dispatch(key, now);
        self.maybe_remove_key(key);
        while let Some(blocked) = self.open_blocked.front() {
            self.dispatch(blocked, now);
            let still = self
                .keys
                .get(blocked as usize)
                .is_some_and(|k| k.blocked.is_linked());
            if still {
                break;
            }
        }
    }

    /// Starts a connect for the waiting request `head` of `key`.
    fn connect(&mut self, key: u32, head: u32) {
        self.dequeue(key, head);
        let Some(slot) = self.open_slot(key, Some(head)) else {
            return;
        };
        if let Some(r) = self.requests.get_mut(head as usize) {
            r.state = RequestState::Connecting { slot };
        }
    }

    /// A new connecting slot of `key`, for `request` (or for nobody: a warm
    /// connect, which idles when it completes), and its connect command.
    fn open_slot(&mut self, key: u32, request: Option<u32>) -> Option<u32> {
        let generation = self.generation();
        let k = self.keys.get_mut(key as usize)?;
        k.busy += 1;
        k.connecting += 1;
        let addr = k.target.socket_addr();
        let bind = k.target.bind;
        let slot = index32(self.slots.insert(Slot {
            key,
            generation,
            state: SlotState::Connecting { request },
            timer: None,
            idle_end: CloseReason::KeepAliveExpired,
            idle_deadline: Millis::MAX,
            connected_at: 0,
            idle_since: 0,
            retire_at: None,
            uses: 0,
            retire: None,
            key_idle: Link::UNLINKED,
            lru: Link::UNLINKED,
            stamp: Link::UNLINKED,
        }));
        self.open += 1;
        self.connecting += 1;
        self.commands.push_back(Command::Connect {
            slot: SlotId {
                index: slot,
                generation,
            },
            addr,
            bind,
        });
        Some(slot)
    }

    /// Marks `slot` reserved for request `r` (already out of any queue) and
    /// queues the outcome. The request's timeout no longer applies.
    fn reserve_slot(&mut self, r: u32, slot: u32, from_cache: Option<FromCache>) {
        let Some(req) = self.requests.get_mut(r as usize) else {
            return;
        };
        let timer = req.timer.take();
        req.state = RequestState::Reserved { slot, from_cache };
        let id = RequestId {
            reactor: self.pool_id,
            index: r,
            generation: req.generation,
        };
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.state = SlotState::Reserved { request: r };
        }
        self.cancel_timer(timer);
        self.ready.push(id);
    }

    /// Request `r` (out of any queue, owning no slot) fails with `error`.
    fn fail(&mut self, r: u32, error: ConnectError) {
        let Some(req) = self.requests.get_mut(r as usize) else {
            return;
        };
        let timer = req.timer.take();
        self.counters.count_failure(error.function());
        if error.is_timeout() {
            self.counters.timeouts += 1;
        }
        req.state = RequestState::Failed(error);
        let id = RequestId {
            reactor: self.pool_id,
            index: r,
            generation: req.generation,
        };
        self.cancel_timer(timer);
        self.ready.push(id);
    }

    /// Request `r` lost its reserved slot: it goes back to the front of its
    /// queue with its original deadline, or fails if that has passed.
    fn requeue_front(&mut self, r: u32, now: Millis) {
        let Some(req) = self.requests.get_mut(r as usize) else {
            return;
        };
        if req.deadline == Millis::MAX {
            // A cache hit had no deadline: count its timeout from now,
            // later than from its allocate, never earlier.
            req.deadline = if req.timeout == 0 {
                now.saturating_sub(1)
            } else {
                now.saturating_add(req.timeout)
            };
        }
        let (key, deadline) = (req.key, req.deadline);
        if now >= deadline {
            self.fail(r, ConnectError::timed_out());
            return;
        }
        req.state = RequestState::Waiting;
        let timer = self.wheel.insert(deadline, TimerOwner::Request(r));
        req.timer = Some(timer);
        self.enqueue(key, r, true);
    }

    /// A key's slot stopped being connecting/reserved/lent.
    fn unbusy(&mut self, key: u32) {
        if let Some(k) = self.keys.get_mut(key as usize) {
            debug_assert!(k.busy > 0, "key {key} busy underflow");
            k.busy = k.busy.saturating_sub(1);
        }
    }

    /// A healthy slot of `key` that was busy (connecting or lent) is free:
    /// it goes straight to the key's first waiter, as `Deferred`, with no
    /// keep-alive timer set and cancelled in between; with no waiter it
    /// idles. Then freed capacity serves whoever can use it.
    fn release(&mut self, slot: u32, key: u32, now: Millis) {
        if let Some(reason) = self.retire_reason(slot, now) {
            self.close_slot(slot, reason);
            self.after_release(key, now);
            return;
        }
        let waiter = loop {
            let Some(head) = self.keys.get(key as usize).and_then(|k| k.waiting.front()) else {
                break None;
            };
            if self.requests.get(head as usize).is_some_and(|r| r.fresh) {
                // It must connect: the connection idles, and `after_release`
                // starts the connect its freed place allows.
                break None;
            }
            self.dequeue(key, head);
            if self.is_overdue(head, now) {
                self.fail(head, ConnectError::timed_out());
                continue;
            }
            break Some(head);
        };
        match waiter {
            Some(head) => self.reserve_slot(head, slot, Some(FromCache::Deferred)),
            None => {
                self.unbusy(key);
                self.make_idle(slot, now);
            }
        }
        self.after_release(key, now);
    }

    /// The time to judge waiters by, for an input between ticks that frees
    /// a slot of `key` or capacity (a return, a deallocated hit's slot, a
    /// purge): `now`, the last tick's time, when neither the key nor a key
    /// blocked on `max_open` has waiters (no clock read: the hit path's
    /// return), else `clock()`, the time of the decision. By the last
    /// tick's time, a waiter whose deadline passed in a gap without a poll
    /// would be handed the slot (or a connect), where a passed deadline
    /// must win.
    #[inline]
    pub(super) fn decision_time(
        &self,
        key: u32,
        now: Millis,
        clock: impl FnOnce() -> Millis,
    ) -> Millis {
        let waiters = self
            .keys
            .get(key as usize)
            .is_some_and(|k| !k.waiting.is_empty())
            || !self.open_blocked.is_empty();
        if waiters { clock().max(now) } else { now }
    }

    /// Whether request `r` waited (or connected) past its deadline by the
    /// input time `now`. `now` is rounded up, so `now > deadline` holds only
    /// once the real time is past the deadline: nothing times out early. A
    /// request served from the pool at `allocate` never waited: a cache hit
    /// is served whatever its timeout, as the original does.
    fn is_overdue(&self, r: u32, now: Millis) -> bool {
        self.requests.get(r as usize).is_some_and(|req| req.waited) && self.is_past_deadline(r, now)
    }

    /// Whether the input time `now` (rounded up) is past request `r`'s
    /// deadline, i.e. the real time is.
    fn is_past_deadline(&self, r: u32, now: Millis) -> bool {
        self.requests
            .get(r as usize)
            .is_some_and(|req| now > req.deadline)
    }

    /// Puts a slot (already not busy) in the idle lists with a keep-alive
    /// deadline.
    fn make_idle(&mut self, slot: u32, now: Millis) {
        let expires = self.limits.keep_alive.is_some();
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        s.state = SlotState::Idle;
        s.idle_since = now;
        s.idle_deadline = Millis::MAX;
        let key = s.key;
        let expires = expires || s.retire_at.is_some();
        if let Some(k) = self.keys.get_mut(key as usize) {
            k.idle.push_front(&mut self.slots, slot, slot_key_idle);
        }
        self.idle_lru.push_back(&mut self.slots, slot, slot_lru);
        if expires {
            self.unstamped.push_back(&mut self.slots, slot, slot_stamp);
        }
        self.note(slot, Change::Parked);
        self.bound_idle(key);
    }

    /// Sets the expiry timer of every slot that went idle since the last
    /// call, counting from `now`: the earlier of keep-alive expiry (jittered)
    /// and end of life. The driver calls it once per tick, after its one
    /// clock read, so keep-alive counts from the first tick after a return
    /// (never less than `keep_alive`), and a slot reused before that tick
    /// costs no timer at all.
    pub(crate) fn stamp_idle(&mut self, now: Millis) {
        while let Some(slot) = self.unstamped.pop_front(&mut self.slots, slot_stamp) {
            let keep_alive = self
                .limits
                .keep_alive
                .map(|ka| now.saturating_add(self.rng.shorten(ka, self.limits.jitter)));
            let Some(s) = self.slots.get_mut(slot as usize) else {
                continue;
            };
            // Neither: it idles until the peer or the pool closes it (and
            // was never put in `unstamped`).
            let end = match (keep_alive, s.retire_at) {
                (Some(ka), Some(life)) if life < ka => Some((life, CloseReason::Lifetime)),
                (Some(ka), _) => Some((ka, CloseReason::KeepAliveExpired)),
                (None, Some(life)) => Some((life, CloseReason::Lifetime)),
                (None, None) => None,
            };
            if let Some((deadline, reason)) = end {
                s.idle_end = reason;
                s.idle_deadline = deadline;
                let timer = self.wheel.insert(deadline, TimerOwner::Slot(slot));
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    s.timer = Some(timer);
                }
            }
        }
    }

    /// Whether idle slots wait for `stamp_idle`.
    pub(crate) fn has_unstamped(&self) -> bool {
        !self.unstamped.is_empty()
    }

    /// Forgets a slot of any phase and tells the driver to close its socket,
    /// counting (and, if asked, reporting) why. The caller deals with a
    /// request the slot was serving.
    fn close_slot(&mut self, slot: u32, reason: CloseReason) {
        let Some(s) = self.slots.get(slot as usize) else {
            return;
        };
        let key = s.key;
        match s.state {
            SlotState::Idle => {
                if let Some(k) = self.keys.get_mut(key as usize) {
                    k.idle.remove(&mut self.slots, slot, slot_key_idle);
                }
                self.idle_lru.remove(&mut self.slots, slot, slot_lru);
                self.unstamped.remove(&mut self.slots, slot, slot_stamp);
            }
            SlotState::Connecting { .. } => {
                self.not_connecting(key);
                self.unbusy(key);
            }
            SlotState::Reserved { .. } | SlotState::Lent => self.unbusy(key),
        }
        self.counters.count_close(reason);
        self.note(slot, Change::Closed(reason));
        let Some(mut s) = self.slots.try_remove(slot as usize) else {
            return;
        };
        self.cancel_timer(s.timer.take());
        self.open -= 1;
        self.commands.push_back(Command::Close {
            slot: SlotId {
                index: slot,
                generation: s.generation,
            },
        });
    }

    fn request_timed_out(&mut self, index: u32, now: Millis) {
        let Some(r) = self.requests.get_mut(index as usize) else {
            return;
        };
        r.timer = None;
        let key = r.key;
        match r.state {
            RequestState::Waiting => {
                self.dequeue(key, index);
                self.fail(index, ConnectError::timed_out());
                self.dispatch(key, now);
            }
            RequestState::Connecting { slot } => {
                self.close_slot(slot, CloseReason::ConnectTimedOut);
                self.fail(index, ConnectError::timed_out());
                self.after_release(key, now);
            }
            RequestState::Reserved { .. } | RequestState::Failed(_) => {
                debug_assert!(false, "timer fired for decided request {index}");
            }
        }
    }

    fn slot_timed_out(&mut self, index: u32, now: Millis) {
        let Some(s) = self.slots.get_mut(index as usize) else {
            return;
        };
        s.timer = None;
        let key = s.key;
        match s.state {
            SlotState::Idle => {
                let reason = s.idle_end;
                self.close_slot(index, reason);
                self.after_release(key, now);
            }
            SlotState::Connecting { request: None } => {
                self.close_slot(index, CloseReason::ConnectTimedOut);
                self.warm_failed(key, now);
                self.after_release(key, now);
            }
            state => debug_assert!(false, "slot timer fired in {state:?}"),
        }
    }

    // ----- bookkeeping -------------------------------------------------

    /// A fresh generation, in 30 bits: the driver puts slot generations in
    /// the upper half of a poller token and keeps the top two bits for the
    /// caller's tokens and its own name-resolution sockets.
    fn generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1) & GENERATION_MASK;
        self.next_generation
    }

    fn cancel_timer(&mut self, timer: Option<TimerKey>) {
        if let Some(t) = timer {
            self.wheel.cancel(t);
        }
    }

    fn slot_mut(&mut self, slot: SlotId) -> Option<&mut Slot> {
        self.slots
            .get_mut(slot.index as usize)
            .filter(|s| s.generation == slot.generation)
    }
}
