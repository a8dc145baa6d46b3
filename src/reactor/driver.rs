//! The driver: turns readiness into the pool's inputs and the pool's commands
//! into syscalls and events. It holds the socket table and the clock's epoch;
//! the poller itself stays in [`Reactor`](super::Reactor), which lends the
//! driver its registry for each call that may open a socket. Host names
//! (the resolver's sockets, Happy Eyeballs) are in [`names`].

mod files;
pub(super) mod names;

use std::borrow::Cow;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use mio::{Interest, Token};

use crate::conn::{Connection, Returned, Shared};
use crate::error::AllocateError;
use crate::error::{ConnectError, Function};
use crate::event::FromCache;
use crate::event::{Event, Events, Outcome, Readiness, SourceReady, TimerFired};
use crate::lifecycle::{CloseReason, Lifecycle};
use crate::net;
use crate::pool::{CheckedOut, Checkout, Command, Phase, Pool, PoolOutcome, SlotId};
use crate::request::{Host, Request, Target};
use crate::stream::Stream;
use crate::time::Millis;
use crate::tls::{self, Handshake, IdleVerdict, TlsSession};

/// Why a TLS scheme's Unix-domain request needs a server name.
pub(super) const UNIX_TLS_NEEDS_NAME: &str = "TLS over a unix socket needs a server_name (a path is no name to check the certificate against)";

/// Everything but the poller, so readiness can be handled while the kernel's
/// event list is borrowed.
pub(super) struct Driver<C> {
    pub(super) pool: Pool<C>,
    /// Indexed by slot: the socket while the reactor holds it.
    pub(super) sockets: Vec<SocketEntry>,
    pub(super) shared: Rc<Shared>,
    /// Swapped with `shared.returned` each tick; see `take_returned`.
    pub(super) returned_spare: Vec<Returned>,
    /// Kept for `check_undelivered_hits`, so it allocates once at most.
    pub(super) hits_spare: Vec<SlotId>,
    pub(super) epoch: Instant,
    /// See `tick_now`.
    pub(super) tick_now: Millis,
    pub(super) nodelay: bool,
    pub(super) tls_schemes: Vec<Cow<'static, str>>,
    /// The caller's, or the default built on first use.
    pub(super) tls_config: Option<Arc<rustls::ClientConfig>>,
    /// TLS handshakes completed, and how many of them were post-quantum.
    pub(super) tls_counters: (u64, u64),
    /// The resolver and its sockets, Happy Eyeballs.
    pub(super) names: names::Names,
}

#[derive(Default)]
pub(super) struct SocketEntry {
    /// `None` while lent (the connection owns it) or when the slot is free.
    stream: Option<Stream>,
    /// The TLS session of a TLS scheme's socket; travels with the stream.
    tls: Option<Box<TlsSession>>,
    /// The TCP connect completed (a TLS socket may still be handshaking).
    connected: bool,
    /// Tick of the last read readiness seen while lent.
    last_ready: u64,
    /// Readiness while lent said the peer closed (or the socket failed): the
    /// socket can never be pooled, whatever the connection's reads proved
    /// about its data.
    peer_closed: bool,
    /// For a target given by name: its lookup and attempts, then the
    /// address reached. Boxed: a numeric slot pays one pointer for it.
    named: Option<Box<names::Named>>,
}

impl SocketEntry {
    /// Why an idle socket that became readable is no longer fit to pool, or
    /// `None` if it still is: a plaintext socket must have nothing to read
    /// (a peek tells, and a stale edge from its lent period reads as empty);
    /// a TLS socket may have received session tickets or key updates, which
    /// rustls consumes.
    fn idle_check(&mut self) -> Option<CloseReason> {
        let Some(stream) = self.stream.as_mut() else {
            return Some(CloseReason::PeerClosed);
        };
        match self.tls.as_mut() {
            Some(tls) => match tls.idle_readable(stream) {
                IdleVerdict::StillIdle => None,
                // close_notify, an alert, EOF, or records rustls refused.
                IdleVerdict::Dead => Some(CloseReason::PeerClosed),
            },
            None => match net::peek(stream.as_raw_fd()) {
                net::Peek::Empty => None,
                net::Peek::Data => Some(CloseReason::StrayData),
                net::Peek::Eof | net::Peek::Error => Some(CloseReason::PeerClosed),
            },
        }
    }

