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
//! asked of the pool) → `Exchanging` (request up, response down) →
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
//! A request is sent again, once, on a new connection (never one from the
//! pool) when all of these hold: its connection came from the pool
//! (`from_cache()` is `Some`), it failed (write error, EOF or reset) before
//! any byte of the response arrived, and either no byte of the request was
//! written, or the request is idempotent (RFC 9110 §9.2.2: GET, HEAD, PUT,
//! DELETE, OPTIONS, TRACE) and has no body, so the proxy still holds all of
//! it. This covers the keep-alive race (the upstream closed an idle
//! connection as the proxy reused it) without ever repeating a request
//! whose effect may have happened. Anything else is answered 502.
//!
//! # Timeouts
//!
//! The pool's request timeout bounds the connect (`connect_timeout`, 504 on
//! expiry; other connect failures are 502). One timer per client: armed at
//! each request with `upstream_timeout`, it answers 504 if the response head
//! has not come by then. Once the head is in, and while the client idles
//! between requests, the same timer checks for progress every
//! `client_timeout` and closes a client (and its upstream) that made none:
//! an idle keep-alive client is closed between one and two
//! `client_timeout`s after its last byte. This costs one timer operation per
//! request.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use keepalive::mio::net::{TcpListener, TcpStream, UnixStream};
use keepalive::mio::{Interest, Token};
use keepalive::{
    Config as PoolConfig, ConnId, Connection, Event, Events, Reactor, Request, RequestId, TimerId,
};

use super::http1::{self, Buf, Framing, HeadError};

/// How the proxy runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where clients connect (port 0: any free port; see [`Proxy::addr`]).
    pub listen: SocketAddr,
    /// The one upstream server.
    pub upstream: SocketAddr,
    /// Worker threads, each with its own listener (`SO_REUSEPORT`) and
    /// reactor.
    pub threads: usize,
    /// Upstream connect, queue wait included: 504 on expiry.
    pub connect_timeout: Duration,
    /// From a request's head to its response's head: 504 on expiry.
    pub upstream_timeout: Duration,
    /// A client that makes no progress for this long is closed (idle
    /// between requests, or not reading a response).
    pub client_timeout: Duration,
    /// How long an idle upstream connection stays in the pool.
    pub upstream_keep_alive: Duration,
    /// Upstream connections per thread, connecting plus in use; more
    /// requests wait for one.
    pub max_upstream: usize,
    /// Bytes buffered per client per direction.
    pub buffer: usize,
    /// Called first thing on each worker thread (tests count allocations).
    pub on_thread_start: Option<fn()>,
}

impl Config {
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> Config {
        Config {
            listen,
            upstream,
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(30),
            client_timeout: Duration::from_secs(60),
            upstream_keep_alive: Duration::from_secs(30),
            max_upstream: 512,
            buffer: 16 * 1024,
            on_thread_start: None,
        }
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
    stop: AtomicBool,
    inboxes: Vec<Inbox>,
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
            inboxes,
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
                    match Worker::new(&config, listener, theirs, st, shared, i) {
                        Ok(worker) => {
                            let _ = ready.send(Ok(()));
                            worker.run()
                        }
                        Err(e) => {
                            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
                            Err(e)
                        }
                    }
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
            }
        })
    }

    /// Stops the workers and waits for them; the first worker error, if any.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_workers()
    }

    fn stop_workers(&mut self) -> io::Result<()> {
        self.shared.stop.store(true, Ordering::SeqCst);
        for inbox in &self.shared.inboxes {
            inbox.wake();
        }
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
/// The value of the worker's own stats timer: no client key is this large.
const STATS_TIMER: u64 = u64::MAX;

const LISTENER: Token = Token(1 << 62);
const WAKE: Token = Token((1 << 62) + 1);

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
    timer_progress: u64,
    client_readable: bool,
    client_writable: bool,
    client_eof: bool,
    up_readable: bool,
    up_writable: bool,
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
            timer_progress: 0,
            client_readable: false,
            client_writable: false,
            client_eof: false,
            up_readable: false,
            up_writable: false,
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
            431 => (
                b"431 Request Header Fields Too Large",
                b"request head too large\n",
            ),
            501 => (b"501 Not Implemented", b"not implemented\n"),
            504 => (b"504 Gateway Timeout", b"upstream timed out\n"),
            _ => (b"502 Bad Gateway", b"upstream failed\n"),
        };
        match status {
            502 => local.bad_gateway += 1,
            504 => local.gateway_timeout += 1,
            _ => {}
        }
        // The rest of a request body would have to be read and dropped:
        // close instead.
        if self.state == State::Idle || !self.req_body.is_done() || self.client_eof {
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
    listener: TcpListener,
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
    stopping: bool,
}

