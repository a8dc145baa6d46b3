//! Deterministic tests of the resolver on a fake millisecond clock, with
//! replies built by a test-side server. Every deadline is checked on both
//! sides: nothing at `deadline - 1`, the effect at `deadline`.

mod cache;
mod model;
mod parse;
mod resolution_delay;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use simple_dns::rdata::{A, AAAA, CNAME, RData, SOA};
use simple_dns::{
    CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, ResourceRecord, TYPE,
};

use super::*;

fn ns(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), 53)
}

const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const V4B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

/// The resolver, its clock, and the driver's side of the contract.
struct Harness {
    r: Resolver,
    now: Millis,
    /// Every query id transmitted, and every one closed, ever.
    sent: Vec<QueryId>,
    closed: Vec<QueryId>,
}

impl Harness {
    fn new(resolv_conf: &str) -> Harness {
        Harness::with(ResolverConfig::from_text(resolv_conf, "", 42))
    }

    fn with(config: ResolverConfig) -> Harness {
        Harness {
            r: Resolver::new(config),
            now: 0,
            sent: Vec::new(),
            closed: Vec::new(),
        }
    }

    fn check(&self) {
        self.r.check_invariants();
    }

    fn lookup(&mut self, name: &str) -> LookupId {
        let id = self.r.lookup(name, self.now).unwrap();
        self.check();
        id
    }

    fn transmits(&mut self) -> Vec<Transmit> {
        let t: Vec<Transmit> = std::iter::from_fn(|| self.r.poll_transmit()).collect();
        self.sent.extend(t.iter().map(|t| t.query));
        t
    }

    fn closes(&mut self) -> Vec<QueryId> {
        let c: Vec<QueryId> = std::iter::from_fn(|| self.r.poll_close()).collect();
        for q in &c {
            assert!(self.sent.contains(q), "close of {q:?}, never sent");
            assert!(!self.closed.contains(q), "{q:?} closed twice");
        }
        self.closed.extend(c.iter().copied());
        c
    }

    /// The full answers drained now; partial ones (RFC 8305's early
    /// answers, tested with `every_answer`) are drained and left out.
    fn answers(&mut self) -> Vec<Answer> {
        self.every_answer()
            .into_iter()
            .filter(|a| !a.partial)
            .collect()
    }

    /// Every answer drained now, partial ones included.
    fn every_answer(&mut self) -> Vec<Answer> {
        std::iter::from_fn(|| self.r.poll_answer()).collect()
    }

    /// The one answer expected now.
    fn answer(&mut self) -> Answer {
        match self.answers().as_slice() {
            [a] => *a,
            other => panic!("expected one answer, got {other:?}"),
        }
    }

    /// `poll_timeout` is a lower bound of `deadline` (the wheel's slot
    /// start), after now: sleeping until it never oversleeps nor spins.
    #[track_caller]
    fn next_timeout_by(&self, deadline: Millis) {
        let t = self.r.poll_timeout();
        assert!(
            t.is_some_and(|t| t > self.now && t <= deadline),
            "poll_timeout {t:?}, now {}, deadline {deadline}",
            self.now
        );
    }

    /// Moves the clock to `t` and fires what is due.
    fn at(&mut self, t: Millis) {
        self.now = t;
        self.r.handle_timeout(t);
        self.check();
    }

    fn udp(&mut self, t: &Transmit, bytes: &[u8]) {
        self.udp_from(t, t.server, bytes);
    }

    fn udp_from(&mut self, t: &Transmit, from: SocketAddr, bytes: &[u8]) {
        self.r.handle_udp(t.query, from, bytes, self.now);
        self.check();
    }

    fn tcp(&mut self, t: &Transmit, bytes: &[u8]) {
        self.r.handle_tcp(t.query, bytes, self.now);
        self.check();
    }

    /// Replies to each transmit with `reply`.
    fn reply_all(&mut self, transmits: &[Transmit], reply: &Resp) {
        for t in transmits {
            let bytes = reply.to(t);
            self.udp(t, &bytes);
        }
    }

    /// Looks `name` up and answers both queries with `reply`; returns the
    /// answer.
    fn resolve(&mut self, name: &str, reply: &Resp) -> Result<Addresses, ResolveError> {
        self.lookup(name);
        let t = self.transmits();
        assert_eq!(t.len(), 2, "{name}: expected a query pair, got {t:?}");
        self.reply_all(&t, reply);
        self.answer().result
    }

    /// Looks `name` up and expects it answered at once, with no query.
    fn cached(&mut self, name: &str) -> Result<Addresses, ResolveError> {
        self.lookup(name);
        assert_eq!(self.transmits(), vec![], "{name}: expected no query");
        self.answer().result
    }
}

/// What the question of a transmit asks.
fn question(t: &Transmit) -> (u16, String, TYPE) {
    let p = Packet::parse(&t.payload).unwrap();
    assert_eq!(p.questions.len(), 1);
    let q = &p.questions[0];
    let QTYPE::TYPE(ty) = q.qtype else {
        panic!("qtype {:?}", q.qtype)
    };
    assert!(p.has_flags(PacketFlag::RECURSION_DESIRED));
    (p.id(), q.qname.to_string(), ty)
}