    /// Whether a connection just returned to this entry may be pooled.
    /// Each test is one reason it may not; all are needed, none is enough:
    fn is_poolable(&mut self, reusable: bool, drained_at: Option<u64>) -> bool {
        // The caller closed it, or a read saw EOF or an error.
        if !reusable {
            return false;
        }
        // Readiness while it was lent said the peer closed or it failed: a
        // read that drained the data need not have seen the FIN behind it.
        if self.peer_closed {
            return false;
        }
        if let Some(tls) = self.tls.as_mut() {
            // Plaintext rustls decrypted that the caller never read, or
            // ciphertext it has not sent yet.
            if tls.has_buffered_plaintext() || tls.wants_write() {
                return false;
            }
        }
        // Unread bytes in the kernel's receive queue: the connection's own
        // reads prove it empty if they drained it since the last readiness;
        // otherwise one peek tells.
        let drained = drained_at.is_some_and(|tick| tick >= self.last_ready);
        drained || self.idle_check().is_none()
    }
}

/// The token a slot's socket is registered with: index in the low half,
/// generation in the high half, so a readiness event queued for a closed
/// socket never reaches a later socket in the same slot. Generations have 30
/// bits, so the top two bits stay clear: they mark the caller's tokens
/// ([`CALLER_BIT`]) and the driver's name-resolution sockets
/// ([`names::AUX_BIT`]).
#[expect(
    clippy::cast_possible_truncation,
    reason = "64-bit targets only; 32-bit ones look slots up by index (slot_of)"
)]
fn token(slot: SlotId) -> Token {
    Token(((u64::from(slot.generation) << 32) | u64::from(slot.index)) as usize)
}

/// The reactor's one clock read: every timestamp the reactor and its pool
/// use comes from here (clippy.toml bans `Instant::now` elsewhere).
#[expect(clippy::disallowed_methods, reason = "the reactor's one clock read")]
pub(super) fn read_clock() -> Instant {
    Instant::now()
}

/// Milliseconds since `epoch`, as (rounded up, rounded down), from one
/// clock read.
fn since(epoch: Instant) -> (Millis, Millis) {
    let elapsed = read_clock().saturating_duration_since(epoch);
    let floor = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    (crate::time::millis_ceil(elapsed), floor)
}

/// The time of one call between ticks (`allocate`, `free`, ...): read from
/// the clock when a decision first needs it (a request's deadline, a
/// waiter's judged), then the same for the rest of the call; never read
/// when none does, as on the hit path.
pub(super) struct Decided {
    epoch: Instant,
    at: Option<Millis>,
}

impl Decided {
    pub(super) fn new(epoch: Instant) -> Decided {
        Decided { epoch, at: None }
    }

    /// The call's time, rounded up (an input's stamp), read on first use.
    pub(super) fn now(&mut self) -> Millis {
        let epoch = self.epoch;
        *self.at.get_or_insert_with(|| since(epoch).0)
    }

    /// The time, if something read it.
    pub(super) fn at(&self) -> Option<Millis> {
        self.at
    }
}

/// The peer shut down its sending side, or the socket failed.
fn closed(event: &mio::event::Event) -> bool {
    event.is_read_closed() || event.is_error()
}

/// Anything on the read side: data, a close or an error.
fn read_side(event: &mio::event::Event) -> bool {
    event.is_readable() || closed(event)
}

