//! The `proxy` group: wrk → a reverse proxy → one nginx backend, for three
//! proxies with the same number of threads (one per core):
//!
//! - ours: the `proxy` example's command line (`examples/proxy/`), run as a
//!   child process like the others (this benchmark's binary started with
//!   `--as-proxy`), one reactor per thread on `SO_REUSEPORT` listeners;
//! - nginx as a proxy: `proxy_pass` to an `upstream` with `keepalive 64`,
//!   `proxy_http_version 1.1`, `proxy_set_header Connection ""`, as many
//!   workers (`reuseport` listeners);
//! - HAProxy with `http-reuse always` and as many threads (`nbthread`).
//!
//! Ours with `--busy-poll 50` and HAProxy with `busy-polling` are measured
//! beside them (see [`measure`]).
//!
//! At concurrency 1, 16 and 64, they are measured in interleaved rounds
//! (ours, nginx, HAProxy, …) of `BENCH_SECS` each, five of them (the
//! machine is shared and its load comes in bursts), and the median round is
//! reported: requests/s, p50 and p99 from wrk's `--latency` report, and the
//! CPU time each proxy's processes used per request (from
//! `/proc/<pid>/stat`), which the machine's other load disturbs much less.
//! Upstream connections opened per 10 000 requests come from the backend's
//! `stub_status` accept counter, for every proxy alike.
//!
//! Each figure's note also gives the ratio round by round (ours in round k
//! over the peer in round k, seconds apart): their median, their range and
//! in how many rounds ours was ahead. On a two-core machine shared with wrk
//! and the backend the same process varies by ±15% between rounds; a range
//! that spans 1.0 says the difference is smaller than that noise.
//!
//! Where the machine has a CPU more than the proxy has workers, each
//! proxy's workers run on cores of their own and wrk and the backend on the
//! rest ([`crate::cpus`]), as a proxy runs in production: the figure per
//! core then measures the proxy rather than which of three processes the
//! scheduler made wait for a core. On two CPUs the per-core set is placed
//! and the two-worker set shares them; the report and every note say which
//! (`BENCH_PIN=0`: never placed).
//!
//! Configurations are in this file; every process listens on 127.0.0.1 on a
//! free port, runs from a temporary directory and is stopped by pid.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cpus::Placement;
use crate::engine::{Config as ProxyConfig, Proxy};
use crate::nginx::{Nginx, Site};
use crate::peers::{WrkRun, wrk_run};
use crate::proxy_process::ProxyProcess;
use crate::{CAP, Figure, LOCALHOST, Settings, median};

