//! The test DNS responder (`tests/common/dns.rs`) answers as configured and
//! counts what it was asked. Exercised here with std sockets, so that it is
//! compiled and known to work before the resolver's driver tests use it.

#[path = "common/dns.rs"]
#[allow(dead_code, reason = "each test binary uses a different subset")]
mod dns;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use dns::{DnsServer, RecordType, Transport, Zone};
use simple_dns::rdata::RData;
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE};

/// Longest a reply that should come may take: only reached when broken.
const CAP: Duration = Duration::from_secs(5);

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut p = Packet::new_query(id);
    p.set_flags(PacketFlag::RECURSION_DESIRED);
    p.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(qtype),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    p.build_bytes_vec().unwrap()
}

/// Sends `q` over UDP and waits up to `wait` for the reply.
fn ask_udp(server: SocketAddr, q: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind((server.ip(), 0)).unwrap();
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.send_to(q, server).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = socket.recv_from(&mut buf).ok()?;
    assert_eq!(from, server, "the reply comes from the server's address");
    Some(buf[..n].to_vec())
}

/// Sends `q` over TCP (length-prefixed) and reads one reply.
fn ask_tcp(server: SocketAddr, q: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server).unwrap();
    stream.set_read_timeout(Some(CAP)).unwrap();
    let len = u16::try_from(q.len()).unwrap();
    stream.write_all(&len.to_be_bytes()).unwrap();
    stream.write_all(q).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).unwrap();
    reply
}

fn addresses(reply: &Packet<'_>) -> Vec<(IpAddr, u32)> {
    reply
        .answers
        .iter()
        .filter_map(|rr| match &rr.rdata {
            RData::A(a) => Some((IpAddr::V4(Ipv4Addr::from(a.address)), rr.ttl)),
            RData::AAAA(a) => Some((IpAddr::V6(Ipv6Addr::from(a.address)), rr.ttl)),
            _ => None,
        })
        .collect()
}

#[test]
fn answers_records_with_ttls_and_counts_queries() {
    let dns = DnsServer::start();
    assert!(dns.addr.ip().is_loopback());
    let v4 = Ipv4Addr::new(192, 0, 2, 1);
    let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    dns.set("WWW.test", Zone::addresses(&[v4], &[v6], 60));

    let bytes = ask_udp(dns.addr, &query(7, "www.test", RecordType::A), CAP).unwrap();
    let reply = Packet::parse(&bytes).unwrap();
    assert_eq!(reply.id(), 7);
    assert!(reply.has_flags(PacketFlag::RESPONSE));
    assert_eq!(reply.rcode(), RCODE::NoError);
    assert_eq!(reply.questions[0].qname.to_string(), "www.test");
    assert_eq!(addresses(&reply), vec![(IpAddr::V4(v4), 60)]);

    let bytes = ask_udp(dns.addr, &query(8, "Www.Test", RecordType::AAAA), CAP).unwrap();
    assert_eq!(
        addresses(&Packet::parse(&bytes).unwrap()),
        vec![(IpAddr::V6(v6), 60)]
    );
    let bytes = ask_udp(dns.addr, &query(9, "www.test", RecordType::A), CAP).unwrap();
    assert_eq!(Packet::parse(&bytes).unwrap().id(), 9);

    assert_eq!(dns.queries("www.test", RecordType::A), 2);
    assert_eq!(dns.queries("www.test", RecordType::AAAA), 1);
    assert_eq!(
        dns.queries_over("www.test", RecordType::A, Transport::Tcp),
        0
    );
    assert_eq!(dns.total_queries(), 3);
}

#[test]
fn negative_and_failing_names() {
    let dns = DnsServer::start();
    dns.set("gone.test", Zone::nxdomain(30));
    dns.set("broken.test", Zone::servfail());
    dns.set(
        "v4only.test",
        Zone::addresses(&[Ipv4Addr::new(192, 0, 2, 2)], &[], 60),
    );

    let reply = ask_udp(dns.addr, &query(1, "gone.test", RecordType::A), CAP).unwrap();
    let reply = Packet::parse(&reply).unwrap();
    assert_eq!(reply.rcode(), RCODE::NameError);
    let Some(RData::SOA(soa)) = reply.name_servers.first().map(|rr| &rr.rdata) else {
        panic!("no SOA in {reply:?}")
    };
    assert_eq!(soa.minimum, 30);

    // Unconfigured names are NXDOMAIN too.
    let reply = ask_udp(dns.addr, &query(2, "unknown.test", RecordType::A), CAP).unwrap();
    assert_eq!(Packet::parse(&reply).unwrap().rcode(), RCODE::NameError);

    let reply = ask_udp(dns.addr, &query(3, "broken.test", RecordType::AAAA), CAP).unwrap();
    assert_eq!(Packet::parse(&reply).unwrap().rcode(), RCODE::ServerFailure);

    // NODATA: no error, no records, an SOA.
    let reply = ask_udp(dns.addr, &query(4, "v4only.test", RecordType::AAAA), CAP).unwrap();
    let reply = Packet::parse(&reply).unwrap();
    assert_eq!(reply.rcode(), RCODE::NoError);
    assert!(reply.answers.is_empty());
    assert_eq!(reply.name_servers.len(), 1);
}

#[test]
fn truncated_over_udp_full_over_tcp() {
    let dns = DnsServer::start();
    let many: Vec<Ipv4Addr> = (1..=20).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
    dns.set("big.test", Zone::addresses(&many, &[], 300).truncated());

    let udp = ask_udp(dns.addr, &query(5, "big.test", RecordType::A), CAP).unwrap();
    let udp = Packet::parse(&udp).unwrap();
    assert!(udp.has_flags(PacketFlag::TRUNCATION));
    assert!(udp.answers.is_empty());

    let tcp = ask_tcp(dns.addr, &query(6, "big.test", RecordType::A));
    let tcp = Packet::parse(&tcp).unwrap();
    assert_eq!(tcp.id(), 6);
    assert!(!tcp.has_flags(PacketFlag::TRUNCATION));
    assert_eq!(addresses(&tcp).len(), 20);

    assert_eq!(
        dns.queries_over("big.test", RecordType::A, Transport::Udp),
        1
    );
    assert_eq!(
        dns.queries_over("big.test", RecordType::A, Transport::Tcp),
        1
    );
}

#[test]
fn silent_names_get_no_reply_but_are_counted() {
    let dns = DnsServer::start();
    dns.set("slow.test", Zone::silent());
    let q = query(1, "slow.test", RecordType::A);
    assert_eq!(ask_udp(dns.addr, &q, Duration::from_millis(200)), None);
    assert_eq!(dns.queries("slow.test", RecordType::A), 1);
}

#[test]
fn listens_on_ipv6_loopback_where_there_is_one() {
    let Ok(dns) = DnsServer::start_on(IpAddr::V6(Ipv6Addr::LOCALHOST)) else {
        println!("skipped: no ::1 on this machine");
        return;
    };
    dns.set("six.test", Zone::addresses(&[], &[Ipv6Addr::LOCALHOST], 5));
    let reply = ask_udp(dns.addr, &query(3, "six.test", RecordType::AAAA), CAP).unwrap();
    assert_eq!(
        addresses(&Packet::parse(&reply).unwrap()),
        vec![(IpAddr::V6(Ipv6Addr::LOCALHOST), 5)]
    );
}