/// Set on the poller token of every source the caller registers, and on none
/// of the reactor's own: the two can never collide.
pub(super) const CALLER_BIT: usize = 1 << (usize::BITS - 1);

/// [`Stream::connect_result`] for a bare TCP socket (a name's attempts).
fn connect_result(stream: &mio::net::TcpStream) -> Option<io::Result<()>> {
    crate::stream::connect_result(stream.take_error(), || stream.peer_addr().map(drop))
}

impl<C> Driver<C> {
    /// The time of the last clock read, rounded up: what `allocate`, `free`
    /// and the other calls between ticks stamp their inputs with, without
    /// reading the clock. It is never later than the real time, so checks
    /// against it ("is this deadline past?") are never early; what it
    /// schedules counts from a moment no later than the call.
    pub(super) fn tick_now(&self) -> Millis {
        self.tick_now
    }

    /// Reads the clock and makes it the tick's time: (rounded up, rounded
    /// down). Inputs take the first, firing deadlines the second, so a
    /// deadline fires only once the real time has reached it.
    pub(super) fn read_time(&mut self) -> (Millis, Millis) {
        let (ceil, floor) = self.peek_clock();
        self.tick_now = self.tick_now.max(ceil);
        (self.tick_now, floor)
    }

    /// Reads the clock without making it the tick's time.
    pub(super) fn peek_clock(&self) -> (Millis, Millis) {
        since(self.epoch)
    }

