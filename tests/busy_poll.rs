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

/// This thread's context switches so far, from `/proc/thread-self/status`:
/// (voluntary: it slept in the kernel; involuntary: another thread took
/// the CPU while it could run).
fn switches_so_far() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("thread status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

/// Time this thread has run on a CPU, from `/proc/thread-self/schedstat`.
fn cpu_time_so_far() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("run time in schedstat");
    Duration::from_nanos(ns)
}

/// Polls until a timer of `after` fires: how many times the thread slept,
/// and how many times another thread took its CPU meanwhile.
fn switches_until_a_timer(busy_poll: Duration, after: Duration) -> (u64, u64) {
    let mut ka = reactor::<()>(Config::default().with_busy_poll(busy_poll));
    let mut events = Events::new();
    ka.set_timer(after, 1).unwrap();
    let (slept, displaced) = switches_so_far();
    ka.poll(&mut events, None).unwrap();
    let (slept_after, displaced_after) = switches_so_far();
    assert!(matches!(events.drain().next(), Some(Event::Timer(_))));
    (slept_after - slept, displaced_after - displaced)
}

#[test]
fn an_event_within_the_spin_is_taken_without_sleeping() {
    let (slept, _) = switches_until_a_timer(Duration::ZERO, Duration::from_millis(20));
    assert!(
        slept >= 1,
        "without busy polling the thread sleeps until the timer"
    );
    // A spin that had to give its CPU to another thread (the other tests
    // of this binary run beside it) may end in a sleep; one that kept its
    // CPU must not.
    let mut kept = 0;
    for _ in 0..50 {
        let (slept, displaced) = switches_until_a_timer(LONG_SPIN, Duration::from_millis(2));
        if displaced == 0 {
            assert_eq!(
                slept, 0,
                "a 1 s spin that kept its CPU takes the 2 ms timer without sleeping"
            );
            kept += 1;
        }
    }
    assert!(kept > 0, "every one of 50 spins was displaced");
}

#[test]
fn a_spin_gives_way_to_threads_that_need_the_cpu() {
    // More threads that never sleep than there are CPUs: every CPU has one
    // ready to run, so the spinning thread's first yield hands its CPU over.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..cpus * 2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut ka = reactor::<()>(Config::default().with_busy_poll(LONG_SPIN));
    let mut events = Events::new();
    ka.set_timer(Duration::from_millis(200), 1).unwrap();
    let ran = cpu_time_so_far();
    ka.poll(&mut events, None).unwrap();
    let ran = cpu_time_so_far() - ran;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
    assert!(matches!(events.drain().next(), Some(Event::Timer(_))));
    // A spin that held on would have had its fair share of the 200 ms,
    // about a fifth with four threads per CPU beside it.
    assert!(
        ran < Duration::from_millis(20),
        "the spin ran {ran:?} of the 200 ms instead of giving way"
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
