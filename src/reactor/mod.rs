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

mod driver;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::checkout::Checkout;
use crate::config::Config;
use crate::conn::{Connection, Shared};
use crate::error::{AllocateError, Error};
use crate::event::Events;
use crate::pool::Pool;
use crate::request::{Host, Request, RequestId, Target};
use crate::stats::{KeyStats, Stats};
use crate::timer::TimerId;
use driver::Driver;

/// A `sched_yield` that returns later than this may have given the CPU to
/// another thread (one that finds nobody to run returns within a few
/// microseconds): worth the system call that tells.
const YIELDED: Duration = Duration::from_micros(20);

/// A keep-alive connection pool on a single-threaded poller that the caller
/// drives.
///
/// `C` is the caller's per-request context: anything, moved in with the
/// [`Request`] and moved back in its [`Outcome`](crate::Outcome). Several reactors in one
/// program are independent; none knows the others' limits.
///
/// See the [crate docs](crate) for the tick contract and an example.
pub struct Reactor<C> {
    poll: mio::Poll,
    mio_events: mio::Events,
    driver: Driver<C>,
    /// [`Config::max_events_per_tick`].
    max_events: usize,
    /// [`Config::busy_poll`].
    busy_poll: Duration,
    /// The last tick took as many readiness events as it may: more may be
    /// waiting in the kernel, so the next tick must not block.
    more_ready: bool,
}

impl<C> Reactor<C> {
    /// A reactor with `config`'s limits.
    ///
    /// Build it on the thread that will poll it: a reactor and the
    /// connections it lends share `Rc` state, so neither is `Send`. For more
    /// than one core, run one reactor per thread (see the crate docs).
    ///
    /// Reads the resolver's files ([`Config::resolv_conf`] and
    /// [`Config::hosts_file`]) here: a missing file means its defaults.
    /// A file that changes later is read again at the next lookup, at
    /// most once a second (see the [host-names guide](crate::guides::host_names#files-that-change)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first bad field (a resolver
    /// file that exists but cannot be read included), or [`Error::Io`] if
    /// the poller cannot be created or the system is out of descriptors.
    pub fn new(config: Config) -> Result<Reactor<C>, Error> {
        let limits = config.limits()?;
        let poll = mio::Poll::new()?;
        let poller = poll.as_raw_fd();
        let names = driver::names::Names::new(&config)?;
        Ok(Reactor {
            poll,
            mio_events: mio::Events::with_capacity(config.max_events_per_tick),
            max_events: config.max_events_per_tick,
            busy_poll: config.busy_poll,
            more_ready: false,
            driver: Driver {
                pool: Pool::new(limits),
                sockets: Vec::new(),
                shared: Shared::new(poller),
                returned_spare: Vec::new(),
                hits_spare: Vec::new(),
                epoch: driver::read_clock(),
                tick_now: 0,
                nodelay: config.nodelay,
                // Request schemes are lower-cased; so are these, to match.
                tls_schemes: config
                    .tls_schemes
                    .into_iter()
                    .map(crate::request::lowercase)
                    .collect(),
                tls_config: config.tls,
                tls_counters: (0, 0),
                names,
            },
        })
    }