impl Worker {
    fn new(
        config: &Config,
        listener: std::net::TcpListener,
        wake: std::os::unix::net::UnixStream,
        stats: Arc<Stats>,
        shared: Arc<Shared>,
        me: usize,
    ) -> io::Result<Worker> {
        let pool = PoolConfig::default()
            .with_max_per_host(config.max_upstream)
            .with_max_open(config.max_upstream * 2 + 16)
            .with_keep_alive(config.upstream_keep_alive)
            .with_timeout(config.connect_timeout);
        let mut reactor = Reactor::new(pool).map_err(io::Error::other)?;
        let mut listener = TcpListener::from_std(listener);
        let mut wake = UnixStream::from_std(wake);
        reactor
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io::Error::other)?;
        reactor
            .register(&mut wake, WAKE, Interest::READABLE)
            .map_err(io::Error::other)?;
        Ok(Worker {
            reactor,
            listener,
            wake,
            shared,
            me,
            clients: Vec::new(),
            free: Vec::new(),
            by_conn: ConnMap::with_capacity_and_hasher(config.max_upstream * 2, Default::default()),
            config: config.clone(),
            stats,
            local: Local::default(),
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
                    Event::Source(s) => {
                        let (idx, generation) = split(s.token.0 as u64);
                        if let Some(c) = live(&mut self.clients, idx, generation) {
                            c.client_readable |= s.readable || s.closed;
                            c.client_writable |= s.writable || s.closed;
                            self.drive(idx);
                        }
                    }
                    Event::Ready(r) => {
                        if let Some(&idx) = self.by_conn.get(&r.conn) {
                            let c = &mut self.clients[idx];
                            c.up_readable |= r.readable || r.closed;
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
                    Event::Timer(t) => self.timer(t.id, t.value),
                    _ => {}
                }
            }
            self.publish();
        }
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
    }

