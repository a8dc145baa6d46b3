//! The mio driver: the one place that reads the clock and touches sockets.
//!
//! It owns the poller and the socket table. Each tick it waits for readiness,
//! turns readiness into the pool's `handle_*` inputs, fires due deadlines,
//! carries out the pool's commands (connect, close), and turns decided
//! requests into [`Event`]s. All policy lives in [`crate::pool`].
//!
//! Every socket is registered once, for reading and writing, with a token
//! that encodes its slot and the slot's generation, from connect until close.
//! Lending and returning change the pool's state, not the registration, so
//! the hit path (allocate from cache → poll → free) makes no `epoll_ctl` and
//! no syscall besides the poll itself.

use std::borrow::Cow;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Interest, Token};

use crate::config::Config;
use crate::conn::{ConnId, Connection, Returned, Shared};
use crate::error::{AllocateError, ConnectError, Error, Function};
use crate::event::{Event, Events, Outcome, Readiness};
use crate::net;
use crate::pool::{Command, Limits, Phase, Pool, PoolOutcome, SlotId};
use crate::request::{Request, RequestId};
use crate::time::Millis;
use crate::tls::{self, Handshake, IdleVerdict, TlsSession};

/// How many readiness events one poll takes from the kernel at most; more
/// wait for the next tick. Bounds the work of one tick.
const EVENTS_PER_TICK: usize = 1024;

/// A keep-alive connection pool on a single-threaded poller that the caller
/// drives.
///
/// `C` is the caller's per-request context: anything, moved in with the
/// [`Request`] and moved back in its [`Outcome`]. Several reactors in one
/// program are independent; none knows the others' limits.
///
/// See the [crate docs](crate) for the tick contract and an example.
pub struct Reactor<C> {
    poll: mio::Poll,
    mio_events: mio::Events,
    driver: Driver<C>,
}

/// Everything but the poller, so readiness can be handled while the kernel's
/// event list is borrowed.
struct Driver<C> {
    pool: Pool<C>,
    /// Indexed by slot: the socket while the reactor holds it.
    sockets: Vec<SocketEntry>,
    registry: mio::Registry,
    shared: Rc<Shared>,
    /// Swapped with `shared.returned` each tick; see `take_returned`.
    returned_spare: Vec<Returned>,
    epoch: Instant,
    nodelay: bool,
    tls_schemes: Vec<Cow<'static, str>>,
    /// The caller's, or the default built on first use.
    tls_config: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Default)]
struct SocketEntry {
    /// `None` while lent (the connection owns it) or when the slot is free.
    stream: Option<mio::net::TcpStream>,
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
}

impl<C> Reactor<C> {
    /// A reactor with `config`'s limits. Fails with
    /// [`Error::InvalidConfig`] naming the first bad field, or
    /// [`Error::Io`] if the poller cannot be created.
    pub fn new(config: Config) -> Result<Reactor<C>, Error> {
        let limits = Limits::from_config(&config)?;
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        Ok(Reactor {
            poll,
            mio_events: mio::Events::with_capacity(EVENTS_PER_TICK),
            driver: Driver {
                pool: Pool::new(limits),
                sockets: Vec::new(),
                registry,
                shared: Shared::new(),
                returned_spare: Vec::new(),
                epoch: Instant::now(),
                nodelay: config.nodelay,
                tls_schemes: config.tls_schemes,
                tls_config: config.tls,
            },
        })
    }

