//! The sans-I/O resolver: host names to addresses without blocking, with no
//! sockets and no clock.
//!
//! # How a lookup flows
//!
//! ```text
//! lookup(name) ─┬─ IP literal, hosts file, localhost, cache hit ───────────────▶ answer queued
//!               ├─ same name already in flight ──▶ joins it (one more interest)
//!               └─ new Resolution ──▶ candidate names (search list, ndots), first one:
//!
//!   per candidate, AAAA and A in parallel, each a sequence of tries:
//!
//!   try (new QueryId, new socket, random id) ── server k of attempts × servers
//!     ├─ reply for the question, from the server ──▶ Found │ NoData │ NxDomain ──┐
//!     ├─ TC bit ─────────────▶ try again over TCP, same server, not counted      │
//!     ├─ SERVFAIL/REFUSED ─┐                                                     │
//!     ├─ timeout ──────────┼─▶ next try (next server); none left: Failed ────────┤
//!     ├─ socket error ─────┘                                                     │
//!     └─ anything else (wrong id, question or source): ignored, keeps waiting    │
//!                                                                                ▼
//!   both families done ──▶ any address: answer every interest, cache it
//!                          NXDOMAIN / NODATA / SERVFAIL: next candidate; after the
//!                            last: NODATA if any said so, else SERVFAIL if any, else
//!                            NXDOMAIN (negative answers cached, RFC 2308)
//!                          timed out / unreachable: answer that, search stops
//! ```
//!
//! 1. **Hosts, then cache.** An IP literal answers itself; then the hosts
//!    file ([`hosts`]) is looked up by the name as given, then `localhost`
//!    and `*.localhost` answer loopback (RFC 6761 §6.3) when the file does
//!    not name them, then the [`cache`]. Each of these queues the answer at
//!    once; it is still drained with [`Resolver::poll_answer`], never
//!    returned by `lookup`.
//! 2. **One resolution per name.** A lookup for a name (compared without
//!    regard to case) already being resolved joins that resolution: N
//!    concurrent lookups cost one query pair and get N answers. Each caller
//!    holds its own [`LookupId`]; [`Resolver::cancel`] drops that caller's
//!    interest only. A resolution whose every interest was cancelled still
//!    finishes and fills the cache (like the pool's orphan connect), so a
//!    retry soon after finds the answer; it stops within
//!    `attempts × servers × timeout` per candidate.
//! 3. **Search list.** The candidates are those of glibc's `res_search`
//!    ([`name::candidates`]): with `ndots` or more dots the name as given
//!    first, then with each `search` domain; with fewer, the search domains
//!    first. A trailing dot skips the list.
//! 4. **AAAA and A in parallel**, AAAA first (RFC 8305 §3), each with its
//!    own tries. Try `k` (0-based) goes to server `(first + k) % servers`,
//!    where `first` is 0, or with `options rotate` advances by one per
//!    candidate; `attempts × servers` tries in all, each waiting
//!    `timeout`. A SERVFAIL-class reply or a socket error moves on to the
//!    next try at once. A truncated reply (TC) repeats the try over TCP to
//!    the same server, and the family's later tries stay on TCP.
//! 5. **Answers.** When both families are done, every interest still
//!    waiting gets one [`Answer`] with the [`Addresses`], IPv6 and IPv4
//!    apart (the caller interleaves them, RFC 8305 §4).
//! 6. **Resolution delay** (RFC 8305 §3). When one family has addresses
//!    and the other is still asking, the interests get them early, as a
//!    *partial* answer, and stay pending for the full one: AAAA at once,
//!    A once it has waited [`ResolverConfig::resolution_delay`] for AAAA
//!    (a deadline on the wheel, cancelled if AAAA comes first). A lookup
//!    joining afterwards gets the partial answer at once. A family that
//!    fails is never waited for: the other's answer is then the full one.
//!
//! # Anti-spoofing
//!
//! Every try uses a fresh socket (so the kernel picks a fresh random source
//! port) and a fresh 16-bit id from a keyed PRF ([`rng`]); a reply counts
//! only if its source address and port are the server the try went to, its
//! id is the try's, and its question is the try's name, type and class IN
//! ([`message::check_reply`]). Anything else is dropped without effect: the
//! try keeps waiting for the real reply. When a try ends its socket is
//! closed, so a late reply to it has nowhere to land.
//!
//! # The driver's side
//!
//! Inputs take `now` in milliseconds: [`Resolver::lookup`],
//! [`Resolver::cancel`], [`Resolver::handle_udp`], [`Resolver::handle_tcp`],
//! [`Resolver::handle_io_error`], [`Resolver::handle_timeout`] (safe to call
//! at any time, spuriously too). After any of them, drain the outputs:
//!
//! - [`Resolver::poll_transmit`]: a [`Transmit`] always names a new
//!   [`QueryId`]: open a socket for it (UDP: bound to port 0, so the
//!   kernel picks a random port, and best connected to `server`, so the
//!   kernel drops other sources and reports ICMP errors; TCP: connect to
//!   `server`), send `payload`
//!   (over TCP preceded by its length as two bytes, big-endian), and report
//!   what comes back on that socket with `handle_udp` (each datagram, with
//!   its source address) or `handle_tcp` (each whole message, length
//!   prefix removed), or `handle_io_error`.
//! - [`Resolver::poll_close`]: the query's socket is no longer needed;
//!   close it. Every `QueryId` of a transmit is closed exactly once.
//! - [`Resolver::poll_answer`]: decided lookups.
//! - [`Resolver::poll_timeout`]: when to call `handle_timeout` next.
//!
//! The driver also provides the inputs of [`ResolverConfig`]: the text of
//! `/etc/resolv.conf` and `/etc/hosts` (read again when they change, by the
//! driver's policy, and handed over with [`Resolver::set_conf`] and
//! [`Resolver::set_hosts`]) and a 128-bit seed from the operating system's
//! random source (`getrandom(2)`), which keys the query ids.
//!
//! # Limits and costs
//!
//! - A hit (IP literal, hosts, localhost, cache) is O(1) and allocates
//!   nothing once the resolver is warm: one case-insensitive hash of the
//!   name into a stack buffer, a table probe, a slab insert for the
//!   interest, a queue push; the answer is a 162-byte `Copy` value.
//! - A miss allocates the candidate names, the query messages (about 40
//!   bytes each) and the cache entry's name. Parsing a reply allocates
//!   (`simple-dns` builds a `Packet`).
//! - Per resolution at most two tries are open at once, so at most two
//!   sockets, and three timers on the wheel (two tries and the resolution
//!   delay). The cache needs no timers (expiry
//!   is checked on lookup) and is bounded ([`cache`]).
//! - Every operation is O(1) in the number of lookups, resolutions and cache
//!   entries, except that finishing a resolution is linear in its interests
//!   (each gets an answer).

