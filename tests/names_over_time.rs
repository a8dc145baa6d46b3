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

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::dns::{DnsServer, Zone};
use common::*;
use keepalive::{Config, Events, Reactor, Request};

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
