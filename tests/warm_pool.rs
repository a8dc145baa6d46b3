//! The warm pool against real sockets: `keep_warm` and `preconnect` open
//! connections before anyone asks, keep them topped up as they are taken
//! or die, back off from a server that refuses, and stop on `purge`.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::time::Duration;

use common::*;
use keepalive::{CloseReason, Config, Event, Events, FromCache, Reactor};

#[test]
fn keep_warm_has_connections_ready_before_the_first_request() {
    let server = Server::start();
    let mut ka: Reactor<()> = reactor(Config::default().with_max_per_host(8));
    let mut events = Events::new();
    ka.keep_warm(request(server.port(), ()), 3).unwrap();
    poll_until(&mut ka, &mut events, "three warm connections", |k| {
        k.idle_count() == 3
    });
    server.assert_accepted(3);
    // The first requests are hits.
    let conns: Vec<_> = (0..3)
        .map(|_| connect(&mut ka, &mut events, request(server.port(), ())))
        .collect();
    assert!(
        conns
            .iter()
            .all(|c| c.from_cache() == Some(FromCache::Immediate))
    );
    // Taken: topped up by the ticks that follow.
    poll_until(&mut ka, &mut events, "topped up", |k| k.idle_count() == 3);
    server.assert_accepted(6);
    drop(conns);
    // Returned: six idle now, more than the minimum; nothing closes them
    // but their keep-alive.
    poll_until(&mut ka, &mut events, "the returns", |k| k.idle_count() == 6);
}

#[test]
fn a_warm_connection_the_server_closes_is_replaced() {
    let server = Server::start();
    let mut ka: Reactor<()> = reactor(Config::default());
    let mut events = Events::new();
    ka.keep_warm(request(server.port(), ()), 1).unwrap();
    poll_until(&mut ka, &mut events, "one warm connection", |k| {
        k.idle_count() == 1
    });
    server.close_all();
    poll_until(&mut ka, &mut events, "replaced", |k| {
        k.stats().counters.closes(CloseReason::PeerClosed) == 1 && k.idle_count() == 1
    });
    server.assert_accepted(2);
}

#[test]
fn a_refusing_server_is_retried_with_backoff_not_hammered() {
    let port = refused_port();
    let mut ka: Reactor<()> = reactor(Config::default());
    let mut events = Events::new();
    ka.keep_warm(request(port, ()), 2).unwrap();
    // 450 ms: tries at 0, then after 100, 200 (so by 300) and 400 ms of
    // backoff (by 700): at most 3 rounds of 2 connects by then, where a
    // retry every tick would make hundreds.
    poll_for(&mut ka, &mut events, Duration::from_millis(450));
    let failed = ka.stats().counters.closes(CloseReason::ConnectFailed);
    assert!((2..=6).contains(&failed), "{failed} failed connects");
    assert!(
        events.iter().all(|e| !matches!(e, Event::Outcome(_))),
        "no outcome"
    );
}

#[test]
fn preconnect_opens_once_and_purge_stops_warming() {
    let server = Server::start();
    let mut ka: Reactor<()> = reactor(Config::default().with_max_per_host(2));
    let mut events = Events::new();
    assert_eq!(
        ka.preconnect(request(server.port(), ()), 5).unwrap(),
        2,
        "max_per_host"
    );
    poll_until(&mut ka, &mut events, "two", |k| k.idle_count() == 2);
    ka.keep_warm(request(server.port(), ()), 2).unwrap();
    let target = request(server.port(), ()).target().clone();
    assert_eq!(ka.purge(&target), (2, 0));
    poll_for(&mut ka, &mut events, Duration::from_millis(20));
    assert_eq!(ka.idle_count(), 0, "purged: no longer kept warm");
    server.assert_accepted(2);
}

#[test]
fn keep_warm_against_nginx() {
    let Some(nginx) = common::nginx::Nginx::start_http(1000, "60s") else {
        return;
    };
    let mut ka: Reactor<()> = reactor(Config::default());
    let mut events = Events::new();
    ka.keep_warm(request(nginx.port(), ()), 4).unwrap();
    poll_until(&mut ka, &mut events, "four warm connections", |k| {
        k.idle_count() == 4
    });
    for _ in 0..8 {
        let mut conn = connect(&mut ka, &mut events, request(nginx.port(), ()));
        assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
        assert!(get(&mut ka, &mut events, &mut conn).starts_with("hello\n"));
        ka.free(conn).unwrap();
    }
    assert_eq!(
        ka.stats().counters.connected,
        4,
        "no connect but the warm ones"
    );
}
