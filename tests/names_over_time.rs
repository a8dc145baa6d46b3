//! Host names over a long-running program's life: resolver files that are
//! rewritten, and (with `dns_refresh`) names whose answer moves while
//! their connections are in use.
//!
//! Every name answers loopback addresses only (127.0.0.1, 127.0.0.2).
//! Waits are bounded by `CAP`; the few that let time pass wait for a
//! period the reactor documents (the files' one-second check) or the test
//! configures (a TTL floor), never for a verdict.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::dns::{DnsServer, RecordType, Zone};
use common::*;
use keepalive::{
    Change, CloseReason, Config, Connection, Event, Events, FromCache, Outcome, Reactor, Request,
};

const FIRST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const SECOND: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The reactor checks its files at most this often.
const FILE_CHECK: Duration = Duration::from_millis(1_100);

fn by_name(name: &'static str, port: u16, n: u32) -> Request<u32> {
    Request::host("http", name, port, n)
}

/// The address a new connection to `name` reaches; the connection is
/// closed, so the next request connects (and looks up) anew.
fn reached(
    ka: &mut Reactor<u32>,
    events: &mut Events<u32>,
    name: &'static str,
    port: u16,
) -> IpAddr {
    let conn = connect(ka, events, by_name(name, port, 0));
    let ip = conn.peer_addr().ip();
    conn.close();
    ip
}

#[test]
fn a_rewritten_hosts_file_is_seen_and_an_unreadable_one_keeps_the_last_good() {
    let (one, two) = servers_on_two_loopback_addresses();
    let port = one.port();
    let dir = TempDir::new("files");
    let hosts = dir.file("hosts", "127.0.0.1 moved.test\n");
    let mut ka: Reactor<u32> = reactor(
        Config::default()
            .with_resolv_conf(dir.file("resolv.conf", ""))
            .with_hosts_file(&hosts),
    );
    let mut events = Events::new();
    assert_eq!(reached(&mut ka, &mut events, "moved.test", port), FIRST);
    std::fs::write(&hosts, "127.0.0.2 moved.test # rewritten\n").unwrap();
    poll_for(&mut ka, &mut events, FILE_CHECK);
    assert_eq!(
        reached(&mut ka, &mut events, "moved.test", port),
        SECOND,
        "the rewritten file is read at the next lookup after the check interval"
    );
    // Gone in the middle of a rewrite, then a directory: unreadable. The
    // last good text stays.
    std::fs::remove_file(&hosts).unwrap();
    std::fs::create_dir(&hosts).unwrap();
    poll_for(&mut ka, &mut events, FILE_CHECK);
    assert_eq!(reached(&mut ka, &mut events, "moved.test", port), SECOND);
    one.assert_accepted(1);
    two.assert_accepted(2);
}

#[test]
fn a_rewritten_resolv_conf_is_seen_at_the_next_lookup() {
    let dns = DnsServer::start();
    // TTL 0, cached for the 200 ms floor below.
    for (name, ip) in [("svc.one.test", FIRST), ("svc.two.test", SECOND)] {
        dns.set(
            name,
            Zone {
                negative_ttl: Some(60),
                ..Zone::addresses(&[ip], &[], 0)
            },
        );
    }
    let (one, two) = servers_on_two_loopback_addresses();
    let port = one.port();
    let dir = TempDir::new("files");
    let conf = dir.file(
        "resolv.conf",
        "search one.test\noptions timeout:5 attempts:1\n",
    );
    let mut ka: Reactor<u32> = reactor(
        Config::default()
            .with_resolv_conf(&conf)
            .with_hosts_file(dir.file("hosts", ""))
            .with_nameservers(vec![dns.addr])
            .with_dns_ttl(
                Duration::from_millis(200),
                Duration::from_secs(3600),
                Duration::from_secs(30),
            ),
    );
    let mut events = Events::new();
    assert_eq!(reached(&mut ka, &mut events, "svc", port), FIRST);
    std::fs::write(&conf, "search two.test\noptions timeout:5 attempts:1\n").unwrap();
    poll_for(&mut ka, &mut events, FILE_CHECK);
    assert_eq!(
        reached(&mut ka, &mut events, "svc", port),
        SECOND,
        "the new search list applies"
    );
    one.assert_accepted(1);
    two.assert_accepted(1);
}

