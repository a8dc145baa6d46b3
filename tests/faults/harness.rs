//! The fault suite's client: HTTP/1.1 GETs over the pool, through its public
//! API only, with the suite's checks built in.
//!
//! # What a caller does when a lent connection fails
//!
//! A pooled connection can die between the reactor's last poll and the
//! caller's first write: the server closes an idle keep-alive connection at
//! the moment the caller reuses it, and no pool can see that close coming.
//! So an HTTP client on the pool does what this one does:
//!
//! - Read EOF, a reset or another error on a lent connection: `close()` it
//!   (never `free` it: the pool would find it unusable anyway, and `close`
//!   says so) and stop using it.
//! - Retry **once**, on a fresh `allocate`, when the connection came from the
//!   pool (`from_cache()` is `Some`) and nothing of the exchange got
//!   through: the write itself failed (nothing was written), or EOF or a
//!   reset came before any byte of the response (the server had closed the
//!   idle connection and never read the request). The retry usually gets a
//!   new connection.
//! - Otherwise (a new connection, part of a response already read, the retry
//!   failing too, or no response before the caller's own deadline) the
//!   request failed: report it. A non-idempotent request is retried only
//!   when its write failed, never once it may have reached the server.
//! - An outcome error (`ConnectError`: function, errno) is the request's
//!   answer; it is counted here, never a panic.
//!
//! # "Dead delivered", precisely
//!
//! Before every poll, the client looks at every socket it has lent and given
//! back that is still open (descriptor number and inode, so a reused number
//! is never mistaken for it): its TCP state (`TCP_INFO`) and its unread bytes
//! (`FIONREAD`). Both calls take the socket's lock, which the kernel holds
//! while it changes the state and wakes the socket's waiters (the reactor's
//! epoll among them), so a socket seen closed or holding data here has
//! already made the reactor's descriptor readable.
//!
//! A connection delivered with `from_cache()` set whose socket was, before
//! the poll that delivered it, past `ESTABLISHED` (the peer's FIN or RST had
//! arrived) or holding unread bytes, is **dead delivered**: the pool handed
//! out a connection whose close (or stray data) had reached it before its
//! last poll. The suite requires none. A pooled connection that fails
//! although it looked healthy before the poll was closed after that poll:
//! the race above, retried.
//!
//! After a `deallocate`, a connect can finish into the pool without ever
//! being lent to the client. From then on the client also looks at every
//! socket of the process (`/proc/self/fd`) before each poll, so such
//! connections are judged the same way (counted apart, as `orphans_*`).

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use keepalive::{
    Config, Connection, Event, Events, FromCache, Function, Reactor, Request, RequestId,
};

use crate::common::CAP;

pub const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// xorshift64: seeded, so a failing run replays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `num` times in `den`.
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }
}

/// How the client runs.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// The caller's own deadline for a response on a lent connection.
    pub response_timeout: Duration,
    /// Each request's pool timeout (allocate to outcome).
    pub request_timeout: Duration,
}

/// Failed outcomes by function and errno (fixed size: no allocation).
#[derive(Clone, Copy, Default)]
pub struct Tally {
    entries: [Option<(Function, Option<i32>, u64)>; 12],
}

impl Tally {
    pub fn add(&mut self, function: Function, errno: Option<i32>) {
        for e in self.entries.iter_mut() {
            match e {
                Some((f, n, count)) if *f == function && *n == errno => {
                    *count += 1;
                    return;
                }
                None => {
                    *e = Some((function, errno, 1));
                    return;
                }
                Some(_) => {}
            }
        }
        panic!("more than 12 kinds of outcome error");
    }

    pub fn count(&self, function: Function, errno: Option<i32>) -> u64 {
        self.entries
            .iter()
            .flatten()
            .filter(|(f, n, _)| *f == function && *n == errno)
            .map(|e| e.2)
            .sum()
    }

    pub fn merge(&mut self, other: &Tally) {
        for &(function, errno, count) in other.entries.iter().flatten() {
            for _ in 0..count {
                self.add(function, errno);
            }
        }
    }
}

pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECANCELED => "ECANCELED",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EPIPE => "EPIPE",
        _ => return None,
    })
}

