//! Host names in the driver: the resolver's sockets, and Happy Eyeballs.
//!
//! # Where resolution sits
//!
//! Inside the connect phase, so the pool core does not know names exist.
//! The pool keys a request [by name](crate::Request::host) by the name and
//! asks for a connect as for any target; the driver, on that
//! `Command::Connect`, starts a lookup instead of a socket. The slot stays
//! `Connecting` in the pool throughout, so the request's one deadline
//! covers lookup, connect and TLS handshake, and whichever comes first
//! (the deadline, a failure, a connection) is the request's one outcome:
//!
//! ```text
//! Command::Connect (name) ─▶ lookup ──answer──▶ attempt 1 ──connected──▶ winner: reregistered
//!        │                    │   └─ failed: handle_connect_failed      │   under the slot's token,
//!        │                    │      (function "resolve")               │   then TLS, handle_connected
//!        │                    │                                         │
//!        │                    │      attempt 1 silent for the delay ────┤─▶ attempt 2 in parallel, …
//!        │                    │      attempt k failed ──────────────────┘─▶ attempt k+1 at once
//!        │                    │      every attempt failed: handle_connect_failed ("connect")
//!        └─ Command::Close (deadline, deallocated orphan's deadline, shutdown): the lookup
//!           interest is cancelled, attempts closed, the Happy Eyeballs timer cancelled
//! ```
//!
//! A deallocated request leaves an orphan slot, as for any connect in
//! progress: its lookup and attempts go on, and the connection idles in the
//! pool (or closes at the request's old deadline).
//!
//! # Happy Eyeballs (RFC 8305)
//!
//! The lookup does not wait for both families (§3): the resolver gives one
//! family's addresses out early as a *partial* answer (AAAA at once, A
//! after [`happy_eyeballs_resolution_delay`](crate::Config::happy_eyeballs_resolution_delay)),
//! the dial starts on them, and the full answer adds the other family's
//! addresses behind those already tried. While the lookup is pending, a
//! dial whose every attempt failed waits for it instead of failing; a dial
//! that wins cancels it.
//!
//! The answer's addresses are tried in the interleaved order (IPv6 first,
//! then alternating families, §4), restricted to the bind address's family
//! when there is one. Each attempt that has neither connected nor failed
//! after [`happy_eyeballs_delay`](crate::Config::happy_eyeballs_delay)
//! starts the next in parallel; a failed attempt starts the next at once;
//! the first to connect wins and the others are closed. The delay timers
//! live on a small wheel of the driver's (one timer per dialling slot at
//! most), included in the tick's wait and in `next_timeout`.
//!
//! # Tokens
//!
//! Every socket here is registered under a token with [`AUX_BIT`] set: the
//! slot tokens never have it (their generation has 30 bits), nor do the
//! caller's (the bit below theirs). The rest of the token is an index into
//! `aux` and its generation, as for slots. An attempt is registered under
//! its own token, since two attempts of one slot may be in flight; the
//! winner is moved to the slot's token with one `epoll_ctl(MOD)`, so from
//! then on it is a slot's socket like any other (one registration from
//! connect to close, as the hit path requires). That costs one syscall per
//! new connection by name, next to a DNS exchange and a TCP handshake.
//!
//! # Costs
//!
//! Nothing here runs for a numeric request: its connect is the plain one,
//! and the tick skips the resolver and the timers while neither has work
//! (one branch). A pooled connection for a name is reused without a lookup.
//! A lookup answered from the hosts file or the resolver's cache opens no
//! socket; one sent to a name server opens a socket per try (a fresh
//! random source port each, see the resolver's anti-spoofing).

mod refresh;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Token};
use slab::Slab;

use super::files::ResolverFiles;
use super::{CALLER_BIT, Driver, SocketEntry, connect_result, token};
use crate::config::Config;
use crate::error::{ConnectError, Error, Function};
use crate::net;
use crate::pool::{Phase, SlotId};
use crate::request::Host;
use crate::resolve::{
    Addresses, Answer, LookupId, Proto, QueryId, ResolveError, Resolver, ResolverConfig, Transmit,
    TtlPolicy,
};
use crate::time::{Millis, millis_ceil};
use crate::wheel::{TimerKey, Wheel};

