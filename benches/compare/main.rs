//! Benchmarks against the peers, in one run, as ratios.
//!
//! ```sh
//! cargo bench --bench compare             # the full run, a few minutes
//! BENCH_SECS=0.5 cargo bench --bench compare   # a quick one
//! ```
//!
//! Every figure that has a peer is measured in the same process run,
//! interleaved with the peer in rounds (ours, peer, ours, peer, …), and the
//! median round is reported. Results go to `target/bench/compare.json`,
//! `target/bench/compare.md` and `target/bench/compare.svg`; with
//! `BENCH_SAVE_CHART=1` the chart is also copied to `benches/compare.svg`,
//! the one the README shows. Nothing else in the checkout is written.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) the runner does a
//! smoke run instead: every figure's code path with tiny counts, in seconds,
//! and no files outside `target/bench/smoke/`.

#![allow(
    unsafe_code,
    clippy::cast_possible_truncation,
    reason = "a counting global allocator, a borrowed descriptor, and measurement arithmetic in floats"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

#[path = "../../examples/proxy/admission.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod admission;
mod chart;
#[path = "../../examples/proxy/cli.rs"]
mod cli;
mod client;
mod cpus;
#[path = "../../examples/proxy/engine.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod engine;
#[path = "../../examples/proxy/http1.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod http1;
mod idle;
mod names;
#[path = "../../tests/common/nginx.rs"]
#[allow(dead_code, reason = "shared with the tests, which use more of it")]
mod nginx;
mod peers;
mod poe;
#[path = "../../tests/common/proxy_process.rs"]
#[allow(dead_code, reason = "shared with the tests, which use more of it")]
mod proxy_process;
#[path = "../../tests/common/proxy_soak.rs"]
mod proxy_soak;
mod proxybench;
#[path = "../../examples/proxy/selftest.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod selftest;
mod syscalls;
mod tlsbench;
mod unix;
#[path = "../../examples/proxy/upstream.rs"]
#[allow(dead_code, reason = "the example uses more of it")]
mod upstream;
mod wheelbench;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use keepalive::{Config, Event, Events, Reactor, Request};

pub(crate) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub(crate) const CAP: Duration = Duration::from_secs(10);

/// Counts live heap bytes while `COUNTING` is on (the idle-scale child turns
/// it on); otherwise one relaxed load per allocation.
struct CountingAlloc;
static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: defers every call to the system allocator; the counters are atomics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// How long and how often to measure.
#[derive(Clone, Copy)]
pub(crate) struct Settings {
    /// Seconds per figure per side, split over `rounds`.
    pub secs: f64,
    pub rounds: usize,
    pub smoke: bool,
}

impl Settings {
    pub fn round(&self) -> Duration {
        Duration::from_secs_f64(self.secs / self.rounds as f64)
    }
}

/// One row of the results.
pub(crate) struct Figure {
    pub figure: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
    pub ours: f64,
    pub peers: Vec<(&'static str, f64)>,
    pub note: Option<String>,
}

impl Figure {
    fn new(figure: &'static str, unit: &'static str, higher_is_better: bool, ours: f64) -> Figure {
        Figure {
            figure,
            unit,
            higher_is_better,
            ours,
            peers: Vec::new(),
            note: None,
        }
    }

    fn peer(mut self, name: &'static str, value: f64) -> Figure {
        self.peers.push((name, value));
        self
    }

    fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = Some(note.into());
        self
    }

