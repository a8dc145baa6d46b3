//! The fault suite: an HTTP GET loop over the pool (public API only) through
//! the faults a production pool meets, each scenario checking that
//!
//! - every accepted `allocate` ends in exactly one outcome (or one
//!   `deallocate`), both counted;
//! - no pooled connection is delivered dead: none whose peer's close (or
//!   stray bytes) had reached it before the poll that delivered it (see
//!   `harness.rs` for how that is known, not guessed);
//! - after `shutdown` and dropping the reactor, the process has the
//!   descriptors it had before, and the test thread has freed every byte it
//!   allocated (a counting global allocator).
//!
//! Scenarios run one at a time (a static lock): descriptor counts are
//! per-process. Each prints a `faults: <scenario>: …` summary line.
//!
//! `SOAK_SECS=N` makes the soak run N seconds (default 2); `SOAK_SEED=N`
//! picks its operations (timing still varies them from run to run).

#![allow(
    unsafe_code,
    clippy::disallowed_methods,
    clippy::cast_possible_truncation,
    reason = "a counting allocator, TCP_INFO/FIONREAD on our own sockets, and wall-time caps"
)]

mod common;
#[path = "faults/counting.rs"]
mod counting;
#[path = "faults/harness.rs"]
mod harness;

use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::chaos::{Behavior, Chaos};
use common::nginx::{self, Nginx, Options};
use common::{CAP, LOCALHOST, full_backlog, refused_port};
use counting::{Live, uncounted};
use harness::{Client, Policy, Stats};
use keepalive::{Config, Event, Events, Function, Reactor, Request};

static SERIAL: Mutex<()> = Mutex::new(());

/// A connect orphaned by `deallocate` was once pooled dead (regression tests
/// `orphan_connect_…` at the end). With the bug fixed, the soak (the one
/// scenario that deallocates) asserts that no such delivery happens.
const ORPHAN_BUG_OPEN: bool = false;

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Descriptors open in this process (the listing's own excluded).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
        - 1
}

/// One round against a throwaway server, unmeasured, so that whatever the
/// process initializes once (lazily, for good) is not counted as a leak.
fn warm_up() {
    let chaos = Chaos::start(Behavior::Normal);
    let mut c = Client::new(Config::default(), policy(1, 1000, 1000), 1);
    c.submit(LOCALHOST, chaos.port(), 2);
    c.finish();
    c.shutdown();
    c.into_stats();
}

/// `concurrency` requests at once; the caller's response deadline and each
/// request's pool timeout, in milliseconds.
fn policy(concurrency: usize, response_ms: u64, request_ms: u64) -> Policy {
    Policy {
        concurrency,
        response_timeout: Duration::from_millis(response_ms),
        request_timeout: Duration::from_millis(request_ms),
    }
}

