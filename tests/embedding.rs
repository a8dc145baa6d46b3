//! Embedding in a caller's own loop: the reactor's descriptor nested in an
//! outer `mio::Poll`, driven only by its readiness and `next_timeout()`;
//! and a lent connection registered in the caller's own poller.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::*;
use keepalive::mio::{Events as MioEvents, Interest, Poll, Token, unix::SourceFd};
use keepalive::{Config, Connection, Event, Events, FromCache};

const REACTOR: Token = Token(0);

/// A caller's loop: waits on its own poller for the reactor's descriptor or
/// `next_timeout()`, then runs one non-blocking tick. Returns the events.
fn outer_tick<C>(outer: &mut Poll, ka: &mut keepalive::Reactor<C>, events: &mut Events<C>) {
    let mut mio_events = MioEvents::with_capacity(8);
    outer
        .poll(
            &mut mio_events,
            ka.next_timeout().or(Some(Duration::from_millis(200))),
        )
        .unwrap();
    ka.poll_events(events).unwrap();
}

#[test]
fn nested_in_an_outer_mio_poll_by_readiness_and_next_timeout_only() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut outer = Poll::new().unwrap();
    let fd = ka.as_raw_fd();
    outer
        .registry()
        .register(&mut SourceFd(&fd), REACTOR, Interest::READABLE)
        .unwrap();

    let mut served = Vec::new();
    for round in 0..3 {
        ka.allocate(request(server.port(), round)).unwrap();
        let start = Instant::now();
        let mut conn: Option<Connection> = None;
        let mut body = Vec::new();
        loop {
            assert!(start.elapsed() < CAP, "round {round} stalled");
            outer_tick(&mut outer, &mut ka, &mut events);
            for e in events.drain() {
                if let Event::Outcome(o) = e {
                    let mut c = o.result.unwrap();
                    served.push(c.from_cache());
                    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                    conn = Some(c);
                }
            }
            if let Some(c) = conn.as_mut() {
                let mut buf = [0u8; 512];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => panic!("closed"),
                        Ok(n) => body.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            if body.ends_with(b"hello\n") {
                break;
            }
        }
        drop(conn); // returned at the next tick; next_timeout() says so
        assert_eq!(ka.next_timeout(), Some(Duration::ZERO));
    }
    assert_eq!(
        served,
        vec![None, Some(FromCache::Immediate), Some(FromCache::Immediate)]
    );
    server.assert_accepted(1);
}

#[test]
fn next_timeout_is_zero_after_a_cache_hit_allocate() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    ka.free(conn).unwrap();
    ka.poll_events(&mut events).unwrap(); // sets the keep-alive expiry
    assert_ne!(
        ka.next_timeout(),
        Some(Duration::ZERO),
        "only the keep-alive expiry is due"
    );
    ka.allocate(request(server.port(), ())).unwrap();
    assert_eq!(
        ka.next_timeout(),
        Some(Duration::ZERO),
        "an outcome is ready"
    );
}

#[test]
fn next_timeout_is_zero_while_a_free_has_news_to_report() {
    // A free that closes a connection (its last use) queues a lifecycle
    // change and leaves nothing to stamp: the loop must still tick at once.
    let server = Server::start();
    let mut ka = reactor(
        Config::default()
            .with_lifecycle_events(true)
            .with_max_uses(1),
    );
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    ka.poll_events(&mut events).unwrap();
    events.drain().for_each(drop);
    ka.free(conn).unwrap();
    assert_eq!(ka.next_timeout(), Some(Duration::ZERO), "a close to report");
    ka.poll_events(&mut events).unwrap();
    assert!(
        events.drain().any(|e| matches!(e, Event::Lifecycle(_))),
        "the close is reported by that tick"
    );
}

#[test]
fn a_lent_connection_can_be_registered_in_the_callers_own_poll() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    let mut own = Poll::new().unwrap();
    own.registry()
        .register(&mut conn, Token(7), Interest::READABLE)
        .unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut mio_events = MioEvents::with_capacity(4);
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < CAP);
        own.poll(&mut mio_events, Some(Duration::from_millis(100)))
            .unwrap();
        if mio_events
            .iter()
            .any(|e| e.token() == Token(7) && e.is_readable())
        {
            break;
        }
    }
    let mut buf = [0u8; 512];
    assert!(conn.read(&mut buf).unwrap() > 0);
    drain_reads(&mut conn);
    own.registry().deregister(&mut conn).unwrap();
    ka.free(conn).unwrap();
    assert_eq!(
        ka.idle_count(),
        1,
        "still pooled after a stint in another poller"
    );
}