    /// How many times better ours is than `peer` (> 1: ours is better).
    pub fn ratio(&self, peer: f64) -> f64 {
        if self.higher_is_better {
            self.ours / peer
        } else {
            peer / self.ours
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(lat: &mut [u32], p: f64) -> f64 {
    if lat.is_empty() {
        return f64::NAN;
    }
    lat.sort_unstable();
    let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
    f64::from(lat[i])
}

/// Runs `ours` and each peer in alternating rounds; medians.
fn interleaved(settings: Settings, mut sides: Vec<&mut dyn FnMut(Duration) -> f64>) -> Vec<f64> {
    let mut results = vec![Vec::new(); sides.len()];
    for _ in 0..settings.rounds {
        for (side, out) in sides.iter_mut().zip(results.iter_mut()) {
            out.push(side(settings.round()));
        }
    }
    results.into_iter().map(median).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    raise_fd_limit();
    match args.get(1).map(String::as_str) {
        Some("--hold-server") => return idle::hold_server(),
        Some("--idle-child") => return idle::child(&args[2..]),
        Some("--http-child") => return syscalls::child(&args[2..]),
        // The proxy example's command line, for the soak's child.
        Some("--as-proxy") => {
            if let Err(e) = cli::run(&args[2..]) {
                eprintln!("proxy: {e}");
                std::process::exit(1);
            }
            return;
        }
        _ => {}
    }
    let smoke = !args.iter().any(|a| a == "--bench");
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let settings = if smoke {
        Settings {
            secs: 0.03,
            rounds: 1,
            smoke: true,
        }
    } else {
        Settings {
            secs,
            rounds: 3,
            smoke: false,
        }
    };
    let started = Instant::now();
    if smoke {
        println!("compare: smoke run (cargo bench --bench compare measures)");
    }
    print_machine();

    let server = HttpServer::start();
    println!("HTTP server: {}\n", server.name());
    // BENCH_ONLY=hit,names,http,unix,connect,tls,syscalls,idle,wheel,proxy,proxy_core,proxy_soak
    // picks groups;
    // the `poe` peer (poe.rs) runs within hit, http and connect.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let want = |group: &str| only.is_empty() || only.split(',').any(|g| g.trim() == group);
    if want("hit") || want("http") || want("connect") {
        println!("{}\n", poe::describe());
    }
    let mut figures = Vec::new();
    let mut series = Vec::new();
    if want("hit") {
        figures.extend(hit_path(settings));
    }
    if want("names") {
        figures.extend(names::figures(settings));
    }
    if want("http") {
        let (http, s) = http_figures(settings, &server);
        figures.extend(http);
        series = s;
    }
    if want("unix") {
        figures.extend(unix::figures(settings));
    }
    if want("connect") {
        figures.push(connect_figure(settings));
    }
    if want("tls") {
        figures.extend(tlsbench::figures(settings));
    }
    if want("syscalls") {
        figures.extend(syscalls::figures(settings, server.port()));
    }
    if want("idle") {
        figures.extend(idle::figures(settings));
    }
    if want("wheel") {
        figures.push(wheel_figure(settings));
    }
    if want("proxy") || want("proxy_core") {
        // `proxy` measures two workers and one; `proxy_core` one alone.
        figures.extend(proxybench::figures(settings, want("proxy")));
    }
    if want("proxy_soak") {
        proxy_soak_group(settings);
    }

    let out_dir = target_dir()
        .join("bench")
        .join(if smoke { "smoke" } else { "" });
    std::fs::create_dir_all(&out_dir).expect("create target/bench");
    print_table(&figures);
    std::fs::write(out_dir.join("compare.json"), json(&figures)).expect("write compare.json");
    std::fs::write(out_dir.join("compare.md"), markdown(&figures)).expect("write compare.md");
    let svg = out_dir.join("compare.svg");
    if !series.is_empty() {
        chart::draw(&series, &svg);
        // The README's chart is tracked: a benchmark leaves the checkout
        // clean unless asked to refresh it.
        if !smoke && std::env::var_os("BENCH_SAVE_CHART").is_some() {
            let tracked = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/compare.svg");
            std::fs::copy(&svg, &tracked).expect("copy the chart to benches/compare.svg");
            println!("copied the chart to {}", tracked.display());
        }
    }
    println!(
        "\nwrote {}/compare.{{json,md}} and {} in {:.1} s",
        out_dir.display(),
        svg.display(),
        started.elapsed().as_secs_f64()
    );
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, owned struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

pub(crate) fn fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid, owned struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "not found".into())
}

fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    println!(
        "date:    {}",
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    println!(
        "machine: {} cores, {cpu}; Linux {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        command_line("uname", &["-r"])
    );
    println!("rustc:   {}", command_line("rustc", &["--version"]));
    println!(
        "nginx:   {}   wrk: {}   strace: {}",
        command_line("nginx", &["-v"]),
        command_line("wrk", &["--version"]),
        command_line("strace", &["-V"])
    );
}

/// nginx if installed (the real thing), else a small in-process server.
pub(crate) enum HttpServer {
    Nginx(nginx::Nginx),
    InProcess(u16),
}

impl HttpServer {
    fn start() -> HttpServer {
        if let Some(n) = nginx::Nginx::start_http(100_000_000, "600s") {
            return HttpServer::Nginx(n);
        }
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        thread::spawn(move || {
            for s in listener.incoming().flatten() {
                thread::spawn(move || serve_http(s));
            }
        });
        HttpServer::InProcess(port)
    }

    pub fn port(&self) -> u16 {
        match self {
            HttpServer::Nginx(n) => n.port(),
            HttpServer::InProcess(p) => *p,
        }
    }

    fn name(&self) -> String {
        match self {
            HttpServer::Nginx(n) => format!(
                "nginx on {} (keepalive_requests 100000000, keepalive_timeout 600s)",
                n.addr
            ),
            HttpServer::InProcess(p) => {
                format!("in-process (nginx not installed) on 127.0.0.1:{p}")
            }
        }
    }
}

fn serve_http(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 4096];
    let mut have = Vec::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => have.extend_from_slice(&buf[..n]),
        }
        while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
            have.drain(..end + 4);
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
                .is_err()
            {
                return;
            }
        }
    }
}

