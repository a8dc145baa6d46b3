//! Allocation and reuse: new connections, Immediate reuse after free or
//! drop, MRU order, what shares a pool, and the outcome's echo.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use keepalive::{Config, Event, Events, FromCache, Reactor, Request};

#[test]
fn new_connection_then_immediate_reuse_after_free() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), None, "first connection is new");
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
    ka.free(conn).unwrap();
    assert_eq!(ka.idle_count(), 1);

    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
    server.assert_accepted(1); // one connection for two requests
}

#[test]
fn dropping_a_connection_returns_it_like_free() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    get(&mut ka, &mut events, &mut conn);
    drop(conn);
    assert_eq!(
        ka.next_timeout(),
        Some(Duration::ZERO),
        "a dropped connection wants a tick"
    );
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    // The late connection was not wasted.
    server.assert_accepted(1);
}

#[test]
fn a_connection_dropped_between_ticks_serves_the_next_allocate() {
    // Regression: allocate used to miss connections dropped since the last
    // tick and open a new socket.
    let server = Server::start();
    let mut ka = reactor(Config::default().with_max_per_host(1));
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    drop(conn);
    ka.allocate(request(server.port(), ())).unwrap();
    assert_eq!(ka.open_count(), 1, "no second socket");
    let conn = wait_outcome(&mut ka, &mut events).result.unwrap();
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
}

#[test]
fn outcome_echoes_target_and_moves_context_back() {
    let server = Server::start();
    let mut ka: Reactor<Vec<String>> = reactor(Config::default());
    let mut events = Events::new();
    let context = vec!["arbitrary".to_string(), "data".to_string()];
    let id = ka
        .allocate(Request::new(
            "http",
            LOCALHOST,
            server.port(),
            context.clone(),
        ))
        .unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!(outcome.id, id);
    assert_eq!(outcome.context, context);
    assert_eq!(outcome.target.scheme(), "http");
    assert_eq!(outcome.target.addr(), LOCALHOST);
    assert_eq!(outcome.target.port(), server.port());
    assert_eq!(outcome.result.unwrap().peer_addr(), server.addr);
}

#[test]
fn outcome_is_never_synchronous_even_from_cache() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    ka.free(conn).unwrap();
    ka.allocate(request(server.port(), ())).unwrap();
    assert!(events.is_empty(), "allocate itself delivers nothing");
    assert_eq!(
        ka.next_timeout(),
        Some(Duration::ZERO),
        "but asks for a tick at once"
    );
    ka.poll_events(&mut events).unwrap();
    assert!(matches!(events.iter().next(), Some(Event::Outcome(o)) if o.result.is_ok()));
}

#[test]
fn most_recently_freed_connection_is_reused_first() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let a = connect(&mut ka, &mut events, request(server.port(), ()));
    let b = connect(&mut ka, &mut events, request(server.port(), ()));
    let (a_id, b_id) = (a.id(), b.id());
    ka.free(a).unwrap();
    ka.free(b).unwrap();
    let c = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(c.id(), b_id, "the warmest connection is reused");
    assert_ne!(c.id(), a_id);
}

#[test]
fn different_schemes_and_tags_never_share_a_connection() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    ka.free(conn).unwrap();

    let other_scheme = connect(
        &mut ka,
        &mut events,
        Request::new("other", LOCALHOST, server.port(), ()),
    );
    assert_eq!(other_scheme.from_cache(), None);
    let tagged = connect(
        &mut ka,
        &mut events,
        request(server.port(), ()).tag("tunnel to example"),
    );
    assert_eq!(tagged.from_cache(), None);
    assert_eq!(
        ka.idle_count(),
        1,
        "the plain http connection is still idle"
    );
    ka.free(tagged).unwrap();
    let tagged_again = connect(
        &mut ka,
        &mut events,
        request(server.port(), ()).tag("tunnel to example"),
    );
    assert_eq!(
        tagged_again.from_cache(),
        Some(FromCache::Immediate),
        "same tag shares"
    );
    server.assert_accepted(3);
}

#[test]
fn ipv6_loopback_works() {
    let ip: IpAddr = "::1".parse().unwrap();
    if std::net::TcpListener::bind((ip, 0)).is_err() {
        eprintln!("skipped: ::1 cannot be bound on this machine");
        return;
    }
    let server = Server::start_on(ip);
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(
        &mut ka,
        &mut events,
        Request::new("http", ip, server.port(), ()),
    );
    assert_eq!(conn.peer_addr().ip(), ip);
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
    ka.free(conn).unwrap();
    let conn = connect(
        &mut ka,
        &mut events,
        Request::new("http", ip, server.port(), ()),
    );
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
}

#[test]
fn reactors_in_one_program_are_independent() {
    let server = Server::start();
    let mut one = reactor(Config::default().with_max_open(1));
    let mut two = reactor(Config::default().with_max_open(1));
    let mut events = Events::new();
    let a = connect(&mut one, &mut events, request(server.port(), ()));
    let b = connect(&mut two, &mut events, request(server.port(), ()));
    assert_eq!(
        (one.open_count(), two.open_count()),
        (1, 1),
        "limits are per reactor"
    );
    one.free(a).unwrap();
    assert_eq!(two.idle_count(), 0, "one reactor's pool is not the other's");
    two.free(b).unwrap();
    assert_eq!(two.idle_count(), 1);
}

#[test]
fn bind_address_sets_the_local_address() {
    let server = Server::start();
    let mut ka = reactor(Config::default().with_bind_address(LOCALHOST));
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.local_addr().unwrap().ip(), LOCALHOST);

    // A family mismatch fails at bind, as an outcome.
    let mut bad = reactor(Config::default().with_bind_address("::1".parse().unwrap()));
    bad.allocate(request(server.port(), ())).unwrap();
    let err = wait_outcome(&mut bad, &mut events).result.unwrap_err();
    assert_eq!(err.function().as_str(), "bind");
    assert!(err.errno().is_some(), "{err}");
}
