//! Deadlines and cancellation: request timeouts (connect, queue wait, zero),
//! keep-alive expiry, refused connects, and deallocate.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use keepalive::{Config, Event, Events, FromCache, Function};

#[test]
fn connect_to_a_full_backlog_times_out_with_etimedout() {
    let stuck = full_backlog();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let start = Instant::now();
    ka.allocate(request(stuck.addr.port(), "stuck").timeout(Duration::from_millis(200)))
        .unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    let err = outcome.result.unwrap_err();
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "never early: {:?}",
        start.elapsed()
    );
    assert_eq!(err.function(), Function::Connect);
    assert_eq!(err.errno(), Some(libc::ETIMEDOUT));
    assert!(err.is_timeout());
    assert_eq!(outcome.context, "stuck");
    assert_eq!(ka.open_count(), 0, "the half-open socket is closed");
}

#[test]
fn zero_timeout_fails_at_the_next_poll_unless_a_connection_is_idle() {
    let stuck = full_backlog();
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    ka.allocate(request(stuck.addr.port(), ()).timeout(Duration::ZERO))
        .unwrap();
    ka.poll_events(&mut events).unwrap();
    let Some(Event::Outcome(outcome)) = events.drain().next() else {
        panic!("no outcome at once")
    };
    assert!(outcome.result.unwrap_err().is_timeout());

    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    ka.free(conn).unwrap();
    ka.allocate(request(server.port(), ()).timeout(Duration::ZERO))
        .unwrap();
    ka.poll_events(&mut events).unwrap();
    let Some(Event::Outcome(outcome)) = events.drain().next() else {
        panic!("no outcome at once")
    };
    assert_eq!(
        outcome.result.unwrap().from_cache(),
        Some(FromCache::Immediate)
    );
}

#[test]
fn timeout_counts_the_wait_in_the_queue() {
    let server = Server::start();
    let mut ka = reactor(Config::default().with_max_per_host(1));
    let mut events = Events::new();
    let held = connect(&mut ka, &mut events, request(server.port(), 1));
    let start = Instant::now();
    ka.allocate(request(server.port(), 2).timeout(Duration::from_millis(100)))
        .unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(outcome.context, 2);
    assert!(outcome.result.unwrap_err().is_timeout());
    ka.free(held).unwrap();
    assert_eq!(ka.idle_count(), 1, "nobody is waiting any more");
}

#[test]
fn keep_alive_expiry_forces_a_new_connection() {
    let server = Server::start();
    let mut ka = reactor(Config::default().with_keep_alive(Duration::from_millis(100)));
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    let freed = Instant::now();
    ka.free(conn).unwrap();
    poll_until(&mut ka, &mut events, "keep-alive expiry", |k| {
        k.idle_count() == 0
    });
    assert!(
        freed.elapsed() >= Duration::from_millis(100),
        "expired early: {:?}",
        freed.elapsed()
    );
    assert_eq!(ka.open_count(), 0);
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), None);
    server.wait_accepted(2);
}

#[test]
fn next_timeout_tracks_keep_alive_expiry() {
    let server = Server::start();
    let mut ka = reactor(Config::default().with_keep_alive(Duration::from_millis(300)));
    let mut events = Events::new();
    assert_eq!(ka.next_timeout(), None, "nothing to wait for");
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    ka.free(conn).unwrap();
    // Its expiry is set at the next tick (so a reuse before then costs no
    // timer): until then the embedding loop must not sleep.
    assert_eq!(ka.next_timeout(), Some(Duration::ZERO));
    ka.poll_events(&mut events).unwrap();
    let t = ka.next_timeout().expect("an expiry is due");
    assert!(
        t > Duration::ZERO && t <= Duration::from_millis(300),
        "{t:?}"
    );
}

#[test]
fn refused_connect_reports_function_errno_and_message() {
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    ka.allocate(request(refused_port(), "ctx")).unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!(outcome.context, "ctx");
    let err = outcome.result.unwrap_err();
    assert_eq!(err.function(), Function::Connect);
    assert_eq!(err.function().as_str(), "connect");
    assert_eq!(err.errno(), Some(libc::ECONNREFUSED));
    assert_eq!(err.message(), "Connection refused");
    assert_eq!(ka.open_count(), 0);
}

#[test]
fn deallocate_gives_the_context_back_and_no_event_ever_comes() {
    let server = Server::start();
    let mut ka = reactor(Config::default().with_max_per_host(1));
    let mut events = Events::new();
    let held = connect(&mut ka, &mut events, request(server.port(), "held"));
    let id = ka.allocate(request(server.port(), "waiting")).unwrap();
    assert_eq!(ka.deallocate(id).unwrap(), "waiting");
    ka.free(held).unwrap();
    poll_for(&mut ka, &mut events, Duration::from_millis(30));
    assert!(events.is_empty(), "no outcome for a deallocated request");
    assert_eq!(ka.idle_count(), 1);
}

