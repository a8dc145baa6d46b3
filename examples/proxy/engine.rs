//! The proxy's engine: one thread per core, one [`Reactor`] per thread, and
//! everything of a thread in that reactor's one loop: the listener and the
//! client sockets are registered in it under our own tokens, client and
//! upstream timeouts are its timers, and upstream connections come from its
//! pool and report readiness as [`Event::Ready`].
//!
//! # Per client connection
//!
//! A slot in a table of client states (reused, with its buffers, by the next
//! client: nothing is allocated per request once warm). Each slot has two
//! fixed buffers, `inb` (client → upstream) and `outb` (upstream → client).
//! A full buffer stops reading on its side: a client that does not read
//! stops the proxy reading its upstream connection, an upstream that does
//! not read stops the proxy reading the client. The proxy never holds more
//! than two buffers per client.
//!
//! A request's life: `Idle` (reading a head) → `Connecting` (a connection
//! asked of the pool; skipped when an idle one is taken at once with
//! [`Reactor::checkout_now`], so a kept-alive request goes up in the pass
//! that read it, with no poll in between) → `Exchanging` (request up,
//! response down) →
//! `Flushing` (the response is in, the upstream connection went back to the
//! pool, the rest goes to the client) → `Idle` again, or closed.
//!
//! # Readiness
//!
//! Edge-triggered: each side keeps a readable and a writable flag, set by
//! events and cleared by `WouldBlock`, or by a read that returned less than
//! it had room for (the socket is drained: no extra read for the
//! `WouldBlock`), or a write that took less than offered.
//!
//! # Retry rule
//!
//! A request is sent again, once, on a new connection (a
//! [fresh](keepalive::Request::fresh) request: never one from the pool)
//! when all of these hold: its connection came from the pool
//! (`from_cache()` is `Some`), it failed (write error, EOF or reset) before
//! any byte of the response arrived, and either no byte of the request was
//! written, or the request is idempotent (RFC 9110 §9.2.2: GET, HEAD, PUT,
//! DELETE, OPTIONS, TRACE) and has no body, so the proxy still holds all of
//! it. This covers the keep-alive race (the upstream closed an idle
//! connection as the proxy reused it) without ever repeating a request
//! whose effect may have happened. Anything else is answered 502.
//!
//! # Deadlines
//!
//! Every phase of a client has one, on the client's one timer (one timer
//! operation per request in the common case: a head that arrives whole
//! and a request without a body):
//!
//! | phase | deadline | on expiry |
//! |---|---|---|
//! | between requests | `client_timeout` without a byte | close |
//! | a request head | `header_timeout` from its first byte | 408, close |
//! | a request body | `client_timeout` between its bytes | 408, close; the upstream connection (mid-request) closed |
//! | the upstream connect | `connect_timeout`, lookup and queue wait included (the pool's request timeout) | 504 |
//! | the response head | `upstream_timeout` from the end of the request | 504 |
//! | the response body | `client_timeout` without progress either way | close |
//!
//! # Clients that go away
//!
//! A client whose socket reports its peer's FIN, a reset or an error is
//! closed in the tick that reports it, whatever its state, as nginx does
//! without `proxy_ignore_client_abort`: a client that shuts down its
//! sending side is taken as gone. Its pending upstream request is
//! cancelled (a connection that completes anyway idles in the pool), an
//! upstream connection it still holds is mid-request or mid-response and
//! is closed, never pooled; one whose response was complete went back to
//! the pool already. Its timer is cancelled and its slot, with its
//! buffers, waits for the next client. An upstream's FIN is read to the
//! end in the same way: a short read after it does not mean the socket is
//! drained, so a response delimited by the close ends, with a close, for
//! the client.
//!
//! # Admission and stopping
//!
//! Past [`Config::client_limit`] a new client gets a 503 and a close, and
//! out of descriptors at `accept` a spare descriptor answers the queued
//! clients the same way ([`admission`]). A graceful stop ([`Proxy::drain`],
//! or SIGTERM/SIGINT with [`Config::signals`]) closes the listener and the
//! idle clients, lets the requests in flight finish within
//! [`Config::drain_timeout`], then closes the pool.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use keepalive::mio::net::{TcpListener, TcpStream, UnixStream};
use keepalive::mio::{Interest, Token};
use keepalive::{
    Checkout, Config as PoolConfig, ConnId, Connection, Event, Events, Reactor, Request, RequestId,
    TimerId,
};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::admission::{self, Spare};
use super::http1::{self, Buf, Framing, HeadError};
use super::upstream::Upstream;

/// How the proxy runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where clients connect (port 0: any free port; see [`Proxy::addr`]).
    pub listen: SocketAddr,
    /// The one upstream server, by address or by name.
    pub upstream: Upstream,
    /// Worker threads, each with its own listener (`SO_REUSEPORT`) and
    /// reactor.
    pub threads: usize,
    /// Upstream connect, name lookup and queue wait included: 504 on
    /// expiry.
    pub connect_timeout: Duration,
    /// From the end of a request (its head, or the last byte of its body)
    /// to its response's head: 504 on expiry.
    pub upstream_timeout: Duration,
    /// From the first byte of a request head to its end: a client slower
    /// than this (slowloris) is answered 408 and closed.
    pub header_timeout: Duration,
    /// A client that makes no progress for this long is closed: idle
    /// between requests, stalled in the middle of its request body (408),
    /// or not reading its response.
    pub client_timeout: Duration,
    /// On a graceful stop ([`Proxy::drain`], SIGTERM, SIGINT): how long
    /// requests in flight may take to finish before they are cut.
    pub drain_timeout: Duration,
    /// Clients open at once over all workers; past it, a new client is
    /// answered 503 and closed. `None`: half of what `RLIMIT_NOFILE`
    /// leaves for sockets (see [`admission::default_max_clients`]).
    pub max_clients: Option<usize>,
    /// How long an idle upstream connection stays in the pool.
    pub upstream_keep_alive: Duration,
    /// Upstream connections per thread, connecting plus in use; more
    /// requests wait for one.
    pub max_upstream: usize,
    /// Bytes buffered per client per direction.
    pub buffer: usize,
    /// How long a worker polls without sleeping after its last events
    /// ([`keepalive::Config::busy_poll`]): lower latency at low load for
    /// up to a core of CPU per worker, CPU no other thread wanted (the spin
    /// yields its core). Zero (the default): off.
    pub busy_poll: Duration,
    /// SIGTERM and SIGINT drain the proxy, SIGHUP is ignored: each worker
    /// registers them as a source of its reactor. Off by default: a
    /// library user (a test, say) keeps its process's own handlers.
    pub signals: bool,
    /// Called first thing on each worker thread (tests count allocations).
    pub on_thread_start: Option<fn()>,
}

impl Config {
    pub fn new(listen: SocketAddr, upstream: impl Into<Upstream>) -> Config {
        Config {
            listen,
            upstream: upstream.into(),
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            client_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            max_clients: None,
            upstream_keep_alive: Duration::from_secs(30),
            max_upstream: 512,
            buffer: 16 * 1024,
            busy_poll: Duration::ZERO,
            signals: false,
            on_thread_start: None,
        }
    }

    /// The client limit in force: [`Config::max_clients`], or the default
    /// from the descriptor limit.
    pub fn client_limit(&self) -> usize {
        self.max_clients.unwrap_or_else(|| {
            admission::default_max_clients(admission::descriptor_limit(), self.threads.max(1))
        })
    }

