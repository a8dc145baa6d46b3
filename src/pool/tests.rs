//! Deterministic tests of the pool core on a fake millisecond clock. Every
//! deadline is checked on both sides: nothing at `deadline - 1`, the effect
//! at `deadline`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::*;
use crate::error::Function;
use crate::lifecycle::{Change, CloseReason};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn limits(max_per_host: usize, max_open: usize) -> Limits {
    Limits {
        max_per_host,
        max_open,
        keep_alive: Some(15_000),
        timeout: 120_000,
        bind_address: None,
        max_lifetime: None,
        max_uses: None,
        jitter: 0,
        max_idle_per_key: None,
        max_pending_per_key: None,
        max_pending: None,
        lifecycle_events: true,
    }
}

/// A pool, its clock, and shorthand for the driver's side of the contract.
struct Harness {
    pool: Pool<u64>,
    now: Millis,
}

/// What an outcome said, without the moved values.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Deliver {
        ctx: u64,
        slot: SlotId,
        from_cache: Option<FromCache>,
    },
    Fail {
        ctx: u64,
        function: Function,
        errno: Option<i32>,
    },
}

impl Harness {
    fn new(limits: Limits) -> Harness {
        Harness {
            pool: Pool::new(limits),
            now: 0,
        }
    }

    fn alloc(&mut self, port: u16, ctx: u64) -> RequestId {
        self.alloc_req(Request::new("http", LOCAL, port, ctx))
    }

    fn alloc_timeout(&mut self, port: u16, ctx: u64, ms: u64) -> RequestId {
        self.alloc_req(Request::new("http", LOCAL, port, ctx).timeout(Duration::from_millis(ms)))
    }

    fn alloc_req(&mut self, req: Request<u64>) -> RequestId {
        let now = self.now;
        let id = self.pool.allocate(req, now, || now).unwrap();
        self.pool.check_invariants();
        id
    }

    fn commands(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.pool.poll_command()).collect()
    }

    /// The single Connect command expected now.
    fn connect_cmd(&mut self) -> SlotId {
        match self.commands().as_slice() {
            [Command::Connect { slot, .. }] => *slot,
            other => panic!("expected one connect, got {other:?}"),
        }
    }

    fn outcomes(&mut self) -> Vec<Seen> {
        let seen = std::iter::from_fn(|| self.pool.poll_outcome(self.now))
            .map(|o| match o {
                PoolOutcome::Deliver {
                    slot,
                    from_cache,
                    context,
                    ..
                } => Seen::Deliver {
                    ctx: context,
                    slot,
                    from_cache,
                },
                PoolOutcome::Fail { context, error, .. } => Seen::Fail {
                    ctx: context,
                    function: error.function(),
                    errno: error.errno(),
                },
            })
            .collect();
        self.pool.check_invariants();
        seen
    }

    fn connected(&mut self, slot: SlotId) {
        self.pool.handle_connected(slot, self.now);
        self.pool.check_invariants();
    }

    /// A connection comes back, and a tick follows at once (the driver
    /// stamps idle expiry at its next tick).
    fn returned(&mut self, slot: SlotId, reusable: bool) {
        let now = self.now;
        self.pool.handle_returned(slot, reusable, now, || now);
        self.pool.check_invariants();
        self.pool.stamp_idle(self.now);
        self.pool.check_invariants();
    }

    /// Deallocates on the tick's time, which is the real time too.
    fn dealloc(&mut self, id: RequestId) -> Result<u64, Error> {
        let now = self.now;
        self.pool.deallocate(id, now, || now)
    }

    /// Purges on the tick's time, which is the real time too.
    fn purge(&mut self, target: &Target) -> (usize, usize) {
        let now = self.now;
        self.pool.purge(target, now, || now)
    }

    /// A tick at `now`.
    fn at(&mut self, now: Millis) {
        self.now = now;
        self.pool.stamp_idle(now);
        self.pool.handle_timeout(now);
        self.pool.check_invariants();
    }

    /// Allocates on `port`, connects, delivers: a lent slot.
    fn lend_new(&mut self, port: u16, ctx: u64) -> SlotId {
        self.alloc(port, ctx);
        let slot = self.connect_cmd();
        self.connected(slot);
        assert_eq!(
            self.outcomes(),
            vec![Seen::Deliver {
                ctx,
                slot,
                from_cache: None
            }]
        );
        slot
    }
}

/// A refused connect, as the driver reports one.
fn refused() -> ConnectError {
    ConnectError::from_errno(Function::Connect, libc::ECONNREFUSED)
}

fn timed_out(ctx: u64) -> Seen {
    Seen::Fail {
        ctx,
        function: Function::Connect,
        errno: Some(libc::ETIMEDOUT),
    }
}

#[test]
fn new_connection_then_immediate_reuse() {
    let mut h = Harness::new(limits(4, 128));
    let id = h.alloc(80, 1);
    let slot = match h.commands().as_slice() {
        [
            Command::Connect {
                slot,
                addr,
                bind: None,
            },
        ] => {
            assert_eq!(*addr, SocketAddr::new(LOCAL, 80));
            *slot
        }
        other => panic!("{other:?}"),
    };
    assert!(
        h.outcomes().is_empty(),
        "no outcome before the connect completes"
    );
    assert!(h.pool.is_pending(id));
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
    h.returned(slot, true);
    assert_eq!(h.pool.idle_count(), 1);

    h.alloc(80, 2);
    assert!(h.commands().is_empty(), "a cache hit opens nothing");
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 2,
            slot,
            from_cache: Some(FromCache::Immediate)
        }]
    );
    assert_eq!(h.pool.idle_count(), 0);
}

#[test]
fn keep_alive_expires_exactly_at_deadline() {
    let mut h = Harness::new(limits(4, 128));
    let slot = h.lend_new(80, 1);
    h.at(1_000);
    h.returned(slot, true);
    h.at(15_999);
    assert_eq!(h.pool.idle_count(), 1, "still idle 1 ms before keep_alive");
    assert!(h.commands().is_empty());
    h.at(16_000);
    assert_eq!(h.commands(), vec![Command::Close { slot }]);
    assert_eq!(h.pool.idle_count(), 0);
    assert_eq!(h.pool.open_count(), 0);
}

