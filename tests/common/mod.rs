//! Test support: loopback servers, awkward listeners, and waits with caps.
//!
//! Every wait is bounded by a generous cap that only matters when something
//! is broken; no test's verdict depends on how fast the machine is.

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod chaos;
pub mod dns;
pub mod dnsmasq;
pub mod nginx;
pub mod proxy_process;
pub mod tls;
pub mod tls_wire;
pub mod unix;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use keepalive::{Config, Connection, Event, Events, Outcome, Reactor, Request};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How long a wait may take before the test fails: only reached when broken.
pub const CAP: Duration = Duration::from_secs(10);

/// An HTTP/1.1 keep-alive server on loopback, a thread per connection. It
/// counts connections and requests, and can close or write to the
/// connections it holds, so tests can play a misbehaving peer.
pub struct Server {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_on(LOCALHOST)
    }

    /// A server that closes each connection right after its first response,
    /// so the FIN follows the data at once.
    pub fn start_closing() -> Server {
        Server::start_with(LOCALHOST, true)
    }

    pub fn start_on(ip: IpAddr) -> Server {
        Server::start_with(ip, false)
    }

    fn start_with(ip: IpAddr, close_after_response: bool) -> Server {
        let listener = TcpListener::bind((ip, 0)).expect("bind test server");
        Server::serve_on(listener, close_after_response)
    }

    /// On exactly `addr` (a port another listener holds on the other
    /// family, say); `Err` if it cannot be bound.
    pub fn start_at(addr: SocketAddr) -> io::Result<Server> {
        Ok(Server::serve_on(TcpListener::bind(addr)?, false))
    }

    fn serve_on(listener: TcpListener, close_after_response: bool) -> Server {
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, r, o, s) = (
            accepted.clone(),
            requests.clone(),
            open.clone(),
            stop.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                // Held before counted: once a test sees the count, `close_all`
                // reaches the connection.
                o.lock().unwrap().push(stream.try_clone().unwrap());
                a.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                thread::spawn(move || serve(stream, &r, close_after_response));
            }
        });
        Server {
            addr,
            accepted,
            requests,
            open,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Closes every connection the server holds (FIN to the client).
    pub fn close_all(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Writes bytes nobody asked for on every connection the server holds.
    pub fn send_unsolicited(&self) {
        for s in self.open.lock().unwrap().iter_mut() {
            let _ = s.write_all(b"surprise");
        }
    }

    /// Waits until the server has accepted `n` connections.
    #[track_caller]
    pub fn wait_accepted(&self, n: usize) {
        wait_count(|| self.accepted(), n, "server accepted");
    }

    /// Asserts the server accepted exactly `n` connections. The accept
    /// thread counts a connection some time after the client's connect
    /// completed, so this first waits (capped) for the count to reach `n`.
    #[track_caller]
    pub fn assert_accepted(&self, n: usize) {
        self.wait_accepted(n);
        assert_eq!(self.accepted(), n, "connections accepted");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.close_all();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

/// Answers `GET` heads with a small body, keep-alive, until EOF.
fn serve(stream: TcpStream, requests: &AtomicUsize, close_after_response: bool) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let body = "hello\n";
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(response.as_bytes()).is_err() || close_after_response {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// A port with no listener: connects are refused.
pub fn refused_port() -> u16 {
    let l = TcpListener::bind((LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// A listener whose accept queue is full, so a further connect stays in
/// SYN-SENT (Linux drops SYNs to a full queue). Keep the returned value
/// alive for as long as the listener must stay full.
pub struct FullBacklog {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

#[track_caller]
pub fn full_backlog() -> FullBacklog {
    full_backlog_at(SocketAddr::new(LOCALHOST, 0)).unwrap()
}

/// [`full_backlog`] on `addr` (127.0.0.1 or ::1; port 0 for any). `Err` if
/// it cannot be bound; panics if the queue cannot be filled.
#[track_caller]
pub fn full_backlog_at(addr: SocketAddr) -> io::Result<FullBacklog> {
    let domain = socket2::Domain::for_address(addr);
    let listener = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    if addr.is_ipv6() {
        listener.set_only_v6(true)?;
    }
    listener.bind(&addr.into())?;
    listener.listen(0)?;
    let addr = listener
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an inet socket"))?;
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => {
                return Ok(FullBacklog {
                    addr,
                    _listener: listener,
                    _fillers: fillers,
                });
            }
        }
    }
    panic!("could not fill the accept queue of {addr}");
}

/// Waits, without touching the reactor, until `fd` is readable: a FIN or
/// data has reached a socket, or readiness is queued on a reactor's poller.
/// Fails after [`CAP`].
#[track_caller]
pub fn wait_readable(fd: std::os::fd::RawFd) {
    use mio::unix::SourceFd;
    let mut poll = mio::Poll::new().expect("poller");
    poll.registry()
        .register(&mut SourceFd(&fd), mio::Token(0), mio::Interest::READABLE)
        .expect("register");
    let mut events = mio::Events::with_capacity(1);
    let start = Instant::now();
    while events.is_empty() {
        assert!(start.elapsed() < CAP, "fd {fd} not readable within {CAP:?}");
        poll.poll(&mut events, Some(CAP)).expect("poll");
    }
}

/// A directory of its own under the system's temporary directory, removed
/// with what it holds when dropped.
/// Two servers on one port: 127.0.0.1:P and 127.0.0.2:P (both loopback),
/// for a name that moves from one address to the other.
pub fn servers_on_two_loopback_addresses() -> (Server, Server) {
    let second = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    for _ in 0..50 {
        let first = Server::start();
        if let Ok(other) = Server::start_at(SocketAddr::new(second, first.port())) {
            return (first, other);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "keepalive-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }

    /// Writes `contents` to `name` in the directory; returns its path.
    pub fn file(&self, name: &str, contents: &str) -> std::path::PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write a temporary file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn reactor<C>(config: Config) -> Reactor<C> {
    Reactor::new(config).expect("valid config")
}

pub fn request<C>(port: u16, context: C) -> Request<C> {
    Request::new("http", LOCALHOST, port, context)
}

/// Polls until an outcome arrives and returns it; readiness events that come
/// first are dropped. Fails the test after [`CAP`].
#[track_caller]
pub fn wait_outcome<C>(reactor: &mut Reactor<C>, events: &mut Events<C>) -> Outcome<C> {
    let start = Instant::now();
    loop {
        if let Some(pos) = events.iter().position(|e| matches!(e, Event::Outcome(_))) {
            let mut all: Vec<Event<C>> = events.drain().collect();
            let Event::Outcome(outcome) = all.remove(pos) else {
                unreachable!()
            };
            return outcome;
        }
        events.drain().for_each(drop);
        assert!(start.elapsed() < CAP, "no outcome within {CAP:?}");
        reactor
            .poll(events, Some(Duration::from_millis(100)))
            .unwrap();
    }
}

/// Allocates and waits for a connection.
#[track_caller]
pub fn connect<C>(reactor: &mut Reactor<C>, events: &mut Events<C>, req: Request<C>) -> Connection {
    reactor.allocate(req).unwrap();
    match wait_outcome(reactor, events).result {
        Ok(conn) => conn,
        Err(e) => panic!("allocation failed: {e}"),
    }
}

/// Opens a connection for `req`, serves one GET over it and frees it: the
/// key then holds one idle connection that has been used.
#[track_caller]
pub fn leave_idle<C>(reactor: &mut Reactor<C>, events: &mut Events<C>, req: Request<C>) {
    let mut conn = connect(reactor, events, req);
    get(reactor, events, &mut conn);
    reactor.free(conn).unwrap();
}

/// Polls for `d` (tests that must see nothing happen, or let time pass).
#[track_caller]
pub fn poll_for<C>(reactor: &mut Reactor<C>, events: &mut Events<C>, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        reactor.poll(events, Some(until - Instant::now())).unwrap();
    }
}

/// Polls until `cond` holds, failing after [`CAP`].
#[track_caller]
pub fn poll_until<C>(
    reactor: &mut Reactor<C>,
    events: &mut Events<C>,
    what: &str,
    mut cond: impl FnMut(&Reactor<C>) -> bool,
) {
    let start = Instant::now();
    while !cond(reactor) {
        assert!(start.elapsed() < CAP, "timed out waiting for {what}");
        reactor
            .poll(events, Some(Duration::from_millis(10)))
            .unwrap();
    }
}

/// One HTTP/1.1 GET over a lent connection: writes the request, reads the
/// response by Content-Length, waiting on the reactor for readiness.
/// Returns the body.
#[track_caller]
pub fn get<C>(reactor: &mut Reactor<C>, events: &mut Events<C>, conn: &mut Connection) -> String {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    read_response(reactor, events, conn)
}

/// Reads one HTTP response by Content-Length and returns its body (the head's
/// `X-Conn` header, if any, is appended as `conn=<value>` on its own line).
#[track_caller]
pub fn read_response<C>(
    reactor: &mut Reactor<C>,
    events: &mut Events<C>,
    conn: &mut Connection,
) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let start = Instant::now();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let len: usize = header("content-length")
                .expect("Content-Length")
                .parse()
                .unwrap();
            if buf.len() >= end + 4 + len {
                assert_eq!(buf.len(), end + 4 + len, "more bytes than one response");
                let mut body = String::from_utf8_lossy(&buf[end + 4..]).to_string();
                if let Some(c) = header("x-conn") {
                    body.push_str(&format!("conn={c}\n"));
                }
                return body;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) => panic!("peer closed mid-response after {} bytes", buf.len()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(start.elapsed() < CAP, "no response within {CAP:?}");
                reactor
                    .poll(events, Some(Duration::from_millis(100)))
                    .unwrap();
                events.drain().for_each(drop);
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Reads until `WouldBlock` (discarding), so the connection knows its
/// receive queue is empty.
#[track_caller]
pub fn drain_reads(conn: &mut Connection) {
    let mut chunk = [0u8; 1024];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Waits (capped) until `count()` reaches `n`: counters kept by a server's
/// threads lag what the client side already saw complete.
#[track_caller]
pub fn wait_count(count: impl Fn() -> usize, n: usize, what: &str) {
    let start = Instant::now();
    while count() < n {
        assert!(start.elapsed() < CAP, "{what} {} of {n}", count());
        thread::sleep(Duration::from_millis(1));
    }
}

/// Leaves a close in the kernel behind a full tick: a pooled connection to
/// `server` whose peer closes it, behind three readable sources of the
/// caller's own, on a reactor built with `max_events_per_tick(1)`. The next
/// tick reads one of the caller's events, not the close. Returns the
/// sources: keep them alive while the test runs.
pub fn close_behind_a_full_tick<C>(
    ka: &mut Reactor<C>,
    events: &mut Events<C>,
    server: &Server,
    context: C,
) -> Vec<keepalive::mio::net::UdpSocket> {
    use keepalive::mio::{Interest, Token, net::UdpSocket};
    use std::os::fd::AsRawFd;
    let mut conn = connect(ka, events, request(server.port(), context));
    get(ka, events, &mut conn);
    let fd = conn.as_raw_fd();
    ka.free(conn).unwrap();
    // Three of the caller's sockets become readable first...
    let sender = std::net::UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let sources: Vec<UdpSocket> = (0..3)
        .map(|i| {
            let mut udp = UdpSocket::bind((LOCALHOST, 0).into()).unwrap();
            ka.register(&mut udp, Token(i), Interest::READABLE).unwrap();
            sender.send_to(b"x", udp.local_addr().unwrap()).unwrap();
            udp
        })
        .collect();
    for udp in &sources {
        wait_readable(udp.as_raw_fd());
    }
    // ...then the pooled socket's close arrives.
    server.close_all();
    wait_readable(fd);
    sources
}
