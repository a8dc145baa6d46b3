//! Interop and faults against a real nginx (Debian's package): keep-alive
//! reuse over HTTP/1.1, nginx closing a connection after
//! `keepalive_requests`, and nginx dying under idle connections.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::time::Duration;

use common::nginx::{Nginx, conn_serial};
use common::*;
use keepalive::{Config, Events, FromCache};

#[test]
fn twenty_requests_share_one_nginx_connection() {
    let Some(nginx) = Nginx::start_http(1000, "60s") else {
        return;
    };
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut serials = Vec::new();
    for n in 0..20 {
        let mut conn = connect(&mut ka, &mut events, request(nginx.port(), ()));
        assert_eq!(conn.from_cache().is_some(), n > 0, "request {n}");
        serials.push(conn_serial(&get(&mut ka, &mut events, &mut conn)));
        ka.free(conn).unwrap();
    }
    serials.dedup();
    assert_eq!(serials.len(), 1, "nginx saw one connection: {serials:?}");
}

#[test]
fn connection_nginx_closes_after_keepalive_requests_is_replaced() {
    let Some(nginx) = Nginx::start_http(2, "60s") else {
        return;
    };
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut serials = Vec::new();
    for n in 0..5 {
        let mut conn = connect(&mut ka, &mut events, request(nginx.port(), ()));
        serials.push((
            conn.from_cache(),
            conn_serial(&get(&mut ka, &mut events, &mut conn)),
        ));
        ka.free(conn).unwrap();
        if n % 2 == 1 {
            // nginx closes after every 2nd response: wait until we notice,
            // as a caller polling between requests would.
            poll_until(&mut ka, &mut events, "nginx's close", |k| {
                k.idle_count() == 0
            });
        }
    }
    let froms: Vec<_> = serials.iter().map(|s| s.0).collect();
    let i = Some(FromCache::Immediate);
    assert_eq!(
        froms,
        vec![None, i, None, i, None],
        "every third request needs a new connection"
    );
    assert_eq!(serials[0].1, serials[1].1);
    assert_ne!(serials[1].1, serials[2].1);
}

#[test]
fn nginx_closing_on_keepalive_timeout_is_noticed_while_idle() {
    let Some(nginx) = Nginx::start_http(1000, "1s") else {
        return;
    };
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, request(nginx.port(), ()));
    poll_until(
        &mut ka,
        &mut events,
        "nginx's keepalive_timeout close",
        |k| k.idle_count() == 0,
    );
    let mut conn = connect(&mut ka, &mut events, request(nginx.port(), ()));
    assert_eq!(conn.from_cache(), None);
    assert!(get(&mut ka, &mut events, &mut conn).starts_with("hello"));
}

#[test]
fn nginx_dying_drops_idle_connections_and_new_ones_are_refused() {
    let Some(mut nginx) = Nginx::start_http(1000, "60s") else {
        return;
    };
    let port = nginx.port();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conns: Vec<_> = (0..3)
        .map(|_| connect(&mut ka, &mut events, request(port, ())))
        .collect();
    for c in conns.iter_mut() {
        get(&mut ka, &mut events, c);
    }
    for c in conns {
        ka.free(c).unwrap();
    }
    assert_eq!(ka.idle_count(), 3);
    nginx.kill();
    poll_until(&mut ka, &mut events, "idle sockets to close", |k| {
        k.idle_count() == 0
    });
    ka.allocate(request(port, ()).timeout(Duration::from_secs(5)))
        .unwrap();
    let err = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert_eq!(err.errno(), Some(libc::ECONNREFUSED), "{err}");
}
