//! Timer wheel tests: every level boundary on both sides of its deadline,
//! and a property test against a `BTreeMap`.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test code: indices of small test pools"
)]

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::level::slot_range;
use super::*;

/// Drains everything due at `now`, checking invariants.
fn drain(w: &mut Wheel<u64>, now: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    while let Some(fired) = w.poll(now) {
        out.push(fired);
        w.check_invariants();
    }
    w.check_invariants();
    out
}

/// Deadlines around every level boundary, and beyond the top level.
fn boundaries() -> Vec<u64> {
    let mut v = vec![1, 2, 63, 64, 65, 127, 128];
    for k in 1..=7u32 {
        let b = 64u64.pow(k);
        v.extend([b - 1, b, b + 1, 2 * b - 1, 2 * b + 3]);
    }
    v.push(MAX_SPAN * 3 + 12345);
    v
}

#[test]
fn each_boundary_fires_exactly_at_its_deadline() {
    for start in [0u64, 1, 63, 64, 4095, 4096, 1_000_003, 64u64.pow(5) - 1] {
        for delta in boundaries() {
            let mut w = Wheel::new();
            assert!(drain(&mut w, start).is_empty());
            let deadline = start + delta;
            w.insert(deadline, deadline);
            w.check_invariants();
            // Walk towards the deadline in a few uneven steps, as a reactor
            // waking at `next_deadline` would.
            let mut now = start;
            while now < deadline - 1 {
                let next = w.next_deadline().expect("timer pending");
                assert!(next > now, "next_deadline {next} not after {now}");
                assert!(
                    next <= deadline,
                    "next_deadline {next} after the deadline {deadline}"
                );
                now = next.min(deadline - 1);
                assert!(
                    drain(&mut w, now).is_empty(),
                    "fired early at {now} (deadline {deadline}, start {start})"
                );
            }
            assert!(
                drain(&mut w, deadline - 1).is_empty(),
                "fired 1 ms early (deadline {deadline}, start {start})"
            );
            assert_eq!(
                drain(&mut w, deadline),
                vec![(deadline, deadline)],
                "start {start} delta {delta}"
            );
            assert!(w.is_empty());
            assert_eq!(w.next_deadline(), None);
        }
    }
}

#[test]
fn jumping_far_past_many_deadlines_fires_them_all() {
    let mut w = Wheel::new();
    let deadlines: Vec<u64> = boundaries();
    for &d in &deadlines {
        w.insert(d, d);
    }
    let mut fired: Vec<u64> = drain(&mut w, u64::MAX / 2)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    fired.sort();
    let mut want = deadlines.clone();
    want.sort();
    assert_eq!(fired, want);
}

