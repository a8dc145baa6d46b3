//! The proxy example (`examples/proxy/`) as a process over a production
//! day: clients that vanish in every state, slow heads and bodies, more
//! clients than it may hold, no descriptors left at `accept`, an upstream
//! by name or on a Unix socket, and signals. Each test runs the example's
//! command line in a child process (this binary started again, see
//! `tests/common/proxy_process.rs`), so it counts the proxy's own
//! descriptors in `/proc/PID/fd` and signals it without touching this
//! process's handlers.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

#[path = "../examples/proxy/admission.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod admission;
#[path = "../examples/proxy/cli.rs"]
mod cli;
mod common;
#[path = "../examples/proxy/engine.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod engine;
#[path = "../examples/proxy/http1.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod http1;
#[path = "common/proxy_soak.rs"]
mod proxy_soak;
#[path = "../examples/proxy/selftest.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod selftest;
#[path = "../examples/proxy/upstream.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod upstream;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::proxy_process::ProxyProcess;
use common::{CAP, LOCALHOST, nginx, proxy_process};
use selftest::Client;

/// The proxy child (see `tests/common/proxy_process.rs`): the example's
/// command line, run when the other tests start this binary as the proxy.
/// Ignored otherwise: it is the child's entry, not a test.
#[test]
#[ignore = "the proxy child process, started by the other tests"]
fn proxy_child() {
    let Some(args) = proxy_process::child_args() else {
        return;
    };
    if let Err(e) = cli::run(&args) {
        eprintln!("proxy: {e}");
        std::process::exit(1);
    }
}

/// nginx with `/` answering `hello\n`, DAV `PUT` under `/dav/` (it reads
/// the whole body), and `/files/big`, 4 MiB.
fn nginx_site() -> Option<common::nginx::Nginx> {
    let server = "keepalive_requests 1000000;\n keepalive_timeout 60s;\n client_max_body_size 0;\n \
         client_body_timeout 60s;\n \
         location / { return 200 \"hello\\n\"; }\n \
         location /dav/ { root files; dav_methods PUT; create_full_put_path on; }\n \
         location /files/ { alias files/; }";
    let nginx = common::nginx::Nginx::start(common::nginx::Site {
        listen_extra: "",
        server,
        files: Vec::new(),
    })?;
    let files = nginx.dir().join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    std::fs::write(files.join("big"), vec![b'x'; 4 << 20]).expect("big file");
    Some(nginx)
}

fn connect(proxy: &ProxyProcess) -> TcpStream {
    let s = TcpStream::connect(proxy.addr).expect("connect to the proxy");
    s.set_read_timeout(Some(CAP)).unwrap();
    s
}

