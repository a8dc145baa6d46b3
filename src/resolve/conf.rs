//! `resolv.conf(5)`, parsed from text the driver read: name servers, the
//! search list and the options the resolver honours, with glibc's defaults
//! and limits.
//!
//! | line | effect | default, limit |
//! | --- | --- | --- |
//! | `nameserver ADDR` | an IPv4 or IPv6 server, port 53 | `127.0.0.1`; the first 3 count (glibc's `MAXNS`) |
//! | `search D1 D2 …` | the search list | none; the last `search` or `domain` line wins |
//! | `domain D` | a search list of one | |
//! | `options ndots:N` | dots a name needs to be tried as given first | 1; at most 15 |
//! | `options timeout:N` | seconds to wait for each try | 5; 1 to 30 |
//! | `options attempts:N` | rounds over the servers | 2; 1 to 5 |
//! | `options rotate` | start each lookup at the next server | off |
//!
//! Lines starting with `#` or `;` are comments, and so is the rest of a line
//! from a word starting with either. Anything not understood is skipped, as
//! glibc skips it: a resolv.conf never fails to parse. An IPv6 server with a
//! zone (`fe80::1%eth0`) is skipped, since mapping the zone to an interface
//! index is I/O. glibc waits longer on later rounds (`timeout` doubled per
//! round, divided among the servers); this resolver waits `timeout` on every
//! try, so a lookup fails after `attempts × servers × timeout` at most.
//!
//! The driver may also apply `RES_OPTIONS` with [`ResolvConf::apply_options`]
//! and `LOCALDOMAIN` by setting [`ResolvConf::search`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::name::HostName;
use crate::time::Millis;

/// Name servers glibc uses at most.
pub(crate) const MAX_NAMESERVERS: usize = 3;
/// The DNS port.
pub(crate) const DNS_PORT: u16 = 53;

/// What a resolv.conf says. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvConf {
    /// Servers in the file's order; never empty.
    pub(crate) nameservers: Vec<SocketAddr>,
    /// Search domains, lowercase, without trailing dots.
    pub(crate) search: Vec<Box<str>>,
    /// `options ndots:N`.
    pub(crate) ndots: u8,
    /// `options timeout:N`, in milliseconds.
    pub(crate) timeout: Millis,
    /// `options attempts:N`.
    pub(crate) attempts: u8,
    /// `options rotate`.
    pub(crate) rotate: bool,
}

/// glibc's `RES_MAXNDOTS`.
const MAX_NDOTS: u8 = 15;
/// glibc's `RES_MAXRETRANS`, in seconds.
const MAX_TIMEOUT_S: u64 = 30;
/// glibc's `RES_MAXRETRY`.
const MAX_ATTEMPTS: u8 = 5;

impl Default for ResolvConf {
    /// glibc's defaults: the local server, no search list, `ndots:1
    /// timeout:5 attempts:2`.
    fn default() -> Self {
        ResolvConf {
            nameservers: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DNS_PORT)],
            search: Vec::new(),
            ndots: 1,
            timeout: 5_000,
            attempts: 2,
            rotate: false,
        }
    }
}

impl ResolvConf {
    /// Parses resolv.conf text. Never fails; see the module docs for what
    /// is skipped.
    pub(crate) fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        let mut servers = Vec::new();
        for line in text.lines() {
            let mut words = line
                .split_ascii_whitespace()
                .take_while(|w| !w.starts_with(['#', ';']));
            match words.next() {
                Some("nameserver") => {
                    let ip = words.next().and_then(|w| w.parse::<IpAddr>().ok());
                    if let Some(ip) = ip.filter(|_| servers.len() < MAX_NAMESERVERS) {
                        servers.push(SocketAddr::new(ip, DNS_PORT));
                    }
                }
                Some("search") => conf.search = words.filter_map(search_domain).collect(),
                Some("domain") => {
                    conf.search = words.next().and_then(search_domain).into_iter().collect()
                }
                Some("options") => words.for_each(|w| conf.apply_option(w)),
                _ => {}
            }
        }
        if !servers.is_empty() {
            conf.nameservers = servers;
        }
        conf
    }

    /// Applies options in resolv.conf's `options` syntax (`ndots:2
    /// rotate`), as glibc applies the `RES_OPTIONS` environment variable
    /// after the file.
    pub(crate) fn apply_options(&mut self, options: &str) {
        options
            .split_ascii_whitespace()
            .for_each(|w| self.apply_option(w));
    }

    fn apply_option(&mut self, option: &str) {
        let (name, value) = match option.split_once(':') {
            Some((n, v)) => (n, v.parse::<u64>().ok()),
            None => (option, None),
        };
        match (name, value) {
            ("ndots", Some(n)) => {
                self.ndots = u8::try_from(n).unwrap_or(MAX_NDOTS).min(MAX_NDOTS);
            }
            ("timeout", Some(n)) => self.timeout = n.clamp(1, MAX_TIMEOUT_S) * 1000,
            ("attempts", Some(n)) => {
                self.attempts = u8::try_from(n)
                    .unwrap_or(MAX_ATTEMPTS)
                    .clamp(1, MAX_ATTEMPTS);
            }
            ("rotate", None) => self.rotate = true,
            _ => {}
        }
    }
}

/// A search domain as stored: checked, lowercase, no trailing dot; the root
/// (`.`) and invalid names are dropped.
fn search_domain(word: &str) -> Option<Box<str>> {
    let name = HostName::parse(word).ok()?;
    Some(name.text.to_ascii_lowercase().into_boxed_str())
}