#[test]
fn cancel_before_fire_and_after_cascading() {
    let mut w = Wheel::new();
    let a = w.insert(10, 1);
    let b = w.insert(5_000, 2);
    let c = w.insert(300_000, 3);
    assert_eq!(w.cancel(a), Some(1));
    w.check_invariants();
    assert!(drain(&mut w, 4_999).is_empty());
    // `c` has cascaded at least once by now.
    assert!(
        drain(&mut w, 299_000)
            .iter()
            .any(|&(d, v)| (d, v) == (5_000, 2))
    );
    let _ = b;
    assert_eq!(w.cancel(c), Some(3));
    w.check_invariants();
    assert!(w.is_empty());
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn past_and_present_deadlines_fire_on_next_poll() {
    let mut w = Wheel::new();
    drain(&mut w, 1_000);
    w.insert(1_000, 1);
    w.insert(3, 2);
    assert_eq!(w.next_deadline(), Some(1_000));
    let mut fired = drain(&mut w, 1_000);
    fired.sort();
    assert_eq!(fired, vec![(3, 2), (1_000, 1)]);
}

#[test]
fn time_never_goes_backwards() {
    let mut w = Wheel::new();
    drain(&mut w, 500);
    w.insert(600, 1);
    assert!(
        drain(&mut w, 100).is_empty(),
        "an earlier now is the current time"
    );
    assert_eq!(drain(&mut w, 600), vec![(600, 1)]);
}

#[test]
fn many_timers_with_one_deadline_all_fire() {
    let mut w = Wheel::new();
    for v in 0..1_000 {
        w.insert(77_777, v);
    }
    assert!(drain(&mut w, 77_776).is_empty());
    let mut fired: Vec<u64> = drain(&mut w, 77_777).into_iter().map(|(_, v)| v).collect();
    fired.sort();
    assert_eq!(fired, (0..1_000).collect::<Vec<_>>());
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u64),
    Cancel(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![0u64..100, 0u64..10_000, 0u64..5_000_000, 0u64..(1 << 40)].prop_map(Op::Insert),
        2 => any::<usize>().prop_map(Op::Cancel),
        3 => prop_oneof![0u64..70, 0u64..5_000, 0u64..1_000_000, 0u64..(1 << 38)].prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn wheel_matches_btreemap(ops in prop::collection::vec(op(), 1..300)) {
        let mut w = Wheel::new();
        let mut model: BTreeMap<(u64, u64), ()> = BTreeMap::new();
        let mut keys: HashMap<u64, (TimerKey, u64)> = HashMap::new();
        let mut now = 0u64;
        let mut seq = 0u64;
        for op in ops {
            match op {
                Op::Insert(delta) => {
                    let deadline = now + delta;
                    let key = w.insert(deadline, seq);
                    model.insert((deadline, seq), ());
                    keys.insert(seq, (key, deadline));
                    seq += 1;
                }
                Op::Cancel(pick) => {
                    if keys.is_empty() {
                        continue;
                    }
                    let mut live: Vec<u64> = keys.keys().copied().collect();
                    live.sort();
                    let v = live[pick % live.len()];
                    let (key, deadline) = keys.remove(&v).unwrap();
                    prop_assert_eq!(w.cancel(key), Some(v));
                    model.remove(&(deadline, v));
                }
                Op::Advance(delta) => {
                    now += delta;
                    let mut fired = drain(&mut w, now);
                    fired.sort();
                    let due: Vec<(u64, u64)> = model.range(..(now + 1, 0)).map(|(&k, _)| k).collect();
                    for k in &due {
                        model.remove(k);
                        keys.remove(&k.1);
                    }
                    prop_assert_eq!(fired, due);
                    if let (Some(next), Some((&(first, _), _))) = (w.next_deadline(), model.iter().next()) {
                        prop_assert!(next > now && next <= first, "next {} now {} first {}", next, now, first);
                    }
                }
            }
            w.check_invariants();
            prop_assert_eq!(w.len(), model.len());
        }
    }
}

#[test]
fn top_level_deadline_in_the_current_slot_does_not_hide_earlier_ones() {
    // Found by the property test: a deadline almost a level away lands in
    // the slot `now` is in, and must not be taken for the nearest.
    let mut w = Wheel::new();
    let top = slot_range(LEVELS as u32 - 1);
    drain(&mut w, 237 * top + 1000);
    w.insert(243 * top + 5, 1); // six slots ahead
    w.insert(301 * top + 7, 2); // the current slot index, next block
    assert_eq!(w.next_deadline(), Some(243 * top));
    assert_eq!(drain(&mut w, 243 * top + 5), vec![(243 * top + 5, 1)]);
    assert_eq!(drain(&mut w, 301 * top + 7), vec![(301 * top + 7, 2)]);
}

#[test]
fn an_entry_is_24_bytes_with_the_pools_values() {
    // The module docs promise these figures; keep them honest. `Owner` has
    // the shape of the pool's `TimerOwner` (the pool's tests hold that its
    // `Option` is 8 bytes too).
    #[allow(dead_code, reason = "only its size matters")]
    enum Owner {
        Request(u32),
        Slot(u32),
        Caller(u32),
    }
    assert_eq!(std::mem::size_of::<Entry<Owner>>(), 24);
    assert_eq!(std::mem::size_of::<Entry<u32>>(), 24);
    assert_eq!(std::mem::size_of::<Entry<u64>>(), 32);
}
