//! A DNS responder for integration tests: UDP and TCP on one free loopback
//! port (127.0.0.1 or ::1), answers configured per name, and counts of the
//! queries it received per name, type and transport.
//!
//! Each name can answer A/AAAA records with a TTL, NXDOMAIN, SERVFAIL,
//! nothing at all (silence) or nothing to one type of query, or a truncated reply over UDP (TC=1, no
//! records) with the full answer over TCP; and it can precede its UDP
//! answer with spoofed NXDOMAIN replies (a wrong id, a wrong question, the
//! right ones from another port), which a resolver must ignore. A name not configured is
//! NXDOMAIN. Negative answers carry an SOA whose TTL and MINIMUM are the
//! zone's `negative_ttl`, so a resolver may cache them (RFC 2308).
//!
//! ```ignore
//! let dns = DnsServer::start();
//! dns.set("www.test", Zone::addresses(&[Ipv4Addr::new(192, 0, 2, 1)], &[], 60));
//! // ... point a resolver at dns.addr ...
//! assert_eq!(dns.queries("www.test", TYPE::A), 1);
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use simple_dns::rdata::{A, AAAA, RData, SOA};
use simple_dns::{CLASS, Name, Packet, PacketFlag, QTYPE, RCODE, ResourceRecord, TYPE};

pub use simple_dns::TYPE as RecordType;

/// How a name answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Its records (possibly none: NODATA).
    #[default]
    Answer,
    /// NXDOMAIN.
    NxDomain,
    /// SERVFAIL.
    ServFail,
    /// No reply at all, over either transport.
    Silent,
}

/// What one name answers.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    pub a: Vec<Ipv4Addr>,
    pub aaaa: Vec<Ipv6Addr>,
    /// TTL of the address records.
    pub ttl: u32,
    pub behaviour: Behaviour,
    /// Over UDP, reply TC=1 with no records; over TCP, the full answer.
    pub truncate_udp: bool,
    /// SOA TTL and MINIMUM in negative answers (NXDOMAIN, NODATA); none if
    /// `None`.
    pub negative_ttl: Option<u32>,
    /// Over UDP, send three spoofed NXDOMAIN replies before the answer.
    pub spoof: bool,
    /// Queries of this type get no reply at all (a middlebox that drops
    /// AAAA queries); the other type is answered as usual.
    pub silent_type: Option<RecordType>,
    /// Over UDP, queries of this type are answered this much later.
    pub delayed_type: Option<(RecordType, Duration)>,
}

impl Zone {
    /// A and AAAA records with one TTL; NODATA for a family left empty.
    pub fn addresses(a: &[Ipv4Addr], aaaa: &[Ipv6Addr], ttl: u32) -> Zone {
        Zone {
            a: a.to_vec(),
            aaaa: aaaa.to_vec(),
            ttl,
            negative_ttl: Some(ttl),
            ..Zone::default()
        }
    }

    /// NXDOMAIN, with an SOA allowing `negative_ttl` seconds of caching.
    pub fn nxdomain(negative_ttl: u32) -> Zone {
        Zone {
            behaviour: Behaviour::NxDomain,
            negative_ttl: Some(negative_ttl),
            ..Zone::default()
        }
    }

    /// SERVFAIL.
    pub fn servfail() -> Zone {
        Zone {
            behaviour: Behaviour::ServFail,
            ..Zone::default()
        }
    }

    /// No reply.
    pub fn silent() -> Zone {
        Zone {
            behaviour: Behaviour::Silent,
            ..Zone::default()
        }
    }

    /// The same, truncated over UDP.
    pub fn truncated(self) -> Zone {
        Zone {
            truncate_udp: true,
            ..self
        }
    }

    /// The same, but queries of `qtype` are never answered.
    pub fn silent_for(self, qtype: RecordType) -> Zone {
        Zone {
            silent_type: Some(qtype),
            ..self
        }
    }

    /// The same, but queries of `qtype` (over UDP) are answered `by` later.
    pub fn delayed_for(self, qtype: RecordType, by: Duration) -> Zone {
        Zone {
            delayed_type: Some((qtype, by)),
            ..self
        }
    }

    /// The same, each UDP answer preceded by spoofed NXDOMAIN replies: one
    /// with the query's id changed, one for another name, and one right in
    /// id and question but sent from another port.
    pub fn spoofed(self) -> Zone {
        Zone {
            spoof: true,
            ..self
        }
    }
}