// ----- refresh while in use, and draining what moved ----------------------

/// A zone answering `ip` with TTL `ttl` (no AAAA; the NODATA is cached
/// long enough not to shorten the A answer's life).
fn only(ip: Ipv4Addr, ttl: u32) -> Zone {
    Zone {
        negative_ttl: Some(600),
        ..Zone::addresses(&[ip], &[], ttl)
    }
}

/// A reactor asking `dns`, with lifecycle events and `floor` as the TTL
/// floor.
fn watching(dns: &DnsServer, dir: &TempDir, floor: Duration) -> Reactor<u32> {
    reactor(
        Config::default()
            .with_resolv_conf(dir.file("resolv.conf", "options timeout:1 attempts:1\n"))
            .with_hosts_file(dir.file("hosts", ""))
            .with_nameservers(vec![dns.addr])
            .with_dns_ttl(floor, Duration::from_secs(3600), Duration::from_secs(30))
            .with_lifecycle_events(true),
    )
}

/// Lifecycle closes seen, with the address each connection had reached.
#[derive(Default)]
struct Closes(Vec<(CloseReason, SocketAddr)>);

impl Closes {
    fn count(&self, reason: CloseReason, ip: Ipv4Addr) -> usize {
        self.0
            .iter()
            .filter(|(r, peer)| *r == reason && peer.ip() == IpAddr::V4(ip))
            .count()
    }
}

/// One poll (up to 10 ms); lifecycle closes go to `closes`, and an
/// outcome, if one came, is returned.
fn tick(
    ka: &mut Reactor<u32>,
    events: &mut Events<u32>,
    closes: &mut Closes,
) -> Option<Outcome<u32>> {
    ka.poll(events, Some(Duration::from_millis(10))).unwrap();
    let mut outcome = None;
    for e in events.drain() {
        match e {
            Event::Outcome(o) => outcome = Some(o),
            Event::Lifecycle(l) => {
                if let Change::Closed(reason) = l.change {
                    closes.0.push((reason, l.peer));
                }
            }
            _ => {}
        }
    }
    outcome
}

/// Allocates and polls until the outcome, noting closes.
fn checkout(
    ka: &mut Reactor<u32>,
    events: &mut Events<u32>,
    closes: &mut Closes,
    name: &'static str,
    port: u16,
) -> Connection {
    ka.allocate(by_name(name, port, 0)).unwrap();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < CAP, "no outcome within {CAP:?}");
        if let Some(o) = tick(ka, events, closes) {
            return o.result.expect("a connection");
        }
    }
}