#[test]
fn reuse_restarts_keep_alive() {
    let mut h = Harness::new(limits(4, 128));
    let slot = h.lend_new(80, 1);
    h.returned(slot, true);
    h.at(10_000);
    h.alloc(80, 2);
    h.outcomes();
    h.returned(slot, true);
    h.at(24_999);
    assert_eq!(h.pool.idle_count(), 1);
    h.at(25_000);
    assert_eq!(h.pool.idle_count(), 0);
}

#[test]
fn connect_timeout_fires_exactly_at_deadline_and_closes_socket() {
    let mut h = Harness::new(limits(4, 128));
    h.at(500);
    h.alloc_timeout(80, 7, 5_000);
    let slot = h.connect_cmd();
    h.at(5_499);
    assert!(h.outcomes().is_empty());
    assert!(h.commands().is_empty());
    h.at(5_500);
    assert_eq!(h.commands(), vec![Command::Close { slot }]);
    assert_eq!(h.outcomes(), vec![timed_out(7)]);
    assert_eq!(h.pool.open_count(), 0);
}

#[test]
fn zero_timeout_fails_at_next_timeout_check_unless_idle() {
    let mut h = Harness::new(limits(4, 128));
    h.alloc_timeout(80, 1, 0);
    let _ = h.connect_cmd();
    h.at(0);
    assert_eq!(h.outcomes(), vec![timed_out(1)]);
    assert!(matches!(h.commands().as_slice(), [Command::Close { .. }]));

    let slot = h.lend_new(80, 2);
    h.returned(slot, true);
    h.alloc_timeout(80, 3, 0);
    h.at(0);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 3,
            slot,
            from_cache: Some(FromCache::Immediate)
        }]
    );
}

#[test]
fn timeout_counts_queue_wait() {
    let mut h = Harness::new(limits(1, 128));
    let slot = h.lend_new(80, 1);
    h.alloc_timeout(80, 2, 100);
    assert!(h.commands().is_empty(), "max_per_host 1: the second waits");
    h.at(99);
    assert!(h.outcomes().is_empty());
    h.at(100);
    assert_eq!(h.outcomes(), vec![timed_out(2)]);
    h.returned(slot, true);
    assert_eq!(h.pool.idle_count(), 1, "nobody waits any more");
}

#[test]
fn max_per_host_queues_fifo_and_reuse_is_deferred() {
    let mut h = Harness::new(limits(1, 128));
    let slot = h.lend_new(80, 1);
    h.alloc(80, 2);
    h.alloc(80, 3);
    h.alloc(81, 9);
    let other = h.connect_cmd();
    assert_ne!(other, slot, "another host is not held up");
    h.returned(slot, true);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 2,
            slot,
            from_cache: Some(FromCache::Deferred)
        }]
    );
    h.returned(slot, false);
    let fresh = match h.commands().as_slice() {
        [
            Command::Close { slot: closed },
            Command::Connect { slot: next, .. },
        ] => {
            assert_eq!(*closed, slot);
            *next
        }
        other => panic!("{other:?}"),
    };
    assert!(h.commands().is_empty());
    h.connected(fresh);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 3,
            slot: fresh,
            from_cache: None
        }]
    );
}

#[test]
fn max_open_one_second_request_is_deferred() {
    let mut h = Harness::new(limits(4, 1));
    let slot = h.lend_new(80, 1);
    h.alloc(80, 2);
    assert!(h.commands().is_empty());
    h.returned(slot, true);
    assert!(h.commands().is_empty(), "reused, not closed and reopened");
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
fn max_open_evicts_least_recently_used_idle_of_other_key() {
    let mut h = Harness::new(limits(4, 2));
    let a = h.lend_new(80, 1);
    let b = h.lend_new(81, 2);
    h.at(10);
    h.returned(a, true);
    h.at(20);
    h.returned(b, true);
    h.alloc(82, 3);
    match h.commands().as_slice() {
        [Command::Close { slot }, Command::Connect { addr, .. }] => {
            assert_eq!(*slot, a, "the least recently used idle socket goes");
            assert_eq!(addr.port(), 82);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.pool.idle_count(), 1);
}

#[test]
fn waiter_blocked_on_max_open_evicts_when_an_idle_socket_appears() {
    let mut h = Harness::new(limits(4, 1));
    let a = h.lend_new(80, 1);
    h.alloc(81, 2);
    assert!(h.commands().is_empty());
    h.returned(a, true);
    match h.commands().as_slice() {
        [Command::Close { slot }, Command::Connect { addr, .. }] => {
            assert_eq!(*slot, a);
            assert_eq!(addr.port(), 81);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn keys_blocked_on_max_open_are_served_in_order() {
    let mut h = Harness::new(limits(4, 1));
    let a = h.lend_new(80, 1);
    h.alloc(81, 2);
    h.alloc(82, 3);
    h.returned(a, false);
    match h.commands().as_slice() {
        [Command::Close { .. }, Command::Connect { addr, slot, .. }] => {
            assert_eq!(addr.port(), 81, "first blocked key first");
            h.pool.handle_connect_failed(*slot, refused(), h.now);
        }
        other => panic!("{other:?}"),
    }
    match h.commands().as_slice() {
        [Command::Close { .. }, Command::Connect { addr, .. }] => assert_eq!(addr.port(), 82),
        other => panic!("{other:?}"),
    }
    h.pool.check_invariants();
}

#[test]
fn mru_idle_socket_is_reused_first() {
    let mut h = Harness::new(limits(4, 128));
    let a = h.lend_new(80, 1);
    let b = h.lend_new(80, 2);
    h.returned(a, true);
    h.returned(b, true);
    h.alloc(80, 3);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 3,
            slot: b,
            from_cache: Some(FromCache::Immediate)
        }]
    );
}

#[test]
fn connect_failure_fails_request_and_serves_next_waiter() {
    let mut h = Harness::new(limits(1, 128));
    h.alloc(80, 1);
    h.alloc(80, 2);
    let slot = h.connect_cmd();
    h.pool.handle_connect_failed(slot, refused(), h.now);
    h.pool.check_invariants();
    let next = match h.commands().as_slice() {
        [
            Command::Close { slot: closed },
            Command::Connect { slot: next, .. },
        ] => {
            assert_eq!(*closed, slot);
            *next
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        h.outcomes(),
        vec![Seen::Fail {
            ctx: 1,
            function: Function::Connect,
            errno: Some(libc::ECONNREFUSED)
        }]
    );
    h.connected(next);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 2,
            slot: next,
            from_cache: None
        }]
    );
}