fn qname(t: &Transmit) -> String {
    question(t).1
}

fn qtype(t: &Transmit) -> TYPE {
    question(t).2
}

/// A reply, built for the question of a transmit.
#[derive(Clone, Default)]
struct Resp {
    rcode: Option<RCODE>,
    truncated: bool,
    /// Records of the asked family are included; the others dropped.
    ips: Vec<IpAddr>,
    ttl: u32,
    /// A CNAME from the asked name to this target (with its TTL); the
    /// addresses are then the target's.
    cname: Option<(&'static str, u32)>,
    /// Owner of the address records, instead of the asked name.
    owner: Option<&'static str>,
    /// An SOA in the authority section: (its TTL, its MINIMUM).
    soa: Option<(u32, u32)>,
    /// Forgeries.
    id_xor: u16,
    qname: Option<&'static str>,
    qtype: Option<TYPE>,
    qclass: Option<CLASS>,
    not_response: bool,
}

impl Resp {
    fn ips(ips: &[IpAddr], ttl: u32) -> Resp {
        Resp {
            ips: ips.to_vec(),
            ttl,
            ..Resp::default()
        }
    }

    fn rcode(rcode: RCODE, soa: Option<(u32, u32)>) -> Resp {
        Resp {
            rcode: Some(rcode),
            soa,
            ..Resp::default()
        }
    }

