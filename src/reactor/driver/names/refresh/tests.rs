//! The refresh deadlines on a fake clock: nothing at `deadline - 1`, the
//! refresh at `deadline`, for the answer's expiry and for the floor.

use std::net::{IpAddr, Ipv4Addr};

use super::super::{NameTimer, Names};
use crate::config::Config;
use crate::resolve::{Addresses, ResolveError};
use crate::time::Millis;

const FLOOR: Millis = 1_000;

fn names() -> Names {
    let absent = std::env::temp_dir().join("keepalive-refresh-tests-absent");
    let config = Config::default()
        .with_resolv_conf(&absent)
        .with_hosts_file(&absent)
        .with_nameservers(vec![(Ipv4Addr::new(192, 0, 2, 53), 53).into()])
        .with_dns_ttl(
            std::time::Duration::from_millis(FLOOR),
            std::time::Duration::from_secs(3600),
            std::time::Duration::from_secs(30),
        );
    Names::new(&config).unwrap()
}

fn one(last: u8) -> Addresses {
    let mut a = Addresses::EMPTY;
    a.push(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)));
    a
}

/// The watch whose refresh is due at `t`, if one is.
fn due(n: &mut Names, t: Millis) -> Option<u32> {
    match n.timers.poll(t) {
        Some((_, NameTimer::Refresh(w))) => Some(w),
        _ => None,
    }
}

/// Fires watch `w`'s refresh at `t`: its lookup starts (the tests answer
/// it themselves, through `refreshed`).
fn refresh_at(n: &mut Names, w: u32, t: Millis) -> crate::resolve::LookupId {
    n.refresh_due(w, t);
    while n.resolver.poll_transmit().is_some() {}
    n.watches.list[w as usize].lookup.expect("a refresh lookup")
}

#[test]
fn a_watched_name_is_refreshed_at_its_expiry_and_not_before() {
    let mut n = names();
    let (w, changed) = n.watch("a.test", one(1), 5_000, 0).unwrap();
    assert!(!changed);
    assert_eq!(due(&mut n, 4_999), None);
    assert_eq!(due(&mut n, 5_000), Some(w));
    let lookup = refresh_at(&mut n, w, 5_000);
    // Answered the same: next at the new expiry.
    assert!(!n.refreshed(w, lookup, Ok(one(1)), 9_000, 5_010));
    assert_eq!(due(&mut n, 8_999), None);
    assert_eq!(due(&mut n, 9_000), Some(w));
    // Answered differently: the caller retires what moved.
    let lookup = refresh_at(&mut n, w, 9_000);
    assert!(n.refreshed(w, lookup, Ok(one(2)), 13_000, 9_010));
    assert!(!n.still_answered(w, (Ipv4Addr::new(192, 0, 2, 1), 80).into()));
    assert!(n.still_answered(w, (Ipv4Addr::new(192, 0, 2, 2), 80).into()));
}

#[test]
fn refreshes_start_at_most_once_per_floor() {
    let mut n = names();
    // An answer that expires at once (TTL 0, no cache): the floor paces.
    let (w, _) = n.watch("b.test", one(1), 0, 100).unwrap();
    assert_eq!(due(&mut n, 100 + FLOOR - 1), None);
    assert_eq!(due(&mut n, 100 + FLOOR), Some(w));
    let lookup = refresh_at(&mut n, w, 100 + FLOOR);
    assert!(!n.refreshed(w, lookup, Ok(one(1)), 100 + FLOOR + 10, 100 + FLOOR + 5));
    assert_eq!(due(&mut n, 100 + 2 * FLOOR - 1), None);
    assert_eq!(due(&mut n, 100 + 2 * FLOOR), Some(w));
}

#[test]
fn a_failed_refresh_keeps_the_answer_and_retries_one_floor_later() {
    let mut n = names();
    let (w, _) = n.watch("c.test", one(1), 5_000, 0).unwrap();
    assert_eq!(due(&mut n, 5_000), Some(w));
    let lookup = refresh_at(&mut n, w, 5_000);
    // The failure comes at 7 s (the servers timed out).
    assert!(!n.refreshed(w, lookup, Err(ResolveError::TimedOut), 0, 7_000));
    assert!(n.still_answered(w, (Ipv4Addr::new(192, 0, 2, 1), 80).into()));
    assert_eq!(due(&mut n, 7_000 + FLOOR - 1), None);
    assert_eq!(due(&mut n, 7_000 + FLOOR), Some(w));
}

#[test]
fn the_last_connection_closing_ends_the_watch() {
    let mut n = names();
    let (w, _) = n.watch("d.test", one(1), 5_000, 0).unwrap();
    let (again, _) = n.watch("d.test", one(1), 5_000, 0).unwrap();
    assert_eq!(w, again, "one watch per name");
    n.unwatch(w);
    assert!(!n.timers.is_empty(), "one connection left");
    n.unwatch(w);
    assert!(
        n.timers.is_empty(),
        "no refresh for a name without connections"
    );
    assert_eq!(due(&mut n, 10_000), None);
}

/// (The resolver gives hosts-file answers this expiry.)
#[test]
fn an_answer_that_never_expires_is_not_refreshed() {
    let mut n = names();
    n.watch("e.test", one(1), Millis::MAX, 0).unwrap();
    assert!(n.timers.is_empty());
}