    /// Upstream sockets per worker (connecting, in use, idle): what the
    /// configuration asks, within the worker's share of the descriptors
    /// the client limit leaves, and never less than a quarter of them
    /// (see [`Config::clients_exceed_descriptors`]).
    pub fn upstream_sockets(&self) -> usize {
        let threads = self.threads.max(1);
        let wanted = self.max_upstream * 2 + 16;
        match self.socket_budget() {
            Some(budget) => {
                let left = budget.saturating_sub(self.client_limit()) / threads;
                wanted.min(left.max(budget / 4 / threads)).max(1)
            }
            None => wanted,
        }
    }

    /// Descriptors left for sockets (clients and upstream, all workers)
    /// under `RLIMIT_NOFILE`; `None`: no limit.
    fn socket_budget(&self) -> Option<usize> {
        let fixed = admission::fixed_descriptors(self.threads.max(1));
        admission::descriptor_limit().map(|limit| limit.saturating_sub(fixed))
    }

    /// Whether the client limit asks for more descriptors than the process
    /// has beside its upstream quarter: then clients past what is left are
    /// answered 503 at `accept` (out of descriptors), not queued behind a
    /// starved upstream.
    pub fn clients_exceed_descriptors(&self) -> bool {
        self.socket_budget()
            .is_some_and(|budget| self.client_limit() > budget - budget / 4)
    }
}

/// A worker's counters, published after each of its loop's ticks.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    upstream_connects: AtomicU64,
    retries: AtomicU64,
    bad_gateway: AtomicU64,
    gateway_timeout: AtomicU64,
    upstream_bytes: AtomicU64,
    buffered: AtomicU64,
    buffered_max: AtomicU64,
    clients: AtomicU64,
    upstream_open: AtomicU64,
    upstream_idle: AtomicU64,
    refused: AtomicU64,
    request_timeouts: AtomicU64,
    aborted: AtomicU64,
}

/// The counters of all workers, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Responses relayed from upstream to a client, completely.
    pub requests: u64,
    /// Upstream connections opened: outcomes with `from_cache() == None`.
    pub upstream_connects: u64,
    /// Requests sent again under the retry rule.
    pub retries: u64,
    /// 502 answers of the proxy's own.
    pub bad_gateway: u64,
    /// 504 answers of the proxy's own.
    pub gateway_timeout: u64,
    /// Bytes read from upstream connections.
    pub upstream_bytes: u64,
    /// Bytes held in client buffers now.
    pub buffered: u64,
    /// The most bytes a worker held in client buffers at once (summed
    /// over workers).
    pub buffered_max: u64,
    /// Client connections open now.
    pub clients: u64,
    /// Upstream sockets open now (connecting, in use, idle).
    pub upstream_open: u64,
    /// Idle upstream connections in the pools now.
    pub upstream_idle: u64,
    /// Clients answered 503 and closed: past the client limit, or out of
    /// descriptors at `accept`.
    pub refused: u64,
    /// 408 answers: a head slower than the header timeout, or a body that
    /// stalled longer than the client timeout.
    pub request_timeouts: u64,
    /// Clients that went away (EOF, reset, error) in the middle of a
    /// request: reading its head or body, or waiting for or receiving its
    /// response.
    pub aborted: u64,
}

/// A running proxy: its workers stop when it is stopped or dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    workers: Vec<WorkerHandle>,
}

struct WorkerHandle {
    stats: Arc<Stats>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// What the workers share: a stop flag, and for each worker its number of
/// clients and an inbox of clients handed to it.
///
/// The kernel spreads connections over `SO_REUSEPORT` listeners by a hash,
/// which leaves one worker with more clients than another (64 connections
/// split 43/21 in a trial) and its clients with longer waits. So a worker
/// that accepts a connection while it has more clients than the least
/// busy worker hands it over: a push to that worker's inbox and a byte on
/// its wake socket, which its reactor watches. Per connection, not per
/// request.
struct Shared {
    /// Stop now: every worker closes everything and exits.
    stop: AtomicBool,
    /// Stop gracefully (see [`Proxy::drain`]).
    drain: AtomicBool,
    inboxes: Vec<Inbox>,
    /// Workers still running, and the signal that one ended.
    running: Mutex<usize>,
    ended: Condvar,
    /// [`Config::client_limit`], over all workers.
    max_clients: usize,
}

impl Shared {
    /// Clients open over all workers, counting those handed over and not
    /// yet taken.
    fn clients(&self) -> usize {
        self.inboxes
            .iter()
            .map(|i| i.clients.load(Ordering::Relaxed))
            .sum()
    }
}

struct Inbox {
    /// Clients the worker has, counting those handed to it and not yet
    /// taken.
    clients: AtomicUsize,
    queue: Mutex<Vec<TcpStream>>,
    /// The writing end of the worker's wake socket pair (nonblocking: a
    /// full pair already has a wake-up in it).
    wake: std::os::unix::net::UnixStream,
}

impl Inbox {
    fn wake(&self) {
        let _ = (&self.wake).write(b"w");
    }
}

impl Proxy {
    /// Binds `config.threads` listeners to `config.listen` with
    /// `SO_REUSEPORT` and starts a worker on each; returns once all are
    /// polling.
    pub fn start(config: Config) -> io::Result<Proxy> {
        let threads = config.threads.max(1);
        let first = reuseport_listener(config.listen)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..threads {
            listeners.push(reuseport_listener(addr)?);
        }
        let mut inboxes = Vec::new();
        let mut wake_ends = Vec::new();
        for _ in 0..threads {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
            ours.set_nonblocking(true)?;
            theirs.set_nonblocking(true)?;
            inboxes.push(Inbox {
                clients: AtomicUsize::new(0),
                queue: Mutex::new(Vec::new()),
                wake: ours,
            });
            wake_ends.push(theirs);
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            drain: AtomicBool::new(false),
            inboxes,
            running: Mutex::new(threads),
            ended: Condvar::new(),
            max_clients: config.client_limit(),
        });
        let mut proxy = Proxy {
            addr,
            shared: Arc::clone(&shared),
            workers: Vec::new(),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        for (i, (listener, theirs)) in listeners.into_iter().zip(wake_ends).enumerate() {
            let stats = Arc::new(Stats::default());
            let (config, ready, st) = (config.clone(), ready_tx.clone(), Arc::clone(&stats));
            let shared = Arc::clone(&shared);
            let thread = thread::Builder::new()
                .name(format!("proxy-{i}"))
                .spawn(move || {
                    if let Some(hook) = config.on_thread_start {
                        hook();
                    }
                    // Built here: a reactor is not Send.
                    let result = match Worker::new(&config, listener, theirs, st, &shared, i) {
                        Ok(worker) => {
                            let _ = ready.send(Ok(()));
                            worker.run()
                        }
                        Err(e) => {
                            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
                            Err(e)
                        }
                    };
                    if let Ok(mut running) = shared.running.lock() {
                        *running -= 1;
                        shared.ended.notify_all();
                    }
                    result
                })?;
            proxy.workers.push(WorkerHandle {
                stats,
                thread: Some(thread),
            });
        }
        for _ in 0..threads {
            ready_rx
                .recv()
                .map_err(|_| io::Error::other("a worker died starting"))??;
        }
        Ok(proxy)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters of all workers, summed.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for w in self.per_worker() {
            t.requests += w.requests;
            t.upstream_connects += w.upstream_connects;
            t.retries += w.retries;
            t.bad_gateway += w.bad_gateway;
            t.gateway_timeout += w.gateway_timeout;
            t.upstream_bytes += w.upstream_bytes;
            t.buffered += w.buffered;
            t.buffered_max += w.buffered_max;
            t.clients += w.clients;
            t.upstream_open += w.upstream_open;
            t.upstream_idle += w.upstream_idle;
            t.refused += w.refused;
            t.request_timeouts += w.request_timeouts;
            t.aborted += w.aborted;
        }
        t
    }

