//! Names kept in use: their answers refreshed in the background, and the
//! connections to addresses that left the answer retired
//! ([`Config::dns_refresh`](crate::Config::dns_refresh)).
//!
//! # The timeline of a name whose answer changes
//!
//! ```text
//! t0        a connection to the name wins: the name is watched, with the answer it dialled
//!           on (addresses, expiry E = t0 + TTL clamped to [dns_ttl_floor, dns_ttl_cap])
//! E         the refresh deadline fires (on the driver's names wheel, never on a checkout):
//!           one lookup for the name, shared with any dial asking at the same time
//! E + rtt   the answer: unchanged ─▶ next refresh at its expiry
//!                       changed   ─▶ every connection whose address is gone is retired
//!                                    (AddressGone): idle ones closed now, lent ones when
//!                                    freed, a connecting one when it comes free; new
//!                                    connections dial the new answer
//!                       failed    ─▶ stale-if-error (RFC 8767's spirit): nothing closes,
//!                                    asked again one dns_ttl_floor later
//! last connection of the name closed: the watch ends (timer and lookup cancelled)
//! ```
//!
//! Refreshes of one name start at most once per `dns_ttl_floor`. A name
//! answered by the hosts file (or `localhost`, or a literal) does not
//! expire, so it is not refreshed.
//!
//! # Costs
//!
//! Per watched name: one entry (its name allocated once, when its first
//! connection wins), one timer, one lookup per TTL (a DNS exchange, or a
//! cache hit when a dial asked first). Retiring scans the socket table,
//! O(sockets), only when a name's answer changed. Nothing here runs on a
//! checkout, and nothing runs at all with `dns_refresh` off.

use std::collections::HashMap;
use std::net::SocketAddr;

use slab::Slab;

use super::{NameTimer, Names};
use crate::pool::SlotId;
use crate::reactor::driver::Driver;
use crate::resolve::{Addresses, LookupId, ResolveError};
use crate::time::Millis;
use crate::wheel::TimerKey;

/// One name with connections.
struct Watch {
    /// Lowercase, as the pool keys it.
    name: Box<str>,
    /// The latest answer.
    addresses: Addresses,
    /// When it expires (`Millis::MAX`: never).
    expires: Millis,
    /// Open connections (connected, by name) that reached it.
    conns: u32,
    /// The refresh deadline.
    timer: Option<TimerKey>,
    /// The refresh under way.
    lookup: Option<LookupId>,
    /// No refresh starts before this: `dns_ttl_floor` after the last.
    next_allowed: Millis,
}

/// The watched names. See the module docs.
pub(in crate::reactor) struct Watches {
    list: Slab<Watch>,
    by_name: HashMap<Box<str>, u32>,
    /// The watch each refresh lookup is for.
    by_lookup: HashMap<LookupId, u32>,
    /// [`Config::dns_refresh`](crate::Config::dns_refresh).
    enabled: bool,
    /// [`Config::dns_ttl_floor`](crate::Config::dns_ttl_floor), in
    /// milliseconds.
    floor: Millis,
}

impl Watches {
    pub(in crate::reactor) fn new(enabled: bool, floor: Millis) -> Watches {
        Watches {
            list: Slab::new(),
            by_name: HashMap::new(),
            by_lookup: HashMap::new(),
            enabled,
            floor,
        }
    }

    /// The watch a refresh lookup is for, if `lookup` is one.
    pub(super) fn refresh_of(&self, lookup: LookupId) -> Option<u32> {
        self.by_lookup.get(&lookup).copied()
    }
}

impl Names {
    /// A connection by name to `name` won, dialled on `addresses` (which
    /// expire at `expires`): it joins the name's watch, made if new.
    /// Returns the watch, and whether its answer changed (the caller then
    /// retires what moved). `None` with refresh off.
    pub(super) fn watch(
        &mut self,
        name: &str,
        addresses: Addresses,
        expires: Millis,
        now: Millis,
    ) -> Option<(u32, bool)> {
        let floor = self.watches.floor;
        let w = &mut self.watches;
        if !w.enabled {
            return None;
        }
        let (index, changed) = match w.by_name.get(name) {
            Some(&index) => {
                let watch = w.list.get_mut(index as usize)?;
                watch.conns += 1;
                // A dial's answer fresher than the watch's is the name's
                // answer now.
                let fresher = expires != 0 && expires > watch.expires;
                let changed = fresher && !watch.addresses.same_set(&addresses);
                if fresher {
                    watch.addresses = addresses;
                    watch.expires = expires;
                }
                (index, changed)
            }
            None => {
                let index = u32::try_from(w.list.vacant_key()).ok()?;
                w.list.insert(Watch {
                    name: name.into(),
                    addresses,
                    expires,
                    conns: 1,
                    timer: None,
                    lookup: None,
                    next_allowed: now.saturating_add(floor),
                });
                w.by_name.insert(name.into(), index);
                (index, false)
            }
        };
        self.schedule_refresh(index);
        Some((index, changed))
    }

