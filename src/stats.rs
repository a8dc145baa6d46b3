//! Pool statistics: an exact snapshot of what is open and waiting, and
//! counters since the reactor started.
//!
//! The pool keeps every number incrementally as it changes state (a few
//! integer additions per transition), so a snapshot costs nothing to keep
//! and O(1) to read in total, O(keys) per key. The tests recount every gauge
//! from scratch after each step and compare.

use crate::error::Function;
use crate::lifecycle::CloseReason;
use crate::request::Target;

/// How many sockets and requests are in each state, now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Sockets connecting (TCP connect or TLS handshake under way).
    pub connecting: usize,
    /// Sockets handed to a request: lent, or decided and about to be
    /// delivered by the next poll.
    pub lent: usize,
    /// Idle sockets in the pool.
    pub idle: usize,
    /// Requests waiting in a queue for a limit to free up.
    pub waiting: usize,
}

/// Counts for one pool key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStats {
    /// The key (a copy: stats may go to another thread).
    pub target: Target,
    /// Its counts.
    pub counts: Counts,
}

/// Counters since the reactor was made. They only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Requests served from the pool at `allocate` (`FromCache::Immediate`).
    pub immediate: u64,
    /// Requests served a connection another user freed (`Deferred`).
    pub deferred: u64,
    /// Connects (with TLS handshakes) that completed.
    pub connected: u64,
    /// Requests that timed out (`connect`, `ETIMEDOUT`).
    pub timeouts: u64,
    /// Requests refused because a wait queue was full (`queue`, `EAGAIN`).
    pub queue_overflows: u64,
    /// TLS handshakes that completed, resumed ones included.
    pub tls_handshakes: u64,
    /// Of those, the ones whose key exchange was a post-quantum hybrid
    /// (X25519MLKEM768; see
    /// [`Connection::tls_kx_group`](crate::Connection::tls_kx_group)). With
    /// the default `aws-lc-rs` feature, the share of handshakes whose
    /// servers speak ML-KEM; always 0 with `ring`. Counted by the reactor,
    /// not the pool core, which knows nothing of TLS.
    pub tls_post_quantum: u64,
    failures: [u64; FUNCTIONS],
    closes: [u64; CloseReason::ALL.len()],
}

/// Room for every [`Function`], with space for ones added later.
const FUNCTIONS: usize = 8;

fn function_index(f: Function) -> usize {
    match f {
        Function::Socket => 0,
        Function::Bind => 1,
        Function::Connect => 2,
        Function::Tls => 3,
        Function::Shutdown => 4,
        Function::Queue => 5,
        Function::Resolve => 6,
    }
}

impl Counters {
    /// Failed outcomes whose failing step was `function` (timeouts count
    /// under `Connect`).
    #[must_use]
    pub fn failures(&self, function: Function) -> u64 {
        self.failures[function_index(function)]
    }

    /// Sockets the pool closed for `reason`.
    #[must_use]
    pub fn closes(&self, reason: CloseReason) -> u64 {
        self.closes[reason.index()]
    }

    /// Sockets the pool closed, for any reason.
    #[must_use]
    pub fn closes_total(&self) -> u64 {
        self.closes.iter().sum()
    }

    pub(crate) fn count_failure(&mut self, function: Function) {
        self.failures[function_index(function)] += 1;
    }

    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        self.closes[reason.index()] += 1;
    }
}

/// A snapshot of the whole reactor: [`Reactor::stats`](crate::Reactor::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// What is open and waiting now, over every key.
    pub total: Counts,
    /// What has happened since the reactor was made.
    pub counters: Counters,
}