    /// Each worker's counters.
    pub fn per_worker(&self) -> impl Iterator<Item = Totals> + '_ {
        self.workers.iter().map(|w| {
            let s = &w.stats;
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            Totals {
                requests: get(&s.requests),
                upstream_connects: get(&s.upstream_connects),
                retries: get(&s.retries),
                bad_gateway: get(&s.bad_gateway),
                gateway_timeout: get(&s.gateway_timeout),
                upstream_bytes: get(&s.upstream_bytes),
                buffered: get(&s.buffered),
                buffered_max: get(&s.buffered_max),
                clients: get(&s.clients),
                upstream_open: get(&s.upstream_open),
                upstream_idle: get(&s.upstream_idle),
                refused: get(&s.refused),
                request_timeouts: get(&s.request_timeouts),
                aborted: get(&s.aborted),
            }
        })
    }

    /// Stops the workers and waits for them; the first worker error, if any.
    /// Clients and requests in flight are cut.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_workers()
    }

    /// Stops gracefully, as SIGTERM does: each worker stops accepting
    /// (its listener is closed, so the kernel refuses new connections),
    /// closes its idle clients, lets requests in flight finish (their
    /// clients are closed after their responses) for up to
    /// [`Config::drain_timeout`], then closes what is left and its pooled
    /// upstream connections. Returns when all workers have ended, with the
    /// first worker error, if any.
    #[allow(
        dead_code,
        reason = "the binary drains on SIGTERM; tests and embedders call this"
    )]
    pub fn drain(mut self) -> io::Result<()> {
        self.shared.drain.store(true, Ordering::SeqCst);
        for inbox in &self.shared.inboxes {
            inbox.wake();
        }
        self.join_workers()
    }

    /// Waits up to `timeout` for every worker to end (after a signal, or
    /// a worker error); `true` if they have.
    pub fn wait_ended(&self, timeout: Duration) -> bool {
        let Ok(running) = self.shared.running.lock() else {
            return true;
        };
        match self
            .shared
            .ended
            .wait_timeout_while(running, timeout, |n| *n > 0)
        {
            Ok((running, _)) => *running == 0,
            Err(_) => true,
        }
    }

    fn stop_workers(&mut self) -> io::Result<()> {
        self.shared.stop.store(true, Ordering::SeqCst);
        for inbox in &self.shared.inboxes {
            inbox.wake();
        }
        self.join_workers()
    }

    fn join_workers(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let r = t
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a worker panicked")));
                if result.is_ok() {
                    result = r;
                }
            }
        }
        result
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.stop_workers();
    }
}

fn reuseport_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// How often a worker publishes its counters when nothing else happens
/// (the pool closes idle connections without a caller event).
const STATS_EVERY: Duration = Duration::from_millis(50);
/// The values of the worker's own timers: no client key is this large.
const STATS_TIMER: u64 = u64::MAX;
const ACCEPT_TIMER: u64 = u64::MAX - 1;
const DRAIN_TIMER: u64 = u64::MAX - 2;

/// How long a client accepted but silent when a drain starts may take to
/// send its first request.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

const LISTENER: Token = Token(1 << 62);
const WAKE: Token = Token((1 << 62) + 1);
const SIGNALS: Token = Token((1 << 62) + 2);

/// A client's token, outcome context and timer value: slot and generation
/// (30 bits, so it never reaches [`LISTENER`]).
fn key(index: usize, generation: u32) -> u64 {
    (u64::from(generation & 0x3fff_ffff) << 32) | index as u64
}

fn split(key: u64) -> (usize, u32) {
    ((key & 0xffff_ffff) as usize, (key >> 32) as u32)
}

/// Hashes a [`ConnId`] (two `u32`s) with a multiply: the map from upstream
/// connection to client is looked up on every upstream event.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(32) ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

type ConnMap = HashMap<ConnId, usize, BuildHasherDefault<IdHasher>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The slot has no client.
    Free,
    /// Reading a request head.
    Idle,
    /// The request waits for an upstream connection.
    Connecting,
    /// The upstream connection is ours: request up, response down.
    Exchanging,
    /// Nothing more from upstream; the rest of the answer goes to the client.
    Flushing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerKind {
    /// The response head must come before it fires: 504.
    Upstream,
    /// Progress must have been made since it was set.
    Progress,
    /// The request head must be complete before it fires: 408.
    Header,
    /// Request body bytes must have come since it was set: 408.
    Body,
}

/// One client connection and the request it is in.
struct Client {
    sock: Option<TcpStream>,
    generation: u32,
    state: State,
    /// Client → upstream bytes: the head being read, body, later requests.
    inb: Buf,
    /// Upstream → client bytes: the response head being read, body.
    outb: Buf,
    /// The request head as it goes upstream; kept until the response starts
    /// (a retry sends it again).
    up_head: Vec<u8>,
    up_head_sent: usize,
    /// The response head as it goes to the client, or the proxy's answer.
    down_head: Vec<u8>,
    down_head_sent: usize,
    /// Length of the incomplete head `inb` held at the last parse.
    head_tried: usize,
    req_body: Framing,
    /// Bytes at the front of `inb` that are request body, not yet written.
    req_ready: usize,
    resp_body: Framing,
    /// Bytes at the front of `outb` that are response body, not yet sent.
    resp_ready: usize,
    resp_head_done: bool,
    upstream: Option<Connection>,
    pending: Option<RequestId>,
    timer: Option<TimerId>,
    timer_kind: TimerKind,
    /// Bumped by every byte moved; the progress timer compares it.
    progress: u64,
    /// Bumped by every read from the client; the body timer compares it.
    client_reads: u64,
    /// `progress` or `client_reads` when the timer was set.
    timer_progress: u64,
    client_readable: bool,
    client_writable: bool,
    up_readable: bool,
    up_writable: bool,
    /// The upstream shut down its sending side (or failed): read on to the
    /// EOF even after a short read, as no further edge will come.
    up_hup: bool,
    // The request in flight.
    keep_client: bool,
    idempotent: bool,
    bodyless: bool,
    head_method: bool,
    reused: bool,
    retried: bool,
    req_written: usize,
    resp_read: bool,
    up_reusable: bool,
    /// The answer is the proxy's own (502, 504, 400...), not a response.
    answered: bool,
    /// Buffered bytes last counted in [`Local::buffered`].
    accounted: usize,
    /// A request head was read from this client (a drain closes a silent
    /// client at once only if so).
    served: bool,
}