/// Accepts connections and holds them, never reading: for figures where the
/// server must only exist.
fn holding_server() -> (SocketAddr, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            if let Ok(mut list) = h.lock() {
                list.push(s);
            }
        }
    });
    (addr, held)
}

/// Makes closing `s` send RST instead of FIN (SO_LINGER 0), so the connect
/// figure leaves no TIME_WAIT behind: TIME_WAIT entries pile up at this rate
/// and make connect()'s port search the thing measured, differently from
/// round to round (0.3x to 5x in trials).
pub(crate) fn abort_on_close(s: &impl std::os::fd::AsRawFd) {
    // SAFETY: `s` owns the descriptor and outlives this borrow of it.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(s.as_raw_fd()) };
    let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
}

/// Accepts connections and closes each once the client has closed it. The
/// client closing first keeps TIME_WAIT on the client side, where Linux
/// reuses it for new loopback connects (tcp_tw_reuse); a server closing first
/// would leave TIME_WAIT entries that new SYNs from wrapped-around ephemeral
/// ports collide with, and both sides would measure retransmit timers.
///
/// The accept queue is as long as the kernel allows (`somaxconn`, 4096 by
/// default), not std's 128: a client connects faster than this thread
/// accepts whenever another process takes its core, and an overflowing
/// queue drops the SYN, which costs the client a 1 s retransmit, many
/// times a 150 ms round (seen on a loaded 2-core machine).
fn closing_server() -> SocketAddr {
    use mio::{Events as MioEvents, Interest, Poll, Token};
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((LOCALHOST, 0)).into())
        .expect("bind");
    socket.listen(4096).expect("listen");
    let listener = TcpListener::from(socket);
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    thread::spawn(move || {
        let mut listener = mio::net::TcpListener::from_std(listener);
        let mut poll = Poll::new().expect("poll");
        let mut events = MioEvents::with_capacity(256);
        poll.registry()
            .register(&mut listener, Token(usize::MAX), Interest::READABLE)
            .expect("register");
        let mut conns: slab::Slab<mio::net::TcpStream> = slab::Slab::new();
        let mut buf = [0u8; 64];
        loop {
            if poll.poll(&mut events, None).is_err() {
                return;
            }
            for e in events.iter() {
                if e.token() == Token(usize::MAX) {
                    while let Ok((mut s, _)) = listener.accept() {
                        let entry = conns.vacant_entry();
                        if poll
                            .registry()
                            .register(&mut s, Token(entry.key()), Interest::READABLE)
                            .is_ok()
                        {
                            entry.insert(s);
                        }
                    }
                } else if let Some(s) = conns.get_mut(e.token().0) {
                    let closed = loop {
                        match s.read(&mut buf) {
                            Ok(0) => break true,
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                            Err(_) => break true,
                        }
                    };
                    if closed {
                        conns.remove(e.token().0);
                    }
                }
            }
        }
    });
    addr
}