mod addresses;
mod cache;
mod conf;
mod error;
mod hosts;
#[cfg(test)]
mod invariants;
mod message;
mod name;
mod rng;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hashbrown::{DefaultHashBuilder, HashTable};
use slab::Slab;

use crate::index::index32;

pub(crate) use addresses::Addresses;
use cache::Cache;
pub(crate) use cache::TtlPolicy;
pub(crate) use conf::{MAX_NAMESERVERS, ResolvConf};
pub use error::ResolveError;
pub(crate) use hosts::Hosts;
use message::{Family, Reply};
use name::{HostName, hash_name, same_name};
use rng::IdSource;

use crate::time::Millis;
use crate::wheel::{TimerKey, Wheel};

/// RFC 8305 §3's recommended resolution delay, in milliseconds.
pub(crate) const DEFAULT_RESOLUTION_DELAY: Millis = 50;

/// Lookups pending at most (interests with no answer drained yet). Keeps
/// every index in 32 bits.
const MAX_PENDING: usize = 1 << 31;

/// What the resolver needs from the outside world, read by the driver.
pub(crate) struct ResolverConfig {
    /// Name servers, search list and options (`/etc/resolv.conf`).
    pub(crate) conf: ResolvConf,
    /// The hosts file (`/etc/hosts`).
    pub(crate) hosts: Hosts,
    /// Keys the query ids; must come from the OS random source. See [`rng`].
    pub(crate) seed: u128,
    /// Names the cache holds at most; 0 disables it.
    pub(crate) cache_capacity: usize,
    /// Cache lifetime clamps.
    pub(crate) ttl: TtlPolicy,
    /// RFC 8305's resolution delay: how long an A answer waits for AAAA
    /// before it is given out alone.
    pub(crate) resolution_delay: Millis,
}

impl ResolverConfig {
    /// Parses resolv.conf and hosts text (the tests' way in).
    #[cfg(test)]
    pub(crate) fn from_text(resolv_conf: &str, hosts: &str, seed: u128) -> ResolverConfig {
        ResolverConfig::new(ResolvConf::parse(resolv_conf), Hosts::parse(hosts), seed)
    }

    /// The files' contents as parsed, a 1024-name cache and the default
    /// [`TtlPolicy`].
    pub(crate) fn new(conf: ResolvConf, hosts: Hosts, seed: u128) -> ResolverConfig {
        ResolverConfig {
            conf,
            hosts,
            seed,
            cache_capacity: 1024,
            ttl: TtlPolicy::default(),
            resolution_delay: DEFAULT_RESOLUTION_DELAY,
        }
    }
}

/// One caller's lookup, from [`Resolver::lookup`] to its [`Answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LookupId {
    index: u32,
    generation: u32,
}

/// One try of one query: one socket in the driver, from its [`Transmit`] to
/// [`Resolver::poll_close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct QueryId {
    index: u32,
    generation: u32,
}

