//! Idle scale: hold many idle kept-alive connections, then measure the user
//! space bytes each costs (counting allocator) and what one active
//! connection's round trip through `poll_events` costs with N idle beside it,
//! against 10 idle.
//!
//! Each process may hold only RLIMIT_NOFILE descriptors (the hard limit is
//! not ours to raise here), so the server that holds the far ends is a child
//! process, and the reactor lives in another child with its own budget. The
//! connections spread over four loopback destinations, 127.0.0.1 to
//! 127.0.0.4, so ephemeral ports never run out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use keepalive::{Config, Connection, Event, Events, Reactor, Request};

use crate::{CAP, COUNTING, Figure, LIVE_BYTES, LOCALHOST, Settings, fd_limit};

const WANTED: u64 = 50_000;

fn destinations() -> [IpAddr; 4] {
    [1, 2, 3, 4].map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
}

/// `--hold-server`: listens on the four destinations, prints their ports,
/// and holds every connection it accepts until killed.
pub fn hold_server() {
    let listeners: Vec<TcpListener> = destinations()
        .iter()
        .map(|ip| TcpListener::bind((*ip, 0)).expect("bind"))
        .collect();
    let ports: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port().to_string())
        .collect();
    println!("PORTS {}", ports.join(" "));
    let _ = std::io::stdout().flush();
    for l in listeners {
        thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming().flatten() {
                held.push(s);
            }
        });
    }
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

pub fn figures(settings: Settings) -> Vec<Figure> {
    let exe = std::env::current_exe().expect("current exe");
    let n = if settings.smoke {
        50
    } else {
        WANTED.min(fd_limit().saturating_sub(300))
    };
    let mut holder = Command::new(&exe)
        .arg("--hold-server")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn holder");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("holder stdout"))
        .read_line(&mut line)
        .expect("holder ports");
    let ports: Vec<String> = line
        .trim()
        .strip_prefix("PORTS ")
        .expect("PORTS line")
        .split(' ')
        .map(str::to_owned)
        .collect();
    let out = Command::new(&exe)
        .arg("--idle-child")
        .arg(n.to_string())
        .args(&ports)
        .output()
        .expect("idle child");
    let _ = holder.kill();
    let _ = holder.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(result) = text.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        eprintln!(
            "idle child failed: {}\n{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        return Vec::new();
    };
    let v: Vec<f64> = result.split(' ').filter_map(|x| x.parse().ok()).collect();
    let (bytes, poll10, poll_n) = (v[0], v[1], v[2]);
    let why = if n < WANTED {
        format!(
            "N = {n}, not {WANTED}: RLIMIT_NOFILE is {} per process here and cannot be raised",
            fd_limit()
        )
    } else {
        format!("N = {n}")
    };
    vec![
        Figure::new("idle_bytes_50000", "bytes/conn", false, bytes).note(why.clone()),
        Figure::new("idle_poll_50000", "µs/ping", false, poll_n)
            .peer("idle_poll_10", poll10)
            .note(format!(
                "{why}; one active connection's echo round trip through poll_events"
            )),
    ]
}

/// `--idle-child N port…`: the reactor's side. Prints
/// `RESULT bytes_per_idle poll10_us pollN_us`.
pub fn child(args: &[String]) {
    let n: usize = args[0].parse().expect("N");
    let ports: Vec<u16> = args[1..].iter().map(|p| p.parse().expect("port")).collect();
    let echo = echo_server();
    COUNTING.store(true, Ordering::Relaxed);
    let config = Config::default()
        .with_max_per_host(n)
        .with_max_open(n + 16)
        .with_keep_alive(Duration::from_secs(600))
        .with_timeout(Duration::from_secs(30));
    let mut ka: Reactor<()> = Reactor::new(config).expect("reactor");
    let mut events = Events::with_capacity(1024);
    ka.allocate(Request::new("echo", LOCALHOST, echo, ()))
        .expect("allocate");
    let mut active = loop {
        ka.poll(&mut events, Some(CAP)).expect("poll");
        if let Some(Event::Outcome(o)) = events.drain().next() {
            break o.result.expect("echo connection");
        }
    };
    fill(&mut ka, &mut events, &ports, 10);
    let iters = if n > 1000 { 20_000 } else { 500 };
    let poll10 = ping(&mut ka, &mut events, &mut active, iters);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    fill(&mut ka, &mut events, &ports, n);
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    let poll_n = ping(&mut ka, &mut events, &mut active, iters);
    let bytes = (after - before) as f64 / (n - 10) as f64;
    println!("RESULT {bytes:.1} {poll10:.3} {poll_n:.3}");
}

/// Grows the pool to `target` idle connections. Every connection stays lent
/// until all are made (an allocate with an idle connection at hand would
/// take that one instead of connecting), at most 256 connects in flight.
fn fill(ka: &mut Reactor<()>, events: &mut Events<()>, ports: &[u16], target: usize) {
    let dests = destinations();
    let need = target.saturating_sub(ka.idle_count());
    let mut conns: Vec<Connection> = Vec::new();
    let mut requested = 0usize;
    let start = Instant::now();
    while conns.len() < need {
        while requested < need && requested - conns.len() < 256 {
            let d = requested % dests.len().min(ports.len());
            ka.allocate(Request::new("http", dests[d], ports[d], ()))
                .expect("allocate");
            requested += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "filling the pool stalled"
        );
        ka.poll(events, Some(CAP)).expect("poll");
        for e in events.drain() {
            if let Event::Outcome(o) = e {
                conns.push(o.result.expect("idle connection"));
            }
        }
    }
    // The Vec goes too, so it is not counted as the pool's memory.
    for c in conns {
        ka.free(c).expect("free");
    }
}

/// Mean microseconds for one byte to go to the echo server and back,
/// noticed through `poll_events`.
fn ping(
    ka: &mut Reactor<()>,
    events: &mut Events<()>,
    active: &mut Connection,
    iters: usize,
) -> f64 {
    let start = Instant::now();
    let mut byte = [0u8; 1];
    for _ in 0..iters {
        active.write_all(b"x").expect("ping");
        loop {
            match active.read(&mut byte) {
                Ok(1) => break,
                Ok(_) => panic!("echo closed"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    ka.poll_events(events).expect("poll");
                    events.drain().for_each(drop);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    start.elapsed().as_secs_f64() * 1e6 / iters as f64
}

fn echo_server() -> u16 {
    let l = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || echo(s));
        }
    });
    port
}

fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 64];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