/// Hit path: allocate from the pool → poll → free, one at a time or 64.
/// Measured twice: as configured by default, and with lifecycle events on
/// and `stats()` read every cycle (the `observed` peer), to show what
/// observability costs the hit path.
fn hit_path(settings: Settings) -> Vec<Figure> {
    let (addr, _held) = holding_server();
    let mut out = Vec::new();
    for (figure, batch) in [("hit_c1", 1usize), ("hit_c64", 64)] {
        let mut ours = hit_cycles(addr, batch, false);
        let mut observed = hit_cycles(addr, batch, true);
        let mut deadpool = |limit| peers::deadpool_hits(batch, limit);
        let mut bb8 = |limit| peers::bb8_hits(batch, limit);
        let mut poe = |limit| poe::hit(addr.port(), limit);
        let mut sides: Vec<&mut dyn FnMut(Duration) -> f64> =
            vec![&mut ours, &mut deadpool, &mut bb8, &mut observed];
        if batch == 1 && poe::available() {
            sides.push(&mut poe);
        }
        let r = interleaved(settings, sides);
        let figure = Figure::new(figure, "cycles/s", true, r[0])
            .peer("deadpool", r[1])
            .peer("bb8", r[2])
            .peer("observed", r[3]);
        out.push(poe::peer(figure, r.get(4)));
    }
    // The checkout that needs no poll: checkout_now → free, against the
    // same deadpool cycle (whose get is synchronous too).
    let mut ours = sync_hit_cycles(addr);
    let mut deadpool = |limit| peers::deadpool_hits(1, limit);
    let r = interleaved(settings, vec![&mut ours, &mut deadpool]);
    out.push(Figure::new("hit_sync_c1", "cycles/s", true, r[0]).peer("deadpool", r[1]));
    out
}

/// A warm reactor with one pooled connection to `addr`, and a closure that
/// runs `checkout_now` → `free` cycles, no poll in the loop.
fn sync_hit_cycles(addr: SocketAddr) -> impl FnMut(Duration) -> f64 {
    let mut ka: Reactor<()> = Reactor::new(Config::default()).expect("reactor");
    let mut events = Events::with_capacity(4);
    ka.allocate(Request::new("http", LOCALHOST, addr.port(), ()))
        .expect("allocate");
    let conn = loop {
        ka.poll(&mut events, Some(CAP)).expect("poll");
        if let Some(Event::Outcome(o)) = events.drain().find(|e| matches!(e, Event::Outcome(_))) {
            break o.result.expect("connect");
        }
    };
    ka.free(conn).expect("free");
    move |limit: Duration| {
        let start = Instant::now();
        let mut cycles = 0u64;
        while start.elapsed() < limit {
            for _ in 0..64 {
                match ka.checkout_now(Request::new("http", LOCALHOST, addr.port(), ())) {
                    Ok(keepalive::Checkout::Ready(conn, ())) => ka.free(conn).expect("free"),
                    other => panic!("not a hit: {other:?}"),
                }
                cycles += 1;
            }
        }
        cycles as f64 / start.elapsed().as_secs_f64()
    }
}

/// A warm reactor with `batch` pooled connections to `addr`, and a closure
/// that runs hit cycles on it for a while and returns cycles/s. `observed`
/// turns lifecycle events on and reads `stats()` once per cycle.
fn hit_cycles(addr: SocketAddr, batch: usize, observed: bool) -> impl FnMut(Duration) -> f64 {
    let config = Config::default()
        .with_max_per_host(batch)
        .with_lifecycle_events(observed);
    let mut ka: Reactor<()> = Reactor::new(config).expect("reactor");
    let mut events = Events::with_capacity(batch * 4);
    let mut conns = Vec::new();
    for _ in 0..batch {
        ka.allocate(Request::new("http", LOCALHOST, addr.port(), ()))
            .expect("allocate");
    }
    while conns.len() < batch {
        ka.poll(&mut events, Some(CAP)).expect("poll");
        for e in events.drain() {
            if let Event::Outcome(o) = e {
                conns.push(o.result.expect("connect"));
            }
        }
    }
    for c in conns.drain(..) {
        ka.free(c).expect("free");
    }
    move |limit: Duration| {
        let start = Instant::now();
        let mut cycles = 0u64;
        while start.elapsed() < limit {
            for _ in 0..64 {
                for _ in 0..batch {
                    ka.allocate(Request::new("http", LOCALHOST, addr.port(), ()))
                        .expect("allocate");
                }
                while conns.len() < batch {
                    ka.poll_events(&mut events).expect("poll");
                    for e in events.drain() {
                        if let Event::Outcome(o) = e {
                            conns.push(o.result.expect("hit"));
                        }
                    }
                }
                for c in conns.drain(..) {
                    ka.free(c).expect("free");
                }
                if observed {
                    std::hint::black_box(ka.stats());
                }
                cycles += batch as u64;
            }
        }
        cycles as f64 / start.elapsed().as_secs_f64()
    }
}

/// One concurrency level of the HTTP chart: (conc, ours, hyper, wrk) for
/// requests/s and p99.
pub(crate) struct Series {
    pub conc: usize,
    pub rps: [Option<f64>; 3],
    pub p99: [Option<f64>; 3],
}