/// The transport of a try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    /// One datagram each way.
    Udp,
    /// A connection; each message preceded by its length (two bytes,
    /// big-endian), RFC 1035 §4.2.2.
    Tcp,
}

/// Send a query: open a new socket for `query` and send `payload` to
/// `server`. See the module docs, "The driver's side".
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transmit {
    /// Names the socket in every later call about it.
    pub(crate) query: QueryId,
    /// UDP or TCP.
    pub(crate) proto: Proto,
    /// The name server.
    pub(crate) server: SocketAddr,
    /// The DNS message, without a TCP length prefix.
    pub(crate) payload: Vec<u8>,
}

/// A decided lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The lookup answered.
    pub(crate) lookup: LookupId,
    /// Its addresses (at least one), or why there are none.
    pub(crate) result: Result<Addresses, ResolveError>,
    /// One family's addresses, given out before the other family is done
    /// (RFC 8305 §3): a second answer, with every address, follows (or
    /// none, if the lookup is cancelled first).
    pub(crate) partial: bool,
    /// When the addresses' lifetime ends (the cache's expiry for them):
    /// the time to ask again for a name kept in use. `Millis::MAX` for
    /// the hosts file, `localhost` and IP literals, which do not expire;
    /// 0 for a partial answer or a failure.
    pub(crate) expires: Millis,
}

/// A caller's interest in a resolution.
struct Interest {
    generation: u32,
    /// The resolution it waits for; `None` once its answer is queued.
    resolution: Option<u32>,
}

/// How one family of one candidate ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FamilyResult {
    Found { addresses: Addresses, ttl: u32 },
    NoData { negative_ttl: Option<u32> },
    NxDomain { negative_ttl: Option<u32> },
    Failed(ResolveError),
}

#[derive(Clone, Copy, Debug)]
enum FamilyState {
    Asking {
        /// The open try.
        query: u32,
        /// Tries started (a TCP repeat of a truncated try not counted).
        tries: u32,
        /// Truncated once: later tries use TCP.
        tcp: bool,
        /// The worst way a try failed so far.
        failure: Option<ResolveError>,
    },
    Done(FamilyResult),
}

/// One name being resolved, shared by every lookup of it.
struct Resolution {
    /// The name as asked, lowercase: the in-flight and cache key.
    name: Box<str>,
    candidates: Vec<Box<str>>,
    /// The candidate being asked.
    candidate: usize,
    /// Server index of try 0 for this candidate.
    first_server: usize,
    families: [FamilyState; 2],
    /// Every interest that joined; cancelled ones are skipped at the end.
    interests: Vec<LookupId>,
    /// Interests still waiting.
    live: usize,
    /// Some candidate said NODATA.
    saw_nodata: bool,
    /// Some candidate could not be answered (SERVFAIL class).
    saw_servfail: bool,
    /// Smallest negative TTL of the candidates so far; `None` once one
    /// could not be cached (no SOA, or a server failure).
    negative_ttl: Option<u32>,
    /// The addresses given out early (one family's), to every interest,
    /// joiners included; the full answer follows.
    early: Option<Addresses>,
    /// The resolution delay: A is in, AAAA is awaited until then.
    delay: Option<TimerKey>,
}

/// What a deadline on the resolver's wheel ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deadline {
    /// The open try of this index waited its `timeout`.
    Try(u32),
    /// The resolution of this index waited its resolution delay for AAAA.
    ResolutionDelay(u32),
}

/// One try on the wire.
struct Query {
    generation: u32,
    resolution: u32,
    family: Family,
    dns_id: u16,
    server: SocketAddr,
    proto: Proto,
    timer: Option<TimerKey>,
}

/// The resolver state machine. See the module docs.
pub(crate) struct Resolver {
    conf: ResolvConf,
    hosts: Hosts,
    cache: Cache,
    ttl: TtlPolicy,
    ids: IdSource,
    hasher: DefaultHashBuilder,
    /// Resolutions by name.
    in_flight: HashTable<u32>,
    resolutions: Slab<Resolution>,
    interests: Slab<Interest>,
    queries: Slab<Query>,
    /// Try deadlines and resolution delays.
    wheel: Wheel<Deadline>,
    transmits: VecDeque<Transmit>,
    closes: VecDeque<QueryId>,
    answers: VecDeque<Answer>,
    next_generation: u32,
    /// First server of the next candidate under `options rotate`.
    rotation: usize,
    /// [`ResolverConfig::resolution_delay`].
    resolution_delay: Millis,
}

impl Resolver {
    /// A resolver with an empty cache.
    pub(crate) fn new(config: ResolverConfig) -> Resolver {
        Resolver {
            conf: config.conf,
            hosts: config.hosts,
            cache: Cache::new(config.cache_capacity),
            ttl: config.ttl,
            ids: IdSource::new(config.seed),
            hasher: DefaultHashBuilder::default(),
            in_flight: HashTable::new(),
            resolutions: Slab::new(),
            interests: Slab::new(),
            queries: Slab::new(),
            wheel: Wheel::new(),
            transmits: VecDeque::new(),
            closes: VecDeque::new(),
            answers: VecDeque::new(),
            next_generation: 0,
            rotation: 0,
            resolution_delay: config.resolution_delay,
        }
    }