    fn to(&self, t: &Transmit) -> Vec<u8> {
        let (id, name, ty) = question(t);
        let qname = self.qname.map_or(name.clone(), str::to_owned);
        let owner = match (self.owner, self.cname) {
            (Some(o), _) | (None, Some((o, _))) => o.to_owned(),
            (None, None) => name.clone(),
        };
        let mut p = Packet::new_reply(id ^ self.id_xor);
        if self.not_response {
            p.remove_flags(PacketFlag::RESPONSE);
        }
        if self.truncated {
            p.set_flags(PacketFlag::TRUNCATION);
        }
        *p.rcode_mut() = self.rcode.unwrap_or(RCODE::NoError);
        p.questions.push(Question::new(
            Name::new_unchecked(&qname),
            QTYPE::TYPE(self.qtype.unwrap_or(ty)),
            QCLASS::CLASS(self.qclass.unwrap_or(CLASS::IN)),
            false,
        ));
        if let Some((target, ttl)) = self.cname {
            p.answers.push(ResourceRecord::new(
                Name::new_unchecked(&name),
                CLASS::IN,
                ttl,
                RData::CNAME(CNAME(Name::new_unchecked(target))),
            ));
        }
        for ip in &self.ips {
            let rdata = match (ip, ty) {
                (IpAddr::V4(a), TYPE::A) => RData::A(A::from(*a)),
                (IpAddr::V6(a), TYPE::AAAA) => RData::AAAA(AAAA::from(*a)),
                _ => continue,
            };
            p.answers.push(ResourceRecord::new(
                Name::new_unchecked(&owner),
                CLASS::IN,
                self.ttl,
                rdata,
            ));
        }
        if let Some((ttl, minimum)) = self.soa {
            p.name_servers.push(ResourceRecord::new(
                Name::new_unchecked("example"),
                CLASS::IN,
                ttl,
                RData::SOA(SOA {
                    mname: Name::new_unchecked("ns.example"),
                    rname: Name::new_unchecked("hostmaster.example"),
                    serial: 1,
                    refresh: 3600,
                    retry: 600,
                    expire: 86_400,
                    minimum,
                }),
            ));
        }
        p.build_bytes_vec().unwrap()
    }
}

fn addresses(ips: &[IpAddr]) -> Addresses {
    let mut a = Addresses::EMPTY;
    for &ip in ips {
        a.push(ip);
    }
    a
}

// ----- queries ---------------------------------------------------------

#[test]
fn a_rotated_answer_is_the_same_set_a_changed_one_is_not() {
    let ip = |last: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let answer = addresses(&[ip(1), ip(2), v6]);
    assert!(answer.same_set(&addresses(&[ip(2), v6, ip(1)])));
    assert!(!answer.same_set(&addresses(&[ip(1), ip(3), v6])));
    assert!(!answer.same_set(&addresses(&[ip(1), ip(2)])));
    assert!(!addresses(&[ip(1), ip(2)]).same_set(&answer));
}

#[test]
fn aaaa_and_a_are_sent_in_parallel_aaaa_first() {
    let mut h = Harness::new("nameserver 10.0.0.1");
    let id = h.lookup("example.com");
    let t = h.transmits();
    assert_eq!(t.len(), 2);
    assert_eq!(qtype(&t[0]), TYPE::AAAA);
    assert_eq!(qtype(&t[1]), TYPE::A);
    for x in &t {
        assert_eq!(qname(x), "example.com");
        assert_eq!(x.server, ns(1));
        assert_eq!(x.proto, Proto::Udp);
    }
    assert_ne!(t[0].query, t[1].query, "one socket per query");
    assert_ne!(question(&t[0]).0, question(&t[1]).0, "ids differ");
    h.next_timeout_by(5_000);

    // One family alone decides nothing.
    h.udp(&t[1], &Resp::ips(&[V4], 60).to(&t[1]));
    assert_eq!(h.answers(), vec![]);
    assert_eq!(h.closes(), vec![t[1].query]);
    h.udp(&t[0], &Resp::ips(&[V6], 60).to(&t[0]));
    let a = h.answer();
    assert_eq!(a.lookup, id);
    let addrs = a.result.unwrap();
    assert_eq!(
        addrs.v6(),
        &[Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)]
    );
    assert_eq!(addrs.v4(), &[Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(h.closes(), vec![t[0].query]);
    assert_eq!(h.r.poll_timeout(), None);
}

#[test]
fn a_family_without_records_still_answers_with_the_other() {
    let mut h = Harness::new("");
    let got = h
        .resolve("v4only.example", &Resp::ips(&[V4, V4B], 60))
        .unwrap();
    assert!(got.v6().is_empty());
    assert_eq!(got.v4().len(), 2);
}

#[test]
fn default_server_is_local() {
    let mut h = Harness::new("# nothing\n");
    h.lookup("example.com");
    let t = h.transmits();
    assert!(
        t.iter()
            .all(|t| t.server == "127.0.0.1:53".parse().unwrap())
    );
}

#[test]
fn replies_for_another_id_question_or_server_are_ignored() {
    let mut h = Harness::new("nameserver 10.0.0.1\nnameserver 10.0.0.2");
    h.lookup("example.com");
    let t = h.transmits();
    let aaaa = &t[0];
    let good = Resp::ips(&[V6], 60);
    let forgeries = [
        Resp {
            id_xor: 1,
            ..good.clone()
        },
        Resp {
            qname: Some("other.example"),
            ..good.clone()
        },
        Resp {
            qname: Some("example.com.evil"),
            ..good.clone()
        },
        Resp {
            qtype: Some(TYPE::A),
            ..good.clone()
        },
        Resp {
            qclass: Some(CLASS::CH),
            ..good.clone()
        },
        Resp {
            not_response: true,
            ..good.clone()
        },
    ];
    for f in &forgeries {
        h.udp(aaaa, &f.to(aaaa));
    }
    // Right bytes, wrong source: another server, another port.
    h.udp_from(aaaa, ns(2), &good.to(aaaa));
    h.udp_from(aaaa, SocketAddr::new(ns(1).ip(), 5353), &good.to(aaaa));
    // Unreadable bytes.
    h.udp(aaaa, b"\x12\x34garbage");
    h.udp(aaaa, &[]);
    // The reply to the A query, delivered on the AAAA query's socket.
    h.udp(aaaa, &good.to(&t[1]));
    assert_eq!(h.answers(), vec![]);
    assert_eq!(h.closes(), vec![], "the try keeps waiting");
    assert_eq!(h.transmits(), vec![], "nothing retried early");

    // A case-changed question still matches (names are case-insensitive).
    h.udp(
        aaaa,
        &Resp {
            qname: Some("EXAMPLE.com"),
            ..good.clone()
        }
        .to(aaaa),
    );
    assert_eq!(h.closes(), vec![aaaa.query]);
    // A datagram for a closed query is ignored.
    h.udp(aaaa, &good.to(aaaa));
    h.udp(&t[1], &Resp::ips(&[V4], 60).to(&t[1]));
    assert_eq!(h.answer().result.unwrap().v6().len(), 1);
}

#[test]
fn ipv4_mapped_source_matches_the_server() {
    let mut h = Harness::new("nameserver 10.0.0.1");
    h.lookup("example.com");
    let t = h.transmits();
    let mapped = SocketAddr::new(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()), 53);
    for x in &t {
        h.udp_from(x, mapped, &Resp::ips(&[V4, V6], 60).to(x));
    }
    assert!(h.answer().result.is_ok());
}

#[test]
fn truncated_reply_is_asked_again_over_tcp_to_the_same_server() {
    let mut h = Harness::new("nameserver 10.0.0.1\nnameserver 10.0.0.2");
    h.lookup("big.example");
    let t = h.transmits();
    let a = &t[1];
    h.at(1_000);
    h.udp(
        a,
        &Resp {
            truncated: true,
            ..Resp::default()
        }
        .to(a),
    );
    assert_eq!(h.closes(), vec![a.query]);
    let tcp = h.transmits();
    assert_eq!(tcp.len(), 1);
    let tcp = &tcp[0];
    assert_eq!(
        (tcp.proto, tcp.server, qtype(tcp)),
        (Proto::Tcp, ns(1), TYPE::A)
    );
    assert_ne!(tcp.query, a.query, "a new socket");
    assert_ne!(question(tcp).0, question(a).0, "a new id");
    // The TCP try has a full timeout of its own.
    h.next_timeout_by(5_000);

    // A datagram is not a TCP reply, nor the reverse.
    let full = Resp::ips(&[V4, V4B], 60);
    h.udp(tcp, &full.to(tcp));
    h.tcp(&t[0], &Resp::ips(&[V6], 60).to(&t[0]));
    assert_eq!(h.closes(), vec![]);

    h.tcp(tcp, &full.to(tcp));
    assert_eq!(h.closes(), vec![tcp.query]);
    h.udp(&t[0], &Resp::ips(&[V6], 60).to(&t[0]));
    let got = h.answer().result.unwrap();
    assert_eq!((got.v6().len(), got.v4().len()), (1, 2));
}

#[test]
fn a_truncated_reply_cut_mid_record_still_goes_to_tcp() {
    let mut h = Harness::new("");
    h.lookup("big.example");
    let t = h.transmits();
    let mut bytes = Resp {
        truncated: true,
        ..Resp::ips(&[V4, V4B], 60)
    }
    .to(&t[1]);
    bytes.truncate(bytes.len() - 3);
    h.udp(&t[1], &bytes);
    let tcp = h.transmits();
    assert_eq!(tcp.len(), 1);
    assert_eq!(tcp[0].proto, Proto::Tcp);
}

#[test]
fn after_truncation_later_tries_stay_on_tcp() {
    let mut h = Harness::new("nameserver 10.0.0.1\nnameserver 10.0.0.2\noptions timeout:1");
    h.lookup("big.example");
    let t = h.transmits();
    h.udp(
        &t[1],
        &Resp {
            truncated: true,
            ..Resp::default()
        }
        .to(&t[1]),
    );
    let tcp = h.transmits();
    h.at(999);
    assert_eq!(h.transmits(), vec![]);
    h.at(1_000);
    // Both families time out: AAAA retries over UDP, A over TCP.
    let mut next: Vec<(TYPE, Proto, SocketAddr)> = h
        .transmits()
        .iter()
        .map(|t| (qtype(t), t.proto, t.server))
        .collect();
    next.sort_by_key(|x| x.0 == TYPE::A);
    assert_eq!(
        next,
        [
            (TYPE::AAAA, Proto::Udp, ns(2)),
            (TYPE::A, Proto::Tcp, ns(2))
        ]
    );
    assert!(h.closes().contains(&tcp[0].query));
}

// ----- retransmits and failures ----------------------------------------

#[test]
fn each_try_waits_timeout_then_the_next_server_then_times_out() {
    let mut h =
        Harness::new("nameserver 10.0.0.1\nnameserver 10.0.0.2\noptions timeout:2 attempts:2");
    let id = h.lookup("slow.example");
    let first = h.transmits();
    assert!(first.iter().all(|t| t.server == ns(1)));
    let mut expect = vec![ns(2), ns(1), ns(2)];
    let mut deadline = 2_000;
    let mut open = first;
    for server in expect.drain(..) {
        h.at(deadline - 1);
        assert_eq!(h.transmits(), vec![], "nothing at {}", deadline - 1);
        assert_eq!(h.closes(), vec![]);
        h.at(deadline);
        let mut closed = h.closes();
        closed.sort_by_key(|q| q.index);
        let mut expect_closed: Vec<QueryId> = open.iter().map(|t| t.query).collect();
        expect_closed.sort_by_key(|q| q.index);
        assert_eq!(closed, expect_closed);
        open = h.transmits();
        assert_eq!(open.len(), 2, "retransmits at {deadline}");
        assert!(open.iter().all(|t| t.server == server));
        h.next_timeout_by(deadline + 2_000);
        deadline += 2_000;
    }
    h.at(deadline - 1);
    assert_eq!(h.answers(), vec![]);
    h.at(deadline);
    assert_eq!(h.transmits(), vec![], "attempts × servers tries only");
    assert_eq!(h.closes().len(), 2);
    assert_eq!(
        h.answer(),
        Answer {
            lookup: id,
            result: Err(ResolveError::TimedOut),
            partial: false,
            expires: 0,
        }
    );
    assert_eq!(h.r.poll_timeout(), None);
    assert_eq!(h.sent.len(), 8);
    assert_eq!(h.closed.len(), 8);
}

#[test]
fn rotate_starts_each_lookup_at_the_next_server() {
    let conf = "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n";
    let mut h = Harness::new(&format!("{conf}options rotate"));
    let mut firsts = Vec::new();
    for name in ["a.example", "b.example", "c.example", "d.example"] {
        h.lookup(name);
        let t = h.transmits();
        assert_eq!(t[0].server, t[1].server, "both families to one server");
        firsts.push(t[0].server);
    }
    assert_eq!(firsts, vec![ns(1), ns(2), ns(3), ns(1)]);

    let mut h = Harness::new(conf);
    for name in ["a.example", "b.example"] {
        h.lookup(name);
        assert!(h.transmits().iter().all(|t| t.server == ns(1)));
    }
}

#[test]
fn server_failure_moves_to_the_next_server_at_once() {
    let mut h = Harness::new("nameserver 10.0.0.1\nnameserver 10.0.0.2\noptions attempts:1");
    let id = h.lookup("broken.example");
    let t = h.transmits();
    h.at(100);
    h.udp(&t[0], &Resp::rcode(RCODE::ServerFailure, None).to(&t[0]));
    h.udp(&t[1], &Resp::rcode(RCODE::Refused, None).to(&t[1]));
    let next = h.transmits();
    assert_eq!(next.len(), 2);
    assert!(next.iter().all(|t| t.server == ns(2)));
    h.next_timeout_by(5_100);
    h.udp(
        &next[0],
        &Resp::rcode(RCODE::ServerFailure, None).to(&next[0]),
    );
    // A: the last server is silent; SERVFAIL seen on the first still wins.
    h.at(5_100);
    assert_eq!(
        h.answer(),
        Answer {
            lookup: id,
            result: Err(ResolveError::ServerFailure),
            partial: false,
            expires: 0,
        }
    );
    // Failures are not cached.
    h.lookup("broken.example");
    assert_eq!(h.transmits().len(), 2);
}

#[test]
fn socket_errors_move_on_and_fail_as_unreachable() {
    let mut h = Harness::new("nameserver 10.0.0.1\nnameserver 10.0.0.2\noptions attempts:1");
    h.lookup("example.com");
    for _ in 0..2 {
        for t in h.transmits() {
            h.r.handle_io_error(t.query, Some(libc::ECONNREFUSED), h.now);
            h.check();
        }
    }
    let a = h.answer();
    assert_eq!(
        a.result,
        Err(ResolveError::Unreachable {
            errno: Some(libc::ECONNREFUSED)
        })
    );
    assert_eq!(h.closes().len(), 4);
    assert_eq!(h.r.poll_timeout(), None);
}

#[test]
fn no_name_server_at_all_answers_unreachable_at_once() {
    let mut config = ResolverConfig::from_text("", "", 1);
    config.conf.nameservers.clear();
    let mut h = Harness::with(config);
    let id = h.lookup("example.com");
    assert_eq!(h.transmits(), vec![]);
    assert_eq!(
        h.answer(),
        Answer {
            lookup: id,
            result: Err(ResolveError::Unreachable { errno: None }),
            partial: false,
            expires: 0,
        }
    );
}

#[test]
fn spurious_and_stale_inputs_change_nothing() {
    let mut h = Harness::new("");
    h.at(10);
    h.lookup("example.com");
    let t = h.transmits();
    h.at(10);
    h.at(4_999);
    assert_eq!(h.transmits(), vec![]);
    // A reply for the first try, after it timed out and was closed.
    h.at(5_010);
    assert_eq!(h.closes().len(), 2);
    let retry = h.transmits();
    h.udp(&t[0], &Resp::ips(&[V6], 60).to(&t[0]));
    h.r.handle_io_error(t[1].query, None, h.now);
    h.tcp(&t[1], &Resp::ips(&[V4], 60).to(&t[1]));
    assert_eq!(h.closes(), vec![]);
    assert_eq!(h.transmits(), vec![]);
    // Answering the retry works, with the retry's id.
    h.reply_all(&retry, &Resp::ips(&[V6, V4], 60));
    assert!(h.answer().result.is_ok());
}

// ----- cache lifetimes ---------------------------------------------------

#[test]
fn an_answer_is_cached_until_its_smallest_ttl() {
    let mut h = Harness::new("");
    h.at(1_000);
    h.lookup("example.com");
    let t = h.transmits();
    h.udp(&t[0], &Resp::ips(&[V6], 120).to(&t[0]));
    h.udp(&t[1], &Resp::ips(&[V4], 60).to(&t[1]));
    let first = h.answer().result;
    h.at(1_000 + 60_000 - 1);
    assert_eq!(h.cached("example.com"), first);
    assert_eq!(h.cached("EXAMPLE.com"), first, "any case");
    h.at(1_000 + 60_000);
    h.lookup("example.com");
    assert_eq!(h.transmits().len(), 2, "expired at the TTL");
}

#[test]
fn an_answer_says_when_it_expires_for_a_refresh() {
    let mut h = Harness::with(ResolverConfig::from_text(
        "",
        "192.0.2.9 pinned.example\n",
        1,
    ));
    h.at(1_000);
    h.lookup("example.com");
    let t = h.transmits();
    h.reply_all(&t, &Resp::ips(&[V6, V4], 60));
    assert_eq!(h.answer().expires, 61_000, "the cache's expiry");
    h.at(2_000);
    h.lookup("example.com");
    assert_eq!(h.answer().expires, 61_000, "a cache hit: the same");
    h.lookup("pinned.example");
    assert_eq!(
        h.answer().expires,
        Millis::MAX,
        "the hosts file does not expire"
    );
}

#[test]
fn cname_chain_is_followed_and_its_ttl_counts() {
    let mut h = Harness::new("");
    let reply = Resp {
        cname: Some(("edge.cdn.example", 30)),
        ..Resp::ips(&[V6, V4], 300)
    };
    let got = h.resolve("www.example.com", &reply).unwrap();
    assert_eq!((got.v6().len(), got.v4().len()), (1, 1));
    h.at(29_999);
    assert!(h.cached("www.example.com").is_ok());
    h.at(30_000);
    h.lookup("www.example.com");
    assert_eq!(h.transmits().len(), 2);
}

#[test]
fn records_of_another_owner_are_not_taken() {
    let mut h = Harness::new("");
    // Addresses owned by a name that no CNAME leads to: NODATA.
    let stray = Resp {
        owner: Some("other.example"),
        ..Resp::ips(&[V6, V4], 60)
    };
    assert_eq!(
        h.resolve("www.example.com", &stray),
        Err(ResolveError::NoData)
    );
}

#[test]
fn ttl_floor_and_cap_clamp_the_lifetime() {
    let mut h = Harness::new("");
    // TTL 0 lives the 1 s floor.
    h.resolve("zero.example", &Resp::ips(&[V4, V6], 0)).unwrap();
    h.at(999);
    assert!(h.cached("zero.example").is_ok());
    h.at(1_000);
    h.lookup("zero.example");
    assert_eq!(h.transmits().len(), 2);

    // A week lives the one-hour cap.
    let mut h = Harness::new("");
    h.resolve("week.example", &Resp::ips(&[V4, V6], 7 * 86_400))
        .unwrap();
    h.at(3_600_000 - 1);
    assert!(h.cached("week.example").is_ok());
    h.at(3_600_000);
    h.lookup("week.example");
    assert_eq!(h.transmits().len(), 2);

    // Configured clamps.
    let mut config = ResolverConfig::from_text("", "", 1);
    config.ttl = TtlPolicy {
        ttl_floor: 10_000,
        ttl_cap: 20_000,
        negative_cap: 5_000,
    };
    let mut h = Harness::with(config);
    h.resolve("short.example", &Resp::ips(&[V4, V6], 1))
        .unwrap();
    h.resolve("long.example", &Resp::ips(&[V4, V6], 60))
        .unwrap();
    h.at(9_999);
    assert!(h.cached("short.example").is_ok());
    h.at(19_999);
    assert!(h.cached("long.example").is_ok());
    h.at(20_000);
    h.lookup("long.example");
    assert_eq!(h.transmits().len(), 2);
}

#[test]
fn a_missing_family_is_asked_again_after_its_negative_lifetime() {
    let mut h = Harness::new("");
    h.lookup("v4only.example");
    let t = h.transmits();
    h.udp(
        &t[0],
        &Resp::rcode(RCODE::NoError, Some((3_600, 20))).to(&t[0]),
    );
    h.udp(&t[1], &Resp::ips(&[V4], 300).to(&t[1]));
    assert!(h.answer().result.is_ok());
    h.at(19_999);
    assert!(h.cached("v4only.example").is_ok());
    h.at(20_000);
    h.lookup("v4only.example");
    assert_eq!(h.transmits().len(), 2);
}

#[test]
fn negative_answers_are_cached_for_the_soa_minimum_capped() {
    let mut h = Harness::new("");
    // NXDOMAIN: min(SOA TTL 300, MINIMUM 10) = 10 s.
    let nx = Resp::rcode(RCODE::NameError, Some((300, 10)));
    assert_eq!(h.resolve("gone.example", &nx), Err(ResolveError::NxDomain));
    h.at(9_999);
    assert_eq!(h.cached("gone.example"), Err(ResolveError::NxDomain));
    h.at(10_000);
    h.lookup("gone.example");
    let t = h.transmits();
    h.reply_all(&t, &Resp::rcode(RCODE::NameError, Some((3_600, 3_600))));
    assert_eq!(h.answer().result, Err(ResolveError::NxDomain));
    // 3600 s capped to the 30 s negative cap.
    h.at(10_000 + 29_999);
    assert_eq!(h.cached("gone.example"), Err(ResolveError::NxDomain));
    h.at(10_000 + 30_000);
    h.lookup("gone.example");
    assert_eq!(h.transmits().len(), 2);

    // NODATA in both families, with an SOA: cached too.
    let nodata = Resp::rcode(RCODE::NoError, Some((5, 5)));
    assert_eq!(
        h.resolve("empty.example", &nodata),
        Err(ResolveError::NoData)
    );
    assert_eq!(h.cached("empty.example"), Err(ResolveError::NoData));

    // Without an SOA: not cached (RFC 2308 §5).
    let bare = Resp::rcode(RCODE::NameError, None);
    assert_eq!(
        h.resolve("bare.example", &bare),
        Err(ResolveError::NxDomain)
    );
    h.lookup("bare.example");
    assert_eq!(h.transmits().len(), 2);
}

#[test]
fn timeouts_are_not_cached() {
    let mut h = Harness::new("options timeout:1 attempts:1");
    h.lookup("slow.example");
    h.transmits();
    h.at(1_000);
    assert_eq!(h.answer().result, Err(ResolveError::TimedOut));
    h.lookup("slow.example");
    assert_eq!(h.transmits().len(), 2);
}

// ----- shared lookups ----------------------------------------------------

#[test]
fn concurrent_lookups_of_one_name_share_one_query_pair() {
    let mut h = Harness::new("");
    let names = [
        "example.com",
        "EXAMPLE.COM",
        "Example.Com",
        "example.com",
        "example.COM",
    ];
    let ids: Vec<LookupId> = names.iter().map(|n| h.lookup(n)).collect();
    let t = h.transmits();
    assert_eq!(t.len(), 2, "one pair for five lookups");
    // Another name is another resolution.
    h.lookup("other.example");
    assert_eq!(h.transmits().len(), 2);
    h.reply_all(&t, &Resp::ips(&[V6, V4], 60));
    let answers = h.answers();
    assert_eq!(answers.iter().map(|a| a.lookup).collect::<Vec<_>>(), ids);
    assert!(answers.iter().all(|a| a.result == answers[0].result));
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 5, "each caller its own id");
}