impl fmt::Debug for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (function, errno, count)) in self.entries.iter().flatten().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match errno.map(|n| (n, errno_name(n))) {
                Some((_, Some(name))) => write!(f, "{function}/{name}: {count}")?,
                Some((n, None)) => write!(f, "{function}/errno {n}: {count}")?,
                None => write!(f, "{function}: {count}")?,
            }
        }
        f.write_str("}")
    }
}

/// Requests the caller gave up on, by what it saw on the lent connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Failures {
    /// EOF before or in the middle of the response.
    pub eof: u64,
    /// `ECONNRESET` or `EPIPE`.
    pub reset: u64,
    /// Another I/O error.
    pub other: u64,
    /// No response within the caller's deadline.
    pub timeout: u64,
    /// Something that is not the expected response.
    pub protocol: u64,
}

/// The first dead delivery, for the failure message.
#[derive(Clone, Copy, Debug)]
pub struct Dead {
    /// `tcpi_state` before the delivering poll (1 established, 7 close,
    /// 8 close-wait).
    pub tcp_state: u8,
    /// Unread bytes before the delivering poll.
    pub unread: i32,
    pub from_cache: FromCache,
    /// Which request (by count) it was delivered to.
    pub request: u64,
}

impl fmt::Display for Dead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request {} got a {:?} connection whose socket, before the delivering poll, \
             had tcp state {} (1 = established) and {} unread bytes",
            self.request, self.from_cache, self.tcp_state, self.unread
        )
    }
}

/// What a run did. `Copy` and allocation-free, so it outlives the
/// allocation count.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// `allocate` calls accepted (each must end in one outcome or one
    /// deallocate).
    pub attempted: u64,
    /// Outcome events received.
    pub outcomes: u64,
    /// Requests deallocated (no outcome due).
    pub deallocated: u64,
    /// `allocate` calls refused (after shutdown).
    pub refused: u64,
    /// Connections delivered from the pool / new.
    pub reused: u64,
    pub new: u64,
    /// Outcome errors.
    pub errors: Tally,
    /// Full responses read.
    pub completed: u64,
    /// Pooled connections that failed before any response byte and whose
    /// request was retried (closed after the delivering poll).
    pub retried: u64,
    /// Requests given up.
    pub failures: Failures,
    /// Responses that said `Connection: close`.
    pub server_close: u64,
    /// Lent connections that received bytes after their response.
    pub unsolicited_on_lent: u64,
    /// Given-back sockets seen closed or holding data before a poll: how
    /// often the dead-delivery check had something to catch.
    pub dead_idle_seen: u64,
    /// The invariant: pooled connections delivered although their close or
    /// stray data had reached them before the delivering poll.
    pub dead_delivered: u64,
    pub first_dead: Option<Dead>,
    /// Readiness events for connections the client does not hold.
    pub ready_unknown: u64,
    /// Pooled connections whose socket the client had never been lent: a
    /// connect that finished after its request was deallocated, or in the
    /// tick its request timed out, idles in the pool.
    pub orphans_reused: u64,
    /// Of those, the ones delivered dead (see `orphan_connect_closed_…`
    /// in faults.rs: a library bug).
    pub orphans_dead_delivered: u64,
    /// Orphans the look before the delivering poll did not see at all.
    pub orphans_unseen: u64,
    /// Unseen orphans explained by a timeout for the same upstream in the
    /// same poll (see `poll`), one each, delivered `Deferred`: opened,
    /// connected and pooled within one waiting poll.
    pub orphans_late: u64,
    /// Requests that failed with `connect`/`ETIMEDOUT`: their connect may
    /// still finish into the pool (an orphan, as after a deallocate).
    pub timed_out: u64,
    /// Outcomes for requests the client was not waiting on.
    pub outcome_unknown: u64,
}

#[derive(Clone, Copy, Debug)]
struct Job {
    addr: IpAddr,
    port: u16,
    /// The request's pool timeout, if not the policy's.
    timeout: Option<Duration>,
    retried: bool,
}

enum Work {
    Free,
    Waiting {
        id: RequestId,
        job: Job,
    },
    Busy {
        conn: Connection,
        job: Job,
        written: usize,
        deadline: Instant,
    },
}

struct Worker {
    work: Work,
    buf: Vec<u8>,
}