/// Runs a scenario: `setup` starts the servers, `body` runs the client
/// (counted by the allocator) and returns its stats after dropping the
/// reactor; the servers are then stopped. Prints the summary line and
/// checks the invariants.
#[track_caller]
fn scenario<S>(name: &str, setup: impl FnOnce() -> S, body: impl FnOnce(&mut S) -> Stats) -> Stats {
    warm_up();
    let fds_before = open_fds();
    let mut servers = setup();
    counting::arm();
    let stats = body(&mut servers);
    let live = counting::disarm();
    drop(servers);
    let fds_after = open_fds();
    let fds = if fds_after == fds_before {
        "fds back to baseline".to_string()
    } else {
        format!("fds {fds_before} before, {fds_after} after")
    };
    let allocs = if live == Live::default() {
        "allocations back to baseline".to_string()
    } else {
        format!(
            "{} bytes in {} allocations still live",
            live.bytes, live.blocks
        )
    };
    let s = &stats;
    let f = &s.failures;
    println!(
        "faults: {name}: attempted {}, outcomes {}, errors by function {}, reused {}, new {}, \
         dead delivered {}, {fds}; {allocs}; deallocated {}, responses {}, retried once {}, \
         gave up {{eof {}, reset {}, timeout {}, protocol {}, other {}}}, \
         pooled sockets seen dead before a poll {}{}",
        s.attempted,
        s.outcomes,
        s.errors,
        s.reused,
        s.new,
        s.dead_delivered,
        s.deallocated,
        s.completed,
        s.retried,
        f.eof,
        f.reset,
        f.timeout,
        f.protocol,
        f.other,
        s.dead_idle_seen,
        if s.orphans_reused > 0 {
            format!(
                ", orphaned connects reused {} (dead {}, opened and pooled within one poll {})",
                s.orphans_reused, s.orphans_dead_delivered, s.orphans_late
            )
        } else {
            String::new()
        },
    );
    assert_eq!(
        s.attempted,
        s.outcomes + s.deallocated,
        "{name}: every request ends exactly once: {s:?}"
    );
    assert_eq!(
        s.outcome_unknown, 0,
        "{name}: outcomes for unknown requests"
    );
    assert_eq!(
        s.dead_delivered,
        0,
        "{name}: a pooled connection was delivered after its close reached the reactor: {}",
        s.first_dead.map(|d| d.to_string()).unwrap_or_default()
    );
    assert_eq!(
        s.ready_unknown, 0,
        "{name}: readiness for connections not lent"
    );
    // Only a deallocated or timed-out request's connect can idle unlent.
    assert!(
        s.orphans_reused <= s.deallocated + s.timed_out,
        "{name}: pooled sockets never lent: {} for {} deallocations and {} timeouts",
        s.orphans_reused,
        s.deallocated,
        s.timed_out
    );
    if !ORPHAN_BUG_OPEN {
        assert_eq!(
            s.orphans_dead_delivered, 0,
            "{name}: an orphaned connect was delivered dead"
        );
    }
    assert_eq!(
        s.orphans_unseen, 0,
        "{name}: a pooled socket not seen before"
    );
    assert_eq!(
        fds_after, fds_before,
        "{name}: descriptors after shutdown and drop"
    );
    assert_eq!(
        live,
        Live::default(),
        "{name}: memory after shutdown and drop"
    );
    stats
}

const ECONNREFUSED: Option<i32> = Some(libc::ECONNREFUSED);
const ETIMEDOUT: Option<i32> = Some(libc::ETIMEDOUT);
const ECANCELED: Option<i32> = Some(libc::ECANCELED);
const EMFILE: Option<i32> = Some(libc::EMFILE);

// ----- 1. real nginx ---------------------------------------------------------

#[test]
fn nginx_misbehaving_as_in_production() {
    let _serial = serial();
    if nginx::binary().is_none() {
        eprintln!("skipped: nginx not installed (apt-get install nginx-light)");
        return;
    }
    let options = Options {
        master_process: true,
        port: None,
        ..Options::default()
    };
    let stats = scenario(
        "nginx (keepalive_timeout 1s, keepalive_requests 3, reload, restart)",
        || Nginx::start_http_with(3, "1s", options).expect("nginx"),
        |nginx| {
            let port = nginx.port();
            let config = Config::default()
                .with_max_per_host(4)
                .with_keep_alive(Duration::from_secs(30));
            let mut c = Client::new(config, policy(4, 10_000, 2000), 7);

            // keepalive_requests 3: every third response on a connection
            // says `Connection: close`, and nginx closes it.
            c.submit(LOCALHOST, port, 60);
            c.finish();

            // keepalive_timeout 1s: our idle sockets outlive it. Make sure
            // there are some (the caller may have closed them all on
            // `Connection: close`), wait without polling until nginx has
            // closed every one, then reuse at once: none may be handed out.
            for _ in 0..10 {
                if c.given_back(port) > 0 {
                    break;
                }
                c.submit(LOCALHOST, port, 1);
                c.finish();
            }
            let closed = c.wait_dead(port);
            assert!(closed > 0, "nginx closed idle connections");
            c.submit(LOCALHOST, port, 8);
            c.finish();

            // `nginx -s reload` mid-run: the old worker closes its idle
            // connections and finishes the busy ones.
            let before = c.stats.completed;
            c.submit(LOCALHOST, port, 40);
            c.run_until(|s| s.completed >= before + 10);
            let retired = uncounted(|| nginx.reload());
            c.finish();
            uncounted(|| nginx.wait_retired(retired));

            // A restart mid-run: stopped by pid, refused while down, then
            // started again on the same port.
            let before = c.stats.completed;
            c.submit(LOCALHOST, port, 40);
            c.run_until(|s| s.completed >= before + 10);
            uncounted(|| nginx.stop());
            c.finish();
            c.settle(port);
            let refused = c.stats.errors.count(Function::Connect, ECONNREFUSED);
            c.submit(LOCALHOST, port, 4);
            c.finish();
            assert_eq!(
                c.stats.errors.count(Function::Connect, ECONNREFUSED),
                refused + 4,
                "every request while nginx is down is refused"
            );
            uncounted(|| nginx.start_again());
            let before = c.stats.completed;
            c.submit(LOCALHOST, port, 20);
            c.finish();
            assert!(c.stats.completed > before, "served again after the restart");

            c.shutdown();
            c.into_stats()
        },
    );
    assert!(stats.reused > 0, "connections were reused");
    assert!(stats.server_close > 0, "nginx said Connection: close");
    assert!(
        stats.dead_idle_seen > 0,
        "dead idle sockets were there to catch"
    );
}