impl Client {
    fn new(buffer: usize) -> Client {
        Client {
            sock: None,
            generation: 0,
            state: State::Free,
            inb: Buf::new(buffer),
            outb: Buf::new(buffer),
            up_head: Vec::with_capacity(1024),
            up_head_sent: 0,
            down_head: Vec::with_capacity(1024),
            down_head_sent: 0,
            head_tried: 0,
            req_body: Framing::Length(0),
            req_ready: 0,
            resp_body: Framing::Length(0),
            resp_ready: 0,
            resp_head_done: false,
            upstream: None,
            pending: None,
            timer: None,
            timer_kind: TimerKind::Progress,
            progress: 0,
            client_reads: 0,
            timer_progress: 0,
            client_readable: false,
            client_writable: false,
            up_readable: false,
            up_writable: false,
            up_hup: false,
            keep_client: true,
            idempotent: false,
            bodyless: true,
            head_method: false,
            reused: false,
            retried: false,
            req_written: 0,
            resp_read: false,
            up_reusable: true,
            answered: false,
            accounted: 0,
            served: false,
        }
    }

    /// Scans request bytes that arrived since the last scan for the end of
    /// the body.
    fn scan_request(&mut self) -> Result<(), http1::BadChunk> {
        if !self.req_body.is_done() {
            let used = self.req_body.advance(&self.inb.bytes()[self.req_ready..])?;
            self.req_ready += used;
        }
        Ok(())
    }

    fn request_sent(&self) -> bool {
        self.up_head_sent == self.up_head.len() && self.req_body.is_done() && self.req_ready == 0
    }

    /// Answers with the proxy's own response instead of the upstream's.
    fn answer(&mut self, local: &mut Local, status: u16) {
        let (line, body): (&[u8], &[u8]) = match status {
            400 => (b"400 Bad Request", b"bad request\n"),
            408 => (b"408 Request Timeout", b"request timed out\n"),
            431 => (
                b"431 Request Header Fields Too Large",
                b"request head too large\n",
            ),
            501 => (b"501 Not Implemented", b"not implemented\n"),
            504 => (b"504 Gateway Timeout", b"upstream timed out\n"),
            _ => (b"502 Bad Gateway", b"upstream failed\n"),
        };
        match status {
            408 => local.request_timeouts += 1,
            502 => local.bad_gateway += 1,
            504 => local.gateway_timeout += 1,
            _ => {}
        }
        // The rest of a request body would have to be read and dropped:
        // close instead.
        if self.state == State::Idle || !self.req_body.is_done() {
            self.keep_client = false;
        } else {
            self.inb.consume(self.req_ready);
            self.req_ready = 0;
        }
        self.outb.clear();
        self.resp_ready = 0;
        self.down_head.clear();
        self.down_head_sent = 0;
        self.down_head.extend_from_slice(b"HTTP/1.1 ");
        self.down_head.extend_from_slice(line);
        self.down_head
            .extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
        let mut digits = [0u8; 4];
        let n = fmt_len(body.len(), &mut digits);
        self.down_head.extend_from_slice(n);
        if !self.keep_client {
            self.down_head.extend_from_slice(b"\r\nConnection: close");
        }
        self.down_head.extend_from_slice(b"\r\n\r\n");
        self.down_head.extend_from_slice(body);
        self.answered = true;
        self.state = State::Flushing;
    }
}

/// `n` (< 10 000) in decimal, without allocating.
fn fmt_len(mut n: usize, digits: &mut [u8; 4]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 || i == 0 {
            return &digits[i..];
        }
    }
}

/// A worker's counters between publications.
#[derive(Default)]
struct Local {
    requests: u64,
    upstream_connects: u64,
    retries: u64,
    bad_gateway: u64,
    gateway_timeout: u64,
    upstream_bytes: u64,
    buffered: usize,
    buffered_max: usize,
    clients: u64,
    refused: u64,
    request_timeouts: u64,
    aborted: u64,
}

/// Brings the worker's count of buffered bytes up to date with `c`'s
/// buffers, however they changed since the last count.
fn account(local: &mut Local, c: &mut Client) {
    let held = c.inb.len() + c.outb.len();
    local.buffered = local.buffered + held - c.accounted;
    c.accounted = held;
    local.buffered_max = local.buffered_max.max(local.buffered);
}

fn live(clients: &mut [Client], idx: usize, generation: u32) -> Option<&mut Client> {
    clients
        .get_mut(idx)
        .filter(|c| c.state != State::Free && c.generation & 0x3fff_ffff == generation)
}

/// What a pass over a client's sockets came to.
#[derive(PartialEq, Eq)]
enum Step {
    /// Something moved: try again.
    Again,
    /// Nothing more until an event.
    Wait,
    /// Close the client (and its upstream connection).
    Close,
}

struct Worker {
    reactor: Reactor<u64>,
    /// `None` once draining: closed, so the kernel sends new connections
    /// to no one (or to another worker still accepting).
    listener: Option<TcpListener>,
    /// Freed to accept when out of descriptors (see [`admission`]).
    spare: Spare,
    /// An accept retry timer is set: the listener's queue was left
    /// unread and its edge will not come again.
    accept_retry: bool,
    /// SIGTERM, SIGINT and SIGHUP, when [`Config::signals`] asks.
    signals: Option<Signals>,
    /// Readable when another worker handed us a client or the proxy stops.
    wake: UnixStream,
    shared: Arc<Shared>,
    /// Our index in `shared.inboxes`.
    me: usize,
    clients: Vec<Client>,
    free: Vec<usize>,
    by_conn: ConnMap,
    config: Config,
    stats: Arc<Stats>,
    local: Local,
    /// A graceful stop is under way (see [`Proxy::drain`]).
    draining: bool,
    /// SIGTERMs and SIGINTs this worker has taken: the second stops it now.
    stop_signals: u32,
    stopping: bool,
}

