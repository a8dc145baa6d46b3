//! Requests by host name, end to end on loopback: the reactor resolves
//! through the test DNS responder (`tests/common/dns.rs`), a test hosts
//! file, or a real dnsmasq, and connects with Happy Eyeballs.
//!
//! Every name here answers 127.0.0.1 or ::1 only. Waits are bounded by
//! `CAP`; verdicts come from outcomes and counts, never from a sleep.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::dns::{DnsServer, RecordType, Transport, Zone};
use common::*;
use keepalive::{
    Change, Config, Error, Event, Events, FromCache, Function, Host, Reactor, Request, ResolveError,
};

const V4: Ipv4Addr = Ipv4Addr::LOCALHOST;
const V6: Ipv6Addr = Ipv6Addr::LOCALHOST;

/// A config that asks `dns` only, with `options` as resolv.conf's and
/// `hosts` as the hosts file; the files live in `dir`.
fn config(dns: &DnsServer, dir: &TempDir, options: &str, hosts: &str) -> Config {
    Config::default()
        .with_resolv_conf(dir.file("resolv.conf", &format!("options {options}\n")))
        .with_hosts_file(dir.file("hosts", hosts))
        .with_nameservers(vec![dns.addr])
}

/// A reactor on `dns` with a 5 s try timeout and one attempt.
fn setup(dns: &DnsServer) -> (Reactor<u32>, TempDir) {
    let dir = TempDir::new("names");
    let ka = reactor(config(dns, &dir, "timeout:5 attempts:1", ""));
    (ka, dir)
}

fn by_name(name: &'static str, port: u16, n: u32) -> Request<u32> {
    Request::host("http", name, port, n)
}

/// Whether ::1 is configured (an IPv6-less container has none).
fn ipv6() -> bool {
    let ok = std::net::TcpListener::bind((V6, 0)).is_ok();
    if !ok {
        eprintln!("skipped: no IPv6 loopback (::1) here");
    }
    ok
}

/// Binds `v6` on [::1]:P and `v4` on 127.0.0.1:P for one port P; each
/// returns what it bound and its address.
fn same_port<A, B>(
    v6: impl Fn(SocketAddr) -> std::io::Result<(A, SocketAddr)>,
    v4: impl Fn(SocketAddr) -> std::io::Result<(B, SocketAddr)>,
) -> (A, B, u16) {
    for _ in 0..50 {
        let (a, bound) = v6(SocketAddr::new(V6.into(), 0)).expect("bind on ::1");
        if let Ok((b, _)) = v4(SocketAddr::new(V4.into(), bound.port())) {
            return (a, b, bound.port());
        }
    }
    panic!("no port free on both ::1 and 127.0.0.1");
}

fn live(addr: SocketAddr) -> std::io::Result<(Server, SocketAddr)> {
    Server::start_at(addr).map(|s| {
        let a = s.addr;
        (s, a)
    })
}

fn stalled(addr: SocketAddr) -> std::io::Result<(FullBacklog, SocketAddr)> {
    full_backlog_at(addr).map(|s| {
        let a = s.addr;
        (s, a)
    })
}

/// Sockets, in the kernel's table, in SYN-SENT towards `port` on loopback
/// of one family: connection attempts still under way.
fn syn_sent_to(port: u16, v6: bool) -> usize {
    let table = if v6 {
        "/proc/net/tcp6"
    } else {
        "/proc/net/tcp"
    };
    let text = std::fs::read_to_string(table).expect("read the kernel's TCP table");
    text.lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|r| r.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            remote_port == Some(port) && fields.get(3) == Some(&"02")
        })
        .count()
}