/// Set on the token of every socket of this module (DNS queries and
/// connection attempts), and on no other: the bit below the caller's.
pub(in crate::reactor) const AUX_BIT: usize = CALLER_BIT >> 1;

/// Generations of `aux` entries: 30 bits, like slots', so the two top bits
/// of a token stay clear.
const AUX_GENERATION_MASK: u32 = u32::MAX >> 2;

/// Receive buffer size: the largest UDP payload, so no datagram is cut.
const RECV_BUFFER: usize = 65_535;

/// The driver's side of host names. See the module docs.
pub(in crate::reactor) struct Names {
    pub(in crate::reactor) resolver: Resolver,
    /// DNS sockets and connection attempts, by the index in their token.
    aux: Slab<Aux>,
    next_generation: u32,
    /// The socket of each open query.
    queries: HashMap<QueryId, u32>,
    /// The slot each pending lookup dials for.
    lookups: HashMap<LookupId, SlotId>,
    /// Happy Eyeballs: when a dialling slot starts its next attempt; and
    /// when a watched name is looked up again.
    timers: Wheel<NameTimer>,
    /// Names with connections, refreshed while in use.
    watches: refresh::Watches,
    /// [`Config::happy_eyeballs_delay`], in milliseconds.
    delay: Millis,
    /// For datagrams and TCP reads; allocated on first use.
    buf: Vec<u8>,
    /// The resolver may have output to drain.
    dirty: bool,
    /// Addresses of connections by name closed since the last tick's
    /// lifecycle events, so that their `Closed` events can name them.
    closed_peers: Vec<(SlotId, SocketAddr)>,
    /// `resolv.conf` and the hosts file, read again when they change.
    files: ResolverFiles,
}

/// What a deadline on the names wheel is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameTimer {
    /// A dialling slot's next Happy Eyeballs attempt.
    Attempt(SlotId),
    /// A watched name's refresh, by its watch.
    Refresh(u32),
}

struct Aux {
    generation: u32,
    socket: AuxSocket,
}

enum AuxSocket {
    /// A UDP query, connected to its server.
    Udp { query: QueryId, socket: UdpSocket },
    /// A TCP query: the length-prefixed message to send, and what came back.
    Tcp {
        query: QueryId,
        stream: TcpStream,
        connected: bool,
        out: Vec<u8>,
        sent: usize,
        received: Vec<u8>,
    },
    /// One Happy Eyeballs connection attempt for `slot`.
    Attempt {
        slot: SlotId,
        stream: TcpStream,
        addr: SocketAddr,
    },
}

/// What a slot of a target given by name holds besides its socket: boxed
/// in the slot's [`SocketEntry`] from the connect command to the close.
pub(super) struct Named {
    /// The slot's generation: the entry outlives no slot, but lifecycle
    /// events are matched to it after the fact.
    generation: u32,
    /// The address the winning attempt reached.
    peer: Option<SocketAddr>,
    /// The watch of its name it counts in, once connected (refresh on).
    watch: Option<u32>,
    /// Until an attempt wins.
    dial: Option<Dial>,
}

impl Named {
    /// The address `slot`'s socket reached, if `named` is that slot's and
    /// it has connected.
    pub(super) fn peer_of(named: Option<&Named>, slot: SlotId) -> Option<SocketAddr> {
        named
            .filter(|n| n.generation == slot.generation)
            .and_then(|n| n.peer)
    }
}