impl Worker {
    fn new(
        config: &Config,
        listener: std::net::TcpListener,
        wake: std::os::unix::net::UnixStream,
        stats: Arc<Stats>,
        shared: &Arc<Shared>,
        me: usize,
    ) -> io::Result<Worker> {
        let sockets = config.upstream_sockets();
        let pool = PoolConfig::default()
            .with_max_per_host(config.max_upstream.min(sockets))
            .with_max_open(sockets)
            .with_keep_alive(config.upstream_keep_alive)
            .with_timeout(config.connect_timeout)
            .with_busy_poll(config.busy_poll);
        let mut reactor = Reactor::new(pool).map_err(io::Error::other)?;
        let mut listener = TcpListener::from_std(listener);
        let mut wake = UnixStream::from_std(wake);
        reactor
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io::Error::other)?;
        reactor
            .register(&mut wake, WAKE, Interest::READABLE)
            .map_err(io::Error::other)?;
        let signals = if config.signals {
            // Each worker has its own registration: signal-hook delivers a
            // signal to every one, so each drains itself.
            let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
            reactor
                .register(&mut signals, SIGNALS, Interest::READABLE)
                .map_err(io::Error::other)?;
            Some(signals)
        } else {
            None
        };
        Ok(Worker {
            reactor,
            listener: Some(listener),
            spare: Spare::open(),
            accept_retry: false,
            signals,
            wake,
            shared: Arc::clone(shared),
            me,
            clients: Vec::new(),
            free: Vec::new(),
            by_conn: ConnMap::with_capacity_and_hasher(sockets, Default::default()),
            config: config.clone(),
            stats,
            local: Local::default(),
            draining: false,
            stop_signals: 0,
            stopping: false,
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.reactor
            .set_timer(STATS_EVERY, STATS_TIMER)
            .map_err(io::Error::other)?;
        while !self.stopping {
            self.reactor
                .poll(&mut events, None)
                .map_err(io::Error::other)?;
            for event in events.drain() {
                match event {
                    Event::Source(s) if s.token == LISTENER => self.accept(),
                    Event::Source(s) if s.token == WAKE => self.woken(),
                    Event::Source(s) if s.token == SIGNALS => self.signalled(),
                    Event::Source(s) => {
                        let (idx, generation) = split(s.token.0 as u64);
                        if let Some(c) = live(&mut self.clients, idx, generation) {
                            if s.closed {
                                // The client shut its sending side or
                                // failed: it is gone, whatever state it is
                                // in (as nginx takes it, without
                                // `proxy_ignore_client_abort`).
                                if c.state != State::Idle || !c.inb.is_empty() {
                                    self.local.aborted += 1;
                                }
                                self.close(idx);
                                continue;
                            }
                            c.client_readable |= s.readable;
                            c.client_writable |= s.writable;
                            self.drive(idx);
                        }
                    }
                    Event::Ready(r) => {
                        if let Some(&idx) = self.by_conn.get(&r.conn) {
                            let c = &mut self.clients[idx];
                            c.up_readable |= r.readable || r.closed;
                            c.up_hup |= r.closed;
                            c.up_writable |= r.writable;
                            self.drive(idx);
                        }
                    }
                    Event::Outcome(o) => self.outcome(o.context, o.result),
                    Event::Timer(t) if t.value == STATS_TIMER => {
                        self.reactor
                            .set_timer(STATS_EVERY, STATS_TIMER)
                            .map_err(io::Error::other)?;
                    }
                    Event::Timer(t) if t.value == ACCEPT_TIMER => {
                        self.accept_retry = false;
                        self.spare.restore();
                        self.accept();
                    }
                    Event::Timer(t) if t.value == DRAIN_TIMER => self.drain_expired(),
                    Event::Timer(t) => self.timer(t.id, t.value),
                    _ => {}
                }
            }
            // Clients handed to us and not yet taken count too: a worker
            // that ended with some in its inbox would drop them unanswered.
            if self.draining && self.shared.inboxes[self.me].clients.load(Ordering::SeqCst) == 0 {
                self.stopping = true;
            }
            self.publish();
        }
        // Idle upstream connections closed, pending requests failed.
        self.reactor.shutdown();
        self.publish();
        Ok(())
    }

    fn publish(&mut self) {
        let s = &self.stats;
        let l = &self.local;
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&s.requests, l.requests);
        set(&s.upstream_connects, l.upstream_connects);
        set(&s.retries, l.retries);
        set(&s.bad_gateway, l.bad_gateway);
        set(&s.gateway_timeout, l.gateway_timeout);
        set(&s.upstream_bytes, l.upstream_bytes);
        set(&s.buffered, l.buffered as u64);
        set(&s.buffered_max, l.buffered_max as u64);
        set(&s.clients, l.clients);
        set(&s.upstream_open, self.reactor.open_count() as u64);
        set(&s.upstream_idle, self.reactor.idle_count() as u64);
        set(&s.refused, l.refused);
        set(&s.request_timeouts, l.request_timeouts);
        set(&s.aborted, l.aborted);
    }

