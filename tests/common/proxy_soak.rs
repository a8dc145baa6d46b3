//! A production day in a minute, for the proxy example: keep-alive load
//! through it to a real nginx while, in the same run, clients abort in
//! every state, slowloris clients trickle heads, and the upstream is
//! reloaded and restarted; then SIGTERM. Run by `tests/proxy_life.rs`
//! (10 s) and by the compare benchmark's `proxy_soak` group (60 s).
//!
//! What it checks, and reports:
//! - every checked response is the one its client asked for (nginx echoes
//!   the request's unique path), so none is mixed between clients;
//! - every non-2xx and every broken connection of a checking client falls
//!   in a window when the soak was injecting an upstream fault (a reload or
//!   the restart), so each is explained;
//! - the proxy's descriptors return to where they were before the load
//!   (idle upstream connections expire within the run's keep-alive), and
//!   its resident memory to within [`RSS_SLACK_KIB`] and 10% of what it
//!   was after the first second of load (the client slots' buffers are
//!   kept for reuse, so the baseline is taken warm);
//! - SIGTERM ends it with exit status 0.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// Through the including crate's root, which both includers provide:
// `nginx`, `proxy_process`, `selftest` and `CAP`.
use crate::CAP;
use crate::nginx::{Nginx, Options, Site};
use crate::proxy_process::ProxyProcess;
use crate::selftest::{Response, read_response};

/// Resident memory may exceed the warm baseline by this much (and 10%).
pub const RSS_SLACK_KIB: u64 = 4096;

/// How long the proxy's idle upstream connections live in the soak, so
/// that the descriptor count settles soon after the load.
const UPSTREAM_KEEP_ALIVE_MS: u64 = 500;
/// The soak's header timeout, which ends every slowloris client.
const HEADER_TIMEOUT_MS: u64 = 400;

pub struct Settings {
    pub duration: Duration,
    /// Keep-alive clients that check every response.
    pub checkers: usize,
    /// wrk's connections, when wrk is installed (0: no wrk).
    pub wrk_connections: usize,
}

#[derive(Debug, Default)]
pub struct Report {
    pub checked: usize,
    pub mixed: usize,
    /// Non-2xx statuses and broken connections of checking clients, with
    /// the fault that explains each, or `None`.
    pub failures: Vec<(String, Option<&'static str>)>,
    pub aborted_clients: usize,
    pub slowloris_cut: usize,
    pub slowloris_longest: Duration,
    pub reloads: usize,
    pub restarts: usize,
    pub fds_before: usize,
    pub fds_after: usize,
    pub rss_warm_kib: u64,
    pub rss_after_kib: u64,
    pub wrk_requests_per_sec: Option<f64>,
    pub wrk_non_2xx: Option<u64>,
    /// wrk's "Socket errors" line, if it printed one.
    pub wrk_socket_errors: Option<String>,
    pub exit: Option<ExitStatus>,
    pub proxy_output: Vec<String>,
}

impl Report {
    pub fn unexplained(&self) -> Vec<&String> {
        self.failures
            .iter()
            .filter(|(_, why)| why.is_none())
            .map(|(what, _)| what)
            .collect()
    }