/// A slot connecting to a name: its lookup, then its attempts.
pub(super) struct Dial {
    /// Until the answer comes.
    lookup: Option<LookupId>,
    port: u16,
    bind: Option<IpAddr>,
    /// The addresses to try, in order, and the next one.
    addrs: Vec<IpAddr>,
    next: usize,
    /// Attempts in flight, by `aux` index.
    attempts: Vec<u32>,
    /// When to start the next attempt if none has connected.
    timer: Option<TimerKey>,
    /// Why the last attempt failed: the outcome if all fail.
    last_error: Option<ConnectError>,
    /// The answer dialled on, and when it expires (0: a partial one).
    answer: Addresses,
    expires: Millis,
}

impl Names {
    /// Reads the resolver's files named by `config` and seeds its query
    /// ids from the kernel's random source.
    ///
    /// A missing file gives that file's defaults; a file that exists but
    /// cannot be read (permissions, a directory) is
    /// [`Error::InvalidConfig`] naming the field, and a system out of
    /// descriptors or memory [`Error::Io`]. Text that does not parse
    /// is skipped line by line, never an error (as glibc does); bytes that
    /// are not UTF-8 are read as replacement characters, so the lines
    /// they are on are skipped.
    pub(in crate::reactor) fn new(config: &Config) -> Result<Names, Error> {
        let (files, conf, hosts) = ResolverFiles::load(config)?;
        let mut rc = ResolverConfig::new(conf, hosts, net::random_seed());
        rc.cache_capacity = config.dns_cache_size;
        rc.ttl = TtlPolicy {
            ttl_floor: millis_ceil(config.dns_ttl_floor),
            ttl_cap: millis_ceil(config.dns_ttl_cap),
            negative_cap: millis_ceil(config.dns_negative_ttl_cap),
        };
        rc.resolution_delay = millis_ceil(config.happy_eyeballs_resolution_delay);
        Ok(Names {
            resolver: Resolver::new(rc),
            aux: Slab::new(),
            next_generation: 0,
            queries: HashMap::new(),
            lookups: HashMap::new(),
            timers: Wheel::new(),
            watches: refresh::Watches::new(config.dns_refresh, millis_ceil(config.dns_ttl_floor)),
            delay: millis_ceil(config.happy_eyeballs_delay),
            buf: Vec::new(),
            dirty: false,
            closed_peers: Vec::new(),
            files,
        })
    }

    /// Whether the resolver may have output to carry out.
    #[inline]
    pub(in crate::reactor) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether a deadline of the resolver, of Happy Eyeballs or of a name's
    /// refresh is set: the tick skips all three while not (the numeric hit
    /// path's one branch).
    pub(in crate::reactor) fn has_timers(&self) -> bool {
        self.resolver.has_deadlines() || !self.timers.is_empty()
    }