#[test]
fn a_name_with_an_a_record_connects_and_echoes_the_name() {
    let dns = DnsServer::start();
    dns.set("www.test", Zone::addresses(&[V4], &[], 60));
    let server = Server::start();
    let dir = TempDir::new("names");
    let mut ka: Reactor<u32> =
        reactor(config(&dns, &dir, "timeout:5 attempts:1", "").with_lifecycle_events(true));
    let mut events = Events::new();
    ka.allocate(by_name("www.test", server.port(), 7)).unwrap();
    // Lifecycle events name the address reached, not the name's
    // placeholder (`[::]:port`).
    let mut peers = Vec::new();
    let mut outcome = None;
    let start = Instant::now();
    while outcome.is_none() {
        assert!(start.elapsed() < CAP, "no outcome");
        ka.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for e in events.drain() {
            match e {
                Event::Outcome(o) => outcome = Some(o),
                Event::Lifecycle(l) => peers.push((l.change, l.peer)),
                _ => {}
            }
        }
    }
    let outcome = outcome.unwrap();
    assert_eq!(outcome.context, 7);
    assert_eq!(outcome.target.name(), Some("www.test"));
    assert_eq!(outcome.target.host(), &Host::Name("www.test".into()));
    assert_eq!(
        outcome.target.to_string(),
        format!("http://www.test:{}", server.port())
    );
    let mut conn = outcome.result.expect("connected by name");
    assert_eq!(conn.peer_addr(), server.addr, "the address used");
    assert_eq!(conn.from_cache(), None);
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
    assert_eq!(dns.queries("www.test", RecordType::A), 1);
    assert_eq!(dns.queries("www.test", RecordType::AAAA), 1);
    conn.close();
    poll_until(&mut ka, &mut events, "the close", |ka| ka.open_count() == 0);
    for e in events.drain() {
        if let Event::Lifecycle(l) = e {
            peers.push((l.change, l.peer));
        }
    }
    assert_eq!(
        peers.first(),
        Some(&(Change::Opened, server.addr)),
        "{peers:?}"
    );
    assert!(
        peers.iter().all(|&(_, p)| p == server.addr),
        "lifecycle peers {peers:?}"
    );
    assert!(peers.len() >= 2, "opened and closed: {peers:?}");
}

#[test]
fn a_name_with_an_aaaa_record_connects_over_ipv6() {
    if !ipv6() {
        return;
    }
    let dns = DnsServer::start();
    dns.set("six.test", Zone::addresses(&[], &[V6], 60));
    let server = Server::start_on(V6.into());
    let (mut ka, _dir) = setup(&dns);
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, by_name("six.test", server.port(), 1));
    assert_eq!(conn.peer_addr(), server.addr);
    assert!(conn.peer_addr().is_ipv6());
}

#[test]
fn with_both_families_ipv6_is_tried_first() {
    if !ipv6() {
        return;
    }
    let dns = DnsServer::start();
    let (six, four, port) = same_port(live, live);
    dns.set("dual.test", Zone::addresses(&[V4], &[V6], 60));
    let (mut ka, _dir) = setup(&dns);
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, by_name("dual.test", port, 1));
    assert_eq!(conn.peer_addr(), SocketAddr::new(V6.into(), port));
    six.wait_accepted(1);
    assert_eq!(four.accepted(), 0);
}

#[test]
fn nxdomain_fails_with_function_resolve_and_says_so() {
    let dns = DnsServer::start();
    dns.set("gone.test", Zone::nxdomain(60));
    let (mut ka, _dir) = setup(&dns);
    let mut events = Events::new();
    ka.allocate(by_name("gone.test", 80, 3)).unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert_eq!(outcome.context, 3);
    let e = outcome.result.expect_err("no such name");
    assert_eq!(e.function(), Function::Resolve);
    assert_eq!(e.errno(), None);
    assert_eq!(e.resolve_error(), Some(ResolveError::NxDomain));
    assert!(e.message().contains("no such host name"), "{}", e.message());
    assert_eq!(e.to_string(), "resolve error: no such host name (NXDOMAIN)");
    assert_eq!(ka.open_count(), 0);
    assert_eq!(ka.stats().counters.failures(Function::Resolve), 1);
}

#[test]
fn servfail_fails_with_a_server_failure() {
    let dns = DnsServer::start();
    dns.set("broken.test", Zone::servfail());
    let (mut ka, _dir) = setup(&dns);
    let mut events = Events::new();
    ka.allocate(by_name("broken.test", 80, 1)).unwrap();
    let e = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert_eq!(e.function(), Function::Resolve);
    assert_eq!(e.resolve_error(), Some(ResolveError::ServerFailure));
    assert!(e.message().contains("failed to answer"), "{}", e.message());
}

#[test]
fn a_truncated_answer_is_asked_again_over_tcp() {
    let dns = DnsServer::start();
    dns.set("big.test", Zone::addresses(&[V4], &[], 60).truncated());
    let server = Server::start();
    let (mut ka, _dir) = setup(&dns);
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, by_name("big.test", server.port(), 1));
    assert_eq!(conn.peer_addr(), server.addr);
    assert_eq!(
        dns.queries_over("big.test", RecordType::A, Transport::Udp),
        1
    );
    assert_eq!(
        dns.queries_over("big.test", RecordType::A, Transport::Tcp),
        1
    );
}