    /// Replaces the resolv.conf in use (the driver read it again). Tries
    /// under way finish with the servers they went to; later tries, and
    /// later resolutions, use the new one. The cache is kept.
    pub(crate) fn set_conf(&mut self, conf: ResolvConf) {
        self.conf = conf;
    }

    /// Replaces the hosts table in use (the driver read the file again):
    /// the next lookup sees it.
    pub(crate) fn set_hosts(&mut self, hosts: Hosts) {
        self.hosts = hosts;
    }

    // ----- inputs ------------------------------------------------------

    /// Starts a lookup of `name` (a host name, or an IP literal that answers
    /// itself). Its [`Answer`] is queued for [`poll_answer`](Self::poll_answer),
    /// never returned here, even from the hosts file or the cache. Joins a
    /// resolution of the same name already under way.
    ///
    /// # Errors
    ///
    /// [`ResolveError::InvalidName`] if the name is not a valid host name
    /// (see [`HostName::parse`]); [`ResolveError::TooManyLookups`] past 2^31
    /// pending lookups.
    pub(crate) fn lookup(&mut self, name: &str, now: Millis) -> Result<LookupId, ResolveError> {
        if self.interests.len() >= MAX_PENDING {
            return Err(ResolveError::TooManyLookups);
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            let mut a = Addresses::EMPTY;
            a.push(ip);
            return Ok(self.answer_now(Ok(a)));
        }
        let host = HostName::parse(name)?;
        if let Some(&a) = self.hosts.get(host.text) {
            return Ok(self.answer_now(Ok(a)));
        }
        if is_localhost(host.text) {
            let mut a = Addresses::EMPTY;
            a.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
            a.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
            return Ok(self.answer_now(Ok(a)));
        }
        if let Some((cached, expires)) = self.cache.get_entry(name, now) {
            let expires = if cached.is_ok() { expires } else { 0 };
            return Ok(self.answer_expiring(cached, expires));
        }
        let hash = hash_name(&self.hasher, name);
        let resolutions = &self.resolutions;
        let joined = self
            .in_flight
            .find(hash, |&r| {
                resolutions
                    .get(r as usize)
                    .is_some_and(|res| same_name(&res.name, name))
            })
            .copied();
        let (r, new) = match joined {
            Some(r) => (r, false),
            None => {
                let candidates = name::candidates(host, &self.conf);
                let r = index32(self.resolutions.insert(Resolution {
                    name: name.to_ascii_lowercase().into_boxed_str(),
                    candidates,
                    candidate: 0,
                    first_server: 0,
                    // Placeholders: `start_candidate` sets both asking.
                    families: [FamilyState::Done(FamilyResult::Failed(ResolveError::TimedOut)); 2],
                    interests: Vec::new(),
                    live: 0,
                    saw_nodata: false,
                    saw_servfail: false,
                    negative_ttl: Some(u32::MAX),
                    early: None,
                    delay: None,
                }));
                let (hasher, resolutions) = (&self.hasher, &self.resolutions);
                self.in_flight.insert_unique(hash, r, |&i| {
                    resolutions
                        .get(i as usize)
                        .map_or(0, |res| hash_name(hasher, &res.name))
                });
                (r, true)
            }
        };
        let id = self.new_interest(Some(r));
        let mut early = None;
        if let Some(res) = self.resolutions.get_mut(r as usize) {
            res.interests.push(id);
            res.live += 1;
            early = res.early;
        }
        if let Some(addresses) = early {
            // Joined after one family was given out: that now, the rest
            // with everyone else's.
            self.answers.push_back(Answer {
                lookup: id,
                result: Ok(addresses),
                partial: true,
                expires: 0,
            });
        }
        // Started after the interest joined: a resolution that ends at once
        // (no name server configured) still answers it.
        if new {
            self.start_candidate(r, now);
        }
        Ok(id)
    }

    /// Drops one caller's interest: no answer will be delivered for `id`.
    /// Other lookups of the same name go on; so does the resolution itself
    /// (it fills the cache). Returns whether `id` was pending.
    pub(crate) fn cancel(&mut self, id: LookupId) -> bool {
        if !self.is_pending(id) {
            return false;
        }
        let Some(interest) = self.interests.try_remove(id.index as usize) else {
            return false;
        };
        if let Some(res) = interest
            .resolution
            .and_then(|r| self.resolutions.get_mut(r as usize))
        {
            res.live -= 1;
            // Keep the list from growing under lookup/cancel churn.
            if res.interests.len() > 2 * res.live + 8 {
                let interests = &self.interests;
                res.interests.retain(|i| {
                    interests
                        .get(i.index as usize)
                        .is_some_and(|e| e.generation == i.generation)
                });
            }
        }
        true
    }