// ----- 2. the chaos server ---------------------------------------------------

#[test]
fn chaos_resets() {
    let _serial = serial();
    let stats = scenario(
        "chaos RST (SO_LINGER 0) on the 3rd request and on idle connections",
        || Chaos::start(Behavior::ResetAfter(2)),
        |chaos| {
            let port = chaos.port();
            let mut c = Client::new(
                Config::default().with_max_per_host(3),
                policy(3, 10_000, 2000),
                11,
            );
            c.submit(LOCALHOST, port, 60);
            c.finish();
            assert!(chaos.resets() > 0);
            chaos.set_behavior(Behavior::Normal);
            for round in 0..3 {
                c.submit(LOCALHOST, port, 12);
                c.finish();
                assert!(uncounted(|| chaos.reset_all()) > 0);
                match round {
                    // The RSTs reached every idle socket; reuse without a poll.
                    0 => assert!(c.wait_dead(port) > 0),
                    // The same, and the reactor polled until quiet first.
                    1 => assert!(c.settle(port) > 0),
                    // Reuse at once: RSTs may still be on their way (retried).
                    _ => {}
                }
                c.submit(LOCALHOST, port, 12);
                c.finish();
            }
            c.shutdown();
            c.into_stats()
        },
    );
    assert!(
        stats.retried > 0,
        "pooled connections reset on reuse were retried"
    );
    assert!(stats.dead_idle_seen > 0);
}

#[test]
fn chaos_silence() {
    let _serial = serial();
    let stats = scenario(
        "chaos accept-then-silence",
        || Chaos::start(Behavior::Silent),
        |chaos| {
            let port = chaos.port();
            let config = Config::default().with_max_per_host(2);
            let mut c = Client::new(config, policy(4, 100, 10_000), 13);
            // No answer: the caller's own deadline ends each request.
            c.submit(LOCALHOST, port, 6);
            c.finish();
            assert_eq!(c.stats.failures.timeout, 6);
            chaos.set_behavior(Behavior::Normal);
            c.set_response_timeout(CAP);
            c.submit(LOCALHOST, port, 6);
            c.finish();
            assert_eq!(c.stats.completed, 6, "served once it speaks");
            // Shutdown with two connections waiting for an answer and two
            // requests queued behind max_per_host; the caller then gives up
            // on the two.
            chaos.set_behavior(Behavior::Silent);
            uncounted(|| chaos.close_all());
            c.settle(port);
            let new = c.stats.new;
            c.submit(LOCALHOST, port, 4);
            c.run_until(|s| s.new >= new + 2);
            c.abandon_all();
            c.shutdown();
            assert_eq!(
                c.stats.errors.count(Function::Shutdown, ECANCELED),
                2,
                "the queued requests are cancelled"
            );
            c.into_stats()
        },
    );
    assert_eq!(stats.failures.timeout, 6);
    assert_eq!(stats.failures.other, 2, "given up by the caller");
}

