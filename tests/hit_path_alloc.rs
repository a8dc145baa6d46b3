//! The hit path (allocate from the pool → poll → free) allocates nothing
//! once warm. A counting global allocator makes this its own test binary.

#![allow(unsafe_code, reason = "a counting global allocator")]
#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use keepalive::{Config, Event, Events, FromCache};

struct Counting;

thread_local! {
    // Counts only while armed, and only on the test's own thread: the test
    // server's threads allocate freely.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; the counter is a thread-local
// `Cell` that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ARMED.try_with(|armed| {
            if armed.get() {
                COUNT.with(|c| c.set(c.get() + 1));
            }
        });
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ARMED.try_with(|armed| {
            if armed.get() {
                COUNT.with(|c| c.set(c.get() + 1));
            }
        });
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn counting<T>(f: impl FnOnce() -> T) -> (T, u64) {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, COUNT.with(|c| c.get()))
}

/// Heap allocations over 1000 runs of `cycle`, counted after 100 runs that
/// grow every buffer it needs to its working size.
fn allocations_once_warm(mut cycle: impl FnMut()) -> u64 {
    for _ in 0..100 {
        cycle();
    }
    let ((), n) = counting(|| {
        for _ in 0..1000 {
            cycle();
        }
    });
    n
}

#[test]
fn allocate_poll_free_from_the_pool_allocates_nothing_once_warm() {
    let server = Server::start();
    let mut ka = reactor(Config::default().with_max_per_host(64));
    let mut events = Events::with_capacity(64);
    let port = server.port();

    // 64 connections in the pool, so both one-at-a-time and batched cycles
    // are covered.
    let conns: Vec<_> = (0..64)
        .map(|_| connect(&mut ka, &mut events, request(port, 0u64)))
        .collect();
    for c in conns {
        ka.free(c).unwrap();
    }
    let mut held = Vec::with_capacity(64);
    let mut cycle = |ka: &mut keepalive::Reactor<u64>, batch: usize| {
        for n in 0..batch {
            ka.allocate(request(port, n as u64)).unwrap();
        }
        let mut got = 0;
        while got < batch {
            ka.poll_events(&mut events).unwrap();
            for e in events.drain() {
                if let Event::Outcome(o) = e {
                    let conn = o.result.unwrap();
                    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
                    held.push(conn);
                    got += 1;
                }
            }
        }
        for conn in held.drain(..) {
            ka.free(conn).unwrap();
        }
    };
    for _ in 0..100 {
        cycle(&mut ka, 1);
        cycle(&mut ka, 64);
    }
    let ((), one) = counting(|| {
        for _ in 0..1000 {
            cycle(&mut ka, 1);
        }
    });
    let ((), batched) = counting(|| {
        for _ in 0..100 {
            cycle(&mut ka, 64);
        }
    });
    assert_eq!(one, 0, "allocations over 1000 single cycles");
    assert_eq!(batched, 0, "allocations over 100 cycles of 64");
    // Every cycle was a pool hit.
    server.assert_accepted(64);
}

#[test]
fn the_tls_hit_path_allocates_nothing_either() {
    use common::tls::{Pki, TlsServer};
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(&[&keepalive::rustls::version::TLS13]));
    let mut ka = reactor(Config::default().with_tls_config(pki.client_config()));
    let mut events = Events::with_capacity(8);
    let port = server.port();
    let https = |n: u64| keepalive::Request::new("https", LOCALHOST, port, n);
    let conn = connect(&mut ka, &mut events, https(0));
    ka.free(conn).unwrap();
    // Let the session tickets arrive and be consumed while idle.
    poll_for(&mut ka, &mut events, std::time::Duration::from_millis(20));
    let mut cycle = |ka: &mut keepalive::Reactor<u64>| {
        ka.allocate(https(1)).unwrap();
        loop {
            ka.poll_events(&mut events).unwrap();
            if let Some(Event::Outcome(o)) = events.drain().next() {
                let conn = o.result.unwrap();
                assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
                ka.free(conn).unwrap();
                return;
            }
        }
    };
    let n = allocations_once_warm(|| cycle(&mut ka));
    assert_eq!(n, 0, "allocations over 1000 TLS cycles");
    server.assert_accepted(1);
}

