//! The warm pool on the fake clock: top-up, backoff, limits, eviction.

use super::*;
use crate::pool::warm::{FIRST_BACKOFF, MAX_BACKOFF};

fn target(port: u16) -> Target {
    Request::new("http", LOCAL, port, ()).target().clone()
}

fn connects(h: &mut Harness) -> Vec<SlotId> {
    h.commands()
        .into_iter()
        .filter_map(|c| match c {
            Command::Connect { slot, .. } => Some(slot),
            _ => None,
        })
        .collect()
}

#[test]
fn keep_warm_opens_the_minimum_and_tops_up_what_is_taken() {
    let mut h = Harness::new(limits(4, 128));
    h.pool.keep_warm(target(80), 2, h.now);
    h.pool.check_invariants();
    let warm = connects(&mut h);
    assert_eq!(warm.len(), 2);
    for &slot in &warm {
        h.connected(slot);
    }
    assert!(h.outcomes().is_empty(), "no outcome for a warm connect");
    assert_eq!(h.pool.idle_count(), 2);
    // A burst takes both: cache hits, no connect.
    h.alloc(80, 1);
    h.alloc(80, 2);
    assert!(connects(&mut h).is_empty());
    assert_eq!(h.outcomes().len(), 2);
    // The next tick tops up.
    h.pool.top_up_warm(h.now);
    h.pool.check_invariants();
    assert_eq!(connects(&mut h).len(), 2);
    h.pool.top_up_warm(h.now);
    assert!(connects(&mut h).is_empty(), "connecting ones count");
}

#[test]
fn warming_stays_within_the_limits_and_never_evicts() {
    let mut h = Harness::new(limits(2, 3));
    h.pool.keep_warm(target(80), 5, h.now);
    assert_eq!(connects(&mut h).len(), 2, "max_per_host");
    // Another key's idle connection holds the last place under max_open.
    let other = h.lend_new(81, 1);
    h.returned(other, true);
    h.pool.keep_warm(target(82), 1, h.now);
    h.pool.top_up_warm(h.now);
    assert!(connects(&mut h).is_empty(), "no free place, no eviction");
    assert_eq!(h.pool.idle_count(), 1);
}

#[test]
fn a_request_evicts_a_warm_connection_like_any_idle_one() {
    let mut h = Harness::new(limits(4, 2));
    h.pool.keep_warm(target(80), 2, h.now);
    for slot in connects(&mut h) {
        h.connected(slot);
    }
    // A request of another key at max_open: the LRU idle one goes.
    h.alloc(81, 1);
    let commands = h.commands();
    assert!(
        matches!(
            commands.as_slice(),
            [Command::Close { .. }, Command::Connect { .. }]
        ),
        "{commands:?}"
    );
    assert_eq!(h.pool.counters.closes(CloseReason::Evicted), 1);
    // The warm key does not take the place back while it is used.
    h.pool.top_up_warm(h.now);
    assert!(connects(&mut h).is_empty());
}

#[test]
fn requests_waiting_come_before_warming() {
    let mut h = Harness::new(limits(1, 128));
    let slot = h.lend_new(80, 1);
    h.alloc(80, 2); // waits for the key's one place
    h.pool.keep_warm(target(80), 1, h.now);
    assert!(connects(&mut h).is_empty());
    h.returned(slot, true);
    assert_eq!(h.outcomes().len(), 1, "the waiter got it");
}

#[test]
fn failed_warm_connects_back_off_doubling() {
    let mut h = Harness::new(limits(4, 128));
    h.pool.keep_warm(target(80), 1, h.now);
    let mut backoff = FIRST_BACKOFF;
    for _ in 0..12 {
        let [slot] = connects(&mut h)[..] else {
            panic!("one warm connect")
        };
        let failed_at = h.now;
        h.pool.handle_connect_failed(slot, refused(), failed_at);
        h.pool.check_invariants();
        h.at(failed_at + backoff - 1);
        h.pool.top_up_warm(h.now);
        assert!(connects(&mut h).is_empty(), "retried before {backoff} ms");
        h.at(failed_at + backoff);
        h.pool.top_up_warm(h.now);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    assert_eq!(backoff, MAX_BACKOFF);
    // A success starts the backoff over.
    let [slot] = connects(&mut h)[..] else {
        panic!("one warm connect")
    };
    h.connected(slot);
    assert_eq!(h.pool.idle_count(), 1);
}

#[test]
fn purge_and_shutdown_stop_warming() {
    let mut h = Harness::new(limits(4, 128));
    h.pool.keep_warm(target(80), 1, h.now);
    for slot in connects(&mut h) {
        h.connected(slot);
    }
    h.purge(&target(80));
    h.pool.check_invariants();
    assert_eq!(h.pool.idle_count(), 0);
    h.pool.top_up_warm(h.now);
    assert!(connects(&mut h).is_empty(), "purged: no longer warm");
    h.pool.keep_warm(target(81), 1, h.now);
    assert_eq!(connects(&mut h).len(), 1);
    h.pool.shutdown();
    h.pool.top_up_warm(h.now);
    assert!(connects(&mut h).is_empty(), "shut down: nothing opens");
    assert!(!h.pool.has_warm_keys());
}

#[test]
fn preconnect_opens_once_and_keeps_nothing() {
    let mut h = Harness::new(limits(4, 128));
    assert_eq!(h.pool.preconnect(target(80), 3, h.now), 3);
    assert_eq!(
        h.pool.preconnect(target(80), 3, h.now),
        0,
        "three connecting"
    );
    for slot in connects(&mut h) {
        h.connected(slot);
    }
    h.alloc(80, 1);
    h.outcomes();
    h.pool.top_up_warm(h.now);
    assert!(connects(&mut h).is_empty(), "not kept warm");
    assert_eq!(h.pool.idle_count(), 2);
}
