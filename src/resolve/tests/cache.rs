//! The cache alone: lifetimes on both sides, LRU eviction, and a property
//! test against a plain model (a vector ordered by recency).

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::super::cache::{Cache, Cached, TtlPolicy};
use super::super::{Addresses, ResolveError};
use crate::time::Millis;

fn addrs(last: u8) -> Cached {
    let mut a = Addresses::EMPTY;
    a.push(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)));
    Ok(a)
}

#[test]
fn an_entry_answers_until_its_expiry_and_not_at_it() {
    let mut c = Cache::new(4);
    c.insert("example.com", addrs(1), 1_000 + 60_000, 1_000);
    assert_eq!(c.get("example.com", 60_999), Some(addrs(1)));
    assert_eq!(c.get("Example.COM", 60_999), Some(addrs(1)));
    assert_eq!(c.get("example.com", 61_000), None);
    assert_eq!(c.len(), 0, "dropped when found expired");
    c.check_invariants();
}

#[test]
fn nothing_is_cached_for_a_lifetime_of_zero_or_a_capacity_of_zero() {
    let mut c = Cache::new(4);
    c.insert("a", addrs(1), 5, 5);
    assert_eq!(c.len(), 0);
    let mut off = Cache::new(0);
    off.insert("a", addrs(1), 50, 5);
    assert_eq!(off.get("a", 6), None);
    off.check_invariants();
}

#[test]
fn a_full_cache_evicts_the_least_recently_used() {
    let mut c = Cache::new(3);
    c.insert("a", addrs(1), 1_000, 0);
    c.insert("b", addrs(2), 1_000, 0);
    c.insert("c", Err(ResolveError::NxDomain), 1_000, 0);
    assert!(c.get("a", 1).is_some(), "a is now the most recent");
    c.insert("d", addrs(4), 1_000, 1);
    c.check_invariants();
    assert_eq!(c.len(), 3);
    assert_eq!(c.get("b", 2), None, "b was least recently used");
    assert_eq!(c.names_by_recency(), ["d", "a", "c"]);
    // Replacing an entry does not evict, and refreshes it.
    c.insert("C", addrs(3), 2_000, 2);
    assert_eq!(c.names_by_recency(), ["c", "d", "a"]);
    assert_eq!(c.get("c", 1_500), Some(addrs(3)));
    c.check_invariants();
}

#[test]
fn ttl_policy_clamps() {
    let p = TtlPolicy::default();
    assert_eq!(p.positive(0), 1_000);
    assert_eq!(p.positive(30), 30_000);
    assert_eq!(p.positive(u32::MAX), 3_600_000);
    assert_eq!(p.negative(None), 0);
    assert_eq!(p.negative(Some(5)), 5_000);
    assert_eq!(p.negative(Some(86_400)), 30_000);
    let odd = TtlPolicy {
        ttl_floor: 10_000,
        ttl_cap: 1_000,
        negative_cap: 0,
    };
    assert_eq!(odd.positive(5), 10_000, "a floor above the cap wins");
    assert_eq!(odd.negative(Some(5)), 0);
}

#[derive(Clone, Debug)]
enum Op {
    Insert { name: u8, lifetime: Millis },
    Get { name: u8 },
    Advance(Millis),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..8u8, 0..3_000u64).prop_map(|(name, lifetime)| Op::Insert { name, lifetime }),
        (0..8u8).prop_map(|name| Op::Get { name }),
        (0..1_500u64).prop_map(Op::Advance),
    ]
}

proptest! {
    /// The cache agrees with a model that keeps `(name, expires, value)` in
    /// a vector, most recent first, drops expired entries when looked up
    /// and the last one when full.
    #[test]
    fn cache_matches_an_lru_model(capacity in 0..5usize, ops in prop::collection::vec(op(), 1..200)) {
        let mut cache = Cache::new(capacity);
        let mut model: Vec<(String, Millis, Cached)> = Vec::new();
        let mut now: Millis = 0;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Insert { name, lifetime } => {
                    // Names in mixed case: the cache folds case.
                    let n = format!("N{name}.example");
                    let value = addrs(name.wrapping_add(u8::try_from(step % 200).unwrap_or(0)));
                    cache.insert(&n, value, now + lifetime, now);
                    let key = n.to_ascii_lowercase();
                    if lifetime > 0 && capacity > 0 {
                        if let Some(i) = model.iter().position(|e| e.0 == key) {
                            let _removed = model.remove(i);
                        } else if model.len() == capacity {
                            model.pop();
                        }
                        model.insert(0, (key, now + lifetime, value));
                    }
                }
                Op::Get { name } => {
                    let key = format!("n{name}.example");
                    let got = cache.get(&key, now);
                    let expect = match model.iter().position(|e| e.0 == key) {
                        Some(i) if now < model[i].1 => {
                            let e = model.remove(i);
                            let v = e.2;
                            model.insert(0, e);
                            Some(v)
                        }
                        Some(i) => {
                            let _removed = model.remove(i);
                            None
                        }
                        None => None,
                    };
                    prop_assert_eq!(got, expect, "step {} get {}", step, key);
                }
                Op::Advance(ms) => now += ms,
            }
            cache.check_invariants();
            let names: Vec<String> = model.iter().map(|e| e.0.clone()).collect();
            prop_assert_eq!(cache.names_by_recency(), names, "step {}", step);
        }
    }
}