    /// Asks for a connection. Returns at once with the request's id; the
    /// outcome (a connection or an error) comes later from
    /// [`poll`](Reactor::poll) or [`poll_events`](Reactor::poll_events), even
    /// when an idle connection is ready now.
    ///
    /// A new connection's socket, bind and connect calls are made here, so
    /// the connect is under way before the next poll. For a request [by
    /// name](Request::host) the lookup starts here instead: answered from
    /// the hosts file or the resolver's cache, the connect starts here too;
    /// otherwise the query is sent here.
    ///
    /// Costs on a cache hit: a comparison with the key used last (a hash
    /// lookup for another key); no clock read, no timer, no syscall, no
    /// allocation once warm. A request by name adds a check of
    /// the name (no allocation); a pooled connection for it needs no
    /// lookup.
    ///
    /// # Errors
    ///
    /// The request is handed back inside the [`AllocateError`] with
    /// [`Error::ShutDown`] after [`shutdown`](Reactor::shutdown), or
    /// [`Error::InvalidRequest`] naming what is wrong: an empty scheme, port
    /// 0, an unspecified address (`0.0.0.0`, `::`), an invalid host name or
    /// TLS server name (for a TLS scheme without `server_name`, the host
    /// name is the server name and must be valid as one), a timeout over ten
    /// years; for a [Unix-domain](Request::unix) path: empty, longer than
    /// `sun_path`, a NUL inside a file path, an abstract name off Linux, a
    /// bind address, or a TLS scheme without `server_name`.
    pub fn allocate(&mut self, request: Request<C>) -> Result<RequestId, AllocateError<C>> {
        if let Some(reason) = self.name_refusal(&request) {
            return Err(AllocateError {
                error: Error::InvalidRequest { reason },
                request: Box::new(request),
            });
        }
        // The tick's time serves the returns and the cache hit; the clock is
        // read only if the request must wait or connect, for its deadline.
        let now = self.driver.tick_now();
        // The time the connect (or wait) was decided: its lookup judges the
        // cached answer by it, not by the last tick's time.
        let mut decided = driver::Decided::new(self.driver.epoch);
        // Connections dropped since the last tick may serve this request.
        self.driver.take_returned(now, &mut decided);
        let id = self.driver.pool.allocate(request, now, || decided.now())?;
        self.driver
            .run_commands_between_ticks(self.poll.registry(), decided.at());
        Ok(id)
    }

    /// A connection now, if the pool has one: an opt-in synchronous
    /// checkout beside [`allocate`](Reactor::allocate)'s always-async one.
    /// [`Checkout::Ready`] when an idle connection of the request's key is
    /// there with nobody waiting ahead and the request is not
    /// [fresh](Request::fresh); [`Checkout::Pending`] otherwise, the request
    /// then allocated exactly as `allocate` would (same checks, same queue,
    /// same one outcome).
    ///
    /// What a `Ready` connection is worth, against one a poll delivers:
    ///
    /// - **Alive by the last tick.** A pooled socket's readiness (the peer's
    ///   close, stray data) closes it in the tick that reads it, so one the
    ///   last tick left idle was alive then. When that tick was cut short by
    ///   [`max_events_per_tick`](crate::Config::max_events_per_tick) and may
    ///   have left readiness unread, the candidate is checked directly (a
    ///   peek, or rustls for TLS), as such a tick checks its hits. What a
    ///   poll adds, and this cannot: a close that arrived after the last
    ///   tick. A delivered hit is vouched for by the `epoll_wait` of the
    ///   tick that delivers it; this one by the tick before. The caller's
    ///   first write or read tells, as it would for a close that races any
    ///   delivery (see [what cannot be](crate::guides::guarantees#what-cannot-be)).
    /// - **Within its keep-alive and lifetime by the clock.** The clock is
    ///   read once when there is a candidate, and one past its keep-alive
    ///   or `max_lifetime` is closed (with its close reason) and the next
    ///   judged, never handed out.
    /// - **FIFO holds:** a request waiting for the key is served first;
    ///   this one then queues behind it.
    ///
    /// It costs one clock read when there is a candidate (a cache hit
    /// through `allocate` reads none until the delivering tick, which
    /// reads it anyway) and saves the poll: a proxy at concurrency 1 makes
    /// one `epoll_wait` fewer per request.
    ///
    /// # Errors
    ///
    /// As [`allocate`](Reactor::allocate), with the request given back.
    pub fn checkout_now(&mut self, request: Request<C>) -> Result<Checkout<C>, AllocateError<C>> {
        if let Some(reason) = self.name_refusal(&request) {
            return Err(AllocateError {
                error: Error::InvalidRequest { reason },
                request: Box::new(request),
            });
        }
        let vouched = !self.more_ready;
        self.driver
            .checkout_now(self.poll.registry(), request, vouched)
    }

    /// Opens connections for `request`'s key now, until it has `n` idle or
    /// connecting, within `max_per_host` and `max_open` (never evicting
    /// another key's idle connection); returns how many connects started.
    /// No outcome comes of them: they idle when they complete, and
    /// lifecycle events and counters report them (a failure as a close
    /// with reason `ConnectFailed` or `ConnectTimedOut`). The request's
    /// context and timeout are not used; a connect is bounded by
    /// [`Config::timeout`](crate::Config::timeout).
    ///
    /// # Errors
    ///
    /// As [`allocate`](Reactor::allocate) for a bad target, and
    /// [`Error::ShutDown`] after `shutdown`.
    pub fn preconnect<D>(&mut self, request: Request<D>, n: usize) -> Result<usize, Error> {
        self.check_warm_target(&request)?;
        let now = driver::Decided::new(self.driver.epoch).now();
        let started = self.driver.pool.preconnect(request.target, n, now);
        self.driver
            .run_commands_between_ticks(self.poll.registry(), Some(now));
        Ok(started)
    }

