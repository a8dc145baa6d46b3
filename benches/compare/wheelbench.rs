//! The timer figure: one workload run on our wheel and on a binary heap.
//!
//! Keep `live` timers scheduled (deadlines spread over the next 60 s), and
//! per step insert one, cancel a random one, and every 64 steps advance the
//! clock 1 ms and take what expired. Each insert, cancel and expiry is one
//! operation; the figure is nanoseconds per operation.

use std::time::Instant;

use keepalive::internals::{TimerKey, Wheel};

/// What the workload needs from a timer queue.
pub trait Timers {
    type Key: Copy;
    fn insert(&mut self, deadline: u64, id: u32) -> Self::Key;
    fn cancel(&mut self, key: Self::Key);
    /// One expired timer's id, if any is due at `now`.
    fn poll(&mut self, now: u64) -> Option<u32>;
}

impl Timers for Wheel<u32> {
    type Key = TimerKey;
    fn insert(&mut self, deadline: u64, id: u32) -> TimerKey {
        Wheel::insert(self, deadline, id)
    }
    fn cancel(&mut self, key: TimerKey) {
        Wheel::cancel(self, key);
    }
    fn poll(&mut self, now: u64) -> Option<u32> {
        Wheel::poll(self, now).map(|(_, id)| id)
    }
}

/// xorshift: fast, deterministic, the same sequence for both sides.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs `steps` steps at `live` timers; nanoseconds per operation.
pub fn run<T: Timers>(timers: &mut T, live: usize, steps: usize) -> f64 {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut now = 0u64;
    // keys[pos] = (key, id); pos_of[id] = pos, so expiries and cancels can
    // drop their entry in O(1).
    let mut keys: Vec<(T::Key, u32)> = Vec::with_capacity(live + steps);
    let mut pos_of: Vec<u32> = Vec::with_capacity(live + steps);
    let remove = |keys: &mut Vec<(T::Key, u32)>, pos_of: &mut Vec<u32>, pos: usize| {
        let last = keys.len() - 1;
        keys.swap(pos, last);
        let moved = keys[pos].1;
        pos_of[moved as usize] = pos as u32;
        keys.pop();
    };
    let mut next_id = 0u32;
    let mut schedule = |timers: &mut T,
                        keys: &mut Vec<(T::Key, u32)>,
                        pos_of: &mut Vec<u32>,
                        now: u64,
                        rng: &mut Rng| {
        let id = next_id;
        next_id += 1;
        let key = timers.insert(now + 1 + rng.next() % 60_000, id);
        pos_of.push(keys.len() as u32);
        keys.push((key, id));
    };
    for _ in 0..live {
        schedule(timers, &mut keys, &mut pos_of, now, &mut rng);
    }
    let mut ops = 0u64;
    let start = Instant::now();
    for step in 0..steps {
        schedule(timers, &mut keys, &mut pos_of, now, &mut rng);
        let pos = (rng.next() % keys.len() as u64) as usize;
        timers.cancel(keys[pos].0);
        remove(&mut keys, &mut pos_of, pos);
        ops += 2;
        if step % 64 == 63 {
            now += 1;
            while let Some(id) = timers.poll(now) {
                let pos = pos_of[id as usize] as usize;
                remove(&mut keys, &mut pos_of, pos);
                ops += 1;
            }
        }
    }
    start.elapsed().as_nanos() as f64 / ops as f64
}
