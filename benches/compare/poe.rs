//! The original, Perl's POE::Component::Client::Keepalive 0.272, as the
//! peer `poe` on `hit_c1`, `connect` and `http_c{1,16,64}`.
//!
//! `poe/peer.pl` runs under `/usr/bin/perl` as one child process for the
//! whole run, started the first time a figure asks for it. Each round writes
//! it one command line (`hit PORT SECS`, `connect PORT SECS`,
//! `http PORT CONC SECS MAX`) and reads one answer line, so its rounds
//! interleave with ours and the other peers' like any in-process peer, and
//! its pools stay warm between rounds as our reactors do. The script says
//! what each workload does. Without perl or the modules (Debian
//! `libpoe-component-client-keepalive-perl`) the peer is left out, and the
//! run says why.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crate::{Figure, median};

const PERL: &str = "/usr/bin/perl";

/// How long perl may take to load POE and answer `ready`.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long past its round a workload may take to answer (the HTTP one
/// waits for its last responses).
const GRACE: Duration = Duration::from_secs(30);

enum State {
    Unstarted,
    Running(Peer),
    Absent(String),
}

struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// "POE 1.370, POE::Component::Client::Keepalive 0.272, …".
    version: String,
}

static STATE: Mutex<State> = Mutex::new(State::Unstarted);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/compare/poe/peer.pl")
}

fn start() -> State {
    if !std::path::Path::new(PERL).exists() {
        return State::Absent(format!("{PERL} not found"));
    }
    let spawned = Command::new(PERL)
        .arg(script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return State::Absent(format!("cannot run {PERL}: {e}")),
    };
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        return State::Absent("no pipes to perl".into());
    };
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = lines.recv_timeout(START_LIMIT).unwrap_or_default();
    let words: Vec<&str> = first.split_whitespace().collect();
    match words.as_slice() {
        ["ready", poe, keepalive, event_loop, perl] => {
            let version = format!(
                "POE {poe}, POE::Component::Client::Keepalive {keepalive}, {event_loop}, perl {perl}"
            );
            State::Running(Peer {
                child,
                stdin,
                lines,
                version,
            })
        }
        ["missing", module] => {
            let _ = child.wait();
            State::Absent(format!(
                "Perl module {module} not installed (Debian: libpoe-component-client-keepalive-perl)"
            ))
        }
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            State::Absent(format!(
                "{PERL} {} did not start: {first:?}",
                script().display()
            ))
        }
    }
}

/// Runs `f` on the peer, starting it first if need be. A failure drops the
/// peer from the rest of the run, with a printed reason.
fn with_peer<R>(f: impl FnOnce(&mut Peer) -> Result<R, String>) -> Option<R> {
    let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    if matches!(*state, State::Unstarted) {
        *state = start();
    }
    let State::Running(peer) = &mut *state else {
        return None;
    };
    match f(peer) {
        Ok(r) => Some(r),
        Err(e) => {
            println!("poe: {e}; left out of the rest of the run");
            let _ = peer.child.kill();
            let _ = peer.child.wait();
            *state = State::Absent(e);
            None
        }
    }
}

impl Peer {
    /// Sends one command and returns the answer's fields after its echoed
    /// name.
    fn ask(&mut self, command: &str, wait: Duration) -> Result<Vec<f64>, String> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("writing to perl: {e}"))?;
        let line = self
            .lines
            .recv_timeout(wait + GRACE)
            .map_err(|_| format!("no answer to `{command}`"))?;
        let mut words = line.split_whitespace();
        let name = command.split_whitespace().next().unwrap_or_default();
        match words.next() {
            Some(n) if n == name => words
                .map(|w| w.parse::<f64>().map_err(|_| format!("bad answer {line:?}")))
                .collect(),
            _ => Err(format!("`{command}` answered {line:?}")),
        }
    }
}

/// One line for the run's header: what the peer is, or why it is absent.
/// Starts the peer.
pub fn describe() -> String {
    with_peer(|p| Ok(p.version.clone()));
    let state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    match &*state {
        State::Running(p) => format!("poe peer: {}", p.version),
        State::Absent(why) => format!("poe peer: skipped: {why}"),
        State::Unstarted => "poe peer: not started".into(),
    }
}

/// Whether the peer is running.
pub fn available() -> bool {
    with_peer(|_| Ok(())).is_some()
}

fn secs(limit: Duration) -> String {
    format!("{:.3}", limit.as_secs_f64())
}

/// Cache-hit cycles per second: allocate → response event → free, one at a
/// time, on a pool to `port` (a server that holds connections).
pub fn hit(port: u16, limit: Duration) -> f64 {
    with_peer(|p| rate(&p.ask(&format!("hit {port} {}", secs(limit)), limit)?)).unwrap_or(f64::NAN)
}

/// New connections per second to `port` (the closing server), each closed
/// with RST instead of freed.
pub fn connect(port: u16, limit: Duration) -> f64 {
    with_peer(|p| rate(&p.ask(&format!("connect {port} {}", secs(limit)), limit)?))
        .unwrap_or(f64::NAN)
}

/// `count elapsed` → count per second.
fn rate(v: &[f64]) -> Result<f64, String> {
    match v {
        [count, elapsed, ..] if *elapsed > 0.0 => Ok(count / elapsed),
        _ => Err(format!("bad answer {v:?}")),
    }
}

/// The HTTP rounds of one concurrency: requests/s, p50 and p99 (µs).
#[derive(Default)]
pub struct HttpRounds {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl HttpRounds {
    /// Runs one round: `conc` lanes of GET on a fresh pool to `port`, for
    /// `limit` or `max` requests. `warm` runs it without keeping the result.
    pub fn round(&mut self, port: u16, conc: usize, limit: Duration, max: u64, warm: bool) {
        let max = max.min(1 << 52);
        let command = format!("http {port} {conc} {} {max}", secs(limit));
        let Some(v) = with_peer(|p| p.ask(&command, limit)) else {
            return;
        };
        if let (false, [requests, elapsed, p50, p99]) = (warm, v.as_slice()) {
            self.rps.push(requests / elapsed);
            self.p50.push(*p50);
            self.p99.push(*p99);
        }
    }

    /// Adds `poe` to the requests/s and p99 figures and its p50 to the
    /// note, if it ran.
    pub fn add_to(self, rps: Figure, p99: Figure) -> (Figure, Figure) {
        if self.rps.is_empty() {
            return (rps, p99);
        }
        let p50 = median(self.p50);
        let mut rps = rps.peer("poe", median(self.rps));
        rps.note = rps.note.map(|n| format!("{n}, poe {p50:.0}"));
        (rps, p99.peer("poe", median(self.p99)))
    }
}

/// Adds `poe` to `figure` if its value is a measurement.
pub fn peer(figure: Figure, value: Option<&f64>) -> Figure {
    match value {
        Some(&v) if v.is_finite() => figure.peer("poe", v),
        _ => figure,
    }
}