/// `two_workers`: also measure with one worker per core (the default); the
/// one-worker figures are always measured.
pub fn figures(settings: Settings, two_workers: bool) -> Vec<Figure> {
    let has = |bin: &str, arg: &str| Command::new(bin).arg(arg).output().is_ok();
    let (wrk, haproxy_installed) = (has("wrk", "--version"), has("haproxy", "-v"));
    if crate::nginx::binary().is_none() {
        println!("proxy: skipped: nginx not installed (the backend and a peer)");
        return Vec::new();
    }
    let mut missing = Vec::new();
    if !wrk {
        missing.push("wrk");
    }
    if !haproxy_installed {
        missing.push("haproxy");
    }
    if !settings.smoke && !missing.is_empty() {
        println!("proxy: skipped: {} not installed", missing.join(" and "));
        return Vec::new();
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let Some(backend) = Nginx::start(Site {
        listen_extra: "",
        server: "keepalive_requests 100000000;\n keepalive_timeout 600s;\n \
                 location = /backend-status { stub_status; }\n \
                 location / { return 200 \"hello\\n\"; }",
        files: Vec::new(),
    }) else {
        return Vec::new();
    };
    let mut config = ProxyConfig::new(SocketAddr::new(LOCALHOST, 0), backend.addr);
    config.threads = threads;
    let ours = Proxy::start(config).expect("start our proxy");
    let nginx_proxy = Peer::nginx(backend.addr, threads);
    if settings.smoke {
        // Each configuration relays, and the measuring path runs once,
        // briefly, with what is installed.
        check_relays("ours", ours.addr());
        check_relays("nginx", nginx_proxy.addr);
        if haproxy_installed {
            check_relays("haproxy", Peer::haproxy(backend.addr, threads, false).addr);
        }
        if wrk {
            let run = wrk_run(&format!("http://{}/", ours.addr()), 4, 1.0)
                .expect("wrk through our proxy");
            println!(
                "proxy (smoke): ours {:.0} req/s, p99 {:.0} µs, {} errors",
                run.rps, run.p99_us, run.errors
            );
            assert_eq!(run.errors, 0, "wrk saw errors through our proxy");
        }
        if !missing.is_empty() {
            println!(
                "proxy (smoke): {} not installed: not run",
                missing.join(" and ")
            );
        }
        return Vec::new();
    }
    drop((ours, nginx_proxy));
    let mut out = Vec::new();
    if two_workers {
        out.extend(measure(settings, &backend, threads, false));
    }
    // Per core: one worker each (`--threads 1`, `worker_processes 1`,
    // `nbthread 1`), the figure that decides how many machines a user needs.
    out.extend(measure(settings, &backend, 1, true));
    out
}

/// How long our busy-polling side spins after its last events (and the
/// flag a user would pass: `--busy-poll 50`).
const BUSY_POLL: Duration = Duration::from_micros(50);

/// One proxy under measurement: its name in the report, where wrk sends
/// requests, and the processes whose CPU time it uses.
struct Side {
    name: &'static str,
    addr: SocketAddr,
    pids: Vec<u32>,
}

/// HAProxy with `busy-polling` spins a whole core even with nothing to do,
/// so it runs only for its own rounds: started, warmed for a second at the
/// round's concurrency, measured, stopped.
fn busy_haproxy(
    backend: SocketAddr,
    threads: usize,
    conc: usize,
    placement: Option<&Placement>,
) -> (Peer, Side) {
    let peer = Peer::haproxy(backend, threads, true);
    if let Some(p) = placement {
        p.pin_proxy(&peer.pids());
    }
    check_relays("haproxy busy-polling", peer.addr);
    wrk_run(&format!("http://{}/", peer.addr), conc, 1.0);
    let side = Side {
        name: "haproxy busy-polling",
        addr: peer.addr,
        pids: peer.pids(),
    };
    (peer, side)
}

/// Our proxy as a user runs it: its command line in a child process (this
/// binary with `--as-proxy`), `threads` workers, `busy` busy polling;
/// stopped by pid when dropped.
fn ours_process(backend: SocketAddr, threads: usize, busy: Duration) -> ProxyProcess {
    let this = std::env::current_exe().expect("the benchmark's own path");
    let command = |args: &[String]| {
        let mut command = Command::new(&this);
        command.arg("--as-proxy").args(args);
        command
    };
    let (threads, micros) = (threads.to_string(), busy.as_micros().to_string());
    ProxyProcess::spawn(
        command,
        &backend.to_string(),
        &["--threads", &threads, "--busy-poll", &micros],
    )
}

/// wrk at concurrency 1, 16 and 64 through ours, nginx and HAProxy with
/// `threads` workers each, and through ours and HAProxy again with busy
/// polling on (ours `--busy-poll 50`, HAProxy's `busy-polling`; nginx has
/// no such setting), all in interleaved rounds; `per_core` names the
/// figures `proxy_core_*`.
fn measure(settings: Settings, backend: &Nginx, threads: usize, per_core: bool) -> Vec<Figure> {
    let placement = match Placement::for_workers(threads) {
        Ok(p) => {
            p.enter(&backend.pids());
            Some(p)
        }
        Err(why) => {
            println!("proxy: {threads} worker(s) share the CPUs with wrk and the backend: {why}");
            None
        }
    };
    let cores = placement.as_ref().map_or_else(
        || "shared with wrk and the backend".to_string(),
        Placement::describe,
    );
    let ours = ours_process(backend.addr, threads, Duration::ZERO);
    let ours_busy = ours_process(backend.addr, threads, BUSY_POLL);
    let nginx_proxy = Peer::nginx(backend.addr, threads);
    let haproxy = Peer::haproxy(backend.addr, threads, false);
    let sides = [
        Side {
            name: "ours",
            addr: ours.addr,
            pids: vec![ours.pid],
        },
        Side {
            name: "nginx",
            addr: nginx_proxy.addr,
            pids: nginx_proxy.pids(),
        },
        Side {
            name: "haproxy",
            addr: haproxy.addr,
            pids: haproxy.pids(),
        },
        Side {
            name: "ours busy-poll",
            addr: ours_busy.addr,
            pids: vec![ours_busy.pid],
        },
    ];
    if let Some(p) = &placement {
        for side in &sides {
            p.pin_proxy(&side.pids);
        }
    }
    // Measured after these, in each round; see `busy_haproxy`.
    let busy_haproxy_at = sides.len();
    println!(
        "proxy: backend nginx on {} (1 worker); proxies with {threads} threads each ({cores}): {}",
        backend.addr,
        sides
            .iter()
            .map(|s| format!("{} on {}", s.name, s.addr))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for side in &sides {
        check_relays(side.name, side.addr);
    }

    let secs = settings.secs.max(1.0);
    let mut out = Vec::new();
    for conc in [1usize, 16, 64] {
        // Warm each side: its upstream connections, the backend, caches.
        for side in &sides {
            wrk_run(&format!("http://{}/", side.addr), conc, 1.0);
        }
        let n = sides.len() + 1;
        let mut names: Vec<&str> = sides.iter().map(|s| s.name).collect();
        names.push("haproxy busy-polling");
        let mut runs: Vec<Vec<WrkRun>> = vec![Vec::new(); n];
        let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut accepts = vec![0u64; n];
        for _ in 0..settings.rounds.max(5) {
            for i in 0..n {
                let started = (i == busy_haproxy_at)
                    .then(|| busy_haproxy(backend.addr, threads, conc, placement.as_ref()));
                let side = match &started {
                    Some((_, side)) => side,
                    None => &sides[i],
                };
                let before = backend_accepts(backend.addr);
                let ticks = cpu_ticks(&side.pids);
                let run = wrk_run(&format!("http://{}/", side.addr), conc, secs)
                    .unwrap_or_else(|| panic!("wrk through {} at c{conc} failed", side.name));
                let used = cpu_ticks(&side.pids) - ticks;
                cpu[i].push(used as f64 * 1e6 / clock_ticks() / run.requests.max(1) as f64);
                // The status request after the round is an accept of its own.
                accepts[i] += backend_accepts(backend.addr).saturating_sub(before + 1);
                if run.errors > 0 {
                    println!(
                        "proxy: {} at c{conc}: {} errors in wrk's report",
                        side.name, run.errors
                    );
                }
                runs[i].push(run);
            }
        }
        let med = |i: usize, f: fn(&WrkRun) -> f64| median(runs[i].iter().map(f).collect());
        let rps: Vec<f64> = (0..n).map(|i| med(i, |r| r.rps)).collect();
        let p50: Vec<f64> = (0..n).map(|i| med(i, |r| r.p50_us)).collect();
        let p99: Vec<f64> = (0..n).map(|i| med(i, |r| r.p99_us)).collect();
        let cpu_us: Vec<f64> = cpu.iter().map(|c| median(c.clone())).collect();
        let per_10k: Vec<f64> = (0..n)
            .map(|i| {
                let requests: u64 = runs[i].iter().map(|r| r.requests).sum();
                accepts[i] as f64 * 10_000.0 / requests.max(1) as f64
            })
            .collect();
        for (i, name) in names.iter().enumerate() {
            let rounds: Vec<String> = runs[i]
                .iter()
                .zip(&cpu[i])
                .map(|(r, c)| {
                    format!(
                        "{:.0} ({:.0}/{:.0} µs, cpu {c:.1})",
                        r.rps, r.p50_us, r.p99_us
                    )
                })
                .collect();
            println!(
                "proxy c{conc} rounds, {name}: req/s (p50/p99): {}",
                rounds.join(", ")
            );
        }
        let summary: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                format!(
                    "{} {:.0} req/s, p50/p99 {:.0}/{:.0} µs, {:.1} µs CPU/req, {:.2} upstream \
                     connections per 10 000 requests",
                    name, rps[i], p50[i], p99[i], cpu_us[i], per_10k[i]
                )
            })
            .collect();
        println!("proxy c{conc} ({threads} threads): {}", summary.join("; "));
        // Kept in order for the notes' round-by-round ratios: rounds are
        // interleaved, so round k of two sides ran seconds apart on the same
        // machine state, and their ratio cancels the drift that moves every
        // side's medians together.
        let rounds_rps: Vec<Vec<f64>> = runs
            .iter()
            .map(|r| r.iter().map(|r| r.rps).collect())
            .collect();
        let measured = SideFigures {
            rps,
            p50,
            p99,
            cpu_us,
            per_10k,
            rounds_rps,
            cores: cores.clone(),
        };
        out.extend(figures_for(per_core, conc, &measured));
    }
    drop((ours, ours_busy, placement));
    out
}

