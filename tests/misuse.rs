//! Bad input gets a clear error, never a panic, and nothing is lost.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::time::Duration;

use common::*;
use keepalive::mio::{self, Interest, Token};
use keepalive::{Config, Error, Events, Reactor, Request};

#[test]
fn invalid_configs_name_the_field() {
    let cases = [
        (Config::default().with_max_per_host(0), "max_per_host"),
        (Config::default().with_max_open(0), "max_open"),
        (
            Config::default().with_keep_alive(Duration::ZERO),
            "keep_alive",
        ),
        (
            Config::default().with_keep_alive(Duration::from_micros(999)),
            "keep_alive",
        ),
        (Config::default().with_timeout(Duration::MAX), "timeout"),
        (
            Config::default().with_max_events_per_tick(usize::MAX),
            "max_events_per_tick",
        ),
        (
            Config::default().with_max_events_per_tick((1 << 20) + 1),
            "max_events_per_tick",
        ),
        (
            Config::default().with_busy_poll(Duration::from_millis(1001)),
            "busy_poll",
        ),
    ];
    for (config, field) in cases {
        match Reactor::<()>::new(config) {
            Err(Error::InvalidConfig { field: got, reason }) => {
                assert_eq!(got, field);
                let msg = Error::InvalidConfig { field: got, reason }.to_string();
                assert!(msg.contains(field), "{msg}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn invalid_requests_are_refused_and_handed_back() {
    let mut ka: Reactor<&str> = reactor(Config::default());
    let err = ka
        .allocate(Request::new("http", LOCALHOST, 0, "port zero"))
        .unwrap_err();
    assert!(matches!(err.error, Error::InvalidRequest { .. }), "{err}");
    assert_eq!(err.into_request().into_context(), "port zero");
    let err = ka
        .allocate(Request::new("", LOCALHOST, 80, "no scheme"))
        .unwrap_err();
    assert!(err.to_string().contains("scheme"), "{err}");
    assert_eq!(ka.pending_count(), 0);
    assert_eq!(ka.open_count(), 0);
}

#[test]
fn unknown_stale_and_finished_ids_are_rejected() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let id = ka.allocate(request(server.port(), 1)).unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!(outcome.id, id);
    assert!(
        matches!(ka.deallocate(id), Err(Error::UnknownRequest(got)) if got == id),
        "already delivered"
    );
    let id2 = ka.allocate(request(server.port(), 2)).unwrap();
    assert_eq!(ka.deallocate(id2).unwrap(), 2);
    assert!(
        matches!(ka.deallocate(id2), Err(Error::UnknownRequest(_))),
        "already deallocated"
    );

    let mut other: Reactor<i32> = reactor(Config::default());
    let foreign = other.allocate(request(server.port(), 3)).unwrap();
    // Two of ours pending, one of which may share the foreign id's index.
    ka.allocate(request(server.port(), 4)).unwrap();
    ka.allocate(request(server.port(), 5)).unwrap();
    assert!(
        matches!(ka.deallocate(foreign), Err(Error::UnknownRequest(_))),
        "another reactor's id never names one of ours"
    );
    assert_eq!(ka.pending_count(), 2, "nothing of ours was cancelled");
    drop(outcome); // held until here, so 4 and 5 could not reuse its connection
}

#[test]
fn a_connection_freed_to_the_wrong_reactor_goes_home() {
    let server = Server::start();
    let mut home = reactor(Config::default());
    let mut away: Reactor<()> = reactor(Config::default());
    let mut events = Events::new();
    let conn = connect(&mut home, &mut events, request(server.port(), ()));
    assert!(matches!(away.free(conn), Err(Error::ForeignConnection)));
    assert_eq!(away.idle_count(), 0);
    home.poll_events(&mut events).unwrap();
    assert_eq!(home.idle_count(), 1, "returned to the reactor that lent it");
}

#[test]
fn a_lent_connection_cannot_be_taken_off_its_reactors_poller() {
    let server = Server::start();
    let mut ka: Reactor<u32> = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), 1));
    // On its own reactor every Source call is refused: the reactor needs
    // the registration to see the peer close.
    let refused = |r: Result<(), Error>| matches!(r, Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::InvalidInput);
    assert!(refused(ka.deregister(&mut conn)));
    assert!(refused(ka.reregister(
        &mut conn,
        Token(7),
        Interest::READABLE
    )));
    assert!(refused(ka.register(
        &mut conn,
        Token(7),
        Interest::READABLE
    )));
    // Another poller is the caller's business.
    let other = mio::Poll::new().unwrap();
    other
        .registry()
        .register(&mut conn, Token(1), Interest::READABLE)
        .unwrap();
    other.registry().deregister(&mut conn).unwrap();
    // The reactor still sees the close of the pooled connection (once the
    // server holds it, it can close it).
    ka.free(conn).unwrap();
    server.wait_accepted(1);
    server.close_all();
    poll_until(&mut ka, &mut events, "the idle socket to close", |k| {
        k.idle_count() == 0
    });
    let conn = connect(&mut ka, &mut events, request(server.port(), 2));
    assert_eq!(conn.from_cache(), None, "the dead socket was replaced");
}