/// The transport a query came over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Default)]
struct State {
    zones: HashMap<String, Zone>,
    counts: HashMap<(String, RecordType, Transport), usize>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The responder; stops and joins its threads on drop.
pub struct DnsServer {
    /// Where it listens, UDP and TCP alike.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// On 127.0.0.1.
    pub fn start() -> DnsServer {
        DnsServer::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("DNS responder on 127.0.0.1")
    }

    /// On `ip` (loopback only: 127.0.0.1 or ::1). `Err` if no port free
    /// for both UDP and TCP could be had, or `ip` is not configured (an
    /// IPv6-less container).
    pub fn start_on(ip: IpAddr) -> io::Result<DnsServer> {
        assert!(
            ip.is_loopback(),
            "the test responder listens on loopback only"
        );
        let (udp, tcp) = bind_pair(ip)?;
        let addr = udp.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(20)))?;
        tcp.set_nonblocking(true)?;
        let (s, st) = (state.clone(), stop.clone());
        let other = UdpSocket::bind((ip, 0))?;
        let udp_thread = thread::spawn(move || serve_udp(&udp, &other, &s, &st));
        let (s, st) = (state.clone(), stop.clone());
        let tcp_thread = thread::spawn(move || serve_tcp(&tcp, &s, &st));
        Ok(DnsServer {
            addr,
            state,
            stop,
            threads: vec![udp_thread, tcp_thread],
        })
    }

    /// Sets what `name` answers (any case; no trailing dot).
    pub fn set(&self, name: &str, zone: Zone) {
        lock(&self.state)
            .zones
            .insert(name.to_ascii_lowercase(), zone);
    }

    /// Queries received for `name` and `qtype`, over both transports.
    pub fn queries(&self, name: &str, qtype: RecordType) -> usize {
        self.queries_over(name, qtype, Transport::Udp)
            + self.queries_over(name, qtype, Transport::Tcp)
    }

    /// Queries received for `name` and `qtype` over one transport.
    pub fn queries_over(&self, name: &str, qtype: RecordType, transport: Transport) -> usize {
        lock(&self.state)
            .counts
            .get(&(name.to_ascii_lowercase(), qtype, transport))
            .copied()
            .unwrap_or(0)
    }

    /// Queries received in all.
    pub fn total_queries(&self) -> usize {
        lock(&self.state).counts.values().sum()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port.
fn bind_pair(ip: IpAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = io::Error::other("no port tried");
    for _ in 0..50 {
        let udp = UdpSocket::bind((ip, 0))?;
        match TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn serve_udp(socket: &UdpSocket, other: &UdpSocket, state: &Mutex<State>, stop: &AtomicBool) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if let Some([wrong_id, wrong_question, right]) = spoofs(&buf[..n], state) {
            let _ = socket.send_to(&wrong_id, from);
            let _ = socket.send_to(&wrong_question, from);
            let _ = other.send_to(&right, from);
        }
        let Some(reply) = respond(&buf[..n], Transport::Udp, state) else {
            continue;
        };
        match (reply_delay(&buf[..n], state), socket.try_clone()) {
            (Some(by), Ok(socket)) => {
                thread::spawn(move || {
                    thread::sleep(by);
                    let _ = socket.send_to(&reply, from);
                });
            }
            _ => {
                let _ = socket.send_to(&reply, from);
            }
        }
    }
}

fn serve_tcp(listener: &TcpListener, state: &Arc<Mutex<State>>, stop: &Arc<AtomicBool>) {
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (state, stop) = (state.clone(), stop.clone());
                conns.push(thread::spawn(move || serve_conn(stream, &state, &stop)));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// Length-prefixed messages on one connection until EOF or stop.
fn serve_conn(mut stream: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        while let [hi, lo, rest @ ..] = pending.as_slice() {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            if rest.len() < len {
                break;
            }
            let message: Vec<u8> = rest[..len].to_vec();
            pending.drain(..2 + len);
            if let Some(reply) = respond(&message, Transport::Tcp, state) {
                let Ok(len) = u16::try_from(reply.len()) else {
                    return;
                };
                let mut framed = len.to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                if stream.write_all(&framed).is_err() {
                    return;
                }
            }
        }
    }
}

/// How much later a query's UDP reply goes out, if its zone delays its type.
fn reply_delay(query: &[u8], state: &Mutex<State>) -> Option<Duration> {
    let packet = Packet::parse(query).ok()?;
    let question = packet.questions.first()?;
    let QTYPE::TYPE(qtype) = question.qtype else {
        return None;
    };
    let name = question.qname.to_string().to_ascii_lowercase();
    let (delayed, by) = lock(state).zones.get(&name)?.delayed_type?;
    (delayed == qtype).then_some(by)
}

/// For a query of a name with `spoof` set: NXDOMAIN replies with a wrong
/// id, with a wrong question, and right in both (to send from another
/// port).
fn spoofs(query: &[u8], state: &Mutex<State>) -> Option<[Vec<u8>; 3]> {
    let packet = Packet::parse(query).ok()?;
    let question = packet.questions.first()?.clone();
    let name = question.qname.to_string().to_ascii_lowercase();
    if !lock(state).zones.get(&name).is_some_and(|z| z.spoof) {
        return None;
    }
    let nxdomain = |id: u16, question: simple_dns::Question<'_>| {
        let mut reply = Packet::new_reply(id);
        reply.set_flags(PacketFlag::RECURSION_AVAILABLE);
        *reply.rcode_mut() = RCODE::NameError;
        reply.questions.push(question);
        reply.build_bytes_vec().ok()
    };
    let mut other = question.clone();
    other.qname = Name::new_unchecked("spoofed.invalid");
    Some([
        nxdomain(packet.id() ^ 0x5a5a, question.clone())?,
        nxdomain(packet.id(), other)?,
        nxdomain(packet.id(), question)?,
    ])
}