/// Issue 16's first symptom: under steady traffic (a checkout every
/// 20 ms, each connection reused from the pool), a name whose record
/// moves is followed within two TTLs, and the old connections close as
/// `AddressGone`.
#[test]
fn a_name_that_moves_under_steady_traffic_is_followed_within_two_ttls() {
    let dns = DnsServer::start();
    dns.set("moving.test", only(FIRST, 1));
    let (one, two) = servers_on_two_loopback_addresses();
    let port = one.port();
    let dir = TempDir::new("refresh");
    let mut ka = watching(&dns, &dir, Duration::from_secs(1));
    let mut events = Events::new();
    let mut closes = Closes::default();
    let mut moved_at = None;
    let start = Instant::now();
    let reached_second = loop {
        assert!(start.elapsed() < CAP, "never reached the new address");
        let conn = checkout(&mut ka, &mut events, &mut closes, "moving.test", port);
        let peer = conn.peer_addr().ip();
        ka.free(conn).unwrap();
        if peer == IpAddr::V4(SECOND) {
            break moved_at.map(|t: Instant| t.elapsed());
        }
        if moved_at.is_none() && start.elapsed() >= Duration::from_millis(300) {
            dns.set("moving.test", only(SECOND, 1));
            moved_at = Some(Instant::now());
        }
        let until = Instant::now() + Duration::from_millis(20);
        while Instant::now() < until {
            tick(&mut ka, &mut events, &mut closes);
        }
    };
    let took = reached_second.expect("the name moved before the new address was reached");
    eprintln!("new address reached {took:?} after the record moved (TTL 1 s)");
    assert!(
        took < Duration::from_secs(2),
        "reached the new address after {took:?}, over two TTLs"
    );
    // Steady traffic used one pooled connection per address.
    one.assert_accepted(1);
    two.assert_accepted(1);
    assert_eq!(closes.count(CloseReason::AddressGone, FIRST), 1);
    assert_eq!(ka.stats().counters.closes(CloseReason::AddressGone), 1);
}

/// Of a moved name's connections, an idle one closes when the refresh
/// answers; a lent one is closed when it is freed, not pooled again.
#[test]
fn an_idle_connection_to_a_gone_address_closes_at_once_and_a_lent_one_on_free() {
    let dns = DnsServer::start();
    dns.set("drain.test", only(FIRST, 0));
    let (one, two) = servers_on_two_loopback_addresses();
    let port = one.port();
    let dir = TempDir::new("refresh");
    let mut ka = watching(&dns, &dir, Duration::from_millis(200));
    let mut events = Events::new();
    let mut closes = Closes::default();
    let lent = checkout(&mut ka, &mut events, &mut closes, "drain.test", port);
    let idle = checkout(&mut ka, &mut events, &mut closes, "drain.test", port);
    ka.free(idle).unwrap();
    assert_eq!(ka.idle_count(), 1);
    dns.set("drain.test", only(SECOND, 0));
    let start = Instant::now();
    while closes.count(CloseReason::AddressGone, FIRST) == 0 {
        assert!(start.elapsed() < CAP, "the idle connection never closed");
        tick(&mut ka, &mut events, &mut closes);
    }
    assert_eq!(ka.idle_count(), 0, "the idle connection closed");
    assert_eq!(ka.open_count(), 1, "the lent one is still open");
    ka.free(lent).unwrap();
    tick(&mut ka, &mut events, &mut closes);
    assert_eq!(closes.count(CloseReason::AddressGone, FIRST), 2);
    assert_eq!(ka.open_count(), 0, "freed, it was closed, not pooled");
    let conn = checkout(&mut ka, &mut events, &mut closes, "drain.test", port);
    assert_eq!(conn.peer_addr().ip(), IpAddr::V4(SECOND));
    assert_eq!(conn.from_cache(), None);
    one.assert_accepted(2);
    two.assert_accepted(1);
}

/// A refresh that fails (SERVFAIL, then silence) keeps what works: the
/// pooled connection is still handed out, and the name is asked again at
/// the floor.
#[test]
fn a_failed_refresh_keeps_the_connections_and_asks_again_at_the_floor() {
    let dns = DnsServer::start();
    dns.set("flaky.test", only(FIRST, 0));
    let server = Server::start();
    let dir = TempDir::new("refresh");
    let mut ka = watching(&dns, &dir, Duration::from_millis(200));
    let mut events = Events::new();
    let mut closes = Closes::default();
    let conn = checkout(
        &mut ka,
        &mut events,
        &mut closes,
        "flaky.test",
        server.port(),
    );
    ka.free(conn).unwrap();
    dns.set("flaky.test", Zone::servfail());
    let start = Instant::now();
    while dns.queries("flaky.test", RecordType::A) < 4 {
        assert!(start.elapsed() < CAP, "the refresh was not retried");
        tick(&mut ka, &mut events, &mut closes);
    }
    assert_eq!(closes.0, vec![], "nothing closed");
    let conn = checkout(
        &mut ka,
        &mut events,
        &mut closes,
        "flaky.test",
        server.port(),
    );
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    assert_eq!(conn.peer_addr().ip(), IpAddr::V4(FIRST));
    server.assert_accepted(1);
}

