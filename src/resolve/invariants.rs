//! `check_invariants`: the resolver's bookkeeping recounted from scratch,
//! called by the tests after every step.

use std::collections::HashMap;

use super::message::Family;
use super::name::hash_name;
use super::{FamilyResult, FamilyState, Resolver};

impl Resolver {
    /// Recounts everything and compares:
    ///
    /// - every resolution is in the in-flight table under its name, and
    ///   has at least one family asking (else it would have finished);
    /// - every asking family names an open try of its resolution and
    ///   family, with a timer; there are no other tries; the other timers
    ///   on the wheel are resolution delays, each of a resolution whose A
    ///   is in and AAAA asked, with no early answer out yet;
    /// - each resolution's `live` is the number of interests waiting for
    ///   it, and its list holds each of them;
    /// - every interest no longer waiting has exactly one full answer
    ///   queued, and no interest more than one partial answer.
    pub(crate) fn check_invariants(&self) {
        self.cache.check_invariants();
        assert_eq!(
            self.in_flight.len(),
            self.resolutions.len(),
            "in-flight table size"
        );
        let mut open = 0;
        for (r, res) in &self.resolutions {
            let hash = hash_name(&self.hasher, &res.name);
            assert!(
                self.in_flight.find(hash, |&i| i as usize == r).is_some(),
                "resolution {r} ({}) not in the in-flight table",
                res.name
            );
            let mut asking = 0;
            for family in Family::BOTH {
                if let FamilyState::Asking { query, .. } = res.families[family.index()] {
                    asking += 1;
                    let q = self.queries.get(query as usize).unwrap_or_else(|| {
                        panic!("resolution {r} {family:?}: try {query} not open")
                    });
                    assert_eq!(q.resolution as usize, r, "try {query} resolution");
                    assert_eq!(q.family, family, "try {query} family");
                    assert!(q.timer.is_some(), "try {query} has no timer");
                }
            }
            assert!(asking > 0, "resolution {r} ({}) has no try open", res.name);
            // A resolution delay runs only while A is in and AAAA asked,
            // and only until the early answer is out.
            if res.delay.is_some() {
                assert!(
                    res.early.is_none(),
                    "resolution {r}: delay after the early answer"
                );
                assert!(
                    matches!(
                        res.families,
                        [
                            FamilyState::Asking { .. },
                            FamilyState::Done(FamilyResult::Found { .. })
                        ]
                    ),
                    "resolution {r}: delay with families {:?}",
                    res.families
                );
            }
            open += asking;
            let live = self
                .interests
                .iter()
                .filter(|(_, i)| i.resolution.is_some_and(|x| x as usize == r))
                .count();
            assert_eq!(res.live, live, "resolution {r} live interests");
            for (index, i) in &self.interests {
                if i.resolution.is_some_and(|x| x as usize == r) {
                    assert!(
                        res.interests
                            .iter()
                            .any(|id| id.index as usize == index && id.generation == i.generation),
                        "interest {index} missing from resolution {r}"
                    );
                }
            }
        }
        assert_eq!(open, self.queries.len(), "tries open");
        let delays = self
            .resolutions
            .iter()
            .filter(|(_, res)| res.delay.is_some())
            .count();
        assert_eq!(self.wheel.len(), self.queries.len() + delays, "timers");
        let mut queued: HashMap<(u32, u32), usize> = HashMap::new();
        let mut partial: HashMap<(u32, u32), usize> = HashMap::new();
        for a in &self.answers {
            if a.partial {
                *partial
                    .entry((a.lookup.index, a.lookup.generation))
                    .or_default() += 1;
                continue;
            }
            *queued
                .entry((a.lookup.index, a.lookup.generation))
                .or_default() += 1;
        }
        for (index, i) in &self.interests {
            match i.resolution {
                Some(r) => assert!(
                    self.resolutions.contains(r as usize),
                    "interest {index} waits for a gone resolution {r}"
                ),
                None => assert_eq!(
                    queued
                        .get(&(u32::try_from(index).unwrap_or(u32::MAX), i.generation))
                        .copied(),
                    Some(1),
                    "interest {index} decided but not queued exactly once"
                ),
            }
            let key = (u32::try_from(index).unwrap_or(u32::MAX), i.generation);
            assert!(
                partial.get(&key).copied().unwrap_or(0) <= 1,
                "interest {index} has more than one partial answer queued"
            );
        }
    }
}