/// Makes dropping `stream` send RST.
fn reset_on_drop(stream: &TcpStream) {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Reads to EOF (or a reset); the bytes, or `None` if the read timed out.
fn read_to_close(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(all),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some(all),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\r').next()?;
    std::str::from_utf8(line.get(9..12)?).ok()?.parse().ok()
}

#[test]
fn a_client_that_vanishes_in_any_state_is_closed_with_its_upstream_at_once() {
    let Some(nginx) = nginx_site() else {
        return;
    };
    // Deadlines far beyond the test's cap: only closing on the client's
    // EOF or reset brings the descriptors back in time.
    let proxy = ProxyProcess::start(
        &nginx.addr.to_string(),
        &[
            "--header-timeout",
            "600000",
            "--client-timeout",
            "600000",
            "--upstream-timeout",
            "600000",
        ],
    );
    let baseline = proxy.fds();
    for rst in [false, true] {
        let mut clients = Vec::new();
        for i in 0..30 {
            let mut s = connect(&proxy);
            let sent: &[u8] = match i % 3 {
                // Part of a head.
                0 => b"GET / HTTP/1.1\r\nHost: t\r\nX-Half: ",
                // A head and part of its body (nginx waits for the rest).
                1 => b"PUT /dav/f HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\npart",
                // A whole request for 4 MiB, of which little is read.
                _ => b"GET /files/big HTTP/1.1\r\nHost: t\r\n\r\n",
            };
            s.write_all(sent).unwrap();
            if i % 3 == 2 {
                let mut some = [0u8; 1024];
                s.read_exact(&mut some).unwrap();
            }
            clients.push(s);
        }
        // Every client is open, and the 20 with a request each hold an
        // upstream connection mid-exchange.
        proxy.wait_fds("the clients and their upstreams open", |n| {
            n >= baseline + 50
        });
        for s in &clients {
            if rst {
                reset_on_drop(s);
            }
        }
        drop(clients);
        let after = proxy.wait_fds("every descriptor back", |n| n <= baseline);
        assert_eq!(after, baseline, "rst: {rst}");
    }
    // And it still serves.
    let r = Client::connect(proxy.addr, CAP).unwrap().get("/").unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn a_close_delimited_response_ends_with_a_close_for_the_client() {
    // An upstream that answers without Content-Length or chunked framing:
    // the body runs to its close.
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let upstream = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close\n");
        }
    });
    let proxy = ProxyProcess::start(&upstream.to_string(), &["--client-timeout", "600000"]);
    for _ in 0..30 {
        let mut s = connect(&proxy);
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let all = read_to_close(&mut s).expect("the proxy closes after the body");
        let text = String::from_utf8_lossy(&all);
        assert!(text.ends_with("\r\n\r\nuntil the close\n"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
    }
}

#[test]
fn a_slow_head_has_the_header_timeout_from_its_first_byte() {
    let Some(nginx) = nginx_site() else {
        return;
    };
    let proxy = ProxyProcess::start(&nginx.addr.to_string(), &["--header-timeout", "300"]);
    // Idle longer than the header timeout before the first byte: the
    // deadline has not started, so the request is served.
    let mut c = Client::connect(proxy.addr, CAP).unwrap();
    thread::sleep(Duration::from_millis(400));
    assert_eq!(c.get("/").unwrap().status, 200);
    // A head in pieces that ends well within the deadline (2 s here, so a
    // busy machine cannot stretch 60 ms past it): served.
    let patient = ProxyProcess::start(&nginx.addr.to_string(), &["--header-timeout", "2000"]);
    let mut s = connect(&patient);
    for piece in ["GET / HT", "TP/1.1\r\nHo", "st: t\r\n", "\r\n"] {
        s.write_all(piece.as_bytes()).unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    assert_eq!(
        selftest::read_response(&mut reader, false).unwrap().status,
        200
    );
    // A head trickled a byte at a time for ever (slowloris): 408 and a
    // close, whatever the client does.
    let mut s = connect(&proxy);
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    for b in b"GET / HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain([b'a'; 1000].iter())
    {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        match s.read(&mut [0u8; 512]) {
            Ok(0) => break,
            Ok(n) => got.push(n),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        assert!(started.elapsed() < CAP, "never cut");
    }
    assert!(!got.is_empty(), "the 408 came before the close");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the deadline"
    );
}

#[test]
fn a_stalled_body_is_ended_after_the_client_timeout() {
    let Some(nginx) = nginx_site() else {
        return;
    };
    // A body whose bytes come 50 ms apart: served under a client timeout of
    // 300 ms, however long it takes in all (here twice that).
    let patient = ProxyProcess::start(&nginx.addr.to_string(), &["--client-timeout", "300"]);
    let mut s = connect(&patient);
    s.write_all(b"PUT /dav/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\n")
        .unwrap();
    for b in b"twelve bytes" {
        s.write_all(&[*b]).unwrap();
        thread::sleep(Duration::from_millis(50));
    }
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    let r = selftest::read_response(&mut reader, false).unwrap();
    assert!(r.status == 201 || r.status == 204, "{}", r.status);
    drop((s, reader));
    // A body that stops: 408, the client closed, its upstream connection
    // (mid-request) closed, not pooled.
    let proxy = ProxyProcess::start(&nginx.addr.to_string(), &["--client-timeout", "300"]);
    let baseline = proxy.fds();
    let mut s = connect(&proxy);
    let started = Instant::now();
    s.write_all(b"PUT /dav/stalled HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\ntwelve")
        .unwrap();
    let all = read_to_close(&mut s).expect("the proxy ends it");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        status_of(&all),
        Some(408),
        "{}",
        String::from_utf8_lossy(&all)
    );
    drop(s);
    proxy.wait_fds("the stalled client and its upstream closed", |n| {
        n <= baseline
    });
}

#[test]
fn past_max_clients_a_new_client_gets_503_and_the_rest_are_served() {
    let Some(nginx) = nginx_site() else {
        return;
    };
    let proxy = ProxyProcess::start(&nginx.addr.to_string(), &["--max-clients", "4"]);
    let mut admitted: Vec<Client> = (0..4)
        .map(|_| Client::connect(proxy.addr, CAP).unwrap())
        .collect();
    for c in &mut admitted {
        assert_eq!(c.get("/").unwrap().status, 200);
    }
    let mut extra = connect(&proxy);
    extra
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let all = read_to_close(&mut extra).expect("answered and closed");
    let text = String::from_utf8_lossy(&all);
    assert_eq!(status_of(&all), Some(503), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    // The admitted ones are still served; when one leaves, a new client
    // gets in.
    for c in &mut admitted {
        assert_eq!(c.get("/").unwrap().status, 200);
    }
    drop(admitted.pop());
    let started = Instant::now();
    loop {
        let mut c = connect(&proxy);
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let all = read_to_close_or_response(&mut c);
        if status_of(&all) == Some(200) {
            break;
        }
        assert!(started.elapsed() < CAP, "the freed place is never given");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Reads one response's worth (the proxy keeps a served client open).
fn read_to_close_or_response(s: &mut TcpStream) -> Vec<u8> {
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    match selftest::read_response(&mut reader, false) {
        Ok(r) => format!("HTTP/1.1 {} x\r\n", r.status).into_bytes(),
        Err(_) => Vec::new(),
    }
}

/// How a burst of clients, each sending one request and reading to the
/// close, was answered.
#[derive(Debug, Default)]
struct Burst {
    ok: usize,
    refused: usize,
    bad_gateway: usize,
    closed: usize,
}

/// `n` clients at once; each must get an answer or a close within [`CAP`].
#[track_caller]
fn burst(proxy: &ProxyProcess, n: usize) -> Burst {
    let (tx, rx) = mpsc::channel();
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let tx = tx.clone();
            let addr = proxy.addr;
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(CAP)).unwrap();
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                let answer = read_to_close(&mut s);
                tx.send(answer.map(|a| status_of(&a))).unwrap();
            })
        })
        .collect();
    drop(tx);
    let mut b = Burst::default();
    for answer in rx {
        match answer {
            Some(Some(200)) => b.ok += 1,
            Some(Some(503)) => b.refused += 1,
            Some(Some(502)) => b.bad_gateway += 1,
            Some(None) => b.closed += 1,
            Some(Some(other)) => panic!("status {other}"),
            None => panic!(
                "a client got neither an answer nor a close within {CAP:?} ({b:?} so far; \
                 {} descriptors; {:?})",
                proxy.fds(),
                proxy.output.lock().unwrap()
            ),
        }
    }
    for c in clients {
        c.join().unwrap();
    }
    b
}

