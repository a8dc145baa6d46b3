//! Limits: requests over `max_per_host` or `max_open` wait in FIFO order,
//! reuse freed connections as `Deferred`, and evict idle sockets of other
//! keys when only `max_open` is in the way.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::time::Duration;

use common::*;
use keepalive::{Config, Event, Events, FromCache};

#[test]
fn with_max_open_one_the_second_request_is_deferred() {
    let server = Server::start();
    let mut ka = reactor(Config::default().with_max_open(1));
    let mut events = Events::new();
    let first = connect(&mut ka, &mut events, request(server.port(), 1));
    ka.allocate(request(server.port(), 2)).unwrap();
    poll_for(&mut ka, &mut events, Duration::from_millis(30));
    assert!(events.is_empty(), "the second request waits");
    assert_eq!(ka.open_count(), 1);
    ka.free(first).unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!(outcome.context, 2);
    assert_eq!(
        outcome.result.unwrap().from_cache(),
        Some(FromCache::Deferred)
    );
    server.assert_accepted(1);
}

#[test]
fn max_per_host_queues_in_fifo_order_with_deferred_reuse() {
    let server = Server::start();
    let mut ka = reactor(Config::default().with_max_per_host(1));
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), 0));
    for n in 1..=4 {
        ka.allocate(request(server.port(), n)).unwrap();
    }
    let mut order = Vec::new();
    for _ in 1..=4 {
        get(&mut ka, &mut events, &mut conn);
        ka.free(conn).unwrap();
        let outcome = wait_outcome(&mut ka, &mut events);
        order.push(outcome.context);
        conn = outcome.result.unwrap();
        assert_eq!(conn.from_cache(), Some(FromCache::Deferred));
        assert!(ka.open_count() <= 1);
    }
    assert_eq!(order, vec![1, 2, 3, 4], "served in allocation order");
    server.assert_accepted(1);
}

#[test]
fn other_hosts_do_not_wait_behind_a_full_host() {
    let a = Server::start();
    let b = Server::start();
    let mut ka = reactor(Config::default().with_max_per_host(1));
    let mut events = Events::new();
    let _held = connect(&mut ka, &mut events, request(a.port(), ()));
    ka.allocate(request(a.port(), ())).unwrap();
    let other = connect(&mut ka, &mut events, request(b.port(), ()));
    assert_eq!(other.peer_addr(), b.addr);
}

#[test]
fn a_request_blocked_by_max_open_evicts_the_least_recently_used_idle_socket() {
    let servers = [Server::start(), Server::start(), Server::start()];
    let mut ka = reactor(Config::default().with_max_open(2));
    let mut events = Events::new();
    let mut a = connect(&mut ka, &mut events, request(servers[0].port(), ()));
    let mut b = connect(&mut ka, &mut events, request(servers[1].port(), ()));
    get(&mut ka, &mut events, &mut a);
    get(&mut ka, &mut events, &mut b);
    ka.free(a).unwrap(); // least recently used
    ka.free(b).unwrap();
    let c = connect(&mut ka, &mut events, request(servers[2].port(), ()));
    assert_eq!(c.from_cache(), None);
    assert_eq!(ka.open_count(), 2);
    assert_eq!(ka.idle_count(), 1);
    drop(c);
    // The survivor is b's: a request for b reuses it, one for a cannot.
    let b2 = connect(&mut ka, &mut events, request(servers[1].port(), ()));
    assert_eq!(b2.from_cache(), Some(FromCache::Immediate), "b was kept");
    servers[0].assert_accepted(1);
}

#[test]
fn open_sockets_never_exceed_max_open() {
    let servers: Vec<Server> = (0..4).map(|_| Server::start()).collect();
    let mut ka = reactor(Config::default().with_max_open(3).with_max_per_host(2));
    let mut events = Events::new();
    let mut lent = Vec::new();
    let mut outcomes = 0;
    for round in 0..40 {
        ka.allocate(request(servers[round % 4].port(), round))
            .unwrap();
        ka.poll(&mut events, Some(Duration::from_millis(5)))
            .unwrap();
        for e in events.drain() {
            if let Event::Outcome(o) = e {
                outcomes += 1;
                lent.push(o.result.unwrap());
            }
        }
        assert!(
            ka.open_count() <= 3,
            "open {} > max_open 3",
            ka.open_count()
        );
        if round % 3 == 2 {
            lent.clear(); // drop them all: back to the pool
        }
    }
    lent.clear();
    let start = std::time::Instant::now();
    while ka.pending_count() > 0 {
        assert!(
            start.elapsed() < CAP,
            "{} requests never served",
            ka.pending_count()
        );
        ka.poll(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        // Dropping each connection at once lets the next waiter have it.
        outcomes += events
            .drain()
            .filter(|e| matches!(e, Event::Outcome(_)))
            .count();
        assert!(ka.open_count() <= 3);
    }
    assert_eq!(outcomes, 40, "every request got its one outcome");
    assert!(ka.open_count() <= 3);
}