#[test]
fn deallocate_waiting_returns_context_and_no_outcome() {
    let mut h = Harness::new(limits(1, 128));
    let slot = h.lend_new(80, 1);
    let id = h.alloc(80, 2);
    assert_eq!(h.dealloc(id).unwrap(), 2);
    h.pool.check_invariants();
    assert!(matches!(h.dealloc(id), Err(Error::UnknownRequest(_))));
    h.returned(slot, true);
    h.at(200_000);
    assert!(h.outcomes().is_empty());
}

#[test]
fn deallocated_connect_that_completes_idles_for_the_next_request() {
    let mut h = Harness::new(limits(4, 128));
    let id = h.alloc(80, 1);
    let slot = h.connect_cmd();
    assert_eq!(h.dealloc(id).unwrap(), 1);
    h.pool.check_invariants();
    h.connected(slot);
    assert!(h.outcomes().is_empty());
    assert_eq!(h.pool.idle_count(), 1);
    h.alloc(80, 2);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 2,
            slot,
            from_cache: Some(FromCache::Immediate)
        }]
    );
}

#[test]
fn deallocated_connect_still_times_out_at_the_request_deadline() {
    let mut h = Harness::new(limits(4, 128));
    let id = h.alloc_timeout(80, 1, 300);
    let slot = h.connect_cmd();
    h.dealloc(id).unwrap();
    h.at(299);
    assert!(h.commands().is_empty());
    h.at(300);
    assert_eq!(h.commands(), vec![Command::Close { slot }]);
    assert!(h.outcomes().is_empty());
    assert_eq!(h.pool.open_count(), 0);
}

#[test]
fn deallocate_after_cache_hit_puts_socket_back() {
    let mut h = Harness::new(limits(4, 128));
    let slot = h.lend_new(80, 1);
    h.returned(slot, true);
    let id = h.alloc(80, 2);
    assert_eq!(h.pool.idle_count(), 0, "reserved");
    assert_eq!(h.dealloc(id).unwrap(), 2);
    h.pool.check_invariants();
    assert_eq!(h.pool.idle_count(), 1);
    assert!(h.outcomes().is_empty());
}

#[test]
fn reserved_socket_that_dies_before_delivery_is_replaced() {
    let mut h = Harness::new(limits(4, 128));
    let a = h.lend_new(80, 1);
    let b = h.lend_new(80, 2);
    h.returned(a, true);
    h.returned(b, true);
    h.alloc(80, 3); // reserves b (MRU)
    h.pool.handle_dead(b, CloseReason::PeerClosed, h.now);
    h.pool.check_invariants();
    assert_eq!(h.commands(), vec![Command::Close { slot: b }]);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 3,
            slot: a,
            from_cache: Some(FromCache::Immediate)
        }]
    );

    h.returned(a, true);
    h.alloc(80, 4);
    h.pool.handle_dead(a, CloseReason::PeerClosed, h.now);
    h.pool.check_invariants();
    let slot = match h.commands().as_slice() {
        [Command::Close { slot }, Command::Connect { slot: new, .. }] => {
            assert_eq!(*slot, a);
            *new
        }
        other => panic!("{other:?}"),
    };
    assert!(h.outcomes().is_empty(), "no dead socket is delivered");
    h.connected(slot);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 4,
            slot,
            from_cache: None
        }]
    );
}

#[test]
fn idle_socket_closed_by_peer_frees_capacity() {
    let mut h = Harness::new(limits(4, 1));
    let a = h.lend_new(80, 1);
    h.returned(a, true);
    h.pool.handle_dead(a, CloseReason::PeerClosed, h.now);
    h.pool.check_invariants();
    assert_eq!(h.commands(), vec![Command::Close { slot: a }]);
    assert_eq!(h.pool.open_count(), 0);
}

#[test]
fn returned_unclean_connection_is_closed() {
    let mut h = Harness::new(limits(4, 128));
    let a = h.lend_new(80, 1);
    h.returned(a, false);
    assert_eq!(h.commands(), vec![Command::Close { slot: a }]);
    assert_eq!(h.pool.idle_count(), 0);
    h.alloc(80, 2);
    assert!(matches!(h.commands().as_slice(), [Command::Connect { .. }]));
}

#[test]
fn different_targets_never_share() {
    let mut h = Harness::new(limits(4, 128));
    let a = h.lend_new(80, 1);
    h.returned(a, true);
    h.alloc_req(Request::new("https", LOCAL, 80, 2));
    h.alloc_req(Request::new("http", LOCAL, 80, 3).tag("tunnel"));
    h.alloc_req(Request::new("http", LOCAL, 80, 4).bind_address(LOCAL));
    assert_eq!(h.commands().len(), 3, "three new connections");
    assert_eq!(h.pool.idle_count(), 1);
}

#[test]
fn a_unix_path_is_a_key_with_no_port_and_no_bind() {
    let path = std::path::Path::new("/run/app.sock");
    let mut config = limits(1, 128);
    config.bind_address = Some(LOCAL);
    let mut h = Harness::new(config);
    // Port 0 is a path's only port; the configured IP bind is not applied.
    h.alloc_req(Request::unix("http", path, 1));
    let slot = h.connect_cmd();
    assert_eq!(h.pool.target(slot).map(|t| t.bind), Some(None));
    h.connected(slot);
    h.outcomes();
    h.returned(slot, true);
    // The same path reuses it, a one-byte-longer path does not.
    h.alloc_req(Request::unix("http", path, 2));
    assert!(h.commands().is_empty());
    h.alloc_req(Request::unix(
        "http",
        std::path::Path::new("/run/app.sock2"),
        3,
    ));
    assert_eq!(h.commands().len(), 1);
    // An explicit bind address is refused, with the request.
    let err = h
        .pool
        .allocate(Request::unix("http", path, 4).bind_address(LOCAL), 0, || 0)
        .unwrap_err();
    assert!(matches!(err.error, Error::InvalidRequest { reason } if reason.contains("bind")));
    assert_eq!(err.into_request().into_context(), 4);
}