    /// The earliest deadline here, or a lower bound of it.
    pub(in crate::reactor) fn poll_timeout(&self) -> Option<Millis> {
        match (self.resolver.poll_timeout(), self.timers.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `slot`, of a target given by name, closed: a dial under way is
    /// abandoned, and the address it had reached is kept for its `Closed`
    /// lifecycle event.
    pub(super) fn closed(&mut self, slot: SlotId, named: Named) {
        if let Some(dial) = named.dial {
            self.abandon(dial);
        }
        if let Some(w) = named.watch {
            self.unwatch(w);
        }
        if let Some(peer) = named.peer {
            self.closed_peers.push((slot, peer));
        }
    }

    /// The address a connection by name closed since the last tick had.
    pub(super) fn closed_peer(&self, slot: SlotId) -> Option<SocketAddr> {
        self.closed_peers
            .iter()
            .find(|(s, _)| *s == slot)
            .map(|&(_, peer)| peer)
    }

    /// The tick's lifecycle events are out: the closed ones' addresses are
    /// not needed any more.
    pub(super) fn forget_closed(&mut self) {
        self.closed_peers.clear();
    }

    /// Forgets a dial whose slot closed: its lookup interest is cancelled
    /// (the resolution itself goes on and fills the cache), its attempts
    /// closed, its timer cancelled.
    fn abandon(&mut self, dial: Dial) {
        if let Some(lookup) = dial.lookup {
            self.resolver.cancel(lookup);
            self.lookups.remove(&lookup);
        }
        for index in dial.attempts {
            self.aux.try_remove(index as usize);
        }
        if let Some(timer) = dial.timer {
            self.timers.cancel(timer);
        }
    }

    /// Registers `socket` under a fresh token of its own and keeps it;
    /// on failure the socket is closed.
    fn register_aux(
        &mut self,
        registry: &mio::Registry,
        mut socket: AuxSocket,
        interest: Interest,
    ) -> io::Result<u32> {
        self.next_generation = self.next_generation.wrapping_add(1) & AUX_GENERATION_MASK;
        let generation = self.next_generation;
        let vacant = self.aux.vacant_entry();
        let index =
            u32::try_from(vacant.key()).map_err(|_| io::Error::other("too many sockets"))?;
        let source: &mut dyn mio::event::Source = match &mut socket {
            AuxSocket::Udp { socket, .. } => socket,
            AuxSocket::Tcp { stream, .. } | AuxSocket::Attempt { stream, .. } => stream,
        };
        registry.register(source, aux_token(index, generation), interest)?;
        vacant.insert(Aux { generation, socket });
        Ok(index)
    }

    /// The live entry a token names.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the token's halves are taken apart on purpose"
    )]
    fn aux_of(&self, token: Token) -> Option<u32> {
        let raw = (token.0 & !AUX_BIT) as u64;
        let index = raw as u32;
        let entry = self.aux.get(index as usize)?;
        let same = !cfg!(target_pointer_width = "64") || entry.generation == (raw >> 32) as u32;
        same.then_some(index)
    }

    /// Opens the socket of a query and sends it; a failure is reported to
    /// the resolver at once.
    fn transmit(&mut self, registry: &mio::Registry, t: Transmit, now: Millis) {
        let opened = match t.proto {
            Proto::Udp => open_udp(t.server, &t.payload).map(|socket| AuxSocket::Udp {
                query: t.query,
                socket,
            }),
            Proto::Tcp => TcpStream::connect(t.server).map(|stream| {
                let mut out = Vec::with_capacity(t.payload.len() + 2);
                let len = u16::try_from(t.payload.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&t.payload);
                AuxSocket::Tcp {
                    query: t.query,
                    stream,
                    connected: false,
                    out,
                    sent: 0,
                    received: Vec::new(),
                }
            }),
        };
        let registered = opened.and_then(|socket| {
            let interest = match t.proto {
                Proto::Udp => Interest::READABLE,
                Proto::Tcp => Interest::READABLE | Interest::WRITABLE,
            };
            self.register_aux(registry, socket, interest)
        });
        match registered {
            Ok(index) => {
                self.queries.insert(t.query, index);
            }
            Err(e) => self
                .resolver
                .handle_io_error(t.query, e.raw_os_error(), now),
        }
    }

    /// A DNS socket had readiness: read what came, send what is left.
    fn query_ready(&mut self, index: u32, now: Millis) {
        if self.buf.is_empty() {
            self.buf = vec![0; RECV_BUFFER];
        }
        let Names {
            resolver,
            aux,
            buf,
            dirty,
            ..
        } = self;
        let Some(entry) = aux.get_mut(index as usize) else {
            return;
        };
        *dirty = true;
        match &mut entry.socket {
            AuxSocket::Udp { query, socket } => loop {
                match socket.recv_from(buf) {
                    Ok((n, from)) => {
                        resolver.handle_udp(*query, from, buf.get(..n).unwrap_or_default(), now);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        // ICMP port unreachable, on a connected socket.
                        resolver.handle_io_error(*query, e.raw_os_error(), now);
                        return;
                    }
                }
            },
            AuxSocket::Tcp {
                query,
                stream,
                connected,
                out,
                sent,
                received,
            } => {
                let query = *query;
                if !*connected {
                    match connect_result(stream) {
                        None => return,
                        Some(Err(e)) => {
                            resolver.handle_io_error(query, e.raw_os_error(), now);
                            return;
                        }
                        Some(Ok(())) => *connected = true,
                    }
                }
                while *sent < out.len() {
                    match stream.write(out.get(*sent..).unwrap_or_default()) {
                        Ok(n) => *sent += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            resolver.handle_io_error(query, e.raw_os_error(), now);
                            return;
                        }
                    }
                }
                loop {
                    match stream.read(buf) {
                        Ok(0) => {
                            // Closed before a whole reply (a whole one has
                            // already ended the query: this is then ignored).
                            resolver.handle_io_error(query, None, now);
                            return;
                        }
                        Ok(n) => {
                            received.extend_from_slice(buf.get(..n).unwrap_or_default());
                            while let [hi, lo, rest @ ..] = received.as_slice() {
                                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                                let Some(message) = rest.get(..len) else {
                                    break;
                                };
                                resolver.handle_tcp(query, message, now);
                                received.drain(..2 + len);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) => {
                            resolver.handle_io_error(query, e.raw_os_error(), now);
                            return;
                        }
                    }
                }
            }
            AuxSocket::Attempt { .. } => {}
        }
    }
}