    /// Asks for a connection. Returns at once with the request's id; the
    /// outcome (a connection or an error) comes later from
    /// [`poll`](Reactor::poll) or [`poll_events`](Reactor::poll_events), even
    /// when an idle connection is ready now.
    ///
    /// A new connection's socket, bind and connect calls are made here, so
    /// the connect is under way before the next poll. Refused, with the
    /// request handed back, after [`shutdown`](Reactor::shutdown) or for an
    /// invalid request (empty scheme, port 0).
    ///
    /// Costs on a cache hit: a hash lookup and two timer-wheel operations;
    /// no syscall, no allocation once warm.
    pub fn allocate(&mut self, request: Request<C>) -> Result<RequestId, AllocateError<C>> {
        if let Some(name) = request.target.server_name.as_deref() {
            if rustls::pki_types::ServerName::try_from(name).is_err() {
                return Err(AllocateError {
                    error: Error::InvalidRequest {
                        reason: "server name is not a valid DNS name or IP address",
                    },
                    request: Box::new(request),
                });
            }
        }
        // One clock read serves the returns and the request's deadline.
        let now = self.driver.now();
        // Connections dropped since the last tick may serve this request.
        self.driver.take_returned(now);
        let id = self.driver.pool.allocate(request, now)?;
        self.driver.run_commands();
        Ok(id)
    }

    /// Cancels a request that has no outcome yet and gives its context back.
    /// No event is ever delivered for it. A connect already under way
    /// finishes and its connection idles in the pool (or serves the next
    /// waiter) instead of being wasted.
    ///
    /// [`Error::UnknownRequest`] if the request already had its outcome
    /// (even one not yet taken from the event buffer's caller side),
    /// was deallocated, or is another reactor's.
    pub fn deallocate(&mut self, id: RequestId) -> Result<C, Error> {
        let now = self.driver.now();
        let context = self.driver.pool.deallocate(id, now)?;
        self.driver.run_commands();
        Ok(context)
    }

    /// Returns a lent connection now (dropping it does the same at the next
    /// tick). A clean connection becomes idle, or goes straight to a waiting
    /// request as `Deferred`; one with unread data, EOF, an error or a
    /// [`close`](Connection::close) is closed.
    ///
    /// [`Error::ForeignConnection`] if another reactor lent it; it is then
    /// returned to that reactor. Costs: no syscall when the connection's own
    /// reads prove its receive queue empty, else one `recv(MSG_PEEK)`.
    pub fn free(&mut self, conn: Connection) -> Result<(), Error> {
        if !Rc::ptr_eq(conn.shared(), &self.driver.shared) {
            drop(conn);
            return Err(Error::ForeignConnection);
        }
        let now = self.driver.now();
        if let Some(returned) = conn.into_returned() {
            self.driver.take_back(returned, now);
            self.driver.run_commands();
        }
        Ok(())
    }

    /// Closes idle connections, fails every pending request (function
    /// `shutdown`, errno `ECANCELED`; the events come from the next poll, so
    /// every context comes back), and refuses later requests with
    /// [`Error::ShutDown`]. Lent connections stay usable and are closed when
    /// returned. Calling it again does nothing.
    pub fn shutdown(&mut self) {
        let now = self.driver.now();
        self.driver.take_returned(now);
        self.driver.pool.shutdown();
        self.driver.run_commands();
    }