    /// Accepts until the listener's queue is empty: the listener is
    /// edge-triggered, so a queue left unread is announced again only by
    /// a new connection. Clients past the limit, and those accepted with
    /// the spare descriptor, are answered 503 ([`admission`]).
    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let sock = match listener.accept() {
                Ok((sock, _)) => sock,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The client gave up while queued.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                // `accept` takes a descriptor before it looks at the queue:
                // EMFILE says nothing of whether a client waits.
                Err(e) if admission::out_of_descriptors(&e) && self.spare.release() => {
                    let queued = match listener.accept() {
                        Ok((sock, _)) => {
                            admission::refuse(sock);
                            self.local.refused += 1;
                            Some(true)
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(false),
                        Err(_) => None,
                    };
                    match (self.spare.restore(), queued) {
                        (true, Some(true)) => continue,
                        (true, Some(false)) => return,
                        _ => {
                            self.retry_accept_later();
                            return;
                        }
                    }
                }
                // Out of descriptors with no spare, or out of memory
                // (ENOBUFS, ENOMEM): the queue stays, so come back to it.
                Err(_) => {
                    self.retry_accept_later();
                    return;
                }
            };
            if self.shared.clients() >= self.shared.max_clients {
                admission::refuse(sock);
                self.local.refused += 1;
                continue;
            }
            let _ = sock.set_nodelay(true);
            match self.less_busy_worker() {
                Some(other) => {
                    let inbox = &self.shared.inboxes[other];
                    inbox.clients.fetch_add(1, Ordering::SeqCst);
                    if self.shared.drain.load(Ordering::SeqCst) {
                        // The other worker may have ended (it saw its count
                        // at 0 after setting the drain flag): keep it.
                        inbox.clients.fetch_sub(1, Ordering::SeqCst);
                        self.shared.inboxes[self.me]
                            .clients
                            .fetch_add(1, Ordering::SeqCst);
                        self.adopt(sock);
                        continue;
                    }
                    if let Ok(mut queue) = inbox.queue.lock() {
                        queue.push(sock);
                    }
                    inbox.wake();
                }
                None => {
                    self.shared.inboxes[self.me]
                        .clients
                        .fetch_add(1, Ordering::Relaxed);
                    self.adopt(sock);
                }
            }
        }
    }

    fn retry_accept_later(&mut self) {
        if !self.accept_retry {
            self.accept_retry = self
                .reactor
                .set_timer(admission::RETRY_ACCEPT, ACCEPT_TIMER)
                .is_ok();
        }
    }

    /// The worker with the fewest clients, if it has fewer than we do;
    /// none once the proxy drains (a worker may have ended).
    fn less_busy_worker(&self) -> Option<usize> {
        if self.shared.drain.load(Ordering::Relaxed) {
            return None;
        }
        let count = |i: usize| self.shared.inboxes[i].clients.load(Ordering::Relaxed);
        let mine = count(self.me);
        let (least, n) = (0..self.shared.inboxes.len())
            .map(|i| (i, count(i)))
            .min_by_key(|&(_, n)| n)?;
        (n < mine).then_some(least)
    }

    /// The wake socket is readable: stop, drain, or take the clients handed
    /// to us.
    fn woken(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
        if self.shared.stop.load(Ordering::SeqCst) {
            self.stopping = true;
            return;
        }
        let handed = match self.shared.inboxes[self.me].queue.lock() {
            Ok(mut queue) => std::mem::take(&mut *queue),
            Err(_) => return,
        };
        for sock in handed {
            self.adopt(sock);
        }
        if self.shared.drain.load(Ordering::SeqCst) {
            self.begin_drain();
        }
    }

    /// SIGTERM or SIGINT: drain; a second one during the drain stops at
    /// once. SIGHUP: nothing to reload (the upstream
    /// is resolved by the pool as its answers expire), so it is taken and
    /// ignored rather than left to kill the process.
    fn signalled(&mut self) {
        let mut drain = false;
        if let Some(signals) = self.signals.as_mut() {
            for signal in signals.pending() {
                if signal == SIGTERM || signal == SIGINT {
                    drain = true;
                    self.stop_signals += 1;
                }
            }
        }
        // Counted per worker: another worker's drain (the shared flag) may
        // have started ours before our own first signal came in.
        if self.stop_signals >= 2 {
            // A second signal: stop now.
            self.drain_expired();
        } else if drain {
            // Workers stop handing clients to each other.
            self.shared.drain.store(true, Ordering::SeqCst);
            self.begin_drain();
        }
    }

    /// The start of a graceful stop (see [`Proxy::drain`]).
    fn begin_drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        // Connections the kernel completed are clients already: taken and
        // served (one request each), not reset with the listener.
        self.accept();
        if let Some(mut listener) = self.listener.take() {
            let _ = self.reactor.deregister(&mut listener);
        }
        let _ = self
            .reactor
            .set_timer(self.config.drain_timeout, DRAIN_TIMER);
        for idx in 0..self.clients.len() {
            let c = &mut self.clients[idx];
            if c.state == State::Free {
                continue;
            }
            c.keep_client = false;
            if c.state == State::Idle && c.inb.is_empty() {
                // A client accepted in this very tick may have a request in
                // its socket that no event has announced yet: read first.
                c.client_readable = true;
                self.drive(idx);
                let c = &self.clients[idx];
                if c.state == State::Idle && c.inb.is_empty() {
                    if c.served {
                        // Between requests: nothing in flight.
                        self.close(idx);
                    } else {
                        // Accepted, silent so far: its first request may be
                        // on the way (a loaded machine delivers even
                        // loopback bytes late). It gets a moment.
                        self.arm(idx, DRAIN_GRACE, TimerKind::Progress);
                    }
                }
            }
            // Anything else finishes, and the client is closed after its
            // response (which says `Connection: close` unless its head had
            // been parsed already).
        }
    }

    /// The drain timeout: what is still in flight is cut.
    fn drain_expired(&mut self) {
        for idx in 0..self.clients.len() {
            if self.clients[idx].state != State::Free {
                self.local.aborted += 1;
                self.close(idx);
            }
        }
    }

    /// A new client (counted in our inbox's `clients` already): a slot, its
    /// registration, its idle timer.
    fn adopt(&mut self, mut sock: TcpStream) {
        let idx = match self.free.pop() {
            Some(idx) => idx,
            None => {
                self.clients.push(Client::new(self.config.buffer));
                self.clients.len() - 1
            }
        };
        let c = &mut self.clients[idx];
        let token = Token(usize::try_from(key(idx, c.generation)).unwrap_or(usize::MAX >> 2));
        if self
            .reactor
            .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            self.free.push(idx);
            self.shared.inboxes[self.me]
                .clients
                .fetch_sub(1, Ordering::Relaxed);
            return;
        }
        c.sock = Some(sock);
        c.state = State::Idle;
        c.client_readable = false;
        c.client_writable = true;
        c.keep_client = !self.draining;
        c.served = false;
        c.head_tried = 0;
        self.local.clients += 1;
        self.arm(idx, self.config.client_timeout, TimerKind::Progress);
    }

    /// Sets the client's one timer, replacing the one it had.
    fn arm(&mut self, idx: usize, delay: Duration, kind: TimerKind) {
        arm(&mut self.reactor, &mut self.clients[idx], idx, delay, kind);
    }

    fn timer(&mut self, id: TimerId, value: u64) {
        let (idx, generation) = split(value);
        let client_timeout = self.config.client_timeout;
        let Some(c) = live(&mut self.clients, idx, generation) else {
            return;
        };
        if c.timer != Some(id) {
            return;
        }
        c.timer = None;
        match c.timer_kind {
            TimerKind::Upstream
                if matches!(c.state, State::Connecting | State::Exchanging)
                    && !c.resp_head_done =>
            {
                self.answer_or_close(idx, 504);
            }
            TimerKind::Header if c.state == State::Idle => {
                self.answer_or_close(idx, 408);
            }
            TimerKind::Body if !c.req_body.is_done() => {
                if c.client_reads != c.timer_progress {
                    self.arm(idx, client_timeout, TimerKind::Body);
                } else if c.inb.room() == 0 {
                    // The proxy stopped reading the client: its buffer is
                    // full because the upstream took nothing for a whole
                    // `client_timeout`. The upstream's stall, not the
                    // client's.
                    self.answer_or_close(idx, 504);
                } else {
                    self.answer_or_close(idx, 408);
                }
            }
            _ if c.progress != c.timer_progress => {
                self.arm(idx, client_timeout, TimerKind::Progress);
            }
            _ => {
                if c.state != State::Idle || !c.inb.is_empty() {
                    self.local.aborted += 1;
                }
                self.close(idx);
            }
        }
    }

    /// Ends client `idx`'s exchange at a deadline: its pending upstream
    /// request is cancelled and its upstream connection (mid-exchange)
    /// closed, never pooled; then the proxy's own `status` if nothing of a
    /// response has gone to the client yet (the client gets
    /// `client_timeout` to read it), else a close: the client must see the
    /// response cut.
    fn answer_or_close(&mut self, idx: usize, status: u16) {
        let c = &mut self.clients[idx];
        drop_exchange(&mut self.reactor, &mut self.by_conn, c);
        if c.down_head.is_empty() {
            c.answer(&mut self.local, status);
            self.arm(idx, self.config.client_timeout, TimerKind::Progress);
            self.drive(idx);
        } else {
            self.local.aborted += 1;
            self.close(idx);
        }
    }

    fn outcome(&mut self, context: u64, result: Result<Connection, keepalive::ConnectError>) {
        if let Ok(conn) = &result {
            if conn.from_cache().is_none() {
                self.local.upstream_connects += 1;
            }
        }
        let (idx, generation) = split(context);
        let Some(c) =
            live(&mut self.clients, idx, generation).filter(|c| c.state == State::Connecting)
        else {
            // The client is gone: an unused connection goes back to the pool.
            return;
        };
        c.pending = None;
        match result {
            Ok(conn) => attach(&mut self.by_conn, c, idx, conn),
            Err(e) => {
                let timed_out = e.errno().is_some_and(|n| {
                    io::Error::from_raw_os_error(n).kind() == io::ErrorKind::TimedOut
                });
                c.answer(&mut self.local, if timed_out { 504 } else { 502 });
            }
        }
        self.drive(idx);
    }

    /// Moves what can be moved for client `idx` until nothing can.
    fn drive(&mut self, idx: usize) {
        let mut step = Step::Again;
        while step == Step::Again {
            step = self.step(idx);
        }
        if step == Step::Close {
            self.close(idx);
        }
        account(&mut self.local, &mut self.clients[idx]);
    }

    /// Closes client `idx` and everything it holds: a pending upstream
    /// request is cancelled (a connection that completes anyway idles in
    /// the pool), an upstream connection it still holds is mid-request or
    /// mid-response and is closed, never pooled; its timer is cancelled
    /// and its buffers emptied for the slot's next client.
    fn close(&mut self, idx: usize) {
        let c = &mut self.clients[idx];
        if c.state == State::Free {
            return;
        }
        drop_exchange(&mut self.reactor, &mut self.by_conn, c);
        if let Some(timer) = c.timer.take() {
            let _ = self.reactor.cancel_timer(timer);
        }
        // Closing the descriptor takes it out of the poller.
        c.sock = None;
        c.inb.clear();
        c.outb.clear();
        c.up_head.clear();
        c.down_head.clear();
        c.generation = c.generation.wrapping_add(1);
        c.state = State::Free;
        account(&mut self.local, c);
        self.free.push(idx);
        self.local.clients -= 1;
        self.shared.inboxes[self.me]
            .clients
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// One pass over everything that may move for client `idx`.
    fn step(&mut self, idx: usize) -> Step {
        let Worker {
            reactor,
            clients,
            by_conn,
            config,
            local,
            draining,
            ..
        } = self;
        let c = &mut clients[idx];
        let mut moved = false;

        // Client → inb.
        if c.client_readable && c.inb.room() > 0 {
            let Some(sock) = c.sock.as_mut() else {
                return Step::Close;
            };
            let tail = c.inb.tail_room();
            match c.inb.read_from(sock) {
                // The client is gone (an EOF that came after its last
                // readiness edge; one that came with it closed the client
                // already).
                Ok(0) => {
                    if c.state != State::Idle || !c.inb.is_empty() {
                        local.aborted += 1;
                    }
                    return Step::Close;
                }
                Ok(n) => {
                    moved = true;
                    c.progress += 1;
                    c.client_reads += 1;
                    if n < tail {
                        c.client_readable = false;
                    }
                    if matches!(c.state, State::Connecting | State::Exchanging)
                        && !c.req_body.is_done()
                    {
                        if c.scan_request().is_err() {
                            return Step::Close;
                        }
                        if c.req_body.is_done() && c.timer_kind == TimerKind::Body {
                            // The request is in: now the upstream's turn.
                            arm(
                                reactor,
                                c,
                                idx,
                                config.upstream_timeout,
                                TimerKind::Upstream,
                            );
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.client_readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = true,
                Err(_) => return Step::Close,
            }
        }

        match c.state {
            // Nothing new to parse: wait, or close on EOF.
            State::Idle if c.inb.is_empty() || c.inb.len() == c.head_tried => {
                return if moved { Step::Again } else { Step::Wait };
            }
            State::Idle => {
                match http1::parse_request(c.inb.bytes(), &mut c.up_head) {
                    Ok(Some(head)) => {
                        c.head_tried = 0;
                        c.served = true;
                        c.inb.consume(head.len);
                        c.req_body = head.body;
                        c.req_ready = 0;
                        c.keep_client = head.keep_alive && !*draining;
                        c.idempotent = head.idempotent;
                        c.bodyless = head.body == Framing::Length(0);
                        c.head_method = head.head_method;
                        c.reused = false;
                        c.retried = false;
                        c.req_written = 0;
                        c.up_head_sent = 0;
                        c.resp_read = false;
                        c.resp_head_done = false;
                        c.resp_body = Framing::Length(0);
                        c.resp_ready = 0;
                        c.down_head.clear();
                        c.down_head_sent = 0;
                        c.up_reusable = true;
                        c.answered = false;
                        c.state = State::Connecting;
                        if c.scan_request().is_err() {
                            c.answer(local, 400);
                        } else if !allocate(reactor, by_conn, c, idx, config, false) {
                            c.answer(local, 502);
                        }
                        // One timer operation per request: the upstream's
                        // deadline, or the body's while it is still coming.
                        if c.req_body.is_done() {
                            arm(
                                reactor,
                                c,
                                idx,
                                config.upstream_timeout,
                                TimerKind::Upstream,
                            );
                        } else {
                            arm(reactor, c, idx, config.client_timeout, TimerKind::Body);
                        }
                        moved = true;
                    }
                    Ok(None) => {
                        c.head_tried = c.inb.len();
                        if c.inb.room() == 0 {
                            c.answer(local, 431);
                            moved = true;
                        } else if c.timer_kind != TimerKind::Header {
                            // The first bytes of a head that did not come
                            // whole: it has `header_timeout` from now.
                            arm(reactor, c, idx, config.header_timeout, TimerKind::Header);
                        }
                    }
                    Err(e) => {
                        let status = match e {
                            HeadError::Bad => 400,
                            HeadError::TooManyHeaders => 431,
                            HeadError::NotImplemented => 501,
                        };
                        c.answer(local, status);
                        moved = true;
                    }
                }
            }
            _ => {}
        }

        // Request → upstream.
        if c.state == State::Exchanging && c.up_writable {
            let head = &c.up_head[c.up_head_sent..];
            let body = &c.inb.bytes()[..c.req_ready];
            let offered = head.len() + body.len();
            if offered > 0 {
                let Some(conn) = c.upstream.as_mut() else {
                    return Step::Close;
                };
                match conn.write_vectored(&[IoSlice::new(head), IoSlice::new(body)]) {
                    Ok(n) => {
                        moved = true;
                        c.progress += 1;
                        c.req_written += n;
                        let from_head = n.min(head.len());
                        c.up_head_sent += from_head;
                        c.inb.consume(n - from_head);
                        c.req_ready -= n - from_head;
                        if n < offered {
                            c.up_writable = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.up_writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = true,
                    Err(_) => return upstream_failed(reactor, by_conn, local, config, c, idx),
                }
            }
        }

        // Upstream → outb.
        if c.state == State::Exchanging && c.up_readable && c.outb.room() > 0 {
            let Some(conn) = c.upstream.as_mut() else {
                return Step::Close;
            };
            let tail = c.outb.tail_room();
            match c.outb.read_from(conn) {
                Ok(0) => {
                    c.up_readable = false;
                    if c.resp_head_done && c.resp_body == Framing::Close {
                        // The body ran to the close, as its framing said.
                        c.resp_body = Framing::Length(0);
                        c.up_reusable = false;
                        release_upstream(reactor, by_conn, c);
                    } else if !c.resp_read {
                        return upstream_failed(reactor, by_conn, local, config, c, idx);
                    } else if c.down_head.is_empty() {
                        close_upstream(by_conn, c);
                        c.answer(local, 502);
                    } else {
                        // Truncated mid-response: the client must see a close.
                        return Step::Close;
                    }
                    moved = true;
                }
                Ok(n) => {
                    moved = true;
                    c.progress += 1;
                    c.resp_read = true;
                    local.upstream_bytes += n as u64;
                    // A short read drained the socket, unless the upstream
                    // closed: then read on to the EOF, as no edge follows.
                    if n < tail && !c.up_hup {
                        c.up_readable = false;
                    }
                    let head_before = c.resp_head_done;
                    match take_response(c) {
                        Ok(()) => {
                            if c.resp_head_done && !head_before {
                                // The upstream answered: from now on the
                                // client must keep up (and later idle) within
                                // `client_timeout`.
                                arm(reactor, c, idx, config.client_timeout, TimerKind::Progress);
                            }
                            if c.resp_head_done && c.resp_body.is_done() {
                                release_upstream(reactor, by_conn, c);
                            }
                        }
                        Err(()) if c.down_head.is_empty() => {
                            close_upstream(by_conn, c);
                            c.answer(local, 502);
                        }
                        Err(()) => return Step::Close,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.up_readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = true,
                Err(_) if !c.resp_read => {
                    return upstream_failed(reactor, by_conn, local, config, c, idx);
                }
                Err(_) if c.down_head.is_empty() => {
                    close_upstream(by_conn, c);
                    c.answer(local, 502);
                    moved = true;
                }
                Err(_) => return Step::Close,
            }
        }

        // Response → client.
        if c.client_writable && matches!(c.state, State::Exchanging | State::Flushing) {
            let head = &c.down_head[c.down_head_sent..];
            let body = &c.outb.bytes()[..c.resp_ready];
            let offered = head.len() + body.len();
            if offered > 0 {
                let Some(sock) = c.sock.as_mut() else {
                    return Step::Close;
                };
                match sock.write_vectored(&[IoSlice::new(head), IoSlice::new(body)]) {
                    Ok(n) => {
                        moved = true;
                        c.progress += 1;
                        let from_head = n.min(head.len());
                        c.down_head_sent += from_head;
                        c.outb.consume(n - from_head);
                        c.resp_ready -= n - from_head;
                        if n < offered {
                            c.client_writable = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.client_writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = true,
                    Err(_) => return Step::Close,
                }
            }
        }

        // The answer is out: next request, or close.
        if c.state == State::Flushing && c.down_head_sent == c.down_head.len() && c.outb.is_empty()
        {
            if !c.answered {
                local.requests += 1;
            }
            if !c.keep_client {
                return Step::Close;
            }
            c.state = State::Idle;
            c.down_head.clear();
            c.down_head_sent = 0;
            c.up_head.clear();
            c.up_head_sent = 0;
            c.head_tried = 0;
            moved = true;
        }

        if moved { Step::Again } else { Step::Wait }
    }
}

/// Sets client `idx`'s one timer, replacing the one it had.
fn arm(reactor: &mut Reactor<u64>, c: &mut Client, idx: usize, delay: Duration, kind: TimerKind) {
    if let Some(old) = c.timer.take() {
        let _ = reactor.cancel_timer(old);
    }
    c.timer = reactor.set_timer(delay, key(idx, c.generation)).ok();
    c.timer_kind = kind;
    c.timer_progress = if kind == TimerKind::Body {
        c.client_reads
    } else {
        c.progress
    };
}

/// Asks the pool for an upstream connection for client `idx`; `fresh`: a
/// new one (a retry), from a pool partition that never keeps idle ones.
///
/// An idle pooled connection is taken at once ([`Reactor::checkout_now`]):
/// the request goes up in the same pass, with no poll in between. Only a
/// new connection (or a wait) comes as an outcome.
fn allocate(
    reactor: &mut Reactor<u64>,
    by_conn: &mut ConnMap,
    c: &mut Client,
    idx: usize,
    config: &Config,
    fresh: bool,
) -> bool {
    let up = &config.upstream;
    // A name's `Cow` is borrowed (see `Upstream`): the clone copies a
    // pointer.
    let mut request = Request::with_host("http", up.host.clone(), up.port, key(idx, c.generation))
        .timeout(config.connect_timeout);
    if fresh {
        request = request.fresh();
    }
    match reactor.checkout_now(request) {
        Ok(Checkout::Ready(conn, _)) => {
            attach(by_conn, c, idx, conn);
            true
        }
        Ok(Checkout::Pending(id)) => {
            c.pending = Some(id);
            true
        }
        Err(_) => false,
    }
}

/// Client `idx` has its upstream connection: the exchange starts.
fn attach(by_conn: &mut ConnMap, c: &mut Client, idx: usize, conn: Connection) {
    c.reused = conn.from_cache().is_some();
    by_conn.insert(conn.id(), idx);
    c.upstream = Some(conn);
    c.up_writable = true;
    c.up_readable = false;
    c.up_hup = false;
    c.state = State::Exchanging;
}

/// Parses the response head if it is not in yet, and finds where the body
/// ends among the bytes that arrived. `Err`: a malformed response.
fn take_response(c: &mut Client) -> Result<(), ()> {
    while !c.resp_head_done {
        let close_client = !c.keep_client;
        match http1::parse_response(
            c.outb.bytes(),
            c.head_method,
            close_client,
            &mut c.down_head,
        ) {
            Ok(Some(head)) => {
                c.outb.consume(head.len);
                if head.status == 101 {
                    return Err(()); // no Upgrade was asked for
                }
                if head.status < 200 {
                    continue; // interim (100 Continue): forwarded, the real head follows
                }
                c.resp_head_done = true;
                c.resp_body = head.body;
                c.up_reusable &= head.keep_alive;
                if head.body == Framing::Close {
                    c.keep_client = false;
                }
            }
            Ok(None) if c.outb.room() == 0 => return Err(()),
            Ok(None) => return Ok(()),
            Err(_) => return Err(()),
        }
    }
    if !c.resp_body.is_done() {
        let fresh = &c.outb.bytes()[c.resp_ready..];
        let used = c.resp_body.advance(fresh).map_err(|_| ())?;
        c.resp_ready += used;
    }
    if c.resp_body.is_done() && c.resp_ready < c.outb.len() {
        // Bytes after the response: nothing was asked for them.
        c.outb.truncate(c.resp_ready);
        c.up_reusable = false;
    }
    Ok(())
}

/// The response is in: the connection goes back to the pool if the
/// upstream keeps it and the whole request went out, else it is closed.
fn release_upstream(reactor: &mut Reactor<u64>, by_conn: &mut ConnMap, c: &mut Client) {
    let sent = c.request_sent();
    if !sent {
        c.keep_client = false; // the rest of the request body is not read
    }
    if let Some(conn) = c.upstream.take() {
        by_conn.remove(&conn.id());
        if c.up_reusable && sent {
            let _ = reactor.free(conn);
        } else {
            conn.close();
        }
    }
    c.up_readable = false;
    c.up_writable = false;
    c.state = State::Flushing;
}

/// Cancels client `c`'s pending upstream request (a connection that
/// completes anyway idles in the pool) and closes the upstream connection
/// it holds, which is mid-exchange.
fn drop_exchange(reactor: &mut Reactor<u64>, by_conn: &mut ConnMap, c: &mut Client) {
    if let Some(pending) = c.pending.take() {
        let _ = reactor.deallocate(pending);
    }
    close_upstream(by_conn, c);
}

fn close_upstream(by_conn: &mut ConnMap, c: &mut Client) {
    if let Some(conn) = c.upstream.take() {
        by_conn.remove(&conn.id());
        conn.close();
    }
    c.up_readable = false;
    c.up_writable = false;
}

/// The upstream connection failed before any response byte: retry once on a
/// new connection if the rule allows (see the module docs), else 502.
fn upstream_failed(
    reactor: &mut Reactor<u64>,
    by_conn: &mut ConnMap,
    local: &mut Local,
    config: &Config,
    c: &mut Client,
    idx: usize,
) -> Step {
    close_upstream(by_conn, c);
    if may_retry(
        c.reused,
        c.retried,
        c.resp_read,
        c.req_written,
        c.idempotent,
        c.bodyless,
    ) {
        c.retried = true;
        local.retries += 1;
        c.up_head_sent = 0;
        c.req_written = 0;
        c.state = State::Connecting;
        if allocate(reactor, by_conn, c, idx, config, true) {
            return Step::Again;
        }
    }
    c.answer(local, 502);
    Step::Again
}

/// The retry rule (module docs).
pub fn may_retry(
    reused: bool,
    retried: bool,
    response_started: bool,
    request_bytes_written: usize,
    idempotent: bool,
    bodyless: bool,
) -> bool {
    reused
        && !retried
        && !response_started
        && (request_bytes_written == 0 || (idempotent && bodyless))
}
