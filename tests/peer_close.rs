//! Dead connections are never reused: closed by the peer while idle (even
//! when the caller did not poll), sent stray data, freed with unread data,
//! closed by the user, or at EOF. And shutdown with connections out.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use keepalive::{Config, Error, Event, Events, Function};

#[test]
fn idle_connection_closed_by_the_server_is_not_reused() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, request(server.port(), ()));
    server.close_all();
    poll_until(&mut ka, &mut events, "the idle socket to close", |k| {
        k.idle_count() == 0
    });
    assert_eq!(ka.open_count(), 0);
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), None);
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
}

#[test]
fn close_that_arrives_while_the_caller_does_not_poll_is_never_delivered() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, request(server.port(), ()));
    server.close_all();
    // The FIN has arrived once the reactor's poller has readiness queued;
    // the reactor itself is not polled.
    wait_readable(ka.as_raw_fd());
    ka.allocate(request(server.port(), ())).unwrap();
    let mut conn = wait_outcome(&mut ka, &mut events).result.unwrap();
    assert_eq!(conn.from_cache(), None, "the dead socket was replaced");
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
}

#[test]
fn a_close_left_in_the_kernel_by_a_full_tick_is_still_never_delivered() {
    let server = Server::start();
    // One readiness event per tick: the caller's sources fill it.
    let mut ka = reactor(Config::default().with_max_events_per_tick(1));
    let mut events = Events::new();
    let _sources = close_behind_a_full_tick(&mut ka, &mut events, &server, ());
    // A cache hit is made with the close still unread.
    ka.allocate(request(server.port(), ())).unwrap();
    let mut conn = wait_outcome(&mut ka, &mut events).result.unwrap();
    assert_eq!(conn.from_cache(), None, "the dead socket was replaced");
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
}

#[test]
fn idle_connection_that_receives_stray_data_is_not_reused() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, request(server.port(), ()));
    server.send_unsolicited();
    poll_until(&mut ka, &mut events, "the idle socket to close", |k| {
        k.idle_count() == 0
    });
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), None);
}

#[test]
fn connection_freed_with_unread_data_is_not_reused() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_readable(conn.as_raw_fd()); // the response has reached our socket
    ka.free(conn).unwrap(); // the response is unread
    assert_eq!(ka.idle_count(), 0, "closed at free");
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), None);
}

#[test]
fn response_followed_at_once_by_a_close_is_not_pooled() {
    // Regression: a short read proved the data drained, and the FIN that
    // came with it went unnoticed; the dead socket was pooled and, with no
    // further readiness, stayed idle.
    let server = Server::start_closing();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Wait until the response and the FIN have both arrived.
    let start = std::time::Instant::now();
    let mut closed = false;
    while !closed {
        assert!(start.elapsed() < CAP);
        ka.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        closed = events
            .drain()
            .any(|e| matches!(e, Event::Ready(r) if r.closed));
    }
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).unwrap();
    assert!(
        n > 0 && n < buf.len(),
        "one short read takes the whole response"
    );
    ka.free(conn).unwrap();
    assert_eq!(ka.idle_count(), 0, "not pooled");
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), None);
}

#[test]
fn connection_closed_by_the_user_is_not_reused() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    get(&mut ka, &mut events, &mut conn);
    conn.close();
    ka.poll_events(&mut events).unwrap();
    assert_eq!((ka.idle_count(), ka.open_count()), (0, 0));
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), None);
}

#[test]
fn connection_that_read_eof_is_not_reused() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    get(&mut ka, &mut events, &mut conn);
    server.close_all();
    let mut buf = [0u8; 16];
    let start = std::time::Instant::now();
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => panic!("unexpected data"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(start.elapsed() < CAP);
                ka.poll(&mut events, Some(Duration::from_millis(50)))
                    .unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!conn.is_reusable());
    ka.free(conn).unwrap();
    assert_eq!(ka.idle_count(), 0);
}