    /// Waits up to `timeout` (`None`: without limit) until at least one event
    /// is ready, and appends the events to `events`. Returns early with no
    /// events only when the timeout passes.
    ///
    /// With no request pending and no connection lent, nothing can happen:
    /// a `None` timeout then waits for ever, as `mio::Poll::poll` does.
    pub fn poll(&mut self, events: &mut Events<C>, timeout: Option<Duration>) -> Result<(), Error> {
        // A timeout too long to represent as an instant means no limit.
        let until = timeout.and_then(|t| Instant::now().checked_add(t));
        let before = events.len();
        let mut wait = timeout;
        loop {
            self.tick(events, wait)?;
            if events.len() > before {
                return Ok(());
            }
            if let Some(u) = until {
                let left = u.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(());
                }
                wait = Some(left);
            }
        }
    }

    /// One tick without blocking: takes what the kernel has, fires due
    /// deadlines, and appends the events to `events`. For an embedding loop
    /// that waits elsewhere; see [`next_timeout`](Reactor::next_timeout).
    ///
    /// Costs: one `epoll_wait` with a zero timeout, plus the work the events
    /// call for.
    pub fn poll_events(&mut self, events: &mut Events<C>) -> Result<(), Error> {
        self.tick(events, Some(Duration::ZERO))
    }

    /// How long an embedding loop may wait (on [`as_raw_fd`](Reactor::as_raw_fd)
    /// becoming readable) before it must call [`poll_events`](Reactor::poll_events):
    /// zero when outcomes or returned connections are waiting, the time to
    /// the next deadline rounded up to whole milliseconds, or `None` when no
    /// deadline is set. Compute it after handling the tick's events, since
    /// dropping a connection makes it zero.
    pub fn next_timeout(&self) -> Option<Duration> {
        let returned = self
            .driver
            .shared
            .returned
            .try_borrow()
            .map_or(true, |q| !q.is_empty());
        if self.driver.pool.has_outcomes() || returned {
            return Some(Duration::ZERO);
        }
        let (_, now) = self.driver.clock();
        self.driver
            .pool
            .poll_timeout()
            .map(|deadline| Duration::from_millis(deadline.saturating_sub(now)))
    }

    /// Number of idle connections in the pool.
    pub fn idle_count(&self) -> usize {
        self.driver.pool.idle_count()
    }

    /// Number of open sockets: connecting, lent and idle.
    pub fn open_count(&self) -> usize {
        self.driver.pool.open_count()
    }

    /// Number of requests whose outcome has not been delivered.
    pub fn pending_count(&self) -> usize {
        self.driver.pool.pending_count()
    }

    /// Whether [`shutdown`](Reactor::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.driver.pool.is_shut_down()
    }

    /// One tick. The clock is read once after the wait, and before it only
    /// when returned connections or a deadline need it: clock reads are a
    /// large share of the hit path's cost.
    fn tick(&mut self, events: &mut Events<C>, wait: Option<Duration>) -> Result<(), Error> {
        let driver = &mut self.driver;
        driver.shared.tick.set(driver.shared.tick.get() + 1);
        if driver.has_returned() {
            let now = driver.now();
            driver.take_returned(now);
            driver.run_commands();
        }
        let wait = if driver.pool.has_outcomes() {
            Some(Duration::ZERO)
        } else {
            match driver.pool.poll_timeout() {
                Some(deadline) => {
                    let (_, floor) = driver.clock();
                    let d = Duration::from_millis(deadline.saturating_sub(floor));
                    Some(wait.map_or(d, |w| w.min(d)))
                }
                None => wait,
            }
        };
        match self.poll.poll(&mut self.mio_events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
        let (now, floor) = driver.clock();
        for event in self.mio_events.iter() {
            driver.handle_readiness(event, events, now);
        }
        driver.pool.handle_timeout(floor);
        driver.run_commands();
        driver.deliver(events);
        Ok(())
    }
}

impl<C> AsRawFd for Reactor<C> {
    /// The poller's descriptor. It is readable whenever the reactor has
    /// readiness to process, so another loop (a second `mio::Poll` through
    /// `SourceFd`, raw epoll, or tokio's `AsyncFd`) can wait on it and call
    /// [`poll_events`](Reactor::poll_events) when it fires or when
    /// [`next_timeout`](Reactor::next_timeout) runs out.
    fn as_raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}

impl<C> Drop for Reactor<C> {
    fn drop(&mut self) {
        // Lent connections outlive us: tell them to close on drop, and close
        // the ones already queued.
        self.driver.shared.alive.set(false);
        if let Ok(mut queue) = self.driver.shared.returned.try_borrow_mut() {
            queue.clear();
        }
    }
}

impl<C> std::fmt::Debug for Reactor<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("open", &self.open_count())
            .field("idle", &self.idle_count())
            .field("pending", &self.pending_count())
            .field("shut_down", &self.is_shut_down())
            .finish_non_exhaustive()
    }
}