#[test]
fn out_of_descriptors_at_accept_every_queued_client_gets_an_answer() {
    let Some(nginx) = nginx_site() else {
        return;
    };
    // 64 descriptors, and a client limit too high to protect them: the
    // proxy runs out at `accept`. Every client is answered: 200, 503
    // (accepted with the spare descriptor), or 502 (the upstream connect
    // found no descriptor either); none waits in the backlog.
    let proxy = ProxyProcess::start_limited(
        &nginx.addr.to_string(),
        &["--max-clients", "100000", "--upstream-keep-alive", "200"],
        64,
    );
    let baseline = proxy.fds();
    let b = burst(&proxy, 90);
    println!("out of descriptors at accept: {b:?}");
    assert_eq!(b.ok + b.refused + b.bad_gateway + b.closed, 90);
    // Idle upstream connections expire within their keep-alive.
    proxy.wait_fds("descriptors back", |n| n <= baseline);
    let r = Client::connect(proxy.addr, CAP).unwrap().get("/").unwrap();
    assert_eq!(r.status, 200, "serving again");
    drop(proxy);

    // The default client limit, from the same 64 descriptors, keeps room
    // for the upstream: 200 or 503, never a 502.
    let proxy = ProxyProcess::start_limited(&nginx.addr.to_string(), &[], 64);
    let b = burst(&proxy, 90);
    println!("default client limit: {b:?}");
    assert_eq!((b.bad_gateway, b.closed), (0, 0), "{b:?}");
    assert!(b.ok > 0 && b.ok + b.refused == 90, "{b:?}");
}