/// The token of `aux` entry `index`: like a slot's, with [`AUX_BIT`] set.
#[expect(
    clippy::cast_possible_truncation,
    reason = "64-bit targets only; 32-bit ones check the index alone (aux_of)"
)]
fn aux_token(index: u32, generation: u32) -> Token {
    Token(((u64::from(generation) << 32) | u64::from(index)) as usize | AUX_BIT)
}

/// A UDP socket for one query: bound to port 0 on the server's family (the
/// kernel picks a random port), connected to the server (the kernel drops
/// datagrams from anyone else and reports ICMP errors), the query sent.
fn open_udp(server: SocketAddr, payload: &[u8]) -> io::Result<UdpSocket> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    socket.send(payload)?;
    Ok(socket)
}

impl Dial {
    /// Adds the addresses of a fuller answer that are not in the list yet:
    /// those tried stay first, the rest follow in the fuller answer's Happy
    /// Eyeballs order.
    fn add_addresses(&mut self, addresses: &Addresses) {
        let tried = self.addrs.get(..self.next).unwrap_or_default().to_vec();
        let mut rest: Vec<IpAddr> = dial_order(addresses, self.bind)
            .into_iter()
            .filter(|ip| !tried.contains(ip))
            .collect();
        for ip in self.addrs.get(self.next..).unwrap_or_default() {
            if !rest.contains(ip) {
                rest.push(*ip);
            }
        }
        self.addrs.truncate(self.next);
        self.addrs.extend(rest);
    }

    /// Whether an address is left to try.
    fn more_to_try(&self) -> bool {
        self.next < self.addrs.len()
    }
}

/// Addresses to try for an answer, in Happy Eyeballs order, of the bind
/// address's family if there is one.
fn dial_order(addresses: &Addresses, bind: Option<IpAddr>) -> Vec<IpAddr> {
    addresses
        .interleaved()
        .filter(|ip| bind.is_none_or(|b| b.is_ipv4() == ip.is_ipv4()))
        .collect()
}

impl<C> Driver<C> {
    /// `Command::Connect` for a slot whose target is a name: starts its
    /// lookup. `tls` is the session for a TLS scheme, made now so that a
    /// bad TLS configuration fails before any lookup.
    pub(super) fn start_dial(
        &mut self,
        slot: SlotId,
        tls: Option<Box<crate::tls::TlsSession>>,
        now: Millis,
    ) {
        let Some(target) = self.pool.target(slot) else {
            return;
        };
        let (port, bind) = (target.port, target.bind);
        let Host::Name(name) = &target.host else {
            return;
        };
        self.names.files.check(now, &mut self.names.resolver);
        let lookup = match self.names.resolver.lookup(name, now) {
            Ok(lookup) => lookup,
            Err(e) => {
                self.pool
                    .handle_connect_failed(slot, ConnectError::resolve(e), now);
                return;
            }
        };
        self.names.dirty = true;
        self.names.lookups.insert(lookup, slot);
        *self.entry(slot.index) = SocketEntry {
            tls,
            named: Some(Box::new(Named {
                generation: slot.generation,
                peer: None,
                watch: None,
                dial: Some(Dial {
                    lookup: Some(lookup),
                    port,
                    bind,
                    addrs: Vec::new(),
                    next: 0,
                    attempts: Vec::new(),
                    timer: None,
                    last_error: None,
                    answer: Addresses::EMPTY,
                    expires: 0,
                }),
            })),
            ..SocketEntry::default()
        };
    }