    /// Every check the soak failed, in words; empty when it held.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.checked == 0 {
            problems.push("no response was checked".to_owned());
        }
        if self.mixed > 0 {
            problems.push(format!("{} responses mixed between clients", self.mixed));
        }
        for what in self.unexplained() {
            problems.push(format!("outside every injected fault: {what}"));
        }
        if self.aborted_clients == 0 || self.slowloris_cut == 0 {
            problems.push("no client aborted, or no slowloris cut".to_owned());
        }
        if self.fds_after != self.fds_before {
            problems.push(format!(
                "{} descriptors after the load, {} before",
                self.fds_after, self.fds_before
            ));
        }
        if self.rss_after_kib > self.rss_warm_kib + self.rss_warm_kib / 10 + RSS_SLACK_KIB {
            problems.push(format!(
                "resident memory {} KiB after the load, {} KiB warm",
                self.rss_after_kib, self.rss_warm_kib
            ));
        }
        // wrk cannot say when its failures happened: without a restart
        // (its window explains 502s and broken connections) there must be
        // none.
        if self.restarts == 0
            && (self.wrk_non_2xx.unwrap_or(0) > 0 || self.wrk_socket_errors.is_some())
        {
            problems.push(format!(
                "wrk saw {} non-2xx and socket errors {:?} with no restart injected",
                self.wrk_non_2xx.unwrap_or(0),
                self.wrk_socket_errors
            ));
        }
        if self.exit.and_then(|s| s.code()) != Some(0) {
            problems.push(format!("exit on SIGTERM: {:?}", self.exit));
        }
        problems
    }

    pub fn print(&self, duration: Duration) {
        println!("proxy soak, {:.0} s:", duration.as_secs_f64());
        println!(
            "  checked responses  {} ({} mixed between clients)",
            self.checked, self.mixed
        );
        let during = |what: &str| {
            self.failures
                .iter()
                .filter(|(_, why)| *why == Some(what))
                .count()
        };
        println!(
            "  non-2xx or broken  {} ({} during the upstream restart, {} during a reload, {} unexplained)",
            self.failures.len(),
            during("upstream restart"),
            during("upstream reload"),
            self.unexplained().len()
        );
        println!(
            "  injected           {} upstream reloads, {} restarts, {} clients aborted in every state, {} slowloris cut (longest {} ms)",
            self.reloads,
            self.restarts,
            self.aborted_clients,
            self.slowloris_cut,
            self.slowloris_longest.as_millis()
        );
        if let Some(rps) = self.wrk_requests_per_sec {
            println!(
                "  wrk                {rps:.0} requests/s, {} non-2xx, socket errors: {}",
                self.wrk_non_2xx.unwrap_or(0),
                self.wrk_socket_errors.as_deref().unwrap_or("none")
            );
        }
        println!(
            "  descriptors        {} before, {} after",
            self.fds_before, self.fds_after
        );
        println!(
            "  resident memory    {} KiB warm, {} KiB after",
            self.rss_warm_kib, self.rss_after_kib
        );
        println!("  exit on SIGTERM    {:?}", self.exit);
    }
}

/// A time window of an injected fault.
#[derive(Clone, Copy)]
struct Fault {
    what: &'static str,
    from: Instant,
    to: Instant,
}

