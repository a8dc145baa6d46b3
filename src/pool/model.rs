//! Property test: random sequences of every input, applied to the pool and
//! to a simple model of what a user can observe, checked after every step.
//!
//! The model knows only what the driver and the caller see: commands
//! (connect, close), outcomes, and the inputs it chose. From those alone it
//! keeps the sockets per key, the contexts still out, the requests it
//! deallocated and every request's deadline, and asserts:
//!
//! - sockets per key ≤ `max_per_host`, sockets in all ≤ `max_open`;
//! - every context comes back exactly once (outcome or deallocate), and all
//!   of them have come back after `shutdown` and a final drain;
//! - no outcome after `deallocate`, none for a socket already closed;
//! - FIFO per key: a request is never served while an earlier request of its
//!   key still waits;
//! - no timeout before the deadline, and no request left pending after it;
//! - a lent connection is never handed to a second request.
//!
//! Besides, `check_invariants` recounts the pool's own bookkeeping.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test code: indices of small test pools"
)]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::error::Function;

#[derive(Clone, Debug)]
enum Op {
    Allocate {
        key: u16,
        timeout: Option<u64>,
        /// [`Request::fresh`]: never served from the pool.
        fresh: bool,
    },
    /// `checkout_now`: lent at once from the pool, or allocated.
    CheckoutNow {
        key: u16,
    },
    /// `keep_warm` (0 stops it) or, `once`, `preconnect`.
    Warm {
        key: u16,
        n: usize,
        once: bool,
    },
    /// Between ticks, `late` ms after the last one (the pool reads that
    /// time if it judges a waiter).
    Deallocate {
        pick: usize,
        late: u64,
    },
    ConnectOk(usize),
    ConnectFail(usize),
    /// Between ticks, `late` ms after the last one, as `Deallocate`.
    Return {
        pick: usize,
        reusable: bool,
        late: u64,
    },
    PeerClose(usize),
    /// The driver found a socket's address gone from its name's answer.
    AddressGone(usize),
    Advance(u64),
    Drain,
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u16..3, prop::option::of(0u64..3_000), prop::bool::weighted(0.2)).prop_map(|(key, timeout, fresh)| Op::Allocate { key, timeout, fresh }),
        2 => (0u16..3).prop_map(|key| Op::CheckoutNow { key }),
        1 => (0u16..3, 0usize..4, any::<bool>()).prop_map(|(key, n, once)| Op::Warm { key, n, once }),
        1 => (any::<usize>(), late()).prop_map(|(pick, late)| Op::Deallocate { pick, late }),
        4 => any::<usize>().prop_map(Op::ConnectOk),
        1 => any::<usize>().prop_map(Op::ConnectFail),
        4 => (any::<usize>(), prop::bool::weighted(0.8), late()).prop_map(|(pick, reusable, late)| Op::Return { pick, reusable, late }),
        1 => any::<usize>().prop_map(Op::PeerClose),
        1 => any::<usize>().prop_map(Op::AddressGone),
        3 => prop_oneof![0u64..50, 0u64..2_000, 0u64..20_000].prop_map(Op::Advance),
        5 => Just(Op::Drain),
        1 => Just(Op::Shutdown),
    ]
}

/// How long after the last tick a call between ticks comes: mostly at
/// once, sometimes after a pause without polls.
fn late() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(0u64), 1 => 0u64..3_000]
}

struct Model {
    max_per_host: usize,
    max_open: usize,
    now: Millis,
    /// Open sockets (commanded connects not yet closed) and their key (port).
    sockets: HashMap<SlotId, u16>,
    /// Sockets the caller holds.
    lent: HashSet<SlotId>,
    /// Requests without an outcome: context, key, deadline, allocation order.
    pending: HashMap<RequestId, (u64, u16, Millis, u64)>,
    deallocated: HashSet<RequestId>,
    /// Requests seen served (connecting or reserved from the pool).
    served: HashSet<RequestId>,
    contexts_out: HashSet<u64>,
    next_ctx: u64,
    shut_down: bool,
    /// Sockets closed so far.
    closes: u64,
    /// Sockets whose address left their name's answer: never handed out
    /// from the pool again.
    gone: HashSet<SlotId>,
    /// Requests asked fresh: never served from the pool.
    fresh: HashSet<RequestId>,
}

