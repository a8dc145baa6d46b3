//! Key exchange: the default build (`aws-lc-rs`) negotiates the post-quantum
//! hybrid X25519MLKEM768 with a server that offers it, and X25519 with one
//! that does not (nginx on OpenSSL 3.0, told to offer classical groups only
//! so newer OpenSSL stays a server without ML-KEM) without a
//! HelloRetryRequest; the `ring` build negotiates X25519 with both. A relay
//! between client and server counts the hellos on the wire, so "no extra
//! round trip" is seen, not inferred.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use common::tls::{Pki, TlsServer, nginx_tls12, nginx_tls13};
use common::tls_wire::{self, Relay};
use common::*;
use keepalive::rustls::{self, NamedGroup, ProtocolVersion};
use keepalive::{Config, Connection, Events, Reactor, Request};

const X25519: u16 = 0x001d;
const X25519MLKEM768: u16 = 0x11ec;

/// What this build negotiates with a server that supports ML-KEM.
fn expected_with_ml_kem() -> NamedGroup {
    if cfg!(feature = "aws-lc-rs") {
        NamedGroup::X25519MLKEM768
    } else {
        NamedGroup::X25519
    }
}

/// The key shares this build's ClientHello carries.
fn expected_key_shares() -> Vec<u16> {
    if cfg!(feature = "aws-lc-rs") {
        vec![X25519MLKEM768, X25519]
    } else {
        vec![X25519]
    }
}

fn https(port: u16) -> Request<()> {
    Request::new("https", LOCALHOST, port, ()).server_name("localhost")
}

/// Connects through a fresh relay to `upstream` and returns the connection
/// with the relay, after one request (so TLS 1.3 session tickets have been
/// read).
fn through_relay(
    ka: &mut Reactor<()>,
    events: &mut Events<()>,
    upstream: std::net::SocketAddr,
) -> (Connection, Relay) {
    let relay = Relay::start(upstream);
    let mut conn = connect(ka, events, https(relay.port()));
    let body = get(ka, events, &mut conn);
    assert!(body.starts_with("hello"), "{body}");
    (conn, relay)
}

/// One ClientHello carrying `shares`, one ServerHello, and that one not a
/// HelloRetryRequest: the handshake took a single round trip to the keys.
#[track_caller]
fn assert_one_round_trip(relay: &Relay, shares: &[u16]) {
    let client = relay.client_handshakes();
    let hellos: Vec<_> = client
        .iter()
        .filter(|m| tls_wire::is_client_hello(m))
        .collect();
    assert_eq!(
        hellos.len(),
        1,
        "ClientHellos sent (2 = a HelloRetryRequest)"
    );
    assert_eq!(tls_wire::client_key_share_groups(hellos[0]), shares);
    let server = relay.server_handshakes();
    let server_hellos: Vec<_> = server
        .iter()
        .filter(|m| tls_wire::is_server_hello(m))
        .collect();
    assert_eq!(server_hellos.len(), 1, "ServerHellos received");
    assert!(
        !tls_wire::is_hello_retry_request(server_hellos[0]),
        "the server asked for another key share"
    );
}

#[test]
fn a_rustls_server_with_ml_kem_negotiates_the_hybrid() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(&[&rustls::version::TLS13]));
    let mut ka = reactor(
        Config::default()
            .with_tls_config(pki.client_config())
            .with_max_per_host(2),
    );
    let mut events = Events::new();
    let (first, relay) = through_relay(&mut ka, &mut events, server.addr);
    assert_eq!(first.tls_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(first.tls_kx_group(), Some(expected_with_ml_kem()));
    assert!(!first.is_resumed());
    assert_one_round_trip(&relay, &expected_key_shares());

    // Resumption (PSK with a fresh key exchange) keeps the group.
    let (second, relay) = through_relay(&mut ka, &mut events, server.addr);
    assert!(second.is_resumed(), "the second handshake resumed");
    assert_eq!(second.tls_kx_group(), Some(expected_with_ml_kem()));
    assert_one_round_trip(&relay, &expected_key_shares());

    let counters = ka.stats().counters;
    assert_eq!(counters.tls_handshakes, 2);
    let post_quantum = if cfg!(feature = "aws-lc-rs") { 2 } else { 0 };
    assert_eq!(counters.tls_post_quantum, post_quantum);
}

#[test]
fn nginx_without_ml_kem_negotiates_x25519_without_a_hello_retry_request() {
    let pki = Pki::new();
    let Some(nginx) = nginx_tls13(&pki) else {
        return;
    };
    let upstream = (LOCALHOST, nginx.port()).into();
    let mut ka = reactor(
        Config::default()
            .with_tls_config(pki.client_config())
            .with_max_per_host(2),
    );
    let mut events = Events::new();
    let (first, relay) = through_relay(&mut ka, &mut events, upstream);
    assert_eq!(first.tls_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(first.tls_kx_group(), Some(NamedGroup::X25519));
    assert_one_round_trip(&relay, &expected_key_shares());

    // rustls remembers the group each server chose: the next ClientHello
    // carries the X25519 share alone, about 1.2 KB smaller.
    let (second, relay) = through_relay(&mut ka, &mut events, upstream);
    assert!(second.is_resumed(), "nginx resumed the session");
    assert_eq!(second.tls_kx_group(), Some(NamedGroup::X25519));
    assert_one_round_trip(&relay, &[X25519]);

    let counters = ka.stats().counters;
    assert_eq!((counters.tls_handshakes, counters.tls_post_quantum), (2, 0));
}

/// TLS 1.2 has no key shares and no HelloRetryRequest: the server picks
/// from the groups the client names, and X25519 is the first it knows.
#[test]
fn nginx_with_tls12_only_negotiates_x25519() {
    let pki = Pki::new();
    let Some(nginx) = nginx_tls12(&pki) else {
        return;
    };
    let upstream = (LOCALHOST, nginx.port()).into();
    let mut ka = reactor(
        Config::default()
            .with_tls_config(pki.client_config())
            .with_max_per_host(2),
    );
    let mut events = Events::new();
    let (first, _relay) = through_relay(&mut ka, &mut events, upstream);
    assert_eq!(first.tls_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(first.tls_kx_group(), Some(NamedGroup::X25519));
    // A resumed TLS 1.2 session reuses the old keys: no group to report.
    let (second, _relay) = through_relay(&mut ka, &mut events, upstream);
    assert!(second.is_resumed(), "nginx resumed the session");
    assert_eq!(second.tls_kx_group(), None);
}

#[test]
fn a_plain_connection_has_no_key_exchange_group() {
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, request(server.addr.port(), ()));
    assert_eq!(conn.tls_kx_group(), None);
    assert_eq!(ka.stats().counters.tls_handshakes, 0);
}