#[test]
fn cancel_drops_only_that_callers_interest() {
    let mut h = Harness::new("");
    let a = h.lookup("example.com");
    let b = h.lookup("example.com");
    let c = h.lookup("example.com");
    let t = h.transmits();
    assert!(h.r.cancel(b));
    h.check();
    assert!(!h.r.cancel(b), "cancelled already");
    h.reply_all(&t, &Resp::ips(&[V4], 60));
    let got: Vec<LookupId> = h.answers().iter().map(|x| x.lookup).collect();
    assert_eq!(got, vec![a, c]);
    assert!(!h.r.cancel(a), "answered already");
}

#[test]
fn a_resolution_whose_callers_all_left_still_fills_the_cache() {
    let mut h = Harness::new("");
    let a = h.lookup("example.com");
    let t = h.transmits();
    assert!(h.r.cancel(a));
    h.check();
    assert_eq!(h.closes(), vec![], "the queries go on");
    h.reply_all(&t, &Resp::ips(&[V4], 60));
    assert_eq!(h.answers(), vec![]);
    assert_eq!(h.closes().len(), 2);
    assert!(h.cached("example.com").is_ok());
}

#[test]
fn cancel_before_draining_an_immediate_answer_drops_it() {
    let mut h = Harness::new("");
    let a = h.lookup("localhost");
    let b = h.lookup("127.0.0.1");
    assert!(h.r.cancel(a));
    h.check();
    assert_eq!(h.answer().lookup, b);
}

