//! The proxy example as a child process: started on a free loopback port,
//! its descriptors and memory read from `/proc`, signalled and stopped by
//! its pid.
//!
//! The child is the test binary itself, running the example's command line
//! (`examples/proxy/cli.rs`, compiled into the test crate) in its one
//! ignored test, [`CHILD_TEST`], with the proxy's arguments in
//! [`ARGS_VAR`]: `cargo test --all-targets` builds examples as tests, not
//! as the example's binary, and a binary built apart could be older than
//! the sources under test. The benchmark starts itself the same way
//! (`--as-proxy`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::CAP;

/// The test that runs the proxy in the child.
pub const CHILD_TEST: &str = "proxy_child";
/// The proxy's arguments, one per line.
pub const ARGS_VAR: &str = "KEEPALIVE_PROXY_ARGS";

/// The proxy's arguments for the child, if this process is one.
pub fn child_args() -> Option<Vec<String>> {
    let args = std::env::var(ARGS_VAR).ok()?;
    Some(args.lines().map(str::to_owned).collect())
}

/// A command that runs this test binary as the proxy child with `args`.
fn this_as_proxy(mut command: Command, args: &[String]) -> Command {
    command
        .args([
            CHILD_TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ARGS_VAR, args.join("\n"));
    command
}

fn this_exe() -> std::path::PathBuf {
    std::env::current_exe().expect("the test binary's path")
}

pub struct ProxyProcess {
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
    /// What the proxy printed, for a failing test's message.
    pub output: Arc<Mutex<Vec<String>>>,
}

impl ProxyProcess {
    /// One worker in front of `upstream`, listening on a free loopback
    /// port, with `args` added.
    #[track_caller]
    pub fn start(upstream: &str, args: &[&str]) -> ProxyProcess {
        ProxyProcess::spawn(
            |a| this_as_proxy(Command::new(this_exe()), a),
            upstream,
            args,
        )
    }

    /// The same, with `RLIMIT_NOFILE` set to `nofile` for the proxy alone
    /// (the shell's `ulimit`, then `exec`).
    #[track_caller]
    pub fn start_limited(upstream: &str, args: &[&str], nofile: u32) -> ProxyProcess {
        let shell = |a: &[String]| {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
                .arg(this_exe());
            this_as_proxy(sh, a)
        };
        ProxyProcess::spawn(shell, upstream, args)
    }

    /// The proxy as `command` runs it, given the proxy's arguments (one
    /// worker, a free loopback port, `upstream`, then `args`).
    #[track_caller]
    pub fn spawn(
        command: impl FnOnce(&[String]) -> Command,
        upstream: &str,
        args: &[&str],
    ) -> ProxyProcess {
        let all: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--upstream",
            upstream,
        ]
        .iter()
        .chain(args)
        .map(|a| (*a).to_owned())
        .collect();
        let mut child = command(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the proxy");
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&output);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // The test harness may print its own words before ours on
                // the line.
                if let Some((_, rest)) = line.split_once("proxy listening on http://") {
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    let _ = tx.send(addr.parse::<SocketAddr>());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(CAP) {
            Ok(Ok(addr)) => addr,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the proxy did not start: {other:?}");
            }
        };
        ProxyProcess {
            addr,
            pid,
            child,
            output,
        }
    }

    /// Descriptors the proxy has open. Panics if the proxy is gone: a
    /// crashed proxy has no descriptors, which must not read as "back to
    /// baseline".
    #[track_caller]
    pub fn fds(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid));
        let exited = status.as_deref().map_or(true, |s| {
            s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        });
        match std::fs::read_dir(format!("/proc/{}/fd", self.pid)) {
            Ok(dir) if !exited => dir.count(),
            Ok(_) => panic!(
                "the proxy (pid {}) exited; it printed {:?}",
                self.pid,
                self.output.lock().unwrap()
            ),
            Err(e) => panic!(
                "the proxy (pid {}) is gone: {e}; it printed {:?}",
                self.pid,
                self.output.lock().unwrap()
            ),
        }
    }

    /// The proxy's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Waits (bounded by [`CAP`]) until the descriptor count satisfies
    /// `cond`; returns it.
    #[track_caller]
    pub fn wait_fds(&self, what: &str, cond: impl Fn(usize) -> bool) -> usize {
        let start = Instant::now();
        loop {
            let n = self.fds();
            if cond(n) {
                return n;
            }
            assert!(
                start.elapsed() < CAP,
                "timed out waiting for {what}: {n} descriptors open"
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends `SIG<name>` to the proxy (by its pid).
    #[track_caller]
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid);
    }

    /// Waits (bounded by [`CAP`]) for the proxy to exit.
    #[track_caller]
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the proxy") {
                return status;
            }
            assert!(
                start.elapsed() < CAP,
                "the proxy did not exit; it printed {:?}",
                self.output.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
