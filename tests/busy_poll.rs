//! `Config::busy_poll`: a reactor that spins before it sleeps delivers
//! exactly what a sleeping one does (outcomes, readiness, remote closes,
//! deadlines), and never waits past the timeout `poll` was given.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use keepalive::{CloseReason, Config, Event, Events, FromCache};

/// The longest spin the configuration allows: a test that returns sooner
/// shows something other than the budget ended the spin.
const LONG_SPIN: Duration = Duration::from_secs(1);

/// Times this thread gave up the CPU to wait (it slept in the kernel),
/// from `/proc/thread-self/status`.
fn sleeps_so_far() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("thread status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// Polls until a 20 ms timer fires; how many times the thread slept.
fn sleeps_until_a_timer(busy_poll: Duration) -> u64 {
    let mut ka = reactor::<()>(Config::default().with_busy_poll(busy_poll));
    let mut events = Events::new();
    ka.set_timer(Duration::from_millis(20), 1).unwrap();
    let before = sleeps_so_far();
    ka.poll(&mut events, None).unwrap();
    let slept = sleeps_so_far() - before;
    assert!(matches!(events.drain().next(), Some(Event::Timer(_))));
    slept
}

#[test]
fn an_event_within_the_spin_is_taken_without_sleeping() {
    assert!(
        sleeps_until_a_timer(Duration::ZERO) >= 1,
        "without busy polling the thread sleeps until the timer"
    );
    assert_eq!(
        sleeps_until_a_timer(LONG_SPIN),
        0,
        "a 1 s spin takes the 20 ms timer without sleeping"
    );
}

#[test]
fn a_spinning_reactor_connects_serves_and_reuses() {
    let server = Server::start();
    let mut ka = reactor(Config::default().with_busy_poll(Duration::from_micros(100)));
    let mut events = Events::new();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), None);
    // `get` waits for readiness through `poll`, which now spins first.
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
    ka.free(conn).unwrap();
    let mut conn = connect(&mut ka, &mut events, request(server.port(), ()));
    assert_eq!(conn.from_cache(), Some(FromCache::Immediate));
    assert_eq!(get(&mut ka, &mut events, &mut conn), "hello\n");
    ka.free(conn).unwrap();
    server.assert_accepted(1);
}

#[test]
fn a_remote_close_of_an_idle_connection_is_seen_while_spinning() {
    let server = Server::start();
    let mut ka = reactor(Config::default().with_busy_poll(LONG_SPIN));
    let mut events = Events::new();
    leave_idle(&mut ka, &mut events, request(server.port(), ()));
    server.close_all();
    poll_until(&mut ka, &mut events, "the idle connection's close", |ka| {
        ka.idle_count() == 0
    });
    assert_eq!(ka.stats().counters.closes(CloseReason::PeerClosed), 1);
}

#[test]
fn a_deadline_fires_within_the_spin() {
    let mut ka = reactor::<()>(Config::default().with_busy_poll(LONG_SPIN));
    let mut events = Events::new();
    let start = Instant::now();
    ka.set_timer(Duration::from_millis(5), 7).unwrap();
    ka.poll(&mut events, None).unwrap();
    let fired: Vec<u64> = events
        .drain()
        .filter_map(|e| match e {
            Event::Timer(t) => Some(t.value),
            _ => None,
        })
        .collect();
    assert_eq!(fired, [7]);
    assert!(
        start.elapsed() < LONG_SPIN,
        "the timer, not the spin's budget, ended the poll"
    );
}

#[test]
fn the_spin_never_outlasts_the_timeout() {
    let mut ka = reactor::<()>(Config::default().with_busy_poll(LONG_SPIN));
    let mut events = Events::new();
    let start = Instant::now();
    ka.poll(&mut events, Some(Duration::from_millis(20)))
        .unwrap();
    let took = start.elapsed();
    assert!(events.is_empty());
    assert!(
        took >= Duration::from_millis(20),
        "returned early: {took:?}"
    );
    assert!(took < LONG_SPIN, "spun past the timeout: {took:?}");
}

#[test]
fn after_a_short_spin_the_reactor_sleeps_until_the_deadline() {
    // A 1 ms spin finds nothing; the poll then sleeps in the kernel until
    // the 30 ms timer, which still fires.
    let mut ka = reactor::<()>(Config::default().with_busy_poll(Duration::from_millis(1)));
    let mut events = Events::new();
    let start = Instant::now(); // before the timer: it counts from its call
    ka.set_timer(Duration::from_millis(30), 9).unwrap();
    ka.poll(&mut events, None).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(matches!(events.drain().next(), Some(Event::Timer(t)) if t.value == 9));
}
