//! Pool policies and observability against real sockets: lifecycle events
//! with close reasons, checkout metadata, use limits, bounded queues, purge
//! and exact stats.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use keepalive::{
    Change, CloseReason, Config, Event, Events, FromCache, Function, KeyStats, Lifecycle, Reactor,
};

/// Takes the lifecycle events out of `events`, leaving the rest.
fn lifecycle(events: &mut Events<u32>) -> Vec<Lifecycle> {
    let mut out = Vec::new();
    let rest: Vec<Event<u32>> = events
        .drain()
        .filter_map(|e| match e {
            Event::Lifecycle(l) => {
                out.push(l);
                None
            }
            other => Some(other),
        })
        .collect();
    drop(rest);
    out
}

fn observed() -> Config {
    Config::default().with_lifecycle_events(true)
}

#[test]
fn lifecycle_events_and_checkout_metadata_follow_a_connection() {
    let server = Server::start();
    let mut ka: Reactor<u32> = reactor(observed().with_keep_alive(Duration::from_millis(60)));
    let mut events = Events::new();
    ka.allocate(request(server.port(), 1)).unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    let conn = outcome.result.unwrap();
    let id = conn.id();
    assert_eq!((conn.uses(), conn.idle_for()), (1, Duration::ZERO));
    ka.poll_events(&mut events).unwrap();
    ka.free(conn).unwrap();
    poll_for(&mut ka, &mut events, Duration::from_millis(20));
    let conn = connect(&mut ka, &mut events, request(server.port(), 2));
    assert_eq!(conn.id(), id);
    assert_eq!(conn.uses(), 2);
    assert!(
        conn.idle_for() >= Duration::from_millis(20),
        "{:?}",
        conn.idle_for()
    );
    assert!(conn.age() >= conn.idle_for());
    ka.free(conn).unwrap();
    poll_until(&mut ka, &mut events, "keep-alive expiry", |k| {
        k.idle_count() == 0
    });
    let mut changes = Vec::new();
    // `wait_outcome` and `connect` dropped events of earlier polls, so look
    // at what reached the buffer since: at least the last park and the close.
    for l in lifecycle(&mut events) {
        assert_eq!(l.conn, id);
        assert_eq!(l.peer.port(), server.port());
        changes.push(l.change);
    }
    assert_eq!(
        changes.last(),
        Some(&Change::Closed(CloseReason::KeepAliveExpired)),
        "{changes:?}"
    );
    let counters = ka.stats().counters;
    assert_eq!(counters.connected, 1);
    assert_eq!(counters.immediate, 1);
    assert_eq!(counters.closes(CloseReason::KeepAliveExpired), 1);
}

#[test]
fn what_a_free_did_is_reported_by_the_next_poll_without_a_wait() {
    // A free that parks one connection and closes another (its last use)
    // queues lifecycle changes between ticks: the next poll reports them at
    // once, not after its timeout or the next readiness.
    let server = Server::start();
    let mut ka: Reactor<u32> = reactor(observed().with_max_uses(2));
    let mut events = Events::new();
    let a = connect(&mut ka, &mut events, request(server.port(), 1));
    ka.free(a).unwrap();
    let long = Duration::from_secs(30);
    let start = Instant::now();
    ka.poll(&mut events, Some(long)).unwrap();
    let parked: Vec<Change> = lifecycle(&mut events)
        .into_iter()
        .map(|l| l.change)
        .collect();
    assert_eq!(parked, [Change::Parked]);
    let a = connect(&mut ka, &mut events, request(server.port(), 2));
    events.drain().for_each(drop);
    ka.free(a).unwrap();
    ka.poll(&mut events, Some(long)).unwrap();
    let closed: Vec<Change> = lifecycle(&mut events)
        .into_iter()
        .map(|l| l.change)
        .collect();
    assert_eq!(closed, [Change::Closed(CloseReason::Uses)]);
    assert!(start.elapsed() < long, "a poll waited out its timeout");
}

#[test]
fn closes_say_why_peer_closed_and_stray_data() {
    let server = Server::start();
    let mut ka: Reactor<u32> = reactor(observed());
    let mut events = Events::new();
    let a = connect(&mut ka, &mut events, request(server.port(), 1));
    let b = connect(&mut ka, &mut events, request(server.port(), 2));
    ka.free(a).unwrap();
    ka.free(b).unwrap();
    events.drain().for_each(drop);
    server.wait_accepted(2);
    server.send_unsolicited();
    poll_until(&mut ka, &mut events, "stray data to close both", |k| {
        k.idle_count() == 0
    });
    let reasons: Vec<Change> = lifecycle(&mut events)
        .into_iter()
        .map(|l| l.change)
        .filter(|c| matches!(c, Change::Closed(_)))
        .collect();
    assert_eq!(
        reasons,
        vec![Change::Closed(CloseReason::StrayData); 2],
        "{reasons:?}"
    );

    let c = connect(&mut ka, &mut events, request(server.port(), 3));
    ka.free(c).unwrap();
    events.drain().for_each(drop);
    server.wait_accepted(3);
    server.close_all();
    poll_until(&mut ka, &mut events, "the close to be seen", |k| {
        k.idle_count() == 0
    });
    let reasons: Vec<Change> = lifecycle(&mut events)
        .into_iter()
        .map(|l| l.change)
        .filter(|c| matches!(c, Change::Closed(_)))
        .collect();
    assert_eq!(reasons, vec![Change::Closed(CloseReason::PeerClosed)]);
    let counters = ka.stats().counters;
    assert_eq!(counters.closes(CloseReason::StrayData), 2);
    assert_eq!(counters.closes(CloseReason::PeerClosed), 1);
}

