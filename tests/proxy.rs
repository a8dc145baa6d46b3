//! The reverse proxy example (`examples/proxy/`), driven by a real client
//! through the proxy to a real nginx, and to small misbehaving upstreams for
//! the faults nginx will not produce on demand (resets, silence).
//!
//! The proxy's modules are compiled into this test crate by path, so the
//! tests run the example's own code in-process and read its counters.

#![allow(unsafe_code, reason = "a counting global allocator")]
#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

#[path = "../examples/proxy/admission.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod admission;
mod common;
#[path = "../examples/proxy/engine.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod engine;
#[path = "../examples/proxy/http1.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod http1;
#[path = "../examples/proxy/selftest.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod selftest;
#[path = "../examples/proxy/upstream.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod upstream;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::nginx::{Nginx, Site};
use common::{CAP, LOCALHOST};
use engine::{Config, Proxy, Totals};
use http1::{Chunked, Framing, HeadError};
use selftest::Client;

// ---------------------------------------------------------------------------
// Allocation counting, for the proxy's worker threads only.

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}
static PROXY_ALLOCS: AtomicU64 = AtomicU64::new(0);

fn count_if_armed() {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            PROXY_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
    });
}

// SAFETY: defers to the system allocator; the counter is an atomic and the
// flag a thread-local `Cell` with a const initializer, neither allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_if_armed();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_if_armed();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn arm_counting() {
    ARMED.with(|a| a.set(true));
}

// ---------------------------------------------------------------------------
// Helpers.

/// A proxy in front of `upstream`: one thread, short timeouts for tests
/// that want them set by `tweak`.
#[track_caller]
fn proxy(upstream: SocketAddr, tweak: impl FnOnce(&mut Config)) -> Proxy {
    let mut config = Config::new(SocketAddr::new(LOCALHOST, 0), upstream);
    config.threads = 1;
    tweak(&mut config);
    Proxy::start(config).expect("start the proxy")
}

#[track_caller]
fn client(proxy: &Proxy) -> Client {
    Client::connect(proxy.addr(), CAP).expect("connect to the proxy")
}

/// Waits (bounded by [`CAP`]) until the proxy's counters satisfy `cond`.
#[track_caller]
fn wait_totals(proxy: &Proxy, what: &str, cond: impl Fn(&Totals) -> bool) -> Totals {
    let start = Instant::now();
    loop {
        let t = proxy.totals();
        if cond(&t) {
            return t;
        }
        assert!(start.elapsed() < CAP, "timed out waiting for {what}: {t:?}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// nginx with `/` answering `hello\n`, DAV `PUT` under `/dav/`, static files
/// under `/files/` (from `<dir>/files/`), and the same files under
/// `/chunked/` through `sub_filter`, which makes the length unknown, so
/// nginx answers chunked. `None` (printed) when nginx is missing.
fn nginx(keepalive_requests: u32, keepalive_timeout: &str) -> Option<Nginx> {
    let server = format!(
        "keepalive_requests {keepalive_requests};\n keepalive_timeout {keepalive_timeout};\n \
         client_max_body_size 0;\n \
         location / {{ add_header X-Conn $connection always; return 200 \"hello\\n\"; }}\n \
         location /dav/ {{ root files; dav_methods PUT; create_full_put_path on; }}\n \
         location /files/ {{ alias files/; }}\n \
         location /chunked/ {{ alias files/; sub_filter_types *; sub_filter 'zzzz' 'yyyy'; }}"
    );
    let nginx = Nginx::start(Site {
        listen_extra: "",
        server: &server,
        files: Vec::new(),
    })?;
    std::fs::create_dir_all(nginx.dir().join("files")).expect("files dir");
    Some(nginx)
}

/// Deterministic bytes that differ at every position a shifted copy would.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect()
}

/// An upstream that answers the first `answer` requests on each connection
/// with `200 chaos`, then resets the connection (SO_LINGER 0, close) when
/// the next request head arrives. Counts connections.
fn chaos_upstream(answer: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || chaos_serve(stream, answer));
        }
    });
    (addr, accepted)
}