fn http_figures(settings: Settings, server: &HttpServer) -> (Vec<Figure>, Vec<Series>) {
    let port = server.port();
    let mut figures = Vec::new();
    let mut series = Vec::new();
    let names = [
        ("http_c1", "http_p99_c1", 1),
        ("http_c16", "http_p99_c16", 16),
        ("http_c64", "http_p99_c64", 64),
    ];
    for (rps_name, p99_name, conc) in names {
        let max = if settings.smoke { 200 } else { u64::MAX };
        let mut runs: [Vec<client::HttpRun>; 2] = [Vec::new(), Vec::new()];
        let mut poe = poe::HttpRounds::default();
        let with_poe = poe::available();
        // Warm both (connections, nginx worker, page cache).
        client::run(port, conc, Duration::from_millis(100), max.min(1000));
        peers::hyper_http(port, conc, Duration::from_millis(100), max.min(1000));
        if with_poe {
            poe.round(port, conc, Duration::from_millis(100), max.min(1000), true);
        }
        for _ in 0..settings.rounds {
            runs[0].push(client::run(port, conc, settings.round(), max));
            runs[1].push(peers::hyper_http(port, conc, settings.round(), max));
            if with_poe {
                poe.round(port, conc, settings.round(), max, false);
            }
        }
        let summarize = |runs: &mut Vec<client::HttpRun>| {
            let rps = median(runs.iter().map(|r| r.per_sec()).collect());
            let p99 = median(
                runs.iter_mut()
                    .map(|r| percentile(&mut r.latencies_us, 0.99))
                    .collect(),
            );
            let p50 = median(
                runs.iter_mut()
                    .map(|r| percentile(&mut r.latencies_us, 0.50))
                    .collect(),
            );
            (rps, p50, p99)
        };
        let (ours_rps, ours_p50, ours_p99) = summarize(&mut runs[0]);
        let (hyper_rps, hyper_p50, hyper_p99) = summarize(&mut runs[1]);
        let wrk = if settings.smoke {
            None
        } else {
            peers::wrk(port, conc, settings.secs / settings.rounds as f64)
        };
        let mut rps = Figure::new(rps_name, "req/s", true, ours_rps).peer("hyper-util", hyper_rps);
        let mut p99 = Figure::new(p99_name, "µs", false, ours_p99).peer("hyper-util", hyper_p99);
        if let Some((w_rps, w_p99)) = wrk {
            rps = rps.peer("wrk", w_rps);
            p99 = p99.peer("wrk", w_p99);
        }
        rps = rps.note(format!(
            "p50 µs: ours {ours_p50:.0}, hyper-util {hyper_p50:.0}"
        ));
        let (rps, p99) = poe.add_to(rps, p99);
        series.push(Series {
            conc,
            rps: [Some(ours_rps), Some(hyper_rps), wrk.map(|w| w.0)],
            p99: [Some(ours_p99), Some(hyper_p99), wrk.map(|w| w.1)],
        });
        figures.push(rps);
        figures.push(p99);
    }
    (figures, series)
}

/// New connections per second, every connection closed instead of freed.
fn connect_figure(settings: Settings) -> Figure {
    let addr = closing_server();
    let mut ka: Reactor<()> = Reactor::new(Config::default()).expect("reactor");
    let mut events = Events::with_capacity(8);
    let mut ours = |limit: Duration| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < limit {
            ka.allocate(Request::new("http", LOCALHOST, addr.port(), ()))
                .expect("allocate");
            'wait: loop {
                ka.poll(&mut events, Some(CAP)).expect("poll");
                for e in events.drain() {
                    if let Event::Outcome(o) = e {
                        let conn = o.result.expect("connect");
                        abort_on_close(&conn);
                        conn.close();
                        break 'wait;
                    }
                }
            }
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let mut bare = |limit| peers::mio_bare_connects(addr, limit);
    let mut poe = |limit| poe::connect(addr.port(), limit);
    let mut sides: Vec<&mut dyn FnMut(Duration) -> f64> = vec![&mut ours, &mut bare];
    if poe::available() {
        sides.push(&mut poe);
    }
    // Connect rates follow the kernel's port and TIME_WAIT state, which
    // drifts during the run: many short rounds let all sides see the same.
    let rounds = if settings.smoke { 1 } else { 20 };
    let r = interleaved(Settings { rounds, ..settings }, sides);
    poe::peer(
        Figure::new("connect", "conn/s", true, r[0]).peer("mio-bare", r[1]),
        r.get(2),
    )
}