#[test]
fn caller_sources_and_timers_allocate_nothing_once_warm() {
    use keepalive::mio::{Interest, Token, net::UdpSocket};
    let mut ka = reactor::<u64>(Config::default());
    let mut events = Events::with_capacity(8);
    let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ka.register(&mut socket, Token(3), Interest::READABLE)
        .unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = socket.local_addr().unwrap();
    let mut buf = [0u8; 8];
    let mut cycle = |ka: &mut keepalive::Reactor<u64>| {
        // A readiness event of the caller's and a timer, in one loop turn.
        sender.send_to(b"x", to).unwrap();
        let keep = ka.set_timer(std::time::Duration::from_secs(60), 1).unwrap();
        ka.set_timer(std::time::Duration::ZERO, 2).unwrap();
        let (mut ready, mut fired) = (false, false);
        while !(ready && fired) {
            ka.poll(&mut events, Some(std::time::Duration::from_secs(10)))
                .unwrap();
            for e in events.drain() {
                match e {
                    Event::Source(s) if s.token == Token(3) => {
                        while socket.recv_from(&mut buf).is_ok() {}
                        ready = true;
                    }
                    Event::Timer(t) if t.value == 2 => fired = true,
                    _ => {}
                }
            }
        }
        ka.cancel_timer(keep).unwrap();
    };
    let n = allocations_once_warm(|| cycle(&mut ka));
    assert_eq!(n, 0, "allocations over 1000 source + timer cycles");
}

#[test]
fn the_hit_path_with_stats_and_lifecycle_events_allocates_nothing() {
    let server = Server::start();
    let mut ka = reactor::<u64>(Config::default().with_lifecycle_events(true));
    let mut events = Events::with_capacity(8);
    let port = server.port();
    let conn = connect(&mut ka, &mut events, request(port, 0));
    ka.free(conn).unwrap();
    let mut seen = 0u64;
    let mut cycle = |ka: &mut keepalive::Reactor<u64>| {
        ka.allocate(request(port, 1)).unwrap();
        loop {
            ka.poll_events(&mut events).unwrap();
            let mut conn = None;
            for e in events.drain() {
                match e {
                    Event::Outcome(o) => conn = Some(o.result.unwrap()),
                    Event::Lifecycle(_) => seen += 1,
                    _ => {}
                }
            }
            if let Some(conn) = conn {
                assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
                ka.free(conn).unwrap();
                break;
            }
        }
        std::hint::black_box(ka.stats());
    };
    let n = allocations_once_warm(|| cycle(&mut ka));
    assert_eq!(
        n, 0,
        "allocations over 1000 cycles with stats and events on"
    );
    assert!(seen >= 1000, "every park was reported: {seen}");
}

#[test]
fn a_pool_hit_by_host_name_allocates_nothing_either() {
    let server = Server::start();
    let dir = TempDir::new("hit-by-name");
    let mut ka = reactor::<u64>(
        Config::default()
            .with_hosts_file(dir.file("hosts", "127.0.0.1 pooled.test\n"))
            .with_resolv_conf(dir.path.join("absent")),
    );
    let mut events = Events::with_capacity(8);
    let port = server.port();
    // A borrowed, lower-case name: the key costs nothing to build.
    let by_name = |n: u64| keepalive::Request::host("http", "pooled.test", port, n);
    let conn = connect(&mut ka, &mut events, by_name(0));
    assert_eq!(conn.peer_addr(), server.addr);
    ka.free(conn).unwrap();
    let mut cycle = |ka: &mut keepalive::Reactor<u64>| {
        ka.allocate(by_name(1)).unwrap();
        loop {
            ka.poll_events(&mut events).unwrap();
            if let Some(Event::Outcome(o)) = events.drain().next() {
                assert_eq!(o.target.name(), Some("pooled.test"));
                let conn = o.result.unwrap();
                assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
                assert_eq!(conn.peer_addr(), server.addr);
                ka.free(conn).unwrap();
                return;
            }
        }
    };
    let n = allocations_once_warm(|| cycle(&mut ka));
    assert_eq!(n, 0, "allocations over 1000 cycles by name");
    server.assert_accepted(1);
}

