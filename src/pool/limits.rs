//! The limits and timings the pool enforces, as plain values.
//!
//! [`Config`](crate::Config) is the caller's view (durations, validation
//! errors naming fields); the pool takes this value, already validated and
//! in whole milliseconds, so the core never depends on the public
//! configuration type.

use std::net::IpAddr;

use crate::time::Millis;

/// The pool's limits and timings, validated and in milliseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Busy (connecting, reserved, lent) slots per key, at most.
    pub(crate) max_per_host: usize,
    /// Slots of any phase, at most.
    pub(crate) max_open: usize,
    /// How long a slot stays idle before it is closed; `None`: for ever.
    pub(crate) keep_alive: Option<Millis>,
    /// A request's timeout when it sets none.
    pub(crate) timeout: Millis,
    /// Local address for requests that name none.
    pub(crate) bind_address: Option<IpAddr>,
    /// A slot this old (since connected) is not pooled again.
    pub(crate) max_lifetime: Option<Millis>,
    /// A slot handed out this many times is not pooled again.
    pub(crate) max_uses: Option<u32>,
    /// Keep-alive and lifetime are shortened by a random amount below this.
    pub(crate) jitter: Millis,
    /// Idle slots per key, at most.
    pub(crate) max_idle_per_key: Option<usize>,
    /// Waiting requests per key, at most.
    pub(crate) max_pending_per_key: Option<usize>,
    /// Waiting requests in all, at most.
    pub(crate) max_pending: Option<usize>,
    /// Queue lifecycle events for the driver.
    pub(crate) lifecycle_events: bool,
}