impl SocketEntry {
    /// Whether an idle socket that became readable is still fit to pool:
    /// a plaintext socket must have nothing to read (a peek tells, and a
    /// stale edge from its lent period reads as empty); a TLS socket may
    /// have received session tickets or key updates, which rustls consumes.
    fn is_quiet(&mut self) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        match self.tls.as_mut() {
            Some(tls) => tls.idle_readable(stream) == IdleVerdict::StillIdle,
            None => matches!(net::peek(stream.as_raw_fd()), net::Peek::Empty),
        }
    }

    /// Whether a returned socket may be pooled: nothing unread, nothing
    /// unsent. `drained` says the connection's own reads proved the receive
    /// queue empty since the last readiness, which saves the check.
    fn is_clean(&mut self, drained: bool) -> bool {
        if let Some(tls) = self.tls.as_mut() {
            if tls.has_buffered_plaintext() || tls.wants_write() {
                return false;
            }
        }
        drained || self.is_quiet()
    }
}

/// The token a slot's socket is registered with: index in the low half,
/// generation in the high half, so a readiness event queued for a closed
/// socket never reaches a later socket in the same slot.
fn token(slot: SlotId) -> Token {
    Token(((u64::from(slot.generation) << 32) | u64::from(slot.index)) as usize)
}

impl<C> Driver<C> {
    /// The clock read for inputs, which may schedule deadlines: milliseconds
    /// since the reactor started, rounded up, so that `now + timeout` is never
    /// earlier than the real deadline.
    fn now(&self) -> Millis {
        self.clock().0
    }

    /// One clock read, as (rounded up, rounded down): inputs take the first,
    /// firing deadlines takes the second, so a deadline fires only once the
    /// real time has reached it.
    fn clock(&self) -> (Millis, Millis) {
        let elapsed = self.epoch.elapsed();
        let floor = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        (crate::time::millis_ceil(elapsed), floor)
    }

    /// Whether connections were dropped since the last tick.
    fn has_returned(&self) -> bool {
        self.shared
            .returned
            .try_borrow()
            .is_ok_and(|q| !q.is_empty())
    }

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