impl Model {
    fn connect(&mut self, slot: SlotId, port: u16) {
        let per_key = self.sockets.values().filter(|&&p| p == port).count();
        assert!(
            per_key < self.max_per_host,
            "connect for key {port} with {per_key} open"
        );
        assert!(
            self.sockets.len() < self.max_open,
            "connect with {} open",
            self.sockets.len()
        );
        assert!(
            self.sockets.insert(slot, port).is_none(),
            "slot {slot:?} connected twice"
        );
    }

    fn close(&mut self, slot: SlotId) {
        assert!(
            self.sockets.remove(&slot).is_some(),
            "close of unknown {slot:?}"
        );
        assert!(
            !self.lent.contains(&slot),
            "closed {slot:?} while the caller holds it"
        );
    }

    fn outcome(&mut self, id: RequestId, ctx: u64) {
        assert!(
            !self.deallocated.contains(&id),
            "outcome after deallocate for {id:?}"
        );
        let Some((want, ..)) = self.pending.remove(&id) else {
            panic!("second outcome for {id:?}")
        };
        assert_eq!(want, ctx, "context of {id:?}");
        assert!(
            self.contexts_out.remove(&ctx),
            "context {ctx} came back twice"
        );
    }
}

/// Applies one op to the pool; the model watches and checks.
fn step(pool: &mut Pool<u64>, m: &mut Model, op: &Op) {
    match *op {
        Op::CheckoutNow { key } => {
            let ctx = m.next_ctx;
            m.next_ctx += 1;
            let req = Request::new("http", IpAddr::V4(Ipv4Addr::LOCALHOST), 1000 + key, ctx);
            let now = m.now;
            match pool.checkout_now(req, now, || now, |_| None) {
                Ok(CheckedOut::Lent { slot, context, .. }) => {
                    assert_eq!(context, ctx);
                    assert!(!m.shut_down, "lent after shutdown");
                    assert_eq!(m.sockets.get(&slot), Some(&(1000 + key)), "lent {slot:?}");
                    assert!(
                        !m.gone.contains(&slot),
                        "{slot:?} lent after its address left"
                    );
                    let ahead = pool.requests.iter().any(|(_, r)| {
                        matches!(r.state, RequestState::Waiting)
                            && pool
                                .keys
                                .get(r.key as usize)
                                .is_some_and(|k| k.target.port == 1000 + key)
                    });
                    assert!(!ahead, "lent while a request of its key waits");
                    assert!(m.lent.insert(slot), "{slot:?} lent twice");
                }
                Ok(CheckedOut::Pending(id)) => {
                    let deadline = m.now + pool.limits.timeout;
                    m.pending.insert(id, (ctx, 1000 + key, deadline, ctx));
                    m.contexts_out.insert(ctx);
                }
                Err(e) => {
                    assert!(
                        m.shut_down && matches!(e.error, Error::ShutDown),
                        "refused: {e}"
                    );
                }
            }
        }
        Op::Allocate {
            key,
            timeout,
            fresh,
        } => {
            let ctx = m.next_ctx;
            m.next_ctx += 1;
            let mut req = Request::new("http", IpAddr::V4(Ipv4Addr::LOCALHOST), 1000 + key, ctx);
            if let Some(t) = timeout {
                req = req.timeout(Duration::from_millis(t));
            }
            if fresh {
                req = req.fresh();
            }
            let now = m.now;
            match pool.allocate(req, now, || now) {
                Ok(id) => {
                    if fresh {
                        m.fresh.insert(id);
                    }
                    assert!(!m.shut_down, "allocate accepted after shutdown");
                    let deadline = match timeout.unwrap_or(pool.limits.timeout) {
                        0 => m.now.saturating_sub(1),
                        t => m.now + t,
                    };
                    m.pending.insert(id, (ctx, 1000 + key, deadline, ctx));
                    m.contexts_out.insert(ctx);
                }
                Err(e) => {
                    assert!(
                        m.shut_down && matches!(e.error, Error::ShutDown),
                        "refused: {e}"
                    );
                    assert_eq!(e.into_request().into_context(), ctx);
                }
            }
        }
        Op::Deallocate { pick, late } => {
            let mut ids: Vec<RequestId> = m.pending.keys().copied().collect();
            if ids.is_empty() {
                return;
            }
            ids.sort();
            let id = ids[pick % ids.len()];
            let (ctx, ..) = m.pending[&id];
            // The clock moved on since the last tick; what the call decides
            // is checked against the time of the call.
            let tick = m.now;
            m.now += late;
            let called = m.now;
            match pool.deallocate(id, tick, || called) {
                Ok(back) => {
                    assert_eq!(back, ctx);
                    m.pending.remove(&id);
                    m.deallocated.insert(id);
                    assert!(m.contexts_out.remove(&ctx));
                }
                // Decided but not yet drained: the outcome is still to come.
                Err(Error::UnknownRequest(_)) => panic!("pending {id:?} unknown to the pool"),
                Err(e) => panic!("{e}"),
            }
        }
        Op::ConnectOk(pick) | Op::ConnectFail(pick) => {
            let mut connecting: Vec<SlotId> = m
                .sockets
                .keys()
                .copied()
                .filter(|&s| pool.phase(s) == Some(Phase::Connecting))
                .collect();
            if connecting.is_empty() {
                return;
            }
            connecting.sort_by_key(|s| (s.index, s.generation));
            let slot = connecting[pick % connecting.len()];
            if matches!(op, Op::ConnectOk(_)) {
                pool.handle_connected(slot, m.now);
            } else {
                pool.handle_connect_failed(
                    slot,
                    ConnectError::from_errno(Function::Connect, libc::ECONNREFUSED),
                    m.now,
                );
            }
        }
        Op::Return {
            pick,
            reusable,
            late,
        } => {
            let mut lent: Vec<SlotId> = m.lent.iter().copied().collect();
            if lent.is_empty() {
                return;
            }
            lent.sort_by_key(|s| (s.index, s.generation));
            let slot = lent[pick % lent.len()];
            m.lent.remove(&slot);
            let tick = m.now;
            m.now += late;
            let returned = m.now;
            pool.handle_returned(slot, reusable, tick, || returned);
        }
        Op::PeerClose(pick) => {
            let mut quiet: Vec<SlotId> = m
                .sockets
                .keys()
                .copied()
                .filter(|&s| matches!(pool.phase(s), Some(Phase::Idle | Phase::Reserved)))
                .collect();
            if quiet.is_empty() {
                return;
            }
            quiet.sort_by_key(|s| (s.index, s.generation));
            pool.handle_dead(quiet[pick % quiet.len()], CloseReason::PeerClosed, m.now);
        }
        Op::AddressGone(pick) => {
            let mut open: Vec<SlotId> = m.sockets.keys().copied().collect();
            if open.is_empty() {
                return;
            }
            open.sort_by_key(|s| (s.index, s.generation));
            let slot = open[pick % open.len()];
            m.gone.insert(slot);
            pool.handle_address_gone(slot, m.now);
        }
        Op::Warm { key, n, once } => {
            let target = Request::new("http", IpAddr::V4(Ipv4Addr::LOCALHOST), 1000 + key, ())
                .target()
                .clone();
            if once {
                pool.preconnect(target, n, m.now);
            } else {
                pool.keep_warm(target, n, m.now);
            }
        }
        Op::Advance(ms) => {
            // A tick: the driver stamps idle slots, fires deadlines, then
            // tops up warm keys.
            m.now += ms;
            pool.stamp_idle(m.now);
            pool.handle_timeout(m.now);
            pool.top_up_warm(m.now);
        }
        Op::Drain => {}
        Op::Shutdown => {
            m.shut_down = true;
            pool.shutdown();
        }
    }
    requeued(pool, m);
    absorb(pool, m);
    if matches!(op, Op::Drain) {
        while let Some(outcome) = pool.poll_outcome(m.now) {
            match outcome {
                PoolOutcome::Deliver {
                    id,
                    slot,
                    context,
                    checkout,
                    from_cache,
                    ..
                } => {
                    assert!(
                        m.sockets.contains_key(&slot),
                        "delivered closed socket {slot:?}"
                    );
                    assert!(
                        from_cache.is_none() || !m.gone.contains(&slot),
                        "{slot:?} handed out from the pool after its address left"
                    );
                    assert!(
                        from_cache.is_none() || !m.fresh.contains(&id),
                        "fresh {id:?} served from the pool"
                    );
                    if let Some(max) = pool.limits.max_uses {
                        assert!(
                            checkout.uses <= max,
                            "{slot:?} handed out a {}th time",
                            checkout.uses
                        );
                    }

                    assert!(m.lent.insert(slot), "{slot:?} lent twice");
                    m.outcome(id, context);
                }
                PoolOutcome::Fail {
                    id, context, error, ..
                } => {
                    if error.function() == Function::Queue {
                        assert!(
                            pool.limits.max_pending_per_key.is_some()
                                || pool.limits.max_pending.is_some(),
                            "queue overflow without a bound"
                        );
                    }
                    if error.is_timeout() {
                        let deadline = m.pending.get(&id).map(|p| p.2);
                        assert!(
                            deadline.is_some_and(|d| m.now >= d),
                            "{id:?} timed out before {deadline:?} at {}",
                            m.now
                        );
                    }
                    m.outcome(id, context);
                }
            }
        }
        // Delivery may replace a hit whose connection expired (a close and
        // a connect the driver runs right after).
        requeued(pool, m);
        absorb(pool, m);
    }
    // Deadlines: once timers ran, nothing waits or connects past its deadline.
    for (id, &(_, _, deadline, _)) in &m.pending {
        if matches!(op, Op::Advance(_)) && m.now >= deadline {
            let undecided = pool.requests.get(id.index as usize).is_some_and(|e| {
                matches!(
                    e.state,
                    RequestState::Waiting | RequestState::Connecting { .. }
                )
            });
            assert!(
                !undecided,
                "{id:?} still pending at {} past deadline {deadline} (pool: {:?})",
                m.now,
                pool.requests.get(id.index as usize).map(|e| (
                    e.deadline,
                    e.timeout,
                    e.timer.is_some(),
                    e.waited
                ))
            );
        }
    }
    assert_eq!(pool.open_count(), m.sockets.len(), "open sockets");
    assert_eq!(pool.pending_count(), m.pending.len(), "pending requests");
    pool.check_invariants();
}