#[test]
fn silence_times_out_at_the_request_deadline_with_one_outcome() {
    let dns = DnsServer::start();
    dns.set("quiet.test", Zone::silent());
    let (mut ka, _dir) = setup(&dns); // the resolver would wait 5 s
    let mut events = Events::new();
    let start = Instant::now();
    let id = ka
        .allocate(by_name("quiet.test", 80, 1).timeout(Duration::from_millis(300)))
        .unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    let waited = start.elapsed();
    assert_eq!(outcome.id, id);
    let e = outcome.result.unwrap_err();
    // The request's own deadline came first: the pool's timeout outcome.
    assert_eq!(e.function(), Function::Connect);
    assert_eq!(e.errno(), Some(libc::ETIMEDOUT));
    assert!(e.is_timeout());
    assert!(waited >= Duration::from_millis(300), "early: {waited:?}");
    assert_eq!(ka.open_count(), 0, "the slot closed with the timeout");
    // Exactly one outcome: nothing more comes.
    poll_for(&mut ka, &mut events, Duration::from_millis(200));
    assert!(
        !events.iter().any(|e| matches!(e, Event::Outcome(_))),
        "a second outcome"
    );
    assert!(dns.queries("quiet.test", RecordType::A) >= 1);
}

#[test]
fn a_resolver_timeout_before_the_deadline_fails_with_resolve_etimedout() {
    let dns = DnsServer::start();
    dns.set("quiet.test", Zone::silent());
    let dir = TempDir::new("names");
    let mut ka: Reactor<u32> = reactor(config(&dns, &dir, "timeout:1 attempts:1", ""));
    let mut events = Events::new();
    let start = Instant::now();
    ka.allocate(by_name("quiet.test", 80, 1).timeout(Duration::from_secs(30)))
        .unwrap();
    // The resolver's deadline is the reactor's next one, not the request's.
    let next = ka.next_timeout().expect("a deadline");
    assert!(next <= Duration::from_secs(1), "next_timeout {next:?}");
    let e = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(e.function(), Function::Resolve);
    assert_eq!(e.errno(), Some(libc::ETIMEDOUT));
    assert!(!e.is_timeout(), "not the request's own timeout");
    assert_eq!(e.resolve_error(), Some(ResolveError::TimedOut));
    assert!(e.message().contains("timed out"), "{}", e.message());
}

#[test]
fn concurrent_requests_for_one_name_share_one_query() {
    let dns = DnsServer::start();
    dns.set("many.test", Zone::addresses(&[V4], &[], 60));
    let server = Server::start();
    let dir = TempDir::new("names");
    let mut ka: Reactor<u32> =
        reactor(config(&dns, &dir, "timeout:5 attempts:1", "").with_max_per_host(8));
    let mut events = Events::new();
    for n in 0..8 {
        ka.allocate(by_name("many.test", server.port(), n)).unwrap();
    }
    let mut conns = Vec::new();
    let start = Instant::now();
    while conns.len() < 8 {
        assert!(start.elapsed() < CAP, "{} of 8 outcomes", conns.len());
        ka.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for e in events.drain() {
            if let Event::Outcome(o) = e {
                conns.push(o.result.expect("connected"));
            }
        }
    }
    assert_eq!(dns.queries("many.test", RecordType::A), 1);
    assert_eq!(dns.queries("many.test", RecordType::AAAA), 1);
    server.wait_accepted(8);
}

#[test]
fn spoofed_replies_are_ignored() {
    let dns = DnsServer::start();
    // Each answer comes after NXDOMAIN replies with a wrong id, for a wrong
    // question, and from a wrong port: any of them taken fails the request.
    dns.set("spoof.test", Zone::addresses(&[V4], &[], 60).spoofed());
    let server = Server::start();
    let (mut ka, _dir) = setup(&dns);
    let mut events = Events::new();
    let conn = connect(
        &mut ka,
        &mut events,
        by_name("spoof.test", server.port(), 1),
    );
    assert_eq!(conn.peer_addr(), server.addr);
}

#[test]
fn localhost_comes_from_the_hosts_file_without_a_query() {
    let dns = DnsServer::start();
    let server = Server::start();
    let dir = TempDir::new("names");
    let hosts = "# test hosts\n127.0.0.1 localhost web.local\n";
    let mut ka: Reactor<u32> = reactor(config(&dns, &dir, "timeout:5", hosts));
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, by_name("localhost", server.port(), 1));
    assert_eq!(conn.peer_addr(), server.addr);
    ka.free(conn).unwrap();
    // Names compare without regard to case: one pool key.
    let again = connect(&mut ka, &mut events, by_name("LocalHost", server.port(), 2));
    assert_eq!(again.from_cache(), Some(FromCache::Immediate));
    let web = connect(&mut ka, &mut events, by_name("web.local", server.port(), 3));
    assert_eq!(web.from_cache(), None, "another name, another key");
    assert_eq!(dns.total_queries(), 0);
    server.assert_accepted(2);
}