fn chaos_serve(mut stream: TcpStream, answer: usize) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    for served in 0.. {
        // Wait for a whole head.
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        seen.drain(..end);
        if served >= answer {
            common_reset(&stream);
            return;
        }
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nchaos\n")
            .is_err()
        {
            return;
        }
    }
}

/// Makes dropping `stream` send RST.
fn common_reset(stream: &TcpStream) {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// An upstream that accepts and then neither reads nor answers; it holds
/// the connections until dropped.
struct Silent {
    addr: SocketAddr,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

fn silent_upstream() -> Silent {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            h.lock().unwrap().push(stream);
        }
    });
    Silent { addr, _held: held }
}

// ---------------------------------------------------------------------------
// Against nginx.

#[test]
fn many_requests_on_one_client_connection_reuse_one_upstream_connection() {
    let Some(nginx) = nginx(1_000_000, "60s") else {
        return;
    };
    let proxy = proxy(nginx.addr, |_| {});
    let mut c = client(&proxy);
    let first = c.get("/").unwrap();
    let serial = first
        .header("x-conn")
        .expect("nginx's connection serial")
        .to_string();
    for n in 1..500 {
        let r = c.get("/").unwrap();
        assert_eq!((r.status, r.body_str()), (200, "hello\n"), "request {n}");
        assert_eq!(
            r.header("x-conn"),
            Some(serial.as_str()),
            "one upstream connection"
        );
        assert_eq!(
            r.header("connection"),
            None,
            "hop-by-hop headers are not relayed"
        );
    }
    let t = wait_totals(&proxy, "500 requests counted", |t| t.requests == 500);
    assert_eq!(t.upstream_connects, 1, "{t:?}");
    assert_eq!((t.retries, t.bad_gateway, t.gateway_timeout), (0, 0, 0));
}

