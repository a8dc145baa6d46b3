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
    /// How long a slot stays idle before it is closed.
    pub(crate) keep_alive: Millis,
    /// A request's timeout when it sets none.
    pub(crate) timeout: Millis,
    /// Local address for requests that name none.
    pub(crate) bind_address: Option<IpAddr>,
}