    /// Keeps at least `min_idle` idle connections for `request`'s key from
    /// now on (0 stops it): a warm pool. Each tick tops the key up as its
    /// connections are taken, expire or die, within the limits and only
    /// while no request of the key waits (requests come first); connects
    /// that fail back off, doubling from 100 ms to 30 s, until one
    /// succeeds. [`purge`](Reactor::purge) of the key and
    /// [`shutdown`](Reactor::shutdown) stop it. What is missing is opened
    /// now, as [`preconnect`](Reactor::preconnect) would.
    ///
    /// # Errors
    ///
    /// As [`preconnect`](Reactor::preconnect).
    pub fn keep_warm<D>(&mut self, request: Request<D>, min_idle: usize) -> Result<(), Error> {
        self.check_warm_target(&request)?;
        let now = driver::Decided::new(self.driver.epoch).now();
        self.driver.pool.keep_warm(request.target, min_idle, now);
        self.driver
            .run_commands_between_ticks(self.poll.registry(), Some(now));
        Ok(())
    }

    fn check_warm_target<D>(&self, request: &Request<D>) -> Result<(), Error> {
        if let Some(reason) = self.name_refusal(request) {
            return Err(Error::InvalidRequest { reason });
        }
        self.driver.pool.admit(request).map(|_| ())
    }