/// The figures of one concurrency: ours beside nginx and HAProxy at their
/// defaults, then ours busy-polling beside HAProxy busy-polling (and
/// nginx, which cannot). Indices as in [`measure`]'s sides.
fn figures_for(per_core: bool, conc: usize, m: &SideFigures) -> Vec<Figure> {
    let (p50, per_10k, rounds) = (&m.p50, &m.per_10k, &m.rounds_rps);
    let prefix = if per_core { "proxy_core" } else { "proxy" };
    // Figure names are `&'static str`; a few leaked names per run.
    let name = |what: String| -> &'static str { what.leak() };
    let mut out = Vec::new();
    for (ours, haproxy, tag) in [(0, 2, ""), (3, 4, "_busy")] {
        let note = format!(
            "p50 µs: ours {:.0}, nginx {:.0}, haproxy {:.0}; upstream connections per 10 000 \
             requests: ours {:.2}, nginx {:.2}, haproxy {:.2}; round by round vs nginx {}, vs \
             haproxy {}; CPUs: {}",
            p50[ours],
            p50[1],
            p50[haproxy],
            per_10k[ours],
            per_10k[1],
            per_10k[haproxy],
            Paired::of(&rounds[ours], &rounds[1]),
            Paired::of(&rounds[ours], &rounds[haproxy]),
            m.cores,
        );
        // Ours beside nginx and this pass's HAProxy, for one measure.
        let figure = |what: &str, unit: &'static str, higher_better: bool, v: &[f64]| {
            Figure::new(
                name(format!("{prefix}{tag}{what}_c{conc}")),
                unit,
                higher_better,
                v[ours],
            )
            .peer("nginx", v[1])
            .peer("haproxy", v[haproxy])
        };
        out.push(figure("", "req/s", true, &m.rps).note(note));
        // p99 at 16 is in every per-core set; the two-worker set keeps
        // the figures it always had (c1 and c64).
        if per_core || conc != 16 {
            out.push(figure("_p99", "µs", false, &m.p99));
        }
        out.push(
            figure("_cpu", "µs CPU/req", false, &m.cpu_us)
                .note("CPU time of the proxy's processes per request, user + system"),
        );
    }
    out
}

