//! Caller timers: ids and what a fired one reports.
//!
//! A caller sets a timer on the reactor's own wheel with a `u64` value of its
//! choice (an index into its own table, say) and gets a [`TimerId`]; when the
//! timer fires, a [`TimerFired`](crate::TimerFired) event carries both back from
//! the same poll that reports outcomes and readiness.

use std::fmt;

/// Names a caller timer from [`set_timer`](crate::Reactor::set_timer) until it
/// fires or is cancelled.
///
/// Like a [`RequestId`](crate::RequestId) it carries its reactor and a
/// generation, so a stale id (fired or cancelled) or another reactor's is
/// refused, never mistaken for a live timer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId {
    pub(crate) reactor: u32,
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl fmt::Debug for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TimerId({}:{}.{})",
            self.reactor, self.index, self.generation
        )
    }
}
