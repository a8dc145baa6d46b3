//! `checkout_now` and fresh requests on the fake clock.

use super::*;

impl Harness {
    /// `checkout_now` with the driver's word that every socket is alive,
    /// the clock reading `clock`.
    fn checkout(&mut self, req: Request<u64>, clock: Millis) -> CheckedOut<u64> {
        let now = self.now;
        let checked = self
            .pool
            .checkout_now(req, now, || clock, |_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        self.pool.check_invariants();
        checked
    }
}

fn lent(checked: &CheckedOut<u64>) -> Option<(SlotId, u64)> {
    match checked {
        CheckedOut::Lent { slot, context, .. } => Some((*slot, *context)),
        CheckedOut::Pending(_) => None,
    }
}

#[test]
fn an_idle_connection_is_lent_at_once_and_counted_immediate() {
    let mut h = Harness::new(limits(4, 128));
    let slot = h.lend_new(80, 1);
    h.returned(slot, true);
    let checked = h.checkout(Request::new("http", LOCAL, 80, 2), h.now);
    assert_eq!(lent(&checked), Some((slot, 2)));
    assert!(h.commands().is_empty() && h.outcomes().is_empty());
    assert_eq!(h.pool.counters.immediate, 1);
    assert_eq!(h.pool.idle_count(), 0);
    // It comes back like any lent connection.
    h.returned(slot, true);
    assert_eq!(h.pool.idle_count(), 1);
}

#[test]
fn with_nothing_idle_the_request_is_allocated() {
    let mut h = Harness::new(limits(4, 128));
    let checked = h.checkout(Request::new("http", LOCAL, 80, 1), h.now);
    let CheckedOut::Pending(id) = checked else {
        panic!("lent from an empty pool")
    };
    let slot = h.connect_cmd();
    h.connected(slot);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 1,
            slot,
            from_cache: None
        }]
    );
    assert!(!h.pool.is_pending(id));
}

#[test]
fn a_waiter_ahead_is_served_first() {
    let mut h = Harness::new(limits(1, 128));
    let slot = h.lend_new(80, 1);
    // Waits for the one slot the key may have.
    h.alloc(80, 2);
    assert!(h.commands().is_empty());
    h.returned(slot, true);
    // The return went to the waiter; a checkout queues behind it.
    assert!(lent(&h.checkout(Request::new("http", LOCAL, 80, 3), h.now)).is_none());
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 2,
            slot,
            from_cache: Some(FromCache::Deferred)
        }]
    );
}

#[test]
fn a_connection_past_its_keep_alive_by_the_clock_is_closed_not_lent() {
    let mut h = Harness::new(limits(4, 128));
    let slot = h.lend_new(80, 1);
    h.returned(slot, true);
    // Keep-alive 15 s from the tick that stamped it (now = 0): the last
    // millisecond is still within it.
    let checked = h.checkout(Request::new("http", LOCAL, 80, 2), 15_000);
    assert_eq!(lent(&checked), Some((slot, 2)));
    h.returned(slot, true);
    // Returned at 0 again (no tick since), stamped at 0: at 15 001 by the
    // clock it is past, though no tick has run.
    let checked = h.checkout(Request::new("http", LOCAL, 80, 3), 15_001);
    assert!(lent(&checked).is_none(), "an expired connection lent");
    let commands = h.commands();
    assert!(
        matches!(commands.as_slice(), [Command::Close { slot: s }, Command::Connect { .. }] if *s == slot),
        "{commands:?}"
    );
    assert_eq!(h.pool.counters.closes(CloseReason::KeepAliveExpired), 1);
}

#[test]
fn a_connection_the_driver_finds_dead_is_closed_and_the_next_one_lent() {
    let mut h = Harness::new(limits(4, 128));
    let a = h.lend_new(80, 1);
    let b = h.lend_new(80, 2);
    h.returned(a, true);
    h.returned(b, true);
    // `b` is the warmest; the driver's peek says it is closed.
    let now = h.now;
    let checked = h
        .pool
        .checkout_now(
            Request::new("http", LOCAL, 80, 3),
            now,
            || now,
            |s| (s == b).then_some(CloseReason::PeerClosed),
        )
        .unwrap();
    h.pool.check_invariants();
    assert_eq!(lent(&checked), Some((a, 3)));
    assert!(matches!(h.commands().as_slice(), [Command::Close { slot }] if *slot == b));
}

#[test]
fn a_fresh_request_connects_though_a_connection_idles() {
    let mut h = Harness::new(limits(4, 128));
    let slot = h.lend_new(80, 1);
    h.returned(slot, true);
    let checked = h.checkout(Request::new("http", LOCAL, 80, 2).fresh(), h.now);
    assert!(lent(&checked).is_none());
    let new = h.connect_cmd();
    assert_ne!(new, slot);
    h.connected(new);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 2,
            slot: new,
            from_cache: None
        }]
    );
    assert_eq!(h.pool.idle_count(), 1, "the idle one stays for others");
    // Through `allocate` too.
    h.alloc_req(Request::new("http", LOCAL, 80, 3).fresh());
    assert!(matches!(h.commands().as_slice(), [Command::Connect { .. }]));
}

#[test]
fn a_returned_connection_does_not_serve_a_fresh_waiter_which_connects_instead() {
    let mut h = Harness::new(limits(1, 128));
    let slot = h.lend_new(80, 1);
    h.alloc_req(Request::new("http", LOCAL, 80, 2).fresh());
    assert!(h.commands().is_empty(), "waits for the key's one place");
    h.returned(slot, true);
    // The key's one place: the returned connection idles, is closed to
    // make room, and the fresh request connects.
    let commands = h.commands();
    let [
        Command::Close { slot: closed },
        Command::Connect { slot: new, .. },
    ] = commands.as_slice()
    else {
        panic!("{commands:?}")
    };
    assert_eq!(*closed, slot);
    assert_ne!(*new, slot);
    assert_eq!(h.pool.counters.closes(CloseReason::Evicted), 1);
}

#[test]
fn at_max_open_a_fresh_request_evicts_its_own_keys_idle_connection() {
    let mut h = Harness::new(limits(4, 1));
    let slot = h.lend_new(80, 1);
    h.returned(slot, true);
    h.alloc_req(Request::new("http", LOCAL, 80, 2).fresh());
    let commands = h.commands();
    assert!(
        matches!(commands.as_slice(), [Command::Close { slot: s }, Command::Connect { .. }] if *s == slot),
        "{commands:?}"
    );
}