/// Hits whose reserved socket died or expired before delivery: they wait
/// again, their timeout counted from now, and are no longer served.
fn requeued(pool: &Pool<u64>, m: &mut Model) {
    // A cache hit has no deadline (it did not wait); if its socket dies
    // before delivery it waits again, and its timeout counts from then.
    for (id, p) in &mut m.pending {
        let Some(e) = pool.requests.get(id.index as usize) else {
            continue;
        };
        if e.generation == id.generation && e.deadline != Millis::MAX && e.deadline != p.2 {
            let fresh = match e.timeout {
                0 => m.now.saturating_sub(1),
                t => m.now + t,
            };
            assert_eq!(e.deadline, fresh, "{id:?}: a requeued hit counts from now");
            p.2 = fresh;
        }
    }
    // A served request whose reserved socket died waits again.
    m.served.retain(|id| {
        !pool.requests.get(id.index as usize).is_some_and(|e| {
            e.generation == id.generation && matches!(e.state, RequestState::Waiting)
        })
    });
}

/// Carries out the pool's commands as the driver would, checks each close
/// has its one reason event, and that what was served kept FIFO order.
fn absorb(pool: &mut Pool<u64>, m: &mut Model) {
    let mut served = Vec::new();
    let mut closed = Vec::new();
    // Commands first (the driver runs them right after each input).
    while let Some(command) = pool.poll_command() {
        match command {
            Command::Connect { slot, addr, .. } => {
                m.connect(slot, addr.port());
                if let Some(SlotState::Connecting { request: Some(r) }) =
                    pool.slots.get(slot.index as usize).map(|s| s.state)
                {
                    served.push(r);
                }
            }
            Command::Close { slot } => {
                m.close(slot);
                closed.push(slot);
            }
        }
    }
    // Every close has exactly one reason event, and no reason event lacks a
    // close.
    let mut reasons = Vec::new();
    while let Some((slot, _, change)) = pool.poll_lifecycle() {
        if let Change::Closed(reason) = change {
            reasons.push((slot, reason));
        }
    }
    let mut reason_slots: Vec<SlotId> = reasons.iter().map(|&(s, _)| s).collect();
    reason_slots.sort_by_key(|s| (s.index, s.generation));
    closed.sort_by_key(|s| (s.index, s.generation));
    assert_eq!(reason_slots, closed, "close reason events vs closes");
    m.closes += closed.len() as u64;
    assert_eq!(
        pool.stats().counters.closes_total(),
        m.closes,
        "close counters vs closes"
    );
    // Cache hits: reserved requests are served too.
    for (i, r) in pool.requests.iter() {
        if matches!(
            r.state,
            RequestState::Reserved {
                from_cache: Some(_),
                ..
            }
        ) {
            served.push(i as u32);
        }
    }
    // FIFO per key: nothing served while an earlier request of its key waits.
    for r in served {
        let Some(entry) = pool.requests.get(r as usize) else {
            continue;
        };
        let id = RequestId {
            reactor: pool.pool_id,
            index: r,
            generation: entry.generation,
        };
        if !m.served.insert(id) {
            continue; // served in an earlier step, not yet drained
        }
        let Some(&(_, key, deadline, order)) = m.pending.get(&id) else {
            continue;
        };
        // A zero timeout's deadline is 1 ms back; a cache hit still serves it.
        assert!(
            deadline + 1 >= m.now,
            "{id:?} served at {} after its deadline {deadline}",
            m.now
        );
        for (other, &(_, other_key, _, other_order)) in &m.pending {
            let waiting = pool.requests.get(other.index as usize).is_some_and(|e| {
                e.generation == other.generation && matches!(e.state, RequestState::Waiting)
            });
            assert!(
                !(other_key == key && other_order < order && waiting),
                "{id:?} served while earlier {other:?} of key {key} waits"
            );
        }
    }
}