#[test]
fn a_busy_polling_proxy_relays_and_reuses_like_a_sleeping_one() {
    let Some(nginx) = nginx(1_000_000, "60s") else {
        return;
    };
    let proxy = proxy(nginx.addr, |c| c.busy_poll = Duration::from_micros(50));
    let mut c = client(&proxy);
    for n in 0..200 {
        let r = c.get("/").unwrap();
        assert_eq!((r.status, r.body_str()), (200, "hello\n"), "request {n}");
    }
    let t = wait_totals(&proxy, "200 requests counted", |t| t.requests == 200);
    assert_eq!(t.upstream_connects, 1, "{t:?}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let Some(nginx) = nginx(1_000_000, "60s") else {
        return;
    };
    let proxy = proxy(nginx.addr, |_| {});
    let mut c = client(&proxy);
    let mut three = Vec::new();
    for path in ["/", "/missing-file-a", "/"] {
        three.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    // `/missing-file-a` is answered by `location /` too: three 200s.
    c.stream.write_all(&three).unwrap();
    for _ in 0..3 {
        let r = selftest::read_response(&mut c.reader, false).unwrap();
        assert_eq!((r.status, r.body_str()), (200, "hello\n"));
    }
}

#[test]
fn content_length_request_bodies_go_up_and_files_come_back() {
    let Some(nginx) = nginx(1_000_000, "60s") else {
        return;
    };
    let proxy = proxy(nginx.addr, |_| {});
    let mut c = client(&proxy);
    let body = pattern(300_000);
    let r = c.send_body("PUT", "/dav/cl.bin", &body).unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    let r = c.get("/dav/cl.bin").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("300000"));
    assert!(r.body == body, "the file came back unchanged");
    let r = c.send_body("PUT", "/dav/empty.bin", b"").unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    let r = c
        .send(b"HEAD /dav/cl.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!((r.status, r.body.len()), (200, 0), "HEAD has no body");
    assert_eq!(
        c.get("/").unwrap().body_str(),
        "hello\n",
        "framing intact after HEAD"
    );
}

#[test]
fn chunked_request_bodies_go_up_intact() {
    let Some(nginx) = nginx(1_000_000, "60s") else {
        return;
    };
    let proxy = proxy(nginx.addr, |_| {});
    let mut c = client(&proxy);
    let body = pattern(200_000);
    // Odd chunk sizes, so chunk boundaries fall everywhere in the proxy's
    // reads.
    let r = c
        .send_chunked("PUT", "/dav/chunked.bin", &body, 7_919)
        .unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    let r = c.get("/dav/chunked.bin").unwrap();
    assert!(
        r.status == 200 && r.body == body,
        "{} bytes back",
        r.body.len()
    );
    // One byte a chunk, with an extension and a trailer.
    let mut req =
        b"PUT /dav/tiny.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(b"1;ext=1\r\na\r\n1\r\nb\r\n0\r\nX-Trailer: yes\r\n\r\n");
    let r = c.send(&req).unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(c.get("/dav/tiny.txt").unwrap().body_str(), "ab");
}

#[test]
fn chunked_responses_are_relayed_with_their_framing() {
    let Some(nginx) = nginx(1_000_000, "60s") else {
        return;
    };
    let file = pattern(150_000);
    std::fs::write(nginx.dir().join("files/data.bin"), &file).unwrap();
    let proxy = proxy(nginx.addr, |_| {});
    let mut c = client(&proxy);
    for _ in 0..3 {
        let r = c.get("/chunked/data.bin").unwrap();
        assert_eq!(r.status, 200);
        assert!(r.is_chunked(), "nginx answered chunked: {:?}", r.headers);
        assert!(r.body == file, "{} bytes", r.body.len());
        // The next response on the connection starts where the last ended.
        assert_eq!(c.get("/").unwrap().body_str(), "hello\n");
    }
    let t = wait_totals(&proxy, "6 requests", |t| t.requests == 6);
    assert_eq!(
        t.upstream_connects, 1,
        "chunked responses keep the upstream: {t:?}"
    );
}

#[test]
fn upstream_closing_after_two_requests_is_followed_without_errors() {
    let Some(nginx) = nginx(2, "60s") else {
        return;
    };
    let proxy = proxy(nginx.addr, |_| {});
    let mut c = client(&proxy);
    for n in 0..10 {
        let r = c.get("/").unwrap();
        assert_eq!((r.status, r.body_str()), (200, "hello\n"), "request {n}");
        assert_eq!(
            r.header("connection"),
            None,
            "the upstream's close is not relayed"
        );
    }
    let t = wait_totals(&proxy, "10 requests", |t| t.requests == 10);
    assert_eq!(
        t.upstream_connects, 5,
        "a new connection every 2 requests: {t:?}"
    );
    assert_eq!((t.retries, t.bad_gateway), (0, 0), "{t:?}");
}

#[test]
fn upstream_idle_timeout_closes_pooled_connection_and_next_request_reconnects() {
    let Some(nginx) = nginx(1_000_000, "1s") else {
        return;
    };
    let proxy = proxy(nginx.addr, |_| {});
    let mut c = client(&proxy);
    assert_eq!(c.get("/").unwrap().status, 200);
    wait_totals(&proxy, "the idle upstream connection in the pool", |t| {
        t.upstream_idle == 1
    });
    // nginx closes it after 1 s; the pool notices while it idles.
    wait_totals(&proxy, "the pool to drop the closed connection", |t| {
        t.upstream_open == 0
    });
    let r = c.get("/").unwrap();
    assert_eq!((r.status, r.body_str()), (200, "hello\n"));
    let t = wait_totals(&proxy, "2 requests", |t| t.requests == 2);
    assert_eq!((t.upstream_connects, t.retries), (2, 0), "{t:?}");
}

#[test]
fn slow_client_stops_the_proxy_reading_upstream() {
    let Some(nginx) = nginx(1_000_000, "60s") else {
        return;
    };
    const SIZE: usize = 32 << 20;
    let file = pattern(SIZE);
    std::fs::write(nginx.dir().join("files/big.bin"), &file).unwrap();
    let buffer = 16 * 1024;
    let proxy = proxy(nginx.addr, |c| c.buffer = buffer);
    // A client with a small receive buffer that does not read for a while.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&proxy.addr().into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(CAP)).unwrap();
    stream
        .write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // The proxy fills its buffer for this client, then stops reading.
    let full = wait_totals(&proxy, "the client's buffer to fill", |t| {
        t.buffered >= buffer as u64
    });
    assert!(
        full.upstream_bytes < (SIZE / 2) as u64,
        "the proxy read {} of {SIZE} bytes from upstream for a client that reads nothing",
        full.upstream_bytes
    );
    // Now read it all.
    let response = selftest::read_response(&mut std::io::BufReader::new(stream), false).unwrap();
    assert_eq!(response.status, 200);
    assert!(response.body == file, "{} bytes", response.body.len());
    let t = wait_totals(&proxy, "the request counted", |t| t.requests == 1);
    assert!(
        t.buffered_max <= 2 * buffer as u64,
        "at most two buffers per client: {t:?}"
    );
    assert_eq!(t.buffered, 0);
}

// ---------------------------------------------------------------------------
// Faults nginx does not make on demand.

#[test]
fn reused_connection_reset_before_the_response_is_retried_once_on_a_new_one() {
    let (upstream, accepted) = chaos_upstream(1);
    let proxy = proxy(upstream, |_| {});
    let mut c = client(&proxy);
    assert_eq!(c.get("/").unwrap().body_str(), "chaos\n");
    // The pooled connection is reset by the next request; the proxy sends
    // the GET again on a new connection, which answers.
    let r = c.get("/").unwrap();
    assert_eq!((r.status, r.body_str()), (200, "chaos\n"));
    let t = wait_totals(&proxy, "2 requests", |t| t.requests == 2);
    assert_eq!(
        (t.retries, t.upstream_connects, t.bad_gateway),
        (1, 2, 0),
        "{t:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn a_request_with_a_body_is_not_retried_after_it_was_sent() {
    let (upstream, _) = chaos_upstream(1);
    let proxy = proxy(upstream, |_| {});
    let mut c = client(&proxy);
    assert_eq!(c.get("/").unwrap().status, 200);
    let r = c.send_body("POST", "/order", b"pay once").unwrap();
    assert_eq!(r.status, 502, "{r:?}");
    let t = wait_totals(&proxy, "the 502", |t| t.bad_gateway == 1);
    assert_eq!((t.retries, t.upstream_connects), (0, 1), "{t:?}");
}

#[test]
fn a_new_connection_that_resets_is_not_retried() {
    let (upstream, accepted) = chaos_upstream(0);
    let proxy = proxy(upstream, |_| {});
    let mut c = client(&proxy);
    let r = c.get("/").unwrap();
    assert_eq!(r.status, 502, "{r:?}");
    // The client connection survives a 502.
    assert_eq!(c.get("/").unwrap().status, 502);
    let t = wait_totals(&proxy, "two 502s", |t| t.bad_gateway == 2);
    assert_eq!(t.retries, 0, "{t:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn refused_upstream_is_502() {
    let proxy = proxy(SocketAddr::new(LOCALHOST, common::refused_port()), |_| {});
    let mut c = client(&proxy);
    for _ in 0..2 {
        let r = c.get("/").unwrap();
        assert_eq!((r.status, r.body_str()), (502, "upstream failed\n"));
    }
    let t = wait_totals(&proxy, "two 502s", |t| t.bad_gateway == 2);
    assert_eq!(t.upstream_connects, 0);
}

#[test]
fn silent_upstream_is_504_after_the_upstream_timeout() {
    let silent = silent_upstream();
    let timeout = Duration::from_millis(300);
    let proxy = proxy(silent.addr, |c| c.upstream_timeout = timeout);
    let mut c = client(&proxy);
    for _ in 0..2 {
        let start = Instant::now();
        let r = c.get("/").unwrap();
        assert_eq!((r.status, r.body_str()), (504, "upstream timed out\n"));
        assert!(
            start.elapsed() >= timeout,
            "never early: {:?}",
            start.elapsed()
        );
    }
    wait_totals(&proxy, "two 504s", |t| t.gateway_timeout == 2);
    // Timed-out connections are closed, not pooled.
    wait_totals(&proxy, "no upstream sockets", |t| t.upstream_open == 0);
}

#[test]
fn connect_timeout_is_504() {
    let backlog = common::full_backlog();
    let timeout = Duration::from_millis(300);
    let proxy = proxy(backlog.addr, |c| c.connect_timeout = timeout);
    let start = Instant::now();
    let r = client(&proxy).get("/").unwrap();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(start.elapsed() >= timeout);
}

#[test]
fn upstream_that_does_not_read_stops_the_proxy_reading_the_client() {
    let silent = silent_upstream();
    let buffer = 16 * 1024;
    let proxy = proxy(silent.addr, |c| {
        c.buffer = buffer;
        c.upstream_timeout = CAP * 2;
    });
    const SIZE: usize = 64 << 20;
    let stream = TcpStream::connect(proxy.addr()).unwrap();
    stream.set_write_timeout(Some(CAP)).unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let w = written.clone();
    let mut writer = stream.try_clone().unwrap();
    let uploader = thread::spawn(move || {
        let head = format!("PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n");
        writer.write_all(head.as_bytes())?;
        let chunk = vec![7u8; 64 * 1024];
        while w.load(Ordering::SeqCst) < SIZE {
            writer.write_all(&chunk)?;
            w.fetch_add(chunk.len(), Ordering::SeqCst);
        }
        Ok::<_, std::io::Error>(())
    });
    let full = wait_totals(&proxy, "the request buffer to fill", |t| {
        t.buffered >= buffer as u64
    });
    assert!(full.buffered_max <= 2 * buffer as u64, "{full:?}");
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < SIZE / 2, "the client got {sent} of {SIZE} bytes in");
    // Closing the proxy closes the client's connection: the upload fails.
    drop(proxy);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    assert!(
        uploader.join().unwrap().is_err(),
        "the upload cannot have finished"
    );
}

// ---------------------------------------------------------------------------
// Client behaviour.

#[test]
fn http10_clients_get_their_response_and_a_close() {
    let Some(nginx) = nginx(1_000_000, "60s") else {
        return;
    };
    let proxy = proxy(nginx.addr, |_| {});
    let mut c = client(&proxy);
    let r = c.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!((r.status, r.body_str()), (200, "hello\n"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed(), "the proxy closes an HTTP/1.0 client");
}

#[test]
fn malformed_and_oversized_requests_are_refused() {
    let proxy = proxy(SocketAddr::new(LOCALHOST, common::refused_port()), |c| {
        c.buffer = 4096;
    });
    let r = client(&proxy)
        .send(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 400);
    let r = client(&proxy)
        .send(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 400, "both framings: refused, not guessed");
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 5000));
    let mut c = client(&proxy);
    c.stream.write_all(&big).unwrap();
    let r = selftest::read_response(&mut c.reader, false).unwrap();
    assert_eq!(r.status, 431);
    assert!(c.is_closed());
}

#[test]
fn idle_clients_are_closed_after_the_client_timeout() {
    let proxy = proxy(SocketAddr::new(LOCALHOST, common::refused_port()), |c| {
        c.client_timeout = Duration::from_millis(200);
    });
    let mut c = client(&proxy);
    wait_totals(&proxy, "the client accepted", |t| t.clients == 1);
    let start = Instant::now();
    assert!(
        c.is_closed(),
        "closed by the proxy, not by our read timeout"
    );
    assert!(start.elapsed() < CAP);
    wait_totals(&proxy, "no clients", |t| t.clients == 0);
}

#[test]
fn two_threads_serve_many_clients_at_once() {
    let Some(nginx) = nginx(1_000_000, "60s") else {
        return;
    };
    let proxy = proxy(nginx.addr, |c| c.threads = 2);
    let addr = proxy.addr();
    let clients: Vec<_> = (0..32)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect(addr, CAP).unwrap();
                for _ in 0..50 {
                    let r = c.get("/").unwrap();
                    assert_eq!((r.status, r.body_str()), (200, "hello\n"));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let t = wait_totals(&proxy, "1600 requests", |t| t.requests == 1600);
    assert!(t.upstream_connects <= 32, "connections are reused: {t:?}");
}

#[test]
fn clients_are_balanced_over_the_threads_whatever_the_kernel_hash() {
    let Some(nginx) = nginx(1_000_000, "60s") else {
        return;
    };
    let proxy = proxy(nginx.addr, |c| c.threads = 2);
    let mut clients = Vec::new();
    for n in 1..=24u64 {
        let mut c = client(&proxy);
        assert_eq!(c.get("/").unwrap().status, 200);
        clients.push(c);
        wait_totals(&proxy, "the client counted", |t| t.clients == n);
        let counts: Vec<u64> = proxy.per_worker().map(|w| w.clients).collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "after {n} clients: {counts:?}");
    }
}

#[test]
fn the_steady_path_allocates_nothing_per_request() {
    let Some(nginx) = nginx(1_000_000, "60s") else {
        return;
    };
    let proxy = proxy(nginx.addr, |c| c.on_thread_start = Some(arm_counting));
    let mut c = client(&proxy);
    let request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    // Warm-up: long enough for every timer to have fired once (the worker
    // publishes its counters every 50 ms), since the pool's queue of fired
    // timers is allocated on first use.
    let warm = Instant::now();
    let mut warmed = 0;
    while warmed < 200 || warm.elapsed() < Duration::from_millis(200) {
        assert_eq!(c.send(request).unwrap().status, 200);
        warmed += 1;
    }
    wait_totals(&proxy, "warm-up", |t| t.requests == warmed);
    let before = PROXY_ALLOCS.load(Ordering::SeqCst);
    for _ in 0..2000 {
        assert_eq!(c.send(request).unwrap().status, 200);
    }
    wait_totals(&proxy, "2000 more requests", |t| {
        t.requests == warmed + 2000
    });
    let allocs = PROXY_ALLOCS.load(Ordering::SeqCst) - before;
    assert_eq!(
        allocs, 0,
        "allocations on the proxy thread over 2000 requests"
    );
}

// ---------------------------------------------------------------------------
// The pieces.

#[test]
fn chunked_framing_finds_the_end_wherever_the_reads_split() {
    let body = b"5;name=value\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n";
    let next = b"GET / HTTP/1.1\r\n\r\n";
    let mut stream = body.to_vec();
    stream.extend_from_slice(next);
    for split in 0..=stream.len() {
        let mut framing = Framing::Chunked(Chunked::SizeStart);
        let a = framing.advance(&stream[..split]).unwrap();
        let b = if framing.is_done() {
            0
        } else {
            framing.advance(&stream[split..]).unwrap()
        };
        assert!(framing.is_done(), "split at {split}");
        assert_eq!(a + b, body.len(), "split at {split}");
    }
    for bad in [
        &b"x\r\n"[..],
        b"5\nhello",
        b"5\r\nhelloXX",
        b"0\r\n\n",
        b"1234567890abcdef0\r\n",
    ] {
        let mut framing = Framing::Chunked(Chunked::SizeStart);
        assert!(
            framing.advance(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut length = Framing::Length(3);
    assert_eq!(length.advance(b"abcdef").unwrap(), 3);
    assert!(length.is_done());
}

#[test]
fn request_heads_lose_hop_by_hop_headers_and_keep_the_rest() {
    let mut out = Vec::new();
    let head = http1::parse_request(
        b"POST /x?y HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\
          Keep-Alive: 5\r\nUpgrade: h2c\r\nContent-Length: 4\r\nX-Other: 2\r\n\r\nbody",
        &mut out,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nX-Other: 2\r\n\r\n"
    );
    assert_eq!(head.body, Framing::Length(4));
    assert!(!head.keep_alive && !head.idempotent);
    assert_eq!(
        http1::parse_request(b"GET / HTTP/1.1\r\nHost:", &mut out),
        Ok(None)
    );
    assert_eq!(
        http1::parse_request(
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            &mut out
        ),
        Err(HeadError::Bad)
    );
    assert_eq!(
        http1::parse_request(b"CONNECT a:443 HTTP/1.1\r\n\r\n", &mut out),
        Err(HeadError::NotImplemented)
    );
    let head = http1::parse_request(b"GET / HTTP/1.0\r\n\r\n", &mut out)
        .unwrap()
        .unwrap();
    assert!(!head.keep_alive && head.idempotent);
    assert!(out.starts_with(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n"));
}

#[test]
fn response_framing_follows_rfc_9112() {
    let mut out = Vec::new();
    let parse = |head: &[u8], head_method: bool, out: &mut Vec<u8>| {
        out.clear();
        http1::parse_response(head, head_method, false, out)
            .unwrap()
            .unwrap()
    };
    let r = parse(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        false,
        &mut out,
    );
    assert_eq!((r.body, r.keep_alive), (Framing::Length(5), true));
    let r = parse(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        true,
        &mut out,
    );
    assert_eq!(r.body, Framing::Length(0), "HEAD: no body");
    let r = parse(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        false,
        &mut out,
    );
    assert_eq!(r.body, Framing::Length(0));
    let r = parse(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        false,
        &mut out,
    );
    assert_eq!(r.body, Framing::Chunked(Chunked::SizeStart));
    let r = parse(b"HTTP/1.1 200 OK\r\n\r\n", false, &mut out);
    assert_eq!((r.body, r.keep_alive), (Framing::Close, false));
    assert!(
        out.ends_with(b"Connection: close\r\n\r\n"),
        "the client is told"
    );
    let r = parse(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        false,
        &mut out,
    );
    assert!(!r.keep_alive);
    assert!(
        !out.windows(10)
            .any(|w| w.eq_ignore_ascii_case(b"connection"))
    );
    let r = parse(
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
        false,
        &mut out,
    );
    assert!(!r.keep_alive, "HTTP/1.0 closes unless it says keep-alive");
}

#[test]
fn the_retry_rule() {
    use engine::may_retry;
    // (reused, retried, response started, request bytes written, idempotent, bodyless)
    assert!(
        may_retry(true, false, false, 0, false, false),
        "nothing sent: any method"
    );
    assert!(
        may_retry(true, false, false, 40, true, true),
        "sent, idempotent, no body"
    );
    assert!(
        !may_retry(true, false, false, 40, true, false),
        "sent with a body: gone"
    );
    assert!(
        !may_retry(true, false, false, 40, false, true),
        "sent, not idempotent"
    );
    assert!(
        !may_retry(false, false, false, 0, true, true),
        "a new connection failed"
    );
    assert!(!may_retry(true, true, false, 0, true, true), "only once");
    assert!(
        !may_retry(true, false, true, 40, true, true),
        "the response had started"
    );
}
