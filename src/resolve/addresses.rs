//! The addresses a name resolved to: a fixed-size value, so a cache hit or a
//! hosts-file hit copies it out without allocating.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses kept per family. Records past this many are dropped: Happy
/// Eyeballs (RFC 8305) would reach the ninth address of a family only after
/// eight failed attempts in it, and a fixed size is what makes hits free.
pub(crate) const MAX_PER_FAMILY: usize = 8;

/// The IPv6 (AAAA) and IPv4 (A) addresses of a name, each family in the
/// order the answer (or the hosts file) gave them, at most
/// [`MAX_PER_FAMILY`] of each. Kept apart so that the caller can interleave
/// the families (RFC 8305 §4); [`Addresses::interleaved`] does it.
///
/// 162 bytes, `Copy`, never allocates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Addresses {
    v6: [Ipv6Addr; MAX_PER_FAMILY],
    v4: [Ipv4Addr; MAX_PER_FAMILY],
    n6: u8,
    n4: u8,
}

impl Default for Addresses {
    fn default() -> Self {
        Addresses::EMPTY
    }
}

impl Addresses {
    /// No address.
    pub(crate) const EMPTY: Addresses = Addresses {
        v6: [Ipv6Addr::UNSPECIFIED; MAX_PER_FAMILY],
        v4: [Ipv4Addr::UNSPECIFIED; MAX_PER_FAMILY],
        n6: 0,
        n4: 0,
    };

    /// The IPv6 addresses (from AAAA records).
    pub(crate) fn v6(&self) -> &[Ipv6Addr] {
        &self.v6[..usize::from(self.n6)]
    }

    /// The IPv4 addresses (from A records).
    pub(crate) fn v4(&self) -> &[Ipv4Addr] {
        &self.v4[..usize::from(self.n4)]
    }

    /// The same addresses, in any order (each is held once): a DNS server
    /// that rotates its records (round-robin) has not moved the name.
    pub(crate) fn same_set(&self, other: &Addresses) -> bool {
        self.v6().len() == other.v6().len()
            && self.v4().len() == other.v4().len()
            && self.v6().iter().all(|a| other.v6().contains(a))
            && self.v4().iter().all(|a| other.v4().contains(a))
    }

    /// Whether neither family has an address.
    pub(crate) fn is_empty(&self) -> bool {
        self.n6 == 0 && self.n4 == 0
    }

    /// Adds `ip` to its family unless it is there already; `false` if the
    /// family is full (the address is dropped). An IPv4-mapped IPv6 address
    /// stays IPv6: it came from an AAAA record.
    pub(crate) fn push(&mut self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V6(a) => push_unique(&mut self.v6, &mut self.n6, a),
            IpAddr::V4(a) => push_unique(&mut self.v4, &mut self.n4, a),
        }
    }

    /// Adds every address of `other` (family by family) that fits.
    pub(crate) fn extend(&mut self, other: &Addresses) {
        for &a in other.v6() {
            push_unique(&mut self.v6, &mut self.n6, a);
        }
        for &a in other.v4() {
            push_unique(&mut self.v4, &mut self.n4, a);
        }
    }

    /// Every address, alternating families and starting with IPv6, as
    /// RFC 8305 §4 orders them with a "First Address Family Count" of one:
    /// `v6[0], v4[0], v6[1], v4[1], …`, then the rest of the longer family.
    pub(crate) fn interleaved(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let longest = self.n6.max(self.n4);
        (0..usize::from(longest)).flat_map(move |i| {
            let v6 = self.v6().get(i).map(|&a| IpAddr::V6(a));
            let v4 = self.v4().get(i).map(|&a| IpAddr::V4(a));
            v6.into_iter().chain(v4)
        })
    }
}

fn push_unique<A: PartialEq + Copy>(slots: &mut [A; MAX_PER_FAMILY], n: &mut u8, a: A) -> bool {
    let len = usize::from(*n);
    if slots[..len].contains(&a) {
        return true;
    }
    match slots.get_mut(len) {
        Some(slot) => {
            *slot = a;
            *n += 1;
            true
        }
        None => false,
    }
}

impl std::fmt::Debug for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Addresses")
            .field("v6", &self.v6())
            .field("v4", &self.v4())
            .finish()
    }
}