/// The reply to one query, or `None` for silence (or an unreadable query).
fn respond(query: &[u8], transport: Transport, state: &Mutex<State>) -> Option<Vec<u8>> {
    let packet = Packet::parse(query).ok()?;
    let question = packet.questions.first()?.clone();
    let QTYPE::TYPE(qtype) = question.qtype else {
        return None;
    };
    let name = question.qname.to_string().to_ascii_lowercase();
    let zone = {
        let mut s = lock(state);
        *s.counts
            .entry((name.clone(), qtype, transport))
            .or_default() += 1;
        s.zones
            .get(&name)
            .cloned()
            .unwrap_or_else(|| Zone::nxdomain(60))
    };
    if zone.silent_type == Some(qtype) {
        return None;
    }
    let mut reply = Packet::new_reply(packet.id());
    reply.set_flags(PacketFlag::RECURSION_AVAILABLE);
    if packet.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    reply.questions.push(question.clone());
    let owner = Name::new_unchecked(&name);
    match zone.behaviour {
        Behaviour::Silent => return None,
        Behaviour::ServFail => *reply.rcode_mut() = RCODE::ServerFailure,
        Behaviour::NxDomain => *reply.rcode_mut() = RCODE::NameError,
        Behaviour::Answer if zone.truncate_udp && transport == Transport::Udp => {
            reply.set_flags(PacketFlag::TRUNCATION);
        }
        Behaviour::Answer => {
            let records: Vec<RData<'_>> = match qtype {
                TYPE::A => zone.a.iter().map(|&a| RData::A(A::from(a))).collect(),
                TYPE::AAAA => zone
                    .aaaa
                    .iter()
                    .map(|&a| RData::AAAA(AAAA::from(a)))
                    .collect(),
                _ => Vec::new(),
            };
            for rdata in records {
                reply.answers.push(ResourceRecord::new(
                    owner.clone(),
                    CLASS::IN,
                    zone.ttl,
                    rdata,
                ));
            }
        }
    }
    let negative = reply.answers.is_empty()
        && matches!(zone.behaviour, Behaviour::Answer | Behaviour::NxDomain)
        && !reply.has_flags(PacketFlag::TRUNCATION);
    if let (true, Some(ttl)) = (negative, zone.negative_ttl) {
        reply.name_servers.push(ResourceRecord::new(
            Name::new_unchecked("test"),
            CLASS::IN,
            ttl,
            RData::SOA(SOA {
                mname: Name::new_unchecked("ns.test"),
                rname: Name::new_unchecked("hostmaster.test"),
                serial: 1,
                refresh: 3_600,
                retry: 600,
                expire: 86_400,
                minimum: ttl,
            }),
        ));
    }
    reply.build_bytes_vec().ok()
}