#[test]
fn lookup_churn_does_not_grow_the_interest_list() {
    let mut h = Harness::new("");
    let keep = h.lookup("example.com");
    for _ in 0..1_000 {
        let id = h.lookup("example.com");
        assert!(h.r.cancel(id));
    }
    h.check();
    let r = h.r.resolutions.iter().next().unwrap().1;
    assert!(r.interests.len() <= 10, "{} entries", r.interests.len());
    let t = h.transmits();
    h.reply_all(&t, &Resp::ips(&[V4], 60));
    assert_eq!(h.answer().lookup, keep);
}

// ----- search list -------------------------------------------------------

#[test]
fn search_list_is_walked_in_order_until_a_name_exists() {
    let mut h = Harness::new("search a.example b.example\noptions ndots:2");
    let id = h.lookup("www");
    let mut asked = Vec::new();
    for _ in 0..2 {
        let t = h.transmits();
        assert_eq!(t.len(), 2);
        asked.push(qname(&t[0]));
        h.reply_all(&t, &Resp::rcode(RCODE::NameError, Some((60, 60))));
    }
    let t = h.transmits();
    asked.push(qname(&t[0]));
    h.reply_all(&t, &Resp::ips(&[V4], 60));
    assert_eq!(asked, ["www.a.example", "www.b.example", "www"]);
    assert_eq!(h.answer().lookup, id);
    // Cached under the name as asked.
    assert!(h.cached("www").is_ok());
}