#[test]
fn shutdown_fails_pending_closes_idle_and_refuses_new() {
    let mut h = Harness::new(limits(1, 128));
    let lent = h.lend_new(80, 1);
    let idle = h.lend_new(81, 2);
    h.returned(idle, true);
    h.alloc(80, 3); // waits
    h.alloc(82, 4); // connecting
    let connecting = h.connect_cmd();
    h.pool.shutdown();
    h.pool.check_invariants();
    let mut closes = h.commands();
    closes.sort_by_key(|c| format!("{c:?}"));
    let mut want = vec![
        Command::Close { slot: idle },
        Command::Close { slot: connecting },
    ];
    want.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(closes, want);
    let mut seen = h.outcomes();
    seen.sort_by_key(|s| format!("{s:?}"));
    let cancelled = |ctx| Seen::Fail {
        ctx,
        function: Function::Shutdown,
        errno: Some(libc::ECANCELED),
    };
    assert_eq!(seen, vec![cancelled(3), cancelled(4)]);
    let err = h
        .pool
        .allocate(Request::new("http", LOCAL, 80, 5), h.now, || 0)
        .unwrap_err();
    assert!(matches!(err.error, Error::ShutDown));
    assert_eq!(err.into_request().into_context(), 5);
    h.returned(lent, true);
    assert_eq!(
        h.commands(),
        vec![Command::Close { slot: lent }],
        "lent sockets close on return"
    );
    assert_eq!(h.pool.open_count(), 0);
}

#[test]
fn invalid_requests_are_refused_with_the_request() {
    let mut h = Harness::new(limits(1, 128));
    let err = h
        .pool
        .allocate(Request::new("", LOCAL, 80, 1), 0, || 0)
        .unwrap_err();
    assert!(matches!(err.error, Error::InvalidRequest { .. }));
    let err = h
        .pool
        .allocate(Request::new("http", LOCAL, 0, 2), 0, || 0)
        .unwrap_err();
    assert!(matches!(err.error, Error::InvalidRequest { .. }));
    assert_eq!(err.into_request().into_context(), 2);
    let err = h
        .pool
        .allocate(
            Request::new("http", LOCAL, 80, 3).timeout(Duration::from_secs(u64::MAX / 2)),
            0,
            || 0,
        )
        .unwrap_err();
    assert!(matches!(err.error, Error::InvalidRequest { .. }));
    assert_eq!(h.pool.pending_count(), 0);
}

#[test]
fn stale_ids_are_rejected() {
    let mut h = Harness::new(limits(4, 128));
    let id = h.alloc(80, 1);
    let slot = h.connect_cmd();
    h.connected(slot);
    h.outcomes();
    assert!(matches!(h.dealloc(id), Err(Error::UnknownRequest(got)) if got == id));
    let reuse = h.alloc(81, 2);
    assert_eq!(reuse.index, id.index, "slab reuses the index");
    assert!(
        matches!(h.dealloc(id), Err(Error::UnknownRequest(_))),
        "old generation"
    );
    assert_eq!(h.dealloc(reuse).unwrap(), 2);
}

#[test]
fn keys_are_forgotten_when_empty() {
    let mut h = Harness::new(limits(4, 128));
    for port in 1..=100 {
        let slot = h.lend_new(port, u64::from(port));
        h.returned(slot, false);
        h.commands();
    }
    assert_eq!(h.pool.keys.len(), 0);
    assert_eq!(h.pool.key_index.len(), 0);
}

#[test]
fn default_bind_address_applies_unless_request_sets_one() {
    let mut l = limits(4, 128);
    l.bind_address = Some(LOCAL);
    let mut h = Harness::new(l);
    h.alloc(80, 1);
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    h.alloc_req(Request::new("http", LOCAL, 80, 2).bind_address(other));
    let binds: Vec<_> = h
        .commands()
        .into_iter()
        .map(|c| match c {
            Command::Connect { bind, .. } => bind,
            Command::Close { .. } => panic!("close"),
        })
        .collect();
    assert_eq!(binds, vec![Some(LOCAL), Some(other)]);
}

#[test]
fn reserved_socket_dying_after_the_deadline_times_the_request_out() {
    // Found by the model test: the replacement must not start a connect past
    // the request's deadline.
    let mut h = Harness::new(limits(1, 2));
    h.alloc_timeout(80, 1, 100);
    let slot = h.connect_cmd();
    h.connected(slot); // reserved, not yet drained
    h.at(100);
    assert!(
        h.commands().is_empty(),
        "a reserved request has no running timeout"
    );
    h.pool.handle_dead(slot, CloseReason::PeerClosed, h.now);
    h.pool.check_invariants();
    assert_eq!(h.commands(), vec![Command::Close { slot }], "no reconnect");
    assert_eq!(h.outcomes(), vec![timed_out(1)]);
}

// ----- a deadline that has passed wins -----------------------------------
//
// The driver handles a tick's readiness before its timers, with the input
// time rounded up; the core must time a request out whichever it sees first.

#[test]
fn connect_completing_after_the_deadline_times_out_and_pools_the_connection() {
    let mut h = Harness::new(limits(4, 128));
    h.alloc_timeout(80, 1, 100);
    let slot = h.connect_cmd();
    // Same tick, readiness first: the connect completed, the deadline passed.
    h.now = 101;
    h.connected(slot);
    assert_eq!(h.outcomes(), vec![timed_out(1)]);
    assert_eq!(h.pool.idle_count(), 1, "the late connection is pooled");
    h.at(101);
    assert!(h.outcomes().is_empty(), "exactly one outcome");
    assert!(h.commands().is_empty(), "not closed");
    h.alloc(80, 2);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 2,
            slot,
            from_cache: Some(FromCache::Immediate)
        }]
    );
}