/// With `dns_refresh` off, a pooled connection is reused whatever the
/// name's answer became (the behaviour before refresh existed).
#[test]
fn with_refresh_off_a_pooled_connection_stays() {
    let dns = DnsServer::start();
    dns.set("still.test", only(FIRST, 0));
    let (one, two) = servers_on_two_loopback_addresses();
    let port = one.port();
    let dir = TempDir::new("refresh");
    let mut ka: Reactor<u32> = reactor(
        Config::default()
            .with_resolv_conf(dir.file("resolv.conf", "options timeout:1 attempts:1\n"))
            .with_hosts_file(dir.file("hosts", ""))
            .with_nameservers(vec![dns.addr])
            .with_dns_ttl(
                Duration::from_millis(200),
                Duration::from_secs(3600),
                Duration::from_secs(30),
            )
            .with_dns_refresh(false),
    );
    let mut events = Events::new();
    let mut closes = Closes::default();
    let conn = checkout(&mut ka, &mut events, &mut closes, "still.test", port);
    ka.free(conn).unwrap();
    dns.set("still.test", only(SECOND, 0));
    poll_for(&mut ka, &mut events, Duration::from_millis(600));
    let conn = checkout(&mut ka, &mut events, &mut closes, "still.test", port);
    assert_eq!(conn.peer_addr().ip(), IpAddr::V4(FIRST));
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    assert_eq!(
        dns.queries("still.test", RecordType::A),
        1,
        "never asked again"
    );
    one.assert_accepted(1);
    assert_eq!(two.accepted(), 0);
}

/// Interop: dnsmasq serves the name from its hosts file (TTL 0, so the
/// 1 s floor applies); the file is rewritten and dnsmasq sent SIGHUP in
/// the middle of steady traffic; the pool follows.
#[test]
fn dnsmasq_a_rewritten_hosts_file_and_sighup_mid_traffic_the_pool_follows() {
    use common::dnsmasq::Dnsmasq;
    let Some(dnsmasq) = Dnsmasq::start("127.0.0.1 web.dnsmasq.test\n", "web.dnsmasq.test") else {
        return;
    };
    let (one, two) = servers_on_two_loopback_addresses();
    let port = one.port();
    let dir = TempDir::new("refresh");
    let mut ka: Reactor<u32> = reactor(
        Config::default()
            .with_resolv_conf(dir.file("resolv.conf", "options timeout:1 attempts:1\n"))
            .with_hosts_file(dir.file("hosts", ""))
            .with_nameservers(vec![dnsmasq.addr])
            .with_lifecycle_events(true),
    );
    let mut events = Events::new();
    let mut closes = Closes::default();
    let mut rewritten = false;
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < CAP, "the pool never followed the name");
        let conn = checkout(&mut ka, &mut events, &mut closes, "web.dnsmasq.test", port);
        let peer = conn.peer_addr().ip();
        ka.free(conn).unwrap();
        if peer == IpAddr::V4(SECOND) {
            break;
        }
        if !rewritten && start.elapsed() >= Duration::from_millis(300) {
            dnsmasq.rewrite_hosts("127.0.0.2 web.dnsmasq.test\n");
            rewritten = true;
        }
        let until = Instant::now() + Duration::from_millis(20);
        while Instant::now() < until {
            tick(&mut ka, &mut events, &mut closes);
        }
    }
    assert!(rewritten);
    assert_eq!(closes.count(CloseReason::AddressGone, FIRST), 1);
    one.assert_accepted(1);
    two.assert_accepted(1);
}