#[test]
fn a_name_with_enough_dots_is_tried_as_given_first() {
    let mut h = Harness::new("search a.example\noptions ndots:2");
    h.lookup("x.y.z");
    let t = h.transmits();
    assert_eq!(qname(&t[0]), "x.y.z");
    h.reply_all(&t, &Resp::rcode(RCODE::NameError, None));
    let t = h.transmits();
    assert_eq!(qname(&t[0]), "x.y.z.a.example");
    h.reply_all(&t, &Resp::rcode(RCODE::NameError, None));
    assert_eq!(h.answer().result, Err(ResolveError::NxDomain));
    assert_eq!(h.transmits(), vec![]);
}

#[test]
fn a_trailing_dot_skips_the_search_list() {
    let mut h = Harness::new("search a.example");
    h.lookup("www.");
    let t = h.transmits();
    assert_eq!(qname(&t[0]), "www");
    h.reply_all(&t, &Resp::rcode(RCODE::NameError, None));
    assert_eq!(h.answer().result, Err(ResolveError::NxDomain));
}

#[test]
fn nodata_anywhere_in_the_search_wins_over_nxdomain() {
    let mut h = Harness::new("search a.example");
    h.lookup("www");
    let t = h.transmits();
    h.reply_all(&t, &Resp::rcode(RCODE::NoError, Some((60, 60))));
    let t = h.transmits();
    h.reply_all(&t, &Resp::rcode(RCODE::NameError, Some((60, 60))));
    assert_eq!(h.answer().result, Err(ResolveError::NoData));
    assert_eq!(h.cached("www"), Err(ResolveError::NoData));
}