#[test]
fn chaos_half_close() {
    let _serial = serial();
    let stats = scenario(
        "chaos half-close (FIN after the response)",
        || Chaos::start(Behavior::HalfClose),
        |chaos| {
            let port = chaos.port();
            let mut c = Client::new(Config::default(), policy(4, 10_000, 2000), 17);
            // Every connection serves one request, then its FIN follows.
            c.submit(LOCALHOST, port, 30);
            c.finish();
            chaos.set_behavior(Behavior::Normal);
            for _ in 0..3 {
                c.submit(LOCALHOST, port, 12);
                c.finish();
                uncounted(|| chaos.half_close_all());
                assert!(c.settle(port) > 0);
            }
            c.submit(LOCALHOST, port, 12);
            c.finish();
            c.shutdown();
            c.into_stats()
        },
    );
    assert!(stats.dead_idle_seen > 0);
    assert!(stats.completed > 0);
}

#[test]
fn chaos_full_backlog() {
    let _serial = serial();
    let stats = scenario(
        "chaos full accept backlog (connects never complete)",
        || (full_backlog(), Chaos::start(Behavior::Normal)),
        |(stuck, chaos)| {
            let stuck = stuck.addr.port();
            let config = Config::default().with_max_per_host(2).with_max_open(4);
            let mut c = Client::new(config, policy(4, 10_000, 10_000), 19);
            let short = Some(Duration::from_millis(100));
            c.submit_with_timeout(LOCALHOST, stuck, 6, short);
            c.submit(LOCALHOST, chaos.port(), 6);
            c.finish();
            assert_eq!(c.stats.errors.count(Function::Connect, ETIMEDOUT), 6);
            assert_eq!(c.stats.completed, 6, "the other server is unaffected");
            // Shutdown with two connects under way and two queued.
            let mut c2 = Client::new(
                Config::default().with_max_per_host(2),
                policy(4, 10_000, 10_000),
                23,
            );
            c2.submit(LOCALHOST, stuck, 4);
            c2.step(Duration::ZERO);
            c2.shutdown();
            assert_eq!(c2.stats.errors.count(Function::Shutdown, ECANCELED), 4);
            let s2 = c2.into_stats();
            c.shutdown();
            merge(c.into_stats(), s2)
        },
    );
    assert_eq!(stats.errors.count(Function::Connect, ETIMEDOUT), 6);
}

#[test]
fn chaos_bytes_on_idle_connections() {
    let _serial = serial();
    let stats = scenario(
        "chaos unsolicited bytes on idle (and lent) connections",
        || Chaos::start(Behavior::Normal),
        |chaos| {
            let port = chaos.port();
            let mut c = Client::new(Config::default(), policy(4, 10_000, 2000), 29);
            for round in 0..3 {
                c.submit(LOCALHOST, port, 12);
                c.finish();
                assert!(uncounted(|| chaos.unsolicited_all()) > 0);
                if round == 0 {
                    assert!(c.wait_dead(port) > 0); // then reuse without a poll
                } else {
                    assert!(c.settle(port) > 0);
                }
            }
            // Bytes on lent connections, mid-run.
            let before = c.stats.completed;
            c.submit(LOCALHOST, port, 20);
            c.run_until(|s| s.completed >= before + 6);
            uncounted(|| chaos.unsolicited_all());
            c.finish();
            c.shutdown();
            c.into_stats()
        },
    );
    assert!(stats.dead_idle_seen > 0);
}