/// What one concurrency measured, a value per side (indices as in
/// [`measure`]'s sides); `rounds_rps` holds each side's rounds in order.
struct SideFigures {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu_us: Vec<f64>,
    per_10k: Vec<f64>,
    rounds_rps: Vec<Vec<f64>>,
    /// Where the proxies ran: [`Placement::describe`], or shared.
    cores: String,
}

/// Ours against a peer round by round: the median of the per-round ratios,
/// their range, and in how many rounds ours was ahead. A median ratio
/// whose range spans 1.0 says the machine's noise is larger than the
/// difference.
struct Paired {
    median: f64,
    min: f64,
    max: f64,
    ahead: usize,
    rounds: usize,
}

impl Paired {
    fn of(ours: &[f64], peer: &[f64]) -> Paired {
        let ratios: Vec<f64> = ours.iter().zip(peer).map(|(o, p)| o / p).collect();
        Paired {
            median: median(ratios.clone()),
            min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ahead: ratios.iter().filter(|&&r| r > 1.0).count(),
            rounds: ratios.len(),
        }
    }
}

impl std::fmt::Display for Paired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2}× ({:.2}–{:.2}, ahead in {} of {})",
            self.median, self.min, self.max, self.ahead, self.rounds
        )
    }
}

/// A few requests through `addr`, checked: the configuration relays.
fn check_relays(side: &str, addr: SocketAddr) {
    let mut client = crate::selftest::Client::connect(addr, CAP)
        .unwrap_or_else(|e| panic!("connect to the {side} proxy: {e}"));
    for _ in 0..20 {
        let r = client
            .get("/")
            .unwrap_or_else(|e| panic!("GET through {side}: {e}"));
        assert_eq!(
            (r.status, r.body_str()),
            (200, "hello\n"),
            "through the {side} proxy"
        );
    }
}