#[test]
fn connect_completing_at_the_deadline_minus_one_is_delivered() {
    let mut h = Harness::new(limits(4, 128));
    h.alloc_timeout(80, 1, 100);
    let slot = h.connect_cmd();
    h.now = 99;
    h.connected(slot);
    h.at(99);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 1,
            slot,
            from_cache: None
        }]
    );
}

#[test]
fn deadline_firing_before_the_connect_is_seen_times_out_once() {
    let mut h = Harness::new(limits(4, 128));
    h.alloc_timeout(80, 1, 100);
    let slot = h.connect_cmd();
    // Timers first: the half-open socket is closed, so the late readiness
    // names a slot that no longer exists and is ignored.
    h.at(100);
    assert_eq!(h.outcomes(), vec![timed_out(1)]);
    assert_eq!(h.commands(), vec![Command::Close { slot }]);
    h.connected(slot);
    assert!(h.outcomes().is_empty(), "exactly one outcome");
    assert_eq!(h.pool.open_count(), 0);
}

#[test]
fn zero_timeout_connect_completing_in_the_first_tick_times_out() {
    let mut h = Harness::new(limits(4, 128));
    h.at(50);
    h.alloc_timeout(80, 1, 0);
    let slot = h.connect_cmd();
    // The connect completed before the first poll, in the same millisecond.
    h.connected(slot);
    h.at(50);
    assert_eq!(h.outcomes(), vec![timed_out(1)]);
    assert_eq!(h.pool.idle_count(), 1);
}

#[test]
fn connection_returned_after_a_waiters_deadline_goes_idle_not_to_the_waiter() {
    let mut h = Harness::new(limits(1, 128));
    let slot = h.lend_new(80, 1);
    h.alloc_timeout(80, 2, 100);
    // Returned in the tick its deadline passed, before its timer fired.
    h.now = 101;
    h.returned(slot, true);
    assert_eq!(h.outcomes(), vec![timed_out(2)]);
    assert_eq!(h.pool.idle_count(), 1);
    h.at(101);
    assert!(h.outcomes().is_empty(), "exactly one outcome");
}

#[test]
fn connection_returned_to_a_waiter_skips_the_keep_alive_timer() {
    let mut h = Harness::new(limits(1, 128));
    let slot = h.lend_new(80, 1);
    h.alloc_timeout(80, 2, 100);
    let timers = h.pool.wheel.len();
    h.now = 100;
    h.returned(slot, true);
    assert_eq!(
        h.pool.wheel.len(),
        timers - 1,
        "only the waiter's timeout went; no keep-alive timer was set"
    );
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 2,
            slot,
            from_cache: Some(FromCache::Deferred)
        }]
    );
}

/// Calls between ticks judge a waiter by the time of the call (`clock`),
/// not by the last tick's: a pause without polls must not let a freed
/// connection reach a waiter whose deadline passed meanwhile.
#[test]
fn a_connection_returned_between_ticks_judges_the_waiter_by_the_time_of_the_return() {
    for (returned_at, served) in [(100, true), (101, false)] {
        let mut h = Harness::new(limits(1, 128));
        let slot = h.lend_new(80, 1);
        h.alloc_timeout(80, 2, 100); // deadline 100
        // The last tick was at 0; the return comes at `returned_at`, and
        // the tick that delivers later still.
        h.pool.handle_returned(slot, true, 0, || returned_at);
        h.pool.check_invariants();
        h.now = returned_at + 50;
        let seen = h.outcomes();
        if served {
            assert_eq!(
                seen,
                vec![Seen::Deliver {
                    ctx: 2,
                    slot,
                    from_cache: Some(FromCache::Deferred)
                }],
                "decided before the deadline: served, however late the tick"
            );
        } else {
            assert_eq!(seen, vec![timed_out(2)], "a passed deadline wins");
            assert_eq!(h.pool.idle_count(), 1, "the connection idles");
        }
        h.at(returned_at + 50);
        assert!(h.outcomes().is_empty(), "exactly one outcome");
    }
}

#[test]
fn an_unusable_return_between_ticks_connects_only_for_a_waiter_still_in_time() {
    for (returned_at, connects) in [(100, true), (101, false)] {
        let mut h = Harness::new(limits(1, 128));
        let slot = h.lend_new(80, 1);
        h.alloc_timeout(80, 2, 100);
        h.pool.handle_returned(slot, false, 0, || returned_at);
        h.pool.check_invariants();
        let commands = h.commands();
        assert_eq!(commands.first(), Some(&Command::Close { slot }));
        assert_eq!(commands.len() == 2, connects, "{commands:?}");
        h.now = returned_at;
        let seen = h.outcomes();
        assert_eq!(seen.is_empty(), connects, "{seen:?}");
    }
}

#[test]
fn a_hit_deallocated_between_ticks_judges_the_waiter_by_the_time_of_the_call() {
    for (called_at, served) in [(100, true), (101, false)] {
        let mut h = Harness::new(limits(1, 128));
        let slot = h.lend_new(80, 1);
        h.returned(slot, true);
        let hit = h.alloc(80, 2); // reserved, not delivered
        h.alloc_timeout(80, 3, 100); // waits: the key's one slot is taken
        assert_eq!(h.pool.deallocate(hit, 0, || called_at).unwrap(), 2);
        h.pool.check_invariants();
        h.now = called_at;
        let seen = h.outcomes();
        if served {
            assert_eq!(
                seen,
                vec![Seen::Deliver {
                    ctx: 3,
                    slot,
                    from_cache: Some(FromCache::Deferred)
                }]
            );
        } else {
            assert_eq!(seen, vec![timed_out(3)]);
            assert_eq!(h.pool.idle_count(), 1);
        }
    }
}

#[test]
fn a_return_or_deallocate_with_nobody_waiting_reads_no_clock() {
    let mut h = Harness::new(limits(4, 128));
    let slot = h.lend_new(80, 1);
    let no_clock = || -> Millis { panic!("read the clock with nobody waiting") };
    h.pool.handle_returned(slot, true, 0, no_clock);
    let hit = h.alloc(80, 2);
    assert_eq!(h.pool.deallocate(hit, 0, no_clock).unwrap(), 2);
    let connecting = h.alloc(81, 3);
    assert_eq!(h.pool.deallocate(connecting, 0, no_clock).unwrap(), 3);
    h.pool.check_invariants();
}