fn wheel_figure(settings: Settings) -> Figure {
    use keepalive::internals::Wheel;
    let (big, small, steps) = if settings.smoke {
        (10_000, 1_000, 10_000)
    } else {
        (1_000_000, 1_000, 3_000_000)
    };
    let mut ours_big =
        |_: Duration| wheelbench::run(&mut Wheel::<u32>::with_capacity(big * 2), big, steps);
    let mut ours_small =
        |_: Duration| wheelbench::run(&mut Wheel::<u32>::with_capacity(small * 2), small, steps);
    let mut heap = |_: Duration| wheelbench::run(&mut peers::HeapTimers::new(), big, steps);
    let r = interleaved(settings, vec![&mut ours_big, &mut ours_small, &mut heap]);
    Figure::new("wheel_1m", "ns/op", false, r[0])
        .peer("wheel_1k", r[1])
        .peer("heap", r[2])
        .note(format!("{big} live timers; op = insert, cancel or expiry"))
}

fn print_table(figures: &[Figure]) {
    println!(
        "\n{:<16} {:>14} {:<9} peers (ratio: > 1 means ours is better)",
        "figure", "ours", "unit"
    );
    for f in figures {
        let peers = peer_list(f);
        println!(
            "{:<16} {:>14} {:<9} {}",
            f.figure,
            fmt(f.ours),
            f.unit,
            peers
        );
        if let Some(note) = &f.note {
            println!("{:<16} {note}", "");
        }
    }
}

/// `peer value (ratio×), …`
fn peer_list(f: &Figure) -> String {
    let peers: Vec<String> = f
        .peers
        .iter()
        .map(|(n, v)| format!("{n} {} ({:.2}×)", fmt(*v), f.ratio(*v)))
        .collect();
    peers.join(", ")
}

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn json(figures: &[Figure]) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let num = |v: f64| {
        if v.is_finite() {
            format!("{v:.3}")
        } else {
            "null".into()
        }
    };
    let rows: Vec<String> = figures
        .iter()
        .map(|f| {
            let peers: Vec<String> = f.peers.iter().map(|(n, v)| format!("\"{}\": {}", esc(n), num(*v))).collect();
            let note = f.note.as_ref().map(|n| format!(", \"note\": \"{}\"", esc(n))).unwrap_or_default();
            format!(
                "  {{ \"figure\": \"{}\", \"unit\": \"{}\", \"higher_is_better\": {}, \"ours\": {}, \"peers\": {{ {} }}{note} }}",
                f.figure,
                esc(f.unit),
                f.higher_is_better,
                num(f.ours),
                peers.join(", ")
            )
        })
        .collect();
    format!("[\n{}\n]\n", rows.join(",\n"))
}

fn markdown(figures: &[Figure]) -> String {
    let mut s = String::from(
        "| figure | unit | ours | peers (ratio, > 1 = ours better) |\n| --- | --- | ---: | --- |\n",
    );
    for f in figures {
        let peers = peer_list(f);
        let note = f
            .note
            .as_ref()
            .map(|n| format!("; {n}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "| `{}` | {} | {} | {}{note} |\n",
            f.figure,
            f.unit,
            fmt(f.ours),
            peers
        ));
    }
    s
}

/// The proxy's production day (`tests/common/proxy_soak.rs`): 60 s
/// (`PROXY_SOAK_SECS`), one second in the smoke run. A reliability report,
/// not a ratio: it has no peer.
fn proxy_soak_group(settings: Settings) {
    let secs = if settings.smoke {
        1
    } else {
        std::env::var("PROXY_SOAK_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60)
    };
    let duration = Duration::from_secs(secs);
    let soak = proxy_soak::Settings {
        duration,
        checkers: 4,
        wrk_connections: 16,
    };
    let this = std::env::current_exe().expect("the benchmark's own path");
    let start = |upstream: &str, args: &[&str]| {
        let command = |proxy_args: &[String]| {
            let mut command = std::process::Command::new(&this);
            command.arg("--as-proxy").args(proxy_args);
            command
        };
        proxy_process::ProxyProcess::spawn(command, upstream, args)
    };
    let Some(report) = proxy_soak::run(&soak, start) else {
        println!("proxy_soak: skipped (nginx not installed)\n");
        return;
    };
    report.print(duration);
    let problems = report.problems();
    println!(
        "  verdict            {}\n",
        if problems.is_empty() {
            "clean"
        } else {
            "FAILED"
        }
    );
    assert!(problems.is_empty(), "the proxy soak failed: {problems:#?}");
}