    /// A connection that joined watch `w` closed; the last one ends it.
    pub(super) fn unwatch(&mut self, w: u32) {
        let Some(watch) = self.watches.list.get_mut(w as usize) else {
            return;
        };
        watch.conns = watch.conns.saturating_sub(1);
        if watch.conns > 0 {
            return;
        }
        let watch = self.watches.list.remove(w as usize);
        self.watches.by_name.remove(&watch.name);
        if let Some(timer) = watch.timer {
            self.timers.cancel(timer);
        }
        if let Some(lookup) = watch.lookup {
            self.resolver.cancel(lookup);
            self.watches.by_lookup.remove(&lookup);
        }
    }

    /// Whether `peer` is in watch `w`'s latest answer (a watch that is
    /// gone holds everything).
    pub(super) fn still_answered(&self, w: u32, peer: SocketAddr) -> bool {
        self.watches
            .list
            .get(w as usize)
            .is_none_or(|watch| holds(&watch.addresses, peer))
    }

    /// Sets watch `w`'s refresh deadline: its answer's expiry, but not
    /// before `dns_ttl_floor` after the last refresh began.
    fn schedule_refresh(&mut self, w: u32) {
        let Some(watch) = self.watches.list.get_mut(w as usize) else {
            return;
        };
        if let Some(timer) = watch.timer.take() {
            self.timers.cancel(timer);
        }
        if watch.expires == Millis::MAX || watch.lookup.is_some() {
            return;
        }
        let at = watch.expires.max(watch.next_allowed);
        watch.timer = Some(self.timers.insert(at, NameTimer::Refresh(w)));
    }

    /// Watch `w`'s refresh deadline fired: its lookup starts.
    pub(super) fn refresh_due(&mut self, w: u32, now: Millis) {
        let floor = self.watches.floor;
        let Some(watch) = self.watches.list.get_mut(w as usize) else {
            return;
        };
        watch.timer = None;
        if watch.lookup.is_some() {
            return;
        }
        watch.next_allowed = now.saturating_add(floor);
        self.files.check(now, &mut self.resolver);
        match self.resolver.lookup(&watch.name, now) {
            Ok(lookup) => {
                watch.lookup = Some(lookup);
                self.watches.by_lookup.insert(lookup, w);
                self.dirty = true;
            }
            // The name was looked up before: not expected. Asked again at
            // the floor.
            Err(_) => {
                watch.expires = now;
                self.schedule_refresh(w);
            }
        }
    }

    /// Watch `w`'s refresh is answered. Returns whether the answer changed
    /// (the caller then retires what moved).
    pub(super) fn refreshed(
        &mut self,
        w: u32,
        lookup: LookupId,
        result: Result<Addresses, ResolveError>,
        expires: Millis,
        now: Millis,
    ) -> bool {
        self.watches.by_lookup.remove(&lookup);
        let floor = self.watches.floor;
        let Some(watch) = self.watches.list.get_mut(w as usize) else {
            return false;
        };
        watch.lookup = None;
        let changed = match result {
            Ok(addresses) if !addresses.is_empty() => {
                let changed = !addresses.same_set(&watch.addresses);
                watch.addresses = addresses;
                watch.expires = expires;
                changed
            }
            // Stale if error: what works keeps working; asked again at the
            // floor.
            _ => {
                watch.expires = now;
                watch.next_allowed = now.saturating_add(floor);
                false
            }
        };
        self.schedule_refresh(w);
        changed
    }
}

impl<C> Driver<C> {
    /// Watch `w`'s answer changed: each connection of it whose address is
    /// no longer in the answer is retired. O(sockets).
    pub(super) fn retire_moved(&mut self, w: u32, now: Millis) {
        let mut gone = Vec::new();
        for (index, entry) in self.sockets.iter().enumerate() {
            let Some(named) = entry.named.as_deref() else {
                continue;
            };
            let Some(peer) = named.peer.filter(|_| named.watch == Some(w)) else {
                continue;
            };
            if !self.names.still_answered(w, peer) {
                if let Ok(index) = u32::try_from(index) {
                    gone.push(SlotId {
                        index,
                        generation: named.generation,
                    });
                }
            }
        }
        for slot in gone {
            self.pool.handle_address_gone(slot, now);
        }
    }
}

/// Whether `addresses` holds `peer`'s address.
fn holds(addresses: &Addresses, peer: SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V6(a) => addresses.v6().contains(&a),
        std::net::IpAddr::V4(a) => addresses.v4().contains(&a),
    }
}

#[cfg(test)]
mod tests;