/// The backend's accepted connections so far (`stub_status`).
fn backend_accepts(backend: SocketAddr) -> u64 {
    let mut s = TcpStream::connect_timeout(&backend, CAP).expect("connect to the backend");
    s.set_read_timeout(Some(CAP)).expect("timeout");
    s.write_all(b"GET /backend-status HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .expect("status request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("status response");
    // "server accepts handled requests\n 16630948 16630948 31070465"
    text.lines()
        .skip_while(|l| !l.starts_with("server accepts"))
        .nth(1)
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no accept counter in {text:?}"))
}

/// User plus system CPU time of `pids` so far, in clock ticks.
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name, which is in parentheses.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .sum()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// A peer proxy run as a child process, stopped by pid.
struct Peer {
    addr: SocketAddr,
    child: Child,
    dir: PathBuf,
    name: &'static str,
}

impl Peer {
    fn nginx(backend: SocketAddr, workers: usize) -> Peer {
        let (addr, dir) = Peer::prepare("nginx");
        let d = dir.display();
        // `master_process on` for several workers; `daemon off` keeps the
        // master our child. Client and upstream keep-alive are unlimited
        // in requests, as they are for ours and HAProxy.
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes {workers};\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n \
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n \
             upstream backend {{ server {backend}; keepalive 64; keepalive_requests 100000000; }}\n \
             server {{\n  listen {addr} reuseport;\n  keepalive_requests 100000000;\n  \
             keepalive_timeout 600s;\n  location / {{\n   proxy_pass http://backend;\n   \
             proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n  }}\n }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        let bin = crate::nginx::binary().expect("nginx");
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        Peer::ready(addr, child, dir, "nginx", "error.log")
    }

    /// HAProxy with `threads` threads; `busy`: with `busy-polling`.
    fn haproxy(backend: SocketAddr, threads: usize, busy: bool) -> Peer {
        let (addr, dir) = Peer::prepare("haproxy");
        let busy = if busy { "  busy-polling\n" } else { "" };
        // maxconn bounds the descriptors HAProxy asks for: it refuses to
        // start if the limit cannot be raised to what it computes.
        let conf = format!(
            "global\n  nbthread {threads}\n  maxconn 4096\n{busy}\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  \
             timeout server 60s\n  http-reuse always\n\n\
             frontend front\n  bind {addr}\n  default_backend back\n\n\
             backend back\n  server backend {backend}\n"
        );
        std::fs::write(dir.join("haproxy.cfg"), conf).expect("write haproxy.cfg");
        let log = std::fs::File::create(dir.join("haproxy.log")).expect("log file");
        let child = Command::new("haproxy")
            .arg("-db") // foreground: the pid is HAProxy's
            .arg("-f")
            .arg(dir.join("haproxy.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        Peer::ready(addr, child, dir, "haproxy", "haproxy.log")
    }

    /// The peer's process and its children (nginx's workers).
    fn pids(&self) -> Vec<u32> {
        let me = self.child.id();
        let mut pids = vec![me];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                });
            if parent == Some(me) {
                pids.push(pid);
            }
        }
        pids
    }

    /// A free loopback port and a fresh state directory.
    fn prepare(name: &str) -> (SocketAddr, PathBuf) {
        let port = TcpListener::bind((LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!(
            "keepalive-bench-{name}-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("state dir");
        (SocketAddr::new(LOCALHOST, port), dir)
    }

    /// Waits until the peer accepts connections (it may not have bound yet).
    fn ready(
        addr: SocketAddr,
        mut child: Child,
        dir: PathBuf,
        name: &'static str,
        log: &str,
    ) -> Peer {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
                panic!("{name} exited with {status}: {log}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Peer {
                    addr,
                    child,
                    dir,
                    name,
                };
            }
            assert!(
                start.elapsed() < CAP,
                "{name} did not accept within {CAP:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Peer {
    /// SIGTERM (nginx's master then stops its workers), SIGKILL if it is
    /// still there after a few seconds.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid, which it keeps until
            // we wait for it.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("{} did not stop on SIGTERM: killed", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
