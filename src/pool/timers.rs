//! Caller timers on the pool's wheel.
//!
//! The pool's own deadlines (request timeouts, keep-alive expiry) and the
//! caller's timers share one wheel, so one `next_deadline` tells the driver
//! how long it may wait, and a proxy has no second timer structure to merge.
//! A caller timer is a slab entry `{ generation, value, wheel key }`; the
//! wheel's entry points back at it. Setting and cancelling are O(1); a
//! stale or foreign [`TimerId`] is refused by its generation and pool id.

use super::{Pool, TimerOwner, index32};
use crate::error::Error;
use crate::time::Millis;
use crate::timer::TimerId;
use crate::wheel::TimerKey;

/// A live caller timer.
pub(super) struct CallerTimer {
    generation: u32,
    value: u64,
    key: TimerKey,
}

impl<C> Pool<C> {
    /// Schedules the caller's `value` to come back at `deadline`. A deadline
    /// already passed fires at the next `handle_timeout`.
    pub(crate) fn set_caller_timer(&mut self, deadline: Millis, value: u64) -> TimerId {
        let generation = self.generation();
        let entry = self.caller_timers.vacant_entry();
        let index = index32(entry.key());
        let key = self.wheel.insert(deadline, TimerOwner::Caller(index));
        entry.insert(CallerTimer {
            generation,
            value,
            key,
        });
        TimerId {
            reactor: self.pool_id,
            index,
            generation,
        }
    }

    /// Cancels a live caller timer and gives its value back.
    pub(crate) fn cancel_caller_timer(&mut self, id: TimerId) -> Result<u64, Error> {
        let live = id.reactor == self.pool_id
            && self
                .caller_timers
                .get(id.index as usize)
                .is_some_and(|t| t.generation == id.generation);
        if !live {
            return Err(Error::UnknownTimer(id));
        }
        let Some(timer) = self.caller_timers.try_remove(id.index as usize) else {
            return Err(Error::UnknownTimer(id));
        };
        self.wheel.cancel(timer.key);
        Ok(timer.value)
    }

    /// Next fired caller timer, if any, in deadline order.
    pub(crate) fn poll_expired(&mut self) -> Option<(TimerId, u64)> {
        self.expired.pop_front()
    }

    /// The wheel fired caller timer `index`: queue it for `poll_expired`.
    pub(super) fn caller_timer_fired(&mut self, index: u32) {
        let Some(timer) = self.caller_timers.try_remove(index as usize) else {
            debug_assert!(false, "caller timer {index} fired but is not live");
            return;
        };
        let id = TimerId {
            reactor: self.pool_id,
            index,
            generation: timer.generation,
        };
        self.expired.push_back((id, timer.value));
    }

    /// Number of live caller timers.
    pub(crate) fn caller_timer_count(&self) -> usize {
        self.caller_timers.len()
    }
}