    fn accept(&mut self) {
        loop {
            let sock = match self.listener.accept() {
                Ok((sock, _)) => sock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock, or out of descriptors: the next connection
                // wakes us again.
                Err(_) => return,
            };
            let _ = sock.set_nodelay(true);
            match self.less_busy_worker() {
                Some(other) => {
                    let inbox = &self.shared.inboxes[other];
                    inbox.clients.fetch_add(1, Ordering::Relaxed);
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

    /// The worker with the fewest clients, if it has fewer than we do.
    fn less_busy_worker(&self) -> Option<usize> {
        let count = |i: usize| self.shared.inboxes[i].clients.load(Ordering::Relaxed);
        let mine = count(self.me);
        let (least, n) = (0..self.shared.inboxes.len())
            .map(|i| (i, count(i)))
            .min_by_key(|&(_, n)| n)?;
        (n < mine).then_some(least)
    }

    /// The wake socket is readable: stop, or take the clients handed to us.
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
        c.client_eof = false;
        c.keep_client = true;
        c.head_tried = 0;
        self.local.clients += 1;
        self.arm(idx, self.config.client_timeout, TimerKind::Progress);
    }

    /// Sets the client's one timer, replacing the one it had.
    fn arm(&mut self, idx: usize, delay: Duration, kind: TimerKind) {
        let c = &mut self.clients[idx];
        if let Some(old) = c.timer.take() {
            let _ = self.reactor.cancel_timer(old);
        }
        c.timer = self.reactor.set_timer(delay, key(idx, c.generation)).ok();
        c.timer_kind = kind;
        c.timer_progress = c.progress;
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
        let waiting_for_head = matches!(c.state, State::Connecting | State::Exchanging)
            && !c.resp_head_done
            && c.timer_kind == TimerKind::Upstream;
        if waiting_for_head {
            if let Some(pending) = c.pending.take() {
                let _ = self.reactor.deallocate(pending);
            }
            close_upstream(&mut self.by_conn, c);
            if c.down_head.is_empty() {
                c.answer(&mut self.local, 504);
                self.arm(idx, client_timeout, TimerKind::Progress);
                self.drive(idx);
            } else {
                self.close(idx);
            }
        } else if c.progress != c.timer_progress {
            self.arm(idx, client_timeout, TimerKind::Progress);
        } else {
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
            Ok(conn) => {
                c.reused = conn.from_cache().is_some();
                self.by_conn.insert(conn.id(), idx);
                c.upstream = Some(conn);
                c.up_writable = true;
                c.up_readable = false;
                c.state = State::Exchanging;
            }
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

    fn close(&mut self, idx: usize) {
        let c = &mut self.clients[idx];
        if c.state == State::Free {
            return;
        }
        if let Some(pending) = c.pending.take() {
            let _ = self.reactor.deallocate(pending);
        }
        if let Some(conn) = c.upstream.take() {
            self.by_conn.remove(&conn.id());
            conn.close();
        }
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
            ..
        } = self;
        let c = &mut clients[idx];
        let mut moved = false;

        // Client → inb.
        if c.client_readable && !c.client_eof && c.inb.room() > 0 {
            let Some(sock) = c.sock.as_mut() else {
                return Step::Close;
            };
            let tail = c.inb.tail_room();
            match c.inb.read_from(sock) {
                Ok(0) => {
                    c.client_eof = true;
                    c.client_readable = false;
                    moved = true;
                }
                Ok(n) => {
                    moved = true;
                    c.progress += 1;
                    if n < tail {
                        c.client_readable = false;
                    }
                    if matches!(c.state, State::Connecting | State::Exchanging)
                        && c.scan_request().is_err()
                    {
                        return Step::Close;
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
                return if c.client_eof {
                    Step::Close
                } else if moved {
                    Step::Again
                } else {
                    Step::Wait
                };
            }
            State::Idle => {
                match http1::parse_request(c.inb.bytes(), &mut c.up_head) {
                    Ok(Some(head)) => {
                        c.head_tried = 0;
                        c.inb.consume(head.len);
                        c.req_body = head.body;
                        c.req_ready = 0;
                        c.keep_client = head.keep_alive;
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
                        } else if !allocate(reactor, c, idx, config, false) {
                            c.answer(local, 502);
                        }
                        // One timer operation per request.
                        if let Some(old) = c.timer.take() {
                            let _ = reactor.cancel_timer(old);
                        }
                        c.timer = reactor
                            .set_timer(config.upstream_timeout, key(idx, c.generation))
                            .ok();
                        c.timer_kind = TimerKind::Upstream;
                        c.timer_progress = c.progress;
                        moved = true;
                    }
                    Ok(None) => {
                        c.head_tried = c.inb.len();
                        if c.inb.room() == 0 {
                            c.answer(local, 431);
                            moved = true;
                        } else if c.client_eof {
                            return Step::Close;
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
            State::Connecting | State::Exchanging if c.client_eof && !c.req_body.is_done() => {
                // The client went away in the middle of its request.
                return Step::Close;
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
                    if n < tail {
                        c.up_readable = false;
                    }
                    match take_response(c) {
                        Ok(()) => {
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
            if !c.keep_client || c.client_eof {
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

/// Asks the pool for an upstream connection for client `idx`; `fresh`: a
/// new one (a retry), from a pool partition that never keeps idle ones.
fn allocate(
    reactor: &mut Reactor<u64>,
    c: &mut Client,
    idx: usize,
    config: &Config,
    fresh: bool,
) -> bool {
    let up = config.upstream;
    let mut request = Request::new("http", up.ip(), up.port(), key(idx, c.generation))
        .timeout(config.connect_timeout);
    if fresh {
        request = request.tag("fresh");
    }
    match reactor.allocate(request) {
        Ok(id) => {
            c.pending = Some(id);
            true
        }
        Err(_) => false,
    }
}

/// Parses the response head if it is not in yet, and finds where the body
/// ends among the bytes that arrived. `Err`: a malformed response.
fn take_response(c: &mut Client) -> Result<(), ()> {
    while !c.resp_head_done {
        let close_client = !c.keep_client || c.client_eof;
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
        // A retry's connection is never pooled: its partition stays empty,
        // so the next retry gets a new connection too.
        if c.up_reusable && sent && !c.retried {
            let _ = reactor.free(conn);
        } else {
            conn.close();
        }
    }
    c.up_readable = false;
    c.up_writable = false;
    c.state = State::Flushing;
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
        if allocate(reactor, c, idx, config, true) {
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