/// Runs the soak against a proxy started by `proxy` (an upstream address
/// and extra arguments → the running child). `None` if nginx is missing.
pub fn run(settings: &Settings, proxy: impl Fn(&str, &[&str]) -> ProxyProcess) -> Option<Report> {
    let server = "keepalive_requests 1000;\n keepalive_timeout 60s;\n client_max_body_size 0;\n \
         location / { return 200 \"$request_uri\\n\"; }\n \
         location /dav/ { root files; dav_methods PUT; create_full_put_path on; }\n \
         location /files/ { alias files/; }";
    let mut nginx = Nginx::start_with(
        Site {
            listen_extra: "",
            server,
            files: Vec::new(),
        },
        Options {
            master_process: true,
            port: None,
            ..Options::default()
        },
    )?;
    let files = nginx.dir().join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    std::fs::write(files.join("big"), vec![b'x'; 1 << 20]).expect("big file");

    let keep_alive = UPSTREAM_KEEP_ALIVE_MS.to_string();
    let header = HEADER_TIMEOUT_MS.to_string();
    let mut proxy = proxy(
        &nginx.addr.to_string(),
        &[
            "--threads",
            "2",
            "--header-timeout",
            &header,
            "--client-timeout",
            "2000",
            "--upstream-keep-alive",
            &keep_alive,
            "--drain-timeout",
            "5000",
        ],
    );
    let addr = proxy.addr;
    let mut report = Report {
        fds_before: proxy.fds(),
        ..Report::default()
    };

    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Mutex::new(Vec::<Fault>::new()));
    let started = Instant::now();
    let deadline = started + settings.duration;

    let wrk = (settings.wrk_connections > 0)
        .then(|| start_wrk(addr, settings.wrk_connections, settings.duration))
        .flatten();
    let checkers: Vec<_> = (0..settings.checkers)
        .map(|i| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || check(addr, i, &stop))
        })
        .collect();
    let aborted = Arc::new(AtomicUsize::new(0));
    let aborter = {
        let (stop, aborted) = (Arc::clone(&stop), Arc::clone(&aborted));
        thread::spawn(move || abort_in_every_state(addr, &stop, &aborted))
    };
    let slowloris: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || trickle(addr, &stop))
        })
        .collect();

    // Warm: every kind of client has come and gone at least once.
    thread::sleep(Duration::from_secs(1).min(settings.duration / 4));
    report.rss_warm_kib = proxy.rss_kib();

    // Upstream faults: a reload every two seconds, one restart halfway.
    let mut restarted = false;
    while Instant::now() < deadline {
        let from = Instant::now();
        if !restarted && from >= started + settings.duration / 2 {
            nginx.stop();
            thread::sleep(Duration::from_millis(200));
            nginx.start_again();
            restarted = true;
            report.restarts += 1;
            faults.lock().unwrap().push(Fault {
                what: "upstream restart",
                from,
                to: Instant::now() + Duration::from_millis(200),
            });
        } else {
            nginx.reload();
            report.reloads += 1;
            faults.lock().unwrap().push(Fault {
                what: "upstream reload",
                from,
                to: Instant::now() + Duration::from_millis(200),
            });
        }
        let next = (Instant::now() + Duration::from_secs(2)).min(deadline);
        while Instant::now() < next {
            thread::sleep(Duration::from_millis(10));
        }
    }
    stop.store(true, Ordering::SeqCst);

    let faults = faults.lock().unwrap().clone();
    for c in checkers {
        let (checked, mixed, failures) = c.join().expect("a checking client panicked");
        report.checked += checked;
        report.mixed += mixed;
        for (what, from, to) in failures {
            let why = faults
                .iter()
                .find(|f| from <= f.to && to >= f.from)
                .map(|f| f.what);
            report.failures.push((what, why));
        }
    }
    aborter.join().expect("the aborting client panicked");
    report.aborted_clients = aborted.load(Ordering::SeqCst);
    for s in slowloris {
        let (cut, longest) = s.join().expect("a slowloris client panicked");
        report.slowloris_cut += cut;
        report.slowloris_longest = report.slowloris_longest.max(longest);
    }
    if let Some(child) = wrk {
        let (rps, non_2xx, socket_errors) = finish_wrk(child);
        report.wrk_requests_per_sec = rps;
        report.wrk_non_2xx = non_2xx;
        report.wrk_socket_errors = socket_errors;
    }

    // Back to the baseline: every client is gone, and the pool's idle
    // connections expire within its keep-alive.
    let settle = Instant::now();
    loop {
        report.fds_after = proxy.fds();
        if report.fds_after <= report.fds_before || settle.elapsed() > CAP {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    report.rss_after_kib = proxy.rss_kib();

    // A request in flight when SIGTERM comes still gets its answer.
    let mut last = TcpStream::connect(addr).expect("connect for the last request");
    last.set_read_timeout(Some(CAP)).unwrap();
    last.write_all(b"GET /files/big HTTP/1.1\r\nHost: soak\r\n\r\n")
        .unwrap();
    // The response has begun before the signal: the request is in flight.
    let mut reader = BufReader::new(last);
    let begun = std::io::BufRead::fill_buf(&mut reader).map(|b| !b.is_empty());
    proxy.signal("TERM");
    let r = read_response(&mut reader, false);
    if !matches!(begun, Ok(true)) {
        report
            .failures
            .push((format!("the last request got no response: {begun:?}"), None));
    }
    if !matches!(&r, Ok(r) if r.status == 200 && r.body.len() == 1 << 20) {
        report
            .failures
            .push((format!("the request in flight at SIGTERM: {r:?}"), None));
    }
    report.exit = Some(proxy.wait_exit());
    report.proxy_output = proxy.output.lock().unwrap().clone();
    Some(report)
}

/// One keep-alive client asking for unique paths and checking each answer.
/// Returns (responses checked, mixed, failures with their time spans).
fn check(
    addr: SocketAddr,
    me: usize,
    stop: &AtomicBool,
) -> (usize, usize, Vec<(String, Instant, Instant)>) {
    let (mut checked, mut mixed, mut failures) = (0, 0, Vec::new());
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let path = format!("/c{me}/{seq}");
        let from = Instant::now();
        let result = (|| -> std::io::Result<Response> {
            if conn.is_none() {
                let s = TcpStream::connect(addr)?;
                s.set_read_timeout(Some(CAP))?;
                let r = BufReader::new(s.try_clone()?);
                conn = Some((s, r));
            }
            let (s, r) = conn.as_mut().expect("connected above");
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n").as_bytes())?;
            read_response(r, false)
        })();
        let to = Instant::now();
        match result {
            Ok(r) if r.status == 200 => {
                checked += 1;
                if r.body != format!("{path}\n").as_bytes() {
                    mixed += 1;
                }
                if r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    conn = None;
                }
            }
            Ok(r) => {
                failures.push((format!("{path}: status {}", r.status), from, to));
                if r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    conn = None;
                }
            }
            Err(e) => {
                failures.push((format!("{path}: {e}"), from, to));
                conn = None;
            }
        }
    }
    (checked, mixed, failures)
}

