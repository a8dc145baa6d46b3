//! https: TLS connections with rustls, pooled and watched like plain ones.
//! Certificates come from rcgen; servers are rustls on loopback and nginx.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::time::{Duration, Instant};

use common::nginx::conn_serial;
use common::tls::{Pki, Silent, TlsServer, nginx_tls};
use common::*;
use keepalive::rustls::{self, ProtocolVersion};
use keepalive::{Config, Error, Events, FromCache, Function, Request};

fn https(port: u16) -> Request<()> {
    Request::new("https", LOCALHOST, port, ())
}

static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn tls13() -> &'static [&'static rustls::SupportedProtocolVersion] {
    &TLS13_ONLY
}

#[test]
fn https_handshakes_then_reuses_the_connection() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(tls13()));
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, https(server.port()));
    assert!(conn.is_tls());
    assert_eq!(conn.tls_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello tls\n");
    ka.free(conn).unwrap();
    let mut conn = connect(&mut ka, &mut events, https(server.port()));
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello tls\n");
    server.assert_accepted(1);
}

#[test]
fn http_and_https_to_one_address_never_share_a_socket() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(tls13()));
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, https(server.port()));
    ka.free(conn).unwrap();
    let plain = connect(&mut ka, &mut events, request(server.port(), ()));
    assert!(!plain.is_tls());
    assert_eq!(
        plain.from_cache(),
        None,
        "the idle https socket is not handed to http"
    );
    assert_eq!(ka.idle_count(), 1);
}

#[test]
fn server_name_is_checked_and_keys_the_pool() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(tls13()));
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::new();
    let by_name = connect(
        &mut ka,
        &mut events,
        https(server.port()).server_name("localhost"),
    );
    ka.free(by_name).unwrap();
    let by_ip = connect(&mut ka, &mut events, https(server.port()));
    assert_eq!(
        by_ip.from_cache(),
        None,
        "a connection made for one name is not reused for another"
    );

    ka.allocate(https(server.port()).server_name("wrong.example"))
        .unwrap();
    let err = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert_eq!(err.function(), Function::Tls);
    assert_eq!(err.errno(), None);
    assert!(
        err.message().contains("not valid for the server name"),
        "{err}"
    );
}

#[test]
fn unknown_ca_fails_with_tls_and_a_clear_message() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(tls13()));
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config_trusting_other_ca()));
    let mut events = Events::new();
    ka.allocate(https(server.port())).unwrap();
    let err = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert_eq!(err.function(), Function::Tls);
    assert!(err.message().contains("unknown issuer"), "{err}");
    assert_eq!(ka.open_count(), 0);
}

#[test]
fn default_trust_is_the_public_roots_not_a_test_ca() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(tls13()));
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    ka.allocate(https(server.port())).unwrap();
    let err = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert!(err.message().contains("unknown issuer"), "{err}");
}

#[test]
fn invalid_server_name_is_refused_at_allocate() {
    let mut ka = reactor::<()>(Config::default());
    let err = ka
        .allocate(https(443).server_name("not a name!"))
        .unwrap_err();
    assert!(matches!(err.error, Error::InvalidRequest { .. }), "{err}");
}

#[test]
fn session_tickets_on_an_idle_socket_keep_it_pooled() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(tls13()));
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::new();
    // Free right after the handshake: the server's tickets arrive while the
    // socket is idle in the pool.
    let conn = connect(&mut ka, &mut events, https(server.port()));
    ka.free(conn).unwrap();
    poll_for(&mut ka, &mut events, Duration::from_millis(50));
    assert_eq!(ka.idle_count(), 1, "tickets did not kill the idle socket");
    let mut conn = connect(&mut ka, &mut events, https(server.port()));
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello tls\n");
}

#[test]
fn close_notify_on_an_idle_socket_closes_it() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(tls13()));
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, https(server.port()));
    server.send_close_notify();
    poll_until(
        &mut ka,
        &mut events,
        "close_notify to close the idle socket",
        |k| k.idle_count() == 0,
    );
    let conn = connect(&mut ka, &mut events, https(server.port()));
    assert_eq!(conn.from_cache(), None);
}

#[test]
fn a_second_connection_resumes_the_session() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(tls13()));
    let mut ka = reactor(
        Config::default()
            .with_tls_config(pki.client_config())
            .with_max_per_host(2),
    );
    let mut events = Events::new();
    let mut first = connect(&mut ka, &mut events, https(server.port()));
    assert!(!first.is_resumed());
    get(&mut ka, &mut events, &mut first); // the tickets arrive with the response
    let second = connect(&mut ka, &mut events, https(server.port()));
    assert_eq!(second.from_cache(), None);
    assert!(second.is_resumed(), "the second handshake resumed");
}