#[test]
fn an_upstream_by_name_is_resolved_by_the_pool() {
    let Some(nginx) = nginx_site() else {
        return;
    };
    let proxy = ProxyProcess::start(&format!("localhost:{}", nginx.port()), &[]);
    let mut c = Client::connect(proxy.addr, CAP).unwrap();
    for _ in 0..3 {
        let r = c.get("/").unwrap();
        assert_eq!((r.status, r.body_str()), (200, "hello\n"));
    }
}

/// An upstream that answers each request only when the test says so.
fn held_upstream() -> (SocketAddr, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived_tx, arrived) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = arrived_tx.send(());
            if release_rx.recv().is_err() {
                return;
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlate\n");
        }
    });
    (addr, arrived, release)
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let (upstream, arrived, release) = held_upstream();
    let mut proxy = ProxyProcess::start(&upstream.to_string(), &["--drain-timeout", "600000"]);
    let mut idle = connect(&proxy);
    let mut busy = connect(&proxy);
    busy.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    arrived
        .recv_timeout(CAP)
        .expect("the request reached the upstream");
    // SIGHUP changes nothing.
    proxy.signal("HUP");
    proxy.signal("TERM");
    assert_eq!(
        read_to_close(&mut idle).map(|b| b.len()),
        Some(0),
        "an idle client is closed at once, with nothing sent"
    );
    // No new clients: the listener is closed.
    let started = Instant::now();
    while TcpStream::connect(proxy.addr).is_ok() {
        assert!(started.elapsed() < CAP, "still accepting");
        thread::sleep(Duration::from_millis(5));
    }
    release.send(()).unwrap();
    let all = read_to_close(&mut busy).expect("answered, then closed");
    let text = String::from_utf8_lossy(&all);
    assert_eq!(status_of(&all), Some(200), "{text}");
    assert!(
        text.ends_with("late\n") && text.contains("Connection: close"),
        "{text}"
    );
    let status = proxy.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn sigterm_cuts_what_outlives_the_drain_timeout() {
    let (upstream, arrived, _release) = held_upstream();
    let mut proxy = ProxyProcess::start(&upstream.to_string(), &["--drain-timeout", "200"]);
    let mut busy = connect(&proxy);
    busy.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    arrived
        .recv_timeout(CAP)
        .expect("the request reached the upstream");
    proxy.signal("INT");
    let all = read_to_close(&mut busy).expect("cut at the drain timeout");
    assert!(all.is_empty(), "{}", String::from_utf8_lossy(&all));
    let status = proxy.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn a_production_day_in_ten_seconds() {
    let settings = proxy_soak::Settings {
        duration: Duration::from_secs(
            std::env::var("PROXY_SOAK_SECS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(10),
        ),
        checkers: 4,
        wrk_connections: 8,
    };
    let Some(report) = proxy_soak::run(&settings, ProxyProcess::start) else {
        return;
    };
    report.print(settings.duration);
    assert!(report.reloads > 0 && report.restarts == 1, "{report:?}");
    let problems = report.problems();
    assert!(
        problems.is_empty(),
        "{problems:#?}\nthe proxy printed {:?}",
        report.proxy_output
    );
}

#[test]
fn an_idle_client_after_a_response_is_closed_after_the_client_timeout() {
    let Some(nginx) = nginx_site() else {
        return;
    };
    // The upstream timeout far longer: it must not hold the idle client.
    let proxy = ProxyProcess::start(
        &nginx.addr.to_string(),
        &["--client-timeout", "300", "--upstream-timeout", "600000"],
    );
    let baseline = proxy.fds();
    let mut c = connect(&proxy);
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut reader = std::io::BufReader::new(c.try_clone().unwrap());
    assert_eq!(
        selftest::read_response(&mut reader, false).unwrap().status,
        200
    );
    let started = Instant::now();
    assert_eq!(
        read_to_close(&mut c).map(|b| b.len()),
        Some(0),
        "closed, not answered"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the timeout"
    );
    drop((c, reader));
    // What is left is the upstream connection, idle in the pool.
    proxy.wait_fds("the client gone", |n| n <= baseline + 1);
}

#[test]
fn a_client_not_reading_its_response_is_closed_after_the_client_timeout() {
    let Some(nginx) = nginx_site() else {
        return;
    };
    let proxy = ProxyProcess::start(
        &nginx.addr.to_string(),
        &["--client-timeout", "300", "--upstream-timeout", "600000"],
    );
    let baseline = proxy.fds();
    let s = connect(&proxy);
    (&s).write_all(b"GET /files/big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Never read: the proxy's buffer and both sockets' fill, then nothing
    // moves. The client and its upstream connection (mid-response) close.
    proxy.wait_fds("the client and its upstream open", |n| n >= baseline + 2);
    proxy.wait_fds("the stuck client and its upstream closed", |n| {
        n <= baseline
    });
    drop(s);
}

#[test]
fn sigterm_serves_the_requests_already_sent_and_queued() {
    let Some(nginx) = nginx_site() else {
        return;
    };
    let mut proxy = ProxyProcess::start(&nginx.addr.to_string(), &["--threads", "2"]);
    // Connected (some still in the listen queue) with a request written,
    // then the signal at once.
    let mut clients: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = connect(&proxy);
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            s
        })
        .collect();
    proxy.signal("TERM");
    for (i, s) in clients.iter_mut().enumerate() {
        let all = read_to_close(s).expect("answered and closed");
        let text = String::from_utf8_lossy(&all);
        assert_eq!(status_of(&all), Some(200), "client {i}: {text:?}");
    }
    assert_eq!(proxy.wait_exit().code(), Some(0));
}

#[test]
fn an_upstream_on_a_unix_socket_is_pooled_like_tcp() {
    let Some(nginx) = common::nginx::Nginx::start_with(
        common::nginx::Site {
            listen_extra: "",
            server: "keepalive_requests 1000; keepalive_timeout 60s; \
                     location / { return 200 \"over unix\\n\"; }",
            files: Vec::new(),
        },
        common::nginx::Options {
            unix: true,
            ..Default::default()
        },
    ) else {
        return;
    };
    let path = nginx.unix_path.clone().expect("nginx on a unix socket");
    let proxy = ProxyProcess::start(&format!("unix:{}", path.display()), &[]);
    let baseline = proxy.fds();
    let mut c = Client::connect(proxy.addr, CAP).unwrap();
    for _ in 0..5 {
        let r = c.get("/").unwrap();
        assert_eq!((r.status, r.body_str()), (200, "over unix\n"));
    }
    // One upstream connection for five requests: the client and it.
    assert_eq!(proxy.fds(), baseline + 2);
}

#[test]
fn the_command_line_takes_a_busy_poll_and_refuses_one_past_a_second() {
    let args = |v: &str| ["--busy-poll".to_owned(), v.to_owned()];
    let (config, _) = cli::parse(&args("50")).unwrap();
    assert_eq!(config.busy_poll, Duration::from_micros(50));
    let (config, _) = cli::parse(&[]).unwrap();
    assert_eq!(config.busy_poll, Duration::ZERO, "off unless asked for");
    let err = cli::parse(&args("1000001")).unwrap_err();
    assert!(err.contains("--busy-poll"), "{err}");
}