    /// A datagram arrived on `query`'s UDP socket from `from`. Taken only if
    /// it comes from the try's server and answers its question (see
    /// "Anti-spoofing"); otherwise ignored. A datagram for a closed query is
    /// ignored.
    pub(crate) fn handle_udp(
        &mut self,
        query: QueryId,
        from: SocketAddr,
        bytes: &[u8],
        now: Millis,
    ) {
        let Some(q) = self.query(query) else { return };
        if q.proto != Proto::Udp
            || from.ip().to_canonical() != q.server.ip().to_canonical()
            || from.port() != q.server.port()
        {
            return;
        }
        self.handle_message(query.index, bytes, now);
    }

    /// One whole DNS message (length prefix removed) arrived on `query`'s
    /// TCP connection. Taken only if it answers the try's question.
    pub(crate) fn handle_tcp(&mut self, query: QueryId, bytes: &[u8], now: Millis) {
        let Some(q) = self.query(query) else { return };
        if q.proto != Proto::Tcp {
            return;
        }
        self.handle_message(query.index, bytes, now);
    }

    /// `query`'s socket failed (could not be opened, connect refused, ICMP
    /// unreachable, TCP closed before a whole reply): the try ends now and
    /// the next one starts. `errno` is the OS error number, if any.
    pub(crate) fn handle_io_error(&mut self, query: QueryId, errno: Option<i32>, now: Millis) {
        if self.query(query).is_none() {
            return;
        }
        self.try_failed(query.index, ResolveError::Unreachable { errno }, now);
    }

    /// Fires every deadline at or before `now`: each such try ends and the
    /// next one starts; a resolution whose A answer waited its resolution
    /// delay for AAAA gives it out. Safe to call at any time.
    pub(crate) fn handle_timeout(&mut self, now: Millis) {
        while let Some((_, deadline)) = self.wheel.poll(now) {
            match deadline {
                Deadline::Try(q) => {
                    if let Some(query) = self.queries.get_mut(q as usize) {
                        query.timer = None;
                        self.try_failed(q, ResolveError::TimedOut, now);
                    }
                }
                Deadline::ResolutionDelay(r) => {
                    if let Some(res) = self.resolutions.get_mut(r as usize) {
                        res.delay = None;
                        self.answer_early(r);
                    }
                }
            }
        }
    }

    // ----- outputs -----------------------------------------------------

    /// The next query to send, if any. Drain after every input.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next query whose socket is no longer needed, if any.
    pub(crate) fn poll_close(&mut self) -> Option<QueryId> {
        self.closes.pop_front()
    }

    /// The next answer, if any: a partial one leaves the lookup pending
    /// (its full answer follows), any other ends it. Cancelled lookups are
    /// skipped.
    pub(crate) fn poll_answer(&mut self) -> Option<Answer> {
        while let Some(answer) = self.answers.pop_front() {
            if self.is_pending(answer.lookup) {
                if !answer.partial {
                    self.interests.remove(answer.lookup.index as usize);
                }
                return Some(answer);
            }
        }
        None
    }

    /// Whether any deadline is set (a try open, a resolution delay
    /// running): O(1).
    pub(crate) fn has_deadlines(&self) -> bool {
        !self.wheel.is_empty()
    }

    /// The next deadline, or a lower bound of it; `None` if none is set.
    pub(crate) fn poll_timeout(&self) -> Option<Millis> {
        self.wheel.next_deadline()
    }

    // ----- tries -------------------------------------------------------

    /// Starts the current candidate of resolution `r`: both families' first
    /// tries.
    fn start_candidate(&mut self, r: u32, now: Millis) {
        let servers = self.conf.nameservers.len().max(1);
        let first = if self.conf.rotate {
            let f = self.rotation % servers;
            self.rotation = (self.rotation + 1) % servers;
            f
        } else {
            0
        };
        let Some(res) = self.resolutions.get_mut(r as usize) else {
            return;
        };
        res.first_server = first;
        for family in Family::BOTH {
            res.families[family.index()] = FamilyState::Asking {
                query: u32::MAX,
                tries: 0,
                tcp: false,
                failure: None,
            };
        }
        for family in Family::BOTH {
            self.send_try(r, family, None, now);
        }
    }

