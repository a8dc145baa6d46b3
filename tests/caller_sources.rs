//! The reactor as the caller's whole loop: its own sources and timers come
//! out of the same poll as outcomes, and one tick's work is bounded.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::*;
use keepalive::mio::net::{TcpListener, UdpSocket};
use keepalive::mio::{Interest, Token};
use keepalive::{Config, Error, Event, Events, FromCache, Reactor, SourceReady, TimerFired};

fn sources(events: &mut Events<()>) -> Vec<SourceReady> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Source(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn timers(events: &Events<()>) -> Vec<TimerFired> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Timer(t) => Some(*t),
            _ => None,
        })
        .collect()
}

#[test]
fn sources_timers_and_outcomes_come_out_of_one_poll() {
    let server = Server::start();
    let mut ka: Reactor<()> = reactor(Config::default());
    let mut events = Events::new();
    let conn = connect(&mut ka, &mut events, request(server.port(), ()));
    ka.free(conn).unwrap();

    let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ka.register(&mut listener, Token(7), Interest::READABLE)
        .unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    wait_readable(listener.as_raw_fd());
    let timer = ka.set_timer(Duration::ZERO, 42).unwrap();
    ka.allocate(request(server.port(), ())).unwrap();

    ka.poll_events(&mut events).unwrap();
    let outcome = events.iter().find_map(|e| match e {
        Event::Outcome(o) => Some(o.result.as_ref().map(keepalive::Connection::from_cache)),
        _ => None,
    });
    assert!(
        matches!(outcome, Some(Ok(Some(FromCache::Immediate)))),
        "outcome in the same tick: {events:?}"
    );
    let ready = sources(&mut events);
    assert_eq!(ready.len(), 1, "{events:?}");
    assert_eq!(ready[0].token, Token(7));
    assert!(ready[0].readable);
    let fired = timers(&events);
    assert_eq!(fired.len(), 1, "{events:?}");
    assert_eq!((fired[0].id, fired[0].value), (timer, 42));
    assert_eq!(ka.timer_count(), 0);
    ka.deregister(&mut listener).unwrap();
}

#[test]
fn a_timer_fires_once_never_early_and_is_gone_after() {
    let mut ka: Reactor<()> = reactor(Config::default());
    let mut events = Events::new();
    let start = Instant::now();
    let id = ka.set_timer(Duration::from_millis(30), 5).unwrap();
    let next = ka.next_timeout().expect("a deadline");
    assert!(next <= Duration::from_millis(31), "{next:?}");
    ka.poll(&mut events, Some(CAP)).unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(30),
        "fired early: {:?}",
        start.elapsed()
    );
    let fired = timers(&events);
    assert_eq!(fired.len(), 1);
    assert_eq!((fired[0].id, fired[0].value), (id, 5));
    assert!(matches!(ka.cancel_timer(id), Err(Error::UnknownTimer(_))));
    assert_eq!(ka.next_timeout(), None, "nothing else is scheduled");
}

#[test]
fn a_cancelled_timer_gives_its_value_back_and_never_fires() {
    let mut ka: Reactor<()> = reactor(Config::default());
    let mut events = Events::new();
    let cancelled = ka.set_timer(Duration::from_millis(10), 1).unwrap();
    let kept = ka.set_timer(Duration::from_millis(20), 2).unwrap();
    assert_eq!(ka.cancel_timer(cancelled).unwrap(), 1);
    assert!(matches!(
        ka.cancel_timer(cancelled),
        Err(Error::UnknownTimer(id)) if id == cancelled
    ));
    ka.poll(&mut events, Some(CAP)).unwrap();
    let fired = timers(&events);
    assert_eq!(fired.len(), 1, "{events:?}");
    assert_eq!((fired[0].id, fired[0].value), (kept, 2));
}

#[test]
fn another_reactors_timer_id_is_refused() {
    // Fresh reactors, one timer each: index and generation collide.
    let mut a: Reactor<()> = reactor(Config::default());
    let mut b: Reactor<()> = reactor(Config::default());
    let id_a = a.set_timer(Duration::from_secs(60), 1).unwrap();
    let id_b = b.set_timer(Duration::from_secs(60), 2).unwrap();
    assert!(matches!(b.cancel_timer(id_a), Err(Error::UnknownTimer(_))));
    assert_eq!(b.timer_count(), 1, "b's own timer is untouched");
    assert_eq!(b.cancel_timer(id_b).unwrap(), 2);
    assert_eq!(a.cancel_timer(id_a).unwrap(), 1);
}

#[test]
fn tokens_in_the_reactors_range_are_refused() {
    let mut ka: Reactor<()> = reactor(Config::default());
    let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let top = Token(1 << (usize::BITS - 1));
    assert!(matches!(
        ka.register(&mut socket, top, Interest::READABLE),
        Err(Error::TokenOutOfRange(t)) if t == top
    ));
    let highest = Token(usize::MAX >> 1);
    ka.register(&mut socket, highest, Interest::READABLE)
        .unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"x", socket.local_addr().unwrap()).unwrap();
    let mut events = Events::new();
    ka.poll(&mut events, Some(CAP)).unwrap();
    assert_eq!(sources(&mut events)[0].token, highest);
}

#[test]
fn a_burst_of_ready_sources_is_spread_over_bounded_ticks_and_none_is_lost() {
    const N: usize = 10_000;
    const PER_TICK: usize = 1_000;
    let mut ka: Reactor<()> = reactor(Config::default().with_max_events_per_tick(PER_TICK));
    let mut sockets = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        ka.register(&mut s, Token(i), Interest::READABLE).unwrap();
        sockets.push(s);
    }
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in &sockets {
        sender.send_to(b"x", s.local_addr().unwrap()).unwrap();
    }
    // Every datagram has landed once the last socket is readable (loopback
    // delivers in order from one sender).
    wait_readable(sockets[N - 1].as_raw_fd());
    for _ in 0..PER_TICK * 3 {
        ka.set_timer(Duration::ZERO, 0).unwrap();
    }

    let mut events = Events::new();
    let mut seen = HashSet::new();
    let mut fired = 0;
    let mut ticks = 0;
    let start = Instant::now();
    while seen.len() < N || fired < PER_TICK * 3 {
        assert!(start.elapsed() < CAP, "saw {} of {N}", seen.len());
        ka.poll_events(&mut events).unwrap();
        ticks += 1;
        let ready = sources(&mut events);
        let expired = timers(&events).len();
        assert!(
            ready.len() <= PER_TICK,
            "{} readiness events in one tick",
            ready.len()
        );
        assert!(expired <= PER_TICK, "{expired} expiries in one tick");
        for r in ready {
            assert!(seen.insert(r.token.0), "token {} reported twice", r.token.0);
        }
        fired += expired;
        events.drain().for_each(drop);
        if seen.len() < N || fired < PER_TICK * 3 {
            assert_eq!(
                ka.next_timeout(),
                Some(Duration::ZERO),
                "work is left, so the next call must not wait"
            );
        }
    }
    assert!(ticks >= N / PER_TICK, "{ticks} ticks");
    assert_eq!(seen.len(), N);
    assert_eq!(fired, PER_TICK * 3);
}