    /// Drains the resolver: opens and sends queries, closes the sockets of
    /// ended ones, and dials for answered lookups. Says whether there was
    /// anything to do (the pool may then have commands).
    pub(super) fn drain_names(&mut self, registry: &mio::Registry, now: Millis) -> bool {
        if !self.names.dirty {
            return false;
        }
        self.names.dirty = false;
        loop {
            if let Some(t) = self.names.resolver.poll_transmit() {
                self.names.transmit(registry, t, now);
                continue;
            }
            if let Some(query) = self.names.resolver.poll_close() {
                if let Some(index) = self.names.queries.remove(&query) {
                    // Closing the descriptor also removes it from epoll.
                    self.names.aux.try_remove(index as usize);
                }
                continue;
            }
            if let Some(answer) = self.names.resolver.poll_answer() {
                if let Some(w) = self.names.watches.refresh_of(answer.lookup) {
                    // A refresh uses the full answer only.
                    if !answer.partial
                        && self.names.refreshed(
                            w,
                            answer.lookup,
                            answer.result,
                            answer.expires,
                            now,
                        )
                    {
                        self.retire_moved(w, now);
                    }
                    continue;
                }
                // A partial answer leaves the lookup pending: its slot
                // hears from it again.
                let slot = if answer.partial {
                    self.names.lookups.get(&answer.lookup).copied()
                } else {
                    self.names.lookups.remove(&answer.lookup)
                };
                if let Some(slot) = slot {
                    self.answered(registry, slot, answer, now);
                }
                continue;
            }
            return true;
        }
    }

    /// A slot's lookup is answered: fail it, or start dialling. A partial
    /// answer (one family, RFC 8305 §3) starts the dial; the full answer
    /// after it adds the other family's addresses to the race.
    fn answered(&mut self, registry: &mio::Registry, slot: SlotId, answer: Answer, now: Millis) {
        let Some(dial) = self.dial_mut(slot) else {
            return;
        };
        let result = answer.result;
        if !answer.partial {
            dial.lookup = None;
        }
        if let Ok(addresses) = result {
            dial.answer.extend(&addresses);
            dial.expires = answer.expires;
        }
        if !dial.addrs.is_empty() {
            // Dialling on a partial answer already.
            if let Ok(addresses) = result {
                dial.add_addresses(&addresses);
            }
            if dial.attempts.is_empty() {
                self.next_attempt(registry, slot, now);
            } else if dial.more_to_try() && dial.timer.is_none() {
                // Every earlier address is in flight: the new ones join
                // the race one delay from now.
                let deadline = now.saturating_add(self.names.delay);
                let timer = self.names.timers.insert(deadline, NameTimer::Attempt(slot));
                if let Some(dial) = self.dial_mut(slot) {
                    dial.timer = Some(timer);
                }
            }
            return;
        }
        let addrs = match result {
            // The resolver answers Ok with one address at least; should it
            // not, the name has none to offer.
            Ok(addresses) if addresses.is_empty() => {
                let e = ConnectError::resolve(ResolveError::NoData);
                self.pool.handle_connect_failed(slot, e, now);
                return;
            }
            Ok(addresses) => dial_order(&addresses, dial.bind),
            Err(e) => {
                self.pool
                    .handle_connect_failed(slot, ConnectError::resolve(e), now);
                return;
            }
        };
        if addrs.is_empty() && answer.partial {
            // None of the bind address's family yet: the rest may have some.
            return;
        }
        if addrs.is_empty() {
            let e = ConnectError::resolve(ResolveError::NoUsableAddress);
            self.pool.handle_connect_failed(slot, e, now);
            return;
        }
        dial.addrs = addrs;
        self.next_attempt(registry, slot, now);
    }