/// Clients that go away in each state in turn: mid-head and mid-body (FIN
/// and RST), with the response on its way, while receiving it, and idle
/// after one.
fn abort_in_every_state(addr: SocketAddr, stop: &AtomicBool, aborted: &AtomicUsize) {
    let mut state = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr) else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = s.set_read_timeout(Some(CAP));
        let rst = state % 2 == 1;
        let sent: &[u8] = match state % 10 / 2 {
            0 => b"GET / HTTP/1.1\r\nHost: soak\r\nX-Half: ",
            1 => b"PUT /dav/aborted HTTP/1.1\r\nHost: soak\r\nContent-Length: 100000\r\n\r\npart",
            2 => b"GET /files/big HTTP/1.1\r\nHost: soak\r\n\r\n",
            3 => b"GET /files/big HTTP/1.1\r\nHost: soak\r\n\r\n",
            _ => b"GET /idle HTTP/1.1\r\nHost: soak\r\n\r\n",
        };
        let _ = s.write_all(sent);
        match state % 10 / 2 {
            // Receiving the response: some of it, then gone.
            3 => {
                let _ = s.read_exact(&mut [0u8; 4096]);
            }
            // Idle after a whole response.
            4 => {
                let mut r = BufReader::new(&s);
                let _ = read_response(&mut r, false);
            }
            _ => {}
        }
        if rst {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        }
        drop(s);
        aborted.fetch_add(1, Ordering::Relaxed);
        state += 1;
        thread::sleep(Duration::from_millis(3));
    }
}

/// A slowloris client: a head a byte every 50 ms, for ever; the proxy
/// must cut it. Returns how many were cut and the longest one lived.
fn trickle(addr: SocketAddr, stop: &AtomicBool) -> (usize, Duration) {
    let (mut cut, mut longest) = (0, Duration::ZERO);
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr) else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        let born = Instant::now();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ");
        loop {
            if stop.load(Ordering::Relaxed) {
                return (cut, longest);
            }
            match s.read(&mut [0u8; 512]) {
                Ok(0) => break,
                // The 408: the close follows.
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
            if s.write_all(b"a").is_err() {
                break;
            }
        }
        cut += 1;
        longest = longest.max(born.elapsed());
    }
    (cut, longest)
}

fn start_wrk(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
) -> Option<std::process::Child> {
    let wrk = ["/usr/bin/wrk", "/usr/local/bin/wrk"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    Command::new(wrk)
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs().max(1)),
            &format!("http://{addr}/wrk"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn finish_wrk(child: std::process::Child) -> (Option<f64>, Option<u64>, Option<String>) {
    let Ok(out) = child.wait_with_output() else {
        return (None, None, None);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let after = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.trim().to_owned())
    };
    let rps = after("Requests/sec:").and_then(|v| v.parse().ok());
    let non_2xx = Some(
        after("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    (rps, non_2xx, after("Socket errors:"))
}