#[test]
fn max_uses_replaces_a_connection_after_its_last_use() {
    let server = Server::start();
    let mut ka: Reactor<u32> = reactor(Config::default().with_max_uses(2));
    let mut events = Events::new();
    for n in 0..5 {
        let mut conn = connect(&mut ka, &mut events, request(server.port(), n));
        assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
        ka.free(conn).unwrap();
    }
    server.assert_accepted(3); // 2 + 2 + 1 uses
    assert_eq!(ka.stats().counters.closes(CloseReason::Uses), 2);
}

#[test]
fn a_full_wait_queue_fails_the_request_at_once() {
    let server = Server::start();
    let config = Config::default()
        .with_max_per_host(1)
        .with_max_pending_per_key(1);
    let mut ka: Reactor<u32> = reactor(config);
    let mut events = Events::new();
    let lent = connect(&mut ka, &mut events, request(server.port(), 1));
    ka.allocate(request(server.port(), 2)).unwrap(); // waits: at the bound
    ka.allocate(request(server.port(), 3)).unwrap(); // one past it
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!(outcome.context, 3);
    let err = outcome.result.unwrap_err();
    assert_eq!(err.function(), Function::Queue);
    assert_eq!(err.errno(), Some(libc::EAGAIN));
    let stats = ka.stats();
    assert_eq!((stats.total.lent, stats.total.waiting), (1, 1));
    ka.free(lent).unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!(outcome.context, 2);
    assert_eq!(
        outcome.result.unwrap().from_cache(),
        Some(FromCache::Deferred)
    );
}

#[test]
fn purge_replaces_a_keys_connections() {
    let server = Server::start();
    let mut ka: Reactor<u32> = reactor(observed());
    let mut events = Events::new();
    let idle = connect(&mut ka, &mut events, request(server.port(), 1));
    let lent = connect(&mut ka, &mut events, request(server.port(), 2));
    let target = request(server.port(), 0u32).target().clone();
    ka.free(idle).unwrap();
    assert_eq!(ka.purge(&target), (1, 1));
    assert_eq!(ka.idle_count(), 0);
    ka.free(lent).unwrap();
    assert_eq!(ka.open_count(), 0, "the marked connection closed on return");
    let conn = connect(&mut ka, &mut events, request(server.port(), 3));
    assert_eq!(conn.from_cache(), None);
    assert_eq!(ka.stats().counters.closes(CloseReason::Purged), 2);
}

#[test]
fn purging_a_target_whose_connect_is_under_way_closes_it_once_it_completes() {
    let server = Server::start();
    let stuck = full_backlog();
    let mut ka: Reactor<u32> = reactor(observed());
    let mut events = Events::new();
    ka.allocate(request(stuck.addr.port(), 9)).unwrap(); // stays connecting
    let target = request(server.port(), 0u32).target().clone();
    let id = ka.allocate(request(server.port(), 1)).unwrap();
    assert_eq!(ka.deallocate(id).unwrap(), 1, "its connect carries on");
    assert_eq!(ka.purge(&target), (0, 1), "marked while connecting");
    let closed = loop {
        ka.poll(&mut events, Some(CAP)).unwrap();
        let closed: Vec<_> = lifecycle(&mut events)
            .into_iter()
            .filter_map(|l| match l.change {
                Change::Closed(reason) => Some(reason),
                _ => None,
            })
            .collect();
        if !closed.is_empty() {
            break closed;
        }
    };
    assert_eq!(closed, vec![CloseReason::Purged]);
    let stats = ka.stats();
    assert_eq!(
        (stats.total.connecting, stats.total.lent, stats.total.idle),
        (1, 0, 0),
        "only the stuck connect is left"
    );
    assert_eq!(ka.open_count(), 1);
}

#[test]
fn stats_are_exact_in_total_and_per_key() {
    let a = Server::start();
    let b = Server::start();
    let stuck = full_backlog();
    let mut ka: Reactor<u32> = reactor(Config::default().with_max_per_host(1));
    let mut events = Events::new();
    let lent = connect(&mut ka, &mut events, request(a.port(), 1));
    let idle = connect(&mut ka, &mut events, request(b.port(), 2));
    ka.free(idle).unwrap();
    ka.allocate(request(a.port(), 3)).unwrap(); // waits behind `lent`
    ka.allocate(request(stuck.addr.port(), 4)).unwrap(); // connecting
    let stats = ka.stats();
    assert_eq!(
        (
            stats.total.connecting,
            stats.total.lent,
            stats.total.idle,
            stats.total.waiting
        ),
        (1, 1, 1, 1)
    );
    let mut per_key: Vec<KeyStats> = Vec::new();
    ka.key_stats(&mut per_key);
    per_key.sort_by_key(|k| k.target.port());
    let counts: Vec<(u16, usize, usize, usize, usize)> = per_key
        .iter()
        .map(|k| {
            (
                k.target.port(),
                k.counts.connecting,
                k.counts.lent,
                k.counts.idle,
                k.counts.waiting,
            )
        })
        .collect();
    let mut want = vec![
        (a.port(), 0, 1, 0, 1),
        (b.port(), 0, 0, 1, 0),
        (stuck.addr.port(), 1, 0, 0, 0),
    ];
    want.sort_by_key(|w| w.0);
    assert_eq!(counts, want);
    drop(lent);
}