#[test]
fn a_deallocated_connect_that_completes_becomes_idle() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let id = ka.allocate(request(server.port(), ())).unwrap();
    ka.deallocate(id).unwrap();
    poll_until(&mut ka, &mut events, "the orphan connect to idle", |k| {
        k.idle_count() == 1
    });
    assert!(events.is_empty());
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate), "not wasted");
    server.assert_accepted(1);
}

#[test]
fn zero_timeout_against_a_live_server_times_out_once_and_pools_the_connection() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let id = ka
        .allocate(request(server.port(), "zero").timeout(Duration::ZERO))
        .unwrap();
    // The server accepted: the connect is complete before the first poll,
    // so readiness and the passed deadline arrive in the same tick.
    server.wait_accepted(1);
    let mut outcomes = Vec::new();
    poll_until(&mut ka, &mut events, "the late connection to idle", |ka| {
        ka.idle_count() == 1 && ka.pending_count() == 0
    });
    outcomes.extend(events.drain().filter_map(|e| match e {
        Event::Outcome(o) => Some(o),
        _ => None,
    }));
    assert_eq!(outcomes.len(), 1, "exactly one outcome");
    let outcome = outcomes.remove(0);
    assert_eq!(outcome.id, id);
    assert_eq!(outcome.context, "zero");
    let err = outcome.result.expect_err("a passed deadline wins");
    assert_eq!(err.function(), Function::Connect);
    assert_eq!(err.errno(), Some(libc::ETIMEDOUT));
    // Nothing more comes for it, and its connection serves the next request.
    ka.poll_events(&mut events).unwrap();
    assert!(events.is_empty(), "a second event: {events:?}");
    let conn = connect(&mut ka, &mut events, request(server.port(), "next"));
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    // The late connection was not wasted.
    server.assert_accepted(1);
}

#[test]
fn a_cache_hit_is_served_whatever_its_timeout() {
    // Documented choice, as the original: a timeout bounds waiting, and a
    // request served from the pool at allocate never waits.
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, request(server.port(), "warm"));
    ka.free(conn).unwrap();
    ka.allocate(request(server.port(), "hit").timeout(Duration::ZERO))
        .unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!(outcome.context, "hit");
    let conn = outcome.result.expect("a cache hit is served");
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    ka.poll_events(&mut events).unwrap();
    assert!(events.is_empty(), "exactly one outcome: {events:?}");
}

/// A connection given back after a pause without polls, past a waiter's
/// deadline (by `free`, or dropped and taken back at the next poll): the
/// waiter is judged by the time the connection came back, not by the last
/// poll's, so it times out (a passed deadline wins) and the connection
/// idles. A waiter whose deadline is still ahead is served by it.
#[test]
fn a_connection_given_back_after_a_waiters_deadline_passed_without_polls_idles() {
    let server = Server::start();
    let pause = Duration::from_millis(80);
    for (dropped, timeout, served) in [
        (false, Duration::from_millis(50), false),
        (true, Duration::from_millis(50), false),
        (false, Duration::from_secs(30), true),
        (true, Duration::from_secs(30), true),
    ] {
        let mut ka = reactor(Config::default().with_max_per_host(1));
        let mut events = Events::new();
        let held = connect(&mut ka, &mut events, request(server.port(), "held"));
        ka.allocate(request(server.port(), "waiter").timeout(timeout))
            .unwrap();
        // No poll: the program does other work, past a 50 ms deadline.
        std::thread::sleep(pause);
        if dropped {
            drop(held);
        } else {
            ka.free(held).unwrap();
        }
        let outcome = wait_outcome(&mut ka, &mut events);
        assert_eq!(outcome.context, "waiter");
        let case = format!("dropped {dropped}, timeout {timeout:?}");
        if served {
            let conn = outcome.result.expect(&case);
            assert_eq!(conn.from_cache(), Some(FromCache::Deferred), "{case}");
            continue;
        }
        let err = outcome.result.expect_err(&case);
        assert_eq!(err.function(), Function::Connect, "{case}");
        assert_eq!(err.errno(), Some(libc::ETIMEDOUT), "{case}");
        assert_eq!(ka.idle_count(), 1, "{case}: the connection idles");
        ka.poll_events(&mut events).unwrap();
        assert!(events.is_empty(), "{case}: a second event: {events:?}");
        let conn = connect(&mut ka, &mut events, request(server.port(), "next"));
        assert_eq!(conn.from_cache(), Some(FromCache::Immediate), "{case}");
    }
    server.assert_accepted(4);
}