    /// The earliest deadline of the pool (its own and the caller's timers),
    /// the resolver and Happy Eyeballs, or a lower bound of it.
    pub(super) fn next_deadline(&self) -> Option<Millis> {
        let pool = self.pool.poll_timeout();
        if !self.names.has_timers() {
            return pool;
        }
        match (pool, self.names.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether connections were dropped since the last tick.
    pub(super) fn has_returned(&self) -> bool {
        self.shared.has_returned()
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "the token's halves are taken apart on purpose"
    )]
    fn slot_of(&self, token: Token) -> Option<SlotId> {
        let raw = token.0 as u64;
        let index = raw as u32;
        if cfg!(target_pointer_width = "64") {
            Some(SlotId {
                index,
                generation: (raw >> 32) as u32,
            })
        } else {
            self.pool.slot_at(index)
        }
    }

    fn entry(&mut self, index: u32) -> &mut SocketEntry {
        let i = index as usize;
        if i >= self.sockets.len() {
            self.sockets.resize_with(i + 1, SocketEntry::default);
        }
        &mut self.sockets[i]
    }

    pub(super) fn handle_readiness(
        &mut self,
        registry: &mio::Registry,
        event: &mio::event::Event,
        events: &mut Events<C>,
        now: Millis,
    ) {
        if event.token().0 & (CALLER_BIT | names::AUX_BIT) != 0 {
            if event.token().0 & CALLER_BIT == 0 {
                self.aux_ready(registry, event, now);
                return;
            }
            events.list.push(Event::Source(SourceReady {
                token: Token(event.token().0 & !CALLER_BIT),
                readable: event.is_readable(),
                writable: event.is_writable(),
                closed: closed(event),
            }));
            return;
        }
        let Some(slot) = self.slot_of(event.token()) else {
            return;
        };
        let Some(phase) = self.pool.phase(slot) else {
            return;
        };
        let read_side = read_side(event);
        match phase {
            Phase::Connecting => self.connecting_ready(slot, event, now),
            Phase::Idle | Phase::Reserved if read_side => self.check_idle(slot, event, now),
            Phase::Idle | Phase::Reserved => {}
            Phase::Lent => {
                if read_side {
                    let tick = self.shared.tick.get();
                    let entry = self.entry(slot.index);
                    entry.last_ready = tick;
                    // A short read proves no data is left, not that no FIN
                    // is: it must not be pooled on that proof.
                    entry.peer_closed |= closed(event);
                }
                events.list.push(Event::Ready(Readiness {
                    conn: slot.conn_id(),
                    readable: event.is_readable(),
                    writable: event.is_writable(),
                    closed: closed(event),
                }));
            }
        }
    }

    /// A connecting slot's socket had readiness `event` (or, for a name,
    /// the attempt that won did).
    fn connecting_ready(&mut self, slot: SlotId, event: &mio::event::Event, now: Millis) {
        let read_side = read_side(event);
        let orphan = self.pool.is_orphan(slot);
        self.check_connect(slot, now);
        // An orphan goes to the pool (or a waiter) as it connects:
        // whatever this same edge said about its read side must be
        // checked now, as for an idle socket, or it never will be.
        // (A request's own new connection is delivered as it is: a
        // server may speak first.)
        let pooled = matches!(self.pool.phase(slot), Some(Phase::Idle | Phase::Reserved));
        if orphan && pooled && read_side {
            self.check_idle(slot, event, now);
        }
    }

    /// An idle (or reserved, not yet delivered) socket had read-side
    /// readiness: closed or failed, it is dead; readable, it is dead unless
    /// the read finds nothing (a stale edge) or only TLS housekeeping.
    fn check_idle(&mut self, slot: SlotId, event: &mio::event::Event, now: Millis) {
        let dead = if closed(event) {
            Some(CloseReason::PeerClosed)
        } else {
            self.entry(slot.index).idle_check()
        };
        if let Some(reason) = dead {
            self.pool.handle_dead(slot, reason, now);
        }
    }

    /// A connecting socket had readiness: it connected, failed, moved its
    /// TLS handshake on, or the event was spurious.
    fn check_connect(&mut self, slot: SlotId, now: Millis) {
        let entry = self.entry(slot.index);
        let Some(stream) = entry.stream.as_mut() else {
            return;
        };
        if !entry.connected {
            match stream.connect_result() {
                // Not connected yet: a spurious wake-up; wait for the next.
                None => return,
                Some(Err(e)) => {
                    self.pool.handle_connect_failed(
                        slot,
                        ConnectError::new(Function::Connect, e),
                        now,
                    );
                    return;
                }
                Some(Ok(())) => entry.connected = true,
            }
        }
        let progress = match entry.tls.as_mut() {
            Some(tls) => tls.drive_handshake(stream),
            None => Handshake::Done,
        };
        match progress {
            Handshake::Done => {
                if let Some(post_quantum) = entry.tls.as_ref().map(|t| t.is_post_quantum()) {
                    self.tls_counters.0 += 1;
                    self.tls_counters.1 += u64::from(post_quantum);
                }
                self.pool.handle_connected(slot, now);
            }
            Handshake::WantIo => {}
            Handshake::Failed(e) => self.pool.handle_connect_failed(slot, e, now),
        }
    }

    /// The TLS configuration, built on first use when the caller gave none.
    fn tls_config(&mut self) -> Result<Arc<rustls::ClientConfig>, ConnectError> {
        if let Some(config) = &self.tls_config {
            return Ok(Arc::clone(config));
        }
        let config = tls::default_client_config().map_err(|e| tls::tls_error(&e))?;
        self.tls_config = Some(Arc::clone(&config));
        Ok(config)
    }

    /// A TLS session for `slot`'s target, if its scheme is a TLS scheme.
    fn tls_for(&mut self, slot: SlotId) -> Result<Option<Box<TlsSession>>, ConnectError> {
        let Some(target) = self.pool.target(slot) else {
            return Ok(None);
        };
        if !self.tls_schemes.contains(&target.scheme) {
            return Ok(None);
        }
        let by_name = |name: &str| {
            rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|e| {
                ConnectError::new(
                    Function::Tls,
                    io::Error::new(io::ErrorKind::InvalidInput, e),
                )
            })
        };
        let name = match (target.server_name.as_deref(), &target.host) {
            (Some(name), _) => by_name(name)?,
            (None, Host::Name(name)) => by_name(name)?,
            (None, Host::Addr(ip)) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
            // `allocate` refused it: a path is no name to check against.
            (None, Host::Unix(_)) => {
                return Err(ConnectError::new(
                    Function::Tls,
                    io::Error::new(io::ErrorKind::InvalidInput, UNIX_TLS_NEEDS_NAME),
                ));
            }
        };
        let config = self.tls_config()?;
        TlsSession::new(&config, name).map(|s| Some(Box::new(s)))
    }