#[test]
fn chaos_listener_disappears() {
    let _serial = serial();
    let stats = scenario(
        "chaos listener closed mid-run",
        || Chaos::start(Behavior::Normal),
        |chaos| {
            let port = chaos.port();
            let mut c = Client::new(Config::default(), policy(4, 10_000, 2000), 31);
            c.submit(LOCALHOST, port, 30);
            c.run_until(|s| s.completed >= 10);
            // Connections accepted keep working; ones still in the accept
            // queue are reset, and their replacements refused.
            uncounted(|| chaos.disappear());
            c.finish();
            // Its connections die too: every later request is refused.
            uncounted(|| chaos.close_all());
            c.settle(port);
            let refused = c.stats.errors.count(Function::Connect, ECONNREFUSED);
            c.submit(LOCALHOST, port, 10);
            c.finish();
            assert_eq!(
                c.stats.errors.count(Function::Connect, ECONNREFUSED),
                refused + 10,
                "every request after the listener and its connections are gone is refused"
            );
            c.shutdown();
            c.into_stats()
        },
    );
    assert!(stats.errors.count(Function::Connect, ECONNREFUSED) >= 10);
}

// ----- 3. the soak -----------------------------------------------------------

#[test]
fn soak_random_operations_and_faults() {
    let _serial = serial();
    let secs: f64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let name = format!("soak {secs} s, seed {seed} (random operations and faults, 2 servers)");
    scenario(
        &name,
        || {
            (
                Chaos::start(Behavior::Normal),
                Chaos::start(Behavior::Normal),
                full_backlog(),
                refused_port(),
            )
        },
        |(a, b, stuck, refused)| {
            let config = Config::default()
                .with_max_per_host(3)
                .with_max_open(5)
                .with_keep_alive(Duration::from_millis(200));
            let mut c = Client::new(config, policy(6, 150, 150), seed);
            let (stuck, refused) = (stuck.addr.port(), *refused);
            let until = Instant::now() + Duration::from_secs_f64(secs);
            let mut ops = 0u64;
            while Instant::now() < until && ops < 1_000_000 {
                ops += 1;
                let op = c.rng.below(40);
                let server = if c.rng.chance(2, 3) { &*a } else { &*b };
                match op {
                    0..=9 if c.queued() < 24 => {
                        let n = 1 + c.rng.below(4);
                        c.submit(LOCALHOST, server.port(), n);
                    }
                    10 => c.submit(LOCALHOST, refused, 1),
                    11 => c.submit(LOCALHOST, stuck, 1),
                    12 => {
                        let behavior = match c.rng.below(8) {
                            0 => Behavior::ResetAfter(c.rng.below(3) as u32),
                            1 => Behavior::HalfClose,
                            2 => Behavior::Silent,
                            _ => Behavior::Normal,
                        };
                        server.set_behavior(behavior);
                    }
                    13 => {
                        uncounted(|| server.reset_all());
                    }
                    14 => {
                        uncounted(|| server.close_all());
                    }
                    15 => {
                        uncounted(|| server.half_close_all());
                    }
                    16 => {
                        uncounted(|| server.unsolicited_all());
                    }
                    17 | 18 => {
                        c.cancel_one();
                    }
                    19 => c.abandon_one(),
                    20 => {
                        // Quiesce, kill every connection of one server, and
                        // reuse after the close is known to have arrived.
                        c.finish();
                        uncounted(|| server.close_all());
                        c.settle(server.port());
                    }
                    _ => {
                        let wait = Duration::from_millis(c.rng.below(4) as u64);
                        c.step(wait);
                    }
                }
            }
            // Shut down with whatever is in flight.
            c.shutdown();
            c.into_stats()
        },
    );
}

// ----- 4. descriptor exhaustion ----------------------------------------------

const CHILD_ENV: &str = "KEEPALIVE_FAULTS_EXHAUSTION_PORT";
const CHILD_TEST: &str = "descriptor_exhaustion_in_a_child_process";
const CHILD_MARKER: &str = "faults-child: descriptor exhaustion: ok";

