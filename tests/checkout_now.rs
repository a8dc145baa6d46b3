//! `Reactor::checkout_now`, the checkout that needs no poll, and fresh
//! requests, against real loopback sockets.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use keepalive::{Checkout, CloseReason, Config, Event, Events, FromCache};

#[test]
fn a_pooled_connection_is_checked_out_without_a_poll() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    // Nothing idle: allocated as usual, its outcome out of a poll.
    let Checkout::Pending(id) = ka.checkout_now(request(server.port(), 1)).unwrap() else {
        panic!("ready from an empty pool")
    };
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!((outcome.id, outcome.context), (id, 1));
    let mut conn = outcome.result.unwrap();
    let first = conn.id();
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
    ka.free(conn).unwrap();
    // Idle now: lent at once, its context given back, no event to come.
    for n in 2..5 {
        let Checkout::Ready(mut conn, ctx) = ka.checkout_now(request(server.port(), n)).unwrap()
        else {
            panic!("pending with a connection idle")
        };
        assert_eq!((conn.id(), ctx), (first, n));
        assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
        assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
        ka.free(conn).unwrap();
    }
    ka.poll(&mut events, Some(Duration::ZERO)).unwrap();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Outcome(_))),
        "an outcome for a checkout"
    );
    assert_eq!(ka.stats().counters.immediate, 3);
    server.assert_accepted(1);
}

#[test]
fn a_connection_the_last_tick_saw_close_is_never_checked_out() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, request(server.port(), ()));
    ka.poll_events(&mut events).unwrap();
    server.close_all();
    // The close is queued on the reactor's poller; one full tick reads it,
    // and the checkout comes straight after that tick.
    wait_readable(ka.as_raw_fd());
    ka.poll_events(&mut events).unwrap();
    let Checkout::Pending(_) = ka.checkout_now(request(server.port(), ())).unwrap() else {
        panic!("the closed connection was handed out")
    };
    let mut conn = wait_outcome(&mut ka, &mut events).result.unwrap();
    assert_eq!(conn.from_cache(), None);
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
}

#[test]
fn after_a_tick_cut_short_a_candidate_is_checked_directly() {
    let server = Server::start();
    // One readiness event per tick: the caller's sources fill it.
    let mut ka = reactor(Config::default().with_max_events_per_tick(1));
    let mut events = Events::new();
    let _sources = close_behind_a_full_tick(&mut ka, &mut events, &server, ());
    // A tick that reads one event, a caller's: the close stays unread.
    ka.poll(&mut events, Some(Duration::ZERO)).unwrap();
    assert_eq!(events.len(), 1);
    let Checkout::Pending(_) = ka.checkout_now(request(server.port(), ())).unwrap() else {
        panic!("the closed connection was handed out")
    };
    let closed = ka.stats().counters.closes(CloseReason::PeerClosed);
    assert_eq!(closed, 1, "found dead by the check, closed as the peer's");
}

#[test]
fn a_connection_past_its_keep_alive_by_the_clock_is_closed_not_checked_out() {
    let server = Server::start();
    let keep_alive = Duration::from_millis(30);
    let mut ka = reactor(Config::default().with_keep_alive(keep_alive));
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, request(server.port(), ()));
    // The tick that starts its keep-alive, then a gap without ticks twice
    // as long: the pool's timer has not fired, the clock says it is past.
    ka.poll(&mut events, Some(Duration::ZERO)).unwrap();
    std::thread::sleep(keep_alive * 2);
    let Checkout::Pending(_) = ka.checkout_now(request(server.port(), ())).unwrap() else {
        panic!("an expired connection was handed out")
    };
    assert_eq!(ka.stats().counters.closes(CloseReason::KeepAliveExpired), 1);
    let conn = wait_outcome(&mut ka, &mut events).result.unwrap();
    assert_eq!(conn.from_cache(), None);
}

#[test]
fn a_fresh_request_gets_a_new_connection_and_returns_it_to_the_pool() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(ka.idle_count(), 1);
    let mut fresh = connect(&mut ka, &mut events, request(server.port(), ()).fresh());
    assert_eq!(fresh.from_cache(), None, "fresh: never from the pool");
    assert_eq!(get(&mut ka, &mut events, &mut fresh), "hello\n");
    ka.free(fresh).unwrap();
    assert_eq!(ka.idle_count(), 2, "pooled like any connection of its key");
    let Checkout::Pending(_) = ka.checkout_now(request(server.port(), ()).fresh()).unwrap() else {
        panic!("a fresh checkout came from the pool")
    };
    let conn = wait_outcome(&mut ka, &mut events).result.unwrap();
    assert_eq!(conn.from_cache(), None);
    server.assert_accepted(3);
}