#[test]
fn a_unix_socket_hit_allocates_nothing_either() {
    use std::io::Write;
    let server = common::unix::UnixServer::start();
    let mut ka = reactor::<u64>(Config::default().with_max_per_host(8));
    let mut events = Events::with_capacity(16);
    // A `'static` path, as a caller with a fixed upstream holds it: the key
    // costs nothing to build.
    let path = server.static_path();
    let unix = |n: u64| keepalive::Request::unix("http", path, n);
    let conns: Vec<_> = (0..8)
        .map(|_| connect(&mut ka, &mut events, unix(0)))
        .collect();
    for c in conns {
        ka.free(c).unwrap();
    }
    let mut held = Vec::with_capacity(8);
    let mut cycle = |ka: &mut keepalive::Reactor<u64>, batch: usize, io: bool| {
        for n in 0..batch {
            ka.allocate(unix(n as u64)).unwrap();
        }
        let mut got = 0;
        while got < batch {
            ka.poll_events(&mut events).unwrap();
            for e in events.drain() {
                if let Event::Outcome(o) = e {
                    assert_eq!(o.target.unix_path(), Some(path));
                    let conn = o.result.unwrap();
                    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
                    held.push(conn);
                    got += 1;
                }
            }
        }
        for mut conn in held.drain(..) {
            if io {
                // A request and its response read to `WouldBlock`: the
                // connection's own reads prove it clean at free.
                conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut buf = [0u8; 256];
                let mut n = 0;
                while !buf[..n].ends_with(b"hello\n") {
                    match std::io::Read::read(&mut conn, &mut buf[n..]) {
                        Ok(0) => panic!("closed"),
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            ka.poll_events(&mut events).unwrap();
                            events.drain().for_each(drop);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            ka.free(conn).unwrap();
        }
    };
    for _ in 0..100 {
        cycle(&mut ka, 1, true);
        cycle(&mut ka, 8, false);
    }
    let ((), one) = counting(|| {
        for _ in 0..1000 {
            cycle(&mut ka, 1, false);
        }
    });
    let ((), batched) = counting(|| {
        for _ in 0..100 {
            cycle(&mut ka, 8, false);
        }
    });
    let ((), with_io) = counting(|| {
        for _ in 0..200 {
            cycle(&mut ka, 1, true);
        }
    });
    assert_eq!(one, 0, "allocations over 1000 single unix cycles");
    assert_eq!(batched, 0, "allocations over 100 unix cycles of 8");
    assert_eq!(with_io, 0, "allocations over 200 unix GETs");
    server.assert_accepted(8);
}

/// A name from DNS is watched for refresh while it has connections: its
/// refresh deadline sits on the wheel, and the hit path still allocates
/// nothing (the refresh runs on its deadline, never on a checkout).
#[test]
fn a_pool_hit_by_a_refreshed_dns_name_allocates_nothing() {
    use common::dns::{DnsServer, Zone};
    let dns = DnsServer::start();
    dns.set(
        "watched.test",
        Zone::addresses(&[std::net::Ipv4Addr::LOCALHOST], &[], 600),
    );
    let server = Server::start();
    let dir = TempDir::new("hit-by-dns-name");
    let mut ka = reactor::<u64>(
        Config::default()
            .with_hosts_file(dir.file("hosts", ""))
            .with_resolv_conf(dir.path.join("absent"))
            .with_nameservers(vec![dns.addr])
            .with_dns_refresh(true),
    );
    let mut events = Events::with_capacity(8);
    let port = server.port();
    let by_name = |n: u64| keepalive::Request::host("http", "watched.test", port, n);
    let conn = connect(&mut ka, &mut events, by_name(0));
    ka.free(conn).unwrap();
    let mut cycle = |ka: &mut keepalive::Reactor<u64>| {
        ka.allocate(by_name(1)).unwrap();
        loop {
            ka.poll_events(&mut events).unwrap();
            if let Some(Event::Outcome(o)) = events.drain().next() {
                let conn = o.result.unwrap();
                assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
                ka.free(conn).unwrap();
                return;
            }
        }
    };
    let n = allocations_once_warm(|| cycle(&mut ka));
    assert_eq!(n, 0, "allocations over 1000 cycles by a watched name");
    server.assert_accepted(1);
}

#[test]
fn checkout_now_and_free_allocate_nothing_once_warm() {
    use keepalive::Checkout;
    let server = Server::start();
    let mut ka = reactor(Config::default());
    let mut events = Events::with_capacity(8);
    let port = server.port();
    let conn = connect(&mut ka, &mut events, request(port, 0u64));
    ka.free(conn).unwrap();
    let cycle = |ka: &mut keepalive::Reactor<u64>| match ka.checkout_now(request(port, 1)) {
        Ok(Checkout::Ready(conn, _)) => ka.free(conn).unwrap(),
        other => panic!("not a hit: {other:?}"),
    };
    let n = allocations_once_warm(|| cycle(&mut ka));
    assert_eq!(n, 0, "allocations over 1000 checkout_now → free cycles");
    server.assert_accepted(1);
}