#[test]
fn a_timeout_stops_the_search_list() {
    let mut h = Harness::new("search a.example b.example\noptions timeout:1 attempts:1");
    h.lookup("www");
    let t = h.transmits();
    h.udp(&t[0], &Resp::rcode(RCODE::NoError, None).to(&t[0]));
    h.at(1_000);
    assert_eq!(h.transmits(), vec![], "no next candidate");
    assert_eq!(h.answer().result, Err(ResolveError::TimedOut));
}

#[test]
fn server_failure_on_one_candidate_does_not_stop_the_search() {
    let mut h = Harness::new("search a.example\noptions attempts:1");
    h.lookup("www");
    let t = h.transmits();
    h.reply_all(&t, &Resp::rcode(RCODE::ServerFailure, None));
    let t = h.transmits();
    assert_eq!(qname(&t[0]), "www");
    h.reply_all(&t, &Resp::rcode(RCODE::NameError, Some((60, 60))));
    assert_eq!(h.answer().result, Err(ResolveError::ServerFailure));
    // Not cached: a server failed on the way.
    h.lookup("www");
    assert_eq!(h.transmits().len(), 2);
}

// ----- answers without DNS -----------------------------------------------

#[test]
fn hosts_file_answers_without_a_query() {
    let hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n10.1.2.3 db.internal DB # db\n";
    let mut h = Harness::with(ResolverConfig::from_text("", hosts, 1));
    let got = h.cached("localhost").unwrap();
    assert_eq!(got.v4(), &[Ipv4Addr::LOCALHOST]);
    assert_eq!(got.v6(), &[Ipv6Addr::LOCALHOST]);
    assert_eq!(h.cached("DB").unwrap().v4(), &[Ipv4Addr::new(10, 1, 2, 3)]);
    assert_eq!(
        h.cached("db.internal.").unwrap().v4(),
        &[Ipv4Addr::new(10, 1, 2, 3)]
    );
}

