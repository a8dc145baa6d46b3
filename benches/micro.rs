//! Criterion micro-benchmarks: the hit path and the timer wheel.
//!
//! ```sh
//! cargo bench --bench micro
//! ```

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keepalive::internals::Wheel;
use keepalive::{Config, Event, Events, Reactor, Request};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// allocate (cache hit) → poll_events → free, one connection.
fn hit_path(c: &mut Criterion) {
    let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let mut ka: Reactor<()> = Reactor::new(Config::default()).expect("reactor");
    let mut events = Events::with_capacity(8);
    let cycle = |ka: &mut Reactor<()>, events: &mut Events<()>| {
        ka.allocate(Request::new("http", LOCALHOST, port, ()))
            .expect("allocate");
        loop {
            ka.poll(events, Some(Duration::from_secs(5))).expect("poll");
            if let Some(Event::Outcome(o)) = events.drain().next() {
                ka.free(o.result.expect("connection")).expect("free");
                return;
            }
        }
    };
    cycle(&mut ka, &mut events);
    let _server_side = held.join();
    c.bench_function("hit_path", |b| b.iter(|| cycle(&mut ka, &mut events)));
}

/// Insert + cancel with 1 000 timers live.
fn wheel(c: &mut Criterion) {
    let mut w: Wheel<u64> = Wheel::with_capacity(2048);
    let keys: Vec<_> = (0..1000u64)
        .map(|i| w.insert(1 + i * 37 % 60_000, i))
        .collect();
    let mut n = 0u64;
    c.bench_function("wheel_insert_cancel_1k", |b| {
        b.iter(|| {
            n = n.wrapping_add(7919);
            let k = w.insert(1 + n % 60_000, n);
            black_box(w.cancel(k));
        })
    });
    drop(keys);
}

criterion_group!(benches, hit_path, wheel);
criterion_main!(benches);