    /// Why `request`'s host or TLS server name is refused, if it is: what
    /// the pool core cannot check (it knows neither names nor TLS).
    fn name_refusal<D>(&self, request: &Request<D>) -> Option<&'static str> {
        let valid_server_name = |name: &str| rustls::pki_types::ServerName::try_from(name).is_ok();
        match &request.target.host {
            Host::Name(name) => {
                if let Err(reason) = crate::resolve::check_name(name) {
                    return Some(reason);
                }
            }
            Host::Unix(path) => {
                if let Some(reason) = crate::net::unix_path_refusal(path) {
                    return Some(reason);
                }
            }
            Host::Addr(_) => {}
        }
        match (&request.target.server_name, &request.target.host) {
            (Some(name), _) if !valid_server_name(name) => {
                Some("server name is not a valid DNS name or IP address")
            }
            // A TLS request by name checks the certificate against the name:
            // one rustls refuses would fail only after the lookup and connect.
            (None, Host::Name(name))
                if self.driver.tls_schemes.contains(&request.target.scheme)
                    && !valid_server_name(name) =>
            {
                Some("host name is not a valid TLS server name (set server_name)")
            }
            (None, Host::Unix(_)) if self.driver.tls_schemes.contains(&request.target.scheme) => {
                Some(driver::UNIX_TLS_NEEDS_NAME)
            }
            _ => None,
        }
    }

    /// Cancels a request that has no outcome yet and gives its context back.
    /// No event is ever delivered for it. A connect already under way
    /// finishes and its connection idles in the pool (or serves the next
    /// waiter) instead of being wasted; for a request by name that includes
    /// a lookup under way, and the connection attempts after it (all
    /// within the request's old deadline, at which an unfinished connect is
    /// closed).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRequest`], with nothing changed, if the request
    /// already had its outcome (even one still in the caller's event
    /// buffer), was deallocated, or is another reactor's (a dropped one's
    /// included).
    pub fn deallocate(&mut self, id: RequestId) -> Result<C, Error> {
        let now = self.driver.tick_now();
        // Read if the slot of a hit cancelled here goes to a waiter.
        let mut decided = driver::Decided::new(self.driver.epoch);
        let context = self.driver.pool.deallocate(id, now, || decided.now())?;
        self.driver
            .run_commands_between_ticks(self.poll.registry(), decided.at());
        Ok(context)
    }

    /// Returns a lent connection now (dropping it does the same at the next
    /// tick). A clean connection becomes idle, or goes straight to a waiting
    /// request as `Deferred`; one with unread data, EOF, an error or a
    /// [`close`](Connection::close) is closed.
    ///
    /// A waiting request is judged by the time of this call, not by the
    /// last poll's: one whose deadline passed in a pause without polls
    /// times out (at the next poll) and the connection idles.
    ///
    /// Costs: no syscall when the connection's own reads prove its receive
    /// queue empty, else one `recv(MSG_PEEK)`; a clock read only when a
    /// request waits (for this key, or for room under `max_open`).
    ///
    /// # Errors
    ///
    /// [`Error::ForeignConnection`] if another reactor lent it; it is then
    /// returned to that reactor, as a drop would.
    pub fn free(&mut self, conn: Connection) -> Result<(), Error> {
        if !Rc::ptr_eq(conn.shared(), &self.driver.shared) {
            drop(conn);
            return Err(Error::ForeignConnection);
        }
        let now = self.driver.tick_now();
        // Read only if a waiter's deadline is judged: a passed deadline
        // wins over the connection, however long since the last poll.
        let mut decided = driver::Decided::new(self.driver.epoch);
        // Connections dropped earlier go back first, as they would have at
        // the next tick (the last one returned is the warmest).
        self.driver.take_returned(now, &mut decided);
        if let Some(returned) = conn.into_returned() {
            self.driver.take_back(returned, now, &mut decided);
        }
        self.driver
            .run_commands_between_ticks(self.poll.registry(), decided.at());
        Ok(())
    }

    /// Closes idle connections, fails every pending request (function
    /// `shutdown`, errno `ECANCELED`; the events come from the next poll, so
    /// every context comes back), and refuses later requests with
    /// [`Error::ShutDown`]. Lent connections stay usable and are closed when
    /// returned. Calling it again does nothing.
    pub fn shutdown(&mut self) {
        let now = self.driver.tick_now();
        let mut decided = driver::Decided::new(self.driver.epoch);
        self.driver.take_returned(now, &mut decided);
        self.driver.pool.shutdown();
        self.driver
            .run_commands_between_ticks(self.poll.registry(), decided.at());
    }

    /// Registers the caller's own `source` (a listener, an accepted socket,
    /// a pipe) with the reactor's poller under the caller's `token`. Its
    /// readiness comes out of [`poll`](Reactor::poll) and
    /// [`poll_events`](Reactor::poll_events) as [`Event::Source`] with that
    /// token, in the same tick as outcomes and connection readiness: a proxy
    /// runs its whole loop on one poller. Edge-triggered, like mio.
    ///
    /// Tokens are the caller's: any value below 2^63 (2^31 on 32-bit
    /// targets); the reactor's own sockets never use that range, so the two
    /// cannot collide. Costs one `epoll_ctl`.
    ///
    /// [`Event::Source`]: crate::Event::Source
    ///
    /// # Errors
    ///
    /// [`Error::TokenOutOfRange`] for a token with the top bit set, or
    /// [`Error::Io`] if the poller refuses the source (e.g. already
    /// registered).
    pub fn register<S>(
        &mut self,
        source: &mut S,
        token: mio::Token,
        interest: mio::Interest,
    ) -> Result<(), Error>
    where
        S: mio::event::Source + ?Sized,
    {
        let token = caller_token(token)?;
        self.poll.registry().register(source, token, interest)?;
        Ok(())
    }

    /// Changes the token or interest of a source registered with
    /// [`register`](Reactor::register).
    ///
    /// # Errors
    ///
    /// As [`register`](Reactor::register).
    pub fn reregister<S>(
        &mut self,
        source: &mut S,
        token: mio::Token,
        interest: mio::Interest,
    ) -> Result<(), Error>
    where
        S: mio::event::Source + ?Sized,
    {
        let token = caller_token(token)?;
        self.poll.registry().reregister(source, token, interest)?;
        Ok(())
    }

    /// Removes a source registered with [`register`](Reactor::register).
    /// Closing the source removes it too.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the poller refuses (e.g. it was not registered).
    pub fn deregister<S>(&mut self, source: &mut S) -> Result<(), Error>
    where
        S: mio::event::Source + ?Sized,
    {
        self.poll.registry().deregister(source)?;
        Ok(())
    }

    /// Sets a timer on the reactor's own wheel: after `delay` (rounded up to
    /// whole milliseconds, never early), a poll reports [`Event::Timer`] with
    /// the returned id and `value`. A zero delay fires at the next poll.
    ///
    /// The caller's timers share the wheel with the pool's deadlines, so
    /// [`next_timeout`](Reactor::next_timeout) and `poll` account for them:
    /// an embedding loop has one deadline to wait for, not two to merge.
    /// Costs: O(1), one clock read, no syscall; no allocation once the
    /// wheel has room.
    ///
    /// [`Event::Timer`]: crate::Event::Timer
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for a delay over ten years.
    pub fn set_timer(&mut self, delay: Duration, value: u64) -> Result<TimerId, Error> {
        let delay = crate::time::millis_ceil(delay);
        if delay > crate::time::MAX_DELAY_MS {
            return Err(Error::InvalidRequest {
                reason: "timer delay is over 10 years",
            });
        }
        // A timer counts from this call: read the clock (rounded up, so a
        // zero delay must still be due at the next timer check, as a zero
        // request timeout is).
        let (now, _) = self.driver.read_time();
        let deadline = if delay == 0 {
            now.saturating_sub(1)
        } else {
            now + delay
        };
        Ok(self.driver.pool.set_caller_timer(deadline, value))
    }

    /// Cancels a timer that has not fired, giving its value back. O(1).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTimer`], with nothing changed, if the timer already
    /// fired (even if its event is still in the caller's buffer), was
    /// cancelled, or is another reactor's.
    pub fn cancel_timer(&mut self, id: TimerId) -> Result<u64, Error> {
        self.driver.pool.cancel_caller_timer(id)
    }

    /// Number of caller timers that have neither fired nor been cancelled.
    #[must_use]
    pub fn timer_count(&self) -> usize {
        self.driver.pool.caller_timer_count()
    }

    /// Waits up to `timeout` (`None`: without limit) until at least one event
    /// is ready, and appends the events to `events`. Returns early with no
    /// events only when the timeout passes.
    ///
    /// With no request pending and no connection lent, nothing can happen:
    /// a `None` timeout then waits for ever, as `mio::Poll::poll` does.
    ///
    /// With [`Config::busy_poll`] set, it first looks without waiting, tick
    /// after tick, for up to that long (never past `timeout`), and sleeps in
    /// the kernel only if nothing came: an event that arrives within the
    /// spin is taken without a wake-up, for the CPU the spin burns. It
    /// yields the CPU between looks and stops spinning once another thread
    /// has taken it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if waiting on the poller fails (not for `EINTR`, which
    /// is retried). Events already appended stay in `events`.
    pub fn poll(&mut self, events: &mut Events<C>, timeout: Option<Duration>) -> Result<(), Error> {
        let before = events.len();
        // Something is ready without waiting (the hit path: an outcome is
        // decided): one tick that does not wait, and no clock read for the
        // timeout it will not need. Returned or unstamped connections alone
        // are not news: the waiting tick takes them back and stamps them
        // before it sleeps, and a zero tick for them would be an
        // `epoll_wait` that finds nothing (a proxy's free, then its next
        // client, paid it on one request in eleven).
        if self.has_news() {
            self.tick(events, Some(Duration::ZERO))?;
            if events.len() > before {
                return Ok(());
            }
        }
        // A timeout too long to represent as an instant means no limit.
        let until = timeout.and_then(|t| driver::read_clock().checked_add(t));
        let mut wait = timeout;
        if !self.busy_poll.is_zero() {
            if self.spin(events, before, until)? {
                return Ok(());
            }
            if let Some(u) = until {
                wait = Some(u.saturating_duration_since(driver::read_clock()));
            }
        }
        loop {
            self.tick(events, wait)?;
            if events.len() > before {
                return Ok(());
            }
            if let Some(u) = until {
                let left = u.saturating_duration_since(driver::read_clock());
                if left.is_zero() {
                    return Ok(());
                }
                wait = Some(left);
            }
        }
    }

    /// [`Config::busy_poll`]: zero-timeout ticks until an event comes, the
    /// spin's budget is spent, `until` passes or another thread takes the
    /// CPU. True when `poll` is done: an event came, or its timeout passed.
    fn spin(
        &mut self,
        events: &mut Events<C>,
        before: usize,
        until: Option<Instant>,
    ) -> Result<bool, Error> {
        let start = driver::read_clock();
        let budget_end = start.checked_add(self.busy_poll).unwrap_or(start);
        let switches = crate::net::involuntary_switches();
        loop {
            self.tick(events, Some(Duration::ZERO))?;
            if events.len() > before {
                return Ok(true);
            }
            let now = driver::read_clock();
            if until.is_some_and(|u| now >= u) {
                return Ok(true);
            }
            if now >= budget_end {
                return Ok(false);
            }
            // Offer the CPU between looks: a thread that is ready to run
            // here (the client, the upstream, another worker) gets it now
            // rather than at the scheduler's next tick, so the spin uses
            // only time nobody else wanted. Once one has taken it, spinning
            // has stopped paying: sleep, and be woken by the event. A slow
            // yield alone is not proof (the hypervisor may have paused the
            // virtual CPU), so the thread's preemption count confirms it.
            std::thread::yield_now();
            if driver::read_clock().saturating_duration_since(now) > YIELDED
                && crate::net::involuntary_switches() != switches
            {
                return Ok(false);
            }
        }
    }

    /// One tick without blocking: takes what the kernel has, fires due
    /// deadlines, and appends the events to `events`. For an embedding loop
    /// that waits elsewhere; see [`next_timeout`](Reactor::next_timeout).
    ///
    /// Costs: one `epoll_wait` with a zero timeout, plus the work the events
    /// call for.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the poller cannot be read.
    pub fn poll_events(&mut self, events: &mut Events<C>) -> Result<(), Error> {
        self.tick(events, Some(Duration::ZERO))
    }

    /// How long an embedding loop may wait (on [`as_raw_fd`](Reactor::as_raw_fd)
    /// becoming readable) before it must call [`poll_events`](Reactor::poll_events):
    /// zero when outcomes, returned connections or readiness left over from
    /// a full tick are waiting, the time to the next deadline (the pool's, a
    /// caller timer's, a DNS query's or a Happy Eyeballs attempt's) rounded
    /// up to whole milliseconds, or `None` when no deadline is set. Compute
    /// it after handling the tick's events, since dropping a connection
    /// makes it zero.
    #[must_use]
    pub fn next_timeout(&self) -> Option<Duration> {
        if self.must_not_wait() {
            return Some(Duration::ZERO);
        }
        let (_, now) = self.driver.peek_clock();
        self.driver
            .next_deadline()
            .map(|deadline| Duration::from_millis(deadline.saturating_sub(now)))
    }

    /// An exact snapshot: sockets connecting, lent and idle and requests
    /// waiting, over all keys, and the counters since the reactor was made
    /// (hits, new connections, timeouts, failures by function, closes by
    /// reason, queue overflows, TLS handshakes and how many were
    /// post-quantum). O(1), no allocation, no syscall: the pool keeps every
    /// number as it changes state.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let mut stats = self.driver.pool.stats();
        (
            stats.counters.tls_handshakes,
            stats.counters.tls_post_quantum,
        ) = self.driver.tls_counters;
        stats
    }

    /// The same counts per pool key, written into `out` (cleared first).
    /// O(keys); it allocates only to grow `out` (keep one and reuse it) or
    /// to copy a target's owned strings.
    pub fn key_stats(&self, out: &mut Vec<KeyStats>) {
        self.driver.pool.key_stats(out);
    }

    /// Closes `target`'s idle connections (reason
    /// [`Purged`](crate::CloseReason::Purged)) and marks its connecting and
    /// lent ones to be closed instead of pooled when they come back: after
    /// an upstream changed or kept failing. Requests keep being served, by
    /// new connections. Returns how many connections were closed now and
    /// how many were marked. Targets compare as pool keys do (an outcome's
    /// `target`, or a request's, names one). O(connections).
    pub fn purge(&mut self, target: &Target) -> (usize, usize) {
        let now = self.driver.tick_now();
        let mut decided = driver::Decided::new(self.driver.epoch);
        self.driver.take_returned(now, &mut decided);
        let counts = self.driver.pool.purge(target, now, || decided.now());
        self.driver
            .run_commands_between_ticks(self.poll.registry(), decided.at());
        counts
    }

    /// Number of idle connections in the pool.
    #[must_use]
    pub fn idle_count(&self) -> usize {
        self.driver.pool.idle_count()
    }

    /// Number of open sockets: connecting, lent and idle.
    #[must_use]
    pub fn open_count(&self) -> usize {
        self.driver.pool.open_count()
    }

    /// Number of requests whose outcome has not been delivered.
    #[must_use]
    pub fn pending_count(&self) -> usize {
        self.driver.pool.pending_count()
    }

    /// Whether [`shutdown`](Reactor::shutdown) was called.
    #[must_use]
    pub fn is_shut_down(&self) -> bool {
        self.driver.pool.is_shut_down()
    }

    /// Whether a tick has work without waiting: news for the caller, or
    /// returned connections to take back and idle ones to stamp (which the
    /// waiting tick of `poll` does itself, but an embedding loop's wait
    /// does not).
    fn must_not_wait(&self) -> bool {
        self.has_news() || self.driver.has_returned() || self.driver.pool.has_unstamped()
    }

    /// Whether a tick would have events for the caller without waiting:
    /// readiness the last tick left in the kernel, an outcome, or a
    /// lifecycle change (a `free` that closed or parked a connection).
    fn has_news(&self) -> bool {
        self.more_ready || self.driver.pool.has_news()
    }

    /// One tick. The clock is read once, after the wait; before it only
    /// when the tick may block and a deadline bounds the wait (never on the
    /// hit path, where an outcome is waiting and the wait is zero): clock
    /// reads were a quarter of the hit path's cost.
    fn tick(&mut self, events: &mut Events<C>, wait: Option<Duration>) -> Result<(), Error> {
        let driver = &mut self.driver;
        driver.shared.tick.set(driver.shared.tick.get() + 1);
        if driver.has_returned() {
            let now = driver.tick_now();
            // Before this tick's clock read: a waiter a return serves is
            // judged, and the work it queued (a waiter's connect) runs, by a
            // time of its own.
            let mut decided = driver::Decided::new(driver.epoch);
            driver.take_returned(now, &mut decided);
            driver.run_commands_between_ticks(self.poll.registry(), decided.at());
        }
        let wait = if self.more_ready || driver.pool.has_news() || wait == Some(Duration::ZERO) {
            Some(Duration::ZERO)
        } else {
            // Idle connections must have their expiry on the wheel before
            // the wheel says how long the tick may sleep.
            let (now, floor) = driver.read_time();
            driver.pool.stamp_idle(now);
            match driver.next_deadline() {
                Some(deadline) => {
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
        let (now, floor) = driver.read_time();
        driver.pool.stamp_idle(now);
        let mut ready = 0;
        let registry = self.poll.registry();
        for event in self.mio_events.iter() {
            driver.handle_readiness(registry, event, events, now);
            ready += 1;
        }
        // The kernel returns at most `max_events`; a full batch may have left
        // more behind, and expired timers over the budget stay due.
        self.more_ready = ready >= self.max_events;
        // After readiness, so a connect that completed late is known and
        // pooled; the core already failed its request if the deadline had
        // passed (see `Pool::handle_connected`).
        driver.pool.handle_timeout_bounded(floor, self.max_events);
        // Warm keys topped up once per tick, after the timers that may have
        // expired their idle connections.
        if driver.pool.has_warm_keys() {
            driver.pool.top_up_warm(now);
        }
        // After the pool's: a request whose deadline passed has failed and
        // its slot closed, so no attempt starts for it. One branch when no
        // name is being resolved, dialled or watched for a refresh (a name
        // with connections keeps its refresh deadline here).
        if driver.names.has_timers() {
            driver.names_timeout(registry, floor, now);
        }
        // A tick that could not take all readiness cannot vouch for the
        // pooled connections it delivers: they are checked one by one.
        if self.more_ready && driver.pool.has_outcomes() {
            driver.check_undelivered_hits(now);
        }
        driver.run_commands(registry, now);
        driver.deliver(events, now);
        // Delivery may replace a hit whose connection expired: its close,
        // and the connect or hit that replaces it, happen in this tick.
        while driver.pool.has_commands() {
            driver.run_commands(registry, now);
            driver.deliver(events, now);
        }
        driver.deliver_lifecycle(events);
        driver.deliver_timers(events);
        Ok(())
    }
}

/// The poller token for a caller's `token`, refused if it is in the
/// reactor's range.
fn caller_token(token: mio::Token) -> Result<mio::Token, Error> {
    if token.0 & driver::CALLER_BIT != 0 {
        return Err(Error::TokenOutOfRange(token));
    }
    Ok(mio::Token(token.0 | driver::CALLER_BIT))
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
        self.driver.shared.close_returned();
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
