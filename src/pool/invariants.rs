//! A recount of the pool from scratch, for the tests: every incremental
//! count and list is compared with what the slabs say, after every step.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test code: indices of small test pools"
)]

use std::hash::BuildHasher;

use super::{Pool, RequestState, SlotState, request_queue, slot_key_idle};
use crate::request::RequestId;

impl<C> Pool<C> {
    /// Recounts everything from scratch and panics, with values, on the
    /// first disagreement with the incremental bookkeeping. Called by the
    /// tests after every step.
    pub(crate) fn check_invariants(&mut self) {
        use std::collections::HashSet;
        let lim = self.limits;
        // The stats snapshot against a recount.
        let stats = self.stats();
        let count =
            |f: &dyn Fn(&SlotState) -> bool| self.slots.iter().filter(|(_, s)| f(&s.state)).count();
        assert_eq!(
            stats.total.connecting,
            count(&|s| matches!(s, SlotState::Connecting { .. })),
            "stats: connecting"
        );
        assert_eq!(
            stats.total.lent,
            count(&|s| matches!(s, SlotState::Reserved { .. } | SlotState::Lent)),
            "stats: lent"
        );
        assert_eq!(
            stats.total.idle,
            count(&|s| *s == SlotState::Idle),
            "stats: idle"
        );
        let waiting_now = self
            .requests
            .iter()
            .filter(|(_, r)| matches!(r.state, RequestState::Waiting))
            .count();
        assert_eq!(stats.total.waiting, waiting_now, "stats: waiting");
        if let Some(max) = lim.max_pending {
            assert!(
                waiting_now <= max,
                "{waiting_now} waiting over max_pending {max}"
            );
        }
        if let Some(max) = lim.max_uses {
            for (i, s) in self.slots.iter() {
                assert!(s.uses <= max, "slot {i} used {} times, max {max}", s.uses);
            }
        }
        assert_eq!(self.open, self.slots.len(), "open count");
        assert!(
            self.open <= lim.max_open,
            "open {} > max_open {}",
            self.open,
            lim.max_open
        );
        let mut timers = 0;
        let key_ids: Vec<u32> = self.keys.iter().map(|(i, _)| i as u32).collect();
        let mut all_idle = 0;
        for &k in &key_ids {
            let busy = self
                .slots
                .iter()
                .filter(|(_, s)| s.key == k && s.state != SlotState::Idle)
                .count();
            let idle: HashSet<u32> = self
                .slots
                .iter()
                .filter(|(_, s)| s.key == k && s.state == SlotState::Idle)
                .map(|(i, _)| i as u32)
                .collect();
            let waiting: Vec<u32> = {
                let mut w: Vec<(u32, u32)> = self
                    .requests
                    .iter()
                    .filter(|(_, r)| r.key == k && matches!(r.state, RequestState::Waiting))
                    .map(|(i, _)| (i as u32, 0))
                    .collect();
                w.sort();
                w.into_iter().map(|(i, _)| i).collect()
            };
            let requests = self.requests.iter().filter(|(_, r)| r.key == k).count();
            let connecting = self
                .slots
                .iter()
                .filter(|(_, s)| s.key == k && matches!(s.state, SlotState::Connecting { .. }))
                .count();
            if let Some(ks) = self.keys.get(k as usize) {
                assert_eq!(ks.connecting, connecting, "key {k} connecting");
                if let Some(max) = lim.max_idle_per_key {
                    assert!(ks.idle.len() <= max, "key {k} idle over max_idle_per_key");
                }
                if let Some(max) = lim.max_pending_per_key {
                    assert!(ks.waiting.len() <= max, "key {k} queue over its bound");
                }
            }
            let Some(ks) = self.keys.get(k as usize) else {
                continue;
            };
            let (idle_list, waiting_list, ks_busy, ks_requests, blocked) = (
                ks.idle,
                ks.waiting,
                ks.busy,
                ks.requests,
                ks.blocked.is_linked(),
            );
            let hash = self.hasher.hash_one(&ks.target);
            let listed_idle: HashSet<u32> = idle_list
                .collect(&mut self.slots, slot_key_idle)
                .into_iter()
                .collect();
            let mut listed_waiting = waiting_list.collect(&mut self.requests, request_queue);
            listed_waiting.sort();
            assert_eq!(ks_busy, busy, "key {k} busy");
            assert_eq!(listed_idle, idle, "key {k} idle list");
            assert_eq!(listed_waiting, waiting, "key {k} wait queue");
            assert_eq!(ks_requests, requests, "key {k} request count");
            assert!(
                busy + idle.len() <= lim.max_per_host,
                "key {k}: busy {busy} + idle {} > max_per_host {}",
                idle.len(),
                lim.max_per_host
            );
            if !waiting.is_empty() && !self.shut_down {
                assert!(idle.is_empty(), "key {k} has waiters and idle sockets");
                let open_full = self.open >= lim.max_open && self.idle_lru.is_empty();
                assert!(
                    busy >= lim.max_per_host || open_full,
                    "key {k} has waiters but could connect: busy {busy}, open {}",
                    self.open
                );
                assert_eq!(
                    blocked,
                    busy < lim.max_per_host,
                    "key {k} open_blocked membership"
                );
            } else {
                assert!(!blocked, "key {k} open_blocked without waiters");
            }
            assert!(
                busy > 0 || !idle.is_empty() || requests > 0 || ks.min_idle > 0,
                "key {k} is empty but kept"
            );
            assert_eq!(
                ks.min_idle > 0,
                self.warm_keys.contains(&k),
                "key {k}: warm_keys membership"
            );
            assert!(
                ks.warm_timer.is_none() || ks.min_idle > 0,
                "key {k}: a warm retry without a minimum"
            );
            assert!(
                self.key_index.find(hash, |&i| i == k).is_some(),
                "key {k} missing from index"
            );
            all_idle += idle.len();
        }
        assert_eq!(self.key_index.len(), self.keys.len(), "key index size");
        assert_eq!(self.idle_lru.len(), all_idle, "global idle list");
        let unstamped = self
            .slots
            .iter()
            .filter(|(_, s)| s.stamp.is_linked())
            .count();
        assert_eq!(self.unstamped.len(), unstamped, "unstamped list");
        for (i, s) in self.slots.iter() {
            let i = i as u32;
            match s.state {
                SlotState::Idle => {
                    let stamped = s.timer.is_some();
                    let waiting = s.stamp.is_linked();
                    assert!(!(stamped && waiting), "idle slot {i} stamped twice");
                    assert_eq!(
                        stamped || waiting,
                        lim.keep_alive.is_some() || s.retire_at.is_some(),
                        "idle slot {i}: a timer (or one to come) exactly when it can expire"
                    );
                }
                SlotState::Connecting { request: None } => {
                    assert!(s.timer.is_some(), "orphan slot {i} without deadline")
                }
                _ => assert!(s.timer.is_none(), "slot {i} in {:?} has a timer", s.state),
            }
            timers += usize::from(s.timer.is_some());
            match s.state {
                SlotState::Connecting { request: Some(r) } => assert!(
                    matches!(self.requests.get(r as usize).map(|r| &r.state), Some(RequestState::Connecting { slot }) if *slot == i),
                    "slot {i} connecting for {r}, which disagrees"
                ),
                SlotState::Reserved { request: r } => assert!(
                    matches!(self.requests.get(r as usize).map(|r| &r.state), Some(RequestState::Reserved { slot, .. }) if *slot == i),
                    "slot {i} reserved for {r}, which disagrees"
                ),
                _ => {}
            }
        }
        for (i, r) in self.requests.iter() {
            let pending = matches!(
                r.state,
                RequestState::Waiting | RequestState::Connecting { .. }
            );
            assert_eq!(r.timer.is_some(), pending, "request {i} timer vs state");
            timers += usize::from(r.timer.is_some());
            if !pending {
                let id = RequestId {
                    reactor: self.pool_id,
                    index: i as u32,
                    generation: r.generation,
                };
                assert!(
                    self.ready.contains(&id),
                    "decided request {i} not in ready queue"
                );
            }
        }
        timers += self.caller_timers.len();
        timers += self
            .keys
            .iter()
            .filter(|(_, k)| k.warm_timer.is_some())
            .count();
        assert_eq!(self.wheel.len(), timers, "timers in wheel");
    }
}