    /// Starts the slot's next connection attempt (past any that fail at
    /// once), and sets the timer for the one after; with no address left
    /// and no attempt in flight, the slot fails with the last error.
    fn next_attempt(&mut self, registry: &mio::Registry, slot: SlotId, now: Millis) {
        let nodelay = self.nodelay;
        let Some(dial) = self
            .sockets
            .get_mut(slot.index as usize)
            .and_then(|e| e.named.as_deref_mut())
            .filter(|n| n.generation == slot.generation)
            .and_then(|n| n.dial.as_mut())
        else {
            return;
        };
        if let Some(timer) = dial.timer.take() {
            self.names.timers.cancel(timer);
        }
        while let Some(&ip) = dial.addrs.get(dial.next) {
            dial.next += 1;
            let addr = SocketAddr::new(ip, dial.port);
            let stream = match net::connect(addr, dial.bind, nodelay) {
                Ok(stream) => stream,
                Err(e) => {
                    dial.last_error = Some(e);
                    continue;
                }
            };
            let attempt = AuxSocket::Attempt { slot, stream, addr };
            let interest = Interest::READABLE | Interest::WRITABLE;
            let index = match self.names.register_aux(registry, attempt, interest) {
                Ok(index) => index,
                Err(e) => {
                    dial.last_error = Some(ConnectError::new(Function::Socket, e));
                    continue;
                }
            };
            dial.attempts.push(index);
            if dial.next < dial.addrs.len() {
                let deadline = now.saturating_add(self.names.delay);
                dial.timer = Some(self.names.timers.insert(deadline, NameTimer::Attempt(slot)));
            }
            return;
        }
        // With the lookup still pending (a partial answer), the rest of the
        // answer may bring addresses yet.
        if dial.attempts.is_empty() && dial.lookup.is_none() {
            let error = dial.last_error.take().unwrap_or_else(|| {
                ConnectError::new(
                    Function::Connect,
                    io::Error::other("no address to connect to"),
                )
            });
            self.pool.handle_connect_failed(slot, error, now);
        }
    }
}

impl<C> Driver<C> {
    /// Readiness on a token with [`AUX_BIT`]: a DNS socket or a connection
    /// attempt. A stale token (its socket closed) is ignored.
    pub(super) fn aux_ready(
        &mut self,
        registry: &mio::Registry,
        event: &mio::event::Event,
        now: Millis,
    ) {
        let Some(index) = self.names.aux_of(event.token()) else {
            return;
        };
        let attempt = match self
            .names
            .aux
            .get_mut(index as usize)
            .map(|a| &mut a.socket)
        {
            Some(AuxSocket::Attempt { slot, stream, .. }) => {
                connect_result(stream).map(|result| (*slot, result))
            }
            Some(_) => {
                self.names.query_ready(index, now);
                return;
            }
            None => return,
        };
        match attempt {
            None => {} // not connected yet: a spurious wake-up
            Some((slot, Ok(()))) => self.attempt_won(registry, slot, index, event, now),
            Some((slot, Err(e))) => {
                self.names.aux.try_remove(index as usize);
                let Some(dial) = self.dial_mut(slot) else {
                    return;
                };
                dial.attempts.retain(|&a| a != index);
                dial.last_error = Some(ConnectError::new(Function::Connect, e));
                // A failed attempt starts the next one at once (RFC 8305 §5).
                self.next_attempt(registry, slot, now);
            }
        }
    }