    /// Carries out the pool's commands and the resolver's output until
    /// neither has any; failures feed back in as inputs, which may queue
    /// more.
    #[inline]
    pub(super) fn run_commands(&mut self, registry: &mio::Registry, now: Millis) {
        // The hit path has neither: no call, one load and a branch each.
        if !self.pool.has_commands() && !self.names.is_dirty() {
            return;
        }
        self.run_commands_slow(registry, now);
    }

    /// [`run_commands`](Self::run_commands) for a call between ticks
    /// (`allocate`, `free`, `deallocate`, `purge`, `shutdown`). The work
    /// queued there judges deadlines (a cached answer's TTL) and sets them
    /// (a DNS try's, a Happy Eyeballs attempt's), so it runs with the time
    /// of the decision, never the last tick's: `decided` when the caller
    /// already read the clock for it, else one clock read, made only when
    /// there is work (the hit path has none).
    #[inline]
    pub(super) fn run_commands_between_ticks(
        &mut self,
        registry: &mio::Registry,
        decided: Option<Millis>,
    ) {
        if !self.pool.has_commands() && !self.names.is_dirty() {
            return;
        }
        let now = match decided {
            Some(t) => {
                self.tick_now = self.tick_now.max(t);
                self.tick_now
            }
            None => self.read_time().0,
        };
        self.run_commands_slow(registry, now);
    }

    fn run_commands_slow(&mut self, registry: &mio::Registry, now: Millis) {
        loop {
            self.run_pool_commands(registry, now);
            if !self.drain_names(registry, now) {
                return;
            }
        }
    }

    fn run_pool_commands(&mut self, registry: &mio::Registry, now: Millis) {
        while let Some(command) = self.pool.poll_command() {
            match command {
                Command::Connect { slot, addr, bind } => {
                    let tls = match self.tls_for(slot) {
                        Ok(tls) => tls,
                        Err(e) => {
                            self.pool.handle_connect_failed(slot, e, now);
                            continue;
                        }
                    };
                    let opened = match self.pool.target(slot).map(|t| &t.host) {
                        Some(Host::Name(_)) => {
                            self.start_dial(slot, tls, now);
                            continue;
                        }
                        Some(Host::Unix(path)) => net::connect_unix(path).map(Stream::Unix),
                        _ => net::connect(addr, bind, self.nodelay).map(Stream::Tcp),
                    };
                    match opened {
                        Ok(mut stream) => {
                            let interest = Interest::READABLE | Interest::WRITABLE;
                            match registry.register(&mut stream, token(slot), interest) {
                                Ok(()) => {
                                    *self.entry(slot.index) = SocketEntry {
                                        stream: Some(stream),
                                        tls,
                                        ..SocketEntry::default()
                                    };
                                }
                                Err(e) => self.pool.handle_connect_failed(
                                    slot,
                                    ConnectError::new(Function::Socket, e),
                                    now,
                                ),
                            }
                        }
                        Err(e) => self.pool.handle_connect_failed(slot, e, now),
                    }
                }
                Command::Close { slot } => {
                    if let Some(entry) = self.sockets.get_mut(slot.index as usize) {
                        if let Some(named) = entry.named.take() {
                            self.names.closed(slot, *named);
                        }
                        // Closing the descriptor also removes it from epoll.
                        *entry = SocketEntry::default();
                    }
                }
            }
        }
    }

