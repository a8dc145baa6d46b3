//! DNS messages on the wire, through `simple-dns`: a query for one name and
//! family, and the check of a reply against the question it must answer.
//!
//! A reply is taken only if everything an off-path forger would have to
//! guess matches: the 16-bit id, the QR bit and opcode, and the one
//! question (name case-insensitively, type, class IN). The source address
//! and port are checked by the resolver, which knows where the query went.
//! Anything else is ignored, as if never received, and the try keeps
//! waiting: a forged or stray datagram cannot end a lookup early.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::RData;
use simple_dns::{
    CLASS, Name, OPCODE, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, TYPE, header_buffer,
};

use super::addresses::Addresses;

/// CNAMEs followed inside one answer before giving up on the chain.
const MAX_CNAME_CHAIN: usize = 8;

/// An address family, by the record type that carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    /// AAAA records, IPv6.
    V6,
    /// A records, IPv4.
    V4,
}

impl Family {
    /// Both, in the order queries are sent: AAAA first (RFC 8305 §3).
    pub(crate) const BOTH: [Family; 2] = [Family::V6, Family::V4];

    fn record_type(self) -> TYPE {
        match self {
            Family::V6 => TYPE::AAAA,
            Family::V4 => TYPE::A,
        }
    }

    /// Index in a per-family array (`V6` 0, `V4` 1).
    pub(crate) fn index(self) -> usize {
        match self {
            Family::V6 => 0,
            Family::V4 => 1,
        }
    }
}

/// A query for `name`'s `family` records with id `id`, recursion desired.
/// `None` if `name` does not make a DNS name (it was checked already, so
/// this does not happen).
pub(crate) fn build_query(id: u16, name: &str, family: Family) -> Option<Vec<u8>> {
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    packet.questions.push(Question::new(
        Name::new(name).ok()?,
        QTYPE::TYPE(family.record_type()),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.build_bytes_vec().ok()
}

/// What a reply that answers the question says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// TC bit: the answer did not fit; ask again over TCP.
    Truncated,
    /// Addresses of the asked family (only that family is filled), with
    /// the smallest TTL of the records and CNAMEs that led to them.
    Found { addresses: Addresses, ttl: u32 },
    /// The name exists but has no record of the family (NOERROR, none).
    /// `negative_ttl`: `min(SOA TTL, SOA MINIMUM)` if the reply had an SOA.
    NoData { negative_ttl: Option<u32> },
    /// The name does not exist (NXDOMAIN).
    NxDomain { negative_ttl: Option<u32> },
    /// SERVFAIL, REFUSED, NOTIMP, FORMERR or another error code: this
    /// server cannot answer now.
    ServerFailure,
}

/// Checks `bytes` against the question (`id`, `name`, `family`) and reads
/// the answer. `None`: not a reply to this question (or unreadable), to be
/// ignored. A truncated reply whose question cannot be read (cut in the
/// middle of a record) is still taken as `Truncated` when the id matches:
/// it can only send us to TCP, where forging is much harder.
pub(crate) fn check_reply(bytes: &[u8], id: u16, name: &str, family: Family) -> Option<Reply> {
    if header_buffer::id(bytes).ok()? != id
        || !header_buffer::has_flags(bytes, PacketFlag::RESPONSE).ok()?
        || header_buffer::opcode(bytes).ok()? != OPCODE::StandardQuery
    {
        return None;
    }
    let truncated = header_buffer::has_flags(bytes, PacketFlag::TRUNCATION).ok()?;
    let packet = match Packet::parse(bytes) {
        Ok(p) => p,
        Err(_) if truncated => return Some(Reply::Truncated),
        Err(_) => return None,
    };
    let qname = Name::new(name).ok()?;
    let [question] = packet.questions.as_slice() else {
        return None;
    };
    if question.qname != qname
        || question.qtype != QTYPE::TYPE(family.record_type())
        || question.qclass != QCLASS::CLASS(CLASS::IN)
    {
        return None;
    }
    if truncated {
        return Some(Reply::Truncated);
    }
    Some(match packet.rcode() {
        RCODE::NoError => read_answer(&packet, qname, family),
        RCODE::NameError => Reply::NxDomain {
            negative_ttl: negative_ttl(&packet),
        },
        _ => Reply::ServerFailure,
    })
}

/// Follows the CNAME chain from the question's name through the answer
/// section and collects the family's records of the name it ends at.
fn read_answer(packet: &Packet<'_>, qname: Name<'_>, family: Family) -> Reply {
    let mut target = qname;
    let mut ttl = u32::MAX;
    for _ in 0..MAX_CNAME_CHAIN {
        let next = packet.answers.iter().find_map(|rr| match &rr.rdata {
            RData::CNAME(c) if rr.class == CLASS::IN && rr.name == target => {
                Some((c.0.clone(), rr.ttl))
            }
            _ => None,
        });
        let Some((name, t)) = next else { break };
        target = name;
        ttl = ttl.min(effective_ttl(t));
    }
    let mut addresses = Addresses::EMPTY;
    let mut found = false;
    for rr in &packet.answers {
        if rr.class != CLASS::IN || rr.name != target {
            continue;
        }
        let ip = match (&rr.rdata, family) {
            (RData::AAAA(a), Family::V6) => IpAddr::V6(Ipv6Addr::from(a.address)),
            (RData::A(a), Family::V4) => IpAddr::V4(Ipv4Addr::from(a.address)),
            _ => continue,
        };
        found = true;
        ttl = ttl.min(effective_ttl(rr.ttl));
        addresses.push(ip);
    }
    if found {
        Reply::Found { addresses, ttl }
    } else {
        Reply::NoData {
            negative_ttl: negative_ttl(packet),
        }
    }
}

/// RFC 2308 §5: a negative answer lives `min(SOA TTL, SOA MINIMUM)`.
fn negative_ttl(packet: &Packet<'_>) -> Option<u32> {
    packet.name_servers.iter().find_map(|rr| match &rr.rdata {
        RData::SOA(soa) => Some(effective_ttl(rr.ttl).min(effective_ttl(soa.minimum))),
        _ => None,
    })
}

/// RFC 2181 §8: a TTL with the top bit set is taken as 0.
fn effective_ttl(ttl: u32) -> u32 {
    if ttl > 0x7fff_ffff { 0 } else { ttl }
}
