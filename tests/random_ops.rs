//! Random sequences through the public API on loopback: allocate (to a live
//! server, a refused port, a stalled listener), deallocate, free, drop,
//! close, the server closing everything, and polls. However they interleave,
//! every request ends in exactly one outcome or one successful deallocate,
//! no outcome names an unknown request, and `max_open` holds throughout.
//! Seeded, so a failure replays exactly.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use keepalive::{Config, Connection, Event, Events, RequestId};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below n, which is a usize")
    }
}

fn run(seed: u64) {
    let server = Server::start();
    let refused = refused_port();
    let stuck = full_backlog();
    let max_open = 6;
    let mut ka = reactor(
        Config::default()
            .with_max_per_host(3)
            .with_max_open(max_open),
    );
    let mut events = Events::new();
    let mut rng = Rng(seed);
    let mut pending: HashMap<RequestId, u64> = HashMap::new();
    let mut lent: Vec<Connection> = Vec::new();
    let mut next_ctx = 0u64;
    let mut outcomes = 0u64;
    let mut deallocated = 0u64;

    let take = |events: &mut Events<u64>,
                pending: &mut HashMap<RequestId, u64>,
                lent: &mut Vec<Connection>| {
        let mut n = 0;
        for e in events.drain() {
            if let Event::Outcome(o) = e {
                let ctx = pending
                    .remove(&o.id)
                    .unwrap_or_else(|| panic!("seed {seed}: outcome for unknown {:?}", o.id));
                assert_eq!(
                    ctx, o.context,
                    "seed {seed}: context came back with its request"
                );
                if let Ok(conn) = o.result {
                    lent.push(conn);
                }
                n += 1;
            }
        }
        n
    };

    for _ in 0..150 {
        match rng.below(11) {
            0..=2 => {
                let port = [server.port(), server.port(), refused, stuck.addr.port()][rng.below(4)];
                let req = request(port, next_ctx).timeout(Duration::from_millis(30));
                let id = ka.allocate(req).unwrap();
                pending.insert(id, next_ctx);
                next_ctx += 1;
            }
            3 => {
                let ids: Vec<RequestId> = pending.keys().copied().collect();
                if !ids.is_empty() {
                    let id = ids[rng.below(ids.len())];
                    let ctx = ka
                        .deallocate(id)
                        .unwrap_or_else(|e| panic!("seed {seed}: pending {id:?}: {e}"));
                    assert_eq!(pending.remove(&id), Some(ctx));
                    deallocated += 1;
                }
            }
            4 if !lent.is_empty() => {
                let c = lent.swap_remove(rng.below(lent.len()));
                ka.free(c).unwrap();
            }
            5 if !lent.is_empty() => drop(lent.swap_remove(rng.below(lent.len()))),
            6 if !lent.is_empty() => lent.swap_remove(rng.below(lent.len())).close(),
            7 => server.close_all(),
            8 => ka.poll_events(&mut events).unwrap(),
            _ => ka
                .poll(&mut events, Some(Duration::from_millis(3)))
                .unwrap(),
        }
        outcomes += take(&mut events, &mut pending, &mut lent);
        assert!(
            ka.open_count() <= max_open,
            "seed {seed}: open {} > {max_open}",
            ka.open_count()
        );
    }
    // Give everything back; every request left must still get its outcome.
    lent.clear();
    let start = Instant::now();
    while !pending.is_empty() {
        assert!(
            start.elapsed() < CAP,
            "seed {seed}: {} requests never answered",
            pending.len()
        );
        ka.poll(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        outcomes += take(&mut events, &mut pending, &mut lent);
        lent.clear();
    }
    assert_eq!(
        outcomes + deallocated,
        next_ctx,
        "seed {seed}: one ending per request"
    );
    assert_eq!(ka.pending_count(), 0);
}

#[test]
fn every_request_ends_exactly_once_under_random_operations() {
    for seed in 1..=12u64 {
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    }
}