    /// Attempt `index` of `slot` connected first: the others are closed,
    /// and it becomes the slot's socket, under the slot's token. Then it
    /// goes on as any connecting socket: TLS handshake, or connected.
    fn attempt_won(
        &mut self,
        registry: &mio::Registry,
        slot: SlotId,
        index: u32,
        event: &mio::event::Event,
        now: Millis,
    ) {
        let Some(Aux {
            socket: AuxSocket::Attempt {
                mut stream, addr, ..
            },
            ..
        }) = self.names.aux.try_remove(index as usize)
        else {
            return;
        };
        if self.dial_mut(slot).is_none() {
            return;
        }
        let Some(named) = self
            .sockets
            .get_mut(slot.index as usize)
            .and_then(|e| e.named.as_deref_mut())
        else {
            return;
        };
        let Some(dial) = named.dial.take() else {
            return;
        };
        named.peer = Some(addr);
        let (answer, expires) = (dial.answer, dial.expires);
        if let Some(lookup) = dial.lookup {
            // Won on a partial answer: the rest of it is not needed.
            self.names.resolver.cancel(lookup);
            self.names.lookups.remove(&lookup);
        }
        for other in dial.attempts.iter().filter(|&&a| a != index) {
            // Closing the descriptor also removes it from epoll.
            self.names.aux.try_remove(*other as usize);
        }
        if let Some(timer) = dial.timer {
            self.names.timers.cancel(timer);
        }
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = registry.reregister(&mut stream, token(slot), interest) {
            let e = ConnectError::new(Function::Socket, e);
            self.pool.handle_connect_failed(slot, e, now);
            return;
        }
        let entry = self.entry(slot.index);
        entry.stream = Some(crate::stream::Stream::Tcp(stream));
        entry.connected = true;
        self.join_watch(slot, addr, answer, expires, now);
        self.connecting_ready(slot, event, now);
    }

    /// A connection by name reached `addr`, dialled on `answer`: it counts
    /// in its name's watch (refresh on). If the name's answer is newer and
    /// lacks `addr`, the connection is retired at once (it serves its
    /// request, and closes when freed).
    fn join_watch(
        &mut self,
        slot: SlotId,
        addr: SocketAddr,
        answer: Addresses,
        expires: Millis,
        now: Millis,
    ) {
        let Some(Host::Name(name)) = self.pool.target(slot).map(|t| &t.host) else {
            return;
        };
        let Some((w, changed)) = self.names.watch(name, answer, expires, now) else {
            return;
        };
        if let Some(named) = self
            .sockets
            .get_mut(slot.index as usize)
            .and_then(|e| e.named.as_deref_mut())
        {
            named.watch = Some(w);
        }
        if changed {
            self.retire_moved(w, now);
        }
        if !self.names.still_answered(w, addr) {
            self.pool.handle_address_gone(slot, now);
        }
    }

    /// The dial of `slot`, if it is still connecting and dialling.
    fn dial_mut(&mut self, slot: SlotId) -> Option<&mut Dial> {
        if self.pool.phase(slot) != Some(Phase::Connecting) {
            return None;
        }
        let named = self
            .sockets
            .get_mut(slot.index as usize)?
            .named
            .as_deref_mut()?;
        if named.generation != slot.generation {
            return None;
        }
        named.dial.as_mut()
    }

    /// Fires the resolver's try deadlines and the Happy Eyeballs timers at
    /// or before `floor` (the tick's time rounded down).
    pub(in crate::reactor) fn names_timeout(
        &mut self,
        registry: &mio::Registry,
        floor: Millis,
        now: Millis,
    ) {
        // A watched name's refresh deadline is set for as long as it has
        // connections: most ticks have nothing due.
        if self.names.poll_timeout().is_none_or(|t| t > floor) {
            return;
        }
        self.names.resolver.handle_timeout(floor);
        self.names.dirty = true;
        while let Some((_, timer)) = self.names.timers.poll(floor) {
            match timer {
                NameTimer::Attempt(slot) => {
                    let Some(dial) = self.dial_mut(slot) else {
                        continue;
                    };
                    dial.timer = None;
                    self.next_attempt(registry, slot, now);
                }
                NameTimer::Refresh(w) => self.names.refresh_due(w, now),
            }
        }
    }
}