/// Runs its child half in a copy of this test binary (the parent's
/// descriptor limit is left alone): the child lowers `RLIMIT_NOFILE`,
/// allocates more connections than it has descriptors, and recovers.
#[test]
fn descriptor_exhaustion_in_a_child_process() {
    if let Ok(port) = std::env::var(CHILD_ENV) {
        exhaustion_child(port.parse().expect("port"));
        println!("{CHILD_MARKER}");
        return;
    }
    let _serial = serial();
    let chaos = Chaos::start(Behavior::Normal);
    // Output to files, so the wait can be capped without a reader thread.
    let path = |what: &str| {
        std::env::temp_dir().join(format!(
            "keepalive-faults-child-{}.{what}",
            std::process::id()
        ))
    };
    let (out_path, err_path) = (path("out"), path("err"));
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, chaos.port().to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("child stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("child stderr file"))
        .spawn()
        .expect("run the child");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if start.elapsed() > 3 * CAP {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child did not finish within {:?}", 3 * CAP);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |p: &std::path::Path| {
        let text = std::fs::read(p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        text
    };
    let out = (status, read(&out_path), read(&err_path));
    let stdout = String::from_utf8_lossy(&out.1);
    let stderr = String::from_utf8_lossy(&out.2);
    assert!(out.0.success(), "child: {}\n{stdout}\n{stderr}", out.0);
    assert!(stdout.contains(CHILD_MARKER), "child: {stdout}\n{stderr}");
    // (libtest's "test … " may precede the child's first line.)
    for line in stdout
        .lines()
        .filter_map(|l| l.find("faults: ").map(|i| &l[i..]))
    {
        println!("{line}");
    }
}

fn getrlimit() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn setrlimit(lim: libc::rlimit) {
    // SAFETY: setrlimit reads one rlimit we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// Lowers the soft descriptor limit so that exactly `spare` descriptors
/// can still be opened: the limit goes just above the `spare`-th unused
/// number. Descriptors above it (inherited ones, say) stay valid.
fn leave_descriptors(spare: usize) {
    let lim = getrlimit();
    let mut unused = 0;
    // Probe the numbers (no descriptor needed, unlike /proc/self/fd).
    let mut fd: libc::c_int = 0;
    while unused < spare {
        // SAFETY: F_GETFD on any number only reads the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            unused += 1;
        }
        fd += 1;
    }
    setrlimit(libc::rlimit {
        rlim_cur: fd as libc::rlim_t,
        rlim_max: lim.rlim_max,
    });
}

fn exhaustion_child(port: u16) {
    let _serial = serial();
    let stats = scenario(
        "descriptor exhaustion (RLIMIT_NOFILE, child process)",
        || (),
        |()| {
            let saved = uncounted(getrlimit);
            let config = Config::default().with_max_per_host(64);
            let mut ka: Reactor<usize> = Reactor::new(config).expect("reactor");
            let mut events = Events::new();
            let mut s = Stats::default();
            let free = 6;
            uncounted(|| leave_descriptors(free));
            // More connections than descriptors: the extra ones fail at
            // `socket` with EMFILE, in their outcome.
            let n = free + 4;
            let mut held = Vec::new();
            for i in 0..n {
                ka.allocate(Request::new("http", LOCALHOST, port, i))
                    .expect("allocate");
                s.attempted += 1;
            }
            collect(&mut ka, &mut events, &mut s, n, &mut held);
            assert_eq!(held.len(), free, "one connection per free descriptor");
            assert_eq!(s.errors.count(Function::Socket, EMFILE), 4, "{}", s.errors);
            // Nothing else can be made either, and that is an error too.
            match Reactor::<()>::new(Config::default()) {
                Err(keepalive::Error::Io(e)) => assert_eq!(e.raw_os_error(), EMFILE),
                other => panic!("a reactor without descriptors: {other:?}"),
            }
            for conn in held.iter_mut() {
                assert_eq!(common::get(&mut ka, &mut events, conn), "hello\n");
                s.completed += 1;
            }
            // Recover: half back to the pool, half closed (their
            // descriptors come free), then as many requests as before.
            let closing = held.split_off(free / 2);
            for conn in held.drain(..) {
                ka.free(conn).expect("free");
            }
            for conn in closing {
                conn.close();
            }
            ka.poll_events(&mut events).expect("poll");
            assert!(events.is_empty());
            let (reused, new) = (s.reused, s.new);
            for i in 0..free {
                ka.allocate(Request::new("http", LOCALHOST, port, i))
                    .expect("allocate");
                s.attempted += 1;
            }
            collect(&mut ka, &mut events, &mut s, free, &mut held);
            assert_eq!(held.len(), free, "every request served again: {}", s.errors);
            assert_eq!(s.reused - reused, (free / 2) as u64, "from the pool");
            assert_eq!(s.new - new, (free - free / 2) as u64, "new connections");
            for conn in held.iter_mut() {
                assert_eq!(common::get(&mut ka, &mut events, conn), "hello\n");
                s.completed += 1;
            }
            uncounted(|| setrlimit(saved));
            ka.shutdown();
            drop(held);
            ka.poll_events(&mut events).expect("poll");
            assert_eq!(ka.open_count(), 0);
            s
        },
    );
    assert_eq!(stats.errors.count(Function::Socket, EMFILE), 4);
}

/// Polls until `n` outcomes have come; connections go to `held`.
#[track_caller]
fn collect(
    ka: &mut Reactor<usize>,
    events: &mut Events<usize>,
    s: &mut Stats,
    n: usize,
    held: &mut Vec<keepalive::Connection>,
) {
    let start = Instant::now();
    let mut got = 0;
    while got < n {
        assert!(start.elapsed() < CAP, "{got} of {n} outcomes");
        ka.poll(events, Some(Duration::from_millis(50)))
            .expect("poll");
        for e in events.drain() {
            let Event::Outcome(o) = e else { continue };
            got += 1;
            s.outcomes += 1;
            match o.result {
                Ok(conn) => {
                    if conn.from_cache().is_some() {
                        s.reused += 1;
                    } else {
                        s.new += 1;
                    }
                    held.push(conn);
                }
                Err(e) => s.errors.add(e.function(), e.errno()),
            }
        }
    }
}

// ----- the checks can fail ---------------------------------------------------

/// The descriptor and memory accounting notice a connection that is never
/// given back (`mem::forget`).
#[test]
fn accounting_catches_a_leaked_connection() {
    let _serial = serial();
    warm_up();
    let fds_before = open_fds();
    let chaos = Chaos::start(Behavior::Normal);
    counting::arm();
    let mut ka: Reactor<()> = Reactor::new(Config::default()).expect("reactor");
    let mut events = Events::new();
    let conn = common::connect(&mut ka, &mut events, common::request(chaos.port(), ()));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&conn);
    std::mem::forget(conn);
    ka.shutdown();
    drop(ka);
    drop(events);
    let live = counting::disarm();
    drop(chaos);
    let fds_after = open_fds();
    // SAFETY: the forgotten connection's descriptor, which nothing else
    // owns any more; closing it cleans up after the test.
    unsafe { libc::close(fd) };
    assert_eq!(fds_after, fds_before + 1, "the leaked socket is seen");
    assert!(live.blocks > 0, "the leaked memory is seen: {live:?}");
}

fn merge(a: Stats, b: Stats) -> Stats {
    let mut m = a;
    m.attempted += b.attempted;
    m.outcomes += b.outcomes;
    m.deallocated += b.deallocated;
    m.refused += b.refused;
    m.reused += b.reused;
    m.new += b.new;
    m.errors.merge(&b.errors);
    m.completed += b.completed;
    m.retried += b.retried;
    m.failures.eof += b.failures.eof;
    m.failures.reset += b.failures.reset;
    m.failures.other += b.failures.other;
    m.failures.timeout += b.failures.timeout;
    m.failures.protocol += b.failures.protocol;
    m.server_close += b.server_close;
    m.unsolicited_on_lent += b.unsolicited_on_lent;
    m.dead_idle_seen += b.dead_idle_seen;
    m.dead_delivered += b.dead_delivered;
    m.first_dead = m.first_dead.or(b.first_dead);
    m.ready_unknown += b.ready_unknown;
    m.orphans_reused += b.orphans_reused;
    m.orphans_dead_delivered += b.orphans_dead_delivered;
    m.orphans_unseen += b.orphans_unseen;
    m.orphans_late += b.orphans_late;
    m.timed_out += b.timed_out;
    m.outcome_unknown += b.outcome_unknown;
    m
}

// ----- a library bug ---------------------------------------------------------

/// What the server does with the orphaned connection, before the reactor
/// has polled since the connect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OrphanFault {
    /// Closes it (FIN).
    Close,
    /// Writes bytes nobody asked for and keeps it open.
    Bytes,
}