/// A socket the client was lent.
struct Sock {
    fd: RawFd,
    ino: u64,
    port: u16,
    lent: bool,
    /// Closed or holding data at the last look (before the last poll).
    dirty: bool,
    tcp_state: u8,
    unread: i32,
    seen_dirty: bool,
}

/// What a finished read found.
enum Response {
    Incomplete,
    Complete { close: bool, extra: bool },
    Bad,
}

pub struct Client {
    pub ka: Reactor<u64>,
    events: Events<u64>,
    workers: Vec<Worker>,
    jobs: VecDeque<Job>,
    socks: Vec<Sock>,
    /// Every socket of the process, by inode (tcp state, unread bytes),
    /// as of the last look, once `scan_all` is on.
    scan: Vec<(u64, u8, i32)>,
    scan_all: bool,
    /// Upstream ports of the request timeouts the current poll delivered
    /// (see `poll`).
    late_timeouts: Vec<u16>,
    pub rng: Rng,
    policy: Policy,
    pub stats: Stats,
}

impl Client {
    pub fn new(config: Config, policy: Policy, seed: u64) -> Client {
        Client {
            ka: Reactor::new(config).expect("valid config"),
            events: Events::new(),
            workers: (0..policy.concurrency)
                .map(|_| Worker {
                    work: Work::Free,
                    buf: Vec::new(),
                })
                .collect(),
            jobs: VecDeque::new(),
            socks: Vec::new(),
            scan: Vec::new(),
            scan_all: false,
            late_timeouts: Vec::new(),
            rng: Rng(seed | 1),
            policy,
            stats: Stats::default(),
        }
    }

    /// Queues `n` GETs to `addr:port`; they start as workers come free.
    pub fn submit(&mut self, addr: IpAddr, port: u16, n: usize) {
        self.submit_with_timeout(addr, port, n, None);
    }

    /// [`submit`](Client::submit) with a pool timeout of its own.
    pub fn submit_with_timeout(
        &mut self,
        addr: IpAddr,
        port: u16,
        n: usize,
        timeout: Option<Duration>,
    ) {
        for _ in 0..n {
            self.jobs.push_back(Job {
                addr,
                port,
                timeout,
                retried: false,
            });
        }
    }

    /// The caller's response deadline for exchanges started from now on.
    pub fn set_response_timeout(&mut self, d: Duration) {
        self.policy.response_timeout = d;
    }

    /// The caller gives up on every lent connection (see `abandon_one`).
    pub fn abandon_all(&mut self) {
        while self
            .workers
            .iter()
            .any(|w| matches!(w.work, Work::Busy { .. }))
        {
            self.abandon_one();
        }
    }