// ----- caller timers -------------------------------------------------------

#[test]
fn caller_timer_fires_at_its_deadline_not_before() {
    let mut h = Harness::new(limits(4, 128));
    h.at(100);
    let id = h.pool.set_caller_timer(350, 9);
    h.pool.check_invariants();
    // A lower bound (a wheel slot's start), never later than the deadline.
    assert!(
        h.pool
            .poll_timeout()
            .is_some_and(|t| (100..=350).contains(&t))
    );
    h.at(349);
    assert_eq!(h.pool.poll_expired(), None);
    h.at(350);
    assert_eq!(h.pool.poll_expired(), Some((id, 9)));
    assert_eq!(h.pool.poll_expired(), None);
    assert!(matches!(
        h.pool.cancel_caller_timer(id),
        Err(Error::UnknownTimer(_))
    ));
}

#[test]
fn caller_timers_share_the_wheel_with_pool_deadlines() {
    let mut h = Harness::new(limits(4, 128));
    let slot = h.lend_new(80, 1);
    h.returned(slot, true); // keep-alive expiry at 15 000
    let early = h.pool.set_caller_timer(10_000, 1);
    let late = h.pool.set_caller_timer(20_000, 2);
    assert!(h.pool.poll_timeout().is_some_and(|t| t <= 10_000));
    assert_eq!(h.pool.cancel_caller_timer(early).unwrap(), 1);
    h.pool.check_invariants();
    h.at(15_000);
    assert_eq!(h.commands(), vec![Command::Close { slot }]);
    assert_eq!(h.pool.poll_expired(), None);
    h.at(20_000);
    assert_eq!(h.pool.poll_expired(), Some((late, 2)));
}

#[test]
fn bounded_timeout_handling_leaves_the_rest_due() {
    let mut h = Harness::new(limits(4, 128));
    for v in 0..5 {
        h.pool.set_caller_timer(10, v);
    }
    h.now = 10;
    assert!(h.pool.handle_timeout_bounded(10, 3), "budget used up");
    assert_eq!(h.pool.poll_timeout(), Some(10), "the rest is still due");
    assert!(!h.pool.handle_timeout_bounded(10, 3));
    let values: Vec<u64> = std::iter::from_fn(|| h.pool.poll_expired())
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values.len(), 5);
    h.pool.check_invariants();
}

// ----- policies -----------------------------------------------------------

fn with(f: impl FnOnce(&mut Limits)) -> Harness {
    let mut l = limits(4, 128);
    f(&mut l);
    Harness::new(l)
}

fn closes(h: &mut Harness) -> Vec<CloseReason> {
    std::iter::from_fn(|| h.pool.poll_lifecycle())
        .filter_map(|(_, _, change)| match change {
            Change::Closed(reason) => Some(reason),
            _ => None,
        })
        .collect()
}

#[test]
fn lifetime_is_checked_at_return_on_both_sides_of_the_deadline() {
    let mut h = with(|l| l.max_lifetime = Some(1_000));
    let slot = h.lend_new(80, 1); // connected at 0
    h.now = 999;
    h.returned(slot, true);
    assert_eq!(h.pool.idle_count(), 1, "pooled 1 ms before its lifetime");
    h.alloc(80, 2);
    h.outcomes();
    h.now = 1_000;
    h.returned(slot, true);
    assert_eq!(h.commands(), vec![Command::Close { slot }]);
    assert_eq!(closes(&mut h), vec![CloseReason::Lifetime]);
    assert_eq!(h.pool.stats().counters.closes(CloseReason::Lifetime), 1);
}

#[test]
fn an_idle_connection_is_closed_when_its_lifetime_ends_before_its_keep_alive() {
    let mut h = with(|l| l.max_lifetime = Some(1_000));
    let slot = h.lend_new(80, 1);
    h.returned(slot, true);
    h.at(999);
    assert_eq!(h.pool.idle_count(), 1);
    h.at(1_000);
    assert_eq!(h.commands(), vec![Command::Close { slot }]);
    assert_eq!(closes(&mut h), vec![CloseReason::Lifetime]);
}

#[test]
fn uses_are_counted_and_the_last_allowed_use_closes_on_return() {
    let mut h = with(|l| l.max_uses = Some(2));
    let slot = h.lend_new(80, 1);
    h.returned(slot, true); // used once: pooled
    assert_eq!(h.pool.idle_count(), 1);
    h.alloc(80, 2);
    let outcome = std::iter::from_fn(|| h.pool.poll_outcome(h.now)).next();
    let Some(PoolOutcome::Deliver { checkout, .. }) = outcome else {
        panic!("no delivery")
    };
    assert_eq!(checkout.uses, 2);
    h.returned(slot, true); // used max_uses times: closed
    assert_eq!(h.commands(), vec![Command::Close { slot }]);
    assert_eq!(closes(&mut h), vec![CloseReason::Uses]);
}

#[test]
fn jitter_shortens_within_its_bound_and_never_lengthens() {
    let mut rng = policy::Rng::new(7);
    let draws: Vec<Millis> = (0..10_000).map(|_| rng.shorten(1_000, 200)).collect();
    assert!(
        draws.iter().all(|&d| (800..=1_000).contains(&d)),
        "out of bounds"
    );
    assert!(draws.iter().any(|&d| d < 820), "the low end is reached");
    assert!(draws.iter().any(|&d| d > 980), "the high end is reached");
    assert_eq!(rng.shorten(1_000, 0), 1_000, "no jitter, no change");
    assert!(
        (0..1_000).all(|_| rng.shorten(5, 1_000) >= 1),
        "never below 1 ms"
    );

    // Through the pool: 50 connections idle together expire apart, all
    // within [keep_alive - jitter, keep_alive].
    let mut h = with(|l| {
        l.max_per_host = 50;
        l.keep_alive = Some(1_000);
        l.jitter = 200;
    });
    let slots: Vec<SlotId> = (0..50).map(|i| h.lend_new(80, i)).collect();
    for &s in &slots {
        h.returned(s, true);
    }
    h.at(799);
    assert_eq!(
        h.pool.idle_count(),
        50,
        "nothing expires before keep_alive - jitter"
    );
    h.at(900);
    let early = 50 - h.pool.idle_count();
    assert!(early > 0 && early < 50, "{early} of 50 expired by 900 ms");
    h.at(1_000);
    assert_eq!(h.pool.idle_count(), 0, "all expired by keep_alive");
}