#[test]
fn readiness_events_tell_a_lent_connection_to_read() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        assert!(start.elapsed() < CAP, "no readiness for the response");
        ka.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        if events
            .drain()
            .any(|e| matches!(e, Event::Ready(r) if r.conn == conn.id() && r.readable))
        {
            break;
        }
    }
    let mut buf = [0u8; 256];
    assert!(conn.read(&mut buf).unwrap() > 0);
}

#[test]
fn shutdown_with_connections_out_is_safe_and_every_request_hears_back() {
    let server = Server::start();
    let other = Server::start();
    let stuck = full_backlog();
    let mut ka = reactor(Config::default().with_max_per_host(1));
    let mut events = Events::new();
    let mut lent = connect(&mut ka, &mut events, request(server.port(), "lent"));
    let idle = connect(&mut ka, &mut events, request(other.port(), "idle"));
    ka.free(idle).unwrap();
    ka.allocate(request(server.port(), "queued")).unwrap();
    ka.allocate(request(stuck.addr.port(), "connecting"))
        .unwrap();
    assert_eq!((ka.idle_count(), ka.open_count()), (1, 3));

    ka.shutdown();
    assert_eq!(
        (ka.idle_count(), ka.open_count()),
        (0, 1),
        "only the lent one is left"
    );
    ka.poll_events(&mut events).unwrap();
    let mut failed: Vec<&str> = Vec::new();
    for e in events.drain() {
        if let Event::Outcome(o) = e {
            let err = o.result.unwrap_err();
            assert_eq!(err.function(), Function::Shutdown);
            assert_eq!(err.errno(), Some(libc::ECANCELED));
            failed.push(o.context);
        }
    }
    failed.sort();
    assert_eq!(
        failed,
        vec!["connecting", "queued"],
        "each pending request fails once"
    );

    let refused = ka.allocate(request(server.port(), "late")).unwrap_err();
    assert!(matches!(refused.error, Error::ShutDown));
    assert_eq!(refused.into_request().into_context(), "late");

    assert_eq!(
        get(&mut ka, &mut events, &mut lent),
        "hello\n",
        "a lent connection still works"
    );
    ka.free(lent).unwrap();
    assert_eq!(ka.open_count(), 0, "closed when returned");
    ka.shutdown(); // again: nothing happens
    ka.poll_events(&mut events).unwrap();
    assert!(events.is_empty());
}

#[test]
fn every_request_gets_exactly_one_outcome() {
    let server = Server::start();
    let stuck = full_backlog();
    let refused = refused_port();
    let mut ka = reactor(Config::default().with_max_per_host(2).with_max_open(5));
    let mut events = Events::new();
    let mut ids = std::collections::HashMap::new();
    let mut cancelled = 0;
    for n in 0..60usize {
        let port = [server.port(), stuck.addr.port(), refused][n % 3];
        let id = ka
            .allocate(request(port, n).timeout(Duration::from_millis(50)))
            .unwrap();
        ids.insert(id, 0);
        if n % 7 == 0 {
            assert_eq!(ka.deallocate(id).unwrap(), n);
            ids.remove(&id);
            cancelled += 1;
        }
        ka.poll_events(&mut events).unwrap();
        for e in events.drain() {
            if let Event::Outcome(o) = e {
                *ids.get_mut(&o.id)
                    .expect("outcome for a known, live request") += 1;
            }
        }
    }
    let start = std::time::Instant::now();
    while ka.pending_count() > 0 {
        assert!(start.elapsed() < CAP);
        ka.poll(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        for e in events.drain() {
            if let Event::Outcome(o) = e {
                *ids.get_mut(&o.id)
                    .expect("outcome for a known, live request") += 1;
            }
        }
    }
    assert_eq!(cancelled, 9);
    assert_eq!(ids.len(), 51);
    assert!(ids.values().all(|&n| n == 1), "{ids:?}");
}