#[test]
fn a_cached_answer_is_used_until_its_ttl_runs_out() {
    let dns = DnsServer::start();
    dns.set("short.test", Zone::addresses(&[V4], &[], 1));
    let server = Server::start();
    let (mut ka, _dir) = setup(&dns);
    let mut events = Events::new();
    let conn = connect(
        &mut ka,
        &mut events,
        by_name("short.test", server.port(), 1),
    );
    conn.close(); // not pooled: the next request connects anew
    let conn = connect(
        &mut ka,
        &mut events,
        by_name("short.test", server.port(), 2),
    );
    assert_eq!(conn.from_cache(), None);
    assert_eq!(
        dns.queries("short.test", RecordType::A),
        1,
        "within the TTL, from the cache"
    );
    conn.close();
    poll_for(&mut ka, &mut events, Duration::from_millis(1_100));
    let conn = connect(
        &mut ka,
        &mut events,
        by_name("short.test", server.port(), 3),
    );
    assert_eq!(conn.from_cache(), None);
    assert_eq!(
        dns.queries("short.test", RecordType::A),
        2,
        "after the TTL, asked again"
    );
    server.assert_accepted(3);
}

/// A program that does other work between polls: its next connection by
/// name is made with an answer whose lifetime ran out during the pause.
/// The answer is judged by the time of the `allocate`, not by the last
/// poll's (issue 16's third symptom: the expired answer was used unasked).
#[test]
fn a_cached_answer_that_expired_during_a_pause_without_polls_is_asked_again() {
    let dns = DnsServer::start();
    // TTL 0, kept for the floor: 200 ms (the NODATA for AAAA may be
    // cached for longer, so it does not shorten that).
    dns.set(
        "pause.test",
        Zone {
            negative_ttl: Some(60),
            ..Zone::addresses(&[V4], &[], 0)
        },
    );
    let server = Server::start();
    let dir = TempDir::new("names");
    let floor = Duration::from_millis(200);
    let mut ka: Reactor<u32> =
        reactor(config(&dns, &dir, "timeout:5 attempts:1", "").with_dns_ttl(
            floor,
            Duration::from_secs(3600),
            Duration::from_secs(30),
        ));
    let mut events = Events::new();
    let conn = connect(
        &mut ka,
        &mut events,
        by_name("pause.test", server.port(), 1),
    );
    assert_eq!(dns.queries("pause.test", RecordType::A), 1);
    conn.close();
    // The program works elsewhere, no poll, past the answer's lifetime
    // (the answer came before the connection did).
    std::thread::sleep(floor + Duration::from_millis(100));
    ka.allocate(by_name("pause.test", server.port(), 2))
        .unwrap();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert!(outcome.result.is_ok(), "{:?}", outcome.result.err());
    assert_eq!(
        dns.queries("pause.test", RecordType::A),
        2,
        "the answer had expired when the connect was decided: asked again"
    );
}

/// The same for a waiter's connect, started by a connection closed after a
/// pause (taken back at the next poll, before its clock read): it asks
/// again for an answer that expired during the pause.
#[test]
fn a_connect_started_by_a_close_after_a_pause_judges_the_answer_by_then() {
    let dns = DnsServer::start();
    dns.set(
        "freed.test",
        Zone {
            negative_ttl: Some(60),
            ..Zone::addresses(&[V4], &[], 0)
        },
    );
    let server = Server::start();
    let dir = TempDir::new("names");
    let floor = Duration::from_millis(200);
    let mut ka: Reactor<u32> = reactor(
        config(&dns, &dir, "timeout:5 attempts:1", "")
            .with_max_per_host(1)
            .with_dns_ttl(floor, Duration::from_secs(3600), Duration::from_secs(30)),
    );
    let mut events = Events::new();
    let conn = connect(
        &mut ka,
        &mut events,
        by_name("freed.test", server.port(), 1),
    );
    // Waits for the one connection the key may have.
    ka.allocate(by_name("freed.test", server.port(), 2))
        .unwrap();
    std::thread::sleep(floor + Duration::from_millis(100));
    conn.close();
    let outcome = wait_outcome(&mut ka, &mut events);
    assert!(outcome.result.is_ok(), "{:?}", outcome.result.err());
    assert_eq!(outcome.context, 2);
    assert_eq!(
        dns.queries("freed.test", RecordType::A),
        2,
        "the answer had expired when the close started the connect"
    );
}