    /// Requests submitted and not started yet.
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }

    /// The caller gives up on one lent connection mid-exchange (random
    /// pick): `close()` it, as after a protocol error, and count the
    /// request as given up (`other`).
    pub fn abandon_one(&mut self) {
        let busy: Vec<usize> = (0..self.workers.len())
            .filter(|&w| matches!(self.workers[w].work, Work::Busy { .. }))
            .collect();
        if busy.is_empty() {
            return;
        }
        let w = busy[self.rng.below(busy.len())];
        let Work::Busy { conn, .. } = std::mem::replace(&mut self.workers[w].work, Work::Free)
        else {
            unreachable!()
        };
        self.untrack(&conn);
        conn.close();
        self.stats.failures.other += 1;
    }

    /// Whether any request is queued, pending or in flight.
    pub fn busy(&self) -> bool {
        !self.jobs.is_empty() || self.workers.iter().any(|w| !matches!(w.work, Work::Free))
    }

    /// Runs until every submitted request is done.
    #[track_caller]
    pub fn finish(&mut self) {
        self.run_until(|_| false);
    }

    /// Runs until `done` holds or nothing is left to do.
    #[track_caller]
    pub fn run_until(&mut self, mut done: impl FnMut(&Stats) -> bool) {
        let start = Instant::now();
        while self.busy() && !done(&self.stats) {
            assert!(
                start.elapsed() < CAP,
                "requests still running after {CAP:?}: {:?}",
                self.stats
            );
            self.step(Duration::from_millis(50));
        }
    }

    /// One round: start queued requests, poll once (waiting up to `wait`),
    /// handle the events, move every lent connection's exchange on.
    pub fn step(&mut self, wait: Duration) {
        self.start_jobs();
        let now = Instant::now();
        let wait = self
            .workers
            .iter()
            .filter_map(|w| match &w.work {
                Work::Busy { deadline, .. } => Some(deadline.saturating_duration_since(now)),
                _ => None,
            })
            .fold(wait, Duration::min);
        self.poll(Some(wait));
        self.drive_all();
    }

    /// The "dead delivered" set-up, made precise: waits (without
    /// polling the reactor) until every given-back socket to `port` is seen
    /// closed or holding data, i.e. the server's close or bytes have reached
    /// it, then polls until the reactor's descriptor is quiet. Returns how
    /// many such sockets there were. The next delivery from the pool must
    /// not be one of them (checked at every delivery anyway).
    #[track_caller]
    pub fn settle(&mut self, port: u16) -> usize {
        let n = self.wait_dead(port);
        self.poll_until_quiet();
        n
    }

    /// Sockets to `port` that were lent and given back and are still open.
    pub fn given_back(&mut self, port: u16) -> usize {
        self.look();
        self.socks
            .iter()
            .filter(|s| !s.lent && s.port == port)
            .count()
    }

    /// Waits, without polling the reactor, until every given-back socket to
    /// `port` that is still open is closed by its peer or holds data.
    #[track_caller]
    pub fn wait_dead(&mut self, port: u16) -> usize {
        let start = Instant::now();
        loop {
            self.look();
            let (mut dead, mut alive) = (0, 0);
            for s in self.socks.iter().filter(|s| !s.lent && s.port == port) {
                if s.dirty {
                    dead += 1;
                } else {
                    alive += 1;
                }
            }
            if alive == 0 {
                return dead;
            }
            assert!(
                start.elapsed() < CAP,
                "{alive} pooled sockets to port {port} still open after {CAP:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Polls without blocking until the reactor's descriptor is not readable.
    #[track_caller]
    pub fn poll_until_quiet(&mut self) {
        let start = Instant::now();
        loop {
            self.poll(None);
            self.drive_all();
            let mut pfd = libc::pollfd {
                fd: self.ka.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd, count 1, no wait.
            if unsafe { libc::poll(&mut pfd, 1, 0) } == 0 {
                return;
            }
            assert!(start.elapsed() < CAP, "the reactor never went quiet");
        }
    }

    /// Deallocates one pending request, if any (random pick). Returns
    /// whether it did.
    pub fn cancel_one(&mut self) -> bool {
        let waiting: Vec<usize> = (0..self.workers.len())
            .filter(|&w| matches!(self.workers[w].work, Work::Waiting { .. }))
            .collect();
        if waiting.is_empty() {
            return false;
        }
        let w = waiting[self.rng.below(waiting.len())];
        let Work::Waiting { id, .. } = std::mem::replace(&mut self.workers[w].work, Work::Free)
        else {
            unreachable!()
        };
        let context = self
            .ka
            .deallocate(id)
            .unwrap_or_else(|e| panic!("deallocate of a pending request: {e}"));
        assert_eq!(context, w as u64, "the context came back");
        self.stats.deallocated += 1;
        // Its connect may finish and idle in the pool without ever being
        // lent to us: from now on, look at every socket of the process.
        self.scan_all = true;
        true
    }

    /// Shuts the reactor down with whatever is in flight: pending requests
    /// get their `shutdown`/`ECANCELED` outcome, lent connections finish
    /// their exchange and are closed when given back, one more allocate is
    /// refused, queued requests are dropped. Then waits until all is back.
    #[track_caller]
    pub fn shutdown(&mut self) {
        self.ka.shutdown();
        self.jobs.truncate(1);
        let start = Instant::now();
        while self.busy() {
            assert!(
                start.elapsed() < CAP,
                "not done after shutdown: {:?}",
                self.stats
            );
            self.step(Duration::from_millis(20));
        }
        // Dropped connections go back at the next tick.
        self.poll(None);
        assert_eq!(self.ka.pending_count(), 0, "no request left after shutdown");
        assert_eq!(self.ka.open_count(), 0, "no socket left after shutdown");
    }

    /// The stats, once everything is given back (drops the reactor).
    pub fn into_stats(self) -> Stats {
        assert!(!self.busy(), "into_stats with work in flight");
        self.stats
    }

    fn start_jobs(&mut self) {
        for w in 0..self.workers.len() {
            if !matches!(self.workers[w].work, Work::Free) {
                continue;
            }
            let Some(job) = self.jobs.pop_front() else {
                return;
            };
            let req = Request::new("http", job.addr, job.port, w as u64)
                .timeout(job.timeout.unwrap_or(self.policy.request_timeout));
            match self.ka.allocate(req) {
                Ok(id) => {
                    self.stats.attempted += 1;
                    self.workers[w].work = Work::Waiting { id, job };
                }
                Err(e) => {
                    assert!(
                        matches!(e.error, keepalive::Error::ShutDown),
                        "allocate refused: {e}"
                    );
                    assert_eq!(e.into_request().into_context(), w as u64);
                    self.stats.refused += 1;
                }
            }
        }
    }

    /// Looks at every given-back socket (see the module docs), then polls
    /// once: `None` without blocking.
    fn poll(&mut self, wait: Option<Duration>) {
        self.look();
        match wait {
            Some(wait) => self.ka.poll(&mut self.events, Some(wait)),
            None => self.ka.poll_events(&mut self.events),
        }
        .expect("poll");
        let mut events = std::mem::take(&mut self.events);
        // A poll that waits runs several ticks: a socket it opened (for a
        // queued request) can connect in the tick its request times out,
        // idle, and go to a request waiting for the same upstream, all after
        // the look above. Each such timeout excuses one unseen orphan.
        self.late_timeouts.clear();
        self.late_timeouts
            .extend(events.iter().filter_map(|e| match e {
                Event::Outcome(o) if o.result.as_ref().is_err_and(|e| e.is_timeout()) => {
                    Some(o.target.port())
                }
                _ => None,
            }));
        for event in events.drain() {
            match event {
                Event::Ready(r) => {
                    let held = self
                        .workers
                        .iter()
                        .any(|w| matches!(&w.work, Work::Busy { conn, .. } if conn.id() == r.conn));
                    if !held {
                        self.stats.ready_unknown += 1;
                    }
                }
                Event::Outcome(o) => {
                    self.stats.outcomes += 1;
                    let w = o.context as usize;
                    let ours = matches!(
                        self.workers.get(w).map(|w| &w.work),
                        Some(Work::Waiting { id, job }) if *id == o.id && job.port == o.target.port()
                    );
                    if !ours {
                        self.stats.outcome_unknown += 1;
                        continue;
                    }
                    let Work::Waiting { job, .. } =
                        std::mem::replace(&mut self.workers[w].work, Work::Free)
                    else {
                        unreachable!()
                    };
                    match o.result {
                        Ok(conn) => self.delivered(w, conn, job),
                        Err(e) => {
                            if e.is_timeout() {
                                // A connect that completes in the tick its
                                // deadline passed idles in the pool without
                                // ever being lent to us, as after a
                                // deallocate.
                                self.stats.timed_out += 1;
                                self.scan_all = true;
                            }
                            self.stats.errors.add(e.function(), e.errno())
                        }
                    }
                }
                // No sources, timers or lifecycle events are asked for.
                _ => {}
            }
        }
        self.events = events;
        // Every request still waiting for its outcome is pending in the
        // reactor, and nothing else is: an outcome lost (or delivered
        // twice) shows here at once, not as a wait that never ends.
        let waiting = self
            .workers
            .iter()
            .filter(|w| matches!(w.work, Work::Waiting { .. }))
            .count();
        assert_eq!(
            waiting,
            self.ka.pending_count(),
            "requests waiting for an outcome vs pending in the reactor: {:?}",
            self.stats
        );
    }

    /// Records the state of every given-back socket that is still open
    /// (and, once `scan_all` is on, of every socket of the process).
    fn look(&mut self) {
        if self.scan_all {
            self.scan.clear();
            for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
                let Some(fd) = entry
                    .ok()
                    .and_then(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
                else {
                    continue;
                };
                // Other threads' sockets may close meanwhile; only ours
                // (which cannot, while we look) are ever looked up.
                if let Some(ino) = socket_ino(fd) {
                    self.scan.push((ino, tcp_state(fd), unread(fd)));
                }
            }
        }
        let stats = &mut self.stats;
        self.socks.retain_mut(|s| {
            if s.lent {
                return true;
            }
            if socket_ino(s.fd) != Some(s.ino) {
                return false; // closed by the reactor (the number may be reused)
            }
            s.tcp_state = tcp_state(s.fd);
            s.unread = unread(s.fd);
            s.dirty = s.tcp_state != TCP_ESTABLISHED || s.unread > 0;
            if s.dirty && !s.seen_dirty {
                s.seen_dirty = true;
                stats.dead_idle_seen += 1;
            }
            true
        });
    }

    fn delivered(&mut self, w: usize, conn: Connection, job: Job) {
        let fd = conn.as_raw_fd();
        let ino = socket_ino(fd).expect("a delivered connection is an open socket");
        match conn.from_cache() {
            Some(from_cache) => {
                self.stats.reused += 1;
                match self.socks.iter_mut().find(|s| s.ino == ino) {
                    Some(s) => {
                        if s.dirty {
                            self.stats.dead_delivered += 1;
                            self.stats.first_dead.get_or_insert(Dead {
                                tcp_state: s.tcp_state,
                                unread: s.unread,
                                from_cache,
                                request: self.stats.attempted,
                            });
                        }
                        s.lent = true;
                    }
                    None => {
                        self.stats.orphans_reused += 1;
                        let scanned = self.scan.iter().find(|e| e.0 == ino).copied();
                        match scanned {
                            Some((_, state, unread)) => {
                                if state != TCP_ESTABLISHED || unread > 0 {
                                    self.stats.orphans_dead_delivered += 1;
                                }
                            }
                            None if from_cache == FromCache::Deferred
                                && self.take_late_timeout(job.port) =>
                            {
                                self.stats.orphans_late += 1;
                            }
                            None => self.stats.orphans_unseen += 1,
                        }
                        self.track(fd, ino, job.port);
                    }
                }
            }
            None => {
                self.stats.new += 1;
                self.track(fd, ino, job.port);
            }
        }
        self.workers[w].buf.clear();
        self.workers[w].work = Work::Busy {
            conn,
            job,
            written: 0,
            deadline: Instant::now() + self.policy.response_timeout,
        };
        self.drive(w);
    }

    /// Consumes one of this poll's timeouts for `port`, if there is one.
    fn take_late_timeout(&mut self, port: u16) -> bool {
        match self.late_timeouts.iter().position(|&p| p == port) {
            Some(i) => {
                self.late_timeouts.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn track(&mut self, fd: RawFd, ino: u64, port: u16) {
        // A stale entry for the same number (closed since the last look).
        self.socks.retain(|s| s.fd != fd);
        self.socks.push(Sock {
            fd,
            ino,
            port,
            lent: true,
            dirty: false,
            tcp_state: TCP_ESTABLISHED,
            unread: 0,
            seen_dirty: false,
        });
    }

    fn drive_all(&mut self) {
        for w in 0..self.workers.len() {
            if matches!(self.workers[w].work, Work::Busy { .. }) {
                self.drive(w);
            }
        }
    }

    /// Writes the request and reads the response as far as the socket
    /// allows; ends the exchange when it is done or failed.
    fn drive(&mut self, w: usize) {
        let worker = &mut self.workers[w];
        let Work::Busy {
            conn,
            written,
            deadline,
            ..
        } = &mut worker.work
        else {
            return;
        };
        while *written < GET.len() {
            match conn.write(&GET[*written..]) {
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let got_any = !worker.buf.is_empty();
                    return self.failed(w, kind_of(&e), got_any);
                }
            }
        }
        let mut chunk = [0u8; 4096];
        loop {
            match conn.read(&mut chunk) {
                Ok(0) => {
                    let got_any = !worker.buf.is_empty();
                    return self.failed(w, Kind::Eof, got_any);
                }
                Ok(n) => {
                    worker.buf.extend_from_slice(&chunk[..n]);
                    match parse(&worker.buf) {
                        Response::Incomplete => {}
                        Response::Complete { close, extra } => return self.done(w, close, extra),
                        Response::Bad => return self.failed(w, Kind::Protocol, true),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= *deadline {
                        return self.failed(w, Kind::Timeout, true);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let got_any = !worker.buf.is_empty();
                    return self.failed(w, kind_of(&e), got_any);
                }
            }
        }
    }

    /// The exchange failed: close the connection; retry once if it came
    /// from the pool and nothing of the response had arrived (see the module
    /// docs), else count the failure.
    fn failed(&mut self, w: usize, kind: Kind, got_any: bool) {
        let Work::Busy { conn, mut job, .. } =
            std::mem::replace(&mut self.workers[w].work, Work::Free)
        else {
            unreachable!()
        };
        let pooled = conn.from_cache().is_some();
        self.untrack(&conn);
        conn.close();
        let retryable = pooled && !got_any && !job.retried && kind != Kind::Timeout;
        if retryable {
            self.stats.retried += 1;
            job.retried = true;
            self.jobs.push_front(job);
            return;
        }
        let f = &mut self.stats.failures;
        match kind {
            Kind::Eof => f.eof += 1,
            Kind::Reset => f.reset += 1,
            Kind::Other => f.other += 1,
            Kind::Timeout => f.timeout += 1,
            Kind::Protocol => f.protocol += 1,
        }
    }

    /// A full response: give the connection back (free, sometimes drop), or
    /// close it if the server said so (a sloppy caller frees it anyway, half
    /// the time: the pool must then notice the server's close) or it
    /// received bytes after the response.
    fn done(&mut self, w: usize, close: bool, extra: bool) {
        let Work::Busy { conn, .. } = std::mem::replace(&mut self.workers[w].work, Work::Free)
        else {
            unreachable!()
        };
        self.stats.completed += 1;
        if close {
            self.stats.server_close += 1;
        }
        if extra {
            self.stats.unsolicited_on_lent += 1;
        }
        if extra || (close && self.rng.chance(1, 2)) {
            self.untrack(&conn);
            conn.close();
            return;
        }
        if let Some(s) = self.socks.iter_mut().find(|s| s.fd == conn.as_raw_fd()) {
            s.lent = false;
        }
        if self.rng.chance(1, 4) {
            drop(conn); // returned at the next tick
        } else {
            self.ka.free(conn).expect("free");
        }
    }

    fn untrack(&mut self, conn: &Connection) {
        let fd = conn.as_raw_fd();
        self.socks.retain(|s| s.fd != fd);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Eof,
    Reset,
    Other,
    Timeout,
    Protocol,
}

fn kind_of(e: &io::Error) -> Kind {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Kind::Reset,
        _ => Kind::Other,
    }
}

/// Parses one `200 OK` response with a `hello\n` body, by Content-Length.
fn parse(buf: &[u8]) -> Response {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Response::Incomplete;
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Response::Bad;
    };
    let mut lines = head.split("\r\n");
    if !lines.next().is_some_and(|l| l.starts_with("HTTP/1.1 200 ")) {
        return Response::Bad;
    }
    let mut len = None;
    let mut close = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Response::Bad;
        };
        if k.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse::<usize>().ok();
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.trim().eq_ignore_ascii_case("close");
        }
    }
    let Some(len) = len else {
        return Response::Bad;
    };
    let body = end + 4;
    if buf.len() < body + len {
        return Response::Incomplete;
    }
    if &buf[body..body + len] != b"hello\n" {
        return Response::Bad;
    }
    Response::Complete {
        close,
        extra: buf.len() > body + len,
    }
}

const TCP_ESTABLISHED: u8 = 1;

/// The socket's inode, or `None` if `fd` is not an open socket.
pub fn socket_ino(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat writes into the zeroed stat we own; an invalid fd only
    // returns an error.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(st.st_ino)
}

/// `tcpi_state` (1 established, 7 close, 8 close-wait, …; 0 if unknown).
pub fn tcp_state(fd: RawFd) -> u8 {
    // SAFETY: getsockopt writes at most `len` bytes into the zeroed
    // tcp_info we own.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if ret == 0 { info.tcpi_state } else { 0 }
}

/// Bytes waiting in the socket's receive queue.
pub fn unread(fd: RawFd) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int into `n`.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } == 0 {
        n
    } else {
        0
    }
}