/// A request is deallocated while its connect is under way; the connect
/// finishes and, as documented, the connection idles in the pool. The
/// server closes it (or writes to it) before the reactor polls: the close
/// reaches the reactor in the very readiness event that says the connect
/// completed. The pool must not hand that connection out.
///
/// Returns the delivered connection's `from_cache` and the TCP state its
/// socket had before the delivering poll.
fn orphan_case(fault: OrphanFault) -> (Option<keepalive::FromCache>, u8, i32) {
    let listener = std::net::TcpListener::bind((LOCALHOST, 0)).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let mut ka: Reactor<()> = Reactor::new(Config::default()).expect("reactor");
    let mut events = Events::new();
    let id = ka.allocate(common::request(port, ())).expect("allocate");
    ka.deallocate(id).expect("deallocate"); // the connect goes on
    // The server accepts and closes (or writes), the reactor not polling.
    let start = Instant::now();
    let (mut server_side, _) = loop {
        match listener.accept() {
            Ok(accepted) => break accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(start.elapsed() < CAP, "never connected");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    let client_port = server_side.peer_addr().expect("peer").port();
    match fault {
        OrphanFault::Close => drop(server_side),
        OrphanFault::Bytes => {
            std::io::Write::write_all(&mut server_side, b"stray").expect("write");
        }
    }
    // Our socket, found by its local port; wait until the FIN (or the
    // bytes) reached it.
    let fd = (0..1024)
        .find(|&fd| local_port(fd) == Some(client_port))
        .expect("the pool's socket");
    let start = Instant::now();
    while harness::tcp_state(fd) == 1 && harness::unread(fd) == 0 {
        assert!(start.elapsed() < CAP, "the server's close never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (state, unread) = (harness::tcp_state(fd), harness::unread(fd));
    // Now the reactor polls, until its descriptor is quiet.
    let start = Instant::now();
    loop {
        ka.poll_events(&mut events).expect("poll");
        assert!(events.is_empty());
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&ka),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, count 1, no wait.
        if unsafe { libc::poll(&mut pfd, 1, 0) } == 0 {
            break;
        }
        assert!(start.elapsed() < CAP, "the reactor never went quiet");
    }
    ka.allocate(common::request(port, ())).expect("allocate");
    let conn = common::wait_outcome(&mut ka, &mut events)
        .result
        .expect("a connection");
    (conn.from_cache(), state, unread)
}

fn local_port(fd: libc::c_int) -> Option<u16> {
    harness::socket_ino(fd)?;
    // SAFETY: getsockname writes at most `len` bytes into the zeroed
    // storage we own.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let ret =
        unsafe { libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len) };
    (ret == 0 && i32::from(addr.sin_family) == libc::AF_INET).then(|| u16::from_be(addr.sin_port))
}

#[test]
fn orphan_connect_closed_before_the_reactor_saw_it_is_not_handed_out() {
    let _serial = serial();
    let (from_cache, state, _) = orphan_case(OrphanFault::Close);
    assert_eq!(state, 8, "the FIN had arrived (CLOSE_WAIT) before the poll");
    assert_eq!(
        from_cache, None,
        "a pooled connection closed by its peer before the reactor polled was handed out"
    );
}

#[test]
fn orphan_connect_with_unread_bytes_is_not_handed_out() {
    let _serial = serial();
    let (from_cache, _, unread) = orphan_case(OrphanFault::Bytes);
    assert!(unread > 0, "the bytes had arrived before the poll");
    assert_eq!(
        from_cache, None,
        "a pooled connection holding unread bytes before the reactor polled was handed out"
    );
}