#[test]
fn a_stalled_handshake_times_out_with_etimedout() {
    let silent = Silent::start();
    let pki = Pki::new();
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::new();
    let start = Instant::now();
    ka.allocate(https(silent.addr.port()).timeout(Duration::from_millis(200)))
        .unwrap();
    let err = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(err.function(), Function::Connect);
    assert_eq!(err.errno(), Some(libc::ETIMEDOUT));
    assert_eq!(ka.open_count(), 0);
}

#[test]
fn tls12_servers_and_alpn_work() {
    let pki = Pki::new();
    let config = pki.server_config_with(&[&rustls::version::TLS12], |c| {
        c.alpn_protocols = vec![b"http/1.1".to_vec()]
    });
    let server = TlsServer::start(config);
    let client =
        pki.client_config_with(|c| c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    let mut ka = reactor(Config::default().with_tls_config(client));
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, https(server.port()));
    assert_eq!(conn.tls_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello tls\n");
}

#[test]
fn other_schemes_can_be_made_tls() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(tls13()));
    let mut ka = reactor(
        Config::default()
            .with_tls_config(pki.client_config())
            .with_tls_scheme("wss"),
    );
    let mut events = Events::new();
    let mut conn = connect(
        &mut ka,
        &mut events,
        Request::new("wss", LOCALHOST, server.port(), ()),
    );
    assert!(conn.is_tls());
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello tls\n");
}

#[test]
fn https_keep_alive_reuse_against_nginx() {
    let pki = Pki::new();
    let Some(nginx) = nginx_tls(&pki) else { return };
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::new();
    let mut serials = Vec::new();
    for n in 0..10 {
        let mut conn = connect(
            &mut ka,
            &mut events,
            https(nginx.port()).server_name("localhost"),
        );
        assert_eq!(conn.from_cache().is_some(), n > 0, "request {n}");
        serials.push(conn_serial(&get(&mut ka, &mut events, &mut conn)));
        ka.free(conn).unwrap();
    }
    serials.dedup();
    assert_eq!(
        serials.len(),
        1,
        "one TLS connection served all ten: {serials:?}"
    );
}

#[test]
fn large_writes_back_up_with_would_block_and_flush_delivers_everything() {
    use std::io::{ErrorKind, Write};
    let pki = Pki::new();
    let sink = common::tls::TlsSink::start(pki.server_config(tls13()), Duration::from_millis(300));
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, https(sink.addr.port()));
    let data = vec![b'x'; 16 << 20];
    let (mut sent, mut blocked) = (0, 0);
    let start = Instant::now();
    while sent < data.len() {
        assert!(start.elapsed() < CAP, "writes stalled at {sent}");
        match conn.write(&data[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                blocked += 1;
                ka.poll(&mut events, Some(Duration::from_millis(50)))
                    .unwrap();
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    loop {
        assert!(start.elapsed() < CAP, "flush stalled");
        match conn.flush() {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::WouldBlock => ka
                .poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap(),
            Err(e) => panic!("flush: {e}"),
        }
    }
    assert!(blocked > 0, "16 MiB against a stalled reader must back up");
    while sink.received() < data.len() {
        assert!(
            start.elapsed() < CAP,
            "server got {} of {}",
            sink.received(),
            data.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sink.received(), data.len());
    ka.free(conn).unwrap();
    assert_eq!(
        ka.idle_count(),
        1,
        "a fully flushed TLS connection is pooled"
    );
}

#[test]
fn a_tls_connection_freed_with_unsent_data_is_not_pooled() {
    use std::io::{ErrorKind, Write};
    let pki = Pki::new();
    let sink = common::tls::TlsSink::start(pki.server_config(tls13()), Duration::from_secs(2));
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, https(sink.addr.port()));
    let data = vec![b'x'; 1 << 20];
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < CAP, "never backed up");
        match conn.write(&data) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    ka.free(conn).unwrap();
    assert_eq!(
        ka.idle_count(),
        0,
        "ciphertext still queued in rustls: closed, not pooled"
    );
}

#[test]
fn upper_case_schemes_are_tls_and_share_the_pool() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(tls13()));
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::new();
    let req = |scheme: &'static str| Request::new(scheme, LOCALHOST, server.port(), ());
    let conn = connect(&mut ka, &mut events, req("HTTPS"));
    assert!(conn.is_tls(), "HTTPS must never be plaintext");
    ka.free(conn).unwrap();
    let conn = connect(&mut ka, &mut events, req("https"));
    assert!(conn.is_tls());
    assert_eq!(
        conn.from_cache(),
        Some(FromCache::Immediate),
        "HTTPS and https are one pool key"
    );
    ka.free(conn).unwrap();
    server.assert_accepted(1);
}