#[test]
fn idle_overflow_closes_the_keys_least_recently_used() {
    let mut h = with(|l| l.max_idle_per_key = Some(1));
    let a = h.lend_new(80, 1);
    let b = h.lend_new(80, 2);
    h.returned(a, true);
    assert!(h.commands().is_empty(), "at the limit: kept");
    h.returned(b, true);
    assert_eq!(
        h.commands(),
        vec![Command::Close { slot: a }],
        "over it: a goes"
    );
    let reasons: Vec<CloseReason> = closes(&mut h);
    assert_eq!(reasons, vec![CloseReason::IdleOverflow]);
    h.alloc(80, 3);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 3,
            slot: b,
            from_cache: Some(FromCache::Immediate)
        }]
    );
}

#[test]
fn keep_alive_none_never_expires() {
    let mut h = with(|l| l.keep_alive = None);
    let slot = h.lend_new(80, 1);
    h.returned(slot, true);
    assert_eq!(h.pool.poll_timeout(), None, "no timer at all");
    h.at(MAX_DELAY_MS);
    assert_eq!(h.pool.idle_count(), 1);
    h.pool.handle_dead(slot, CloseReason::PeerClosed, h.now);
    assert_eq!(h.pool.idle_count(), 0, "the peer still closes it");
}

fn queue_full() -> Seen {
    Seen::Fail {
        ctx: 0,
        function: Function::Queue,
        errno: Some(libc::EAGAIN),
    }
}

#[test]
fn the_key_queue_bound_holds_at_the_bound_and_refuses_one_past_it() {
    let mut h = with(|l| {
        l.max_per_host = 1;
        l.max_pending_per_key = Some(2);
    });
    let _lent = h.lend_new(80, 1);
    h.alloc(80, 2);
    h.alloc(80, 3);
    assert!(h.outcomes().is_empty(), "two wait: at the bound");
    h.alloc(80, 0);
    assert_eq!(h.outcomes(), vec![queue_full()], "the third fails at once");
    assert_eq!(h.pool.stats().total.waiting, 2);
    assert_eq!(h.pool.stats().counters.queue_overflows, 1);
    assert_eq!(h.pool.stats().counters.failures(Function::Queue), 1);
    // Another key's queue is its own.
    h.alloc(81, 4);
    assert!(h.outcomes().is_empty());
}

#[test]
fn the_global_queue_bound_counts_every_key() {
    let mut h = with(|l| {
        l.max_per_host = 1;
        l.max_pending = Some(2);
    });
    let _a = h.lend_new(80, 1);
    let _b = h.lend_new(81, 2);
    h.alloc(80, 3);
    h.alloc(81, 4);
    assert!(h.outcomes().is_empty());
    h.alloc(80, 0);
    assert_eq!(h.outcomes(), vec![queue_full()]);
}

#[test]
fn purge_closes_idle_and_marks_busy_connections() {
    let mut h = with(|_| {});
    let idle = h.lend_new(80, 1);
    let lent = h.lend_new(80, 2);
    let other = h.lend_new(81, 3);
    h.returned(idle, true);
    h.returned(other, true);
    closes(&mut h);
    let target = Request::new("http", LOCAL, 80, ()).target().clone();
    assert_eq!(h.purge(&target), (1, 1));
    assert_eq!(h.commands(), vec![Command::Close { slot: idle }]);
    h.returned(lent, true);
    assert_eq!(h.commands(), vec![Command::Close { slot: lent }]);
    assert_eq!(
        closes(&mut h),
        vec![CloseReason::Purged, CloseReason::Purged]
    );
    assert_eq!(
        h.pool.idle_count(),
        1,
        "another key's idle connection stays"
    );
    h.alloc(80, 4);
    assert!(matches!(h.commands().as_slice(), [Command::Connect { .. }]));
}

#[test]
fn an_address_gone_closes_an_idle_connection_now_and_a_lent_one_on_return() {
    let mut h = with(|_| {});
    let idle = h.lend_new(80, 1);
    let lent = h.lend_new(80, 2);
    h.returned(idle, true);
    closes(&mut h);
    h.pool.handle_address_gone(idle, h.now);
    h.pool.handle_address_gone(lent, h.now);
    h.pool.check_invariants();
    assert_eq!(h.commands(), vec![Command::Close { slot: idle }]);
    assert_eq!(closes(&mut h), vec![CloseReason::AddressGone]);
    h.returned(lent, true);
    assert_eq!(h.commands(), vec![Command::Close { slot: lent }]);
    assert_eq!(closes(&mut h), vec![CloseReason::AddressGone]);
    let stats = h.pool.stats();
    assert_eq!(stats.counters.closes(CloseReason::AddressGone), 2);
    assert_eq!((stats.total.lent, stats.total.idle), (0, 0));
    // New requests connect anew.
    h.alloc(80, 3);
    assert!(matches!(h.commands().as_slice(), [Command::Connect { .. }]));
}

#[test]
fn an_address_gone_under_an_undelivered_hit_serves_the_request_again() {
    let mut h = with(|_| {});
    let slot = h.lend_new(80, 1);
    h.returned(slot, true);
    h.alloc(80, 2);
    h.commands();
    h.pool.handle_address_gone(slot, h.now);
    h.pool.check_invariants();
    let cmds = h.commands();
    assert_eq!(cmds.first(), Some(&Command::Close { slot }));
    assert!(
        matches!(cmds.get(1), Some(Command::Connect { .. })),
        "the request connects anew: {cmds:?}"
    );
    assert!(h.outcomes().is_empty(), "nothing handed out yet");
}

