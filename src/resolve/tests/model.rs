//! Property test: random sequences of lookups, cancels, replies of every
//! kind (forgeries included), socket errors and clock steps, checked after
//! every step against what the driver and the callers can observe:
//!
//! - every transmit names a new query; every close names an open one, and
//!   each is closed once; all are closed at the end;
//! - at most two tries are open per name being resolved;
//! - an answer goes only to a lookup that is pending (not cancelled, not
//!   answered), and a success has an address; a partial answer (RFC 8305's
//!   early one) comes at most once per lookup, leaves it pending, and is
//!   followed by a success;
//! - once the clock has run past every deadline, every lookup not
//!   cancelled has had its answer, and no timer is left.
//!
//! Besides, `check_invariants` recounts the resolver's own bookkeeping.

use std::collections::HashSet;

use proptest::prelude::*;
use simple_dns::RCODE;

use super::super::*;
use super::{Harness, Resp, V4, V6};

const NAMES: [&str; 4] = ["www", "api.example", "WWW", "db"];

#[derive(Clone, Debug)]
enum Kind {
    Addresses { ttl: u32 },
    NoData,
    NxDomain,
    ServFail,
    Truncated,
    WrongId,
    Garbage,
}

#[derive(Clone, Debug)]
enum Op {
    Lookup(usize),
    Cancel(usize),
    Reply { pick: usize, kind: Kind },
    IoError(usize),
    Advance(Millis),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => (0..5u32).prop_map(|ttl| Kind::Addresses { ttl }),
        1 => Just(Kind::NoData),
        2 => Just(Kind::NxDomain),
        1 => Just(Kind::ServFail),
        1 => Just(Kind::Truncated),
        1 => Just(Kind::WrongId),
        1 => Just(Kind::Garbage),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NAMES.len()).prop_map(Op::Lookup),
        1 => any::<usize>().prop_map(Op::Cancel),
        5 => (any::<usize>(), kind()).prop_map(|(pick, kind)| Op::Reply { pick, kind }),
        1 => any::<usize>().prop_map(Op::IoError),
        2 => (0..1_500u64).prop_map(Op::Advance),
    ]
}

/// What the driver and the callers have seen.
#[derive(Default)]
struct Seen {
    open: Vec<Transmit>,
    ever_sent: HashSet<QueryId>,
    ids: Vec<LookupId>,
    pending: HashSet<LookupId>,
    /// Lookups that had a partial answer.
    partial: HashSet<LookupId>,
}

impl Seen {
    fn drain(&mut self, h: &mut Harness) -> Result<(), TestCaseError> {
        while let Some(t) = h.r.poll_transmit() {
            prop_assert!(
                self.ever_sent.insert(t.query),
                "query {:?} sent twice",
                t.query
            );
            self.open.push(t);
        }
        while let Some(q) = h.r.poll_close() {
            let Some(i) = self.open.iter().position(|t| t.query == q) else {
                return Err(TestCaseError::fail(format!("close of {q:?}, not open")));
            };
            self.open.swap_remove(i);
        }
        while let Some(a) = h.r.poll_answer() {
            if a.partial {
                // The lookup stays pending: its full answer follows.
                prop_assert!(
                    self.pending.contains(&a.lookup),
                    "partial answer for {:?}, not pending",
                    a.lookup
                );
                prop_assert!(
                    self.partial.insert(a.lookup),
                    "a second partial answer for {:?}",
                    a.lookup
                );
                prop_assert!(a.result.is_ok(), "a partial answer is addresses");
            } else {
                prop_assert!(
                    self.pending.remove(&a.lookup),
                    "answer for {:?}, not pending",
                    a.lookup
                );
                if self.partial.contains(&a.lookup) {
                    prop_assert!(a.result.is_ok(), "a full answer after a partial one failed");
                }
            }
            if let Ok(addrs) = a.result {
                prop_assert!(!addrs.is_empty(), "success without an address");
            }
        }
        // Lowercased names in flight bound the tries open.
        let names: HashSet<String> = NAMES.iter().map(|n| n.to_ascii_lowercase()).collect();
        prop_assert!(
            self.open.len() <= 2 * names.len(),
            "{} tries open",
            self.open.len()
        );
        h.check();
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn resolver_against_its_observable_contract(ops in prop::collection::vec(op(), 1..120)) {
        let mut config = ResolverConfig::from_text(
            "nameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch s.example\noptions timeout:1 attempts:2",
            "",
            9,
        );
        config.cache_capacity = 2;
        let mut h = Harness::with(config);
        let mut seen = Seen::default();
        for op in ops {
            match op {
                Op::Lookup(n) => {
                    let id = h.r.lookup(NAMES[n], h.now).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    seen.ids.push(id);
                    seen.pending.insert(id);
                }
                Op::Cancel(pick) => {
                    if !seen.ids.is_empty() {
                        let id = seen.ids[pick % seen.ids.len()];
                        let was = seen.pending.remove(&id);
                        prop_assert_eq!(h.r.cancel(id), was, "cancel of {:?}", id);
                    }
                }
                Op::Reply { pick, kind } => {
                    if !seen.open.is_empty() {
                        let t = seen.open[pick % seen.open.len()].clone();
                        let bytes = match kind {
                            Kind::Addresses { ttl } => Resp::ips(&[V6, V4], ttl).to(&t),
                            Kind::NoData => Resp::rcode(RCODE::NoError, Some((3, 3))).to(&t),
                            Kind::NxDomain => Resp::rcode(RCODE::NameError, Some((2, 2))).to(&t),
                            Kind::ServFail => Resp::rcode(RCODE::ServerFailure, None).to(&t),
                            Kind::Truncated => Resp { truncated: true, ..Resp::default() }.to(&t),
                            Kind::WrongId => Resp { id_xor: 0x55, ..Resp::ips(&[V4], 9) }.to(&t),
                            Kind::Garbage => vec![0xde, 0xad, 0xbe, 0xef],
                        };
                        match t.proto {
                            Proto::Udp => h.r.handle_udp(t.query, t.server, &bytes, h.now),
                            Proto::Tcp => h.r.handle_tcp(t.query, &bytes, h.now),
                        }
                    }
                }
                Op::IoError(pick) => {
                    if !seen.open.is_empty() {
                        let q = seen.open[pick % seen.open.len()].query;
                        h.r.handle_io_error(q, None, h.now);
                    }
                }
                Op::Advance(ms) => {
                    h.now += ms;
                    h.r.handle_timeout(h.now);
                }
            }
            seen.drain(&mut h)?;
        }
        // Silence from here on: every try times out, every lookup ends.
        for _ in 0..1_000 {
            if seen.open.is_empty() {
                break;
            }
            h.now += 500;
            h.r.handle_timeout(h.now);
            seen.drain(&mut h)?;
        }
        prop_assert!(seen.open.is_empty(), "tries still open: {:?}", seen.open);
        prop_assert!(seen.pending.is_empty(), "lookups never answered: {:?}", seen.pending);
        prop_assert_eq!(h.r.poll_timeout(), None);
    }
}