/// The policies a run uses besides the original's limits.
#[derive(Clone, Copy, Debug)]
struct Policies {
    keep_alive: Option<u64>,
    max_lifetime: Option<u64>,
    max_uses: Option<u32>,
    jitter: u64,
    max_idle_per_key: Option<usize>,
    max_pending_per_key: Option<usize>,
    max_pending: Option<usize>,
}

fn policies() -> impl Strategy<Value = Policies> {
    (
        prop::option::weighted(0.9, 1u64..3_000),
        prop::option::weighted(0.3, 1u64..5_000),
        prop::option::weighted(0.3, 1u32..4),
        prop_oneof![Just(0u64), 0u64..500],
        prop::option::weighted(0.3, 1usize..3),
        prop::option::weighted(0.3, 0usize..3),
        prop::option::weighted(0.2, 0usize..4),
    )
        .prop_map(
            |(
                keep_alive,
                max_lifetime,
                max_uses,
                jitter,
                max_idle_per_key,
                max_pending_per_key,
                max_pending,
            )| {
                Policies {
                    keep_alive,
                    max_lifetime,
                    max_uses,
                    jitter,
                    max_idle_per_key,
                    max_pending_per_key,
                    max_pending,
                }
            },
        )
}

fn run(max_per_host: usize, max_open: usize, p: Policies, ops: &[Op]) {
    let limits = Limits {
        max_per_host,
        max_open,
        keep_alive: p.keep_alive,
        timeout: 5_000,
        bind_address: None,
        max_lifetime: p.max_lifetime,
        max_uses: p.max_uses,
        jitter: p.jitter,
        max_idle_per_key: p.max_idle_per_key,
        max_pending_per_key: p.max_pending_per_key,
        max_pending: p.max_pending,
        lifecycle_events: true,
    };
    let mut pool = Pool::new(limits);
    let mut m = Model {
        max_per_host,
        max_open,
        now: 0,
        sockets: HashMap::new(),
        lent: HashSet::new(),
        pending: HashMap::new(),
        deallocated: HashSet::new(),
        served: HashSet::new(),
        contexts_out: HashSet::new(),
        next_ctx: 0,
        shut_down: false,
        closes: 0,
        gone: HashSet::new(),
        fresh: HashSet::new(),
    };
    for op in ops {
        step(&mut pool, &mut m, op);
    }
    // The end: shut down, take every outcome, give every connection back.
    step(&mut pool, &mut m, &Op::Shutdown);
    step(&mut pool, &mut m, &Op::Drain);
    while !m.lent.is_empty() {
        step(
            &mut pool,
            &mut m,
            &Op::Return {
                pick: 0,
                reusable: true,
                late: 0,
            },
        );
    }
    assert!(
        m.contexts_out.is_empty(),
        "contexts never returned: {:?}",
        m.contexts_out
    );
    assert!(m.sockets.is_empty(), "sockets left open: {:?}", m.sockets);
    assert_eq!(pool.wheel.len(), 0, "timers left");
}

proptest! {
    // 512 cases by default (about a second); PROPTEST_CASES=N searches deeper.
    // Failures are kept beside this file (model.proptest-regressions).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn pool_keeps_its_promises(
        max_per_host in 1usize..=3,
        max_open in 1usize..=5,
        policies in policies(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        run(max_per_host, max_open, policies, &ops);
    }
}