#[test]
fn a_purged_orphan_connect_is_closed_once_when_it_completes() {
    let mut h = with(|_| {});
    h.alloc(81, 9);
    let other = h.connect_cmd();
    let id = h.alloc(80, 1);
    let slot = h.connect_cmd();
    assert_eq!(h.dealloc(id).unwrap(), 1);
    let target = Request::new("http", LOCAL, 80, ()).target().clone();
    assert_eq!(h.purge(&target), (0, 1));
    closes(&mut h);
    h.connected(slot);
    assert_eq!(h.commands(), vec![Command::Close { slot }]);
    assert_eq!(closes(&mut h), vec![CloseReason::Purged]);
    let stats = h.pool.stats();
    assert_eq!(stats.total.connecting, 1, "only the other key's connect");
    assert_eq!((stats.total.lent, stats.total.idle), (0, 0));
    h.connected(other);
    assert_eq!(h.pool.stats().total.connecting, 0);
}

#[test]
fn a_purged_connect_completing_after_its_deadline_is_closed_once() {
    let mut h = with(|_| {});
    h.alloc_timeout(80, 1, 100);
    let slot = h.connect_cmd();
    let target = Request::new("http", LOCAL, 80, ()).target().clone();
    assert_eq!(h.purge(&target), (0, 1));
    closes(&mut h);
    // The connect completes in a tick past the deadline, before the timer.
    h.now = 101;
    h.connected(slot);
    assert_eq!(h.outcomes(), vec![timed_out(1)]);
    assert_eq!(h.commands(), vec![Command::Close { slot }]);
    assert_eq!(closes(&mut h), vec![CloseReason::Purged]);
    assert_eq!(h.pool.stats().total.connecting, 0);
    assert_eq!(h.pool.open_count(), 0);
}

#[test]
fn a_hit_decided_on_a_stale_tick_is_not_handed_out_past_its_keep_alive() {
    for (deliver_at, expired) in [(15_000, false), (15_001, true)] {
        let mut h = Harness::new(limits(4, 128));
        let slot = h.lend_new(80, 1);
        h.returned(slot, true); // idle from 0, keep-alive due at 15 000
        // No tick since: allocate judges with time 0 and reserves the slot;
        // the tick that delivers reads the clock at `deliver_at`.
        h.alloc(80, 2);
        h.now = deliver_at;
        let seen = h.outcomes();
        if !expired {
            assert_eq!(
                seen,
                vec![Seen::Deliver {
                    ctx: 2,
                    slot,
                    from_cache: Some(FromCache::Immediate)
                }],
                "at the deadline it is still good"
            );
            continue;
        }
        assert!(seen.is_empty(), "{seen:?}");
        let commands = h.commands();
        assert_eq!(commands.first(), Some(&Command::Close { slot }));
        let fresh = match commands.get(1) {
            Some(Command::Connect { slot, .. }) => *slot,
            other => panic!("expected a connect, got {other:?}"),
        };
        assert_eq!(closes(&mut h), vec![CloseReason::KeepAliveExpired]);
        h.connected(fresh);
        assert_eq!(
            h.outcomes(),
            vec![Seen::Deliver {
                ctx: 2,
                slot: fresh,
                from_cache: None
            }]
        );
    }
}

#[test]
fn a_hit_decided_on_a_stale_tick_is_not_handed_out_past_its_lifetime() {
    for (deliver_at, expired) in [(999, false), (1_000, true)] {
        let mut h = with(|l| l.max_lifetime = Some(1_000));
        let slot = h.lend_new(80, 1); // connected at 0: life ends at 1 000
        // Returned and allocated again on a tick time of 500, delivered at
        // `deliver_at`.
        h.now = 500;
        h.returned(slot, true);
        h.alloc(80, 2);
        h.now = deliver_at;
        let seen = h.outcomes();
        assert_eq!(seen.is_empty(), expired, "{seen:?}");
        if expired {
            assert_eq!(h.commands().first(), Some(&Command::Close { slot }));
            assert_eq!(closes(&mut h), vec![CloseReason::Lifetime]);
        }
    }
}

#[test]
fn a_connection_handed_straight_to_a_waiter_is_not_judged_by_an_old_idle_period() {
    let mut h = Harness::new(limits(1, 128));
    let slot = h.lend_new(80, 1);
    h.returned(slot, true); // idle; keep-alive due at 15 000
    h.alloc(80, 2);
    assert_eq!(h.outcomes().len(), 1, "reused at once");
    // Lent for longer than the old keep-alive, then handed to a waiter.
    h.now = 20_000;
    h.alloc(80, 3);
    h.returned(slot, true);
    assert_eq!(
        h.outcomes(),
        vec![Seen::Deliver {
            ctx: 3,
            slot,
            from_cache: Some(FromCache::Deferred)
        }]
    );
}

#[test]
fn lifecycle_events_tell_each_step_and_counters_add_up() {
    let mut h = with(|_| {});
    let slot = h.lend_new(80, 1);
    h.returned(slot, true);
    h.alloc(80, 2);
    h.outcomes();
    h.returned(slot, true);
    h.at(30_000);
    let changes: Vec<Change> = std::iter::from_fn(|| h.pool.poll_lifecycle())
        .map(|(s, addr, change)| {
            assert_eq!(s, slot);
            assert_eq!(addr.port(), 80);
            change
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            Change::Opened,
            Change::Parked,
            Change::Parked,
            Change::Closed(CloseReason::KeepAliveExpired)
        ]
    );
    let c = h.pool.stats().counters;
    assert_eq!((c.connected, c.immediate, c.deferred), (1, 1, 0));
    assert_eq!(c.closes_total(), 1);
}

#[test]
fn lifecycle_events_off_queue_nothing() {
    let mut h = with(|l| l.lifecycle_events = false);
    let slot = h.lend_new(80, 1);
    h.returned(slot, true);
    h.at(30_000);
    assert!(h.pool.poll_lifecycle().is_none());
    assert_eq!(
        h.pool
            .stats()
            .counters
            .closes(CloseReason::KeepAliveExpired),
        1,
        "counted all the same"
    );
}

#[test]
fn a_timer_owner_keeps_a_wheel_entry_at_24_bytes() {
    // A wheel entry is two u32 links, a u64 deadline and `Option<T>`
    // (src/wheel/mod.rs): 24 bytes only while the owner's `Option` fits in 8.
    assert_eq!(std::mem::size_of::<Option<TimerOwner>>(), 8);
}

mod checkout;

mod warm;
