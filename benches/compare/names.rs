//! `resolve_cached`: what asking for a connection by host name costs on the
//! hit path, against the same hit by address, in the same run.
//!
//! Both reactors are warm: one pooled connection each, and the name's
//! answer in the resolver's cache (it came from the test DNS responder over
//! UDP). A cycle is allocate → poll until the outcome → free, one request
//! at a time. A pooled connection for the name is reused without a lookup,
//! so the difference is the name's check at `allocate` and the hash of a
//! longer key.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use keepalive::{Config, Event, Events, Reactor, Request};

use super::{CAP, Figure, LOCALHOST, Settings, holding_server, interleaved};

#[path = "../../tests/common/dns.rs"]
#[allow(dead_code, reason = "shared with the tests, which use more of it")]
mod dns;

const NAME: &str = "pooled.bench.test";

pub(crate) fn figures(settings: Settings) -> Vec<Figure> {
    let (addr, _held) = holding_server();
    let dns = dns::DnsServer::start();
    dns.set(
        NAME,
        dns::Zone::addresses(&[Ipv4Addr::LOCALHOST], &[], 3600),
    );
    let dir = std::env::temp_dir().join(format!("keepalive-bench-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = Config::default()
        .with_resolv_conf(dir.join("absent"))
        .with_hosts_file(dir.join("absent"))
        .with_nameservers(vec![dns.addr]);
    let by_name = |()| Request::host("http", NAME, addr.port(), ());
    let by_addr = |()| Request::new("http", LOCALHOST, addr.port(), ());
    let mut named = cycles(config.clone(), addr, by_name);
    let mut numeric = cycles(config, addr, by_addr);
    let r = interleaved(settings, vec![&mut named, &mut numeric]);
    let _ = std::fs::remove_dir_all(&dir);
    vec![
        Figure::new("resolve_cached", "ns/cycle", false, r[0])
            .peer("by address", r[1])
            .note("allocate by name → poll → free, pool and resolver cache warm"),
    ]
}

/// A warm reactor (one pooled connection made through `request`) and a
/// closure that runs hit cycles for a while and returns ns per cycle.
fn cycles(
    config: Config,
    addr: SocketAddr,
    request: impl Fn(()) -> Request<()>,
) -> impl FnMut(Duration) -> f64 {
    let mut ka: Reactor<()> = Reactor::new(config).expect("reactor");
    let mut events = Events::with_capacity(8);
    let one = move |ka: &mut Reactor<()>, events: &mut Events<()>, wait: Option<Duration>| {
        ka.allocate(request(())).expect("allocate");
        loop {
            match wait {
                Some(cap) => ka.poll(events, Some(cap)).expect("poll"),
                None => ka.poll_events(events).expect("poll"),
            }
            if let Some(Event::Outcome(o)) = events.drain().next() {
                let conn = o.result.expect("connect");
                assert_eq!(conn.peer_addr(), addr);
                ka.free(conn).expect("free");
                return;
            }
        }
    };
    one(&mut ka, &mut events, Some(CAP)); // connects (and resolves) once
    move |limit: Duration| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < limit {
            for _ in 0..64 {
                one(&mut ka, &mut events, None);
            }
            n += 64;
        }
        start.elapsed().as_nanos() as f64 / n as f64
    }
}