    /// Takes back connections dropped since the last tick, in the order
    /// they were dropped (so the last one dropped is the warmest). The queue
    /// is swapped with a spare so both keep their capacity: no allocation.
    /// `decided` is read if a waiter's deadline is judged.
    #[inline]
    pub(super) fn take_returned(&mut self, now: Millis, decided: &mut Decided) {
        if self.shared.has_returned() {
            self.take_returned_slow(now, decided);
        }
    }

    fn take_returned_slow(&mut self, now: Millis, decided: &mut Decided) {
        let mut batch = self
            .shared
            .swap_returned(std::mem::take(&mut self.returned_spare));
        for returned in batch.drain(..) {
            self.take_back(returned, now, decided);
        }
        self.returned_spare = batch;
    }

    /// A lent connection came back: decide whether it can be pooled. `now`
    /// is the last tick's time; a connection that goes to a waiter judges
    /// the waiter's deadline by `decided` instead, so one whose deadline
    /// passed since that tick times out rather than being served.
    pub(super) fn take_back(&mut self, returned: Returned, now: Millis, decided: &mut Decided) {
        let slot = SlotId {
            index: returned.id.index,
            generation: returned.id.generation,
        };
        if self.pool.phase(slot) != Some(Phase::Lent) {
            debug_assert!(false, "returned {slot:?} is not lent");
            return;
        }
        let entry = self.entry(slot.index);
        entry.stream = Some(returned.stream);
        entry.tls = returned.tls;
        let poolable = entry.is_poolable(returned.reusable, returned.drained_at);
        self.pool
            .handle_returned(slot, poolable, now, || decided.now());
    }

    /// A tick whose event budget ran out left readiness in the kernel, and
    /// with it, maybe, the close of a pooled connection it is about to hand
    /// out. Each pooled connection about to be delivered is then checked
    /// directly (a peek, or rustls for TLS), and a dead one is replaced as
    /// readiness would have replaced it; a replacement from the pool is
    /// checked in turn. One syscall per hit, only in such ticks.
    pub(super) fn check_undelivered_hits(&mut self, now: Millis) {
        let mut hits = std::mem::take(&mut self.hits_spare);
        loop {
            self.pool.undelivered_hits(&mut hits);
            let mut replaced = false;
            for &slot in &hits {
                let dead = self
                    .sockets
                    .get_mut(slot.index as usize)
                    .and_then(SocketEntry::idle_check);
                if let Some(reason) = dead {
                    self.pool.handle_dead(slot, reason, now);
                    replaced = true;
                }
            }
            if !replaced {
                break;
            }
        }
        hits.clear();
        self.hits_spare = hits;
    }

    /// Turns the pool's lifecycle changes into events.
    pub(super) fn deliver_lifecycle(&mut self, events: &mut Events<C>) {
        while let Some((slot, mut peer, change)) = self.pool.poll_lifecycle() {
            if peer.ip().is_unspecified() {
                // A target given by name: the pool knows the name only.
                let entry = self.sockets.get(slot.index as usize);
                peer = entry
                    .and_then(|e| names::Named::peer_of(e.named.as_deref(), slot))
                    .or_else(|| self.names.closed_peer(slot))
                    .unwrap_or(peer);
            }
            events.list.push(Event::Lifecycle(Lifecycle {
                conn: slot.conn_id(),
                peer,
                change,
            }));
        }
        self.names.forget_closed();
    }

    /// Turns fired caller timers into events.
    pub(super) fn deliver_timers(&mut self, events: &mut Events<C>) {
        while let Some((id, value)) = self.pool.poll_expired() {
            events.list.push(Event::Timer(TimerFired { id, value }));
        }
    }