#[test]
fn localhost_answers_loopback_even_without_a_hosts_entry() {
    let mut h = Harness::new("");
    for name in ["localhost", "LOCALHOST.", "app.localhost"] {
        let got = h.cached(name).unwrap();
        assert_eq!(got.v6(), &[Ipv6Addr::LOCALHOST], "{name}");
        assert_eq!(got.v4(), &[Ipv4Addr::LOCALHOST], "{name}");
    }
    h.lookup("notlocalhost");
    assert_eq!(h.transmits().len(), 2);
}

#[test]
fn ip_literals_answer_themselves() {
    let mut h = Harness::new("");
    assert_eq!(h.cached("192.0.2.1"), Ok(addresses(&[V4])));
    assert_eq!(h.cached("2001:db8::1"), Ok(addresses(&[V6])));
}

#[test]
fn invalid_names_are_refused_by_lookup() {
    let mut h = Harness::new("");
    let long_label = "a".repeat(64);
    let long_name = ["a".repeat(60).as_str(); 5].join(".");
    for bad in [
        "",
        ".",
        "a..b",
        ".a",
        "a b",
        "ex ample.com",
        "bücher.de",
        "a/b",
        &long_label,
        &long_name,
    ] {
        match h.r.lookup(bad, 0) {
            Err(ResolveError::InvalidName { .. }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(h.transmits(), vec![]);
    assert_eq!(h.answers(), vec![]);
    h.check();
}

// ----- errors ------------------------------------------------------------

#[test]
fn errors_map_to_resolve_outcomes() {
    use crate::error::{ConnectError, Function};
    let timed_out = ConnectError::resolve(ResolveError::TimedOut);
    assert_eq!(timed_out.function(), Function::Resolve);
    assert_eq!(timed_out.function().as_str(), "resolve");
    assert_eq!(timed_out.errno(), Some(libc::ETIMEDOUT));
    assert!(!timed_out.is_timeout(), "not the request's own timeout");
    let nx = ConnectError::resolve(ResolveError::NxDomain);
    assert_eq!(nx.errno(), None);
    assert_eq!(nx.message(), "no such host name (NXDOMAIN)");
    assert_eq!(nx.io_error().kind(), std::io::ErrorKind::NotFound);
    let refused = ConnectError::resolve(ResolveError::Unreachable {
        errno: Some(libc::ECONNREFUSED),
    });
    assert_eq!(refused.errno(), Some(libc::ECONNREFUSED));
    for e in [
        ResolveError::NoData,
        ResolveError::ServerFailure,
        ResolveError::TooManyLookups,
        ResolveError::InvalidName { reason: "why" },
    ] {
        assert!(!e.to_string().is_empty());
        assert_eq!(ConnectError::resolve(e).errno(), None);
    }
}

#[test]
fn query_ids_come_from_the_seed() {
    let run = |seed| {
        let mut h = Harness::with(ResolverConfig::from_text("", "", seed));
        h.lookup("example.com");
        h.transmits()
            .iter()
            .map(|t| question(t).0)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7), "deterministic for a seed");
    assert_ne!(run(7), run(8));
}