#[test]
fn deallocating_during_a_lookup_leaves_an_orphan_that_idles() {
    let dns = DnsServer::start();
    dns.set("orphan.test", Zone::addresses(&[V4], &[], 60));
    let server = Server::start();
    let (mut ka, _dir) = setup(&dns);
    let mut events = Events::new();
    let id = ka
        .allocate(by_name("orphan.test", server.port(), 9))
        .unwrap();
    // The query is on its way; no answer has been read yet.
    assert_eq!(ka.deallocate(id).unwrap(), 9);
    assert_eq!(ka.open_count(), 1, "the slot connects on, as an orphan");
    let mut outcomes = 0;
    let start = Instant::now();
    while ka.idle_count() < 1 {
        assert!(start.elapsed() < CAP, "the orphan never idled");
        ka.poll(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        outcomes += events
            .drain()
            .filter(|e| matches!(e, Event::Outcome(_)))
            .count();
    }
    assert_eq!(outcomes, 0, "no event for a deallocated request");
    let conn = connect(
        &mut ka,
        &mut events,
        by_name("orphan.test", server.port(), 1),
    );
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    // The late connection was not wasted.
    server.assert_accepted(1);
}

#[test]
fn an_orphaned_lookup_that_never_answers_closes_at_its_deadline() {
    let dns = DnsServer::start();
    dns.set("quiet.test", Zone::silent());
    let (mut ka, _dir) = setup(&dns);
    let mut events = Events::new();
    let id = ka
        .allocate(by_name("quiet.test", 80, 1).timeout(Duration::from_millis(200)))
        .unwrap();
    ka.deallocate(id).unwrap();
    assert_eq!(ka.open_count(), 1);
    poll_until(&mut ka, &mut events, "the orphan's deadline", |ka| {
        ka.open_count() == 0
    });
    assert!(!events.iter().any(|e| matches!(e, Event::Outcome(_))));
}

#[test]
fn the_pool_key_is_the_name_not_the_address() {
    let dns = DnsServer::start();
    dns.set("key.test", Zone::addresses(&[V4], &[], 60));
    let server = Server::start();
    let (mut ka, _dir) = setup(&dns);
    let mut events = Events::new();
    let port = server.port();
    let first = connect(&mut ka, &mut events, by_name("key.test", port, 1));
    ka.free(first).unwrap();
    // The same name, in another case: the pooled connection.
    let second = connect(
        &mut ka,
        &mut events,
        Request::host("http", "KEY.test", port, 2),
    );
    assert_eq!(second.from_cache(), Some(FromCache::Immediate));
    ka.free(second).unwrap();
    // The same address, asked for by address: a pool of its own.
    let numeric = connect(&mut ka, &mut events, request(port, 3));
    assert_eq!(numeric.from_cache(), None);
    assert_eq!(numeric.peer_addr(), server.addr);
    ka.free(numeric).unwrap();
    // An IP literal given as a name is numeric: the address's pool.
    let literal = connect(
        &mut ka,
        &mut events,
        Request::host("http", "127.0.0.1", port, 4),
    );
    assert_eq!(literal.from_cache(), Some(FromCache::Immediate));
    server.assert_accepted(2);
    assert_eq!(dns.queries("key.test", RecordType::A), 1);
}

#[test]
fn an_invalid_name_is_refused_at_allocate() {
    let dns = DnsServer::start();
    let (mut ka, _dir) = setup(&dns);
    for bad in [
        "bad..name",
        "a/b.test",
        "spaces are.not ok",
        "",
        "café.test",
    ] {
        let refused = ka
            .allocate(Request::host("http", bad, 80, 5))
            .expect_err(bad);
        assert!(
            matches!(refused.error, Error::InvalidRequest { .. }),
            "{bad}: {:?}",
            refused.error
        );
        assert_eq!(refused.into_request().into_context(), 5);
    }
    assert_eq!(dns.total_queries(), 0);
}

#[test]
fn a_tls_request_by_a_name_rustls_refuses_is_refused_at_allocate() {
    let dns = DnsServer::start();
    let (mut ka, _dir) = setup(&dns);
    // A valid host name, but no valid TLS server name: the name is the
    // server name by default, so it is refused before any lookup.
    let refused = ka
        .allocate(Request::host("https", "1.2.3", 443, 6))
        .expect_err("1.2.3 over https");
    assert!(
        refused.to_string().contains("server name"),
        "{}",
        refused.error
    );
    assert_eq!(refused.into_request().into_context(), 6);
    // With a server name of its own it goes ahead; over plain http too.
    let fine = Request::host("https", "1.2.3", 443, 7).server_name("example.test");
    let id = ka.allocate(fine).unwrap();
    ka.deallocate(id).unwrap();
    let id = ka.allocate(Request::host("http", "1.2.3", 80, 8)).unwrap();
    ka.deallocate(id).unwrap();
}

#[test]
fn a_host_name_built_by_the_caller_is_lowered_like_any_other() {
    let by_hand = Request::with_host("http", Host::Name("Pooled.TEST".into()), 80, ());
    let parsed = Request::host("http", "pooled.test", 80, ());
    assert_eq!(by_hand.target().name(), Some("pooled.test"));
    assert_eq!(by_hand.target(), parsed.target(), "one pool key");
}

#[test]
fn a_bind_address_of_the_other_family_leaves_no_usable_address() {
    let dns = DnsServer::start();
    let dir = TempDir::new("names");
    let mut ka: Reactor<u32> = reactor(config(&dns, &dir, "timeout:5", "::1 six.local\n"));
    let mut events = Events::new();
    ka.allocate(by_name("six.local", 80, 1).bind_address(V4.into()))
        .unwrap();
    let e = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert_eq!(e.function(), Function::Resolve);
    assert_eq!(e.resolve_error(), Some(ResolveError::NoUsableAddress));
    assert!(e.message().contains("no address of a usable family"));
}

#[test]
fn tls_by_name_checks_the_certificate_against_the_name() {
    use common::tls::{Pki, TlsServer};
    let pki = Pki::new(); // a certificate for localhost, 127.0.0.1 and ::1
    let server = TlsServer::start(pki.server_config(&[&keepalive::rustls::version::TLS13]));
    let dns = DnsServer::start();
    let dir = TempDir::new("names");
    let hosts = "127.0.0.1 localhost other.local\n";
    let mut ka: Reactor<u32> =
        reactor(config(&dns, &dir, "timeout:5", hosts).with_tls_config(pki.client_config()));
    let mut events = Events::new();
    let conn = connect(
        &mut ka,
        &mut events,
        Request::host("https", "localhost", server.port(), 1),
    );
    assert!(conn.tls_version().is_some());
    ka.allocate(Request::host("https", "other.local", server.port(), 2))
        .unwrap();
    let e = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert_eq!(e.function(), Function::Tls);
    assert!(e.message().contains("not valid for"), "{}", e.message());
}

// ----- Happy Eyeballs ------------------------------------------------------

/// A resolv.conf whose tries wait 30 s: a lookup held by an unanswered
/// family would outlast every request timeout below.
const SLOW_RESOLVER: &str = "timeout:30 attempts:1";

/// Allocates `name` with a 3 s timeout and returns the outcome and how
/// long it took.
fn timed_outcome(
    ka: &mut Reactor<u32>,
    name: &'static str,
    port: u16,
) -> (keepalive::Outcome<u32>, Duration) {
    let mut events = Events::new();
    let start = Instant::now();
    ka.allocate(by_name(name, port, 1).timeout(Duration::from_secs(3)))
        .unwrap();
    let outcome = wait_outcome(ka, &mut events);
    (outcome, start.elapsed())
}

/// RFC 8305 §3 (issue 16's second symptom): a server that drops AAAA
/// queries costs the resolution delay (50 ms), not the resolver's timeout.
#[test]
fn an_unanswered_aaaa_query_costs_the_resolution_delay_not_the_timeout() {
    let dns = DnsServer::start();
    dns.set(
        "noaaaa.test",
        Zone::addresses(&[V4], &[V6], 60).silent_for(RecordType::AAAA),
    );
    let server = Server::start();
    let dir = TempDir::new("names");
    let mut ka: Reactor<u32> = reactor(config(&dns, &dir, SLOW_RESOLVER, ""));
    let (outcome, took) = timed_outcome(&mut ka, "noaaaa.test", server.port());
    let conn = outcome
        .result
        .expect("connected on the A answer, within the request's 3 s");
    assert_eq!(conn.peer_addr(), SocketAddr::new(V4.into(), server.port()));
    assert_eq!(dns.queries("noaaaa.test", RecordType::AAAA), 1);
    eprintln!("connected {took:?} after allocate (resolution delay 50 ms)");
    assert!(
        took < Duration::from_secs(1),
        "{took:?}: more than the delay"
    );
}

/// The other order: A never answered, AAAA answered, connects at once.
#[test]
fn an_unanswered_a_query_does_not_hold_an_aaaa_answer() {
    if !ipv6() {
        return;
    }
    let dns = DnsServer::start();
    dns.set(
        "noa.test",
        Zone::addresses(&[V4], &[V6], 60).silent_for(RecordType::A),
    );
    let server = Server::start_on(V6.into());
    let dir = TempDir::new("names");
    let mut ka: Reactor<u32> = reactor(config(&dns, &dir, SLOW_RESOLVER, ""));
    let (outcome, took) = timed_outcome(&mut ka, "noa.test", server.port());
    let conn = outcome
        .result
        .expect("connected on the AAAA answer, within the request's 3 s");
    assert_eq!(conn.peer_addr(), SocketAddr::new(V6.into(), server.port()));
    eprintln!("connected {took:?} after allocate");
    assert!(
        took < Duration::from_secs(1),
        "{took:?}: waited for the A answer"
    );
}

/// With an IPv4 bind address, an early AAAA answer has nothing usable:
/// the dial waits for A instead of failing.
#[test]
fn an_early_answer_of_the_other_family_than_the_bind_address_waits_for_the_rest() {
    let dns = DnsServer::start();
    dns.set(
        "bound4.test",
        Zone::addresses(&[V4], &[V6], 60).delayed_for(RecordType::A, Duration::from_millis(200)),
    );
    let server = Server::start();
    let dir = TempDir::new("names");
    let mut ka: Reactor<u32> = reactor(config(&dns, &dir, SLOW_RESOLVER, ""));
    let mut events = Events::new();
    ka.allocate(by_name("bound4.test", server.port(), 1).bind_address(V4.into()))
        .unwrap();
    let conn = wait_outcome(&mut ka, &mut events)
        .result
        .expect("connected on the A answer");
    assert_eq!(conn.peer_addr(), SocketAddr::new(V4.into(), server.port()));
}

/// An AAAA answer that comes after the dial began on A joins the race: a
/// refused IPv4 address does not fail the request while AAAA is awaited.
#[test]
fn a_late_aaaa_answer_joins_the_race_after_ipv4_was_refused() {
    if !ipv6() {
        return;
    }
    let dns = DnsServer::start();
    dns.set(
        "late6.test",
        Zone::addresses(&[V4], &[V6], 60).delayed_for(RecordType::AAAA, Duration::from_millis(300)),
    );
    // Listening on ::1 only: 127.0.0.1 on the same port refuses.
    let server = Server::start_on(V6.into());
    let dir = TempDir::new("names");
    let mut ka: Reactor<u32> = reactor(config(&dns, &dir, SLOW_RESOLVER, ""));
    let (outcome, _) = timed_outcome(&mut ka, "late6.test", server.port());
    let conn = outcome.result.expect("connected to the late AAAA address");
    assert_eq!(conn.peer_addr(), SocketAddr::new(V6.into(), server.port()));
}

#[test]
fn a_stalled_ipv6_address_falls_back_to_ipv4_after_the_delay() {
    if !ipv6() {
        return;
    }
    // [::1]:P never answers a SYN (its accept queue is full: Linux drops
    // the SYN, the connect hangs in SYN-SENT); 127.0.0.1:P serves.
    let (_stalled, server, port) = same_port(stalled, live);
    let dns = DnsServer::start();
    dns.set("he.test", Zone::addresses(&[V4], &[V6], 60));
    let dir = TempDir::new("names");
    let delay = Duration::from_millis(50);
    let mut ka: Reactor<u32> =
        reactor(config(&dns, &dir, "timeout:5 attempts:1", "").with_happy_eyeballs_delay(delay));
    let mut events = Events::new();
    let start = Instant::now();
    let conn = connect(
        &mut ka,
        &mut events,
        by_name("he.test", port, 1).timeout(Duration::from_secs(5)),
    );
    assert!(start.elapsed() >= delay, "IPv4 started before the delay");
    assert_eq!(
        conn.peer_addr(),
        SocketAddr::new(V4.into(), port),
        "IPv4 won"
    );
    server.assert_accepted(1);
    assert_eq!(
        syn_sent_to(port, true),
        0,
        "the IPv6 attempt that lost was closed"
    );
    assert_eq!(ka.open_count(), 1);
}

#[test]
fn a_live_ipv6_address_wins_at_once_over_a_stalled_ipv4_one() {
    if !ipv6() {
        return;
    }
    let (server, _stalled, port) = same_port(live, stalled);
    let dns = DnsServer::start();
    dns.set("he6.test", Zone::addresses(&[V4], &[V6], 60));
    let dir = TempDir::new("names");
    // A delay longer than the request's timeout: only an IPv6 connection
    // made without waiting for it can succeed.
    let mut ka: Reactor<u32> = reactor(
        config(&dns, &dir, "timeout:5 attempts:1", "")
            .with_happy_eyeballs_delay(Duration::from_secs(20)),
    );
    let mut events = Events::new();
    let conn = connect(
        &mut ka,
        &mut events,
        by_name("he6.test", port, 1).timeout(Duration::from_secs(5)),
    );
    assert_eq!(conn.peer_addr(), SocketAddr::new(V6.into(), port));
    server.assert_accepted(1);
    assert_eq!(syn_sent_to(port, false), 0, "no IPv4 attempt was started");
}

#[test]
fn a_refused_attempt_starts_the_next_one_at_once() {
    if !ipv6() {
        return;
    }
    // Nothing listens on [::1]:P: refused at once, and IPv4 starts then,
    // not after the (here very long) delay.
    let server = Server::start();
    let port = server.port();
    if std::net::TcpListener::bind((V6, port)).is_err() {
        eprintln!("skipped: [::1]:{port} is taken");
        return;
    }
    let dns = DnsServer::start();
    dns.set("refused6.test", Zone::addresses(&[V4], &[V6], 60));
    let dir = TempDir::new("names");
    let mut ka: Reactor<u32> = reactor(
        config(&dns, &dir, "timeout:5 attempts:1", "")
            .with_happy_eyeballs_delay(Duration::from_secs(20)),
    );
    let mut events = Events::new();
    let conn = connect(
        &mut ka,
        &mut events,
        by_name("refused6.test", port, 1).timeout(Duration::from_secs(5)),
    );
    assert_eq!(conn.peer_addr(), server.addr);
}

#[test]
fn when_every_address_refuses_the_outcome_is_the_connect_error() {
    let dns = DnsServer::start();
    let port = refused_port();
    dns.set("nobody.test", Zone::addresses(&[V4], &[], 60));
    let (mut ka, _dir) = setup(&dns);
    let mut events = Events::new();
    ka.allocate(by_name("nobody.test", port, 1)).unwrap();
    let e = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert_eq!(e.function(), Function::Connect);
    assert_eq!(e.errno(), Some(libc::ECONNREFUSED));
    assert_eq!(ka.open_count(), 0);
}

// ----- configuration -------------------------------------------------------

#[test]
fn missing_resolver_files_mean_defaults_and_unreadable_ones_are_refused() {
    let dir = TempDir::new("names");
    let missing = dir.path.join("absent");
    let ok = Reactor::<()>::new(
        Config::default()
            .with_resolv_conf(&missing)
            .with_hosts_file(&missing),
    );
    assert!(ok.is_ok(), "{ok:?}");
    // A directory exists but cannot be read as a file.
    match Reactor::<()>::new(Config::default().with_hosts_file(&dir.path)) {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "hosts_file"),
        other => panic!("{other:?}"),
    }
    match Reactor::<()>::new(Config::default().with_resolv_conf(&dir.path)) {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "resolv_conf"),
        other => panic!("{other:?}"),
    }
    match Reactor::<()>::new(Config::default().with_happy_eyeballs_delay(Duration::from_millis(5)))
    {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "happy_eyeballs_delay"),
        other => panic!("{other:?}"),
    }
    let _ = IpAddr::V4(V4);
}

