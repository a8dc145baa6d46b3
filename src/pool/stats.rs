//! Reading the pool's numbers: a snapshot in total and per key, and the
//! lifecycle events queued for the driver.

use std::net::SocketAddr;

use super::{Pool, SlotId};
use crate::lifecycle::Change;
use crate::request::Target;
use crate::stats::{Counts, KeyStats, Stats};

impl<C> Pool<C> {
    /// Totals and counters. O(1), no allocation.
    pub(crate) fn stats(&self) -> Stats {
        let idle = self.idle_lru.len();
        let total = Counts {
            connecting: self.connecting,
            lent: self.open - self.connecting - idle,
            idle,
            waiting: self.waiting,
        };
        Stats {
            total,
            counters: self.counters,
        }
    }

    /// One entry per key, into `out` (cleared first). O(keys); allocates
    /// only to grow `out`, or to copy a target's owned strings.
    pub(crate) fn key_stats(&self, out: &mut Vec<KeyStats>) {
        out.clear();
        out.extend(self.keys.iter().map(|(_, k)| KeyStats {
            target: Target::clone(&k.target),
            counts: Counts {
                connecting: k.connecting,
                lent: k.busy - k.connecting,
                idle: k.idle.len(),
                waiting: k.waiting.len(),
            },
        }));
    }

    /// Next lifecycle change, if any (only with `lifecycle_events` on).
    pub(crate) fn poll_lifecycle(&mut self) -> Option<(SlotId, SocketAddr, Change)> {
        self.lifecycle.pop()
    }
}