    /// Sends the next try of `family` for resolution `r`'s candidate, or,
    /// with `repeat_to`, repeats the try just truncated over TCP to that
    /// server. With no try left the family is done: failed.
    fn send_try(&mut self, r: u32, family: Family, repeat_to: Option<SocketAddr>, now: Millis) {
        let servers = self.conf.nameservers.len();
        let max_tries = u32::from(self.conf.attempts) * u32::try_from(servers).unwrap_or(u32::MAX);
        let Some(res) = self.resolutions.get_mut(r as usize) else {
            return;
        };
        let FamilyState::Asking {
            query,
            tries,
            tcp,
            failure,
        } = &mut res.families[family.index()]
        else {
            return;
        };
        let server = match repeat_to {
            Some(s) => s,
            None if *tries >= max_tries || servers == 0 => {
                let error = match failure {
                    Some(e) => *e,
                    None if servers == 0 => ResolveError::Unreachable { errno: None },
                    None => ResolveError::TimedOut,
                };
                self.family_done(r, family, FamilyResult::Failed(error), now);
                return;
            }
            None => {
                let k = (res.first_server + *tries as usize) % servers;
                *tries += 1;
                self.conf.nameservers[k]
            }
        };
        let proto = if *tcp { Proto::Tcp } else { Proto::Udp };
        let dns_id = self.ids.next_id();
        let payload = res
            .candidates
            .get(res.candidate)
            .and_then(|name| message::build_query(dns_id, name, family));
        let Some(payload) = payload else {
            // Candidates are checked names; one the DNS library refuses
            // ends the family rather than panicking.
            let error = ResolveError::InvalidName {
                reason: "the DNS library refused the name",
            };
            self.family_done(r, family, FamilyResult::Failed(error), now);
            return;
        };
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let q = index32(self.queries.insert(Query {
            generation,
            resolution: r,
            family,
            dns_id,
            server,
            proto,
            timer: None,
        }));
        *query = q;
        let timer = self
            .wheel
            .insert(now.saturating_add(self.conf.timeout), Deadline::Try(q));
        if let Some(entry) = self.queries.get_mut(q as usize) {
            entry.timer = Some(timer);
        }
        self.transmits.push_back(Transmit {
            query: QueryId {
                index: q,
                generation,
            },
            proto,
            server,
            payload,
        });
    }

    /// A message arrived for open try `q`: checks it and acts on it.
    fn handle_message(&mut self, q: u32, bytes: &[u8], now: Millis) {
        let Some(query) = self.queries.get(q as usize) else {
            return;
        };
        let (r, family, proto, server) =
            (query.resolution, query.family, query.proto, query.server);
        let Some(name) = self
            .resolutions
            .get(r as usize)
            .and_then(|res| res.candidates.get(res.candidate))
        else {
            return;
        };
        let Some(reply) = message::check_reply(bytes, query.dns_id, name, family) else {
            return;
        };
        let result = match reply {
            Reply::Truncated if proto == Proto::Udp => {
                self.end_try(q);
                if let Some(FamilyState::Asking { tcp, .. }) = self
                    .resolutions
                    .get_mut(r as usize)
                    .map(|res| &mut res.families[family.index()])
                {
                    *tcp = true;
                }
                self.send_try(r, family, Some(server), now);
                return;
            }
            // Truncated over TCP: the answer cannot be had from this server.
            Reply::Truncated | Reply::ServerFailure => {
                self.try_failed(q, ResolveError::ServerFailure, now);
                return;
            }
            Reply::Found { addresses, ttl } => FamilyResult::Found { addresses, ttl },
            Reply::NoData { negative_ttl } => FamilyResult::NoData { negative_ttl },
            Reply::NxDomain { negative_ttl } => FamilyResult::NxDomain { negative_ttl },
        };
        self.end_try(q);
        self.family_done(r, family, result, now);
    }

    /// Open try `q` failed with `error` (timeout, socket error, server
    /// failure): it ends, and the family's next try starts.
    fn try_failed(&mut self, q: u32, error: ResolveError, now: Millis) {
        let Some(query) = self.queries.get(q as usize) else {
            return;
        };
        let (r, family) = (query.resolution, query.family);
        self.end_try(q);
        if let Some(FamilyState::Asking { failure, .. }) = self
            .resolutions
            .get_mut(r as usize)
            .map(|res| &mut res.families[family.index()])
        {
            *failure = Some(worse(*failure, error));
        }
        self.send_try(r, family, None, now);
    }

    /// Forgets try `q`: its timer is cancelled and its socket closed.
    fn end_try(&mut self, q: u32) {
        let Some(mut query) = self.queries.try_remove(q as usize) else {
            return;
        };
        if let Some(t) = query.timer.take() {
            self.wheel.cancel(t);
        }
        self.closes.push_back(QueryId {
            index: q,
            generation: query.generation,
        });
    }

    // ----- results -----------------------------------------------------

