//! RFC 8305 §3's resolution delay on the fake clock: an A answer waits
//! `resolution_delay` for AAAA (nothing at `delay - 1`, the partial answer
//! at `delay`), an AAAA answer is given out at once, and a family that
//! fails is never waited for.

use super::{Harness, Resp, V4, V6, addresses, qtype};
use crate::resolve::{Answer, LookupId, ResolverConfig, Transmit};
use simple_dns::{RCODE, TYPE};

const DELAY: u64 = 50;

/// A resolver with one server, one attempt and a 5 s try timeout; the
/// lookup's query pair, AAAA first.
fn start(delay: u64) -> (Harness, LookupId, Transmit, Transmit) {
    let mut config = ResolverConfig::from_text("nameserver 10.0.0.1\noptions attempts:1", "", 7);
    config.resolution_delay = delay;
    let mut h = Harness::with(config);
    let id = h.lookup("example.com");
    let t = h.transmits();
    assert_eq!(t.len(), 2);
    assert_eq!(qtype(&t[0]), TYPE::AAAA);
    assert_eq!(qtype(&t[1]), TYPE::A);
    (h, id, t[0].clone(), t[1].clone())
}

fn partial(lookup: LookupId, ips: &[std::net::IpAddr]) -> Answer {
    Answer {
        lookup,
        result: Ok(addresses(ips)),
        partial: true,
        expires: 0,
    }
}

fn full(lookup: LookupId, ips: &[std::net::IpAddr]) -> Answer {
    Answer {
        lookup,
        result: Ok(addresses(ips)),
        partial: false,
        expires: 0,
    }
}

/// Every answer drained now, with its expiry left out (the cache tests
/// check it): these tests are about when answers come.
fn seen(h: &mut Harness) -> Vec<Answer> {
    h.every_answer()
        .into_iter()
        .map(|a| Answer { expires: 0, ..a })
        .collect()
}

#[test]
fn an_a_answer_waits_the_delay_for_aaaa_then_goes_out_alone() {
    let (mut h, id, aaaa, a) = start(DELAY);
    h.at(100);
    h.udp(&a, &Resp::ips(&[V4], 60).to(&a));
    assert_eq!(seen(&mut h), vec![]);
    h.next_timeout_by(100 + DELAY);
    h.at(100 + DELAY - 1);
    assert_eq!(seen(&mut h), vec![], "not before the delay");
    h.at(100 + DELAY);
    assert_eq!(seen(&mut h), vec![partial(id, &[V4])]);
    // AAAA comes later: the full answer, both families, which is cached.
    h.at(300);
    h.udp(&aaaa, &Resp::ips(&[V6], 60).to(&aaaa));
    assert_eq!(seen(&mut h), vec![full(id, &[V6, V4])]);
    assert_eq!(h.cached("example.com"), Ok(addresses(&[V6, V4])));
    assert_eq!(h.r.poll_timeout(), None);
}

#[test]
fn aaaa_within_the_delay_makes_one_full_answer() {
    let (mut h, id, aaaa, a) = start(DELAY);
    h.udp(&a, &Resp::ips(&[V4], 60).to(&a));
    h.at(DELAY - 1);
    h.udp(&aaaa, &Resp::ips(&[V6], 60).to(&aaaa));
    assert_eq!(seen(&mut h), vec![full(id, &[V6, V4])]);
    assert_eq!(h.r.poll_timeout(), None, "the delay's timer is cancelled");
    h.at(DELAY);
    assert_eq!(seen(&mut h), vec![]);
}

#[test]
fn an_aaaa_answer_goes_out_at_once() {
    let (mut h, id, aaaa, a) = start(DELAY);
    h.udp(&aaaa, &Resp::ips(&[V6], 60).to(&aaaa));
    assert_eq!(seen(&mut h), vec![partial(id, &[V6])]);
    h.at(10);
    h.udp(&a, &Resp::ips(&[V4], 60).to(&a));
    assert_eq!(seen(&mut h), vec![full(id, &[V6, V4])]);
}

#[test]
fn a_failed_family_is_not_waited_for() {
    // AAAA refused (SERVFAIL, no try left), then A: answered at once.
    let (mut h, id, aaaa, a) = start(DELAY);
    h.udp(&aaaa, &Resp::rcode(RCODE::ServerFailure, None).to(&aaaa));
    assert_eq!(seen(&mut h), vec![]);
    h.udp(&a, &Resp::ips(&[V4], 60).to(&a));
    assert_eq!(seen(&mut h), vec![full(id, &[V4])]);
    // A first, then AAAA failing: the full answer comes with the failure,
    // before the delay.
    let (mut h, id, aaaa, a) = start(DELAY);
    h.udp(&a, &Resp::ips(&[V4], 60).to(&a));
    h.at(DELAY - 1);
    h.udp(&aaaa, &Resp::rcode(RCODE::ServerFailure, None).to(&aaaa));
    assert_eq!(seen(&mut h), vec![full(id, &[V4])]);
}

#[test]
fn silent_aaaa_costs_the_delay_not_the_timeout() {
    let (mut h, id, _aaaa, a) = start(DELAY);
    h.udp(&a, &Resp::ips(&[V4], 60).to(&a));
    h.at(DELAY);
    assert_eq!(seen(&mut h), vec![partial(id, &[V4])]);
    // The AAAA try times out at 5 s: the full answer is A alone.
    h.at(5_000 - 1);
    assert_eq!(seen(&mut h), vec![]);
    h.at(5_000);
    assert_eq!(seen(&mut h), vec![full(id, &[V4])]);
}

#[test]
fn a_lookup_joining_after_the_early_answer_gets_it_at_once() {
    let (mut h, first, aaaa, a) = start(DELAY);
    h.udp(&a, &Resp::ips(&[V4], 60).to(&a));
    h.at(DELAY);
    assert_eq!(seen(&mut h), vec![partial(first, &[V4])]);
    let second = h.lookup("EXAMPLE.com");
    assert_eq!(h.transmits(), vec![], "joined the resolution");
    assert_eq!(seen(&mut h), vec![partial(second, &[V4])]);
    h.udp(&aaaa, &Resp::ips(&[V6], 60).to(&aaaa));
    assert_eq!(
        seen(&mut h),
        vec![full(first, &[V6, V4]), full(second, &[V6, V4])]
    );
}

#[test]
fn a_cancelled_lookup_hears_nothing_more() {
    let (mut h, id, aaaa, a) = start(DELAY);
    h.udp(&a, &Resp::ips(&[V4], 60).to(&a));
    h.at(DELAY);
    assert_eq!(seen(&mut h), vec![partial(id, &[V4])]);
    assert!(h.r.cancel(id), "still pending after a partial answer");
    h.udp(&aaaa, &Resp::ips(&[V6], 60).to(&aaaa));
    assert_eq!(seen(&mut h), vec![]);
    h.check();
}

#[test]
fn a_zero_delay_gives_an_a_answer_out_at_once() {
    let (mut h, id, _aaaa, a) = start(0);
    h.udp(&a, &Resp::ips(&[V4], 60).to(&a));
    assert_eq!(seen(&mut h), vec![partial(id, &[V4])]);
}