// ----- interop -------------------------------------------------------------

#[test]
fn dnsmasq_resolves_a_name_and_the_pool_connects() {
    use common::dnsmasq::Dnsmasq;
    let Some(dnsmasq) = Dnsmasq::start("127.0.0.1 web.dnsmasq.test\n", "web.dnsmasq.test") else {
        return;
    };
    let server = Server::start();
    let dir = TempDir::new("names");
    let mut ka: Reactor<u32> = reactor(
        Config::default()
            .with_resolv_conf(dir.file("resolv.conf", "options timeout:5 attempts:1\n"))
            .with_hosts_file(dir.file("hosts", ""))
            .with_nameservers(vec![dnsmasq.addr]),
    );
    let mut events = Events::new();
    let mut conn = connect(
        &mut ka,
        &mut events,
        by_name("web.dnsmasq.test", server.port(), 1),
    );
    assert_eq!(conn.peer_addr(), server.addr);
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
    ka.free(conn).unwrap();
    ka.allocate(by_name("missing.dnsmasq.test", server.port(), 2))
        .unwrap();
    let e = wait_outcome(&mut ka, &mut events).result.unwrap_err();
    assert_eq!(e.function(), Function::Resolve);
    assert!(
        matches!(
            e.resolve_error(),
            Some(ResolveError::NxDomain | ResolveError::ServerFailure)
        ),
        "{e}"
    );
}
