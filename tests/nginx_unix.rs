//! Against a real nginx listening on a Unix-domain socket: keep-alive reuse
//! over HTTP/1.1, nginx's own closes noticed while idle, nginx dying (its
//! socket file left behind: refused), and TLS over the Unix socket with
//! the test PKI.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::nginx::{Nginx, conn_serial};
use common::tls::{Pki, nginx_tls_unix};
use common::*;
use keepalive::{CloseReason, Config, Events, FromCache, Function, Request};

fn path_of(nginx: &Nginx) -> &'static Path {
    let path = nginx
        .unix_path
        .clone()
        .expect("nginx listens on a unix socket");
    Box::leak(path.into_boxed_path())
}

#[test]
fn twenty_requests_share_one_nginx_unix_connection() {
    let Some(nginx) = Nginx::start_http_unix(1000, "60s") else {
        return;
    };
    let path = path_of(&nginx);
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut serials = Vec::new();
    for n in 0..20 {
        let mut conn = connect(&mut ka, &mut events, Request::unix("http", path, ()));
        assert!(conn.is_unix());
        assert_eq!(conn.from_cache().is_some(), n > 0, "request {n}");
        serials.push(conn_serial(&get(&mut ka, &mut events, &mut conn)));
        ka.free(conn).unwrap();
    }
    serials.dedup();
    assert_eq!(serials.len(), 1, "nginx saw one connection: {serials:?}");
    // The same nginx over TCP is another pool.
    let conn = connect(&mut ka, &mut events, request(nginx.port(), ()));
    assert_eq!(conn.from_cache(), None);
}

#[test]
fn nginx_closing_a_unix_connection_after_keepalive_requests_is_noticed_while_idle() {
    let Some(nginx) = Nginx::start_http_unix(2, "60s") else {
        return;
    };
    let path = path_of(&nginx);
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut froms = Vec::new();
    for n in 0..5 {
        let mut conn = connect(&mut ka, &mut events, Request::unix("http", path, ()));
        froms.push(conn.from_cache());
        conn_serial(&get(&mut ka, &mut events, &mut conn));
        ka.free(conn).unwrap();
        if n % 2 == 1 {
            poll_until(&mut ka, &mut events, "nginx's close", |k| {
                k.idle_count() == 0
            });
        }
    }
    let i = Some(FromCache::Immediate);
    assert_eq!(froms, vec![None, i, None, i, None]);
    // nginx's close comes after the response, or with it: seen while idle
    // (PeerClosed) or already at the free (ReturnedUnusable), never pooled.
    let counters = ka.stats().counters;
    assert_eq!(
        counters.closes(CloseReason::PeerClosed) + counters.closes(CloseReason::ReturnedUnusable),
        2
    );
}

#[test]
fn nginx_keepalive_timeout_on_a_unix_socket_is_noticed_while_idle() {
    let Some(nginx) = Nginx::start_http_unix(1000, "200ms") else {
        return;
    };
    let path = path_of(&nginx);
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, Request::unix("http", path, ()));
    poll_until(
        &mut ka,
        &mut events,
        "nginx's keepalive_timeout close",
        |k| k.idle_count() == 0,
    );
    let mut conn = connect(&mut ka, &mut events, Request::unix("http", path, ()));
    assert_eq!(conn.from_cache(), None);
    assert!(get(&mut ka, &mut events, &mut conn).starts_with("hello"));
}

#[test]
fn nginx_dying_drops_idle_unix_connections_and_its_stale_socket_refuses() {
    let Some(mut nginx) = Nginx::start_http_unix(1000, "60s") else {
        return;
    };
    let path = path_of(&nginx);
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let mut conns: Vec<_> = (0..3)
        .map(|_| connect(&mut ka, &mut events, Request::unix("http", path, ())))
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
    // SIGKILL leaves the socket file: a connect finds nobody listening.
    assert!(path.exists(), "nginx's socket file is left behind");
    ka.allocate(Request::unix("http", path, ()).timeout(Duration::from_secs(5)))
        .unwrap();
    let err = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert_eq!(err.function(), Function::Connect, "{err}");
    assert_eq!(err.errno(), Some(libc::ECONNREFUSED), "{err}");
    // Once the file is gone too: no such path.
    std::fs::remove_file(path).unwrap();
    ka.allocate(Request::unix("http", path, ())).unwrap();
    let err = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
}

#[test]
fn tls_over_a_unix_socket_checks_the_server_name_and_pools() {
    let pki = Pki::new();
    let Some(nginx) = nginx_tls_unix(&pki) else {
        return;
    };
    let path = path_of(&nginx);
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::new();
    let https = || Request::unix("https", path, ()).server_name("localhost");
    let mut conn = connect(&mut ka, &mut events, https());
    assert!(conn.is_tls() && conn.is_unix());
    let first = conn_serial(&get(&mut ka, &mut events, &mut conn));
    ka.free(conn).unwrap();
    let mut conn = connect(&mut ka, &mut events, https());
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    assert_eq!(conn_serial(&get(&mut ka, &mut events, &mut conn)), first);
    drop(conn);
    // A name the certificate does not cover fails the handshake.
    ka.allocate(Request::unix("https", path, ()).server_name("other.example"))
        .unwrap();
    let err = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert_eq!(err.function(), Function::Tls, "{err}");
    // Without a server name there is nothing to check: refused at once.
    let refused = ka.allocate(Request::unix("https", path, ())).unwrap_err();
    assert!(refused.to_string().contains("server_name"), "{refused}");
}