    /// The connection of `slot`, which the pool has just lent; `None` if
    /// the table lost its socket (never expected).
    fn lend(
        &mut self,
        slot: SlotId,
        from_cache: Option<FromCache>,
        checkout: Checkout,
        target: &Target,
    ) -> Option<Connection> {
        let entry = self.entry(slot.index);
        let (stream, tls) = (entry.stream.take()?, entry.tls.take());
        // A target given by name: the address its socket reached.
        let peer = names::Named::peer_of(entry.named.as_deref(), slot)
            .unwrap_or_else(|| target.socket_addr());
        Some(Connection::new(
            stream,
            tls,
            slot.conn_id(),
            Rc::clone(&self.shared),
            from_cache,
            checkout,
            peer,
        ))
    }

    /// [`Reactor::checkout_now`](crate::Reactor::checkout_now). `vouched`:
    /// the last tick read all readiness, so a pooled socket it left idle had
    /// none (its close would have closed it); otherwise each candidate is
    /// checked directly, as a cut-short tick checks its hits.
    pub(super) fn checkout_now(
        &mut self,
        registry: &mio::Registry,
        request: Request<C>,
        vouched: bool,
    ) -> Result<crate::Checkout<C>, AllocateError<C>> {
        let now = self.tick_now();
        let mut decided = Decided::new(self.epoch);
        // Connections dropped since the last tick may serve it.
        self.take_returned(now, &mut decided);
        let (timeout, fresh) = (request.timeout, request.fresh);
        let sockets = &mut self.sockets;
        let checked = self.pool.checkout_now(
            request,
            now,
            || decided.now(),
            |slot| match sockets.get_mut(slot.index as usize) {
                Some(entry) if entry.stream.is_none() => Some(CloseReason::PeerClosed),
                Some(entry) if !vouched => entry.idle_check(),
                Some(_) => None,
                None => Some(CloseReason::PeerClosed),
            },
        );
        // The closes of candidates judged dead or expired, and a connect.
        self.run_commands_between_ticks(registry, decided.at());
        match checked? {
            CheckedOut::Pending(id) => Ok(crate::Checkout::Pending(id)),
            CheckedOut::Lent {
                slot,
                checkout,
                target,
                context,
            } => match self.lend(slot, Some(FromCache::Immediate), checkout, &target) {
                Some(conn) => Ok(crate::Checkout::Ready(conn, context)),
                None => {
                    debug_assert!(false, "no socket for lent {slot:?}");
                    let now = self.tick_now;
                    self.pool.handle_returned(slot, false, now, || now);
                    let request = Request {
                        target: (*target).clone(),
                        timeout,
                        fresh,
                        context,
                    };
                    let id = self
                        .pool
                        .allocate(request, self.tick_now, || decided.now())?;
                    self.run_commands_between_ticks(registry, None);
                    Ok(crate::Checkout::Pending(id))
                }
            },
        }
    }

    /// Turns decided requests into outcome events.
    pub(super) fn deliver(&mut self, events: &mut Events<C>, now: Millis) {
        while let Some(outcome) = self.pool.poll_outcome(now) {
            let event = match outcome {
                PoolOutcome::Deliver {
                    id,
                    slot,
                    checkout,
                    from_cache,
                    target,
                    context,
                } => {
                    let result = match self.lend(slot, from_cache, checkout, &target) {
                        Some(conn) => Ok(conn),
                        None => {
                            // The table lost the socket: never expected, but
                            // the request still gets exactly one outcome.
                            debug_assert!(false, "no socket for delivered {slot:?}");
                            let now = self.tick_now;
                            self.pool.handle_returned(slot, false, now, || now);
                            Err(ConnectError::new(
                                Function::Connect,
                                io::Error::other("socket lost"),
                            ))
                        }
                    };
                    Outcome {
                        id,
                        target,
                        context,
                        result,
                    }
                }
                PoolOutcome::Fail {
                    id,
                    target,
                    context,
                    error,
                } => Outcome {
                    id,
                    target,
                    context,
                    result: Err(error),
                },
            };
            events.list.push(Event::Outcome(event));
        }
    }
}