    /// `family` of resolution `r`'s candidate is done; with both done, the
    /// candidate is. With the other still asking, addresses found are
    /// given out early (RFC 8305 §3): AAAA at once, A after the resolution
    /// delay unless AAAA comes first.
    fn family_done(&mut self, r: u32, family: Family, result: FamilyResult, now: Millis) {
        let delay = self.resolution_delay;
        let Some(res) = self.resolutions.get_mut(r as usize) else {
            return;
        };
        res.families[family.index()] = FamilyState::Done(result);
        if let [FamilyState::Done(v6), FamilyState::Done(v4)] = res.families {
            self.candidate_done(r, v6, v4, now);
            return;
        }
        if !matches!(result, FamilyResult::Found { .. }) || res.early.is_some() {
            return;
        }
        if family == Family::V6 || delay == 0 {
            self.answer_early(r);
        } else if res.delay.is_none() {
            let timer = self
                .wheel
                .insert(now.saturating_add(delay), Deadline::ResolutionDelay(r));
            res.delay = Some(timer);
        }
    }

    /// Gives resolution `r`'s addresses found so far to every interest, as
    /// a partial answer; the full one follows when the other family is done.
    fn answer_early(&mut self, r: u32) {
        let Some(res) = self.resolutions.get_mut(r as usize) else {
            return;
        };
        if res.early.is_some() {
            return;
        }
        if let Some(t) = res.delay.take() {
            self.wheel.cancel(t);
        }
        let mut addresses = Addresses::EMPTY;
        for state in &res.families {
            if let FamilyState::Done(FamilyResult::Found { addresses: a, .. }) = state {
                addresses.extend(a);
            }
        }
        if addresses.is_empty() {
            return;
        }
        res.early = Some(addresses);
        for &id in &res.interests {
            if self
                .interests
                .get(id.index as usize)
                .is_some_and(|i| i.generation == id.generation && i.resolution == Some(r))
            {
                self.answers.push_back(Answer {
                    lookup: id,
                    result: Ok(addresses),
                    partial: true,
                    expires: 0,
                });
            }
        }
    }

    /// Both families of the current candidate are done: answer, or move on
    /// to the next candidate.
    fn candidate_done(&mut self, r: u32, v6: FamilyResult, v4: FamilyResult, now: Millis) {
        let ttl = self.ttl;
        let Some(res) = self.resolutions.get_mut(r as usize) else {
            return;
        };
        let results = [v6, v4];
        let mut addresses = Addresses::EMPTY;
        let mut found_ttl = None::<u32>;
        for result in &results {
            if let FamilyResult::Found {
                addresses: a,
                ttl: t,
            } = result
            {
                addresses.extend(a);
                found_ttl = Some(found_ttl.map_or(*t, |f| f.min(*t)));
            }
        }
        if let Some(found_ttl) = found_ttl {
            // A family without addresses is asked again as often as a
            // negative answer would be.
            let mut lifetime = ttl.positive(found_ttl);
            for result in &results {
                let cap = match result {
                    FamilyResult::Found { .. } => continue,
                    FamilyResult::NoData {
                        negative_ttl: Some(t),
                    }
                    | FamilyResult::NxDomain {
                        negative_ttl: Some(t),
                    } => ttl.negative(Some(*t)),
                    _ => ttl.negative_cap,
                };
                lifetime = lifetime.min(cap);
            }
            self.finish(r, Ok(addresses), lifetime, now);
            return;
        }
        let has = |f: fn(&FamilyResult) -> bool| results.iter().any(f);
        let negative = |x: &FamilyResult| match x {
            FamilyResult::NoData { negative_ttl } | FamilyResult::NxDomain { negative_ttl } => {
                *negative_ttl
            }
            _ => None,
        };
        if has(|r| matches!(r, FamilyResult::NxDomain { .. })) {
            // NXDOMAIN is about the name: the other family cannot differ.
            let t = results
                .iter()
                .filter(|r| matches!(r, FamilyResult::NxDomain { .. }))
                .map(negative)
                .min()
                .flatten();
            res.negative_ttl = min_ttl(res.negative_ttl, t);
        } else if let Some(stop) = results.iter().find_map(|r| match r {
            FamilyResult::Failed(
                e @ (ResolveError::TimedOut | ResolveError::Unreachable { .. }),
            ) => Some(*e),
            _ => None,
        }) {
            // The servers did not answer: another candidate would not fare
            // better, and "no such name" would be a guess.
            self.finish(r, Err(stop), 0, now);
            return;
        } else if has(|r| matches!(r, FamilyResult::Failed(_))) {
            res.saw_servfail = true;
            res.negative_ttl = None;
        } else {
            res.saw_nodata = true;
            let t = results.iter().map(negative).min().flatten();
            res.negative_ttl = min_ttl(res.negative_ttl, t);
        }
        if res.candidate + 1 < res.candidates.len() {
            res.candidate += 1;
            self.start_candidate(r, now);
            return;
        }
        let error = if res.saw_nodata {
            ResolveError::NoData
        } else if res.saw_servfail {
            ResolveError::ServerFailure
        } else {
            ResolveError::NxDomain
        };
        let lifetime = match error {
            ResolveError::NoData | ResolveError::NxDomain if !res.saw_servfail => {
                ttl.negative(res.negative_ttl)
            }
            _ => 0,
        };
        self.finish(r, Err(error), lifetime, now);
    }