#[test]
fn an_enormous_poll_timeout_is_no_limit_not_a_panic() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    ka.allocate(request(server.port(), ())).unwrap();
    ka.poll(&mut events, Some(Duration::MAX)).unwrap();
    assert_eq!(events.len(), 1, "returned with the outcome");
}

#[test]
fn dropping_the_reactor_with_connections_out_is_safe() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    ka.allocate(request(refused_port(), ())).unwrap();
    drop(ka);
    // The connection still works as a socket, and closes when dropped.
    use std::io::Write;
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    drop(conn);
    server.wait_accepted(1);
}

#[test]
fn an_id_from_another_reactor_is_refused_and_leaves_our_request_alone() {
    // Two fresh reactors, one request each: their ids have the same index
    // and generation, and differ only in the reactor they name.
    let stuck = full_backlog();
    let mut a: Reactor<&str> = reactor(Config::default());
    let mut b: Reactor<&str> = reactor(Config::default());
    let id_a = a.allocate(request(stuck.addr.port(), "a's")).unwrap();
    let id_b = b.allocate(request(stuck.addr.port(), "b's")).unwrap();
    assert_ne!(id_a, id_b);
    match b.deallocate(id_a) {
        Err(Error::UnknownRequest(id)) => assert_eq!(id, id_a),
        other => panic!("b accepted a's id: {other:?}"),
    }
    assert_eq!(b.pending_count(), 1, "b's own request is still pending");
    assert_eq!(b.deallocate(id_b).unwrap(), "b's");
    assert_eq!(a.deallocate(id_a).unwrap(), "a's");
}

#[test]
fn an_id_from_a_dropped_reactor_is_refused() {
    let stuck = full_backlog();
    let mut old: Reactor<u8> = reactor(Config::default());
    let stale = old.allocate(request(stuck.addr.port(), 1)).unwrap();
    drop(old);
    let mut ka: Reactor<u8> = reactor(Config::default());
    let ours = ka.allocate(request(stuck.addr.port(), 2)).unwrap();
    assert!(matches!(
        ka.deallocate(stale),
        Err(Error::UnknownRequest(_))
    ));
    assert_eq!(ka.deallocate(ours).unwrap(), 2);
}

#[test]
fn unspecified_addresses_are_refused_naming_the_field() {
    let mut ka: Reactor<&str> = reactor(Config::default());
    for addr in ["0.0.0.0", "::", "::ffff:0.0.0.0"] {
        let err = ka
            .allocate(Request::new("http", addr.parse().unwrap(), 80, addr))
            .unwrap_err();
        assert!(matches!(err.error, Error::InvalidRequest { .. }), "{err}");
        assert!(err.to_string().contains("addr"), "{err}");
        assert_eq!(err.into_request().into_context(), addr);
    }
    assert_eq!(ka.open_count(), 0, "nothing was connected");
}