    fn handle_readiness(&mut self, event: &mio::event::Event, events: &mut Events<C>, now: Millis) {
        let Some(slot) = self.slot_of(event.token()) else {
            return;
        };
        let Some(phase) = self.pool.phase(slot) else {
            return;
        };
        let read_side = event.is_readable() || event.is_read_closed() || event.is_error();
        match phase {
            Phase::Connecting => self.check_connect(slot, now),
            Phase::Idle | Phase::Reserved if read_side => {
                let dead = event.is_read_closed()
                    || event.is_error()
                    || !self.entry(slot.index).is_quiet();
                if dead {
                    self.pool.handle_dead(slot, now);
                }
            }
            Phase::Idle | Phase::Reserved => {}
            Phase::Lent => {
                if read_side {
                    let tick = self.shared.tick.get();
                    let entry = self.entry(slot.index);
                    entry.last_ready = tick;
                    // A short read proves no data is left, not that no FIN
                    // is: it must not be pooled on that proof.
                    entry.peer_closed |= event.is_read_closed() || event.is_error();
                }
                events.list.push(Event::Ready(Readiness {
                    conn: ConnId {
                        index: slot.index,
                        generation: slot.generation,
                    },
                    readable: event.is_readable(),
                    writable: event.is_writable(),
                    closed: event.is_read_closed() || event.is_error(),
                }));
            }
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
            let failure = match stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => match stream.peer_addr() {
                    Ok(_) => None,
                    // Not connected yet: a spurious wake-up; wait for the next.
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                    Err(e) => Some(e),
                },
            };
            if let Some(e) = failure {
                self.pool
                    .handle_connect_failed(slot, ConnectError::new(Function::Connect, e));
                return;
            }
            entry.connected = true;
        }
        let progress = match entry.tls.as_mut() {
            Some(tls) => tls.drive_handshake(stream),
            None => Handshake::Done,
        };
        match progress {
            Handshake::Done => self.pool.handle_connected(slot, now),
            Handshake::WantIo => {}
            Handshake::Failed(e) => self.pool.handle_connect_failed(slot, e),
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
        let name = match target.server_name.as_deref() {
            Some(name) => {
                rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|e| {
                    ConnectError::new(
                        Function::Tls,
                        io::Error::new(io::ErrorKind::InvalidInput, e),
                    )
                })?
            }
            None => rustls::pki_types::ServerName::IpAddress(target.addr.into()),
        };
        let config = self.tls_config()?;
        TlsSession::new(&config, name).map(|s| Some(Box::new(s)))
    }

    /// Carries out the pool's commands until it has none; failures feed back
    /// in as inputs, which may queue more.
    fn run_commands(&mut self) {
        while let Some(command) = self.pool.poll_command() {
            match command {
                Command::Connect { slot, addr, bind } => {
                    let tls = match self.tls_for(slot) {
                        Ok(tls) => tls,
                        Err(e) => {
                            self.pool.handle_connect_failed(slot, e);
                            continue;
                        }
                    };
                    match net::connect(addr, bind, self.nodelay) {
                        Ok(mut stream) => {
                            let interest = Interest::READABLE | Interest::WRITABLE;
                            match self.registry.register(&mut stream, token(slot), interest) {
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
                                ),
                            }
                        }
                        Err(e) => self.pool.handle_connect_failed(slot, e),
                    }
                }
                Command::Close { slot } => {
                    if let Some(entry) = self.sockets.get_mut(slot.index as usize) {
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
    fn take_returned(&mut self, now: Millis) {
        if let Ok(mut queue) = self.shared.returned.try_borrow_mut() {
            std::mem::swap(&mut *queue, &mut self.returned_spare);
        }
        let mut batch = std::mem::take(&mut self.returned_spare);
        for returned in batch.drain(..) {
            self.take_back(returned, now);
        }
        self.returned_spare = batch;
    }

    /// A lent connection came back: decide whether it can be pooled.
    fn take_back(&mut self, returned: Returned, now: Millis) {
        let slot = SlotId {
            index: returned.id.index,
            generation: returned.id.generation,
        };
        if self.pool.phase(slot) != Some(Phase::Lent) {
            debug_assert!(false, "returned {slot:?} is not lent");
            return;
        }
        let entry = self.entry(slot.index);
        let drained = returned
            .drained_at
            .is_some_and(|tick| tick >= entry.last_ready);
        entry.stream = Some(returned.stream);
        entry.tls = returned.tls;
        let quiet = returned.reusable && !entry.peer_closed && entry.is_clean(drained);
        self.pool.handle_returned(slot, quiet, now);
    }

    /// Turns decided requests into outcome events.
    fn deliver(&mut self, events: &mut Events<C>) {
        while let Some(outcome) = self.pool.poll_outcome() {
            let event = match outcome {
                PoolOutcome::Deliver {
                    id,
                    slot,
                    from_cache,
                    target,
                    context,
                } => {
                    let entry = self.entry(slot.index);
                    let (stream, tls) = (entry.stream.take(), entry.tls.take());
                    let result = match stream {
                        Some(stream) => Ok(Connection::new(
                            stream,
                            tls,
                            ConnId {
                                index: slot.index,
                                generation: slot.generation,
                            },
                            Rc::clone(&self.shared),
                            from_cache,
                            target.socket_addr(),
                        )),
                        None => {
                            // The table lost the socket: never expected, but
                            // the request still gets exactly one outcome.
                            debug_assert!(false, "no socket for delivered {slot:?}");
                            self.pool.handle_returned(slot, false, self.now());
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