    /// Resolution `r` is decided: every interest still waiting gets the
    /// answer, the cache keeps it for `lifetime` ms, and `r` is forgotten.
    fn finish(
        &mut self,
        r: u32,
        result: Result<Addresses, ResolveError>,
        lifetime: Millis,
        now: Millis,
    ) {
        let Some(res) = self.resolutions.try_remove(r as usize) else {
            return;
        };
        let hash = hash_name(&self.hasher, &res.name);
        if let Ok(entry) = self.in_flight.find_entry(hash, |&i| i == r) {
            entry.remove();
        }
        if let Some(t) = res.delay {
            self.wheel.cancel(t);
        }
        debug_assert!(
            self.queries.iter().all(|(_, q)| q.resolution != r),
            "resolution {r} finished with a try open"
        );
        let expires = now.saturating_add(lifetime);
        if lifetime > 0 {
            self.cache.insert(&res.name, result, expires, now);
        }
        let expires = if result.is_ok() { expires } else { 0 };
        for id in res.interests {
            if let Some(interest) = self
                .interests
                .get_mut(id.index as usize)
                .filter(|i| i.generation == id.generation && i.resolution == Some(r))
            {
                interest.resolution = None;
                self.answers.push_back(Answer {
                    lookup: id,
                    result,
                    partial: false,
                    expires,
                });
            }
        }
    }

    // ----- bookkeeping -------------------------------------------------

    /// A lookup decided at once by what does not expire (the hosts file,
    /// `localhost`, an IP literal): its answer is queued.
    fn answer_now(&mut self, result: Result<Addresses, ResolveError>) -> LookupId {
        self.answer_expiring(result, Millis::MAX)
    }

    /// A lookup decided at once, by an answer that expires at `expires`.
    fn answer_expiring(
        &mut self,
        result: Result<Addresses, ResolveError>,
        expires: Millis,
    ) -> LookupId {
        let lookup = self.new_interest(None);
        self.answers.push_back(Answer {
            lookup,
            result,
            partial: false,
            expires,
        });
        lookup
    }

    fn new_interest(&mut self, resolution: Option<u32>) -> LookupId {
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let index = index32(self.interests.insert(Interest {
            generation,
            resolution,
        }));
        LookupId { index, generation }
    }

    /// Whether `id` names a lookup whose answer was not drained yet.
    fn is_pending(&self, id: LookupId) -> bool {
        self.interests
            .get(id.index as usize)
            .is_some_and(|i| i.generation == id.generation)
    }

    fn query(&self, id: QueryId) -> Option<&Query> {
        self.queries
            .get(id.index as usize)
            .filter(|q| q.generation == id.generation)
    }
}

/// Whether `name` can be looked up: the check [`Resolver::lookup`] makes
/// ([`HostName::parse`]), with its reason if not. One pass over the bytes,
/// no allocation: `allocate` makes it for every request by name, pool hits
/// included; [`HostName::parse`] runs only to name what is wrong.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    let text = name.strip_suffix('.').unwrap_or(name);
    let mut fine = !text.is_empty() && text.len() <= name::MAX_NAME_LEN;
    // Labels are found with memchr; each byte is looked up once.
    for label in text.as_bytes().split(|&b| b == b'.') {
        fine &= !label.is_empty()
            && label.len() <= name::MAX_LABEL_LEN
            && label.iter().all(|&b| LABEL_BYTE[usize::from(b)]);
    }
    if fine {
        return Ok(());
    }
    match HostName::parse(name) {
        Err(ResolveError::InvalidName { reason }) => Err(reason),
        // Not expected: the loop above is the parser's rules.
        _ => Err("the host name is invalid"),
    }
}

/// The bytes a label may hold: ASCII letters, digits, `-` and `_`.
static LABEL_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut c: u8 = 0;
    loop {
        table[c as usize] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        if c == u8::MAX {
            break table;
        }
        c += 1;
    }
};

/// `localhost` and names under it (RFC 6761 §6.3).
fn is_localhost(name: &str) -> bool {
    let n = name.len();
    name.eq_ignore_ascii_case("localhost")
        || (n > 10
            && name.is_char_boundary(n - 10)
            && name[n - 10..].eq_ignore_ascii_case(".localhost"))
}

/// The more telling of two try failures: a server that answered with a
/// failure says more than silence, and silence more than a socket error.
fn worse(a: Option<ResolveError>, b: ResolveError) -> ResolveError {
    let rank = |e: ResolveError| match e {
        ResolveError::ServerFailure => 2,
        ResolveError::TimedOut => 1,
        _ => 0,
    };
    match a {
        Some(a) if rank(a) >= rank(b) => a,
        _ => b,
    }
}

/// The smaller of two negative TTLs; unknown (`None`) wins, as it means
/// "do not cache".
fn min_ttl(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    Some(a?.min(b?))
}
