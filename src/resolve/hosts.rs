//! `hosts(5)`, parsed from text the driver read: checked before the cache
//! and DNS, so `localhost` and local names work with no name server.
//!
//! Each line is an address (IPv4 or IPv6) followed by one or more names;
//! `#` starts a comment. Names compare without regard to ASCII case. A name
//! on several lines gets the addresses of all of them, in file order, as
//! glibc's `gethostbyname4` (getaddrinfo's files backend) collects them, up
//! to [`MAX_PER_FAMILY`](super::addresses::MAX_PER_FAMILY) per family.
//! Lines whose address does not parse (an IPv6 zone such as `fe80::1%eth0`
//! among them) are skipped; a hosts file never fails to parse.
//!
//! The table is found with one hash of the lowercased name (no allocation)
//! and holds a [`Addresses`] per name, so a hit copies a fixed-size value.

use std::net::IpAddr;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::addresses::Addresses;
use super::name::{hash_name, same_name};

struct Entry {
    /// Lowercase, without a trailing dot.
    name: Box<str>,
    addresses: Addresses,
}

/// A parsed hosts file. See the module docs.
#[derive(Default)]
pub(crate) struct Hosts {
    hasher: DefaultHashBuilder,
    table: HashTable<Entry>,
}

impl Hosts {
    /// Parses hosts-file text. Never fails; see the module docs for what is
    /// skipped.
    pub(crate) fn parse(text: &str) -> Hosts {
        let mut hosts = Hosts::default();
        for line in text.lines() {
            let line = line.split_once('#').map_or(line, |(before, _)| before);
            let mut words = line.split_ascii_whitespace();
            let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
                continue;
            };
            for name in words {
                hosts.add(name.strip_suffix('.').unwrap_or(name), ip);
            }
        }
        hosts
    }

    /// Adds `ip` to `name`'s addresses.
    pub(crate) fn add(&mut self, name: &str, ip: IpAddr) {
        if name.is_empty() {
            return;
        }
        let hash = hash_name(&self.hasher, name);
        if let Some(e) = self.table.find_mut(hash, |e| same_name(&e.name, name)) {
            e.addresses.push(ip);
            return;
        }
        let mut addresses = Addresses::EMPTY;
        addresses.push(ip);
        let hasher = &self.hasher;
        self.table.insert_unique(
            hash,
            Entry {
                name: name.to_ascii_lowercase().into_boxed_str(),
                addresses,
            },
            |e| hash_name(hasher, &e.name),
        );
    }

    /// The addresses of `name` (without a trailing dot), if the file names
    /// it. No allocation.
    pub(crate) fn get(&self, name: &str) -> Option<&Addresses> {
        let hash = hash_name(&self.hasher, name);
        self.table
            .find(hash, |e| same_name(&e.name, name))
            .map(|e| &e.addresses)
    }

    /// Names in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.table.iter().map(|e| (&e.name, &e.addresses)))
            .finish()
    }
}
